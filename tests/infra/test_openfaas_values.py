"""OpenFaaS's values: only the HPA scales functions, and the pre-cap release can be pinned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from stack_fixtures import stack, variant

from infra import versions
from infra.platform.values import openfaas_values

CHART_DEFAULTS = Path("/work/shared/charts") / f"openfaas-{versions.OPENFAAS_CHART_VERSION}" / "values.yaml"


def test_alertmanager_scaling_is_off_so_it_cannot_fight_an_hpa() -> None:
    values = openfaas_values(stack("openstack-kubeedge"))
    assert values["alertmanager"] == {"create": False}
    assert values["openfaasPro"] is False  # the Pro autoscaler is not there either


def test_the_pre_cap_release_can_be_pinned_in_the_stack_file() -> None:
    faas = stack("openstack-kubeedge").platform.openfaas
    assert faas.chart_version == versions.OPENFAAS_CHART_VERSION
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "stacks" /
                             "Pulumi.openstack-kubeedge.yaml").read_text())["config"]["edgerig:platform"]
    pinned = variant("openstack-kubeedge", platform={
        **config, "openfaas": {**config["openfaas"], "chartVersion": versions.OPENFAAS_PRECAP_CHART_VERSION}})
    assert pinned.platform.openfaas.chart_version == "11.1.10"
    assert pinned.platform.openfaas.hpa.max_replicas == 25


def _keys(values: dict[str, Any], prefix: str = "") -> list[tuple[str, type]]:
    out = []
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "affinity":
            out += _keys(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", type(value)))
    return out


@pytest.mark.skipif(not CHART_DEFAULTS.exists(), reason="the pinned chart's default values are not here")
def test_every_value_set_is_a_key_of_the_pinned_chart() -> None:
    defaults = yaml.safe_load(CHART_DEFAULTS.read_text())
    for key, kind in _keys(openfaas_values(stack("openstack-kubeedge"))):
        node: Any = defaults
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{key} is not in {CHART_DEFAULTS}"
            node = node[part]
        assert node is None or isinstance(node, kind) or key == "affinity", (key, type(node), kind)
