"""`emulated`: an N-node cluster of network namespaces on this machine (root only).

Every node is a namespace `erf-<node>` (10.231.0.11.. on bridge `erfbr0`, this machine is
10.231.0.1) running its replicas of NATS (a routed 3-server cluster with clustered JetStream), the
VEI gateway and the vision app, as the placement says. Clients (camera, sink) run in the root
namespace and never fail. Faults:

- `kill`: SIGKILL every process of the node (`ip netns pids`), as a power loss or a crashed
  kubelet would; `restore` starts the node's replicas again, each waited for.
- `cut`: take the node's host-side veth down: silent, no RST; `restore` brings it back.

One emulated testbed at a time: the network's names are machine-wide, so `up` holds a lock, and a
crashed run's namespaces are swept by the next one. Function replicas (the FaaS experiment) run in
the nodes too, each node's under its CPU quota (experiments/testbeds/functions.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from experiments.testbeds import journal, netns
from experiments.testbeds.base import CleanCheck, FaultRecord, NodeInfo, TestbedError
from experiments.testbeds.functions import (
    CpuCgroups,
    NodeSlot,
    ProcessFunctionHost,
    cpu_quotas,
    remove_cgroups,
)
from experiments.testbeds.placement import Placement, place
from experiments.testbeds.system import Host, SystemTestbed, VeiSystem

NETWORK = netns.NetworkSpec(prefix="erf-", bridge="erfbr0", veth_prefix="erfv", subnet="10.231.0.0/24",
                            first_host=11)
MAX_NODES = 9
CGROUP = "edgerig-emulated"   # under /sys/fs/cgroup/cpu: the nodes' CPU quotas for function replicas


def node_names(count: int) -> list[str]:
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"an emulated testbed has 1 to {MAX_NODES} nodes, got {count}")
    return [f"n{i}" for i in range(1, count + 1)]


def require_root(what: str = "the emulated testbed") -> None:
    if os.geteuid() != 0:
        raise TestbedError(f"{what} creates network namespaces and needs root: run it with sudo (or as root)")


def _sweep_network(teardown: dict[str, Any]) -> list[str]:
    return netns.sweep(NETWORK) + remove_cgroups(CpuCgroups(CGROUP).path)


journal.register_sweeper("emulated", _sweep_network)


class EmulatedTestbed(SystemTestbed):
    kind = "emulated"
    fault_kinds = ("kill", "cut")

    @property
    def placement(self) -> Placement:
        names = node_names(self.spec.nodes) if self.spec.placement is None else list(self.spec.placement)
        return dict(self.spec.placement) if self.spec.placement is not None else place(names)

    def preflight(self) -> None:
        require_root()

    def _hold(self) -> contextlib.AbstractContextManager[None]:
        return journal.exclusive("emulated")

    def _up(self) -> None:
        placement = self.placement
        if len(placement) > MAX_NODES:
            raise TestbedError(f"an emulated testbed has at most {MAX_NODES} nodes; the placement names "
                               f"{len(placement)}")
        # Under the lock nobody else owns erf-* names: whatever exists is a crashed run's.
        self.swept += netns.sweep(NETWORK)
        self.net_nodes = {n.name: n for n in netns.nodes_for(NETWORK, list(placement))}
        self.progress(f"building {len(self.net_nodes)} namespace nodes on {NETWORK.bridge} "
                      f"({NETWORK.subnet})")
        netns.build(NETWORK, list(self.net_nodes.values()))
        if not self.spec.vei:
            return
        sup = self.supervisor
        hosts = {name: Host(name, node) for name, node in self.net_nodes.items()}
        self.system = VeiSystem(sup, sup.temp_dir("emulated"), hosts, placement, self.spec)
        self.progress("starting NATS cluster, gateways and vision apps")
        self.system.start()

    def _down(self) -> None:
        self.system = None
        netns.sweep(NETWORK)
        self.close_functions()  # after the sweep: a cgroup goes only once its processes have
        remove_cgroups(CpuCgroups(CGROUP).path)

    def function_host(self) -> ProcessFunctionHost:
        if self.functions is None:
            vcpus = {name: float((self.spec.vcpus or {}).get(name, 1.0)) for name in self.net_nodes}
            cgroups = None
            if self.spec.vcpus:
                if not CpuCgroups.available():
                    raise TestbedError("CPU quotas per node need the cgroup v1 cpu controller, writable at "
                                       "/sys/fs/cgroup/cpu (mount it, or run without node flavours)")
                cgroups = CpuCgroups(CGROUP)
                cgroups.create(cpu_quotas(vcpus))
            slots = [NodeSlot(name, self.spec.realm(name), vcpus[name], Host(name, node))
                     for name, node in self.net_nodes.items()]
            self.functions = ProcessFunctionHost(self.kind, self.supervisor, slots, cgroups, node_ports=True)
        return self.functions

    @property
    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(name, node.address, self.spec.realm(name), (), self._components(name))
                for name, node in self.net_nodes.items()]

    def _check_clean(self, check: CleanCheck) -> None:
        super()._check_clean(check)
        check.checked.append("only this testbed's namespaces exist, each running only its processes")
        ours = {n.netns for n in self.net_nodes.values()}
        others = [n for n in netns.list_namespaces() if n.startswith(NETWORK.prefix) and n not in ours]
        if others:
            check.problems.append(f"foreign namespaces: {', '.join(others)}")
        kids = self.system.children.values() if self.system is not None else ()
        started = {c.pid for group in kids for c in group}
        for node in self.net_nodes.values():
            strays = [p for p in netns.namespace_pids(node.netns) if p not in started]
            if strays:
                check.problems.append(f"{node.netns} runs processes this testbed did not start: {strays}")

    # -- faults ------------------------------------------------------------------------------------
    def _fail(self, node: str, kind: str, down_for_s: float | None) -> FaultRecord:
        target = self.net_nodes[node]
        record = FaultRecord(kind, node, time.time_ns())
        self._down_nodes = self._down_nodes | {node}
        if kind == "kill":
            record.killed_pids = len(netns.kill_namespace_processes(target.netns, signal.SIGKILL))
            netns.wait_namespace_empty(target.netns)
        else:
            netns.set_link(target, up=False)
        return record

    def _restore(self, fault: FaultRecord) -> None:
        target = self.net_nodes[fault.node]
        if fault.kind == "kill":
            self._sys.start_node(fault.node)
        else:
            netns.set_link(target, up=True)
        self._down_nodes = self._down_nodes - {fault.node}
