"""Free TCP ports and readiness probes for local processes."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel just handed out as free.

    Other test runs share this machine, so ports are never hard-coded. The small race between closing
    this socket and the child binding it is acceptable: the child's readiness check catches it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout_s: float, what: str,
               alive: Callable[[], bool] | None = None, interval_s: float = 0.05) -> None:
    """Poll `check` until it is true; fail fast if `alive` says the process already exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited before it became ready")
        time.sleep(interval_s)
    raise TimeoutError(f"{what} was not ready within {timeout_s:.0f} s")
