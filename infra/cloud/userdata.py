"""cloud-init user data for the VMs (pure). Only identity: everything else is host configuration."""

from __future__ import annotations

import yaml

from infra.model import Node


def user_data(node: Node) -> str:
    doc = {
        "hostname": node.name,
        "fqdn": node.name,
        "preserve_hostname": False,
        # K3s/kubelet require the node name to resolve; /etc/hosts covers it before DNS does.
        "manage_etc_hosts": True,
        # Time sync matters: latency is measured across hosts (hosts helper configures chrony too).
        "ntp": {"enabled": True},
    }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=True)
