"""K3s HA on a 5-host test fleet over real SSH: master0-2 are VMs (ansible-runner), worker0-1 are
Pi-like hosts (pyinfra). The tests run in file order on one fleet: install, inspect, re-run, reset,
a failed install (wrong sha256), rejoin. The reset is checked against what K3s's k3s-killall.sh
stops and removes: a planted shim process tree, CNI/flannel links, KUBE-/CNI-/flannel rules, CNI state.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hosts_support import K3S_KEY, TOKEN, Mirror, fleet_testbed, needs_root, snapshot

from experiments.testbeds.fleet import hosts as fleet_mod
from infra.hosts import api, render
from infra.hosts.artefacts import ArtefactError
from infra.versions import Pin

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]

ROLES = {
    "master0": ("cloud", "server"),
    "master1": ("cloud", "server"),
    "master2": ("cloud", "server"),
    "worker0": ("edge", "agent"),
    "worker1": ("edge", "agent"),
}
TOUCHED = ("etc/rancher", "var/lib/rancher", "usr/local/bin", "etc/systemd/system", "etc/kubeedge")


class Env:
    def __init__(self, fleet: Any, mirror: Mirror, cache: Path) -> None:
        self.fleet, self.mirror, self.cache = fleet, mirror, cache
        self.testbed = fleet_testbed(fleet, mirror, ROLES)
        self.before = {h.name: snapshot(self.root(h.name), TOUCHED) for h in fleet.hosts}
        self.first: api.InstallResult | None = None
        self.progress: list[tuple[str, str]] = []

    def root(self, name: str) -> Path:
        return self.fleet.state_dir / "hosts" / name / "root"

    def install(self, **kw: Any) -> api.InstallResult:
        return api.install(
            self.testbed,
            known_hosts=str(self.fleet.known_hosts),
            artefact_pins=self.mirror.pins,
            artefact_cache=self.cache,
            boot_delay=5,
            progress=lambda h, s: self.progress.append((h, s)),
            **kw,
        )

    def config(self, name: str) -> dict[str, Any]:
        return yaml.safe_load((self.root(name) / "etc/rancher/k3s/config.yaml").read_text())


@pytest.fixture(scope="module")
def env(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state = tmp_path_factory.mktemp("fleet") / "state"
    fleet = fleet_mod.up(list(ROLES), {"worker0", "worker1"}, state_dir=state)
    try:
        e = Env(fleet, mirror, tmp_path_factory.mktemp("cache"))
        e.first = e.install()
        yield e
    finally:
        fleet_mod.down(state)


def test_config_per_role(env: Env) -> None:
    first, second, agent = env.config("master0"), env.config("master1"), env.config("worker0")
    assert first["cluster-init"] is True and "server" not in first
    for name in ("master1", "master2"):
        cfg = env.config(name)
        assert "cluster-init" not in cfg
        assert cfg["server"] == "https://10.232.0.10:6443"
    assert set(first["tls-san"]) == {"10.232.0.10", "10.232.0.11", "10.232.0.12"}
    assert "node-monitor-grace-period=16s" in first["kube-controller-manager-arg"]
    assert "default-unreachable-toleration-seconds=10" in second["kube-apiserver-arg"]
    assert agent["server"] == "https://10.232.0.10:6443" and "tls-san" not in agent
    assert "node-role.kubernetes.io/edge:NoSchedule" in agent["node-taint"]
    assert "edgerig.io/realm=edge" in agent["node-label"]
    assert agent["kubelet-arg"] == ["node-status-update-frequency=4s"]
    for name, (_, role) in ROLES.items():
        token = env.root(name) / "etc/rancher/k3s/edgerig-token"
        # No running first server here (no systemd), so no secure token to read: servers keep the
        # cluster secret, agents get only the agent secret.
        assert token.read_text().strip() == (TOKEN if role == "server" else render.agent_secret(env.testbed))
        assert stat.S_IMODE(token.stat().st_mode) == 0o600 and token.stat().st_uid == 0
        assert TOKEN not in (env.root(name) / "etc/rancher/k3s/config.yaml").read_text()
        agent_token = env.root(name) / "etc/rancher/k3s/edgerig-agent-token"
        assert agent_token.exists() == (role == "server")
    assert first["agent-token-file"] == "/etc/rancher/k3s/edgerig-agent-token"
    assert first["secrets-encryption"] is True


def test_pi_boot_files_changed_vms_untouched(env: Env) -> None:
    for name in ("worker0", "worker1"):
        line = (env.root(name) / "boot/firmware/cmdline.txt").read_text()
        assert line.count("\n") == 1 and line.startswith("console=serial0")
        for flag in ("cgroup_memory=1", "cgroup_enable=memory", "cgroup_enable=cpuset"):
            assert line.split().count(flag) == 1
        assert "boot_delay=5" in (env.root(name) / "boot/firmware/config.txt").read_text().splitlines()
        assert "CONF_SWAPSIZE=0" in (env.root(name) / "etc/dphys-swapfile").read_text()
        assert (env.root(name) / "etc/hostname").read_text().strip() == name
    assert not (env.root("master0") / "boot/firmware").exists()
    assert (env.root("master0") / "etc/hostname").read_text().strip() == "master0"


def test_binaries_units_and_env(env: Env) -> None:
    for name, (_, role) in ROLES.items():
        binary = env.root(name) / "usr/local/bin/k3s"
        assert hashlib.sha256(binary.read_bytes()).hexdigest() == env.mirror.pins[K3S_KEY].digest
        assert os.access(binary, os.X_OK)
        assert not list((env.root(name) / "usr/local/bin").glob("*.edgerig-new"))
        svc = "k3s" if role == "server" else "k3s-agent"
        unit = (env.root(name) / f"etc/systemd/system/{svc}.service").read_text()
        assert f"ExecStart=/usr/local/bin/k3s {'server' if role == 'server' else 'agent'}" in unit
        envfile = env.root(name) / f"etc/systemd/system/{svc}.service.env"
        assert "K3S_CONFIG_FILE=/etc/rancher/k3s/config.yaml" in envfile.read_text()
        assert (env.root(name) / f"usr/local/bin/{svc}-uninstall.sh").exists()


def test_fleet_skips_are_reported(env: Env) -> None:
    assert env.first is not None and env.first.kubeconfig is None
    assert "no running systemd" in env.first.reason
    assert any("skipped 'start k3s'" in n for n in env.first.summary.notes["master0"])
    assert any("skipped 'start k3s-agent'" in n for n in env.first.summary.notes["worker0"])
    assert any("reboot needed" in n for n in env.first.summary.notes["worker0"])
    tools = {h: s.split(":")[0] for h, s in env.progress if ":" in s}
    assert tools["master0"] == "ansible" and tools["worker0"] == "pyinfra"
    order = [h for h, s in env.progress if s.startswith("install as")]
    assert order == ["master0", "master1", "master2", "worker0", "worker1"]


def test_second_run_changes_nothing(env: Env) -> None:
    assert env.first is not None and all(n > 0 for n in env.first.summary.changed.values())
    again = env.install()
    assert again.summary.changed == dict.fromkeys(ROLES, 0)


LISTEN = (
    "import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('0.0.0.0', 10250)); s.listen(); print('ready', flush=True); sys.stdin.read()"
)
CONNECT = (
    "import socket, sys\n"
    "try:\n    socket.create_connection((sys.argv[1], 10250), timeout=2).close(); print('open')\n"
    "except OSError as exc:\n    print(type(exc).__name__)"
)


def _probe(netns: str | None, address: str) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, sys.executable, "-c", CONNECT, address], capture_output=True, text=True,
                          timeout=20, check=True)
    return done.stdout.strip()


def test_host_firewall_admits_kubelet_only_from_cluster_members(env: Env) -> None:
    """The rules are loaded in each host's network stack: the kubelet port answers another node, while
    this machine (the operator, not a node) gets silence; SSH stays reachable (the tests use it)."""
    for name in ROLES:
        table = _in_host(env, name, "nft", "list", "table", "inet", "edgerig_host_firewall").stdout
        assert "tcp dport 10250 accept" in table and "10.232.0.13" in table, name
    listener = subprocess.Popen(
        ["ip", "netns", "exec", "erh-worker0", sys.executable, "-c", LISTEN],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        assert _probe("erh-master0", "10.232.0.13") == "open"  # a cluster member
        assert _probe(None, "10.232.0.13") in ("TimeoutError", "timeout")  # dropped, not refused
    finally:
        listener.kill()
        listener.wait()


SHIM = "/var/lib/rancher/k3s/data/0123abcd/bin/containerd-shim-runc-v2"


def _in_host(env: Env, name: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    """A command in the host's network namespace with the host's own binaries (its iptables backend)."""
    return subprocess.run(
        ["ip", "netns", "exec", f"erh-{name}", "chroot", str(env.root(name)), *cmd],
        capture_output=True,
        text=True,
        check=True,
    )


def _alive(pid: str) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _plant_k3s_leftovers(env: Env, name: str) -> subprocess.Popen[bytes]:
    """What a K3s that ran leaves behind, and what k3s-killall.sh removes."""
    for cmd in (
        "iptables -t nat -N KUBE-SERVICES",
        "iptables -t nat -A PREROUTING -j KUBE-SERVICES",
        "iptables -t filter -N CNI-FORWARD",
        "iptables -t filter -A FORWARD -m comment --comment flannel-forward -j ACCEPT",
        "iptables -t filter -A INPUT -p tcp --dport 2222 -m comment --comment keep-me -j ACCEPT",
        "ip link add cni0 type bridge",
        "ip link add vethpod0 type veth peer name vethpod1",
        "ip link set vethpod0 master cni0",
        "ip link add flannel.1 type bridge",  # the name is what counts (no dummy module here)
    ):
        _in_host(env, name, *cmd.split())
    (env.root(name) / "var/lib/cni/networks").mkdir(parents=True)
    # A shim (argv[0] as K3s starts it) with a pod process under it, in the host's network namespace.
    exec_shim = f"import os; os.execv('/bin/sh', ['{SHIM}', '-c', 'sleep 300 & wait'])"
    return subprocess.Popen(
        ["ip", "netns", "exec", f"erh-{name}", "python3", "-c", exec_shim], start_new_session=True
    )


def test_reset_restores_pre_install_state_and_stops_what_k3s_left(env: Env) -> None:
    (env.root("worker1") / "etc/rancher/node").mkdir(parents=True, exist_ok=True)
    (env.root("worker1") / "etc/rancher/node/password").write_text("stale\n")  # the stale-password trap
    shims = {name: _plant_k3s_leftovers(env, name) for name in ("master2", "worker1")}
    # Another host's shim is not this host's to kill (the fleet shares one kernel).
    bystander = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            "erh-master0",
            "python3",
            "-c",
            f"import os; os.execv('/bin/sleep', ['{SHIM}', '300'])",
        ],
        start_new_session=True,
    )
    try:
        time.sleep(0.5)
        children = {
            n: subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
            for n, p in shims.items()
        }
        assert all(children.values()), children
        api.reset(env.testbed, ["master2", "worker1"], known_hosts=str(env.fleet.known_hosts))
        for name, shim in shims.items():
            assert shim.wait(timeout=10) == -9, name  # killed with -9, with its whole tree
            for pid in children[name]:
                assert not _alive(pid), (name, pid)
            rules = _in_host(env, name, "iptables-save").stdout
            assert "keep-me" in rules and not any(m in rules for m in ("KUBE-", "CNI-", "flannel"))
            links = _in_host(env, name, "ip", "-o", "link").stdout
            assert not any(link in links for link in ("cni0", "vethpod0", "flannel.1")), links
            assert not (env.root(name) / "var/lib/cni").exists()
        assert bystander.poll() is None
    finally:
        for proc in (*shims.values(), bystander):
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    summary = api.reset(env.testbed, list(ROLES), known_hosts=str(env.fleet.known_hosts))
    for name in ROLES:
        assert snapshot(env.root(name), TOUCHED) == env.before[name], name
        assert not (env.root(name) / "etc/rancher").exists()
        assert any("Node object not deleted" in n for n in summary.notes[name])


def test_wrong_sha256_fails_before_any_host_is_touched(env: Env, tmp_path: Path) -> None:
    wrong = {**env.mirror.pins, K3S_KEY: Pin("sha256", "0" * 64, "test")}
    with pytest.raises(ArtefactError, match=r"sha256 mismatch .* Nothing was installed"):
        api.install(
            env.testbed, known_hosts=str(env.fleet.known_hosts), artefact_pins=wrong, artefact_cache=tmp_path
        )
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    for name in ROLES:
        assert not (env.root(name) / "usr/local/bin/k3s").exists()


def test_rejoin_after_reset(env: Env) -> None:
    # One host per tool is enough to show the reset hosts take a fresh install (keeps the suite fast).
    result = env.install(nodes=["master0", "worker1"])
    assert set(result.summary.changed) == {"master0", "worker1"}
    assert all(n > 0 for n in result.summary.changed.values())
    assert env.config("master0")["cluster-init"] is True
    assert env.config("worker1")["server"] == "https://10.232.0.10:6443"
    assert (env.root("worker1") / "usr/local/bin/k3s").exists()
    assert not (env.root("worker1") / "etc/rancher/node/password").exists()
    assert not (env.root("master1") / "etc/rancher").exists()  # not selected, stays reset
