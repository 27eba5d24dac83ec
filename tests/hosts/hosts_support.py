"""Helpers for host-configuration tests: a local artefact mirror, fleet testbeds, snapshots."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from experiments.testbeds.fleet import hostfs
from infra import versions
from infra.hosts import artefacts
from infra.versions import Pin

K3S_KEY = f"k3s-io/k3s/{versions.K3S_VERSION}/k3s"
K3S_ARM64_KEY = f"k3s-io/k3s/{versions.K3S_VERSION}/k3s-arm64"
KEADM_FILE = f"keadm-{versions.KUBEEDGE_VERSION}-linux-amd64"
KEADM_KEY = f"kubeedge/kubeedge/{versions.KUBEEDGE_VERSION}/{KEADM_FILE}.tar.gz"
AIRGAP_KEY = f"k3s-io/k3s/{versions.K3S_VERSION}/k3s-airgap-images-amd64.tar.zst"
TOKEN = "test-only-" + "0" * 32  # obviously fake; never a realistic-looking secret

# A stand-in K3s binary (test fixture): records its arguments so tests can see what was run.
FAKE_K3S = b'#!/bin/sh\n# fake k3s (test fixture)\necho "$*" >> /var/log/fake-k3s.log\n'
FAKE_AIRGAP = b"test fixture: not a real image tarball\n"
FAKE_KEADM = b"#!/bin/sh\necho 'fake keadm (test fixture)'\n"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the test fleet needs root (netns, mounts, chroot)")


def keadm_tarball(stem: str, payload: bytes = FAKE_KEADM) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{stem}/keadm/keadm")
        info.size, info.mode = len(payload), 0o755
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def image_pins() -> dict[str, Pin]:
    """Digests for the KubeEdge images (test fixtures: sha256 of a made-up manifest, never pulled)."""
    images = [*artefacts.kubeedge_images(versions.KUBEEDGE_VERSION).values(), artefacts.EDGEMESH_AGENT]
    return {
        i.key: Pin("sha256", hashlib.sha256(f"test manifest {i.key}".encode()).hexdigest(), "test fixture")
        for i in images
    }


class Mirror:
    """A local HTTP server laid out like GitHub releases, with the checksum files each release
    publishes beside its files (K3s: sha256sum-<arch>.txt, KubeEdge: checksum_<file>.txt), serving
    fake binaries (test fixtures)."""

    def __init__(self, root: Path, keadm_payload: bytes = FAKE_KEADM) -> None:
        self.root = root
        self.files: dict[str, bytes] = {}
        for arch in ("amd64", "arm64"):
            keadm = artefacts.keadm(versions.KUBEEDGE_VERSION, arch)
            self.files[artefacts.k3s_binary(versions.K3S_VERSION, arch).key] = FAKE_K3S
            self.files[artefacts.k3s_airgap_images(versions.K3S_VERSION, arch).key] = FAKE_AIRGAP
            self.files[keadm.key] = keadm_tarball(keadm.filename.removesuffix(".tar.gz"), keadm_payload)
        for key, data in self.files.items():
            self.release_dir(key).mkdir(parents=True, exist_ok=True)
            (self.release_dir(key) / key.rsplit("/", 1)[1]).write_bytes(data)
        self.write_checksum_files()
        self.pins: dict[str, Pin] = {**image_pins()}
        for item in artefacts.catalogue():
            if isinstance(item, artefacts.ReleaseFile):
                digest = hashlib.new(item.algorithm, self.files[item.key]).hexdigest()
                self.pins[item.key] = Pin(item.algorithm, digest, "test fixture")
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def release_dir(self, key: str) -> Path:
        owner, repo, tag, _ = key.split("/")
        return self.root / owner / repo / "releases/download" / tag

    def write_checksum_files(self) -> None:
        """What each release publishes: K3s one sha256sum file per arch, KubeEdge one file per tarball."""
        sums: dict[Path, list[str]] = {}
        for item in artefacts.catalogue():
            if not isinstance(item, artefacts.ReleaseFile):
                continue
            digest = hashlib.new(item.algorithm, self.files[item.key]).hexdigest()
            path = self.release_dir(item.key) / item.checksum_file
            if item.repo == "k3s-io/k3s":
                sums.setdefault(path, []).append(f"{digest}  {item.filename}")
            else:
                sums[path] = [digest]
        for path, lines in sums.items():
            path.write_text("\n".join(lines) + "\n")

    def restart(self) -> None:
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def snapshot(root: Path, dirs: tuple[str, ...]) -> dict[str, str]:
    """path -> sha256 of every file under `dirs` of a fleet host's root (what an install may touch)."""
    out = {}
    for d in dirs:
        base = root / d
        for p in sorted(base.rglob("*")) if base.exists() else []:
            if p.is_file() and not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def fleet_testbed(
    fleet: Any,
    mirror: Mirror,
    roles: dict[str, tuple[str, str]],
    kubeedge: bool = False,
    artefact_settings: dict[str, Any] | None = None,
    **extra: Any,
) -> Any:
    """A Testbed over fleet hosts: roles maps host name -> (realm, role)."""
    from infra.model import Testbed

    nodes = []
    for h in fleet.hosts:
        realm, role = roles[h.name]
        nodes.append(
            {
                "name": h.name,
                "realm": realm,
                "role": role,
                "provider": "static",
                "address": h.address,
                "ssh_user": hostfs.SUDO_USER,  # a non-root login with sudo, as in a lab
                "ssh_key_path": str(fleet.key_path),
                "model": "raspberry-pi-4-8gb" if h.pi else "fleet-vm",
                "os": "raspios" if h.pi else "debian",
            }
        )
    return Testbed.model_validate(
        {
            "name": "fleet",
            "nodes": nodes,
            "k3s": {"token": TOKEN},
            "kubeedge": {"enabled": kubeedge},
            "artefacts": {"base_url": mirror.url, **(artefact_settings or {})},
            "vei": {"enabled": False},
            **extra,
        }
    )


