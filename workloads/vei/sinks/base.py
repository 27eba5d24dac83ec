"""The interface every cloud sink implements, and the JSON record they all deliver."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from workloads.vei.proto import vei_pb2


class SinkError(Exception):
    """A result was not accepted by the sink; the message says why and what to check."""


class CloudSink(abc.ABC):
    kind: ClassVar[str]
    # True: `deliver` is quick and never waits on the network, so the gateway calls it inside the
    # PublishToCloud loop instead of in a task of its own.
    inline: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:  # noqa: B027 - optional hook, most sinks need it
        """Open connections. Must not fail when the cloud is down at start-up: deliveries fail
        (and are retried by the camera) until it is reachable."""

    @abc.abstractmethod
    async def deliver(self, result: vei_pb2.PubCloudParams) -> None:
        """Returns once the sink has accepted `result`; raises SinkError otherwise."""

    async def forward(self, result: vei_pb2.PubCloudParams) -> bool:
        """Hand `result` to a sink that acknowledges its frame to the camera itself, without waiting;
        False when this sink cannot (then the gateway calls `deliver` and sends the ack)."""
        return False

    async def accepting(self) -> bool:
        """Whether a result sent now can be accepted (ListClouds lists only such providers)."""
        return True

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    def describe(self) -> str:
        return self.kind


def result_record(result: vei_pb2.PubCloudParams) -> dict[str, Any]:
    """The fields of a result as delivered to clouds (and written by the local sink)."""
    return {
        "frameId": result.frameId,
        "cameraID": result.cameraID,
        "createdUnixNs": result.createdUnixNs,
        "gatewayInUnixNs": result.gatewayInUnixNs,
        "visionDoneUnixNs": result.visionDoneUnixNs,
        "analyticsName": result.analyticsName,
        "analyticalOutput": list(result.analyticalOutput),
        "timestamp": result.timestamp,
    }
