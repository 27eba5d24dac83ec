"""Where the replicas run on a self-built testbed: 3 NATS servers, 3 gateways and 3 vision apps over
N nodes, never two replicas of one component on the same node (as pod anti-affinity would do).

`pinned` fixes what some nodes hold exactly (the failover experiment pins the node it will fail);
the remaining replicas go to the other nodes, least loaded first, then by node order: deterministic,
and spread evenly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from experiments.testbeds.base import SYSTEM_COMPONENTS

REPLICAS = 3
Placement = dict[str, frozenset[str]]


class PlacementError(ValueError):
    pass


def place(nodes: Sequence[str], replicas: int = REPLICAS,
          pinned: Mapping[str, frozenset[str]] | None = None) -> Placement:
    pinned = dict(pinned or {})
    unknown = [n for n in pinned if n not in nodes]
    if unknown:
        raise PlacementError(f"pinned node(s) {unknown} are not among the nodes {list(nodes)}")
    bad = sorted({c for comps in pinned.values() for c in comps} - set(SYSTEM_COMPONENTS))
    if bad:
        raise PlacementError(f"unknown component(s) {bad}: use {', '.join(SYSTEM_COMPONENTS)}")
    free = [n for n in nodes if n not in pinned]
    remaining = {c: max(0, replicas - sum(c in comps for comps in pinned.values()))
                 for c in SYSTEM_COMPONENTS}
    needed = len(pinned) + max(remaining.values())
    if len(nodes) < needed:
        what = f" with {describe(pinned)} pinned" if pinned else ""
        raise PlacementError(f"{replicas} replicas of each component on different nodes{what} need at least "
                             f"{needed} nodes; got {len(nodes)}")
    placed: dict[str, set[str]] = {n: set(pinned.get(n, ())) for n in nodes}
    for component in SYSTEM_COMPONENTS:
        chosen = sorted(free, key=lambda n: (len(placed[n]), nodes.index(n)))[:remaining[component]]
        for node in chosen:
            placed[node].add(component)
    return {name: frozenset(comps) for name, comps in placed.items()}


def nodes_with(placement: Placement, component: str) -> list[str]:
    return [n for n, comps in placement.items() if component in comps]


def describe(placement: Placement) -> dict[str, list[str]]:
    return {n: sorted(comps) for n, comps in placement.items()}


def parse(text: str) -> Placement:
    """`n1=nats+gateway,n2=vision,...` -> placement (every node listed, even with nothing on it)."""
    out: Placement = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, comps = part.partition("=")
        if not sep or not name:
            raise PlacementError(f"placement entry {part!r} must be NODE=COMPONENT[+COMPONENT...]")
        wanted = frozenset(c for c in comps.split("+") if c)
        bad = sorted(wanted - set(SYSTEM_COMPONENTS))
        if bad:
            raise PlacementError(f"placement entry {part!r}: unknown component(s) {bad}; "
                                 f"use {', '.join(SYSTEM_COMPONENTS)}")
        out[name.strip()] = wanted
    if not out:
        raise PlacementError("an empty placement runs nothing; give NODE=COMPONENT[+...] entries")
    return out
