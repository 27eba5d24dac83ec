"""edgerig's pyinfra deploys, one module per concern (the same split as the Ansible roles): common,
host_firewall, raspberrypi, airgap_images, k3s, kubeedge (cloud and edge). Run them with the pyinfra
CLI on the inventory edgerig writes, which carries every input (rendered files, verified binaries, steps):

    edgerig cluster prepare --stack NAME --out DIR
    pyinfra DIR/inventory.py edgerig_deploy.install
    pyinfra DIR/inventory.py edgerig_deploy.reset

`edgerig cluster up` and `pulumi up` run these same deploys through pyinfra's Python API. Which
concerns a host gets is its inventory groups.
"""

from __future__ import annotations

from collections.abc import Callable

from pyinfra import host
from pyinfra.api import deploy

from edgerig_deploy import airgap_images, common, host_firewall, k3s, kubeedge, raspberrypi

__all__ = ["install", "reset"]


# Inventory group -> the concern's deploy, in the order a host is installed (reset: reversed order of
# the cluster, the firewall last). The same order as playbooks/ansible/install.yml and reset.yml.
INSTALL: tuple[tuple[str, Callable[[], object]], ...] = (
    ("common", common.common),
    ("host_firewall", host_firewall.host_firewall),
    ("raspberrypi", raspberrypi.raspberrypi),
    ("airgap_images", airgap_images.airgap_images),
    ("k3s", k3s.k3s),
    ("kubeedge_cloud", kubeedge.kubeedge_cloud),
    ("kubeedge_edge", kubeedge.kubeedge_edge),
)
RESET: tuple[tuple[str, Callable[[], object]], ...] = (
    ("kubeedge_edge", kubeedge.kubeedge_edge_reset),
    ("k3s", k3s.k3s_reset),
    ("kubeedge_cloud", kubeedge.kubeedge_cloud_reset),
    ("host_firewall", host_firewall.host_firewall_reset),
)


def _run(concerns: tuple[tuple[str, Callable[[], object]], ...]) -> None:
    groups = set(host.groups)
    for group, concern in concerns:
        if group in groups:
            concern()


@deploy("Install a testbed host")
def install() -> None:
    _run(INSTALL)


@deploy("Reset a testbed host")
def reset() -> None:
    _run(RESET)
