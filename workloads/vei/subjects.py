"""NATS subjects used by VEI, all under one versioned namespace.

The original VEI published frames on the bare camera id, which collides with anything else on the
same NATS account. Every subject here starts with `vei.v1.` so several VEI versions (or unrelated
apps) can share one NATS cluster.
"""

from __future__ import annotations

PREFIX = "vei.v1"
LOCAL_SINK = f"{PREFIX}.sink.local"
LOCAL_SINK_QUEUE = "vei-sink"
ACK_PREFIX = f"{PREFIX}.ack."

# JetStream KV buckets shared by all gateway replicas (bucket names allow only [A-Za-z0-9_-]).
CAMERAS_BUCKET = "vei_cameras"
APPLICATIONS_BUCKET = "vei_applications"


def frames(camera_id: str) -> str:
    """Subject carrying serialized `ImageData` frames of one camera."""
    return f"{PREFIX}.frames.{camera_id}"


def vision(app_name: str) -> str:
    """Subject carrying serialized `VisionOutput` messages of one vision application."""
    return f"{PREFIX}.vision.{app_name}"


def ack(camera_id: str) -> str:
    """Subject carrying serialized `FrameAck`s for one camera's frames (sink accepted the result)."""
    return f"{ACK_PREFIX}{camera_id}"
