"""VEI Kubernetes objects rendered from the model (pure dicts, validated against the K8s schema).

Commands are the real CLIs in workloads/vei. Cameras and vision apps reach the gateway through the
headless Service with gRPC's DNS resolver, so each client balances over (and fails over between)
every gateway pod itself instead of pinning one connection through a ClusterIP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra import images
from infra.model import CloudSink, Testbed
from infra.platform import nats_users, objects
from infra.platform.components import nats_urls
from infra.platform.placement import edge_tolerations, not_on_edgecore_affinity, prefer_edge_affinity
from workloads.images.catalog import USER_ID
from workloads.vei import launch

CREDENTIALS_SECRET = "vei-cloud-credentials"
GATEWAY = nats_users.PODS[nats_users.GATEWAY]
SINK = nats_users.PODS[nats_users.SINK]
MANAGED = {"app.kubernetes.io/managed-by": "edgerig", "app.kubernetes.io/part-of": "vei"}
# Who-may-talk-to-whom secrets (NATS nkey seeds, the gateway token), mounted as files: a file never
# shows in `ps` or in the pod spec, and the processes read each from its VEI_..._FILE variable.
AUTH_SECRET = "vei-auth"
AUTH_DIR = "/var/run/secrets/edgerig"
GRPC_TOKEN_KEY = "grpc-token"
SECRET_FILE_MODE = 0o440  # owner and group (fsGroup, the image's user) read; nobody else


def nats_seed_key(user: str) -> str:
    return f"{user}{nats_users.SEED_KEY_SUFFIX}"


def auth_files(testbed: Testbed, component: str) -> dict[str, str]:
    """VEI_..._FILE variable -> key of AUTH_SECRET, for one component's pods."""
    files: dict[str, str] = {}
    if component == GATEWAY:
        files["VEI_NATS_NKEY_SEED_FILE"] = nats_seed_key(nats_users.GATEWAY)
    elif component == SINK:
        files["VEI_NATS_NKEY_SEED_FILE"] = nats_seed_key(nats_users.SINK)
    if testbed.vei.gateway_auth == "token" and component != SINK:
        files["VEI_GRPC_TOKEN_FILE"] = GRPC_TOKEN_KEY  # the gateway checks it, its clients send it
    return files


def auth_secret(testbed: Testbed, seeds: Mapping[str, Any], token: Any | None) -> dict[str, Any]:
    """The in-cluster processes' NATS seeds (and the gateway token); values are Pulumi secrets at deploy
    time, a placeholder in schema tests. The operator's seed is a stack output, never in the cluster."""
    data = {nats_seed_key(user): seeds[user] for user in (nats_users.GATEWAY, nats_users.SINK)}
    if token is not None:
        data[GRPC_TOKEN_KEY] = token
    return objects.secret(AUTH_SECRET, testbed.vei.namespace, data, MANAGED)


def pod_security() -> dict[str, Any]:
    """Pod-level: the image's non-root user, the runtime's default seccomp filter, no API token."""
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def container_security() -> dict[str, Any]:
    return {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
    }


def cloud_spec(sink: CloudSink) -> str:
    """The gateway's --cloud syntax (workloads/vei/sinks/spec.py)."""
    if sink.kind == "local":
        return f"{sink.name}=local"
    if sink.kind == "mqtt":
        return f"{sink.name}={sink.mqtt_url}"
    query = f"region={sink.aws_region}&topic={sink.aws_topic}"
    if sink.aws_endpoint:
        query += f"&endpoint={sink.aws_endpoint}"
    return f"{sink.name}=iot-data?{query}"


def gateway_target(testbed: Testbed) -> str:
    ns = testbed.vei.namespace
    return f"dns:///{GATEWAY}-headless.{ns}.svc.cluster.local:{testbed.vei.grpc_port}"


def client_gateway_target(testbed: Testbed) -> str:
    """Where cameras and vision apps dial: every gateway pod through the headless Service, except where
    they may run on EdgeCore nodes. EdgeMesh carries ClusterIP Services across the cloud/edge boundary,
    not pod IPs, so there they dial the ClusterIP Service (one connection, balanced per connection)."""
    if not clients_on_edgecore(testbed):
        return gateway_target(testbed)
    return f"dns:///{GATEWAY}.{testbed.vei.namespace}.svc.cluster.local:{testbed.vei.grpc_port}"


def clients_on_edgecore(testbed: Testbed) -> bool:
    return testbed.kubeedge.enabled and testbed.edgemesh_enabled


def _labels(component: str) -> dict[str, str]:
    return {**MANAGED, "app.kubernetes.io/name": component}


def _placement(testbed: Testbed, component: str, spread: bool, gateway_client: bool) -> dict[str, Any]:
    vei = testbed.vei
    seconds = vei.toleration_seconds
    # Pods on a dead node are evicted after `seconds` instead of the apiserver default (300 s).
    tolerations = [
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": seconds,
        },
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": seconds,
        },
        *edge_tolerations(),  # VEI is an edge workload: it is meant to run next to the cameras
    ]
    spec: dict[str, Any] = {"tolerations": tolerations}
    node_affinity: dict[str, Any] = dict(prefer_edge_affinity(vei.edge_weight).get("nodeAffinity", {}))
    if testbed.kubeedge.enabled and not (gateway_client and clients_on_edgecore(testbed)):
        # EdgeCore nodes reach Services only through EdgeMesh, which carries ClusterIP Services but not
        # the per-server NATS names (headless) the gateway and the sink need: those stay on K3s nodes
        # (edge-realm K3s agents included). The gateway's clients may go to EdgeCore nodes with EdgeMesh.
        node_affinity.update(not_on_edgecore_affinity()["nodeAffinity"])
    if node_affinity:
        spec["affinity"] = {"nodeAffinity": node_affinity}
    if spread:
        spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": component}},
            }
        ]
    return spec


