"""pyinfra deploys for Raspberry Pi hosts (packaged-deploy style: `@deploy` + data_defaults).

Everything host-specific arrives as a HostPlan (infra/hosts/plan.py) in `host.data.edgerig_plan`;
these deploys only decide from facts what still has to change. `host.data.edgerig_notes` collects
what was skipped and why, for the progress output.
"""

from __future__ import annotations

import shlex
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents, Sha256File
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, files, server

MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}  # `uname -m` -> release arch
BASE_PACKAGES = ("chrony", "iptables")  # time sync: latency is measured across hosts
CGROUP_FLAGS = ("cgroup_memory=1", "cgroup_enable=memory", "cgroup_enable=cpuset")
DEFAULTS: dict[str, Any] = {"edgerig_plan": None, "edgerig_commands": None}
# host name -> notes about skipped steps; set by infra/hosts/pyinfra_runner.py (host data is copied,
# so a list passed through it would not come back).
NOTES: dict[str, list[str]] = {}


class ShellTest(FactBase[bool]):
    """True when the shell test succeeds (the fact command itself always exits 0)."""

    def command(self, test: str) -> str:  # type: ignore[override]
        return f"if {test} >/dev/null 2>&1; then echo yes; else echo no; fi"

    def process(self, output: list[str]) -> bool:  # type: ignore[override]
        return bool(output) and output[-1].strip() == "yes"


def _note(text: str) -> None:
    NOTES.setdefault(host.name, []).append(text)


def systemd_running() -> bool:
    return host.get_fact(ShellTest, test="test -d /run/systemd/system")


def merged_cmdline(line: str) -> str:
    """The single cmdline.txt line with the cgroup flags appended once (order kept, idempotent)."""
    words = line.split()
    return " ".join(words + [f for f in CGROUP_FLAGS if f not in words]) + "\n"


def _boot_file(name: str) -> str | None:
    for directory in ("/boot/firmware", "/boot"):
        path = f"{directory}/{name}"
        if host.get_fact(ShellTest, test=f"test -f {path}"):
            return path
    return None


@deploy("Prepare a Raspberry Pi", data_defaults=DEFAULTS)
def prepare_pi() -> None:
    plan = host.data.edgerig_plan
    server.hostname(name="Set hostname", hostname=plan.node.name)
    installed = host.get_fact(DebPackages)
    missing = [p for p in BASE_PACKAGES if p not in installed]
    if missing:  # refresh the package lists only when something has to be installed
        apt.packages(name=f"Install {', '.join(missing)}", packages=missing, update=True)
    boot_changed = False
    cmdline = _boot_file("cmdline.txt")
    if cmdline is None:
        _note("no cmdline.txt in /boot/firmware or /boot: not a Pi boot partition, cgroup flags skipped")
    else:
        current = "\n".join(host.get_fact(FileContents, path=cmdline) or [])
        wanted = merged_cmdline(current)
        if current.strip() != wanted.strip():
            boot_changed = True
            files.put(name=f"cgroup flags in {cmdline}", src=StringIO(wanted), dest=cmdline)
    if plan.boot_delay is not None:
        config = _boot_file("config.txt")
        if config is not None:
            op = files.line(
                name=f"boot_delay in {config}",
                path=config,
                line=r"^boot_delay=.*",
                replace=f"boot_delay={plan.boot_delay}",
            )
            boot_changed = boot_changed or op.will_change
    if host.get_fact(ShellTest, test="test -f /etc/dphys-swapfile"):
        files.line(
            name="dphys-swapfile size 0",
            path="/etc/dphys-swapfile",
            line=r"^CONF_SWAPSIZE=.*",
            replace="CONF_SWAPSIZE=0",
        )
        if systemd_running():
            server.shell(
                name="Swap off",
                commands=["dphys-swapfile swapoff || true", "systemctl disable --now dphys-swapfile || true"],
            )
        else:
            _note("swap off skipped: no running systemd (test fleet); CONF_SWAPSIZE=0 written")
    # K3s' bundled iptables copes with nftables; only old Raspberry Pi OS releases (< 11) with the
    # nft backend selected need the legacy switch (K3s docs, "Raspberry Pi OS").
    old_nft = '. /etc/os-release && [ "${VERSION_ID:-99}" -lt 11 ] && iptables --version | grep -q nf_tables'
    if host.get_fact(ShellTest, test=f"sh -c {shlex.quote(old_nft)}"):
        server.shell(
            name="iptables-legacy",
            commands=[
                "update-alternatives --set iptables /usr/sbin/iptables-legacy",
                "update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy",
            ],
        )
    if boot_changed:
        if systemd_running():
            server.reboot(name="Reboot for the new boot settings", delay=10, reboot_timeout=600)
        else:
            _note("reboot needed for the boot settings but skipped: no running systemd (test fleet)")


@deploy("Install verified binaries and rendered files", data_defaults=DEFAULTS)
def deliver() -> None:
    plan = host.data.edgerig_plan
    machine = host.get_fact(Arch)
    if plan.binaries and MACHINE_ARCH.get(machine) != plan.node.arch:
        # Fail as an operation so the error names this host and step like any other failure.
        message = (
            f"the model says arch {plan.node.arch} but the host reports {machine}: fix `arch` in the stack"
        )
        server.shell(name="Check architecture", commands=[f"echo {shlex.quote(message)} >&2; exit 1"])
        return
    for binary, dest in plan.binaries:
        if host.get_fact(Sha256File, path=dest) == binary.sha256:
            continue
        tmp = f"{dest}.edgerig-new"
        files.put(name=f"Upload {binary.artefact.name}", src=str(binary.path), dest=tmp, mode="0700")
        # Checked on the host before the atomic rename: a broken transfer never becomes the binary.
        server.shell(
            name=f"Verify and install {dest}",
            commands=[
                f"if echo '{binary.sha256}  {tmp}' | sha256sum -c --quiet; "
                f"then chmod 0755 {tmp} && mv -f {tmp} {dest}; "
                f"else rm -f {tmp}; echo 'sha256 mismatch for {dest} after upload' >&2; exit 1; fi"
            ],
        )
    for item in plan.files:
        files.put(
            name=f"File {item.path}",
            src=StringIO(item.content),
            dest=item.path,
            mode=item.mode,
            create_remote_dir=True,
        )


@deploy("Run guarded commands", data_defaults=DEFAULTS)
def run_commands() -> None:
    commands = host.data.edgerig_commands
    systemd = systemd_running()
    for cmd in commands:
        if cmd.needs_systemd and not systemd:
            _note(f"skipped '{cmd.name}': no running systemd on this host (test fleet)")
            continue
        if cmd.done_check and host.get_fact(ShellTest, test=cmd.done_check):
            continue
        server.shell(name=cmd.name, commands=[cmd.command])
