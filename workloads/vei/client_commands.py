"""`edgerig vei camera` and `edgerig vei vision`: the clients' own argument parsers, behind the CLI."""

from __future__ import annotations

import typer

# Options go through untouched to the client's argparse parser, so both entry points
# (`python -m workloads.vei.camera` and `edgerig vei camera`) take exactly the same flags.
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def camera_command(ctx: typer.Context) -> None:
    """Camera client: frames at a fixed rate, open-loop, at-least-once (--help for options)."""
    from workloads.vei import camera

    raise typer.Exit(camera.main(ctx.args))


def vision_command(ctx: typer.Context) -> None:
    """Emulated vision app: subscribe, process, publish detections (--help for options)."""
    from workloads.vei import vision

    raise typer.Exit(vision.main(ctx.args))


def register(vei_app: typer.Typer) -> None:
    vei_app.command("camera", context_settings=_PASS_THROUGH, add_help_option=False)(camera_command)
    vei_app.command("vision", context_settings=_PASS_THROUGH, add_help_option=False)(vision_command)
