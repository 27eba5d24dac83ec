"""Local sink: a NATS request to the `workloads.vei.sink` process, which records the result.

The reply is the sink's acceptance (it has written and flushed the line), so the gateway only
acknowledges a frame to the camera after the result is on disk.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from workloads.vei import subjects
from workloads.vei.proto import vei_pb2
from workloads.vei.sinks.base import CloudSink, SinkError

ACCEPTED = b"ok"
DUPLICATE = b"dup"


class LocalSink(CloudSink):
    kind = "local"

    def __init__(self, name: str, nc: Client, timeout_s: float) -> None:
        super().__init__(name)
        self._nc = nc
        self._timeout = timeout_s

    async def deliver(self, result: vei_pb2.PubCloudParams) -> None:
        try:
            reply = await self._nc.request(subjects.LOCAL_SINK, result.SerializeToString(),
                                           timeout=self._timeout)
        except NoRespondersError as exc:
            raise SinkError(f"no local sink is listening on {subjects.LOCAL_SINK}; start it with "
                            "`python -m workloads.vei.sink --nats-url ... --out FILE.jsonl`") from exc
        except NatsTimeoutError as exc:
            raise SinkError(f"local sink did not answer within {self._timeout} s") from exc
        except Exception as exc:
            raise SinkError(f"local sink request failed: {exc or type(exc).__name__}") from exc
        if reply.data not in (ACCEPTED, DUPLICATE):
            raise SinkError(f"local sink refused the result: {reply.data.decode(errors='replace')}")

    def describe(self) -> str:
        return f"local ({subjects.LOCAL_SINK})"
