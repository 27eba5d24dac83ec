"""The VEI system as processes: NATS, gateways and vision apps on the nodes of a self-built testbed.

Shared by the local, emulated and fleet testbeds. A `Host` says where a process runs: this machine
(local: loopback, free ports) or a node's network namespace (emulated, fleet: the node's address,
fixed ports). Processes are rendered from workloads.vei.launch, started by the testbed's supervisor
in dependency order, and each step waits for real readiness, never a sleep:
NATS (one server, or a routed cluster) -> gateways (health SERVING) -> vision apps (subscribed).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.testbeds import nats
from experiments.testbeds.base import (
    GATEWAY,
    NATS,
    VISION,
    CleanCheck,
    Endpoints,
    SystemSpec,
    Testbed,
    TestbedError,
)
from experiments.testbeds.netns import Host as Host
from experiments.testbeds.netns import NetNode
from experiments.testbeds.ports import free_port, port_open
from experiments.testbeds.processes import Child, Supervisor
from experiments.testbeds.readiness import wait_gateways_serving
from workloads.vei import launch, subjects

if TYPE_CHECKING:
    from experiments.testbeds.functions import ProcessFunctionHost

GATEWAY_PORT = 50051
READY_TIMEOUT_S = 30.0


@dataclass
class VeiSystem:
    """Every replica of a placement, and how to bring one node's replicas back."""

    sup: Supervisor
    work_dir: Path
    hosts: dict[str, Host]
    placement: dict[str, frozenset[str]]
    spec: SystemSpec
    log_level: str | None = None
    children: dict[str, list[Child]] = field(default_factory=dict)
    nats_servers: dict[str, nats.NatsServer] = field(default_factory=dict)
    gateway_addresses: dict[str, str] = field(default_factory=dict)
    by_component: dict[str, list[Child]] = field(default_factory=dict)
    _cluster: dict[str, nats.NatsConfig] = field(default_factory=dict)

    def nodes_with(self, component: str) -> list[str]:
        return [n for n in self.hosts if component in self.placement.get(n, frozenset())]

    @property
    def nats_urls(self) -> list[str]:
        return [self.nats_servers[n].url for n in self.nodes_with(NATS) if n in self.nats_servers]

    @property
    def registry(self) -> str:
        """`kv` (shared by the replicas) when the placement has more than one gateway, else `memory`,
        like the original: no JetStream stream, so nats-server's idle timer never starts. Counted on
        the placement, not on the gateways running now, so a node brought back joins the others."""
        return "kv" if len(self.nodes_with(GATEWAY)) > 1 else "memory"

    @property
    def gateways(self) -> list[str]:
        return [self.gateway_addresses[n] for n in self.nodes_with(GATEWAY) if n in self.gateway_addresses]

    # -- start ------------------------------------------------------------------------------------
    def start(self) -> None:
        self.children = {name: [] for name in self.hosts}
        nats_nodes = self.nodes_with(NATS)
        if not nats_nodes or not self.nodes_with(GATEWAY):
            raise ValueError(f"a VEI system needs at least one NATS server and one gateway; placement: "
                             f"{ {n: sorted(c) for n, c in self.placement.items()} }")
        if len(nats_nodes) == 1 and self.hosts[nats_nodes[0]].node is None:
            server = nats.start_nats(self.sup, gomaxprocs=self.spec.nats_gomaxprocs)  # loopback, no cluster
            self._add_nats(nats_nodes[0], server)
        else:
            configs = nats.cluster_configs(self._net_nodes(nats_nodes), self.work_dir,
                                           self.spec.nats_gomaxprocs)
            self._cluster = {c.name: c for c in configs}
            for name in nats_nodes:
                self._start_cluster_member(name, wait=False)
            nats.wait_cluster([self.nats_servers[n] for n in nats_nodes], READY_TIMEOUT_S)
        gateway_nodes = self.nodes_with(GATEWAY)
        started = [self._start_gateway(n) for n in gateway_nodes]
        wait_gateways_serving(started, [self.gateway_addresses[n] for n in gateway_nodes], READY_TIMEOUT_S)
        for name in self.nodes_with(VISION):
            self._start_vision(name)

    def start_node(self, name: str) -> None:
        """Bring back every replica of one node, as after a reboot; each waited for."""
        self.children[name] = []
        comps = self.placement.get(name, frozenset())
        if NATS in comps:
            self._start_cluster_member(name, wait=True)
        if GATEWAY in comps:
            child = self._start_gateway(name)
            wait_gateways_serving([child], [self.gateway_addresses[name]], READY_TIMEOUT_S)
        if VISION in comps:
            self._start_vision(name)

    def _net_nodes(self, names: Sequence[str]) -> list[NetNode]:
        out = []
        for name in names:
            node = self.hosts[name].node
            if node is None:
                raise ValueError(f"a NATS cluster needs network nodes; {name} is this machine")
            out.append(node)
        return out

    def _add(self, name: str, component: str, child: Child) -> None:
        self.children[name].append(child)
        self.by_component.setdefault(component, []).append(child)

    def _add_nats(self, name: str, server: nats.NatsServer) -> None:
        self.nats_servers[name] = server
        self._add(name, NATS, server.child)

    def _start_cluster_member(self, name: str, wait: bool) -> None:
        node = self.hosts[name].node
        assert node is not None
        server = nats.start_node_server(self.sup, self._cluster[node.netns], node, self.work_dir, wait)
        self._add_nats(name, server)

    def _start_gateway(self, name: str) -> Child:
        host = self.hosts[name]
        port = GATEWAY_PORT if host.node is not None else free_port()
        address = f"{host.address}:{port}"
        self.gateway_addresses[name] = address
        spec = launch.gateway(listen=address, nats_urls=self.nats_urls, clouds=self.spec.clouds,
                              max_image_bytes=self.spec.max_image_bytes, registry=self.registry,
                              log_level=self.log_level)
        child = self.sup.start(f"gateway-{name}", host.argv(spec.argv()), env=spec.process_env(),
                               ready=lambda: port_open(host.address, port), ready_timeout_s=READY_TIMEOUT_S)
        self._add(name, GATEWAY, child)
        return child

    def _start_vision(self, name: str) -> None:
        host = self.hosts[name]
        for camera_id in self.spec.camera_ids:
            spec = launch.vision(gateway=",".join(self.gateways), camera_id=camera_id,
                                 processing_ms=self.spec.processing_ms or None)
            child = self.sup.start(f"vision-{name}-{camera_id}", host.argv(spec.argv()),
                                   env=spec.process_env(),
                                   ready=functools.partial(self.subscribed, subjects.frames(camera_id)),
                                   ready_timeout_s=READY_TIMEOUT_S)
            self._add(name, VISION, child)

    def subscribed(self, subject: str) -> bool:
        # The gateway subscribes on the vision app's behalf, on whichever server it is connected to.
        return any(s.has_subscription(subject) for s in self.nats_servers.values() if s.child.alive())

    # -- state ------------------------------------------------------------------------------------
    def processes(self) -> dict[str, list[int]]:
        """Component -> pids of its processes (for CPU and memory accounting)."""
        return {comp: [c.pid for c in self.by_component.get(comp, []) if c.alive()]
                for comp in (NATS, GATEWAY, VISION)}

    def names(self) -> dict[int, str]:
        """pid -> process name of every running replica."""
        return {c.pid: c.name for kids in self.by_component.values() for c in kids if c.alive()}

    def dead(self, skip: Sequence[str] = ()) -> list[Child]:
        return [c for n, kids in self.children.items() if n not in skip for c in kids if not c.alive()]


