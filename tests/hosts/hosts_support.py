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

from infra import versions

K3S_KEY = f"k3s-io/k3s/{versions.K3S_VERSION}/k3s"
K3S_ARM64_KEY = f"k3s-io/k3s/{versions.K3S_VERSION}/k3s-arm64"
KEADM_FILE = f"keadm-{versions.KUBEEDGE_VERSION}-linux-amd64"
KEADM_KEY = f"kubeedge/kubeedge/{versions.KUBEEDGE_VERSION}/{KEADM_FILE}.tar.gz"
TOKEN = "test-only-" + "0" * 32  # obviously fake; never a realistic-looking secret

# A stand-in K3s binary (test fixture): records its arguments so tests can see what was run.
FAKE_K3S = b'#!/bin/sh\n# fake k3s (test fixture)\necho "$*" >> /var/log/fake-k3s.log\n'

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the test fleet needs root (netns, mounts, chroot)")


def _keadm_tarball() -> bytes:
    buf = io.BytesIO()
    payload = b"#!/bin/sh\necho 'fake keadm (test fixture)'\n"
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{KEADM_FILE}/keadm/keadm")
        info.size, info.mode = len(payload), 0o755
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


class Mirror:
    """A local HTTP server laid out like GitHub releases, serving fake binaries (test fixtures)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = {K3S_KEY: FAKE_K3S, K3S_ARM64_KEY: FAKE_K3S, KEADM_KEY: _keadm_tarball()}
        self.sums: dict[str, str | None] = {}
        for key, data in self.files.items():
            owner, repo, tag, name = key.split("/")
            path = root / owner / repo / "releases/download" / tag / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.sums[key] = hashlib.sha256(data).hexdigest()
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

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
    fleet: Any, mirror: Mirror, roles: dict[str, tuple[str, str]], kubeedge: bool = False
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
                "ssh_user": "root",
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
            "artefacts": {"base_url": mirror.url},
            "vei": {"enabled": False},
        }
    )
