"""`resources` and `faas` as campaign cells: their parameters are checked like any cell's, they run
in processes of their own, and each run keeps its provenance beside its data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from testkit import ROOT

from experiments.cli import app  # noqa: F401 - registers the commands the campaign looks up
from experiments.runs.campaign import CampaignError
from experiments.runs.campaign import load_plan as load_plan_with
from experiments.runs.commands import _experiment_command


def load_plan(path: Path) -> tuple[object, list[Any]]:
    return load_plan_with(path, _experiment_command)



def plan(tmp_path: Path, cells: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(f"name: trial\nout: {tmp_path / 'campaign'}\ncells:\n{cells}")
    return path


def test_cell_params_are_the_commands_options(tmp_path: Path) -> None:
    _, cells = load_plan(plan(tmp_path, """
  - experiment: resources
    targets: [local]
    params: {quiet_s: 60, stream_s: [60, 120]}
  - experiment: faas
    targets: [local, emulated]
    params: {function: nodeinfo, scenario: base-cloud, ramp_s: 30, hold_s: 15, edge_weight: 80}
"""))
    assert [c.id for c in cells] == [
        "resources-local-quiet-s60-stream-s60", "resources-local-quiet-s60-stream-s120",
        "faas-local-functionnodeinfo-scenariobase-cloud-ramp-s30-hold-s15-edge-weight80",
        "faas-emulated-functionnodeinfo-scenariobase-cloud-ramp-s30-hold-s15-edge-weight80"]
    assert cells[2].argv(Path("o"))[-10:] == ["--function", "nodeinfo", "--scenario", "base-cloud",
                                              "--ramp-s", "30", "--hold-s", "15", "--edge-weight", "80"]
    with pytest.raises(CampaignError, match="faas: No such option: --ramp"):
        load_plan(plan(tmp_path, "  - experiment: faas\n    targets: [local]\n    params: {ramp: 3}\n"))
    with pytest.raises(CampaignError, match="resources: Invalid value for '--quiet-s'"):
        load_plan(plan(tmp_path, "  - experiment: resources\n    targets: [local]\n"
                                 "    params: {quiet_s: long}\n"))


@pytest.mark.slow
def test_a_campaign_runs_both_with_provenance(tmp_path: Path) -> None:
    path = plan(tmp_path, """
  - experiment: resources
    targets: [local]
    params: {quiet_s: 2, stream_s: 2}
  - experiment: faas
    targets: [local]
    params: {function: nodeinfo, scenario: base-cloud, ramp_s: 2, hold_s: 1, users: 2}
""")
    env = {**os.environ, "EDGERIG_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run([sys.executable, "-m", "experiments", "campaign", "run", str(path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "campaign"
    state = json.loads((folder / "campaign.json").read_text())
    assert {c["status"] for c in state["cells"].values()} == {"done"}
    aggregate = json.loads((folder / "aggregate.json").read_text())
    res, faas = aggregate["resources"][0], aggregate["faas"][0]
    assert res["streaming.total.cpu_cores.median"]["median"] > 0 and res["latency.p50_ms"]["median"] > 0
    assert faas["p50_ms"]["median"] > 0 and faas["max_pods.cloud"]["median"] == 3
    for cell in state["cells"]:
        run = json.loads((folder / "cells" / cell / "run.json").read_text())
        assert run["git"]["commit"] and run["clean_check"]["clean"] and run["run"]["completed"]
        assert run["experiment"] in run["command"] and "--out" in run["command"]
    html = (folder / "index.html").read_text()
    assert "resources.png" in html and "<h2>faas</h2>" in html
