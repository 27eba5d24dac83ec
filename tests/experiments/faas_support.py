"""Test doubles for what cannot run here: the Kubernetes API of a stack and its OpenFaaS gateway.

`FakeCluster` implements `FaasClusterApi` with the behaviour the FaaS experiment depends on: pods
follow the Deployment's replicas (placed by its node affinity), every pod change is an event with a
resource version, watches resume from a version or expire (410), an HPA controller writes its
desired count into the Deployment, and - like OpenFaaS CE's faas-netes - an optional cap resets a
Deployment scaled beyond it. Faults can be injected into the watch: a dropped connection after N
events, an expired version on the next resume, a server that replays old events.

`OpenFaaSDouble` is a real HTTP server on loopback with the gateway's REST endpoints and basic
auth; a deploy creates the function's Deployment in the fake cluster, as faas-netes does.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from experiments.testbeds.cluster_api import DeploymentState, HpaState, NodeState, PodState, WatchExpired

EDGE_LABEL = "node-role.kubernetes.io/edge"


def merge(target: Any, patch: Any) -> Any:
    """A strategic-merge patch, as far as the experiment's patches use it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in ("containers", "env") and isinstance(value, list):
            items = {i["name"]: i for i in out.get(key) or []}
            for item in value:
                if item.get("$patch") == "delete":
                    items.pop(item["name"], None)
                else:
                    items[item["name"]] = merge(items.get(item["name"], {}), item)
            out[key] = list(items.values())
            if not out[key]:
                del out[key]  # the API server omits an empty list
        else:
            out[key] = merge(out.get(key), value)
    return out


