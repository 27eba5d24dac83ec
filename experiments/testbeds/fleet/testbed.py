"""`fleet`: the VEI system on local SSH test hosts, with every fault injected over SSH (root only).

The hosts are the ones that rehearse host configuration (hosts.py: Debian bookworm rootfs, own
network namespace, hostname and sshd), built on the same namespace library as the emulated
testbed. The system's processes run in the hosts' namespaces, so a host's firewall governs them
as it would on a real node. Faults take the path a Pulumi stack's faults take: SSH with the fleet's
key and known_hosts, a self-reverting firewall drop for `cut`, and for `kill` a SIGKILL, from the
host itself, of the VEI processes named in its pid file (a test host has no K3s and must never run
`reboot -f`: it shares this machine's kernel).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from experiments.testbeds import journal, ssh_faults
from experiments.testbeds.base import CleanCheck, FaultRecord, NodeInfo, TestbedError
from experiments.testbeds.emulated import require_root
from experiments.testbeds.fleet import hosts as fleet_hosts
from experiments.testbeds.placement import Placement, place
from experiments.testbeds.system import Host, SystemTestbed, VeiSystem
from infra.hosts.inventory import SshTarget

STATE_DIR = Path(os.environ.get("EDGERIG_FLEET_TESTBED_STATE", "/run/edgerig/fleet-testbed"))
MAX_NODES = 9


def _sweep_fleet(teardown: dict[str, Any]) -> list[str]:
    return fleet_hosts.down(Path(teardown.get("state_dir", STATE_DIR)))


journal.register_sweeper("fleet", _sweep_fleet)


class FleetTestbed(SystemTestbed):
    kind = "fleet"
    fault_kinds = ("kill", "cut")

    fleet: fleet_hosts.Fleet | None = None

    @property
    def placement(self) -> Placement:
        if self.spec.placement is not None:
            return dict(self.spec.placement)
        if not 1 <= self.spec.nodes <= MAX_NODES:
            raise TestbedError(f"a fleet testbed has 1 to {MAX_NODES} hosts, got {self.spec.nodes}")
        return place([f"n{i}" for i in range(1, self.spec.nodes + 1)])

    def preflight(self) -> None:
        require_root("the fleet testbed")

    def _hold(self) -> contextlib.AbstractContextManager[None]:
        return journal.exclusive("fleet")

    def _teardown_record(self) -> dict[str, Any]:
        return {"state_dir": str(STATE_DIR)}

    def _up(self) -> None:
        placement = self.placement
        self.progress(f"building {len(placement)} SSH test hosts (first time: a cached debootstrap)")
        try:
            self.fleet = fleet_hosts.up(list(placement), state_dir=STATE_DIR)
        except fleet_hosts.FleetError as err:
            raise TestbedError(f"the fleet testbed cannot build its hosts: {err}") from None
        sup = self.supervisor
        hosts = {h.name: Host(h.name, h.node) for h in self.fleet.hosts}
        self.system = VeiSystem(sup, sup.temp_dir("fleet"), hosts, placement, self.spec)
        self.progress("starting NATS cluster, gateways and vision apps on the hosts")
        self.system.start()
        for name in hosts:
            self._write_pid_file(name)

    def _down(self) -> None:
        self.system = None
        if self.fleet is not None:
            fleet_hosts.down(self.fleet.state_dir)
            self.fleet = None

    def _host(self, name: str) -> fleet_hosts.FleetHost:
        assert self.fleet is not None
        return next(h for h in self.fleet.hosts if h.name == name)

    def ssh_target(self, name: str) -> SshTarget:
        assert self.fleet is not None
        host = self._host(name)
        return SshTarget(name, host.address, 22, "root", str(self.fleet.key_path),
                         str(self.fleet.known_hosts))

    def _write_pid_file(self, name: str) -> None:
        """The host's own record of the VEI processes it runs, for the SSH kill fault."""
        assert self.fleet is not None
        path = self.fleet.state_dir / "hosts" / name / "root" / ssh_faults.PID_FILE.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(" ".join(str(c.pid) for c in self._sys.children.get(name, []) if c.alive()) + "\n")

    # -- what it is --------------------------------------------------------------------------------
    @property
    def nodes(self) -> list[NodeInfo]:
        assert self.fleet is not None
        return [NodeInfo(h.name, h.address, "cloud", (), self._components(h.name)) for h in self.fleet.hosts]

    def describe(self) -> dict[str, Any]:
        assert self.fleet is not None
        return {**super().describe(), "ssh": {"user": "root", "known_hosts": str(self.fleet.known_hosts)}}

    def _check_clean(self, check: CleanCheck) -> None:
        super()._check_clean(check)
        check.checked.append("every host answers SSH")
        for host in self.fleet.hosts if self.fleet else []:
            if not ssh_faults.ssh_answers(self.ssh_target(host.name)):
                check.problems.append(f"{host.name} does not answer SSH")

    # -- faults over SSH ---------------------------------------------------------------------------
    def _fail(self, node: str, kind: str, down_for_s: float | None) -> FaultRecord:
        target = self.ssh_target(node)
        self._down_nodes = self._down_nodes | {node}
        if kind == "cut":
            if down_for_s is None or down_for_s <= 0:
                raise TestbedError("a cut over SSH reverts itself, so it needs down_for_s > 0 up front")
            ssh_faults.inject(target, ssh_faults.cut_command(target, down_for_s), "cut")
            injected = time.time_ns() + int(ssh_faults.CUT_DELAY_S * 1e9)
            if not ssh_faults.wait_unreachable(target):
                raise TestbedError(f"the cut of {node} did not take effect: it still answers SSH")
            return FaultRecord(kind, node, injected, detail={"down_for_s": down_for_s, "via": "ssh"})
        pids = [c.pid for c in self._sys.children.get(node, []) if c.alive()]
        ssh_faults.inject(target, ssh_faults.kill_command(target, "pidfile"), "kill")
        record = FaultRecord(kind, node, time.time_ns(), killed_pids=len(pids), detail={"via": "ssh"})
        deadline = time.monotonic() + 5
        while any(c.alive() for c in self._sys.children.get(node, [])) and time.monotonic() < deadline:
            time.sleep(0.05)
        return record

    def _restore(self, fault: FaultRecord) -> None:
        target = self.ssh_target(fault.node)
        if fault.kind == "cut":
            # The host lifts the drop itself; wait for that, then for its replicas to be reachable.
            down_for = float(fault.detail.get("down_for_s", 0))
            remaining = max(0.0, fault.injected_unix_ns / 1e9 + down_for - time.time())
            ssh_faults.wait_reachable(target, remaining + 30)
        else:
            self._sys.start_node(fault.node)
            self._write_pid_file(fault.node)
        self._down_nodes = self._down_nodes - {fault.node}
