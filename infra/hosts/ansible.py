"""Run the Ansible playbooks in playbooks/ansible/ through ansible-runner, on the run directory's
inventory.yaml - the same playbook and inventory a user runs with `ansible-playbook -i`.

Each run gets its own private data dir (artifacts, SSH control sockets) in a temporary directory;
the project is playbooks/ansible itself, so nothing is written into the repo. The per-host change
count is Ansible's own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from infra.hosts.errors import HostStepError, RunSummary
from infra.hosts.run_dir import RunDir

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks" / "ansible"
NOTE_PREFIX = "edgerig-note: "
# What ansible-runner sets besides the defaults a user's ansible-playbook has anyway.
ENVVARS = {
    "ANSIBLE_HOST_KEY_CHECKING": "True",
    "ANSIBLE_RETRY_FILES_ENABLED": "False",
    "ANSIBLE_NOCOLOR": "True",
    "ANSIBLE_PIPELINING": "True",
}


@contextlib.contextmanager
def _env_path(path: str) -> Iterator[None]:
    old = os.environ.get("PATH")
    os.environ["PATH"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old


def _close_control_masters(control_dir: Path) -> None:
    for sock in control_dir.iterdir():
        subprocess.run(
            ["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "edgerig-control-master"],
            capture_output=True,
            timeout=10,
            check=False,
        )


def _message(res: dict[str, Any]) -> str:
    parts = [str(res.get(k) or "") for k in ("msg", "stderr", "stdout")]
    if "results" in res:  # a loop: report the failed item
        parts += [_message(r) for r in res["results"] if r.get("failed") or r.get("unreachable")]
    return "\n".join(p for p in parts if p).strip()


def run(
    run_dir: RunDir,
    hosts: Sequence[str],
    *,
    stage: str,
    progress: Callable[[str, str], None] | None = None,
) -> RunSummary:
    """Run install.yml or reset.yml (`stage`) limited to `hosts`."""
    import ansible_runner

    playbook = "install.yml" if stage == "install" else "reset.yml"
    summary = RunSummary(notes={h: [] for h in hosts}, changed=dict.fromkeys(hosts, 0))
    failures: list[HostStepError] = []

    def on_event(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        host, kind = data.get("host"), event.get("event")
        if not host:
            return True
        if kind == "runner_on_start" and progress:
            progress(host, f"ansible: {data.get('task')}")
        res = data.get("res") or {}
        messages = [res.get("msg", "")] + [r.get("msg", "") for r in res.get("results", [])]
        if kind in ("runner_on_ok", "runner_item_on_ok"):
            for msg in messages:
                if str(msg).startswith(NOTE_PREFIX):
                    summary.notes.setdefault(host, []).append(str(msg).removeprefix(NOTE_PREFIX))
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            failures.append(HostStepError(host, str(data.get("task")), _message(res)))
        if kind == "runner_on_unreachable":
            failures.append(HostStepError(host, "connect (ansible)", _message(res)))
        return True

    # The venv's ansible-playbook, whether or not the venv is on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="edgerig-ansible-") as tmp:
        control_dir = Path(tmp) / "cp"
        control_dir.mkdir()
        try:
            with _env_path(path):
                result = ansible_runner.run(
                    private_data_dir=tmp,
                    project_dir=str(PLAYBOOKS),
                    playbook=playbook,
                    inventory=str(run_dir.ansible_inventory),
                    limit=",".join(hosts),
                    quiet=True,
                    event_handler=on_event,
                    # SSH control masters live in this run's temp dir and are closed after it.
                    envvars={**ENVVARS, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir)},
                )
        finally:
            _close_control_masters(control_dir)
        if failures:
            raise failures[0]
        if result.rc != 0:
            raise HostStepError(
                ",".join(hosts),
                f"ansible-runner {playbook}",
                f"exit {result.rc}: {result.stdout.read()[-2000:]}",
            )
        stats = result.stats or {}
        for name in hosts:
            summary.changed[name] = int((stats.get("changed") or {}).get(name, 0))
    return summary
