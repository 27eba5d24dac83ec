"""`edgerig vei gateway ...` and `edgerig vei sink ...`: thin wrappers that hand their arguments
to the modules' own argument parsers, so flags and --help are identical to `python -m ...`."""

from __future__ import annotations

import typer

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def register(vei_app: typer.Typer) -> None:
    @vei_app.command("gateway", context_settings=_PASS_THROUGH, add_help_option=False)
    def gateway(ctx: typer.Context) -> None:
        """The VEI gRPC gateway over NATS (see --help for flags and cloud specs)."""
        from workloads.vei.gateway import main

        raise typer.Exit(main(list(ctx.args)))

    @vei_app.command("sink", context_settings=_PASS_THROUGH, add_help_option=False)
    def sink(ctx: typer.Context) -> None:
        """The local cloud sink: records every accepted result as one JSON line."""
        from workloads.vei.sink import main

        raise typer.Exit(main(list(ctx.args)))
