"""The bootstrap resources' contract: order, re-run triggers, and the calls into infra.hosts.api."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from stack_fixtures import TOKEN, stack, variant

from infra.cluster import hashing
from infra.cluster import provider as cluster_provider
from infra.cluster.bootstrap import install_order
from infra.cluster.provider import HostInstallProvider, restore_testbed
from infra.hosts import api


def props_for(name: str, node: str, **extra: Any) -> dict[str, Any]:
    tb = stack(name)
    addresses = {
        n.name: str(n.address) if n.address else f"203.0.113.{i + 10}" for i, n in enumerate(tb.nodes)
    }
    props = {
        "node": node,
        "role": tb.node(node).role,
        "provider": tb.node(node).provider,
        "address": addresses[node],
        "addresses": addresses,
        "internal_addresses": {},
        "extra_tls_san": [],
        "testbed": tb.public_dump(),
        "secrets": json.dumps(tb.secret_values()),
        "config_hash": hashing.host_config_hash(tb, tb.node(node)),
        "wants_kubeconfig": node == tb.first_server.name,
    }
    props.update(extra)
    return props


def test_install_order_servers_one_by_one_then_cloud_then_edge() -> None:
    stages = [[n.name for n in stage] for stage in install_order(stack("hybrid"))]
    assert stages == [["cloud0"], ["cloud1"], ["cloud2"], ["pi-edge0", "pi-edge1"]]
    stages = [[n.name for n in stage] for stage in install_order(stack("openstack-kubeedge"))]
    assert stages == [["cloud-main"], ["cloud-worker"], ["edge-node"]]


def test_hash_changes_with_host_config_only() -> None:
    base = stack("hybrid")
    node = base.node("pi-edge0")
    h = hashing.host_config_hash(base, node)
    assert h == hashing.host_config_hash(stack("hybrid"), node)  # deterministic
    more_gateways = variant("hybrid", vei={"gatewayReplicas": 5})
    assert hashing.host_config_hash(more_gateways, more_gateways.node("pi-edge0")) == h
    slower = variant("hybrid", k3s={"fastFailover": {"enabled": False}})
    assert hashing.host_config_hash(slower, slower.node("pi-edge0")) != h
    older = variant(
        "hybrid", kubeedge={"enabled": True, "version": "v1.19.0"}, k3s={"version": "v1.29.10+k3s1"}
    )
    assert hashing.host_config_hash(older, older.node("pi-edge0")) != h
    assert TOKEN not in json.dumps(hashing.host_inputs(base, node))


def test_diff_replaces_a_different_host_and_updates_a_changed_config() -> None:
    provider = HostInstallProvider()
    old = props_for("hybrid", "pi-edge0")
    assert not provider.diff("id", old, dict(old)).changes
    moved = provider.diff("id", old, {**old, "address": "198.51.100.99"})
    assert moved.changes and moved.replaces == ["address"] and moved.delete_before_replace
    rehashed = provider.diff("id", old, {**old, "config_hash": "0" * 64})
    assert rehashed.changes and not rehashed.replaces
    new_token = provider.diff(
        "id", old, {**old, "secrets": json.dumps({"k3sToken": "another-token-0123456789"})}
    )
    assert new_token.changes and not new_token.replaces
    other_vei = props_for("hybrid", "pi-edge0")
    other_vei["testbed"] = {
        **other_vei["testbed"],
        "vei": {**other_vei["testbed"]["vei"], "gateway_replicas": 9},
    }
    assert not provider.diff("id", old, other_vei).changes  # app changes never touch the hosts


def test_props_restore_the_testbed_with_deploy_addresses() -> None:
    props = props_for("hybrid", "cloud1", internal_addresses={"cloud1": "192.168.60.7"})
    tb = restore_testbed(props)
    assert tb.k3s.token.get_secret_value() == TOKEN
    assert str(tb.node("cloud1").address) == props["addresses"]["cloud1"]
    assert str(tb.node("cloud1").internal_address) == "192.168.60.7"


def test_create_installs_one_node_and_delete_resets_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Both run with a private known_hosts file: the VMs' generated keys, then the operator's file of
    the static hosts' keys; it is gone afterwards."""
    calls: list[tuple[str, list[str], dict[str, Any], str]] = []

    def fake_install(testbed: Any, *, nodes: list[str], **kw: Any) -> api.InstallResult:
        calls.append(("install", list(nodes), kw, Path(kw["known_hosts"]).read_text()))
        return api.InstallResult(kubeconfig="apiVersion: v1\n")

    def fake_reset(testbed: Any, nodes: list[str], **kw: Any) -> None:
        calls.append(("reset", list(nodes), kw, Path(kw["known_hosts"]).read_text()))

    monkeypatch.setattr(api, "install", fake_install)
    monkeypatch.setattr(api, "reset", fake_reset)
    lab = tmp_path / "lab_known_hosts"
    lab.write_text("192.168.1.21 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPi0testonly\n")
    provider = HostInstallProvider()
    vm_line = "203.0.113.10,192.168.60.7 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIVm0testonly\n"
    props = props_for("hybrid", "cloud0", known_hosts=vm_line)
    props["testbed"] = {**props["testbed"], "ssh": {"known_hosts": str(lab), "accept_new_host_keys": False}}
    created = provider.create(props)
    assert created.id == "hybrid/cloud0" and created.outs["kubeconfig"] == "apiVersion: v1\n"
    assert calls[0][:2] == ("install", ["cloud0"]) and calls[0][2]["addresses"] == props["addresses"]
    assert calls[0][3] == vm_line + lab.read_text()
    assert not Path(calls[0][2]["known_hosts"]).exists()
    provider.delete(created.id, created.outs)
    assert calls[1][:2] == ("reset", ["cloud0"]) and calls[1][3] == calls[0][3]
    lab.unlink()
    with pytest.raises(RuntimeError, match=r"knownHosts .*lab_known_hosts' does not exist"):
        provider.create(props)


def test_first_server_without_kubeconfig_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_provider, "known_hosts_file", lambda tb, props: contextlib.nullcontext(None))
    monkeypatch.setattr(
        api, "install", lambda *a, **k: api.InstallResult(kubeconfig=None, reason="no systemd")
    )
    with pytest.raises(RuntimeError, match=r"cloud0: K3s is installed but no kubeconfig.*no systemd"):
        HostInstallProvider().create(props_for("hybrid", "cloud0"))
    # other nodes do not need one
    assert HostInstallProvider().create(props_for("hybrid", "cloud1")).outs["kubeconfig"] == ""
