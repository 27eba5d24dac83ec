"""`edgerig run failover`: the thesis's node-failure experiment on an emulated cluster."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer

from experiments.failover.config import FAULTS, RunConfig
from experiments.failover.placement import PlacementError, parse_scenarios, placement_for
from experiments.failover.report import write_report
from experiments.failover.run import run_once
from experiments.runs.repeat import RunPlan, run_repeated
from experiments.testbeds import TargetSpec, TestbedError, parse_target
from experiments.testbeds.base import SystemSpec
from experiments.testbeds.emulated import node_names, require_root
from experiments.testbeds.journal import BusyError, exclusive
from experiments.testbeds.processes import Interrupted
from experiments.testbeds.sweep import sweep


def parse_faults(value: str) -> list[str]:
    faults = [f.strip() for f in value.split(",") if f.strip()]
    bad = [f for f in faults if f not in FAULTS]
    if bad or not faults:
        raise ValueError(f"unknown --fault {', '.join(bad) or repr(value)}: use kill, cut, hard-stop "
                         "(OpenStack VMs of a stack) or a comma list such as kill,cut")
    return faults


def failover(
    scenario: Annotated[str, typer.Option(
        help="failed node's components: nats, vision, gateway, gateway-vision, nats-vision, nats-gateway, "
             "all (= NATS+gateway+vision); a comma list; or `every` for all seven")] = "all",
    fault: Annotated[str, typer.Option(help="kill (SIGKILL every process of the node), cut (link down, "
                                            "silent), or kill,cut")] = "kill",
    target: Annotated[str, typer.Option(help="testbed: emulated[:N] (default), fleet[:N], stack:NAME or a "
                                             "stack name")] = "emulated",
    nodes: Annotated[int, typer.Option(help="nodes of an emulated or fleet testbed")] = 5,
    node: Annotated[str | None, typer.Option(help="the node to fail (a stack: required; emulated and "
                                                  "fleet: the first node, which holds the scenario)")] = None,
    rebuild: Annotated[str, typer.Option(help="each-run (a fresh testbed per run) or never (a deployed "
                                              "stack as it is)")] = "each-run",
    kill_mode: Annotated[str, typer.Option(
        help="on a stack, how kill fails the node: reboot (reboot -f, as the thesis) or k3s (stop K3s "
             "and its containers)")] = "reboot",
    down_for: Annotated[float, typer.Option(help="seconds until the failed node comes back")] = 10.0,
    repeat: Annotated[int, typer.Option(help="runs per scenario and fault, each from a clean start")] = 1,
    fps: Annotated[float, typer.Option(help="camera frame rate")] = 10.0,
    frame_bytes: Annotated[int, typer.Option(help="frame size in bytes")] = 24576,
    warmup: Annotated[float, typer.Option(help="seconds of streaming before the baseline window")] = 3.0,
    baseline: Annotated[float, typer.Option(help="seconds of baseline window before the fault")] = 10.0,
    margin: Annotated[float, typer.Option(help="seconds the latency must stay at baseline (and the node "
                                                "back) before the run ends")] = 5.0,
    cap: Annotated[float, typer.Option(help="at most this many seconds after the fault")] = 60.0,
    recovery_floor_ms: Annotated[float, typer.Option(
        help="recovery threshold = 2x baseline p95, but at least this (ms); 0 = strictly 2x")] = 20.0,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("results/failover"),
    cleanup_only: Annotated[bool, typer.Option(
        "--cleanup",
        help="only remove what crashed runs left (namespaces, bridges, processes, temp dirs)")] = False,
) -> None:
    """Fail one node of an emulated N-node cluster (3 NATS, 3 gateways, 3 vision apps) while a camera
    streams, and measure outage, loss, duplicates and recovery (thesis section 4.3). Needs root."""
    try:
        if cleanup_only:
            require_root("--cleanup")
            removed = sweep()
            typer.echo("removed: " + (", ".join(removed) if removed else "nothing (already clean)"))
            return
        scenarios, faults = parse_scenarios(scenario), parse_faults(fault)
        if repeat < 1:
            raise ValueError(f"--repeat must be >= 1 (got {repeat})")
        if rebuild not in ("each-run", "never"):
            raise ValueError(f"--rebuild {rebuild!r}: a failover run changes its testbed, so each run gets a "
                             "fresh one (each-run), or a deployed stack is used as it is (never)")
        spec = parse_target(target)
        if "hard-stop" in faults and spec.kind != "stack":
            raise ValueError(f"--fault hard-stop stops an OpenStack VM through its API: only a stack target "
                             f"has one; {spec.text} offers kill and cut")
        if kill_mode not in ("reboot", "k3s"):
            raise ValueError(f"--kill-mode {kill_mode!r}: use reboot or k3s")
        if rebuild == "never" and spec.kind != "stack":
            raise ValueError("--rebuild never uses an already deployed Pulumi stack; emulated and fleet "
                             "testbeds are built for each run")
        cfg = RunConfig(nodes=spec.nodes or nodes, fps=fps, frame_bytes=frame_bytes, warmup_s=warmup,
                        baseline_s=baseline, down_for_s=down_for, margin_s=margin, cap_s=cap,
                        recovery_floor_ms=recovery_floor_ms)
        cfg.validate()
        systems = {name: replace(system_for(spec, name, cfg), kill_mode=kill_mode)
                   for name in scenarios}  # every placement must work before the first run
        failed_node = node or (next(iter(systems[scenarios[0]].placement or {}), None))
        if failed_node is None:
            raise ValueError(f"--node is required on {spec.text}: name the node to fail")
        if spec.kind in ("emulated", "fleet"):
            require_root(f"the {spec.kind} testbed")
            with exclusive(spec.kind):  # fail now, not at the first run, if another one is going on
                pass
    except (ValueError, PlacementError, TestbedError, BusyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None

    out.mkdir(parents=True, exist_ok=True)
    summaries, errors = [], []
    for name in scenarios:
        for kind in faults:
            for k in range(1, repeat + 1):
                run_dir = out / f"{name}-{kind}-r{k}"
                typer.echo(f"== {name} / {kind} / run {k} of {repeat} on {spec.text} -> {run_dir}")
                plan = RunPlan(experiment="failover", target=spec, out=run_dir, system=systems[name],
                               config={**asdict(cfg), "scenario": name, "fault": kind, "node": failed_node,
                                       "target": spec.text, "repeat": repeat},
                               rebuild=rebuild)
                try:
                    s = run_repeated(plan, functools.partial(run_once, cfg, name, kind, failed_node))[0]
                except Interrupted as err:  # Ctrl-C / SIGTERM: the run cleaned up; stop them all
                    typer.echo(f"{err}: stopped after cleaning up", err=True)
                    raise typer.Exit(128 + err.signum) from None
                except Exception as err:  # one broken run must not lose the others' results
                    errors.append({"scenario": name, "fault": kind, "run": k, "error": str(err)})
                    typer.echo(f"   FAILED: {err}", err=True)
                    continue
                summaries.append(s)
                typer.echo(f"   outage {s['outage_s']} s, lost {s['lost']}, duplicates "
                           f"{s['duplicates_delivered']}, recovery {s['recovery_s']} s")
    if summaries:
        write_report(summaries, out)
        typer.echo((out / "table.md").read_text())
    (out / "errors.json").write_text(json.dumps(errors, indent=2) + "\n")
    if errors:
        typer.echo(f"{len(errors)} run(s) failed; see {out / 'errors.json'}", err=True)
        raise typer.Exit(1)


def system_for(target: TargetSpec, scenario: str, cfg: RunConfig) -> SystemSpec:
    """Emulated and fleet testbeds run the scenario's placement; a stack runs what it deployed."""
    if target.kind == "stack":
        return SystemSpec()
    return SystemSpec(nodes=cfg.nodes, placement=placement_for(scenario, node_names(cfg.nodes)))


def register(run_app: typer.Typer) -> None:
    run_app.command("failover")(failover)
