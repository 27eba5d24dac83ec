"""Emulated vision app: subscribe to a camera, "process" each frame, publish fictitious detections.

    python -m workloads.vei.vision --gateway 127.0.0.1:50051 --camera-id cam-0

Replicas share frames through a NATS queue group (default: the app name), so each frame is processed
once per application; `--no-queue-group` restores the original fan-out (every replica, every frame).

Processing time is emulated with `asyncio.sleep` by default: it stands for inference on an accelerator
or another core, costs no CPU (so the experiment's CPU-per-frame measures the system, not fake work)
and keeps the event loop free for the streams. `--busy` burns CPU instead, to emulate CPU-bound models.

The subscription and the PublishToCloud stream (kept open) are independent: either one is re-opened
on its own when its gateway replica fails, so a dead cloud stream never drops the subscription.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import grpc

from workloads.vei.client import backoff_sleep, describe, open_channel
from workloads.vei.proto import vei_pb2, vei_pb2_grpc

log = logging.getLogger("vei.vision")
_STREAM_ERRORS = (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError)
LABELS = ("person", "car", "bicycle", "dog")


@dataclass
class VisionSettings:
    gateway: str
    camera_id: str = "cam-0"
    app_name: str = "vision"
    queue_group: str | None = None   # None = the app name; "" = no queue group (original fan-out)
    processing_ms: float = 0.0
    busy: bool = False
    cloud: str = "local"


@dataclass
class VisionStats:
    received: int = 0
    published: int = 0
    errors: int = 0
    resubscribes: int = 0
    cloud_reopens: int = 0


def detections(seq: int) -> list[str]:
    """Fictitious but varied detections, as the thesis's emulated application produced."""
    label = LABELS[seq % len(LABELS)]
    box = [seq % 640, seq % 480, 64, 64]
    return [json.dumps({"label": label, "score": 0.5 + (seq % 50) / 100, "box": box})]


class CloudPublisher:
    """A PublishToCloud stream kept open, re-opened (and the message retried) when it breaks."""

    def __init__(self, stub: vei_pb2_grpc.VEIv1_0Stub, stats: VisionStats) -> None:
        self._stub = stub
        self._stats = stats
        self._call: grpc.aio.StreamUnaryCall | None = None

    async def publish(self, msg: vei_pb2.PubCloudParams) -> None:
        for attempt in range(5):
            if self._call is not None and self._call.done():  # ended while idle (replica gone)
                log.warning("cloud stream ended; re-opening")
                self._stats.cloud_reopens += 1
                self._call = None
            if self._call is None:
                self._call = self._stub.PublishToCloud(wait_for_ready=True)
            try:
                await self._call.write(msg)
                return
            except _STREAM_ERRORS as err:
                log.warning("cloud stream failed (%s); re-opening", describe(err))
                self._stats.cloud_reopens += 1
                self._call.cancel()
                self._call = None
                await backoff_sleep(attempt)
        self._stats.errors += 1  # the camera resends what was not acked

    async def close(self) -> None:
        if self._call is not None and not self._call.done():
            with contextlib.suppress(*_STREAM_ERRORS):
                await self._call.done_writing()
                reply = await asyncio.wait_for(self._call, timeout=2)
                if reply.errorMsg:
                    log.warning("gateway: %s", reply.errorMsg)


class VisionApp:
    def __init__(self, settings: VisionSettings) -> None:
        self.s = settings
        self.stats = VisionStats()
        self._stop = asyncio.Event()
        # Set once a gateway confirmed the NATS subscription (initial metadata): frames published from
        # then on reach this app. Readiness for tests and experiments.
        self.subscribed = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> VisionStats:
        channel = open_channel(self.s.gateway)
        stub = vei_pb2_grpc.VEIv1_0Stub(channel)
        cloud = CloudPublisher(stub, self.stats)
        work = asyncio.create_task(self._subscribe_forever(stub, cloud))
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([work, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            work.cancel()
            stop.cancel()
            await asyncio.gather(work, stop, return_exceptions=True)
            await cloud.close()
            await channel.close(grace=None)
            print(json.dumps({"event": "vision-stats", **asdict(self.stats)}), flush=True)
        return self.stats

    async def _subscribe_forever(self, stub: vei_pb2_grpc.VEIv1_0Stub, cloud: CloudPublisher) -> None:
        group = self.s.app_name if self.s.queue_group is None else self.s.queue_group
        request = vei_pb2.SubImageParams(cameraID=self.s.camera_id, queueGroup=group)
        attempt = 0
        while True:
            opened = time.monotonic()
            try:
                call = stub.SubscribeImage(request, wait_for_ready=True)
                await call.initial_metadata()
                self.subscribed.set()
                log.info("subscribed to camera %s (queue group %r)", self.s.camera_id, group)
                async for image in call:
                    if image.error:
                        log.warning("gateway: %s", image.error)
                        self.stats.errors += 1
                        continue
                    await self._handle(image, cloud)
                log.warning("gateway ended the subscription; re-subscribing")
            except _STREAM_ERRORS as err:
                log.warning("subscription failed (%s); re-subscribing", describe(err))
            self.stats.resubscribes += 1
            attempt = 0 if time.monotonic() - opened > 5 else attempt + 1
            await backoff_sleep(attempt)

    async def _handle(self, image: vei_pb2.ImageData, cloud: CloudPublisher) -> None:
        self.stats.received += 1
        await self._process()
        done = time.time_ns()
        await cloud.publish(vei_pb2.PubCloudParams(
            analyticsName=self.s.app_name, analyticalOutput=detections(self.stats.received),
            timestamp=f"{done / 1e9:.6f}", cloudProvider=self.s.cloud, frameId=image.frameId,
            createdUnixNs=image.createdUnixNs, cameraID=image.cameraID or self.s.camera_id,
            gatewayInUnixNs=image.gatewayInUnixNs, visionDoneUnixNs=done))
        self.stats.published += 1

    async def _process(self) -> None:
        if self.s.processing_ms <= 0:
            return
        if self.s.busy:
            end = time.perf_counter() + self.s.processing_ms / 1000
            while time.perf_counter() < end:
                pass
        else:
            await asyncio.sleep(self.s.processing_ms / 1000)


def parse_vision_args(argv: Sequence[str] | None) -> VisionSettings:
    p = argparse.ArgumentParser(prog="edgerig vei vision", description=__doc__)
    p.add_argument("--gateway", required=True,
                   help="gateway endpoints: HOST:PORT[,HOST:PORT...] or dns:///name:port")
    p.add_argument("--camera-id", default="cam-0")
    p.add_argument("--app-name", default="vision")
    p.add_argument("--queue-group", default=None, help="NATS queue group (default: the app name)")
    p.add_argument("--no-queue-group", action="store_const", const="", dest="queue_group",
                   help="every replica gets every frame (the original behaviour)")
    p.add_argument("--processing-ms", type=float, default=0.0, help="emulated processing time per frame")
    p.add_argument("--busy", action="store_true", help="burn CPU for the processing time instead of sleeping")
    p.add_argument("--cloud", default="local", help="cloudProvider to publish to")
    args = p.parse_args(argv)
    settings = VisionSettings(**vars(args))
    if not settings.camera_id.strip():
        p.error("--camera-id must not be empty")
    if not settings.app_name.strip():
        p.error("--app-name must not be empty")
    if settings.processing_ms < 0:
        p.error(f"--processing-ms must be >= 0 (got {settings.processing_ms})")
    return settings


async def run_vision(settings: VisionSettings) -> VisionStats:
    app = VisionApp(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, app.stop)
    return await app.run()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(run_vision(parse_vision_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
