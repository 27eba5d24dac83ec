"""Drive the Ansible content in playbooks/ansible/ through ansible-runner.

Each run gets its own private data dir (a copy of playbooks/ansible plus a generated inventory), so
nothing is written into the repo. Rendered files are staged there in a 0700 directory and removed
with it; secret files are copied with `no_log`. The per-host change count is Ansible's own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from infra.hosts.errors import HostStepError, RunSummary
from infra.hosts.inventory import SshTarget
from infra.hosts.plan import GuardedCommand, HostPlan

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks" / "ansible"
NOTE_PREFIX = "edgerig-note: "


def _host_vars(
    plan: HostPlan, target: SshTarget, staging: Path, commands: list[GuardedCommand]
) -> dict[str, Any]:
    host_dir = staging / plan.node.name
    host_dir.mkdir(mode=0o700, parents=True)
    files = []
    for i, item in enumerate(plan.files):
        src = host_dir / f"{i:03d}"
        src.write_text(item.content)
        src.chmod(0o600)
        files.append({"src": str(src), "dest": item.path, "mode": item.mode, "secret": item.secret})
    ssh_args = "-o ConnectTimeout=10"
    if target.known_hosts:
        ssh_args += f" -o UserKnownHostsFile={target.known_hosts} -o StrictHostKeyChecking=yes"
    else:
        ssh_args += " -o StrictHostKeyChecking=accept-new"
    return {
        "ansible_host": target.address,
        "ansible_port": target.port,
        "ansible_user": target.user,
        "ansible_ssh_private_key_file": target.key_path,
        "ansible_ssh_common_args": ssh_args,
        "ansible_python_interpreter": "/usr/bin/python3",
        "edgerig_files": files,
        "edgerig_arch": plan.node.arch,
        "edgerig_binaries": [
            {"src": str(b.path), "dest": dest, "sha256": b.sha256} for b, dest in plan.binaries
        ],
        # images hook: air-gapped image delivery (role airgap_images)
        "airgap_images_archives": [
            {"src": str(a.source), "dest": a.dest, "sha256": a.sha256} for a in plan.images
        ],
        "airgap_images_import": list(plan.image_import.argv) if plan.image_import else [],
        "airgap_images_containerd_socket": plan.image_import.socket if plan.image_import else "",
        "edgerig_commands": [
            {
                "name": c.name,
                "command": c.command,
                "needs_systemd": c.needs_systemd,
                "done_check": c.done_check or "",
            }
            for c in commands
        ],
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
    plans: Sequence[HostPlan],
    targets: dict[str, SshTarget],
    *,
    stage: str,
    commands: dict[str, list[GuardedCommand]] | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> RunSummary:
    import ansible_runner

    playbook = "install.yml" if stage == "install" else "reset.yml"
    summary = RunSummary(notes={p.node.name: [] for p in plans})
    failures: list[HostStepError] = []
    with tempfile.TemporaryDirectory(prefix="edgerig-ansible-") as tmp:
        pdd = Path(tmp) / "pdd"
        shutil.copytree(PLAYBOOKS, pdd)
        staging = Path(tmp) / "staging"
        staging.mkdir(mode=0o700)
        hosts = {
            p.node.name: _host_vars(
                p, targets[p.node.name], staging, (commands or {}).get(p.node.name, p.commands)
            )
            for p in plans
        }
        (pdd / "inventory").mkdir(exist_ok=True)
        (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))

        def on_event(event: dict[str, Any]) -> bool:
            data = event.get("event_data") or {}
            host, kind = data.get("host"), event.get("event")
            if not host:
                return True
            if kind == "runner_on_start" and progress:
                progress(host, f"ansible: {data.get('task')}")
            res = data.get("res") or {}
            if kind == "runner_item_on_ok" and str(res.get("msg", "")).startswith(NOTE_PREFIX):
                summary.notes.setdefault(host, []).append(res["msg"].removeprefix(NOTE_PREFIX))
            if kind == "runner_on_failed" and not data.get("ignore_errors"):
                failures.append(HostStepError(host, str(data.get("task")), _message(res)))
            if kind == "runner_on_unreachable":
                failures.append(HostStepError(host, "connect (ansible)", _message(res)))
            return True

        # The venv's ansible-playbook, whether or not the venv is on PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        control_dir = Path(tmp) / "cp"
        control_dir.mkdir()
        try:
            with _env_path(path):
                result = ansible_runner.run(
                    private_data_dir=str(pdd),
                    playbook=playbook,
                    quiet=True,
                    roles_path=[str(pdd / "roles")],
                    event_handler=on_event,
                    # SSH control masters live in this run's temp dir and are closed after it.
                    envvars={"ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir)},
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
