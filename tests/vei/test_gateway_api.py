"""The full VEIv1_0 / VEIReliable API against a real nats-server and real grpc.aio on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2
from testkit import wait_until_async
from vei_support import frame, frames, metric, read_jsonl, stubs, subscribed, take

from workloads.vei.proto import vei_pb2

EMPTY = empty_pb2.Empty()


async def test_publish_then_subscribe_delivers_every_field(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="cam1"))
        await subscribed(sub)
        sent = [frame("cam1", i) for i in range(5)]
        reply = await vei.PublishImage(frames(sent))
        assert reply.errorMsg == ""
        got = await take(sub, 5)
        sub.cancel()
    assert [g.frameId for g in got] == [s.frameId for s in sent]
    for g, s in zip(got, sent, strict=True):
        assert g.image == s.image and g.timestamp == s.timestamp and g.cameraID == "cam1"
        assert g.createdUnixNs == s.createdUnixNs
        assert g.gatewayInUnixNs >= s.createdUnixNs
        assert g.error == ""
    assert metric(gateway, "vei_frames_in_total", {"camera": "cam1"}) == 5
    await wait_until_async(lambda: metric(gateway, "vei_frames_out_total", {"camera": "cam1"}) == 5)


async def test_camera_registry_list_and_delete(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        assert list((await vei.ListCameras(EMPTY)).availableCams) == []
        await vei.PublishImage(frames([frame("camB", 0), frame("camA", 1)]))

        async def both_listed() -> bool:
            return list((await vei.ListCameras(EMPTY)).availableCams) == ["camA", "camB"]

        await wait_until_async(both_listed, what="cameras registered")
        assert (await vei.DeleteCamera(vei_pb2.CameraID(cameraID="camA"))).errorMsg == ""
        assert list((await vei.ListCameras(EMPTY)).availableCams) == ["camB"]
        again = await vei.DeleteCamera(vei_pb2.CameraID(cameraID="camA"))
        assert "unknown camera 'camA'" in again.errorMsg and "camB" in again.errorMsg


async def test_vision_output_publish_subscribe_and_application_registry(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        first = vei_pb2.PubVisionParams(visionAppName="detector", visionOutput=["warmup"], timestamp="0")
        assert (await vei.PublishVisionOutput(frames([first]))).errorMsg == ""

        async def registered() -> bool:
            return "detector" in (await vei.ListApplications(EMPTY)).availApps

        await wait_until_async(registered, what="application registered")
        sub = vei.SubscribeVisionOutput(vei_pb2.SubVisionParams(visionAppName="detector"))
        await subscribed(sub)
        outputs = [vei_pb2.PubVisionParams(visionAppName="detector", visionOutput=["person", str(i)],
                                           timestamp=str(i), frameId=f"f{i}", createdUnixNs=i + 1,
                                           cameraID="cam1") for i in range(3)]
        assert (await vei.PublishVisionOutput(frames(outputs))).errorMsg == ""
        got = await take(sub, 3)
        sub.cancel()
    assert [list(g.visionOutput) for g in got] == [["person", "0"], ["person", "1"], ["person", "2"]]
    assert [(g.frameId, g.createdUnixNs, g.cameraID) for g in got] == [
        ("f0", 1, "cam1"), ("f1", 2, "cam1"), ("f2", 3, "cam1")]


async def test_list_clouds_returns_configured_providers_that_can_deliver(gateway_factory: Any,
                                                                       local_sink: Path) -> None:
    gw = await gateway_factory(clouds=["local", "backup=local?timeout=1"])
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        assert list((await vei.ListClouds(EMPTY)).availClouds) == ["backup", "local"]


async def test_acked_publish_end_to_end_through_local_sink(gateway: Any, local_sink: Path) -> None:
    """camera -(PublishImageAcked)-> gateway -> NATS -> vision (SubscribeImage) -> PublishToCloud ->
    local sink -> FrameAck back on the camera's stream."""
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, reliable = stubs(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="cam7", queueGroup="vision"))
        await subscribed(sub)
        n = 20

        async def vision() -> vei_pb2.ErrorResponse:
            async def results() -> Any:
                async for img in sub:
                    yield vei_pb2.PubCloudParams(
                        analyticsName="emu", analyticalOutput=["car"], timestamp=img.timestamp,
                        cloudProvider="local", frameId=img.frameId, createdUnixNs=img.createdUnixNs,
                        cameraID=img.cameraID, gatewayInUnixNs=img.gatewayInUnixNs)
            return await vei.PublishToCloud(results())

        vision_task = asyncio.create_task(vision())
        sent = [frame("cam7", i) for i in range(n)]
        call = reliable.PublishImageAcked(frames(sent, gap_s=0.005))
        acks = [ack async for ack in call]  # the gateway ends the stream once all are acked
        sub.cancel()
        vision_task.cancel()
    assert sorted(a.frameId for a in acks) == sorted(f.frameId for f in sent)
    assert all(a.error == "" and a.cameraID == "cam7" for a in acks)
    lines = read_jsonl(local_sink)
    assert sorted(rec["frameId"] for rec in lines) == sorted(f.frameId for f in sent)
    for rec in lines:
        assert rec["cameraID"] == "cam7" and rec["analyticsName"] == "emu"
        assert rec["createdUnixNs"] <= rec["gatewayInUnixNs"] <= rec["sinkUnixNs"]
    # The first result goes as a request (proving a sink is there); the rest straight to the sink,
    # which acks the camera itself.
    outcomes = {o: metric(gateway, "vei_cloud_results_total", {"provider": "local", "outcome": o})
                for o in ("accepted", "forwarded", "error")}
    assert outcomes["accepted"] >= 1 and outcomes["accepted"] + outcomes["forwarded"] == n
    assert outcomes["error"] == 0
