"""KubeEdge: CloudCore on its K3s server (keadm init) and EdgeCore nodes (containerd, CNI, keadm
join); containerd is restarted when its configuration changed."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.api import deploy

from edgerig_deploy import steps

# The same inputs and defaults as playbooks/ansible/roles/kubeedge_{cloud,edge}/defaults/main.yml.
CLOUD_DEFAULTS: dict[str, Any] = {
    "kubeedge_cloud_binaries": [],
    "kubeedge_cloud_files": [],
    "kubeedge_cloud_commands": [],
    "kubeedge_cloud_reset_commands": [],
}
EDGE_DEFAULTS: dict[str, Any] = {
    "kubeedge_edge_binaries": [],
    "kubeedge_edge_files": [],
    "kubeedge_edge_service": "containerd",
    "kubeedge_edge_commands": [],
    "kubeedge_edge_reset_commands": [],
}


@deploy("Install CloudCore (keadm init)", data_defaults=CLOUD_DEFAULTS)
def kubeedge_cloud() -> None:
    steps.binaries(host.data.kubeedge_cloud_binaries)
    steps.rendered_files(host.data.kubeedge_cloud_files)
    steps.steps(host.data.kubeedge_cloud_commands)


@deploy("Remove keadm and the CloudCore scripts", data_defaults=CLOUD_DEFAULTS)
def kubeedge_cloud_reset() -> None:
    steps.steps(host.data.kubeedge_cloud_reset_commands)


@deploy("Join an EdgeCore node (containerd, CNI, keadm join)", data_defaults=EDGE_DEFAULTS)
def kubeedge_edge() -> None:
    steps.binaries(host.data.kubeedge_edge_binaries)
    changed = steps.rendered_files(host.data.kubeedge_edge_files)
    steps.service(host.data.kubeedge_edge_service, changed)
    steps.steps(host.data.kubeedge_edge_commands)


@deploy("Reset an EdgeCore node", data_defaults=EDGE_DEFAULTS)
def kubeedge_edge_reset() -> None:
    steps.steps(host.data.kubeedge_edge_reset_commands)
