"""CPU and memory of the system's processes on this machine, per component.

A sample is each component's cumulative CPU seconds and resident memory, summed over its processes
and everything they spawned. Two samples give cores (CPU seconds per wall second) over the window
between them. Quiescent and streaming windows are measured separately, as the K3s thesis does, and
the marginal cost of a frame is (streaming - quiescent cores) / rate: what the idle wake-ups cost
does not hide in a per-frame figure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass(frozen=True)
class Sample:
    wall_s: float
    unix_s: float
    cpu_s: dict[str, float]
    rss_mb: dict[str, float]


class ProcessMeter:
    """Samples the processes of each component (pids are fixed for the meter's life)."""

    def __init__(self, components: Mapping[str, Sequence[int]]) -> None:
        self._procs: dict[str, list[psutil.Process]] = {}
        for name, pids in components.items():
            self._procs[name] = []
            for pid in pids:
                try:
                    self._procs[name].append(psutil.Process(pid))
                except psutil.Error:
                    continue
        # A process that exits keeps the CPU it used: cumulative figures never go backwards.
        self._last_cpu: dict[int, float] = {}

    @property
    def components(self) -> list[str]:
        return list(self._procs)

    def _tree(self, proc: psutil.Process) -> list[psutil.Process]:
        try:
            return [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return [proc]

    def sample(self) -> Sample:
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        for name, procs in self._procs.items():
            total_cpu, total_rss = 0.0, 0
            for root in procs:
                for proc in self._tree(root):
                    try:
                        with proc.oneshot():
                            times = proc.cpu_times()
                            used = times.user + times.system
                            mem = proc.memory_info().rss
                    except psutil.Error:
                        total_cpu += self._last_cpu.get(proc.pid, 0.0)
                        continue
                    self._last_cpu[proc.pid] = used
                    total_cpu += used
                    total_rss += mem
            cpu[name] = total_cpu
            rss[name] = total_rss / 1e6
        return Sample(time.monotonic(), time.time(), cpu, rss)


def cores(a: Sample, b: Sample) -> dict[str, float]:
    """Mean cores per component between two samples."""
    span = b.wall_s - a.wall_s
    if span <= 0:
        return {k: 0.0 for k in b.cpu_s}
    return {k: max(0.0, (b.cpu_s[k] - a.cpu_s.get(k, 0.0)) / span) for k in b.cpu_s}


def cpu_report(quiet: tuple[Sample, Sample], stream: tuple[Sample, Sample], rate_fps: float,
               frames: int) -> dict[str, Any]:
    """Quiescent and streaming cores, marginal CPU per frame and CPU per frame, per component and
    in total (every component's processes summed)."""
    q, s = cores(*quiet), cores(*stream)
    stream_cpu_ms = {k: (stream[1].cpu_s[k] - stream[0].cpu_s.get(k, 0.0)) * 1000 for k in stream[1].cpu_s}

    def row(qc: float, sc: float, cpu_ms: float) -> dict[str, float | None]:
        return {"quiescent_cores": round(qc, 5), "streaming_cores": round(sc, 5),
                "marginal_ms_per_frame": round((sc - qc) / rate_fps * 1000, 4) if rate_fps > 0 else None,
                "ms_per_frame": round(cpu_ms / frames, 4) if frames else None}

    per = {k: row(q.get(k, 0.0), s[k], stream_cpu_ms[k]) for k in s}
    total = row(sum(q.values()), sum(s.values()), sum(stream_cpu_ms.values()))
    return {"quiet_window_s": round(quiet[1].wall_s - quiet[0].wall_s, 3),
            "stream_window_s": round(stream[1].wall_s - stream[0].wall_s, 3),
            "rate_fps": rate_fps, "components": per, "total": total}
