"""Process-level behaviour: readiness via health, reflection, metrics over HTTP, graceful
SIGTERM, clients that vanish (SIGKILL), original-API wire compatibility, and NATS trouble."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from typing import Any

import grpc
import psutil
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from testkit import ROOT, CuttableProxy, free_port, wait_serving, wait_until_async
from vei_support import frame, frames, metric, spawn, stubs, subscribed, take

from workloads.vei.proto import vei_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_and_reflection(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "VEIv1_0.VEIv1_0", "VEIv1_0.VEIReliable"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == SERVING, service
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def ask() -> Any:
            yield reflection_pb2.ServerReflectionRequest(list_services="")
            yield reflection_pb2.ServerReflectionRequest(file_containing_symbol="VEIv1_0.VEIReliable")

        answers = [a async for a in refl.ServerReflectionInfo(ask())]
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"VEIv1_0.VEIv1_0", "VEIv1_0.VEIReliable", "grpc.health.v1.Health"} <= names
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in answers[1].file_descriptor_response.file_descriptor_proto]
    assert any(m.name == "FrameAck" for f in files for m in f.message_type)


async def test_reflection_can_be_turned_off(gateway_factory: Any) -> None:
    gw = await gateway_factory(grpc_reflection=False)
    async with grpc.aio.insecure_channel(gw.address) as ch:
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def ask() -> Any:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        with pytest.raises(grpc.aio.AioRpcError) as err:
            _ = [a async for a in refl.ServerReflectionInfo(ask())]
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert (await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())).status == SERVING


async def test_metrics_endpoint(gateway: Any) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        await vei.PublishImage(frames([frame("m1", i, size=100) for i in range(3)]))
    text = await asyncio.to_thread(_get, f"http://127.0.0.1:{gateway.metrics_port}/metrics")
    assert 'vei_frames_in_total{camera="m1"} 3.0' in text
    assert "vei_camera_to_gateway_seconds_bucket" in text
    assert "vei_active_streams" in text and "vei_errors_total" in text


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


async def test_sigterm_drains_in_flight_stream_and_exits_zero(gateway_process: Any) -> None:
    proc, address = gateway_process("--grace", "5")
    await wait_serving(address)
    async with grpc.aio.insecure_channel(address) as ch:
        vei, _ = stubs(ch)
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service="VEIv1_0.VEIv1_0"))
        assert (await watch.read()).status == SERVING
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="drain"))
        await subscribed(sub)
        terminated = asyncio.Event()

        async def camera() -> Any:
            for i in range(30):
                if i == 5:
                    proc.send_signal(signal.SIGTERM)
                    terminated.set()
                yield frame("drain", i, size=1000)
                await asyncio.sleep(0.03)  # the stream outlives the SIGTERM by ~0.75 s

        publish = vei.PublishImage(camera())
        await terminated.wait()
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        assert (await publish).errorMsg == ""  # the in-flight stream completed normally
        got = await take(sub, 30)  # and every one of its frames was delivered
        assert [g.frameId for g in got] == [f"drain-{i}" for i in range(30)]
        with pytest.raises(grpc.aio.AioRpcError):  # new calls are refused while shutting down
            await vei.ListCameras(empty_pb2.Empty(), timeout=2)
    assert await asyncio.to_thread(proc.wait, 15) == 0


async def test_sigterm_with_open_subscriber_still_exits_zero_after_grace(gateway_process: Any) -> None:
    proc, address = gateway_process("--grace", "0.5")
    await wait_serving(address)
    async with grpc.aio.insecure_channel(address) as ch:
        vei, _ = stubs(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="forever"))
        await subscribed(sub)
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in sub:
                pass
    assert await asyncio.to_thread(proc.wait, 15) == 0


async def test_sigterm_while_nats_is_down_still_exits_promptly(gateway_process: Any, nats_server: str,
                                                               nats_server_factory: Any) -> None:
    proc, address = gateway_process()
    await wait_serving(address)
    nats_server_factory.stop(nats_server)
    assert proc.stderr is not None
    reconnecting = asyncio.to_thread(_read_until, proc.stderr, b"disconnected from NATS, reconnecting")
    assert await asyncio.wait_for(reconnecting, 20)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0


def _read_until(stream: Any, text: bytes) -> bool:
    """Reads a process's output until a line holds `text` (True) or the output ends (False)."""
    return any(text in line for line in stream)


