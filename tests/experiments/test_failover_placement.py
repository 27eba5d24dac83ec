"""Placement of 3 NATS / 3 gateway / 3 vision replicas, the NATS cluster config, the report table,
and the CLI's answers to bad input (no namespaces are created for any of these)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.cli import app
from experiments.failover.config import RunConfig
from experiments.failover.placement import SCENARIOS, parse_scenarios, placement_for
from experiments.failover.report import aggregate, markdown
from experiments.testbeds import emulated, netns
from experiments.testbeds.base import SYSTEM_COMPONENTS
from experiments.testbeds.nats import cluster_configs
from experiments.testbeds.placement import REPLICAS, PlacementError, nodes_with, parse, place
from workloads.vei.settings import NATS_MAX_PAYLOAD_BYTES


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_failed_node_holds_exactly_the_scenario_and_replicas_are_spread(scenario: str) -> None:
    placement = placement_for(scenario, emulated.node_names(5))
    assert next(iter(placement)) == "n1"
    assert placement["n1"] == SCENARIOS[scenario]
    for component in SYSTEM_COMPONENTS:
        holders = nodes_with(placement, component)
        assert len(holders) == REPLICAS, component
        assert len(set(holders)) == REPLICAS  # never two replicas on one node


def test_default_spread_puts_every_component_on_three_nodes() -> None:
    placement = place(["a", "b", "c", "d", "e"])
    assert all(len(nodes_with(placement, c)) == REPLICAS for c in SYSTEM_COMPONENTS)
    assert max(len(c) for c in placement.values()) - min(len(c) for c in placement.values()) <= 1
    assert place(["a", "b", "c"]) == {n: frozenset(SYSTEM_COMPONENTS) for n in "abc"}


def test_placement_text_and_its_bad_input() -> None:
    assert parse("n1=nats+gateway,n2=vision") == {"n1": frozenset({"nats", "gateway"}),
                                                  "n2": frozenset({"vision"})}
    with pytest.raises(PlacementError, match="unknown component"):
        parse("n1=nats+redis")
    with pytest.raises(PlacementError, match="must be NODE=COMPONENT"):
        parse("n1")
    with pytest.raises(PlacementError, match="are not among the nodes"):
        place(["a"], pinned={"b": frozenset({"nats"})})


def test_the_seven_scenarios_are_seven_distinct_sets() -> None:
    assert len(set(SCENARIOS.values())) == 7
    assert all(SCENARIOS.values())


def test_three_nodes_fit_only_the_node_with_everything() -> None:
    assert placement_for("all", emulated.node_names(3))["n1"] == SCENARIOS["all"]
    with pytest.raises(PlacementError, match="need at least 4 nodes"):
        placement_for("gateway", emulated.node_names(3))


def test_scenario_lists_and_unknown_names() -> None:
    assert parse_scenarios("every") == list(SCENARIOS)
    assert parse_scenarios("nats, all") == ["nats", "all"]
    with pytest.raises(PlacementError, match="unknown scenario nope"):
        parse_scenarios("nats,nope")


def test_nats_config_routes_to_the_other_servers_with_fast_pings(tmp_path: Path) -> None:
    nodes = netns.nodes_for(emulated.NETWORK, emulated.node_names(3))
    assert [n.address for n in nodes] == ["10.231.0.11", "10.231.0.12", "10.231.0.13"]
    conf = cluster_configs(nodes, tmp_path)[0].render()
    assert f'listen: "{nodes[0].address}:4222"' in conf
    routes = re.search(r"routes: \[(.*)\]", conf)
    assert routes is not None
    assert routes.group(1) == f'"nats-route://{nodes[1].address}:6222", "nats-route://{nodes[2].address}:6222"'
    assert 'ping_interval: "500ms"' in conf and "ping_max: 2" in conf
    assert "jetstream {" in conf and f"max_payload: {NATS_MAX_PAYLOAD_BYTES}\n" in conf


def _summary(scenario: str, fault: str, outage: float, recovery: float | None, lost: int = 0) -> dict:
    return {"scenario": scenario, "fault": fault, "node_components": sorted(SCENARIOS[scenario]),
            "outage_s": outage, "recovery_s": recovery, "settled_s": recovery, "lost": lost,
            "duplicates_delivered": 0,
            "duplicates_suppressed": 1, "camera_dropped_overflow": 0, "baseline_p50_ms": 4.0,
            "baseline_p95_ms": 8.0,
            "targets_met": {"outage": outage <= 1, "lost": lost == 0, "recovery": recovery is not None}}


def test_aggregate_gives_median_and_spread_per_scenario_and_fault() -> None:
    rows = aggregate([_summary("gateway", "kill", 0.2, 1.0), _summary("gateway", "kill", 0.6, 3.0),
                      _summary("gateway", "kill", 0.4, 2.0), _summary("nats", "cut", 2.0, None, lost=1)])
    assert [(r["scenario"], r["fault"]) for r in rows] == [("nats", "cut"), ("gateway", "kill")]
    gw = rows[1]
    assert gw["outage_s"] == {"median": 0.4, "min": 0.2, "max": 0.6, "missing": 0}
    assert gw["all_targets_met"] is True
    assert rows[0]["recovery_s"]["median"] is None  # never recovered: no median to claim
    table = markdown(rows)
    row = "| {gateway} | kill | 3 | 40 | 0.40 (0.20-0.60) | 2.00 (1.00-3.00) | 2.00 (1.00-3.00) | 0 |"
    assert row in table
    assert "MISSED" in table


runner = CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["--scenario", "bogus"], "unknown scenario bogus"),
    (["--fault", "reboot"], "unknown --fault reboot"),
    (["--fault", "hard-stop"], "only a stack target has one"),
    (["--kill-mode", "pull-the-plug"], "--kill-mode 'pull-the-plug': use reboot or k3s"),
    (["--scenario", "nats", "--nodes", "3"], "need at least 4 nodes"),
    (["--nodes", "12"], "an emulated testbed has 1 to 9 nodes"),
    (["--target", "nowhere"], "no stack file stacks/Pulumi.nowhere.yaml"),
    (["--rebuild", "once"], "a failover run changes its testbed"),
    (["--rebuild", "never"], "--rebuild never uses an already deployed Pulumi stack"),
    (["--down-for", "50", "--cap", "30"], "--cap (30.0 s) must be at least"),
    (["--repeat", "0"], "--repeat must be >= 1"),
])
def test_bad_input_is_refused_before_anything_starts(args: list[str], message: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "failover", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()  # nothing half-applied


def test_run_config_rejects_nonpositive_times() -> None:
    with pytest.raises(ValueError, match="--baseline must be > 0"):
        RunConfig(baseline_s=0).validate()
