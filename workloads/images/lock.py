"""The one lock file: every Python package edgerig installs, pinned with the hashes PyPI publishes.

`requirements.lock` (repository root) is resolved from pyproject.toml - the dependencies, the `dev`
extra and the build-system requirements - for CPython 3.11 on linux amd64 and on linux arm64. Both
the virtualenv (experiments/bootstrap.sh: `pip install --require-hashes`) and the container images
(`edgerig images build`, which takes the subset each image needs) install from it, so two installs a
month apart get the same bytes.

Regenerate it after changing a pin: `edgerig images lock`. The resolver is uv (pinned in
pyproject.toml), run once per platform; a package that only one platform needs is kept with a
`platform_machine` marker, so the file stays correct for both.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from workloads.images.arches import ARCHES, Arch

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = REPO_ROOT / "requirements.lock"
PYTHON_VERSION = "3.11"
INPUTS_PREFIX = "# inputs-sha256: "
HEADER = """\
# The one lock file of edgerig: every Python package, with the hashes PyPI publishes.
# Resolved from pyproject.toml (dependencies, the dev extra, build-system requires) for CPython 3.11
# on linux amd64 and linux arm64. experiments/bootstrap.sh and `edgerig images build` install from it.
# Do not edit: change pyproject.toml, then run `edgerig images lock`.
"""


class LockError(RuntimeError):
    pass


@dataclass(frozen=True)
class Locked:
    """One pinned package of the lock: `name==version ; marker` plus its allowed hashes."""

    name: str  # canonical (PEP 503) name
    version: str
    hashes: tuple[str, ...]
    marker: str | None = None

    def applies_to(self, env: Mapping[str, str]) -> bool:
        return self.marker is None or Marker(self.marker).evaluate(dict(env))

    def requirement_line(self) -> str:
        """A pip/uv requirements line without the marker (the caller already chose the platform)."""
        hashes = " ".join(f"--hash={h}" for h in self.hashes)
        return f"{self.name}=={self.version} {hashes}"


def lock_inputs(pyproject: Path = REPO_ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """The parts of pyproject.toml the lock is resolved from (nothing else changes the lock)."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    return {
        "dependencies": sorted(project.get("dependencies", [])),
        "dev": sorted(project.get("optional-dependencies", {}).get("dev", [])),
        "build-system": sorted(data.get("build-system", {}).get("requires", [])),
    }


def inputs_digest(pyproject: Path = REPO_ROOT / "pyproject.toml") -> str:
    blob = json.dumps(lock_inputs(pyproject), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def parse(text: str) -> list[Locked]:
    """Parse a hashed requirements file (uv / pip-compile format). Every entry must be `==` pinned."""
    out: list[Locked] = []
    logical = re.sub(r"\\\n", " ", text)
    for lineno, raw in enumerate(logical.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *hash_parts = re.split(r"\s+--hash=", line)
        hashes = tuple(h.strip() for h in hash_parts)
        req = Requirement(spec.strip())
        pins = list(req.specifier)
        if len(pins) != 1 or pins[0].operator != "==" or not hashes:
            raise LockError(f"lock line {lineno}: {spec.strip()!r} is not an exact pin with hashes")
        out.append(Locked(canonicalize_name(req.name), pins[0].version, hashes,
                          str(req.marker) if req.marker else None))
    return out


def load(path: Path = LOCK_FILE) -> list[Locked]:
    if not path.exists():
        raise LockError(f"{path} is missing: run `edgerig images lock` to resolve it from pyproject.toml")
    return parse(path.read_text())


def recorded_inputs_digest(path: Path = LOCK_FILE) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith(INPUTS_PREFIX):
            return line.removeprefix(INPUTS_PREFIX).strip()
    return None


def for_arch(locked: Iterable[Locked], arch: Arch) -> dict[str, Locked]:
    """The lock's packages that apply to CPython 3.11 on linux/<arch>, by canonical name."""
    env = arch.marker_environment(PYTHON_VERSION)
    return {p.name: p for p in locked if p.applies_to(env)}


def _resolve(uv: str, inputs: list[Path], arch: Arch) -> list[Locked]:
    cmd = [uv, "pip", "compile", "--quiet", "--no-config", "--no-header", "--no-annotate",
           "--generate-hashes", "--python-version", PYTHON_VERSION,
           "--python-platform", arch.uv_platform, *map(str, inputs)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LockError(f"uv could not resolve the dependencies for {arch.name}:\n{done.stderr.strip()}")
    return parse(done.stdout)


def merge(per_arch: Mapping[str, list[Locked]]) -> list[Locked]:
    """One list for every platform; an entry that differs between platforms gets a machine marker."""
    keys: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for arch_name, entries in per_arch.items():
        for e in entries:
            keys.setdefault((e.name, e.version, e.hashes), []).append(arch_name)
    out = []
    for (name, version, hashes), arches in sorted(keys.items()):
        marker = None
        if len(arches) != len(per_arch):
            machines = " or ".join(f"platform_machine == '{ARCHES[a].machine}'" for a in sorted(arches))
            marker = machines
        out.append(Locked(name, version, hashes, marker))
    return out


def render(entries: Iterable[Locked], digest: str) -> str:
    lines = [HEADER.rstrip("\n"), f"{INPUTS_PREFIX}{digest}"]
    for e in entries:
        head = f"{e.name}=={e.version}" + (f" ; {e.marker}" if e.marker else "")
        lines.append(" \\\n    ".join([head, *(f"--hash={h}" for h in e.hashes)]))
    return "\n".join(lines) + "\n"


def generate(uv: str, pyproject: Path = REPO_ROOT / "pyproject.toml", out: Path = LOCK_FILE) -> int:
    """Resolve pyproject.toml for every architecture and write the lock (atomically). Returns its size."""
    inputs = lock_inputs(pyproject)
    with tempfile.TemporaryDirectory(prefix="edgerig-lock-") as tmp:
        req_in = Path(tmp) / "requirements.in"
        req_in.write_text("\n".join(inputs["dependencies"] + inputs["dev"] + inputs["build-system"]) + "\n")
        per_arch = {name: _resolve(uv, [req_in], arch) for name, arch in sorted(ARCHES.items())}
    merged = merge(per_arch)
    text = render(merged, inputs_digest(pyproject))
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(text)
    tmp_out.replace(out)
    return len(merged)
