"""OpenFaaS's values: only the HPA scales functions, and the pre-cap release can be pinned (every key
against the pinned chart: test_chart_values)."""

from __future__ import annotations

from stack_support import stack, stack_config, variant

from infra import versions
from infra.platform.values import openfaas_values


def test_alertmanager_scaling_is_off_so_it_cannot_fight_an_hpa() -> None:
    values = openfaas_values(stack("openstack-kubeedge"))
    assert values["alertmanager"] == {"create": False}
    assert values["openfaasPro"] is False  # the Pro autoscaler is not there either


def test_the_pre_cap_release_can_be_pinned_in_the_stack_file() -> None:
    faas = stack("openstack-kubeedge").platform.openfaas
    assert faas.chart_version == versions.OPENFAAS_CHART_VERSION
    config = stack_config("openstack-kubeedge")["edgerig:platform"]
    pinned = variant("openstack-kubeedge", platform={
        **config, "openfaas": {**config["openfaas"], "chartVersion": versions.OPENFAAS_PRECAP_CHART_VERSION}})
    assert pinned.platform.openfaas.chart_version == "11.1.10"
    assert pinned.platform.openfaas.hpa.max_replicas == 25
