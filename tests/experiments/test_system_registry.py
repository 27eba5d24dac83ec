"""Which registry the self-built testbeds give their gateways: `kv` (shared through JetStream) when the
placement has more than one gateway, else the gateway's own `memory` registry, like the original VEI.
Only the command lines are checked: the supervisor here records them and starts nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from experiments.testbeds.base import GATEWAY, NATS, VISION, SystemSpec
from experiments.testbeds.system import Host, VeiSystem


class _Child:
    def alive(self) -> bool:
        return True


class _RecordingSupervisor:
    def __init__(self) -> None:
        self.argv: dict[str, list[str]] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
              ready: Callable[[], bool] | None = None, ready_timeout_s: float = 20.0) -> Any:
        self.argv[name] = list(argv)
        return _Child()


def _registry_flags(placement: dict[str, frozenset[str]], tmp_path: Path) -> dict[str, str | None]:
    sup = _RecordingSupervisor()
    system = VeiSystem(sup, tmp_path, {name: Host(name) for name in placement},  # type: ignore[arg-type]
                       placement, SystemSpec())
    system.children = {name: [] for name in placement}
    for name in system.nodes_with(GATEWAY):
        system._start_gateway(name)
    flags: dict[str, str | None] = {}
    for name, argv in sup.argv.items():
        flags[name] = argv[argv.index("--registry") + 1] if "--registry" in argv else None
    return flags


@pytest.mark.parametrize(("placement", "expected"), [
    ({"local": frozenset({NATS, GATEWAY, VISION})}, "memory"),
    ({"n1": frozenset({NATS, GATEWAY}), "n2": frozenset({NATS, VISION}), "n3": frozenset({NATS})}, "memory"),
    ({"n1": frozenset({NATS, GATEWAY}), "n2": frozenset({NATS, GATEWAY}), "n3": frozenset({VISION})}, "kv"),
], ids=["one-node", "one-gateway-of-three-nodes", "two-gateways"])
def test_gateways_share_a_registry_only_when_there_are_several(
        placement: dict[str, frozenset[str]], expected: str, tmp_path: Path) -> None:
    flags = _registry_flags(placement, tmp_path)
    assert flags == {f"gateway-{name}": expected for name, comps in placement.items() if GATEWAY in comps}
