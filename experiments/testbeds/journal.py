"""What a live testbed has made, on disk, so that a crash leaves nothing behind for long.

Every testbed that is up keeps a journal file in the state directory: its owner process, every
process it started (pid and start time, so a reused pid is never hit), every temp dir, and what its
kind needs for teardown (a namespace prefix, a fleet state dir, a stack name). A clean `down()`
deletes the journal. A SIGKILLed orchestrator cannot, so the next testbed of the same kind, a
campaign start, or `edgerig testbed sweep` reads the journals whose owner is gone and removes what
they list. Locks make the networked kinds exclusive on this machine.

State directory: $EDGERIG_STATE_DIR, else /run/edgerig/testbeds as root, else
$XDG_RUNTIME_DIR/edgerig/testbeds, else ~/.cache/edgerig/testbeds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil


class BusyError(RuntimeError):
    """Another live testbed of the same kind holds this machine's network."""


def state_dir() -> Path:
    if env := os.environ.get("EDGERIG_STATE_DIR"):
        base = Path(env)
    elif os.geteuid() == 0:
        base = Path("/run/edgerig/testbeds")
    elif xdg := os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(xdg) / "edgerig" / "testbeds"
    else:
        base = Path.home() / ".cache" / "edgerig" / "testbeds"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def same_process(pid: int, started: float) -> bool:
    now = _start_time(pid)
    return now is not None and abs(now - started) < 0.01


@dataclass
class Journal:
    """The on-disk record of one live testbed."""

    kind: str
    owner_pid: int
    owner_started: float
    processes: list[list[float]] = field(default_factory=list)   # [pid, create_time]
    temp_dirs: list[str] = field(default_factory=list)
    teardown: dict[str, Any] = field(default_factory=dict)      # kind-specific (see sweepers)
    path: Path = field(default=Path(), repr=False)

    @classmethod
    def open(cls, kind: str, teardown: dict[str, Any] | None = None) -> Journal:
        pid = os.getpid()
        journal = cls(kind, pid, _start_time(pid) or 0.0, teardown=dict(teardown or {}))
        journal.path = state_dir() / f"{kind}-{pid}-{id(journal):x}.json"
        journal.save()
        return journal

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def process_started(self, pid: int) -> None:
        started = _start_time(pid)
        if started is not None:
            self.processes.append([pid, started])
            self.save()

    def temp_dir_made(self, path: Path) -> None:
        self.temp_dirs.append(str(path))
        self.save()

    def close(self) -> None:
        """A clean teardown: nothing is left to sweep."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def owner_alive(self) -> bool:
        return same_process(self.owner_pid, self.owner_started)


def _read(path: Path) -> Journal | None:
    try:
        data = json.loads(path.read_text())
        journal = Journal(**data)
    except (OSError, ValueError, TypeError):
        return None
    journal.path = path
    return journal


def kill_recorded(journal: Journal) -> list[str]:
    """SIGKILL the recorded processes that are still the same process (and their groups)."""
    killed = []
    for pid, started in journal.processes:
        if same_process(int(pid), started):
            # The supervisor made each one a group leader: take what it spawned too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
            killed.append(f"pid {int(pid)}")
    return killed


def remove_temp_dirs(journal: Journal) -> list[str]:
    removed = []
    for path in journal.temp_dirs:
        if Path(path).exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"temp dir {path}")
    return removed


# kind -> function that removes the kind-specific leftovers named by a dead journal's `teardown`
Sweeper = Callable[[dict[str, Any]], list[str]]
SWEEPERS: dict[str, Sweeper] = {}


def register_sweeper(kind: str, sweeper: Sweeper) -> None:
    SWEEPERS[kind] = sweeper


def stale_journals(kind: str | None = None) -> list[Journal]:
    found = []
    for path in sorted(state_dir().glob("*.json")):
        journal = _read(path)
        if journal is not None and (kind is None or journal.kind == kind) and not journal.owner_alive():
            found.append(journal)
    return found


def sweep_stale(kind: str | None = None) -> list[str]:
    """Remove everything that testbeds whose owner died left behind; returns what was removed."""
    removed: list[str] = []
    for journal in stale_journals(kind):
        removed += kill_recorded(journal)
        sweeper = SWEEPERS.get(journal.kind)
        if sweeper is not None:
            removed += sweeper(journal.teardown)
        removed += remove_temp_dirs(journal)
        journal.close()
    return removed


def live_journals(kind: str | None = None) -> list[Journal]:
    out = []
    for path in sorted(state_dir().glob("*.json")):
        journal = _read(path)
        if journal is not None and (kind is None or journal.kind == kind) and journal.owner_alive():
            out.append(journal)
    return out


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """One holder at a time of a machine-wide resource (e.g. the emulated network's names)."""
    path = state_dir() / f"{name}.lock"
    handle: IO[str] = open(path, "a+")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise BusyError(f"another {name} testbed holds {path} (pid {handle.read().strip() or '?'}); "
                            "wait for it to finish, or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock
