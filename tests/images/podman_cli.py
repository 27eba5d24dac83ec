"""podman on a private vfs store, the way this machine runs containers: runc, cgroupfs, ulimits no
higher than the host's, host networking (every container on this machine's loopback)."""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def _limit(kind: int, cap: int) -> int:
    soft, _hard = resource.getrlimit(kind)
    return cap if soft == resource.RLIM_INFINITY else min(soft, cap)


@dataclass
class Podman:
    root: Path

    def base(self) -> list[str]:
        return ["podman", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--runtime", "runc"]

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.base(), *args], capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args[:3])} failed: {done.stderr.strip()[-2000:]}")
        return done

    def load(self, archive: Path, tag: str, arch: str = "amd64") -> str:
        """Pull an OCI archive of the build into the store; returns the image ID."""
        self("pull", "--quiet", "--arch", arch, f"oci-archive:{archive}:{tag}")
        name = archive.name.split("-0.")[0]
        out = self("image", "inspect", "--format", "{{.Id}}", f"edgerig.local/{name}:{tag}")
        return out.stdout.strip()

    def run_args(self, name: str) -> list[str]:
        nofile = _limit(resource.RLIMIT_NOFILE, 4096)
        nproc = _limit(resource.RLIMIT_NPROC, 4096)
        return ["run", "--name", name, "--pull=never", "--network", "host",
                "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]

    def start(self, name: str, image: str, command: Sequence[str], env: dict[str, str] | None = None,
              volumes: Sequence[str] = (), extra: Sequence[str] = ()) -> None:
        args = [*self.run_args(name), "--detach"]
        for key, value in sorted((env or {}).items()):
            args += ["--env", f"{key}={value}"]
        for volume in volumes:
            args += ["--volume", volume]
        self(*args, *extra, image, *command)

    def run(self, image: str, command: Sequence[str], extra: Sequence[str] = (),
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        name = f"run-{abs(hash(tuple(command))) % 10**8}"
        return self(*self.run_args(name), "--rm", *extra, image, *command,
                    check=False, timeout=timeout)

    def logs(self, name: str) -> str:
        done = self("logs", name, check=False)
        return done.stdout + done.stderr

    def wait(self, name: str, timeout: float) -> int:
        done = self("wait", name, timeout=timeout)
        return int(done.stdout.strip().splitlines()[-1])

    def remove(self, name: str) -> None:
        self("rm", "--force", "--time", "5", name, check=False)
