"""Campaigns: experiments x targets x parameters x repeats from one plan file, resumable.

    name: thesis-latency
    out: results/campaign-thesis-latency      # optional; default results/campaign-<name>
    cells:
      - experiment: latency
        targets: [local, emulated:3]
        params: {frames: 300, fps: [10, 50]}  # a list gives one cell per value (all combinations)
        repeat: 3
        rebuild: each-run

Every cell is one `edgerig run <experiment> ...` in a process of its own, with the cell's folder as
its --out, so each cell's command line is exactly what its run.json records. The campaign folder
keeps `campaign.json`, a done/failed state per cell written after every change. A campaign killed
at any point (Ctrl-C, SIGTERM, SIGKILL) is continued with `--resume`, which runs only the cells that
are not done; a cell's run dies with the campaign (its parent-death signal), and whatever testbed it
left is swept - and the sweep checked - before the next cell starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from experiments.testbeds import TestbedError, parse_target

Scalar = str | int | float | bool
EXPERIMENTS = ("latency", "throughput", "failover", "resources", "faas")
STATE_FILE = "campaign.json"
PR_SET_PDEATHSIG = 1


class CampaignError(ValueError):
    """A plan or campaign folder that cannot be run; the message names the problem and the fix."""


class CellPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiment: str
    targets: list[str] = Field(min_length=1)
    params: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    repeat: int = Field(default=1, ge=1)
    rebuild: Literal["each-run", "once", "never"] = "each-run"

    @field_validator("targets", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("experiment")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {value!r}: use one of {', '.join(EXPERIMENTS)}")
        return value


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    out: Path | None = None
    cells: list[CellPlan] = Field(min_length=1)


@dataclass(frozen=True)
class Cell:
    id: str
    experiment: str
    target: str
    params: dict[str, Scalar]
    repeat: int
    rebuild: str

    def argv(self, out: Path) -> list[str]:
        args = ["run", self.experiment, "--target", self.target, "--repeat", str(self.repeat),
                "--rebuild", self.rebuild, "--out", str(out)]
        for key, value in self.params.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else f"--no-{key.replace('_', '-')}")
            else:
                args += [flag, str(value)]
        return args


def _slug(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")


# experiment name -> the click command behind `edgerig run <experiment>` (the CLI passes it in, so this
# module needs nothing from the CLI layer above it)
CommandLookup = Callable[[str], Any]


def _check_params(experiment: str, params: dict[str, Scalar], commands: CommandLookup) -> list[str]:
    """Each parameter must be an option of `edgerig run <experiment>` and parse as it does: the cell's
    own command line is parsed here, without running it."""
    reserved = {"target", "repeat", "rebuild", "out"}
    bad = [k for k in params if k.replace("-", "_") in reserved]
    if bad:
        return [f"{experiment}: set {', '.join(bad)} on the cell (targets, repeat, rebuild), not in params; "
                "the campaign chooses --out"]
    args = Cell("check", experiment, "local", dict(params), 1, "each-run").argv(Path("unused"))[2:]
    try:
        commands(experiment).make_context(experiment, args)
    except Exception as err:  # typer's click: NoSuchOption, BadParameter, ...
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        return [f"{experiment}: {message}"]
    return []


def load_plan(path: Path, commands: CommandLookup) -> tuple[Plan, list[Cell]]:
    """Read and check a plan; every problem is reported before anything runs."""
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CampaignError(f"no plan file {path}") from None
    except yaml.YAMLError as err:
        raise CampaignError(f"{path} is not valid YAML: {err}") from None
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as err:
        lines = [f"{'.'.join(str(x) for x in e['loc']) or 'plan'}: {e['msg']}" for e in err.errors()]
        raise CampaignError(f"invalid plan {path}:\n  " + "\n  ".join(lines)) from None
    cells: list[Cell] = []
    problems: list[str] = []
    for spec in plan.cells:
        for target in spec.targets:
            try:
                parse_target(target)
            except TestbedError as err:
                problems.append(str(err))
        keys = list(spec.params)
        values = [v if isinstance(v, list) else [v] for v in spec.params.values()]
        for combo in itertools.product(*values):
            params = dict(zip(keys, combo, strict=True))
            problems += _check_params(spec.experiment, params, commands)
            for target in spec.targets:
                parts = [spec.experiment, target, *(f"{k}{v}" for k, v in params.items())]
                cells.append(Cell("-".join(_slug(p) for p in parts), spec.experiment, target, params,
                                  spec.repeat, spec.rebuild))
    ids = [c.id for c in cells]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        problems.append(f"cells appear twice: {', '.join(dupes)}")
    if problems:
        raise CampaignError(f"invalid plan {path}:\n  " + "\n  ".join(dict.fromkeys(problems)))
    return plan, cells


def campaign_dir(plan: Plan) -> Path:
    return plan.out or Path("results") / f"campaign-{plan.name}"


# -- state -----------------------------------------------------------------------------------------
@dataclass
class CellState:
    status: str = "pending"        # pending | running | done | failed
    attempts: int = 0
    started_unix_s: float | None = None
    ended_unix_s: float | None = None
    exit_code: int | None = None
    error: str = ""


@dataclass
class State:
    plan: str
    plan_sha256: str
    cells: dict[str, CellState] = field(default_factory=dict)
    sweeps: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path) -> State | None:
        try:
            data = json.loads((folder / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise CampaignError(f"{folder / STATE_FILE} is corrupt ({err}); move it away to start "
                                "over") from None
        cells = {k: CellState(**v) for k, v in data.pop("cells").items()}
        return cls(**data, cells=cells)

    def save(self, folder: Path) -> None:
        tmp = folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, folder / STATE_FILE)

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "failed": 0, "running": 0, "pending": 0}
        for cell in self.cells.values():
            out[cell.status] = out.get(cell.status, 0) + 1
        return out


def _plan_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _die_with_parent() -> None:
    """In the cell's process before exec: if the campaign dies (even SIGKILL), so does the cell."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def sweep_and_check() -> dict[str, Any]:
    """Tear down what crashed runs left, then prove nothing is left; raises when something is."""
    from experiments.testbeds.sweep import leftovers, sweep

    removed = sweep()
    left = leftovers()
    if left:
        raise CampaignError("testbeds left by a crashed run could not be removed: " + ", ".join(left)
                            + "; remove them by hand (`edgerig testbed list`) and resume")
    return {"unix_s": round(time.time(), 3), "removed": removed}


