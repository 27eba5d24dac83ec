"""`edgerig run resources` and `edgerig compare`: the process meter on a real local system, the
Prometheus path against a real Prometheus (scraping stand-in kubelet series, since no kubelet runs
here), and the overhead table."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from testkit import assert_nothing_left, edgerig, free_port, run_env

from experiments.resources.meter import ProcessMeter, Sampler
from experiments.resources.prometheus import PrometheusClient, prometheus_rows
from experiments.resources.report import window_summary
from experiments.runs.compare import compare, markdown
from experiments.testbeds.base import TestbedError


@pytest.mark.slow
def test_local_run_writes_samples_summary_and_plot(tmp_path: Path) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = edgerig(["run", "resources", "--quiet-s", "4", "--stream-s", "4", "--fps",
                    "20", "--sink", "process", "--out", str(out), "--no-progress"], env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    s = json.loads((out / "summary.json").read_text())
    for window in ("quiescent", "streaming"):
        total = s[window]["total"]
        assert total["cpu_cores"]["samples"] >= 3 and total["memory_mb"]["median"] > 10
        assert total["cpu_cores"]["q1"] <= total["cpu_cores"]["median"] <= total["cpu_cores"]["q3"]
        assert set(s[window]["components"]) == {"nats", "gateway", "vision", "sink"}
        assert set(s[window]["pods"]) == {"nats-server", "gateway-local", "vision-local-cam-0", "sink"}
        assert s[window]["window_s"] >= 3.5
    q, st = s["quiescent"]["total"]["cpu_cores"], s["streaming"]["total"]["cpu_cores"]
    assert q["median"] < st["median"]  # streaming costs CPU
    assert s["marginal_cpu_ms_per_frame"] == pytest.approx((st["mean"] - q["mean"]) / 20 * 1000, abs=0.01)
    assert printed["marginal_cpu_ms_per_frame"] == s["marginal_cpu_ms_per_frame"]
    assert s["latency"]["frames_sent"] == 80 and s["latency"]["lost"] == 0 and s["latency"]["p50_ms"] > 0
    with (out / "samples.csv").open() as f:
        rows = list(csv.DictReader(f))
    per_moment: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        per_moment.setdefault((r["window"], r["unix_s"]), set()).add(r["component"])
    assert all(c == {"nats", "gateway", "vision", "sink"} for c in per_moment.values())
    assert len(per_moment) == q["samples"] + st["samples"]
    assert (out / "resources.png").stat().st_size > 0 and (out / "run.json").exists()
    assert_nothing_left(marker, tmp)


def test_meter_counts_every_thread_of_a_process_tree(tmp_path: Path) -> None:
    """nats-server and gRPC work on threads other than the main one; a child counts for its parent,
    also after it exited. The work reports its own CPU time (thread_time, process_time)."""
    report = tmp_path / "cpu.txt"
    work = "n = 0\nfor i in range(6_000_000): n += i\n"
    script = (
        "import subprocess, sys, threading, time\n"
        "time.sleep(0.6)\n"
        f"def spin():\n    {work.replace(chr(10), chr(10) + '    ')}\n"
        f"    open({str(report)!r}, 'a').write(f'{{time.thread_time()}}\\n')\n"
        "t = threading.Thread(target=spin)\nt.start()\n"
        f"child = {work + 'import time; print(time.process_time())'!r}\n"
        f"out = subprocess.run([sys.executable, '-c', child], capture_output=True, text=True).stdout\n"
        f"open({str(report)!r}, 'a').write(out)\n"
        "t.join()\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        sampler = Sampler(ProcessMeter({"busy": [proc.pid]}), 0.5).start()
        deadline = time.monotonic() + 60
        while (not report.exists() or len(report.read_text().split()) < 2) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.6)
        samples = sampler.stop()
    finally:
        proc.kill()
        proc.wait()
    reported = sum(float(x) for x in report.read_text().split())
    used = samples[-1].cpu_s["busy"] - samples[0].cpu_s["busy"]
    assert reported > 0.2 and used >= 0.9 * reported - 0.05, (used, reported)
    assert samples[-1].roots["busy"][proc.pid][0] == samples[-1].cpu_s["busy"]


@pytest.mark.parametrize(("args", "message"), [
    (["--quiet-s", "0"], "--quiet-s must be > 0"),
    (["--stream-s", "-1"], "--stream-s must be > 0"),
    (["--sample-s", "0"], "--sample-s must be > 0"),
    (["--quiet-s", "1", "--sample-s", "1"], "fewer than two samples"),
    (["--target", "pi-k3s", "--quiet-s", "30"], "Prometheus rates over 1m"),
    (["--rate-range", "soon"], "not a Prometheus duration"),
    (["--sink", "gateway", "--target", "fleet"], "--sink gateway needs the local testbed"),
])
def test_bad_input_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "results"
    proc = edgerig(["run", "resources", "--out", str(out), "--no-progress", *args], dict(os.environ))
    assert proc.returncode == 2 and message in " ".join(proc.stderr.split()), proc.stderr
    assert not out.exists()


# -- Prometheus ----------------------------------------------------------------------------------
class KubeletSeries:
    """cAdvisor-style series of four containers; each one's CPU rate changes at `switch`."""

    PODS = {("nats", "nats-0", "nats"): (0.01, 0.05), ("vei", "gateway-a", "gateway"): (0.02, 0.2),
            ("vei", "vision-a", "vision"): (0.01, 0.1), ("vei", "camera-a", "camera"): (0.3, 0.3)}

    def __init__(self, switch: float) -> None:
        self.created, self.switch = time.time(), switch
        self.start = self.created

    def cpu(self, rates: tuple[float, float], now: float) -> float:
        """A counter: the first rate until the switch, the second after it (never reset)."""
        before = min(now, self.switch) - self.created
        after = max(0.0, now - self.switch)
        return rates[0] * before + rates[1] * after

    def collect(self) -> Iterator[Any]:
        now = time.time()
        labels = ["namespace", "pod", "container"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds", "cpu", labels=labels)
        mem = GaugeMetricFamily("container_memory_working_set_bytes", "mem", labels=labels)
        for (ns, pod, container), rates in self.PODS.items():
            cpu.add_metric([ns, pod, container], self.cpu(rates, now))
            mem.add_metric([ns, pod, container], 50e6 if now < self.switch else 80e6)
        yield cpu
        yield mem


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, KubeletSeries]]:
    """A real Prometheus scraping the stand-in series every second; the rates switch 8 s after
    Prometheus has its first scrape (`series.start` is then moved there)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (experiments/bootstrap.sh --dev installs it as root)")
    registry = CollectorRegistry()
    series = KubeletSeries(time.time() + 3600)
    registry.register(series)  # type: ignore[arg-type]
    exporter_port, port = free_port(), free_port()
    server, _thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: kubelet\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
                      "    honor_labels: true\n")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _scraped(url):
            assert proc.poll() is None and time.monotonic() < deadline, "prometheus did not start"
            time.sleep(0.2)
        series.switch = time.time() + 8
        series.start = series.switch - 8
        yield url, series
    finally:
        proc.terminate()
        proc.wait(15)
        server.shutdown()


def _scraped(url: str) -> bool:
    import requests

    try:
        answer = requests.get(f"{url}/api/v1/query", params={"query": "up"}, timeout=1).json()
    except (requests.RequestException, ValueError):
        return False
    return bool(answer.get("data", {}).get("result"))


@pytest.mark.slow
def test_pod_series_come_from_a_real_prometheus(prometheus: tuple[str, KubeletSeries]) -> None:
    url, series = prometheus
    # 8 s at the quiescent rates, then 8 s at the streaming ones
    time.sleep(series.switch + 8.5 - time.time())
    windows = [("quiescent", series.start + 1, series.switch),
               ("streaming", series.switch, series.switch + 8)]
    rows = prometheus_rows(PrometheusClient(url), windows, 1.0, {"nats": "nats", "vei": ""}, rate_range="3s")
    assert {r.component for r in rows} == {"nats", "gateway", "vision"}  # the camera is a client
    assert {r.pod for r in rows} == {"nats-0/nats", "gateway-a/gateway", "vision-a/vision"}
    for i, window in enumerate(("quiescent", "streaming")):
        summary = window_summary([r for r in rows if r.window == window])
        for (ns, pod, container), rates in KubeletSeries.PODS.items():
            if container == "camera":
                continue
            got = summary["pods"][f"{pod}/{container}"]
            assert got["component"] == ("nats" if ns == "nats" else container)
            assert got["cpu_cores"]["median"] == pytest.approx(rates[i], rel=0.15, abs=0.003), (window, pod)
        total = summary["total"]["cpu_cores"]["median"]
        assert total == pytest.approx(sum(r[i] for k, r in KubeletSeries.PODS.items() if k[2] != "camera"),
                                      rel=0.15)
        assert summary["total"]["memory_mb"]["median"] == pytest.approx(3 * (50 if i == 0 else 80), rel=0.01)


def test_prometheus_errors_are_explained(prometheus: tuple[str, KubeletSeries]) -> None:
    url, _ = prometheus
    with pytest.raises(TestbedError, match="shorter than Prometheus's rate range"):
        prometheus_rows(PrometheusClient(url), [("quiescent", 100.0, 130.0)], 1.0, {"vei": ""})
    with pytest.raises(TestbedError, match="did not answer"):
        PrometheusClient(f"http://127.0.0.1:{free_port()}").query_range("up", 0, 10, 1)


# -- compare ------------------------------------------------------------------------------------
def write(folder: Path, summary: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def resources_summary(p50: float, p95: float, q: float, s: float, qm: float, sm: float) -> dict[str, Any]:
    def window(cores: float, mb: float) -> dict[str, Any]:
        return {"total": {"cpu_cores": {"median": cores}, "memory_mb": {"median": mb}}}
    return {"testbed": "x", "latency": {"p50_ms": p50, "p95_ms": p95}, "quiescent": window(q, qm),
            "streaming": window(s, sm), "marginal_cpu_ms_per_frame": (s - q) / 10 * 1000}


def test_compare_gives_the_thesis_overhead_table(tmp_path: Path) -> None:
    # the thesis's own figures: baseline vs K3s (4.1, 4.2, 5)
    a = write(tmp_path / "baseline", resources_summary(24.4, 65.0, 0.06, 0.289, 110.8, 111.3))
    b = tmp_path / "k3s"
    write(b / "r1", resources_summary(536.0, 1081.0, 0.128, 7.51, 125.5, 213.4))
    write(b / "r2", resources_summary(540.0, 1090.0, 0.130, 7.60, 125.0, 214.0))
    table = compare(a, b)
    rows = {r["figure"]: r for r in table["rows"]}
    assert rows["latency p50 (ms)"]["b"] == pytest.approx(538.0)  # the median of the repeats
    assert rows["latency p50 (ms)"]["change_pct"] == pytest.approx((538 - 24.4) / 24.4 * 100, abs=0.01)
    assert rows["CPU streaming (cores)"]["change_pct"] == pytest.approx((7.555 - 0.289) / 0.289 * 100,
                                                                        abs=0.01)
    assert rows["memory quiescent (MB)"]["change_pct"] == pytest.approx((125.25 - 110.8) / 110.8 * 100,
                                                                        abs=0.01)
    assert table["b"]["runs"] == 2
    text = markdown(table)
    assert "| latency p95 (ms) | 65 | 1.09e+03 |" not in text and "| latency p95 (ms) | 65 | 1086 |" in text
    # a latency run compares too: latency and its window-mean CPU, no memory
    lat = write(tmp_path / "latency", {"testbed": "local", "p50_ms": 2.0, "p95_ms": 4.0,
                                       "cpu": {"total": {"quiescent_cores": 0.01, "streaming_cores": 0.05}}})
    rows = {r["figure"]: r for r in compare(lat, a)["rows"]}
    assert rows["latency p50 (ms)"]["change_pct"] == pytest.approx(1120.0)
    assert rows["memory streaming (MB)"]["change_pct"] is None and rows["memory streaming (MB)"]["a"] is None
    assert "window mean" in markdown(compare(lat, a))


def test_compare_command_prints_writes_and_refuses_bad_folders(tmp_path: Path) -> None:
    a = write(tmp_path / "a", resources_summary(2, 4, 0.01, 0.02, 100, 110))
    b = write(tmp_path / "b", resources_summary(3, 6, 0.02, 0.04, 120, 130))
    out = tmp_path / "table"
    env = {**os.environ}
    done = edgerig(["compare", str(a), str(b), "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert "| latency p50 (ms) | 2 | 3 | +50.0 % |" in done.stdout
    assert (out / "overhead.md").read_text() in done.stdout
    assert json.loads((out / "overhead.json").read_text())["rows"][0]["change_pct"] == 50.0
    bad = edgerig(["compare", str(a), str(tmp_path / "missing")], dict(os.environ))
    assert bad.returncode == 2 and "is not a results folder" in bad.stderr


@pytest.mark.root
@pytest.mark.slow
def test_emulated_run_breaks_the_system_down_per_replica(tmp_path: Path) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = edgerig(["run", "resources", "--target", "emulated:3", "--quiet-s", "3",
                    "--stream-s", "3", "--out", str(out), "--no-progress"], env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    pods = s["streaming"]["pods"]
    # 3 NATS servers, 3 gateways and 3 vision apps over 3 nodes, and the sink
    assert sorted(p["component"] for p in pods.values()).count("gateway") == 3
    assert len(pods) == 10 and {"gateway-n1", "gateway-n2", "gateway-n3", "sink"} <= set(pods)
    total = s["streaming"]["total"]["cpu_cores"]["median"]
    assert total == pytest.approx(sum(p["cpu_cores"]["median"] for p in pods.values()), rel=0.5)
    assert s["latency"]["lost"] == 0
    assert_nothing_left(marker, tmp)
    assert "erf-" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
