"""`edgerig run faas` (CLI registration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from experiments.faas.config import FaasConfig
from experiments.runs.options import (
    ProgressOption,
    RebuildOption,
    RepeatOption,
    TargetOption,
    default_out,
    guarded,
)

console = Console(stderr=True)


def faas_command(
    function: Annotated[str, typer.Option(
        help="nodeinfo, gzip-compression, dd, shasum, a comma list, or every")] = "every",
    scenario: Annotated[str, typer.Option(
        help="base-cloud, base-edge, e1 (edge preferred, cloud allowed), a comma list, or every (those "
             "the testbed's realms allow)")] = "every",
    edge_weight: Annotated[int, typer.Option(help="E1: preferred node-affinity weight towards edge nodes, "
                                                  "0-100")] = 80,
    users: Annotated[int | None, typer.Option(help="virtual users after the ramp (default: the thesis's, "
                                                   "20; shasum 10)")] = None,
    ramp_s: Annotated[float, typer.Option(help="seconds in which the users rise from 1")] = 120.0,
    hold_s: Annotated[float, typer.Option(help="seconds the users then hold")] = 60.0,
    timeout_s: Annotated[float, typer.Option(help="a request without an answer after this is an "
                                                  "error")] = 60.0,
    replicas: Annotated[int, typer.Option(help="local/emulated: fixed replicas per scenario (no "
                                               "autoscaling there)")] = 3,
    max_replicas: Annotated[int, typer.Option(help="a stack: the HPA's maximum replicas")] = 25,
    cpu_percent: Annotated[int, typer.Option(help="a stack: the HPA's target average CPU utilisation "
                                                  "(% of the request)")] = 50,
    cpu_request: Annotated[str, typer.Option(help="a stack: the function's CPU request")] = "100m",
    sample_s: Annotated[float, typer.Option(help="seconds between samples of users, pods and "
                                                 "HPA")] = 1.0,
    out: Annotated[Path | None, typer.Option(help="results folder (default: results/faas-<time>)")] = None,
    target: TargetOption = "local",
    repeat: RepeatOption = 1,
    rebuild: RebuildOption = "each-run",
    progress: ProgressOption = True,
) -> None:
    """The OpenFaaS thesis's evaluation: functions under a ramp of virtual users, per scenario."""
    from experiments.faas.run import run_faas

    cfg = FaasConfig(functions=function, scenarios=scenario, edge_weight=edge_weight, users=users,
                     ramp_s=ramp_s, hold_s=hold_s, timeout_s=timeout_s, replicas=replicas,
                     max_replicas=max_replicas, cpu_percent=cpu_percent, cpu_request=cpu_request,
                     sample_s=sample_s, out=out or default_out("faas"), target=target,
                     repeat=repeat, rebuild=rebuild, progress=progress)
    keys = ("p50_ms", "p95_ms", "error_rate", "requests_per_s", "max_pods", "first_cloud_pod_s")
    for summary in guarded(lambda: run_faas(cfg, console)):
        for name, cell in summary["cells"].items():
            print(json.dumps({"cell": name, **{k: cell.get(k) for k in keys}}))
    console.print(f"results: {cfg.out}")


def register(run_app: typer.Typer) -> None:
    run_app.command("faas")(faas_command)
