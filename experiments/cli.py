"""The `edgerig` command line.

Each area registers its own sub-commands here, so this file only wires them together:
`edgerig run <experiment>`, `edgerig campaign ...`, `edgerig testbed ...`, `edgerig vei <service>`,
`edgerig cluster ...`, `edgerig fleet ...`.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="edgerig",
    help="Build edge-cloud testbeds as code and run reproducible experiments on them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
run_app = typer.Typer(help="Run an experiment on a target (default: local, the embedded baseline).",
                      no_args_is_help=True)
vei_app = typer.Typer(help="Start one VEI service (gateway, sink, camera, vision app) in the foreground.",
                      no_args_is_help=True)
app.add_typer(run_app, name="run")
app.add_typer(vei_app, name="vei")

# Registrations: each module adds its commands to the apps above.
# (keep this list sorted; one line per area)
from experiments.faas.commands import register as _register_faas; _register_faas(run_app)  # noqa: E402, E702, I001
from experiments.failover.cli import register as _register_failover; _register_failover(run_app)  # noqa: E402, E702, I001
from experiments.latency.commands import register as _register_latency; _register_latency(run_app)  # noqa: E402, E702, I001
from experiments.resources.commands import register as _register_resources; _register_resources(run_app)  # noqa: E402, E702, I001
from experiments.runs.commands import register as _register_campaign; _register_campaign(app)  # noqa: E402, E702, I001
from experiments.runs.compare import register as _register_compare; _register_compare(app)  # noqa: E402, E702, I001
from experiments.testbeds.commands import register as _register_testbed; _register_testbed(app)  # noqa: E402, E702, I001
from experiments.testbeds.fleet.commands import register as _register_fleet; _register_fleet(app)  # noqa: E402, E702, I001
from infra.commands import register as _register_stack; _register_stack(app)  # noqa: E402, E702, I001
from infra.hosts.commands import register as _register_hosts; _register_hosts(app)  # noqa: E402, E702, I001
from workloads.images.commands import register as _register_images; _register_images(app)  # noqa: E402, E702, I001
from workloads.vei.client_commands import register as _register_vei_clients; _register_vei_clients(vei_app)  # noqa: E402, E702, I001
from workloads.vei.commands import register as _register_vei_gateway; _register_vei_gateway(vei_app)  # noqa: E402, E702, I001


def main() -> None:
    app()


if __name__ == "__main__":
    main()
