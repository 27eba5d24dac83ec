"""Experiment orchestrators fork many children, and a process that has loaded gRPC can hang in gRPC's
fork handler (seen in the failover experiment). They must check readiness through
experiments.testbeds.probe instead of importing gRPC themselves; the stack testbed runs the
Automation API (which serves gRPC) in a process of its own for the same reason."""

from __future__ import annotations

import subprocess
import sys

ORCHESTRATORS = (
    "experiments.latency.run", "experiments.latency.throughput", "experiments.failover.run",
    "experiments.failover.cli", "experiments.runs.repeat", "experiments.testbeds.local",
    "experiments.testbeds.emulated", "experiments.testbeds.fleet.testbed", "experiments.testbeds.stack",
    "experiments.testbeds.readiness", "experiments.testbeds.sweep",
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
