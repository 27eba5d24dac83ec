"""Raspberry Pi OS hosts: cgroup flags in cmdline.txt, boot_delay, swap off, and a reboot when a boot
file changed (only where systemd runs)."""

from __future__ import annotations

import shlex
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, server, systemd

from edgerig_deploy import steps

# The same inputs and defaults as playbooks/ansible/roles/raspberrypi/defaults/main.yml.
DEFAULTS: dict[str, Any] = {
    "raspberrypi_cgroup_flags": ["cgroup_memory=1", "cgroup_enable=memory", "cgroup_enable=cpuset"],
    "raspberrypi_boot_delay": None,
}


def merged_cmdline(line: str, flags: list[str]) -> str:
    """The single cmdline.txt line with the flags appended once each (order kept, idempotent)."""
    words = line.split()
    return " ".join(words + [f for f in flags if f not in words]) + "\n"


def _boot_file(name: str) -> str | None:
    for directory in ("/boot/firmware", "/boot"):
        path = f"{directory}/{name}"
        if host.get_fact(steps.ShellTest, test=f"test -f {path}"):
            return path
    return None


@deploy("Prepare a Raspberry Pi (cgroup flags, boot delay, swap off)", data_defaults=DEFAULTS)
def raspberrypi() -> None:
    boot_changed = False
    cmdline = _boot_file("cmdline.txt")
    if cmdline is None:
        steps.note("no cmdline.txt in /boot/firmware or /boot: not a Pi boot partition, cgroup flags skipped")
    else:
        current = "\n".join(host.get_fact(FileContents, path=cmdline) or [])
        wanted = merged_cmdline(current, list(host.data.raspberrypi_cgroup_flags))
        if current.strip() != wanted.strip():
            boot_changed = True
            files.put(name=f"cgroup flags in {cmdline}", src=StringIO(wanted), dest=cmdline)
    delay = host.data.raspberrypi_boot_delay
    config = _boot_file("config.txt")
    if delay is not None and config is not None:
        op = files.line(
            name=f"boot_delay in {config}", path=config, line=r"^boot_delay=.*", replace=f"boot_delay={delay}"
        )
        boot_changed = boot_changed or op.will_change
    if host.get_fact(steps.ShellTest, test="test -f /etc/dphys-swapfile"):
        files.line(
            name="dphys-swapfile size 0",
            path="/etc/dphys-swapfile",
            line=r"^CONF_SWAPSIZE=.*",
            replace="CONF_SWAPSIZE=0",
        )
        if not steps.systemd_running():
            steps.note("swap off skipped: no running systemd (test fleet); CONF_SWAPSIZE=0 written")
        elif host.get_fact(steps.ShellTest, test="test -n \"$(swapon --show=NAME --noheadings)\""):
            server.shell(name="Swap off", commands=["dphys-swapfile swapoff"])
        if steps.systemd_running():
            systemd.service(
                name="Keep swap off across reboots", service="dphys-swapfile", running=False, enabled=False
            )
    # K3s' bundled iptables copes with nftables; only old Raspberry Pi OS releases (< 11) with the
    # nft backend selected need the legacy switch (K3s docs, "Raspberry Pi OS").
    old_nft = '. /etc/os-release && [ "${VERSION_ID:-99}" -lt 11 ] && iptables --version | grep -q nf_tables'
    if host.get_fact(steps.ShellTest, test=f"sh -c {shlex.quote(old_nft)}"):
        server.shell(
            name="iptables-legacy",
            commands=[
                "update-alternatives --set iptables /usr/sbin/iptables-legacy",
                "update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy",
            ],
        )
    if boot_changed:
        if steps.systemd_running():
            server.reboot(name="Reboot for the new boot settings", delay=10, reboot_timeout=600)
        else:
            steps.note("reboot needed for the boot settings but skipped: no running systemd (test fleet)")
