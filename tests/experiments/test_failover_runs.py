"""Real failover runs on a 3-node emulated cluster: real nats-server cluster, gateways, vision apps,
camera and sink in network namespaces. And: nothing is left behind, even when a run fails.

Runs go through the CLI in a subprocess, as a user runs them; this also keeps the many forks of the
orchestrator out of the pytest process, where other tests have loaded gRPC (see
experiments/testbeds/probe.py).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from testkit import wait_until

from experiments.testbeds import journal, netns
from experiments.testbeds.emulated import NETWORK

pytestmark = [pytest.mark.root]  # network namespaces and a bridge

# Short phases: the node with everything (the only scenario 3 nodes fit) fails for 2 s.
FAST = ["--nodes", "3", "--scenario", "all", "--warmup", "2", "--baseline", "3", "--down-for", "2",
        "--margin", "2", "--cap", "20"]
SUMMARY_FIELDS = {
    "outage_s", "lost", "duplicates_delivered", "duplicates_suppressed", "camera_dropped_overflow",
    "recovery_s", "settled_s", "baseline_p50_ms", "baseline_p95_ms", "fault_unix_ns", "fault_at_s",
    "scenario", "fault", "node", "targets_met",
}


def failover_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments", "run", "failover", *args]


def leftovers(out: Path) -> list[str]:
    found = netns.leftovers(NETWORK)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "10.231.0." in cmd or str(out) in cmd:
            found.append(f"process {proc.info['pid']}: {cmd[:120]}")
    return found


def wait_streaming(proc: subprocess.Popen[bytes], run_dir: Path) -> None:
    try:
        wait_until(lambda: (run_dir / "camera-status.json").exists(), 60, "the run's streaming",
                   alive=lambda: proc.poll() is None, interval_s=0.2)
    except RuntimeError:
        raise AssertionError(proc.communicate()[0].decode()) from None


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "cut"])
def test_failover_run_loses_nothing(fault: str, tmp_path: Path) -> None:
    result = subprocess.run(failover_cli(*FAST, "--fault", fault, "--out", str(tmp_path)),
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = tmp_path / f"all-{fault}-r1"
    summary = json.loads((run_dir / "summary.json").read_text())
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
    assert (run_dir / "latency.png").stat().st_size > 0
    with (run_dir / "records.csv").open() as handle:  # tidy: one row per frame the camera created
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["sent"] and all(r["cloud_arrival_unix_ns"] for r in rows)
    assert "| {gateway, nats, vision} |" in (tmp_path / "table.md").read_text()
    assert json.loads((tmp_path / "errors.json").read_text()) == []
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_run_that_fails_mid_way_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "all-cut-r1"
    argv = failover_cli(*FAST, "--fault", "cut", "--baseline", "30", "--out", str(tmp_path))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_streaming(proc, run_dir)
        assert leftovers(tmp_path), "the run should be up at this point"
        # The failure: the camera dies mid-run, so the run cannot measure anything and must abort.
        camera = next(p for p in psutil.process_iter(["cmdline"])
                      if str(run_dir / "camera.csv") in " ".join(p.info["cmdline"] or []))
        camera.kill()
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1, output
    errors = json.loads((tmp_path / "errors.json").read_text())
    assert len(errors) == 1 and "camera exited" in errors[0]["error"]
    assert not (run_dir / "summary.json").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_sigterm_mid_run_stops_and_leaves_nothing(tmp_path: Path) -> None:
    argv = failover_cli(*FAST, "--fault", "kill,cut", "--baseline", "30", "--out", str(tmp_path))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_streaming(proc, tmp_path / "all-kill-r1")
        assert leftovers(tmp_path)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert not (tmp_path / "all-cut-r1").exists()  # the second fault kind never started
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_sigkilled_orchestrator_leaves_nothing_after_the_sweep(tmp_path: Path) -> None:
    """SIGKILL only the orchestrator mid-run: its children (NATS, gateways, vision apps, camera,
    sink) survive it, as after a crash. `--cleanup` must then remove every one of them, the
    namespaces, the bridge and the temp dirs the run had made."""
    run_dir = tmp_path / "all-cut-r1"
    argv = failover_cli(*FAST, "--fault", "cut", "--baseline", "60", "--out", str(tmp_path))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_streaming(proc, run_dir)
        records = [j for j in journal.live_journals("emulated") if j.owner_pid == proc.pid]
        assert len(records) == 1, "the run keeps a journal of what it made"
        temp_dirs = [Path(d) for d in records[0].temp_dirs]
        assert temp_dirs and all(d.exists() for d in temp_dirs)
        proc.kill()  # the orchestrator alone: no cleanup code runs
        proc.wait()
        assert any(line.startswith("netns") for line in leftovers(tmp_path))
        assert any(line.startswith("process") for line in leftovers(tmp_path)), "children survive a SIGKILL"
        result = subprocess.run(failover_cli("--cleanup"), capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert "netns erf-n1" in result.stdout and "bridge erfbr0" in result.stdout
        assert leftovers(tmp_path) == []
        assert not any(d.exists() for d in temp_dirs)
        assert not journal.stale_journals("emulated")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(failover_cli("--cleanup"), capture_output=True, timeout=60, check=False)


def test_a_second_run_waits_for_nobody_and_says_why(tmp_path: Path) -> None:
    with journal.exclusive("emulated"):
        result = subprocess.run(failover_cli(*FAST, "--out", str(tmp_path)), capture_output=True, text=True,
                                timeout=60, check=False)
    assert result.returncode == 2
    assert "another emulated testbed holds" in result.stderr
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_on_the_fleet_both_faults_go_over_ssh_and_nothing_is_lost(tmp_path: Path) -> None:
    """The fleet's SSH test hosts run the system; the kill (SIGKILL from the host of the processes
    in its pid file) and the cut (a firewall drop the host lifts itself) go over SSH, as on a stack."""
    result = subprocess.run(failover_cli("--target", "fleet:3", "--scenario", "all", "--fault", "kill,cut",
                                         "--warmup", "1", "--baseline", "3", "--down-for", "3",
                                         "--margin", "2", "--cap", "30", "--out", str(tmp_path)),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for fault in ("kill", "cut"):
        run_dir = tmp_path / f"all-{fault}-r1"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["testbed"] == "fleet" and summary["lost"] == 0, summary["lost_ids"]
        assert summary["duplicates_delivered"] == 0 and summary["outage_s"] is not None
        assert all(summary["targets_met"].values()), summary["targets_met"]
        run = json.loads((run_dir / "run.json").read_text())
        assert run["testbed"]["kind"] == "fleet" and run["config"]["fault"] == fault
        assert {"up", "warm-up", "baseline", "fault", "recovery", "down"} <= set(run["phases"])
    assert not [n for n in netns.list_namespaces() if n.startswith("erh-")]
    assert not Path("/run/edgerig/fleet-testbed").exists()


def test_a_second_emulated_testbed_is_refused_and_touches_nothing_of_the_first(tmp_path: Path) -> None:
    from experiments.testbeds.base import SystemSpec
    from experiments.testbeds.emulated import EmulatedTestbed
    from experiments.testbeds.journal import BusyError

    with EmulatedTestbed(SystemSpec(nodes=3), log_dir=tmp_path / "first") as first:
        second = EmulatedTestbed(SystemSpec(nodes=3), log_dir=tmp_path / "second")
        with pytest.raises(BusyError, match="another emulated testbed holds"):
            second.up()
        expected = ["bridge erfbr0", "netns erf-n1", "netns erf-n2", "netns erf-n3"]
        assert sorted(netns.leftovers(NETWORK)) == expected
        assert not first.dead_system_processes() and first.check_clean().clean
    assert netns.leftovers(NETWORK) == []
