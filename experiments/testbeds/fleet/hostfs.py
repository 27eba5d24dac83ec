"""One fleet host's filesystem: an overlay on the cached rootfs plus minimal /dev, /proc and /run.

/dev is a private tmpfs with a handful of device nodes and its own devpts instance, never a bind of
the machine's /dev: a recursive delete of a host directory can then never reach the real devices.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

# Device nodes sshd, Python and the shells of Ansible/pyinfra open (char major, minor).
_DEVICES = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}

PI_CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=5e3da3da-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
)
PI_CONFIG = "# Raspberry Pi config.txt as shipped by Raspberry Pi OS (fleet copy)\n[all]\narm_64bit=1\n"
PI_DPHYS = "CONF_SWAPSIZE=100\n"
# The login a lab really gives the installer: not root, passwordless sudo (as `pi` on Raspberry Pi OS
# or `ubuntu` on cloud images). Host configuration on the fleet logs in as this user.
SUDO_USER = "lab"


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first (the order to unmount them in)."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def mount_host_root(rootfs: Path, host_dir: Path) -> Path:
    """Mount the host's merged root under host_dir/root and return it."""
    upper, work, root = host_dir / "upper", host_dir / "work", host_dir / "root"
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    _run(
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={rootfs},upperdir={upper},workdir={work}",
        str(root),
    )
    dev = root / "dev"
    _run("mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,size=1m", "tmpfs", str(dev))
    for name, (major, minor) in _DEVICES.items():
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)
    (dev / "pts").mkdir()
    _run("mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620", "devpts", str(dev / "pts"))
    os.symlink("pts/ptmx", dev / "ptmx")
    _run("mount", "-t", "proc", "proc", str(root / "proc"))
    _run("mount", "-t", "tmpfs", "-o", "mode=0755,size=16m", "tmpfs", str(root / "run"))
    return root


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"could not unmount {left}; nothing under {path} was deleted")


def _add_sudo_user(root: Path, pubkey: str) -> None:
    """A non-root login with the fleet's key and passwordless sudo (no TTY needed)."""
    # "*": no password, yet not locked ("!"): sshd without PAM refuses a locked account even with a key.
    _run("chroot", str(root), "useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", SUDO_USER)
    home = root / "home" / SUDO_USER
    uid_gid = (home.stat().st_uid, home.stat().st_gid)
    dot_ssh = home / ".ssh"
    dot_ssh.mkdir(mode=0o700)
    (dot_ssh / "authorized_keys").write_text(pubkey)
    os.chmod(dot_ssh / "authorized_keys", 0o600)
    for path in (dot_ssh, dot_ssh / "authorized_keys"):
        os.chown(path, *uid_gid)
    sudoers = root / "etc/sudoers.d/edgerig-fleet"
    sudoers.write_text(f"{SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    os.chmod(sudoers, 0o440)


def prepare_host_files(root: Path, name: str, address: str, pubkey: str, pi: bool) -> str:
    """Write the per-host config (sshd, authorized key, Pi boot files) and return its host public key."""
    ssh = root / "etc/ssh"
    key = ssh / "ssh_host_ed25519_key"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(key))
    (ssh / "sshd_config.d/edgerig-fleet.conf").write_text(
        f"ListenAddress {address}\nHostKey /etc/ssh/ssh_host_ed25519_key\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nMaxStartups 100:30:200\n"
        "MaxSessions 50\n"
    )
    dot_ssh = root / "root/.ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    (dot_ssh / "authorized_keys").write_text(pubkey)
    os.chmod(dot_ssh / "authorized_keys", 0o600)
    _add_sudo_user(root, pubkey)
    (root / "run/sshd").mkdir(mode=0o755, exist_ok=True)
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n{address} {name}\n")
    if pi:
        firmware = root / "boot/firmware"
        firmware.mkdir(parents=True, exist_ok=True)
        (firmware / "cmdline.txt").write_text(PI_CMDLINE)
        (firmware / "config.txt").write_text(PI_CONFIG)
        (root / "etc/dphys-swapfile").write_text(PI_DPHYS)
    return (ssh / "ssh_host_ed25519_key.pub").read_text().strip()
