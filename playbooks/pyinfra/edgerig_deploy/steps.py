"""The operations every concern uses: verified binaries, rendered files, a service restarted when one
of them changed, and guarded steps. Skipped steps are reported with `host.noop("edgerig-note: ...")`,
pyinfra's own way to say an operation did nothing and why (shown with `pyinfra -v`)."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server, systemd
from pyinfra.operations.util import any_changed

NOTE = "edgerig-note: "


class ShellTest(FactBase[bool]):
    """True when the shell test succeeds (the fact command itself always exits 0)."""

    def command(self, test: str) -> str:
        return f"if {test} >/dev/null 2>&1; then echo yes; else echo no; fi"

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[-1].strip() == "yes"


def note(text: str) -> None:
    host.noop(NOTE + text)


def systemd_running() -> bool:
    return host.get_fact(ShellTest, test="test -d /run/systemd/system")


def binaries(entries: Sequence[dict[str, Any]]) -> list[OperationMeta]:
    """Upload each verified file unless the host already has it; the host checks the sha256 before
    the atomic rename, so a broken transfer never becomes the binary."""
    ops = []
    for binary in entries:
        dest, sha256 = binary["dest"], binary["sha256"]
        if host.get_fact(Sha256File, path=dest) == sha256:
            continue
        tmp = f"{dest}.edgerig-new"
        files.put(
            name=f"Upload {binary['name']}", src=binary["src"], dest=tmp, mode="0600", create_remote_dir=True
        )
        ops.append(
            server.shell(
                name=f"Verify and install {dest}",
                commands=[
                    f"if echo '{sha256}  {tmp}' | sha256sum -c --quiet; "
                    f"then chmod {binary['mode']} {tmp} && mv -f {tmp} {dest}; "
                    f"else rm -f {tmp}; echo 'sha256 mismatch for {dest} after upload' >&2; exit 1; fi"
                ],
            )
        )
    return ops


def secret_file(dest: str, content: str, mode: str) -> OperationMeta | None:
    """Write a secret file root-only from its first byte: the content goes through the command's
    stdin into a file created under umask 077, then renamed into place. A plain upload would pass it
    through a world-readable temporary file (pyinfra uploads to the temp dir, then copies with sudo)
    and create the file with the default mode before the chmod."""
    wanted = hashlib.sha256(content.encode()).hexdigest()
    if host.get_fact(Sha256File, path=dest) == wanted:
        return None
    new, directory = shlex.quote(f"{dest}.edgerig-new"), shlex.quote(dest.rsplit("/", 1)[0] or "/")
    return server.shell(
        name=f"Secret file {dest} (content not logged)",
        commands=[
            f"install -d -m 0755 {directory} && (umask 077 && cat > {new}) && chmod {mode} {new} "
            f"&& mv -fT {new} {shlex.quote(dest)} || {{ rm -f {new}; exit 1; }}"
        ],
        _stdin=content,
    )


def rendered_files(entries: Sequence[dict[str, Any]]) -> list[OperationMeta]:
    """Put each rendered file; returns the operations of those whose change restarts the service."""
    restarting = []
    for item in entries:
        with open(item["src"]) as fh:
            content = fh.read()
        if item.get("secret"):
            secret = secret_file(item["dest"], content, item["mode"])
            if secret is not None and item["restarts"]:
                restarting.append(secret)
            continue
        op = files.put(
            name=f"File {item['dest']}",
            src=StringIO(content),
            dest=item["dest"],
            mode=item["mode"],
            create_remote_dir=True,
        )
        if item["restarts"]:
            restarting.append(op)
    return restarting


def service(name: str, changed: Sequence[OperationMeta]) -> None:
    """Restart `name` once when something it reads changed, then make sure it runs and is enabled."""
    if not name:
        return
    if not systemd_running():
        note(f"skipped 'start {name}': no running systemd on this host (test fleet)")
        return
    if changed:
        systemd.service(
            name=f"Restart {name} (its binary or configuration changed)",
            service=name,
            restarted=True,
            daemon_reload=True,
            _if=any_changed(*changed),
        )
    systemd.service(name=f"Start {name}", service=name, running=True, enabled=True)


def steps(commands: Sequence[dict[str, Any]]) -> None:
    """Run each guarded step unless it is done (creates / removes / done_check) or needs systemd."""
    systemd_ok = systemd_running()
    for step in commands:
        if step["needs_systemd"] and not systemd_ok:
            note(f"skipped '{step['name']}': no running systemd on this host (test fleet)")
            continue
        if step["creates"] and host.get_fact(ShellTest, test=f"test -e {step['creates']}"):
            continue
        if step["removes"] and not host.get_fact(ShellTest, test=f"test -e {step['removes']}"):
            continue
        if step["done_check"] and host.get_fact(ShellTest, test=step["done_check"]):
            continue
        server.shell(name=step["name"], commands=[step["command"]])
