"""shasum: SHA-256 of the request body (the thesis posts 1 MB of random data: network- and CPU-bound)."""

from __future__ import annotations

import hashlib
from typing import Any

MAX_BODY = 16 * 1024 * 1024


def handle(event: Any, context: Any) -> dict[str, Any]:
    body = event.body or b""
    if isinstance(body, str):
        body = body.encode()
    if len(body) > MAX_BODY:
        return response(413, {"error": f"body is {len(body)} bytes; the limit is {MAX_BODY}"})
    return response(200, {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)})


def response(status: int, body: Any) -> dict[str, Any]:
    # the python3-http template turns this dict into the HTTP response
    return {"statusCode": status, "body": body, "headers": {"Content-Type": "application/json"}}
