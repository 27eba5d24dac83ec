"""Local sink: hands results to the `workloads.vei.sink` process over NATS, which records them.

Two ways, chosen per result:

- direct (the hot path): a result that carries a frame (cameraID + frameId) is published to
  `vei.v1.sink.local` with the camera's ack subject as its reply subject. The sink writes and flushes
  the line and then publishes the FrameAck itself, straight to the gateway that holds the camera's
  stream: one NATS message and two gateway wake-ups fewer than a request whose reply the gateway
  would turn into an ack.
- request: results without a frame (original clients), and one result whenever no sink reply has
  been seen for `CONFIRM_EVERY_S`, go as a NATS request. Its reply proves a sink is there; without
  one the request fails at once (no responders) and the camera gets an error ack naming the missing
  sink, so a gateway never forwards results into the void for more than about a second.
"""

from __future__ import annotations

import time

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from workloads.vei import subjects
from workloads.vei.proto import vei_pb2
from workloads.vei.sinks.base import CloudSink, SinkError

ACCEPTED = b"ok"
DUPLICATE = b"dup"
READY = b"ready"
CONFIRM_EVERY_S = 1.0


class LocalSink(CloudSink):
    kind = "local"

    def __init__(self, name: str, nc: Client, timeout_s: float) -> None:
        super().__init__(name)
        self._nc = nc
        self._timeout = timeout_s
        self._confirmed = -CONFIRM_EVERY_S  # monotonic time of the last reply from a sink

    async def forward(self, result: vei_pb2.PubCloudParams) -> bool:
        if not (result.frameId and result.cameraID) or time.monotonic() - self._confirmed >= CONFIRM_EVERY_S:
            return False
        try:
            await self._nc.publish(subjects.LOCAL_SINK, result.SerializeToString(),
                                   reply=subjects.ack(result.cameraID))
        except Exception:
            return False  # e.g. the reconnect buffer is full: the request path reports why
        return True

    async def deliver(self, result: vei_pb2.PubCloudParams) -> None:
        reply = await self._request(result.SerializeToString())
        if reply not in (ACCEPTED, DUPLICATE):
            raise SinkError(f"local sink refused the result: {reply.decode(errors='replace')}")

    async def accepting(self) -> bool:
        """A sink process answers the readiness probe (an empty request) right now."""
        try:
            return await self._request(b"", timeout_s=min(self._timeout, 0.5)) == READY
        except SinkError:
            return False

    async def _request(self, data: bytes, timeout_s: float | None = None) -> bytes:
        timeout = self._timeout if timeout_s is None else timeout_s
        try:
            reply = await self._nc.request(subjects.LOCAL_SINK, data, timeout=timeout)
        except NoRespondersError as exc:
            raise SinkError(f"no local sink is listening on {subjects.LOCAL_SINK}; start it with "
                            "`python -m workloads.vei.sink --nats-url ... --out FILE.jsonl`") from exc
        except NatsTimeoutError as exc:
            raise SinkError(f"local sink did not answer within {timeout} s") from exc
        except Exception as exc:
            raise SinkError(f"local sink request failed: {exc or type(exc).__name__}") from exc
        self._confirmed = time.monotonic()
        return bytes(reply.data)

    def describe(self) -> str:
        return f"local ({subjects.LOCAL_SINK})"
