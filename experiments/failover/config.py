"""Settings of one failover run, checked before anything starts; the fault kinds there are."""

from __future__ import annotations

from dataclasses import dataclass

FAULTS = ("kill", "cut", "hard-stop")  # hard-stop: an OpenStack VM stopped through the API (stacks)


@dataclass(frozen=True)
class RunConfig:
    nodes: int = 5
    fps: float = 10.0
    frame_bytes: int = 24576
    warmup_s: float = 3.0
    baseline_s: float = 10.0
    down_for_s: float = 10.0
    margin_s: float = 5.0
    cap_s: float = 60.0
    recovery_factor: float = 2.0
    # On an idle loopback the baseline p95 is ~5 ms, so 2x is 10 ms and one scheduling hiccup of a
    # busy 2-core machine would read as "not recovered". The floor keeps the threshold meaningful;
    # summary.json also reports recovery against the strict 2x threshold.
    recovery_floor_ms: float = 20.0
    window_s: float = 1.0
    resend_after_s: float = 1.0
    buffer_frames: int = 1000
    drain_timeout_s: float = 15.0

    def validate(self) -> None:
        problems = []
        if not self.fps > 0:
            problems.append(f"--fps must be > 0 (got {self.fps})")
        if self.frame_bytes < 1:
            problems.append(f"--frame-bytes must be >= 1 (got {self.frame_bytes})")
        for name in ("baseline_s", "down_for_s", "margin_s", "cap_s", "window_s"):
            if not getattr(self, name) > 0:
                problems.append(f"--{name.removesuffix('_s').replace('_', '-')} must be > 0 seconds")
        if self.recovery_floor_ms < 0:
            problems.append("--recovery-floor-ms must be >= 0")
        if self.warmup_s < 0:
            problems.append("--warmup must be >= 0 seconds")
        if self.cap_s < self.down_for_s + self.margin_s:
            problems.append(f"--cap ({self.cap_s} s) must be at least --down-for + --margin "
                            f"({self.down_for_s + self.margin_s} s), or the node never comes back in a run")
        if problems:
            raise ValueError("; ".join(problems))
