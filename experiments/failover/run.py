"""One failover run on a testbed: stream, baseline, fault, recovery, summary, plot.

Timeline (all wall clock on the operator's machine, where camera and sink run):
  stream start -> warmup_s -> baseline window (baseline_s) -> FAULT -> node back after down_for_s
  -> run on until the rolling p95 is within the threshold for margin_s (and the node has been back
  for margin_s), or until cap_s after the fault -> camera drains its unacked frames -> sink stops.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from experiments.failover import analysis
from experiments.failover.config import RunConfig
from experiments.failover.summary import summarize, write_summary
from experiments.runs.repeat import RunContext
from experiments.testbeds.base import Testbed
from experiments.testbeds.processes import Child
from workloads.vei import launch
from workloads.vei.records import SinkTail, read_status

NS = 1_000_000_000
CAMERA_ID = "cam-0"


class RunAborted(RuntimeError):
    """A replica or client died on its own, so the run cannot measure anything meaningful."""


def _check_alive(tb: Testbed, clients: list[Child]) -> None:
    for child in [*clients, *tb.dead_system_processes()]:
        if not child.alive():
            raise RunAborted(f"{child.name} exited with code {child.popen.returncode}; "
                             f"its log ({child.log_path}):\n{child.log_tail()}")


def _sleep_watching(seconds: float, tb: Testbed, clients: list[Child], tail: SinkTail) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _check_alive(tb, clients)
        tail.poll()
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _recovered_for(tail: SinkTail, fault_ns: int, threshold_ms: float, cfg: RunConfig) -> float:
    """Seconds the live rolling p95 has been within the threshold since the fault (0 if not)."""
    rec = analysis.settled_s(tail.records, fault_ns, threshold_ms, cfg.window_s)
    if rec is None:
        return 0.0
    return max(0.0, (time.time_ns() - fault_ns) / NS - rec)


def run_once(cfg: RunConfig, scenario: str, fault: str, node: str, ctx: RunContext) -> dict[str, Any]:
    """One scenario/fault on the testbed of `ctx`, failing `node`; returns (and writes) its summary."""
    tb, run_dir = ctx.testbed, ctx.run_dir
    camera_csv = run_dir / "camera.csv"
    camera_status = run_dir / "camera-status.json"
    sink = tb.start_sink(ctx.sink_out)
    stream_start_ns = time.time_ns()
    camera = tb.start_client("camera", launch.camera(
        gateway=tb.endpoints.gateway_target, camera_id=CAMERA_ID, fps=cfg.fps, frames=0,
        frame_bytes=cfg.frame_bytes, buffer_frames=cfg.buffer_frames, resend_after_s=cfg.resend_after_s,
        drain_timeout_s=cfg.drain_timeout_s, records=camera_csv, status_file=camera_status))
    tail = SinkTail(ctx.sink_out)
    clients = [sink, camera]
    with ctx.phase("warm-up"):
        _sleep_watching(cfg.warmup_s, tb, clients, tail)
    with ctx.phase("baseline"):
        _sleep_watching(cfg.baseline_s, tb, clients, tail)
    baseline_start_ns = stream_start_ns + int(cfg.warmup_s * NS)
    fault_ns = time.time_ns()
    base = analysis.baseline(tail.poll(), baseline_start_ns, fault_ns)
    threshold = analysis.recovery_threshold_ms(base, cfg.recovery_factor, cfg.recovery_floor_ms)

    with ctx.phase("fault"):
        record = tb.fail(node, fault, down_for_s=cfg.down_for_s)
        _sleep_watching(max(0.0, cfg.down_for_s - (time.time_ns() - record.injected_unix_ns) / NS),
                        tb, clients, tail)
        tb.restore(record)
    with ctx.phase("recovery"):
        back_ns = record.restored_unix_ns or time.time_ns()
        cap_ns = record.injected_unix_ns + int(cfg.cap_s * NS)
        while time.time_ns() < cap_ns:
            _sleep_watching(0.5, tb, clients, tail)
            node_settled = (time.time_ns() - back_ns) / NS >= cfg.margin_s
            pending = read_status(camera_status).get("unacked", 0)
            if node_settled and pending <= cfg.fps and \
                    _recovered_for(tail, record.injected_unix_ns, threshold, cfg) >= cfg.margin_s:
                break
    end_ns = time.time_ns()
    with ctx.phase("drain"):
        os.kill(camera.pid, signal.SIGUSR1)  # stop creating frames, drain what is unacked
        camera.popen.wait(cfg.drain_timeout_s + 10)
        time.sleep(0.5)  # results acked to the camera are already at the sink; this is for stray dups
        tb.stop_client(sink)  # SIGTERM: the sink writes its stats file
    components = next((n.components for n in tb.nodes if n.name == node), ())
    summary = summarize(cfg, scenario, tb, record, components, run_dir, CAMERA_ID,
                        stream_start_ns=stream_start_ns, baseline_start_ns=baseline_start_ns, end_ns=end_ns,
                        base=base, threshold_ms=threshold)
    write_summary(summary, run_dir)
    return summary
