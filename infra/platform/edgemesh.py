"""EdgeMesh: Service routing and DNS for pods on KubeEdge EdgeCore nodes (edgemesh-agent, pinned in
infra/versions.py), deployed whenever a stack has EdgeCore nodes.

Rendered after the release's own manifests (build/agent/resources of kubeedge/edgemesh v1.17.0),
with these choices:
- its own namespace (`edgemesh`): `kubeedge` belongs to keadm's CloudCore Helm release;
- the pre-shared key is a Secret from a Pulumi RandomPassword, not the release's sample ConfigMap key;
- every cloud server is a relay (edges behind NAT reach the cloud through it) at its reachable address,
  tunnel port `kubeedge.edgemesh.tunnelPort` (20006, the release's default);
- the agent runs on every node, EdgeCore nodes included (it tolerates the edge taint): on EdgeCore
  nodes it answers DNS on 169.254.96.16 (what edgecore's clusterDNS names, render_kubeedge) from the
  edge Kube-API endpoint (metaServer, 127.0.0.1:10550) and proxies ClusterIP Services through its
  tunnel; on K3s nodes it proxies the Services whose pods run on edges;
- the `kubernetes` Service is left to K3s (the filter label of the EdgeMesh guide);
- the Istio CRDs its informers list (DestinationRule, Gateway, VirtualService) are defined minimally.
EdgeMesh proxies ClusterIP Services only: headless Services (pod IPs) stay unreachable across the
cloud/edge boundary, which is why only the VEI clients (they use the gateway's ClusterIP) may run there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_random as random
import yaml

from infra import versions
from infra.model import EDGE_ROLE_LABEL, Testbed
from infra.platform.k8s import apply_object, apply_patch
from infra.platform.objects import MANAGED

NAMESPACE = "edgemesh"
AGENT = "edgemesh-agent"
PSK_SECRET = "edgemesh-agent-psk"
FILTER_LABEL = "service.edgemesh.kubeedge.io/service-proxy-name"
LABELS = {**MANAGED, "k8s-app": "kubeedge", "kubeedge": AGENT}
SELECTOR = {"k8s-app": "kubeedge", "kubeedge": AGENT}
ISTIO_KINDS = (
    ("destinationrules", "DestinationRule"), ("gateways", "Gateway"), ("virtualservices", "VirtualService")
)


def agent_image(testbed: Testbed, pins: Mapping[str, versions.Pin] | None = None) -> str:
    from infra.hosts.artefacts import EDGEMESH_AGENT

    return EDGEMESH_AGENT.by_digest(versions.ARTEFACT_PINS if pins is None else pins)


def relay_servers(testbed: Testbed) -> list[str]:
    return [n.name for n in testbed.servers if n.realm == "cloud"]


def agent_config(testbed: Testbed, relay_addresses: Mapping[str, str]) -> str:
    """edgemesh-agent.yaml; relay_addresses: cloud server name -> the address edges reach it on."""
    doc = {
        "modules": {
            "edgeProxy": {"enable": True},
            "edgeTunnel": {
                "enable": True,
                "listenPort": testbed.kubeedge.edgemesh.tunnel_port,
                "relayNodes": [
                    {"nodeName": name, "advertiseAddress": [relay_addresses[name]]}
                    for name in relay_servers(testbed)
                ],
            },
        }
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _istio_crd(plural: str, kind: str) -> dict[str, Any]:
    """Just enough of Istio's CRD for edgemesh-agent's informers to list the kind (it uses none here)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.networking.istio.io", "labels": dict(MANAGED)},
        "spec": {
            "group": "networking.istio.io",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha3",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


def daemonset(testbed: Testbed, pins: Mapping[str, versions.Pin] | None = None) -> dict[str, Any]:
    mounts = [
        {"name": "conf", "mountPath": "/etc/edgemesh/config"},
        {"name": "resolv", "mountPath": "/etc/resolv.conf"},
        {"name": "host-time", "mountPath": "/etc/localtime", "readOnly": True},
        {"name": "psk", "mountPath": "/etc/edgemesh"},
    ]
    volumes = [
        {"name": "conf", "configMap": {"name": f"{AGENT}-cfg"}},
        {"name": "resolv", "hostPath": {"path": "/etc/resolv.conf"}},
        {"name": "host-time", "hostPath": {"path": "/etc/localtime"}},
        {"name": "psk", "secret": {"secretName": PSK_SECRET, "items": [{"key": "psk", "path": "psk"}]}},
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": AGENT, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "selector": {"matchLabels": dict(SELECTOR)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "hostNetwork": True,
                    "serviceAccountName": AGENT,
                    "tolerations": [{"key": EDGE_ROLE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": AGENT,
                            "image": agent_image(testbed, pins),
                            "imagePullPolicy": "IfNotPresent",
                            "securityContext": {"privileged": True},
                            "env": [
                                {
                                    "name": "NODE_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                                },
                                {
                                    "name": "NAMESPACE",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                },
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "200m", "memory": "256Mi"},
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }


def objects(
    testbed: Testbed,
    relay_config: Any,
    psk: Any,
    pins: Mapping[str, versions.Pin] | None = None,
) -> list[dict[str, Any]]:
    """Every EdgeMesh object; relay_config is agent_config()'s text (an Output at deploy time) and psk
    the key (a secret Output at deploy time, a placeholder in schema tests)."""
    role_rules = [
        {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "namespaces"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["networking.istio.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
    ]
    meta = {"namespace": NAMESPACE, "labels": dict(LABELS)}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": dict(MANAGED)}},
        *(_istio_crd(plural, kind) for plural, kind in ISTIO_KINDS),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": AGENT, **meta}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": AGENT, "labels": dict(LABELS)},
            "rules": role_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": AGENT, "labels": dict(LABELS)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT},
            "subjects": [{"kind": "ServiceAccount", "name": AGENT, "namespace": NAMESPACE}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{AGENT}-cfg", **meta},
            "data": {"edgemesh-agent.yaml": relay_config},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": PSK_SECRET, **meta},
            "stringData": {"psk": psk},
        },
        daemonset(testbed, pins),
    ]


def api_service_filter() -> dict[str, Any]:
    """The label that keeps EdgeMesh off the `kubernetes` Service (a patch of K3s's own Service)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {FILTER_LABEL: ""}},
    }


class EdgeMesh(pulumi.ComponentResource):
    """edgemesh-agent on every node; relays on the cloud servers at their reachable addresses."""

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        provider: pulumi.ProviderResource,
        addresses: Mapping[str, pulumi.Input[str]],
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:platform:EdgeMesh", name, None, opts)
        relays = relay_servers(testbed)
        config = pulumi.Output.all(*[addresses[n] for n in relays]).apply(
            lambda ips: agent_config(testbed, dict(zip(relays, ips, strict=True)))
        )
        psk = random.RandomPassword(
            f"{name}-psk", length=32, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        created: dict[str, pulumi.Resource] = {}
        for obj in objects(testbed, config, pulumi.Output.secret(psk.result)):
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            # Cluster-scoped definitions first; everything else waits for the namespace and its inputs.
            inputs = ("Namespace", "ServiceAccount", "ConfigMap", "Secret")
            deps = [] if kind in ("Namespace", "CustomResourceDefinition") else [
                created[k] for k in inputs if k in created
            ]
            resource = apply_object(
                f"{name}-{kind.lower()}-{obj_name}",
                obj,
                pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[*after, *deps]),
            )
            created.setdefault(kind, resource)
        apply_patch(
            f"{name}-kubernetes-service-filter",
            api_service_filter(),
            pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(after)),
        )
        self.register_outputs({"namespace": NAMESPACE})
