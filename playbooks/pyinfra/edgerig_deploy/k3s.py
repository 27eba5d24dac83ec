"""A K3s server or agent: verified binary (and airgap images), rendered config, token and unit; the
service is started, and restarted whenever one of those changed (as K3s's install.sh does)."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy

from edgerig_deploy import steps

# The same inputs and defaults as playbooks/ansible/roles/k3s/defaults/main.yml.
DEFAULTS: dict[str, Any] = {
    "k3s_binaries": [],
    "k3s_files": [],
    "k3s_service": "",
    "k3s_reset_commands": [],
}


@deploy("Install K3s", data_defaults=DEFAULTS)
def k3s() -> None:
    changed = steps.binaries(host.data.k3s_binaries)
    changed += steps.rendered_files(host.data.k3s_files)
    steps.service(host.data.k3s_service, changed)


@deploy("Uninstall K3s", data_defaults=DEFAULTS)
def k3s_reset() -> None:
    steps.steps(host.data.k3s_reset_commands)
