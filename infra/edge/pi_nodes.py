"""PiNodes: pre-existing edge hosts (provider: static) become inventory entries.

Nothing is created in a cloud for them; the component exists so the resource graph shows each Pi
and so the bootstrap depends on one thing per realm. Host reachability is checked by the install.
"""

from __future__ import annotations

from typing import Any

import pulumi

from infra.edge.inventory import static_inventory
from infra.model import Testbed


class PiNodes(pulumi.ComponentResource):
    inventory: dict[str, dict[str, Any]]
    addresses: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, testbed: Testbed, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgerig:edge:PiNodes", name, None, opts)
        self.inventory = static_inventory(testbed)
        self.addresses = {n: pulumi.Output.from_input(str(e["address"])) for n, e in self.inventory.items()}
        self.register_outputs({"inventory": self.inventory})
