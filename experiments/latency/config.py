"""Settings of a latency or throughput run, checked before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from experiments.runs.options import ConfigError, StreamRunOptions, default_out, out_problems

# The gateway's default image limit. The testbeds start nats-server with a larger max_payload so
# this, not NATS's 1 MB default, is the limit that applies.
MAX_FRAME_BYTES = 4 * 1024 * 1024


@dataclass
class LatencyConfig(StreamRunOptions):
    frames: int = 1000
    fps: float = 10.0
    frame_bytes: int = 24 * 1024
    out: Path = field(default_factory=lambda: default_out("latency"))
    floor_frames: int | None = None    # None: min(frames, 300) - see floor_samples()
    processing_ms: float = 0.0
    quiet_s: float = 10.0              # quiescent window before streaming (CPU with nothing to do)
    camera_id: str = "cam-0"
    progress: bool = True

    def floor_samples(self) -> int:
        # The floor runs after the pipeline at the same rate; 300 samples give a stable p95 without
        # adding 100 s to the default 1000-frame run.
        return self.floor_frames if self.floor_frames is not None else min(self.frames, 300)

    def validate(self) -> None:
        problems = self.run_problems()
        if self.frames <= 0:
            problems.append(f"--frames must be > 0 (got {self.frames})")
        if not self.fps > 0:
            problems.append(f"--fps must be > 0 (got {self.fps})")
        problems += frame_bytes_problems(self.frame_bytes)
        if self.floor_frames is not None and self.floor_frames <= 0:
            problems.append(f"--floor-frames must be > 0 (got {self.floor_frames})")
        if self.processing_ms < 0:
            problems.append(f"--processing-ms must be >= 0 (got {self.processing_ms})")
        if self.quiet_s < 0:
            problems.append(f"--quiet-s must be >= 0 (got {self.quiet_s})")
        problems += out_problems(self.out)
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class ThroughputConfig(StreamRunOptions):
    rates: list[float] = field(default_factory=lambda: [100, 200, 400, 700, 1000, 1400, 2000, 2800, 4000])
    step_s: float = 5.0
    frame_bytes: int = 24 * 1024
    p95_limit_ms: float = 100.0
    out: Path = field(default_factory=lambda: default_out("throughput"))
    quiet_s: float = 10.0
    progress: bool = True

    def validate(self) -> None:
        problems = self.run_problems()
        if not self.rates or any(not r > 0 for r in self.rates):
            problems.append(f"--rates must be positive frames/s (got {self.rates})")
        elif self.rates != sorted(self.rates):
            problems.append(f"--rates must increase step by step (got {self.rates})")
        if not self.step_s > 0:
            problems.append(f"--step-seconds must be > 0 (got {self.step_s})")
        if not self.p95_limit_ms > 0:
            problems.append(f"--p95-limit-ms must be > 0 (got {self.p95_limit_ms})")
        if self.quiet_s < 0:
            problems.append(f"--quiet-s must be >= 0 (got {self.quiet_s})")
        problems += frame_bytes_problems(self.frame_bytes)
        problems += out_problems(self.out)
        if problems:
            raise ConfigError("; ".join(problems))


def frame_bytes_problems(frame_bytes: int) -> list[str]:
    if not 0 < frame_bytes <= MAX_FRAME_BYTES:
        return [f"--frame-bytes must be in 1..{MAX_FRAME_BYTES} (the gateway's maximum image size), "
                f"got {frame_bytes}"]
    return []
