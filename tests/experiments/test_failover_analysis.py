"""Outage, loss, duplicate and recovery arithmetic on synthetic per-frame records."""

from __future__ import annotations

import pytest

from experiments.failover.analysis import (
    NS,
    Baseline,
    Delivered,
    baseline,
    duplicates_delivered,
    longest_gap,
    lost,
    recovery_s,
    recovery_threshold_ms,
    rolling_p95,
    settled_s,
    unique_deliveries,
)

INTERVAL = 0.1  # 10 fps
T0 = 1_700_000_000 * NS


def frame(seq: int, latency_ms: float = 5.0, created_s: float | None = None) -> Delivered:
    created = T0 + int((seq * INTERVAL if created_s is None else created_s) * NS)
    return Delivered("cam-0", f"cam-0-{seq}", created, created + int(latency_ms * 1e6))


def steady(n: int, latency_ms: float = 5.0) -> list[Delivered]:
    return [frame(i, latency_ms) for i in range(n)]


def test_steady_stream_has_no_outage() -> None:
    gap = longest_gap(steady(50), INTERVAL)
    assert gap is not None
    assert gap.outage_s == pytest.approx(0.0, abs=1e-9)


def test_one_missing_arrival_is_one_interval_of_outage() -> None:
    # Frame 10 never arrives: arrivals 9 -> 11 are 0.2 s apart, which is 0.1 s more than a normal gap.
    records = [f for f in steady(20) if f.frame_id != "cam-0-10"]
    gap = longest_gap(records, INTERVAL)
    assert gap is not None
    assert gap.outage_s == pytest.approx(0.1)
    assert gap.start_ns == frame(9).sink_ns
    assert gap.end_ns == frame(11).sink_ns


def test_outage_is_measured_by_sink_time_not_creation_time() -> None:
    # Frames 10..29 were created on time but all arrived in one burst 3 s late (resent after failover).
    records = steady(10) + [frame(i, latency_ms=3000 - (i - 10) * 100) for i in range(10, 30)]
    gap = longest_gap(records, INTERVAL)
    assert gap is not None
    # Last on-time arrival: frame 9 at 0.9 s + 5 ms. Burst arrives at 1.0 + 3.0 = 4.0 s.
    assert gap.outage_s == pytest.approx(4.0 - 0.905 - INTERVAL, abs=1e-6)


def test_gap_at_the_end_counts_and_input_order_does_not_matter() -> None:
    records = [*steady(10), frame(30)]
    gap = longest_gap(list(reversed(records)), INTERVAL)
    assert gap is not None
    assert gap.outage_s == pytest.approx(3.0 - 0.9 - INTERVAL)


def test_fewer_than_two_arrivals_have_no_gap() -> None:
    assert longest_gap([], INTERVAL) is None
    assert longest_gap([frame(0)], INTERVAL) is None


def test_duplicates_and_unique_deliveries() -> None:
    records = [*steady(5), frame(2, latency_ms=900), frame(2, latency_ms=950), frame(4, latency_ms=800)]
    assert duplicates_delivered(records) == 3
    unique = unique_deliveries(records)
    assert [d.frame_id for d in unique] == [f"cam-0-{i}" for i in range(5)]
    # the first arrival is kept, not a later resend
    assert next(d for d in unique if d.frame_id == "cam-0-2").latency_ms == pytest.approx(5.0)


def test_lost_lists_sent_ids_missing_at_the_sink_in_order() -> None:
    sent = [("cam-0", f"cam-0-{i}") for i in range(10)]
    records = [f for f in steady(10) if f.frame_id not in ("cam-0-0", "cam-0-9", "cam-0-5")]
    assert lost(sent, records) == [("cam-0", "cam-0-0"), ("cam-0", "cam-0-5"), ("cam-0", "cam-0-9")]
    assert lost(sent, steady(10)) == []


