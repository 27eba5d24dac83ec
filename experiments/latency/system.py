"""The baseline system as separate local processes: nats-server, local sink, gateway, vision app."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from experiments.latency.config import MAX_FRAME_BYTES
from experiments.local.nats import NatsServer, start_nats
from experiments.local.ports import free_port, port_open
from experiments.local.readiness import wait_gateways_serving
from experiments.local.supervisor import Child, Supervisor
from workloads.vei import subjects

PY = sys.executable
# Room for the largest image plus the protobuf envelope, above NATS's 1 MB default.
NATS_CONFIG = "max_payload: 8MB\n"


@dataclass
class Baseline:
    nats: NatsServer
    sink: Child
    gateway: Child
    vision: Child
    gateway_address: str
    sink_out: Path

    def measured(self) -> dict[str, Child]:
        """The processes whose CPU time counts as the system's cost per frame."""
        return {"gateway": self.gateway, "vision": self.vision, "nats-server": self.nats.child}


def has_subscription(nats: NatsServer, subject: str) -> bool:
    try:
        return any(sub.get("subject") == subject for sub in nats.subscriptions())
    except OSError:
        return False


def start_baseline(sup: Supervisor, work: Path, sink_out: Path, camera_id: str,
                   processing_ms: float = 0.0) -> Baseline:
    """Start the chain in dependency order; each step waits for real readiness, not a sleep."""
    conf = work / "nats.conf"
    conf.write_text(NATS_CONFIG)
    nats = start_nats(sup, extra_args=["-c", str(conf)])
    sink = sup.start("sink", [PY, "-m", "workloads.vei.sink", "--nats-url", nats.url, "--out", str(sink_out),
                              "--log-level", "WARNING"],
                     ready=lambda: has_subscription(nats, subjects.LOCAL_SINK))
    address = f"127.0.0.1:{free_port()}"
    gateway = sup.start("gateway", [PY, "-m", "workloads.vei.gateway", "--listen", address,
                                    "--nats-url", nats.url, "--cloud", "local",
                                    "--max-image-bytes", str(MAX_FRAME_BYTES), "--log-level", "WARNING"],
                        ready=lambda: port_open("127.0.0.1", int(address.rsplit(":", 1)[1])))
    # Health SERVING is the readiness contract; it is checked from a probe process because this
    # process forks more children next, and a process that has loaded gRPC can hang in its fork handler.
    wait_gateways_serving([gateway], [address])
    frames_subject = subjects.frames(camera_id)
    vision = sup.start("vision", [PY, "-m", "workloads.vei.vision", "--gateway", address,
                                  "--camera-id", camera_id, "--processing-ms", str(processing_ms)],
                       ready=lambda: has_subscription(nats, frames_subject))
    return Baseline(nats, sink, gateway, vision, address, sink_out)


def camera_argv(gateway: str, camera_id: str, frames: int, fps: float, frame_bytes: int, records: Path,
                status: Path, frame_id_prefix: str = "", drain_timeout_s: float = 10.0) -> list[str]:
    argv = [PY, "-m", "workloads.vei.camera", "--gateway", gateway, "--camera-id", camera_id,
            "--frames", str(frames), "--fps", str(fps), "--frame-bytes", str(frame_bytes),
            "--records", str(records), "--status-file", str(status), "--drain-timeout", str(drain_timeout_s)]
    if frame_id_prefix:
        argv += ["--frame-id-prefix", frame_id_prefix]
    return argv
