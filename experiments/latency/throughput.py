"""`edgerig run throughput`: raise the rate step by step on one running baseline system.

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
import psutil
from rich.console import Console

from experiments.latency.config import ThroughputConfig
from experiments.latency.report import join_records, percentiles, read_sink, write_records
from experiments.latency.run import cpu_seconds, make_progress, stream_camera
from experiments.latency.system import Baseline, camera_argv, start_baseline
from experiments.local.supervisor import Supervisor

CAMERA_ID = "cam-0"
# A step counts as produced at its rate if the camera achieved at least this share of it.
ACHIEVED_SHARE = 0.95


def run_throughput(cfg: ThroughputConfig, console: Console | None = None) -> dict[str, Any]:
    cfg.validate()
    console = console or Console(stderr=True)
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    with Supervisor(log_dir=out / "logs") as sup:
        work = sup.temp_dir("throughput")
        console.print(f"starting nats-server, sink, gateway, vision app (logs in {out / 'logs'})")
        base = start_baseline(sup, work, out / "sink.jsonl", CAMERA_ID)
        procs = {name: psutil.Process(child.pid) for name, child in base.measured().items()}
        progress = make_progress(console, cfg.progress)
        with progress if progress is not None else contextlib.nullcontext():
            for rate in cfg.rates:
                step = run_step(sup, base, cfg, rate, work, procs, progress)
                steps.append(step)
                if not step["sustained"]:
                    break
    sustained = [s["rate_fps"] for s in steps if s["sustained"]]
    summary = {"max_sustained_fps": max(sustained) if sustained else None, "p95_limit_ms": cfg.p95_limit_ms,
               "frame_bytes": cfg.frame_bytes, "step_s": cfg.step_s, "steps": steps}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_steps(out / "throughput.png", steps, cfg)
    return summary


def run_step(sup: Supervisor, base: Baseline, cfg: ThroughputConfig, rate: float, work: Path,
             procs: dict[str, psutil.Process], progress: Any) -> dict[str, Any]:
    tag = f"r{rate:g}"
    frames = max(1, round(rate * cfg.step_s))
    prefix = f"{CAMERA_ID}-{tag}"
    records_csv = cfg.out / f"camera-{tag}.csv"
    status = work / f"camera-{tag}.json"
    argv = camera_argv(base.gateway_address, CAMERA_ID, frames, rate, cfg.frame_bytes, records_csv, status,
                       frame_id_prefix=prefix, drain_timeout_s=10.0)
    cpu0 = cpu_seconds(procs)
    _, cam = stream_camera(sup, f"camera-{tag}", argv, status, frames, cfg.step_s + 120, progress,
                           f"{rate:g} fps")
    cpu_ms = (sum(cpu_seconds(procs).values()) - sum(cpu0.values())) * 1000
    records = join_records(records_csv, read_sink(base.sink_out, prefix + "-"))
    write_records(cfg.out / f"records-{tag}.csv", records)
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
            "cpu_ms_per_frame": round(cpu_ms / max(len(records), 1), 3),
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

