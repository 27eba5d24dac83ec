"""CPU and memory of a stack's pods from the Prometheus the stack deploys, through its HTTP API.

The kubelet's cAdvisor series, per container: `container_cpu_usage_seconds_total` (a counter: its
rate is cores) and `container_memory_working_set_bytes` (what the kubelet counts against a limit).
`query_range` over each window gives one value per step per pod and container. The rate is taken
over `rate_range` (default 1 m, four 15 s scrapes), so each window is queried from its start plus
that range: no value blends two windows. Pods map to components by namespace (NATS) and container
name (the VEI gateway, vision app, sink).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import requests

from experiments.resources.report import SampleRow
from experiments.testbeds.base import TestbedError

CPU_QUERY = ('sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{{namespace=~"{ns}", '
             'container!="", container!="POD"}}[{range}]))')
MEMORY_QUERY = ('sum by (namespace, pod, container) (container_memory_working_set_bytes{{namespace=~"{ns}", '
                'container!="", container!="POD"}})')
CLIENT_CONTAINERS = ("camera",)  # clients, not part of the system under test


def parse_duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(f"not a Prometheus duration: {text!r} (e.g. 1m, 30s)")


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]


class PrometheusClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def query_range(self, query: str, start: float, end: float, step_s: float) -> list[Series]:
        try:
            resp = requests.get(f"{self.base_url}/api/v1/query_range", timeout=self.timeout_s,
                                params={"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                        "step": f"{step_s:g}"})
        except requests.RequestException as err:
            raise TestbedError(f"Prometheus at {self.base_url} did not answer: {err}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or body.get("status") != "success":
            raise TestbedError(f"Prometheus at {self.base_url} refused a query ({resp.status_code}): "
                               f"{body.get('error') or resp.text[:300]}")
        return [Series(dict(r.get("metric") or {}), [(float(t), float(v)) for t, v in r.get("values") or []])
                for r in body["data"]["result"]]


def component_of(labels: Mapping[str, str], namespaces: Mapping[str, str]) -> str | None:
    """`namespaces`: namespace -> component for whole namespaces (nats), or "" to go by container."""
    ns, container = labels.get("namespace", ""), labels.get("container", "")
    if ns not in namespaces:
        return None
    if namespaces[ns]:
        return namespaces[ns]
    return None if container in CLIENT_CONTAINERS else container or None


def window_rows(client: PrometheusClient, window: str, start: float, end: float, step_s: float,
                namespaces: Mapping[str, str], rate_range: str = "1m") -> list[SampleRow]:
    """Every pod's CPU (cores) and memory (MB) at each step of one window."""
    first = start + parse_duration_s(rate_range)
    if first >= end:
        raise TestbedError(f"the {window} window ({end - start:.0f} s) is shorter than Prometheus's rate "
                           f"range ({rate_range}) plus one step: use windows of at least "
                           f"{parse_duration_s(rate_range) + 2 * step_s:.0f} s on a stack")
    pattern = "|".join(sorted(namespaces))
    cpu = client.query_range(CPU_QUERY.format(ns=pattern, range=rate_range), first, end, step_s)
    mem = client.query_range(MEMORY_QUERY.format(ns=pattern), first, end, step_s)
    def key(labels: Mapping[str, str]) -> tuple[str, str, str]:
        return labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", "")

    memory: dict[tuple[tuple[str, str, str], float], float] = {}
    for s in mem:
        for t, v in s.points:
            memory[(key(s.labels), t)] = v
    rows = []
    for s in cpu:
        component = component_of(s.labels, namespaces)
        if component is None:
            continue
        _, pod, container = key(s.labels)
        for t, v in s.points:
            mb = memory.get((key(s.labels), t))
            rows.append(SampleRow(window, t, round(t - start, 3), component, f"{pod}/{container}", v,
                                  None if mb is None else mb / 1e6))
    return rows


def prometheus_rows(client: PrometheusClient, windows: Sequence[tuple[str, float, float]], step_s: float,
                    namespaces: Mapping[str, str], rate_range: str = "1m") -> list[SampleRow]:
    return [row for name, start, end in windows
            for row in window_rows(client, name, start, end, step_s, namespaces, rate_range)]
