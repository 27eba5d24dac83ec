"""The FaaS experiment on a stack: OpenFaaS and Kubernetes are test doubles (nothing of them runs
here), the function server and the locust load are real. Covers deploy -> placement -> entry point ->
HPA -> pod watch -> restore, a clamped replica count, and the objects against the pinned schema."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from faas_support import FakeCluster, OpenFaaSDouble
from rich.console import Console
from testkit import ROOT, free_port, stop_process, wait_for_port

from experiments.faas.config import FaasConfig
from experiments.faas.run import run_cell
from experiments.runs.repeat import RunContext
from experiments.testbeds.base import TestbedError
from experiments.testbeds.functions import FunctionRequest, scenario
from experiments.testbeds.processes import Supervisor
from experiments.testbeds.stack import StackTestbed
from experiments.testbeds.stack_functions import entry_service, hpa_object, placement_patch
from infra import versions
from workloads.functions import launch

STACK = "openstack-kubeedge"
RECORD_HELPER = ROOT / "tests" / "infra" / "image_support.py"
NODES = {"cloud-main": "cloud", "cloud-worker": "cloud", "edge-node": "edge"}
PASSWORD = "test-only-not-a-secret"  # the double's admin password


@pytest.fixture
def function_server() -> Iterator[int]:
    """The pod the entry node port leads to: a real nodeinfo replica named like the first pod."""
    port = free_port()
    spec = launch.server(function="nodeinfo", listen=f"127.0.0.1:{port}",
                         env={"HOSTNAME": "nodeinfo-1", "NODE_NAME": "edge-node"})
    proc = subprocess.Popen(spec.argv(), cwd=ROOT, env={**os.environ, **spec.process_env()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    yield port
    stop_process(proc)


def stack_testbed(cluster: FakeCluster, openfaas: OpenFaaSDouble) -> StackTestbed:
    tb = StackTestbed(STACK)  # not brought up: its outputs and cluster are the doubles
    roles = {"cloud-main": "server", "cloud-worker": "agent", "edge-node": "edge"}
    inventory = {n: {"address": "127.0.0.1", "realm": r, "role": roles[n]} for n, r in NODES.items()}
    tb.outputs = {"inventory": {"value": inventory}, "openfaasGateway": {"value": openfaas.url},
                  "openfaasAdminPassword": {"value": PASSWORD, "secret": True}}
    tb.cluster = cluster
    return tb


@pytest.fixture(autouse=True)
def image_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build record of the real image catalogue (made-up digests), as `edgerig images build`
    writes it; the stack file names no registry, so functions are referenced as imported."""
    spec = importlib.util.spec_from_file_location("image_support", RECORD_HELPER)
    assert spec is not None and spec.loader is not None
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    (tmp_path / "images").mkdir()
    path: Path = helper.write_record(tmp_path / "images")
    monkeypatch.setenv("EDGERIG_IMAGES_RECORD", str(path))
    return path


def doubles(port: int, cap: int | None) -> tuple[FakeCluster, OpenFaaSDouble]:
    cluster = FakeCluster(NODES, cap=cap, node_port=port)
    return cluster, OpenFaaSDouble(cluster, PASSWORD)


