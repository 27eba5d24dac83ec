"""Per-stream pieces of the frame path: validating and publishing a camera's frames, relaying a
NATS subject to a gRPC stream, and forwarding a camera's acks. `gateway_service` wires them to RPCs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, Protocol, TypeAlias

import grpc
from nats.aio.client import Client
from nats.aio.msg import Msg

from workloads.vei import subjects
from workloads.vei.metrics import GatewayMetrics
from workloads.vei.proto import vei_pb2
from workloads.vei.registry import Kind, Registry
from workloads.vei.validation import Malformed, name_problem

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
SUBSCRIBED_METADATA = "vei-subscribed"
_MAX_TRACKED_ACKS = 65536


class Reject(Exception):
    """Ends only the current call with a status; raised where `context.abort` cannot be awaited."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


async def abort(context: Context, rej: Reject) -> NoReturn:
    await context.abort(rej.code, rej.details)
    raise AssertionError("context.abort() returned")  # it raises; this tells the type checker


class IngestHost(Protocol):
    """What a camera's stream needs from the gateway it belongs to (the gateway service is one)."""

    @property
    def nc(self) -> Client: ...
    @property
    def registry(self) -> Registry: ...
    @property
    def metrics(self) -> GatewayMetrics: ...
    @property
    def max_image_bytes(self) -> int: ...
    @property
    def limit_source(self) -> str: ...


class FrameIngest:
    """Per-stream state of a camera publishing frames; the per-frame work lives in `publish`."""

    __slots__ = ("_checked", "_counter", "_svc", "camera", "subject")

    def __init__(self, svc: IngestHost) -> None:
        self._svc = svc
        self.camera = ""
        self._checked = False  # "" is not a valid camera id, so it cannot mark "nothing checked yet"
        self.subject = ""
        self._counter: Any = None

    def check(self, req: vei_pb2.PubImageParams | Malformed[Any]) -> vei_pb2.PubImageParams:
        """Validates one frame; raises Reject naming the problem."""
        svc = self._svc
        if type(req) is Malformed:
            svc.metrics.errors.labels("malformed").inc()
            raise Reject(INVALID, req.describe())
        assert isinstance(req, vei_pb2.PubImageParams)
        if req.cameraID != self.camera or not self._checked:
            problem = name_problem("cameraID", req.cameraID)
            if problem:
                svc.metrics.errors.labels("invalid_camera").inc()
                raise Reject(INVALID, problem)
            self.camera = req.cameraID
            self._checked = True
            self.subject = subjects.frames(self.camera)
            self._counter = svc.metrics.frames_in.labels(self.camera)
            svc.registry.note(Kind.CAMERA, self.camera)  # once per stream (and camera), not per frame
        size = len(req.image)
        if size > svc.max_image_bytes:
            svc.metrics.errors.labels("image_too_large").inc()
            raise Reject(INVALID, f"image of frame {req.frameId or '?'} from camera {self.camera!r} is "
                         f"{size} bytes; the limit is {svc.max_image_bytes} bytes ({svc.limit_source})")
        return req

    async def publish(self, req: vei_pb2.PubImageParams) -> None:
        svc = self._svc
        now = time.time_ns()
        payload = vei_pb2.ImageData(
            image=req.image, timestamp=req.timestamp, frameId=req.frameId,
            createdUnixNs=req.createdUnixNs, cameraID=self.camera, gatewayInUnixNs=now,
        ).SerializeToString()
        await svc.nc.publish(self.subject, payload)
        self._counter.inc()
        if req.createdUnixNs:
            svc.metrics.camera_to_gateway.observe((now - req.createdUnixNs) / 1e9)


async def relay(nc: Client, subject: str, queue: str, context: Context, limit: int, flush_timeout_s: float,
                on_overflow: Callable[[], None]) -> AsyncIterator[bytes]:
    """Streams raw NATS payloads of `subject`; a subscriber that falls `limit` messages behind is
    dropped with RESOURCE_EXHAUSTED instead of buffering without bound."""
    buf: deque[bytes] = deque()
    wake = asyncio.Event()
    overflow = False

    async def on_msg(msg: Msg) -> None:
        nonlocal overflow
        if len(buf) >= limit:
            overflow = True
        else:
            buf.append(msg.data)
        wake.set()

    sub = await nc.subscribe(subject, queue=queue, cb=on_msg, pending_msgs_limit=limit * 2)
    try:
        # Once NATS has confirmed the subscription, tell the client through initial metadata, so
        # it can start its cameras knowing no frame will be missed (`await call.initial_metadata()`).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.flush(), flush_timeout_s)
        await context.send_initial_metadata(((SUBSCRIBED_METADATA, "1"),))
        while True:
            if not buf:
                wake.clear()
                await wake.wait()
            if overflow:
                on_overflow()
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"subscriber fell {limit} messages behind on {subject} and was "
                                    "dropped; read faster, or raise VEI_SUBSCRIBER_QUEUE")
            yield buf.popleft()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


class AckTracker:
    """Acks of one PublishImageAcked stream: subscribed to the camera's ack subject, forwarded to
    `out` as raw FrameAck bytes; knows which of the stream's frames are still unacknowledged."""

    def __init__(self, out: asyncio.Queue[bytes | None]) -> None:
        self._out = out
        self.camera = ""
        # Insertion-ordered, bounded: a camera streaming for hours without any vision app must not
        # grow it forever (it only serves the linger after half-close).
        self._pending: dict[str, None] = {}
        self._empty = asyncio.Event()
        self._sub: Any = None
        self._finished = False

    async def subscribe(self, nc: Client, camera: str) -> None:
        self.camera = camera

        async def on_ack(msg: Msg) -> None:
            if not msg.data:  # e.g. a status message: nothing to forward
                return
            try:
                frame_id = vei_pb2.FrameAck.FromString(msg.data).frameId
            except Exception:
                return
            self._forward(frame_id, msg.data)

        # Subscribed before the first frame is published on the same connection, so no ack of
        # this stream can arrive before the subscription exists.
        self._sub = await nc.subscribe(subjects.ack(camera), cb=on_ack)

    def sent(self, frame_id: str) -> None:
        if frame_id:
            self._pending[frame_id] = None
            if len(self._pending) > _MAX_TRACKED_ACKS:
                del self._pending[next(iter(self._pending))]
            self._empty.clear()

    def deliver(self, frame_id: str, ack: bytes) -> None:
        """An ack produced in this process (a sink inside the gateway)."""
        self._forward(frame_id, ack)

    def failed(self, frame_id: str, error: str) -> None:
        if frame_id:
            ack = vei_pb2.FrameAck(frameId=frame_id, cameraID=self.camera, error=error)
            self._forward(frame_id, ack.SerializeToString())

    def _forward(self, frame_id: str, data: bytes) -> None:
        if self._finished:
            return
        self._out.put_nowait(data)
        self._pending.pop(frame_id, None)
        if not self._pending:
            self._empty.set()

    async def drained(self, within_s: float) -> None:
        if self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), within_s)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._out.put_nowait(None)

    async def close(self) -> None:
        self._finished = True
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


class ThrottledLog:
    """A warning at most every `every_s` seconds, with the number suppressed meanwhile, so an
    outage that fails every frame does not turn into a log line per frame."""

    def __init__(self, logger: logging.Logger, every_s: float) -> None:
        self._log = logger
        self._every = every_s
        self._next = 0.0
        self._suppressed = 0

    def warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" (and {self._suppressed} similar since the last report)"
        self._log.warning(msg, *args)
        self._next = now + self._every
        self._suppressed = 0
