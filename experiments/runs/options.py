"""What every experiment's run takes and how its CLI reports failures, declared once: the target,
repeats and rebuild policy, the results folder, and the exit codes of a failed run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from experiments.runs.repeat import REBUILD_POLICIES
from experiments.testbeds import TargetSpec, TestbedError, parse_target
from experiments.testbeds.errors import SystemDied
from experiments.testbeds.journal import BusyError
from experiments.testbeds.processes import Interrupted

LOCAL_TARGET = "local"
console = Console(stderr=True)


class ConfigError(ValueError):
    """A bad option; the message names it and the fix."""


@dataclass
class CommonRunOptions:
    """Where and how often an experiment runs (every experiment takes these)."""

    target: str = LOCAL_TARGET
    repeat: int = 1
    rebuild: str = "each-run"

    def target_spec(self) -> TargetSpec:
        try:
            return parse_target(self.target)
        except TestbedError as err:
            raise ConfigError(str(err)) from None

    def run_problems(self) -> list[str]:
        problems = []
        if self.repeat < 1:
            problems.append(f"--repeat must be >= 1 (got {self.repeat})")
        if self.rebuild not in REBUILD_POLICIES:
            problems.append(f"--rebuild must be one of {', '.join(REBUILD_POLICIES)} (got {self.rebuild!r})")
        elif self.rebuild == "never" and self.target_spec().kind != "stack":
            problems.append("--rebuild never uses an already deployed Pulumi stack; local, emulated and "
                            "fleet testbeds are built for the run: use each-run or once")
        return problems


SINK_CHOICES = ("auto", "gateway", "process")
SINK_HELP = ("where results are recorded: gateway (the gateway writes them itself, as the original VEI "
             "delivered to its cloud), process (the local sink process, over NATS), or auto (gateway on "
             "the local testbed with a fresh testbed per run, else process)")


@dataclass
class StreamRunOptions(CommonRunOptions):
    """An experiment that streams a camera through the VEI system to a cloud sink: where its results
    are recorded (latency, throughput, resources)."""

    sink: str = "auto"

    def gateway_records(self) -> bool:
        """True when the system's gateway records the results itself (no sink process)."""
        if self.sink == "auto":
            return self.rebuild == "each-run" and self._target_kind() == "local"
        return self.sink == "gateway"

    def run_problems(self) -> list[str]:
        problems = super().run_problems()
        if self.sink not in SINK_CHOICES:
            problems.append(f"--sink must be one of {', '.join(SINK_CHOICES)} (got {self.sink!r})")
        elif self.sink == "gateway":
            kind = self._target_kind()
            if kind not in ("local", None):
                problems.append(f"--sink gateway needs the local testbed, whose one gateway runs on this "
                                f"machine; the {kind} testbed's gateways record nothing here: use "
                                "--sink process (or auto)")
            elif self.rebuild != "each-run":
                problems.append("--sink gateway needs --rebuild each-run: one gateway recording every run "
                                "would drop a later run's frames as duplicates of an earlier run's; use "
                                "--rebuild each-run or --sink process")
        return problems

    def _target_kind(self) -> str | None:
        try:
            return parse_target(self.target).kind
        except TestbedError:
            return None  # reported by target_spec()


def resolved(cfg: Any) -> dict[str, Any]:
    """A config as JSON-safe data for run.json."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}


def default_out(kind: str) -> Path:
    return Path("results") / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def out_problems(out: Path) -> list[str]:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return [f"--out {out} already exists and is not an empty directory; choose a new folder"]
    return []


TARGET_HELP = "testbed: local, emulated[:N], fleet[:N], stack:NAME or a stack name"
REBUILD_HELP = "each-run (fresh testbed per run), once, or never (a deployed stack as it is)"
# The options every experiment takes, declared once.
TargetOption = Annotated[str, typer.Option(help=TARGET_HELP)]
RepeatOption = Annotated[int, typer.Option(help="runs, each from a clean start")]
RebuildOption = Annotated[str, typer.Option(help=REBUILD_HELP)]
ProgressOption = Annotated[bool, typer.Option(help="show a progress bar")]
SinkOption = Annotated[str, typer.Option(help=SINK_HELP)]
T = TypeVar("T")


def fail(message: str, code: int) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def guarded(run: Callable[[], T]) -> T:
    """Map a run's failures to exit codes: 2 bad options, 130 interrupted, 1 the run failed."""
    try:
        return run()
    except ConfigError as err:
        raise fail(str(err), 2) from None
    except Interrupted as err:
        raise fail(f"{err}: stopped every process and removed the temp dirs", 130) from None
    except (TestbedError, SystemDied, BusyError) as err:
        raise fail(str(err), 1) from None
