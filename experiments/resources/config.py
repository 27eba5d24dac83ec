"""Settings of a resources run, checked before anything is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from experiments.latency.config import frame_bytes_problems
from experiments.resources.prometheus import parse_duration_s
from experiments.runs.options import ConfigError, StreamRunOptions, default_out, out_problems

THESIS_WINDOW_S = 30 * 60.0   # the K3s thesis's quiescent and streaming windows (4.1)


@dataclass
class ResourcesConfig(StreamRunOptions):
    quiet_s: float = THESIS_WINDOW_S
    stream_s: float = THESIS_WINDOW_S
    sample_s: float = 1.0
    fps: float = 10.0
    frame_bytes: int = 24 * 1024
    processing_ms: float = 0.0
    camera_id: str = "cam-0"
    rate_range: str = "1m"          # a stack: Prometheus's rate() range (four 15 s scrapes)
    out: Path = field(default_factory=lambda: default_out("resources"))
    progress: bool = True

    @property
    def frames(self) -> int:
        return max(1, round(self.stream_s * self.fps))

    def validate(self) -> None:
        problems = self.run_problems()
        if not self.quiet_s > 0:
            problems.append(f"--quiet-s must be > 0 (got {self.quiet_s:g})")
        if not self.stream_s > 0:
            problems.append(f"--stream-s must be > 0 (got {self.stream_s:g})")
        if not self.sample_s > 0:
            problems.append(f"--sample-s must be > 0 (got {self.sample_s:g})")
        elif self.sample_s * 2 > min(self.quiet_s, self.stream_s) > 0:
            problems.append(f"--sample-s {self.sample_s:g} leaves fewer than two samples per window: use "
                            "longer windows or a shorter interval")
        if not self.fps > 0:
            problems.append(f"--fps must be > 0 (got {self.fps:g})")
        if self.processing_ms < 0:
            problems.append(f"--processing-ms must be >= 0 (got {self.processing_ms:g})")
        problems += frame_bytes_problems(self.frame_bytes)
        try:
            rate = parse_duration_s(self.rate_range)
        except ValueError as err:
            problems.append(f"--rate-range: {err}")
        else:
            least = rate + 2 * self.sample_s
            if self.target_spec().kind == "stack" and min(self.quiet_s, self.stream_s) < least:
                problems.append(f"on a stack CPU comes from Prometheus rates over {self.rate_range}: each "
                                f"window must be at least {least:.0f} s (--quiet-s, --stream-s)")
        problems += out_problems(self.out)
        if problems:
            raise ConfigError("; ".join(problems))
