"""cloud-init user data for the VMs (pure). Only identity: everything else is host configuration."""

from __future__ import annotations

import yaml

from infra.cloud.host_keys import HostKey
from infra.model import Node


def user_data(node: Node, host_key: HostKey | None = None) -> str:
    doc: dict[str, object] = {
        "hostname": node.name,
        "fqdn": node.name,
        "preserve_hostname": False,
        # K3s/kubelet require the node name to resolve; /etc/hosts covers it before DNS does.
        "manage_etc_hosts": True,
        # Time sync matters: latency is measured across hosts (hosts helper configures chrony too).
        "ntp": {"enabled": True},
    }
    if host_key is not None:
        # The program's host key (its public half is in the operator's known_hosts): the image's own
        # keys are deleted and no other type is generated, so the VM answers with this key only.
        doc["ssh_deletekeys"] = True
        doc["ssh_genkeytypes"] = []
        doc["ssh_keys"] = {
            "ed25519_private": host_key.private_openssh,
            "ed25519_public": host_key.public_openssh,
        }
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=True)
