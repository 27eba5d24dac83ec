"""Aggregate repeated runs per (scenario, fault): median and spread (min/max), as JSON and markdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.failover.config import FAULTS
from experiments.failover.placement import SCENARIOS, THESIS_OUTAGE_S
from experiments.failover.summary import OUTAGE_TARGET_S, RECOVERY_TARGET_S
from experiments.runs.aggregate import fmt, spread

METRICS = ("outage_s", "recovery_s", "settled_s", "lost", "duplicates_delivered", "duplicates_suppressed",
           "camera_dropped_overflow", "baseline_p50_ms", "baseline_p95_ms")


def aggregate(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in summaries:
        groups.setdefault((s["scenario"], s["fault"]), []).append(s)
    order = {name: i for i, name in enumerate(SCENARIOS)}
    rows = []
    ordered = sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], len(order)),
                                                     FAULTS.index(kv[0][1]) if kv[0][1] in FAULTS else 9))
    for (scenario, fault), runs in ordered:
        row: dict[str, Any] = {"scenario": scenario, "fault": fault, "runs": len(runs),
                               "node_components": runs[0]["node_components"],
                               "thesis_outage_s": THESIS_OUTAGE_S.get(scenario)}
        for metric in METRICS:
            row[metric] = spread([r.get(metric) for r in runs])
        row["all_targets_met"] = all(all(r["targets_met"].values()) for r in runs)
        rows.append(row)
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| failed node holds | fault | runs | outage s (thesis) | outage s | recovery s | settled s | lost | "
        "dups delivered | dups suppressed | baseline p50/p95 ms | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        thesis = r["thesis_outage_s"]
        thesis_txt = f"{thesis:.0f}" if thesis is not None else "none (spikes)"
        base = f"{fmt(r['baseline_p50_ms'], 1)} / {fmt(r['baseline_p95_ms'], 1)}"
        lines.append(
            f"| {{{', '.join(r['node_components'])}}} | {r['fault']} | {r['runs']} | {thesis_txt} | "
            f"{fmt(r['outage_s'])} | {fmt(r['recovery_s'])} | {fmt(r['settled_s'])} | "
            f"{fmt(r['lost'], 0)} | "
            f"{fmt(r['duplicates_delivered'], 0)} | {fmt(r['duplicates_suppressed'], 0)} | {base} | "
            f"{'met' if r['all_targets_met'] else 'MISSED'} |")
    lines.append("")
    lines.append(f"Targets: outage <= {OUTAGE_TARGET_S['kill']:g} s (kill) / <= {OUTAGE_TARGET_S['cut']:g} s "
                 f"(cut), 0 lost, 0 duplicates delivered, recovery <= {RECOVERY_TARGET_S:g} s. "
                 "Cells: median (min-max). settled = until the rolling p95 stays under the threshold "
                 "for good, including the failed node's return.")
    return "\n".join(lines) + "\n"


def write_report(summaries: Sequence[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    rows = aggregate(summaries)
    (out_dir / "aggregate.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / "table.md").write_text(markdown(rows))
    return rows
