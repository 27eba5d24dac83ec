"""Every Kubernetes object the program creates (and every K8s fragment put into Helm values) is
valid for the pinned Kubernetes version, checked strictly (unknown fields are errors)."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from stack_fixtures import STACK_NAMES, stack, variant, with_cloud_sinks

from infra import versions
from infra.apps import manifests
from infra.model import EDGE_ROLE_LABEL, Testbed
from infra.platform import placement
from infra.platform.values import edge_function_patch
from infra.rendering import CRD_KINDS, all_objects, edgemesh_objects, helm_value_probes, registered_nodes

VERSION = versions.KUBERNETES_SCHEMA_VERSION


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, VERSION, strict=True)


def _testbeds() -> list[tuple[str, Testbed]]:
    beds = [(name, stack(name)) for name in STACK_NAMES]
    beds.append(("hybrid-with-sinks", with_cloud_sinks("hybrid")))
    beds.append(("hybrid-k3s-agents", variant("hybrid", kubeedge={"enabled": False})))
    return beds


@pytest.mark.parametrize(("label", "testbed"), _testbeds(), ids=[b[0] for b in _testbeds()])
def test_every_rendered_object_is_valid(label: str, testbed: Testbed) -> None:
    objs = all_objects(testbed) + helm_value_probes(testbed) + registered_nodes(testbed)
    checked = 0
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        validate(obj)
        checked += 1
    assert checked >= 8, f"{label}: only {checked} objects validated"


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
