"""The python3-http contract server and the locust load, for real: processes on loopback."""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from testkit import ROOT, free_port, stop_process, wait_for_port

from workloads.functions import launch
from workloads.functions.catalog import FUNCTIONS
from workloads.functions.server import FunctionServer, format_response


def start_server(function: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    spec = launch.server(function=function, listen=f"127.0.0.1:{port}", env=env)
    proc = subprocess.Popen(spec.argv(), cwd=ROOT, env={**os.environ, **spec.process_env()},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    return proc, port


@pytest.fixture
def server() -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def make(function: str, env: dict[str, str] | None = None) -> int:
        proc, port = start_server(function, env)
        started.append(proc)
        return port

    yield make
    for proc in started:
        stop_process(proc)


def call(port: int, method: str = "GET", path: str = "/",
         body: bytes | None = None) -> tuple[int, bytes, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers
    finally:
        conn.close()


def test_format_response_follows_the_template() -> None:
    assert format_response(None) == (200, b"", [])
    status, body, headers = format_response({"statusCode": 201, "body": {"a": 1}})
    assert status == 201 and json.loads(body) == {"a": 1} and ("Content-Type", "application/json") in headers
    assert format_response({"body": "plain"}) == (200, b"plain", [])
    assert format_response({"body": 3, "headers": [("X-A", "b")]}) == (200, b"3", [("X-A", "b")])
    assert format_response("hello")[0:2] == (200, b"hello")


def test_every_function_answers_with_its_request(server: Any) -> None:
    env = {"HOSTNAME": "nodeinfo-n1-0", "NODE_NAME": "n1"}
    port = server("nodeinfo", env)
    status, body, _ = call(port, path="/_/health")
    assert status == 200 and body == b"OK"
    status, body, headers = call(port)
    info = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert info["node"] == "n1" and info["cpus"] == os.cpu_count()
    payload = FUNCTIONS["shasum"].body()
    assert len(payload) == 1024 * 1024
    status, body, _ = call(server("shasum"), "POST", body=payload)
    assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
    status, body, _ = call(server("gzip-compression"), path="/?bytes=4096")
    assert status == 200 and json.loads(body)["input_bytes"] == 4096
    status, body, _ = call(server("dd"))
    assert status == 200 and json.loads(body)["bytes_written"] == 1280


def test_handler_calls_share_four_slots() -> None:
    """waitress runs the template's handler on 4 threads: at most 4 requests at once per replica."""
    gate, lock = threading.Event(), threading.Lock()
    running = [0, 0]  # now, most

    def handle(event: Any, context: Any) -> dict[str, Any]:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        gate.wait(5)
        with lock:
            running[0] -= 1
        return {"body": "done"}

    srv = FunctionServer(("127.0.0.1", 0), SimpleNamespace(handle=handle))  # type: ignore[arg-type]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    results: list[int] = []
    callers = [threading.Thread(target=lambda: results.append(call(port)[0])) for _ in range(7)]
    for t in callers:
        t.start()
    deadline = time.monotonic() + 5
    while running[0] < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert running == [4, 4]  # three callers wait for a slot
    gate.set()
    for t in callers:
        t.join(10)
    srv.shutdown()
    srv.server_close()
    assert results == [200] * 7 and running[1] == 4


def test_handler_error_is_500_and_the_server_keeps_serving() -> None:
    def handle(event: Any, context: Any) -> Any:
        if event.query.get("fail"):
            raise ValueError("boom")
        return {"body": {"path": event.path, "method": event.method, "host": context.hostname}}

    srv = FunctionServer(("127.0.0.1", 0), SimpleNamespace(handle=handle))  # type: ignore[arg-type]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        assert call(port, path="/x?fail=1")[0] == 500
        status, body, _ = call(port, "PUT", "/some/path?a=1&a=2")
        assert status == 200 and json.loads(body)["path"] == "/some/path"
        assert json.loads(body)["method"] == "PUT"
    finally:
        srv.shutdown()
        srv.server_close()


def test_sigterm_lets_a_request_in_flight_finish(server: Any) -> None:
    proc, port = start_server("gzip-compression")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/?bytes={32 * 1024 * 1024}")  # a few hundred ms of work
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read())["input_bytes"] == 32 * 1024 * 1024
    assert proc.wait(15) == 0


def test_bad_function_name_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "workloads.functions.server", "--function", "nodeinf"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown function 'nodeinf'" in done.stderr and "nodeinfo" in done.stderr


def run_load(tmp_path: Path, function: str, urls: list[str], users: int, ramp_s: float, hold_s: float,
             timeout_s: float = 20.0) -> tuple[dict[str, Any], list[dict[str, str]]]:
    spec = launch.load(function=function, urls=urls, users=users, ramp_s=ramp_s, hold_s=hold_s,
                       records=tmp_path / "requests.csv", status_file=tmp_path / "status.json",
                       timeout_s=timeout_s)
    done = subprocess.run(spec.argv(), cwd=ROOT, env={**os.environ, **spec.process_env()},
                          capture_output=True, text=True, timeout=ramp_s + hold_s + 60)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    return json.loads(done.stdout.strip().splitlines()[-1]), rows


@pytest.mark.slow
def test_locust_ramp_against_real_replicas(server: Any, tmp_path: Path) -> None:
    ports = [server("nodeinfo", {"HOSTNAME": f"nodeinfo-local-{i}", "NODE_NAME": "local"}) for i in range(2)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    final, rows = run_load(tmp_path, "nodeinfo", urls, users=4, ramp_s=3, hold_s=1.5)
    assert final["final"] and final["requests"] == len(rows) > 100 and final["errors"] == 0
    assert json.loads((tmp_path / "status.json").read_text())["final"] is True
    starts = [float(r["start_unix_s"]) for r in rows]
    vus = [int(r["vus"]) for r in rows]
    assert min(vus) == 1 and max(vus) == 4
    # the ramp: users only rise while it lasts, and all four are there during the hold
    by_time = [v for _, v in sorted(zip(starts, vus, strict=True))]
    t0 = min(starts)
    early = [v for s, v in zip(starts, vus, strict=True) if s - t0 < 0.9]
    late = [v for s, v in zip(starts, vus, strict=True) if s - t0 > 3.2]
    assert set(early) == {1} and set(late) == {4}
    assert by_time == sorted(by_time)
    assert {r["status"] for r in rows} == {"200"}
    assert {r["url"] for r in rows} == set(urls)  # users spread over both replicas
    assert {r["node"] for r in rows} == {"local"}
    assert all(float(r["duration_ms"]) > 0 for r in rows)
    assert max(starts) - t0 < 4.5 + 1.0  # no request starts after the hold


@pytest.mark.slow
def test_load_records_errors_and_finishes_requests_in_flight(server: Any, tmp_path: Path) -> None:
    port = server("gzip-compression")
    dead = free_port()  # nothing listens: connection refused, status 0
    final, rows = run_load(tmp_path, "gzip-compression", [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dead}"],
                           users=2, ramp_s=1, hold_s=1)
    ok = [r for r in rows if r["status"] == "200"]
    failed = [r for r in rows if r["status"] == "0"]
    assert ok and failed and final["errors"] == len(failed)
    assert all(r["error"] for r in failed) and not any(r["error"] for r in ok)
    # the ramp ended while gzip requests were running: each of them still has its record
    last_end = max(float(r["start_unix_s"]) + float(r["duration_ms"]) / 1000 for r in ok)
    assert last_end > min(float(r["start_unix_s"]) for r in rows) + 2.0 - 0.5


def test_load_rejects_bad_input(tmp_path: Path) -> None:
    for args, message in ((["--ramp-s", "0"], "--ramp-s must be > 0"),
                          (["--users", "0"], "--users must be >= 1"),
                          (["--function", "nope"], "unknown function 'nope'")):
        argv = [sys.executable, "-m", "workloads.functions.load", "--function", "nodeinfo", "--url",
                "http://127.0.0.1:1", "--users", "2", "--records", str(tmp_path / "r.csv"), *args]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert not (tmp_path / "r.csv").exists()
