"""The cached Debian root filesystem every test-fleet host boots from (read-only lower layer).

`debootstrap` takes ~30-60 s and ~300 MB, so it runs once and the result is kept in a stable cache
directory across runs. The stamp file records the package list: changing the list rebuilds.
Namespaces have no route out, so everything a deploy expects to find "already installed" (python3
for Ansible, chrony, iptables, ...) has to be in this base image.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import IO

DEFAULT_CACHE_DIR = Path(os.environ.get("EDGERIG_FLEET_CACHE", "/var/cache/edgerig"))
SUITE = "bookworm"
# python3-apt: Ansible's apt module needs it and would otherwise try to install it (no network here).
PACKAGES = (
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "iptables",
    "chrony",
    "ca-certificates",
    "procps",
    "kmod",
    # EdgeCore's prerequisites (container runtime + CNI plugins): present so the KubeEdge deploy's
    # package step is checked against facts on the fleet instead of needing a network.
    "containerd",
    "containernetworking-plugins",
)
STAMP = ".edgerig-rootfs-stamp"


class RootfsError(RuntimeError):
    pass


def _stamp_text() -> str:
    return f"{SUITE} {' '.join(PACKAGES)}\n"


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine already uses (deb822 or one-line format), never a guess."""
    candidates = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for path in candidates:
        text = path.read_text()
        for block in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", block, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", block, re.M)
            if uris and suites and SUITE in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1)
    legacy = sources_dir / "sources.list"
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                url = next(p for p in parts[1:] if not p.startswith("["))
                return url
    raise RootfsError(
        f"no Debian mirror found in {sources_dir}/sources.list(.d); add one for '{SUITE}' "
        "or set EDGERIG_DEBIAN_MIRROR"
    )


def rootfs_dir(cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    digest = hashlib.sha256(_stamp_text().encode()).hexdigest()[:8]
    return cache_dir / f"rootfs-{SUITE}-{digest}"


def ensure_rootfs(cache_dir: Path = DEFAULT_CACHE_DIR, log: IO[str] | None = None) -> Path:
    """Return the cached rootfs, building it first if missing (atomically: build dir, then rename)."""
    target = rootfs_dir(cache_dir)
    stamp = target / STAMP
    if stamp.exists() and stamp.read_text() == _stamp_text():
        return target
    if shutil.which("debootstrap") is None:
        raise RootfsError("debootstrap is not installed: apt-get install debootstrap")
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    mirror = os.environ.get("EDGERIG_DEBIAN_MIRROR") or debian_mirror()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(building),
        mirror,
    ]
    result = subprocess.run(
        cmd, stdout=log, stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        tail = (result.stderr or "")[-2000:]
        raise RootfsError(f"debootstrap {SUITE} from {mirror} failed (exit {result.returncode}): {tail}")
    # The image's own host keys would be shared by every host; each host gets fresh ones at start.
    for key in (building / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (building / STAMP).write_text(_stamp_text())
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    return target
