"""`edgerig images push` to a real registry (Debian's docker-registry, distribution v2, on loopback):
the registry serves the exact index the build produced, so the manifests' digest resolves there."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from images_support import Built
from testkit import free_port, wait_until

from workloads.images import oci, push

# timeout: the session build runs in the first test's setup (~5 min on a machine with no cache)
pytestmark = [pytest.mark.images, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1500),
              pytest.mark.skipif(shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
                                 reason="docker-registry and skopeo not installed")]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
                      f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: warn\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import urllib.request

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).read()
        except OSError:
            return False
        return True

    wait_until(answers, 20, "the registry", alive=lambda: proc.poll() is None)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_push_keeps_the_index_digest(built: Built, registry: str) -> None:
    lab = f"{registry}/edgerig"
    refs = push.push(built.folder, lab, tls_verify=False, log=lambda _line: None)
    assert sorted(refs) == sorted(img.registry_reference(lab) for img in built.record.images.values())
    for name, img in built.record.images.items():
        served = push.registry_manifest(lab, name, img.index_digest, tls_verify=False)
        assert oci.canonical(served) == (built.folder / img.index_file).read_bytes()
        for ab in img.arches.values():
            manifest = push.registry_manifest(lab, name, ab.manifest_digest, tls_verify=False)
            assert manifest["config"]["digest"] == ab.config_digest  # type: ignore[index]


def test_push_refuses_a_tampered_archive_and_pushes_nothing(built: Built, registry: str,
                                                                   tmp_path: Path) -> None:
    copy = tmp_path / "build"
    shutil.copytree(built.folder, copy)
    archive = copy / built.record.images["fn-dd"].arches["arm64"].archive  # the last image
    with archive.open("r+b") as f:
        f.seek(4096)
        f.write(b"tampered")
    with pytest.raises(push.PushError, match="does not match its sha256"):
        push.push(copy, f"{registry}/other", tls_verify=False, log=lambda _line: None)
    done = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                           f"docker://{registry}/other/vei:{built.record.images['vei'].tag}"],
                          capture_output=True, text=True, check=False)
    assert done.returncode != 0
