"""The branch real hosts take: hosts where systemd runs (here a stand-in systemctl that keeps unit
state in files and records its calls, answering the queries Ansible's systemd_service module and
pyinfra's systemd facts make) get their services started and restarted when their configuration
changed, restricted labels and EdgeCore taints set through the API, the kubeconfig fetched, and the
KubeEdge steps run with a recording keadm that behaves like v1.20's where it matters (it refuses to
join over a non-empty /etc/kubeedge and writes edgecore.yaml).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hosts_support import TOKEN, Mirror, fleet_testbed, needs_root, verify_units

from experiments.testbeds.fleet import hosts as fleet_mod
from infra.hosts import api, firewall, render, render_kubeedge

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
# systemctl stand-in (test fixture): unit state in /run/fake-{active,enabled}-<unit>, calls logged. It
# refuses what systemd refuses - an unknown verb, a unit with no unit file - and `enable` links the
# unit into its WantedBy= target as systemctl does; the unit files themselves are checked by the real
# `systemd-analyze verify` on this machine (verify_units).
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> /var/log/fake-systemctl.log
unit() { u=$(echo "$1" | tr -d "'"); echo "${u%.service}"; }
active() { echo "/run/fake-active-$(unit "$1")"; }
enabled() { echo "/run/fake-enabled-$(unit "$1")"; }
file() {
  for d in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
    [ -f "$d/$(unit "$1").service" ] && { echo "$d/$(unit "$1").service"; return 0; }
  done
  return 1
}
need() { file "$1" >/dev/null || { echo "Unit $(unit "$1").service not found." >&2; exit 5; }; }
case "$1" in
  daemon-reload) ;;
  show)
    for last in "$@"; do :; done; u=$(unit "$last")
    if file "$u" >/dev/null; then l=loaded; else l=not-found; fi
    if [ -f "$(active "$u")" ]; then a=active; s=running; else a=inactive; s=dead; fi
    if [ -f "$(enabled "$u")" ]; then e=enabled; else e=disabled; fi
    printf 'Id=%s.service\\nLoadState=%s\\n' "$u" $l
    printf 'ActiveState=%s\\nSubState=%s\\nUnitFileState=%s\\n' $a $s $e ;;
  is-active) test -f "$(active "$2")" ;;
  is-enabled) if test -f "$(enabled "$2")"; then echo enabled; else echo disabled; exit 1; fi ;;
  enable)
    [ "$2" = --now ] && { shift; need "$2"; touch "$(active "$2")"; }
    need "$2"; touch "$(enabled "$2")"
    for t in $(sed -n 's/^WantedBy=//p' "$(file "$2")"); do
      mkdir -p "/etc/systemd/system/$t.wants"
      ln -sf "$(file "$2")" "/etc/systemd/system/$t.wants/$(unit "$2").service"
    done ;;
  disable)
    [ "$2" = --now ] && { shift; rm -f "$(active "$2")"; }
    rm -f "$(enabled "$2")" /etc/systemd/system/*.wants/"$(unit "$2").service" ;;
  start|restart) need "$2"; touch "$(active "$2")" ;;
  stop) rm -f "$(active "$2")" ;;
  *) echo "fake systemctl: unexpected call: $*" >&2; exit 1 ;;
esac
"""
# keadm stand-in (test fixture), shipped in the mirror's keadm tarballs for this test.
FAKE_KEADM = b"""#!/bin/sh
echo "keadm $*" >> /var/log/fake-keadm.log
case "$1" in
  gettoken) echo "test-only-join-token" ;;
  join)
    if [ -n "$(ls -A /etc/kubeedge 2>/dev/null)" ]; then
      echo "the management directory /etc/kubeedge is not clean, please remove it first" >&2; exit 1
    fi
    mkdir -p /etc/kubeedge/ca /etc/kubeedge/certs /etc/kubeedge/config
    # keadm writes EdgeCore's unit (common.GenerateServiceFile) and starts it
    printf '[Service]\\nExecStart=/usr/local/bin/edgecore\\n' > /etc/systemd/system/edgecore.service
    echo cert > /etc/kubeedge/ca/rootCA.crt; echo cert > /etc/kubeedge/certs/server.crt
    printf 'modules:\\n  edged:\\n    tailoredKubeletConfig:\\n      nodeStatusUpdateFrequency: 10s\\n' \\
      > /etc/kubeedge/config/edgecore.yaml ;;
  reset) rm -rf /etc/kubeedge/config /etc/systemd/system/edgecore.service ;;
esac
"""
FAKE_CTR = '#!/bin/sh\necho "ctr $*" >> /var/log/fake-keadm.log\n'
KUBECONFIG = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\n"


