"""`edgerig testbed list|sweep`: the testbeds that are up, and removing what crashed runs left."""

from __future__ import annotations

import typer

testbed_app = typer.Typer(help="Live testbeds on this machine, and cleanup after crashed runs.",
                          no_args_is_help=True)


@testbed_app.command("list")
def list_testbeds() -> None:
    """Every testbed that is up on this machine, and every crashed one not yet swept."""
    from experiments.testbeds import journal

    live, stale = journal.live_journals(), journal.stale_journals()
    for j in live:
        typer.echo(f"up       {j.kind:9} owner pid {j.owner_pid}, {len(j.processes)} processes ({j.path})")
    for j in stale:
        typer.echo(f"crashed  {j.kind:9} owner pid {j.owner_pid} gone, {len(j.processes)} processes: "
                   "run `edgerig testbed sweep`")
    if not live and not stale:
        typer.echo("no testbed is up")


@testbed_app.command("sweep")
def sweep_command() -> None:
    """Remove what crashed runs left: processes, namespaces, bridges, temp dirs, stacks."""
    from experiments.testbeds.sweep import leftovers, sweep

    removed = sweep()
    typer.echo("removed: " + (", ".join(removed) if removed else "nothing (already clean)"))
    left = leftovers()
    if left:
        typer.echo("still there: " + ", ".join(left), err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(testbed_app, name="testbed")
