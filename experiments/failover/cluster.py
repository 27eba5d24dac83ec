"""The replicas of one placement as processes in the node namespaces, and the two faults.

Processes are started by the shared local supervisor (experiments/local), each wrapped in
`ip netns exec erf-nX`, so stopping the supervisor stops them, and `kill` reaches every process of
a node through `ip netns pids`, exactly as a power loss would.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.failover import nats_cluster, netns
from experiments.failover.placement import GATEWAY, NATS, VISION, Placement
from experiments.local.nats import nats_server_binary
from experiments.local.readiness import wait_gateways_serving
from experiments.local.supervisor import Child, Supervisor

GATEWAY_PORT = 50051
FAULTS = ("kill", "cut")
CAMERA_ID = "cam-0"
READY_TIMEOUT_S = 30.0


def gateway_endpoint(node: netns.Node) -> str:
    return f"{node.address}:{GATEWAY_PORT}"


@dataclass
class FaultRecord:
    kind: str
    node: str
    injected_unix_ns: int
    restored_unix_ns: int | None = None
    killed_pids: int = 0


class EmulatedCluster:
    """Starts every replica of `placement`, injects one fault and undoes it."""

    def __init__(self, placement: Placement, sup: Supervisor, work_dir: Path) -> None:
        self.placement = placement
        self.sup = sup
        self.work_dir = work_dir
        self.nats_nodes = placement.nodes_with(NATS)
        self.gateway_nodes = placement.nodes_with(GATEWAY)
        self.vision_nodes = placement.nodes_with(VISION)
        self.children: dict[str, list[Child]] = {n.name: [] for n in placement.nodes}

    @property
    def nats_urls(self) -> str:
        return nats_cluster.client_urls(self.nats_nodes)

    @property
    def gateway_endpoints(self) -> str:
        return ",".join(gateway_endpoint(n) for n in self.gateway_nodes)

    # -- processes --------------------------------------------------------------------------------
    def start(self) -> None:
        """NATS first (all servers, routed), then gateways, then vision apps, each waited for."""
        for node in self.nats_nodes:
            self._start_nats(node, wait=False)
        self._wait_nats(self.nats_nodes)
        gateways = [self._start_gateway(node) for node in self.gateway_nodes]
        wait_gateways_serving(gateways, [gateway_endpoint(n) for n in self.gateway_nodes], READY_TIMEOUT_S)
        for node in self.vision_nodes:
            self._start_vision(node)

    def start_node(self, node: netns.Node) -> None:
        """Bring back every replica of one node, as after a reboot."""
        comps = self.placement.components[node.name]
        if NATS in comps:
            self._start_nats(node, wait=True)
        if GATEWAY in comps:
            wait_gateways_serving([self._start_gateway(node)], [gateway_endpoint(node)], READY_TIMEOUT_S)
        if VISION in comps:
            self._start_vision(node)

    def _start_nats(self, node: netns.Node, wait: bool) -> None:
        conf = nats_cluster.write_config(node, self.nats_nodes, self.work_dir)
        child = self.sup.start(f"nats-{node.name}",
                               [*node.exec_prefix(), str(nats_server_binary()), "-c", str(conf)])
        self.children[node.name].append(child)
        if wait:
            self.sup.wait_ready(child, lambda: nats_cluster.healthz(node), READY_TIMEOUT_S)

    def _wait_nats(self, nodes: list[netns.Node]) -> None:
        want = len(nodes) - 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(nats_cluster.healthz(n) and nats_cluster.connected_peers(n) >= want for n in nodes):
            if time.monotonic() > deadline:
                logs = "\n".join(c.log_tail(5) for n in nodes for c in self.children[n.name])
                raise TimeoutError(f"the NATS cluster did not form within {READY_TIMEOUT_S:.0f} s:\n{logs}")
            time.sleep(0.1)

    def _start_gateway(self, node: netns.Node) -> Child:
        argv = [*node.exec_prefix(), sys.executable, "-m", "workloads.vei.gateway",
                "--listen", gateway_endpoint(node), "--nats-url", self.nats_urls, "--cloud", "local"]
        child = self.sup.start(f"gateway-{node.name}", argv, env={"PYTHONUNBUFFERED": "1"})
        self.children[node.name].append(child)
        return child

    def _start_vision(self, node: netns.Node) -> None:
        argv = [*node.exec_prefix(), sys.executable, "-m", "workloads.vei.vision",
                "--gateway", self.gateway_endpoints, "--camera-id", CAMERA_ID]
        child = self.sup.start(f"vision-{node.name}", argv, env={"PYTHONUNBUFFERED": "1"})
        self.children[node.name].append(child)

    # -- faults -----------------------------------------------------------------------------------
    def inject(self, kind: str) -> FaultRecord:
        node = self.placement.target
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}: use one of {', '.join(FAULTS)}")
        record = FaultRecord(kind, node.name, time.time_ns())
        if kind == "kill":
            record.killed_pids = len(netns.kill_namespace_processes(node.netns, signal.SIGKILL))
            netns.wait_namespace_empty(node.netns)
        else:
            netns.set_link(node, up=False)
        return record

    def restore(self, record: FaultRecord) -> None:
        node = self.placement.target
        if record.kind == "kill":
            self.children[node.name].clear()
            self.start_node(node)
        else:
            netns.set_link(node, up=True)
        record.restored_unix_ns = time.time_ns()

    def dead_children(self) -> list[Child]:
        return [c for kids in self.children.values() for c in kids if not c.alive()]
