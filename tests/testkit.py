"""Plain test helpers shared across test folders (fixtures stay in conftest.py files).

Import them by module name: `from testkit import wait_serving`. pytest puts tests/ on sys.path.
Helpers of one test folder live beside its tests as `<topic>_support.py` (vei_support, hosts_support,
stack_support, automation_support for the Pulumi engine's stand-in, ...); wrappers of outside
programs are named after the program (podman_cli).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from experiments.testbeds.nats import nats_server_binary
from experiments.testbeds.ports import free_port, port_open, wait_until

__all__ = [
    "NATS_SERVER", "ROOT", "TOKEN", "CuttableProxy", "assert_nothing_left", "edgerig", "free_port",
    "marked_processes", "run_env", "stop_process", "wait_for_port", "wait_serving", "wait_until",
    "wait_until_async",
]

ROOT = Path(__file__).resolve().parents[1]
# The suite's one fake K3s/KubeEdge token: long enough for the model's check, obviously not a secret.
TOKEN = "test-only-" + "0" * 32
NATS_SERVER = nats_server_binary()


def marked_processes(marker: str) -> list[psutil.Process]:
    """Processes started by one CLI run: every child inherits the run's marker environment variable."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("EDGERIG_TEST_RUN") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def run_env(tmp_path: Path) -> tuple[dict[str, str], str, Path]:
    """Environment for a CLI run under test: a marker its processes inherit, and its own TMPDIR."""
    marker = uuid.uuid4().hex
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {**os.environ, "EDGERIG_TEST_RUN": marker, "TMPDIR": str(tmp)}, marker, tmp


def edgerig(args: Sequence[str], env: dict[str, str],
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The `edgerig` command line, run from the checkout in its own process (output captured)."""
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_nothing_left(marker: str, tmp: Path) -> None:
    """No process of the run is alive and its TMPDIR is empty (waits up to 5 s for exits)."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not marked_processes(marker), 5, "the run's processes to exit")
    left = [(p.pid, p.name()) for p in marked_processes(marker)]
    assert not left, f"processes left behind: {left}"
    assert not list(tmp.iterdir()), f"temp dirs left behind: {list(tmp.iterdir())}"


async def wait_until_async(check: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition",
                           interval_s: float = 0.02) -> None:
    """wait_until (the project's, experiments.testbeds.ports) for async tests: `check` may return an
    awaitable, and the wait yields to the event loop between checks."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(interval_s)
    raise TimeoutError(f"{what} was not reached within {timeout_s:g} s")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    wait_until(lambda: port_open("127.0.0.1", port), timeout, f"process {proc.pid} (port {port})",
               alive=lambda: proc.poll() is None)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_serving(address: str, within_s: float = 15.0, service: str = "") -> None:
    """Waits until the gateway's health service reports SERVING (the readiness contract)."""
    deadline = time.monotonic() + within_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway at {address} not SERVING after {within_s} s")
            await asyncio.sleep(0.05)


class CuttableProxy:
    """TCP proxy that can go silent: after cut() it forwards nothing and closes nothing (no RST, no
    FIN), so only the gRPC keepalive can tell the client that the replica is gone. (A real cable cut
    also stops TCP ACKs; that case is covered by the failover experiment's `cut` fault in netns.)"""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_event = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        self.cut_event.set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self.cut_event.is_set():
                continue  # swallow everything from now on (keep reading, so no zero window either)
            writer.write(data)
            await writer.drain()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_event.is_set():
            await asyncio.Event().wait()  # a new connection to a dead host hangs as well
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
