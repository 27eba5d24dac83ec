"""The whole Pulumi program per stack file, under pulumi.runtime.set_mocks."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
import yaml
from pulumi_support import FAKE_KUBECONFIG, Run, decoded_secrets, is_secret_value, run_program, unwrap
from stack_support import (
    AWS_SECRET,
    MQTT_PASSWORD,
    STACK_NAMES,
    TOKEN,
    stack,
    stack_config,
    variant,
    with_cloud_sinks,
)

from infra.model import AGENT_LABEL, EDGE_ROLE_LABEL
from infra.rendering import all_objects
from workloads.vei import launch

DYNAMIC = "pulumi-python:dynamic:Resource"
RELEASE = "kubernetes:helm.sh/v3:Release"
SG_RULE = "openstack:networking/secGroupRule:SecGroupRule"
INSTANCE = "openstack:compute/instance:Instance"

EXPECTED: dict[str, dict[str, int]] = {
    "pi-k3s": {
        DYNAMIC: 5,
        INSTANCE: 0,
        RELEASE: 3,
        "edgerig:platform:OpenFaaS": 0,
        "edgerig:edge:PiNodes": 1,
    },
    "openstack-kubeedge": {
        DYNAMIC: 3,
        INSTANCE: 3,
        RELEASE: 4,
        "openstack:networking/floatingIp:FloatingIp": 3,
        "openstack:networking/secGroup:SecGroup": 1,
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": 4,
        "edgerig:edge:PiNodes": 0,
    },
    "hybrid": {
        DYNAMIC: 5,
        INSTANCE: 3,
        RELEASE: 4,
        "edgerig:edge:PiNodes": 1,
        "edgerig:cloud:OpenStackNodes": 1,
    },
}
_RUNS: dict[str, Run] = {}


def run(name: str) -> Run:
    if name not in _RUNS:  # one program run per stack serves all tests below (keeps the suite fast)
        _RUNS[name] = run_program(stack(name))
    return _RUNS[name]


def test_expected_table_covers_every_stack_file() -> None:
    assert sorted(EXPECTED) == STACK_NAMES


@pytest.mark.parametrize("name", STACK_NAMES)
def test_resource_counts(name: str) -> None:
    r = run(name)
    counts = Counter(x.typ for x in r.mocks.resources)
    for typ, expected in EXPECTED[name].items():
        assert counts[typ] == expected, f"{name}: {typ}"
    for component in ("edgerig:cluster:Bootstrap", "edgerig:platform:Nats", "edgerig:apps:VeiApp"):
        assert counts[component] == 1
    assert counts["pulumi:providers:kubernetes"] == 1


@pytest.mark.parametrize("name", STACK_NAMES)
def test_kubernetes_resources_are_exactly_the_rendered_objects(name: str) -> None:
    """What the schema test validates (infra.rendering) is what the program creates."""
    r = run(name)
    rendered = Counter(f"{o['apiVersion']}/{o['kind']}" for o in all_objects(r.program.testbed))
    created = Counter()
    for res in r.mocks.resources:
        if res.typ.startswith("kubernetes:") and res.typ != RELEASE:
            created[f"{res.inputs['apiVersion']}/{res.inputs['kind']}"] += 1
    assert created == rendered
    by_name = {o["metadata"]["name"]: o for o in all_objects(r.program.testbed) if o["kind"] == "Deployment"}
    for res in r.mocks.of_type("kubernetes:apps/v1:Deployment"):
        assert res.inputs["spec"] == by_name[res.inputs["metadata"]["name"]]["spec"]


@pytest.mark.parametrize("name", STACK_NAMES)
def test_secrets_stay_secret_in_outputs(name: str) -> None:
    r = run(name)
    assert r.secret["kubeconfig"] and r.outputs["kubeconfig"] == FAKE_KUBECONFIG
    for key in ("openfaasAdminPassword", "grafanaPassword"):
        if key in r.outputs:
            assert r.secret[key], key
    assert not r.secret["inventory"]  # the inventory holds no secret and stays readable
    assert TOKEN not in json.dumps(r.outputs, default=str)


@pytest.mark.parametrize("name", STACK_NAMES)
def test_k3s_token_only_reaches_the_host_installs(name: str) -> None:
    r = run(name)
    for res in r.mocks.resources:
        text = json.dumps(res.inputs, default=str)
        if res.typ == DYNAMIC:
            assert TOKEN not in json.dumps(res.inputs["testbed"])  # the model dump is masked
            assert is_secret_value(res.inputs["secrets"])  # the engine keeps it encrypted in state
            assert decoded_secrets(res)["k3sToken"] == TOKEN
        else:
            assert TOKEN not in text, f"{res.typ} {res.name} carries the K3s token"


def test_every_vei_container_runs_grpc_with_the_gateway_endpoints() -> None:
    """The gRPC settings of workloads/vei/launch.py reach every VEI pod (the C core reads them from
    the environment at import, so only the container's env can carry them)."""
    r = run_program(with_cloud_sinks("hybrid"))
    containers = [c for d in r.mocks.of_type("kubernetes:apps/v1:Deployment")
                  for c in d.inputs["spec"]["template"]["spec"]["containers"]
                  if d.inputs["metadata"]["name"].startswith("vei-")]
    assert {c["name"] for c in containers} >= {"gateway", "vision"}
    for container in containers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["GRPC_EXPERIMENTS"] == launch.GRPC_ENV["GRPC_EXPERIMENTS"], container["name"]


@pytest.mark.parametrize("name", ["pi-k3s", "hybrid"])
def test_the_gateway_replicas_share_one_registry(name: str) -> None:
    """A Deployment's gateways can be scaled at any time, so they always ask for the shared (JetStream
    KV) registry instead of the gateway's default, its own memory."""
    testbed = stack(name)
    r = run_program(testbed)
    (gateway,) = [d for d in r.mocks.of_type("kubernetes:apps/v1:Deployment")
                  if d.inputs["metadata"]["name"] == "vei-gateway"]
    (container,) = gateway.inputs["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["VEI_REGISTRY"] == "kv"
    assert env["VEI_KV_REPLICAS"] == str(min(testbed.platform.nats.replicas, 3))


def test_cloud_credentials_only_in_the_kubernetes_secret() -> None:
    r = run_program(with_cloud_sinks("hybrid"))
    holders = [res for res in r.mocks.resources if AWS_SECRET in json.dumps(res.inputs, default=str)]
    kinds = sorted(f"{h.typ}:{h.inputs.get('metadata', {}).get('name')}" for h in holders if h.typ != DYNAMIC)
    assert kinds == ["kubernetes:core/v1:Secret:vei-cloud-credentials"]
    (gateway,) = [
        d
        for d in r.mocks.of_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"] == "vei-gateway"
    ]
    env = {e["name"]: e for e in gateway.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "VEI_MQTT_PASSWORD"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "vei-cloud-credentials"
        assert "value" not in env[key]
    assert MQTT_PASSWORD not in json.dumps(gateway.inputs)
    (secret,) = [
        s
        for s in r.mocks.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "vei-cloud-credentials"
    ]
    data = secret.inputs["stringData"]
    assert is_secret_value(data) or all(is_secret_value(v) for v in data.values())
    assert sorted(unwrap(data)) == ["aws-access-key-id", "aws-secret-access-key", "mqtt-password"]


@pytest.mark.parametrize("name", STACK_NAMES)
def test_generated_passwords_are_secret_inputs(name: str) -> None:
    r = run(name)
    for res in r.mocks.of_type("kubernetes:core/v1:Secret"):
        data = res.inputs["stringData"]
        if is_secret_value(data):
            continue  # the whole map is secret
        for key, value in data.items():
            if "password" in key:
                assert is_secret_value(value), (res.inputs["metadata"]["name"], key)


def _rules(r: Run) -> list[dict[str, Any]]:
    return [x.inputs for x in r.mocks.of_type(SG_RULE)]


@pytest.mark.parametrize("name", ["openstack-kubeedge", "hybrid"])
def test_security_group_rules(name: str) -> None:
    r = run(name)
    tb = r.program.testbed
    rules = _rules(r)
    admin = {str(c) for c in tb.admin_cidrs}
    assert all(x.get("remoteIpPrefix") not in ("0.0.0.0/0", "::/0") for x in rules)
    public_ports = {
        22,
        6443,
        tb.platform.openfaas.gateway_node_port,
        tb.platform.monitoring.grafana_node_port,
        tb.platform.monitoring.prometheus_node_port,
        # operator-side VEI clients reach the gateway and NATS on node ports
        tb.vei.gateway_node_port,
        tb.platform.nats.client_node_port,
    }
    assert tb.vei.clients == "operator"
    opened = {x["portRangeMin"] for x in rules if x.get("remoteIpPrefix") in admin}
    assert {tb.vei.gateway_node_port, tb.platform.nats.client_node_port} <= opened
    static_hosts = {f"{n.address}/32" for n in tb.static_nodes}
    for x in rules:
        prefix = x.get("remoteIpPrefix")
        if prefix is None:
            assert x["remoteGroupId"], x  # intra-cluster: only from the group itself
        elif prefix in admin:
            assert x["portRangeMin"] in public_ports and x["portRangeMin"] == x["portRangeMax"], x
        else:
            assert prefix in static_hosts, x  # a Pi, for exactly its role's ports
    group = {
        (x["protocol"], x.get("portRangeMin"), x.get("portRangeMax")) for x in rules if "remoteGroupId" in x
    }
    flannel = ("udp", 51820, 51820) if tb.k3s.flannel_backend == "wireguard-native" else ("udp", 8472, 8472)
    assert {
        ("tcp", 6443, 6443),
        ("tcp", 10250, 10250),
        flannel,
        ("tcp", 53, 53),
        ("udp", 53, 53),
        ("tcp", 10000, 10004),
        ("tcp", 20006, 20006),  # EdgeMesh's tunnel
        ("tcp", 30000, 32767),
    } <= group
    # KubeEdge v1.20's streams use per-edge tunnel ports DNAT'ed on each node; 10550 is edge-local.
    assert not {p for p in group if p[1] in (10001, 10350, 10550)}
    assert (("tcp", 2379, 2380) in group) == (len(tb.servers) > 1)


def test_kubeedge_ports_follow_the_orchestrator() -> None:
    k3s_only = run_program(variant("hybrid", kubeedge={"enabled": False}))
    ports = {(x["protocol"], x.get("portRangeMin")) for x in _rules(k3s_only)}
    assert ("tcp", 10000) not in ports and ("tcp", 20006) not in ports
    # the Pis now join as K3s agents: they get 6443 and WireGuard from their own /32
    pi_rules = {
        (x["protocol"], x["portRangeMin"])
        for x in _rules(k3s_only)
        if x.get("remoteIpPrefix", "").endswith("/32")
    }
    assert {("tcp", 6443), ("udp", 51820)} <= pi_rules


def _release(r: Run, chart: str) -> dict[str, Any]:
    (found,) = [x.inputs for x in r.mocks.of_type(RELEASE) if x.inputs["chart"] == chart]
    return found


@pytest.mark.parametrize("name", ["openstack-kubeedge", "hybrid"])
def test_kubeedge_placement(name: str) -> None:
    r = run(name)
    tb = r.program.testbed
    cloudcore = tb.cloudcore_node
    assert cloudcore is not None and cloudcore.realm == "cloud" and cloudcore.role == "server"
    assert r.outputs["cloudcoreNode"] == cloudcore.name
    metrics = _release(r, "metrics-server")["values"]
    # Edge "kubelets" answer on their tunnel port (node status), DNAT'ed on every cloud node: no
    # hostNetwork or CloudCore node needed, only the cloud and CloudStream's certificate.
    assert "nodeSelector" not in metrics and "hostNetwork" not in metrics
    assert (
        "--kubelet-insecure-tls" in metrics["args"]
        and "--kubelet-use-node-status-port" in metrics["defaultArgs"]
    )
    assert metrics["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ] == [{"matchExpressions": [{"key": EDGE_ROLE_LABEL, "operator": "DoesNotExist"}]}]
    assert _release(r, "openfaas")["values"]["gateway"]["directFunctions"] is True
    exporter = _release(r, "kube-prometheus-stack")["values"]["prometheus-node-exporter"]
    terms = exporter["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {"matchExpressions": [{"key": AGENT_LABEL, "operator": "NotIn", "values": ["edgecore"]}]}
    ]
    # EdgeCore nodes get no K3s (so no embedded flannel/kube-proxy): their install role is edge
    edge_installs = [x.inputs for x in r.mocks.of_type(DYNAMIC) if x.inputs["role"] == "edge"]
    assert sorted(i["node"] for i in edge_installs) == sorted(n.name for n in tb.edge_nodes) != []
    for node in tb.edge_nodes:
        assert tb.node_labels(node)[AGENT_LABEL] == "edgecore"


def _edge_tolerating(value: Any, path: str = "") -> list[str]:
    """Paths of every toleration list that tolerates the edge taint."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "tolerations" and any(t.get("key") == EDGE_ROLE_LABEL for t in v):
                found.append(f"{path}.{k}")
            found += _edge_tolerating(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _edge_tolerating(v, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("name", STACK_NAMES)
def test_edge_tolerations_only_where_intended(name: str) -> None:
    r = run(name)
    tolerating = set()
    for res in r.mocks.resources:
        if res.typ.startswith("kubernetes:"):
            label = res.inputs.get("chart") or res.inputs.get("metadata", {}).get("name")
            tolerating |= {f"{label}{p}" for p in _edge_tolerating(res.inputs)}
    # The shipped stacks run their VEI clients on the operator's side: no camera or sink Deployment.
    vei = {f"{d}.spec.template.spec.tolerations" for d in ("vei-gateway", "vei-vision-0")}
    exporter = {"kube-prometheus-stack.values.prometheus-node-exporter.tolerations"}
    edgemesh = (
        {"edgemesh-agent.spec.template.spec.tolerations"} if r.program.testbed.edgemesh_enabled else set()
    )
    assert tolerating == vei | exporter | edgemesh
    if "openfaasEdgePlacementPatch" in r.outputs:  # functions opt in via the documented patch
        patch = json.loads(r.outputs["openfaasEdgePlacementPatch"])
        weight = patch["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ][0]["weight"]
        assert weight == r.program.testbed.platform.openfaas.edge_weight == 80


def test_management_stays_in_the_cloud_when_there_is_one() -> None:
    r = run("hybrid")
    faas = _release(r, "openfaas")["values"]["affinity"]
    assert faas["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"
    ] == [{"key": EDGE_ROLE_LABEL, "operator": "DoesNotExist"}]
    nats = _release(r, "nats")["values"]
    assert nats["podTemplate"]["merge"]["spec"]["affinity"] == faas
    assert nats["config"]["cluster"] == {"enabled": True, "replicas": 3}
    # on the all-Pi testbed there is no cloud: NATS may run on any Pi
    assert _release(run("pi-k3s"), "nats")["values"]["podTemplate"]["merge"]["spec"] == {}


@pytest.mark.parametrize("name", STACK_NAMES)
def test_charts_are_pinned_and_gateway_uses_every_nats_server(name: str) -> None:
    r = run(name)
    for rel in r.mocks.of_type(RELEASE):
        assert rel.inputs["version"] and rel.inputs["repositoryOpts"]["repo"].startswith("https://")
        assert rel.inputs["name"] == rel.name  # fixed Helm release names (Service DNS depends on them)
    (gw,) = [
        d
        for d in r.mocks.of_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"] == "vei-gateway"
    ]
    spec = gw.inputs["spec"]
    args = spec["template"]["spec"]["containers"][0]["args"]
    urls = args[args.index("--nats-url") + 1].split(",")
    assert len(urls) == r.program.testbed.platform.nats.replicas == 3
    assert spec["replicas"] == r.program.testbed.vei.gateway_replicas


def test_first_server_install_yields_the_kubeconfig() -> None:
    r = run("hybrid")
    wants = {x.inputs["node"]: x.inputs["wants_kubeconfig"] for x in r.mocks.of_type(DYNAMIC)}
    assert wants == {"cloud0": True, "cloud1": False, "cloud2": False, "pi-edge0": False, "pi-edge1": False}
    addresses = {x.inputs["node"]: x.inputs["address"] for x in r.mocks.of_type(DYNAMIC)}
    assert addresses["pi-edge0"] == "198.51.100.20" and addresses["cloud0"].startswith("203.0.113.")


COMPONENT_CHILDREN = {
    "cluster": ("pulumi-python:dynamic:Resource",),
    "cloud": ("openstack:",),
    "vei": ("kubernetes:apps/v1:Deployment",),
}


@pytest.mark.parametrize("name", ["hybrid", "openstack-kubeedge"])
def test_children_are_parented_to_their_component(name: str) -> None:
    r = run(name)
    for res in r.mocks.resources:
        if res.typ.startswith("edgerig:") or res.typ.startswith("pulumi:providers:"):
            continue
        parent = r.mocks.parent_name(res.name)
        assert parent is not None and parent != name, f"{res.typ} {res.name} has no component parent"
        for component, prefixes in COMPONENT_CHILDREN.items():
            if res.typ.startswith(prefixes) and not res.name.startswith("openstack-provider"):
                assert parent == component or r.mocks.parent_name(parent) == component, (res.name, parent)
        if res.typ == "kubernetes:core/v1:Service":  # vei-* belong to the app, nats-* to NATS
            assert parent == res.name.split("-", 1)[0], (res.name, parent)


def test_dependencies_order_the_cluster_and_the_platform() -> None:
    r = run("hybrid")
    m = r.mocks
    assert m.depends_on("cluster-cloud1", "cluster-cloud0")
    assert m.depends_on("cluster-cloud2", "cluster-cloud1")
    assert m.depends_on("cluster-pi-edge0", "cluster-cloud2") and not m.depends_on(
        "cluster-pi-edge0", "cluster-pi-edge1"
    )
    assert m.depends_on("cluster-cloud0", "cloud")  # hosts are configured after their VMs exist
    assert m.depends_on("k8s", "cluster")  # the platform waits for the whole cluster
    assert m.depends_on("nats-ns", "monitoring")  # the NATS PodMonitor needs the operator's CRDs


def test_edge_role_labels_are_patched_through_the_api() -> None:
    r = run_program(variant("hybrid", kubeedge={"enabled": False}))
    patched = {
        p.inputs["metadata"]["name"]: p.inputs["metadata"]["labels"]
        for p in r.mocks.of_type("kubernetes:core/v1:NodePatch")
    }
    assert set(patched) == {"pi-edge0", "pi-edge1"}  # the cloud servers need no restricted label
    assert patched["pi-edge0"] == {EDGE_ROLE_LABEL: ""}
    assert r.mocks.depends_on("nats-ns", "node-labels")


def _vei_affinity(r: Run, name: str) -> dict[str, Any]:
    (dep,) = [
        d for d in r.mocks.of_type("kubernetes:apps/v1:Deployment") if d.inputs["metadata"]["name"] == name
    ]
    return dict(dep.inputs["spec"]["template"]["spec"]["affinity"]["nodeAffinity"])


NOT_ON_EDGECORE = [{"key": AGENT_LABEL, "operator": "NotIn", "values": ["edgecore"]}]


def _required(affinity: dict[str, Any]) -> Any:
    return affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"
    ]


def test_vision_replicas_may_run_on_edgecore_nodes_with_edgemesh() -> None:
    r = run("hybrid")
    # The gateway needs every NATS server by name (headless): EdgeMesh carries ClusterIP Services only.
    gateway = _vei_affinity(r, "vei-gateway")
    assert _required(gateway) == NOT_ON_EDGECORE
    assert gateway["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 80
    vision = _vei_affinity(r, "vei-vision-0")
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in vision  # EdgeCore nodes allowed
    (dep,) = [
        d
        for d in r.mocks.of_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"] == "vei-vision-0"
    ]
    args = dep.inputs["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "dns:///vei-gateway.vei.svc.cluster.local:50051" in args  # the ClusterIP Service, not pod IPs
    no_mesh = run_program(
        variant(
            "hybrid",
            kubeedge={"enabled": True, "edgemesh": {"enabled": False}},
            platform={"nats": {"jetstream": True}, "openfaas": {"enabled": True, "edgeWeight": 0}},
        )
    )
    assert _required(_vei_affinity(no_mesh, "vei-vision-0")) == NOT_ON_EDGECORE
    assert (
        no_mesh.count("edgerig:platform:EdgeMesh") == 0
        and "openfaasEdgePlacementPatch" not in no_mesh.outputs
    )
    k3s_agents = _vei_affinity(run_program(variant("hybrid", kubeedge={"enabled": False})), "vei-gateway")
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in k3s_agents  # edge Pis are K3s agents


def test_edgemesh_is_deployed_with_edgecore_nodes_only() -> None:
    r = run("hybrid")
    assert r.count("edgerig:platform:EdgeMesh") == 1
    (ds,) = [
        d
        for d in r.mocks.of_type("kubernetes:apps/v1:DaemonSet")
        if d.inputs["metadata"]["name"] == "edgemesh-agent"
    ]
    spec = ds.inputs["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and "affinity" not in spec  # every node, EdgeCore nodes included
    assert re.fullmatch(
        r"docker\.io/kubeedge/edgemesh-agent:v1\.17\.0@sha256:[0-9a-f]{64}", spec["containers"][0]["image"]
    )
    (psk,) = [
        s
        for s in r.mocks.of_type("kubernetes:core/v1:Secret")
        if s.inputs["metadata"]["name"] == "edgemesh-agent-psk"
    ]
    assert is_secret_value(psk.inputs["stringData"]) or is_secret_value(psk.inputs["stringData"]["psk"])
    (config,) = [
        c
        for c in r.mocks.of_type("kubernetes:core/v1:ConfigMap")
        if c.inputs["metadata"]["name"] == "edgemesh-agent-cfg"
    ]
    agent = yaml.safe_load(unwrap(config.inputs["data"])["edgemesh-agent.yaml"])
    relays = agent["modules"]["edgeTunnel"]["relayNodes"]
    assert [n["nodeName"] for n in relays] == ["cloud0", "cloud1", "cloud2"]
    assert all(n["advertiseAddress"][0].startswith("203.0.113.") for n in relays)  # the floating IPs
    (patch,) = r.mocks.of_type("kubernetes:core/v1:ServicePatch")
    assert patch.inputs["metadata"]["labels"] == {"service.edgemesh.kubeedge.io/service-proxy-name": ""}
    assert r.mocks.depends_on("vei-ns", "edgemesh")  # VEI clients on edges need it first
    for name in ("pi-k3s",):
        assert run(name).count("edgerig:platform:EdgeMesh") == 0
    assert run_program(variant("hybrid", kubeedge={"enabled": False})).count("edgerig:platform:EdgeMesh") == 0


def test_unpinned_artefacts_fail_before_any_resource(pinned_artefacts: dict[str, Any]) -> None:
    key = "kubeedge/kubeedge/v1.20.0/keadm-v1.20.0-linux-arm64.tar.gz"
    del pinned_artefacts[key]
    with pytest.raises(Exception, match=rf"{re.escape(key)}: add its sha512 from checksum_keadm"):
        run_program(stack("hybrid"))


def test_clouds_yaml_entry_and_no_floating_ips() -> None:
    config = stack_config("openstack-kubeedge")["edgerig:openstack"]
    r = run_program(variant("openstack-kubeedge", openstack={**config, "cloud": "lrz", "floatingIps": False}))
    assert r.count("pulumi:providers:openstack") == 1
    (provider,) = r.mocks.of_type("pulumi:providers:openstack")
    assert provider.inputs["cloud"] == "lrz"
    assert r.count("openstack:networking/floatingIp:FloatingIp") == 0
    addresses = {x.inputs["node"]: x.inputs["address"] for x in r.mocks.of_type(DYNAMIC)}
    assert all(a.startswith("192.168.50.") for a in addresses.values())  # the fixed IPs


def test_operator_clients_publish_gateway_and_nats_on_node_ports() -> None:
    r = run("pi-k3s")
    tb = r.program.testbed
    services = {
        res.inputs["metadata"]["name"]: res.inputs for res in r.mocks.of_type("kubernetes:core/v1:Service")
    }
    gw, nats = services["vei-gateway-external"], services["nats-external"]
    assert gw["spec"]["type"] == nats["spec"]["type"] == "NodePort"
    assert gw["spec"]["ports"][0]["nodePort"] == tb.vei.gateway_node_port
    assert nats["spec"]["ports"][0]["nodePort"] == tb.platform.nats.client_node_port
    addresses = [str(n.address) for n in tb.nodes]
    assert r.outputs["veiClients"] == "operator"
    assert r.outputs["veiGatewayEndpoints"] == [f"{a}:{tb.vei.gateway_node_port}" for a in addresses]
    assert r.outputs["natsUrls"] == [f"nats://{a}:{tb.platform.nats.client_node_port}" for a in addresses]
    assert (
        r.outputs["prometheusUrl"] == f"http://{addresses[0]}:{tb.platform.monitoring.prometheus_node_port}"
    )
    deployments = {res.inputs["metadata"]["name"] for res in r.mocks.of_type("kubernetes:apps/v1:Deployment")}
    assert "vei-camera-0" not in deployments and "vei-sink" not in deployments


def test_cluster_clients_run_camera_and_sink_in_the_cluster() -> None:
    r = run_program(variant("pi-k3s", vei={"clients": "cluster"}))
    deployments = {res.inputs["metadata"]["name"] for res in r.mocks.of_type("kubernetes:apps/v1:Deployment")}
    assert {"vei-camera-0", "vei-sink"} <= deployments
    services = {res.inputs["metadata"]["name"] for res in r.mocks.of_type("kubernetes:core/v1:Service")}
    assert "vei-gateway-external" not in services and "nats-external" not in services
    assert r.outputs["veiClients"] == "cluster" and "veiGatewayEndpoints" not in r.outputs


@pytest.mark.parametrize("name", ["hybrid", "openstack-kubeedge"])
def test_vms_get_generated_host_keys_and_the_installs_know_them(name: str, tmp_path: Any) -> None:
    """Each VM's cloud-init carries the program's Ed25519 host key (user data secret, the image's keys
    deleted); its public half is in every host install's known_hosts and in the knownHosts output."""
    import subprocess

    r = run(name)
    lines = str(r.outputs["knownHosts"]).splitlines()
    assert not r.secret["knownHosts"] and len(lines) == len(stack(name).openstack_nodes)
    installs = r.mocks.of_type(DYNAMIC)
    assert {str(x.inputs["known_hosts"]) for x in installs} == {str(r.outputs["knownHosts"])}
    for vm in r.mocks.of_type(INSTANCE):
        assert is_secret_value(vm.inputs["userData"])
        cloud_config = yaml.safe_load(unwrap(vm.inputs["userData"]))
        assert cloud_config["ssh_deletekeys"] is True and cloud_config["ssh_genkeytypes"] == []
        keys = cloud_config["ssh_keys"]
        private = tmp_path / f"{vm.name}.key"
        private.write_text(keys["ed25519_private"])
        private.chmod(0o600)
        derived = subprocess.run(["ssh-keygen", "-y", "-f", str(private)], capture_output=True, text=True,
                                 check=True).stdout.split()[:2]  # the real tool reads the key we wrote
        assert derived == keys["ed25519_public"].split()[:2]
        line = next(x for x in lines if x.endswith(" ".join(derived)))
        assert line.split()[0].count(",") == 1  # floating and fixed address
    # The same seed gives byte-identical user data: a second program run never replaces a VM.
    again = {v.name: unwrap(v.inputs["userData"]) for v in run_program(stack(name)).mocks.of_type(INSTANCE)}
    assert again == {v.name: unwrap(v.inputs["userData"]) for v in r.mocks.of_type(INSTANCE)}


def test_static_hosts_need_known_host_keys_before_any_resource() -> None:
    config = stack_config("pi-k3s")
    config.pop("edgerig:ssh")
    from infra.hosts.errors import HostStepError
    from infra.model import load_testbed

    with pytest.raises(HostStepError, match=r"no known_hosts file.*acceptNewHostKeys"):
        run_program(load_testbed({**config, "edgerig:k3sToken": TOKEN}, name="pi-k3s"))
    lab = load_testbed({**config, "edgerig:k3sToken": TOKEN, "edgerig:ssh": {"acceptNewHostKeys": True}},
                       name="pi-k3s")
    assert "knownHosts" not in run_program(lab).outputs  # no VMs: nothing generated
