"""`edgerig run resources`: CPU and memory of the system under test, quiescent and then streaming
(the K3s thesis's 4.1: 30 minutes each, 10 fps of 24 KB frames, sampled every second).

Where the system runs on this machine (local, emulated) the process meter samples every process
tree of it - gateway, vision app, NATS and the local sink - every `--sample-s`. On a stack the
Prometheus the stack deploys gives the pods' per-container CPU and working-set memory for the same
windows through its HTTP API. Both give samples.csv (one row per sample and component or pod),
summary.json (median and quartiles per window, per component and pod; the marginal CPU per frame)
and resources.png (box plots as the thesis's Figs. 4.1/4.2). The streaming window's frames also
give the latency, so `edgerig compare` can put a run beside another.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from experiments.latency.report import percentiles
from experiments.latency.run import check_system, meter_for, stream_camera
from experiments.latency.run import plan_for as latency_plan
from experiments.resources import prometheus
from experiments.resources.config import ResourcesConfig
from experiments.resources.meter import Sampler
from experiments.resources.report import SampleRow, plot_box, process_rows, window_summary, write_samples
from experiments.runs.frames import join_records, write_records
from experiments.runs.repeat import RunContext, RunPlan, run_repeated
from experiments.runs.report import METRICS as REPORT_METRICS
from experiments.testbeds.base import Testbed, TestbedError
from workloads.vei import launch
from workloads.vei.records import read_sink

METRICS = REPORT_METRICS["resources"]
SCRAPE_SETTLE_S = 30.0   # a stack: two 15 s scrapes after the last window before Prometheus is asked


def plan_for(cfg: ResourcesConfig) -> RunPlan:
    return latency_plan(cfg, "resources", METRICS)


def run_resources(cfg: ResourcesConfig, console: Console | None = None) -> list[dict[str, Any]]:
    cfg.validate()
    console = console or Console(stderr=True)
    return run_repeated(plan_for(cfg), lambda ctx: run_once(cfg, ctx), console)


def _progress(ctx: RunContext, enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=ctx.console,
                    transient=False)


def quiet(tb: Testbed, seconds: float, progress: Progress | None) -> None:
    """Nothing streams for `seconds`; stops at once when a system process dies."""
    task = progress.add_task(f"quiescent ({seconds:g} s)", total=seconds) if progress else None
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        check_system(tb)
        if progress is not None and task is not None:
            progress.update(task, completed=seconds - left)
        time.sleep(min(0.5, left))
    if progress is not None and task is not None:
        progress.update(task, completed=seconds)
    check_system(tb)


def run_once(cfg: ResourcesConfig, ctx: RunContext) -> dict[str, Any]:
    tb, out = ctx.testbed, ctx.run_dir
    sink = ctx.start_sink()
    procs = tb.system_processes()
    # Where the system's processes are here, they are measured here (a sink process with them); on a
    # stack its pods are measured by Prometheus and the operator's sink, like the camera, is a client.
    meter = meter_for(tb, sink) if procs else None
    names = {**tb.process_names(), **({sink.pid: "sink"} if sink is not None else {})}
    load_before = os.getloadavg()
    windows: list[tuple[str, float, float]] = []
    samples = {}
    progress = _progress(ctx, cfg.progress)
    with progress if progress is not None else contextlib.nullcontext():
        with ctx.phase("quiescent"):
            ctx.console.print(f"quiescent window: {cfg.quiet_s:g} s, nothing streaming")
            sampler = Sampler(meter, cfg.sample_s).start() if meter else None
            start = time.time()
            quiet(tb, cfg.quiet_s, progress)
            windows.append(("quiescent", start, time.time()))
            samples["quiescent"] = sampler.stop() if sampler else []
        with ctx.phase("streaming"):
            ctx.console.print(f"streaming window: {cfg.frames} frames at {cfg.fps:g} fps "
                              f"({cfg.frame_bytes} B)")
            status = out / "camera-status.json"
            spec = launch.camera(gateway=tb.endpoints.gateway_target, camera_id=cfg.camera_id,
                                 frames=cfg.frames, fps=cfg.fps, frame_bytes=cfg.frame_bytes,
                                 records=out / "camera.csv", status_file=status, drain_timeout_s=10.0)
            sampler = Sampler(meter, cfg.sample_s).start() if meter else None
            start = time.time()
            _, cam = stream_camera(tb, "camera", spec, status, cfg.frames, cfg.stream_s + 120, progress,
                                   f"{cfg.frames} frames at {cfg.fps:g} fps")
            windows.append(("streaming", start, time.time()))
            samples["streaming"] = sampler.stop() if sampler else []
    check_system(tb)
    ctx.stop_sink(sink)
    if meter is not None:
        rows = [r for w in ("quiescent", "streaming") for r in process_rows(w, samples[w], names)]
        source = "process trees on this machine (psutil): CPU time and resident memory"
    else:
        rows = stack_rows(cfg, ctx, windows)
        source = ("Prometheus query_range: rate(container_cpu_usage_seconds_total) and "
                  "container_memory_working_set_bytes per pod and container")
    summary = summarize(cfg, ctx, rows, windows, cam, source, (load_before, os.getloadavg()))
    return summary


Window = tuple[str, float, float]


def stack_rows(cfg: ResourcesConfig, ctx: RunContext, windows: list[Window]) -> list[SampleRow]:
    tb = ctx.testbed
    url = tb.endpoints.prometheus
    namespaces = tb.system_namespaces()
    if not url or not namespaces:
        raise TestbedError(f"the {tb.kind} testbed has no Prometheus (or no system namespaces) to measure "
                           "its pods: enable edgerig:platform.monitoring and `pulumi up`")
    ctx.console.print(f"waiting {SCRAPE_SETTLE_S:g} s for Prometheus to scrape the end of the window")
    time.sleep(SCRAPE_SETTLE_S)
    return prometheus.prometheus_rows(prometheus.PrometheusClient(url), windows, cfg.sample_s, namespaces,
                                      cfg.rate_range)


def summarize(cfg: ResourcesConfig, ctx: RunContext, rows: list[SampleRow], windows: list[Window],
              cam: dict[str, Any], source: str,
              load: tuple[tuple[float, ...], tuple[float, ...]]) -> dict[str, Any]:
    out = ctx.run_dir
    write_samples(out / "samples.csv", rows)
    records = join_records(out / "camera.csv", read_sink(ctx.sink_out))
    write_records(out / "records.csv", records)
    latencies = [r.latency_ms for r in records if r.latency_ms is not None]
    per_window = {}
    for name, start, end in windows:
        per_window[name] = {**window_summary([r for r in rows if r.window == name]),
                            "window_s": round(end - start, 3), "from_unix_s": round(start, 3),
                            "to_unix_s": round(end, 3)}
    q = per_window["quiescent"]["total"]["cpu_cores"]["mean"]
    s = per_window["streaming"]["total"]["cpu_cores"]["mean"]
    marginal = None if q is None or s is None else s - q
    summary: dict[str, Any] = {
        **per_window,
        # Mean cores = CPU seconds per second over the window, so the marginal cost is what frames add.
        "marginal_cpu_cores": None if marginal is None else round(marginal, 5),
        "marginal_cpu_ms_per_frame": None if marginal is None else round(marginal / cfg.fps * 1000, 4),
        "latency": {**percentiles(latencies), "frames_sent": len(records), "frames_received": len(latencies),
                    "lost": len(records) - len(latencies)},
        "camera": {k: cam.get(k) for k in ("sent", "acked", "resent", "dropped_overflow", "unacked")},
        "source": source, "sample_s": cfg.sample_s, "testbed": ctx.testbed.kind,
        "config": {"quiet_s": cfg.quiet_s, "stream_s": cfg.stream_s, "fps": cfg.fps, "frames": cfg.frames,
                   "frame_bytes": cfg.frame_bytes, "processing_ms": cfg.processing_ms, "target": cfg.target,
                   "sink": ctx.recorder},
        "loadavg_before": [round(x, 2) for x in load[0]], "loadavg_after": [round(x, 2) for x in load[1]],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    qm = per_window["quiescent"]["total"]["cpu_cores"]["median"]
    sm = per_window["streaming"]["total"]["cpu_cores"]["median"]
    plot_box(out / "resources.png", rows,
             f"System resource consumption, {ctx.testbed.kind} testbed (median cores {qm} -> {sm})\n"
             f"quiescent {cfg.quiet_s:g} s, then streaming {cfg.frames} frames at {cfg.fps:g} fps")
    return summary
