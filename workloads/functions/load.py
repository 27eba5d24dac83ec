"""Load on one function, from locust used as a library: the thesis's ramp of virtual users.

Virtual users rise from 1 to `--users` over `--ramp-s`, then `--users` hold for `--hold-s` (the
thesis: 2 minutes, then 1 minute, with k6). Each user is a loop that sends the function's request
(workloads/functions/catalog.py) and, as soon as the answer is in, the next one: closed-loop, as k6's
virtual users are. When the hold ends no user starts another request, and every request in flight
finishes (up to `--timeout-s`), so every request sent has a record:

    start_unix_s, duration_ms, status (HTTP code; 0 = no answer), vus (users running when it was
    sent), hostname and node (nodeinfo: the host - the pod - that answered, and its node), url, error

With several `--url`s (a testbed with no node port in front of its replicas) users are spread over
them round-robin. `--status-file` holds the users, requests and errors so far, and `final` at the end.

    python -m workloads.functions.load --function nodeinfo --url http://10.231.0.13:31000 \
        --users 20 --ramp-s 120 --hold-s 60 --records requests.csv --status-file status.json
"""

from __future__ import annotations

# locust patches the standard library for gevent when it is imported: before anything else.
from locust import FastHttpUser, LoadTestShape, constant, task  # isort: skip

import argparse
import csv
import itertools
import json
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import gevent
from locust.env import Environment

from workloads.functions.catalog import FUNCTIONS, FunctionInfo, function
from workloads.functions.ramp import ramp_problems, users_at

FIELDS = ["start_unix_s", "duration_ms", "status", "vus", "hostname", "node", "url", "error"]


class Ramp(LoadTestShape):
    """1 -> `users` over `ramp_s`, then `users` for `hold_s`, then stop."""

    def __init__(self, users: int, ramp_s: float, hold_s: float) -> None:
        super().__init__()
        self.users, self.ramp_s, self.hold_s = users, ramp_s, hold_s

    def tick(self) -> tuple[int, float] | None:
        users = users_at(self.get_run_time(), self.users, self.ramp_s, self.hold_s)
        # Spawn a whole step at once: the count follows the shape, one step per tick (1 s).
        return None if users is None else (users, float(self.users))