def deployment(
    testbed: Testbed,
    name: str,
    replicas: int,
    container: dict[str, Any],
    spread: bool,
    gateway_client: bool = False,
) -> dict[str, Any]:
    """`name` is also the component (GATEWAY, SINK, ...) whose auth_files the pods mount."""
    labels = _labels(name)
    container = {**images.vei(testbed).container_fields(), **container, **container_security()}
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": 15,
        **pod_security(),
        **_placement(testbed, name, spread, gateway_client),
    }
    if files := auth_files(testbed, name):
        container["env"] = [*container.get("env", []),
                            *({"name": var, "value": f"{AUTH_DIR}/{key}"} for var, key in files.items())]
        container["volumeMounts"] = [*container.get("volumeMounts", []),
                                     {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True}]
        items = [{"key": key, "path": key} for key in sorted(set(files.values()))]
        pod["volumes"] = [{"name": "auth", "secret": {"secretName": AUTH_SECRET, "items": items,
                                                       "defaultMode": SECRET_FILE_MODE}}]
    pod["containers"] = [container]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": testbed.vei.namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": key}}}


def _gateway_env(testbed: Testbed) -> list[dict[str, Any]]:
    vei = testbed.vei
    # A Deployment can be scaled at any time, so its replicas always share one registry.
    env: list[dict[str, Any]] = [
        {"name": "VEI_REGISTRY", "value": "kv"},
        {"name": "VEI_KV_REPLICAS", "value": str(min(testbed.platform.nats.replicas, 3))},
    ]
    kinds = {c.kind for c in vei.clouds}
    if "aws" in kinds:
        env += [
            _secret_env("AWS_ACCESS_KEY_ID", "aws-access-key-id"),
            _secret_env("AWS_SECRET_ACCESS_KEY", "aws-secret-access-key"),
        ]
    if "mqtt" in kinds:
        user = next((c.mqtt_username for c in vei.clouds if c.mqtt_username), None)
        if user:
            env.append({"name": "VEI_MQTT_USERNAME", "value": user})
        if vei.mqtt_password is not None:
            env.append(_secret_env("VEI_MQTT_PASSWORD", "mqtt-password"))
    return env


def gateway_deployment(testbed: Testbed) -> dict[str, Any]:
    vei = testbed.vei
    spec = launch.gateway(listen=f"0.0.0.0:{vei.grpc_port}", nats_urls=nats_urls(testbed),
                          clouds=[cloud_spec(sink) for sink in vei.clouds],
                          metrics_listen=f"0.0.0.0:{vei.metrics_port}",
                          env={"VEI_GRPC_REFLECTION": "false"})
    plain = spec.container("gateway")
    container = {
        **plain,
        "env": [*plain["env"], *_gateway_env(testbed)],
        "ports": [
            {"name": "grpc", "containerPort": vei.grpc_port},
            {"name": "metrics", "containerPort": vei.metrics_port},
        ],
        # Native gRPC probes (Kubernetes >= 1.24): the standard health service, no probe binary.
        "readinessProbe": {
            "grpc": {"port": vei.grpc_port, "service": "VEIv1_0.VEIv1_0"},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "grpc": {"port": vei.grpc_port, "service": ""},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "96Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
    }
    return deployment(testbed, GATEWAY, vei.gateway_replicas, container, spread=True)


def gateway_services(testbed: Testbed) -> list[dict[str, Any]]:
    vei = testbed.vei
    ports = [{"name": "grpc", "port": vei.grpc_port, "targetPort": "grpc"}]
    base = {"apiVersion": "v1", "kind": "Service"}
    selector = {"app.kubernetes.io/name": GATEWAY}
    return [
        {
            **base,
            "metadata": {
                "name": f"{GATEWAY}-headless",
                "namespace": vei.namespace,
                "labels": _labels(GATEWAY),
            },
            # Only ready pods are published, so clients stop resolving a gateway that failed readiness.
            "spec": {
                "clusterIP": "None",
                "selector": selector,
                "ports": ports,
                "publishNotReadyAddresses": False,
            },
        },
        {
            **base,
            "metadata": {"name": GATEWAY, "namespace": vei.namespace, "labels": _labels(GATEWAY)},
            "spec": {"type": "ClusterIP", "selector": selector, "ports": ports},
        },
    ]


def external_gateway_service(testbed: Testbed) -> dict[str, Any] | None:
    """With operator-side clients: every gateway replica on a node port of every node."""
    vei = testbed.vei
    if vei.clients != "operator":
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{GATEWAY}-external", "namespace": vei.namespace, "labels": _labels(GATEWAY)},
        "spec": {
            "type": "NodePort",
            "selector": {"app.kubernetes.io/name": GATEWAY},
            "ports": [{"name": "grpc", "port": vei.grpc_port, "targetPort": "grpc",
                       "nodePort": vei.gateway_node_port}],
        },
    }


def credentials_secret(testbed: Testbed, values: dict[str, Any]) -> dict[str, Any] | None:
    """Cloud credentials; values are Pulumi secrets at deploy time, never literals in a manifest."""
    if not values:
        return None
    return objects.secret(CREDENTIALS_SECRET, testbed.vei.namespace, values, MANAGED)


def pod_monitors(testbed: Testbed) -> list[dict[str, Any]]:
    """Prometheus Operator PodMonitors for the gateway metrics port (NATS gets one from its chart)."""
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": GATEWAY, "namespace": testbed.vei.namespace, "labels": _labels(GATEWAY)},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY}},
                "podMetricsEndpoints": [{"port": "metrics", "interval": "5s"}],
            },
        }
    ]
