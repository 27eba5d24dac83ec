"""Several gateway replicas on one NATS: shared registries (VEI_REGISTRY=kv) and each replica's own
(the default, memory), frames across replicas, queue groups, acks that come back through whichever
replica the camera is connected to, many cameras at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from google.protobuf import empty_pb2
from testkit import free_port, wait_until_async
from vei_support import frame, frames, read_jsonl, stubs, subscribed, take

from workloads.vei import subjects
from workloads.vei.proto import vei_pb2

EMPTY = empty_pb2.Empty()


async def test_registry_buckets_exist_before_the_first_frame(gateway_factory: Any, nats_server: str) -> None:
    """A started kv gateway opens both buckets at once, so nats-server's JetStream timers run from the
    start (an idle cost) and the first frame waits for no stream to be created."""
    await gateway_factory(registry="kv")
    nc = await nats.connect(nats_server)
    try:
        js = nc.jetstream()

        async def both_exist() -> bool:
            names = [info.config.name for info in await js.streams_info()]
            return {f"KV_{subjects.CAMERAS_BUCKET}", f"KV_{subjects.APPLICATIONS_BUCKET}"} <= set(names)

        await wait_until_async(both_exist, what="both registry buckets created without a frame")
    finally:
        await nc.close()


async def test_kv_registries_are_shared_between_replicas(gateway_factory: Any) -> None:
    a = await gateway_factory(registry="kv")
    b = await gateway_factory(registry="kv", clouds=["local", "extra=local"])
    async with grpc.aio.insecure_channel(a.address) as ch_a, grpc.aio.insecure_channel(b.address) as ch_b:
        vei_a, _ = stubs(ch_a)
        vei_b, _ = stubs(ch_b)
        await vei_a.PublishImage(frames([frame("onA", 0, size=10)]))
        await vei_a.PublishVisionOutput(frames([vei_pb2.PubVisionParams(visionAppName="appA")]))

        async def b_sees_a() -> bool:
            cams = list((await vei_b.ListCameras(EMPTY)).availableCams)
            apps = list((await vei_b.ListApplications(EMPTY)).availApps)
            return cams == ["onA"] and apps == ["appA"]

        await wait_until_async(b_sees_a, what="replica B lists what replica A registered")
        assert (await vei_b.DeleteCamera(vei_pb2.CameraID(cameraID="onA"))).errorMsg == ""
        assert list((await vei_a.ListCameras(EMPTY)).availableCams) == []


async def test_memory_registries_are_each_replicas_own(gateway_factory: Any) -> None:
    """With the default registry a replica lists what it has seen itself, as the original did, and
    deleting there leaves the other replica's list alone."""
    a = await gateway_factory()
    b = await gateway_factory()
    async with grpc.aio.insecure_channel(a.address) as ch_a, grpc.aio.insecure_channel(b.address) as ch_b:
        vei_a, _ = stubs(ch_a)
        vei_b, _ = stubs(ch_b)
        await vei_a.PublishImage(frames([frame("both", 0, size=10), frame("onA", 1, size=10)]))
        await vei_b.PublishImage(frames([frame("both", 2, size=10)]))
        await vei_a.PublishVisionOutput(frames([vei_pb2.PubVisionParams(visionAppName="appA")]))
        assert list((await vei_a.ListCameras(EMPTY)).availableCams) == ["both", "onA"]
        assert list((await vei_b.ListCameras(EMPTY)).availableCams) == ["both"]
        assert list((await vei_a.ListApplications(EMPTY)).availApps) == ["appA"]
        assert list((await vei_b.ListApplications(EMPTY)).availApps) == []
        assert "unknown camera 'onA'" in (await vei_b.DeleteCamera(vei_pb2.CameraID(cameraID="onA"))).errorMsg
        assert (await vei_a.DeleteCamera(vei_pb2.CameraID(cameraID="both"))).errorMsg == ""
        assert list((await vei_b.ListCameras(EMPTY)).availableCams) == ["both"]


async def test_frames_cross_replicas_and_queue_groups_share_them(gateway_factory: Any) -> None:
    """Two groups x two members on two replicas plus one plain subscriber: every frame reaches each
    group exactly once and the plain subscriber once."""
    a = await gateway_factory()
    b = await gateway_factory()
    n = 60
    async with grpc.aio.insecure_channel(a.address) as ch_a, grpc.aio.insecure_channel(b.address) as ch_b:
        vei_a, _ = stubs(ch_a)
        vei_b, _ = stubs(ch_b)
        calls: dict[str, Any] = {}
        for group in ("g1", "g2"):
            calls[f"{group}-a"] = vei_a.SubscribeImage(vei_pb2.SubImageParams(cameraID="q", queueGroup=group))
            calls[f"{group}-b"] = vei_b.SubscribeImage(vei_pb2.SubImageParams(cameraID="q", queueGroup=group))
        calls["plain"] = vei_b.SubscribeImage(vei_pb2.SubImageParams(cameraID="q"))
        for call in calls.values():
            await subscribed(call)
        received: dict[str, list[str]] = {name: [] for name in calls}

        async def collect(name: str) -> None:
            async for img in calls[name]:
                received[name].append(img.frameId)

        readers = [asyncio.create_task(collect(name)) for name in calls]
        await vei_a.PublishImage(frames([frame("q", i, size=1000) for i in range(n)]))

        def all_arrived() -> bool:
            per_group = [len(received[f"{g}-a"]) + len(received[f"{g}-b"]) for g in ("g1", "g2")]
            return per_group == [n, n] and len(received["plain"]) == n

        await wait_until_async(all_arrived, what="all frames at every group")
        await asyncio.sleep(0.2)  # a duplicate would arrive now
        for task in readers:
            task.cancel()
    expected = {f"q-{i}" for i in range(n)}
    for g in ("g1", "g2"):
        both = received[f"{g}-a"] + received[f"{g}-b"]
        assert Counter(both) == Counter(expected), f"group {g} got duplicates or gaps"
        assert received[f"{g}-a"] and received[f"{g}-b"], f"group {g} did not share the frames"
    assert received["plain"] == sorted(expected, key=lambda f: int(f.split("-")[1]))


