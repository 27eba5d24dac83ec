"""Every Helm value the program sets, for every stack, exists in the pinned chart's default values
(or under a map the chart passes through) with the same type; and the values do what they are for.

The charts' default values.yaml files are data beside the checkout (../shared/charts, see its
README), taken at each pinned release's commit. Subcharts (kube-prometheus-stack's grafana,
kube-state-metrics, node-exporter) are checked against their own defaults as the parent overrides them.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_support import Run, run_program
from stack_support import ROOT, STACK_NAMES, stack, variant, with_cloud_sinks

from infra import versions
from infra.model import EDGE_ROLE_LABEL, Testbed
from workloads.vei.settings import NATS_GOMAXPROCS, NATS_MAX_PAYLOAD_BYTES

RELEASE = "kubernetes:helm.sh/v3:Release"
# Beside the checkout (CI, /work/main), or beside the folder of worktrees.
CANDIDATES = [ROOT.parent / "shared" / "charts", ROOT.parent.parent / "shared" / "charts"]
CHARTS = {
    versions.NATS_CHART: f"nats-{versions.NATS_CHART_VERSION}",
    versions.OPENFAAS_CHART: f"openfaas-{versions.OPENFAAS_CHART_VERSION}",
    versions.KUBE_PROMETHEUS_STACK_CHART:
        f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART_VERSION}",
    versions.METRICS_SERVER_CHART: f"metrics-server-{versions.METRICS_SERVER_CHART_VERSION}",
}


# Kubernetes fragments the charts put into their pod specs verbatim (toYaml): their content is checked
# against the Kubernetes schema instead (test_k8s_schema's probe pods), even where the default is not {}.
KUBERNETES_FRAGMENTS = {"resources", "affinity", "nodeSelector", "tolerations", "securityContext"}
# Values a chart's templates read although its values.yaml does not list them (checked at the release
# commit of the chart's source), with a value of the type the template takes.
READ_BY_TEMPLATES: dict[tuple[str, str], Any] = {
    # grafana 8.5.2 templates/service.yaml: `nodePort: {{ .Values.service.nodePort }}` when type NodePort
    (versions.KUBE_PROMETHEUS_STACK_CHART, "grafana.service.nodePort"): 30000,
}


def charts_dir() -> Path:
    for path in CANDIDATES:
        if path.is_dir():
            return path
    pytest.fail(f"the pinned charts' default values are missing: expected shared/charts at one of "
                f"{', '.join(map(str, CANDIDATES))} (the shared folder lies beside the checkout)")


def _yaml(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()) or {})


@cache
def chart_defaults(chart: str) -> dict[str, Any]:
    """The chart's values with each subchart's defaults under its name, the parent's overrides on top."""
    folder = charts_dir() / CHARTS[chart]
    values = _yaml(folder / "values.yaml")
    for sub in sorted((folder / "subcharts").glob("*")) if (folder / "subcharts").is_dir() else []:
        name = _yaml(sub / "Chart.yaml")["name"]
        values[name] = _merged(_yaml(sub / "values.yaml"), values.get(name) or {})
    return values


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both else value
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def mismatches(chart_name: str, ours: dict[str, Any], chart: dict[str, Any], path: str = "") -> list[str]:
    """Paths of `ours` that the chart does not have, or has with another type. A key whose default is
    an empty map ({}: merge, podTemplate.merge) or a Kubernetes fragment passes its content through,
    and a key whose default is null takes any type."""
    problems = []
    for key, value in ours.items():
        here = f"{path}.{key}" if path else key
        if (chart_name, here) in READ_BY_TEMPLATES:
            if _kind(value) != (want := _kind(READ_BY_TEMPLATES[chart_name, here])):
                problems.append(f"{here}: {_kind(value)}, but the chart's templates take a {want}")
            continue
        if key not in chart:
            problems.append(f"{here}: not a value of the chart")
            continue
        default = chart[key]
        if default is None:
            continue
        if _kind(value) != _kind(default):
            problems.append(f"{here}: {_kind(value)}, but the chart's default is a {_kind(default)}")
        elif isinstance(value, dict) and default and key not in KUBERNETES_FRAGMENTS:
            problems += mismatches(chart_name, value, default, here)
    return problems


