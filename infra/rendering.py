"""Every Kubernetes object the program creates, rendered without Pulumi (for schema validation,
review and `kubectl diff`-style inspection). The program builds its resources from these same
functions, so what is validated is what is deployed.
"""

from __future__ import annotations

from typing import Any

from infra.apps import clients, manifests
from infra.model import Testbed
from infra.platform import edgemesh, objects
from infra.platform.values import (
    edge_function_patch,
    metrics_server_values,
    monitoring_values,
    nats_values,
    openfaas_values,
)

SECRET_PLACEHOLDER = "<pulumi-secret>"
# Custom resources: their schema comes from the operator's CRD, not from Kubernetes itself.
CRD_KINDS = {("monitoring.coreos.com/v1", "PodMonitor")}


def edgemesh_objects(testbed: Testbed) -> list[dict[str, Any]]:
    """EdgeMesh's objects; relays at their stack-file addresses (VMs learn theirs at deploy time)."""
    if not testbed.edgemesh_enabled:
        return []
    relays = {n.name: str(n.address) if n.address else "<floating-ip>" for n in testbed.servers}
    return [
        *edgemesh.objects(testbed, edgemesh.agent_config(testbed, relays), SECRET_PLACEHOLDER),
        edgemesh.api_service_filter(),
    ]


def platform_objects(testbed: Testbed) -> list[dict[str, Any]]:
    p = testbed.platform
    out = [*objects.node_label_patches(testbed), *edgemesh_objects(testbed)]
    out.append(objects.namespace(p.nats.namespace))
    if (nats_external := objects.nats_external_service(testbed)) is not None:
        out.append(nats_external)
    if p.monitoring.enabled:
        out += [
            objects.namespace(p.monitoring.namespace),
            objects.grafana_admin(testbed, SECRET_PLACEHOLDER),
            *objects.dashboard_configmaps(testbed),
        ]
    if p.openfaas.enabled:
        out += [
            objects.namespace(p.openfaas.namespace, {"role": "openfaas-system"}),
            objects.namespace(p.openfaas.functions_namespace, {"role": "openfaas-fn"}),
            objects.openfaas_basic_auth(testbed, SECRET_PLACEHOLDER),
            *objects.function_hpas(testbed),
        ]
    return out


def app_objects(testbed: Testbed) -> list[dict[str, Any]]:
    if not testbed.vei.enabled:
        return []
    vei = testbed.vei
    keys = {
        "aws-access-key-id": vei.aws_access_key_id,
        "aws-secret-access-key": vei.aws_secret_access_key,
        "mqtt-password": vei.mqtt_password,
    }
    secret = manifests.credentials_secret(testbed, {k: SECRET_PLACEHOLDER for k, v in keys.items() if v})
    sink = clients.sink_deployment(testbed)
    external = manifests.external_gateway_service(testbed)
    out = [
        objects.namespace(vei.namespace),
        *([secret] if secret else []),
        manifests.gateway_deployment(testbed),
        *manifests.gateway_services(testbed),
        *([external] if external else []),
        *([sink] if sink else []),
        *clients.vision_deployments(testbed),
        *clients.camera_deployments(testbed),
    ]
    if testbed.platform.monitoring.enabled:
        out += manifests.pod_monitors(testbed)
    return out


def registered_nodes(testbed: Testbed) -> list[dict[str, Any]]:
    """Every Node as it registers and is then labelled and tainted (K3s node-label/node-taint, keadm
    --labels, the API for restricted labels and EdgeCore taints): not created by the program, but
    validated so a label or taint the model allows is one Kubernetes accepts."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n.name, "labels": testbed.node_labels(n)},
            "spec": {"taints": [t.model_dump() for t in testbed.node_taints(n)]},
        }
        for n in testbed.nodes
    ]


def all_objects(testbed: Testbed) -> list[dict[str, Any]]:
    return platform_objects(testbed) + app_objects(testbed)


def helm_values(testbed: Testbed) -> dict[str, dict[str, Any]]:
    p = testbed.platform
    out = {"nats": nats_values(testbed)}
    if p.metrics_server.enabled:
        out["metrics-server"] = metrics_server_values(testbed)
    if p.monitoring.enabled:
        out["monitoring"] = monitoring_values(testbed)
    if p.openfaas.enabled:
        out["openfaas"] = openfaas_values(testbed)
    return out


def _probe_pod(name: str, spec: dict[str, Any], resources: dict[str, Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "probe", "image": "probe"}
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container], **spec},
    }


def helm_value_probes(testbed: Testbed) -> list[dict[str, Any]]:
    """Pods that embed each Kubernetes fragment we template into chart values (affinity, tolerations,
    resources, nodeSelector), so a typo there fails the schema check instead of `helm install`."""
    values = helm_values(testbed)
    probes = []
    nats = values["nats"]
    probes.append(
        _probe_pod("nats", nats["podTemplate"]["merge"]["spec"], nats["container"]["merge"]["resources"])
    )
    tsc = nats["podTemplate"]["topologySpreadConstraints"]
    probes.append(
        _probe_pod(
            "nats-spread",
            {
                "topologySpreadConstraints": [
                    {"topologyKey": key, "labelSelector": {"matchLabels": {"app": "nats"}}, **rule}
                    for key, rule in tsc.items()
                ]
            },
        )
    )
    if ms := values.get("metrics-server"):
        probes.append(
            _probe_pod(
                "metrics-server", {k: ms[k] for k in ("nodeSelector", "affinity") if k in ms}, ms["resources"]
            )
        )
    if mon := values.get("monitoring"):
        prom = mon["prometheus"]["prometheusSpec"]
        probes.append(_probe_pod("prometheus", {"affinity": prom["affinity"]}, prom["resources"]))
        exporter = mon["prometheus-node-exporter"]
        probes.append(
            _probe_pod(
                "node-exporter",
                {k: v for k, v in exporter.items() if k != "resources"},
                exporter["resources"],
            )
        )
        grafana = mon["grafana"]
        probes.append(_probe_pod("grafana", {"affinity": grafana["affinity"]}, grafana["resources"]))
    if faas := values.get("openfaas"):
        probes.append(_probe_pod("openfaas", {"affinity": faas["affinity"]}))
        if testbed.platform.openfaas.edge_weight > 0:
            patch = edge_function_patch(testbed)["spec"]["template"]["spec"]
            probes.append(_probe_pod("openfaas-edge-function", patch))
    return probes
