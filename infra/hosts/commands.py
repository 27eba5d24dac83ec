"""`edgerig cluster up|prepare|reset` (install or reset K3s/KubeEdge on the hosts of a stack or
inventory) and `edgerig artefacts pin|check` (the digests every install is verified against)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from infra import versions
from infra.hosts import api, node_objects
from infra.hosts.artefacts import ArtefactError, catalogue, required, unpinned
from infra.hosts.errors import HostStepError, RunSummary
from infra.model import Testbed
from infra.stackfile import StackConfigError

cluster_app = typer.Typer(
    help="Install or reset K3s/KubeEdge on the hosts of a stack or inventory.", no_args_is_help=True
)
artefacts_app = typer.Typer(
    help="The digests every downloaded file and pulled image is checked against.", no_args_is_help=True
)
REPO = Path(__file__).resolve().parents[2]
KUBECONFIG_DIR = Path("~/.kube")  # the admin kubeconfig's default home: outside any checkout


def default_kubeconfig(testbed: Testbed) -> Path:
    return (KUBECONFIG_DIR / f"edgerig-{testbed.name}").expanduser()


def write_private(path: Path, content: str) -> None:
    """Write `content` readable by its owner only: a new file is created 0600, an existing one is
    tightened to 0600 before anything is written into it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)
        handle.write(content)


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


def _addresses(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, address = pair.partition("=")
        if not sep or not name or not address:
            raise typer.BadParameter(f"--address {pair!r}: write NODE=IP, e.g. --address cloud0=203.0.113.10")
        out[name] = address
    return out


def _show(summary: RunSummary) -> None:
    for host in sorted(set(summary.changed) | set(summary.notes)):
        if host in summary.changed:
            typer.echo(f"{host}: {summary.changed[host]} changed")
        for note in summary.notes.get(host, []):
            typer.echo(f"{host}:   {note}")


def _progress(host: str, step: str) -> None:
    typer.echo(f"[{host}] {step}")


STACK = typer.Option(None, help="stack name (stacks/Pulumi.NAME.yaml)")
INVENTORY = typer.Option(None, help="a Testbed stack file, e.g. the fleet's")
ADDRESS = typer.Option(None, help="NODE=IP for hosts the stack file has no address for (VMs); repeatable")


@cluster_app.command("up")
def cluster_up(
    stack: str = STACK,
    inventory: Path = INVENTORY,
    kubeconfig: Path = typer.Option(  # noqa: B008
        None, help="write the admin kubeconfig here, 0600 (default: ~/.kube/edgerig-TESTBED)"
    ),
    address: list[str] = ADDRESS,
) -> None:
    testbed, known = _load(stack, inventory)
    try:
        result = api.install(testbed, progress=_progress, known_hosts=known, addresses=_addresses(address))
    except (HostStepError, ArtefactError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _show(result.summary)
    if result.kubeconfig is None:
        typer.echo(f"no kubeconfig: {result.reason}")
    else:
        target = kubeconfig or default_kubeconfig(testbed)
        write_private(target, result.kubeconfig)
        typer.echo(f"kubeconfig written to {target} (0600)")


@cluster_app.command("prepare")
def cluster_prepare(
    out: Path = typer.Option(..., help="directory for the inventories and rendered files"),  # noqa: B008
    stack: str = STACK,
    inventory: Path = INVENTORY,
    address: list[str] = ADDRESS,
) -> None:
    """Render every host's files, verify every artefact and write inventories for both tools:
    `ansible-playbook -i OUT/inventory.yaml playbooks/ansible/install.yml` and
    `pyinfra OUT/inventory.py edgerig_deploy.install` (reset: reset.yml / edgerig_deploy.reset)."""
    testbed, known = _load(stack, inventory)
    try:
        written, summary = api.prepare(testbed, out, known_hosts=known, addresses=_addresses(address))
    except (HostStepError, ArtefactError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _show(summary)
    typer.echo(f"ansible-playbook -i {written.ansible_inventory} {REPO / 'playbooks/ansible/install.yml'}")
    typer.echo(f"pyinfra {written.pyinfra_inventory} edgerig_deploy.install")
    typer.echo(f"then, where kubectl reaches the cluster: sh {written.path / node_objects.SCRIPT} install")


@cluster_app.command("reset")
def cluster_reset(
    stack: str = STACK,
    inventory: Path = INVENTORY,
    node: list[str] = typer.Option(None, help="only these nodes (default: all)"),  # noqa: B008
    address: list[str] = ADDRESS,
) -> None:
    testbed, known = _load(stack, inventory)
    try:
        summary = api.reset(
            testbed,
            node or [n.name for n in testbed.nodes],
            progress=_progress,
            known_hosts=known,
            addresses=_addresses(address),
        )
    except HostStepError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _show(summary)


@artefacts_app.command("pin")
def artefacts_pin(
    mirror: str = typer.Option(..., "--from", help="mirror base URL (GitHub release layout) or directory"),
    registry: list[str] = typer.Option(  # noqa: B008
        None, help="REGISTRY=URL: take image manifest digests from this registry (mirror); repeatable"
    ),
    pins_file: Path = typer.Option(versions.ARTEFACT_PINS_FILE, help="the pins file to fill"),  # noqa: B008
) -> None:
    """Fill the missing pins from a mirror, each file checked against its published checksum file.

    Existing pins are never changed; nothing is written when a file or an image does not match."""
    from infra.hosts.pinning import pin_from_mirror

    registries = {}
    for pair in registry or []:
        name, sep, url = pair.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise typer.BadParameter(f"--registry {pair!r}: write REGISTRY=URL, e.g. docker.io=https://registry.lab:5000")
        registries[name] = url
    report = pin_from_mirror(mirror, registries, pins_file=pins_file)
    for key, pin in sorted(report.pinned.items()):
        typer.echo(f"pinned  {key}  {pin.algorithm}:{pin.digest}")
    for key in report.kept:
        typer.echo(f"agrees  {key}")
    for key, why in sorted(report.absent.items()):
        typer.echo(f"missing {key}: {why}")
    for key, why in sorted(report.failed.items()):
        typer.echo(f"FAILED  {key}: {why}", err=True)
    if report.failed:
        typer.echo(f"nothing written to {pins_file}: fix the mirror or review the pin, then retry", err=True)
        raise typer.Exit(1)
    typer.echo(f"{len(report.pinned)} new pins written to {pins_file}" if report.pinned else "no new pins")


@artefacts_app.command("check")
def artefacts_check(
    stack: str = typer.Argument(None, help="stack name; default: every pinned version"),
) -> None:
    """List the artefacts without a pin (what an install would refuse)."""
    items = catalogue() if stack is None else required(_load(stack, None)[0])
    missing = unpinned(items, versions.ARTEFACT_PINS)
    for item in items:
        state = "missing" if item in missing else versions.ARTEFACT_PINS[item.key].algorithm
        typer.echo(f"{state:8} {item.key}")
    if missing:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
    app.add_typer(artefacts_app, name="artefacts")
