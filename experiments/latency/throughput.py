"""`edgerig run throughput`: raise the rate step by step on one running system under test.

Each step streams `rate x step_s` frames with its own frame ids (one camera process per step), waits
until the camera has drained its acks, and is "sustained" when nothing was lost, p95 stayed within
the limit and the camera really produced the offered rate. The ramp stops at the first step that is
not sustained: higher rates only take longer to fail.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from experiments.latency.config import ThroughputConfig
from experiments.latency.report import percentiles
from experiments.latency.run import check_system, make_progress, meter_for, quiet_window, stream_camera
from experiments.resources.meter import ProcessMeter, Sample, cpu_report
from experiments.runs.frames import join_records, write_records
from experiments.runs.options import resolved
from experiments.runs.repeat import RunContext, RunPlan, run_repeated
from experiments.testbeds.base import SystemSpec
from workloads.vei import launch
from workloads.vei.records import read_sink

CAMERA_ID = "cam-0"
# A step counts as produced at its rate if the camera achieved at least this share of it.
ACHIEVED_SHARE = 0.95
METRICS = ("max_sustained_fps",)


def run_throughput(cfg: ThroughputConfig, console: Console | None = None) -> list[dict[str, Any]]:
    cfg.validate()
    console = console or Console(stderr=True)
    plan = RunPlan(experiment="throughput", target=cfg.target_spec(), out=cfg.out, config=resolved(cfg),
                   system=SystemSpec(camera_ids=(CAMERA_ID,)), repeat=cfg.repeat, rebuild=cfg.rebuild,
                   metrics=METRICS, gateway_records=cfg.gateway_records())
    return run_repeated(plan, lambda ctx: run_once(cfg, ctx), console)


def run_once(cfg: ThroughputConfig, ctx: RunContext) -> dict[str, Any]:
    tb = ctx.testbed
    sink = ctx.start_sink()
    meter = meter_for(tb, sink)
    with ctx.phase("quiescent"):
        ctx.console.print(f"quiescent window: {cfg.quiet_s:g} s with nothing streaming")
        quiet = quiet_window(meter, cfg.quiet_s)
    steps: list[dict[str, Any]] = []
    progress = make_progress(ctx.console, cfg.progress)
    with ctx.phase("ramp"), progress if progress is not None else contextlib.nullcontext():
        for rate in cfg.rates:
            step = run_step(ctx, cfg, rate, meter, quiet, progress)
            steps.append(step)
            if not step["sustained"]:
                break
    check_system(tb)
    ctx.stop_sink(sink)
    sustained = [s["rate_fps"] for s in steps if s["sustained"]]
    summary = {"max_sustained_fps": max(sustained) if sustained else None, "p95_limit_ms": cfg.p95_limit_ms,
               "frame_bytes": cfg.frame_bytes, "step_s": cfg.step_s, "testbed": tb.kind,
               "sink": ctx.recorder, "steps": steps}
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_steps(ctx.run_dir / "throughput.png", steps, cfg)
    return summary


def run_step(ctx: RunContext, cfg: ThroughputConfig, rate: float, meter: ProcessMeter,
             quiet: tuple[Sample, Sample], progress: Any) -> dict[str, Any]:
    out = ctx.run_dir
    tag = f"r{rate:g}"
    frames = max(1, round(rate * cfg.step_s))
    prefix = f"{CAMERA_ID}-{tag}"
    records_csv = out / f"camera-{tag}.csv"
    status = out / f"camera-{tag}.json"
    spec = launch.camera(gateway=ctx.testbed.endpoints.gateway_target, camera_id=CAMERA_ID, frames=frames,
                         fps=rate, frame_bytes=cfg.frame_bytes, records=records_csv, status_file=status,
                         drain_timeout_s=10.0, frame_id_prefix=prefix)
    s0 = meter.sample()
    _, cam = stream_camera(ctx.testbed, f"camera-{tag}", spec, status, frames, cfg.step_s + 120, progress,
                           f"{rate:g} fps")
    s1 = meter.sample()
    records = join_records(records_csv, read_sink(ctx.sink_out), prefix + "-")
    write_records(out / f"records-{tag}.csv", records)
    latencies = [r.latency_ms for r in records if r.latency_ms is not None]
    created = [r.created_ns for r in records]
    span_s = (max(created) - min(created)) / 1e9 if len(created) > 1 else 0.0
    achieved = (len(created) - 1) / span_s if span_s > 0 else float(rate)
    stats = percentiles(latencies)
    lost = len(records) - len(latencies)
    p95 = stats["p95_ms"]
    step = {"rate_fps": rate, "achieved_fps": round(achieved, 1), "frames_sent": len(records),
            "frames_received": len(latencies), "lost": lost, **stats,
            "resent": cam.get("resent"), "late_sends": cam.get("late_sends"),
            "cpu": cpu_report(quiet, (s0, s1), achieved, len(records)) if meter.components else None,
            "camera_cpu_ms_per_frame": round(cam.get("cpu_ms", 0.0) / max(len(records), 1), 3)}
    step["sustained"] = bool(lost == 0 and p95 is not None and p95 <= cfg.p95_limit_ms
                             and achieved >= ACHIEVED_SHARE * rate)
    return step


def plot_steps(path: Path, steps: list[dict[str, Any]], cfg: ThroughputConfig) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    rates = np.array([s["rate_fps"] for s in steps], dtype=float)
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
        ys = np.array([s[key] if s[key] is not None else np.nan for s in steps], dtype=float)
        ax.plot(rates, ys, marker="o", label=label)
    ax.axhline(cfg.p95_limit_ms, color="red", linestyle="--", linewidth=1,
               label=f"p95 limit {cfg.p95_limit_ms:g} ms")
    for s in steps:
        if not s["sustained"]:
            ax.axvspan(s["rate_fps"] * 0.97, s["rate_fps"] * 1.03, color="red", alpha=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Offered rate (frames/s)")
    ax.set_ylabel("Latency (milliseconds)")
    ax.set_title(f"Throughput ramp, {cfg.frame_bytes} B frames, {cfg.step_s:g} s per step")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

