"""Camera command-line settings, validated before anything connects."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# The gateway's default maximum image size (4 MiB); larger frames would be rejected per frame.
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm"}


@dataclass
class CameraSettings:
    gateway: str
    camera_id: str = "cam-0"
    fps: float = 10.0
    frames: int = 0                      # 0 = forever
    frame_bytes: int = 24 * 1024
    image_dir: Path | None = None
    buffer_frames: int = 1000
    resend_after_s: float = 1.0
    drain_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    acks: bool = True
    records: Path | None = None
    status_file: Path | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    frame_id_prefix: str = ""            # frame ids are "<prefix>-<seq>"; default: the camera id

    def validate(self) -> None:
        problems = []
        if not self.camera_id.strip():
            problems.append("--camera-id must not be empty")
        if not self.fps > 0:
            problems.append(f"--fps must be > 0 (got {self.fps})")
        if self.frames < 0:
            problems.append(f"--frames must be >= 0, 0 meaning forever (got {self.frames})")
        if not 0 < self.frame_bytes <= self.max_frame_bytes:
            problems.append(f"--frame-bytes must be in 1..{self.max_frame_bytes} (the gateway's maximum), "
                            f"got {self.frame_bytes}")
        if self.buffer_frames < 1:
            problems.append(f"--buffer-frames must be >= 1 (got {self.buffer_frames})")
        if self.connect_timeout_s < 0:
            problems.append(f"--connect-timeout must be >= 0 seconds (got {self.connect_timeout_s})")
        if not self.resend_after_s > 0:
            problems.append(f"--resend-after must be > 0 seconds (got {self.resend_after_s})")
        if self.image_dir is not None and not self.image_dir.is_dir():
            problems.append(f"--image-dir {self.image_dir} is not a directory")
        if problems:
            raise ValueError("; ".join(problems))


def load_frames(settings: CameraSettings) -> list[bytes]:
    """All frame payloads, made once: per-frame allocation of 24 KB of random data costs CPU per frame."""
    if settings.image_dir is None:
        return [os.urandom(settings.frame_bytes)]
    files = sorted(p for p in settings.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {settings.image_dir}")
    frames = [p.read_bytes() for p in files]
    too_big = [p.name for p, data in zip(files, frames, strict=True) if len(data) > settings.max_frame_bytes]
    if too_big:
        raise ValueError(f"images over the {settings.max_frame_bytes} byte maximum: {', '.join(too_big)}")
    return frames


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgerig vei camera", description=__doc__)
    p.add_argument("--gateway", required=True,
                   help="gateway endpoints: HOST:PORT[,HOST:PORT...] or dns:///name:port")
    p.add_argument("--camera-id", default="cam-0")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--frames", type=int, default=0, help="frames to send; 0 = forever")
    p.add_argument("--frame-bytes", type=int, default=24 * 1024, help="synthetic frame size")
    p.add_argument("--image-dir", type=Path, help="send the images of this folder (cycled) instead")
    p.add_argument("--buffer-frames", type=int, default=1000, help="max unacked frames kept for resending")
    p.add_argument("--resend-after", type=float, default=1.0, dest="resend_after_s",
                   help="resend a frame unacked for this many seconds")
    p.add_argument("--drain-timeout", type=float, default=10.0, dest="drain_timeout_s",
                   help="after the last frame, wait this long for outstanding acks")
    p.add_argument("--connect-timeout", type=float, default=10.0, dest="connect_timeout_s",
                   help="wait this long for a gateway before the frame clock starts anyway")
    p.add_argument("--no-acks", action="store_false", dest="acks",
                   help="use the original PublishImage (no acks, no resends)")
    p.add_argument("--records", type=Path, help="write a per-frame CSV (created, acked, attempts)")
    p.add_argument("--status-file", type=Path, help="keep live stats (JSON) in this file")
    p.add_argument("--max-frame-bytes", type=int, default=DEFAULT_MAX_FRAME_BYTES)
    p.add_argument("--frame-id-prefix", default="",
                   help="frame ids are PREFIX-SEQ (default: the camera id); lets several runs of one "
                        "camera keep distinct ids at a de-duplicating sink")
    return p


def parse_camera_args(argv: Sequence[str] | None) -> CameraSettings:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = CameraSettings(**vars(args))
    try:
        settings.validate()
    except ValueError as err:
        parser.error(str(err))
    return settings
