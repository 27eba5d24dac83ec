"""The part of host configuration that goes through the Kubernetes API instead of a host.

- after an install: the labels the NodeRestriction admission plugin forbids a kubelet to set on its
  own Node (e.g. node-role.kubernetes.io/edge on a K3s agent), and the taints of EdgeCore nodes
  (`keadm join` has no flag for them);
- after a reset: the Node object and K3s's `<node>.node-password.k3s` Secret (`keadm join` refuses a
  name whose Node still exists; K3s refuses a rejoin whose node password changed).

`edgerig cluster up|reset` (and `pulumi up|destroy`) run these steps with `k3s kubectl` on a K3s server
over SSH. `edgerig cluster prepare` writes the same steps as `node-objects.sh` beside the inventories,
for operators who run ansible-playbook or pyinfra themselves.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from infra.model import Node, Testbed

SCRIPT = "node-objects.sh"
# EdgeCore registers its Node through CloudCore a few seconds after `keadm join` returned.
REGISTER_WAIT_S = 120


@dataclass(frozen=True)
class ApiStep:
    node: str
    step: str
    command: str
    may_fail: bool = False  # waiting for a Node that registers late is not an error by itself


def install_steps(testbed: Testbed, nodes: Sequence[Node], kubectl: str) -> list[ApiStep]:
    steps = []
    for node in nodes:
        labels = testbed.api_labels(node)
        taints = testbed.node_taints(node) if node.role == "edge" else []
        if not labels and not taints:
            continue
        if node.role == "edge":
            found = f"{kubectl} get node {node.name} >/dev/null 2>&1"
            wait = f"for i in $(seq {REGISTER_WAIT_S // 2}); do {found} && break; sleep 2; done"
            steps.append(ApiStep(node.name, "wait for the Node to register", wait, may_fail=True))
        if labels:
            pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(labels.items()))
            command = f"{kubectl} label node {node.name} {pairs} --overwrite"
            steps.append(ApiStep(node.name, "label node through the API", command))
        for taint in taints:
            command = f"{kubectl} taint node {node.name} {shlex.quote(taint.render())} --overwrite"
            steps.append(ApiStep(node.name, "taint node through the API", command))
    return steps


def reset_steps(nodes: Sequence[Node], kubectl: str) -> list[ApiStep]:
    return [
        ApiStep(
            node.name,
            "delete Node object",
            f"{kubectl} delete node {node.name} --ignore-not-found && {kubectl} -n kube-system "
            f"delete secret {node.name}.node-password.k3s --ignore-not-found",
        )
        for node in nodes
    ]


def script(testbed: Testbed, nodes: Sequence[Node]) -> str:
    """node-objects.sh install|reset: the steps above with the operator's kubectl."""

    def body(steps: list[ApiStep]) -> str:
        lines = [f"    {s.command}{' || true' if s.may_fail else ''}" for s in steps]
        return "\n".join(lines or ["    :"])

    return (
        "#!/bin/sh\n"
        f"# Written by edgerig for testbed {testbed.name}: what the install and the reset change through\n"
        "# the Kubernetes API rather than on a host. Run it where kubectl reaches the cluster, after the\n"
        "# install playbook (`install`) or the reset playbook (`reset`, before the last server is reset):\n"
        f"#   KUBECONFIG=./kubeconfig sh {SCRIPT} install      (on a server: KUBECTL='k3s kubectl' sh ...)\n"
        "set -eu\n"
        'kubectl=${KUBECTL:-kubectl}\n'
        'case "${1:-}" in\n'
        "  install)\n"
        f"{body(install_steps(testbed, nodes, '$kubectl'))}\n"
        "    ;;\n"
        "  reset)\n"
        f"{body(reset_steps(nodes, '$kubectl'))}\n"
        "    ;;\n"
        '  *) echo "usage: $0 install|reset" >&2; exit 2 ;;\n'
        "esac\n"
    )
