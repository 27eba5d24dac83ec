"""Benchmarks of the VEI gateway's CPU and latency (run directly, under the heavy lock; not pytest).

    # the original path, edgerig's gateway side by side with the original Go VEI, in one run
    # (root: it runs in a private network namespace, because the original hard-codes its ports)
    flock /tmp/edgerig-heavy.lock .venv/bin/python tests/vei/bench_gateway.py original \
        --go-vei /tmp/govei/vei-server --rates 10:1000,1000:5000,2000:8000

    # the whole pipeline (camera -> gateway -> vision -> gateway -> cloud, with acks) at 10 fps, the
    # results recorded by the gateway (as on the local testbed) or by the sink process (--sink process)
    flock /tmp/edgerig-heavy.lock .venv/bin/python tests/vei/bench_gateway.py pipeline --fps 10 --frames 1000

Every figure is reported as the thesis did: quiescent cores (everything up and connected, no frames),
streaming cores, and the marginal CPU per frame = (streaming - quiescent) / rate, next to the total
CPU per frame (streaming CPU / frames). CPU is user + system time of each process from /proc, sampled
every 0.25 s; a window's CPU is taken between the samples that bracket it.

`original`: camera `PublishImage` -> gateway -> NATS -> one `SubscribeImage` subscriber, 24 KB frames,
CPU of gateway + nats-server only; clients send and read only the original's fields (bench_clients.py).
Each implementation gets a fresh nats-server (JetStream on, same flags for both) on the port the original
hard-codes (127.0.0.1:4222) and listens on :50051.

`pipeline`: the baseline system of the latency experiment (nats-server, gateway, vision app, camera with
acks, and the local sink process with `--sink process`); CPU of gateway + vision + nats-server (+ sink);
latency = camera creation -> recorded result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
# Children import this checkout's code whatever their working directory (the venv's editable install
# could point elsewhere), so a copy of an older commit can be measured while the tree changes.
os.environ["PYTHONPATH"] = str(ROOT)

from experiments.testbeds.base import SystemSpec  # noqa: E402
from experiments.testbeds.local import LocalTestbed  # noqa: E402
from experiments.testbeds.nats import NatsServer, start_nats  # noqa: E402
from experiments.testbeds.ports import port_open  # noqa: E402
from experiments.testbeds.processes import Child, Supervisor  # noqa: E402
from experiments.testbeds.readiness import wait_gateways_serving  # noqa: E402
from workloads.vei import launch, subjects  # noqa: E402

PY = sys.executable
CLIENTS = Path(__file__).with_name("bench_clients.py")
ORIGINAL_NATS_PORT = 4222      # nats.DefaultURL in the original's server.go
ORIGINAL_GRPC = "127.0.0.1:50051"
CAMERA = "bench"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class CpuSampler:
    """CPU seconds (user + system) of a set of processes (name -> pid) over time."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.samples: list[tuple[int, dict[str, float]]] = []

    def sample(self) -> None:
        now = time.time_ns()
        cpu = {}
        for name, proc in self.procs.items():
            t = proc.cpu_times()
            cpu[name] = t.user + t.system
        self.samples.append((now, cpu))

    def run_until(self, done: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> None:
        deadline = time.monotonic() + timeout_s
        self.sample()
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not finished within {timeout_s:.0f} s")
            time.sleep(every_s)
            self.sample()
        self.sample()

    def window(self, start_ns: int, end_ns: int) -> tuple[float, dict[str, float]]:
        """(seconds, CPU seconds per process) between the last sample <= start and the first >= end."""
        before = [s for s in self.samples if s[0] <= start_ns] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= end_ns] or self.samples[-1:]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return (t1 - t0) / 1e9, {name: c1[name] - c0[name] for name in c0}