class FakeCluster:
    def __init__(self, nodes: dict[str, str], cap: int | None = None, node_port: int = 30080,
                 edge_capacity: int = 2) -> None:
        self.node_realms = nodes
        self.cap, self.node_port, self.edge_capacity = cap, node_port, edge_capacity
        self.deployments: dict[str, dict[str, Any]] = {}
        self.hpas: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.pods_by_uid: dict[str, PodState] = {}
        self.log: list[tuple[int, str, PodState]] = []
        self.version = 100
        self.calls: list[str] = []
        self.patches: list[dict[str, Any]] = []
        self.hpa_bodies: list[dict[str, Any]] = []
        self.fail_create_service = False
        self.desired_for: Callable[[float], int] | None = None  # HPA's wish over time since creation
        self._hpa_since: dict[str, float] = {}
        self._cond = threading.Condition()
        self._seq = 0
        # faults
        self.drop_watch_after: int | None = None
        self.expire_next_resume = False
        self.replay_on_resume = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- ClusterApi ------------------------------------------------------------------------------
    def nodes(self) -> list[NodeState]:
        return [NodeState(n, True, {EDGE_LABEL: ""} if r == "edge" else {})
                for n, r in self.node_realms.items()]

    def pods(self, namespace: str, selector: str = "") -> list[PodState]:
        return self.list_pods(namespace, selector)[0]

    # -- pods and watches ------------------------------------------------------------------------
    def _match(self, pod: PodState, selector: str) -> bool:
        key, _, value = selector.partition("=")
        return not selector or pod.labels.get(key) == value

    def _event(self, kind: str, pod: PodState) -> None:
        with self._cond:
            self.version += 1
            pod = dataclasses.replace(pod, resource_version=str(self.version))
            if kind == "DELETED":
                self.pods_by_uid.pop(pod.uid, None)
            else:
                self.pods_by_uid[pod.uid] = pod
            self.log.append((self.version, kind, pod))
            self._cond.notify_all()

    def list_pods(self, namespace: str, selector: str) -> tuple[list[PodState], str]:
        with self._cond:
            self.calls.append("list_pods")
            return [p for p in self.pods_by_uid.values() if self._match(p, selector)], str(self.version)

    def watch_pods(self, namespace: str, selector: str, resource_version: str,
                   timeout_s: float) -> Iterator[tuple[str, PodState, str]]:
        self.calls.append("watch_pods")
        since = int(resource_version)
        if self.expire_next_resume:
            self.expire_next_resume = False
            raise WatchExpired("too old resource version")
        if self.replay_on_resume:
            self.replay_on_resume = False
            since = 0  # a server that sends everything again
        deadline = time.monotonic() + timeout_s
        sent = 0
        while time.monotonic() < deadline:
            with self._cond:
                fresh = [e for e in self.log if e[0] > since and self._match(e[2], selector)]
                if not fresh:
                    self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                    continue
            for rv, kind, pod in fresh:
                if self.drop_watch_after is not None and sent >= self.drop_watch_after:
                    self.drop_watch_after = None
                    raise ConnectionResetError("connection reset by peer")
                since = rv
                sent += 1
                yield kind, pod, str(rv)

    # -- Deployments, HPAs, Services -------------------------------------------------------------
    def create_function(self, name: str, image: str, requests: dict[str, str]) -> None:
        self.deployments[name] = {
            "metadata": {"name": name, "labels": {"faas_function": name}},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"faas_function": name}}, "spec": {
                "containers": [{"name": name, "image": image, "resources": {"requests": dict(requests)},
                                "readinessProbe": {"httpGet": {"path": "/_/health", "port": 8080}}}]}}},
        }

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        dep = self.deployments.get(name)
        return copy.deepcopy(dep) if dep is not None else None

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.calls.append(f"patch_deployment {name}")
        self.patches.append(copy.deepcopy(patch))
        self.deployments[name] = merge(self.deployments[name], patch)

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        dep = self.deployments.get(name)
        if dep is None:
            return None
        pods = [p for p in self.pods_by_uid.values() if p.labels.get("faas_function") == name]
        return DeploymentState(int(dep["spec"]["replicas"]), sum(p.ready for p in pods), len(pods))

    def get_hpa(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.hpas.get(name))

    def create_hpa(self, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append(f"create_hpa {body['metadata']['name']}")
        self.hpa_bodies.append(copy.deepcopy(body))
        self.hpas[body["metadata"]["name"]] = {**copy.deepcopy(body), "status": {"currentReplicas": 1,
                                                                                  "desiredReplicas": 1}}
        self._hpa_since[body["metadata"]["name"]] = time.monotonic()

    def delete_hpa(self, namespace: str, name: str) -> None:
        self.calls.append(f"delete_hpa {name}")
        self.hpas.pop(name, None)

    def hpa_state(self, namespace: str, name: str) -> HpaState | None:
        hpa = self.hpas.get(name)
        if hpa is None:
            return None
        st = hpa["status"]
        return HpaState(st["currentReplicas"], st["desiredReplicas"], hpa["spec"].get("minReplicas", 1),
                        hpa["spec"]["maxReplicas"], {})

    def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"create_service {body['metadata']['name']}")
        if self.fail_create_service:
            raise RuntimeError("admission webhook denied the Service")
        svc = copy.deepcopy(body)
        svc["spec"]["ports"][0]["nodePort"] = self.node_port
        self.services[body["metadata"]["name"]] = svc
        return svc

    def delete_service(self, namespace: str, name: str) -> None:
        self.calls.append(f"delete_service {name}")
        self.services.pop(name, None)

    def delete_function(self, name: str) -> None:
        self.deployments.pop(name, None)

    # -- controllers -----------------------------------------------------------------------------
    def _node_for(self, dep: dict[str, Any], existing: list[PodState]) -> str:
        spec = dep["spec"]["template"]["spec"]
        text = json.dumps(spec.get("affinity") or {})
        edge = [n for n, r in self.node_realms.items() if r == "edge"]
        cloud = [n for n, r in self.node_realms.items() if r == "cloud"]
        if "required" in text and '"Exists"' in text:
            return edge[0]
        if "required" in text:
            return cloud[len(existing) % len(cloud)]
        if "preferred" in text:
            on_edge = sum(1 for p in existing if p.node in edge)
            return edge[0] if on_edge < self.edge_capacity else cloud[len(existing) % len(cloud)]
        return cloud[len(existing) % len(cloud)]

    def step(self) -> None:
        """One pass of the HPA controller, the faas-netes cap and the ReplicaSet controller."""
        for name, hpa in list(self.hpas.items()):
            dep = self.deployments.get(name)
            if dep is None:
                continue
            if self.desired_for is not None:
                wish = self.desired_for(time.monotonic() - self._hpa_since[name])
                desired = max(hpa["spec"].get("minReplicas", 1), min(hpa["spec"]["maxReplicas"], wish))
                hpa["status"]["desiredReplicas"] = desired
                if dep["spec"]["replicas"] != desired:
                    dep["spec"]["replicas"] = desired  # the HPA scales the Deployment
        for name, dep in list(self.deployments.items()):
            if self.cap is not None and dep["spec"]["replicas"] > self.cap:
                dep["spec"]["replicas"] = self.cap  # faas-netes resets it (OpenFaaS CE)
            pods = sorted((p for p in self.pods_by_uid.values() if p.labels.get("faas_function") == name),
                          key=lambda p: p.name)
            want = int(dep["spec"]["replicas"])
            for pod in pods[want:]:
                self._event("DELETED", pod)
            for pod in pods[:want]:
                if not pod.ready:
                    self._event("MODIFIED", PodState(pod.name, pod.namespace, pod.node, "Running", True,
                                                     pod.labels, pod.uid))
            for _ in range(max(0, want - len(pods))):
                self._seq += 1
                node = self._node_for(dep, pods)
                pod = PodState(f"{name}-{self._seq}", "openfaas-fn", node, "Pending", False,
                               {"faas_function": name}, f"uid-{self._seq}")
                pods.append(pod)
                self._event("ADDED", pod)
            if name in self.hpas:
                self.hpas[name]["status"]["currentReplicas"] = len(pods[:want])

    def start(self, interval_s: float = 0.1) -> FakeCluster:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.step()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class OpenFaaSDouble:
    """The gateway's REST API on loopback, backed by a FakeCluster."""

    def __init__(self, cluster: FakeCluster, password: str, release: str = "0.18.12") -> None:
        self.cluster, self.password, self.release = cluster, password, release
        self.requests: list[tuple[str, str, Any]] = []
        self.invocations: dict[str, int] = {}   # function -> calls through /function/<name>
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else (json.dumps(body).encode() if not isinstance(body, bytes)
                                                 else body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                expected = "Basic " + base64.b64encode(f"admin:{double.password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._reply(401, b"unauthorized")
                    return False
                return True

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _invoke(self) -> bool:
                """`/function/<name>/...`: the gateway proxies the call to the function's pods (here
                the one real replica behind the cluster's node port); no credentials, as the gateway."""
                prefix = "/function/"
                if not self.path.startswith(prefix):
                    return False
                name, _, rest = self.path[len(prefix):].partition("/")
                double.invocations[name] = double.invocations.get(name, 0) + 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", double.cluster.node_port, timeout=30)
                try:
                    conn.request(self.command, "/" + rest, body=body)
                    answer = conn.getresponse()
                    self._reply(answer.status, answer.read())
                finally:
                    conn.close()
                return True

            def do_GET(self) -> None:
                if self._invoke() or not self._authorised():
                    return
                double.requests.append(("GET", self.path, None))
                if self.path == "/system/info":
                    self._reply(200, {"provider": {"provider": "faas-netes", "orchestration": "kubernetes",
                                                   "version": {"release": double.release, "sha": "x"}}})
                elif self.path.startswith("/system/function/"):
                    name = self.path.rsplit("/", 1)[1]
                    dep = double.cluster.deployments.get(name)
                    if dep is None:
                        self._reply(404, b"not found")
                    else:
                        self._reply(200, {"name": name, "replicas": dep["spec"]["replicas"]})
                else:
                    self._reply(404, b"no such path")

            def do_POST(self) -> None:
                if self._invoke() or not self._authorised():
                    return
                body = self._body()
                double.requests.append(("POST", self.path, body))
                labels = body.get("labels") or {}
                if int(labels.get("com.openfaas.scale.max", "0")) > 5:
                    self._reply(400, b"com.openfaas.scale.max is set too high for Community Edition")
                    return
                double.cluster.create_function(body["service"], body["image"], body.get("requests") or {})
                self._reply(202)

            def do_DELETE(self) -> None:
                if not self._authorised():
                    return
                body = self._body()
                double.requests.append(("DELETE", self.path, body))
                if body["functionName"] not in double.cluster.deployments:
                    self._reply(404, b"not found")
                    return
                double.cluster.delete_function(body["functionName"])
                for pod in [p for p in double.cluster.pods_by_uid.values()
                            if p.labels.get("faas_function") == body["functionName"]]:
                    double.cluster._event("DELETED", pod)
                self._reply(202)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
