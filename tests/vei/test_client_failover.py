"""Client failover against real gateways: two gateway processes on one nats-server, the one carrying
the camera stream is SIGKILLed mid-stream; the stream resumes on the other and the sink gets every frame."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from testkit import free_port, wait_serving, wait_until_async

from workloads.vei.camera import Camera
from workloads.vei.camera_settings import CameraSettings
from workloads.vei.vision import VisionApp, VisionSettings

Spawn = Callable[..., tuple[subprocess.Popen[bytes], str]]


def metric(port: int, name: str, labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow
async def test_camera_stream_fails_over_when_its_gateway_is_killed(
        gateway_process: Spawn, local_sink: Path) -> None:
    metrics = [free_port(), free_port()]
    gateways = [gateway_process("--metrics-listen", f"127.0.0.1:{port}", "--cloud", "local")
                for port in metrics]
    for _, address in gateways:
        await wait_serving(address)
    endpoints = ",".join(address for _, address in gateways)

    vision = VisionApp(VisionSettings(gateway=endpoints, camera_id="cam-f"))
    vision_task = asyncio.create_task(vision.run())
    frames = 100
    camera = Camera(CameraSettings(gateway=endpoints, camera_id="cam-f", frames=frames, fps=25.0,
                                   frame_bytes=24 * 1024, resend_after_s=1.0, drain_timeout_s=20.0))
    try:
        await asyncio.wait_for(vision.subscribed.wait(), 15)
        camera_task = asyncio.create_task(camera.run())
        await wait_until_async(lambda: camera.stats.acked >= 25, 20, "the first 25 frames to be acked")

        def streams(port: int) -> float:
            return metric(port, "vei_active_streams", 'rpc="PublishImageAcked"')
        active = await asyncio.to_thread(lambda: [streams(p) for p in metrics])
        assert sorted(active) == [0.0, 1.0], active
        victim = active.index(1.0)
        survivor = 1 - victim
        gateways[victim][0].send_signal(signal.SIGKILL)  # no goodbye: as a crashed replica

        stats = await asyncio.wait_for(camera_task, 60)
    finally:
        vision.stop()
        await asyncio.wait_for(vision_task, 10)

    assert stats.reconnects >= 1
    assert (stats.sent, stats.acked, stats.unacked, stats.dropped_overflow) == (frames, frames, 0, 0)
    resumed = await asyncio.to_thread(metric, metrics[survivor], "vei_frames_in_total", 'camera="cam-f"')
    assert resumed > 0, "the survivor never received the camera's frames"
    text = await asyncio.to_thread(local_sink.read_text)
    results = [json.loads(line) for line in text.splitlines()]
    ids = [r["frameId"] for r in results]
    assert len(ids) == len(set(ids))  # the sink de-duplicated resends
    assert set(ids) == {f"cam-f-{i}" for i in range(frames)}


async def test_overflow_without_sink_is_counted_against_real_gateway(gateway_process: Spawn) -> None:
    # No sink is running: the gateway acks every frame with an error, nothing is delivered, the
    # frames stay buffered for resending, and a 10-frame buffer must drop (and count) the rest.
    _, address = gateway_process("--cloud", "local")
    await wait_serving(address)
    vision = VisionApp(VisionSettings(gateway=address, camera_id="cam-o"))
    vision_task = asyncio.create_task(vision.run())
    try:
        await asyncio.wait_for(vision.subscribed.wait(), 15)
        stats = await Camera(CameraSettings(gateway=address, camera_id="cam-o", frames=40, fps=100.0,
                                            frame_bytes=1024, buffer_frames=10, drain_timeout_s=0.5)).run()
    finally:
        vision.stop()
        await asyncio.wait_for(vision_task, 10)
    assert stats.acked == 0 and stats.error_acks > 0
    assert (stats.sent, stats.dropped_overflow, stats.unacked) == (40, 30, 10)
