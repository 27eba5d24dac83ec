"""The branch real hosts take: a host where systemd runs (here a stand-in systemctl that records
its calls) gets its services started, restricted labels set through the API, and the kubeconfig
is fetched from the first server with its address rewritten.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hosts_support import Mirror, fleet_testbed, needs_root

from experiments.testbeds.fleet import hosts as fleet_mod
from infra.hosts import api

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
ROLES = {"master0": ("cloud", "server"), "worker0": ("edge", "agent")}
# systemctl stand-in (test fixture): logs calls; a unit is "active" once `enable --now` ran for it.
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> /var/log/fake-systemctl.log
for last in "$@"; do :; done
case "$1" in
  is-active) test -f "/run/fake-active-$last" ;;
  enable) touch "/run/fake-active-$last" ;;
esac
"""
KUBECONFIG = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\n"


def test_systemd_host_starts_services_and_returns_kubeconfig(mirror: Mirror, tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    fleet = fleet_mod.up(list(ROLES), set(), state_dir=state)
    try:
        for name in ROLES:
            root = state / "hosts" / name / "root"
            (root / "run/systemd/system").mkdir(parents=True)
            (root / "usr/local/sbin/systemctl").write_text(FAKE_SYSTEMCTL)
            (root / "usr/local/sbin/systemctl").chmod(0o755)
        master = state / "hosts/master0/root"
        (master / "etc/rancher/k3s").mkdir(parents=True)
        (master / "etc/rancher/k3s/k3s.yaml").write_text(KUBECONFIG)  # what a started K3s writes
        testbed = fleet_testbed(fleet, mirror, ROLES)
        kw = {"known_hosts": str(fleet.known_hosts), "artefact_sums": mirror.sums, "artefact_cache": tmp_path}
        result = api.install(testbed, **kw)
        assert result.kubeconfig is not None and "server: https://10.232.0.10:6443" in result.kubeconfig
        assert not any("skipped" in n for notes in result.summary.notes.values() for n in notes)
        started = (master / "var/log/fake-systemctl.log").read_text()
        assert "enable --now k3s" in started and "enable --now chrony" in started
        worker = (state / "hosts/worker0/root/var/log/fake-systemctl.log").read_text()
        assert "enable --now k3s-agent" in worker
        k3s_calls = (master / "var/log/fake-k3s.log").read_text()
        assert "kubectl label node worker0 node-role.kubernetes.io/edge= --overwrite" in k3s_calls
        again = api.install(testbed, **kw)
        assert again.summary.changed == {"master0": 0, "worker0": 0}
        # Reset deletes the Node object and its node-password secret through the surviving server.
        api.reset(testbed, ["worker0"], known_hosts=kw["known_hosts"])
        k3s_calls = (master / "var/log/fake-k3s.log").read_text()
        assert "kubectl delete node worker0 --ignore-not-found" in k3s_calls
        assert "delete secret worker0.node-password.k3s" in k3s_calls
    finally:
        fleet_mod.down(state)
