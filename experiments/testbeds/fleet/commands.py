"""`edgerig fleet up|down`: the local test fleet, for rehearsing host configuration as root."""

from __future__ import annotations

import typer

fleet_app = typer.Typer(
    help="Local test fleet: Debian hosts in network namespaces, reachable over SSH (root).",
    no_args_is_help=True,
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
    from experiments.testbeds.fleet import hosts as fleet_hosts
    from experiments.testbeds.fleet.stackfile import write_stack_file

    host_names = [n for n in names.split(",") if n] or [f"host{i}" for i in range(hosts)]
    pis = set(host_names) if pi else {n for n in pi_names.split(",") if n}
    try:
        f = fleet_hosts.up(host_names, pis)
        write_stack_file(f, servers, kubeedge)
    except (fleet_hosts.FleetError, OSError) as exc:
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
    from experiments.testbeds.fleet import hosts as fleet_hosts

    for item in fleet_hosts.down():
        typer.echo(f"removed {item}")


def register(app: typer.Typer) -> None:
    app.add_typer(fleet_app, name="fleet")
