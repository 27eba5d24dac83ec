"""Run the pyinfra deploys (playbooks/pyinfra/edgerig_deploy) through pyinfra's Python API, on the
same host data the run directory's inventory.py gives the pyinfra CLI.

Returns pyinfra's own per-host change count, so idempotency is judged by the tool itself; the
deploys' `host.noop("edgerig-note: ...")` lines become the run's notes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

from infra.hosts.errors import HostStepError, RunSummary
from infra.hosts.inventory import SshTarget
from infra.hosts.run_dir import RunDir, pyinfra_data

NOTE_MARK = "noop: edgerig-note: "


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _notes(lines: Sequence[str], host: str) -> list[str]:
    out = []
    for line in lines:
        if NOTE_MARK in line and host in line.split(NOTE_MARK, 1)[0]:
            out.append(line.split(NOTE_MARK, 1)[1])
    return out


def run(
    run_dir: RunDir,
    hosts: Sequence[str],
    targets: dict[str, SshTarget],
    *,
    stage: str,
    progress: Callable[[str, str], None] | None = None,
) -> RunSummary:
    """Run `stage` ("install" or "reset") on `hosts` in parallel (pyinfra's own pool)."""
    import edgerig_deploy
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops

    host_vars = run_dir.host_vars()
    groups = run_dir.groups()
    names = [(h, pyinfra_data(host_vars[h], targets[h])) for h in hosts]
    member_groups: dict[str, tuple[list[str], dict[str, object]]] = {
        g: ([h for h in members if h in hosts], {}) for g, members in groups.items()
    }
    capture = _Capture()
    pyinfra_log = logging.getLogger("pyinfra")
    old_level = pyinfra_log.level
    pyinfra_log.setLevel(logging.DEBUG)
    pyinfra_log.addHandler(capture)
    state = State(Inventory((names, {}), **member_groups), Config(CONNECT_TIMEOUT=10))
    state.print_output = False
    summary = RunSummary()
    deploy = edgerig_deploy.install if stage == "install" else edgerig_deploy.reset
    try:
        with contextlib.suppress(PyinfraError):  # "No hosts remaining!": reported per host below
            connect_all(state)
        for host in state.failed_hosts:
            detail = "; ".join(line for line in capture.lines if host.name in line and "noop" not in line)
            raise HostStepError(host.name, "connect (pyinfra)", detail or "connection failed")
        for name in hosts:
            if progress:
                progress(name, f"pyinfra: {stage}")
        add_deploy(state, deploy)
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
            summary.notes[host.name] = _notes(capture.lines, host.name)
    finally:
        pyinfra_log.removeHandler(capture)
        pyinfra_log.setLevel(old_level)
        disconnect_all(state)
    return summary
