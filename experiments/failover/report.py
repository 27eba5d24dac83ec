"""Aggregate repeated runs per (scenario, fault): median and spread (min/max), as JSON and markdown."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.failover.cluster import FAULTS
from experiments.failover.placement import SCENARIOS, THESIS_OUTAGE_S
from experiments.failover.summary import OUTAGE_TARGET_S, RECOVERY_TARGET_S

METRICS = ("outage_s", "recovery_s", "settled_s", "lost", "duplicates_delivered", "duplicates_suppressed",
           "camera_dropped_overflow", "baseline_p50_ms", "baseline_p95_ms")


def spread(values: Sequence[float | int | None]) -> dict[str, Any]:
    """Median, min and max; a missing value (e.g. never recovered) makes the max None = unbounded."""
    known = [float(v) for v in values if v is not None]
    missing = len(values) - len(known)
    if not known:
        return {"median": None, "min": None, "max": None, "missing": missing}
    return {"median": statistics.median(known) if not missing else None,
            "min": min(known), "max": None if missing else max(known), "missing": missing}


def aggregate(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in summaries:
        groups.setdefault((s["scenario"], s["fault"]), []).append(s)
    order = {name: i for i, name in enumerate(SCENARIOS)}
    rows = []
    ordered = sorted(groups.items(), key=lambda kv: (order[kv[0][0]], FAULTS.index(kv[0][1])))
    for (scenario, fault), runs in ordered:
        row: dict[str, Any] = {"scenario": scenario, "fault": fault, "runs": len(runs),
                               "node_components": runs[0]["node_components"],
                               "thesis_outage_s": THESIS_OUTAGE_S[scenario]}
        for metric in METRICS:
            row[metric] = spread([r.get(metric) for r in runs])
        row["all_targets_met"] = all(all(r["targets_met"].values()) for r in runs)
        rows.append(row)
    return rows


def _fmt(cell: dict[str, Any], digits: int = 2) -> str:
    if cell["median"] is None and cell["min"] is None:
        return "n/a"
    if cell["median"] is None:
        return f">= {cell['min']:.{digits}f} ({cell['missing']} run(s) never recovered)"
    if cell["min"] == cell["max"]:
        return f"{cell['median']:.{digits}f}"
    return f"{cell['median']:.{digits}f} ({cell['min']:.{digits}f}-{cell['max']:.{digits}f})"


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| failed node holds | fault | runs | outage s (thesis) | outage s | recovery s | settled s | lost | "
        "dups delivered | dups suppressed | baseline p50/p95 ms | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        thesis = r["thesis_outage_s"]
        thesis_txt = f"{thesis:.0f}" if thesis is not None else "none (spikes)"
        base = f"{_fmt(r['baseline_p50_ms'], 1)} / {_fmt(r['baseline_p95_ms'], 1)}"
        lines.append(
            f"| {{{', '.join(r['node_components'])}}} | {r['fault']} | {r['runs']} | {thesis_txt} | "
            f"{_fmt(r['outage_s'])} | {_fmt(r['recovery_s'])} | {_fmt(r['settled_s'])} | "
            f"{_fmt(r['lost'], 0)} | "
            f"{_fmt(r['duplicates_delivered'], 0)} | {_fmt(r['duplicates_suppressed'], 0)} | {base} | "
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
