"""gzip-compression: make a random file (10 MB by default) and gzip it (memory- and CPU-bound)."""

from __future__ import annotations

import gzip
import os
import time
from typing import Any

DEFAULT_BYTES = 10 * 1024 * 1024
MAX_BYTES = 64 * 1024 * 1024  # keeps one request from taking a Pi's memory


def handle(event: Any, context: Any) -> dict[str, Any]:
    raw = (event.query or {}).get("bytes", str(DEFAULT_BYTES))
    try:
        size = int(raw)
    except ValueError:
        return response(400, {"error": f"query 'bytes' must be an integer, got {raw!r}"})
    if not 0 < size <= MAX_BYTES:
        return response(400, {"error": f"query 'bytes' must be between 1 and {MAX_BYTES}, got {size}"})
    started = time.perf_counter()
    data = os.urandom(size)
    compressed = gzip.compress(data, compresslevel=6)
    return response(200, {
        "input_bytes": size,
        "compressed_bytes": len(compressed),
        "duration_ms": (time.perf_counter() - started) * 1000,
    })


def response(status: int, body: Any) -> dict[str, Any]:
    # the python3-http template turns this dict into the HTTP response
    return {"statusCode": status, "body": body, "headers": {"Content-Type": "application/json"}}
