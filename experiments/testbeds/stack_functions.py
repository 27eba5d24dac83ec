"""Functions on a Pulumi stack: OpenFaaS deploys them, Kubernetes places, scales and watches them.

For one function under one scenario (the OpenFaaS thesis's steps in 5.1):

1. deploy through the OpenFaaS gateway's REST API with the function's image and a CPU request (a
   function the stack already runs is used as it is and restored afterwards). The image is edgerig's
   build of it (`edgerig images build`), referenced as the stack's other images are
   (infra/images.py): from `edgerig:images.registry` if the stack names one, else as imported on the
   nodes;
2. patch its Deployment with the scenario's placement - edge tolerations and required or preferred
   node affinity (the E1 weight is a flag) - one initial replica and the node name for nodeinfo (the
   downward API). The probes stay: the pinned KubeEdge runs the upstream kubelet's prober, so the
   thesis's removal of them (4.5.7) is not needed (docs/stacks.md);
3. the entry point on a node of the scenario's entry realm: a NodePort Service on a K3s node; on a
   KubeEdge EdgeCore node, which runs no kube-proxy (and EdgeMesh carries no NodePorts), the OpenFaaS
   gateway's `/function/<name>`, which EdgeMesh carries to the function's pods;
4. an autoscaling/v2 HPA (max replicas, target CPU utilisation); an HPA the stack had is set aside;
5. a pod watch (experiments/testbeds/pod_watch.py) and, per sample, the HPA's current and desired
   replicas beside the Deployment's;
6. afterwards: the HPA and the Service go, the Deployment gets back what was changed (or the
   function is removed when this run deployed it), and a set-aside HPA comes back.

OpenFaaS Community Edition caps every function at 5 replicas (its scale API from faas-netes 0.16.4;
from 0.16.6 the provider also resets a Deployment scaled beyond, an HPA's too); its AlertManager
scaling would also fight the HPA (the stack's platform values turn AlertManager off). The cap is
reported from the provider's release, and the FaaS experiment detects a clamped Deployment from the
samples either way.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

from experiments.testbeds.base import NodeInfo, Progress, TestbedError
from experiments.testbeds.cluster_api import FaasClusterApi
from experiments.testbeds.functions import (
    EDGE,
    FunctionDeployment,
    FunctionHost,
    FunctionRequest,
    ScalingState,
    Scenario,
)
from experiments.testbeds.openfaas_api import OpenFaaSClient, provider_release
from experiments.testbeds.pod_watch import PodTracker, PodWatch
from infra.images import ImageRef, ref_for, resolve_record_path
from infra.platform.placement import (
    cloud_only_affinity,
    edge_only_affinity,
    edge_tolerations,
    prefer_edge_affinity,
)
from workloads.functions.http_template import HEALTH_PATH, PORT
from workloads.images import catalog as image_catalog
from workloads.images import record as image_record


class StackView(Protocol):
    """What the functions of a stack need from its testbed (the stack testbed is one)."""

    stack: str
    progress: Progress

    @property
    def nodes(self) -> list[NodeInfo]: ...

    def setting(self, key: str, *path: str, default: str) -> str: ...


FUNCTION_PORT = PORT                  # every function image (the python3-http contract)
CE_CAP = 5                            # OpenFaaS CE's replica cap (faas-netes >= CE_CAP_SINCE)
CE_CAP_SINCE = (0, 16, 4)
ENTRY_PREFIX = "edgerig-entry-"
MANAGED_LABEL = {"app.kubernetes.io/managed-by": "edgerig", "edgerig.io/experiment": "faas"}


# -- the objects (pure, validated against the pinned Kubernetes schema in the tests) ------------------
def placement_patch(function: str, sc: Scenario, cpu_request: str,
                    pull_policy: str | None = None) -> dict[str, Any]:
    """Strategic-merge patch of the function's Deployment for a scenario (thesis Code Snippets 5.2-5.4);
    `pull_policy`: the image's (Never for images the nodes imported; faas-netes sets one for all)."""
    if sc.edge_weight is not None:
        affinity: dict[str, Any] | None = prefer_edge_affinity(sc.edge_weight) or None
    else:
        affinity = edge_only_affinity() if sc.realms == (EDGE,) else cloud_only_affinity()
    container: dict[str, Any] = {
        "name": function,
        "resources": {"requests": {"cpu": cpu_request}},
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
    }
    if pull_policy:
        container["imagePullPolicy"] = pull_policy
    spec: dict[str, Any] = {
        # `$patch: replace`: the scenario's affinity as a whole, not merged into what was there
        "affinity": {**affinity, "$patch": "replace"} if affinity else None,
        "tolerations": edge_tolerations() if sc.needs_edge else None,
        "containers": [container],
    }
    return {"spec": {"replicas": 1, "template": {"spec": spec}}}


