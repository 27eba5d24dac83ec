"""Helm values rendered from the model (pure). Keys are the charts' own, for the pinned versions in
infra/versions.py: nats-io/k8s `nats` 1.x, kubernetes-sigs `metrics-server` 3.12,
prometheus-community `kube-prometheus-stack` 65, openfaas/faas-netes `openfaas` 14.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra import versions
from infra.model import Testbed
from infra.platform import nats_users
from infra.platform.placement import daemonset_placement, management_affinity
from workloads.vei.settings import NATS_GOMAXPROCS, NATS_MAX_PAYLOAD_BYTES

GRAFANA_ADMIN_SECRET = "grafana-admin"
OPENFAAS_BASIC_AUTH_SECRET = "basic-auth"  # the name the OpenFaaS chart expects with generateBasicAuth off
DASHBOARD_LABEL = "grafana_dashboard"  # kube-prometheus-stack's Grafana sidecar label (value "1")
# prometheus-node-exporter's default toleration: runs on nodes with any NoSchedule taint.
TOLERATE_EVERY_NOSCHEDULE: dict[str, str] = {"effect": "NoSchedule", "operator": "Exists"}


def _resources(cpu: str, memory: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


def nats_config_merge(public_keys: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level nats.conf keys (the chart's `config.merge`, written into nats.conf as JSON): room for
    the gateway's frames, and only the nkey users of nats_users, no anonymous clients."""
    return {"max_payload": NATS_MAX_PAYLOAD_BYTES, **nats_users.authorization(public_keys)}


def nats_values(testbed: Testbed, public_keys: Mapping[str, Any]) -> dict[str, Any]:
    """`public_keys`: NATS user -> nkey public key (nats_users); every client must be one of them."""
    nats = testbed.platform.nats
    monitoring = testbed.platform.monitoring.enabled
    pod_spec: dict[str, Any] = {}
    if affinity := management_affinity(testbed):
        pod_spec["affinity"] = affinity
    return {
        "config": {
            "cluster": {"enabled": nats.replicas > 1, "replicas": nats.replicas},
            "jetstream": {"enabled": nats.jetstream, "fileStore": {"pvc": {"size": "2Gi"}}},
            "merge": nats_config_merge(public_keys),
        },
        "container": {
            "image": {"tag": versions.NATS_SERVER_IMAGE_TAG},
            "env": {"GOMAXPROCS": str(NATS_GOMAXPROCS)},
            "merge": {"resources": _resources("100m", "64Mi", "256Mi")},
        },
        # One server per node: losing a node loses one route, never the quorum (K3s thesis 3.4).
        "podTemplate": {
            "topologySpreadConstraints": {
                "kubernetes.io/hostname": {"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}
            },
            "merge": {"spec": pod_spec},
        },
        "promExporter": {"enabled": monitoring, "podMonitor": {"enabled": monitoring}},
        "natsBox": {"enabled": False},
    }


def metrics_server_values(testbed: Testbed) -> dict[str, Any]:
    values: dict[str, Any] = {"resources": _resources("50m", "64Mi", "200Mi")}
    if affinity := management_affinity(testbed):
        values["affinity"] = affinity
    if not testbed.edge_nodes:
        return values
    # OpenFaaS thesis 4.5.4 (Code Snippet 4.10), for KubeEdge v1.20: EdgeCore nodes report a kubelet
    # port from 10351 up (CloudCore's tunnel port, hence --kubelet-use-node-status-port), which the
    # iptables-manager DaemonSet on every cloud node DNATs to CloudStream for any destination address;
    # CloudStream serves KubeEdge's certificate, which K3s's CA does not sign: --kubelet-insecure-tls.
    values.update(
        {
            "defaultArgs": [
                "--cert-dir=/tmp",
                "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                "--kubelet-use-node-status-port",
                "--metric-resolution=15s",
            ],
            "args": ["--kubelet-insecure-tls"],
        }
    )
    return values


def monitoring_values(testbed: Testbed) -> dict[str, Any]:
    """kube-prometheus-stack trimmed for Pis: no Alertmanager, no scrapes of components K3s embeds."""
    mon = testbed.platform.monitoring
    affinity = management_affinity(testbed)
    exporter_placement = daemonset_placement(testbed)
    # Helm replaces lists: keep the chart's own toleration of every NoSchedule taint beside the edge one,
    # so a node with any other taint still gets its node-exporter.
    exporter_placement["tolerations"] = [TOLERATE_EVERY_NOSCHEDULE, *exporter_placement["tolerations"]]
    return {
        "alertmanager": {"enabled": False},
        # etcd, scheduler, controller-manager and kube-proxy run inside k3s and bind localhost.
        "kubeEtcd": {"enabled": False},
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "defaultRules": {"create": False},
        "prometheus": {
            "service": {"type": "NodePort", "nodePort": mon.prometheus_node_port},
            "prometheusSpec": {
                "retention": mon.retention,
                "scrapeInterval": "15s",
                "resources": _resources("200m", "400Mi", "1Gi"),
                "affinity": affinity,
                # Pick up the PodMonitors edgerig creates for the VEI gateway and vision app.
                "podMonitorSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
            }
        },
        "prometheusOperator": {"resources": _resources("50m", "64Mi", "200Mi"), "affinity": affinity},
        "kube-state-metrics": {"resources": _resources("20m", "64Mi", "200Mi"), "affinity": affinity},
        "prometheus-node-exporter": {
            "resources": _resources("20m", "32Mi", "100Mi"),
            **exporter_placement,
        },
        "grafana": {
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": "admin-user",
                "passwordKey": "admin-password",
            },
            "service": {"type": "NodePort", "nodePort": mon.grafana_node_port},
            "sidecar": {
                "dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1"},
                # Alertmanager is off (above): no datasource pointing at it.
                "datasources": {"alertmanager": {"enabled": False}},
            },
            "resources": _resources("50m", "128Mi", "300Mi"),
            "affinity": affinity,
        },
    }


