"""The per-architecture archives import into a real containerd (Debian's) the two ways the nodes do
it: as K3s imports its agent images directory (all platforms, no unpack at import) and as `ctr -n
k8s.io images import` on KubeEdge edges; the image is then found by the digest the manifests name."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from images_support import Built
from testkit import wait_until

# timeout: the session build runs in the first test's setup (~5 min on a machine with no cache)
pytestmark = [pytest.mark.images, pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(1500),
              pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd not installed")]


@pytest.fixture
def ctr(tmp_path: Path) -> Iterator[list[str]]:
    sock = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(f'version = 2\nroot = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n'
                      'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                      f'[grpc]\n  address = "{sock}"\n')
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_until(sock.exists, 20, "containerd's socket", alive=lambda: proc.poll() is None)
    yield ["ctr", "--address", str(sock), "--namespace", "k8s.io"]
    proc.terminate()
    proc.wait(10)


def _refs(ctr: list[str]) -> dict[str, str]:
    out = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: line.split()[2] for line in out.splitlines()[1:] if line.strip()}


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_k3s_style_import_finds_the_image_by_its_digest(built: Built, ctr: list[str], arch: str) -> None:
    img = built.record.images["vei"]
    # K3s imports with all platforms and leaves unpacking to the CRI, for the node's own platform
    done = subprocess.run([*ctr, "images", "import", "--all-platforms", "--no-unpack",
                           str(built.archive("vei", arch))], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    refs = _refs(ctr)
    assert refs[f"edgerig.local/vei@{img.index_digest}"] == img.index_digest
    assert refs[f"edgerig.local/vei:{img.tag}"] == img.index_digest


def test_edge_style_import_unpacks_for_this_platform(built: Built, ctr: list[str]) -> None:
    img = built.record.images["fn-dd"]
    done = subprocess.run([*ctr, "images", "import", str(built.archive("fn-dd", "amd64"))],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _refs(ctr)[f"edgerig.local/fn-dd@{img.index_digest}"] == img.index_digest
