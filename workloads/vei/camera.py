"""Camera client: synthetic (or folder) frames at a fixed rate, open-loop, at-least-once.

    python -m workloads.vei.camera --gateway 127.0.0.1:50051 --fps 10 --frames 1000

Frame k is scheduled at t0 + k/fps and handed to the stream at that time whatever the replies do.
`createdUnixNs` is taken when the frame is created at its scheduled time, so a slow gateway shows up
as latency instead of silently slowing the camera down (no coordinated omission).

With acks (VEIReliable.PublishImageAcked, the default) every frame stays in a bounded buffer until the
sink has accepted its result. After a failover the new stream first resends every unacked frame in
order, and a frame unacked for longer than `resend_after_s` is resent even without a stream error
(a frame can be lost inside NATS while a node fails). A full buffer drops its OLDEST frame, and that is
counted, logged and reported in the final stats. `--no-acks` uses the original PublishImage instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

import grpc

from workloads.vei.camera_buffer import PendingFrames
from workloads.vei.camera_settings import CameraSettings, load_frames, parse_camera_args
from workloads.vei.camera_stats import CameraStats
from workloads.vei.client import backoff_sleep, describe, open_channel
from workloads.vei.proto import vei_pb2, vei_pb2_grpc

log = logging.getLogger("vei.camera")
_STREAM_ERRORS = (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError)
# The gateway refused the frames themselves (or does not know the RPC): resending cannot help.
_FATAL_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED,
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}
# A replica went away or is unreachable: another one (or the same, later) will take the stream.
_NETWORK_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}


class _Refused(Exception):
    """The gateway refused the frames themselves; resending would be refused again."""


class Camera:
    def __init__(self, settings: CameraSettings) -> None:
        self.s = settings
        self.stats = CameraStats()
        self.frames = load_frames(settings)
        self.pending = PendingFrames(settings.buffer_frames)
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._plain_queue: asyncio.Queue[vei_pb2.PubImageParams] = asyncio.Queue()
        self._paced_done = asyncio.Event()
        self._connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._finish = asyncio.Event()
        self._records: IO[str] | None = None
        if settings.records is not None:
            self._records = open(settings.records, "w", buffering=1 << 20)  # noqa: SIM115 - closed in run()
            self._records.write("frame_id,created_unix_ns,acked_unix_ns,attempts\n")
        self._last_warning: dict[str, float] = {}
        self._cpu_start: float | None = None
        self._progress = 0  # acks received (or, without acks, frames written): proof a stream works

    # -- public ----------------------------------------------------------------------------------
    async def run(self) -> CameraStats:
        channel = open_channel(self.s.gateway)
        tasks = [asyncio.create_task(self._pace(), name="pace"),
                 asyncio.create_task(self._stream_forever(channel), name="stream"),
                 asyncio.create_task(self._report_status(), name="status")]
        if self.s.acks:
            tasks.append(asyncio.create_task(self._resend_stale(), name="resend"))
        try:
            await self._wait_until_finished()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await channel.close(grace=None)
            self.stats.unacked = len(self.pending)
            if self._records is not None:
                for frame_id, entry in self.pending.items():
                    self._records.write(f"{frame_id},{entry.created_ns},,{entry.attempts}\n")
                self._records.close()
            self._write_status(final=True)
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def finish(self) -> None:
        """Stop creating frames but drain: wait (up to --drain-timeout) for every unacked frame.

        SIGUSR1 calls this, so a run of unknown length (`--frames 0`) can still end with nothing
        in flight; SIGTERM/SIGINT stop at once.
        """
        self._finish.set()

    # -- pacing ----------------------------------------------------------------------------------
    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.s.fps
        # Connect first, then start the clock: a camera streams once it is connected, and frames queued
        # behind the connection set-up would only measure start-up. If no gateway answers in time, the
        # clock starts anyway (open loop), and the buffer keeps the frames for when one does.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self.s.connect_timeout_s)
        t0 = loop.time()
        self._cpu_start = time.process_time()
        seq = 0
        cam = self.s.camera_id
        prefix = self.s.frame_id_prefix or cam
        while (self.s.frames == 0 or seq < self.s.frames) and not self._finish.is_set():
            delay = t0 + seq * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -interval:
                self.stats.late_sends += 1
            created = time.time_ns()
            frame_id = f"{prefix}-{seq}"
            msg = vei_pb2.PubImageParams(
                cameraID=cam, image=self.frames[seq % len(self.frames)], timestamp=f"{created / 1e9:.6f}",
                frameId=frame_id, createdUnixNs=created)
            if self.s.acks:
                dropped = self.pending.add(frame_id, msg, created)
                if dropped:
                    self._count_overflow(dropped)
                self._outbox.put_nowait(frame_id)
            else:
                self._plain_queue.put_nowait(msg)
            self.stats.sent += 1
            seq += 1
        self._paced_done.set()

    def _count_overflow(self, dropped: int) -> None:
        self.stats.dropped_overflow += dropped
        self._warn_rate_limited(f"buffer full ({self.s.buffer_frames} unacked frames): dropped the oldest; "
                                f"{self.stats.dropped_overflow} dropped so far", key="overflow")

    def _warn_rate_limited(self, message: str, key: str = "ack") -> None:
        """At most one warning per second per kind: a per-frame log line would cost more than the frame."""
        now = time.monotonic()
        if now - self._last_warning.get(key, -1e9) >= 1.0:
            self._last_warning[key] = now
            log.warning("%s", message)

    async def _wait_until_finished(self) -> None:
        stop = asyncio.create_task(self._stop.wait())
        try:
            paced = asyncio.create_task(self._paced_done.wait())
            await asyncio.wait([stop, paced], return_when=asyncio.FIRST_COMPLETED)
            paced.cancel()
            if self._stop.is_set():
                return
            drained = asyncio.create_task(self._drained())
            await asyncio.wait([stop, drained], timeout=self.s.drain_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
        finally:
            stop.cancel()

    async def _drained(self) -> None:
        # Polling every 10 ms costs nothing next to a frame and keeps the ack path free of extra events.
        while len(self.pending) or (not self.s.acks and not self._plain_queue.empty()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if not self.s.acks:
            await asyncio.sleep(0.2)  # no acks to wait for: give the last writes time to leave

    # -- streams ---------------------------------------------------------------------------------
    async def _stream_forever(self, channel: grpc.aio.Channel) -> None:
        attempt = 0
        refusals = 0  # streams in a row that ended with nothing acked and no network reason
        while True:
            opened = time.monotonic()
            progress = self._progress
            try:
                if self.s.acks:
                    await self._acked_stream(vei_pb2_grpc.VEIReliableStub(channel))
                else:
                    await self._plain_stream(vei_pb2_grpc.VEIv1_0Stub(channel))
            except _Refused as err:
                self._give_up(str(err))
                return
            except _STREAM_ERRORS as err:
                code = err.code() if isinstance(err, grpc.aio.AioRpcError) else None
                if code in _FATAL_CODES:
                    self._give_up(describe(err))
                    return
                # grpc.aio reports a write that races the gateway's refusal as INTERNAL and loses the
                # real status; a gateway that keeps ending streams before any progress is refusing.
                refusals = refusals + 1 if self._progress == progress and code not in _NETWORK_CODES else 0
                if refusals >= 5:
                    self._give_up(f"it ended {refusals} streams in a row with no progress "
                                  f"(last: {describe(err)})")
                    return
                log.warning("stream to the gateway failed (%s); re-opening", describe(err))
            self.stats.reconnects += 1
            attempt = 0 if time.monotonic() - opened > 5 else attempt + 1
            await backoff_sleep(attempt)

    def _give_up(self, reason: str) -> None:
        self.stats.error = f"the gateway refused the stream: {reason}"
        log.error("%s; stopping", self.stats.error)
        self._stop.set()

    async def _acked_stream(self, stub: vei_pb2_grpc.VEIReliableStub) -> None:
        call = stub.PublishImageAcked(wait_for_ready=True)
        await call.wait_for_connection()
        self._connected.set()
        # Everything still unacked goes first, in order; then the frames the pacer adds.
        outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._outbox = outbox
        for pending_id in self.pending.ids():
            outbox.put_nowait(pending_id)
        reader = asyncio.create_task(self._read_acks(call))
        # A dead stream must be noticed even while no frame is waiting: the reader wakes the writer.
        reader.add_done_callback(lambda _: outbox.put_nowait(None))
        try:
            while (frame_id := await outbox.get()) is not None:
                entry = self.pending.get(frame_id)
                if entry is None:
                    continue  # acked or dropped meanwhile
                if entry.attempts:
                    self.stats.resent += 1
                entry.attempts += 1
                entry.last_sent = time.monotonic()
                await call.write(entry.msg)
            reader.result()
        except _STREAM_ERRORS:
            await _raise_if_refused(call)
            raise
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            call.cancel()

    async def _read_acks(self, call: Any) -> None:
        async for ack in call:
            if ack.error:
                # Transient (sink or NATS unreachable): the frame stays buffered and the resend timer
                # sends it again, so a missing sink does not turn into a tight resend loop.
                self.stats.error_acks += 1
                self._warn_rate_limited(f"frame {ack.frameId} not delivered ({ack.error}); will resend; "
                                        f"{self.stats.error_acks} such acks so far")
                continue
            entry = self.pending.pop(ack.frameId)
            if entry is None:
                continue  # duplicate ack after a resend
            self.stats.acked += 1
            self._progress += 1
            if self._records is not None:
                self._records.write(f"{ack.frameId},{entry.created_ns},{time.time_ns()},{entry.attempts}\n")
        raise grpc.aio.UsageError("the gateway ended the ack stream")

    async def _plain_stream(self, stub: vei_pb2_grpc.VEIv1_0Stub) -> None:
        call = stub.PublishImage(wait_for_ready=True)
        try:
            await call.wait_for_connection()
            self._connected.set()
            while True:
                msg = await self._plain_queue.get()
                await call.write(msg)
                self._progress += 1
        except _STREAM_ERRORS:
            await _raise_if_refused(call)
            raise
        finally:
            call.cancel()

    async def _resend_stale(self) -> None:
        while True:
            await asyncio.sleep(min(0.1, self.s.resend_after_s / 4))
            for frame_id in self.pending.stale(time.monotonic() - self.s.resend_after_s):
                self._outbox.put_nowait(frame_id)

    # -- status ----------------------------------------------------------------------------------
    async def _report_status(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self._write_status(final=False)

    def _write_status(self, final: bool) -> None:
        self.stats.unacked = len(self.pending)
        if self._cpu_start is not None:
            self.stats.cpu_ms = round((time.process_time() - self._cpu_start) * 1000, 1)
        if final:
            print(self.stats.final_line(), flush=True)
        if self.s.status_file is not None:
            self.stats.write_status(self.s.status_file, final)


async def _raise_if_refused(call: Any) -> None:
    """A failed write or read only says "finished"; the call's own status says why."""
    with contextlib.suppress(asyncio.TimeoutError, *_STREAM_ERRORS):
        code = await asyncio.wait_for(call.code(), 1.0)
        if code in _FATAL_CODES:
            raise _Refused(f"{code.name}: {await call.details()}")


async def run_camera(settings: CameraSettings) -> CameraStats:
    camera = Camera(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, camera.stop)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGUSR1, camera.finish)
    return await camera.run()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = parse_camera_args(argv)
    stats = asyncio.run(run_camera(settings))
    if stats.error:
        return 2
    return 0 if stats.unacked == 0 and stats.dropped_overflow == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