_VANISHING_CAMERA = """
import asyncio, grpc, time
from workloads.vei.proto import vei_pb2, vei_pb2_grpc
async def main():
    async with grpc.aio.insecure_channel("{address}") as ch:
        async def gen():
            i = 0
            while True:
                yield vei_pb2.PubImageParams(cameraID="gone", image=b"x" * 1000, frameId=str(i))
                i += 1
                await asyncio.sleep(0.01)
        call = vei_pb2_grpc.{stub}(ch).{method}(gen())
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        await call
asyncio.run(main())
"""

_VANISHING_SUBSCRIBER = """
import asyncio, grpc
from workloads.vei.proto import vei_pb2, vei_pb2_grpc
async def main():
    async with grpc.aio.insecure_channel("{address}") as ch:
        async for _ in vei_pb2_grpc.VEIv1_0Stub(ch).SubscribeImage(vei_pb2.SubImageParams(cameraID="gone")):
            await asyncio.sleep(1)  # slow, then killed mid-stream
asyncio.run(main())
"""


@pytest.mark.parametrize(("script", "rpc"), [
    (_VANISHING_CAMERA.replace("{stub}", "VEIv1_0Stub").replace("{method}", "PublishImage"), "PublishImage"),
    (_VANISHING_CAMERA.replace("{stub}", "VEIReliableStub").replace("{method}",
                                                                   "PublishImageAcked"), "PublishImageAcked"),
    (_VANISHING_SUBSCRIBER, "SubscribeImage"),
])
async def test_client_killed_mid_stream(gateway: Any, script: str, rpc: str) -> None:
    """SIGKILL a client process in the middle of its stream: only its call ends."""
    feeder = None
    if rpc == "SubscribeImage":  # keep frames flowing towards the subscriber while it dies
        ch = grpc.aio.insecure_channel(gateway.address)
        feeder = stubs(ch)[0].PublishImage(
            frames((frame("gone", i, size=20000) for i in range(10**6)), gap_s=0.005))
    proc = spawn([sys.executable, "-c", script.replace("{address}", gateway.address)], ROOT)
    try:
        await wait_until_async(lambda: metric(gateway, "vei_active_streams", {"rpc": rpc}) >= 1, timeout_s=30,
                               what=f"{rpc} stream open")
        flowing = "vei_frames_out_total" if rpc == "SubscribeImage" else "vei_frames_in_total"
        await wait_until_async(lambda: metric(gateway, flowing, {"camera": "gone"}) >= 3, timeout_s=30,
                               what=f"frames moving on {rpc}")  # killed mid-stream, not at its start
        proc.kill()
        await asyncio.to_thread(proc.wait)
        await wait_until_async(lambda: metric(gateway, "vei_active_streams", {"rpc": rpc}) == 0, timeout_s=30,
                               what=f"{rpc} stream cleaned up")
    finally:
        proc.kill()
        if proc.stderr:
            proc.stderr.close()
        if feeder is not None:
            feeder.cancel()
            await ch.close()
    async with grpc.aio.insecure_channel(gateway.address) as ch2:
        vei, _ = stubs(ch2)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="after"))
        await subscribed(sub)
        await vei.PublishImage(frames([frame("after", 0, size=10)]))
        assert len(await take(sub, 1)) == 1
        sub.cancel()


def _original_api() -> dict[str, Any]:
    """Message classes with ONLY the original VEI field numbers, in their own descriptor pool: what
    an unmodified VEI client compiled from the original proto sends and understands."""
    fdp = descriptor_pb2.FileDescriptorProto(name="original_vei.proto", package="VEIv1_0", syntax="proto3")
    field = descriptor_pb2.FieldDescriptorProto
    string, blob, optional = field.TYPE_STRING, field.TYPE_BYTES, field.LABEL_OPTIONAL
    for name, fields in (("PubImageParams", [("cameraID", 1, string), ("image", 2, blob),
                                             ("timestamp", 3, string)]),
                         ("SubImageParams", [("cameraID", 1, string)]),
                         ("ImageData", [("image", 1, blob), ("timestamp", 2, string), ("error", 3, string)]),
                         ("ErrorResponse", [("errorMsg", 1, string)])):
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype in fields:
            msg.field.add(name=fname, number=number, type=ftype, label=optional)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"VEIv1_0.{name}"))
            for name in ("PubImageParams", "SubImageParams", "ImageData", "ErrorResponse")}


