"""`edgerig campaign run|status|report`: experiments x targets x parameters x repeats from a plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

campaign_app = typer.Typer(help="Run many experiments from one plan file; resume after a crash.",
                           no_args_is_help=True)


_root: typer.Typer | None = None  # the app this group is registered on, for looking up experiments


def _experiment_command(name: str) -> Any:
    """The click command of `edgerig run <name>`: the campaign parses each cell's options with it."""
    assert _root is not None, "register() first"
    group: Any = typer.main.get_command(_root)
    return group.commands["run"].commands[name]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@campaign_app.command("run")
def run_command(
    plan: Path = typer.Argument(..., help="the plan file (YAML)"),  # noqa: B008
    resume: bool = typer.Option(False, "--resume", help="continue: run only the cells not done yet"),
) -> None:
    """Run every cell of the plan, each in its own process, then write index.html."""
    from experiments.runs.campaign import CampaignError, run_campaign
    from experiments.runs.report import write_report

    try:
        folder, state, cells = run_campaign(plan, resume, typer.echo, _experiment_command)
    except CampaignError as err:
        raise _fail(str(err)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted: the running cell stopped and cleaned up; continue with --resume",
                    130) from None
    typer.echo(f"report: {write_report(folder, cells, state)}")
    counts = state.counts()
    typer.echo(f"{counts['done']} done, {counts['failed']} failed of {len(state.cells)} cells")
    if counts["failed"]:
        raise typer.Exit(1)


@campaign_app.command("status")
def status_command(plan: Path = typer.Argument(..., help="the plan file (YAML)")) -> None:  # noqa: B008
    """Progress of a campaign: each cell's state, attempts and time."""
    from experiments.runs.campaign import CampaignError, status

    try:
        folder, state, cells = status(plan, _experiment_command)
    except CampaignError as err:
        raise _fail(str(err)) from None
    if state is None:
        typer.echo(f"not started: {len(cells)} cells; results will go to {folder}")
        return
    for cell in cells:
        entry = state.cells.get(cell.id)
        if entry is None:
            typer.echo(f"{'new':8} {cell.id}")
            continue
        took = (f"{entry.ended_unix_s - entry.started_unix_s:7.1f} s"
                if entry.started_unix_s and entry.ended_unix_s else " " * 9)
        typer.echo(f"{entry.status:8} {took}  attempts {entry.attempts}  {cell.id}")
    counts = state.counts()
    typer.echo(f"{counts['done']}/{len(cells)} done, {counts['failed']} failed, {counts['running']} running "
               f"(or interrupted), {counts['pending']} pending -> {folder}")


@campaign_app.command("report")
def report_command(plan: Path = typer.Argument(..., help="the plan file (YAML)")) -> None:  # noqa: B008
    """Write index.html and aggregate.json again from what the campaign folder holds."""
    from experiments.runs.campaign import CampaignError, status
    from experiments.runs.report import write_report

    try:
        folder, state, cells = status(plan, _experiment_command)
    except CampaignError as err:
        raise _fail(str(err)) from None
    if state is None:
        raise _fail(f"{folder} holds no campaign yet: run `edgerig campaign run {plan}` first")
    typer.echo(f"report: {write_report(folder, cells, state)}")


def register(app: typer.Typer) -> None:
    global _root
    _root = app
    app.add_typer(campaign_app, name="campaign")
