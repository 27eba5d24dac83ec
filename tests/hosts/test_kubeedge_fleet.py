"""KubeEdge layout on a 2-host fleet: CloudCore prerequisites on a cloud VM (ansible-runner) and
EdgeCore prerequisites + join settings on a Pi-like edge host (pyinfra). The apiserver-side DNAT
runs for real inside the cloud host's network namespace.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hosts_support import Mirror, fleet_testbed, needs_root

from experiments.testbeds.fleet import hosts as fleet_mod
from infra.hosts import api

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
ROLES = {"cloud0": ("cloud", "server"), "edge0": ("edge", "edge")}
DNAT = "-A OUTPUT -p tcp -m tcp --dport 10350 -j DNAT --to-destination 10.232.0.10:10003"


@pytest.fixture(scope="module")
def ke(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("kefleet") / "state"
    fleet = fleet_mod.up(list(ROLES), {"edge0"}, state_dir=state)
    try:
        testbed = fleet_testbed(fleet, mirror, ROLES, kubeedge=True)
        kw = {
            "known_hosts": str(fleet.known_hosts),
            "artefact_sums": mirror.sums,
            "artefact_cache": tmp_path_factory.mktemp("kecache"),
        }
        first = api.install(testbed, **kw)
        yield {
            "fleet": fleet,
            "testbed": testbed,
            "kw": kw,
            "first": first,
            "root": lambda n: state / "hosts" / n / "root",
        }
    finally:
        fleet_mod.down(state)


def _nat_rules(netns: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "iptables", "-t", "nat", "-S", "OUTPUT"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_cloudcore_prerequisites(ke: dict[str, Any]) -> None:
    root: Path = ke["root"]("cloud0")
    init = (root / "usr/local/lib/edgerig/keadm-init.sh").read_text()
    assert "keadm init --advertise-address=10.232.0.10 --kubeedge-version=v1.20.0" in init
    assert "cloudCore.modules.cloudStream.enable=true" in init
    assert (root / "usr/local/bin/keadm").read_bytes().startswith(b"#!/bin/sh\necho 'fake keadm")
    assert DNAT in _nat_rules("erh-cloud0")
    assert any("skipped 'keadm init (CloudCore)'" in n for n in ke["first"].summary.notes["cloud0"])


def test_edgecore_prerequisites_and_join_settings(ke: dict[str, Any]) -> None:
    root: Path = ke["root"]("edge0")
    join = (root / "usr/local/lib/edgerig/keadm-join.sh").read_text()
    for part in (
        "--cloudcore-ipport=10.232.0.10:10000",
        "--kubeedge-version=v1.20.0",
        "--edgenode-name=edge0",
        "modules.edgeStream.enable=true,modules.edgeStream.server=10.232.0.10:10004",
        "edgerig.io/realm=edge",
        '--token="$(cat /etc/edgerig/kubeedge/token)"',
    ):
        assert part in join
    assert "SystemdCgroup = true" in (root / "etc/containerd/config.toml").read_text()
    cni = json.loads((root / "etc/cni/net.d/10-edgerig.conflist").read_text())
    assert cni["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "10.88.0.0/24"
    assert not (root / "etc/rancher/k3s/config.yaml").exists()  # EdgeCore replaces the kubelet
    assert not (root / "etc/kubeedge").exists()
    notes = ke["first"].summary.notes
    assert any("skipped 'keadm join'" in n for n in notes["edge0"])
    assert any("keadm gettoken skipped" in n for n in notes["cloud0"])


def test_kubeedge_second_run_changes_nothing(ke: dict[str, Any]) -> None:
    again = api.install(ke["testbed"], **ke["kw"])
    assert again.summary.changed == {"cloud0": 0, "edge0": 0}
    assert _nat_rules("erh-cloud0").count(DNAT) == 1


def test_kubeedge_reset_clears_the_etc_kubeedge_trap(ke: dict[str, Any]) -> None:
    trap = ke["root"]("edge0") / "etc/kubeedge/config"
    trap.mkdir(parents=True)
    (trap / "edgecore.yaml").write_text("left over by an earlier join\n")
    api.reset(ke["testbed"], ["cloud0", "edge0"], known_hosts=ke["kw"]["known_hosts"])
    assert not (ke["root"]("edge0") / "etc/kubeedge").exists()
    assert not (ke["root"]("edge0") / "usr/local/bin/keadm").exists()
    assert not (ke["root"]("cloud0") / "usr/local/bin/keadm").exists()
    assert DNAT not in _nat_rules("erh-cloud0")