async def test_original_client_wire_compatibility(gateway: Any) -> None:
    old = _original_api()
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        subscribe = ch.unary_stream("/VEIv1_0.VEIv1_0/SubscribeImage",
                                    request_serializer=old["SubImageParams"].SerializeToString,
                                    response_deserializer=old["ImageData"].FromString)
        publish = ch.stream_unary("/VEIv1_0.VEIv1_0/PublishImage",
                                  request_serializer=old["PubImageParams"].SerializeToString,
                                  response_deserializer=old["ErrorResponse"].FromString)
        sub = subscribe(old["SubImageParams"](cameraID="legacy"))
        await subscribed(sub)
        sent = [old["PubImageParams"](cameraID="legacy", image=bytes([i]) * 500, timestamp=f"t{i}")
                for i in range(3)]
        reply = await publish(frames(sent))
        got = await take(sub, 3)
        sub.cancel()
    assert reply.errorMsg == ""
    assert [(g.image, g.timestamp, g.error) for g in got] == [(s.image, s.timestamp, "") for s in sent]


async def test_frames_flow_without_jetstream_and_kv_lists_say_why(nats_server_factory: Any,
                                                                   gateway_factory: Any) -> None:
    """The kv registry is unavailable (no JetStream): publishing and subscribing must not notice."""
    gw = await gateway_factory(nats_urls=[nats_server_factory(jetstream=False)], registry="kv",
                               kv_timeout_s=0.3)
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="nokv"))
        await subscribed(sub)
        started = asyncio.get_running_loop().time()
        await vei.PublishImage(frames([frame("nokv", i, size=1000) for i in range(50)]))
        assert len(await take(sub, 50)) == 50
        assert asyncio.get_running_loop().time() - started < 2.0
        sub.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await vei.ListCameras(empty_pb2.Empty())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "NATS must run with JetStream (-js)" in (err.value.details() or "")


@pytest.mark.slow
async def test_gateway_survives_loss_of_its_nats_node(nats_server_factory: Any, gateway_factory: Any) -> None:
    """Two-node NATS cluster; the node the gateway uses is SIGKILLed mid-stream. The gateway
    reconnects to the other node and the stream goes on; frames published meanwhile are buffered."""
    ports = [free_port(), free_port()]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in ports)
    urls = [nats_server_factory(("--cluster_name", "vei", "-n", f"n{i}", "--cluster",
                                 f"nats://127.0.0.1:{ports[i]}", "--routes", routes), jetstream=False)
            for i in range(2)]
    gw = await gateway_factory(nats_urls=urls)
    first = gw._nc.connected_url.port
    victim = next(u for u in urls if u.endswith(f":{first}"))
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="fo"))
        await subscribed(sub)
        n = 100

        async def camera() -> Any:
            for i in range(n):
                if i == 30:
                    nats_server_factory.stop(victim)
                yield frame("fo", i, size=1000)
                await asyncio.sleep(0.01)

        publish = vei.PublishImage(camera())
        got = await take(sub, n, within_s=30)
        assert (await publish).errorMsg == ""
        sub.cancel()
    ids = [g.frameId for g in got]
    assert sorted(ids, key=lambda f: int(f.split("-")[1])) == [f"fo-{i}" for i in range(n)]
    assert gw._nc.connected_url.port != first


@pytest.mark.parametrize("flag", ["--listen", "--metrics-listen"])
def test_port_in_use_is_a_clear_start_up_error(nats_server: str, flag: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        args = ["--listen", f"127.0.0.1:{free_port()}", "--metrics-listen", f"127.0.0.1:{free_port()}"]
        args[args.index(flag) + 1] = taken
        cmd = [sys.executable, "-m", "workloads.vei.gateway", "--nats-url", nats_server, *args]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{taken}" in proc.stderr and "choose another" in proc.stderr


def test_no_nats_reachable_is_a_clear_start_up_error() -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "workloads.vei.gateway", "--listen", "127.0.0.1:0",
                           "--nats-url", dead], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "VEI_NATS_STARTUP_TIMEOUT_S": "1.5"})
    assert proc.returncode == 1
    assert f"cannot connect to any NATS server ({dead}): none answered within 1.5 s" in proc.stderr
    assert proc.stderr.count("Connect call failed") <= 2  # retries are not logged one by one


