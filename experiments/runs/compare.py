"""`edgerig compare RESULT_A RESULT_B`: the K3s thesis's overhead table (its chapter 5) for any two
runs - for example the local baseline against a stack: the change in % of latency p50 and p95,
quiescent and streaming CPU, and memory, from A to B.

A result is a run folder with summary.json (a `resources` run has all the figures; a `latency`
run has latency and window-mean CPU), or a folder of repeats (r1/ .. rK/: the median of each figure
across them). A figure one of the runs lacks is n/a.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from experiments.runs.aggregate import lookup


@dataclass(frozen=True)
class Figure:
    label: str
    keys: tuple[str, ...]   # where to find it, in order: a resources summary, then a latency summary


FIGURES = (
    Figure("latency p50 (ms)", ("latency.p50_ms", "p50_ms")),
    Figure("latency p95 (ms)", ("latency.p95_ms", "p95_ms")),
    Figure("CPU quiescent (cores)", ("quiescent.total.cpu_cores.median", "cpu.total.quiescent_cores")),
    Figure("CPU streaming (cores)", ("streaming.total.cpu_cores.median", "cpu.total.streaming_cores")),
    # the window means: one-second samples count 10 ms ticks, so a near-idle median can be 0
    Figure("CPU quiescent, window mean (cores)",
           ("quiescent.total.cpu_cores.mean", "cpu.total.quiescent_cores")),
    Figure("CPU streaming, window mean (cores)",
           ("streaming.total.cpu_cores.mean", "cpu.total.streaming_cores")),
    Figure("memory quiescent (MB)", ("quiescent.total.memory_mb.median",)),
    Figure("memory streaming (MB)", ("streaming.total.memory_mb.median",)),
    Figure("marginal CPU per frame (ms)",
           ("marginal_cpu_ms_per_frame", "cpu.total.marginal_ms_per_frame")),
)


class CompareError(ValueError):
    pass


def summaries(result: Path) -> list[dict[str, Any]]:
    """The summary of a run, or of each repeat."""
    if not result.is_dir():
        raise CompareError(f"{result} is not a results folder")
    direct = result / "summary.json"
    paths = [direct] if direct.exists() else sorted(result.glob("r*/summary.json"))
    if not paths:
        raise CompareError(f"{result} has no summary.json (nor r1/summary.json ...): is it the --out "
                           "folder of `edgerig run resources` or `edgerig run latency`?")
    out = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except ValueError as err:
            raise CompareError(f"{path} is not valid JSON: {err}") from None
        out.append(data)
    return out


def value(runs: Sequence[dict[str, Any]], figure: Figure) -> tuple[float | None, str | None]:
    for key in figure.keys:
        found = [v for v in (lookup(s, key) for s in runs) if v is not None]
        if found:
            return float(statistics.median(found)), key
    return None, None


def change_pct(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return round((b - a) / abs(a) * 100, 2)


def compare(a: Path, b: Path) -> dict[str, Any]:
    runs_a, runs_b = summaries(a), summaries(b)
    rows = []
    for fig in FIGURES:
        va, ka = value(runs_a, fig)
        vb, kb = value(runs_b, fig)
        rows.append({"figure": fig.label, "a": va, "b": vb, "change_pct": change_pct(va, vb),
                     "a_key": ka, "b_key": kb})
    return {"a": {"path": str(a), "testbed": runs_a[0].get("testbed"), "runs": len(runs_a)},
            "b": {"path": str(b), "testbed": runs_b[0].get("testbed"), "runs": len(runs_b)}, "rows": rows}


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"


def markdown(table: dict[str, Any]) -> str:
    a, b = table["a"], table["b"]
    lines = [f"A: {a['path']} ({a['testbed']}, {a['runs']} run(s)); B: {b['path']} ({b['testbed']}, "
             f"{b['runs']} run(s))", "", "| figure | A | B | change A -> B |", "|---|---:|---:|---:|"]
    for r in table["rows"]:
        change = "n/a" if r["change_pct"] is None else f"{r['change_pct']:+.1f} %"
        lines.append(f"| {r['figure']} | {_fmt(r['a'])} | {_fmt(r['b'])} | {change} |")
    means = [r for r in table["rows"] if "cpu.total" in f"{r['a_key']}{r['b_key']}"]
    if means:
        lines += ["", "CPU from a latency run is its window mean (a resources run gives the median of "
                      "1 s samples)."]
    return "\n".join(lines) + "\n"


def compare_command(
    result_a: Annotated[Path, typer.Argument(help="results folder of the reference run (e.g. local)")],
    result_b: Annotated[Path, typer.Argument(help="results folder of the run compared with it (e.g. a "
                                                  "stack)")],
    out: Annotated[Path | None, typer.Option(help="where to write overhead.md and overhead.json "
                                                  "(default: results/compare-<A>-vs-<B>)")] = None,
) -> None:
    """The overhead table of two runs: the change in % of latency, CPU and memory from A to B."""
    try:
        table = compare(result_a, result_b)
    except CompareError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    folder = out or Path("results") / f"compare-{result_a.name}-vs-{result_b.name}"
    text = markdown(table)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "overhead.md").write_text(text)
    (folder / "overhead.json").write_text(json.dumps(table, indent=2) + "\n")
    typer.echo(text + f"\nwritten: {folder / 'overhead.md'}, {folder / 'overhead.json'}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