def verify_units(host_root: Path, units: list[str], work: Path) -> None:
    """`systemd-analyze verify` (this machine's systemd) on units edgerig delivered to a fleet host:
    a root holding this machine's unit library, the host's unit files and the binaries they start.
    Any complaint - an unknown key, a bad value, a missing binary - fails, warnings included."""
    import re
    import shutil
    import subprocess

    root = work / "verify-root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for unit in units:
        path = f"etc/systemd/system/{unit}"
        text = (host_root / path).read_text()
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
        for binary in re.findall(r"^Exec\w+=[-@:+!]*(/\S+)", text, re.MULTILINE):
            target = root / binary.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = host_root / binary.lstrip("/")
            shutil.copy2(source if source.exists() else "/bin/false", target)
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", *(f"/etc/systemd/system/{u}" for u in units)],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    shutil.rmtree(root)


# The fleet's KubeEdge layout (test_kubeedge_fleet.py, bench_kubeedge_install.py): a cloud server
# through Ansible, a Pi-like EdgeCore host through pyinfra.
KUBEEDGE_ROLES = {"cloud0": ("cloud", "server"), "edge0": ("edge", "edge")}
FLEET_REGISTRY = "http://10.232.0.1:5000"  # never contacted: the fleet pulls no image


def air_gapped_kubeedge_testbed(fleet: Any, mirror: Mirror) -> Any:
    """The KubeEdge layout, air-gapped: a registry mirror for every registry, a chart repository."""
    from infra.model import KNOWN_REGISTRIES

    return fleet_testbed(
        fleet,
        mirror,
        KUBEEDGE_ROLES,
        kubeedge=True,
        artefact_settings={
            "air_gapped": True,
            "registry_mirrors": dict.fromkeys(KNOWN_REGISTRIES, FLEET_REGISTRY),
            "chart_repository": "http://10.232.0.1:8080",
        },
    )
