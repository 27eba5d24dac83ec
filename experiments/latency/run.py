"""`edgerig run latency`: N frames at F fps through the VEI pipeline of a testbed.

camera -> gateway -> NATS -> vision app -> gateway -> local cloud. The local cloud is the gateway's
own recorder (a `local=file:` cloud, as the original gateway delivered to its cloud itself) or the
sink process over NATS (`--sink`). The testbed runs the system; this module starts the sink process
if there is one and the camera through it (on the operator's machine, one clock for both),
measures a quiescent window, streams, measures the floor (a bare NATS hop with the same payload,
against the same NATS, in the same run) and writes records, summary and plot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from experiments.latency.config import LatencyConfig
from experiments.latency.floor import measure_floor
from experiments.latency.report import percentiles, plot_cdf, stage_medians
from experiments.resources.meter import ProcessMeter, Sample, cpu_report
from experiments.runs.frames import join_records, write_records
from experiments.runs.options import resolved
from experiments.runs.repeat import RunContext, RunPlan, run_repeated
from experiments.testbeds.base import SystemSpec, Testbed
from experiments.testbeds.errors import SystemDied
from experiments.testbeds.processes import Child
from workloads.vei import launch
from workloads.vei.records import read_sink, read_status, sink_stats

if TYPE_CHECKING:
    from experiments.resources.config import ResourcesConfig

# Targets at 10 fps, 24 KB frames on the 2-core reference machine; reported as pass/fail beside the
# figures. CPU is the marginal cost of a frame (streaming minus quiescent, per frame).
TARGETS = {"p50_ms": 3.0, "p95_ms": 8.0, "lost": 0, "floor_ratio_p50": 5.0,
           "cpu.total.marginal_ms_per_frame": 2.0, "cpu.total.quiescent_cores": 0.01}
METRICS = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "lost", "floor_p50_ms", "floor_ratio_p50",
           "cpu.total.quiescent_cores", "cpu.total.streaming_cores", "cpu.total.marginal_ms_per_frame")


def check_system(tb: Testbed) -> None:
    dead = tb.dead_system_processes()
    if dead:
        c = dead[0]
        raise SystemDied(f"{c.name} exited with code {c.popen.returncode} during the run; its log "
                         f"({c.log_path}):\n{c.log_tail()}")


def stream_camera(tb: Testbed, name: str, spec: launch.Launch, status: Path, frames: int, timeout_s: float,
                  progress: Progress | None, label: str) -> tuple[Child, dict[str, Any]]:
    """Run a camera to its end through the testbed, showing acked frames; returns its final stats.
    Stops at once, naming the process, when a system process dies on the way."""
    camera = tb.start_client(name, spec)
    task = progress.add_task(label, total=frames) if progress else None
    deadline = time.monotonic() + timeout_s
    while camera.alive():
        check_system(tb)
        if time.monotonic() > deadline:
            raise TimeoutError(f"the camera did not finish within {timeout_s:.0f} s; log: {camera.log_path}")
        if progress is not None and task is not None:
            st = read_status(status)
            progress.update(task, completed=st.get("acked", 0),
                            description=f"{label} (sent {st.get('sent', 0)})")
        time.sleep(0.2)
    check_system(tb)
    stats = read_status(status)
    if progress is not None and task is not None:
        progress.update(task, completed=stats.get("acked", 0),
                        description=f"{label} (sent {stats.get('sent', 0)})")
    if not stats.get("final"):
        raise RuntimeError(f"the camera exited with code {camera.popen.returncode} without final stats; "
                           f"its log ({camera.log_path}):\n{camera.log_tail()}")
    if stats.get("error"):
        raise RuntimeError(f"the camera gave up: {stats['error']}")
    tb.stop_client(camera)
    return camera, stats


def make_progress(console: Console, enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def meter_for(tb: Testbed, sink: Child | None) -> ProcessMeter:
    """The system's processes per component, plus the sink process if there is one: what a frame
    costs the whole pipeline. A testbed whose system runs elsewhere (a stack) has none here: its CPU
    comes from Prometheus (`edgerig run resources`), so the meter then measures nothing."""
    procs = tb.system_processes()
    if not procs:
        return ProcessMeter({})
    return ProcessMeter({**procs, "sink": [sink.pid]} if sink is not None else procs)


def quiet_window(meter: ProcessMeter, seconds: float) -> tuple[Sample, Sample]:
    first = meter.sample()
    time.sleep(seconds)
    return first, meter.sample()


def plan_for(cfg: LatencyConfig | ResourcesConfig, experiment: str = "latency",
             metrics: Sequence[str] = METRICS) -> RunPlan:
    """The plan of an experiment that streams one camera through the VEI system (latency, resources)."""
    return RunPlan(experiment=experiment, target=cfg.target_spec(), out=cfg.out, config=resolved(cfg),
                   system=SystemSpec(camera_ids=(cfg.camera_id,), processing_ms=cfg.processing_ms),
                   repeat=cfg.repeat, rebuild=cfg.rebuild, metrics=metrics,
                   gateway_records=cfg.gateway_records())


def run_latency(cfg: LatencyConfig, console: Console | None = None) -> list[dict[str, Any]]:
    """Every run's summary (one per --repeat)."""
    cfg.validate()
    console = console or Console(stderr=True)
    return run_repeated(plan_for(cfg), lambda ctx: run_once(cfg, ctx), console)


