"""The VEI gateway process: gRPC (VEIv1_0 + VEIReliable + health + reflection) over NATS.

    python -m workloads.vei.gateway --listen 0.0.0.0:50051 --nats-url nats://a:4222,nats://b:4222 \
        --metrics-listen 0.0.0.0:9100 --cloud local --cloud mqtt=mqtt://broker:1883/vei/results

Readiness is the standard health service: "" and "VEIv1_0.VEIv1_0" report SERVING once NATS is
connected. On SIGTERM/SIGINT health turns NOT_SERVING, in-flight RPCs get `grace_s` to finish,
then the NATS connection is drained and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client
from pydantic import ValidationError

from workloads.vei import gateway_auth, nats_conn
from workloads.vei.gateway_service import VeiService
from workloads.vei.metrics import GatewayMetrics
from workloads.vei.registry import Registry, open_registry
from workloads.vei.settings import GatewaySettings, explain
from workloads.vei.sinks.base import CloudSink
from workloads.vei.sinks.factory import build_sink
from workloads.vei.sinks.spec import SYNTAX, CloudSpecError, parse_cloud_specs

log = logging.getLogger("vei.gateway")
SERVICE_NAMES = ("VEIv1_0.VEIv1_0", "VEIv1_0.VEIReliable")
_ENVELOPE = 64 * 1024  # room for the non-image fields of a frame inside a gRPC message


class Gateway:
    """One gateway instance; tests run several in one process (`start`/`stop`)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.cloud_specs = parse_cloud_specs(settings.clouds)  # fail before connecting to anything
        self.metrics = GatewayMetrics()
        self.health = health.aio.HealthServicer()
        self.port = 0
        self.metrics_port = 0
        self._nc: Client | None = None
        self._server: grpc.aio.Server | None = None
        self._registry: Registry | None = None
        self._service: VeiService | None = None
        self._sinks: dict[str, CloudSink] = {}

    @property
    def address(self) -> str:
        host = self.settings.listen.rpartition(":")[0]
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "::") else host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        s = self.settings
        try:
            self._nc = nc = await nats_conn.connect(s, name="vei-gateway")
            self._registry = open_registry(s, nc)
            mqtt_password = s.mqtt_password.get_secret_value() if s.mqtt_password is not None else None
            for spec in self.cloud_specs:
                sink = build_sink(spec, nc, s.sink_timeout_s, s.cloud_concurrency,
                                  mqtt_username=s.mqtt_username, mqtt_password=mqtt_password)
                await sink.start()
                self._sinks[spec.name] = sink
                log.info("cloud provider %r -> %s", spec.name, sink.describe())
            self._service = VeiService(nc, self._registry, self._sinks, self.metrics, s)
            limit = max(self._service.max_image_bytes, s.max_image_bytes) + _ENVELOPE
            dead_ms = round(s.grpc_keepalive_s * 1000)
            self._server = grpc.aio.server(options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # A silently dead client (its node cut off) must be noticed fast: until then frames
                # handed to its SubscribeImage stream are lost to it. gRPC sets TCP_USER_TIMEOUT to the
                # keepalive timeout, so a connection whose sent data stays unacknowledged that long is
                # dropped by the kernel: while frames flow that detects a cut in about `dead_ms`, with
                # no timer at all. The ping only covers idle connections, so it can be rare: a ping
                # every second to each client was most of the gateway's idle CPU (measured).
                ("grpc.keepalive_time_ms", round(s.grpc_idle_ping_s * 1000)),
                ("grpc.keepalive_timeout_ms", dead_ms),
                # Without this an unanswered ping waits for grpc's own 60 s default, and a cut-off
                # idle client took > 30 s to notice (measured).
                ("grpc.http2.ping_timeout_ms", dead_ms),
                ("grpc.http2.min_ping_interval_without_data_ms", 500),
                ("grpc.keepalive_permit_without_calls", 1),
                # Clients ping about every second to detect a dead replica fast; never GOAWAY them.
                ("grpc.http2.max_ping_strikes", 0),
            ], interceptors=gateway_auth.interceptors(s))
            self._service.add_to_server(self._server)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
            if s.grpc_reflection:
                reflection.enable_server_reflection(
                    (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                     reflection.SERVICE_NAME), self._server)
            credentials = gateway_auth.server_credentials(s)
            try:
                self.port = (self._server.add_insecure_port(s.listen) if credentials is None
                             else self._server.add_secure_port(s.listen, credentials))
            except RuntimeError as exc:
                raise OSError(f"cannot listen on {s.listen} (address in use or not local?); "
                              "choose another --listen / VEI_LISTEN") from exc
            await self._server.start()
            if s.metrics_listen:
                try:
                    self.metrics_port = self.metrics.serve(s.metrics_listen)
                except OSError as exc:
                    raise OSError(f"cannot serve metrics on {s.metrics_listen}: {exc.strerror or exc}; "
                                  "choose another --metrics-listen / VEI_METRICS_LISTEN") from exc
            if not await nats_conn.wait_joined(nc, s.nats_join_timeout_s):
                log.warning("NATS server %s has not rejoined its cluster within %.0f s; serving anyway",
                            nc.connected_url.netloc if nc.connected_url else "?", s.nats_join_timeout_s)
            for name in ("", *SERVICE_NAMES):
                await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            await self.stop(grace=0)
            raise
        log.info("VEI gateway listening on %s (NATS %s, clouds %s, registry %s, metrics %s)", self.address,
                 ",".join(s.nats_urls), ",".join(self._sinks) or "none", s.registry,
                 self.metrics_port or "off")

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, let in-flight RPCs finish within `grace`, then drain NATS."""
        grace = self.settings.grace_s if grace is None else grace
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._service is not None:
            await self._service.wait_for_deliveries(within_s=max(grace, 1.0))
        if self._registry is not None:
            await self._registry.close()
            self._registry = None
        for sink in self._sinks.values():
            with contextlib.suppress(Exception):
                await sink.close()
        self._sinks.clear()
        if self._nc is not None:
            await nats_conn.close(self._nc)
            self._nc = None
        self.metrics.close()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve(settings: GatewaySettings) -> int:
    gateway = Gateway(settings)
    # Handlers first: a SIGTERM that arrives while connecting still ends in a clean exit 0.
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    starting = asyncio.create_task(gateway.start())
    signalled = asyncio.create_task(stopping.wait())
    await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return 0
    starting.result()  # start-up errors propagate (and are reported by main)
    try:
        await stopping.wait()
        log.info("signal received: NOT_SERVING, draining for up to %.1f s", settings.grace_s)
    finally:
        await gateway.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workloads.vei.gateway",
        description="VEI gRPC gateway over NATS. Every flag can also be set as an environment variable "
                    "with prefix VEI_ (VEI_LISTEN, VEI_NATS_URLS, VEI_METRICS_LISTEN, VEI_CLOUDS, "
                    "VEI_MAX_IMAGE_BYTES, VEI_GRACE_S, ...).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cloud specs (--cloud, repeatable; VEI_CLOUDS is comma-separated):\n  " + SYNTAX.replace(
            " | ", "\n  ") + "\nexamples:\n  --cloud local\n  --cloud mqtt=mqtt://127.0.0.1:1883/vei/results\n"
        "  --cloud 'aws=iot-data?region=eu-north-1&topic=vei/results&endpoint=http://127.0.0.1:5000'\n"
        "AWS credentials come from the standard AWS environment/profile chain only.")
    p.add_argument("--listen", help="HOST:PORT for gRPC (default 127.0.0.1:50051; port 0 = any free)")
    p.add_argument("--nats-url", action="append", dest="nats_urls", metavar="URL[,URL...]",
                   help="NATS server URL(s); give every cluster node (repeatable or comma-separated)")
    p.add_argument("--metrics-listen", help="HOST:PORT for Prometheus /metrics (default off)")
    p.add_argument("--cloud", action="append", dest="clouds", metavar="SPEC",
                   help="a cloud provider for PublishToCloud (repeatable; default: local)")
    p.add_argument("--max-image-bytes", type=int, help="largest accepted image (default 4 MiB)")
    p.add_argument("--grace", type=float, dest="grace_s", help="seconds in-flight RPCs get on shutdown")
    p.add_argument("--registry", help="where cameras and applications are registered: memory (default; "
                   "this gateway only, no JetStream) or kv (JetStream KV shared by every replica)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    return p


def settings_from_args(args: argparse.Namespace) -> GatewaySettings:
    overrides: dict[str, Any] = {}
    for key in ("listen", "metrics_listen", "max_image_bytes", "grace_s", "registry", "clouds"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    if args.nats_urls:
        overrides["nats_urls"] = [u.strip() for item in args.nats_urls for u in item.split(",") if u.strip()]
    return GatewaySettings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = settings_from_args(args)
        parse_cloud_specs(settings.clouds)
    except ValidationError as exc:
        print(f"vei gateway: invalid settings: {explain(exc)}", file=sys.stderr)
        return 2
    except CloudSpecError as exc:
        print(f"vei gateway: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(settings))
    except (ConnectionError, OSError) as exc:
        print(f"vei gateway: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
