"""Drive the pyinfra deploys in playbooks/pyinfra/ through pyinfra's Python API (no CLI, no shell).

Returns pyinfra's own per-host change count, so idempotency is judged by the tool itself.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from infra.hosts.errors import HostStepError, RunSummary
from infra.hosts.inventory import SshTarget
from infra.hosts.plan import GuardedCommand, HostPlan

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks" / "pyinfra"


def _deploys() -> ModuleType:
    if str(PLAYBOOKS) not in sys.path:
        sys.path.insert(0, str(PLAYBOOKS))
    return importlib.import_module("edgerig_pi")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run(
    plans: Sequence[HostPlan],
    targets: dict[str, SshTarget],
    *,
    stage: str,
    commands: dict[str, list[GuardedCommand]] | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> RunSummary:
    """Run `stage` ("install" or "reset") on the plans' hosts in parallel (pyinfra's own pool)."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops

    deploys = _deploys()
    image_deploys = importlib.import_module("edgerig_images")  # images hook (after _deploys set sys.path)
    notes: dict[str, list[str]] = {p.node.name: [] for p in plans}
    names = []
    for plan in plans:
        t = targets[plan.node.name]
        data = {
            "ssh_hostname": t.address,
            "ssh_port": t.port,
            "ssh_user": t.user,
            "ssh_key": t.key_path,
            "ssh_strict_host_key_checking": "yes" if t.known_hosts else "accept-new",
            "edgerig_plan": plan,
            "edgerig_commands": (commands or {}).get(plan.node.name, plan.commands),
        }
        if t.known_hosts:
            data["ssh_known_hosts_file"] = t.known_hosts
        names.append((plan.node.name, data))
    deploys.NOTES.clear()
    deploys.NOTES.update(notes)
    capture = _Capture()
    logging.getLogger("pyinfra").addHandler(capture)
    state = State(Inventory((names, {})), Config(CONNECT_TIMEOUT=10))
    state.print_output = False
    summary = RunSummary()
    try:
        with contextlib.suppress(PyinfraError):  # "No hosts remaining!": reported per host below
            connect_all(state)
        for host in state.failed_hosts:
            detail = "; ".join(line for line in capture.lines if host.name in line) or "connection failed"
            raise HostStepError(host.name, "connect (pyinfra)", detail)
        steps = (
            # images hook: deliver_images
            [deploys.prepare_pi, deploys.deliver, image_deploys.deliver_images, deploys.run_commands]
            if stage == "install"
            else [deploys.run_commands]
        )
        for step in steps:
            for plan in plans:
                if progress:
                    progress(plan.node.name, f"pyinfra: {step.__name__}")
            add_deploy(state, step)
        with contextlib.suppress(PyinfraError):
            run_ops(state)
        for host in state.inventory:
            changed, failed = 0, None
            for op_hash in state.get_op_order():
                if op_hash not in host.op_hash_order:
                    continue
                meta = state.get_op_data_for_host(host, op_hash).operation_meta
                if not meta.is_complete():
                    continue
                if meta.did_error():
                    out = "\n".join(meta.stderr_lines[-5:] or meta.stdout_lines[-5:])
                    failed = (", ".join(sorted(state.get_op_meta(op_hash).names)), out)
                elif meta.did_change():
                    changed += 1
            if failed or host in state.failed_hosts:
                step_name, out = failed or ("pyinfra operation", "\n".join(capture.lines[-5:]))
                raise HostStepError(host.name, step_name, out)
            summary.changed[host.name] = changed
            summary.notes[host.name] = notes[host.name]
    finally:
        logging.getLogger("pyinfra").removeHandler(capture)
        disconnect_all(state)
    return summary
