"""Summary statistics and the latency CDF plot of a run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from experiments.runs.frames import FrameRecord


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max over ALL values (no trimming); None when there are none."""
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3),
            "max_ms": round(float(arr.max()), 3), "mean_ms": round(float(arr.mean()), 3)}


def stage_medians(records: Sequence[FrameRecord]) -> dict[str, float | None]:
    def median(pairs: Iterable[tuple[int | None, int | None]]) -> float | None:
        vals = [(b - a) / 1e6 for a, b in pairs if a and b]
        return round(float(np.median(vals)), 3) if vals else None
    return {
        "camera_to_gateway_p50_ms": median((r.created_ns, r.gateway_in_ns) for r in records),
        "gateway_to_vision_p50_ms": median((r.gateway_in_ns, r.vision_done_ns) for r in records),
        "vision_to_cloud_p50_ms": median((r.vision_done_ns, r.cloud_ns) for r in records),
    }


def plot_cdf(path: Path, latencies: Sequence[float], floor: Sequence[float], title: str) -> None:
    """Latency CDF in the style of the thesis's Fig. 4.3, with the NATS floor for comparison."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for values, label, style in ((latencies, "VEI pipeline (camera → cloud)", "-"),
                                 (floor, "floor: bare NATS hop", "--")):
        if values:
            xs = np.sort(np.asarray(values, dtype=float))
            ys = np.arange(1, len(xs) + 1) / len(xs)
            ax.plot(xs, ys, style, linewidth=1.6, label=label)
    if latencies:
        p50, p95 = np.percentile(latencies, [50, 95])
        for value, name in ((p50, "p50"), (p95, "p95")):
            ax.axvline(value, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"{name} = {value:.2f} ms", (value, 0.5 if name == "p50" else 0.95),
                        textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xlabel("Latency (milliseconds)")
    ax.set_ylabel("Cumulative probability")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
