"""Where pods may run (pure): edge tolerations, edge preference, and keeping DaemonSets off EdgeCore.

Edge nodes carry `node-role.kubernetes.io/edge:NoSchedule` (when edgeTaint is on), so only pods
that tolerate it run there - the thesis's way to keep everything else in the cloud (4.2.3, 4.4).
"""

from __future__ import annotations

from typing import Any

from infra.model import AGENT_LABEL, EDGE_ROLE_LABEL, Testbed


def edge_tolerations() -> list[dict[str, Any]]:
    return [{"key": EDGE_ROLE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]


def prefer_edge_affinity(weight: int) -> dict[str, Any]:
    """Thesis Code Snippet 4.8/5.4: preferred node affinity towards edge nodes, weight 1-100."""
    if weight <= 0:
        return {}
    return {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": weight,
                    "preference": {"matchExpressions": [{"key": EDGE_ROLE_LABEL, "operator": "Exists"}]},
                }
            ]
        }
    }


def not_on_edgecore_affinity() -> dict[str, Any]:
    """Required affinity that keeps a pod off KubeEdge EdgeCore nodes.

    EdgeCore nodes have no kube-proxy and no flannel (both live inside the k3s binary, which does
    not run there), so cluster-network DaemonSets and pods that need Service routing must not land
    there. Nodes without the label (e.g. joined by hand) are allowed.
    """
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": AGENT_LABEL, "operator": "NotIn", "values": ["edgecore"]}]}
                ]
            }
        }
    }


def cloud_only_affinity() -> dict[str, Any]:
    """Management components (OpenFaaS gateway, Prometheus, NATS) stay off edge nodes."""
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": EDGE_ROLE_LABEL, "operator": "DoesNotExist"}]}
                ]
            }
        }
    }


def edge_only_affinity() -> dict[str, Any]:
    """Thesis Code Snippet 5.3 (Base Edge): only nodes with the edge role label."""
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": EDGE_ROLE_LABEL, "operator": "Exists"}]}]
            }
        }
    }


def has_cloud_nodes(testbed: Testbed) -> bool:
    return any(n.realm == "cloud" for n in testbed.nodes)


def management_affinity(testbed: Testbed) -> dict[str, Any]:
    """Cloud-only when the testbed has a cloud realm; on an all-Pi testbed there is nowhere else."""
    return cloud_only_affinity() if has_cloud_nodes(testbed) else {}


def daemonset_placement(testbed: Testbed) -> dict[str, Any]:
    """Node-level DaemonSets (node-exporter): every K3s node incl. tainted edge agents, no EdgeCore."""
    placement: dict[str, Any] = {"tolerations": edge_tolerations()}
    if testbed.kubeedge.enabled:
        placement["affinity"] = not_on_edgecore_affinity()
    return placement
