"""Cloud sinks against real services: the local sink process, a real mosquitto broker, and the
AWS IoT data plane emulated by moto's server (never live AWS)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import nats
import paho.mqtt.client as mqtt
import pytest
from google.protobuf import empty_pb2
from testkit import ROOT, free_port, stop_process, wait_until_async
from vei_support import frame, frames, metric, read_jsonl, spawn, stubs, subscribed

from workloads.vei import subjects
from workloads.vei.proto import vei_pb2
from workloads.vei.records import sink_stats
from workloads.vei.sinks.spec import CloudSpecError, parse_cloud_specs


def result(i: int, camera: str = "cam", provider: str = "local") -> vei_pb2.PubCloudParams:
    return vei_pb2.PubCloudParams(analyticsName="emu", analyticalOutput=["person", str(i)], timestamp=str(i),
                                  cloudProvider=provider, frameId=str(i), cameraID=camera,
                                  createdUnixNs=1000 + i, gatewayInUnixNs=2000 + i, visionDoneUnixNs=3000 + i)


async def collect_acks(nats_url: str, camera: str) -> tuple[Any, list[vei_pb2.FrameAck]]:
    nc = await nats.connect(nats_url)
    acks: list[vei_pb2.FrameAck] = []

    async def on_ack(msg: Any) -> None:
        acks.append(vei_pb2.FrameAck.FromString(msg.data))

    await nc.subscribe(subjects.ack(camera), cb=on_ack)
    await nc.flush()
    return nc, acks


# ---- local sink process ------------------------------------------------------------------------

async def test_local_sink_process_dedups_replies_and_writes_stats(nats_server: str, tmp_path: Path) -> None:
    out = tmp_path / "results" / "sink.jsonl"
    cmd = [sys.executable, "-m", "workloads.vei.sink", "--nats-url", nats_server, "--out", str(out)]
    nc = await nats.connect(nats_server)
    for generation in (1, 2):  # the second run appends and remembers what the first wrote
        proc = spawn(cmd, ROOT)
        try:
            async def ready() -> bool:
                try:
                    return (await nc.request(subjects.LOCAL_SINK, b"", timeout=0.2)).data == b"ready"
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    return False

            await wait_until_async(ready, 15, "the sink answering", interval_s=0.05)
            replies = [(await nc.request(subjects.LOCAL_SINK, result(i).SerializeToString(), timeout=2)).data
                       for i in (0, 1, 1, 2)]
            bad = await nc.request(subjects.LOCAL_SINK, b"\x0f", timeout=2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            stop_process(proc)
            assert proc.stderr is not None
            proc.stderr.close()
        if generation == 1:
            assert replies == [b"ok", b"ok", b"dup", b"ok"]
        else:
            assert replies == [b"dup", b"dup", b"dup", b"dup"]
        assert bad.data.startswith(b"malformed PubCloudParams")
        stats = json.loads(out.with_name("sink.jsonl.stats.json").read_text())
        expected = {"accepted": 3, "duplicates": 1} if generation == 1 else {"accepted": 0, "duplicates": 4}
        assert stats == expected
    await nc.close()
    lines = read_jsonl(out)
    assert [rec["frameId"] for rec in lines] == ["0", "1", "2"]
    rec = lines[2]
    assert set(rec) >= {"frameId", "cameraID", "createdUnixNs", "gatewayInUnixNs", "visionDoneUnixNs",
                        "sinkUnixNs", "analyticsName", "analyticalOutput"}
    assert (rec["createdUnixNs"], rec["gatewayInUnixNs"], rec["visionDoneUnixNs"]) == (1002, 2002, 3002)
    assert rec["analyticalOutput"] == ["person", "2"] and rec["sinkUnixNs"] > 0


async def test_gateway_pipelines_many_results_to_local_sink(gateway: Any, local_sink: Path) -> None:
    nc, acks = await collect_acks(gateway.settings.nats_urls[0], "bulk")
    n = 500
    async with grpc.aio.insecure_channel(gateway.address) as ch:
        vei, _ = stubs(ch)
        reply = await vei.PublishToCloud(frames([result(i, camera="bulk") for i in range(n)]))
    assert reply.errorMsg == ""
    with contextlib.suppress(TimeoutError):  # the assertion below says which are missing
        await wait_until_async(lambda: len(acks) == n, 5, f"{n} acks")
    await nc.close()
    assert sorted(int(a.frameId) for a in acks) == list(range(n))
    assert all(a.error == "" for a in acks)
    assert len(read_jsonl(local_sink)) == n


# ---- MQTT ------------------------------------------------------------------------------------------

class MqttListener:
    def __init__(self, port: int, topic: str, username: str = "", password: str = "") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="vei-test-listener")
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "test listener could not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_mqtt_sink_publishes_qos1_and_acks(gateway_factory: Any, mosquitto: int) -> None:
    listener = MqttListener(mosquitto, "vei/results")
    try:
        gw = await gateway_factory(clouds=[f"broker=mqtt://127.0.0.1:{mosquitto}/vei/results"])
        nc, acks = await collect_acks(gw.settings.nats_urls[0], "cam")
        async with grpc.aio.insecure_channel(gw.address) as ch:
            vei, _ = stubs(ch)
            reply = await vei.PublishToCloud(frames([result(i, provider="broker") for i in range(50)]))
        assert reply.errorMsg == ""
        with contextlib.suppress(TimeoutError):  # the assertions below say what is missing
            await wait_until_async(lambda: len(listener.messages) >= 50 and len(acks) >= 50, 5,
                                   "50 deliveries")
        await nc.close()
    finally:
        listener.close()
    assert sorted(int(a.frameId) for a in acks) == list(range(50))
    assert {topic for topic, _ in listener.messages} == {"vei/results"}
    payloads = sorted((json.loads(p) for _, p in listener.messages), key=lambda r: int(r["frameId"]))
    assert [p["frameId"] for p in payloads] == [str(i) for i in range(50)]
    assert payloads[7]["analyticalOutput"] == ["person", "7"] and payloads[7]["createdUnixNs"] == 1007


async def test_mqtt_broker_down_fails_the_result_not_the_gateway(gateway_factory: Any) -> None:
    dead = free_port()
    gw = await gateway_factory(clouds=[f"broker=mqtt://127.0.0.1:{dead}/vei/results"], sink_timeout_s=0.5)
    nc, acks = await collect_acks(gw.settings.nats_urls[0], "cam")
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        reply = await vei.PublishToCloud(frames([result(1, provider="broker")]))
        assert list((await vei.ListClouds(empty_pb2.Empty())).availClouds) == []  # cannot deliver now
    await wait_until_async(lambda: acks, 5, "the camera's error ack")
    await nc.close()
    assert "did not acknowledge (PUBACK) within 0.5 s" in reply.errorMsg
    assert [(a.frameId, "PUBACK" in a.error) for a in acks] == [("1", True)]


# ---- AWS IoT (moto) ----------------------------------------------------------------------------------

async def test_aws_iot_sink_publishes_to_emulator(gateway_factory: Any, moto_iot: Any) -> None:
    endpoint, published = moto_iot
    spec = f"aws=iot-data?region=eu-north-1&topic=vei/results&endpoint={endpoint}"
    gw = await gateway_factory(clouds=[spec])
    nc, acks = await collect_acks(gw.settings.nats_urls[0], "cam")
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        reply = await vei.PublishToCloud(frames([result(i, provider="aws") for i in range(20)]))
        await wait_until_async(lambda: len(acks) >= 20, what="20 acks")
    await nc.close()
    assert reply.errorMsg == ""
    ours = [payload for topic, payload in published() if topic == "vei/results"]
    # The emulator runs in its own process, so nothing is slow enough to be retried: one copy each.
    assert sorted(int(r["frameId"]) for r in ours) == list(range(20))
    by_id = {r["frameId"]: r for r in ours}
    assert by_id["3"]["cameraID"] == "cam" and by_id["3"]["visionDoneUnixNs"] == 3003
    assert sorted(int(a.frameId) for a in acks) == list(range(20))
    assert all(a.error == "" for a in acks)


async def test_aws_sink_without_credentials_says_how_to_fix(
        gateway_factory: Any, moto_iot: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    gw = await gateway_factory(clouds=[f"aws=iot-data?region=eu-north-1&topic=t&endpoint={moto_iot[0]}"])
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        reply = await vei.PublishToCloud(frames([result(1, provider="aws")]))
        clouds = list((await vei.ListClouds(empty_pb2.Empty())).availClouds)
    assert "no AWS credentials found; set AWS_ACCESS_KEY_ID" in reply.errorMsg
    assert clouds == []  # listed only once it could deliver


# ---- cloud specs -------------------------------------------------------------------------------------

def test_cloud_specs_parse() -> None:
    specs = parse_cloud_specs(["local", "b=mqtt://h:1884/a/b?qos=0",
                               "aws=iot-data?region=eu-north-1&topic=x&endpoint=http://h:5000"])
    assert [(s.name, s.kind) for s in specs] == [("local", "local"), ("b", "mqtt"), ("aws", "aws")]
    assert specs[2].params == {"region": "eu-north-1", "topic": "x", "endpoint": "http://h:5000"}


@pytest.mark.parametrize(("spec", "needle"), [
    ("mqtt", "needs a target"),
    ("bad name=local", "the provider name (before '=') must be"),
    ("m=mqtt://h:1883", "needs a host and a topic"),
    ("m=mqtt://user:pw@h:1883/t", "do not put credentials in the URL"),
    ("m=mqtt://h:1883/t?qos=2", "qos must be 0 or 1"),
    ("a=iot-data?topic=t", "iot-data needs region"),
    ("a=iot-data?region=r&topic=t&secret=x", "unknown option(s) secret"),
    ("x=kafka://h", "unknown target 'kafka://h'"),
    ("l=local?timeout=-1", "timeout must be a positive number"),
])
def test_bad_cloud_specs_are_explained(spec: str, needle: str) -> None:
    with pytest.raises(CloudSpecError) as err:
        parse_cloud_specs([spec])
    assert needle in str(err.value)


def test_duplicate_provider_names_rejected() -> None:
    with pytest.raises(CloudSpecError, match="configured twice: local"):
        parse_cloud_specs(["local", "local=local"])


def test_gateway_cli_rejects_bad_cloud_spec_before_starting() -> None:
    proc = subprocess.run([sys.executable, "-m", "workloads.vei.gateway", "--cloud", "a=iot-data?topic=t",
                           "--nats-url", "nats://127.0.0.1:1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ})
    assert proc.returncode == 2
    assert "iot-data needs region" in proc.stderr


# ---- the gateway's own file sink -----------------------------------------------------------------------

async def test_file_sink_records_and_acks_inside_the_gateway(gateway_factory: Any, tmp_path: Path) -> None:
    out = tmp_path / "results" / "sink.jsonl"
    gw = await gateway_factory(clouds=[f"local=file:{out}"])
    (tmp_path / "missing").write_text("a file, so no folder can be made here")
    broken = await gateway_factory(clouds=[f"broken=file:{tmp_path / 'missing' / 'y.jsonl'}"])
    async with grpc.aio.insecure_channel(gw.address) as ch, grpc.aio.insecure_channel(broken.address) as ch_b:
        vei, reliable = stubs(ch)
        vei_b, _ = stubs(ch_b)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="cam9", queueGroup="vision"))
        await subscribed(sub)

        async def results() -> Any:
            async for img in sub:
                yield vei_pb2.PubCloudParams(analyticsName="emu", analyticalOutput=["car"],
                                             cloudProvider="local", frameId=img.frameId,
                                             cameraID=img.cameraID, createdUnixNs=img.createdUnixNs)

        vision = vei.PublishToCloud(results())
        sent = [frame("cam9", i, size=100) for i in range(10)]
        acks = [a async for a in reliable.PublishImageAcked(frames(sent + sent[:3], gap_s=0.01))]
        sub.cancel()
        vision.cancel()
        clouds_b = list((await vei_b.ListClouds(empty_pb2.Empty())).availClouds)
        refused = await vei_b.PublishToCloud(frames([result(1, provider="broken")]))
    assert sorted(a.frameId for a in acks if not a.error) == sorted(f.frameId for f in sent + sent[:3])
    lines = read_jsonl(out)
    assert sorted(r["frameId"] for r in lines) == sorted(f.frameId for f in sent)  # resends not written twice
    # The duplicates are counted while the gateway still runs (a run reads them before tear-down).
    assert sink_stats(out)["duplicates"] == 3
    assert all(r["cameraID"] == "cam9" and r["sinkUnixNs"] >= r["createdUnixNs"] for r in lines)
    assert clouds_b == [] and "file sink 'broken': cannot open" in refused.errorMsg
    assert metric(gw, "vei_cloud_results_total", {"provider": "local", "outcome": "accepted"}) == 13


def test_file_sink_spec() -> None:
    assert parse_cloud_specs(["local=file:/var/lib/vei/results.jsonl"])[0].kind == "file"
    with pytest.raises(CloudSpecError, match="write file:PATH"):
        parse_cloud_specs(["local=file:"])
