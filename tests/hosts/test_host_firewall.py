"""The static hosts' nftables firewall: rendered from the security-group rule list, syntax-checked by the
real `nft`, and (tests/hosts/test_k3s_fleet.py) loaded on fleet hosts and probed over the network."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hosts_support import TOKEN

from infra.cloud.security import security_rules
from infra.hosts import firewall
from infra.hosts.plan import install_plan, reset_plan
from infra.model import Testbed

VM = {"realm": "cloud", "provider": "openstack", "flavor": "m1.large", "image": "ubuntu"}


def _pis(**extra: Any) -> Testbed:
    nodes = [
        {"name": f"pi{i}", "realm": "edge", "role": "server" if i == 0 else "agent", "provider": "static",
         "address": f"192.168.1.10{i}", "model": "raspberry-pi-4-8gb", "os": "raspios", "arch": "arm64"}
        for i in range(3)
    ]
    return Testbed.model_validate(
        {"name": "pis", "nodes": nodes, "k3s": {"token": TOKEN}, "vei": {"enabled": False}, **extra}
    )


def _hybrid() -> Testbed:
    nodes = [{"name": f"vm{i}", "role": "server", **VM} for i in range(3)] + [
        {"name": "pi0", "realm": "edge", "role": "agent", "provider": "static", "address": "198.51.100.20",
         "model": "raspberry-pi-4-8gb", "os": "raspios", "arch": "arm64"}
    ]
    return Testbed.model_validate(
        {"name": "hybrid", "nodes": nodes, "k3s": {"token": TOKEN}, "vei": {"enabled": False},
         "openstack": {"external_network": "public", "public_key": "ssh-ed25519 AAAAC3 test"},
         "admin_cidrs": ["203.0.113.0/24"]}
    ).with_deploy_addresses({f"vm{i}": f"203.0.113.1{i}" for i in range(3)})


def _accepts(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("ip saddr ")]


def test_rules_are_the_security_group_rules() -> None:
    tb = _pis(admin_cidrs=["192.168.1.0/24"])
    text = firewall.ruleset(tb)
    rules = security_rules(tb)
    assert len([a for a in _accepts(text) if "accept" in a]) == len(rules) + 1  # + the pod networks
    assert "elements = { 192.168.1.100, 192.168.1.101, 192.168.1.102 }" in text
    assert "ip saddr @cluster tcp dport 10250 accept" in text  # kubelet: cluster members only
    assert "ip saddr @cluster udp dport 8472 accept" in text  # VXLAN is unauthenticated: never public
    assert "ip saddr 192.168.1.0/24 tcp dport 22 accept" in text  # adminCidrs honoured
    assert "ip saddr 192.168.1.0/24 tcp dport 31300 accept" in text  # Grafana's NodePort
    assert "0.0.0.0/0" not in text
    assert text.rstrip().endswith("}") and 'counter drop comment "everything else' in text


def test_without_admin_cidrs_only_ssh_opens_to_everyone_and_the_plan_says_so() -> None:
    tb = _pis()
    text = firewall.ruleset(tb)
    world = [a for a in _accepts(text) if "0.0.0.0/0" in a]
    assert world == ['ip saddr 0.0.0.0/0 tcp dport 22 accept comment "SSH (no adminCidrs: from anywhere)"']
    plan = install_plan(tb, tb.node("pi1"), {"k3s": None})  # type: ignore[dict-item]
    assert any("no adminCidrs" in n for n in plan.notes)


def test_hybrid_pi_admits_the_vms_floating_ips_and_wireguard() -> None:
    tb = _hybrid()
    assert tb.flannel_backend == "wireguard-native"
    text = firewall.ruleset(tb)
    for i in range(3):
        assert f"203.0.113.1{i}" in text.split("elements = {", 1)[1].split("}", 1)[0]
    assert "ip saddr @cluster udp dport 51820 accept" in text and "dport 8472" not in text


def test_only_static_hosts_get_it_and_reset_removes_it() -> None:
    tb = _hybrid()
    files: dict[str, Any] = {"k3s": None}
    assert "host_firewall" not in install_plan(tb, tb.node("vm0"), files).concerns
    pi = install_plan(tb, tb.node("pi0"), files)
    fw = pi.concerns["host_firewall"]
    assert [f.path for f in fw.files] == [firewall.RULESET, f"/etc/systemd/system/{firewall.UNIT}"]
    assert "nftables" in pi.concerns["common"].packages
    assert [c.name for c in reset_plan(tb, tb.node("pi0")).concerns["host_firewall"].reset_commands] == [
        "remove the host firewall"
    ]


@pytest.mark.skipif(shutil.which("nft") is None or os.geteuid() != 0, reason="nft -c needs nftables and root")
@pytest.mark.parametrize("make", [_pis, _hybrid, lambda: _pis(admin_cidrs=["10.0.0.0/8", "192.0.2.7/32"])])
def test_nft_accepts_the_rendered_ruleset(make: Any, tmp_path: Path) -> None:
    path = tmp_path / "firewall.nft"
    path.write_text(firewall.ruleset(make()))
    checked = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    broken = tmp_path / "broken.nft"
    broken.write_text(path.read_text().replace("tcp dport 22", "tcp dport twenty-two"))
    assert subprocess.run(["nft", "-c", "-f", str(broken)], capture_output=True, check=False).returncode != 0
