"""CPU and memory of the system's processes on this machine, per component.

A sample is each component's cumulative CPU seconds and resident memory, summed over its processes
and everything they spawned. Two samples give cores (CPU seconds per wall second) over the window
between them. Quiescent and streaming windows are measured separately, as the K3s thesis does, and
the marginal cost of a frame is (streaming - quiescent cores) / rate: what the idle wake-ups cost
does not hide in a per-frame figure. Each sample also keeps every process tree's own figures
(`roots`: component -> root pid -> (CPU s, RSS MB)), for a breakdown per replica; `Sampler` takes
samples at a fixed interval on a thread of its own. CPU time is user + system of /proc/<pid>/stat:
every thread's, including threads that have exited, counted in clock ticks (10 ms), so a one-second
sample of one process is a multiple of 0.01 cores; sums over a window are exact to a tick. A child
that has exited and been waited for counts in its parent's children times, so each process in the
tree adds its own times and its reaped children's. (/proc/<pid>/schedstat has nanoseconds, but
only of the main thread: it misses nats-server's and gRPC's other threads.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass(frozen=True)
class Sample:
    wall_s: float
    unix_s: float
    cpu_s: dict[str, float]
    rss_mb: dict[str, float]
    roots: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)


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
        roots: dict[str, dict[int, tuple[float, float]]] = {}
        for name, procs in self._procs.items():
            total_cpu, total_rss = 0.0, 0
            roots[name] = {}
            for root in procs:
                tree_cpu, tree_rss = 0.0, 0
                for proc in self._tree(root):
                    try:
                        with proc.oneshot():
                            times = proc.cpu_times()
                            used = times.user + times.system + times.children_user + times.children_system
                            mem = proc.memory_info().rss
                    except psutil.Error:
                        tree_cpu += self._last_cpu.get(proc.pid, 0.0)
                        continue
                    self._last_cpu[proc.pid] = used
                    tree_cpu += used
                    tree_rss += mem
                roots[name][root.pid] = (tree_cpu, tree_rss / 1e6)
                total_cpu += tree_cpu
                total_rss += tree_rss
            cpu[name] = total_cpu
            rss[name] = total_rss / 1e6
        return Sample(time.monotonic(), time.time(), cpu, rss, roots)


class Sampler:
    """meter.sample() every `interval_s` on a thread (on a fixed grid: no drift), until stop()."""

    def __init__(self, meter: ProcessMeter, interval_s: float) -> None:
        self.meter, self.interval_s = meter, interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-meter", daemon=True)

    def start(self) -> Sampler:
        self.samples.append(self.meter.sample())
        self._thread.start()
        return self

    def _run(self) -> None:
        start = self.samples[0].wall_s
        k = 1
        while not self._stop.wait(max(0.0, start + k * self.interval_s - time.monotonic())):
            self.samples.append(self.meter.sample())
            k += 1

    def stop(self) -> list[Sample]:
        """Stop; the last sample is taken now, so the samples span the whole window."""
        self._stop.set()
        self._thread.join(self.interval_s + 5)
        self.samples.append(self.meter.sample())
        return self.samples


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
