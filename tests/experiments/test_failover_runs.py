"""Real failover runs on a 3-node emulated cluster: real nats-server cluster, gateways, vision apps,
camera and sink in network namespaces. And: nothing is left behind, even when a run fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from experiments.failover import cleanup, netns
from experiments.failover.run import RunConfig, run_once

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates network namespaces and a bridge: needs root"),
]

# Short phases: the node with everything fails and comes back after 2 s.
FAST = RunConfig(nodes=3, warmup_s=2.0, baseline_s=3.0, down_for_s=2.0, margin_s=2.0, cap_s=20.0)
SUMMARY_FIELDS = {
    "outage_s", "lost", "duplicates_delivered", "duplicates_suppressed", "camera_dropped_overflow",
    "recovery_s", "settled_s", "baseline_p50_ms", "baseline_p95_ms", "fault_unix_ns", "fault_at_s",
    "scenario", "fault", "node", "targets_met",
}


def leftovers(run_dir: Path) -> list[str]:
    found = [f"netns {n}" for n in netns.list_namespaces() if n.startswith(netns.NS_PREFIX)]
    if netns.link_exists(netns.BRIDGE):
        found.append(f"bridge {netns.BRIDGE}")
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["pid"] != os.getpid() and ("10.231.0." in cmd or str(run_dir) in cmd):
            found.append(f"process {proc.info['pid']}: {cmd[:120]}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "cut"])
def test_failover_run_loses_nothing(fault: str, tmp_path: Path) -> None:
    summary = run_once(FAST, "all", fault, tmp_path)
    assert summary.keys() >= SUMMARY_FIELDS
    assert summary["scenario"] == "all" and summary["fault"] == fault and summary["node"] == "n1"
    assert summary["node_components"] == ["gateway", "nats", "vision"]
    assert summary["sent"] > 50
    assert summary["lost"] == 0, summary["lost_ids"]
    assert summary["duplicates_delivered"] == 0
    assert summary["camera_dropped_overflow"] == 0
    assert summary["outage_s"] is not None and summary["recovery_s"] is not None
    assert summary["baseline_p50_ms"] <= summary["baseline_p95_ms"]
    if fault == "kill":
        assert summary["killed_pids"] == 3  # its NATS server, gateway and vision app
    assert (tmp_path / "summary.json").is_file() and (tmp_path / "latency.png").stat().st_size > 0
    assert leftovers(tmp_path) == []


class Boom(RuntimeError):
    pass


@pytest.mark.slow
def test_a_run_that_fails_mid_way_leaves_nothing(tmp_path: Path) -> None:
    def fail_after_fault(stage: str) -> None:
        if stage == "faulted":
            assert leftovers(tmp_path), "the run should be up at this point"
            raise Boom("injected failure")

    with pytest.raises(Boom):
        run_once(FAST, "all", "cut", tmp_path, hook=fail_after_fault)
    assert leftovers(tmp_path) == []


def test_cleanup_removes_what_a_crashed_run_left(tmp_path: Path) -> None:
    node = netns.make_nodes(1)[0]
    with cleanup.run_lock():
        cleanup.sweep_all()
        netns.build([node])
    # A process in the node and one in the root namespace, as a crashed run would leave them.
    in_node = subprocess.Popen([*node.exec_prefix(), "sleep", "300"], start_new_session=True)
    # tmp_path in its argv ($0) lets leftovers() recognise it
    in_root = subprocess.Popen(["sh", "-c", "sleep 300", str(tmp_path)], start_new_session=True)
    cleanup.remember_root_pid(in_root.pid)
    try:
        result = subprocess.run([sys.executable, "-m", "experiments", "run", "failover", "--cleanup"],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "netns erf-n1" in result.stdout and "bridge erfbr0" in result.stdout
        assert in_node.wait(5) == -9 and in_root.wait(5) == -9
        assert leftovers(tmp_path) == []
    finally:
        for proc in (in_node, in_root):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
