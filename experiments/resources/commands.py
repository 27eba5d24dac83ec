"""`edgerig run resources` (CLI registration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from experiments.resources.config import THESIS_WINDOW_S, ResourcesConfig
from experiments.runs.options import (
    ProgressOption,
    RebuildOption,
    RepeatOption,
    SinkOption,
    TargetOption,
    default_out,
    guarded,
)

console = Console(stderr=True)


def resources_command(
    quiet_s: Annotated[float, typer.Option(help="quiescent window: everything up, nothing streaming "
                                                "(s; the thesis: 30 min; a trial: 60)")] = THESIS_WINDOW_S,
    stream_s: Annotated[float, typer.Option(help="streaming window (s): fps x this many frames "
                                                 "(the thesis: 30 min; a trial: 60)")] = THESIS_WINDOW_S,
    sample_s: Annotated[float, typer.Option(help="seconds between samples")] = 1.0,
    fps: Annotated[float, typer.Option(help="camera frame rate while streaming")] = 10.0,
    frame_bytes: Annotated[int, typer.Option(help="frame size in bytes")] = 24 * 1024,
    processing_ms: Annotated[float, typer.Option(help="the vision app's emulated processing time")] = 0.0,
    rate_range: Annotated[str, typer.Option(help="a stack: Prometheus rate() range over the "
                                                 "scrapes")] = "1m",
    out: Annotated[Path | None, typer.Option(help="results folder "
                                                  "(default: results/resources-<time>)")] = None,
    target: TargetOption = "local",
    repeat: RepeatOption = 1,
    rebuild: RebuildOption = "each-run",
    sink: SinkOption = "auto",
    progress: ProgressOption = True,
) -> None:
    """CPU and memory of the system, quiescent and then streaming (the K3s thesis's Figs. 4.1/4.2)."""
    from experiments.resources.run import run_resources

    cfg = ResourcesConfig(quiet_s=quiet_s, stream_s=stream_s, sample_s=sample_s, fps=fps,
                          frame_bytes=frame_bytes, processing_ms=processing_ms, rate_range=rate_range,
                          out=out or default_out("resources"), target=target, repeat=repeat,
                          rebuild=rebuild, sink=sink, progress=progress)
    for s in guarded(lambda: run_resources(cfg, console)):
        q, st = s["quiescent"]["total"], s["streaming"]["total"]
        print(json.dumps({"quiescent_cores": q["cpu_cores"]["median"],
                          "streaming_cores": st["cpu_cores"]["median"],
                          "quiescent_mb": q["memory_mb"]["median"], "streaming_mb": st["memory_mb"]["median"],
                          "marginal_cpu_ms_per_frame": s["marginal_cpu_ms_per_frame"],
                          "p50_ms": s["latency"]["p50_ms"], "p95_ms": s["latency"]["p95_ms"]}))
    console.print(f"results: {cfg.out}")


def register(run_app: typer.Typer) -> None:
    run_app.command("resources")(resources_command)
