"""`edgerig run latency` and `edgerig run throughput` (CLI registration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from experiments.latency.config import LatencyConfig, ThroughputConfig
from experiments.runs.options import (
    ProgressOption,
    RebuildOption,
    RepeatOption,
    SinkOption,
    TargetOption,
    default_out,
    fail,
    guarded,
)

console = Console(stderr=True)


def latency_command(
    frames: Annotated[int, typer.Option(help="frames to stream")] = 1000,
    fps: Annotated[float, typer.Option(help="frames per second (open-loop)")] = 10.0,
    frame_bytes: Annotated[int, typer.Option(help="synthetic frame size in bytes")] = 24 * 1024,
    out: Annotated[Path | None, typer.Option(help="results folder [default: results/latency-<time>]")] = None,
    target: TargetOption = "local",
    repeat: RepeatOption = 1,
    rebuild: RebuildOption = "each-run",
    quiet_s: Annotated[float, typer.Option(help="quiescent window before streaming (s)")] = 10.0,
    floor_frames: Annotated[int | None, typer.Option(help="floor samples [default: min(frames,300)]")] = None,
    processing_ms: Annotated[float, typer.Option(help="vision app's emulated processing time")] = 0.0,
    throughput: Annotated[bool, typer.Option("--throughput", help="run the throughput ramp instead")] = False,
    sink: SinkOption = "auto",
    progress: ProgressOption = True,
) -> None:
    """Latency of the baseline system: camera -> gateway -> NATS -> vision -> cloud sink."""
    if throughput:
        throughput_command(frame_bytes=frame_bytes, out=out, target=target, repeat=repeat, rebuild=rebuild,
                           quiet_s=quiet_s, sink=sink, progress=progress)
        return
    from experiments.latency.run import run_latency

    cfg = LatencyConfig(frames=frames, fps=fps, frame_bytes=frame_bytes, out=out or default_out("latency"),
                        target=target, repeat=repeat, rebuild=rebuild, quiet_s=quiet_s,
                        floor_frames=floor_frames, processing_ms=processing_ms, sink=sink, progress=progress)
    summaries = guarded(lambda: run_latency(cfg, console))
    keys = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "frames_sent", "frames_received", "lost",
            "floor_p50_ms", "floor_p95_ms", "floor_ratio_p50")
    verdict = {True: "[green]ok[/green]", False: "[red]missed[/red]"}
    for summary in summaries:
        cpu = (summary.get("cpu") or {}).get("total") or {}
        print(json.dumps({**{k: summary[k] for k in keys},
                          "quiescent_cores": cpu.get("quiescent_cores"),
                          "streaming_cores": cpu.get("streaming_cores"),
                          "marginal_cpu_ms_per_frame": cpu.get("marginal_ms_per_frame")}))
        if summary["targets"]:
            targets = "  ".join(f"{name} {t['value']} (≤ {t['limit']}) {verdict[t['ok']]}"
                                for name, t in summary["targets"].items())
            console.print(f"targets (10 fps, 24 KB frames, 2-core reference machine): {targets}")
    console.print(f"results: {cfg.out}")


def throughput_command(
    rates: Annotated[str, typer.Option(help="comma-separated rates (frames/s), increasing")] =
        "100,200,400,700,1000,1400,2000,2800,4000",
    step_seconds: Annotated[float, typer.Option(help="seconds per rate step")] = 5.0,
    frame_bytes: Annotated[int, typer.Option(help="frame size in bytes")] = 24 * 1024,
    p95_limit_ms: Annotated[float, typer.Option(help="sustained: p95 <= this, 0 lost")] = 100.0,
    out: Annotated[Path | None, typer.Option(help="results folder [default: results/throughput-*]")] = None,
    target: TargetOption = "local",
    repeat: RepeatOption = 1,
    rebuild: RebuildOption = "each-run",
    quiet_s: Annotated[float, typer.Option(help="quiescent window before the ramp (s)")] = 10.0,
    sink: SinkOption = "auto",
    progress: ProgressOption = True,
) -> None:
    """Raise the frame rate step by step; report the highest rate sustained with p95 <= limit, 0 lost."""
    from experiments.latency.throughput import run_throughput

    try:
        parsed = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise fail(f"--rates must be numbers separated by commas (got {rates!r})", 2) from None
    cfg = ThroughputConfig(rates=parsed, step_s=step_seconds, frame_bytes=frame_bytes,
                           p95_limit_ms=p95_limit_ms, out=out or default_out("throughput"), target=target,
                           repeat=repeat, rebuild=rebuild, quiet_s=quiet_s, sink=sink, progress=progress)
    for summary in guarded(lambda: run_throughput(cfg, console)):
        print(json.dumps({k: summary[k] for k in ("max_sustained_fps", "p95_limit_ms", "frame_bytes")}))
    console.print(f"results: {cfg.out}")


def register(run_app: typer.Typer) -> None:
    run_app.command("latency")(latency_command)
    run_app.command("throughput")(throughput_command)
