"""One place that opens NATS connections for VEI processes, tuned for fast failover.

All cluster URLs are given so the client can move to another node; pings every second with at
most two outstanding detect a silently dead node in about three seconds; reconnects never stop.
"""

from __future__ import annotations

import logging
from typing import Any

from nats.aio.client import Client

from workloads.vei.settings import NatsSettings

log = logging.getLogger(__name__)


async def connect(settings: NatsSettings, name: str) -> Client:
    nc = Client()
    async def on_error(exc: Exception) -> None:
        log.warning("%s: NATS error: %s", name, exc)

    async def on_disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):  # a deliberate close is not worth a warning
            log.warning("%s: disconnected from NATS, reconnecting", name)

    async def on_reconnected() -> None:
        log.info("%s: reconnected to NATS at %s", name, nc.connected_url.netloc if nc.connected_url else "?")

    # nats-py annotates these as int but sleeps on them, so fractional seconds work.
    options: dict[str, Any] = {
        "servers": settings.nats_urls,
        "name": name,
        "ping_interval": settings.nats_ping_interval_s,
        "max_outstanding_pings": settings.nats_max_outstanding_pings,
        "reconnect_time_wait": settings.nats_reconnect_wait_s,
        "connect_timeout": settings.nats_connect_timeout_s,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
        "pending_size": settings.nats_pending_bytes,
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    try:
        await nc.connect(**options)
    except Exception as exc:
        urls = ", ".join(settings.nats_urls)
        raise ConnectionError(f"{name}: cannot reach any NATS server ({urls}): {exc}; "
                              "start nats-server or fix --nats-url / VEI_NATS_URLS") from exc
    return nc
