"""A process supervisor that leaves nothing behind.

Every child gets its own process group (start_new_session), so stopping it also stops anything it
spawned. `Supervisor` is a context manager: on normal exit, on an exception, and on SIGINT/SIGTERM
(turned into `Interrupted` while the supervisor is active) it stops all children, newest first, with
SIGTERM and then SIGKILL, and removes the temp dirs it created.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from experiments.testbeds.journal import Journal


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while the supervisor was running children."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return []
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
    return members


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    """SIGKILL is delivered at once but a process takes a moment to die: a stop returns only when
    nothing of the group runs any more (bounded)."""
    deadline = time.monotonic() + timeout_s
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _unblock_signals() -> None:
    """In the child before exec: the mask is inherited, and a child must still get SIGTERM."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


class Supervisor:
    def __init__(self, log_dir: Path | None = None, stop_timeout_s: float = 5.0,
                 handle_signals: bool = True, journal: Journal | None = None) -> None:
        self.children: list[Child] = []
        self.handle_signals = handle_signals
        # Where a testbed records what it starts, so a sweep after a crash can remove it.
        self.journal = journal
        self.stop_timeout_s = stop_timeout_s
        self._temp_dirs: list[Path] = []
        self._log_dir = log_dir
        self._old_handlers: dict[int, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> Supervisor:
        if self._log_dir is None:
            self._log_dir = self.temp_dir("logs")
        self._log_dir.mkdir(parents=True, exist_ok=True)
        for signum in (signal.SIGINT, signal.SIGTERM) if self.handle_signals else ():
            with contextlib.suppress(ValueError):  # not the main thread: caller handles signals
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop_all()
        finally:
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)
            self._old_handlers.clear()
            for path in reversed(self._temp_dirs):
                shutil.rmtree(path, ignore_errors=True)
            self._temp_dirs.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Raise only once: a second Ctrl-C during cleanup must not abort the cleanup itself.
        for sig in self._old_handlers:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    # -- children --------------------------------------------------------------------------------
    def temp_dir(self, purpose: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"edgerig-{purpose}-"))
        self._temp_dirs.append(path)
        if self.journal is not None:
            self.journal.temp_dir_made(path)
        return path

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              ready: Callable[[], bool] | None = None, ready_timeout_s: float = 20.0) -> Child:
        assert self._log_dir is not None, "use Supervisor as a context manager"
        log_path = self._log_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        # A Ctrl-C between fork and bookkeeping would leak the child: hold the signals until it is listed.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            popen = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})}, preexec_fn=_unblock_signals,
            )
            child = Child(name, popen, log_path, log)
            self.children.append(child)
            if self.journal is not None:
                self.journal.process_started(popen.pid)
        except BaseException:
            log.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if ready is not None:
            self.wait_ready(child, ready, ready_timeout_s)
        return child

    def wait_ready(self, child: Child, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with code {child.popen.returncode} before it "
                                   f"became ready; its log ({child.log_path}):\n{child.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} was not ready within {timeout_s:.0f} s; its log "
                                   f"({child.log_path}):\n{child.log_tail()}")
            time.sleep(0.05)

    def stop(self, child: Child, sig: int = signal.SIGTERM) -> int | None:
        """Stop one child's whole process group: `sig`, then SIGKILL after the timeout."""
        if child.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(self.stop_timeout_s)
        # The leader may be gone while something it forked still holds the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(self.stop_timeout_s)
        _wait_group_gone(child.pid, self.stop_timeout_s)
        child._log.close()
        return child.popen.returncode

    def stop_all(self) -> None:
        for child in reversed(self.children):
            self.stop(child)
