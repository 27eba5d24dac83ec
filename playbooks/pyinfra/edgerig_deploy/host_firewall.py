"""Static hosts (Pis): the nftables ruleset rendered from the security-group rule list, loaded at once
(and at every boot where systemd runs)."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy

from edgerig_deploy import steps

# The same inputs and defaults as playbooks/ansible/roles/host_firewall/defaults/main.yml.
DEFAULTS: dict[str, Any] = {
    "host_firewall_files": [],
    "host_firewall_commands": [],
    "host_firewall_reset_commands": [],
}


@deploy("Load the host firewall", data_defaults=DEFAULTS)
def host_firewall() -> None:
    steps.rendered_files(host.data.host_firewall_files)
    steps.steps(host.data.host_firewall_commands)


@deploy("Remove the host firewall", data_defaults=DEFAULTS)
def host_firewall_reset() -> None:
    steps.steps(host.data.host_firewall_reset_commands)