SECURE_SERVER_TOKEN = "K10" + "c0ffee" * 10 + "abcd::server:test-only-server-secret"
SECURE_AGENT_TOKEN = "K10" + "c0ffee" * 10 + "abcd::node:test-only-agent-secret"


def _started_k3s_files(root: Path) -> None:
    """What a started first server writes: its root-only kubeconfig and its secure join tokens."""
    for path, text in (
        (render.K3S_KUBECONFIG, KUBECONFIG),
        (render.K3S_SERVER_TOKEN, SECURE_SERVER_TOKEN + "\n"),
        (render.K3S_AGENT_TOKEN, SECURE_AGENT_TOKEN + "\n"),
    ):
        file = root / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        file.chmod(0o600)


def _fake_systemd(root: Path) -> None:
    (root / "run/systemd/system").mkdir(parents=True)
    for name, text in (("systemctl", FAKE_SYSTEMCTL), ("ctr", FAKE_CTR)):
        (root / "usr/local/sbin" / name).write_text(text)
        (root / "usr/local/sbin" / name).chmod(0o755)


def _log(root: Path, name: str) -> str:
    path = root / f"var/log/fake-{name}.log"
    return path.read_text() if path.exists() else ""


def test_systemd_host_starts_services_and_returns_kubeconfig(mirror: Mirror, tmp_path: Path) -> None:
    roles = {"master0": ("cloud", "server"), "worker0": ("edge", "agent")}
    state = tmp_path / "fleet"
    fleet = fleet_mod.up(list(roles), set(), state_dir=state)
    try:
        for name in roles:
            _fake_systemd(state / "hosts" / name / "root")
        master = state / "hosts/master0/root"
        _started_k3s_files(master)
        testbed = fleet_testbed(fleet, mirror, roles)
        kw = {"known_hosts": str(fleet.known_hosts), "artefact_pins": mirror.pins, "artefact_cache": tmp_path}
        result = api.install(testbed, **kw)
        # Read through sudo: the SSH user cannot read the root-only kubeconfig itself.
        assert result.kubeconfig is not None and "server: https://10.232.0.10:6443" in result.kubeconfig
        assert not any("skipped" in n for notes in result.summary.notes.values() for n in notes)
        # The agent joins with the secure agent token the running server wrote (it pins the CA).
        agent_token = state / "hosts/worker0/root" / render.K3S_TOKEN_FILE.lstrip("/")
        assert agent_token.read_text() == SECURE_AGENT_TOKEN + "\n"
        assert stat.S_IMODE(agent_token.stat().st_mode) == 0o600
        for name, unit in (("master0", "k3s.service"), ("worker0", "k3s-agent.service")):
            verify_units(state / "hosts" / name / "root", [unit, firewall.UNIT], tmp_path / name)
            wants = state / "hosts" / name / "root/etc/systemd/system/multi-user.target.wants"
            for enabled in (unit, firewall.UNIT):  # linked as systemctl links them
                assert (wants / enabled).readlink() == Path("/etc/systemd/system") / enabled, (name, enabled)
        started = _log(master, "systemctl")
        lines = started.splitlines()
        assert {"enable k3s", "start chrony"} <= set(lines), started  # Ansible's systemd_service
        # Started once: the handler for the new unit and config starts it, the start task finds it up.
        assert lines.count("start k3s") == 1 and "restart k3s" not in lines, started
        worker = _log(state / "hosts/worker0/root", "systemctl").splitlines()
        assert "start k3s-agent" in worker and "enable k3s-agent" in worker
        k3s_calls = _log(master, "k3s")
        assert "kubectl label node worker0 node-role.kubernetes.io/edge= --overwrite" in k3s_calls
        again = api.install(testbed, **kw)
        assert again.summary.changed == {"master0": 0, "worker0": 0}
        assert _log(master, "systemctl").count("restart") == started.count("restart")  # nothing changed
        # A changed config is applied: the unit restarts, as install.sh restarts on a changed unit.
        changed = fleet_testbed(fleet, mirror, roles, k3s={"token": TOKEN, "tls_san": ["k3s.lab"]})
        api.install(changed, **kw)
        assert _log(master, "systemctl").splitlines().count("restart k3s") == 1
        # Reset deletes the Node object and its node-password secret through the surviving server.
        api.reset(testbed, ["worker0"], known_hosts=kw["known_hosts"])
        k3s_calls = _log(master, "k3s")
        assert "kubectl delete node worker0 --ignore-not-found" in k3s_calls
        assert "delete secret worker0.node-password.k3s" in k3s_calls
    finally:
        fleet_mod.down(state)


