"""The default registry (VEI_REGISTRY=memory): in the gateway process only, like the original VEI,
so no JetStream stream ever exists on the server (no idle access-time ticker in nats-server) and the
gateway works on a nats-server without JetStream. The kv registry is tested in test_gateway_replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import nats
from google.protobuf import empty_pb2
from vei_support import frame, frames, read_jsonl, stubs, subscribed

from workloads.vei.proto import vei_pb2
from workloads.vei.registry import Kind, MemoryRegistry

EMPTY = empty_pb2.Empty()


async def _register_everything(vei: Any, reliable: Any) -> None:
    """Every RPC that registers a name: a camera by PublishImage and PublishImageAcked, an application
    by PublishVisionOutput and PublishToCloud."""
    assert (await vei.PublishImage(frames([frame("camB", 0, size=10)]))).errorMsg == ""
    acks = [ack async for ack in reliable.PublishImageAcked(frames([frame("camA", 0, size=10)]))]
    assert [a.frameId for a in acks] == ["camA-0"]
    assert (await vei.PublishVisionOutput(frames([vei_pb2.PubVisionParams(visionAppName="detector")]))
            ).errorMsg == ""
    result = vei_pb2.PubCloudParams(analyticsName="counter", cloudProvider="local", frameId="r-0",
                                    cameraID="camA")
    assert (await vei.PublishToCloud(frames([result]))).errorMsg == ""


async def test_the_default_registry_creates_no_jetstream_stream(gateway: Any, nats_server: str,
                                                                local_sink: Path) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, reliable = stubs(ch)
        # A vision app delivering camA's frames, so PublishImageAcked gets its ack through the sink.
        vei_sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="camA"))
        await subscribed(vei_sub)

        async def vision() -> Any:
            async def results() -> Any:
                async for img in vei_sub:
                    yield vei_pb2.PubCloudParams(analyticsName="counter", cloudProvider="local",
                                                 frameId=img.frameId, cameraID=img.cameraID)
            return await vei.PublishToCloud(results())

        vision_task = asyncio.create_task(vision())
        await _register_everything(vei, reliable)
        vei_sub.cancel()
        vision_task.cancel()
        assert list((await vei.ListCameras(EMPTY)).availableCams) == ["camA", "camB"]
        assert list((await vei.ListApplications(EMPTY)).availApps) == ["counter", "detector"]
        assert (await vei.DeleteCamera(vei_pb2.CameraID(cameraID="camA"))).errorMsg == ""
    assert {r["frameId"] for r in read_jsonl(local_sink)} == {"camA-0", "r-0"}
    nc = await nats.connect(nats_server)
    try:
        js = nc.jetstream()
        assert await js.streams_info() == []
        assert (await js.account_info()).streams == 0
    finally:
        await nc.close()


async def test_the_default_registry_works_on_a_nats_server_without_jetstream(
        nats_server_factory: Any, gateway_factory: Any) -> None:
    gw = await gateway_factory(nats_urls=[nats_server_factory(jetstream=False)])
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        assert list((await vei.ListCameras(EMPTY)).availableCams) == []
        assert list((await vei.ListApplications(EMPTY)).availApps) == []
        await vei.PublishImage(frames([frame("camB", 0, size=10), frame("camA", 1, size=10)]))
        await vei.PublishVisionOutput(frames([vei_pb2.PubVisionParams(visionAppName="detector")]))
        assert list((await vei.ListCameras(EMPTY)).availableCams) == ["camA", "camB"]
        assert list((await vei.ListApplications(EMPTY)).availApps) == ["detector"]
        assert (await vei.DeleteCamera(vei_pb2.CameraID(cameraID="camA"))).errorMsg == ""
        assert list((await vei.ListCameras(EMPTY)).availableCams) == ["camB"]
        again = await vei.DeleteCamera(vei_pb2.CameraID(cameraID="camA"))
        assert "unknown camera 'camA'" in again.errorMsg and "camB" in again.errorMsg


async def test_a_restarted_gateway_starts_with_an_empty_memory_registry(gateway_factory: Any) -> None:
    """As the original: the list is what this process has seen, so a new process lists nothing."""
    first = await gateway_factory()
    async with grpc.aio.insecure_channel(first.address) as ch:
        vei, _ = stubs(ch)
        await vei.PublishImage(frames([frame("cam", 0, size=10)]))
        assert list((await vei.ListCameras(EMPTY)).availableCams) == ["cam"]
    await first.stop(grace=0)
    second = await gateway_factory()
    async with grpc.aio.insecure_channel(second.address) as ch:
        vei, _ = stubs(ch)
        assert list((await vei.ListCameras(EMPTY)).availableCams) == []


async def test_memory_registry_kinds_are_separate_and_sorted() -> None:
    registry = MemoryRegistry()
    registry.start()
    for name in ("b", "a", "b"):
        registry.note(Kind.CAMERA, name)
    registry.note(Kind.APPLICATION, "app")
    assert await registry.names(Kind.CAMERA) == ["a", "b"]
    assert await registry.names(Kind.APPLICATION) == ["app"]
    assert await registry.contains(Kind.CAMERA, "a") and not await registry.contains(Kind.APPLICATION, "a")
    assert await registry.remove(Kind.CAMERA, "a") and not await registry.remove(Kind.CAMERA, "a")
    assert await registry.names(Kind.CAMERA) == ["b"]
    await registry.close()
