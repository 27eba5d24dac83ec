"""Faults injected on real nodes over SSH (the fleet's test hosts and the nodes of a stack).

- cut: a firewall drop of everything but loopback that the node removes itself after `down_for_s`:
  the cut takes SSH down too, so nothing from outside could undo it. The command detaches before
  the drop starts, so the SSH call returns normally first.
- kill: `reboot -f` (the K3s thesis's power cut), or stopping K3s and every container it runs
  (`k3s-killall.sh`), or - on the test fleet - SIGKILL of the node's VEI processes listed in a
  pid file, which is what stopping the node's containers does to them.

Every command runs with `sudo -n` unless the SSH user is root.
"""

from __future__ import annotations

import shlex
import socket
import time

from experiments.testbeds.base import TestbedError
from infra.hosts.inventory import SshTarget
from infra.hosts.ssh import run_ssh

# Seconds between the SSH call returning and the drop taking effect.
CUT_DELAY_S = 0.3
PID_FILE = "/run/edgerig/vei.pids"
KILL_MODES = ("reboot", "k3s", "pidfile")
_DROP = (("INPUT", "! -i lo -j DROP"), ("OUTPUT", "! -o lo -j DROP"))


def _sudo(target: SshTarget) -> str:
    return "" if target.user == "root" else "sudo -n "


def cut_command(target: SshTarget, down_for_s: float) -> str:
    sudo = _sudo(target)
    insert = "; ".join(f"{sudo}iptables -w -I {chain} 1 {rule}" for chain, rule in _DROP)
    delete = "; ".join(f"{sudo}iptables -w -D {chain} {rule}" for chain, rule in _DROP)
    script = f"sleep {CUT_DELAY_S}; {insert}; sleep {down_for_s:g}; {delete}"
    return f"nohup setsid sh -c {shlex.quote(script)} >/dev/null 2>&1 </dev/null &"


def kill_command(target: SshTarget, mode: str) -> str:
    sudo = _sudo(target)
    if mode == "reboot":
        # Detached as well: the connection dies with the node, and that is not an error.
        script = f"sleep {CUT_DELAY_S}; {sudo}reboot -f"
        return f"nohup setsid sh -c {shlex.quote(script)} >/dev/null 2>&1 </dev/null &"
    if mode == "k3s":
        return (f"{sudo}systemctl kill -s KILL k3s k3s-agent 2>/dev/null; "
                f"{sudo}/usr/local/bin/k3s-killall.sh >/dev/null 2>&1; true")
    if mode == "pidfile":
        return f"test -s {PID_FILE} && {sudo}kill -9 $(cat {PID_FILE})"
    raise TestbedError(f"unknown kill mode {mode!r}: use one of {', '.join(KILL_MODES)}")


def start_k3s_command(target: SshTarget) -> str:
    """After `kill_command(..., "k3s")`: start whichever K3s unit the node has."""
    sudo = _sudo(target)
    return f"{sudo}systemctl start k3s 2>/dev/null || {sudo}systemctl start k3s-agent"


def inject(target: SshTarget, command: str, what: str) -> None:
    done = run_ssh(target, command, timeout_s=30, connect_timeout_s=5)
    if done.returncode != 0:
        raise TestbedError(f"{what} on {target.name} ({target.address}) over SSH failed "
                           f"(exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}")


def ssh_answers(target: SshTarget, timeout_s: float = 1.0) -> bool:
    """True when the node's sshd sends its banner (the node is reachable again)."""
    try:
        with socket.create_connection((target.address, target.port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            return sock.recv(4).startswith(b"SSH")
    except OSError:
        return False


def wait_reachable(target: SshTarget, timeout_s: float) -> float:
    """Block until the node answers SSH again; returns the seconds it took."""
    start = time.monotonic()
    while not ssh_answers(target):
        if time.monotonic() - start > timeout_s:
            raise TestbedError(f"{target.name} ({target.address}) did not answer SSH within "
                               f"{timeout_s:.0f} s "
                               "after the fault; check the node by hand")
        time.sleep(0.2)
    return time.monotonic() - start


def wait_unreachable(target: SshTarget, timeout_s: float = 5.0) -> bool:
    """True once the node stops answering (the cut took effect)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not ssh_answers(target, 0.3):
            return True
        time.sleep(0.05)
    return False
