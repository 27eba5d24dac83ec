"""run.json: everything needed to trace a result back to what produced it, and to run it again.

Written beside every run's data: the git commit and whether the tree was dirty, the exact command
line and the resolved experiment configuration, the stack file's hash, every pinned version
(infra/versions.py), the installed Python packages, the machine, the testbed's description, its
clean check, the stack outputs with secrets redacted, and the start and end of each phase.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from infra import versions

REPO = Path(__file__).resolve().parents[2]
REDACTED = "[secret]"


def git_state(repo: Path = REPO) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def pinned_versions() -> dict[str, Any]:
    """Every upper-case constant of infra/versions.py (versions, chart pins, images, digests)."""
    out: dict[str, Any] = {}
    for name in dir(versions):
        if name.isupper():
            value = getattr(versions, name)
            plain = isinstance(value, str | int | float | bool | dict | tuple | list)
            out[name] = value if plain else repr(value)
    return json.loads(json.dumps(out, default=str))


def python_packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uname = platform.uname()
    return {"cpu_model": model, "cores": os.cpu_count(), "kernel": uname.release, "system": uname.system,
            "machine": uname.machine, "hostname": uname.node, "python": sys.version.split()[0],
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def redact(outputs: Mapping[str, Any], secret_keys: set[str]) -> dict[str, Any]:
    return {k: (REDACTED if k in secret_keys else v) for k, v in outputs.items()}


def build(*, experiment: str, config: Mapping[str, Any], testbed: Mapping[str, Any],
          clean_check: Mapping[str, Any] | None, phases: Mapping[str, Any],
          stack_file: Path | None = None, stack_outputs: Mapping[str, Any] | None = None,
          argv: list[str] | None = None, run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema": 1,
        "experiment": experiment,
        "written_unix_s": round(time.time(), 3),
        "command": argv if argv is not None else list(sys.argv),
        "config": dict(config),
        "run": dict(run or {}),
        "git": git_state(),
        "stack_file": None if stack_file is None else {"path": str(stack_file),
                                                      "sha256": file_sha256(stack_file)},
        "versions": pinned_versions(),
        "python_packages": python_packages(),
        "machine": machine(),
        "testbed": dict(testbed),
        "clean_check": dict(clean_check) if clean_check is not None else None,
        "stack_outputs": dict(stack_outputs) if stack_outputs is not None else None,
        "phases": dict(phases),
    }


def write(run_dir: Path, record: Mapping[str, Any]) -> Path:
    path = run_dir / "run.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
