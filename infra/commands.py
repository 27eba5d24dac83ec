"""`edgerig stack check|render`: validate a stack file and show what `pulumi up` would build, without
Pulumi, a cloud or a cluster."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from infra.cloud.security import security_rules
from infra.model import Testbed
from infra.stackfile import StackConfigError, load_stack_file

STACKS_DIR = Path(__file__).resolve().parents[1] / "stacks"
stack_app = typer.Typer(
    help="Check and render stack files (stacks/Pulumi.<name>.yaml) without Pulumi.", no_args_is_help=True
)


def _load(stack: str) -> Testbed:
    path = Path(stack) if stack.endswith((".yaml", ".yml")) else STACKS_DIR / f"Pulumi.{stack}.yaml"
    try:
        return load_stack_file(path)
    except StackConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@stack_app.command("check")
def check(stack: str = typer.Argument(..., help="stack name (pi-k3s) or path to a stack file")) -> None:
    """Validate a stack file. Secrets come from EDGERIG_K3S_TOKEN and the other EDGERIG_* variables."""
    tb = _load(stack)
    kubeedge = tb.kubeedge.version if tb.kubeedge.enabled else "off"
    typer.echo(f"{tb.name}: {len(tb.nodes)} nodes, K3s {tb.k3s.version}, KubeEdge {kubeedge}")
    for node in tb.nodes:
        where = str(node.address) if node.address else f"OpenStack {node.flavor}"
        typer.echo(f"  {node.name:<14} {node.realm:<5} {node.role:<6} {where}")
    if tb.cloudcore_node:
        typer.echo(f"  CloudCore on {tb.cloudcore_node.name}")
    if tb.openstack_nodes:
        rules = len(security_rules(tb))
        typer.echo(f"  {rules} security-group rules (`edgerig stack render {stack}` lists them)")


@stack_app.command("render")
def render(stack: str = typer.Argument(..., help="stack name or path to a stack file")) -> None:
    """Print, as YAML, the security-group rules, Helm values and Kubernetes objects the program creates."""
    # Imported here: rendering loads pulumi_kubernetes (~0.6 s), which every other `edgerig` command
    # would otherwise pay at start-up.
    from infra.rendering import all_objects, helm_values

    tb = _load(stack)
    docs = [
        {"securityGroupRules": [vars(r) for r in security_rules(tb)] if tb.openstack_nodes else []},
        {"helmValues": helm_values(tb)},
        *all_objects(tb),
    ]
    typer.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
