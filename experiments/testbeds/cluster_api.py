"""What a stack testbed asks the Kubernetes API, behind one small interface.

`KubernetesApi` is the real thing (the official Python client on the stack's kubeconfig). Nothing
Kubernetes runs on this project's CI machine, so tests hand the stack testbed a stand-in with the
same methods. `FaasClusterApi` adds what the FaaS experiment needs on a stack: a pod list and watch
(with the resource version to resume from), the function's Deployment, an autoscaling/v2 HPA and a
NodePort Service as its entry point.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


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
    uid: str = ""
    resource_version: str = ""   # of the object: orders the events of one pod


@dataclass(frozen=True)
class DeploymentState:
    spec_replicas: int
    ready_replicas: int
    replicas: int


@dataclass(frozen=True)
class HpaState:
    current_replicas: int
    desired_replicas: int
    min_replicas: int
    max_replicas: int
    conditions: dict[str, str]      # type -> "status: reason" (e.g. ScalingLimited)


class WatchExpired(Exception):
    """The resource version a watch resumed from is gone (HTTP 410): list again, then watch."""


class ClusterApi(Protocol):
    def nodes(self) -> list[NodeState]: ...

    def pods(self, namespace: str, selector: str = "") -> list[PodState]:
        """Pods of `namespace` ("" = every namespace) matching a label selector."""
        ...


@runtime_checkable
class FaasClusterApi(ClusterApi, Protocol):
    def list_pods(self, namespace: str, selector: str) -> tuple[list[PodState], str]:
        """The pods and the list's resource version (a watch resumes from it)."""
        ...

    def watch_pods(self, namespace: str, selector: str, resource_version: str,
                   timeout_s: float) -> Iterator[tuple[str, PodState, str]]:
        """(ADDED|MODIFIED|DELETED, pod, resource version) until the server ends the watch after
        `timeout_s`; raises WatchExpired when `resource_version` is too old."""
        ...

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A strategic-merge patch."""
        ...

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None: ...

    def get_hpa(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_hpa(self, namespace: str, body: dict[str, Any]) -> None: ...

    def delete_hpa(self, namespace: str, name: str) -> None: ...

    def hpa_state(self, namespace: str, name: str) -> HpaState | None: ...

    def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Service; returns it as the API server stored it (with the node port it chose)."""
        ...

    def delete_service(self, namespace: str, name: str) -> None: ...


def _pod_state(item: Any, namespace: str) -> PodState:
    ready = any(c.type == "Ready" and c.status == "True" for c in (item.status.conditions or []))
    return PodState(item.metadata.name, item.metadata.namespace or namespace, item.spec.node_name,
                    item.status.phase or "", ready, dict(item.metadata.labels or {}), item.metadata.uid or "",
                    str(item.metadata.resource_version or ""))


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
            out.append(_pod_state(item, namespace))
        return out

    # -- FaasClusterApi ----------------------------------------------------------------------------
    def _apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api_client)

    def _autoscaling(self) -> Any:
        from kubernetes import client

        return client.AutoscalingV2Api(self.api_client)

    def list_pods(self, namespace: str, selector: str) -> tuple[list[PodState], str]:
        listing = self.core.list_namespaced_pod(namespace, label_selector=selector)
        return [_pod_state(i, namespace) for i in listing.items], str(listing.metadata.resource_version)

    def watch_pods(self, namespace: str, selector: str, resource_version: str,
                   timeout_s: float) -> Iterator[tuple[str, PodState, str]]:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        w = watch.Watch()
        try:
            for event in w.stream(self.core.list_namespaced_pod, namespace, label_selector=selector,
                                  resource_version=resource_version, timeout_seconds=int(max(1, timeout_s)),
                                  allow_watch_bookmarks=False):
                item = event["object"]
                yield event["type"], _pod_state(item, namespace), str(item.metadata.resource_version)
        except ApiException as err:
            if err.status == 410:
                raise WatchExpired(str(err.reason)) from None
            raise
        finally:
            w.stop()

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read(lambda: self._apps().read_namespaced_deployment(name, namespace))

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._apps().patch_namespaced_deployment(name, namespace, patch)

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        dep = self.get_deployment(namespace, name)
        if dep is None:
            return None
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        return DeploymentState(int(spec.get("replicas") or 0), int(status.get("readyReplicas") or 0),
                               int(status.get("replicas") or 0))

    def get_hpa(self, namespace: str, name: str) -> dict[str, Any] | None:
        api = self._autoscaling()
        return self._read(lambda: api.read_namespaced_horizontal_pod_autoscaler(name, namespace))

    def create_hpa(self, namespace: str, body: dict[str, Any]) -> None:
        self._autoscaling().create_namespaced_horizontal_pod_autoscaler(namespace, body)

    def delete_hpa(self, namespace: str, name: str) -> None:
        self._delete(lambda: self._autoscaling().delete_namespaced_horizontal_pod_autoscaler(name, namespace))

    def hpa_state(self, namespace: str, name: str) -> HpaState | None:
        hpa = self.get_hpa(namespace, name)
        if hpa is None:
            return None
        spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
        conditions = {c["type"]: f"{c.get('status')}: {c.get('reason', '')}"
                      for c in status.get("conditions") or []}
        return HpaState(int(status.get("currentReplicas") or 0), int(status.get("desiredReplicas") or 0),
                        int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 0), conditions)

    def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created = self.core.create_namespaced_service(namespace, body)
        return dict(self.api_client.sanitize_for_serialization(created))

    def delete_service(self, namespace: str, name: str) -> None:
        self._delete(lambda: self.core.delete_namespaced_service(name, namespace))

    def _read(self, call: Any) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            obj = call()
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return dict(self.api_client.sanitize_for_serialization(obj))

    def _delete(self, call: Any) -> None:
        from kubernetes.client.rest import ApiException

        try:
            call()
        except ApiException as err:
            if err.status != 404:
                raise
