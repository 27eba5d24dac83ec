"""One way to run a command on a host over SSH: batch mode, bounded connect time, the host key checked
against the target's known_hosts file, and root's commands escalated with `sudo -n` (never a password
prompt) when the SSH user is not root."""

from __future__ import annotations

import shlex
import subprocess

from infra.hosts.inventory import SshTarget, host_key_options


def as_root(target: SshTarget, command: str) -> str:
    """`command` run as root on `target`: through `sudo -n` unless the SSH user is root already."""
    if not target.needs_sudo:
        return command
    return f"sudo -n sh -c {shlex.quote(command)}"


def ssh_argv(target: SshTarget, command: str, connect_timeout_s: int = 10) -> list[str]:
    opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout_s}", "-p", str(target.port),
            "-i", target.key_path, *host_key_options(target)]
    # `--` ends the options: nothing in the destination can be read as one.
    return ["ssh", *opts, "--", f"{target.user}@{target.address}", command]


def run_ssh(target: SshTarget, command: str, timeout_s: float = 60,
            connect_timeout_s: int = 10, *, root: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `command` on `target` (as root with `root`) and return what it printed."""
    remote = as_root(target, command) if root else command
    return subprocess.run(ssh_argv(target, remote, connect_timeout_s), capture_output=True, text=True,
                          timeout=timeout_s, check=False)