class Recorder:
    """Rows in memory, appended to the CSV once a second and at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[list[Any]] = []
        self.requests = 0
        self.errors = 0
        with path.open("w", newline="") as f:
            csv.writer(f).writerow(FIELDS)

    def add(self, row: list[Any], failed: bool) -> None:
        self.rows.append(row)
        self.requests += 1
        self.errors += failed

    def flush(self) -> None:
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerows(rows)


class FunctionUser(FastHttpUser):
    """One virtual user: the function's request in a loop, no think time (k6's default)."""

    abstract = True
    wait_time = constant(0)
    info: ClassVar[FunctionInfo]
    urls: ClassVar[list[str]]
    recorder: ClassVar[Recorder]
    _next_url: ClassVar[itertools.count[int]]

    def __init__(self, environment: Environment) -> None:
        self.host = self.urls[next(self._next_url) % len(self.urls)]
        super().__init__(environment)
        self.payload = self.info.body()

    @task
    def call(self) -> None:
        runner = self.environment.runner
        vus = runner.user_count if runner is not None else 0
        started = time.time()
        t0 = time.perf_counter()
        resp = self.client.request(self.info.method, "/", name=self.info.name,
                                   data=self.payload or None)  # type: ignore[arg-type]  # bytes work
        duration_ms = (time.perf_counter() - t0) * 1000
        status = int(resp.status_code or 0)
        failure = getattr(resp, "error", None)  # set by locust on a connection error or a timeout
        error = "" if failure is None else f"{type(failure).__name__}: {failure}"[:200]
        if not error and status >= 400:
            error = f"HTTP {status}: {(resp.text or '')[:160]}"
        hostname = node = ""
        if status == 200 and self.info.name == "nodeinfo":
            try:
                answer = resp.json()
                hostname, node = str(answer.get("hostname", "")), str(answer.get("node", ""))
            except ValueError:
                error = "answer is not JSON"
        self.recorder.add([f"{started:.6f}", f"{duration_ms:.3f}", status, vus, hostname, node, self.host,
                           error], bool(error))


def user_class(info: FunctionInfo, urls: list[str], recorder: Recorder,
               timeout_s: float) -> type[FunctionUser]:
    attrs = {"abstract": False, "info": info, "urls": urls, "recorder": recorder,
             "_next_url": itertools.count(), "network_timeout": timeout_s, "connection_timeout": timeout_s}
    return type(f"{info.name.replace('-', '_')}_user", (FunctionUser,), attrs)


def write_status(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def run(info: FunctionInfo, urls: list[str], users: int, ramp_s: float, hold_s: float, records: Path,
        status_file: Path | None, timeout_s: float) -> dict[str, Any]:
    recorder = Recorder(records)
    shape = Ramp(users, ramp_s, hold_s)
    env = Environment(user_classes=[user_class(info, urls, recorder, timeout_s)], shape_class=shape,
                      stop_timeout=timeout_s + 5, catch_exceptions=False)
    runner = env.create_local_runner()
    started = time.time()
    stopped: list[int] = []

    def on_signal() -> None:
        stopped.append(1)
        runner.quit()

    # The shape's end stops the users (each finishes its request); then the runner itself ends.
    env.events.test_stop.add_listener(lambda **_: gevent.spawn_later(0, runner.quit))
    gevent.signal_handler(signal.SIGTERM, on_signal)
    gevent.signal_handler(signal.SIGINT, on_signal)

    def status(final: bool = False) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"function": info.name, "users": runner.user_count, "requests": recorder.requests,
                "errors": recorder.errors, "elapsed_s": round(time.time() - started, 3),
                "started_unix_s": round(started, 6), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                "interrupted": bool(stopped), "final": final}

    def flusher() -> None:
        # The users count goes out 4 times a second (the timeline of users is read from it), the
        # records once a second.
        for tick in itertools.count(1):
            gevent.sleep(0.25)
            if tick % 4 == 0:
                recorder.flush()
            write_status(status_file, status())

    write_status(status_file, status())
    background = gevent.spawn(flusher)
    runner.start_shape()
    runner.greenlet.join()
    background.kill()
    recorder.flush()
    final = status(final=True)
    write_status(status_file, final)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", required=True, help=f"one of {', '.join(FUNCTIONS)}")
    parser.add_argument("--url", action="append", required=True,
                        help="where the function answers, e.g. http://10.231.0.13:31000 (repeatable)")
    parser.add_argument("--users", type=int, required=True, help="virtual users after the ramp")
    parser.add_argument("--ramp-s", type=float, default=120.0, help="seconds from 1 user to --users")
    parser.add_argument("--hold-s", type=float, default=60.0, help="seconds at --users")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="give up on one request after this")
    parser.add_argument("--records", type=Path, required=True, help="CSV, one row per request")
    parser.add_argument("--status-file", type=Path, default=None)
    args = parser.parse_args(argv)
    problems = []
    try:
        info = function(args.function)
    except ValueError as err:
        problems.append(str(err))
    problems += ramp_problems(args.users, args.ramp_s, args.hold_s, args.timeout_s)
    urls = [u.strip().rstrip("/") for raw in args.url for u in raw.split(",") if u.strip()]
    if not urls or any(not u.startswith(("http://", "https://")) for u in urls):
        problems.append(f"--url must be http(s)://HOST:PORT (got {args.url})")
    if problems:
        parser.error("; ".join(problems))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    final = run(info, urls, args.users, args.ramp_s, args.hold_s, args.records, args.status_file,
                args.timeout_s)
    print(json.dumps(final), flush=True)
    return 130 if final["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
