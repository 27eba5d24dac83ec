"""Who may talk to whom in the cluster, what every pod may do, and where the cluster's secrets go.

The NetworkPolicies are evaluated here as NetworkPolicy v1 defines them (a pod selected by a policy of
a direction accepts only what one of those policies allows; a connection needs the source's egress
and the destination's ingress), over the objects the program renders for each stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from pulumi_support import is_secret_value, run_program, unwrap
from stack_support import STACK_NAMES, stack, variant, with_cloud_sinks

from infra.apps import manifests
from infra.model import Testbed
from infra.platform import nats_users
from infra.platform.objects import NATS_SERVER_LABELS
from infra.rendering import all_objects

NAME = "app.kubernetes.io/name"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.42.1.9"  # a pod address (K3s's default cluster CIDR)


OUTSIDE = Pod("", ip="198.51.100.7")  # the operator's machine, a broker on the internet, a node address


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if not {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
                "Exists": key in labels, "DoesNotExist": key not in labels}[op]:
            return False
    return True


def _peer(peer: dict[str, Any], policy_ns: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = IPv4Address(pod.ip)
        return address in IPv4Network(block["cidr"]) and not any(
            address in IPv4Network(c) for c in block.get("except", []))
    if not pod.namespace:
        return False  # pod and namespace selectors match pods only
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": pod.namespace}):
            return False
    elif pod.namespace != policy_ns:
        return False
    return _matches(peer.get("podSelector", {}), pod.labels)


def _allowed(policies: list[dict[str, Any]], pod: Pod, direction: str, peer: Pod, port: int) -> bool:
    directions = {"in": ("Ingress", "ingress", "from"), "out": ("Egress", "egress", "to")}
    kind, rules_key, peers_key = directions[direction]
    selecting = [p for p in policies if p["metadata"]["namespace"] == pod.namespace
                 and kind in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], pod.labels)]
    if not pod.namespace or not selecting:
        return True  # outside the cluster, or not isolated in this direction
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port for p in ports):
                continue
            peers = rule.get(peers_key)
            if not peers or any(_peer(x, policy["metadata"]["namespace"], peer) for x in peers):
                return True
    return False


def connects(objs: list[dict[str, Any]], src: Pod, dst: Pod, port: int) -> bool:
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    return _allowed(policies, src, "out", dst, port) and _allowed(policies, dst, "in", src, port)


def pods(tb: Testbed) -> dict[str, Pod]:
    vei, p = tb.vei.namespace, tb.platform
    return {
        "gateway": Pod(vei, {NAME: manifests.GATEWAY}), "sink": Pod(vei, {NAME: manifests.SINK}),
        "vision": Pod(vei, {NAME: "vei-vision-0"}), "camera": Pod(vei, {NAME: "vei-camera-0"}),
        "nats": Pod(p.nats.namespace, dict(NATS_SERVER_LABELS)),
        "function": Pod(p.openfaas.functions_namespace, {"faas_function": "nodeinfo"}),
        "openfaas-gateway": Pod(p.openfaas.namespace, {"app": "gateway"}),
        "prometheus": Pod(p.monitoring.namespace, {NAME: "prometheus"}),
        "grafana": Pod(p.monitoring.namespace, {NAME: "grafana"}),
        "kube-state-metrics": Pod(p.monitoring.namespace, {NAME: "kube-state-metrics"}),
        "dns": Pod("kube-system", {"k8s-app": "kube-dns"}),
        "outside": OUTSIDE,
    }


# Cameras, vision apps and the sink in the cluster, OpenFaaS and monitoring on, K3s agents at the edge.
CLUSTER_CLIENTS = variant("hybrid", kubeedge={"enabled": False}, vei={"clients": "cluster"})


def test_in_cluster_only_the_vei_processes_reach_nats_and_the_gateway() -> None:
    tb = CLUSTER_CLIENTS
    objs, p = all_objects(tb), pods(tb)
    grpc, metrics = tb.vei.grpc_port, tb.vei.metrics_port
    allowed = [("gateway", "nats", 4222), ("sink", "nats", 4222), ("camera", "gateway", grpc),
               ("vision", "gateway", grpc), ("nats", "nats", 6222), ("prometheus", "gateway", metrics),
               ("prometheus", "nats", 7777), ("gateway", "dns", 53), ("camera", "dns", 53),
               ("outside", "grafana", 3000), ("outside", "openfaas-gateway", 8080),
               ("openfaas-gateway", "function", 8080)]
    denied = [("function", "nats", 4222), ("function", "gateway", grpc), ("function", "sink", 4222),
              ("camera", "nats", 4222), ("vision", "nats", 4222), ("outside", "nats", 4222),
              ("outside", "gateway", grpc), ("camera", "camera", grpc), ("gateway", "outside", 443),
              ("sink", "outside", 443), ("function", "nats", 6222), ("outside", "function", 8080),
              ("camera", "gateway", metrics), ("function", "kube-state-metrics", 8080)]
    assert [c for c in allowed if not connects(objs, p[c[0]], p[c[1]], c[2])] == []
    assert [c for c in denied if connects(objs, p[c[0]], p[c[1]], c[2])] == []


@pytest.mark.parametrize("name", STACK_NAMES)
def test_every_namespace_denies_by_default(name: str) -> None:
    tb = stack(name)
    objs = all_objects(tb)
    namespaces = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    denying = {o["metadata"]["namespace"]: o["spec"]["policyTypes"] for o in objs
               if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny"}
    assert all(denying[o["metadata"]["namespace"]] == ["Ingress"] or o["spec"]["podSelector"] == {}
               for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny")
    # EdgeMesh's agent is on the host network, where NetworkPolicies do not apply.
    assert namespaces - {"edgemesh"} <= set(denying), namespaces - set(denying)
    assert denying[tb.platform.nats.namespace] == denying[tb.vei.namespace] == ["Ingress", "Egress"]


def test_with_edgemesh_the_clients_may_reach_its_node_local_proxy() -> None:
    mesh = variant("hybrid", vei={"clients": "cluster"})  # EdgeCore nodes, so EdgeMesh
    objs, p = all_objects(mesh), pods(mesh)
    node_local = Pod("", ip="192.168.50.10")  # edgemesh-agent on the host network
    assert mesh.edgemesh_enabled and connects(objs, p["camera"], node_local, 40001)
    assert connects(objs, OUTSIDE, p["gateway"], mesh.vei.grpc_port)  # the proxy calls from a node address
    assert not connects(objs, p["camera"], p["nats"], 4222)  # NATS still takes only its two processes
    assert not connects(objs, p["function"], p["nats"], 4222)


def test_operator_clients_and_cloud_sinks_open_only_what_they_need() -> None:
    operator = stack("pi-k3s")  # the shipped stacks run cameras and the sink on the operator's machine
    objs, p = all_objects(operator), pods(operator)
    assert connects(objs, OUTSIDE, p["nats"], 4222)
    assert connects(objs, OUTSIDE, p["gateway"], operator.vei.grpc_port)
    assert not connects(objs, p["gateway"], OUTSIDE, 8883)  # local sink only: nothing leaves the cluster
    sinks = with_cloud_sinks("hybrid")
    objs, p = all_objects(sinks), pods(sinks)
    assert connects(objs, p["gateway"], OUTSIDE, 8883)  # the MQTT broker and AWS IoT are outside
    assert not connects(objs, p["gateway"], p["function"], 8080)  # but not into the pod network
    assert not connects(objs, p["sink"], OUTSIDE, 443)


def _pod_specs(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
            for o in objs if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job")}


# Needs the host's network stack (iptables, a dummy interface, DNS on the node): EdgeMesh's upstream
# manifests run it privileged; see docs/security.md.
PRIVILEGED = {"DaemonSet/edgemesh-agent"}


@pytest.mark.parametrize("testbed",
                         [*(stack(n) for n in STACK_NAMES), CLUSTER_CLIENTS, with_cloud_sinks("hybrid")],
                         ids=[*STACK_NAMES, "cluster-clients", "hybrid-with-sinks"])
def test_every_pod_runs_unprivileged(testbed: Testbed) -> None:
    specs = _pod_specs(all_objects(testbed))
    assert specs and set(specs) - PRIVILEGED
    for name, spec in specs.items():
        if name in PRIVILEGED:
            continue
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["capabilities"] == {"drop": ["ALL"]} and "privileged" not in ctx, name
            writable = {m["mountPath"] for m in container.get("volumeMounts", []) if not m.get("readOnly")}
            assert writable <= {"/data"}, name  # the sink's records, on an emptyDir


def _secret_inputs(run: Any) -> tuple[dict[str, Any], str]:
    """The vei-auth Secret's stringData as registered, and everything else registered, as text."""
    (auth,) = [r for r in run.mocks.of_type("kubernetes:core/v1:Secret")
               if r.inputs["metadata"]["name"] == manifests.AUTH_SECRET]
    rest = [r.inputs for r in run.mocks.resources if r is not auth and not r.typ.startswith("random:")]
    assert is_secret_value(auth.inputs["stringData"])  # the engine keeps it encrypted in the state
    return dict(unwrap(auth.inputs["stringData"])), json.dumps(rest, default=str)


