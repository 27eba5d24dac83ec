"""Shared fixtures: a real nats-server, an in-process VEI gateway, a local sink, and a factory for
gateway subprocesses. Every port is picked free at run time; everything started is stopped.

    nats_server            URL of a fresh nats-server with JetStream (nats://127.0.0.1:PORT)
    nats_server_factory    start_nats(**opts) -> URL, for tests needing more than one server
    local_sink             path of the JSONL file of an in-process local sink on `nats_server`
    gateway                a started in-process `Gateway` on `nats_server` (clouds: local);
                           `gateway.address` is HOST:PORT for grpc.aio.insecure_channel
    gateway_factory        async make_gateway(**settings) -> Gateway, for several replicas
    gateway_process        spawn(*args) -> (Popen, address) running `python -m workloads.vei.gateway`
    moto_iot               (endpoint, published()) of moto's AWS IoT data plane in its own process
    mosquitto_factory      start(config_lines, files) -> port of a mosquitto (auth, TLS, ...)
    mosquitto              port of a plain, anonymous mosquitto

Plain helpers live in tests/testkit.py (`from testkit import wait_serving`): importing them from
`conftest` is ambiguous, because tests/hosts has a conftest.py of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from workloads.vei import launch  # standard library only: grpc is not imported yet

# In-process gateways and clients run gRPC as the VEI processes do; its C core reads this at import,
# and testkit imports grpc.
for _key, _value in launch.GRPC_ENV.items():
    os.environ.setdefault(_key, _value)

from testkit import ROOT, free_port, stop_process, wait_for_port  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def no_local_image_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read a developer's build/images: the default build record is a path with nothing
    there (tests/infra and tests/images point at their own records)."""
    old = os.environ.get("EDGERIG_IMAGES_RECORD")
    os.environ["EDGERIG_IMAGES_RECORD"] = str(tmp_path_factory.mktemp("no-image-build") / "images.json")
    yield
    if old is None:
        os.environ.pop("EDGERIG_IMAGES_RECORD", None)
    else:
        os.environ["EDGERIG_IMAGES_RECORD"] = old


@pytest.fixture
def nats_server_factory() -> Iterator[Callable[..., str]]:
    """start_nats(extra_args=(), config=None, jetstream=True, port=None) -> URL, through the project's
    one NATS launcher. `config` is nats-server config text (e.g. 'max_payload: 8MB'); the server
    keeps NATS's own 1 MB max_payload otherwise. Servers and their store dirs are removed at
    teardown; `stop_nats(url)` kills one earlier (SIGKILL), e.g. to test failover."""
    from experiments.testbeds.nats import NatsServer, kill
    from experiments.testbeds.nats import start_nats as launch
    from experiments.testbeds.processes import Supervisor

    started: dict[str, NatsServer] = {}
    with Supervisor(handle_signals=False) as sup:

        def start_nats(extra_args: tuple[str, ...] = (), config: str | None = None, jetstream: bool = True,
                       port: int | None = None) -> str:
            server = launch(sup, name=f"nats-{len(started)}", jetstream=jetstream, extra=config or "",
                            port=port, max_payload=None, extra_args=extra_args)
            started[server.url] = server
            return server.url

        def stop_nats(url: str) -> None:
            kill(sup, started[url])

        start_nats.stop = stop_nats  # type: ignore[attr-defined]
        yield start_nats


@pytest.fixture
def nats_server(nats_server_factory: Callable[..., str]) -> str:
    return nats_server_factory()


@pytest.fixture
async def local_sink(nats_server: str, tmp_path: Path) -> AsyncIterator[Path]:
    from workloads.vei.settings import SinkSettings
    from workloads.vei.sink import run_sink

    out = tmp_path / "sink.jsonl"
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_sink(SinkSettings(nats_urls=[nats_server], out=str(out)), stop, ready))
    await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    yield out
    stop.set()
    await task


@pytest.fixture
async def gateway_factory(nats_server: str) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    from workloads.vei.gateway import Gateway
    from workloads.vei.settings import GatewaySettings

    gateways: list[Gateway] = []

    async def make_gateway(**settings: Any) -> Gateway:
        settings.setdefault("listen", "127.0.0.1:0")
        settings.setdefault("nats_urls", [nats_server])
        settings.setdefault("metrics_listen", "127.0.0.1:0")
        settings.setdefault("clouds", ["local"])
        gw = Gateway(GatewaySettings(**settings))
        await gw.start()
        gateways.append(gw)
        return gw

    yield make_gateway
    for gw in gateways:
        await gw.stop(grace=0.5)


@pytest.fixture
async def gateway(gateway_factory: Callable[..., Awaitable[Any]]) -> Any:
    return await gateway_factory()


@pytest.fixture
def gateway_process(nats_server: str) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    """spawn(*extra_args, env=None) -> (process, address): a gateway subprocess on `nats_server`.
    Wait for readiness with `await wait_serving(address)` (import it from conftest)."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(*extra_args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        address = f"127.0.0.1:{port}"
        spec = launch.gateway(listen=address, nats_urls=[nats_server], clouds=())
        proc = subprocess.Popen(
            [*spec.argv(), *extra_args],
            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc, address

    yield spawn
    for proc in procs:
        stop_process(proc, timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def moto_iot(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Callable[[], list[tuple[str, Any]]]]]:
    """(endpoint, published): moto's AWS IoT data plane in a process of its own
    (tests/vei/moto_iot_server.py), and a function returning every (topic, JSON payload) published to
    it so far. The gateway under test gets dummy credentials through this test's environment only."""
    import json
    import urllib.request

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "vei" / "moto_iot_server.py")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline() or "{}")
        if "endpoint" not in urls:
            raise RuntimeError(f"the moto emulator did not start (exit code {proc.wait(10)})")

        def published() -> list[tuple[str, Any]]:
            with urllib.request.urlopen(urls["published"], timeout=5) as reply:
                return [(topic, json.loads(payload)) for topic, payload in json.load(reply)]

        yield urls["endpoint"], published
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def mosquitto_factory() -> Iterator[Callable[..., int]]:
    """start(config_lines=(), files={}) -> port of a real mosquitto on 127.0.0.1. `config_lines` are
    extra mosquitto.conf lines (e.g. 'allow_anonymous false'); `files` are written beside the config
    first and '{dir}' in the lines names that folder (password files, certificates)."""
    procs: list[subprocess.Popen[bytes]] = []
    dirs: list[str] = []

    def start(config_lines: tuple[str, ...] = ("allow_anonymous true",),
              files: dict[str, str] | None = None) -> int:
        tmp = tempfile.mkdtemp(prefix="vei-mosquitto-")
        dirs.append(tmp)
        for name, text in (files or {}).items():
            (Path(tmp) / name).write_text(text)
        port = free_port()
        # `user root`: as root, mosquitto would otherwise switch to user mosquitto, who cannot read the
        # test's private temp folders (certificates, password files); it is ignored when not root.
        lines = ["user root", f"listener {port} 127.0.0.1", "persistence false",
                 *(line.replace("{dir}", tmp) for line in config_lines)]
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_for_port(port, proc)
        return port

    yield start
    for proc in procs:
        stop_process(proc)
    for tmp in dirs:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., int]) -> int:
    return mosquitto_factory()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.root` is the one way to say a test needs root: without it, such tests skip."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, mounts, chroot, image builds)")
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(skip)