async def test_sigterm_while_still_connecting_exits_zero() -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "workloads.vei.gateway", "--listen", "127.0.0.1:0", "--nats-url", dead]
    proc = spawn(cmd, ROOT)
    try:
        assert proc.stderr is not None
        # The first failed attempt is logged once the gateway is up and retrying (handlers installed).
        line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), 30)
        assert b"NATS error" in line and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        proc.kill()
        if proc.stderr:
            proc.stderr.close()


async def test_edgerig_cli_starts_the_gateway(nats_server: str) -> None:
    """`edgerig vei gateway ...` passes its arguments through to the gateway unchanged."""
    address = f"127.0.0.1:{free_port()}"
    proc = spawn([sys.executable, "-m", "experiments", "vei", "gateway", "--listen", address,
                  "--nats-url", nats_server, "--cloud", "local"], ROOT)
    try:
        await wait_serving(address, within_s=30)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        proc.kill()
        if proc.stderr:
            proc.stderr.close()


async def test_unacknowledged_data_bound_on_client_connections_is_the_keepalive(
        gateway_factory: Any) -> None:
    """A cut-off client stops acknowledging what the gateway sends it: gRPC sets TCP_USER_TIMEOUT
    to the keepalive timeout, so the kernel drops such a connection after grpc_keepalive_s, without
    any ping. That is what lets the idle ping be rare."""
    gateway = await gateway_factory(grpc_keepalive_s=1.5)
    port = int(gateway.address.rsplit(":", 1)[1])
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        await channel.channel_ready()
        accepted = [c for c in psutil.Process().net_connections("tcp")
                    if c.laddr and c.laddr.port == port and c.raddr and c.status == psutil.CONN_ESTABLISHED]
        assert accepted, "the gateway's side of the client connection not found"
        with socket.socket(fileno=os.dup(accepted[0].fd)) as sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 1500


@pytest.mark.slow
async def test_silently_dead_idle_subscriber_is_dropped_by_the_idle_ping(gateway_factory: Any) -> None:
    """A vision replica whose node is cut sends no RST. While no frame flows, nothing is left
    unacknowledged, so only the idle ping notices (every grpc_idle_ping_s, answered within
    grpc_keepalive_s); this proxy keeps TCP alive and swallows the ping."""
    gateway = await gateway_factory(grpc_idle_ping_s=1.0)
    port = int(gateway.address.rsplit(":", 1)[1])
    proxy = CuttableProxy(port)
    via_proxy = await proxy.start()
    channel = grpc.aio.insecure_channel(via_proxy)
    try:
        api, _ = stubs(channel)
        call = api.SubscribeImage(vei_pb2.SubImageParams(cameraID="cam-cut", queueGroup="vision"))
        await subscribed(call)
        assert metric(gateway, "vei_active_streams", {"rpc": "SubscribeImage"}) == 1
        proxy.cut()
        # idle ping 1 s + ping timeout 1 s: about 2 s; gRPC's 60 s default ping timeout would not
        # make it within the wait.
        await wait_until_async(lambda: metric(gateway, "vei_active_streams", {"rpc": "SubscribeImage"}) == 0,
                               timeout_s=10, what="the dead subscriber dropped")
    finally:
        await channel.close(None)
        await proxy.close()


async def test_gateway_serves_only_once_its_nats_server_has_rejoined_the_cluster(
        nats_server_factory: Any) -> None:
    """A gateway whose NATS server has no route to its cluster yet (it came back first) must not
    report SERVING: frames published through that server would reach no subscriber elsewhere."""
    from workloads.vei.gateway import Gateway
    from workloads.vei.settings import GatewaySettings

    ports = {"a": free_port(), "b": free_port()}

    def cluster(me: str, other: str) -> str:
        return (f'cluster {{ name: "vei-test", listen: "127.0.0.1:{ports[me]}", '
                f'routes: ["nats-route://127.0.0.1:{ports[other]}"] }}')

    url_a = nats_server_factory(config=cluster("a", "b"))
    gw = Gateway(GatewaySettings(listen="127.0.0.1:0", nats_urls=[url_a], nats_join_timeout_s=60))
    starting = asyncio.create_task(gw.start())
    try:
        # A clustered JetStream cannot elect a leader alone: for 2 s nothing may report SERVING.
        done, _ = await asyncio.wait({starting}, timeout=2.0)
        assert not done, "SERVING before the NATS server had any route"
        nats_server_factory(config=cluster("b", "a"))
        await asyncio.wait_for(starting, 45)
        await wait_serving(gw.address, within_s=5)
    finally:
        if not starting.done():
            starting.cancel()
        await gw.stop(grace=0)
