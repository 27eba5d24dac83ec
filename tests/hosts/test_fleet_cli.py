"""`edgerig fleet up|down` and `edgerig cluster up --inventory` as a user runs them (subprocesses)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hosts_support import Mirror, needs_root

from experiments.testbeds.ports import free_port
from infra.hosts.inventory import targets_from_inventory

pytestmark = [needs_root, pytest.mark.root]
BIN = Path(sys.executable).parent


def _edgerig(state: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGERIG_FLEET_STATE": str(state), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "edgerig"), *args], env={**env, **env_vars}, capture_output=True, text=True, timeout=240,
        check=False,
    )


# Written on every login (sshd's session records) or by the tools for themselves, not by the install.
VOLATILE = ("var/log/wtmp", "var/log/btmp", "var/log/lastlog", "home/lab/.ansible", "root/.ansible")


def _host_snapshot(state: Path, name: str) -> dict[str, tuple[object, ...] | str]:
    """What an install leaves on a host: every file it added or changed (the host's overlay upper
    layer) with mode, owner, size, mtime and content; every directory's mode and owner; the host's
    iptables rules and nftables ruleset."""
    upper = state / "hosts" / name / "upper"
    out: dict[str, tuple[object, ...] | str] = {}
    for path in sorted(upper.rglob("*")):
        rel = str(path.relative_to(upper))
        if rel.startswith(VOLATILE):
            continue
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, digest)
    root = state / "hosts" / name / "root"

    def host(*cmd: str) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", f"erh-{name}", "chroot", str(root), *cmd],
            capture_output=True, text=True, check=True,
        )
        return done.stdout

    out["iptables-save"] = "".join(line for line in host("iptables-save").splitlines(True) if line[:1] != "#")
    out["nft list ruleset"] = host("nft", "list", "ruleset")
    return out


def _netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


def test_fleet_lifecycle_unreachable_artefacts_and_a_second_cluster_up_changes_nothing(
    tmp_path: Path, mirror: Mirror
) -> None:
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
        dead = f"http://127.0.0.1:{free_port()}"
        stack["config"]["edgerig:artefacts"] = {"baseUrl": dead}
        stack_file.write_text(yaml.safe_dump(stack))
        cluster = _edgerig(state, "cluster", "up", "--inventory", str(stack_file))
        assert cluster.returncode == 1
        assert f"download of {dead}/k3s-io/k3s/releases/download/" in cluster.stderr
        assert "check artefacts.baseUrl or the mirror" in cluster.stderr
        assert not (state / "hosts/vm0/root/usr/local/bin/k3s").exists()
        # Installed through the CLI, then installed again: the second run leaves every host
        # byte-identical - no file rewritten (mtimes), no mode or owner changed, no rule added.
        stack["config"]["edgerig:artefacts"] = {"baseUrl": mirror.url}
        stack_file.write_text(yaml.safe_dump(stack))
        pins = tmp_path / "pins.yaml"
        pins.write_text(
            yaml.safe_dump({k: {"algorithm": p.algorithm, "digest": p.digest, "source": p.source}
                            for k, p in mirror.pins.items()})
        )
        env = {"EDGERIG_ARTEFACT_PINS": str(pins), "EDGERIG_ARTEFACT_CACHE": str(tmp_path / "cache")}
        first = _edgerig(state, "cluster", "up", "--inventory", str(stack_file), **env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "vm0: " in first.stdout and "pi0: " in first.stdout
        before = {n: _host_snapshot(state, n) for n in ("vm0", "pi0")}
        assert "edgerig_host_firewall" in str(before["pi0"]["nft list ruleset"])  # it sees the firewall
        second = _edgerig(state, "cluster", "up", "--inventory", str(stack_file), **env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "vm0: 0 changed" in second.stdout and "pi0: 0 changed" in second.stdout, second.stdout
        for name in ("vm0", "pi0"):
            after, was = _host_snapshot(state, name), before[name]
            changed = sorted(k for k in was.keys() | after.keys() if was.get(k) != after.get(k))
            assert not changed, (name, changed)
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
