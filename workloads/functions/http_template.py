"""The OpenFaaS python3-http template contract, served by each function image.

The contract a python3-http function keeps with OpenFaaS (faas-netes):
- the container answers HTTP on port 8080; every method and path goes to `handle(event, context)`;
- `event` has `body` (bytes), `headers`, `method`, `query` (a mapping) and `path`; `context` has
  `hostname` (the HOSTNAME variable: a pod's name, which the kubelet also makes its host name);
- `handle` returns a dict: `statusCode` (default 200), `body` (a dict or list is sent as JSON,
  anything else as text) and `headers`;
- `GET /_/health` answers 200 once the function is loaded, and `/tmp/.lock` exists then (the
  watchdog's readiness file, for exec probes).

The template runs the watchdog binary in front of a Flask app; that binary is pulled from a container
registry, which air-gapped labs cannot reach. This module keeps the same contract with waitress (a
pure-Python WSGI server from PyPI) listening on 8080 itself:

    python -m workloads.functions.http_template workloads.functions.shasum.handler
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl

log = logging.getLogger("edgerig.function")

PORT = 8080
HEALTH_PATH = "/_/health"
LOCK_FILE = Path("/tmp/.lock")  # the watchdog's readiness file (exec probes read it)
MAX_BODY_BYTES = 64 * 1024 * 1024
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Handler = Callable[[Any, Any], Any]


class Event:
    def __init__(self, body: bytes, headers: Mapping[str, str], method: str, query: Mapping[str, str],
                 path: str) -> None:
        self.body = body
        self.headers = headers
        self.method = method
        self.query = query
        self.path = path


class Context:
    def __init__(self) -> None:
        self.hostname = os.getenv("HOSTNAME") or socket.gethostname()


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 500: "Internal Server Error"}


def _status_line(code: int) -> str:
    return f"{code} {_REASONS.get(code, 'Status')}"


def format_response(res: Any) -> tuple[int, bytes, list[tuple[str, str]]]:
    """The template's rules: a dict gives status/body/headers, anything else is a 200 text body."""
    if not isinstance(res, dict):
        return 200, ("" if res is None else str(res)).encode(), [("Content-Type", "text/plain")]
    code = int(res.get("statusCode", 200))
    headers = [(str(k), str(v)) for k, v in (res.get("headers") or {}).items()]
    body = res.get("body")
    if isinstance(body, (dict, list)):
        payload = json.dumps(body).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
    elif isinstance(body, bytes):
        payload = body
    else:
        payload = ("" if body is None else str(body)).encode()
    return code, payload, headers


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    out = {k[5:].replace("_", "-").title(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            out[key.replace("_", "-").title()] = str(environ[key])
    return out


def application(handler: Handler) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app that calls `handler` the way the python3-http template's index.py does."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == HEALTH_PATH and method == "GET":
            start_response(_status_line(200), [("Content-Type", "text/plain")])
            return [b"OK"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        event = Event(body, _headers(environ), method, query, path)
        try:
            code, payload, headers = format_response(handler(event, Context()))
        except Exception:
            # A failing call is that call's 500, never the server's end (as in the template).
            log.exception("handler failed for %s %s", method, path)
            code, payload, headers = 500, b"handler failed", [("Content-Type", "text/plain")]
        headers.append(("Content-Length", str(len(payload))))
        start_response(_status_line(code), headers)
        return [payload]

    return app


def load_handler(module: str) -> Handler:
    handle = getattr(importlib.import_module(module), "handle", None)
    if not callable(handle):
        raise SystemExit(f"{module} has no handle(event, context) function")
    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("handler",
                        help="module with handle(event, context), e.g. workloads.functions.dd.handler")
    parser.add_argument("--listen", default=f"0.0.0.0:{PORT}", help="HOST:PORT (default %(default)s)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent requests (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, _, port = args.listen.rpartition(":")
    app = application(load_handler(args.handler))

    from waitress.server import create_server

    server = create_server(app, host=host or "0.0.0.0", port=int(port), threads=args.threads,
                           max_request_body_size=MAX_BODY_BYTES, ident="edgerig-function")

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        server.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        LOCK_FILE.touch()
    except OSError as exc:  # a read-only /tmp only loses the exec-probe file, not the HTTP health path
        log.warning("cannot write %s: %s", LOCK_FILE, exc)
    log.info("%s serving on %s", args.handler, args.listen)
    try:
        server.run()
    except OSError:
        pass  # the listening socket closed by stop()
    finally:
        LOCK_FILE.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
