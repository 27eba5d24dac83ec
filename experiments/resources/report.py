"""Samples of CPU and memory per component, their statistics per window, and the box plot.

A sample is one component's (or one replica's: `pod`) cores and megabytes at one moment. At each
moment the components are summed - the system as a whole, as the K3s thesis sums its pods - and the
box plot shows those totals per window in the style of its Figs. 4.1 and 4.2.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.resources.meter import Sample

SAMPLE_FIELDS = ["window", "unix_s", "t_s", "component", "pod", "cpu_cores", "memory_mb"]
WINDOWS = ("quiescent", "streaming")


@dataclass(frozen=True)
class SampleRow:
    window: str
    unix_s: float
    t_s: float
    component: str
    pod: str
    cpu_cores: float
    memory_mb: float | None

    def csv(self) -> list[Any]:
        return [self.window, f"{self.unix_s:.3f}", f"{self.t_s:.3f}", self.component, self.pod,
                f"{self.cpu_cores:.5f}", "" if self.memory_mb is None else f"{self.memory_mb:.3f}"]


def process_rows(window: str, samples: Sequence[Sample], names: Mapping[int, str]) -> list[SampleRow]:
    """Meter samples -> one row per interval and process tree: cores over the interval, RSS at its end."""
    rows: list[SampleRow] = []
    if not samples:
        return rows
    start = samples[0].unix_s
    for prev, cur in itertools.pairwise(samples):
        span = cur.wall_s - prev.wall_s
        if span <= 0:
            continue
        for component, roots in cur.roots.items():
            for pid, (cpu_s, rss_mb) in roots.items():
                before = prev.roots.get(component, {}).get(pid, (cpu_s, rss_mb))[0]
                rows.append(SampleRow(window, cur.unix_s, round(cur.unix_s - start, 3), component,
                                      names.get(pid, f"{component}-{pid}"), max(0.0, (cpu_s - before) / span),
                                      rss_mb))
    return rows


def write_samples(path: Path, rows: Iterable[SampleRow]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SAMPLE_FIELDS)
        w.writerows(r.csv() for r in rows)


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Median and quartiles (the box), min/max (the whiskers' reach) and the mean."""
    if not values:
        return {"samples": 0, "median": None, "q1": None, "q3": None, "min": None, "max": None, "mean": None}
    arr = np.asarray(values, dtype=float)
    q1, med, q3 = np.percentile(arr, [25, 50, 75])
    return {"samples": len(values), "median": round(float(med), 5), "q1": round(float(q1), 5),
            "q3": round(float(q3), 5), "min": round(float(arr.min()), 5), "max": round(float(arr.max()), 5),
            "mean": round(float(arr.mean()), 5)}


def totals(rows: Sequence[SampleRow], key: str) -> dict[float, float]:
    """Per moment: the sum over every component (and pod) of `key`."""
    out: dict[float, float] = {}
    for r in rows:
        value = getattr(r, key)
        if value is not None:
            out[r.unix_s] = out.get(r.unix_s, 0.0) + value
    return out


def window_summary(rows: Sequence[SampleRow]) -> dict[str, Any]:
    by_component: dict[str, list[SampleRow]] = {}
    by_pod: dict[str, list[SampleRow]] = {}
    for r in rows:
        by_component.setdefault(r.component, []).append(r)
        by_pod.setdefault(r.pod, []).append(r)

    def both(selected: Sequence[SampleRow]) -> dict[str, Any]:
        return {"cpu_cores": stats(list(totals(selected, "cpu_cores").values())),
                "memory_mb": stats(list(totals(selected, "memory_mb").values()))}

    times = sorted({r.unix_s for r in rows})
    return {
        "start_unix_s": times[0] if times else None, "end_unix_s": times[-1] if times else None,
        "samples": len(times),
        "total": both(rows),
        "components": {c: both(sel) for c, sel in sorted(by_component.items())},
        "pods": {p: {"component": sel[0].component, **both(sel)} for p, sel in sorted(by_pod.items())},
    }


def plot_box(path: Path, rows: Sequence[SampleRow], title: str) -> None:
    """CPU (cores) and memory (MB) of the whole system, one box per window (thesis Figs. 4.1/4.2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), dpi=120)
    for ax, key, label in ((axes[0], "cpu_cores", "CPU (cores)"), (axes[1], "memory_mb", "Memory (MB)")):
        data, names = [], []
        for window in WINDOWS:
            values = list(totals([r for r in rows if r.window == window], key).values())
            if values:
                data.append(values)
                names.append(window.capitalize())
        if data:
            ax.boxplot(data, showfliers=True)
            ax.set_xticks(range(1, len(names) + 1), names)
            for i, values in enumerate(data, start=1):
                med = float(np.median(values))
                ax.annotate(f"median {med:.3g}", (i, med), textcoords="offset points", xytext=(18, 0),
                            fontsize=8, va="center")
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.4)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