class SystemTestbed(Testbed):
    """A testbed that runs the VEI system itself as a `VeiSystem` (local, emulated, fleet): its
    endpoints, nodes' components, processes and the sink's readiness all come from that system.
    With `SystemSpec.vei` off there is no system (an experiment with a workload of its own, such as
    functions, whose replicas `functions` runs on the testbed's nodes)."""

    system: VeiSystem | None = None
    functions: ProcessFunctionHost | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._down_nodes: frozenset[str] = frozenset()  # nodes a fault has taken away for now

    @property
    def _sys(self) -> VeiSystem:
        if self.system is None:
            raise TestbedError(f"the {self.kind} testbed is not up")
        return self.system

    def _components(self, node: str) -> tuple[str, ...]:
        if self.system is None:
            return ()
        return tuple(sorted(self.system.placement.get(node, ())))

    @property
    def endpoints(self) -> Endpoints:
        if self.system is None:
            return Endpoints(gateways=(), nats_urls=())
        return Endpoints(gateways=tuple(self.system.gateways), nats_urls=tuple(self.system.nats_urls))

    def _sink_ready(self) -> bool:
        return self._sys.subscribed(subjects.LOCAL_SINK)

    def system_processes(self) -> dict[str, list[int]]:
        return self.system.processes() if self.system is not None else {}

    def process_names(self) -> dict[int, str]:
        return self.system.names() if self.system is not None else {}

    def dead_system_processes(self) -> list[Child]:
        return self.system.dead(skip=list(self._down_nodes)) if self.system is not None else []

    def _check_clean(self, check: CleanCheck) -> None:
        check.checked.append("every system process of this testbed running")
        dead = self.system.dead() if self.system is not None else []
        if dead:
            check.problems.append(f"exited: {', '.join(c.name for c in dead)}")

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.functions is not None:
            out["functions"] = self.functions.describe()
        return out

    def close_functions(self) -> None:
        if self.functions is not None:
            self.functions.close()
            self.functions = None