def _testbeds() -> list[tuple[str, Testbed]]:
    return [*((name, stack(name)) for name in STACK_NAMES),
            ("hybrid-with-sinks", with_cloud_sinks("hybrid")),
            ("hybrid-k3s-agents", variant("hybrid", kubeedge={"enabled": False})),
            ("pi-k3s-cluster-clients", variant("pi-k3s", vei={"clients": "cluster"}))]


_RUNS: dict[str, Run] = {}


def releases(label: str, testbed: Testbed) -> dict[str, dict[str, Any]]:
    """chart -> the values the program gave its Helm release (under mocks: what is deployed)."""
    if label not in _RUNS:
        _RUNS[label] = run_program(testbed)
    return {r.inputs["chart"]: r.inputs["values"] for r in _RUNS[label].mocks.of_type(RELEASE)}


@pytest.mark.parametrize(("label", "testbed"), _testbeds(), ids=[b[0] for b in _testbeds()])
def test_every_value_exists_in_the_pinned_chart_with_its_type(label: str, testbed: Testbed) -> None:
    values = releases(label, testbed)
    assert set(values) <= set(CHARTS) and versions.NATS_CHART in values
    for chart, ours in values.items():
        assert mismatches(chart, ours, chart_defaults(chart)) == [], f"{label}: {chart}"


def test_the_walk_catches_a_misspelt_key_and_a_wrong_type() -> None:
    ours = releases("pi-k3s", stack("pi-k3s"))[versions.KUBE_PROMETHEUS_STACK_CHART]
    broken = copy.deepcopy(ours)
    broken["grafana"]["sidecar"]["datasources"]["alertmanger"] = {"enabled": False}
    broken["prometheus"]["service"]["nodePort"] = "30090"
    broken["prometheus-node-exporter"]["tolerations"] = {"effect": "NoSchedule"}
    broken["grafana"]["service"]["nodePort"] = "31300"
    chart = versions.KUBE_PROMETHEUS_STACK_CHART
    assert sorted(mismatches(chart, broken, chart_defaults(chart))) == [
        "grafana.service.nodePort: str, but the chart's templates take a number",
        "grafana.sidecar.datasources.alertmanger: not a value of the chart",
        "prometheus-node-exporter.tolerations: dict, but the chart's default is a list",
        "prometheus.service.nodePort: str, but the chart's default is a number",
    ]


@pytest.mark.parametrize("name", STACK_NAMES)
def test_platform_values_do_what_they_are_for(name: str) -> None:
    values = releases(name, stack(name))
    merge = values[versions.NATS_CHART]["config"]["merge"]
    assert merge["max_payload"] == NATS_MAX_PAYLOAD_BYTES > 4 * 1024 * 1024  # the gateway's 4 MiB frames fit
    # the same nats-server as the testbeds run: one Go scheduler thread (the chart renders env values)
    assert values[versions.NATS_CHART]["container"]["env"] == {"GOMAXPROCS": str(NATS_GOMAXPROCS)}
    users = merge["authorization"]["users"]
    assert users and all(set(u) == {"nkey", "permissions"} and u["nkey"].startswith("U") for u in users)
    if kps := values.get(versions.KUBE_PROMETHEUS_STACK_CHART):
        defaults = chart_defaults(versions.KUBE_PROMETHEUS_STACK_CHART)
        exporter = kps["prometheus-node-exporter"]["tolerations"]
        # Helm replaces lists: the chart's own tolerations must still be there, the edge taint beside.
        assert all(t in exporter for t in defaults["prometheus-node-exporter"]["tolerations"])
        assert {"key": EDGE_ROLE_LABEL, "operator": "Exists", "effect": "NoSchedule"} in exporter
        assert kps["alertmanager"]["enabled"] is False
        assert kps["grafana"]["sidecar"]["datasources"]["alertmanager"]["enabled"] is False
