"""Leave nothing behind: one run at a time, a startup sweep, and cleanup on every exit path.

- A lock file makes runs exclusive: the sweep removes every `erf-*` namespace, so it must never run
  while another run is using them.
- Processes in node namespaces die with the sweep (`ip netns pids`). Processes in the root namespace
  (camera, sink) are recorded with their start time in a state file, so a sweep after a crashed run
  kills exactly them and never an unrelated process that reused the pid.
- `session()` sweeps before building, and sweeps again on normal exit, on an exception, on
  SIGINT/SIGTERM (the supervisor turns them into an exception) and, via atexit, on sys.exit.
  Only SIGKILL of the orchestrator skips it; the next run's startup sweep (or `--cleanup`) then does it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

import psutil

from experiments.failover import netns

STATE_DIR = Path("/run/edgerig-failover")
LOCK_PATH = STATE_DIR / "lock"
ROOT_PIDS = STATE_DIR / "root-pids.json"
# What Supervisor.temp_dir("failover") names a run's NATS configs and JetStream stores.
TEMP_DIR_PREFIX = "edgerig-failover-"


class BusyError(RuntimeError):
    pass


class NotRootError(PermissionError):
    pass


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRootError("the failover experiment creates network namespaces and needs root: "
                           "run it with sudo (or as root)")


@contextlib.contextmanager
def run_lock() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = open(LOCK_PATH, "a+")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise BusyError(f"another failover run holds {LOCK_PATH} (pid {handle.read().strip() or '?'}); "
                            "wait for it to finish, or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


def remember_root_pid(pid: int) -> None:
    """Record a root-namespace process so a later sweep can find it after a crash."""
    entries = _read_root_pids()
    with contextlib.suppress(psutil.Error):
        entries.append([pid, psutil.Process(pid).create_time()])
    ROOT_PIDS.write_text(json.dumps(entries))


def _read_root_pids() -> list[list[float]]:
    try:
        data = json.loads(ROOT_PIDS.read_text())
    except (OSError, ValueError):
        return []
    return [e for e in data if isinstance(e, list) and len(e) == 2]


def kill_recorded_root_processes() -> list[int]:
    killed: list[int] = []
    for pid, started in _read_root_pids():
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(int(pid))
            if abs(proc.create_time() - started) < 0.01:
                # start_new_session made each one a group leader: take its children too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(pid), signal.SIGKILL)
                killed.append(int(pid))
    with contextlib.suppress(FileNotFoundError):
        ROOT_PIDS.unlink()
    return killed


def remove_stale_temp_dirs() -> list[str]:
    """A SIGKILLed run cannot remove its temp dir. Under run_lock() no other run owns one, and a live
    run's supervisor removes its own before the final sweep, so every match here is stale."""
    removed = []
    for path in sorted(Path(tempfile.gettempdir()).glob(f"{TEMP_DIR_PREFIX}*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"temp dir {path}")
    return removed


def sweep_all() -> list[str]:
    """Remove everything a run (even a crashed one) may have left; call only under run_lock()."""
    removed = [f"pid {p}" for p in kill_recorded_root_processes()]
    return removed + netns.sweep() + remove_stale_temp_dirs()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the finally blocks below; the default action would not.
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def session(nodes: Sequence[netns.Node]) -> Iterator[list[str]]:
    """Exclusive, clean emulated network for one run; yields what the startup sweep removed."""
    require_root()
    with run_lock():
        stale = sweep_all()
        atexit.register(sweep_all)
        old_handler = None
        with contextlib.suppress(ValueError):  # not the main thread: the caller handles signals
            old_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            netns.build(nodes)
            yield stale
        finally:
            sweep_all()
            atexit.unregister(sweep_all)
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
