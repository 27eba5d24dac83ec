"""summary.json of one run: outage, loss, duplicates, recovery, baseline, and whether targets are met."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from experiments.failover import analysis
from experiments.failover.config import RunConfig
from experiments.failover.placement import THESIS_OUTAGE_S
from experiments.runs.frames import join_records, write_records
from experiments.testbeds.base import FaultRecord, Testbed
from workloads.vei.records import read_camera_csv, read_sink, read_status, sent_frame_ids, sink_stats

NS = 1_000_000_000
# The targets, per fault kind: outage (s); every scenario also needs 0 lost, 0 duplicates at
# the sink and recovery within RECOVERY_TARGET_S.
OUTAGE_TARGET_S = {"kill": 1.0, "cut": 3.0}
RECOVERY_TARGET_S = 10.0


def targets_met(summary: dict[str, Any]) -> dict[str, bool]:
    rec, outage = summary["recovery_s"], summary["outage_s"]
    return {
        # None = fewer than two frames reached the sink: nothing to measure a gap in, so a miss.
        "outage": outage is not None and outage <= OUTAGE_TARGET_S[summary["fault"]],
        "lost": summary["lost"] == 0,
        "duplicates": summary["duplicates_delivered"] == 0,
        "recovery": rec is not None and rec <= RECOVERY_TARGET_S,
    }


def summarize(cfg: RunConfig, scenario: str, tb: Testbed, fault: FaultRecord, components: tuple[str, ...],
              run_dir: Path, camera_id: str, *, stream_start_ns: int, baseline_start_ns: int, end_ns: int,
              base: analysis.Baseline, threshold_ms: float) -> dict[str, Any]:
    delivered = read_sink(run_dir / "sink.jsonl")
    write_records(run_dir / "records.csv", join_records(run_dir / "camera.csv", delivered))
    camera = read_status(run_dir / "camera-status.json")
    stats = sink_stats(run_dir / "sink.jsonl")
    sent = sent_frame_ids(camera_id, int(camera.get("sent", 0)), read_camera_csv(run_dir / "camera.csv"))
    lost = analysis.lost(sent, delivered)
    unique = analysis.unique_deliveries(delivered)
    # Startup (connecting, first subscriptions) is not part of the experiment: gaps count from the
    # baseline window on.
    gap = analysis.longest_gap([d for d in unique if d.sink_ns >= baseline_start_ns], 1.0 / cfg.fps)
    recovery = analysis.recovery_s(unique, fault.injected_unix_ns, threshold_ms, cfg.window_s)
    settled = analysis.settled_s(unique, fault.injected_unix_ns, threshold_ms, cfg.window_s)
    strict_ms = cfg.recovery_factor * base.p95_ms
    strict = analysis.recovery_s(unique, fault.injected_unix_ns, strict_ms, cfg.window_s)

    def rel(ns: int | None) -> float | None:
        return None if ns is None else round((ns - stream_start_ns) / NS, 3)

    summary: dict[str, Any] = {
        "scenario": scenario,
        "fault": fault.kind,
        "node": fault.node,
        "node_components": sorted(components),
        "placement": {n.name: list(n.components) for n in tb.nodes},
        "nodes": len(tb.nodes),
        "testbed": tb.kind,
        "fps": cfg.fps,
        "frame_bytes": cfg.frame_bytes,
        "down_for_s": cfg.down_for_s,
        "stream_start_unix_ns": stream_start_ns,
        "fault_unix_ns": fault.injected_unix_ns,
        "fault_at_s": rel(fault.injected_unix_ns),
        "restored_at_s": rel(fault.restored_unix_ns),
        "end_at_s": rel(end_ns),
        "killed_pids": fault.killed_pids,
        "outage_s": round(gap.outage_s, 3) if gap else None,
        "outage_start_s": rel(gap.start_ns) if gap else None,
        "outage_end_s": rel(gap.end_ns) if gap else None,
        "sent": len(sent),
        "delivered_unique": len(unique),
        "lost": len(lost),
        "lost_ids": [fid for _, fid in lost[:20]],
        "duplicates_delivered": analysis.duplicates_delivered(delivered),
        "duplicates_suppressed": stats.get("duplicates"),
        "camera_dropped_overflow": camera.get("dropped_overflow"),
        "camera_resent": camera.get("resent"),
        "camera_reconnects": camera.get("reconnects"),
        "camera_unacked_at_end": camera.get("unacked"),
        "recovery_s": None if recovery is None else round(recovery, 3),
        "settled_s": None if settled is None else round(settled, 3),
        "recovery_threshold_ms": round(threshold_ms, 3),
        "recovery_strict_s": None if strict is None else round(strict, 3),
        "recovery_strict_threshold_ms": round(strict_ms, 3),
        "baseline_frames": base.frames,
        "baseline_p50_ms": round(base.p50_ms, 3),
        "baseline_p95_ms": round(base.p95_ms, 3),
        "thesis_outage_s": THESIS_OUTAGE_S.get(scenario),
    }
    summary["targets_met"] = targets_met(summary)
    return summary


def write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # The plot is a by-product: a broken matplotlib must not lose the numbers above.
    from experiments.failover.plot import plot_run

    plot_run(summary, read_sink(run_dir / "sink.jsonl"), run_dir / "latency.png")
