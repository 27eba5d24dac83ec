"""Where the replicas run: 3 NATS servers, 3 gateways and 3 vision apps over N nodes.

The thesis (Fig. 3.5) ran one replica of each component per node, on different nodes, and failed
the node that held the set under study. One fixed placement of 3+3+3 replicas cannot hold all seven
sets at once: {NATS}, {NATS, vision}, {NATS, gateway} and {NATS, gateway, vision} would need NATS on
four nodes. So the placement is made per scenario: the node that will fail (always n1) holds exactly
the scenario's set, and the remaining replicas go to the other nodes, least loaded first, never two
replicas of one component on the same node (as anti-affinity would do in Kubernetes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from experiments.failover.netns import Node

NATS = "nats"
GATEWAY = "gateway"
VISION = "vision"
COMPONENTS: tuple[str, ...] = (NATS, GATEWAY, VISION)
REPLICAS = 3

# The thesis's seven single-node failure scenarios, by the set of components on the failed node.
SCENARIOS: dict[str, frozenset[str]] = {
    "nats": frozenset({NATS}),
    "vision": frozenset({VISION}),
    "gateway": frozenset({GATEWAY}),
    "gateway-vision": frozenset({GATEWAY, VISION}),
    "nats-vision": frozenset({NATS, VISION}),
    "nats-gateway": frozenset({NATS, GATEWAY}),
    "all": frozenset({NATS, GATEWAY, VISION}),
}

# The thesis's figure for each scenario (Figs. 4.5-4.11): how long the cloud received nothing.
# None = the thesis reports no outage, only latency spikes.
THESIS_OUTAGE_S: dict[str, float | None] = {
    "nats": None,
    "vision": None,
    "gateway": 40.0,
    "gateway-vision": 40.0,
    "nats-vision": 80.0,
    "nats-gateway": 40.0,
    "all": 40.0,
}


class PlacementError(ValueError):
    pass


@dataclass(frozen=True)
class Placement:
    scenario: str
    nodes: tuple[Node, ...]
    target: Node
    components: dict[str, frozenset[str]]  # node name -> components on it

    def nodes_with(self, component: str) -> list[Node]:
        return [n for n in self.nodes if component in self.components[n.name]]

    def describe(self) -> dict[str, list[str]]:
        return {n.name: sorted(self.components[n.name]) for n in self.nodes}


def parse_scenarios(value: str) -> list[str]:
    """A scenario name, a comma-separated list, or `every` for all seven.

    `all` is the thesis's scenario of a node running all three components (Fig. 4.11), not "every
    scenario", hence the separate word `every`.
    """
    names = list(SCENARIOS) if value == "every" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise PlacementError(f"unknown scenario {', '.join(unknown) or repr(value)}: use one of "
                             f"{', '.join(SCENARIOS)}, a comma-separated list of them, or `every`")
    return names


def place(scenario: str, nodes: Sequence[Node]) -> Placement:
    if scenario not in SCENARIOS:
        raise PlacementError(f"unknown scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
    wanted = SCENARIOS[scenario]
    target, others = nodes[0], list(nodes[1:])
    needed = max(REPLICAS - (1 if c in wanted else 0) for c in COMPONENTS)
    if len(others) < needed:
        raise PlacementError(
            f"scenario {scenario!r} needs at least {needed + 1} nodes so that {REPLICAS} replicas of each "
            f"component run on different nodes with only {sorted(wanted)} on the failed node; "
            f"got --nodes {len(nodes)}")
    placed: dict[str, set[str]] = {n.name: set() for n in nodes}
    placed[target.name] = set(wanted)
    for component in COMPONENTS:
        count = REPLICAS - (1 if component in wanted else 0)
        # Least loaded first, then lowest index: deterministic, and spreads replicas evenly.
        chosen = sorted(others, key=lambda n: (len(placed[n.name]), n.index))[:count]
        for node in chosen:
            placed[node.name].add(component)
    return Placement(scenario, tuple(nodes), target,
                     {name: frozenset(comps) for name, comps in placed.items()})
