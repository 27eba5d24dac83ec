"""The one description of how each VEI process starts: gateway, vision app, camera and local sink.

Every place that runs a VEI process renders it from here: the local, emulated and fleet testbeds
(`Launch.argv()`, a process on this machine or in a node's namespace), the Kubernetes manifests in
infra/apps (`Launch.container()`), and the tests. A flag is therefore spelled once; a new option of a
process is added here and reaches every way of running it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GATEWAY = "gateway"
VISION = "vision"
CAMERA = "camera"
SINK = "sink"
FUNCTION_SERVER = "function-server"   # builders in workloads/functions/launch.py
FUNCTION_LOAD = "function-load"
MODULES: dict[str, str] = {
    GATEWAY: "workloads.vei.gateway",
    VISION: "workloads.vei.vision",
    CAMERA: "workloads.vei.camera",
    SINK: "workloads.vei.sink",
    FUNCTION_SERVER: "workloads.functions.http_template",
    FUNCTION_LOAD: "workloads.functions.load",
}
# gRPC's C core reads these once, when `grpc` is imported, so they travel in the environment. By
# default its EventEngine endpoints read on a poller thread and hand each read to a worker pool
# before grpc.aio's completion-queue thread sees it: three thread wake-ups per message, most of a
# gateway's CPU at camera rates. With these three experiments off, the thread that polls the
# completion queue reads the socket itself (gRPC's iomgr endpoints): the gateway's CPU per frame at
# 10 fps falls by about 30 % (docs/benchmarks.md, "gRPC endpoints").
GRPC_ENV: dict[str, str] = {
    "GRPC_EXPERIMENTS": "-event_engine_listener,-event_engine_client,-event_engine_for_all_other_endpoints",
}
# Unbuffered output: a process's log is read while it runs (and after a SIGKILL). Every process
# gets the gRPC settings; those that do not use gRPC (the function server, the load) ignore them.
BASE_ENV: dict[str, str] = {"PYTHONUNBUFFERED": "1", **GRPC_ENV}


@dataclass(frozen=True)
class Launch:
    """One VEI process: which module, with which flags and environment."""

    component: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return MODULES[self.component]

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command line for a process on this machine (this interpreter and virtualenv)."""
        return [python, "-m", self.module, *self.args]

    def process_env(self) -> dict[str, str]:
        """The environment of a process on this machine. A GRPC_EXPERIMENTS already in the caller's
        environment wins, so gRPC's own defaults stay one variable away (to measure or to fall back)."""
        inherited = {key: os.environ[key] for key in GRPC_ENV if key in os.environ}
        return {**BASE_ENV, **inherited, **self.env}

    def container(self, name: str | None = None) -> dict[str, Any]:
        """The Kubernetes container fields (name, command, args, plain env) for the VEI image; never
        taken from the environment of whoever renders the manifests."""
        return {
            "name": name or self.component,
            "command": ["python", "-m", self.module],
            "args": list(self.args),
            "env": [{"name": k, "value": v} for k, v in sorted({**BASE_ENV, **self.env}.items())],
        }


def _opt(flag: str, value: object | None) -> list[str]:
    return [] if value is None else [flag, str(value)]


def gateway(*, listen: str, nats_urls: Sequence[str], clouds: Sequence[str] = ("local",),
            metrics_listen: str | None = None, max_image_bytes: int | None = None,
            registry: str | None = None, log_level: str | None = None,
            env: Mapping[str, str] | None = None) -> Launch:
    """`registry` None leaves the gateway's default (`memory`, this gateway only); wherever more than
    one replica serves the same cameras, ask for `kv`."""
    args = ["--listen", listen, "--nats-url", ",".join(nats_urls)]
    for cloud in clouds:
        args += ["--cloud", cloud]
    args += _opt("--metrics-listen", metrics_listen) + _opt("--max-image-bytes", max_image_bytes)
    args += _opt("--registry", registry) + _opt("--log-level", log_level)
    return Launch(GATEWAY, tuple(args), dict(env or {}))


def sink(*, nats_urls: Sequence[str], out: str | Path, log_level: str | None = None) -> Launch:
    args = ["--nats-url", ",".join(nats_urls), "--out", str(out), *_opt("--log-level", log_level)]
    return Launch(SINK, tuple(args))


def vision(*, gateway: str, camera_id: str, app_name: str | None = None, processing_ms: float | None = None,
           cloud: str | None = None) -> Launch:
    args = ["--gateway", gateway, "--camera-id", camera_id, *_opt("--app-name", app_name),
            *_opt("--processing-ms", processing_ms), *_opt("--cloud", cloud)]
    return Launch(VISION, tuple(args))


def camera(*, gateway: str, camera_id: str, fps: float, frames: int = 0, frame_bytes: int | None = None,
           records: str | Path | None = None, status_file: str | Path | None = None,
           buffer_frames: int | None = None, resend_after_s: float | None = None,
           drain_timeout_s: float | None = None, frame_id_prefix: str | None = None) -> Launch:
    """`frames` 0 streams until stopped (SIGUSR1 stops creating frames and drains what is unacked)."""
    args = ["--gateway", gateway, "--camera-id", camera_id, "--fps", f"{fps:g}", "--frames", str(frames),
            *_opt("--frame-bytes", frame_bytes), *_opt("--records", records),
            *_opt("--status-file", status_file), *_opt("--buffer-frames", buffer_frames),
            *_opt("--resend-after", resend_after_s), *_opt("--drain-timeout", drain_timeout_s),
            *_opt("--frame-id-prefix", frame_id_prefix or None)]
    return Launch(CAMERA, tuple(args))