def openfaas_values(testbed: Testbed) -> dict[str, Any]:
    faas = testbed.platform.openfaas
    values: dict[str, Any] = {
        "functionNamespace": faas.functions_namespace,
        "basic_auth": True,
        "generateBasicAuth": False,  # edgerig creates the basic-auth Secret from a Pulumi RandomPassword
        "exposeServices": True,
        "serviceType": "NodePort",
        "gateway": {"replicas": 1, "nodePort": faas.gateway_node_port},
        "openfaasPro": False,
        "operator": {"create": False},
        "createCRDs": True,
        # CE's own scaling: Prometheus alerts -> AlertManager -> the gateway adds replicas. It would fight
        # the HPAs the experiments create, so AlertManager is left out and only the HPA scales.
        "alertmanager": {"create": False},
        # Thesis 4.1: management components (gateway, provider, queue) run in the cloud realm.
        "affinity": management_affinity(testbed),
    }
    if testbed.edgemesh_enabled:
        # Thesis 4.5.6: by default faas-netes hands the gateway a function pod's IP, which cloud nodes
        # cannot route to a pod on an EdgeCore node. Direct functions call the function's Service
        # name instead, which EdgeMesh's proxy on the gateway's node carries to the edge.
        values["gateway"] = {**values["gateway"], "directFunctions": True}
    return values


def edge_function_patch(testbed: Testbed) -> dict[str, Any]:
    """Strategic-merge patch for function Deployments that may run at the edge (thesis 4.4 / E1).

    OpenFaaS CE has no Profiles (those are OpenFaaS Standard), so, as in the thesis, the tolerations
    and the preferred affinity are patched onto the function Deployments after `faas-cli deploy`.
    """
    from infra.platform.placement import edge_tolerations, prefer_edge_affinity

    return {
        "spec": {
            "template": {
                "spec": {
                    "tolerations": edge_tolerations(),
                    "affinity": prefer_edge_affinity(testbed.platform.openfaas.edge_weight),
                }
            }
        }
    }