def figures(sampler: CpuSampler, quiet: tuple[int, int], stream: tuple[int, int], frames: int,
            rate: float) -> dict[str, Any]:
    q_s, q_cpu = sampler.window(*quiet)
    s_s, s_cpu = sampler.window(*stream)
    quiet_cores = {k: v / q_s for k, v in q_cpu.items()}
    stream_cores = {k: v / s_s for k, v in s_cpu.items()}
    total_q, total_s = sum(quiet_cores.values()), sum(stream_cores.values())
    return {
        "quiescent_cores": round(total_q, 4),
        "streaming_cores": round(total_s, 4),
        "marginal_ms_per_frame": round((total_s - total_q) / rate * 1000, 3),
        "cpu_ms_per_frame": round(sum(s_cpu.values()) * 1000 / max(1, frames), 3),
        "per_process": {k: {"quiescent_cores": round(quiet_cores[k], 4),
                            "streaming_cores": round(stream_cores[k], 4),
                            "marginal_ms_per_frame": round((stream_cores[k] - quiet_cores[k]) / rate * 1e3,
                                                           3)}
                        for k in q_cpu},
        "quiet_window_s": round(q_s, 1), "stream_window_s": round(s_s, 1),
    }


# ---- the original path -------------------------------------------------------------------------

@dataclass
class Implementation:
    name: str
    subject: str
    start: Callable[[Supervisor, Path], Child]


def start_original_nats(sup: Supervisor, gomaxprocs: int = 0) -> NatsServer:
    """The original connects to nats://127.0.0.1:4222 only, so the server must be there (the run is in
    its own network namespace, so the fixed ports collide with nothing)."""
    return start_nats(sup, name="nats-server", port=ORIGINAL_NATS_PORT, gomaxprocs=gomaxprocs or None)


def go_vei(binary: Path) -> Callable[[Supervisor, Path], Child]:
    def start(sup: Supervisor, work: Path) -> Child:
        # server.go reads ./gcp/roots.pem and ./gcp/rsa_private.pem at start-up (log.Fatal without them)
        # to sign a JWT for GCP IoT; throwaway files made here let it start. Its GCP and AWS connections
        # cannot reach anything from this machine and are never used on the measured path.
        gcp = work / "gcp"
        gcp.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(gcp / "rsa_private.pem"), "-out", str(gcp / "roots.pem"), "-days", "1",
                        "-subj", "/CN=benchmark-throwaway"], check=True, capture_output=True)
        child = sup.start("go-vei", [str(binary)],  # cwd: `work` (run_original chdirs there)
                          ready=lambda: port_open("127.0.0.1", 50051), ready_timeout_s=30)
        return child

    return start


def edgerig_gateway(registry: str) -> Callable[[Supervisor, Path], Child]:
    def start(sup: Supervisor, work: Path) -> Child:
        spec = launch.gateway(listen=ORIGINAL_GRPC, nats_urls=[f"nats://127.0.0.1:{ORIGINAL_NATS_PORT}"],
                              registry=registry, log_level="WARNING")
        child = sup.start("gateway", spec.argv(), env=spec.process_env(),
                          ready=lambda: port_open("127.0.0.1", 50051))
        wait_gateways_serving([child], [ORIGINAL_GRPC])
        return child

    return start


