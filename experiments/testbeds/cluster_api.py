"""What a stack testbed asks the Kubernetes API, behind one small interface.

`KubernetesApi` is the real thing (the official Python client on the stack's kubeconfig). Nothing
Kubernetes runs on this project's CI machine, so tests hand the stack testbed a stand-in with the
same methods.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class NodeState:
    name: str
    ready: bool
    labels: dict[str, str]


@dataclass(frozen=True)
class PodState:
    name: str
    namespace: str
    node: str | None
    phase: str
    ready: bool
    labels: dict[str, str]


class ClusterApi(Protocol):
    def nodes(self) -> list[NodeState]: ...

    def pods(self, namespace: str, selector: str = "") -> list[PodState]:
        """Pods of `namespace` ("" = every namespace) matching a label selector."""
        ...


class KubernetesApi:
    """ClusterApi over the official client; the kubeconfig text never touches the repo or a log."""

    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config

        with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=True) as handle:
            Path(handle.name).chmod(0o600)
            handle.write(kubeconfig)
            handle.flush()
            api_client = config.new_client_from_config(config_file=handle.name)
        self.core = client.CoreV1Api(api_client)
        self.api_client: Any = api_client

    def nodes(self) -> list[NodeState]:
        out = []
        for item in self.core.list_node().items:
            ready = any(c.type == "Ready" and c.status == "True" for c in (item.status.conditions or []))
            out.append(NodeState(item.metadata.name, ready, dict(item.metadata.labels or {})))
        return out

    def pods(self, namespace: str, selector: str = "") -> list[PodState]:
        out = []
        listing = (self.core.list_namespaced_pod(namespace, label_selector=selector) if namespace
                   else self.core.list_pod_for_all_namespaces(label_selector=selector))
        for item in listing.items:
            ready = any(c.type == "Ready" and c.status == "True" for c in (item.status.conditions or []))
            out.append(PodState(item.metadata.name, namespace, item.spec.node_name, item.status.phase or "",
                                ready, dict(item.metadata.labels or {})))
        return out
