"""Settings of a FaaS run, checked before anything is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from experiments.runs.options import CommonRunOptions, ConfigError, default_out, out_problems
from experiments.testbeds.base import SystemSpec
from experiments.testbeds.functions import SCENARIOS, FunctionRequest, Scenario, scenario
from workloads.functions.catalog import FUNCTIONS, function
from workloads.functions.ramp import ramp_problems

EVERY = "every"
# The OpenFaaS thesis's VMs (Table 4.1): main 4 vCPU and worker 2 vCPU in the cloud, edge 1 vCPU.
THESIS_NODES: dict[str, tuple[str, float]] = {"main": ("cloud", 4.0), "worker": ("cloud", 2.0),
                                              "edge": ("edge", 1.0)}


def parse_names(text: str, known: list[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == [EVERY]:
        return list(known)
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ConfigError(f"unknown {what} {', '.join(bad) or repr(text)}: use {', '.join(known)}, a comma "
                          f"list of them, or {EVERY}")
    return list(dict.fromkeys(names))


@dataclass
class FaasConfig(CommonRunOptions):
    functions: str = EVERY
    scenarios: str = EVERY
    edge_weight: int = 80
    users: int | None = None           # None: the thesis's count per function (20; shasum 10)
    ramp_s: float = 120.0
    hold_s: float = 60.0
    timeout_s: float = 60.0
    replicas: int = 3                  # fixed replicas on local and emulated
    max_replicas: int = 25
    cpu_percent: int = 50
    cpu_request: str = "100m"
    sample_s: float = 1.0
    out: Path = field(default_factory=lambda: default_out("faas"))
    progress: bool = True

    def function_names(self) -> list[str]:
        return parse_names(self.functions, list(FUNCTIONS), "function")

    def scenario_names(self) -> list[str]:
        return parse_names(self.scenarios, list(SCENARIOS), "scenario")

    def scenario(self, name: str) -> Scenario:
        return scenario(name, self.edge_weight)

    def users_for(self, name: str) -> int:
        return self.users if self.users is not None else function(name).thesis_users

    def request(self, fn: str, sc: str) -> FunctionRequest:
        return FunctionRequest(fn, self.scenario(sc), replicas=self.replicas, max_replicas=self.max_replicas,
                               cpu_percent=self.cpu_percent, cpu_request=self.cpu_request)

    def system(self) -> SystemSpec:
        """local: this machine; emulated: the thesis's three VMs as namespace nodes; a stack: its own."""
        kind = self.target_spec().kind
        if kind == "emulated":
            return SystemSpec(vei=False, nodes=len(THESIS_NODES),
                              placement={name: frozenset() for name in THESIS_NODES},
                              realms={n: realm for n, (realm, _) in THESIS_NODES.items()},
                              vcpus={n: vcpus for n, (_, vcpus) in THESIS_NODES.items()})
        return SystemSpec(vei=False)

    def validate(self) -> None:
        problems: list[str] = []
        for check in (self.function_names, self.scenario_names):
            try:
                check()
            except ConfigError as err:
                problems.append(str(err))
        problems += self.run_problems()
        target = self.target_spec()
        if target.kind == "emulated" and target.nodes not in (None, len(THESIS_NODES)):
            problems.append(f"--target {target.text}: the FaaS experiment's emulated testbed is the thesis's "
                            f"{len(THESIS_NODES)} VMs ({', '.join(THESIS_NODES)}); use --target emulated")
        if target.kind == "fleet":
            problems.append("--target fleet cannot run functions: use local, emulated or a stack with "
                            "OpenFaaS")
        if target.kind == "local" and self.scenarios != EVERY:
            edge = [s for s in self._scenarios_or_empty() if SCENARIOS[s].needs_edge]
            if edge:
                problems.append(f"--scenario {','.join(edge)} needs an edge node and the local testbed is "
                                "one cloud node: use --target emulated (or a stack with edge nodes), or "
                                "--scenario base-cloud")
        if not 0 <= self.edge_weight <= 100:
            problems.append("--edge-weight must be 0-100 (the node-affinity weight range), "
                            f"got {self.edge_weight}")
        problems += ramp_problems(self.users, self.ramp_s, self.hold_s, self.timeout_s)
        if self.replicas < 1:
            problems.append(f"--replicas must be >= 1 (got {self.replicas})")
        if self.max_replicas < 1:
            problems.append(f"--max-replicas must be >= 1 (got {self.max_replicas})")
        if not 1 <= self.cpu_percent <= 100:
            problems.append(f"--cpu-percent must be 1-100 (got {self.cpu_percent})")
        if not self.cpu_request or not _is_cpu_quantity(self.cpu_request):
            problems.append(f"--cpu-request must be a Kubernetes CPU quantity such as 100m or 0.5 "
                            f"(got {self.cpu_request!r})")
        if not self.sample_s > 0:
            problems.append(f"--sample-s must be > 0 (got {self.sample_s:g})")
        problems += out_problems(self.out)
        if problems:
            raise ConfigError("; ".join(dict.fromkeys(problems)))

    def _scenarios_or_empty(self) -> list[str]:
        try:
            return self.scenario_names()
        except ConfigError:
            return []


def _is_cpu_quantity(text: str) -> bool:
    body = text[:-1] if text.endswith("m") else text
    try:
        return float(body) > 0
    except ValueError:
        return False
