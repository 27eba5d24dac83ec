"""Bookkeeping of PublishToCloud deliveries: cached metric children per sink, the per-call outcome
reported in ErrorResponse, and the bounded set of in-flight delivery tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from workloads.vei.metrics import GatewayMetrics


class SinkMetrics:
    """Label children looked up once: `.labels()` takes a lock and a dict lookup per call."""

    __slots__ = ("accepted", "delivery", "failed", "forwarded", "gateway_to_sink")

    def __init__(self, metrics: GatewayMetrics, provider: str) -> None:
        self.delivery = metrics.sink_delivery.labels(provider)
        self.gateway_to_sink = metrics.gateway_to_sink.labels(provider)
        self.accepted = metrics.cloud_results.labels(provider, "accepted")
        self.failed = metrics.cloud_results.labels(provider, "error")
        # Handed to a sink that acknowledges to the camera itself (local sink, direct path).
        self.forwarded = metrics.cloud_results.labels(provider, "forwarded")


class DeliveryOutcome:
    def __init__(self) -> None:
        self.ok = 0
        self.errors = 0
        self.last_error = ""

    def failed(self, error: str) -> None:
        self.errors += 1
        self.last_error = error

    def summary(self) -> str:
        if not self.errors:
            return ""
        return (f"{self.errors} of {self.ok + self.errors} results were not accepted by the sink; "
                f"last error: {self.last_error}")


def release(slots: asyncio.Semaphore,
             *sets: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        slots.release()
        for s in sets:
            s.discard(task)

    return done


async def settle(tasks: set[asyncio.Task[None]]) -> None:
    """Waits for this call's deliveries; they are not cancelled if the caller goes away."""
    if tasks:
        await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
