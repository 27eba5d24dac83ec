"""NetworkPolicies (pure): every namespace edgerig creates denies by default, then allows what the
data flow needs. K3s enforces them (its embedded kube-router policy controller).

- nats, vei: ingress and egress denied; NATS's client port takes only the gateway and the sink (the
  operator's machine too, through the node port, with operator-side clients), routes only between
  NATS servers; the gateway's gRPC port takes only the cameras and vision apps (everyone, when it is
  published on a node port or reached through EdgeMesh); metrics only from the monitoring namespace.
- monitoring, openfaas, openfaas-fn: ingress denied except from the same namespace and the ports
  published on node ports (Grafana, Prometheus, the OpenFaaS gateway, the operator's webhook); their
  egress stays open (Prometheus scrapes node addresses, functions call out).

Two holes are in the design, not in these objects: kube-router lets every node reach its own pods
(kubelet probes), and EdgeCore nodes run no policy controller, so on them nothing is enforced. Traffic
that arrives through a node port or EdgeMesh comes from a node address, so those ports accept any
source; NATS and the gateway still demand their credentials there.
"""

from __future__ import annotations

from typing import Any

from infra.model import Testbed
from infra.platform.nats_users import PODS
from infra.platform.objects import MANAGED, NATS_SERVER_LABELS

