"""pyinfra deploy for air-gapped image delivery (Raspberry Pis): the archives of the node's architecture
to the directory its container runtime imports from (K3s: at its start), and each new archive into the
running containerd's k8s.io namespace at once. What to copy and how to import come rendered in the
host's plan (`images`, `image_import`)."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import Sha256File
from pyinfra.operations import files, server

DEFAULTS: dict[str, Any] = {"edgerig_plan": None}


@deploy("Deliver image archives", data_defaults=DEFAULTS)
def deliver_images() -> None:
    plan = host.data.edgerig_plan
    for archive in getattr(plan, "images", []):
        if host.get_fact(Sha256File, path=archive.dest) == archive.sha256:
            continue
        tmp = f"{archive.dest}.edgerig-new"
        name = archive.dest.rsplit("/", 1)[-1]
        files.put(name=f"Upload image archive {name}", src=str(archive.source), dest=tmp, mode="0644",
                  create_remote_dir=True)
        server.shell(
            name=f"Verify and install {archive.dest}",
            commands=[f"if echo '{archive.sha256}  {tmp}' | sha256sum -c --quiet; "
                      f"then mv -f {tmp} {archive.dest}; else rm -f {tmp}; "
                      f"echo 'sha256 mismatch for {archive.dest} after upload' >&2; exit 1; fi"],
        )
        cmd = plan.image_import
        if cmd is not None:
            argv = " ".join(shlex.quote(a) for a in (*cmd.argv, archive.dest))
            server.shell(name=f"Import {name} into the running containerd (k8s.io)",
                         commands=[f"if test -S {shlex.quote(cmd.socket)}; then {argv}; fi"])
