"""SSH targets for both tools, from the Testbed model (stack file) or the fleet's inventory file.

The YAML inventory `edgerig fleet up` writes is a plain Ansible inventory; this module reads the
same file for pyinfra, so both tools reach the hosts with the same user, key and known_hosts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.hosts.errors import HostStepError
from infra.model import Node


@dataclass(frozen=True)
class SshTarget:
    name: str
    address: str
    port: int
    user: str
    key_path: str
    known_hosts: str | None = None  # None: the user's ~/.ssh/known_hosts, new keys accepted once


class Targets(dict[str, SshTarget]):
    """Only hosts with a known address; asking for another one is an error naming that host."""

    def __missing__(self, name: str) -> SshTarget:
        raise HostStepError(
            name,
            "connect",
            "no address known for this node: an OpenStack VM's address "
            "must be passed in `addresses` (node name -> IP) once the VM exists",
        )


def targets_from_nodes(
    nodes: list[Node], addresses: Mapping[str, str] | None = None, known_hosts: str | None = None
) -> Targets:
    """SSH targets of the nodes whose address is known (VMs learn theirs only at deploy time)."""
    known_hosts = known_hosts or os.environ.get("EDGERIG_SSH_KNOWN_HOSTS")
    out = Targets()
    for node in nodes:
        address = (addresses or {}).get(node.name) or (str(node.address) if node.address else None)
        if address is None:
            continue
        out[node.name] = SshTarget(
            node.name,
            address,
            node.ssh_port,
            node.ssh_user,
            os.path.expanduser(node.ssh_key_path),
            known_hosts,
        )
    return out


def targets_from_inventory(path: Path) -> Targets:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    group = doc.get("all") or {}
    common = group.get("vars") or {}
    out = Targets()
    for name, hv in (group.get("hosts") or {}).items():
        v = {**common, **(hv or {})}
        out[name] = SshTarget(
            name,
            v["ansible_host"],
            int(v.get("ansible_port", 22)),
            v.get("ansible_user", "root"),
            v["ansible_ssh_private_key_file"],
            v.get("edgerig_known_hosts"),
        )
    return out


def ansible_connection_vars(target: SshTarget) -> dict[str, Any]:
    """How Ansible reaches a host; the one place SSH options are decided (pyinfra: below)."""
    ssh_args = "-o ConnectTimeout=10"
    if target.known_hosts:
        ssh_args += f" -o UserKnownHostsFile={target.known_hosts} -o StrictHostKeyChecking=yes"
    else:
        ssh_args += " -o StrictHostKeyChecking=accept-new"
    return {
        "ansible_host": target.address,
        "ansible_port": target.port,
        "ansible_user": target.user,
        "ansible_ssh_private_key_file": target.key_path,
        "ansible_ssh_common_args": ssh_args,
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def pyinfra_connection_data(target: SshTarget) -> dict[str, Any]:
    """The same connection for pyinfra's SSH connector."""
    data: dict[str, Any] = {
        "ssh_hostname": target.address,
        "ssh_port": target.port,
        "ssh_user": target.user,
        "ssh_key": target.key_path,
        "ssh_strict_host_key_checking": "yes" if target.known_hosts else "accept-new",
    }
    if target.known_hosts:
        data["ssh_known_hosts_file"] = target.known_hosts
    return data