def test_baseline_uses_half_open_window_and_all_frames() -> None:
    records = [frame(i, latency_ms=float(i)) for i in range(20)]
    base = baseline(records, frame(5).created_ns, frame(15).created_ns)
    assert base.frames == 10  # frames 5..14: the frame at the window's end is not in it
    assert base.p50_ms == pytest.approx(9.5)
    with pytest.raises(ValueError, match="baseline"):
        baseline(records, T0 + 100 * NS, T0 + 200 * NS)


def test_rolling_p95_window_includes_only_recent_frames() -> None:
    records = [frame(i, latency_ms=1000.0 if i == 0 else 5.0) for i in range(25)]
    series = dict(rolling_p95(records, window_s=1.0))
    # Frame 9 is 0.9 s after frame 0: still in the 1 s window. Frame 10 is exactly 1 s later: out.
    assert series[frame(9).created_ns] > 100
    assert series[frame(10).created_ns] == pytest.approx(5.0)


def test_recovery_is_the_first_return_and_settled_includes_the_rejoin_spike() -> None:
    fault = frame(50).created_ns
    lat = {i: 2000.0 for i in range(50, 70)}  # 2 s of frames delayed by the outage
    lat[100] = 500.0                           # a later spike (the node rejoining)
    records = [frame(i, latency_ms=lat.get(i, 5.0)) for i in range(150)]
    # Frames 50..69 are slow; the 1 s window still holds frame 69 up to frame 78; frame 79 is
    # exactly 1 s after it, so out: the first frame back under the threshold is 79.
    assert recovery_s(records, fault, threshold_ms=10.0, window_s=1.0) == pytest.approx(2.9)
    # The spike at frame 100 keeps p95 high for frames 100..109; frame 110 is back for good.
    assert settled_s(records, fault, threshold_ms=10.0, window_s=1.0) == pytest.approx(6.0)


def test_recovery_needs_the_return_to_hold() -> None:
    fault = frame(50).created_ns
    slow = {*range(50, 60), *range(75, 85)}  # back for a moment, then bad again
    records = [frame(i, latency_ms=900.0 if i in slow else 5.0) for i in range(150)]
    # A window holds the frame and the 9 before it (the one exactly 1 s earlier is out): frames
    # 50..68 and 75..93 are over, so p95 is back at 69 for 0.6 s, and for good from 94.
    assert recovery_s(records, fault, threshold_ms=10.0, window_s=1.0, hold_s=0.5) == pytest.approx(1.9)
    assert recovery_s(records, fault, threshold_ms=10.0, window_s=1.0, hold_s=2.0) == pytest.approx(4.4)


def test_a_late_disturbance_after_fault_still_counts_from_the_fault() -> None:
    fault = frame(50).created_ns
    records = [frame(i, latency_ms=900.0 if 80 <= i < 85 else 5.0) for i in range(150)]
    # The cut is only noticed 3 s after the fault: recovery is measured from the fault, not 0.
    assert recovery_s(records, fault, threshold_ms=10.0) == pytest.approx((94 - 50) * INTERVAL)


def test_recovery_zero_when_fault_never_hurt_and_none_when_still_bad_or_no_data() -> None:
    fault = frame(50).created_ns
    assert recovery_s(steady(100), fault, threshold_ms=10.0) == 0.0
    assert settled_s(steady(100), fault, threshold_ms=10.0) == 0.0
    still_bad = [frame(i, latency_ms=5.0 if i < 50 else 900.0) for i in range(100)]
    assert recovery_s(still_bad, fault, threshold_ms=10.0) is None
    assert settled_s(still_bad, fault, threshold_ms=10.0) is None
    assert recovery_s(steady(40), fault, threshold_ms=10.0) is None
    assert settled_s(steady(40), fault, threshold_ms=10.0) is None


def test_recovery_threshold_is_factor_times_p95_with_floor() -> None:
    base = Baseline(frames=100, p50_ms=4.0, p95_ms=8.0)
    assert recovery_threshold_ms(base) == 16.0
    assert recovery_threshold_ms(base, floor_ms=30.0) == 30.0
