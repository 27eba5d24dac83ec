"""Plots in the style of the OpenFaaS thesis's Figs. 5.1-5.8: request durations over time with the
virtual users, and the function's pods per realm over time (with the HPA's desired count)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in CI or over SSH
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from experiments.faas.analysis import Request, Sample, pods_over_time
from experiments.testbeds.pod_watch import PodRow

REALM_COLOURS = {"cloud": "tab:blue", "edge": "tab:orange", "": "tab:grey", "unknown": "tab:grey"}


def _durations(ax: Axes, requests: Sequence[Request], samples: Sequence[Sample], t0: float,
               title: str) -> None:
    ok = [r for r in requests if r.ok]
    # seconds, as the thesis plots them, unless every answer is well under one
    scale, unit = (1.0, "ms") if ok and max(r.duration_ms for r in ok) < 500 else (1000.0, "s")
    # the realm with the most answers first, so the others stay visible on top of it
    realms = sorted({r.realm for r in ok if r.realm}, key=lambda realm: -sum(r.realm == realm for r in ok))
    if realms:
        for realm in realms:
            sel = [r for r in ok if r.realm == realm]
            ax.plot([r.start_unix_s - t0 for r in sel], [r.duration_ms / scale for r in sel], ".", ms=2,
                    alpha=0.5, color=REALM_COLOURS.get(realm, "tab:grey"), label=f"answered at {realm}")
        rest = [r for r in ok if not r.realm]
    else:
        rest = ok
    if rest:
        ax.plot([r.start_unix_s - t0 for r in rest], [r.duration_ms / scale for r in rest], ".", ms=2,
                alpha=0.5, color="tab:blue", label="request duration")
    failed = [r for r in requests if not r.ok]
    if failed:
        ax.plot([r.start_unix_s - t0 for r in failed], [0.0] * len(failed), "x", ms=4, color="red",
                label=f"errors ({len(failed)}), drawn at 0")
    ax.set_ylabel(f"request duration ({unit})")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    twin = ax.twinx()
    twin.plot([s.t_s for s in samples], [s.vus for s in samples], "-", color="black", lw=1.2, label="VUs")
    twin.set_ylabel("virtual users")
    twin.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=7)


def _pods(ax: Axes, pods: Sequence[PodRow], samples: Sequence[Sample], t0: float, autoscaled: bool) -> None:
    timeline = pods_over_time(pods)
    # what was there when the load started, then every change
    before = [entry for entry in timeline if entry[0] <= t0]
    after = [entry for entry in timeline if entry[0] > t0]
    points = ([(0.0, before[-1][2])] if before else []) + [(t - t0, ready) for t, _, ready in after]
    end = max([samples[-1].t_s] if samples else [0.0])
    realms = sorted({realm for _, per, _ in timeline for realm in per})
    for realm in realms:
        xs = [x for x, _ in points] + [end]
        ys = [ready.get(realm, 0) for _, ready in points]
        ys.append(ys[-1] if ys else 0)
        ax.step(xs, ys, where="post", color=REALM_COLOURS.get(realm, "tab:grey"),
                label=f"ready pods at {realm}")
    if autoscaled:
        desired = [(s.t_s, s.scaling.hpa_desired) for s in samples if s.scaling.hpa_desired is not None]
        if desired:
            ax.step([t for t, _ in desired], [d for _, d in desired], where="post", ls="--", color="black",
                    lw=1, label="HPA desired")
    ax.set_ylabel("pods")
    ax.set_xlabel("time since the load started (s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)


def plot_cell(path: Path, requests: Sequence[Request], pods: Sequence[PodRow], samples: Sequence[Sample],
              summary: dict[str, Any], testbed: str) -> None:
    t0 = float(summary.get("load_started_unix_s") or (requests[0].start_unix_s if requests else 0.0))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, height_ratios=[3, 2])
    title = (f"{summary['function']}, {summary['scenario_title']} ({testbed}): "
             f"p50 {summary.get('p50_ms')} ms, p95 {summary.get('p95_ms')} ms, "
             f"errors {summary.get('errors')}/{summary.get('requests')}")
    _durations(top, requests, samples, t0, title)
    _pods(bottom, pods, samples, t0, bool(summary.get("autoscaled")))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pair(path: Path, cells: Sequence[tuple[Sequence[Request], Sequence[PodRow], Sequence[Sample],
                                                dict[str, Any]]], testbed: str) -> None:
    """Scenarios side by side (Base Cloud | Base Edge), as the thesis's base-scenario figures."""
    fig, axes = plt.subplots(2, len(cells), figsize=(7 * len(cells), 6.5), sharex="col", squeeze=False,
                             height_ratios=[3, 2])
    for col, (requests, pods, samples, summary) in enumerate(cells):
        t0 = float(summary.get("load_started_unix_s") or 0.0)
        _durations(axes[0][col], requests, samples, t0,
                   f"{summary['function']}, {summary['scenario_title']} ({testbed})")
        _pods(axes[1][col], pods, samples, t0, bool(summary.get("autoscaled")))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
