"""Readiness checks for experiment orchestrators, which must not load gRPC themselves (see
experiments/local/probe.py for why): the gRPC health check runs in a probe process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from experiments.local.supervisor import Child


def wait_gateways_serving(children: Sequence[Child], endpoints: Sequence[str],
                          timeout_s: float = 30.0) -> None:
    """Block until every gateway answers Check("") with SERVING (their readiness contract), checked
    from a probe process so the caller never loads gRPC. On timeout the error carries the children's
    log tails, which is where the reason is."""
    probe = subprocess.run([sys.executable, "-m", "experiments.local.probe", "--timeout", str(timeout_s),
                            *endpoints],
                           capture_output=True, text=True, timeout=timeout_s + 30, check=False)
    if probe.returncode != 0:
        logs = "\n".join(f"{c.name} ({'running' if c.alive() else f'exited {c.popen.returncode}'}):\n"
                         f"{c.log_tail()}" for c in children)
        raise TimeoutError(f"gateways not ready: {probe.stderr.strip() or probe.stdout.strip()}\n{logs}")
