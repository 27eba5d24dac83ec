"""ansible-lint (production profile) and yamllint over the Ansible content, run as tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "playbooks" / "ansible"
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles"),
        "NO_COLOR": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(cmd, cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=240, check=False)


def test_ansible_lint_production_profile() -> None:
    done = _run(
        str(BIN / "ansible-lint"),
        "--profile",
        "production",
        "-c",
        str(REPO / ".ansible-lint"),
        "install.yml",
        "reset.yml",
        "roles/",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


def test_yamllint_clean() -> None:
    done = _run(str(BIN / "yamllint"), "-s", "-c", str(REPO / ".yamllint"), ".")
    assert done.returncode == 0, done.stdout + done.stderr
