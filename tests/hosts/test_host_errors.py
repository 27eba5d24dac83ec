"""Failures name the host, the step and the tool's message; nothing is left half-installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hosts_support import Mirror, fleet_testbed, needs_root

from experiments.testbeds.fleet import hosts as fleet_mod
from infra.hosts import api, pyinfra_runner, run_dir
from infra.hosts.artefacts import VerifiedFile, fetch, k3s_binary
from infra.hosts.errors import HostStepError
from infra.hosts.inventory import targets_from_nodes
from infra.hosts.plan import HostPlan

pytestmark = [needs_root, pytest.mark.root, pytest.mark.slow]
ROLES = {"vm0": ("cloud", "server"), "pi0": ("edge", "agent")}


@pytest.fixture(scope="module")
def small(mirror: Mirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("errfleet") / "state"
    fleet = fleet_mod.up(list(ROLES), {"pi0"}, state_dir=state)
    try:
        yield {
            "fleet": fleet,
            "testbed": fleet_testbed(fleet, mirror, ROLES),
            "root": lambda n: state / "hosts" / n / "root",
        }
    finally:
        fleet_mod.down(state)


@pytest.mark.parametrize("victim", ["vm0", "pi0"])  # ansible-runner and pyinfra
def test_unreachable_host_is_named(
    small: dict[str, Any], mirror: Mirror, tmp_path: Path, victim: str
) -> None:
    data = small["testbed"].model_dump()
    for node in data["nodes"]:
        if node["name"] == victim:
            node["address"] = "10.232.0.250"  # inside our own subnet, no host behind it
    testbed = type(small["testbed"]).model_validate(data)
    with pytest.raises(HostStepError) as err:
        api.install(
            testbed,
            nodes=[victim],
            known_hosts=str(small["fleet"].known_hosts),
            artefact_pins=mirror.pins,
            artefact_cache=tmp_path,
        )
    assert err.value.host == victim and "connect" in err.value.step
    assert victim in str(err.value)


def test_corrupted_upload_is_rejected_on_the_host(
    small: dict[str, Any], mirror: Mirror, tmp_path: Path
) -> None:
    testbed = small["testbed"]
    good = fetch(testbed, k3s_binary(testbed.k3s.version, "amd64"), pins=mirror.pins, cache_dir=tmp_path)
    bad = VerifiedFile(good.artefact, good.path, "f" * 64)  # what the host expects differs from what arrives
    node = testbed.node("pi0")
    plan = HostPlan(node=node, tool="pyinfra")
    plan.concern("k3s").binaries.append((bad, "/usr/local/bin/k3s"))
    targets = targets_from_nodes([node], known_hosts=str(small["fleet"].known_hosts))
    written = run_dir.write(tmp_path / "run", testbed, [plan], targets)
    with pytest.raises(
        HostStepError, match=r"(?s)pi0.*Verify and install /usr/local/bin/k3s.*sha256 mismatch"
    ):
        pyinfra_runner.run(written, ["pi0"], targets, stage="install")
    bindir = small["root"]("pi0") / "usr/local/bin"
    assert not (bindir / "k3s").exists() and not list(bindir.glob("*.edgerig-new"))


@pytest.mark.parametrize("victim", ["vm0", "pi0"])  # ansible-runner and pyinfra
def test_arch_mismatch_is_caught_from_facts(
    small: dict[str, Any], mirror: Mirror, tmp_path: Path, victim: str
) -> None:
    data = small["testbed"].model_dump()
    for node in data["nodes"]:
        node["arch"] = "arm64" if node["name"] == victim else node["arch"]
    testbed = type(small["testbed"]).model_validate(data)
    with pytest.raises(HostStepError) as err:
        api.install(
            testbed,
            nodes=[victim],
            known_hosts=str(small["fleet"].known_hosts),
            artefact_pins=mirror.pins,
            artefact_cache=tmp_path,
        )
    assert err.value.host == victim and "rchitecture" in err.value.step
    assert "the model says arch arm64 but the host reports x86_64" in str(err.value)
    assert not (small["root"](victim) / "usr/local/bin/k3s").exists()
