"""Plain Kubernetes objects (pure dicts) the platform creates besides Helm releases.

Secret values are passed in (a pulumi Output at deploy time, a placeholder in schema tests), so the
same function renders both and what is validated is what is deployed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.model import Testbed
from infra.platform.values import DASHBOARD_LABEL, GRAFANA_ADMIN_SECRET, OPENFAAS_BASIC_AUTH_SECRET

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
MANAGED = {"app.kubernetes.io/managed-by": "edgerig"}


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {**MANAGED, **(labels or {})}},
    }


def secret(name: str, ns: str, string_data: dict[str, Any],
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels or MANAGED)},
        "stringData": string_data,
    }


def openfaas_basic_auth(testbed: Testbed, password: Any) -> dict[str, Any]:
    return secret(
        OPENFAAS_BASIC_AUTH_SECRET,
        testbed.platform.openfaas.namespace,
        {"basic-auth-user": "admin", "basic-auth-password": password},
    )


def grafana_admin(testbed: Testbed, password: Any) -> dict[str, Any]:
    return secret(
        GRAFANA_ADMIN_SECRET,
        testbed.platform.monitoring.namespace,
        {"admin-user": "admin", "admin-password": password},
    )


def dashboard_configmaps(testbed: Testbed) -> list[dict[str, Any]]:
    """Every infra/dashboards/*.json as a ConfigMap the Grafana sidecar loads."""
    maps = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        json.loads(path.read_text())  # a broken dashboard fails the deploy here, not in Grafana
        maps.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"dashboard-{path.stem}",
                    "namespace": testbed.platform.monitoring.namespace,
                    "labels": {**MANAGED, DASHBOARD_LABEL: "1"},
                },
                "data": {path.name: path.read_text()},
            }
        )
    return maps


def function_hpas(testbed: Testbed) -> list[dict[str, Any]]:
    """HPA per listed function: the thesis's evaluation setting (max 25 replicas at 50 % CPU)."""
    faas = testbed.platform.openfaas
    return [
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": fn, "namespace": faas.functions_namespace, "labels": dict(MANAGED)},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": fn},
                "minReplicas": faas.hpa.min_replicas,
                "maxReplicas": faas.hpa.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": faas.hpa.cpu_target_percent,
                            },
                        },
                    }
                ],
            },
        }
        for fn in faas.hpa_functions
    ]


# The nats chart's selector labels for its server pods (release "nats").
NATS_SERVER_LABELS = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/instance": "nats",
                      "app.kubernetes.io/component": "nats"}


def nats_external_service(testbed: Testbed) -> dict[str, Any] | None:
    """With operator-side VEI clients: NATS's client port on a node port of every node (the sink and
    the floor measurement connect from the operator's machine)."""
    if not testbed.vei.enabled or testbed.vei.clients != "operator":
        return None
    nats = testbed.platform.nats
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "nats-external", "namespace": nats.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "edgerig"}},
        "spec": {
            "type": "NodePort",
            "selector": dict(NATS_SERVER_LABELS),
            "ports": [{"name": "nats", "port": 4222, "targetPort": 4222, "nodePort": nats.client_node_port}],
        },
    }


def node_label_patches(testbed: Testbed) -> list[dict[str, Any]]:
    """Node labels a kubelet may not set on itself (NodeRestriction), e.g. node-role.kubernetes.io/edge
    on a K3s agent at the edge: applied through the API (server-side apply patch) once the node joined.
    Placement (edge tolerations/affinity) relies on them."""
    out = []
    for node in testbed.nodes:
        labels = testbed.api_labels(node)
        if labels:
            out.append(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": labels}}
            )
    return out
