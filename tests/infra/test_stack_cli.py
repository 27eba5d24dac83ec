"""`edgerig stack check|render` on the real stack files."""

from __future__ import annotations

import yaml
from testkit import TOKEN
from typer.testing import CliRunner

from experiments.cli import app

runner = CliRunner()


def test_check_lists_nodes_and_cloudcore() -> None:
    result = runner.invoke(app, ["stack", "check", "hybrid"], env={"EDGERIG_K3S_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert "CloudCore on cloud0" in result.output and "pi-edge1" in result.output


def test_check_fails_with_the_key_and_the_fix() -> None:
    result = runner.invoke(app, ["stack", "check", "pi-k3s"], env={"EDGERIG_K3S_TOKEN": ""})
    assert result.exit_code == 2
    assert "edgerig:k3sToken" in result.output and "pulumi config set --secret" in result.output


def test_render_prints_objects_without_secrets() -> None:
    result = runner.invoke(app, ["stack", "render", "openstack-kubeedge"], env={"EDGERIG_K3S_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.output))
    kinds = {d.get("kind") for d in docs}
    assert {"Deployment", "Service", "Namespace", "Secret", "HorizontalPodAutoscaler"} <= kinds
    assert docs[0]["securityGroupRules"] and "openfaas" in docs[1]["helmValues"]
    assert TOKEN not in result.output