def restore_patch(function: str, saved: Mapping[str, Any]) -> dict[str, Any]:
    """What puts a Deployment's changed fields back as `saved` (its object before the run) had them."""
    spec = (saved.get("spec") or {})
    pod = (spec.get("template") or {}).get("spec") or {}
    old: dict[str, Any] = next((c for c in pod.get("containers") or [] if c.get("name") == function), {})
    env = [e for e in old.get("env") or [] if e.get("name") == "NODE_NAME"]
    container: dict[str, Any] = {
        "name": function,
        "resources": {**(old.get("resources") or {}), "$patch": "replace"},
        "imagePullPolicy": old.get("imagePullPolicy"),
        "env": env or [{"name": "NODE_NAME", "$patch": "delete"}],
    }
    affinity = pod.get("affinity")
    return {"spec": {"replicas": spec.get("replicas", 1), "template": {"spec": {
        "affinity": {**affinity, "$patch": "replace"} if affinity else None,
        "tolerations": pod.get("tolerations"),
        "containers": [container],
    }}}}


def entry_service(function: str, namespace: str) -> dict[str, Any]:
    """The entry point: a NodePort Service in front of the function's pods (thesis step 2)."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{ENTRY_PREFIX}{function}", "namespace": namespace,
                     "labels": dict(MANAGED_LABEL)},
        "spec": {"type": "NodePort", "selector": {"faas_function": function},
                 "ports": [{"name": "http", "port": FUNCTION_PORT, "targetPort": FUNCTION_PORT,
                            "protocol": "TCP"}]},
    }


def hpa_object(function: str, namespace: str, max_replicas: int, cpu_percent: int) -> dict[str, Any]:
    """`kubectl autoscale <fn> --max N --cpu-percent P` as an autoscaling/v2 object (Code Snippet 5.1)."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": function, "namespace": namespace, "labels": dict(MANAGED_LABEL)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": function},
            "minReplicas": 1, "maxReplicas": max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}],
        },
    }


def deploy_spec(request: FunctionRequest, image: str, namespace: str) -> dict[str, Any]:
    """The REST deployment: no com.openfaas.scale labels (CE refuses a max above 5; the HPA scales)."""
    return {"service": request.function, "image": image, "namespace": namespace,
            "labels": {"edgerig.io/experiment": "faas"}, "requests": {"cpu": request.cpu_request}}


def replica_cap(release: str) -> int | None:
    """The replica cap of a faas-netes release: 5 from 0.16.4 on (CE), None before or unknown."""
    try:
        parts = tuple(int(p) for p in release.lstrip("v").split(".")[:3])
    except ValueError:
        return None
    return CE_CAP if len(parts) == 3 and parts >= CE_CAP_SINCE else None


