"""The VEI RPC handlers (service VEIv1_0 and VEIReliable), backed by NATS.

Hot path: a frame is parsed once by gRPC, re-packed once into `ImageData` and published as those
bytes; subscribers receive the NATS payload and hand it to gRPC unchanged (identity serializer),
so no frame is serialized twice. Registry writes and metrics never wait on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from google.protobuf import empty_pb2
from nats.aio.client import Client

from workloads.vei import subjects
from workloads.vei.gateway_cloud import DeliveryOutcome, SinkMetrics, release, settle
from workloads.vei.gateway_frames import (
    INVALID,
    AckTracker,
    Context,
    FrameIngest,
    Reject,
    ThrottledLog,
    abort,
    relay,
)
from workloads.vei.metrics import GatewayMetrics
from workloads.vei.proto import vei_pb2
from workloads.vei.registry import Kind, Registry, RegistryUnavailable
from workloads.vei.settings import GatewaySettings
from workloads.vei.sinks.base import CloudSink, SinkError
from workloads.vei.validation import Malformed, identity, is_valid_name, lenient_deserializer, name_problem

log = logging.getLogger(__name__)


class VeiService:
    def __init__(self, nc: Client, registry: Registry, sinks: dict[str, CloudSink],
                 metrics: GatewayMetrics, settings: GatewaySettings) -> None:
        self.nc = nc
        self.registry = registry
        self.sinks = sinks
        self.metrics = metrics
        self.settings = settings
        # NATS refuses messages over the server's max_payload, so the effective image limit is the
        # smaller of the setting and what fits into one NATS message (with room for the envelope).
        nats_limit = int(nc.max_payload) - 1024
        if nats_limit < settings.max_image_bytes:
            self.max_image_bytes = nats_limit
            self.limit_source = (f"NATS max_payload is {nc.max_payload}; raise max_payload in the "
                                 "nats-server config to allow up to "
                                 f"VEI_MAX_IMAGE_BYTES={settings.max_image_bytes}")
        else:
            self.max_image_bytes = settings.max_image_bytes
            self.limit_source = "VEI_MAX_IMAGE_BYTES"
        self._deliveries: set[asyncio.Task[None]] = set()
        # Cameras whose PublishImageAcked stream is on this gateway (the latest stream of each).
        self._ack_trackers: dict[str, AckTracker] = {}
        self._warn = ThrottledLog(log, every_s=10.0)
        self._sink_metrics = {name: SinkMetrics(metrics, name) for name in sinks}
        self._streams = {rpc: metrics.active_streams.labels(rpc) for rpc in (
            "PublishImage", "PublishImageAcked", "SubscribeImage", "PublishVisionOutput",
            "SubscribeVisionOutput", "PublishToCloud")}

    # ---- registration -------------------------------------------------------------------------

    def add_to_server(self, server: grpc.aio.Server) -> None:
        v = vei_pb2
        unary, client_stream = grpc.unary_unary_rpc_method_handler, grpc.stream_unary_rpc_method_handler
        server_stream, bidi = grpc.unary_stream_rpc_method_handler, grpc.stream_stream_rpc_method_handler
        err = v.ErrorResponse.SerializeToString
        vei: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "PublishImage": client_stream(self.PublishImage, lenient_deserializer(v.PubImageParams), err),
            "SubscribeImage": server_stream(self.SubscribeImage, lenient_deserializer(v.SubImageParams),
                                            identity),
            "DeleteCamera": unary(self.DeleteCamera, lenient_deserializer(v.CameraID), err),
            "PublishVisionOutput": client_stream(self.PublishVisionOutput,
                                                 lenient_deserializer(v.PubVisionParams), err),
            "SubscribeVisionOutput": server_stream(self.SubscribeVisionOutput,
                                                   lenient_deserializer(v.SubVisionParams), identity),
            "PublishToCloud": client_stream(self.PublishToCloud, lenient_deserializer(v.PubCloudParams), err),
            "ListCameras": unary(self.ListCameras, empty_pb2.Empty.FromString, v.Cameras.SerializeToString),
            "ListApplications": unary(self.ListApplications, empty_pb2.Empty.FromString,
                                      v.Applications.SerializeToString),
            "ListClouds": unary(self.ListClouds, empty_pb2.Empty.FromString, v.Clouds.SerializeToString),
        }
        reliable: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "PublishImageAcked": bidi(self.PublishImageAcked, lenient_deserializer(v.PubImageParams),
                                      identity),
        }
        for name, handlers in (("VEIv1_0.VEIv1_0", vei), ("VEIv1_0.VEIReliable", reliable)):
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
            server.add_registered_method_handlers(name, handlers)

    async def wait_for_deliveries(self, within_s: float) -> None:
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=within_s)

    # ---- frames -------------------------------------------------------------------------------

    async def PublishImage(self, requests: AsyncIterator[Any], context: Context) -> vei_pb2.ErrorResponse:
        ingest = FrameIngest(self)
        gauge = self._streams["PublishImage"]
        gauge.inc()
        try:
            async for raw in requests:
                req = ingest.check(raw)
                try:
                    await ingest.publish(req)
                except Exception as exc:  # NATS down longer than the reconnect buffer covers
                    self.metrics.errors.labels("nats_publish").inc()
                    self._warn.warn("frames not published to NATS (counted in vei_errors_total): %s", exc)
        except Reject as rej:
            await abort(context, rej)
        finally:
            gauge.dec()
        return vei_pb2.ErrorResponse()

    async def PublishImageAcked(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[bytes]:
        out: asyncio.Queue[bytes | None] = asyncio.Queue()
        acked = AckTracker(out)
        gauge = self._streams["PublishImageAcked"]
        gauge.inc()
        reader = asyncio.create_task(self._read_acked(requests, acked))
        try:
            while (item := await out.get()) is not None:
                yield item
                self.metrics.acks_out.inc()
            await reader
        except Reject as rej:
            await abort(context, rej)
        finally:
            gauge.dec()
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await acked.close()
            if self._ack_trackers.get(acked.camera) is acked:
                del self._ack_trackers[acked.camera]

    async def _read_acked(self, requests: AsyncIterator[Any], acked: AckTracker) -> None:
        ingest = FrameIngest(self)
        try:
            async for raw in requests:
                req = ingest.check(raw)
                if acked.camera != ingest.camera:
                    if acked.camera:
                        raise Reject(INVALID, f"a PublishImageAcked stream carries one camera; it started "
                                     f"with {acked.camera!r} and then sent {ingest.camera!r}")
                    await acked.subscribe(self.nc, ingest.camera)
                    self._ack_trackers[ingest.camera] = acked
                acked.sent(req.frameId)
                try:
                    await ingest.publish(req)
                except Exception as exc:
                    self.metrics.errors.labels("nats_publish").inc()
                    acked.failed(req.frameId, f"gateway could not publish the frame to NATS: {exc}")
            # The camera half-closed: give the results of its last frames time to be acknowledged.
            await acked.drained(self.settings.ack_linger_s)
        finally:
            acked.finish()

    async def SubscribeImage(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        if type(request) is Malformed:
            await self._invalid(context, "malformed", request.describe())
        problem, kind = name_problem("cameraID", request.cameraID), "invalid_camera"
        if not problem and request.queueGroup and not is_valid_name(request.queueGroup):
            problem, kind = name_problem("queueGroup", request.queueGroup), "invalid_queue_group"
        if problem:
            await self._invalid(context, kind, problem)
        counter = self.metrics.frames_out.labels(request.cameraID)
        async for data in self._relay(subjects.frames(request.cameraID), request.queueGroup, context,
                                      "SubscribeImage"):
            yield data
            counter.inc()

    # ---- vision output ------------------------------------------------------------------------

    async def PublishVisionOutput(self, requests: AsyncIterator[Any],
                                  context: Context) -> vei_pb2.ErrorResponse:
        app, subject = "", ""
        gauge = self._streams["PublishVisionOutput"]
        gauge.inc()
        try:
            async for req in requests:
                if type(req) is Malformed:
                    await self._invalid(context, "malformed", req.describe())
                if req.visionAppName != app:
                    problem = name_problem("visionAppName", req.visionAppName)
                    if problem:
                        await self._invalid(context, "invalid_application", problem)
                    app, subject = req.visionAppName, subjects.vision(req.visionAppName)
                    self.registry.note(Kind.APPLICATION, app)
                payload = vei_pb2.VisionOutput(
                    visionOutput=req.visionOutput, timestamp=req.timestamp, frameId=req.frameId,
                    createdUnixNs=req.createdUnixNs, cameraID=req.cameraID).SerializeToString()
                try:
                    await self.nc.publish(subject, payload)
                except Exception as exc:
                    self.metrics.errors.labels("nats_publish").inc()
                    return vei_pb2.ErrorResponse(errorMsg=f"vision output not published to NATS: {exc}")
        finally:
            gauge.dec()
        return vei_pb2.ErrorResponse()

    async def SubscribeVisionOutput(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        """Delivers every output published after the subscription is confirmed, whether or not the
        application has published before (as the original: an analytics app may start first)."""
        if type(request) is Malformed:
            await self._invalid(context, "malformed", request.describe())
        app = request.visionAppName
        problem = name_problem("visionAppName", app)
        if problem:
            await self._invalid(context, "invalid_application", problem)
        async for data in self._relay(subjects.vision(app), "", context, "SubscribeVisionOutput"):
            yield data

    async def _relay(self, subject: str, queue: str, context: Context, rpc: str) -> AsyncIterator[bytes]:
        gauge = self._streams[rpc]
        gauge.inc()
        try:
            async for data in relay(self.nc, subject, queue, context, self.settings.subscriber_queue,
                                    self.settings.kv_timeout_s,
                                    self.metrics.errors.labels("slow_subscriber").inc):
                yield data
        finally:
            gauge.dec()

    # ---- cloud --------------------------------------------------------------------------------

    async def PublishToCloud(self, requests: AsyncIterator[Any], context: Context) -> vei_pb2.ErrorResponse:
        slots = asyncio.Semaphore(self.settings.cloud_concurrency)
        mine: set[asyncio.Task[None]] = set()
        outcome = DeliveryOutcome()
        apps: set[str] = set()
        gauge = self._streams["PublishToCloud"]
        gauge.inc()
        try:
            async for req in requests:
                if type(req) is Malformed:
                    await self._invalid(context, "malformed", req.describe())
                sink = self.sinks.get(req.cloudProvider)
                if sink is None:
                    self.metrics.errors.labels("unknown_cloud").inc()
                    configured = ", ".join(sorted(self.sinks)) or "none"
                    await settle(mine)
                    return vei_pb2.ErrorResponse(
                        errorMsg=f"unknown cloud provider {req.cloudProvider!r}; configured providers: "
                                 f"{configured} (gateway --cloud)")
                if req.cameraID and not is_valid_name(req.cameraID):
                    await self._invalid(context, "invalid_camera",
                                        name_problem("cameraID", req.cameraID) or "")
                if req.analyticsName not in apps:
                    apps.add(req.analyticsName)
                    if is_valid_name(req.analyticsName):
                        self.registry.note(Kind.APPLICATION, req.analyticsName)
                if await sink.forward(req):  # the sink acks the camera itself: nothing to wait for
                    outcome.ok += 1
                    self._sink_metrics[sink.name].forwarded.inc()
                    continue
                if sink.inline:  # quick and local (a file): no task, no semaphore
                    await self._deliver(sink, req, outcome)
                    continue
                await slots.acquire()
                task = asyncio.create_task(self._deliver(sink, req, outcome))
                mine.add(task)
                self._deliveries.add(task)
                task.add_done_callback(release(slots, mine, self._deliveries))
            await settle(mine)
        finally:
            gauge.dec()
        return vei_pb2.ErrorResponse(errorMsg=outcome.summary())

    async def _deliver(self, sink: CloudSink, req: vei_pb2.PubCloudParams, outcome: DeliveryOutcome) -> None:
        started = time.perf_counter()
        error = ""
        try:
            await sink.deliver(req)
        except SinkError as exc:
            error = str(exc)
        except Exception as exc:
            error = f"{sink.name} sink failed unexpectedly: {exc!r}"
            log.exception("sink %s failed", sink.name)
        m = self._sink_metrics[sink.name]
        m.delivery.observe(time.perf_counter() - started)
        if error:
            outcome.failed(error)
            m.failed.inc()
            self.metrics.errors.labels("sink").inc()
        else:
            outcome.ok += 1
            m.accepted.inc()
            if req.gatewayInUnixNs:
                m.gateway_to_sink.observe((time.time_ns() - req.gatewayInUnixNs) / 1e9)
        if req.frameId and req.cameraID:
            ack = vei_pb2.FrameAck(frameId=req.frameId, cameraID=req.cameraID,
                                   error=error).SerializeToString()
            local = self._ack_trackers.get(req.cameraID)
            if local is not None:  # the camera streams through this gateway: no NATS hop needed
                local.deliver(req.frameId, ack)
                return
            try:
                await self.nc.publish(subjects.ack(req.cameraID), ack)
            except Exception:
                self.metrics.errors.labels("ack_publish").inc()

    # ---- registries ---------------------------------------------------------------------------

    async def DeleteCamera(self, request: Any, context: Context) -> vei_pb2.ErrorResponse:
        if type(request) is Malformed:
            await self._invalid(context, "malformed", request.describe())
        problem = name_problem("cameraID", request.cameraID)
        if problem:
            return vei_pb2.ErrorResponse(errorMsg=problem)
        try:
            removed = await self.registry.remove(Kind.CAMERA, request.cameraID)
        except RegistryUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        if not removed:
            cams = await self._names_or_unknown(Kind.CAMERA)
            return vei_pb2.ErrorResponse(errorMsg=f"unknown camera {request.cameraID!r}; registered "
                                                  f"cameras: {cams}")
        return vei_pb2.ErrorResponse()

    async def ListCameras(self, request: empty_pb2.Empty, context: Context) -> vei_pb2.Cameras:
        return vei_pb2.Cameras(availableCams=await self._names(Kind.CAMERA, context))

    async def ListApplications(self, request: empty_pb2.Empty, context: Context) -> vei_pb2.Applications:
        return vei_pb2.Applications(availApps=await self._names(Kind.APPLICATION, context))

    async def ListClouds(self, request: empty_pb2.Empty, context: Context) -> vei_pb2.Clouds:
        """The providers this gateway can deliver to right now: `local` while a sink process answers,
        an MQTT broker while connected, AWS once credentials are found. PublishToCloud accepts every
        provider listed here (a configured one that is not listed fails with its reason)."""
        names = sorted(self.sinks)
        ready = await asyncio.gather(*(self.sinks[name].accepting() for name in names))
        return vei_pb2.Clouds(availClouds=[name for name, ok in zip(names, ready, strict=True) if ok])

    async def _names(self, kind: Kind, context: Context) -> list[str]:
        try:
            return await self.registry.names(kind)
        except RegistryUnavailable as exc:
            await abort(context, Reject(grpc.StatusCode.UNAVAILABLE, str(exc)))

    async def _names_or_unknown(self, kind: Kind) -> str:
        try:
            return ", ".join(await self.registry.names(kind)) or "none"
        except RegistryUnavailable:
            return "(registry unavailable)"

    async def _invalid(self, context: Context, kind: str, details: str) -> NoReturn:
        self.metrics.errors.labels(kind).inc()
        await abort(context, Reject(INVALID, details))


