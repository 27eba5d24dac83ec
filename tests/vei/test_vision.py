"""Emulated vision app against a small real grpc.aio VEI server (frames in, detections out)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from testkit import wait_until_async

from workloads.vei.proto import vei_pb2, vei_pb2_grpc
from workloads.vei.vision import VisionApp, parse_vision_args


class FrameSource(vei_pb2_grpc.VEIv1_0Servicer):
    """Serves `frames` frames per subscription; can break the first subscription / cloud stream."""

    def __init__(self, frames: int, break_subscription_after: int = 0, break_cloud_after: int = 0,
                 gap_s: float = 0.0) -> None:
        self.frames = frames
        self.gap_s = gap_s
        self.break_subscription_after = break_subscription_after
        self.break_cloud_after = break_cloud_after
        self.requests: list[vei_pb2.SubImageParams] = []
        self.results: list[vei_pb2.PubCloudParams] = []
        self.cloud_streams = 0
        self.next_frame = 0

    async def SubscribeImage(self, request: vei_pb2.SubImageParams,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[vei_pb2.ImageData]:
        self.requests.append(request)
        first = len(self.requests) == 1
        while self.next_frame < self.frames:
            if first and self.break_subscription_after and self.next_frame == self.break_subscription_after:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "replica going away")
            k = self.next_frame
            self.next_frame += 1
            if self.gap_s:
                await asyncio.sleep(self.gap_s)
            yield vei_pb2.ImageData(image=b"x" * 100, frameId=f"cam-0-{k}", createdUnixNs=k,
                                    cameraID=request.cameraID, gatewayInUnixNs=1000 + k)
        await asyncio.Event().wait()  # keep the subscription open like a live camera

    async def PublishToCloud(self, request_iterator: AsyncIterator[vei_pb2.PubCloudParams],
                             context: grpc.aio.ServicerContext) -> vei_pb2.ErrorResponse:
        self.cloud_streams += 1
        first = self.cloud_streams == 1
        async for result in request_iterator:
            if first and self.break_cloud_after and len(self.results) == self.break_cloud_after:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "replica going away")
            self.results.append(result)
        return vei_pb2.ErrorResponse()


async def run_vision(source: FrameSource, argv: list[str], want: int, last: str = "") -> VisionApp:
    """Run the app until `want` distinct results arrived (or the result for frame `last`)."""
    # Clients ping every second; a server must allow that (the default answers GOAWAY "too_many_pings").
    server = grpc.aio.server(options=[("grpc.http2.min_ping_interval_without_data_ms", 500),
                                      ("grpc.keepalive_permit_without_calls", 1)])
    vei_pb2_grpc.add_VEIv1_0Servicer_to_server(source, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = VisionApp(parse_vision_args(["--gateway", f"127.0.0.1:{port}", *argv]))
    task = asyncio.create_task(app.run())
    try:
        def done() -> bool:
            seen = {r.frameId for r in source.results}
            return len(seen) >= want or last in seen

        with contextlib.suppress(TimeoutError):  # the callers check what arrived
            await wait_until_async(done, 20, "the vision app's results", interval_s=0.01)
    finally:
        app.stop()
        await asyncio.wait_for(task, 10)
        await server.stop(None)
    return app


async def test_publishes_detections_with_frame_timestamps() -> None:
    source = FrameSource(frames=5)
    await run_vision(source, ["--camera-id", "cam-0", "--app-name", "detector"], want=5)
    assert source.requests[0].cameraID == "cam-0"
    assert source.requests[0].queueGroup == "detector"  # replicas share frames by default
    assert [r.frameId for r in source.results] == [f"cam-0-{k}" for k in range(5)]
    for k, r in enumerate(source.results):
        assert (r.createdUnixNs, r.gatewayInUnixNs, r.cameraID) == (k, 1000 + k, "cam-0")
        assert r.analyticsName == "detector" and r.cloudProvider == "local"
        assert r.visionDoneUnixNs > 0 and json.loads(r.analyticalOutput[0])["label"]
    assert source.cloud_streams == 1  # one PublishToCloud stream kept open


async def test_no_queue_group_gives_original_fan_out() -> None:
    source = FrameSource(frames=1)
    await run_vision(source, ["--no-queue-group"], want=1)
    assert source.requests[0].queueGroup == ""


async def test_processing_time_is_spent() -> None:
    source = FrameSource(frames=4)
    await run_vision(source, ["--processing-ms", "100"], want=4)
    done = [r.visionDoneUnixNs for r in source.results]
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(done)]
    assert min(gaps) >= 95


async def test_resubscribes_after_subscription_failure() -> None:
    source = FrameSource(frames=6, break_subscription_after=2)
    app = await run_vision(source, [], want=6)
    assert len(source.requests) >= 2 and app.stats.resubscribes >= 1
    assert {r.frameId for r in source.results} == {f"cam-0-{k}" for k in range(6)}


async def test_cloud_stream_is_reopened_and_result_retried() -> None:
    # Frames keep coming after the break, so the app must notice the dead stream on its next write.
    source = FrameSource(frames=30, break_cloud_after=3, gap_s=0.02)
    app = await run_vision(source, [], want=30, last="cam-0-29")
    assert source.cloud_streams >= 2 and app.stats.cloud_reopens >= 1
    assert len(source.requests) == 1  # the subscription was not disturbed
    # Results written while the broken stream was closing may be lost; the camera resends those.
    got = {r.frameId for r in source.results}
    assert {f"cam-0-{k}" for k in (0, 1, 2, 29)} <= got
    assert len(got) >= 20


@pytest.mark.parametrize("argv, problem", [
    (["--camera-id", " "], "--camera-id must not be empty"),
    (["--app-name", ""], "--app-name must not be empty"),
    (["--processing-ms", "-1"], "--processing-ms must be >= 0"),
])
def test_bad_flags(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_vision_args(["--gateway", "127.0.0.1:1", *argv])
    assert exc.value.code == 2
    assert problem in capsys.readouterr().err
