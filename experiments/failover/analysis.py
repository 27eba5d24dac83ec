"""Pure functions that turn per-frame records into the failover numbers.

No I/O here, so every edge case (empty input, one frame, unsorted input, a gap at the very end)
is tested directly on synthetic records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from workloads.vei.records import SinkRecord

NS = 1_000_000_000


# One sink line: a frame's result reached the cloud sink (the one record reader's type).
Delivered = SinkRecord


@dataclass(frozen=True)
class Gap:
    """The longest silence at the sink: no frame arrived between start_ns and end_ns."""

    start_ns: int
    end_ns: int
    outage_s: float  # gap length minus one frame interval, never negative


def longest_gap(delivered: Iterable[Delivered], frame_interval_s: float) -> Gap | None:
    """Longest time between consecutive arrivals at the sink, minus one frame interval.

    At a steady rate the gap between arrivals is one frame interval, which is not an outage, so it is
    subtracted: 10 fps with one missing arrival -> gap 0.2 s -> outage 0.1 s. None with < 2 arrivals.
    """
    times = sorted(d.sink_ns for d in delivered)
    if len(times) < 2:
        return None
    diffs = np.diff(np.asarray(times, dtype=np.int64))
    i = int(np.argmax(diffs))
    gap_s = float(diffs[i]) / NS
    return Gap(times[i], times[i + 1], max(0.0, gap_s - frame_interval_s))


def unique_deliveries(delivered: Sequence[Delivered]) -> list[Delivered]:
    """First arrival of every (camera, frame); later copies are duplicates."""
    seen: set[tuple[str, str]] = set()
    out: list[Delivered] = []
    for d in sorted(delivered, key=lambda d: d.sink_ns):
        key = (d.camera_id, d.frame_id)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def duplicates_delivered(delivered: Sequence[Delivered]) -> int:
    """How many sink lines repeat a (camera, frame) that already arrived."""
    counts = Counter((d.camera_id, d.frame_id) for d in delivered)
    return sum(c - 1 for c in counts.values())


def lost(sent: Iterable[tuple[str, str]], delivered: Sequence[Delivered]) -> list[tuple[str, str]]:
    """Sent (camera, frame) ids that never reached the sink, in sending order."""
    at_sink = {(d.camera_id, d.frame_id) for d in delivered}
    return [key for key in sent if key not in at_sink]


@dataclass(frozen=True)
class Baseline:
    frames: int
    p50_ms: float
    p95_ms: float


def baseline(delivered: Sequence[Delivered], start_ns: int, end_ns: int) -> Baseline:
    """Latency percentiles of frames created in [start_ns, end_ns); untrimmed, all of them."""
    lat = [d.latency_ms for d in delivered if start_ns <= d.created_ns < end_ns]
    if not lat:
        raise ValueError("no frame created in the baseline window reached the sink; "
                         "make --baseline-s longer or check that the pipeline delivers at all")
    return Baseline(len(lat), float(np.percentile(lat, 50)), float(np.percentile(lat, 95)))


def rolling_p95(delivered: Sequence[Delivered], window_s: float) -> list[tuple[int, float]]:
    """(created_ns, p95 of the frames created in the window_s before it) for every frame, by creation."""
    frames = sorted(delivered, key=lambda d: d.created_ns)
    created = np.asarray([d.created_ns for d in frames], dtype=np.int64)
    lat = np.asarray([d.latency_ms for d in frames], dtype=np.float64)
    out: list[tuple[int, float]] = []
    window_ns = int(window_s * NS)
    for i in range(len(frames)):
        lo = int(np.searchsorted(created, created[i] - window_ns, side="right"))
        out.append((int(created[i]), float(np.percentile(lat[lo:i + 1], 95))))
    return out


def recovery_s(delivered: Sequence[Delivered], fault_ns: int, threshold_ms: float,
               window_s: float = 1.0, hold_s: float = 2.0) -> float | None:
    """Seconds from the fault until the rolling p95 is back within threshold_ms (and stays so hold_s).

    0.0 if the fault never pushed p95 over the threshold; None if it never came back (or no frame
    created after the fault reached the sink). A later disturbance, e.g. when the failed node
    rejoins, does not count here: `settled_s` covers that.
    """
    series = [(t, p) for t, p in rolling_p95(delivered, window_s) if t >= fault_ns]
    if not series:
        return None
    first_over = next((i for i, (_, p) in enumerate(series) if p > threshold_ms), None)
    if first_over is None:
        return 0.0
    hold_ns = int(hold_s * NS)
    last_t = series[-1][0]
    for i in range(first_over + 1, len(series)):
        t = series[i][0]
        if t + hold_ns > last_t:
            return None  # not enough run left to see it hold
        if all(p <= threshold_ms for u, p in series[i:] if u <= t + hold_ns):
            return (t - fault_ns) / NS
    return None


def settled_s(delivered: Sequence[Delivered], fault_ns: int, threshold_ms: float,
              window_s: float = 1.0) -> float | None:
    """Seconds from the fault until the rolling p95 is within threshold_ms for good (until the end).

    Unlike recovery_s this includes every later disturbance (the node rejoining). 0.0 if the fault
    never pushed p95 over the threshold; None if it is still over at the end or nothing arrived.
    """
    series = rolling_p95(delivered, window_s)
    after = [(t, p) for t, p in series if t >= fault_ns]
    if not after:
        return None
    over = [t for t, p in after if p > threshold_ms]
    if not over:
        return 0.0
    back = [t for t, _ in after if t > over[-1]]
    if not back:
        return None  # still over the threshold at the end of the run
    return (back[0] - fault_ns) / NS


def recovery_threshold_ms(base: Baseline, factor: float = 2.0, floor_ms: float = 0.0) -> float:
    """Rolling p95 must come back under factor x baseline p95 (and at least the floor)."""
    return max(factor * base.p95_ms, floor_ms)
