"""Repeat an experiment on a fresh testbed: `--repeat K --rebuild each-run|once|never`.

- `each-run` (the default): every run gets its own testbed, built and torn down around it, as the
  theses reset between runs;
- `once`: one testbed for all K runs (cheaper; runs can influence each other);
- `never`: a Pulumi stack that is already deployed is used as it is: no `up`, no `destroy`.

Before each run the testbed checks that it starts clean; the result goes into the run's run.json
with the rest of its provenance. With K = 1 the run's files go straight into the results folder;
with K > 1 into `r1/` .. `rK/` and the folder gets aggregate.json (median and min-max per figure).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from experiments.runs import provenance
from experiments.runs.aggregate import aggregate_runs
from experiments.testbeds import TargetSpec, make_testbed
from experiments.testbeds.base import SystemSpec, Testbed, TestbedError
from experiments.testbeds.processes import Child

REBUILD_POLICIES = ("each-run", "once", "never")


@dataclass
class RunContext:
    """What an experiment's run function gets: the testbed, its folder and a phase recorder."""

    testbed: Testbed
    run_dir: Path
    index: int
    console: Console
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    gateway_records: bool = False  # the system's gateway writes sink_out itself: no sink process

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        entry = {"start_unix_s": round(time.time(), 3)}
        self.phases[name] = entry
        try:
            yield
        finally:
            entry["end_unix_s"] = round(time.time(), 3)

    @property
    def sink_out(self) -> Path:
        return self.run_dir / SINK_FILE

    @property
    def recorder(self) -> str:
        """Who records this run's results, as `--sink` names it: `gateway` or `process`."""
        return "gateway" if self.gateway_records else "process"

    def start_sink(self) -> Child | None:
        """The local sink process recording into sink_out, or None where the gateway records them."""
        return None if self.gateway_records else self.testbed.start_sink(self.sink_out)

    def stop_sink(self, sink: Child | None) -> None:
        """SIGTERM: the sink process writes its stats file (the gateway's recorder keeps its own)."""
        if sink is not None:
            self.testbed.stop_client(sink)


SINK_FILE = "sink.jsonl"


RunFunction = Callable[[RunContext], dict[str, Any]]


@dataclass(frozen=True)
class RunPlan:
    experiment: str
    target: TargetSpec
    out: Path
    config: Mapping[str, Any]
    system: SystemSpec
    repeat: int = 1
    rebuild: str = "each-run"
    metrics: Sequence[str] = ()      # summary keys aggregated across repeats
    # The gateway records each run's results into the run's sink file (a `local=file:` cloud), as
    # the original VEI delivered to its cloud itself: one process and two NATS messages per frame
    # fewer than the sink process. Needs a testbed per run (each-run), built for that run's file.
    gateway_records: bool = False

    def system_for(self, run_dir: Path) -> SystemSpec:
        """The system of the run recorded in `run_dir`."""
        if not self.gateway_records:
            return self.system
        return replace(self.system, clouds=(f"local=file:{(run_dir / SINK_FILE).resolve()}",))

    def run_dirs(self) -> list[Path]:
        return [self.out] if self.repeat == 1 else [self.out / f"r{k}" for k in range(1, self.repeat + 1)]


def check_plan(plan: RunPlan) -> list[str]:
    problems = []
    if plan.repeat < 1:
        problems.append(f"--repeat must be >= 1 (got {plan.repeat})")
    if plan.rebuild not in REBUILD_POLICIES:
        problems.append(f"--rebuild must be one of {', '.join(REBUILD_POLICIES)} (got {plan.rebuild!r})")
    elif plan.gateway_records and plan.rebuild != "each-run":
        problems.append("the gateway records a run's results only with --rebuild each-run (a testbed "
                        "built for that run's sink file)")
    elif plan.rebuild == "never" and plan.target.kind != "stack":
        problems.append(f"--rebuild never uses an already deployed Pulumi stack; the {plan.target.kind} "
                        "testbed exists only while a run holds it: use each-run or once")
    if plan.out.exists() and (not plan.out.is_dir() or any(plan.out.iterdir())):
        problems.append(f"--out {plan.out} already exists and is not an empty directory; choose a new folder")
    return problems


def run_repeated(plan: RunPlan, run_once: RunFunction, console: Console | None = None,
                 argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run `run_once` plan.repeat times under the rebuild policy; returns every run's summary."""
    console = console or Console(stderr=True)
    problems = check_plan(plan)
    if problems:
        raise TestbedError("; ".join(problems))
    # Prerequisites first: a run that cannot start creates nothing, not even its folder.
    make_testbed(plan.target, plan.system, attach=plan.rebuild == "never").preflight()
    plan.out.mkdir(parents=True, exist_ok=True)
    summaries: list[dict[str, Any]] = []
    dirs = plan.run_dirs()

    records: list[tuple[Path, dict[str, Any]]] = []

    def one(tb: Testbed, k: int, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if plan.repeat > 1:
            console.print(f"== run {k} of {plan.repeat} on {tb.kind} -> {run_dir}")
        ctx = RunContext(tb, run_dir, k, console, gateway_records=plan.gateway_records)
        check = tb.check_clean(ctx.sink_out)
        summary: dict[str, Any] | None = None
        try:
            if not check.clean:
                raise TestbedError(f"the {tb.kind} testbed does not start clean: {'; '.join(check.problems)}")
            with ctx.phase("run"):
                summary = run_once(ctx)
            summaries.append(summary)
        finally:
            record = provenance.build(
                experiment=plan.experiment, config=plan.config, testbed=tb.describe(),
                clean_check=check.as_dict(), phases={**tb.phases, **ctx.phases},
                stack_file=plan.target.stack_file, stack_outputs=tb.public_outputs(), argv=argv,
                run={"index": k, "of": plan.repeat, "rebuild": plan.rebuild, "target": plan.target.text,
                     "completed": summary is not None})
            provenance.write(run_dir, record)
            records.append((run_dir, record))

    def finish(tb: Testbed, pending: list[tuple[Path, dict[str, Any]]]) -> None:
        """After tear-down: every run.json gets the down phase too."""
        for run_dir, record in pending:
            if "down" in tb.phases:
                record["phases"]["down"] = tb.phases["down"]
            provenance.write(run_dir, record)

    if plan.rebuild == "each-run":
        for k, run_dir in enumerate(dirs, start=1):
            tb = make_testbed(plan.target, plan.system_for(run_dir), log_dir=run_dir / "logs",
                              progress=console.print)
            try:
                with tb:
                    one(tb, k, run_dir)
            finally:
                finish(tb, records[-1:] if records and records[-1][0] == run_dir else [])
    else:
        tb = make_testbed(plan.target, plan.system, log_dir=plan.out / "logs", progress=console.print,
                          attach=plan.rebuild == "never")
        try:
            with tb:
                for k, run_dir in enumerate(dirs, start=1):
                    one(tb, k, run_dir)
        finally:
            finish(tb, records)
    if plan.repeat > 1:
        rows = aggregate_runs(summaries, plan.metrics)
        (plan.out / "aggregate.json").write_text(json.dumps(rows, indent=2) + "\n")
    return summaries
