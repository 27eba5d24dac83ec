"""The local process supervisor: process groups, readiness, cleanup on errors; the nats-server launcher."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import nats
import psutil
import pytest
from testkit import wait_until

from experiments.testbeds.nats import start_nats
from experiments.testbeds.ports import free_port, port_open
from experiments.testbeds.processes import Supervisor


def group_alive(pgid: int) -> list[int]:
    alive = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return alive


def test_exception_stops_children_and_grandchildren_and_removes_temp_dirs(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), Supervisor(log_dir=tmp_path / "logs") as sup:
        temp = sup.temp_dir("unit")
        # The shell forks a grandchild that would outlive a plain kill of the shell.
        child = sup.start("sleeper", ["sh", "-c", "sleep 300 & sleep 300"])
        pgid = child.pid
        wait_until(lambda: len(group_alive(pgid)) >= 2, 5, "the shell's grandchild", interval_s=0.02)
        raise RuntimeError("boom")
    assert not child.alive()
    assert group_alive(pgid) == []
    assert not temp.exists()
    assert (tmp_path / "logs" / "sleeper.log").exists()  # logs are kept for the results folder


def test_sigterm_ignoring_child_is_killed(tmp_path: Path) -> None:
    with Supervisor(log_dir=tmp_path, stop_timeout_s=0.5) as sup:
        child = sup.start("stubborn", [sys.executable, "-c",
                                       "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                       "print('up', flush=True); time.sleep(300)"],
                          ready=lambda: "up" in (tmp_path / "stubborn.log").read_text())
    assert child.popen.returncode == -9


def test_child_dying_before_ready_is_reported_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"exited with code 3 before it became ready(.|\n)*no config"), \
            Supervisor(log_dir=tmp_path) as sup:
        sup.start("broken", ["sh", "-c", "echo no config >&2; exit 3"], ready=lambda: False)


def test_readiness_timeout_names_the_process(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match="slow was not ready within 1 s"), \
            Supervisor(log_dir=tmp_path) as sup:
        sup.start("slow", ["sleep", "30"], ready=lambda: False, ready_timeout_s=1)


def test_nats_server_from_the_wheel_with_jetstream(tmp_path: Path) -> None:
    with Supervisor(log_dir=tmp_path) as sup:
        server = start_nats(sup)
        assert Path(server.child.popen.args[0]).parent == Path(sys.executable).parent  # type: ignore[index]
        assert server.monitor("varz")["jetstream"]["config"]["store_dir"]

        async def roundtrip() -> bytes:
            nc = await nats.connect(server.url)
            try:
                sub = await nc.subscribe("unit.test")
                await nc.flush()
                assert any(s["subject"] == "unit.test" for s in server.subscriptions())
                await nc.publish("unit.test", b"hi")
                msg = await sub.next_msg(timeout=2)
                return bytes(msg.data)
            finally:
                await nc.close()

        assert asyncio.run(roundtrip()) == b"hi"
        port = server.port
    assert not port_open("127.0.0.1", port)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536 and not port_open("127.0.0.1", port)


def test_children_get_sigterm_first(tmp_path: Path) -> None:
    # A graceful stop matters (the sink writes its stats on SIGTERM); SIGKILL is only the fallback.
    script = ("import signal, sys, time\n"
              "def bye(*_):\n    print('got SIGTERM', flush=True); sys.exit(0)\n"
              "signal.signal(signal.SIGTERM, bye); print('up', flush=True); time.sleep(300)\n")
    with Supervisor(log_dir=tmp_path) as sup:
        child = sup.start("polite", [sys.executable, "-c", script],
                          ready=lambda: "up" in (tmp_path / "polite.log").read_text())
        assert sup.stop(child) == 0
    assert "got SIGTERM" in (tmp_path / "polite.log").read_text()
