"""How the function processes start: a function replica (http_template.py, the python3-http
contract the function images serve) and its load (load.py).

They are `Launch`es like the VEI processes (workloads/vei/launch.py holds the module of each), so a
testbed starts them the same way: on this machine, in a node's namespace, or as a client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from workloads.functions.catalog import function as function_info
from workloads.vei.launch import FUNCTION_LOAD, FUNCTION_SERVER, Launch


def server(*, function: str, listen: str, threads: int | None = None,
           env: Mapping[str, str] | None = None) -> Launch:
    """One replica, as the function's image runs it. `env`: HOSTNAME (the pod name the template's
    context reports) and NODE_NAME (the node, as the downward API gives it)."""
    args = [function_info(function).module, "--listen", listen]
    if threads is not None:
        args += ["--threads", str(threads)]
    return Launch(FUNCTION_SERVER, tuple(args), dict(env or {}))


def load(*, function: str, urls: Sequence[str], users: int, ramp_s: float, hold_s: float,
         records: str | Path, status_file: str | Path, timeout_s: float) -> Launch:
    args = ["--function", function, *(a for u in urls for a in ("--url", u)), "--users", str(users),
            "--ramp-s", f"{ramp_s:g}", "--hold-s", f"{hold_s:g}", "--timeout-s", f"{timeout_s:g}",
            "--records", str(records), "--status-file", str(status_file)]
    return Launch(FUNCTION_LOAD, tuple(args))
