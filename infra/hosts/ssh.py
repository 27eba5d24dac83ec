"""One way to run a command on a host over SSH: batch mode, bounded connect time, and the host key
checked against the given known_hosts file when there is one."""

from __future__ import annotations

import subprocess

from infra.hosts.inventory import SshTarget


def ssh_argv(target: SshTarget, command: str, connect_timeout_s: int = 10) -> list[str]:
    opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout_s}", "-p", str(target.port),
            "-i", target.key_path]
    if target.known_hosts:
        opts += ["-o", f"UserKnownHostsFile={target.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    return ["ssh", *opts, f"{target.user}@{target.address}", command]


def run_ssh(target: SshTarget, command: str, timeout_s: float = 60,
            connect_timeout_s: int = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ssh_argv(target, command, connect_timeout_s), capture_output=True, text=True,
                          timeout=timeout_s, check=False)
