"""`edgerig run latency` / `throughput` on the local target: real processes, real results, no leftovers."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import ROOT, assert_nothing_left, marked_processes, run_env, wait_until

EDGERIG = [sys.executable, "-m", "experiments"]


@pytest.mark.slow
@pytest.mark.parametrize("sink, recorded_by", [
    ("auto", "gateway"),     # the local default: the gateway records, no sink process
    ("process", "process"),  # the sink process over NATS, measured as a component of its own
])
def test_short_run_writes_results_and_leaves_nothing(tmp_path: Path, sink: str, recorded_by: str) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = subprocess.run([*EDGERIG, "run", "latency", "--frames", "50", "--fps", "20", "--out", str(out),
                           "--floor-frames", "40", "--quiet-s", "2", "--sink", sink, "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert printed["p50_ms"] == summary["p50_ms"]
    for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "floor_p50_ms", "floor_p95_ms",
                "camera_cpu_ms_per_frame", "floor_ratio_p50"):
        assert isinstance(summary[key], float) and summary[key] > 0, key
    # CPU as the thesis measures it: quiescent and streaming windows, marginal cost per frame.
    cpu = summary["cpu"]
    assert summary["config"]["sink"] == recorded_by
    assert set(cpu["components"]) == ({"nats", "gateway", "vision", "sink"} if recorded_by == "process"
                                      else {"nats", "gateway", "vision"})
    assert summary["duplicates_at_sink"] == 0
    assert cpu["quiet_window_s"] >= 2 and cpu["stream_window_s"] >= 2
    total = cpu["total"]
    assert 0 <= total["quiescent_cores"] < total["streaming_cores"]
    assert total["marginal_ms_per_frame"] == pytest.approx(
        (total["streaming_cores"] - total["quiescent_cores"]) / 20 * 1000, rel=0.01)
    assert printed["marginal_cpu_ms_per_frame"] == total["marginal_ms_per_frame"]
    assert summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert (summary["frames_sent"], summary["frames_received"], summary["lost"]) == (50, 50, 0)
    assert summary["floor_samples"] == 40
    with (out / "records.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 50 and {r["frame_id"] for r in rows} == {f"cam-0-{i}" for i in range(50)}
    for row in rows:
        created, gw, vis, cloud = (int(row[k]) for k in ("created_unix_ns", "gateway_in_unix_ns",
                                                         "vision_done_unix_ns", "cloud_arrival_unix_ns"))
        assert created < gw < vis < cloud
        assert abs(float(row["latency_ms"]) - (cloud - created) / 1e6) < 0.01
    # Not trimmed: the reported max is the slowest frame of the records.
    assert summary["max_ms"] == pytest.approx(max(float(r["latency_ms"]) for r in rows), abs=0.002)
    png = (out / "latency_cdf.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    run = json.loads((out / "run.json").read_text())
    assert run["experiment"] == "latency" and run["command"][1:3] == ["run", "latency"]
    assert run["config"]["frames"] == 50 and run["config"]["target"] == "local"
    assert run["config"]["sink"] == sink
    assert run["git"]["commit"] and isinstance(run["git"]["dirty"], bool)
    assert run["versions"]["K3S_VERSION"] and run["python_packages"]["nats-py"]
    assert run["machine"]["cores"] and run["machine"]["kernel"]
    assert run["testbed"]["kind"] == "local" and run["clean_check"]["clean"] is True
    assert {"up", "quiescent", "stream", "floor", "run", "down"} <= set(run["phases"])
    assert run["phases"]["up"]["end_unix_s"] <= run["phases"]["run"]["start_unix_s"]
    assert run["phases"]["run"]["end_unix_s"] <= run["phases"]["down"]["start_unix_s"]
    assert_nothing_left(marker, tmp)


@pytest.mark.slow
def test_a_gateway_that_dies_mid_stream_stops_the_run_and_is_named(tmp_path: Path) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = subprocess.Popen([*EDGERIG, "run", "latency", "--frames", "2000", "--fps", "20", "--quiet-s", "0",
                             "--out", str(out), "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_streaming(proc, out)
        gateway = next(p for p in marked_processes(marker)
                       if "workloads.vei.gateway" in " ".join(p.cmdline()))
        port = int(next(a for a in gateway.cmdline() if a.startswith("127.0.0.1:")).rsplit(":", 1)[1])
        gateway.kill()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    message = " ".join(err.split())
    assert "gateway-local exited with code -9 during the run" in message
    assert_nothing_left(marker, tmp)
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # the gateway's port is free again


def wait_streaming(proc: subprocess.Popen[str], out: Path) -> None:
    """Until the run's camera records (streaming has begun); fails with the run's errors if it exits."""
    try:
        wait_until(lambda: (out / "camera.csv").exists(), 60, "the run's streaming",
                   alive=lambda: proc.poll() is None, interval_s=0.1)
    except RuntimeError:
        raise AssertionError(proc.communicate()[1]) from None


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_run_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = subprocess.Popen([*EDGERIG, "run", "latency", "--frames", "2000", "--fps", "20", "--out", str(out),
                             "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_streaming(proc, out)  # streaming has started: every process is up
        assert len(marked_processes(marker)) >= 4  # nats, gateway (it records the results), vision, camera
        # Interrupted mid-stream: once results reach the sink (it flushes each line), not at the start.
        sink = out / "sink.jsonl"
        wait_until(lambda: sink.exists() and len(sink.read_text().splitlines()) >= 5, 30,
                   "results at the sink", alive=lambda: proc.poll() is None)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "stopped every process" in err
    assert_nothing_left(marker, tmp)


@pytest.mark.slow
def test_throughput_ramp_reports_steps(tmp_path: Path) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "tp"
    proc = subprocess.run([*EDGERIG, "run", "throughput", "--rates", "20,50", "--step-seconds", "1",
                           "--out", str(out), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [s["rate_fps"] for s in summary["steps"]] == [20, 50]
    for step in summary["steps"]:
        assert step["frames_sent"] == step["rate_fps"] and step["lost"] == 0 and step["sustained"]
    assert summary["max_sustained_fps"] == 50
    assert (out / "throughput.png").read_bytes().startswith(b"\x89PNG")
    assert_nothing_left(marker, tmp)


@pytest.mark.slow
@pytest.mark.root  # the emulated testbed creates network namespaces
def test_two_runs_on_the_emulated_testbed_each_on_a_fresh_one(tmp_path: Path) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = subprocess.run([*EDGERIG, "run", "latency", "--target", "emulated:3", "--repeat", "2",
                           "--frames", "40", "--fps", "20", "--quiet-s", "1", "--floor-frames", "10",
                           "--out", str(out), "--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    runs = [json.loads((out / f"r{k}" / "run.json").read_text()) for k in (1, 2)]
    for k, run in enumerate(runs, start=1):
        assert run["run"] == {"index": k, "of": 2, "rebuild": "each-run", "target": "emulated:3",
                              "completed": True}
        assert run["testbed"]["kind"] == "emulated" and len(run["testbed"]["nodes"]) == 3
        assert run["clean_check"]["clean"]
        assert json.loads((out / f"r{k}" / "summary.json").read_text())["lost"] == 0
    assert runs[0]["phases"]["down"]["end_unix_s"] <= runs[1]["phases"]["up"]["start_unix_s"]  # rebuilt
    aggregate = json.loads((out / "aggregate.json").read_text())
    assert aggregate["runs"] == 2 and aggregate["p50_ms"]["min"] <= aggregate["p50_ms"]["max"]
    assert_nothing_left(marker, tmp)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert not [n for n in namespaces if n.startswith("erf-")]