def _fresh(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object as read back, ready to be created again."""
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink"):
        meta.pop(key, None)
    return out


# -- the deployment -----------------------------------------------------------------------------
class StackDeployment(FunctionDeployment):
    autoscaled = True

    def __init__(self, host: StackFunctionHost, request: FunctionRequest, image: ImageRef, entry_url: str,
                 entry: str, saved_deployment: dict[str, Any] | None,
                 saved_hpa: dict[str, Any] | None) -> None:
        self.host, self.request, self.image, self.entry = host, request, image, entry
        self.function, self.scenario = request.function, request.scenario
        self.namespace = host.namespace
        self._entry_url, self.saved_deployment, self.saved_hpa = entry_url, saved_deployment, saved_hpa
        self._watch: PodWatch | None = None

    @property
    def entry_urls(self) -> list[str]:
        return [self._entry_url]

    @property
    def realms(self) -> dict[str, str]:
        return self.host.realms

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = urllib.parse.urlsplit(self._entry_url)
        while True:
            state = self.host.cluster.deployment_state(self.namespace, self.function)
            answers = _answers(url.hostname or "", url.port or 80, url.path.rstrip("/"))
            if state is not None and state.ready_replicas >= 1 and answers:
                return
            if time.monotonic() > deadline:
                ready = state.ready_replicas if state else "no Deployment"
                raise TestbedError(f"{self.function} did not answer at {self._entry_url} within "
                                   f"{timeout_s:.0f} s (ready replicas: {ready})")
            time.sleep(2)

    def observe(self, tracker: PodTracker) -> None:
        self._watch = PodWatch(self.host.cluster, self.namespace, f"faas_function={self.function}",
                               tracker).start()

    def stop_observing(self) -> dict[str, Any]:
        watch, self._watch = self._watch, None
        if watch is None:
            return {}
        watch.stop()
        return {"lists": watch.lists, "resumes": watch.resumes, "errors": watch.errors[-5:]}

    def scaling(self) -> ScalingState:
        hpa = self.host.cluster.hpa_state(self.namespace, self.function)
        dep = self.host.cluster.deployment_state(self.namespace, self.function)
        conditions = "; ".join(f"{k}={v}" for k, v in sorted((hpa.conditions if hpa else {}).items()))
        return ScalingState(time.time(), hpa.current_replicas if hpa else None,
                            hpa.desired_replicas if hpa else None, hpa.max_replicas if hpa else None,
                            dep.spec_replicas if dep else None, dep.ready_replicas if dep else 0, conditions)

    def remove(self) -> None:
        cluster, ns, fn = self.host.cluster, self.namespace, self.function
        problems = []
        self.stop_observing()
        for step in (lambda: cluster.delete_hpa(ns, fn),
                     lambda: cluster.delete_service(ns, f"{ENTRY_PREFIX}{fn}"),
                     self._restore_function,
                     lambda: cluster.create_hpa(ns, _fresh(self.saved_hpa)) if self.saved_hpa else None):
            try:
                step()
            except Exception as err:  # every step is tried; what failed is reported together
                problems.append(f"{type(err).__name__}: {err}")
        if problems:
            raise TestbedError(f"could not restore everything {fn} changed on stack {self.host.stack}: "
                               + "; ".join(problems))

    def _restore_function(self) -> None:
        if self.saved_deployment is None:
            self.host.openfaas.delete(self.function)
        else:
            self.host.cluster.patch_deployment(self.namespace, self.function,
                                               restore_patch(self.function, self.saved_deployment))

    def describe(self) -> dict[str, Any]:
        return {"function": self.function, "scenario": self.scenario.name, "autoscaled": True,
                "namespace": self.namespace, "entry_urls": self.entry_urls, "entry": self.entry,
                "image": self.image.reference,
                "hpa": {"max_replicas": self.request.max_replicas, "cpu_percent": self.request.cpu_percent,
                        "cpu_request": self.request.cpu_request},
                "edge_weight": self.scenario.edge_weight, "preexisting": self.saved_deployment is not None,
                "openfaas_provider_release": self.host.release, "replica_cap": self.host.cap}


def _answers(host: str, port: int, prefix: str = "") -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", prefix + HEALTH_PATH)
        return conn.getresponse().status < 500
    except OSError:
        return False
    finally:
        conn.close()


class StackFunctionHost(FunctionHost):
    kind = "stack"
    autoscales = True

    def __init__(self, testbed: StackView, cluster: FaasClusterApi, openfaas: OpenFaaSClient,
                 namespace: str) -> None:
        self.testbed, self.cluster, self.openfaas, self.namespace = testbed, cluster, openfaas, namespace
        self.stack = testbed.stack
        nodes = testbed.nodes
        self.realms = {n.name: n.realm for n in nodes}
        self.addresses = {n.name: n.address for n in nodes}
        self.edgecore = {n.name for n in nodes if "edge" in n.roles}   # role edge: a KubeEdge EdgeCore node
        self.kubeedge = bool(self.edgecore)
        self.release = provider_release(openfaas.info())
        self.cap = replica_cap(self.release)

    def entry_node(self, realm: str) -> str:
        names = sorted(n for n, r in self.realms.items() if r == realm)
        if not names:
            raise TestbedError(f"stack {self.stack} has no {realm} node to send requests to")
        return names[0]

    def image(self, function: str) -> ImageRef:
        """The function's image as the stack references its images: the build record and registry of
        `edgerig:images` (else EDGERIG_IMAGES_RECORD, else the default build folder)."""
        path = resolve_record_path(self.testbed.setting("edgerig:images", "buildRecord", default="") or None)
        try:
            built = image_record.load(path).images.get(image_catalog.function_image(function))
        except image_record.RecordError as err:
            raise TestbedError(str(err)) from None
        if built is None:
            raise TestbedError(f"the image build {path} has no {image_catalog.function_image(function)}: "
                               "run `sudo edgerig images build`")
        registry = self.testbed.setting("edgerig:images", "registry", default="")
        return ref_for(built, registry or None)

    def check(self, request: FunctionRequest) -> None:
        self.image(request.function)
        for realm in (request.scenario.entry_realm, *([] if request.scenario.edge_weight is not None
                                                      else request.scenario.realms)):
            self.entry_node(realm)
        if request.max_replicas > CE_CAP and self.cap is not None:
            self.testbed.progress(
                f"note: OpenFaaS CE (faas-netes {self.release}) caps functions at {self.cap} replicas; the "
                f"HPA may ask for up to {request.max_replicas} and the run will report the clamping")

    def deploy(self, request: FunctionRequest) -> StackDeployment:
        self.check(request)
        fn, ns = request.function, self.namespace
        image = self.image(fn)
        saved_dep = self.cluster.get_deployment(ns, fn) if self.openfaas.function(fn) is not None else None
        saved_hpa = self.cluster.get_hpa(ns, fn)
        created_function = created_service = created_hpa = False
        try:
            if saved_dep is None:
                self.openfaas.deploy(deploy_spec(request, image.reference, ns))
                created_function = True
                self._wait_deployment(fn)
            if saved_hpa is not None:
                self.cluster.delete_hpa(ns, fn)
            self.cluster.patch_deployment(ns, fn, placement_patch(fn, request.scenario, request.cpu_request,
                                                                  image.pull_policy))
            entry = self.entry_node(request.scenario.entry_realm)
            if entry in self.edgecore:
                url = f"{self.openfaas.base_url}/function/{fn}"
                how = (f"the OpenFaaS gateway: the entry node {entry} is a KubeEdge EdgeCore node, which "
                       "serves no NodePorts")
            else:
                service = self.cluster.create_service(ns, entry_service(fn, ns))
                created_service = True
                port = int(((service.get("spec") or {}).get("ports") or [{}])[0].get("nodePort") or 0)
                if not port:
                    raise TestbedError(f"the API server gave the entry Service of {fn} no node port")
                url, how = f"http://{self.addresses[entry]}:{port}", f"NodePort Service on {entry}"
            self.cluster.create_hpa(ns, hpa_object(fn, ns, request.max_replicas, request.cpu_percent))
            created_hpa = True
        except BaseException:
            with contextlib.suppress(Exception):
                if created_hpa:
                    self.cluster.delete_hpa(ns, fn)
                if created_service:
                    self.cluster.delete_service(ns, f"{ENTRY_PREFIX}{fn}")
                if created_function:
                    self.openfaas.delete(fn)
                elif saved_dep is not None:
                    self.cluster.patch_deployment(ns, fn, restore_patch(fn, saved_dep))
                if saved_hpa is not None:
                    self.cluster.create_hpa(ns, _fresh(saved_hpa))
            raise
        return StackDeployment(self, request, image, url, how, saved_dep, saved_hpa)

    def _wait_deployment(self, fn: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.cluster.get_deployment(self.namespace, fn) is None:
            if time.monotonic() > deadline:
                raise TestbedError(f"OpenFaaS accepted {fn} but no Deployment appeared in {self.namespace} "
                                   f"within {timeout_s:.0f} s")
            time.sleep(1)

    def close(self) -> None:
        self.openfaas.close()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "namespace": self.namespace, "openfaas_provider_release": self.release,
                "replica_cap": self.cap, "kubeedge": self.kubeedge,
                "autoscaling": "HPA (autoscaling/v2) on the function's Deployment"}

