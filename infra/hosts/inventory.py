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
from infra.model import Testbed


@dataclass(frozen=True)
class SshTarget:
    name: str
    address: str
    port: int
    user: str
    key_path: str
    # The known_hosts file the host key is checked against (StrictHostKeyChecking=yes); None: ssh's own.
    known_hosts: str | None = None
    # The explicit lab override (edgerig:ssh.acceptNewHostKeys): an unknown key is accepted on first
    # contact (StrictHostKeyChecking=accept-new); a changed one is still refused.
    accept_new: bool = False

    @property
    def needs_sudo(self) -> bool:
        return self.user != "root"


class Targets(dict[str, SshTarget]):
    """Only hosts with a known address; asking for another one is an error naming that host."""

    def __missing__(self, name: str) -> SshTarget:
        raise HostStepError(
            name,
            "connect",
            "no address known for this node: an OpenStack VM's address "
            "must be passed in `addresses` (node name -> IP) once the VM exists",
        )


HOST_KEYS_FIX = (
    "set edgerig:ssh.knownHosts (or EDGERIG_SSH_KNOWN_HOSTS) to a known_hosts file with each host's key "
    "(for Pis: the keys you checked on their console, e.g. gathered with `ssh-keyscan -t ed25519 ADDRESS` "
    "on a network you trust; OpenStack VMs' keys come from the stack: `pulumi stack output knownHosts`), "
    "or, only on a lab network you trust, edgerig:ssh.acceptNewHostKeys: true"
)


def require_host_keys(
    testbed: Testbed, known_hosts: str | None = None, *, vm_keys_known: bool = False
) -> None:
    """Refuse before connecting when a host's key cannot be checked. `vm_keys_known`: the Pulumi
    program generated the VMs' keys, so only static hosts need the operator's file."""
    if known_hosts or testbed.ssh.known_hosts or testbed.ssh.accept_new_host_keys:
        return
    if vm_keys_known and not testbed.static_nodes:
        return
    raise HostStepError(
        ",".join(n.name for n in testbed.static_nodes or testbed.nodes),
        "connect",
        f"no known_hosts file for the hosts' SSH keys, so their identity cannot be checked: {HOST_KEYS_FIX}",
    )


def targets_from_nodes(
    testbed: Testbed, addresses: Mapping[str, str] | None = None, known_hosts: str | None = None
) -> Targets:
    """SSH targets of the nodes whose address is known (VMs learn theirs only at deploy time).

    Host keys are checked against `known_hosts` (else EDGERIG_SSH_KNOWN_HOSTS, else the stack's
    edgerig:ssh.knownHosts); without one, connecting is refused unless the stack sets the explicit
    override edgerig:ssh.acceptNewHostKeys."""
    known_hosts = known_hosts or os.environ.get("EDGERIG_SSH_KNOWN_HOSTS") or testbed.ssh.known_hosts
    require_host_keys(testbed, known_hosts)
    out = Targets()
    for node in testbed.nodes:
        address = (addresses or {}).get(node.name) or (str(node.address) if node.address else None)
        if address is None:
            continue
        out[node.name] = SshTarget(
            node.name,
            address,
            node.ssh_port,
            node.ssh_user,
            os.path.expanduser(node.ssh_key_path),
            os.path.expanduser(known_hosts) if known_hosts else None,
            testbed.ssh.accept_new_host_keys,
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


def host_key_options(target: SshTarget) -> list[str]:
    """ssh -o options for the host key: checked against the known_hosts file; an unknown one accepted
    on first contact only with the lab override."""
    opts = [f"-oUserKnownHostsFile={target.known_hosts}"] if target.known_hosts else []
    return [*opts, f"-oStrictHostKeyChecking={'accept-new' if target.accept_new else 'yes'}"]


def ansible_connection_vars(target: SshTarget) -> dict[str, Any]:
    """How Ansible reaches a host; the one place SSH options are decided (pyinfra: below)."""
    ssh_args = "-o ConnectTimeout=10 " + " ".join(host_key_options(target))
    return {
        "ansible_host": target.address,
        "ansible_port": target.port,
        "ansible_user": target.user,
        "ansible_ssh_private_key_file": target.key_path,
        "ansible_ssh_common_args": ssh_args,
        "ansible_python_interpreter": "/usr/bin/python3",
        # Every play escalates (become: true in the playbooks); sudo must not ask for a password.
        "ansible_become_method": "sudo",
    }


def pyinfra_connection_data(target: SshTarget) -> dict[str, Any]:
    """The same connection for pyinfra's SSH connector."""
    data: dict[str, Any] = {
        "ssh_hostname": target.address,
        "ssh_port": target.port,
        "ssh_user": target.user,
        "ssh_key": target.key_path,
        "ssh_strict_host_key_checking": "accept-new" if target.accept_new else "yes",
        # Every operation runs as root through sudo when the SSH user is not root.
        "_sudo": target.needs_sudo,
    }
    if target.known_hosts:
        data["ssh_known_hosts_file"] = target.known_hosts
    return data
