"""Manual micro-benchmark of the gateway hot path (not collected by pytest: run it directly).

    .venv/bin/python tests/vei/bench_gateway.py --fps 10 --frames 300
    .venv/bin/python tests/vei/bench_gateway.py --fps 1000 --frames 10000

Starts nats-server, the local sink and the gateway as processes; the camera (PublishImageAcked,
open-loop) and an emulated vision app (SubscribeImage -> PublishToCloud) run in this process.
Reports camera->ack latency percentiles, camera->sink latency from the sink's records, and the
CPU time of the gateway (per thread) and nats-server per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.testbeds.nats import nats_server_binary  # noqa: E402
from experiments.testbeds.ports import free_port  # noqa: E402
from workloads.vei.proto import vei_pb2, vei_pb2_grpc  # noqa: E402


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def drive(address: str, frames: int, fps: float, size: int) -> list[float]:
    opts = [("grpc.max_receive_message_length", 8 << 20)]
    async with grpc.aio.insecure_channel(address, options=opts) as ch:
        vei = vei_pb2_grpc.VEIv1_0Stub(ch)
        sub = vei.SubscribeImage(vei_pb2.SubImageParams(cameraID="bench", queueGroup="vision"))
        await sub.initial_metadata()
        cloud = vei.PublishToCloud()

        async def vision() -> None:
            async for img in sub:
                await cloud.write(vei_pb2.PubCloudParams(
                    analyticsName="bench", analyticalOutput=["person"], cloudProvider="local",
                    frameId=img.frameId, cameraID=img.cameraID, createdUnixNs=img.createdUnixNs,
                    gatewayInUnixNs=img.gatewayInUnixNs, visionDoneUnixNs=time.time_ns()))

        vision_task = asyncio.create_task(vision())
        sent: dict[str, int] = {}
        latencies: list[float] = []
        image = os.urandom(size)

        async def camera() -> Any:
            start = time.monotonic()
            for i in range(frames):
                delay = start + i / fps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.time_ns()
                sent[str(i)] = now
                yield vei_pb2.PubImageParams(cameraID="bench", image=image, frameId=str(i), createdUnixNs=now)

        async for ack in vei_pb2_grpc.VEIReliableStub(ch).PublishImageAcked(camera()):
            if not ack.error:
                latencies.append((time.time_ns() - sent[ack.frameId]) / 1e6)
        vision_task.cancel()
        await cloud.done_writing()
        return latencies


def start_processes(tmp: Path, nats_port: int, gw_port: int) -> dict[str, subprocess.Popen[bytes]]:
    url = f"nats://127.0.0.1:{nats_port}"
    py = sys.executable
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = {"nats": subprocess.Popen([str(nats_server_binary()), "-a", "127.0.0.1",
                                       "-p", str(nats_port), "-js", "-sd", str(tmp / "js")], **quiet)}
    time.sleep(0.5)
    procs["sink"] = subprocess.Popen([py, "-m", "workloads.vei.sink", "--nats-url", url,
                                      "--out", str(tmp / "sink.jsonl"), "--log-level", "WARNING"], cwd=ROOT)
    procs["gateway"] = subprocess.Popen([py, "-m", "workloads.vei.gateway", "--listen",
                                         f"127.0.0.1:{gw_port}", "--nats-url", url, "--log-level", "WARNING"],
                                        cwd=ROOT)
    time.sleep(2.5)
    return procs


def stop_processes(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        p.terminate()
    for p in procs.values():
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def thread_cpu(proc: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in proc.threads()}


def report(args: argparse.Namespace, tmp: Path, latencies: list[float], window: float,
           cpu: dict[str, float], threads: list[tuple[int, int]]) -> dict[str, Any]:
    records = [json.loads(line) for line in (tmp / "sink.jsonl").read_text().splitlines()]
    e2e = [(r["sinkUnixNs"] - r["createdUnixNs"]) / 1e6 for r in records]
    n = max(1, len(latencies))
    return {
        "frames": args.frames, "fps": args.fps, "acked": len(latencies), "at_sink": len(records),
        "window_s": round(window, 2), "achieved_fps": round(len(latencies) / window, 1),
        "ack_p50_ms": round(pct(latencies, 0.5), 3), "ack_p95_ms": round(pct(latencies, 0.95), 3),
        "sink_p50_ms": round(pct(e2e, 0.5), 3), "sink_p95_ms": round(pct(e2e, 0.95), 3),
        "cpu_ms_per_frame": {k: round(v * 1000 / n, 3) for k, v in cpu.items()},
        "gateway_threads_ms": threads[:6],
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=24 * 1024)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vei-bench-"))
    nats_port, gw_port = free_port(), free_port()
    procs = await asyncio.to_thread(start_processes, tmp, nats_port, gw_port)
    try:
        ps = {name: psutil.Process(p.pid) for name, p in procs.items()}
        threads0 = thread_cpu(ps["gateway"])
        switches0 = sum(ps["gateway"].num_ctx_switches())
        cpu0 = {name: cpu_s(p) for name, p in ps.items()}
        t0 = time.monotonic()
        latencies = await drive(f"127.0.0.1:{gw_port}", args.frames, args.fps, args.size)
        window = time.monotonic() - t0
        cpu = {name: cpu_s(p) - cpu0[name] for name, p in ps.items()}
        threads1 = thread_cpu(ps["gateway"])
        switches = sum(ps["gateway"].num_ctx_switches()) - switches0
        per_thread = sorted(((round((threads1[t] - threads0.get(t, 0)) * 1000), t) for t in threads1),
                            reverse=True)
        summary = report(args, tmp, latencies, window, cpu, per_thread)
        summary["gateway_ctx_switches_per_frame"] = round(switches / max(1, len(latencies)), 1)
        print(json.dumps(summary, indent=1))
    finally:
        stop_processes(procs)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
