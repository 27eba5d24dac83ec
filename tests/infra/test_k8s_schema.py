"""Every Kubernetes object the program creates (and every K8s fragment put into Helm values) is
valid for the pinned Kubernetes version, checked strictly (unknown fields are errors)."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from stack_support import STACK_NAMES, stack, variant, with_cloud_sinks

from infra import versions
from infra.apps import manifests
from infra.model import EDGE_ROLE_LABEL, Testbed
from infra.platform import placement
from infra.platform.values import edge_function_patch
from infra.rendering import CRD_KINDS, all_objects, edgemesh_objects, helm_value_probes, registered_nodes

VERSION = versions.KUBERNETES_SCHEMA_VERSION


CRD_SCHEMAS = Path(__file__).parent / "crd_schemas"  # each records where it was taken from


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, VERSION, strict=True)


def _strict(node: Any) -> Any:
    """As the apiserver prunes unknown fields of a structural schema, an unknown field is an error here."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    group, version = api_version.split("/")
    schema = yaml.safe_load((CRD_SCHEMAS / f"{group}_{version}_{kind}.yaml").read_text())
    return jsonschema.Draft7Validator(_strict(schema))


def validate_custom(obj: dict[str, Any]) -> None:
    """A custom resource against its CRD's published schema (the operator version the chart pins); its
    metadata, which CRD schemas leave open, against Kubernetes's ObjectMeta."""
    errors = sorted(crd_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj), key=str)
    if errors:
        raise jsonschema.ValidationError("; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors))
    validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]})


def _testbeds() -> list[tuple[str, Testbed]]:
    beds = [(name, stack(name)) for name in STACK_NAMES]
    beds.append(("hybrid-with-sinks", with_cloud_sinks("hybrid")))
    beds.append(("hybrid-k3s-agents", variant("hybrid", kubeedge={"enabled": False})))
    return beds


@pytest.mark.parametrize(("label", "testbed"), _testbeds(), ids=[b[0] for b in _testbeds()])
def test_every_rendered_object_is_valid(label: str, testbed: Testbed) -> None:
    objs = all_objects(testbed) + helm_value_probes(testbed) + registered_nodes(testbed)
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            validate_custom(obj)
        else:
            validate(obj)
    if testbed.vei.enabled and testbed.platform.monitoring.enabled:
        assert any(o["kind"] == "PodMonitor" for o in objs), label


def test_every_custom_kind_has_its_schema() -> None:
    for api_version, kind in CRD_KINDS:
        assert crd_validator(api_version, kind).schema["properties"]["spec"]["properties"], kind


def test_broken_pod_monitors_are_caught() -> None:
    (good,) = manifests.pod_monitors(stack("pi-k3s"))
    validate_custom(good)
    typo = copy.deepcopy(good)
    typo["spec"]["podMetricsEndpoints"][0]["intervall"] = "5s"  # pruned by the apiserver: no scrape interval
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["podMetricsEndpoints"][0]["interval"] = 5
    bad_metadata = copy.deepcopy(good)
    bad_metadata["metadata"]["namespce"] = bad_metadata["metadata"].pop("namespace")
    for broken in (typo, wrong_type, bad_metadata):
        with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
            validate_custom(broken)


def test_schema_version_is_shipped_and_matches_k3s() -> None:
    assert versions.kubernetes_minor(versions.K3S_VERSION) == ".".join(VERSION.split(".")[:2])
    # validate() falls back to an older schema for unknown versions; make sure ours is exact.
    assert VERSION in kubernetes_validate.utils.all_versions()


def test_broken_objects_are_caught() -> None:
    good = manifests.gateway_deployment(stack("pi-k3s"))
    validate(good)
    typo = copy.deepcopy(good)
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")  # misspelt field: strict mode rejects it
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(wrong_type)
    bad_probe = copy.deepcopy(good)
    bad_probe["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"] = {
        "service": "x"
    }  # no port
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad_probe)


def _kinds(objs: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objs}


def test_edgemesh_objects_are_valid() -> None:
    objs = edgemesh_objects(stack("hybrid"))
    assert _kinds(objs) == {
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Secret",
        "DaemonSet",
        "Service",
    }
    for obj in objs:
        validate(obj)
    assert edgemesh_objects(variant("hybrid", kubeedge={"enabled": False})) == []


def test_edge_tolerations_and_affinities_are_valid() -> None:
    tb = stack("hybrid")
    fragments = {
        "edge-toleration": {"tolerations": placement.edge_tolerations()},
        "prefer-edge": {"affinity": placement.prefer_edge_affinity(80)},
        "not-on-edgecore": {"affinity": placement.not_on_edgecore_affinity()},
        "cloud-only": {"affinity": placement.cloud_only_affinity()},
        "daemonsets": placement.daemonset_placement(tb),
        "edge-function": edge_function_patch(tb)["spec"]["template"]["spec"],
    }
    for name, spec in fragments.items():
        validate(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "probe", "image": "probe"}], **spec},
            }
        )
    # A misspelt field or a wrong type in a toleration is caught (strict schema).
    bad = {"tolerations": [{"key": EDGE_ROLE_LABEL, "efect": "NoSchedule", "tolerationSeconds": "ten"}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bad"},
                "spec": {"containers": [{"name": "p", "image": "p"}], **bad},
            }
        )


@pytest.mark.parametrize(
    ("label", "testbed"),
    [
        ("kubeedge", stack("hybrid")),
        ("hybrid-k3s-agents", variant("hybrid", kubeedge={"enabled": False})),
        ("openstack-kubeedge", stack("openstack-kubeedge")),
        ("pi-k3s", stack("pi-k3s")),
    ],
    ids=["kubeedge", "hybrid-k3s-agents", "openstack-kubeedge", "pi-k3s"],
)
def test_node_configuration_is_valid(label: str, testbed: Testbed) -> None:
    nodes = registered_nodes(testbed)
    for node in nodes:
        validate(node)
    edge = [n for n in nodes if n["metadata"]["labels"].get("edgerig.io/realm") == "edge"]
    if testbed.edge_taint and edge:
        assert all(
            {"key": EDGE_ROLE_LABEL, "value": "", "effect": "NoSchedule"} in n["spec"]["taints"] for n in edge
        )
