"""The gateway driven as the original VEI clients drive it: only the original's fields (1-4), in the
order the original's users start things, against a gateway started with the original's defaults."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2
from testkit import wait_serving, wait_until_async
from vei_support import frames, read_jsonl, stubs, take

from workloads.vei.proto import vei_pb2

EMPTY = empty_pb2.Empty()


async def test_subscribe_vision_output_before_the_application_ever_published(gateway: Any) -> None:
    """An analytics app subscribes first (the natural start order) and gets everything published
    once its subscription is confirmed (`vei-subscribed` metadata), though the name is not known yet."""
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        assert "late-app" not in (await vei.ListApplications(EMPTY)).availApps
        sub = vei.SubscribeVisionOutput(vei_pb2.SubVisionParams(visionAppName="late-app"))
        metadata = await asyncio.wait_for(sub.initial_metadata(), 10)
        assert ("vei-subscribed", "1") in tuple(metadata)
        outputs = [vei_pb2.PubVisionParams(visionAppName="late-app", visionOutput=["person", str(i)],
                                           timestamp=f"t{i}") for i in range(3)]
        assert (await vei.PublishVisionOutput(frames(outputs))).errorMsg == ""
        got = await take(sub, 3)
        sub.cancel()

        async def registered() -> bool:
            return "late-app" in (await vei.ListApplications(EMPTY)).availApps

        await wait_until_async(registered, what="the application registered by its first publish")
    assert [(list(g.visionOutput), g.timestamp, g.error) for g in got] == [
        (["person", "0"], "t0", ""), (["person", "1"], "t1", ""), (["person", "2"], "t2", "")]


def original_result(i: int, provider: str) -> vei_pb2.PubCloudParams:
    return vei_pb2.PubCloudParams(analyticsName="camera1", analyticalOutput=[f"person {i}"],
                                  timestamp=f"t{i}", cloudProvider=provider)


async def test_standalone_gateway_lists_local_only_while_a_sink_can_take_results(
        gateway_process: Any, nats_server: str, tmp_path: Path) -> None:
    """Started alone with its defaults, the gateway lists no cloud (it could deliver to none);
    once a sink process runs it lists `local`, and PublishToCloud to `local` is accepted."""
    from workloads.vei.settings import SinkSettings
    from workloads.vei.sink import run_sink

    _, address = gateway_process()  # the defaults: --cloud local
    await wait_serving(address)
    async with grpc.aio.insecure_channel(address) as ch:
        vei, _ = stubs(ch)
        assert list((await vei.ListClouds(EMPTY)).availClouds) == []
        refused = await vei.PublishToCloud(frames([original_result(0, "local")]))
        assert "no local sink is listening" in refused.errorMsg

        out = tmp_path / "sink.jsonl"
        stop, ready = asyncio.Event(), asyncio.Event()
        sink = asyncio.create_task(run_sink(SinkSettings(nats_urls=[nats_server], out=str(out)), stop, ready))
        try:
            await asyncio.wait_for(ready.wait(), 15)
            clouds = list((await vei.ListClouds(EMPTY)).availClouds)
            assert clouds == ["local"]
            for cloud in clouds:  # every listed cloud accepts results
                reply = await vei.PublishToCloud(frames([original_result(i, cloud) for i in range(1, 4)]))
                assert reply.errorMsg == ""
        finally:
            stop.set()
            await sink
    assert [(r["analyticsName"], r["analyticalOutput"], r["timestamp"]) for r in read_jsonl(out)] == [
        ("camera1", ["person 1"], "t1"), ("camera1", ["person 2"], "t2"), ("camera1", ["person 3"], "t3")]


async def test_original_clients_cloud_name_aws_maps_to_a_configured_provider(
        gateway_factory: Any, moto_iot: Any) -> None:
    """The original clients send cloudProvider "AWS"; `--cloud AWS=iot-data?...` serves them."""
    endpoint, published = moto_iot
    spec = f"AWS=iot-data?region=us-east-1&topic=vei/results&endpoint={endpoint}"
    gw = await gateway_factory(clouds=[spec])
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        assert list((await vei.ListClouds(EMPTY)).availClouds) == ["AWS"]
        reply = await vei.PublishToCloud(frames([original_result(i, "AWS") for i in range(3)]))
        wrong_case = await vei.PublishToCloud(frames([original_result(9, "aws")]))
    assert reply.errorMsg == ""
    delivered = [(t, p["analyticsName"], p["analyticalOutput"], p["timestamp"]) for t, p in published()]
    assert sorted(delivered, key=lambda d: d[3]) == [("vei/results", "camera1", [f"person {i}"], f"t{i}")
                                                    for i in range(3)]  # concurrent: any order
    assert "unknown cloud provider 'aws'; configured providers: AWS" in wrong_case.errorMsg


async def test_original_path_publish_and_subscribe_with_original_fields_only(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="camera1"))
        await asyncio.wait_for(sub.initial_metadata(), 10)
        sent = [vei_pb2.PubImageParams(cameraID="camera1", image=bytes([i]) * 1000, timestamp=f"t{i}")
                for i in range(5)]
        assert (await vei.PublishImage(frames(sent))).errorMsg == ""
        got = await take(sub, 5)
        sub.cancel()
    assert [(g.image, g.timestamp, g.error) for g in got] == [(s.image, s.timestamp, "") for s in sent]