@contextlib.contextmanager
def _forward_signals(child: Callable[[], subprocess.Popen[bytes] | None]) -> Iterator[list[int]]:
    """SIGINT/SIGTERM go to the running cell (which cleans up); the campaign stops after it."""
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        proc = child()
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_campaign(plan_path: Path, resume: bool, echo: Callable[[str], None],
                 commands: CommandLookup) -> tuple[Path, State, list[Cell]]:
    """Run every cell not done yet; returns the campaign folder, its state and the plan's cells."""
    plan, cells = load_plan(plan_path, commands)
    folder = campaign_dir(plan)
    state = State.load(folder)
    if state is not None and not resume and any(c.status != "pending" for c in state.cells.values()):
        raise CampaignError(f"{folder} already holds this campaign's progress "
                            f"({state.counts()['done']} of {len(state.cells)} cells done): run it again with "
                            "--resume to do only what is missing, or give the plan a new `out`")
    if state is None:
        if folder.exists() and any(folder.iterdir()):
            raise CampaignError(f"{folder} exists and is not a campaign folder: choose a new `out`")
        folder.mkdir(parents=True, exist_ok=True)
        state = State(plan.name, _plan_hash(plan_path))
    elif state.plan_sha256 != _plan_hash(plan_path):
        echo("note: the plan file changed since the campaign started; cells are matched by id")
        state.plan_sha256 = _plan_hash(plan_path)
    for cell in cells:
        state.cells.setdefault(cell.id, CellState())
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "cells").mkdir(exist_ok=True)
    state.save(folder)
    todo = [c for c in cells if state.cells[c.id].status != "done"]
    echo(f"campaign {plan.name}: {len(cells) - len(todo)} of {len(cells)} cells done, {len(todo)} to run "
         f"-> {folder}")
    current: subprocess.Popen[bytes] | None = None
    with _forward_signals(lambda: current) as received:
        for n, cell in enumerate(todo, start=1):
            state.sweeps.append(sweep_and_check())
            entry = state.cells[cell.id]
            out = folder / "cells" / cell.id
            shutil.rmtree(out, ignore_errors=True)  # a half-run cell starts over
            entry.status, entry.attempts = "running", entry.attempts + 1
            entry.started_unix_s, entry.ended_unix_s = time.time(), None
            entry.exit_code, entry.error = None, ""
            state.save(folder)
            echo(f"[{n}/{len(todo)}] {cell.id}")
            log_path = folder / "logs" / f"{cell.id}.log"
            with open(log_path, "ab") as log:
                log.write(f"$ edgerig {' '.join(cell.argv(out))}\n".encode())
                log.flush()
                current = subprocess.Popen([sys.executable, "-m", "experiments", *cell.argv(out)],
                                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           preexec_fn=_die_with_parent)
                code = current.wait()
                current = None
            entry.exit_code, entry.ended_unix_s = code, time.time()
            if received:
                entry.status = "pending"  # interrupted: not a result either way
                state.save(folder)
                raise KeyboardInterrupt
            entry.status = "done" if code == 0 else "failed"
            if code != 0:
                entry.error = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                echo(f"    failed (exit {code}); log: {log_path}")
            state.save(folder)
        state.sweeps.append(sweep_and_check())
    state.save(folder)
    return folder, state, cells


def status(plan_path: Path, commands: CommandLookup) -> tuple[Path, State | None, list[Cell]]:
    plan, cells = load_plan(plan_path, commands)
    folder = campaign_dir(plan)
    return folder, State.load(folder), cells
