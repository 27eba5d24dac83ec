"""What a local test fleet is, as `edgerig fleet up` saves it: its network, its hosts and the files
written for it (key, known_hosts, inventory, stack file)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from experiments.testbeds import netns as nslib

NETWORK = nslib.NetworkSpec(prefix="erh-", bridge="erhbr0", veth_prefix="erhv", subnet="10.232.0.0/24",
                            first_host=10)


@dataclass
class FleetHost:
    name: str
    address: str
    pi: bool
    netns: str
    veth: str
    pid: int = 0

    @property
    def node(self) -> nslib.NetNode:
        """This host as a node of the fleet's network (the shared namespace library's view)."""
        index = int(self.veth.removeprefix(NETWORK.veth_prefix))
        return nslib.NetNode(self.name, index, NETWORK)


@dataclass
class Fleet:
    state_dir: Path
    key_path: Path
    known_hosts: Path
    inventory_path: Path
    stack_path: Path
    hosts: list[FleetHost] = field(default_factory=list)

    def save(self) -> None:
        data = {k: str(v) for k, v in asdict(self).items() if k != "hosts"}
        data["hosts"] = [asdict(h) for h in self.hosts]  # type: ignore[assignment]
        (self.state_dir / "fleet.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> Fleet:
        data = json.loads((state_dir / "fleet.json").read_text())
        hosts = [FleetHost(**h) for h in data.pop("hosts")]
        return cls(**{k: Path(v) for k, v in data.items()}, hosts=hosts)
