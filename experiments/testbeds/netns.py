"""The one network-namespace library: emulated nodes and test-fleet hosts on this one machine.

A `Network` is a bridge in the root namespace holding the first address of its subnet, plus one
namespace per node with a veth pair: `eth0` inside, `<veth_prefix><index>` on the bridge. This
machine (the operator: camera, sink, orchestrator) reaches every node over the bridge. Taking a
node's host-side veth down cuts it off silently - packets are dropped, no RST - as a power loss
does. Every name a network creates starts with its prefix, so `sweep()` can remove what a crashed
run left without touching anything else.

The emulated testbed (`erf-*`, 10.231.0.0/24) and the test fleet (`erh-*`, 10.232.0.0/24) are two
networks of this kind.
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


class NetnsError(RuntimeError):
    """An `ip` command failed; the message names the command and what it printed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class NetworkSpec:
    """Names and addresses of one family of namespaces."""

    prefix: str            # namespace name prefix, e.g. "erf-"
    bridge: str            # bridge in the root namespace, e.g. "erfbr0"
    veth_prefix: str       # host-side veth prefix; index-based so names stay within IFNAMSIZ
    subnet: str            # e.g. "10.231.0.0/24"; the bridge holds its first address
    first_host: int        # the first node's host number in the subnet

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def bridge_address(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def max_nodes(self) -> int:
        return self.network.num_addresses - 1 - self.first_host


@dataclass(frozen=True)
class NetNode:
    """One node: its namespace, address and host-side link."""

    name: str
    index: int  # 0-based position in its network
    spec: NetworkSpec

    @property
    def netns(self) -> str:
        return f"{self.spec.prefix}{self.name}"

    @property
    def address(self) -> str:
        return str(self.spec.network.network_address + self.spec.first_host + self.index)

    @property
    def host_veth(self) -> str:
        return f"{self.spec.veth_prefix}{self.index}"

    def exec_prefix(self) -> list[str]:
        """Prefix for argv so the command runs inside this node's namespace."""
        return ["ip", "netns", "exec", self.netns]


def nodes_for(spec: NetworkSpec, names: Sequence[str]) -> list[NetNode]:
    if not names:
        raise ValueError("a network needs at least one node")
    if len(names) > spec.max_nodes:
        raise ValueError(f"at most {spec.max_nodes} nodes fit in {spec.subnet} from host .{spec.first_host}")
    if len(set(names)) != len(names):
        raise ValueError(f"node names must be unique, got {list(names)}")
    return [NetNode(name, i, spec) for i, name in enumerate(names)]


# -- inspection -------------------------------------------------------------------------------------
def list_namespaces() -> list[str]:
    out = ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_exists(name: str) -> bool:
    return ip("link", "show", name, check=False).returncode == 0


def namespace_pids(netns: str) -> list[int]:
    proc = ip("netns", "pids", netns, check=False)
    return [int(p) for p in proc.stdout.split() if p.strip().isdigit()]


def kill_namespace_processes(netns: str, sig: int = signal.SIGKILL,
                             keep: Sequence[int] = ()) -> list[int]:
    """Send `sig` to every process whose network namespace is `netns` (but `keep`); returns the pids hit."""
    pids = [p for p in namespace_pids(netns) if p not in keep]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


def wait_namespace_empty(netns: str, timeout_s: float = 5.0, keep: Sequence[int] = ()) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not [p for p in namespace_pids(netns) if p not in keep]:
            return True
        time.sleep(0.05)
    return not [p for p in namespace_pids(netns) if p not in keep]


# -- building ---------------------------------------------------------------------------------------
def create_bridge(spec: NetworkSpec) -> None:
    ip("link", "add", spec.bridge, "type", "bridge")
    # Without forward_delay 0 a bridge forwards only after STP learning; a node whose link comes
    # back must be reachable at once.
    ip("link", "set", spec.bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0")
    ip("addr", "add", f"{spec.bridge_address}/{spec.network.prefixlen}", "dev", spec.bridge)
    ip("link", "set", spec.bridge, "up")


@dataclass(frozen=True)
class Host:
    """Where a node's processes run: `node` None = this machine's loopback."""

    name: str
    node: NetNode | None = None

    @property
    def address(self) -> str:
        return self.node.address if self.node is not None else "127.0.0.1"

    def argv(self, argv: Sequence[str]) -> list[str]:
        return [*(self.node.exec_prefix() if self.node is not None else []), *argv]


def create_node(node: NetNode) -> None:
    spec = node.spec
    ip("netns", "add", node.netns)
    ip("link", "add", node.host_veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
    ip("-n", node.netns, "addr", "add", f"{node.address}/{spec.network.prefixlen}", "dev", "eth0")
    ip("-n", node.netns, "link", "set", "eth0", "up")
    ip("-n", node.netns, "link", "set", "lo", "up")
    ip("link", "set", node.host_veth, "master", spec.bridge)
    ip("link", "set", node.host_veth, "up")


def set_link(node: NetNode, up: bool) -> None:
    ip("link", "set", node.host_veth, "up" if up else "down")


def build(spec: NetworkSpec, nodes: Sequence[NetNode]) -> None:
    """Create the bridge and every node; on any error remove what was created and re-raise."""
    try:
        create_bridge(spec)
        for node in nodes:
            create_node(node)
    except BaseException:
        sweep(spec)
        raise


def sweep(spec: NetworkSpec) -> list[str]:
    """Remove every namespace with the spec's prefix (killing what runs in it), its veths and bridge.

    Safe whenever the caller owns the network (holds its lock): it is how a crashed run's leftovers
    go. Returns what was removed, for logging.
    """
    removed: list[str] = []
    for netns in list_namespaces():
        if not netns.startswith(spec.prefix):
            continue
        kill_namespace_processes(netns)
        wait_namespace_empty(netns, 3.0)
        ip("netns", "del", netns, check=False)
        removed.append(f"netns {netns}")
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        if name.startswith(spec.veth_prefix) and name != spec.bridge:
            ip("link", "del", name, check=False)
            removed.append(f"link {name}")
    if link_exists(spec.bridge):
        ip("link", "del", spec.bridge, check=False)
        removed.append(f"bridge {spec.bridge}")
    return removed


def leftovers(spec: NetworkSpec) -> list[str]:
    """What of this network exists right now (empty = clean)."""
    found = [f"netns {n}" for n in list_namespaces() if n.startswith(spec.prefix)]
    if link_exists(spec.bridge):
        found.append(f"bridge {spec.bridge}")
    return found
