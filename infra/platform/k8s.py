"""Creating Kubernetes resources from the pure dicts, and Helm releases with pinned charts."""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.model import Testbed

_TYPED: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Node"): k8s.core.v1.NodePatch,  # Nodes are registered by their kubelet; we only patch labels
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "DaemonSet"): k8s.apps.v1.DaemonSet,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): k8s.apiextensions.v1.CustomResourceDefinition,
}
# Objects other components own (K3s's `kubernetes` Service): only the fields we set, server-side applied.
_PATCHES: dict[tuple[str, str], Any] = {
    ("v1", "Node"): k8s.core.v1.NodePatch,
    ("v1", "Service"): k8s.core.v1.ServicePatch,
}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def apply_object(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """One Pulumi resource per rendered object; CRD kinds (PodMonitor) go through CustomResource."""
    # Top-level fields become Python keyword arguments (stringData -> string_data); nested dicts keep
    # the Kubernetes camelCase keys, which pulumi-kubernetes passes through unchanged.
    fields = {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    cls = _TYPED.get((obj["apiVersion"], obj["kind"]))
    if cls is not None:
        resource: pulumi.CustomResource = cls(name, **fields, opts=opts)
        return resource
    return k8s.apiextensions.CustomResource(
        name, api_version=obj["apiVersion"], kind=obj["kind"], **fields, opts=opts
    )


def apply_patch(name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """A server-side apply patch of an object another component created."""
    fields = {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    resource: pulumi.CustomResource = _PATCHES[(obj["apiVersion"], obj["kind"])](name, **fields, opts=opts)
    return resource


def chart_repository(testbed: Testbed, upstream: str) -> str:
    """The lab's Helm repository when it mirrors the charts (air-gapped), else the chart's own."""
    return testbed.artefacts.chart_repository or upstream


def helm_release(
    name: str,
    *,
    chart: str,
    repo: str,
    version: str,
    namespace: str,
    values: dict[str, Any],
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v3.Release:
    # `name` pins the Helm release name (no random suffix): Service names such as nats-headless
    # depend on it.
    return k8s.helm.v3.Release(
        name,
        name=name,
        chart=chart,
        version=version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repo),
        namespace=namespace,
        values=values,
        atomic=True,
        timeout=900,  # Pis pull images slowly
        opts=opts,
    )
