"""The VEI image built here and run for real with podman: health, a whole pipeline across containers."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from images_support import Built
from podman_cli import Podman
from testkit import free_port, wait_serving, wait_until

from workloads.images import oci
from workloads.vei import launch

# timeout: the session build runs in the first test's setup (~5 min on a machine with no cache)
pytestmark = [pytest.mark.images, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def vei_image(built: Built, podman: Podman) -> str:
    return podman.load(built.archive("vei"), built.record.images["vei"].tag)


def _python(podman: Podman, image: str, code: str, extra: tuple[str, ...] = (),
            timeout: float = 120) -> str:
    """Run `python -c code` in the image; its stripped output (the run must succeed)."""
    done = podman.run(image, ["python", "-c", code], extra=extra, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _start(podman: Podman, name: str, image: str, spec: launch.Launch, volumes: tuple[str, ...] = ()) -> None:
    """Start a VEI process the way its Kubernetes container does: Launch.container()'s command + env."""
    container = spec.container(name)
    env = {e["name"]: e["value"] for e in container["env"]}
    podman.start(name, image, [*container["command"], *container["args"]], env=env, volumes=volumes)


def test_image_labels_user_and_contents(built: Built, podman: Podman, vei_image: str) -> None:
    info = json.loads(podman("image", "inspect", vei_image).stdout)[0]
    labels = info["Labels"]
    assert labels["org.opencontainers.image.revision"] == built.record.revision
    assert labels["org.opencontainers.image.version"] == built.record.version
    assert info["Config"]["User"] == "10001:10001"
    # a container started by hand runs gRPC as edgerig's manifests do
    assert f"GRPC_EXPERIMENTS={launch.GRPC_ENV['GRPC_EXPERIMENTS']}" in info["Config"]["Env"]
    # only what the processes need: no package manager, shell, compiler, pip, or the CLI's libraries
    probe = ("import importlib.util as u, shutil, os; "
             "print([m for m in ('pulumi','ansible','pyinfra','matplotlib','typer','pip','setuptools') "
             "if u.find_spec(m)], "
             "[t for t in ('sh','bash','apt','dpkg','gcc','cc','perl') if shutil.which(t)], "
             "os.getuid())")
    assert _python(podman, vei_image, probe) == "[] [] 10001"


def test_gateway_container_answers_the_standard_health_check(
    podman: Podman, vei_image: str, nats_server: str
) -> None:
    port = free_port()
    spec = launch.gateway(listen=f"127.0.0.1:{port}", nats_urls=[nats_server])
    _start(podman, "vei-gw-health", vei_image, spec)
    try:
        asyncio.run(wait_serving(f"127.0.0.1:{port}", within_s=60, service="VEIv1_0.VEIv1_0"))
        asyncio.run(wait_serving(f"127.0.0.1:{port}", within_s=5, service=""))
    except TimeoutError:
        pytest.fail(f"gateway container not SERVING; its log:\n{podman.logs('vei-gw-health')}")
    finally:
        podman.remove("vei-gw-health")


def test_camera_gateway_vision_sink_across_containers_delivers_every_frame(
    podman: Podman, vei_image: str, nats_server: str, tmp_path: Path
) -> None:
    frames = 60
    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o777)  # the containers run as uid 10001
    port = free_port()
    gateway = f"127.0.0.1:{port}"
    names = ["vei-chain-sink", "vei-chain-gateway", "vei-chain-vision", "vei-chain-camera"]
    try:
        _start(podman, names[0], vei_image, launch.sink(nats_urls=[nats_server], out="/data/sink.jsonl"),
               volumes=(f"{data}:/data",))
        _start(podman, names[1], vei_image, launch.gateway(listen=gateway, nats_urls=[nats_server]))
        asyncio.run(wait_serving(gateway, within_s=60, service="VEIv1_0.VEIv1_0"))
        _start(podman, names[2], vei_image, launch.vision(gateway=gateway, camera_id="cam-0", cloud="local"))
        wait_until(lambda: "subscribed to camera cam-0" in podman.logs(names[2]), 60,
                   "the vision app subscribed")
        _start(podman, names[3], vei_image, launch.camera(gateway=gateway, camera_id="cam-0", fps=20,
                                                          frames=frames, frame_bytes=4096))
        code = podman.wait(names[3], timeout=120)
        camera_log = podman.logs(names[3])
        assert code == 0, camera_log
        stats = json.loads([ln for ln in camera_log.splitlines() if ln.startswith("{")][-1])
        assert stats["sent"] == frames and stats["acked"] == frames, stats
        sink = data / "sink.jsonl"
        wait_until(lambda: sink.exists() and len(sink.read_text().splitlines()) >= frames, 30,
                   f"{frames} results at the sink")
        ids = {json.loads(line)["frameId"] for line in sink.read_text().splitlines()}
        assert len(ids) == frames
    finally:
        for name in reversed(names):
            podman.remove(name)


def test_arm64_image_says_arm64_and_its_python_starts_under_qemu(built: Built, podman: Podman) -> None:
    vei = built.record.images["vei"]
    top, index = oci.read_archive_index(built.archive("vei", "arm64"))
    assert top["manifests"][0]["digest"] == vei.index_digest
    platforms = {m["digest"]: m["platform"] for m in index["manifests"]}
    assert platforms[vei.arches["arm64"].manifest_digest] == {"architecture": "arm64", "os": "linux",
                                                              "variant": "v8"}
    image = podman.load(built.archive("vei", "arm64"), vei.tag, arch="arm64")
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    assert info["Architecture"] == "arm64"
    probe = "import platform, grpc, pydantic_core; print(platform.machine())"
    assert _python(podman, image, probe, extra=("--arch", "arm64"), timeout=180) == "aarch64"


def test_the_aws_sink_clients_still_load_from_the_pruned_botocore(podman: Podman, vei_image: str) -> None:
    probe = ("import boto3, botocore, os, pathlib\n"
             "boto3.client('iot-data', region_name='eu-north-1', endpoint_url='http://127.0.0.1:9',"
             " aws_access_key_id='x', aws_secret_access_key='y')\n"
             "boto3.client('sts', region_name='eu-north-1')\n"
             "data = pathlib.Path(botocore.__file__).parent / 'data'\n"
             "print(sorted(p.name for p in data.iterdir() if p.is_dir()))")
    assert _python(podman, vei_image, probe) == "['iot-data', 'sso', 'sso-oidc', 'sts']"
