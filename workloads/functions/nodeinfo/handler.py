"""nodeinfo: basic facts about the node serving the request (CPU-bound under heavy request load)."""

from __future__ import annotations

import os
import platform
import time
from typing import Any


def _uptime_s() -> float | None:
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def handle(event: Any, context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    info = {
        # the pod's name, as the template's context has it: replicas sharing one host (the local
        # testbed) still tell apart, and in a pod it is the host name the thesis's nodeinfo reports
        "hostname": context.hostname,
        "node": os.environ.get("NODE_NAME", ""),  # downward API, set by the function's deployment
        "platform": platform.platform(),
        "arch": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "uptime_s": _uptime_s(),
    }
    info["duration_ms"] = (time.perf_counter() - started) * 1000
    return response(200, info)


def response(status: int, body: Any) -> dict[str, Any]:
    # the python3-http template turns this dict into the HTTP response
    return {"statusCode": status, "body": body, "headers": {"Content-Type": "application/json"}}
