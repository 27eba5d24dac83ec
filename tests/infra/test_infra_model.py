"""Stack-config validation: every bad input fails before any resource, naming the key and the fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import versions
from infra.model import EDGE_ROLE_LABEL, Testbed, is_restricted_label, load_testbed
from infra.stackfile import StackConfigError

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))
TOKEN = "test-token-not-a-real-secret-0001"


def _static(name: str, role: str, address: str, realm: str = "edge") -> dict[str, Any]:
    return {"name": name, "realm": realm, "role": role, "provider": "static", "address": address}


def _vm(name: str, role: str, realm: str = "cloud") -> dict[str, Any]:
    return {"name": name, "realm": realm, "role": role, "provider": "openstack", "flavor": "m1", "image": "u"}


OPENSTACK = {"externalNetwork": "public", "publicKey": "ssh-ed25519 AAAAC3Nza test@example"}


def base() -> dict[str, Any]:
    return {
        "edgerig:k3sToken": TOKEN,
        "edgerig:platform": {"nats": {"jetstream": True}},
        "edgerig:adminCidrs": ["203.0.113.0/24"],
        "edgerig:nodes": [
            _static("master0", "server", "10.0.0.1"),
            _static("master1", "server", "10.0.0.2"),
            _static("master2", "server", "10.0.0.3"),
            _static("worker0", "agent", "10.0.0.4"),
        ],
    }


def kubeedge_base() -> dict[str, Any]:
    cfg = base()
    cfg["edgerig:openstack"] = dict(OPENSTACK)
    cfg["edgerig:kubeedge"] = {"enabled": True}
    cfg["edgerig:nodes"] = [
        _vm("cloud0", "server"),
        _vm("cloud1", "agent"),
        _static("pi0", "edge", "10.0.1.9"),
    ]
    return cfg


def fails(cfg: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(StackConfigError) as info:
        load_testbed(cfg, name="t")
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_valid_config_derives_roles_labels_and_taints() -> None:
    tb = load_testbed(base(), name="lab")
    assert [n.name for n in tb.servers] == ["master0", "master1", "master2"]
    assert tb.first_server.name == "master0"
    assert [n.name for n in tb.agents] == ["worker0"]
    assert tb.api_endpoints == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    worker = tb.node("worker0")
    assert tb.node_labels(worker)[EDGE_ROLE_LABEL] == ""
    assert [t.render() for t in tb.node_taints(worker)] == [f"{EDGE_ROLE_LABEL}:NoSchedule"]
    assert tb.node_taints(tb.first_server) == []  # servers carry workloads on an all-Pi testbed
    # the edge role label is one the kubelet may not self-set: it must go through the API
    assert EDGE_ROLE_LABEL in tb.api_labels(worker)
    assert EDGE_ROLE_LABEL not in tb.kubelet_labels(worker)
    assert "topology.kubernetes.io/zone" in tb.kubelet_labels(worker)


def test_restricted_labels() -> None:
    assert is_restricted_label("node-role.kubernetes.io/edge")
    assert not is_restricted_label("topology.kubernetes.io/zone")
    assert not is_restricted_label("node.kubernetes.io/instance-type")
    assert not is_restricted_label("edgerig.io/realm")


def test_even_number_of_servers() -> None:
    cfg = base()
    cfg["edgerig:nodes"][3]["role"] = "server"
    fails(cfg, "4 servers", "odd number", "edgerig:nodes")


def test_no_server() -> None:
    cfg = base()
    cfg["edgerig:nodes"] = [_static("w0", "agent", "10.0.0.9")]
    fails(cfg, "no node with role: server")


def test_duplicate_hostnames() -> None:
    cfg = base()
    cfg["edgerig:nodes"][3]["name"] = "master0"
    fails(cfg, "duplicate hostnames ['master0']")


def test_duplicate_addresses() -> None:
    cfg = base()
    cfg["edgerig:nodes"][3]["address"] = "10.0.0.1"
    fails(cfg, "duplicate addresses ['10.0.0.1']")


def test_invalid_hostname_names_the_key() -> None:
    cfg = base()
    cfg["edgerig:nodes"][1]["name"] = "Master_1"
    fails(cfg, "edgerig:nodes[1].name", "not a valid hostname")


def test_static_node_without_address() -> None:
    cfg = base()
    del cfg["edgerig:nodes"][2]["address"]
    fails(cfg, "edgerig:nodes[2]", "has no address", "set `address:")


def test_openstack_node_with_address_or_without_flavor() -> None:
    cfg = kubeedge_base()
    cfg["edgerig:nodes"][0]["address"] = "10.9.9.9"
    fails(cfg, "OpenStack assigns its address")
    cfg = kubeedge_base()
    del cfg["edgerig:nodes"][1]["flavor"]
    fails(cfg, "edgerig:nodes[1]", "has no flavor")


def test_openstack_nodes_need_openstack_settings_and_admin_cidrs() -> None:
    cfg = kubeedge_base()
    del cfg["edgerig:openstack"]
    fails(cfg, "edgerig:openstack is not set")
    cfg = kubeedge_base()
    cfg["edgerig:adminCidrs"] = []
    fails(cfg, "edgerig:adminCidrs")


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-a-cidr", "10.0.0.1/24", "10.0.0.5"])
def test_admin_cidr_that_is_not_a_cidr(bad: str) -> None:
    cfg = base()
    cfg["edgerig:adminCidrs"] = ["198.51.100.0/24", bad]
    fails(cfg, "edgerig:adminCidrs", "adminCidrs[1]", bad)


def test_missing_k3s_token() -> None:
    cfg = base()
    del cfg["edgerig:k3sToken"]
    fails(cfg, "edgerig:k3sToken is missing", "pulumi config set --secret edgerig:k3sToken")


def test_weak_k3s_token() -> None:
    cfg = base()
    cfg["edgerig:k3sToken"] = "short"
    fails(cfg, "shorter than 16")


def test_aws_sink_without_credentials() -> None:
    cfg = base()
    cfg["edgerig:vei"] = {"clouds": [{"name": "aws", "kind": "aws", "awsRegion": "eu-central-1"}]}
    fails(cfg, "AWS credentials are missing", "edgerig:awsSecretAccessKey")
    cfg["edgerig:awsAccessKeyId"] = "AKIDEXAMPLE"
    cfg["edgerig:awsSecretAccessKey"] = "example-secret"
    tb = load_testbed(cfg, name="t")
    assert tb.vei.aws_secret_access_key is not None
    assert "example-secret" not in repr(tb) and "example-secret" not in str(tb.public_dump())


def test_kubeedge_without_cloud_server() -> None:
    cfg = base()
    cfg["edgerig:kubeedge"] = {"enabled": True}
    cfg["edgerig:nodes"][3]["role"] = "edge"  # all servers are realm edge Pis
    fails(cfg, "CloudCore on a cloud server", "edgerig:kubeedge.enabled false")


def test_kubeedge_version_must_support_k3s_minor() -> None:
    cfg = kubeedge_base()
    cfg["edgerig:kubeedge"]["version"] = "v1.16.0"
    msg = fails(cfg, "edgerig:kubeedge.version v1.16.0 does not support Kubernetes 1.30")
    assert "v1.20" in msg  # tells which release fits
    cfg["edgerig:k3s"] = {"version": "v1.27.16+k3s1"}
    assert load_testbed(cfg, name="t").kubeedge.version == "v1.16.0"


def test_pinned_kubeedge_supports_pinned_k3s() -> None:
    minor = versions.kubeedge_minor(versions.KUBEEDGE_VERSION)
    assert versions.kubernetes_minor(versions.K3S_VERSION) in versions.KUBEEDGE_KUBERNETES_COMPAT[minor]
    assert versions.KUBERNETES_SCHEMA_VERSION.startswith(
        versions.kubernetes_minor(versions.K3S_VERSION) + "."
    )


def test_cloudcore_defaults_to_first_cloud_server_and_override_is_checked() -> None:
    tb = load_testbed(kubeedge_base(), name="t")
    assert tb.cloudcore_node is not None and tb.cloudcore_node.name == "cloud0"
    assert [n.name for n in tb.edge_nodes] == ["pi0"]
    cfg = kubeedge_base()
    cfg["edgerig:kubeedge"]["cloudcoreNode"] = "cloud1"
    fails(cfg, "cloudcoreNode 'cloud1' is not a cloud server")


def test_kubeedge_off_turns_edge_nodes_into_agents() -> None:
    cfg = kubeedge_base()
    cfg["edgerig:kubeedge"]["enabled"] = False
    # The Pi now joins the VMs as a K3s agent, through their floating IPs, over public networks:
    # flannel defaults to WireGuard there, and an explicit unencrypted backend is refused.
    tb = load_testbed(cfg, name="t")
    assert tb.k3s.flannel_backend is None and tb.flannel_backend == "wireguard-native"
    cfg["edgerig:k3s"] = {"flannelBackend": "vxlan"}
    fails(
        cfg, "K3s nodes ['pi0'] join VMs behind floating IPs", "edgerig:k3s.flannelBackend: wireguard-native"
    )
    assert load_testbed(kubeedge_base(), name="t").flannel_backend == "vxlan"  # one network: VXLAN
    assert tb.edge_nodes == [] and [n.name for n in tb.agents] == ["cloud1", "pi0"]
    assert tb.cloudcore_node is None and not tb.edgemesh_enabled


def test_edge_functions_need_edgemesh() -> None:
    cfg = kubeedge_base()
    cfg["edgerig:kubeedge"]["edgemesh"] = {"enabled": False}
    fails(
        cfg,
        "edgerig:platform.openfaas.edgeWeight 80 asks for functions on the edge",
        "edgerig:kubeedge.edgemesh.enabled turns off",
        "set platform.openfaas.edgeWeight 0",
    )
    cfg["edgerig:platform"] = {"nats": {"jetstream": True}, "openfaas": {"edgeWeight": 0}}
    assert not load_testbed(cfg, name="t").edgemesh_enabled
    assert load_testbed(kubeedge_base(), name="t").edgemesh_enabled  # on by default with EdgeCore nodes


def test_air_gapped_stacks_name_every_missing_mirror() -> None:
    cfg = kubeedge_base()
    cfg["edgerig:artefacts"] = {"airGapped": True, "registryMirrors": {"docker.io": "http://r.lab:5000"}}
    fails(
        cfg,
        "pulls images from ['ghcr.io', 'quay.io', 'registry.k8s.io']",
        "edgerig:artefacts.registryMirrors",
    )
    mirrors = {r: "http://r.lab:5000" for r in ("docker.io", "ghcr.io", "quay.io", "registry.k8s.io")}
    cfg["edgerig:artefacts"] = {"airGapped": True, "registryMirrors": mirrors}
    fails(cfg, "set edgerig:artefacts.chartRepository")
    cfg["edgerig:artefacts"]["chartRepository"] = "http://charts.lab/"
    assert load_testbed(cfg, name="t").artefacts.chart_repository == "http://charts.lab"


FEATURES = ("openfaas", "monitoring", "metricsServer")


def _chart_images() -> list[tuple[str, str]]:
    """(image, 'always' or the feature key) from the chart-image table of docs/hosts.md."""
    rows = []
    for line in (ROOT / "docs/hosts.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and "/" in cells[0] and ":" in cells[0]:
            when = cells[2].strip("`").removeprefix("platform.").removesuffix(".enabled")
            rows.append((cells[0].strip("`"), when))
    return rows


@pytest.mark.parametrize("feature", ["always", *FEATURES])
def test_air_gap_covers_every_registry_the_charts_pull_from(feature: str) -> None:
    """Every registry of an image the pinned charts deploy (docs/hosts.md) needs a mirror when the
    stack is air-gapped, exactly when the image is deployed."""
    images = [image for image, when in _chart_images() if when == feature]
    assert images, f"docs/hosts.md lists no chart image deployed {feature!r}"
    cfg = base()
    cfg["edgerig:vei"] = {"enabled": False}  # edgerig's own images are delivered, not pulled
    cfg["edgerig:platform"] = {
        "nats": {"jetstream": True},
        **{f: {"enabled": f == feature} for f in FEATURES},
    }
    required = load_testbed(cfg, name="t").required_registries
    assert {image.split("/", 1)[0] for image in images} <= set(required), (images, required)


def test_unknown_key_and_other_namespaces() -> None:
    cfg = base()
    cfg["edgerig:adminCidr"] = ["10.0.0.0/8"]
    fails(cfg, "edgerig:adminCidr", "unknown config key")
    cfg = base()
    cfg["openstack:cloud"] = "lrz"  # provider config is not ours and is ignored
    assert load_testbed(cfg, name="t").name == "t"


def test_fast_failover_ratio() -> None:
    cfg = base()
    cfg["edgerig:k3s"] = {"fastFailover": {"nodeMonitorGracePeriodS": 8, "nodeStatusUpdateFrequencyS": 4}}
    fails(cfg, "edgerig:k3s.fastFailover", "at least 4x")


def test_even_nats_replicas() -> None:
    cfg = base()
    cfg["edgerig:platform"] = {"nats": {"replicas": 2, "jetstream": True}}
    fails(cfg, "edgerig:platform.nats.replicas", "must be odd")


def test_model_is_frozen() -> None:
    tb = load_testbed(base(), name="t")
    with pytest.raises(ValueError):
        tb.nodes[0].name = "other"


def test_public_dump_has_no_secret_and_restores() -> None:
    tb = load_testbed(base(), name="t")
    dump = tb.public_dump()
    assert TOKEN not in str(dump)
    again = Testbed.restore(dump, tb.secret_values())
    assert again == tb


@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_every_stack_file_parses(path: Path) -> None:
    tb = Testbed.from_stack_file(path, secrets={"k3sToken": TOKEN})
    assert tb.name == path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    assert len(tb.servers) % 2 == 1


def test_stack_files_exist() -> None:
    assert {p.name for p in STACKS} >= {
        "Pulumi.pi-k3s.yaml",
        "Pulumi.openstack-kubeedge.yaml",
        "Pulumi.hybrid.yaml",
    }


def test_stack_file_secret_sources(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "stacks/Pulumi.pi-k3s.yaml").read_text())
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(StackConfigError, match="EDGERIG_K3S_TOKEN"):
        Testbed.from_stack_file(path, env={})
    assert Testbed.from_stack_file(path, env={"EDGERIG_K3S_TOKEN": TOKEN}).name == "lab"
    encrypted = copy.deepcopy(doc)
    encrypted["config"]["edgerig:k3sToken"] = {"secure": "v1:AAAA"}
    path.write_text(yaml.safe_dump(encrypted))
    assert (
        Testbed.from_stack_file(path, secrets={"k3sToken": TOKEN}, env={}).k3s.token.get_secret_value()
        == TOKEN
    )
    plain = copy.deepcopy(doc)
    plain["config"]["edgerig:k3sToken"] = TOKEN
    path.write_text(yaml.safe_dump(plain))
    with pytest.raises(StackConfigError, match="plain text"):
        Testbed.from_stack_file(path, env={})


def test_stack_file_errors(tmp_path: Path) -> None:
    with pytest.raises(StackConfigError, match="does not exist"):
        Testbed.from_stack_file(tmp_path / "Pulumi.none.yaml")
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [1, 2\n")
    with pytest.raises(StackConfigError, match="not valid YAML"):
        Testbed.from_stack_file(bad)


def test_deploy_addresses_fill_openstack_nodes() -> None:
    tb = load_testbed(kubeedge_base(), name="t")
    deployed = tb.with_deploy_addresses({"cloud0": "203.0.113.10"}, {"cloud0": "192.168.50.5"})
    node = deployed.node("cloud0")
    assert str(node.address) == "203.0.113.10" and str(node.internal_address) == "192.168.50.5"
    assert deployed.node("cloud1").address is None  # untouched
    assert tb.node("cloud0").address is None  # the original is frozen and unchanged
    assert deployed.api_endpoints == ["203.0.113.10", "192.168.50.5"]


def test_metrics_server_twice() -> None:
    cfg = base()
    cfg["edgerig:k3s"] = {"disable": ["traefik"]}
    fails(cfg, "K3s also bundles one", "edgerig:k3s.disable")
    cfg["edgerig:platform"] = {"nats": {"jetstream": True}, "metricsServer": {"enabled": False}}
    assert load_testbed(cfg, name="t").k3s.disable == ["traefik"]


def test_agent_label_tells_edgecore_from_k3s() -> None:
    tb = load_testbed(kubeedge_base(), name="t")
    assert tb.node_labels(tb.node("pi0"))["edgerig.io/agent"] == "edgecore"
    assert tb.node_labels(tb.node("cloud1"))["edgerig.io/agent"] == "k3s"


def test_vei_needs_jetstream() -> None:
    cfg = base()
    cfg["edgerig:platform"] = {"nats": {"jetstream": False}}
    fails(cfg, "needs JetStream", "edgerig:platform.nats.jetstream true")


def test_cidrs_that_hide_hosts() -> None:
    cfg = kubeedge_base()
    cfg["edgerig:openstack"] = {**OPENSTACK, "networkCidr": "10.42.8.0/24"}
    fails(cfg, "edgerig:openstack.networkCidr 10.42.8.0/24 overlaps edgerig:k3s.clusterCidr")
    cfg = base()
    cfg["edgerig:nodes"][3]["address"] = "10.43.0.20"
    fails(cfg, "'worker0' address 10.43.0.20 lies inside edgerig:k3s.serviceCidr")
    cfg = base()
    cfg["edgerig:k3s"] = {"serviceCidr": "10.42.128.0/17"}
    fails(cfg, "overlap")


def test_mqtt_url_with_credentials_is_refused_without_repeating_them() -> None:
    cfg = base()
    password = "pw-made-for-this-test-7f3a"
    cfg["edgerig:vei"] = {"clouds": [{"name": "broker", "kind": "mqtt",
                                      "mqttUrl": f"mqtts://vei:{password}@broker.lab:8883/vei/results"}]}
    message = fails(cfg, "vei.clouds", "must not hold credentials", "mqttUsername", "edgerig:mqttPassword")
    assert password not in message
    cfg["edgerig:vei"] = {"clouds": [{"name": "broker", "kind": "mqtt", "mqttUrl": "mqtt://broker.lab/a/#"}]}
    fails(cfg, "has a wildcard")
    cfg["edgerig:vei"] = {"clouds": [{"name": "AWS", "kind": "aws", "awsRegion": "us-east-1"}],
                          }
    cfg["edgerig:awsAccessKeyId"] = "AKIDEXAMPLE"
    cfg["edgerig:awsSecretAccessKey"] = "example-secret"
    assert [c.name for c in load_testbed(cfg, name="t").vei.clouds] == ["AWS"]  # the original clients' name
    cfg["edgerig:vei"] = {"clouds": [{"name": "a.b", "kind": "local"}]}
    fails(cfg, "cloud sink name 'a.b' must be")
