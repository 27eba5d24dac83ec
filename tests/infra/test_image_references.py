"""Image references come from one place (infra/images.py, the build record): air-gapped by default,
a registry when the stack names one; and which archive goes to which node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from image_support import write_record
from pydantic import ValidationError
from stack_support import STACK_NAMES, stack, variant

from infra import images
from infra.apps import clients, manifests
from infra.model import Testbed
from workloads.images import catalog, record


def _containers(testbed: Testbed) -> list[dict[str, object]]:
    deps = [manifests.gateway_deployment(testbed), *clients.vision_deployments(testbed),
            *clients.camera_deployments(testbed)]
    sink = clients.sink_deployment(testbed)
    deps += [sink] if sink else []
    return [c for d in deps for c in d["spec"]["template"]["spec"]["containers"]]


@pytest.mark.parametrize("name", STACK_NAMES)
def test_air_gapped_by_default_every_vei_container_names_the_built_digest_and_never_pulls(
    name: str, image_build_record: Path
) -> None:
    built = json.loads(image_build_record.read_text())["images"]["vei"]
    containers = _containers(stack(name))
    assert containers
    for c in containers:
        assert c["image"] == f"edgerig.local/vei@{built['index_digest']}"
        assert c["imagePullPolicy"] == "Never"


def test_a_registry_in_the_stack_moves_every_reference_there(image_build_record: Path) -> None:
    testbed = variant("pi-k3s", images={"registry": "registry.lab:5000/edgerig"})
    digest = json.loads(image_build_record.read_text())["images"]["vei"]["index_digest"]
    for c in _containers(testbed):
        assert c["image"] == f"registry.lab:5000/edgerig/vei@{digest}"
        assert c["imagePullPolicy"] == "IfNotPresent"
    env = images.function_env(testbed)
    assert set(env) == {"EDGERIG_IMAGE_NODEINFO", "EDGERIG_IMAGE_GZIP_COMPRESSION", "EDGERIG_IMAGE_DD",
                        "EDGERIG_IMAGE_SHASUM"}
    assert all(v.startswith("registry.lab:5000/edgerig/fn-") and "@sha256:" in v for v in env.values())
    assert all(images.node_archives(testbed, n) == [] for n in testbed.nodes)


@pytest.mark.parametrize("bad", ["https://registry.lab", "registry.lab/", "", "reg lab"])
def test_a_malformed_registry_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises((ValidationError, ValueError), match=r"images\.registry"):
        variant("pi-k3s", images={"registry": bad})


def test_each_node_gets_the_archives_of_its_architecture_in_its_runtime_directory() -> None:
    testbed = stack("hybrid")
    seen = set()
    for node in testbed.nodes:
        archives = images.node_archives(testbed, node)
        assert len(archives) == len(catalog.IMAGES)
        for a in archives:
            assert a.source.name.endswith(f"-{node.arch}.oci.tar")
            directory = images.EDGE_IMAGES_DIR if node.role == "edge" else images.K3S_IMAGES_DIR
            assert a.dest == f"{directory}/{a.source.name}"
        seen.add((node.arch, node.role == "edge"))
    assert ("arm64", True) in seen and ("amd64", False) in seen


def test_a_stack_with_arm64_nodes_and_an_amd64_only_build_fails_naming_the_fix(tmp_path: Path) -> None:
    path = write_record(tmp_path, arches=("amd64",))
    testbed = variant("pi-k3s", images={"buildRecord": str(path)})
    expected = r"arm64 nodes but vei was built for amd64 only.*--arch amd64,arm64"
    with pytest.raises(record.RecordError, match=expected):
        manifests.gateway_deployment(testbed)


def test_no_build_fails_naming_the_command(tmp_path: Path) -> None:
    testbed = variant("pi-k3s", images={"buildRecord": str(tmp_path / "none" / "images.json")})
    with pytest.raises(record.RecordError, match=r"sudo edgerig images build"):
        images.vei(testbed)
    assert not images.has_build(testbed)


def test_new_archives_go_into_the_running_runtime_k3s_or_edgecore() -> None:
    testbed = stack("hybrid")
    for node in testbed.nodes:
        cmd = images.import_command(node)
        if node.role == "edge":
            assert cmd.argv[0] == "ctr" and cmd.socket == "/run/containerd/containerd.sock"
        else:
            assert cmd.argv[:2] == ("/usr/local/bin/k3s", "ctr")
            assert cmd.socket == "/run/k3s/containerd/containerd.sock"
        assert cmd.argv[-4:] == ("--namespace", "k8s.io", "images", "import")


def test_a_new_image_build_changes_the_host_config_hash(tmp_path: Path) -> None:
    from infra.cluster.hashing import host_config_hash

    (tmp_path / "a").mkdir()
    first = write_record(tmp_path / "a")
    other = tmp_path / "b"
    other.mkdir()
    data = json.loads(first.read_text())
    data["images"]["vei"]["arches"]["arm64"]["archive_sha256"] = "f" * 64
    (other / "images.json").write_text(json.dumps(data))
    a = variant("pi-k3s", images={"buildRecord": str(first)})
    b = variant("pi-k3s", images={"buildRecord": str(other / "images.json")})
    node = next(n for n in a.nodes if n.arch == "arm64")
    assert host_config_hash(a, node) != host_config_hash(b, node)
