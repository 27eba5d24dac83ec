"""Rendering and ordering from the model, and artefact verification (no root, no fleet needed)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hosts_support import K3S_KEY, KEADM_KEY, TOKEN, Mirror

from infra.hosts import api, render, render_kubeedge
from infra.hosts.artefacts import ArtefactError, fetch, k3s_artefact, keadm_artefact
from infra.model import Testbed

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "playbooks" / "pyinfra"))
from edgerig_pi import merged_cmdline


def _testbed(mirror_url: str = "http://127.0.0.1:9", **extra: Any) -> Testbed:
    nodes = [
        {"name": "m0", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.10"},
        {
            "name": "e0",
            "realm": "edge",
            "role": "edge",
            "provider": "static",
            "address": "192.0.2.20",
            "model": "raspberry-pi-4-8gb",
            "os": "raspios",
            "arch": "arm64",
        },
        {"name": "m1", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.11"},
        {"name": "a0", "realm": "cloud", "role": "agent", "provider": "static", "address": "192.0.2.12"},
        {"name": "m2", "realm": "cloud", "role": "server", "provider": "static", "address": "192.0.2.13"},
    ]
    return Testbed.model_validate(
        {
            "name": "t",
            "nodes": nodes,
            "k3s": {"token": TOKEN},
            "vei": {"enabled": False},
            "artefacts": {"base_url": mirror_url},
            **extra,
        }
    )


def test_install_order_servers_one_by_one_then_cloud_then_edge() -> None:
    tb = _testbed(kubeedge={"enabled": True})
    stages = [[n.name for n in s] for s in api.install_stages(tb, tb.nodes)]
    assert stages == [["m0"], ["m1"], ["m2"], ["a0"], ["e0"]]


def test_floating_ip_in_tls_san_and_no_secret_in_config() -> None:
    tb = _testbed()
    files = {f.path: f for f in render.k3s_files(tb, tb.node("m1"), extra_tls_san=["203.0.113.5"])}
    cfg = yaml.safe_load(files[render.K3S_CONFIG].content)
    assert "203.0.113.5" in cfg["tls-san"] and cfg["server"] == "https://192.0.2.10:6443"
    assert TOKEN not in files[render.K3S_CONFIG].content and files[render.K3S_TOKEN_FILE].secret
    assert "/etc/rancher/k3s/registries.yaml" not in files


def test_fast_failover_off_leaves_kubernetes_defaults() -> None:
    tb = _testbed(k3s={"token": TOKEN, "fast_failover": {"enabled": False}})
    cfg = render.k3s_config(tb, tb.node("m0"))
    assert not {"kube-controller-manager-arg", "kube-apiserver-arg", "kubelet-arg"} & set(cfg)


def test_registry_mirror_renders_registries_yaml() -> None:
    tb = _testbed(
        artefacts={"base_url": "http://mirror.lab", "registry_mirror": "https://registry.lab:5000/"}
    )
    files = {f.path: f.content for f in render.k3s_files(tb, tb.node("a0"))}
    doc = yaml.safe_load(files["/etc/rancher/k3s/registries.yaml"])
    assert doc["mirrors"]["docker.io"]["endpoint"] == ["https://registry.lab:5000"]
    with pytest.raises(ValueError, match="registryMirror"):
        _testbed(artefacts={"registry_mirror": "registry.lab:5000"})


def test_keadm_join_uses_cloudcore_labels_and_stream() -> None:
    tb = _testbed(kubeedge={"enabled": True})
    argv = render_kubeedge.keadm_join_argv(tb, tb.node("e0"))
    assert "--cloudcore-ipport=192.0.2.10:10000" in argv and "--edgenode-name=e0" in argv
    assert any(
        a.startswith("--labels=") and "edgerig.io/hardware-model=raspberry-pi-4-8gb" in a for a in argv
    )
    assert not any("node-role.kubernetes.io" in a for a in argv)  # restricted: set through the API instead
    assert "--advertise-address=192.0.2.10" in render_kubeedge.keadm_init_argv(tb)


def test_cmdline_flags_appended_once() -> None:
    line = "console=tty1 root=PARTUUID=1 rootwait cgroup_enable=memory"
    once = merged_cmdline(line)
    assert once.count("\n") == 1 and once.split().count("cgroup_enable=memory") == 1
    assert merged_cmdline(once) == once


def test_unpinned_artefact_is_refused(tmp_path: Path) -> None:
    tb = _testbed()
    with pytest.raises(ArtefactError, match=r"no sha256 pinned for k3s-io/k3s/.*/k3s-arm64"):
        fetch(tb, k3s_artefact(tb, "arm64"), sums={}, cache_dir=tmp_path)


def test_mirror_download_verified_and_cached(mirror: Mirror, tmp_path: Path) -> None:
    tb = _testbed(mirror.url, kubeedge={"enabled": True})
    k3s = fetch(tb, k3s_artefact(tb, "amd64"), sums=mirror.sums, cache_dir=tmp_path)
    assert k3s.sha256 == mirror.sums[K3S_KEY] and k3s.path.read_bytes() == mirror.files[K3S_KEY]
    keadm = fetch(tb, keadm_artefact(tb, "amd64"), sums=mirror.sums, cache_dir=tmp_path)
    assert keadm.path.read_bytes().startswith(b"#!/bin/sh") and KEADM_KEY.endswith(".tar.gz")
    mirror.server.shutdown()  # a cached, verified file needs no second download
    try:
        assert fetch(tb, k3s_artefact(tb, "amd64"), sums=mirror.sums, cache_dir=tmp_path).path == k3s.path
    finally:
        mirror.restart()


def test_cluster_up_unknown_stack_is_a_clear_error() -> None:
    from typer.testing import CliRunner

    from experiments.cli import app

    result = CliRunner().invoke(app, ["cluster", "up", "--stack", "no-such-stack"])
    assert result.exit_code == 1
    assert "Pulumi.no-such-stack.yaml does not exist" in result.output
    both = CliRunner().invoke(app, ["cluster", "up", "--stack", "a", "--inventory", "b"])
    assert both.exit_code != 0 and "exactly one of --stack NAME or --inventory FILE" in both.output


def test_vm_without_address_is_named_when_needed() -> None:
    from infra.hosts.errors import HostStepError
    from infra.hosts.inventory import targets_from_nodes

    tb = _testbed()
    targets = targets_from_nodes(list(tb.nodes), addresses={"m0": "198.51.100.7"})
    assert targets["m0"].address == "198.51.100.7"  # a deploy-time address wins over the model's
    data = tb.model_dump()
    data["nodes"][1]["address"] = None
    data["nodes"][1]["provider"] = "openstack"
    data["nodes"][1].update(flavor="m1.small", image="ubuntu-22.04", role="agent")
    data["openstack"] = {"external_network": "public", "public_key": "ssh-ed25519 AAAAC3 test"}
    data["admin_cidrs"] = ["203.0.113.0/24"]
    vm_tb = Testbed.model_validate(data)
    targets = targets_from_nodes(list(vm_tb.nodes))
    with pytest.raises(HostStepError, match=r"host e0: step 'connect'.*no address known"):
        targets["e0"]


def test_vm_behind_floating_ip_uses_fixed_ip_inside_the_cloud() -> None:
    vm = {
        "realm": "cloud",
        "role": "server",
        "provider": "openstack",
        "flavor": "m1.large",
        "image": "ubuntu",
    }
    nodes = [{"name": f"m{i}", **vm} for i in range(3)] + [
        {
            "name": "p0",
            "realm": "edge",
            "role": "agent",
            "provider": "static",
            "address": "192.0.2.20",
            "model": "raspberry-pi-4-8gb",
            "os": "raspios",
        },
    ]
    tb = Testbed.model_validate(
        {
            "name": "t",
            "nodes": nodes,
            "k3s": {"token": TOKEN},
            "vei": {"enabled": False},
            "openstack": {"external_network": "public", "public_key": "ssh-ed25519 AAAAC3 test"},
            "admin_cidrs": ["203.0.113.0/24"],
        }
    ).with_deploy_addresses(
        {f"m{i}": f"203.0.113.1{i}" for i in range(3)}, {f"m{i}": f"192.168.50.1{i}" for i in range(3)}
    )
    m1 = render.k3s_config(tb, tb.node("m1"))
    assert m1["node-ip"] == "192.168.50.11" and m1["node-external-ip"] == "203.0.113.11"
    assert m1["server"] == "https://192.168.50.10:6443"
    assert {"203.0.113.10", "192.168.50.10"} <= set(render.k3s_config(tb, tb.node("m0"))["tls-san"])
    pi = render.k3s_config(tb, tb.node("p0"))
    assert pi["server"] == "https://203.0.113.10:6443" and pi["node-ip"] == "192.0.2.20"
