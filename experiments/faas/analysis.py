"""From a FaaS cell's raw records to its figures: request durations against the users, pods per
realm, how the HPA scaled, and whether something held the replicas below what the HPA wanted.

Percentiles are over every answered request (2xx), never trimmed; everything else counts as an
error (no answer within the timeout, or an HTTP error), so the error rate shows what the percentiles
leave out.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.latency.report import percentiles
from experiments.testbeds.functions import CLOUD, ScalingState
from experiments.testbeds.pod_watch import DELETED, PodRow

HPA_FIELDS = ["unix_s", "t_s", "vus", "hpa_current", "hpa_desired", "hpa_max", "deployment_replicas",
              "ready_replicas", "pods_cloud", "pods_edge", "ready_cloud", "ready_edge", "conditions"]
CLAMP_MIN_SAMPLES = 3     # an HPA writes its count into the Deployment at once; 3 s below it is not lag
LOAD_SATURATED_CORES = 0.8  # the load generator is one Python process: near a core, it limits the load


@dataclass(frozen=True)
class Request:
    start_unix_s: float
    duration_ms: float
    status: int
    vus: int
    hostname: str
    node: str
    url: str
    error: str
    realm: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def read_requests(path: Path) -> list[Request]:
    with path.open(newline="") as f:
        return [Request(float(r["start_unix_s"]), float(r["duration_ms"]), int(r["status"]), int(r["vus"]),
                        r["hostname"], r["node"], r["url"], r["error"]) for r in csv.DictReader(f)]


def place_requests(requests: Sequence[Request], pods: Sequence[PodRow],
                   realms: Mapping[str, str]) -> list[Request]:
    """The realm of each answer: the answering pod's (by host name), else its node's."""
    pod_realm = {p.pod: p.realm for p in pods if p.realm}
    out = []
    for r in requests:
        realm = (pod_realm.get(r.hostname) or realms.get(r.node, "")) if (r.hostname or r.node) else ""
        out.append(Request(**{**r.__dict__, "realm": realm}))
    return out


def write_requests(path: Path, requests: Sequence[Request]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start_unix_s", "duration_ms", "status", "vus", "hostname", "node", "realm", "url",
                    "error"])
        for r in requests:
            w.writerow([f"{r.start_unix_s:.6f}", f"{r.duration_ms:.3f}", r.status, r.vus, r.hostname, r.node,
                        r.realm, r.url, r.error])
    tmp.replace(path)


@dataclass(frozen=True)
class Sample:
    """One point of the run's timeline: users, scaling and pods per realm."""

    t_s: float
    vus: int
    scaling: ScalingState
    pods: Mapping[str, Mapping[str, int]]

    def row(self) -> list[Any]:
        s = self.scaling

        def n(v: int | None) -> str:
            return "" if v is None else str(v)

        def count(realm: str, key: str) -> int:
            return int(self.pods.get(realm, {}).get(key, 0))

        return [f"{s.unix_s:.3f}", f"{self.t_s:.3f}", self.vus, n(s.hpa_current), n(s.hpa_desired),
                n(s.hpa_max), n(s.deployment_replicas), s.ready_replicas, count("cloud", "pods"),
                count("edge", "pods"), count("cloud", "ready"), count("edge", "ready"), s.conditions]


def write_timeline(path: Path, samples: Sequence[Sample]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HPA_FIELDS)
        w.writerows(s.row() for s in samples)


def write_pods(path: Path, rows: Sequence[PodRow]) -> None:
    from experiments.testbeds.pod_watch import POD_FIELDS

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(POD_FIELDS)
        w.writerows(r.csv() for r in rows)


def pods_over_time(rows: Sequence[PodRow]) -> list[tuple[float, dict[str, int], dict[str, int]]]:
    """After each pod change: (time, pods per realm, ready pods per realm)."""
    state: dict[str, PodRow] = {}
    out = []
    for row in sorted(rows, key=lambda r: r.unix_s):
        state[row.uid or row.pod] = row
        pods: dict[str, int] = {}
        ready: dict[str, int] = {}
        for r in state.values():
            if r.event == DELETED or not r.realm:
                continue
            pods[r.realm] = pods.get(r.realm, 0) + 1
            ready[r.realm] = ready.get(r.realm, 0) + r.ready
        out.append((row.unix_s, pods, ready))
    return out


