"""The KubeEdge layout on a 2-host fleet, air-gapped: everything from a local mirror, verified by the
digests pinned for it. CloudCore's prerequisites on a cloud VM (ansible-runner), EdgeCore's on a
Pi-like edge host (pyinfra). The tests run in file order on one fleet: install, a second run with
0 changes, each tool's own CLI on the same run directory (pyinfra, then ansible-playbook), reset
and rejoin leaving no stale KubeEdge state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hosts_support import (
    AIRGAP_KEY,
    FAKE_AIRGAP,
    FLEET_REGISTRY,
    KUBEEDGE_ROLES,
    Mirror,
    air_gapped_kubeedge_testbed,
    needs_root,
    snapshot,
)

from experiments.testbeds.fleet import hosts as fleet_mod
from infra.hosts import api, node_objects, render_kubeedge
from infra.model import KNOWN_REGISTRIES

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
ROLES = KUBEEDGE_ROLES
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REGISTRY = FLEET_REGISTRY
# What an install may touch on the edge; containerd's config.toml stays after a reset (host
# preparation, like the packages), so /etc/containerd is not in it.
EDGE_TOUCHED = (
    "etc/kubeedge",
    "etc/edgerig",
    "etc/cni",
    "var/lib/kubeedge",
    "var/lib/edged",
    "var/lib/edgerig",
    "usr/local/bin",
    "usr/local/lib",
)
SHIM = "/usr/bin/containerd-shim-runc-v2"


@pytest.fixture(scope="module")
def ke(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("kefleet") / "state"
    fleet = fleet_mod.up(list(ROLES), {"edge0"}, state_dir=state)
    try:
        root = lambda n: state / "hosts" / n / "root"  # noqa: E731
        before = snapshot(root("edge0"), EDGE_TOUCHED)
        testbed = air_gapped_kubeedge_testbed(fleet, mirror)
        kw = {
            "known_hosts": str(fleet.known_hosts),
            "artefact_pins": mirror.pins,
            "artefact_cache": tmp_path_factory.mktemp("kecache"),
        }
        first = api.install(testbed, **kw)
        yield {
            "fleet": fleet,
            "testbed": testbed,
            "kw": kw,
            "first": first,
            "root": root,
            "before": before,
            "run": tmp_path_factory.mktemp("kerun") / "run",
        }
    finally:
        fleet_mod.down(state)


def _in_host(
    ke: dict[str, Any], name: str, *cmd: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", f"erh-{name}", "chroot", str(ke["root"](name)), *cmd],
        capture_output=True,
        text=True,
        check=check,
    )


def _conflist(ke: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ke["root"]("edge0") / "etc/cni/net.d/10-edgerig.conflist").read_text())
    return doc


def test_cloudcore_prerequisites_from_the_mirror(ke: dict[str, Any], mirror: Mirror) -> None:
    root: Path = ke["root"]("cloud0")
    init = (root / "usr/local/lib/edgerig/keadm-init.sh").read_text()
    assert "keadm init --advertise-address=10.232.0.10 --kubeedge-version=v1.20.0" in init
    cloudcore = mirror.pins["docker.io/kubeedge/cloudcore:v1.20.0"].digest
    assert f"cloudCore.image.tag=v1.20.0@sha256:{cloudcore}" in init
    assert "cloudCore.nodeSelector.kubernetes\\.io/hostname=cloud0" in init
    assert (root / "usr/local/bin/keadm").read_bytes().startswith(b"#!/bin/sh\necho 'fake keadm")
    # Air-gapped: K3s's own images come as the release's airgap tarball, verified like the binary.
    assert (
        root / f"var/lib/rancher/k3s/agent/images/{AIRGAP_KEY.rsplit('/', 1)[1]}"
    ).read_bytes() == FAKE_AIRGAP
    registries = (root / "etc/rancher/k3s/registries.yaml").read_text()
    assert all(f"{r}:\n    endpoint:\n    - {REGISTRY}" in registries for r in KNOWN_REGISTRIES)
    config = (root / "etc/rancher/k3s/config.yaml").read_text()
    assert "egress-selector-mode: disabled" in config and "- kubelet-certificate-authority=\n" in config
    assert not (root / "var/lib/edgerig/kubeedge/cloudcore-ready").exists()
    notes = ke["first"].summary.notes
    assert any("skipped 'keadm init (CloudCore)'" in n for n in notes["cloud0"])
    assert any("keadm gettoken skipped" in n for n in notes["cloud0"])


def test_edgecore_prerequisites_checked_by_the_hosts_own_tools(ke: dict[str, Any]) -> None:
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
    # The host's own containerd reads the rendered config: the runc runtime survives, with the
    # systemd cgroup driver EdgeCore is told, the pinned pause image and the mirror directory.
    dump = _in_host(ke, "edge0", "containerd", "-c", "/etc/containerd/config.toml", "config", "dump").stdout
    runc = dump[dump.index('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]') :]
    assert 'runtime_type = "io.containerd.runc.v2"' in runc.split("[plugins", 2)[1]
    assert "SystemdCgroup = true" in runc
    assert re.search(r'sandbox_image = "docker.io/kubeedge/pause:3.6@sha256:[0-9a-f]{64}"', dump)
    assert 'config_path = "/etc/containerd/certs.d"' in dump
    hosts_toml = (root / "etc/containerd/certs.d/docker.io/hosts.toml").read_text()
    assert f'[host."{REGISTRY}"]' in hosts_toml
    # Debian bookworm's CNI plugins (1.1.1) support spec 1.0.0: that config is the one installed.
    assert _conflist(ke)["cniVersion"] == "1.0.0"
    assert _conflist(ke)["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "10.88.0.0/24"
    assert not (root / "etc/rancher/k3s/config.yaml").exists()  # EdgeCore replaces the kubelet
    assert not (root / "etc/kubeedge").exists() and not (root / "etc/edgerig/kubeedge/token").exists()
    notes = ke["first"].summary.notes["edge0"]
    assert any("keadm join left out: no join token yet" in n for n in notes)
    assert any("skipped 'start containerd'" in n for n in notes)


def test_second_run_changes_nothing(ke: dict[str, Any]) -> None:
    assert all(n > 0 for n in ke["first"].summary.changed.values())
    again = api.install(ke["testbed"], **ke["kw"])
    assert again.summary.changed == {"cloud0": 0, "edge0": 0}


def _fake_old_cni_plugins(ke: dict[str, Any]) -> Path:
    """Ubuntu 22.04's containernetworking-plugins 0.9.1 (spec <= 0.4.0), in place of bookworm's."""
    bridge = ke["root"]("edge0") / "usr/lib/cni/bridge"
    kept = bridge.with_name("bridge.bookworm")
    shutil.copy2(bridge, kept)
    bridge.write_text(
        "#!/bin/sh\n# test fixture: what containernetworking-plugins 0.9.1 answers to VERSION\n"
        'echo \'{"cniVersion":"0.4.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0"]}\'\n'
    )
    return kept


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
    }
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, cwd=REPO, env=env)


def _changed_tasks(stdout: str) -> dict[str, list[str]]:
    """host -> the tasks ansible-playbook reported as changed there."""
    out: dict[str, list[str]] = {}
    task = ""
    for line in stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") : line.index("]")]
        elif line.startswith("changed: ["):
            out.setdefault(line[len("changed: [") :].split("]", 1)[0], []).append(task)
    return out


def test_each_tools_own_cli_on_the_run_directory(ke: dict[str, Any]) -> None:
    written, _ = api.prepare(ke["testbed"], ke["run"], **ke["kw"])
    # What `cluster up` changes through the API is written beside the inventories for these users.
    objects = written.path / node_objects.SCRIPT
    assert objects.stat().st_mode & 0o777 == 0o700
    assert "taint node edge0 node-role.kubernetes.io/edge:NoSchedule" in objects.read_text()
    kept = _fake_old_cni_plugins(ke)
    try:
        # pyinfra's CLI on both hosts: only the CNI config changes, to the version the plugins support.
        pyinfra = _cli(str(BIN / "pyinfra"), "-y", str(written.pyinfra_inventory), "edgerig_deploy.install")
        assert pyinfra.returncode == 0, pyinfra.stdout + pyinfra.stderr
        assert _conflist(ke)["cniVersion"] == "0.4.0"
    finally:
        kept.replace(kept.with_name("bridge"))
    # ansible-playbook on both hosts: Ansible finds everything pyinfra left as it would have done it,
    # and puts back the config the restored plugins support.
    playbook = _cli(
        str(BIN / "ansible-playbook"),
        "--diff",
        "-i",
        str(written.ansible_inventory),
        "playbooks/ansible/install.yml",
    )
    assert playbook.returncode == 0, playbook.stdout[-3000:] + playbook.stderr
    changed = _changed_tasks(playbook.stdout)
    assert changed == {"edge0": ["kubeedge_edge : Choose the CNI config and join the cloud (keadm join)"]}, (
        playbook.stdout
    )
    assert _conflist(ke)["cniVersion"] == "1.0.0"
    assert api.install(ke["testbed"], **ke["kw"]).summary.changed == {"cloud0": 0, "edge0": 0}


def _plant_edge_leftovers(ke: dict[str, Any]) -> subprocess.Popen[bytes]:
    """What a joined EdgeCore node holds, and what keadm reset edge misses: certificates and config
    in /etc/kubeedge, its state directories, the CNI bridge and state, a pod's containerd shim."""
    root: Path = ke["root"]("edge0")
    for path, text in (
        ("etc/kubeedge/ca/rootCA.crt", "test fixture\n"),
        ("etc/kubeedge/certs/server.crt", "test fixture\n"),
        ("etc/kubeedge/config/edgecore.yaml", "left over by an earlier join\n"),
        ("var/lib/kubeedge/edgecore.db", ""),
        ("var/lib/edged/pods/x/volumes", ""),
        ("var/lib/cni/networks/edgerig-edge/10.88.0.2", ""),
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    _in_host(ke, "edge0", "ip", "link", "add", "cni0", "type", "bridge")
    _in_host(ke, "edge0", "iptables", "-t", "nat", "-N", "CNI-HOSTPORT-DNAT")
    # A shim as containerd starts it for a pod (argv as ps shows it), with the pod's process under it.
    argv = [SHIM, "-c", "sleep 300 & wait", "-namespace", "k8s.io", "-id", "pod0"]
    shim = f"import os; os.execv('/bin/sh', {argv!r})"
    return subprocess.Popen(
        ["ip", "netns", "exec", "erh-edge0", "python3", "-c", shim], start_new_session=True
    )


def test_reset_leaves_no_kubeedge_state_and_the_edge_can_join_again(ke: dict[str, Any]) -> None:
    shim = _plant_edge_leftovers(ke)
    try:
        time.sleep(0.5)
        summary = api.reset(ke["testbed"], ["cloud0", "edge0"], known_hosts=ke["kw"]["known_hosts"])
        assert shim.wait(timeout=10) == -9
    finally:
        if shim.poll() is None:
            os.killpg(shim.pid, 9)
            shim.wait()
    root: Path = ke["root"]("edge0")
    for gone in (
        "etc/kubeedge",
        "var/lib/kubeedge",
        "var/lib/edged",
        "var/lib/cni",
        "etc/edgerig",
        "usr/local/bin/keadm",
        "etc/cni/net.d/10-edgerig.conflist",
    ):
        assert not (root / gone).exists(), gone
    assert "cni0" not in _in_host(ke, "edge0", "ip", "-o", "link").stdout
    assert "CNI-" not in _in_host(ke, "edge0", "iptables-save").stdout
    assert snapshot(root, EDGE_TOUCHED) == ke["before"]
    assert not (ke["root"]("cloud0") / "usr/local/bin/keadm").exists()
    assert not (ke["root"]("cloud0") / "etc/rancher").exists()
    # No cluster left to delete the Node from; with one, reset deletes it (test_systemd_path).
    assert any("Node object not deleted" in n for n in summary.notes["edge0"])
    rejoin = api.install(ke["testbed"], **ke["kw"])
    assert all(n > 0 for n in rejoin.summary.changed.values())
    assert _conflist(ke)["cniVersion"] == "1.0.0" and (root / render_kubeedge.KEADM_JOIN_SCRIPT[1:]).exists()
