"""The python3-http contract served by the function runtime, as a real server on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from testkit import free_port, stop_process, wait_until

from workloads.functions.http_template import format_response


@pytest.fixture
def gzip_function() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workloads.functions.http_template",
                             "workloads.functions.gzip_compression.handler", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    def healthy() -> bool:
        try:
            urllib.request.urlopen(base + "/_/health", timeout=1).read()
        except OSError:
            return False
        return True

    try:
        wait_until(healthy, 20, "the function", alive=lambda: proc.poll() is None)
    except (TimeoutError, RuntimeError):
        stop_process(proc)
        err = proc.stderr.read() if proc.stderr else b""
        raise AssertionError(f"function did not start: {err!r}") from None
    yield base
    stop_process(proc)
    assert proc.returncode == 0  # SIGTERM is a clean stop


def _call(url: str) -> tuple[int, dict[str, object], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read()), r.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers["Content-Type"]


def test_query_reaches_the_handler_and_the_dict_becomes_the_response(gzip_function: str) -> None:
    status, body, ctype = _call(gzip_function + "/?bytes=4096")
    assert status == 200 and ctype == "application/json"
    assert body["input_bytes"] == 4096 and 0 < int(str(body["compressed_bytes"])) < 5000


def test_a_bad_request_is_the_handlers_status_not_a_server_error(gzip_function: str) -> None:
    status, body, _ = _call(gzip_function + "/?bytes=lots")
    assert status == 400 and "must be an integer" in str(body["error"])


def test_response_rules_of_the_template() -> None:
    assert format_response({"body": {"a": 1}}) == (200, b'{"a": 1}', [("Content-Type", "application/json")])
    assert format_response({"statusCode": 201, "body": "made", "headers": {"X-A": "1"}}) == (
        201, b"made", [("X-A", "1")])
    assert format_response("plain") == (200, b"plain", [("Content-Type", "text/plain")])