NAMESPACE_LABEL = "kubernetes.io/metadata.name"  # set on every Namespace by the apiserver
NATS_CLIENT_PORT = 4222
NATS_CLUSTER_PORT = 6222
NATS_EXPORTER_PORT = 7777  # the nats chart's promExporter
GRAFANA_PORT = 3000
PROMETHEUS_PORT = 9090
OPERATOR_WEBHOOK_PORT = 10250  # kube-prometheus-stack's operator (admission webhook, called by the apiserver)
OPENFAAS_PORT = 8080  # the OpenFaaS gateway and every function's watchdog
# K3s runs CoreDNS as k8s-app=kube-dns in kube-system.
DNS_PODS = {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def _policy(name: str, ns: str, pods: dict[str, Any] | None, types: list[str],
            ingress: list[dict[str, Any]] | None = None,
            egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`pods`: a label selector (None = every pod of the namespace)."""
    spec: dict[str, Any] = {"podSelector": pods or {}, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": dict(MANAGED)}, "spec": spec}


def _tcp(*ports: int | str) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _in_namespace(ns: str, pods: dict[str, str] | None = None) -> dict[str, Any]:
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: ns}}}
    if pods:
        peer["podSelector"] = {"matchLabels": pods}
    return peer


def _labelled(labels: dict[str, str]) -> dict[str, Any]:
    return {"matchLabels": labels}


def _pods_named(*names: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": list(names)}]}


def default_deny(ns: str, egress: bool) -> dict[str, Any]:
    """No pod of `ns` accepts (and, with `egress`, opens) any connection not allowed by another policy."""
    return _policy("default-deny", ns, None, ["Ingress", "Egress"] if egress else ["Ingress"])


def allow_dns(ns: str) -> dict[str, Any]:
    return _policy("allow-dns", ns, None, ["Egress"], egress=[{"to": [DNS_PODS], "ports": DNS_PORTS}])


def allow_same_namespace(ns: str) -> dict[str, Any]:
    return _policy("allow-same-namespace", ns, None, ["Ingress"],
                   ingress=[{"from": [{"podSelector": {}}]}])


def allow_published(ns: str, *ports: int) -> dict[str, Any]:
    """Ports on node ports (or called by the apiserver): reached from node addresses, so from anywhere."""
    return _policy("allow-published", ns, None, ["Ingress"], ingress=[{"ports": _tcp(*ports)}])


def nats_network_policies(testbed: Testbed) -> list[dict[str, Any]]:
    nats, vei = testbed.platform.nats, testbed.vei
    ns = nats.namespace
    clients: dict[str, Any] = {"ports": _tcp(NATS_CLIENT_PORT)}
    if not (vei.enabled and vei.clients == "operator"):
        clients["from"] = [{"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: vei.namespace}},
                            "podSelector": _pods_named(*PODS.values())}]
    ingress = [clients, {"from": [{"podSelector": {"matchLabels": NATS_SERVER_LABELS}}],
                         "ports": _tcp(NATS_CLUSTER_PORT)}]
    if testbed.platform.monitoring.enabled:
        ingress.append({"from": [_in_namespace(testbed.platform.monitoring.namespace)],
                        "ports": _tcp(NATS_EXPORTER_PORT)})
    return [
        default_deny(ns, egress=True),
        allow_dns(ns),
        _policy("nats-servers", ns, _labelled(NATS_SERVER_LABELS), ["Ingress", "Egress"], ingress=ingress,
                egress=[{"to": [{"podSelector": {"matchLabels": NATS_SERVER_LABELS}}],
                         "ports": _tcp(NATS_CLUSTER_PORT)}]),
    ]


def vei_network_policies(testbed: Testbed, gateway: str, sink: str,
                         clients: list[str]) -> list[dict[str, Any]]:
    """`gateway`, `sink`, `clients`: the app.kubernetes.io/name of the gateway, sink and client pods."""
    vei, platform, k3s = testbed.vei, testbed.platform, testbed.k3s
    ns = vei.namespace
    gateway_ingress: list[dict[str, Any]] = []
    if vei.clients == "operator" or testbed.edgemesh_enabled:
        gateway_ingress.append({"ports": _tcp(vei.grpc_port)})  # from node addresses: anyone
    elif clients:  # (an empty `from` would admit everyone)
        gateway_ingress.append({"from": [{"podSelector": _pods_named(*clients)}],
                                "ports": _tcp(vei.grpc_port)})
    if platform.monitoring.enabled:
        gateway_ingress.append({"from": [_in_namespace(platform.monitoring.namespace)],
                                "ports": _tcp(vei.metrics_port)})
    to_nats = {"to": [_in_namespace(platform.nats.namespace, NATS_SERVER_LABELS)],
               "ports": _tcp(NATS_CLIENT_PORT)}
    gateway_egress: list[dict[str, Any]] = [to_nats]
    if any(c.kind != "local" for c in vei.clouds):
        # MQTT brokers and AWS IoT are outside the cluster: anywhere but the pod and Service networks.
        inside = [str(k3s.cluster_cidr), str(k3s.service_cidr)]
        gateway_egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": inside}}]})
    out = [
        default_deny(ns, egress=True),
        allow_dns(ns),
        _policy("gateway", ns, _pods_named(gateway), ["Ingress", "Egress"],
                ingress=gateway_ingress, egress=gateway_egress),
        _policy("sink", ns, _pods_named(sink), ["Egress"], egress=[to_nats]),
    ]
    if clients:
        # With EdgeMesh the clients dial the gateway's ClusterIP, which EdgeMesh's proxy on the node (host
        # network) may carry: their egress then goes to a node address, so it stays open.
        to_gateway = {"to": [{"podSelector": _pods_named(gateway)}], "ports": _tcp(vei.grpc_port)}
        out.append(_policy("clients", ns, _pods_named(*clients), ["Egress"],
                           egress=[{} if testbed.edgemesh_enabled else to_gateway]))
    return out


def monitoring_network_policies(testbed: Testbed) -> list[dict[str, Any]]:
    ns = testbed.platform.monitoring.namespace
    return [default_deny(ns, egress=False), allow_same_namespace(ns),
            allow_published(ns, GRAFANA_PORT, PROMETHEUS_PORT, OPERATOR_WEBHOOK_PORT)]


def openfaas_network_policies(testbed: Testbed) -> list[dict[str, Any]]:
    faas = testbed.platform.openfaas
    functions = [default_deny(faas.functions_namespace, egress=False),
                 _policy("allow-openfaas", faas.functions_namespace, None, ["Ingress"],
                         ingress=[{"from": [_in_namespace(faas.namespace)], "ports": _tcp(OPENFAAS_PORT)}])]
    if testbed.edgemesh_enabled:
        # Direct functions: EdgeMesh's proxy on the gateway's node (host network) calls the function.
        functions.append(allow_published(faas.functions_namespace, OPENFAAS_PORT))
    return [default_deny(faas.namespace, egress=False), allow_same_namespace(faas.namespace),
            allow_published(faas.namespace, OPENFAAS_PORT), *functions]
