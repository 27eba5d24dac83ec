"""Network namespaces that emulate the nodes of a cluster on this one machine.

Every node is a namespace `erf-nX` with one veth pair: `eth0` inside, `erfv-nX` on the bridge
`erfbr0` in the root namespace. The bridge holds 10.231.0.1 so the orchestrator (and the camera
and sink, which never fail) reach every node over it. Taking `erfv-nX` down cuts the node off
silently: packets are dropped, no RST, as with a power loss.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

NS_PREFIX = "erf-"
BRIDGE = "erfbr0"
SUBNET = ipaddress.IPv4Network("10.231.0.0/24")
HOST_ADDRESS = "10.231.0.1"
VETH_PREFIX = "erfv-"
# Node addresses start at .11 so .2-.10 stay free for future helper namespaces.
FIRST_NODE_HOST = 11
MAX_NODES = 9


class NetnsError(RuntimeError):
    """An `ip` command failed; the message names the command and what it printed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class Node:
    """One emulated node: its namespace, address and host-side link."""

    index: int  # 1-based, as in the node names n1..nN

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def netns(self) -> str:
        return f"{NS_PREFIX}{self.name}"

    @property
    def address(self) -> str:
        return str(SUBNET.network_address + FIRST_NODE_HOST - 1 + self.index)

    @property
    def host_veth(self) -> str:
        return f"{VETH_PREFIX}{self.name}"

    def exec_prefix(self) -> list[str]:
        """Prefix for argv so the command runs inside this node's namespace."""
        return ["ip", "netns", "exec", self.netns]


def make_nodes(count: int) -> list[Node]:
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"--nodes must be between 1 and {MAX_NODES}, got {count}")
    return [Node(i) for i in range(1, count + 1)]


def list_namespaces() -> list[str]:
    out = ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_exists(name: str) -> bool:
    return ip("link", "show", name, check=False).returncode == 0


def namespace_pids(netns: str) -> list[int]:
    proc = ip("netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split() if p.strip().isdigit()]


def kill_namespace_processes(netns: str, sig: int = signal.SIGKILL) -> list[int]:
    """Send `sig` to every process whose network namespace is `netns`; returns the pids hit."""
    pids = namespace_pids(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


def wait_namespace_empty(netns: str, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not namespace_pids(netns):
            return True
        time.sleep(0.05)
    return not namespace_pids(netns)


def create_bridge() -> None:
    ip("link", "add", BRIDGE, "type", "bridge")
    # A bridge forwards only after STP learning unless forward_delay is 0; we want no delay at all,
    # so a node whose link comes back is reachable at once.
    ip("link", "set", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0")
    ip("addr", "add", f"{HOST_ADDRESS}/{SUBNET.prefixlen}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")


def create_node(node: Node) -> None:
    ip("netns", "add", node.netns)
    peer = f"erfp-{node.name}"
    ip("link", "add", node.host_veth, "type", "veth", "peer", "name", peer)
    ip("link", "set", peer, "netns", node.netns)
    ip("-n", node.netns, "link", "set", peer, "name", "eth0")
    ip("-n", node.netns, "addr", "add", f"{node.address}/{SUBNET.prefixlen}", "dev", "eth0")
    ip("-n", node.netns, "link", "set", "eth0", "up")
    ip("-n", node.netns, "link", "set", "lo", "up")
    ip("link", "set", node.host_veth, "master", BRIDGE)
    ip("link", "set", node.host_veth, "up")


def set_link(node: Node, up: bool) -> None:
    ip("link", "set", node.host_veth, "up" if up else "down")


def sweep(prefix: str = NS_PREFIX) -> list[str]:
    """Remove every `erf-*` namespace (killing what runs in it), stray veths and the bridge.

    Safe to call at any time the caller holds the run lock: it is how a crashed run's leftovers go.
    Returns what was removed, for logging.
    """
    removed: list[str] = []
    for netns in list_namespaces():
        if not netns.startswith(prefix):
            continue
        kill_namespace_processes(netns)
        wait_namespace_empty(netns, 3.0)
        ip("netns", "del", netns, check=False)
        removed.append(f"netns {netns}")
    links = ip("-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        if name.startswith(VETH_PREFIX):
            ip("link", "del", name, check=False)
            removed.append(f"link {name}")
    if link_exists(BRIDGE):
        ip("link", "del", BRIDGE, check=False)
        removed.append(f"bridge {BRIDGE}")
    return removed


def build(nodes: Sequence[Node]) -> None:
    """Create the bridge and every node; on any error remove what was created and re-raise."""
    try:
        create_bridge()
        for node in nodes:
            create_node(node)
    except BaseException:
        sweep()
        raise
