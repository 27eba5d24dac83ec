"""The seven failure scenarios and where the replicas run for each: 3 NATS, 3 gateways, 3 vision apps.

The thesis (Fig. 3.5) ran one replica of each component per node, on different nodes, and failed
the node that held the set under study. One fixed placement of 3+3+3 replicas cannot hold all seven
sets at once: {NATS}, {NATS, vision}, {NATS, gateway} and {NATS, gateway, vision} would need NATS on
four nodes. So the placement is made per scenario: the node that will fail (always n1) holds exactly
the scenario's set, and the remaining replicas go to the other nodes, least loaded first, never two
replicas of one component on the same node (as anti-affinity would do in Kubernetes).
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.testbeds.base import GATEWAY, NATS, VISION
from experiments.testbeds.placement import REPLICAS, Placement, PlacementError, place

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


def placement_for(scenario: str, nodes: Sequence[str]) -> Placement:
    """The failed node (the first) holds exactly the scenario's set; the rest spread over the others."""
    if scenario not in SCENARIOS:
        raise PlacementError(f"unknown scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
    try:
        return place(nodes, REPLICAS, pinned={nodes[0]: SCENARIOS[scenario]})
    except PlacementError as err:
        raise PlacementError(f"scenario {scenario!r}: {err} (--nodes {len(nodes)})") from None
