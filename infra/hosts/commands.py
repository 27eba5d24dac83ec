"""`edgerig cluster up|reset` and `edgerig fleet up|down`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer
import yaml

from infra.hosts import api
from infra.hosts.artefacts import ArtefactError
from infra.hosts.errors import HostStepError, RunSummary
from infra.model import Testbed
from infra.stackfile import StackConfigError

cluster_app = typer.Typer(
    help="Install or reset K3s/KubeEdge on the hosts of a stack or inventory.", no_args_is_help=True
)
fleet_app = typer.Typer(
    help="Local test fleet: Debian hosts in network namespaces, reachable over SSH (root).",
    no_args_is_help=True,
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


def write_stack_file(fleet: object, servers: int, kubeedge: bool) -> None:
    """A Testbed-compatible stack file for `cluster up --inventory`: first `servers` hosts are servers."""
    from experiments.fleet.fleet import Fleet

    assert isinstance(fleet, Fleet)
    nodes = []
    for i, h in enumerate(fleet.hosts):
        edge = h.pi and i >= servers
        nodes.append(
            {
                "name": h.name,
                "realm": "edge" if edge else "cloud",
                "role": "server" if i < servers else ("edge" if edge and kubeedge else "agent"),
                "provider": "static",
                "address": h.address,
                "sshUser": "root",
                "sshKeyPath": str(fleet.key_path),
                "model": "raspberry-pi-4-8gb" if h.pi else "fleet-vm",
                "os": "raspios" if h.pi else "debian",
            }
        )
    token = fleet.state_dir / "k3s-token"
    token.write_text(secrets.token_hex(32) + "\n")
    os.chmod(token, 0o600)
    doc = {
        "config": {
            "edgerig:nodes": nodes,
            "edgerig:kubeedge": {"enabled": kubeedge},
            "edgerig:vei": {"enabled": False},
        }
    }
    fleet.stack_path.write_text(
        "# test fleet: the K3s token is in k3s-token next to this file (test only)\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )


@fleet_app.command("up")
def fleet_up(
    hosts: int = typer.Option(3, help="number of hosts (named host0..)"),
    names: str = typer.Option("", help="comma-separated host names instead of --hosts"),
    pi: bool = typer.Option(False, help="make every host Pi-like (boot files, pyinfra)"),
    pi_names: str = typer.Option("", help="comma-separated Pi-like hosts"),
    servers: int = typer.Option(1, help="how many of the first hosts are K3s servers in the stack file"),
    kubeedge: bool = typer.Option(False, help="Pi-like agents join as KubeEdge EdgeCore"),
) -> None:
    from experiments.fleet import fleet as fleet_mod

    host_names = [n for n in names.split(",") if n] or [f"host{i}" for i in range(hosts)]
    pis = set(host_names) if pi else {n for n in pi_names.split(",") if n}
    try:
        f = fleet_mod.up(host_names, pis)
        write_stack_file(f, servers, kubeedge)
    except (fleet_mod.FleetError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for h in f.hosts:
        typer.echo(f"{h.name}: {h.address} ({'pi' if h.pi else 'vm'}) netns {h.netns}")
    typer.echo(
        f"inventory (Ansible/pyinfra): {f.inventory_path}\nstack file: {f.stack_path}\n"
        f"ssh -i {f.key_path} -o UserKnownHostsFile={f.known_hosts} root@{f.hosts[0].address}\n"
        f"rehearse: edgerig cluster up --inventory {f.stack_path}"
    )


@fleet_app.command("down")
def fleet_down() -> None:
    from experiments.fleet import fleet as fleet_mod

    for item in fleet_mod.down():
        typer.echo(f"removed {item}")


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
    app.add_typer(fleet_app, name="fleet")
