"""edgerig's own image archives (infra/images.py) for the node's architecture, put in the directory its
container runtime imports from (K3s: at its start), and each new one imported into the running
containerd's k8s.io namespace at once. The manifests name the images by digest and never pull them."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from edgerig_deploy import steps

# The same inputs and defaults as playbooks/ansible/roles/airgap_images/defaults/main.yml.
DEFAULTS: dict[str, Any] = {
    "airgap_images_archives": [],
    "airgap_images_import": [],
    "airgap_images_containerd_socket": "/run/containerd/containerd.sock",
}


@deploy("Deliver image archives", data_defaults=DEFAULTS)
def airgap_images() -> None:
    importer = list(host.data.airgap_images_import)
    socket = shlex.quote(host.data.airgap_images_containerd_socket)
    for archive in host.data.airgap_images_archives:
        name = archive["dest"].rsplit("/", 1)[-1]
        # Uploaded and checked like every verified file; nothing happens when the host has it already.
        installed = steps.binaries([{**archive, "name": f"image archive {name}", "mode": "0644"}])
        if installed and importer:
            argv = shlex.join([*importer, archive["dest"]])
            server.shell(
                name=f"Import {name} into the running containerd (k8s.io)",
                # A stopped or not yet installed runtime imports the directory itself when it starts.
                commands=[f"if test -S {socket}; then {argv}; fi"],
            )
