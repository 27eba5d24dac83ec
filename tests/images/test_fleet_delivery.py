"""Air-gapped delivery on the local test fleet, over real SSH: Ansible (a VM) and pyinfra (Pi-like
hosts) copy each node's architecture archives to the directory its runtime imports from; a second
run changes nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from images_support import Built

from experiments.testbeds.fleet import hosts as fleet_mod
from infra import images
from infra.hosts import ansible, pyinfra_runner, run_dir
from infra.hosts.inventory import targets_from_nodes
from infra.hosts.plan import HostPlan, tool_for
from infra.model import Testbed

# timeout: the session build runs in the first test's setup (~5 min on a machine with no cache)
pytestmark = [pytest.mark.images, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1500),
              pytest.mark.skipif(os.geteuid() != 0, reason="the test fleet needs root")]

ROLES = {"vm0": ("cloud", "server"), "pi0": ("edge", "agent"), "edge0": ("edge", "edge")}
ARCH = {"vm0": "amd64", "pi0": "arm64", "edge0": "arm64"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, built: Built) -> Iterator[tuple[Any, Any]]:
    state = tmp_path_factory.mktemp("fleet") / "state"
    up = fleet_mod.up(list(ROLES), {"pi0"}, state_dir=state)
    try:
        nodes = [{"name": h.name, "realm": ROLES[h.name][0], "role": ROLES[h.name][1], "provider": "static",
                  "address": h.address, "ssh_user": "root", "ssh_key_path": str(up.key_path),
                  "model": "raspberry-pi-4-8gb" if h.pi else "fleet-vm",
                  "os": "raspios" if h.pi else "debian",
                  "arch": ARCH[h.name]} for h in up.hosts]
        testbed = Testbed.model_validate({
            "name": "fleet", "nodes": nodes, "k3s": {"token": "fleet-token-for-tests-only"},
            "kubeedge": {"enabled": True}, "vei": {"enabled": False},
            "images": {"build_record": str(built.folder / "images.json")}})
        yield up, testbed
    finally:
        fleet_mod.down(state)
        shutil.rmtree(state, ignore_errors=True)


def _deliver(up: Any, testbed: Any, work: Path) -> dict[str, int]:
    """Only the image step of host configuration: plans that carry nothing but the archives."""
    targets = targets_from_nodes(testbed, {}, str(up.known_hosts))
    plans = [HostPlan(node=n, tool=tool_for(n), images=images.node_archives(testbed, n),
                      image_import=images.import_command(n)) for n in testbed.nodes]
    written = run_dir.write(work / "run", testbed, plans, targets)
    vms = [p.node.name for p in plans if p.tool == "ansible"]
    pis = [p.node.name for p in plans if p.tool == "pyinfra"]
    changed = dict(ansible.run(written, vms, stage="install").changed)
    changed.update(pyinfra_runner.run(written, pis, targets, stage="install").changed)
    return changed


def test_each_node_gets_its_architectures_archives_and_a_second_run_changes_nothing(
    fleet: tuple[Any, Any], built: Built, tmp_path: Path
) -> None:
    up, testbed = fleet
    first = _deliver(up, testbed, tmp_path)
    assert all(first[name] > 0 for name in ROLES), first
    for name, (_, role) in ROLES.items():
        root = up.state_dir / "hosts" / name / "root"
        directory = images.EDGE_IMAGES_DIR if role == "edge" else images.K3S_IMAGES_DIR
        found = sorted(p.name for p in (root / directory.lstrip("/")).iterdir())
        expected = sorted(img.arches[ARCH[name]].archive for img in built.record.images.values())
        assert found == expected, (name, found)
        for img in built.record.images.values():
            ab = img.arches[ARCH[name]]
            data = (root / directory.lstrip("/") / ab.archive).read_bytes()
            assert hashlib.sha256(data).hexdigest() == ab.archive_sha256
    again = _deliver(up, testbed, tmp_path)
    assert again == dict.fromkeys(ROLES, 0)
