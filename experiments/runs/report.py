"""A campaign's report: one index.html with every run's plots, an aggregate table per experiment
(median and min-max across repeats) and each run's provenance, plus aggregate.json.

Plain HTML with relative links, so the campaign folder can be copied, archived or served as it is.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.runs.aggregate import aggregate_runs, fmt

if TYPE_CHECKING:
    from experiments.runs.campaign import Cell, State

# The figures each experiment's table shows (summary.json keys; dotted = nested).
METRICS: dict[str, tuple[str, ...]] = {
    "latency": ("p50_ms", "p95_ms", "p99_ms", "lost", "floor_ratio_p50", "cpu.total.quiescent_cores",
                "cpu.total.marginal_ms_per_frame"),
    "throughput": ("max_sustained_fps",),
    "failover": ("outage_s", "recovery_s", "settled_s", "lost", "duplicates_delivered"),
    "resources": ("quiescent.total.cpu_cores.median", "streaming.total.cpu_cores.median",
                  "quiescent.total.memory_mb.median", "streaming.total.memory_mb.median",
                  "marginal_cpu_ms_per_frame", "latency.p50_ms", "latency.p95_ms"),
    # A faas run's top-level figures are its cell's when it ran one function x scenario (set
    # `function` and `scenario` in the campaign cell's params); every cell is in its summary.json.
    "faas": ("p50_ms", "p95_ms", "error_rate", "requests_per_s", "max_pods.cloud", "max_pods.edge",
             "first_cloud_pod_s"),
}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}img{max-width:560px;margin:4px;border:1px solid #ddd}
.done{color:#070}.failed{color:#b00}.pending,.running{color:#a60}details{margin:.5em 0}
"""


def run_dirs(cell_dir: Path) -> list[Path]:
    """Every run of a cell: the folders holding a run.json, in order."""
    return sorted(p.parent for p in cell_dir.rglob("run.json"))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _e(value: object) -> str:
    return html.escape(str(value))


def write_report(folder: Path, cells: Sequence[Cell], state: State) -> Path:
    aggregate: dict[str, list[dict[str, Any]]] = {}
    sections: list[str] = []
    for experiment in dict.fromkeys(c.experiment for c in cells):
        metrics = METRICS.get(experiment, ())
        rows_html, details = [], []
        for cell in (c for c in cells if c.experiment == experiment):
            cell_dir = folder / "cells" / cell.id
            runs = run_dirs(cell_dir)
            summaries = [_read(r / "summary.json") for r in runs]
            row = {"cell": cell.id, "target": cell.target, "params": cell.params,
                   "status": state.cells[cell.id].status, **aggregate_runs(summaries, metrics)}
            aggregate.setdefault(experiment, []).append(row)
            params = ", ".join(f"{k}={v}" for k, v in cell.params.items()) or "defaults"
            cols = "".join(f"<td>{_e(fmt(row[m]))}</td>" for m in metrics)
            rows_html.append(f"<tr><td class=l>{_e(cell.target)}</td><td class=l>{_e(params)}</td>"
                             f"<td class='{_e(row['status'])}'>{_e(row['status'])}</td><td>{row['runs']}</td>"
                             f"{cols}</tr>")
            details.append(_cell_details(folder, cell, runs))
        head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
        sections.append(f"<h2>{_e(experiment)}</h2><table><tr><th class=l>target</th><th class=l>params</th>"
                        f"<th>status</th><th>runs</th>{head}</tr>{''.join(rows_html)}</table>"
                        f"<p>Cells: median (min-max) across repeats.</p>{''.join(details)}")
    counts = state.counts()
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>edgerig campaign {_e(state.plan)}</title>"
            f"<style>{STYLE}</style></head><body><h1>Campaign {_e(state.plan)}</h1>"
            f"<p>{counts['done']} of {len(state.cells)} cells done, {counts['failed']} failed; report "
            f"written {_e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}. State: "
            f"<a href='campaign.json'>campaign.json</a>, aggregates: "
            f"<a href='aggregate.json'>aggregate.json</a>.</p>{''.join(sections)}</body></html>\n")
    (folder / "aggregate.json").write_text(json.dumps(aggregate, indent=2, default=str) + "\n")
    index = folder / "index.html"
    index.write_text(page)
    return index


def _cell_details(folder: Path, cell: Cell, runs: Sequence[Path]) -> str:
    parts = [f"<details open><summary><b>{_e(cell.id)}</b>: `edgerig {_e(' '.join(cell.argv(Path('…'))))}`"
             f"</summary>"]
    if not runs:
        parts.append("<p>no runs recorded</p>")
    for run in runs:
        rel = run.relative_to(folder)
        prov = _read(run / "run.json")
        git = prov.get("git") or {}
        testbed = prov.get("testbed") or {}
        nodes = ", ".join(f"{n.get('name')} ({'+'.join(n.get('components') or []) or '-'})"
                          for n in testbed.get("nodes") or [])
        clean = (prov.get("clean_check") or {}).get("clean")
        parts.append(
            f"<h4>{_e(rel)}</h4><p>commit {_e(str(git.get('commit'))[:12])}"
            f"{' (dirty)' if git.get('dirty') else ''}, testbed {_e(testbed.get('kind'))}: {_e(nodes)}; "
            f"started clean: {_e(clean)}; <a href='{_e(rel / 'run.json')}'>run.json</a>, "
            f"<a href='{_e(rel / 'summary.json')}'>summary.json</a></p>")
        for png in sorted(run.glob("*.png")):
            parts.append(f"<img src='{_e(png.relative_to(folder))}' alt='{_e(png.name)}'>")
    parts.append("</details>")
    return "".join(parts)
