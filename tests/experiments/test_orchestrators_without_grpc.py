"""Experiment orchestrators fork many children, and a process that has loaded gRPC can hang in gRPC's
fork handler (seen in the failover experiment). They must check readiness through
experiments.local.probe instead of importing gRPC themselves."""

from __future__ import annotations

import subprocess
import sys

ORCHESTRATORS = (
    "experiments.latency.run", "experiments.latency.throughput", "experiments.latency.system",
    "experiments.failover.run", "experiments.failover.cluster", "experiments.local.readiness",
)


def test_orchestrator_modules_do_not_load_grpc() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {ORCHESTRATORS!r}: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.'))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"orchestrator imports load gRPC: {out.strip()}"
