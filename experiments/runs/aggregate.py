"""Across repeats: the median and min-max of each figure, never trimming a run away."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def spread(values: Sequence[float | int | None]) -> dict[str, Any]:
    """Median, min and max; a missing value (e.g. never recovered) makes the max None = unbounded."""
    known = [float(v) for v in values if v is not None]
    missing = len(values) - len(known)
    if not known:
        return {"median": None, "min": None, "max": None, "missing": missing}
    return {"median": statistics.median(known) if not missing else None,
            "min": min(known), "max": None if missing else max(known), "missing": missing}


def lookup(summary: Mapping[str, Any], key: str) -> Any:
    """A figure by name; dotted names reach into nested maps (`cpu.marginal_ms_per_frame`)."""
    value: Any = summary
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def aggregate_runs(summaries: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """One row of spreads over `summaries` for every metric in `metrics`."""
    return {"runs": len(summaries), **{m: spread([lookup(s, m) for s in summaries]) for m in metrics}}


def fmt(cell: Mapping[str, Any], digits: int = 2) -> str:
    """`median (min-max)` for a table cell; `n/a` when nothing was measured."""
    if cell["median"] is None and cell["min"] is None:
        return "n/a"
    if cell["median"] is None:
        return f">= {cell['min']:.{digits}f} ({cell['missing']} run(s) missing)"
    if cell["min"] == cell["max"]:
        return f"{cell['median']:.{digits}f}"
    return f"{cell['median']:.{digits}f} ({cell['min']:.{digits}f}-{cell['max']:.{digits}f})"
