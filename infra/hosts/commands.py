"""`edgerig cluster up|reset`: install or reset K3s/KubeEdge on the hosts of a stack or inventory."""

from __future__ import annotations

from pathlib import Path

import typer

from infra.hosts import api
from infra.hosts.artefacts import ArtefactError
from infra.hosts.errors import HostStepError, RunSummary
from infra.model import Testbed
from infra.stackfile import StackConfigError

cluster_app = typer.Typer(
    help="Install or reset K3s/KubeEdge on the hosts of a stack or inventory.", no_args_is_help=True
)
REPO = Path(__file__).resolve().parents[2]


def _load_unchecked(stack: str | None, inventory: Path | None) -> tuple[Testbed, str | None]:
    if (stack is None) == (inventory is None):
        raise typer.BadParameter("give exactly one of --stack NAME or --inventory FILE")
    if stack is not None:
        return Testbed.from_stack_file(REPO / "stacks" / f"Pulumi.{stack}.yaml"), None
    assert inventory is not None
    # A fleet's stack file sits next to its known_hosts and its (test-only) token file.
    token_file = inventory.parent / "k3s-token"
    found = {"k3sToken": token_file.read_text().strip()} if token_file.exists() else None
    known = inventory.parent / "known_hosts"
    return Testbed.from_stack_file(inventory, secrets=found), str(known) if known.exists() else None


def _load(stack: str | None, inventory: Path | None) -> tuple[Testbed, str | None]:
    try:
        return _load_unchecked(stack, inventory)
    except StackConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _show(summary: RunSummary) -> None:
    for host in sorted(summary.changed):
        typer.echo(f"{host}: {summary.changed[host]} changed")
        for note in summary.notes.get(host, []):
            typer.echo(f"{host}:   {note}")


def _progress(host: str, step: str) -> None:
    typer.echo(f"[{host}] {step}")


@cluster_app.command("up")
def cluster_up(
    stack: str = typer.Option(None, help="stack name (stacks/Pulumi.NAME.yaml)"),
    inventory: Path = typer.Option(None, help="a Testbed stack file, e.g. the fleet's"),  # noqa: B008
    kubeconfig: Path = typer.Option(None, help="write the kubeconfig here (0600)"),  # noqa: B008
) -> None:
    testbed, known = _load(stack, inventory)
    try:
        result = api.install(testbed, progress=_progress, known_hosts=known)
    except (HostStepError, ArtefactError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _show(result.summary)
    if result.kubeconfig is None:
        typer.echo(f"no kubeconfig: {result.reason}")
    elif kubeconfig is not None:
        kubeconfig.touch(mode=0o600)
        kubeconfig.write_text(result.kubeconfig)
        typer.echo(f"kubeconfig written to {kubeconfig}")


@cluster_app.command("reset")
def cluster_reset(
    stack: str = typer.Option(None),
    inventory: Path = typer.Option(None),  # noqa: B008
    node: list[str] = typer.Option(None, help="only these nodes (default: all)"),  # noqa: B008
) -> None:
    testbed, known = _load(stack, inventory)
    try:
        summary = api.reset(
            testbed, node or [n.name for n in testbed.nodes], progress=_progress, known_hosts=known
        )
    except HostStepError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _show(summary)


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
