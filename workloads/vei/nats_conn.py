"""One place that opens NATS connections for VEI processes, tuned for fast failover.

All cluster URLs are given so the client can move to another node; pings every second with at
most two outstanding detect a silently dead node in about three seconds; reconnects never stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import ssl
import time
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError

from workloads.vei.settings import NatsSettings

log = logging.getLogger(__name__)

# nats-py drops a stale connection with transport.close() + wait_closed(), and close() first flushes
# unsent data: with a silently dead peer (link cut, no RST) that waits until TCP gives up (~15 min),
# and the client neither reconnects nor reports anything meanwhile. TCP_USER_TIMEOUT makes the kernel
# abort a connection whose sent data stays unacknowledged this long, so both the ping-based
# detection and the reconnect finish within seconds: a publisher notices a cut server ~1 s after it,
# a pure subscriber (the sink) at most one ping interval later. 1 s of unacknowledged data never
# happens on a healthy LAN link; on a flaky one the cost is a reconnect, and frames are resent.
TCP_USER_TIMEOUT_MS = 1000


def abort_when_unacked(nc: Client, timeout_ms: int = TCP_USER_TIMEOUT_MS) -> None:
    """Set TCP_USER_TIMEOUT on the client's current socket (call after every (re)connect)."""
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)  # nats-py has no public hook
    sock = writer.get_extra_info("socket") if writer is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)


def auth_options(settings: NatsSettings) -> dict[str, Any]:
    """nats-py connect options for the configured authentication and TLS (secrets stay in memory)."""
    options: dict[str, Any] = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        if settings.nats_password is not None:
            options["password"] = settings.nats_password.get_secret_value()
    if settings.nats_token is not None:
        options["token"] = settings.nats_token.get_secret_value()
    if settings.nats_creds_file:
        options["user_credentials"] = settings.nats_creds_file
    if settings.nats_nkey_seed_file:
        options["nkeys_seed"] = settings.nats_nkey_seed_file
    if settings.nats_tls_ca_file or settings.nats_tls_cert_file:
        context = ssl.create_default_context(cafile=settings.nats_tls_ca_file or None)
        if settings.nats_tls_cert_file:
            context.load_cert_chain(settings.nats_tls_cert_file, settings.nats_tls_key_file)
        options["tls"] = context
    return options


async def connect(settings: NatsSettings, name: str) -> Client:
    nc = Client()
    last_text, last_at = [""], [0.0]
    refused = asyncio.Event()  # the server rejected our credentials or TLS at start-up: retrying is futile
    # The refusal itself: nats-py keeps retrying until we give up, and a later attempt's error (often a
    # reset connection) must not hide why the server said no.
    refusal = [""]

    async def on_error(exc: Exception) -> None:
        # Reconnect attempts fail every few hundred ms while a node is down: log each distinct
        # error, and a repeated one at most every 10 s.
        text, now = str(exc) or type(exc).__name__, time.monotonic()
        if text != last_text[0] or now - last_at[0] > 10:
            log.warning("%s: NATS error: %s", name, text)
        last_text[0], last_at[0] = text, now
        if not nc.is_connected and ("authorization" in text.lower() or isinstance(exc, ssl.SSLError)):
            refusal[0] = refusal[0] or text
            refused.set()

    async def on_disconnected() -> None:
        if not (nc.is_closed or nc.is_draining):  # a deliberate close is not worth a warning
            log.warning("%s: disconnected from NATS, reconnecting", name)

    async def on_reconnected() -> None:
        abort_when_unacked(nc)
        log.info("%s: reconnected to NATS at %s", name, nc.connected_url.netloc if nc.connected_url else "?")

    # nats-py annotates these as int but sleeps on them, so fractional seconds work.
    options: dict[str, Any] = {
        # Shuffled here, not by nats-py: with dont_randomize nats-py reconnects by rotating its pool,
        # so the server just lost is tried last. Its own reshuffle on every reconnect often picked
        # the dead server first and then waited the whole connect timeout on it.
        "servers": random.sample(settings.nats_urls, len(settings.nats_urls)),
        "dont_randomize": True,
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
        **auth_options(settings),
    }
    connecting = asyncio.create_task(nc.connect(**options))
    giving_up = asyncio.create_task(refused.wait())
    try:
        # With endless reconnects nats-py also retries the first connect forever; bound it, so a
        # wrong URL is reported instead of a process that silently never becomes ready.
        await asyncio.wait({connecting, giving_up}, timeout=settings.nats_startup_timeout_s,
                           return_when=asyncio.FIRST_COMPLETED)
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            if refused.is_set():
                raise PermissionError(f"the server refused the connection: {refusal[0]}; check the NATS "
                                      "credentials (VEI_NATS_USER/PASSWORD/TOKEN/CREDS/NKEY) and TLS files")
            raise TimeoutError(f"none answered within {settings.nats_startup_timeout_s:g} s "
                               f"(last error: {last_text[0] or 'no error reported'})")
        connecting.result()
        abort_when_unacked(nc)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        urls = ", ".join(settings.nats_urls)
        raise ConnectionError(f"{name}: cannot connect to any NATS server ({urls}): {exc}; start "
                              "nats-server or fix --nats-url / VEI_NATS_URLS") from exc
    finally:
        giving_up.cancel()
    return nc


async def close(nc: Client, within_s: float = 5.0) -> None:
    """Drains (delivers what is buffered, lets subscriptions finish), bounded in time: when NATS
    is unreachable a drain could wait for a reconnect that never comes, so fall back to close."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.drain(), within_s)
    if not nc.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2.0)


async def wait_joined(nc: Client, within_s: float) -> bool:
    """Wait until the connected server is part of its cluster; True when it is (or is not clustered).

    A server that has just (re)started accepts clients before its routes to the other servers are up:
    a frame published through it then reaches no subscriber on the other servers, and is only
    recovered by the camera's resend. Clustered JetStream cannot answer its API until the server has
    a route to the meta-group leader, so an answered `$JS.API.INFO` is the proof that routes exist.
    Without JetStream (no responders) there is no such proof, and the wait ends at once.
    """
    if not nc._server_info.get("cluster"):  # nats-py keeps the INFO only privately
        return True
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            reply = await nc.request("$JS.API.INFO", b"", timeout=0.5)
        except NoRespondersError:
            return True
        except Exception:  # timeout, or a reconnect in progress: try again
            await asyncio.sleep(0.1)
            continue
        with contextlib.suppress(ValueError):
            if "error" not in json.loads(reply.data):
                return True
        await asyncio.sleep(0.1)
    return False
