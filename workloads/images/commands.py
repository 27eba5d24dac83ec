"""`edgerig images build|lock|push`: build the images offline, resolve the lock, push to a registry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

images_app = typer.Typer(help="Container images: build them offline (amd64, arm64), lock, push.",
                         no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(images_app, name="images")


@images_app.command("build")
def build_cmd(
    arch: Annotated[str, typer.Option(help="comma-separated: amd64, arm64 (the Pis)")] = "amd64,arm64",
    out: Annotated[Path | None, typer.Option(help="where archives, indexes and images.json go "
                                                 "(default build/images)")] = None,
    image: Annotated[list[str] | None, typer.Option(help="build only this image (repeatable)")] = None,
) -> None:
    """Build the VEI image and the four function images as OCI archives, a multi-arch index each."""
    from workloads.images import arches, build

    try:
        chosen = arches.parse_arches(arch)
    except arches.UnknownArch as exc:
        raise _fail(str(exc)) from exc
    target = out or build.DEFAULT_OUT
    started = time.monotonic()
    try:
        record = build.build(chosen, target, image, log=lambda line: typer.echo(line, err=True))
    except (build.BuildError, OSError, RuntimeError) as exc:
        raise _fail(str(exc), 1) from exc
    typer.echo(f"built {len(record.images)} images for {', '.join(a.name for a in chosen)} in "
               f"{time.monotonic() - started:.0f} s from {record.revision[:12]}"
               f"{' (dirty tree)' if record.dirty else ''} -> {target}")
    for name, img in record.images.items():
        sizes = ", ".join(
            f"{a} {b.compressed_bytes / 1e6:.1f} MB ({b.uncompressed_bytes / 1e6:.0f} MB unpacked)"
            for a, b in img.arches.items())
        typer.echo(f"  {name:22} {img.index_digest}  {sizes}")


@images_app.command("lock")
def lock_cmd() -> None:
    """Resolve pyproject.toml into requirements.lock (hashes, amd64 + arm64, CPython 3.11)."""
    from workloads.images import build, lock

    try:
        n = lock.generate(build.uv_binary())
    except (lock.LockError, build.BuildError) as exc:
        raise _fail(str(exc), 1) from exc
    typer.echo(f"{lock.LOCK_FILE.name}: {n} packages for {', '.join(sorted(lock.ARCHES))}")


@images_app.command("push")
def push_cmd(
    registry: Annotated[str, typer.Option(help="HOST[:PORT][/PATH] of the lab's registry")],
    source: Annotated[Path | None,
                      typer.Option("--from", help="a build folder (default build/images)")] = None,
    tls_verify: Annotated[bool, typer.Option(help="verify the registry's TLS certificate")] = True,
) -> None:
    """Push a build to a registry (digests kept), for stacks that set edgerig:images.registry."""
    from workloads.images import build, push

    folder = source or build.DEFAULT_OUT
    try:
        refs = push.push(folder, registry, tls_verify=tls_verify, log=lambda line: typer.echo(line, err=True))
    except push.PushError as exc:
        raise _fail(str(exc), 1) from exc
    for ref in refs:
        typer.echo(ref)


@images_app.command("env")
def env_cmd(
    registry: Annotated[str | None, typer.Option(help="reference the images in this registry "
                                                      "(as edgerig:images.registry)")] = None,
    source: Annotated[Path | None,
                      typer.Option("--from", help="a build folder (default build/images)")] = None,
) -> None:
    """Print `export EDGERIG_IMAGE_<FUNCTION>=<ref>` lines for the faas-cli stack file."""
    from workloads.images import build, catalog, record

    try:
        rec = record.load((source or build.DEFAULT_OUT) / record.RECORD_NAME)
    except record.RecordError as exc:
        raise _fail(str(exc), 1) from exc
    for function, image in catalog.FUNCTIONS.items():
        built = rec.images.get(image.name)
        if built is None:
            raise _fail(f"the build has no {image.name}: run `sudo edgerig images build`", 1)
        ref = built.registry_reference(registry) if registry else built.local_reference()
        typer.echo(f"export {catalog.function_env_var(function)}={ref}")
