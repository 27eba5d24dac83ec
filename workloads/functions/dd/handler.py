"""dd: copy a 128-byte block 10 times with the UNIX dd command (disk-I/O-bound), as in the thesis."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BLOCK_BYTES = 128
COUNT = 10


def handle(event: Any, context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dd-") as tmp:
        target = Path(tmp) / "out.bin"
        # oflag=dsync makes every block reach the disk: the point of the function is disk I/O
        done = subprocess.run(
            ["dd", "if=/dev/urandom", f"of={target}", f"bs={BLOCK_BYTES}", f"count={COUNT}", "oflag=dsync"],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            return response(500, {"error": f"dd failed: {done.stderr.strip()}"})
        written = target.stat().st_size
    return response(200, {"bytes_written": written, "duration_ms": (time.perf_counter() - started) * 1000})


def response(status: int, body: Any) -> dict[str, Any]:
    # the python3-http template turns this dict into the HTTP response
    return {"statusCode": status, "body": body, "headers": {"Content-Type": "application/json"}}