@pytest.mark.parametrize("name", ["pi-k3s", "hybrid"])
def test_nats_seeds_and_the_gateway_token_are_secrets_mounted_as_files(name: str) -> None:
    tb = variant(name, vei={"clients": "cluster", "gatewayAuth": "token"})
    run = run_program(tb)
    data, rest = _secret_inputs(run)
    assert set(data) == {"gateway.nk", "sink.nk", manifests.GRPC_TOKEN_KEY}
    for value in data.values():
        assert value not in rest  # in no manifest, Helm value or host input: only in the Secret
    keys = [u["nkey"] for u in json.loads(json.dumps(
        next(r.inputs["values"] for r in run.mocks.of_type("kubernetes:helm.sh/v3:Release")
             if r.inputs["chart"] == "nats")))["config"]["merge"]["authorization"]["users"]]
    assert sorted(keys) == sorted(nats_users.public_key(data[f"{u}.nk"]) for u in ("gateway", "sink"))
    deployments = {d.inputs["metadata"]["name"]: d.inputs["spec"]["template"]["spec"]
                   for d in run.mocks.of_type("kubernetes:apps/v1:Deployment")}
    expected = {manifests.GATEWAY: {"VEI_NATS_NKEY_SEED_FILE", "VEI_GRPC_TOKEN_FILE"},
                manifests.SINK: {"VEI_NATS_NKEY_SEED_FILE"},
                "vei-camera-0": {"VEI_GRPC_TOKEN_FILE"}, "vei-vision-0": {"VEI_GRPC_TOKEN_FILE"}}
    for dep, variables in expected.items():
        (container,) = deployments[dep]["containers"]
        files = {e["name"]: e["value"] for e in container["env"] if e["name"].endswith("_FILE")}
        assert set(files) == variables, dep
        (volume,) = [v for v in deployments[dep]["volumes"] if v["name"] == "auth"]
        assert {f"{manifests.AUTH_DIR}/{i['path']}" for i in volume["secret"]["items"]} == set(files.values())
    (gateway,) = deployments[manifests.GATEWAY]["containers"]
    assert {"name": "VEI_GRPC_REFLECTION", "value": "false"} in gateway["env"]  # nobody explores the API
    assert run.secret["veiGatewayToken"] and "natsOperatorNkeySeed" not in run.outputs


def test_without_a_token_nothing_carries_one_and_operator_clients_get_their_seed() -> None:
    run = run_program(stack("pi-k3s"))  # operator-side clients, gatewayAuth none
    data, _ = _secret_inputs(run)
    assert set(data) == {"gateway.nk", "sink.nk"} and "veiGatewayToken" not in run.outputs
    assert run.secret["natsOperatorNkeySeed"] and run.outputs["natsOperatorNkeySeed"].startswith("SU")
    (nats,) = [r for r in run.mocks.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == "nats"]
    users = {u["nkey"] for u in nats.inputs["values"]["config"]["merge"]["authorization"]["users"]}
    assert nats_users.public_key(run.outputs["natsOperatorNkeySeed"]) in users and len(users) == 3
    for dep in run.mocks.of_type("kubernetes:apps/v1:Deployment"):
        env = dep.inputs["spec"]["template"]["spec"]["containers"][0]["env"]
        assert "VEI_GRPC_TOKEN_FILE" not in {e["name"] for e in env}


def test_gateway_auth_rejects_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"gateway_?[aA]uth"):
        variant("pi-k3s", vei={"gatewayAuth": "mtls"})
