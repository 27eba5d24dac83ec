"""One failover run: clean cluster, stream, baseline, fault, recovery, summary, plot.

Timeline (all wall clock, shared by every namespace of this machine):
  stream start -> warmup_s -> baseline window (baseline_s) -> FAULT -> node back after down_for_s
  -> run on until the rolling p95 is within the threshold for margin_s (and the node has been back
  for margin_s), or until cap_s after the fault -> camera drains its unacked frames -> sink stops.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.failover import analysis, cleanup, netns
from experiments.failover.cluster import CAMERA_ID, FAULTS, EmulatedCluster, FaultRecord
from experiments.failover.placement import place
from experiments.failover.records import SinkTail, read_json
from experiments.failover.summary import summarize, write_summary
from experiments.local.supervisor import Child, Supervisor

NS = 1_000_000_000


@dataclass(frozen=True)
class RunConfig:
    nodes: int = 5
    fps: float = 10.0
    frame_bytes: int = 24576
    warmup_s: float = 3.0
    baseline_s: float = 10.0
    down_for_s: float = 10.0
    margin_s: float = 5.0
    cap_s: float = 60.0
    recovery_factor: float = 2.0
    # On an idle loopback the baseline p95 is ~5 ms, so 2x is 10 ms and one scheduling hiccup of a
    # busy 2-core machine would read as "not recovered". The floor keeps the threshold meaningful;
    # summary.json also reports recovery against the strict 2x threshold.
    recovery_floor_ms: float = 20.0
    window_s: float = 1.0
    resend_after_s: float = 1.0
    buffer_frames: int = 1000
    drain_timeout_s: float = 15.0

    def validate(self) -> None:
        problems = []
        if not self.fps > 0:
            problems.append(f"--fps must be > 0 (got {self.fps})")
        if self.frame_bytes < 1:
            problems.append(f"--frame-bytes must be >= 1 (got {self.frame_bytes})")
        for name in ("baseline_s", "down_for_s", "margin_s", "cap_s", "window_s"):
            if not getattr(self, name) > 0:
                problems.append(f"--{name.removesuffix('_s').replace('_', '-')} must be > 0 seconds")
        if self.recovery_floor_ms < 0:
            problems.append("--recovery-floor-ms must be >= 0")
        if self.warmup_s < 0:
            problems.append("--warmup must be >= 0 seconds")
        if self.cap_s < self.down_for_s + self.margin_s:
            problems.append(f"--cap ({self.cap_s} s) must be at least --down-for + --margin "
                            f"({self.down_for_s + self.margin_s} s), or the node never comes back in a run")
        if problems:
            raise ValueError("; ".join(problems))


class RunAborted(RuntimeError):
    """A replica or client died on its own, so the run cannot measure anything meaningful."""


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _start_root(sup: Supervisor, name: str, argv: list[str]) -> Child:
    child = sup.start(name, argv, env={"PYTHONUNBUFFERED": "1"})
    cleanup.remember_root_pid(child.pid)
    return child


def _sleep_watching(seconds: float, watched: list[Child], tail: SinkTail) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _check_alive(watched)
        tail.poll()
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _check_alive(watched: list[Child]) -> None:
    for child in watched:
        if not child.alive():
            raise RunAborted(f"{child.name} exited with code {child.popen.returncode}; "
                             f"its log ({child.log_path}):\n{child.log_tail()}")


def _recovered_for(tail: SinkTail, fault_ns: int, threshold_ms: float, cfg: RunConfig) -> float:
    """Seconds the live rolling p95 has been within the threshold since the fault (0 if not)."""
    rec = analysis.settled_s(tail.records, fault_ns, threshold_ms, cfg.window_s)
    if rec is None:
        return 0.0
    return max(0.0, (time.time_ns() - fault_ns) / NS - rec)


def run_once(cfg: RunConfig, scenario: str, fault: str, run_dir: Path) -> dict[str, Any]:
    """Run one scenario/fault from a clean start; returns (and writes) its summary."""
    cfg.validate()
    if fault not in FAULTS:
        raise ValueError(f"unknown --fault {fault!r}: use one of {', '.join(FAULTS)}")
    placement = place(scenario, netns.make_nodes(cfg.nodes))
    run_dir.mkdir(parents=True, exist_ok=True)
    sink_out = run_dir / "sink.jsonl"
    camera_csv = run_dir / "camera.csv"
    camera_status = run_dir / "camera-status.json"
    for stale in (sink_out, camera_csv, camera_status, sink_out.with_name(sink_out.name + ".stats.json")):
        stale.unlink(missing_ok=True)
    with cleanup.session(placement.nodes), Supervisor(log_dir=run_dir / "logs") as sup:
        cluster = EmulatedCluster(placement, sup, sup.temp_dir("failover"))
        cluster.start()
        sink = _start_root(sup, "sink", _python_module(
            "workloads.vei.sink", "--nats-url", cluster.nats_urls, "--out", str(sink_out)))
        stream_start_ns = time.time_ns()
        camera = _start_root(sup, "camera", _python_module(
            "workloads.vei.camera", "--gateway", cluster.gateway_endpoints, "--camera-id", CAMERA_ID,
            "--fps", str(cfg.fps), "--frames", "0", "--frame-bytes", str(cfg.frame_bytes),
            "--buffer-frames", str(cfg.buffer_frames), "--resend-after", str(cfg.resend_after_s),
            "--drain-timeout", str(cfg.drain_timeout_s), "--records", str(camera_csv),
            "--status-file", str(camera_status)))
        tail = SinkTail(sink_out)
        everyone = [sink, camera, *[c for kids in cluster.children.values() for c in kids]]
        _sleep_watching(cfg.warmup_s + cfg.baseline_s, everyone, tail)
        baseline_start_ns = stream_start_ns + int(cfg.warmup_s * NS)
        fault_ns = time.time_ns()
        base = analysis.baseline(tail.poll(), baseline_start_ns, fault_ns)
        threshold = analysis.recovery_threshold_ms(base, cfg.recovery_factor, cfg.recovery_floor_ms)

        record: FaultRecord = cluster.inject(fault)
        survivors = [c for c in everyone if c not in cluster.children[placement.target.name]]
        _sleep_watching(max(0.0, cfg.down_for_s - (time.time_ns() - record.injected_unix_ns) / NS),
                        survivors, tail)
        cluster.restore(record)
        everyone = [sink, camera, *[c for kids in cluster.children.values() for c in kids]]
        back_ns = record.restored_unix_ns or time.time_ns()
        cap_ns = record.injected_unix_ns + int(cfg.cap_s * NS)
        while time.time_ns() < cap_ns:
            _sleep_watching(0.5, everyone, tail)
            node_settled = (time.time_ns() - back_ns) / NS >= cfg.margin_s
            pending = read_json(camera_status).get("unacked", 0)
            if node_settled and pending <= cfg.fps and \
                    _recovered_for(tail, record.injected_unix_ns, threshold, cfg) >= cfg.margin_s:
                break
        end_ns = time.time_ns()
        os.kill(camera.pid, signal.SIGUSR1)  # stop creating frames, drain what is unacked
        camera.popen.wait(cfg.drain_timeout_s + 10)
        time.sleep(0.5)  # results acked to the camera are already at the sink; this is for stray dups
        sup.stop(sink)  # SIGTERM: the sink writes its stats file
    summary = summarize(cfg, placement, record, run_dir, CAMERA_ID, stream_start_ns=stream_start_ns,
                        baseline_start_ns=baseline_start_ns, end_ns=end_ns, base=base, threshold_ms=threshold)
    write_summary(summary, run_dir)
    return summary
