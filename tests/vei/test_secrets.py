"""Secrets and who may talk to whom: credentials never in a spec, a URL, an error or a log line;
MQTT with a password file and TLS; NATS with user/password, token, nkey and mutual TLS; the gateway's
optional token and mutual TLS. Every broker and server here is the real one, configured for auth."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import nkeys
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr
from testkit import ROOT, wait_serving, wait_until_async
from tls_support import make_ca, make_cert
from vei_support import frame, frames, stubs, subscribed, take

from workloads.vei import nats_conn
from workloads.vei.client import open_channel
from workloads.vei.proto import vei_pb2
from workloads.vei.settings import GatewayClientSettings, GatewaySettings, NatsSettings
from workloads.vei.sinks.spec import CloudSpecError, parse_cloud_spec

EMPTY = empty_pb2.Empty()


def fresh_secret() -> str:
    return "t" + secrets.token_hex(12)  # made per test run; never a realistic-looking fixture


def result(i: int, provider: str) -> vei_pb2.PubCloudParams:
    return vei_pb2.PubCloudParams(analyticsName="emu", analyticalOutput=["person"], timestamp=str(i),
                                  cloudProvider=provider, frameId=str(i), cameraID="cam")


def stop_and_read(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    return out.decode(errors="replace") + err.decode(errors="replace")


# ---- cloud specs ----------------------------------------------------------------------------------

SECRET = fresh_secret()


@pytest.mark.parametrize(("spec", "needle"), [
    (f"m=mqtt://vei:{SECRET}@h:1883/t", "do not put credentials in the URL"),
    (f"m=mqtt://vei:{SECRET}@h:1883", "do not put credentials in the URL"),
    (f"m=mqtts://vei:{SECRET}@h/t?ca=/x.pem", "do not put credentials in the URL"),
    (f"m=mqtt://h:1883/t?qos=1&password={SECRET}", "unknown option(s) password"),
    (f"a=iot-data?region=r&topic=t&secret={SECRET}", "unknown option(s) secret"),
    (f"a=iot-data?region=r&topic=t&endpoint=http://k:{SECRET}@h:5000", "must not hold credentials"),
    (f"x=kafka://u:{SECRET}@h", "unknown target 'kafka://***@h'"),
    (f"bad name=mqtt://u:{SECRET}@h/t", "provider name"),
    (f"m=mqtt://h:99999/t?token={SECRET}", "unknown option(s) token"),
])
def test_spec_errors_never_repeat_a_secret(spec: str, needle: str) -> None:
    with pytest.raises(CloudSpecError) as err:
        parse_cloud_spec(spec)
    assert needle in str(err.value)
    assert SECRET not in str(err.value)


def test_mqtts_spec_takes_a_ca_and_defaults_to_port_8883() -> None:
    from workloads.vei.sinks.spec import mqtt_target

    spec = parse_cloud_spec("b=mqtts://broker.lab/vei/results?ca=/etc/vei/ca.pem&qos=1")
    target = mqtt_target(spec)
    assert (target.host, target.port, target.topic, target.tls, target.ca_file) == (
        "broker.lab", 8883, "vei/results", True, "/etc/vei/ca.pem")
    with pytest.raises(CloudSpecError, match="unknown option"):
        parse_cloud_spec("b=mqtt://broker.lab/vei/results?ca=/etc/vei/ca.pem")  # ca= only with TLS


def test_gateway_cli_errors_never_repeat_a_secret() -> None:
    for args in (["--cloud", f"m=mqtt://vei:{SECRET}@127.0.0.1:1883/t", "--nats-url", "nats://127.0.0.1:1"],
                 ["--nats-url", f"nats://vei:{SECRET}@127.0.0.1:4222"]):
        proc = subprocess.run([sys.executable, "-m", "workloads.vei.gateway", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "credentials" in proc.stderr
        assert SECRET not in proc.stdout + proc.stderr


def test_secret_settings_come_from_files_and_never_show(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    password = fresh_secret()
    (tmp_path / "pw").write_text(password + "\n")
    monkeypatch.setenv("VEI_NATS_USER", "vei")
    monkeypatch.setenv("VEI_NATS_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("VEI_MQTT_USERNAME", "vei")
    monkeypatch.setenv("VEI_MQTT_PASSWORD_FILE", str(tmp_path / "pw"))
    s = GatewaySettings()
    assert s.nats_password is not None and s.nats_password.get_secret_value() == password
    assert s.mqtt_password is not None and s.mqtt_password.get_secret_value() == password
    assert password not in repr(s) and password not in str(s.model_dump())
    monkeypatch.setenv("VEI_NATS_PASSWORD", password)
    with pytest.raises(ValueError, match="either VEI_NATS_PASSWORD or VEI_NATS_PASSWORD_FILE") as err:
        GatewaySettings()
    assert password not in str(err.value)


# ---- MQTT with authentication and TLS --------------------------------------------------------------

@pytest.fixture
def mqtt_credentials(tmp_path: Path) -> tuple[str, str, Path]:
    """(user, password, mosquitto password file) made for this test."""
    password = fresh_secret()
    pwfile = tmp_path / "mosquitto.passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "vei", password], check=True,
                   capture_output=True)
    return "vei", password, pwfile


async def test_mqtt_with_password_file_delivers_and_wrong_password_names_authentication(
        mosquitto_factory: Callable[..., int], mqtt_credentials: tuple[str, str, Path],
        gateway_process: Any, tmp_path: Path) -> None:
    from test_sinks import MqttListener

    user, password, pwfile = mqtt_credentials
    port = mosquitto_factory(("allow_anonymous false", f"password_file {pwfile}"))
    listener = MqttListener(port, "vei/results", username=user, password=password)
    good_file, bad_file = tmp_path / "good", tmp_path / "bad"
    good_file.write_text(password)
    wrong = fresh_secret()
    bad_file.write_text(wrong)
    spec = f"broker=mqtt://127.0.0.1:{port}/vei/results"
    env = {"VEI_MQTT_USERNAME": user}
    good, good_addr = gateway_process("--cloud", spec, "--log-level", "DEBUG",
                                      env={**env, "VEI_MQTT_PASSWORD_FILE": str(good_file)})
    bad, bad_addr = gateway_process("--cloud", spec, "--log-level", "DEBUG",
                                    env={**env, "VEI_MQTT_PASSWORD_FILE": str(bad_file),
                                         "VEI_SINK_TIMEOUT_S": "1"})
    try:
        await wait_serving(good_addr)
        await wait_serving(bad_addr)
        async with grpc.aio.insecure_channel(good_addr) as ch_good, \
                grpc.aio.insecure_channel(bad_addr) as ch_bad:
            vei_good, _ = stubs(ch_good)
            vei_bad, _ = stubs(ch_bad)

            async def listed() -> bool:
                return list((await vei_good.ListClouds(EMPTY)).availClouds) == ["broker"]

            await wait_until_async(listed, what="the authenticated broker listed")
            ok = await vei_good.PublishToCloud(frames([result(i, "broker") for i in range(5)]))
            refused = await vei_bad.PublishToCloud(frames([result(9, "broker")]))
            bad_clouds = list((await vei_bad.ListClouds(EMPTY)).availClouds)
        await wait_until_async(lambda: len(listener.messages) >= 5, what="5 results at the broker")
    finally:
        listener.close()
    assert ok.errorMsg == ""
    assert sorted(json.loads(p)["frameId"] for _, p in listener.messages) == ["0", "1", "2", "3", "4"]
    assert "refused the connection" in refused.errorMsg and "authentication failed" in refused.errorMsg
    assert bad_clouds == []
    logs = stop_and_read(good) + stop_and_read(bad)
    for text in (logs, ok.errorMsg, refused.errorMsg):
        assert password not in text and wrong not in text


async def test_mqtts_verifies_the_broker_against_the_ca(mosquitto_factory: Callable[..., int],
                                                         gateway_factory: Any, tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "mqtt-ca")
    other_ca = make_ca(tmp_path, "other-ca")
    server = make_cert(tmp_path, ca, "broker")
    tls_port = mosquitto_factory(("allow_anonymous true", f"cafile {ca.cert}", f"certfile {server.cert}",
                                  f"keyfile {server.key}"))
    good = await gateway_factory(clouds=[f"tls=mqtts://127.0.0.1:{tls_port}/vei/results?ca={ca.cert}"])
    bad = await gateway_factory(clouds=[f"tls=mqtts://127.0.0.1:{tls_port}/vei/results?ca={other_ca.cert}"],
                                sink_timeout_s=1.0)
    async with grpc.aio.insecure_channel(good.address) as ch_good, \
            grpc.aio.insecure_channel(bad.address) as ch_bad:
        vei_good, _ = stubs(ch_good)
        vei_bad, _ = stubs(ch_bad)

        async def listed() -> bool:
            return list((await vei_good.ListClouds(EMPTY)).availClouds) == ["tls"]

        await wait_until_async(listed, what="the TLS broker connected")
        ok = await vei_good.PublishToCloud(frames([result(1, "tls")]))
        refused = await vei_bad.PublishToCloud(frames([result(2, "tls")]))
    assert ok.errorMsg == ""
    assert "TLS" in refused.errorMsg and "did not acknowledge" in refused.errorMsg


# ---- NATS with authentication and TLS ----------------------------------------------------------------

def _nats_settings(url: str, **auth: Any) -> NatsSettings:
    return NatsSettings(nats_urls=[url], nats_startup_timeout_s=5, **auth)


async def test_a_refusal_stays_the_reason_when_the_connection_is_then_reset() -> None:
    """nats-server answers a bad password with -ERR and closes; if the close arrives as a reset, the
    client sees a second error right after the first. The reason given must stay the refusal. A real
    nats-server does this only by chance (one CI run in many), so a scripted peer does it every time."""
    info = (b'INFO {"server_id":"scripted","version":"2.10.0","proto":1,"max_payload":1048576,'
            b'"auth_required":true}\r\n')

    async def refuse_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(info)
        await writer.drain()
        await reader.readline()  # CONNECT
        writer.write(b"-ERR 'Authorization Violation'\r\n")
        # SO_LINGER 0: close() sends RST, so the client reads the -ERR and then a reset connection
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(refuse_then_reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectionError) as err:
            await nats_conn.connect(_nats_settings(f"nats://127.0.0.1:{port}", nats_user="vei",
                                                   nats_password=SecretStr(fresh_secret())), "vei-test")
    finally:
        server.close()
        await server.wait_closed()
    reason = "the server refused the connection: nats: 'Authorization Violation'; check the NATS"
    assert reason in str(err.value)


async def test_nats_user_password_token_and_nkey(nats_server_factory: Callable[..., str],
                                                 tmp_path: Path) -> None:
    password, token = fresh_secret(), fresh_secret()
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    (tmp_path / "user.nk").write_bytes(seed)
    (tmp_path / "pw").write_text(password)
    users = nats_server_factory(config=f'authorization {{ users: [{{user: vei, password: "{password}"}}, '
                                       f'{{nkey: "{public}"}}] }}')
    tokened = nats_server_factory(config=f'authorization {{ token: "{token}" }}')
    for settings in (_nats_settings(users, nats_user="vei", nats_password_file=str(tmp_path / "pw")),
                     _nats_settings(users, nats_nkey_seed_file=str(tmp_path / "user.nk")),
                     _nats_settings(tokened, nats_token=SecretStr(token))):
        nc = await nats_conn.connect(settings, name="vei-test")
        got = await nc.subscribe("probe")
        await nc.publish("probe", b"x")
        assert (await got.next_msg(timeout=2)).data == b"x"
        await nats_conn.close(nc)
    with pytest.raises(ConnectionError) as err:
        wrong = _nats_settings(users, nats_user="vei", nats_password=SecretStr("wrong"))
        await nats_conn.connect(wrong, "vei-test")
    assert "refused the connection" in str(err.value) and "Authorization Violation" in str(err.value)
    assert password not in str(err.value)


async def test_gateway_and_sink_over_nats_mutual_tls(nats_server_factory: Callable[..., str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from workloads.vei.gateway import Gateway
    from workloads.vei.settings import SinkSettings
    from workloads.vei.sink import run_sink

    ca = make_ca(tmp_path, "nats-ca")
    server, client = make_cert(tmp_path, ca, "nats"), make_cert(tmp_path, ca, "vei-gateway")
    url = nats_server_factory(config=f'tls {{ cert_file: "{server.cert}", key_file: "{server.key}", '
                                     f'ca_file: "{ca.cert}", verify: true }}')
    tls = {"nats_tls_ca_file": str(ca.cert), "nats_tls_cert_file": str(client.cert),
           "nats_tls_key_file": str(client.key)}
    out = tmp_path / "sink.jsonl"
    stop, ready = asyncio.Event(), asyncio.Event()
    sink = asyncio.create_task(run_sink(SinkSettings(nats_urls=[url], out=str(out), **tls), stop, ready))
    await asyncio.wait_for(ready.wait(), 15)
    gw = Gateway(GatewaySettings(listen="127.0.0.1:0", nats_urls=[url], **tls))
    await gw.start()
    try:
        async with grpc.aio.insecure_channel(gw.address) as ch:
            vei, _ = stubs(ch)
            assert list((await vei.ListClouds(EMPTY)).availClouds) == ["local"]
            reply = await vei.PublishToCloud(frames([result(i, "local") for i in range(3)]))
        assert reply.errorMsg == ""

        def recorded() -> list[str]:
            lines = out.read_text().splitlines() if out.exists() else []
            return [json.loads(line)["frameId"] for line in lines]

        # Results with a frame go straight to the sink, which acks the camera; the call does not wait.
        await wait_until_async(lambda: len(recorded()) == 3, what="3 results recorded")
        assert sorted(recorded()) == ["0", "1", "2"]
    finally:
        await gw.stop(grace=0)
        stop.set()
        await sink
    without_cert = _nats_settings(url, nats_tls_ca_file=str(ca.cert))
    with pytest.raises(ConnectionError):
        await nats_conn.connect(without_cert, "vei-test")


# ---- the gateway's own token and mutual TLS ---------------------------------------------------------

async def test_gateway_token_guards_vei_calls_but_not_health(gateway_factory: Any) -> None:
    token = fresh_secret()
    gw = await gateway_factory(grpc_token=SecretStr(token))
    async with grpc.aio.insecure_channel(gw.address) as ch:
        vei, _ = stubs(ch)
        health = health_pb2_grpc.HealthStub(ch)
        checked = await health.Check(health_pb2.HealthCheckRequest())
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await vei.ListClouds(EMPTY)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "VEI_GRPC_TOKEN" in (err.value.details() or "") and token not in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await vei.ListClouds(EMPTY, metadata=(("authorization", "Bearer nope"),))
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="c"))
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            await sub.initial_metadata()
            async for _ in sub:
                pass
        assert streamed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The clients' channel adds the token from their settings, on every kind of call.
    channel = open_channel(gw.address, security=GatewayClientSettings(grpc_token=SecretStr(token)))
    async with channel:
        vei, _ = stubs(channel)
        assert list((await vei.ListClouds(EMPTY)).availClouds) == []
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="c"))
        await subscribed(sub)
        assert (await vei.PublishImage(frames([frame("c", 0)]))).errorMsg == ""
        assert [img.timestamp for img in await take(sub, 1)] == ["0"]
        sub.cancel()


async def test_gateway_mutual_tls(gateway_factory: Any, tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "grpc-ca")
    server, client = make_cert(tmp_path, ca, "gateway"), make_cert(tmp_path, ca, "camera")
    stranger = make_cert(tmp_path, make_ca(tmp_path / "x", "other-ca"), "stranger")
    gw = await gateway_factory(grpc_tls_cert_file=str(server.cert), grpc_tls_key_file=str(server.key),
                               grpc_client_ca_file=str(ca.cert))
    trusted = GatewayClientSettings(gateway_ca_file=str(ca.cert), gateway_cert_file=str(client.cert),
                                    gateway_key_file=str(client.key))
    async with open_channel(gw.address, security=trusted) as channel:
        vei, _ = stubs(channel)
        assert (await vei.PublishImage(frames([frame("c", 0)]))).errorMsg == ""
    for settings in (GatewayClientSettings(gateway_ca_file=str(ca.cert)),
                     GatewayClientSettings(gateway_ca_file=str(ca.cert), gateway_cert_file=str(stranger.cert),
                                           gateway_key_file=str(stranger.key))):
        async with open_channel(gw.address, security=settings) as channel:
            vei, _ = stubs(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await vei.ListClouds(EMPTY, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_settings_explain_half_configured_tls() -> None:
    with pytest.raises(ValueError, match="VEI_GATEWAY_CERT_FILE and VEI_GATEWAY_KEY_FILE go together"):
        GatewayClientSettings(gateway_ca_file=__file__, gateway_cert_file=__file__)
    with pytest.raises(ValueError, match="needs TLS: set VEI_GRPC_TLS_CERT_FILE"):
        GatewaySettings(grpc_client_ca_file=__file__)


async def test_gateway_stderr_never_shows_its_secrets(nats_server_factory: Callable[..., str],
                                                      tmp_path: Path) -> None:
    """At DEBUG, through a refused login, a wrong token and a clean shutdown, neither the NATS password
    nor the gateway token appears in anything the gateway prints."""
    from testkit import free_port

    from workloads.vei import launch

    password, token = fresh_secret(), fresh_secret()
    (tmp_path / "pw").write_text(password)
    (tmp_path / "token").write_text(token)
    url = nats_server_factory(config=f'authorization {{ users: [{{user: vei, password: "{password}"}}] }}')
    address = f"127.0.0.1:{free_port()}"
    spec = launch.gateway(listen=address, nats_urls=[url], log_level="DEBUG")
    env = {**os.environ, "VEI_NATS_USER": "vei", "VEI_NATS_PASSWORD_FILE": str(tmp_path / "pw"),
           "VEI_GRPC_TOKEN_FILE": str(tmp_path / "token")}
    proc = await asyncio.to_thread(subprocess.Popen, spec.argv(), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    try:
        await wait_serving(address)
        async with grpc.aio.insecure_channel(address) as ch:
            vei, _ = stubs(ch)
            with pytest.raises(grpc.aio.AioRpcError):
                await vei.ListClouds(EMPTY, metadata=(("authorization", "Bearer wrong"),))
            await vei.ListClouds(EMPTY, metadata=(("authorization", f"Bearer {token}"),))
    finally:
        output = stop_and_read(proc)
    wrong = {**env, "VEI_NATS_PASSWORD": password + "x", "VEI_NATS_PASSWORD_FILE": ""}
    refused = await asyncio.to_thread(subprocess.run, spec.argv(), cwd=ROOT, capture_output=True, text=True,
                                      timeout=60, check=False, env=wrong)
    assert refused.returncode == 1 and "Authorization Violation" in refused.stderr
    for text in (output, refused.stdout + refused.stderr):
        assert password not in text and token not in text
    assert "DEBUG" in output  # it did log at DEBUG