async def test_acks_return_through_the_cameras_replica(gateway_factory: Any, local_sink: Path) -> None:
    """Camera on replica A, vision app on replica B: B delivers to the sink, A forwards the ack."""
    a = await gateway_factory()
    b = await gateway_factory()
    async with grpc.aio.insecure_channel(a.address) as ch_a, grpc.aio.insecure_channel(b.address) as ch_b:
        _, reliable_a = stubs(ch_a)
        vei_b, _ = stubs(ch_b)
        sub = vei_b.SubscribeImage(vei_pb2.SubImageParams(cameraID="x", queueGroup="vision"))
        await subscribed(sub)

        async def results() -> Any:
            async for img in sub:
                yield vei_pb2.PubCloudParams(analyticsName="emu", cloudProvider="local", frameId=img.frameId,
                                             cameraID=img.cameraID, createdUnixNs=img.createdUnixNs,
                                             gatewayInUnixNs=img.gatewayInUnixNs)

        vision = vei_b.PublishToCloud(results())
        sent = [frame("x", i, size=2000) for i in range(30)]
        acks = [ack async for ack in reliable_a.PublishImageAcked(frames(sent))]
        sub.cancel()
        vision.cancel()
    assert sorted(a.frameId for a in acks) == sorted(f.frameId for f in sent)
    assert len(read_jsonl(local_sink)) == 30


async def test_concurrent_cameras_and_subscribers(gateway: Any) -> None:
    cameras, subscribers_per_camera, n = 6, 3, 40
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        subs = {(c, s): vei.SubscribeImage(vei_pb2.SubImageParams(cameraID=f"c{c}"))
                for c in range(cameras) for s in range(subscribers_per_camera)}
        await asyncio.gather(*(subscribed(call) for call in subs.values()))
        readers = {key: asyncio.create_task(take(call, n, within_s=30)) for key, call in subs.items()}
        replies = await asyncio.gather(*(
            vei.PublishImage(frames([frame(f"c{c}", i, size=4096) for i in range(n)], gap_s=0.001))
            for c in range(cameras)))
        assert all(r.errorMsg == "" for r in replies)
        for (c, _s), task in readers.items():
            got = await task
            assert [g.frameId for g in got] == [f"c{c}-{i}" for i in range(n)]
            assert {g.cameraID for g in got} == {f"c{c}"}
        for call in subs.values():
            call.cancel()


@pytest.mark.slow
async def test_registry_survives_loss_of_one_node_of_a_jetstream_cluster(nats_server_factory: Any,
                                                                         gateway_factory: Any) -> None:
    """Three-node NATS cluster with JetStream: given all three URLs the gateway keeps its registry
    buckets with three replicas, so losing any one node loses no registration and new ones work."""
    ports = [free_port() for _ in range(3)]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in ports)
    urls = [nats_server_factory(("--cluster_name", "vei", "-n", f"n{i}", "--cluster",
                                 f"nats://127.0.0.1:{ports[i]}", "--routes", routes)) for i in range(3)]
    gw = await gateway_factory(nats_urls=urls, registry="kv", kv_timeout_s=1.0)
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        await vei.PublishImage(frames([frame("before", 0, size=10)]))

        async def cameras() -> list[str]:
            try:
                return list((await vei.ListCameras(EMPTY, timeout=5)).availableCams)
            except grpc.aio.AioRpcError:
                return []  # the cluster is still electing its JetStream leaders

        await wait_until_async(lambda: _has(cameras, ["before"]), timeout_s=60,
                               what="registered on the cluster")
        nc = await nats.connect(urls[1])
        info = await nc.jetstream().stream_info("KV_vei_cameras")
        await nc.close()
        assert info.config.num_replicas == 3
        nats_server_factory.stop(urls[0])
        await vei.PublishImage(frames([frame("after", 0, size=10)]))
        await wait_until_async(lambda: _has(cameras, ["after", "before"]), timeout_s=60,
                               what="registry readable and writable with one node gone")


async def _has(listing: Any, expected: list[str]) -> bool:
    return bool(await listing() == expected)
