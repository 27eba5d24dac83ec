"""Small helpers for the gateway tests (not fixtures: plain functions and constants)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import grpc

from workloads.vei.proto import vei_pb2, vei_pb2_grpc

FRAME_BYTES = 24 * 1024


def frame(camera: str, n: int, size: int = FRAME_BYTES) -> vei_pb2.PubImageParams:
    return vei_pb2.PubImageParams(cameraID=camera, image=bytes([n % 251]) * size, timestamp=str(n),
                                  frameId=f"{camera}-{n}", createdUnixNs=time.time_ns())


async def frames(items: Iterable[vei_pb2.PubImageParams], gap_s: float = 0.0) -> AsyncIterator[Any]:
    for item in items:
        yield item
        if gap_s:
            await asyncio.sleep(gap_s)


async def subscribed(call: Any) -> None:
    """Waits until the gateway has confirmed the NATS subscription behind a Subscribe* call."""
    metadata = await asyncio.wait_for(call.initial_metadata(), 10)
    assert ("vei-subscribed", "1") in tuple(metadata)


async def take(call: Any, n: int, within_s: float = 10.0) -> list[Any]:
    got: list[Any] = []

    async def read() -> None:
        async for item in call:
            got.append(item)
            if len(got) >= n:
                return

    await asyncio.wait_for(read(), within_s)
    return got


def stubs(channel: grpc.aio.Channel) -> tuple[vei_pb2_grpc.VEIv1_0Stub, vei_pb2_grpc.VEIReliableStub]:
    return vei_pb2_grpc.VEIv1_0Stub(channel), vei_pb2_grpc.VEIReliableStub(channel)


def metric(gateway: Any, name: str, labels: dict[str, str] | None = None) -> float:
    value = gateway.metrics.registry.get_sample_value(name, labels or {})
    return float(value or 0.0)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def spawn(cmd: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
