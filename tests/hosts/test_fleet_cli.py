"""`edgerig fleet up|down` and `edgerig cluster up --inventory` as a user runs them (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.testbeds.ports import free_port
from infra.hosts.inventory import targets_from_inventory

pytestmark = [pytest.mark.root]
BIN = Path(sys.executable).parent


def _edgerig(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGERIG_FLEET_STATE": str(state), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "edgerig"), *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )


def _netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_fleet_lifecycle_and_unreachable_artefacts(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    up = _edgerig(state, "fleet", "up", "--names", "vm0,pi0", "--pi-names", "pi0")
    try:
        assert up.returncode == 0, up.stderr
        assert "pi0: 10.232.0.11 (pi) netns erh-pi0" in up.stdout
        # Ansible reads the inventory natively and reaches every host over SSH.
        ping = subprocess.run(
            [str(BIN / "ansible"), "all", "-i", str(state / "inventory.yaml"), "-m", "ping"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ping.returncode == 0 and ping.stdout.count("SUCCESS") == 2, ping.stdout + ping.stderr
        # ... and infra.hosts reads the same file for pyinfra.
        targets = targets_from_inventory(state / "inventory.yaml")
        assert {n: t.address for n, t in targets.items()} == {"vm0": "10.232.0.10", "pi0": "10.232.0.11"}
        assert targets["pi0"].known_hosts == str(state / "known_hosts") and targets["pi0"].user == "root"
        again = _edgerig(state, "fleet", "up", "--hosts", "1")
        assert again.returncode == 1 and "already up" in again.stderr
        # An artefact source that does not answer (a closed loopback port stands in for a lab mirror
        # that is down): the install fails naming the URL and the setting, before touching a host.
        stack_file = state / "Pulumi.fleet.yaml"
        stack = yaml.safe_load(stack_file.read_text())
        mirror = f"http://127.0.0.1:{free_port()}"
        stack["config"]["edgerig:artefacts"] = {"baseUrl": mirror}
        stack_file.write_text(yaml.safe_dump(stack))
        cluster = _edgerig(state, "cluster", "up", "--inventory", str(stack_file))
        assert cluster.returncode == 1
        assert f"download of {mirror}/k3s-io/k3s/releases/download/" in cluster.stderr
        assert "check artefacts.baseUrl or the mirror" in cluster.stderr
        assert not (state / "hosts/vm0/root/usr/local/bin/k3s").exists()
    finally:
        down = _edgerig(state, "fleet", "down")
    assert down.returncode == 0 and "removed bridge erhbr0" in down.stdout
    assert "erh-vm0" not in _netns() and not state.exists()
    assert subprocess.run(["ip", "link", "show", "erhbr0"], capture_output=True, check=False).returncode != 0


def test_bad_host_names_create_nothing(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    for names, problem in (("Vm0", "not a lowercase hostname"), ("a0,a0", "must be unique")):
        bad = _edgerig(state, "fleet", "up", "--names", names)
        assert bad.returncode == 1 and problem in bad.stderr
        assert not state.exists() and "erh-" not in _netns()
