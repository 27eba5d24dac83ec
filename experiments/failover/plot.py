"""Latency over time with the outage shaded red, in the style of the thesis's Figs. 4.5-4.11."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in CI or over SSH
import matplotlib.pyplot as plt

from experiments.failover import analysis
from workloads.vei.records import SinkRecord

NS = 1_000_000_000


def plot_run(summary: dict[str, Any], delivered: Sequence[SinkRecord], path: Path) -> None:
    start = int(summary["stream_start_unix_ns"])
    unique = sorted(analysis.unique_deliveries(delivered), key=lambda d: d.created_ns)
    fig, ax = plt.subplots(figsize=(9, 4))
    if unique:
        x = [(d.created_ns - start) / NS for d in unique]
        ax.plot(x, [d.latency_ms for d in unique], ".", ms=3, color="tab:blue", label="frame latency")
        roll = analysis.rolling_p95(unique, 1.0)
        ax.plot([(t - start) / NS for t, _ in roll], [p for _, p in roll], "-", lw=1, color="black",
                label="rolling p95 (1 s)")
    if summary.get("outage_start_s") is not None and summary.get("outage_s"):
        ax.axvspan(summary["outage_start_s"], summary["outage_end_s"], color="red", alpha=0.3,
                   label=f"outage {summary['outage_s']:.2f} s")
    ax.axvline(summary["fault_at_s"], color="red", ls="--", lw=1,
               label=f"{summary['fault']} {summary['node']}")
    if summary.get("restored_at_s") is not None:
        ax.axvline(summary["restored_at_s"], color="green", ls="--", lw=1, label="node back")
    ax.axhline(summary["recovery_threshold_ms"], color="grey", ls=":", lw=1, label="recovery threshold")
    ax.set_yscale("log")
    ax.set_xlabel("time since stream start (s)")
    ax.set_ylabel("end-to-end latency (ms)")
    comps = ", ".join(summary["node_components"])
    ax.set_title(f"Failure of the node with {{{comps}}} ({summary['fault']}): "
                 f"lost {summary['lost']}, recovery {summary['recovery_s']} s")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
