"""Prometheus metrics of one gateway instance, in a private registry.

A private CollectorRegistry (not the global default) lets tests run several gateways in one
process. Per-frame updates use label children cached by the caller, so the hot path pays for
one counter increment and at most one histogram observation.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Stage latencies on one machine are sub-millisecond; after a failover they reach seconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.008, 0.013, 0.02, 0.035, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames_in = Counter("vei_frames_in", "Frames received from cameras", ["camera"], registry=r)
        self.frames_out = Counter("vei_frames_out", "Frames streamed to subscribers", ["camera"],
                                  registry=r)
        self.frame_bytes_in = Counter("vei_frame_bytes_in", "Image bytes received from cameras",
                                      registry=r)
        self.camera_to_gateway = Histogram(
            "vei_camera_to_gateway_seconds", "Frame creation on the camera until the gateway received it",
            buckets=_LATENCY_BUCKETS, registry=r)
        self.gateway_to_sink = Histogram(
            "vei_gateway_to_sink_seconds",
            "Frame received by a gateway until a cloud sink accepted the result derived from it",
            ["provider"], buckets=_LATENCY_BUCKETS, registry=r)
        self.sink_delivery = Histogram(
            "vei_sink_delivery_seconds", "Duration of one delivery to a cloud sink", ["provider"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.cloud_results = Counter("vei_cloud_results", "Results handed to cloud sinks",
                                     ["provider", "outcome"], registry=r)
        self.acks_out = Counter("vei_acks_out", "Frame acknowledgements streamed to cameras", registry=r)
        self.errors = Counter("vei_errors", "Errors by kind", ["kind"], registry=r)
        self.active_streams = Gauge("vei_active_streams", "Open streaming RPCs", ["rpc"], registry=r)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, listen: str) -> int:
        """Expose /metrics on HOST:PORT (port 0 picks a free one); returns the bound port."""
        host, _, port = listen.rpartition(":")
        self._server, self._thread = start_http_server(int(port), addr=host.strip("[]"),
                                                       registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