def run_original(impl: Implementation, fps: float, frames: int, quiet_s: float, frame_bytes: int,
                 nats_gomaxprocs: int = 0) -> dict[str, Any]:
    """One rate against a fresh nats-server and gateway: the original exits (log.Fatal) on the first
    frame after a subscriber went away, so one gateway cannot serve two rounds."""
    with Supervisor() as sup:
        work = sup.temp_dir(f"bench-{impl.name}")
        os.chdir(work)  # the Go binary reads ./gcp relative to its working directory
        try:
            nats = start_original_nats(sup, nats_gomaxprocs)
            gateway = impl.start(sup, work)
            out = work / "received.csv"
            sub = sup.start("subscriber", [PY, str(CLIENTS), "subscribe", "--gateway", ORIGINAL_GRPC,
                                           "--camera-id", CAMERA, "--frames", str(frames), "--out", str(out)],
                            ready=lambda: nats.has_subscription(impl.subject), ready_timeout_s=30)
            cam = subprocess.Popen([PY, str(CLIENTS), "publish", "--gateway", ORIGINAL_GRPC,
                                    "--camera-id", CAMERA, "--frames", str(frames), "--fps", str(fps),
                                    "--frame-bytes", str(frame_bytes)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                assert cam.stdout is not None and cam.stdin is not None
                if cam.stdout.readline().strip() != "ready":
                    raise RuntimeError("the benchmark camera did not connect")
                sampler = CpuSampler({"gateway": gateway.pid, "nats-server": nats.child.pid})
                quiet_start = time.time_ns()
                sampler.run_until(lambda: time.time_ns() - quiet_start > quiet_s * 1e9, quiet_s + 10)
                quiet_end = time.time_ns()
                cam.stdin.write("go\n")
                cam.stdin.flush()
                sampler.run_until(lambda: not sub.alive(), timeout_s=frames / fps + 120)
                reply = json.loads(cam.stdout.readline() or "{}")
                cam.wait(30)
            finally:
                if cam.poll() is None:
                    cam.kill()
                    cam.wait()
            rows = [tuple(int(x) for x in line.split(",")) for line in out.read_text().splitlines()]
            if not rows:
                raise RuntimeError(f"{impl.name}: no frame reached the subscriber:\n{gateway.log_tail()}")
        finally:
            os.chdir(ROOT)
    lat = [(r - c) / 1e6 for _, c, r in rows]
    first_created, last_received = min(c for _, c, _ in rows), max(r for _, _, r in rows)
    fig = figures(sampler, (quiet_start, quiet_end), (first_created, last_received), len(rows), fps)
    return {"fps": fps, "frames": frames, "received": len({s for s, _, _ in rows}),
            "p50_ms": round(pct(lat, 0.5), 3), "p95_ms": round(pct(lat, 0.95), 3),
            "p99_ms": round(pct(lat, 0.99), 3), "publish_error": reply.get("errorMsg", ""), **fig}


def in_private_netns() -> bool:
    return os.environ.get("EDGERIG_BENCH_NETNS") == "1"


def original(args: argparse.Namespace) -> dict[str, Any]:
    if not in_private_netns():
        # Both gateways need :50051 and NATS on :4222; a private network namespace has its own ports.
        argv = ["unshare", "--net", "--", PY, str(Path(__file__).resolve()), *sys.argv[1:]]
        proc = subprocess.run(argv, env={**os.environ, "EDGERIG_BENCH_NETNS": "1"}, check=False)
        sys.exit(proc.returncode)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    rates = [(float(r.split(":")[0]), int(r.split(":")[1])) for r in args.rates.split(",")]
    registries = [r.strip() for r in args.registry.split(",") if r.strip()]
    if not registries or set(registries) - {"memory", "kv"}:
        raise SystemExit(f"--registry takes memory, kv or memory,kv (got {args.registry!r})")
    # `edgerig` is the gateway as it starts by default (memory); `edgerig-kv` shares its registry
    # through JetStream KV, as replicas do.
    edgerig = [Implementation("edgerig" if r == "memory" else "edgerig-kv", subjects.frames(CAMERA),
                              edgerig_gateway(r)) for r in registries]
    impls = [Implementation("original-go", CAMERA, go_vei(Path(args.go_vei).resolve())), *edgerig]
    if args.edgerig_first:
        impls = [*edgerig, impls[0]]
    if args.only:
        impls = [impl for impl in impls if impl.name == args.only or
                 (args.only == "edgerig" and impl in edgerig)]
    return {impl.name: {f"{fps:g}": run_original(impl, fps, frames, args.quiet_s, args.frame_bytes,
                                                 args.nats_gomaxprocs)
                        for fps, frames in rates} for impl in impls}


# ---- the whole pipeline --------------------------------------------------------------------------

def stream_pipeline(args: argparse.Namespace, sup: Supervisor, pids: dict[str, int], gateway: str,
                    work: Path, sink_out: Path) -> dict[str, Any]:
    sampler = CpuSampler(pids)
    quiet_start = time.time_ns()
    sampler.run_until(lambda: time.time_ns() - quiet_start > args.quiet_s * 1e9, args.quiet_s + 10)
    quiet_end = time.time_ns()
    status = work / "camera-status.json"
    cam = launch.camera(gateway=gateway, camera_id=CAMERA, fps=args.fps, frames=args.frames,
                        frame_bytes=args.frame_bytes, records=work / "camera.csv", status_file=status)
    camera = sup.start("camera", cam.argv(), env=cam.process_env())
    sampler.run_until(lambda: not camera.alive(), timeout_s=args.frames / args.fps + 120)
    sink_rows = [json.loads(line) for line in sink_out.read_text().splitlines()]
    lat = [(r["sinkUnixNs"] - r["createdUnixNs"]) / 1e6 for r in sink_rows]
    unique = {r["frameId"] for r in sink_rows}
    first_created = min(r["createdUnixNs"] for r in sink_rows)
    last_sink = max(r["sinkUnixNs"] for r in sink_rows)
    fig = figures(sampler, (quiet_start, quiet_end), (first_created, last_sink), len(unique), args.fps)
    return {"fps": args.fps, "frames": args.frames, "at_sink_unique": len(unique),
            "lost": args.frames - len(unique), "duplicates_at_sink": len(sink_rows) - len(unique),
            "camera": json.loads(status.read_text()), "gomaxprocs": args.gomaxprocs or None,
            "sink": args.sink,
            "p50_ms": round(pct(lat, 0.5), 3), "p95_ms": round(pct(lat, 0.95), 3), **fig}


def pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline system on the local testbed, its results recorded as `edgerig run latency` does on
    it: by the gateway itself (`--sink gateway`) or by the local sink process (`--sink process`)."""
    with tempfile.TemporaryDirectory(prefix="edgerig-bench-pipeline-") as tmp:
        work = Path(tmp)
        sink_out = work / "sink.jsonl"
        clouds = (f"local=file:{sink_out}",) if args.sink == "gateway" else ("local",)
        spec = SystemSpec(camera_ids=(CAMERA,), processing_ms=args.processing_ms,
                          nats_gomaxprocs=args.gomaxprocs or None, clouds=clouds)
        with LocalTestbed(spec) as testbed:
            pids = {name: pid[0] for name, pid in testbed.system_processes().items()}
            pids["nats-server"] = pids.pop("nats")
            if args.sink == "process":
                pids["sink"] = testbed.start_sink(sink_out).pid
            return stream_pipeline(args, testbed.supervisor, pids, testbed.endpoints.gateways[0], work,
                                   sink_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("original", help="edgerig vs the original Go VEI on the original path")
    o.add_argument("--go-vei", required=True, help="the original's server binary (see docs/benchmarks.md)")
    o.add_argument("--rates", default="10:1000,1000:5000,2000:8000", help="FPS:FRAMES,...")
    o.add_argument("--quiet-s", type=float, default=30.0)
    o.add_argument("--edgerig-first", action="store_true", help="measure edgerig's gateway first")
    o.add_argument("--only", choices=("original-go", "edgerig"), help="measure one implementation only")
    o.add_argument("--registry", default="memory",
                   help="edgerig's registry: memory (the default), kv, or memory,kv for both in turn")
    o.add_argument("--nats-gomaxprocs", type=int, default=0,
                   help="GOMAXPROCS for nats-server in both runs (0 = Go's default)")
    p = sub.add_parser("pipeline", help="the whole pipeline with acks")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--quiet-s", type=float, default=60.0)
    p.add_argument("--processing-ms", type=float, default=0.0)
    p.add_argument("--gomaxprocs", type=int, default=0, help="GOMAXPROCS for nats-server (0 = Go's default)")
    p.add_argument("--sink", choices=("gateway", "process"), default="gateway",
                   help="who records the results, as `edgerig run latency --sink`: the gateway itself "
                        "(its file: cloud, the local default) or the local sink process over NATS")
    for parser in (o, p):
        parser.add_argument("--frame-bytes", type=int, default=24 * 1024)
        parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = ap.parse_args()
    load = os.getloadavg()
    result = original(args) if args.mode == "original" else pipeline(args)
    summary = {"mode": args.mode, "command": " ".join(sys.argv),
               "loadavg_before": [round(x, 2) for x in load],
               "loadavg_after": [round(x, 2) for x in os.getloadavg()], "result": result}
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
