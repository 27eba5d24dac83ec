"""buildah, daemonless, on its own vfs storage under the image cache (never the machine's default store).

Only the few commands the build needs: a working container from an image (or scratch), copy a
directory tree into it, set its config, commit it with a fixed timestamp (reproducible layers and
digests), and push it into an OCI layout directory.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class BuildahError(RuntimeError):
    pass


@dataclass(frozen=True)
class Buildah:
    storage_root: Path
    run_root: Path
    binary: str = "buildah"

    def _base(self) -> list[str]:
        return [self.binary, "--root", str(self.storage_root), "--runroot", str(self.run_root),
                "--storage-driver", "vfs"]

    def run(self, *args: str) -> str:
        done = subprocess.run([*self._base(), *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BuildahError(f"buildah {' '.join(args[:2])} failed (exit {done.returncode}): "
                               f"{done.stderr.strip()[-1500:]}")
        return done.stdout.strip()

    def image_exists(self, name: str) -> bool:
        done = subprocess.run([*self._base(), "inspect", "--type", "image", name],
                              capture_output=True, text=True, check=False)
        return done.returncode == 0

    def image_id(self, name: str) -> str:
        return str(json.loads(self.run("inspect", "--type", "image", name))["FromImageID"])

    def from_image(self, image: str, arch: str, variant: str | None) -> str:
        args = ["from", "--pull=never", "--quiet", "--arch", arch, "--os", "linux"]
        if variant:
            args += ["--variant", variant]
        return self.run(*args, image)

    def add_tree(self, container: str, tree: Path, dest: str = "/") -> None:
        # a trailing "/." copies the directory's contents, owners and modes kept
        self.run("add", container, f"{tree}/.", dest)

    def configure(self, container: str, *, arch: str, variant: str | None, user: str | None = None,
                  cmd: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                  labels: Mapping[str, str] | None = None, ports: Sequence[int] = (),
                  workdir: str | None = None) -> None:
        args = ["config", "--arch", arch, "--os", "linux"]
        if variant:
            args += ["--variant", variant]
        if user:
            args += ["--user", user]
        if cmd is not None:
            args += ["--cmd", json.dumps(list(cmd)), "--entrypoint", "[]"]
        for key, value in sorted((env or {}).items()):
            args += ["--env", f"{key}={value}"]
        for key, value in sorted((labels or {}).items()):
            args += ["--label", f"{key}={value}"]
        for port in ports:
            args += ["--port", f"{port}/tcp"]
        if workdir:
            args += ["--workingdir", workdir]
        self.run(*args, container)

    def commit(self, container: str, name: str, timestamp: int) -> str:
        image_id = self.run("commit", "--quiet", "--format", "oci", "--timestamp", str(timestamp),
                            "--rm", container, name)
        return image_id

    def remove_container(self, container: str) -> None:
        subprocess.run([*self._base(), "rm", container], capture_output=True, check=False)

    def image_names(self) -> list[str]:
        out = self.run("images", "--format", "{{.Name}}:{{.Tag}}")
        return [line.strip() for line in out.splitlines() if line.strip()]

    def remove_image(self, name: str) -> None:
        self.run("rmi", name)

    def push_to_layout(self, image: str, layout: Path, ref: str) -> None:
        self.run("push", "--quiet", "--format", "oci", image, f"oci:{layout}:{ref}")
