"""Each function served as its image serves it (the python3-http contract, workloads/functions/
http_template.py) and the locust load against it, for real: processes on loopback."""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit import ROOT, free_port, stop_process, wait_for_port

from workloads.functions import launch
from workloads.functions.catalog import FUNCTIONS


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


def test_every_function_answers_with_its_request(server: Any) -> None:
    env = {"HOSTNAME": "nodeinfo-n1-0", "NODE_NAME": "n1"}
    port = server("nodeinfo", env)
    status, body, _ = call(port, path="/_/health")
    assert status == 200 and body == b"OK"
    status, body, headers = call(port)
    info = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert info["node"] == "n1" and info["cpus"] == os.cpu_count()
    # the pod's name (HOSTNAME, as the template's context has it), not the machine's shared host name
    assert info["hostname"] == "nodeinfo-n1-0"
    payload = FUNCTIONS["shasum"].body()
    assert len(payload) == 1024 * 1024
    status, body, _ = call(server("shasum"), "POST", body=payload)
    assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest()
    status, body, _ = call(server("gzip-compression"), path="/?bytes=4096")
    assert status == 200 and json.loads(body)["input_bytes"] == 4096
    status, body, _ = call(server("dd"))
    assert status == 200 and json.loads(body)["bytes_written"] == 1280


def test_an_unknown_function_is_refused_before_a_process_starts() -> None:
    with pytest.raises(ValueError, match="unknown function 'nodeinf': use one of nodeinfo"):
        launch.server(function="nodeinf", listen="127.0.0.1:8080")


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
    assert {r["hostname"] for r in rows} == {"nodeinfo-local-0", "nodeinfo-local-1"}  # each answer's pod
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


def test_the_image_catalogue_builds_the_same_functions() -> None:
    """Each function's image runs the handler the load and the testbeds know it by."""
    from workloads.images import catalog as images

    assert set(images.FUNCTIONS) == set(FUNCTIONS)
    for name, info in FUNCTIONS.items():
        assert images.FUNCTIONS[name].cmd[-1] == info.module
        assert launch.server(function=name, listen="0.0.0.0:8080").args[0] == info.module


def test_the_cli_never_imports_locust() -> None:
    """Importing locust patches the standard library for gevent: only the load's own process may."""
    code = ("import sys, experiments.cli, experiments.faas.run, experiments.resources.run; "
            "print(sorted({'locust', 'gevent'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_ramp_rises_then_holds_then_ends() -> None:
    from workloads.functions.ramp import users_at

    assert [users_at(t, 20, 120, 60) for t in (0, 30, 60, 119.9, 120, 179.9, 180)] == \
        [1, 6, 11, 20, 20, 20, None]
