"""The fleet's Testbed stack file, so `edgerig cluster up --inventory` can rehearse a deploy on it."""

from __future__ import annotations

import os
import secrets

import yaml

from experiments.testbeds.fleet import hostfs
from experiments.testbeds.fleet.state import Fleet


def write_stack_file(fleet: Fleet, servers: int, kubeedge: bool) -> None:
    """The first `servers` hosts are K3s servers; Pi-like hosts after them are edge agents (or
    EdgeCore nodes with `kubeedge`), the rest cloud agents. The K3s token is a fresh random value in
    a 0600 file beside the stack file (test only)."""
    nodes = []
    for i, h in enumerate(fleet.hosts):
        edge = h.pi and i >= servers
        nodes.append(
            {
                "name": h.name,
                "realm": "edge" if edge else "cloud",
                "role": "server" if i < servers else ("edge" if edge and kubeedge else "agent"),
                "provider": "static",
                "address": h.address,
                "sshUser": hostfs.SUDO_USER,  # installs as a lab does: a sudo user, not root
                "sshKeyPath": str(fleet.key_path),
                "model": "raspberry-pi-4-8gb" if h.pi else "fleet-vm",
                "os": "raspios" if h.pi else "debian",
            }
        )
    token = fleet.state_dir / "k3s-token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    doc = {
        "config": {
            "edgerig:nodes": nodes,
            "edgerig:kubeedge": {"enabled": kubeedge},
            "edgerig:vei": {"enabled": False},
        }
    }
    fleet.stack_path.write_text(
        "# test fleet: the K3s token is in k3s-token next to this file (test only)\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )
