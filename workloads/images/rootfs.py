"""The cached Debian root filesystems edgerig builds from: the test fleet's hosts and the images' base.

One builder for both: `debootstrap` of a suite for one architecture with a list of packages
(`RootfsSpec`). It takes ~30-60 s natively (several minutes for arm64 under qemu-user) and
~200-300 MB, so it runs once and the result is kept in a stable cache directory across runs. The
stamp file records suite, architecture and package list: changing any of them builds a new one.
Namespaces have no route out, so everything a deploy expects to find "already installed" (python3
for Ansible, chrony, iptables, ...) has to be in the fleet's base.

A foreign architecture (arm64 on an amd64 machine) needs qemu-user-static registered with binfmt_misc
(`update-binfmts --enable qemu-aarch64`): debootstrap's second stage runs the target's binaries.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from workloads.images import arches

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
    "nftables",  # the host firewall of static hosts is loaded for real on the fleet
    # EdgeCore's prerequisites (container runtime + CNI plugins): present so the KubeEdge deploy's
    # package step is checked against facts on the fleet instead of needing a network.
    "containerd",
    "containernetworking-plugins",
)
STAMP = ".edgerig-rootfs-stamp"


class RootfsError(RuntimeError):
    pass


@dataclass(frozen=True)
class RootfsSpec:
    """What to debootstrap: `name` keys the cache directory, the rest is the stamp."""

    name: str
    packages: tuple[str, ...]
    arch: str | None = None  # Debian architecture; None = this machine's
    suite: str = SUITE
    variant: str = "minbase"

    @property
    def debian_arch(self) -> str:
        return self.arch or arches.host().name

    @property
    def foreign(self) -> bool:
        return self.debian_arch != arches.host().name

    def stamp_text(self) -> str:
        if self.name == "fleet" and self.arch is None and self.variant == "minbase":
            # The fleet's original stamp, so existing caches stay valid.
            return f"{self.suite} {' '.join(self.packages)}\n"
        return f"{self.name} {self.suite} {self.debian_arch} {self.variant} {' '.join(self.packages)}\n"

    def directory(self, cache_dir: Path) -> Path:
        digest = hashlib.sha256(self.stamp_text().encode()).hexdigest()[:8]
        if self.name == "fleet" and self.arch is None:
            return cache_dir / f"rootfs-{self.suite}-{digest}"
        return cache_dir / f"rootfs-{self.name}-{self.suite}-{self.debian_arch}-{digest}"


FLEET = RootfsSpec("fleet", PACKAGES)


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


def binfmt_ready(arch: arches.Arch) -> bool:
    """True when this kernel runs `arch` binaries (natively, or through a registered qemu-user)."""
    if arch.name == arches.host().name:
        return True
    entry = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{arch.machine}"
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def check_foreign(arch: arches.Arch) -> None:
    """Raise a RootfsError naming the fix when `arch` binaries cannot run on this machine."""
    if binfmt_ready(arch):
        return
    if shutil.which(arch.qemu_binary) is None:
        raise RootfsError(f"{arch.name} binaries cannot run on this {arches.host().name} machine: "
                          f"{arch.qemu_binary} is missing (apt-get install qemu-user-static binfmt-support)")
    raise RootfsError(f"{arch.name} binaries cannot run on this machine: qemu-user-static is installed but "
                      f"not registered with binfmt_misc; run `update-binfmts --enable qemu-{arch.machine}` "
                      "(first `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc` if not mounted)")


def rootfs_dir(cache_dir: Path = DEFAULT_CACHE_DIR, spec: RootfsSpec = FLEET) -> Path:
    return spec.directory(cache_dir)


def is_cached(cache_dir: Path = DEFAULT_CACHE_DIR, spec: RootfsSpec = FLEET) -> bool:
    stamp = rootfs_dir(cache_dir, spec) / STAMP
    return stamp.exists() and stamp.read_text() == spec.stamp_text()


def ensure_rootfs(
    cache_dir: Path = DEFAULT_CACHE_DIR, log: IO[str] | None = None, spec: RootfsSpec = FLEET
) -> Path:
    """Return the cached rootfs, building it first if missing (atomically: build dir, then rename)."""
    target = rootfs_dir(cache_dir, spec)
    if is_cached(cache_dir, spec):
        return target
    if shutil.which("debootstrap") is None:
        raise RootfsError("debootstrap is not installed: apt-get install debootstrap")
    if spec.foreign:
        check_foreign(arches.ARCHES[spec.debian_arch])
    cache_dir.mkdir(parents=True, exist_ok=True)
    building = target.with_name(target.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    mirror = os.environ.get("EDGERIG_DEBIAN_MIRROR") or debian_mirror()
    cmd = [
        "debootstrap",
        f"--variant={spec.variant}",
        f"--arch={spec.debian_arch}",
        f"--include={','.join(spec.packages)}",
        spec.suite,
        str(building),
        mirror,
    ]
    result = subprocess.run(
        cmd, stdout=log, stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        tail = (result.stderr or "")[-2000:] or (f"see {log.name}" if log is not None else "")
        raise RootfsError(
            f"debootstrap {spec.suite} ({spec.debian_arch}) from {mirror} failed "
            f"(exit {result.returncode}): {tail}"
        )
    # The image's own host keys would be shared by every host; each host gets fresh ones at start.
    for key in (building / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (building / STAMP).write_text(spec.stamp_text())
    shutil.rmtree(target, ignore_errors=True)
    building.rename(target)
    return target
