"""The cluster's NATS users (infra/platform/nats_users.py) on a real nats-server configured with the
authorization block the program puts into the chart's values: every VEI process can do its whole job
as its own nkey user, and nothing else - no anonymous client, no frame read or ack forged by the sink,
no registry touched by anyone but the gateway."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from google.protobuf import empty_pb2
from testkit import wait_until_async
from vei_support import frame, frames, read_jsonl, stubs, subscribed

from infra.platform import nats_users
from infra.platform.values import nats_config_merge
from workloads.vei.proto import vei_pb2
from workloads.vei.settings import NATS_MAX_PAYLOAD_BYTES, GatewaySettings, SinkSettings

EMPTY = empty_pb2.Empty()


def _users(tmp_path: Path) -> tuple[str, dict[str, Path]]:
    """The top-level nats.conf keys the program gives the chart (`config.merge`, which the chart writes
    into nats.conf as JSON), for a stack with every user, and each user's seed file (made per run)."""
    seeds, keys = {}, {}
    for user in nats_users.users(operator=True):
        seed = nats_users.seed_from_hex(os.urandom(nats_users.SEED_BYTES).hex())
        seeds[user] = tmp_path / f"{user}.nk"
        seeds[user].write_text(seed)
        keys[user] = nats_users.public_key(seed)
    merge = nats_config_merge(keys)
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in merge.items()), seeds


async def _violations(url: str, seed: Path, action: Callable[[Any], Any]) -> list[str]:
    """Runs `action(nc)` as the user of `seed` and returns the permission errors the server sent."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url, nkeys_seed=str(seed), error_cb=on_error, allow_reconnect=False)
    try:
        await action(nc)
        await nc.flush()
        await wait_until_async(lambda: errors, timeout_s=5, what="a permissions violation")
    finally:
        await nc.close()
    return errors


async def test_each_process_does_its_job_as_its_own_user(nats_server_factory: Callable[..., str],
                                                         tmp_path: Path) -> None:
    from workloads.vei.gateway import Gateway
    from workloads.vei.sink import run_sink

    config, seeds = _users(tmp_path)
    url = nats_server_factory(config=config)
    out = tmp_path / "sink.jsonl"
    stop, ready = asyncio.Event(), asyncio.Event()
    sink = asyncio.create_task(run_sink(SinkSettings(nats_urls=[url], out=str(out),
                                                     nats_nkey_seed_file=str(seeds["sink"])), stop, ready))
    await asyncio.wait_for(ready.wait(), 15)
    # kv, as the cluster's gateways run: their user may reach the registry buckets and nothing else.
    gw = Gateway(GatewaySettings(listen="127.0.0.1:0", nats_urls=[url], registry="kv",
                                 nats_nkey_seed_file=str(seeds["gateway"])))
    await gw.start()
    try:
        async with grpc.aio.insecure_channel(gw.address) as ch:
            vei, reliable = stubs(ch)
            sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="cam1", queueGroup="vision"))
            await subscribed(sub)

            async def vision() -> vei_pb2.ErrorResponse:
                async def results() -> Any:
                    async for img in sub:
                        yield vei_pb2.PubCloudParams(analyticsName="emu", analyticalOutput=["car"],
                                                     timestamp=img.timestamp, cloudProvider="local",
                                                     frameId=img.frameId, cameraID=img.cameraID)
                return await vei.PublishToCloud(results())

            vision_task = asyncio.create_task(vision())
            sent = [frame("cam1", i) for i in range(5)]
            acks = [ack async for ack in reliable.PublishImageAcked(frames(sent, gap_s=0.01))]
            sub.cancel()
            vision_task.cancel()
            assert sorted(a.frameId for a in acks) == sorted(f.frameId for f in sent)
            assert all(a.error == "" for a in acks), [a.error for a in acks]
            # The registry (JetStream KV) works under the gateway's permissions.
            await wait_until_async(lambda: _listed(vei), what="cam1 in the camera registry")
            assert (await vei.DeleteCamera(vei_pb2.CameraID(cameraID="cam1"))).errorMsg == ""
        assert sorted(r["frameId"] for r in read_jsonl(out)) == sorted(f.frameId for f in sent)
    finally:
        await gw.stop(grace=0)
        stop.set()
        await sink


async def _listed(vei: Any) -> bool:
    return "cam1" in list((await vei.ListCameras(EMPTY)).availableCams)


async def test_users_cannot_step_outside_their_permissions(nats_server_factory: Callable[..., str],
                                                           tmp_path: Path) -> None:
    config, seeds = _users(tmp_path)
    url = nats_server_factory(config=config)
    probe = await nats.connect(url, nkeys_seed=str(seeds["sink"]), allow_reconnect=False)
    assert probe.max_payload == NATS_MAX_PAYLOAD_BYTES  # room for the gateway's 4 MiB frames
    await probe.close()
    with pytest.raises(Exception, match="Authorization Violation"):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)

    async def read_frames(nc: Any) -> None:
        await nc.subscribe("vei.v1.frames.>")

    async def forge_frame(nc: Any) -> None:
        await nc.publish("vei.v1.frames.cam1", b"forged")

    async def delete_registry(nc: Any) -> None:
        await nc.publish("$JS.API.STREAM.DELETE.KV_vei_cameras", b"")

    for user, action in (("sink", read_frames), ("sink", forge_frame), ("operator", forge_frame),
                         ("sink", delete_registry), ("operator", delete_registry),
                         ("gateway", delete_registry)):
        errors = await _violations(url, seeds[user], action)
        assert any("permissions violation" in e.lower() for e in errors), (user, action.__name__, errors)


async def test_the_operator_user_can_measure_the_floor_and_probe_the_sink(
        nats_server_factory: Callable[..., str], tmp_path: Path) -> None:
    """What `edgerig run` does from the operator's machine against a stack, as the operator user."""
    from experiments.latency.floor import measure_floor
    from experiments.testbeds.readiness import sink_answers
    from workloads.vei.sink import run_sink

    config, seeds = _users(tmp_path)
    url = nats_server_factory(config=config)
    operator = str(seeds["operator"])
    floor = await measure_floor(url, samples=20, fps=200, payload_bytes=1000, nkeys_seed=operator)
    assert len(floor) == 20
    assert not await asyncio.to_thread(sink_answers, [url], 1.0, operator)  # no sink yet
    stop, ready = asyncio.Event(), asyncio.Event()
    sink = asyncio.create_task(run_sink(SinkSettings(nats_urls=[url], out=str(tmp_path / "sink.jsonl"),
                                                     nats_nkey_seed_file=operator), stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        assert await asyncio.to_thread(sink_answers, [url], 2.0, operator)
        assert not await asyncio.to_thread(sink_answers, [url], 1.0, None)  # anonymous: refused
    finally:
        stop.set()
        await sink
