"""The CPU architectures edgerig builds images for, under every name the tools use for them.

One table: Debian (`dpkg --print-architecture`, debootstrap --arch), OCI/Kubernetes (`amd64`,
`arm64` + variant `v8`, the `kubernetes.io/arch` node label), the kernel (`uname -m`, PEP 508
`platform_machine`), uv's `--python-platform` and the qemu-user binary that runs it on another host.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  # Debian and OCI name: amd64, arm64
    machine: str  # uname -m / platform_machine
    uv_platform: str
    oci_variant: str | None
    qemu_binary: str  # the qemu-user-static interpreter for this architecture

    def marker_environment(self, python_version: str) -> dict[str, str]:
        """PEP 508 marker values of CPython `python_version` on linux/<this arch>."""
        return {
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "platform_system": "Linux",
            "sys_platform": "linux",
            "os_name": "posix",
            "platform_machine": self.machine,
            "python_version": python_version,
            "python_full_version": f"{python_version}.0",
            "implementation_version": f"{python_version}.0",
            "platform_release": "",
            "platform_version": "",
            "extra": "",
        }

    def oci_platform(self) -> dict[str, str]:
        out = {"architecture": self.name, "os": "linux"}
        if self.oci_variant:
            out["variant"] = self.oci_variant
        return out


ARCHES: dict[str, Arch] = {
    "amd64": Arch("amd64", "x86_64", "x86_64-manylinux_2_28", None, "qemu-x86_64-static"),
    "arm64": Arch("arm64", "aarch64", "aarch64-manylinux_2_28", "v8", "qemu-aarch64-static"),
}
_BY_MACHINE = {a.machine: a for a in ARCHES.values()}


class UnknownArch(ValueError):
    pass


def host() -> Arch:
    machine = platform.machine()
    if machine not in _BY_MACHINE:
        raise UnknownArch(f"this machine's architecture {machine!r} is not one edgerig builds on "
                          f"({', '.join(sorted(_BY_MACHINE))})")
    return _BY_MACHINE[machine]


def parse_arches(text: str) -> list[Arch]:
    """'amd64,arm64' -> the Arch entries, in the given order; an unknown name says which are known."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UnknownArch(f"no architecture given: use one or more of {', '.join(ARCHES)}, comma-separated")
    unknown = [n for n in names if n not in ARCHES]
    if unknown:
        hint = {"x86_64": "amd64", "aarch64": "arm64", "arm64v8": "arm64", "armhf": None, "arm": None}
        fixes = [f"{n!r} (did you mean {hint[n]!r}?)" if hint.get(n) else repr(n) for n in unknown]
        raise UnknownArch(f"unknown architecture {', '.join(fixes)}: edgerig builds for "
                          f"{', '.join(ARCHES)} (Debian/OCI names; the Pis are arm64)")
    return [ARCHES[n] for n in dict.fromkeys(names)]
