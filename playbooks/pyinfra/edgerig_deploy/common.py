"""Every host: hostname, architecture check, packages (installed only when missing), time sync."""

from __future__ import annotations

import shlex
from io import StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.server import Arch, Which
from pyinfra.operations import apt, files, server

from edgerig_deploy import steps

MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}  # `uname -m` -> release arch
# The same inputs and defaults as playbooks/ansible/roles/common/defaults/main.yml.
DEFAULTS: dict[str, Any] = {
    "common_hostname": None,  # None: the inventory name
    "common_arch": "",
    "common_packages": ["chrony", "iptables"],
    "common_files": [],
    "common_service": "chrony",
}


@deploy("Prepare the host (hostname, packages, time sync)", data_defaults=DEFAULTS)
def common() -> None:
    name = host.data.common_hostname or host.name
    # "": pyinfra writes no hostname file of its own (it would not set the mode); the put below does.
    server.hostname(name="Set hostname", hostname=name, hostname_file="")
    if not host.get_fact(Which, command="hostnamectl"):  # hosts without systemd, e.g. the test fleet
        files.put(name="Persist the hostname", src=StringIO(f"{name}\n"), dest="/etc/hostname", mode="0644")
    arch = host.data.common_arch
    machine = host.get_fact(Arch)
    if arch and MACHINE_ARCH.get(machine) != arch:
        # Fail as an operation so the error names this host and step like any other failure.
        message = f"the model says arch {arch} but the host reports {machine}: fix `arch` in the stack"
        server.shell(name="Check architecture", commands=[f"echo {shlex.quote(message)} >&2; exit 1"])
        return
    installed = host.get_fact(DebPackages)
    missing = [p for p in host.data.common_packages if p not in installed]
    if missing:  # refresh the package lists only when something has to be installed
        apt.packages(name=f"Install {', '.join(missing)}", packages=missing, update=True)
    changed = steps.rendered_files(host.data.common_files)
    steps.service(host.data.common_service, changed)
