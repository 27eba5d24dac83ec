"""Creating Kubernetes resources from the pure dicts, and Helm releases with pinned charts."""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

_TYPED: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "Node"): k8s.core.v1.NodePatch,  # Nodes are registered by their kubelet; we only patch labels
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
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