@pytest.mark.slow
def test_e1_cell_on_a_capped_openfaas_reports_the_clamping(function_server: int, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          image_build: Path) -> None:
    monkeypatch.setenv("EDGERIG_STATE_DIR", str(tmp_path / "state"))
    cluster, openfaas = doubles(function_server, cap=5)
    cluster.desired_for = lambda t: 1 + int(t / 0.25)  # the HPA wants more and more: 12 after ~3 s
    cluster.start(0.1)
    tb = stack_testbed(cluster, openfaas)
    cfg = FaasConfig(functions="nodeinfo", scenarios="e1", users=3, ramp_s=3, hold_s=2, max_replicas=12,
                     sample_s=0.25, target=STACK, progress=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    try:
        with Supervisor(log_dir=tmp_path / "logs") as sup:
            tb.sup = sup
            host = tb.function_host()
            ctx = RunContext(tb, run_dir, 1, Console(file=io.StringIO()))
            requests, _pods, samples, summary = run_cell(cfg, ctx, host, "nodeinfo", "e1")
            tb.sup = None
    finally:
        cluster.stop()
        openfaas.close()
    clamp = summary["hpa"]["clamping"]
    assert clamp["clamped"] and clamp["held_at"] == 5 and clamp["hpa_wanted"] == 12
    assert "5 replicas" in clamp["message"] and "11.1.10" in clamp["message"]
    assert summary["hpa"]["max_desired"] == 12 and summary["autoscaled"]
    assert summary["deployment"]["replica_cap"] == 5 and summary["deployment"]["openfaas_provider_release"]
    # E1: edge preferred (the fake fits 2 pods there), then the cloud; never more than the cap
    assert summary["max_pods"] == {"edge": 2, "cloud": 3}
    assert summary["first_cloud_pod_s"] is not None and summary["first_cloud_pod_s"] >= 0
    assert summary["errors"] == 0 and summary["requests"] == len(requests) > 50
    assert summary["answers_per_realm"] == {"edge": len(requests)}  # every answer from pod nodeinfo-1
    assert max(s.scaling.deployment_replicas or 0 for s in samples) == 5
    # what was sent: the REST deploy with the image and a CPU request, no scale labels (CE refuses them)
    post = next(body for method, path, body in openfaas.requests if method == "POST")
    index = json.loads(image_build.read_text())["images"]["fn-nodeinfo"]["index_digest"]
    assert post["image"] == f"edgerig.local/fn-nodeinfo@{index}" and post["requests"] == {"cpu": "100m"}
    assert not any(k.startswith("com.openfaas.scale") for k in post["labels"])
    patch = cluster.patches[0]["spec"]["template"]["spec"]
    pref = patch["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert pref["weight"] == 80 and patch["tolerations"][0]["key"] == "node-role.kubernetes.io/edge"
    # the probes stay (the pinned KubeEdge probes as a kubelet does; the thesis's 4.5.7 removal is not needed)
    assert not {"readinessProbe", "livenessProbe"} & set(patch["containers"][0])
    # E1 enters at the edge node, a KubeEdge EdgeCore node with no NodePorts: through the gateway
    assert summary["deployment"]["entry_urls"] == [f"{openfaas.url}/function/nodeinfo"]
    assert "EdgeCore" in summary["deployment"]["entry"]
    assert not any("create_service" in c for c in cluster.calls)
    assert openfaas.invocations["nodeinfo"] >= len(requests)
    assert patch["containers"][0]["imagePullPolicy"] == "Never"  # imported on the nodes, never pulled
    hpa = cluster.hpa_bodies[0]["spec"]
    assert hpa["maxReplicas"] == 12 and hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
    # restored: the function, its HPA and its entry Service are gone again
    assert cluster.hpas == {} and cluster.services == {} and "nodeinfo" not in cluster.deployments
    assert ("DELETE", "/system/functions", {"functionName": "nodeinfo"}) in openfaas.requests
    cell = run_dir / "nodeinfo-e1"
    for name in ("requests.csv", "pods.csv", "hpa.csv", "summary.json", "faas.png"):
        assert (cell / name).stat().st_size > 0, name
    assert "edge" in (cell / "requests.csv").read_text().splitlines()[1]
    # the admin password never reaches a result or a log
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".log"):
            assert PASSWORD not in path.read_text(errors="replace"), path


def test_a_function_the_stack_had_is_restored_with_its_hpa(tmp_path: Path) -> None:
    cluster, openfaas = doubles(free_port(), cap=None)
    try:
        cluster.create_function("nodeinfo", "stack/nodeinfo:1", {"cpu": "250m"})
        before = copy.deepcopy(cluster.deployments["nodeinfo"])
        cluster.create_hpa("openfaas-fn", hpa_object("nodeinfo", "openfaas-fn", 4, 70))
        host = stack_testbed(cluster, openfaas).function_host()
        dep = host.deploy(FunctionRequest("nodeinfo", scenario("base-edge"), max_replicas=25))
        during = cluster.deployments["nodeinfo"]["spec"]["template"]["spec"]
        assert during["containers"][0]["resources"]["requests"] == {"cpu": "100m"}
        assert "required" in str(during["affinity"]) and cluster.hpas["nodeinfo"]["spec"]["maxReplicas"] == 25
        dep.remove()
    finally:
        openfaas.close()
    assert not [r for r in openfaas.requests if r[0] in ("POST", "DELETE")]  # used as it was
    assert cluster.deployments["nodeinfo"] == before
    assert cluster.hpas["nodeinfo"]["spec"]["maxReplicas"] == 4
    assert cluster.services == {}


@pytest.mark.parametrize(("edge_role", "name", "entry_node"), [
    ("edge", "base-cloud", "cloud-main"),     # a cloud entry is a NodePort, KubeEdge or not
    ("agent", "base-edge", "edge-node"),      # an edge that is a K3s agent runs kube-proxy: a NodePort
])
def test_a_k3s_entry_node_is_a_node_port(edge_role: str, name: str, entry_node: str, tmp_path: Path) -> None:
    cluster, openfaas = doubles(free_port(), cap=None)
    try:
        tb = stack_testbed(cluster, openfaas)
        tb.outputs["inventory"]["value"]["edge-node"]["role"] = edge_role
        tb.outputs["inventory"]["value"]["edge-node"]["address"] = "127.0.0.2"
        dep = tb.function_host().deploy(FunctionRequest("dd", scenario(name)))
        address = "127.0.0.2" if entry_node == "edge-node" else "127.0.0.1"
        assert dep.entry_urls == [f"http://{address}:{cluster.node_port}"]
        assert dep.describe()["entry"] == f"NodePort Service on {entry_node}"
        assert cluster.services["edgerig-entry-dd"]["spec"]["type"] == "NodePort"
        dep.remove()
    finally:
        openfaas.close()
    assert cluster.services == {} and cluster.deployments == {} and cluster.hpas == {}


def test_a_failed_deploy_leaves_nothing(tmp_path: Path) -> None:
    cluster, openfaas = doubles(free_port(), cap=None)
    cluster.fail_create_service = True
    try:
        host = stack_testbed(cluster, openfaas).function_host()
        with pytest.raises(RuntimeError, match="admission webhook"):
            host.deploy(FunctionRequest("dd", scenario("base-cloud")))
    finally:
        openfaas.close()
    assert cluster.deployments == {} and cluster.hpas == {} and cluster.services == {}


def test_wrong_credentials_and_missing_openfaas_are_explained(tmp_path: Path) -> None:
    cluster, openfaas = doubles(free_port(), cap=None)
    try:
        tb = stack_testbed(cluster, openfaas)
        tb.outputs["openfaasAdminPassword"] = {"value": "wrong", "secret": True}
        with pytest.raises(TestbedError, match="refused the admin credentials"):
            tb.function_host()
        del tb.outputs["openfaasGateway"]
        with pytest.raises(TestbedError, match="runs no OpenFaaS"):
            tb.function_host()
    finally:
        openfaas.close()


def _plain(obj: Any) -> Any:
    """A patch as the object it produces on a fresh Deployment (directives and deletions dropped)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k != "$patch" and v is not None}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


@pytest.mark.parametrize("name", ["base-cloud", "base-edge", "e1"])
def test_rendered_objects_are_valid_for_the_pinned_kubernetes(name: str) -> None:
    version = versions.KUBERNETES_SCHEMA_VERSION
    kubernetes_validate.validate(hpa_object("shasum", "openfaas-fn", 25, 50), version, strict=True)
    kubernetes_validate.validate(entry_service("shasum", "openfaas-fn"), version, strict=True)
    patch = _plain(placement_patch("shasum", scenario(name), "100m"))
    container = {**patch["spec"]["template"]["spec"]["containers"][0], "image": "registry.test/fn:1"}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "shasum", "namespace": "openfaas-fn"},
        "spec": {"replicas": patch["spec"]["replicas"],
                 "selector": {"matchLabels": {"faas_function": "shasum"}},
                 "template": {"metadata": {"labels": {"faas_function": "shasum"}},
                              "spec": {**patch["spec"]["template"]["spec"], "containers": [container]}}},
    }
    kubernetes_validate.validate(deployment, version, strict=True)
    spec = deployment["spec"]["template"]["spec"]
    assert ("tolerations" in spec) == (name != "base-cloud")


def test_a_missing_image_build_is_named_before_anything_is_deployed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGERIG_IMAGES_RECORD", str(tmp_path / "nothing" / "images.json"))
    cluster, openfaas = doubles(free_port(), cap=None)
    try:
        host = stack_testbed(cluster, openfaas).function_host()
        with pytest.raises(TestbedError, match="sudo edgerig images build"):
            host.check(FunctionRequest("shasum", scenario("e1")))
    finally:
        openfaas.close()
    assert not [r for r in openfaas.requests if r[0] != "GET"] and cluster.deployments == {}