def test_kubeedge_join_reset_and_rejoin_where_systemd_runs(tmp_path: Path) -> None:
    roles = {"cloud0": ("cloud", "server"), "edge0": ("edge", "edge")}
    mirror = Mirror(tmp_path / "mirror", keadm_payload=FAKE_KEADM)
    state = tmp_path / "fleet"
    fleet = fleet_mod.up(list(roles), {"edge0"}, state_dir=state)
    try:
        cloud, edge = (state / "hosts" / n / "root" for n in roles)
        for root in (cloud, edge):
            _fake_systemd(root)
        # A Pi that is already prepared (no reboot to wait for) and has no swap file: the deploy's
        # systemd branch runs through pyinfra.
        cmdline = edge / "boot/firmware/cmdline.txt"
        cmdline.write_text(
            cmdline.read_text().strip() + " cgroup_memory=1 cgroup_enable=memory cgroup_enable=cpuset\n"
        )
        (edge / "etc/dphys-swapfile").unlink()
        _started_k3s_files(cloud)
        testbed = fleet_testbed(fleet, mirror, roles, kubeedge=True)
        kw = {"known_hosts": str(fleet.known_hosts), "artefact_pins": mirror.pins, "artefact_cache": tmp_path}
        api.install(testbed, **kw)
        init = _log(cloud, "keadm")
        assert "keadm init --advertise-address=10.232.0.10" in init and " --force " in init
        assert (cloud / render_kubeedge.CLOUDCORE_READY[1:]).exists()  # rollout waited for (fake k3s: ok)
        assert "rollout status deployment/cloudcore --timeout=600s" in _log(cloud, "k3s")
        token = edge / "etc/edgerig/kubeedge/token"
        assert token.read_text() == "test-only-join-token\n" and stat.S_IMODE(token.stat().st_mode) == 0o600
        calls = _log(edge, "keadm").splitlines()
        pulls = [c for c in calls if c.startswith("ctr -n k8s.io images pull")]
        join = next(i for i, c in enumerate(calls) if c.startswith("keadm join"))
        assert len(pulls) == 2 and all("@sha256:" in p for p in pulls) and calls.index(pulls[-1]) < join
        assert "--token=test-only-join-token" in calls[join]
        # EdgeCore's status period, set in the edgecore.yaml keadm wrote; edgecore restarted for it.
        assert "nodeStatusUpdateFrequency: 4s" in (edge / "etc/kubeedge/config/edgecore.yaml").read_text()
        edge_calls = _log(edge, "systemctl").splitlines()
        assert "restart edgecore" in edge_calls and "start containerd.service" in edge_calls, edge_calls
        assert f"kubectl taint node edge0 {'node-role.kubernetes.io/edge:NoSchedule'} --overwrite" in _log(
            cloud, "k3s"
        )
        assert api.install(testbed, **kw).summary.changed == {"cloud0": 0, "edge0": 0}
        assert _log(edge, "keadm").count("keadm join") == 1 and _log(cloud, "keadm").count("keadm init") == 1
        # Reset: keadm's own reset, then everything it leaves; the Node is deleted through the cloud.
        api.reset(testbed, ["edge0"], known_hosts=kw["known_hosts"])
        assert "keadm reset edge --force" in _log(edge, "keadm")
        for gone in ("etc/kubeedge", "etc/edgerig", "var/lib/edgerig", "usr/local/bin/keadm"):
            assert not (edge / gone).exists(), gone
        assert "kubectl delete node edge0 --ignore-not-found" in _log(cloud, "k3s")
        # The rejoin succeeds: keadm finds /etc/kubeedge clean (it refuses otherwise).
        api.install(testbed, nodes=["edge0"], **kw)
        assert (
            _log(edge, "keadm").count("keadm join") == 2 and (edge / render_kubeedge.EDGE_JOINED[1:]).exists()
        )
    finally:
        fleet_mod.down(state)
        mirror.close()
