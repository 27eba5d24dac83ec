"""The local test fleet: N Debian hosts on this machine, each reachable over real SSH.

Per host: an overlay of the cached rootfs, a network namespace `erh-<name>` with a veth pair on the
bridge `erhbr0` (10.232.0.0/24, this machine is .1; built by the shared namespace library), its own
UTS namespace (hostname) and an sshd running chrooted inside. There is no systemd and no route out:
steps that need either are skipped by the deploys (they check a fact), everything else runs for real.

`up` is all-or-nothing: on any failure (or Ctrl-C) it tears down what it already built.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from experiments.testbeds import netns as nslib
from experiments.testbeds.fleet import hostfs
from experiments.testbeds.fleet.inventory import write_inventory
from experiments.testbeds.fleet.state import NETWORK, Fleet, FleetHost
from workloads.images import rootfs

BRIDGE = NETWORK.bridge
DEFAULT_STATE_DIR = Path(os.environ.get("EDGERIG_FLEET_STATE", "/run/edgerig/fleet"))


class FleetError(RuntimeError):
    pass


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise FleetError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return result


def _validate(names: list[str]) -> None:
    if not names:
        raise FleetError("a fleet needs at least one host (--hosts N with N >= 1)")
    try:
        nslib.nodes_for(NETWORK, names)
    except ValueError as err:
        raise FleetError(str(err)) from None
    for name in names:
        ok = name.replace("-", "").isalnum() and name[0].isalpha() and len(name) <= 40 and name.islower()
        if not ok:
            raise FleetError(f"host name {name!r} is not a lowercase hostname (letters, digits, '-')")


def _start_sshd(host: FleetHost, root: Path, log: Path) -> int:
    # unshare --uts gives the host its own hostname without touching this machine's.
    script = f"hostname {host.name} && exec /usr/sbin/sshd -D -e"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.netns,
                "unshare",
                "--uts",
                "chroot",
                str(root),
                "/bin/sh",
                "-c",
                script,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def _wait_for_ssh(hosts: list[FleetHost], timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    for host in hosts:
        while True:
            try:
                with socket.create_connection((host.address, 22), timeout=1) as sock:
                    if sock.recv(4).startswith(b"SSH"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise FleetError(
                    f"sshd on {host.name} ({host.address}) did not come up within {timeout:.0f}s"
                )
            time.sleep(0.1)


def up(
    names: list[str],
    pi_names: set[str] | None = None,
    state_dir: Path = DEFAULT_STATE_DIR,
    cache_dir: Path = rootfs.DEFAULT_CACHE_DIR,
) -> Fleet:
    """Create the fleet; return it with the inventory and stack file already written."""
    if os.geteuid() != 0:
        raise FleetError("the test fleet needs root (network namespaces, mounts, chroot): run with sudo")
    _validate(names)
    pi_names = pi_names or set()
    unknown = pi_names - set(names)
    if unknown:
        raise FleetError(f"--pi-names {sorted(unknown)} are not fleet hosts {names}")
    if (state_dir / "fleet.json").exists() or nslib.link_exists(BRIDGE):
        raise FleetError(
            f"a fleet is already up (bridge {BRIDGE} or {state_dir} exists): run `edgerig fleet down` first"
        )
    base = rootfs.ensure_rootfs(cache_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    fleet = Fleet(
        state_dir=state_dir,
        key_path=state_dir / "id_ed25519",
        known_hosts=state_dir / "known_hosts",
        inventory_path=state_dir / "inventory.yaml",
        stack_path=state_dir / "Pulumi.fleet.yaml",
    )
    for node in nslib.nodes_for(NETWORK, names):
        fleet.hosts.append(
            FleetHost(name=node.name, address=node.address, pi=node.name in pi_names, netns=node.netns,
                      veth=node.host_veth)
        )
    fleet.save()
    try:
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgerig-fleet", "-f", str(fleet.key_path))
        pubkey = fleet.key_path.with_suffix(".pub").read_text()
        nslib.create_bridge(NETWORK)
        known = []
        for host in fleet.hosts:
            host_dir = state_dir / "hosts" / host.name
            root = hostfs.mount_host_root(base, host_dir)
            hostkey = hostfs.prepare_host_files(root, host.name, host.address, pubkey, host.pi)
            known.append(f"{host.address} {hostkey.rsplit(' ', 1)[0]}\n")
            nslib.create_node(host.node)
            host.pid = _start_sshd(host, root, host_dir / "sshd.log")
            fleet.save()
        fleet.known_hosts.write_text("".join(known))
        _wait_for_ssh(fleet.hosts)
        write_inventory(fleet)
    except BaseException:
        down(state_dir)
        raise
    return fleet


def down(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Remove everything `up` made; safe to call on a half-built or already removed fleet."""
    removed: list[str] = []
    hosts: list[FleetHost] = []
    if (state_dir / "fleet.json").exists():
        hosts = Fleet.load(state_dir).hosts
    for host in hosts:
        nslib.kill_namespace_processes(host.netns)
        nslib.wait_namespace_empty(host.netns, 3.0)
    # Also what a crashed `up` never recorded: every erh-* namespace, veth and the bridge.
    removed += nslib.sweep(NETWORK)
    if state_dir.exists():
        # sshd may still hold the chroot for a moment after SIGKILL; lazy unmount detaches anyway.
        hostfs.unmount_all(state_dir)
        subprocess.run(["rm", "-rf", "--one-file-system", str(state_dir)], check=True)
        removed.append(f"state {state_dir}")
    return removed
