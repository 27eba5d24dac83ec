"""`edgerig run faas`: the OpenFaaS thesis's evaluation (chapter 5) on a testbed.

For every function x scenario the testbed deploys the function with the scenario's placement and
entry point; the load (workloads/functions/load.py, locust) ramps its virtual users up and holds
them; meanwhile the function's pods (node, realm, phase, readiness) are tracked and, every sample,
the users and how the function scales (the HPA's current and desired replicas on a cluster) go on
one timeline. Then the testbed removes what it deployed, and the cell's records become its summary
and plots. Folder per cell: `<function>-<scenario>/` with requests.csv, pods.csv, hpa.csv,
summary.json, faas.png; the run's summary.json lists every cell.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from experiments.faas import analysis, plot
from experiments.faas.config import EVERY, FaasConfig
from experiments.runs.options import resolved
from experiments.runs.repeat import RunContext, RunPlan, run_repeated
from experiments.runs.report import METRICS as REPORT_METRICS
from experiments.testbeds.base import TestbedError
from experiments.testbeds.functions import SCENARIOS, FunctionDeployment, FunctionHost
from experiments.testbeds.pod_watch import PodRow, PodTracker
from workloads.functions import launch
from workloads.vei.records import read_status

# The figures of a one-cell run, at the top of its summary (a campaign's table reads them there).
METRICS = REPORT_METRICS["faas"]
READY_TIMEOUT_S = 300.0


def plan_for(cfg: FaasConfig) -> RunPlan:
    return RunPlan(experiment="faas", target=cfg.target_spec(), out=cfg.out, config=resolved(cfg),
                   system=cfg.system(), repeat=cfg.repeat, rebuild=cfg.rebuild, metrics=METRICS)


def run_faas(cfg: FaasConfig, console: Console | None = None) -> list[dict[str, Any]]:
    cfg.validate()
    console = console or Console(stderr=True)
    return run_repeated(plan_for(cfg), lambda ctx: run_once(cfg, ctx), console)


def scenarios_here(cfg: FaasConfig, realms: set[str]) -> tuple[list[str], dict[str, str]]:
    """The scenarios to run on a testbed with these realms; `every` skips (and says why) those it
    cannot place, a named scenario that cannot be placed is an error."""
    run, skipped = [], {}
    for name in cfg.scenario_names():
        missing = [r for r in (SCENARIOS[name].entry_realm, *SCENARIOS[name].realms) if r not in realms]
        if SCENARIOS[name].edge_weight is not None:
            missing = [r for r in missing if r == SCENARIOS[name].entry_realm]
        if not missing:
            run.append(name)
        elif cfg.scenarios == EVERY:
            skipped[name] = f"this testbed has no {missing[0]} node"
        else:
            raise TestbedError(f"scenario {SCENARIOS[name].title} needs a {missing[0]} node; this testbed's "
                               f"realms are {', '.join(sorted(realms))}")
    return run, skipped


def run_once(cfg: FaasConfig, ctx: RunContext) -> dict[str, Any]:
    tb = ctx.testbed
    host = tb.function_host()
    scenarios, skipped = scenarios_here(cfg, {n.realm for n in tb.nodes})
    cells = [(fn, sc) for fn in cfg.function_names() for sc in scenarios]
    for fn, sc in cells:  # every cell must be possible before the first one runs
        host.check(cfg.request(fn, sc))
    for name, why in skipped.items():
        ctx.console.print(f"[yellow]skipping[/yellow] {SCENARIOS[name].title}: {why}")
    if not host.autoscales:
        ctx.console.print(f"[yellow]note:[/yellow] the {tb.kind} testbed runs {cfg.replicas} fixed replicas "
                          "per scenario: autoscaling is not emulated, it is measured only on a cluster")
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    data: dict[str, CellData] = {}
    for n, (fn, sc) in enumerate(cells, start=1):
        ctx.console.print(f"[{n}/{len(cells)}] {fn}, {SCENARIOS[sc].title}: {cfg.users_for(fn)} users, "
                          f"ramp {cfg.ramp_s:g} s, hold {cfg.hold_s:g} s")
        with ctx.phase(f"{fn}/{sc}"):
            data[f"{fn}/{sc}"] = run_cell(cfg, ctx, host, fn, sc)
            results[f"{fn}/{sc}"] = data[f"{fn}/{sc}"][3]
    summary: dict[str, Any] = {
        "testbed": tb.kind, "functions": host.describe(),
        "cells": results, "skipped_scenarios": skipped,
        "config": {"users": cfg.users, "ramp_s": cfg.ramp_s, "hold_s": cfg.hold_s, "replicas": cfg.replicas,
                   "max_replicas": cfg.max_replicas, "cpu_percent": cfg.cpu_percent,
                   "cpu_request": cfg.cpu_request, "edge_weight": cfg.edge_weight, "target": cfg.target},
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    if len(results) == 1:
        summary.update({k: v for k, v in next(iter(results.values())).items() if k not in summary})
    for fn in cfg.function_names():
        pair = [data[f"{fn}/{sc}"] for sc in ("base-cloud", "base-edge") if f"{fn}/{sc}" in data]
        if len(pair) == 2:  # Base Cloud beside Base Edge, as the thesis's Figs. 5.1, 5.3, 5.5, 5.7
            plot.plot_pair(ctx.run_dir / f"{fn}-base.png", pair, tb.kind)
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


CellData = tuple[list[analysis.Request], list[PodRow], list[analysis.Sample], dict[str, Any]]


def run_cell(cfg: FaasConfig, ctx: RunContext, host: FunctionHost, fn: str, sc: str) -> CellData:
    tb = ctx.testbed
    cell = ctx.run_dir / f"{fn}-{sc}"
    cell.mkdir()
    request = cfg.request(fn, sc)
    deployment = host.deploy(request)
    samples: list[analysis.Sample] = []
    try:
        tracker = PodTracker(deployment.realms)
        deployment.observe(tracker)
        deployment.wait_ready(READY_TIMEOUT_S)
        status = cell / "load-status.json"
        spec = launch.load(function=fn, urls=deployment.entry_urls, users=cfg.users_for(fn),
                           ramp_s=cfg.ramp_s, hold_s=cfg.hold_s, records=cell / "requests.csv",
                           status_file=status, timeout_s=cfg.timeout_s)
        load = tb.start_client(f"load-{fn}-{sc}", spec)
        samples = follow(cfg, ctx, deployment, tracker, load, status, f"{fn} {SCENARIOS[sc].title}")
        stats = read_status(status)
        code = tb.stop_client(load)
        if not stats.get("final") or code not in (0, None):
            raise TestbedError(f"the load generator for {fn} exited with code {code} without its final "
                               f"stats; its log ({load.log_path}):\n{load.log_tail()}")
        observer = deployment.stop_observing()
        described = deployment.describe()
    finally:
        deployment.remove()
    pods = list(tracker.rows)
    requests = analysis.place_requests(analysis.read_requests(cell / "requests.csv"), pods, deployment.realms)
    analysis.write_requests(cell / "requests.csv", requests)
    analysis.write_pods(cell / "pods.csv", pods)
    analysis.write_timeline(cell / "hpa.csv", samples)
    summary = analysis.summarize_cell(function=fn, scenario=sc, title=SCENARIOS[sc].title,
                                      requests=requests, pods=pods, samples=samples, load=stats,
                                      autoscaled=deployment.autoscaled, observer=observer,
                                      deployment=described)
    (cell / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot.plot_cell(cell / "faas.png", requests, pods, samples, summary, tb.kind)
    clamp = (summary["hpa"] or {}).get("clamping") or {}
    if clamp.get("clamped"):
        ctx.console.print(f"[red]replica limit:[/red] {clamp['message']}")
    ctx.console.print(f"    p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, "
                      f"{summary['requests']} requests, error rate {summary['error_rate']}, "
                      f"max pods {summary['max_pods']}")
    if summary["load_generator"]["saturated"]:
        ctx.console.print(f"[yellow]note:[/yellow] the load generator used "
                          f"{summary['load_generator']['cpu_cores']} cores: it may have limited the load")
    return requests, pods, samples, summary


def follow(cfg: FaasConfig, ctx: RunContext, deployment: FunctionDeployment, tracker: PodTracker,
           load: Any, status: Path, label: str) -> list[analysis.Sample]:
    """While the load runs: one sample per interval of users, scaling and pods per realm."""
    samples: list[analysis.Sample] = []
    total = cfg.ramp_s + cfg.hold_s
    allowed = total + cfg.timeout_s + 120
    deadline = time.monotonic() + allowed
    progress = (Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                         console=ctx.console, transient=True) if cfg.progress else None)
    with progress if progress is not None else contextlib.nullcontext():
        task = progress.add_task(label, total=total) if progress is not None else None
        while load.alive():
            tick = time.monotonic()
            st = read_status(status)
            started = float(st.get("started_unix_s") or time.time())
            scaling = deployment.scaling()
            samples.append(analysis.Sample(round(scaling.unix_s - started, 3), int(st.get("users") or 0),
                                           scaling, tracker.counts()))
            if progress is not None and task is not None:
                progress.update(task, completed=min(total, float(st.get("elapsed_s") or 0.0)),
                                description=f"{label}: {st.get('users', 0)} users, {st.get('requests', 0)} "
                                            f"requests, {st.get('errors', 0)} errors")
            if time.monotonic() > deadline:
                raise TestbedError(f"the load on {label} did not end within {allowed:.0f} s; "
                                   f"log: {load.log_path}")
            time.sleep(max(0.0, cfg.sample_s - (time.monotonic() - tick)))
    return samples