def run_once(cfg: LatencyConfig, ctx: RunContext) -> dict[str, Any]:
    tb, out = ctx.testbed, ctx.run_dir
    sink = ctx.start_sink()
    meter = meter_for(tb, sink)
    load_before = os.getloadavg()
    with ctx.phase("quiescent"):
        ctx.console.print(f"quiescent window: {cfg.quiet_s:g} s with nothing streaming")
        quiet = quiet_window(meter, cfg.quiet_s)
    status = out / "camera-status.json"
    spec = launch.camera(gateway=tb.endpoints.gateway_target, camera_id=cfg.camera_id, frames=cfg.frames,
                         fps=cfg.fps, frame_bytes=cfg.frame_bytes, records=out / "camera.csv",
                         status_file=status, drain_timeout_s=10.0)
    progress = make_progress(ctx.console, cfg.progress)
    with ctx.phase("stream"), progress if progress is not None else contextlib.nullcontext():
        s0 = meter.sample()
        _, cam = stream_camera(tb, "camera", spec, status, cfg.frames, cfg.frames / cfg.fps + 60, progress,
                               f"{cfg.frames} frames at {cfg.fps:g} fps")
        s1 = meter.sample()
    with ctx.phase("floor"):
        ctx.console.print(f"measuring the floor: {cfg.floor_samples()} bare NATS hops at {cfg.fps:g}/s")
        nats_before = meter.sample()
        floor = asyncio.run(measure_floor(tb.endpoints.nats_urls[0], cfg.floor_samples(), cfg.fps,
                                          cfg.frame_bytes, nkeys_seed=tb.nats_seed_file))
        nats_after = meter.sample()
    check_system(tb)
    ctx.stop_sink(sink)
    cpu = cpu_report(quiet, (s0, s1), cfg.fps, cfg.frames) if meter.components else None
    summary = summarize(cfg, ctx, cam, cpu, floor,
                        floor_nats_ms=(nats_after.cpu_s.get("nats", 0.0)
                                       - nats_before.cpu_s.get("nats", 0.0)) * 1000,
                        load=(load_before, os.getloadavg()))
    return summary


def summarize(cfg: LatencyConfig, ctx: RunContext, cam: dict[str, Any], cpu: dict[str, Any] | None,
              floor: list[float], floor_nats_ms: float,
              load: tuple[tuple[float, ...], tuple[float, ...]]) -> dict[str, Any]:
    out = ctx.run_dir
    records = join_records(out / "camera.csv", read_sink(ctx.sink_out))
    write_records(out / "records.csv", records)
    latencies = [r.latency_ms for r in records if r.latency_ms is not None]
    sent, received = len(records), len(latencies)
    fl = percentiles(floor)
    summary: dict[str, Any] = {
        **percentiles(latencies),
        "frames_sent": sent, "frames_received": received, "lost": sent - received,
        # The gateway's recorder writes its stats on every duplicate, so none yet means none.
        "duplicates_at_sink": sink_stats(ctx.sink_out).get("duplicates", 0 if ctx.gateway_records else None),
        "camera": {k: cam.get(k) for k in ("sent", "acked", "resent", "dropped_overflow", "unacked",
                                           "reconnects", "error_acks", "late_sends")},
        # The client's own cost, not part of the system's.
        "camera_cpu_ms_per_frame": round(cam.get("cpu_ms", 0.0) / sent, 3) if sent else None,
        "cpu": cpu,
        "floor_p50_ms": fl["p50_ms"], "floor_p95_ms": fl["p95_ms"], "floor_samples": len(floor),
        "floor_lost": cfg.floor_samples() - len(floor),
        "floor_nats_cpu_ms_per_msg": round(floor_nats_ms / len(floor), 3) if floor and cpu else None,
        **stage_medians(records),
        "config": {"frames": cfg.frames, "fps": cfg.fps, "frame_bytes": cfg.frame_bytes,
                   "processing_ms": cfg.processing_ms, "quiet_s": cfg.quiet_s, "target": cfg.target,
                   "sink": ctx.recorder},
        "testbed": ctx.testbed.kind,
        "loadavg_before": [round(x, 2) for x in load[0]], "loadavg_after": [round(x, 2) for x in load[1]],
    }
    p50, fp50 = summary["p50_ms"], summary["floor_p50_ms"]
    p95, fp95 = summary["p95_ms"], summary["floor_p95_ms"]
    summary["floor_ratio_p50"] = round(p50 / fp50, 2) if p50 is not None and fp50 else None
    summary["floor_ratio_p95"] = round(p95 / fp95, 2) if p95 is not None and fp95 else None
    # The targets are the local baseline's (one process each on the 2-core reference machine).
    summary["targets"] = check_targets(summary) if cpu and ctx.testbed.kind == "local" else {}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_cdf(out / "latency_cdf.png", latencies, floor,
             f"Latency CDF, {ctx.testbed.kind} testbed ({received} frames at {cfg.fps:g} FPS, "
             f"{cfg.frame_bytes} B)")
    return summary


def check_targets(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from experiments.runs.aggregate import lookup

    result = {}
    for key, limit in TARGETS.items():
        value = lookup(summary, key)
        result[key] = {"value": value, "limit": limit, "ok": value is not None and value <= limit}
    return result