def detect_clamping(samples: Sequence[ScalingState]) -> dict[str, Any]:
    """Replicas held below what the HPA wants (OpenFaaS CE resets Deployments beyond 5 replicas).

    The HPA writes its desired count into the Deployment within its sync; a Deployment that stays
    below it for CLAMP_MIN_SAMPLES samples in a row was set back by something else."""
    streak = longest = 0
    first: float | None = None
    held: list[int] = []
    wanted = 0
    for s in samples:
        if s.hpa_desired is not None and s.deployment_replicas is not None and \
                s.hpa_desired > s.deployment_replicas:
            streak += 1
            if streak == CLAMP_MIN_SAMPLES and first is None:
                first = s.unix_s
            held.append(s.deployment_replicas)
            wanted = max(wanted, s.hpa_desired)
            longest = max(longest, streak)
        else:
            streak = 0
    clamped = longest >= CLAMP_MIN_SAMPLES
    at = max(set(held), key=held.count) if held else None
    out: dict[str, Any] = {"clamped": clamped, "samples_below_desired": len(held), "longest_streak": longest}
    if clamped:
        out.update({
            "first_unix_s": first, "held_at": at, "hpa_wanted": wanted,
            "message": (f"replicas held at {at} while the HPA wanted up to {wanted}: something resets the "
                        "Deployment (OpenFaaS Community Edition caps every function at 5 replicas). Pin the "
                        "pre-cap release (edgerig:platform.openfaas.chartVersion 11.1.10) to reproduce the "
                        "thesis's maximum of 25; see docs/benchmarks.md#faas"),
        })
    maxed = [s for s in samples if s.hpa_max and s.hpa_desired is not None and s.hpa_desired >= s.hpa_max]
    out["at_hpa_max_samples"] = len(maxed)
    return out


def first_in_realm(rows: Sequence[PodRow], realm: str, since_unix_s: float, ready: bool) -> float | None:
    """Seconds from `since` until a pod in `realm` exists (or is ready); 0 when one was there already."""
    for row in sorted(rows, key=lambda r: r.unix_s):
        if row.realm == realm and row.event != DELETED and (row.ready or not ready):
            return round(max(0.0, row.unix_s - since_unix_s), 3)
    return None


def summarize_cell(*, function: str, scenario: str, title: str, requests: Sequence[Request],
                   pods: Sequence[PodRow], samples: Sequence[Sample], load: Mapping[str, Any],
                   autoscaled: bool, observer: Mapping[str, Any],
                   deployment: Mapping[str, Any]) -> dict[str, Any]:
    ok = [r for r in requests if r.ok]
    started = float(load.get("started_unix_s") or (requests[0].start_unix_s if requests else 0.0))
    elapsed = float(load.get("elapsed_s") or 0.0)
    errors = len(requests) - len(ok)
    answers: dict[str, int] = {}
    for r in ok:
        if r.hostname or r.node:
            answers[r.realm or "unknown"] = answers.get(r.realm or "unknown", 0) + 1
    timeline = pods_over_time(pods)
    max_pods: dict[str, int] = {}
    max_ready: dict[str, int] = {}
    for _, per_realm, ready in timeline:
        for realm, n in per_realm.items():
            max_pods[realm] = max(max_pods.get(realm, 0), n)
        for realm, n in ready.items():
            max_ready[realm] = max(max_ready.get(realm, 0), n)
    scaling = [s.scaling for s in samples]
    errs: dict[str, int] = {}
    for r in requests:
        if not r.ok:
            kind = r.error.split(":")[0] or f"HTTP {r.status}"
            errs[kind] = errs.get(kind, 0) + 1
    load_cores = round(float(load.get("cpu_s") or 0.0) / elapsed, 3) if elapsed > 0 else None
    summary: dict[str, Any] = {
        "function": function, "scenario": scenario, "scenario_title": title,
        **{k: v for k, v in percentiles([r.duration_ms for r in ok]).items()},
        "requests": len(requests), "answered": len(ok), "errors": errors,
        "error_rate": round(errors / len(requests), 4) if requests else None,
        "error_kinds": errs,
        "load_started_unix_s": round(started, 6), "load_window_s": round(elapsed, 3),
        "requests_per_s": round(len(ok) / elapsed, 2) if elapsed > 0 else None,
        "vus_max": max((r.vus for r in requests), default=0),
        "answers_per_realm": answers,
        "max_pods": max_pods, "max_ready_pods": max_ready,
        "autoscaled": autoscaled,
        "hpa": {
            "max_current": max((s.hpa_current or 0 for s in scaling), default=None) if autoscaled else None,
            "max_desired": max((s.hpa_desired or 0 for s in scaling), default=None) if autoscaled else None,
            "clamping": detect_clamping(scaling) if autoscaled else None,
        },
        "load_generator": {"cpu_cores": load_cores,
                           "saturated": load_cores is not None and load_cores >= LOAD_SATURATED_CORES},
        "pod_observer": dict(observer),
        "deployment": dict(deployment),
    }
    if scenario == "e1":
        summary["first_cloud_pod_s"] = first_in_realm(pods, CLOUD, started, ready=False)
        summary["first_cloud_pod_ready_s"] = first_in_realm(pods, CLOUD, started, ready=True)
    if not autoscaled:
        summary["autoscaling"] = ("not emulated: replicas are fixed per scenario; autoscaling is measured "
                                  "only on a cluster")
    return summary
