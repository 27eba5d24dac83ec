"""edgerig's pyinfra deploys, one module per concern (the same split as the Ansible roles): common,
raspberrypi, airgap_images, k3s, kubeedge (cloud and edge). Run them with the pyinfra CLI on the
inventory edgerig writes, which carries every input (rendered files, verified binaries, steps):

    edgerig cluster prepare --stack NAME --out DIR
    pyinfra DIR/inventory.py edgerig_deploy.install
    pyinfra DIR/inventory.py edgerig_deploy.reset

`edgerig cluster up` and `pulumi up` run these same deploys through pyinfra's Python API. Which
concerns a host gets is its inventory groups.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from edgerig_deploy import airgap_images, common, k3s, kubeedge, raspberrypi

__all__ = ["install", "reset"]


@deploy("Install a testbed host")
def install() -> None:
    groups = set(host.groups)
    if "common" in groups:
        common.common()
    if "raspberrypi" in groups:
        raspberrypi.raspberrypi()
    if "airgap_images" in groups:
        airgap_images.airgap_images()
    if "k3s" in groups:
        k3s.k3s()
    if "kubeedge_cloud" in groups:
        kubeedge.kubeedge_cloud()
    if "kubeedge_edge" in groups:
        kubeedge.kubeedge_edge()


@deploy("Reset a testbed host")
def reset() -> None:
    groups = set(host.groups)
    if "kubeedge_edge" in groups:
        kubeedge.kubeedge_edge_reset()
    if "k3s" in groups:
        k3s.k3s_reset()
    if "kubeedge_cloud" in groups:
        kubeedge.kubeedge_cloud_reset()
