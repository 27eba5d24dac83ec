"""Functions on a testbed: what the FaaS experiment asks a testbed to deploy, and how the testbeds
without Kubernetes run them.

The experiment names a function and a scenario (the OpenFaaS thesis's Table 5.1); the testbed
deploys it, gives the entry point requests go to, feeds a PodTracker with the function's pods, says
how it scales, and removes what it changed afterwards. A stack does that through OpenFaaS and
Kubernetes (experiments/testbeds/stack_functions.py). Here, for `local` and `emulated`:

- every replica is a real process of the python3-http contract server the function images run
  (workloads/functions/http_template.py), with HOSTNAME set to its pod name and NODE_NAME to its
  node, as a kubelet would;
- replicas per realm are fixed by the scenario (`place_replicas`): autoscaling is not emulated;
- `emulated`: each replica runs in its node's network namespace with its own UTS namespace (so the
  host name nodeinfo reports is the pod's) and in its node's cgroup, whose CPU quota (cgroup v1
  `cpu.cfs_quota_us`) is the node's share of this machine: the thesis's flavours (Table 4.1: main
  4, worker 2, edge 1 vCPU) scaled so the nodes together get the machine's cores. The entry point is
  a node port on the entry node: iptables DNAT in that node's namespace spreads connections over
  every replica at random (as kube-proxy's iptables mode does) and masquerades those it forwards;
- `local`: replicas on loopback, one node; the load generator spreads its users over them.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import subprocess
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from experiments.testbeds.cluster_api import PodState
from experiments.testbeds.errors import TestbedError
from experiments.testbeds.netns import Host
from experiments.testbeds.pod_watch import PodTracker
from experiments.testbeds.ports import free_port, port_open
from experiments.testbeds.processes import Child, Supervisor
from workloads.functions import launch
from workloads.functions.http_template import HEALTH_PATH, PORT

CLOUD, EDGE = "cloud", "edge"
REPLICA_PORT = PORT           # the function images' port, inside a node's namespace
NODE_PORT_BASE = 31000       # entry points on emulated nodes, one per function deployed
READY_TIMEOUT_S = 20.0
# OpenFaaS's readiness probe of function pods (chart values `functions.readinessProbe`)
PROBE_PERIOD_S = 2.0
PROBE_TIMEOUT_S = 1.0
PROBE_FAILURE_THRESHOLD = 3
CGROUP_CPU_ROOT = Path("/sys/fs/cgroup/cpu")
CFS_PERIOD_US = 100_000


# -- what the experiment asks for ----------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """One row of the thesis's Table 5.1."""

    name: str
    title: str
    entry_realm: str              # where requests enter (and the initial pod runs)
    realms: tuple[str, ...]       # where pods may be scheduled
    edge_weight: int | None = None   # preferred node-affinity weight towards edge nodes (E1)

    @property
    def needs_edge(self) -> bool:
        return EDGE in self.realms


SCENARIOS: dict[str, Scenario] = {
    "base-cloud": Scenario("base-cloud", "Base Cloud", CLOUD, (CLOUD,)),
    "base-edge": Scenario("base-edge", "Base Edge", EDGE, (EDGE,)),
    "e1": Scenario("e1", "E1", EDGE, (EDGE, CLOUD), edge_weight=80),
}


def scenario(name: str, edge_weight: int | None = None) -> Scenario:
    """The scenario called `name`; E1 takes its preference weight (0-100)."""
    try:
        found = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}: use one of {', '.join(SCENARIOS)} or every") from None
    if edge_weight is not None and found.edge_weight is not None:
        if not 0 <= edge_weight <= 100:
            raise ValueError("the edge weight must be 0-100 (the node-affinity weight range), "
                             f"got {edge_weight}")
        found = replace(found, edge_weight=edge_weight)
    return found


@dataclass(frozen=True)
class FunctionRequest:
    function: str
    scenario: Scenario
    replicas: int = 3              # fixed replicas (local, emulated)
    max_replicas: int = 25         # HPA (a stack)
    cpu_percent: int = 50          # HPA target: average CPU utilisation of the requests
    cpu_request: str = "100m"      # the CPU request the HPA's utilisation refers to (a stack)


@dataclass(frozen=True)
class ScalingState:
    """How many replicas the function has and wants, at one moment."""

    unix_s: float
    hpa_current: int | None       # None: no HPA (replicas are fixed)
    hpa_desired: int | None
    hpa_max: int | None
    deployment_replicas: int | None   # what the Deployment asks for (spec.replicas)
    ready_replicas: int
    conditions: str = ""


class FunctionDeployment(ABC):
    """One function deployed under one scenario."""

    function: str
    scenario: Scenario
    namespace: str = ""
    autoscaled: bool = False

    @property
    @abstractmethod
    def entry_urls(self) -> list[str]: ...

    @property
    @abstractmethod
    def realms(self) -> dict[str, str]:
        """node -> realm of every node pods may run on."""

    @abstractmethod
    def wait_ready(self, timeout_s: float) -> None:
        """Block until the function answers at its entry point (every fixed replica ready, or a
        cluster's first pod); TestbedError after `timeout_s`."""

    @abstractmethod
    def observe(self, tracker: PodTracker) -> None:
        """Feed `tracker` with the function's pods until `stop_observing()`."""

    @abstractmethod
    def stop_observing(self) -> dict[str, Any]:
        """Stop feeding; returns what the observer saw of itself (lists, resumes, errors)."""

    @abstractmethod
    def scaling(self) -> ScalingState: ...

    @abstractmethod
    def remove(self) -> None:
        """Remove or restore everything the deployment changed."""

    @abstractmethod
    def describe(self) -> dict[str, Any]: ...


class FunctionHost(ABC):
    """What a testbed offers the FaaS experiment."""

    kind: str = ""
    autoscales: bool = False      # an HPA scales the functions (a cluster); else fixed replicas

    @abstractmethod
    def deploy(self, request: FunctionRequest) -> FunctionDeployment: ...

    def check(self, request: FunctionRequest) -> None:  # noqa: B027 - optional hook
        """Raise TestbedError before anything is deployed when the request cannot be met here."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Remove what the host itself made (cgroups)."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}


# -- fixed placement ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeSlot:
    name: str
    realm: str
    vcpus: float
    host: Host


def _split(total: int, nodes: Sequence[NodeSlot]) -> dict[str, int]:
    """`total` replicas over `nodes` in proportion to their vCPUs (largest remainder, node order)."""
    if total <= 0 or not nodes:
        return {}
    weight = sum(n.vcpus for n in nodes)
    exact = {n.name: total * n.vcpus / weight for n in nodes}
    counts = {k: math.floor(v) for k, v in exact.items()}
    left = total - sum(counts.values())
    order = [n.name for n in nodes]
    for name in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), order.index(k)))[:left]:
        counts[name] += 1
    return {k: v for k, v in counts.items() if v}


def place_replicas(sc: Scenario, replicas: int, nodes: Sequence[NodeSlot]) -> dict[str, int]:
    """Fixed replicas per node for a scenario (the testbeds that do not autoscale).

    Base Cloud / Base Edge: every replica in that realm. E1: round(replicas x weight / 100) at the
    edge, the rest in the cloud - a static stand-in for the scheduler's preference, which on a
    cluster scores nodes rather than splitting replicas. Within a realm, replicas follow the vCPUs.
    """
    by_realm = {r: [n for n in nodes if n.realm == r] for r in (CLOUD, EDGE)}
    for realm in sc.realms if sc.edge_weight is None else (sc.entry_realm,):
        if not by_realm[realm]:
            have = ", ".join(f"{n.name} ({n.realm})" for n in nodes)
            raise TestbedError(f"scenario {sc.title} needs a node in the {realm} realm; this testbed has "
                               f"{have}. Use --target emulated (main, worker: cloud; edge: edge) or a "
                               "stack with edge nodes")
    if sc.edge_weight is None:
        return _split(replicas, by_realm[sc.realms[0]])
    edge = min(replicas, math.floor(replicas * sc.edge_weight / 100 + 0.5))
    if replicas - edge and not by_realm[CLOUD]:
        raise TestbedError(f"scenario {sc.title} places {replicas - edge} replica(s) in the cloud realm, "
                           "but this testbed has no cloud node")
    return {**_split(edge, by_realm[EDGE]), **_split(replicas - edge, by_realm[CLOUD])}


# -- cgroup v1 CPU quotas --------------------------------------------------------------------------
class CpuCgroups:
    """One cgroup per node under CGROUP_CPU_ROOT/<base>, each with a CFS quota; removed at close."""

    def __init__(self, base: str, root: Path = CGROUP_CPU_ROOT) -> None:
        self.path = root / base
        self.quotas: dict[str, float] = {}

    @staticmethod
    def available(root: Path = CGROUP_CPU_ROOT) -> bool:
        return (root / "cpu.cfs_quota_us").exists() and os.access(root, os.W_OK)

    def create(self, quotas: Mapping[str, float]) -> None:
        self.path.mkdir(exist_ok=True)
        for node, cores in quotas.items():
            group = self.path / node
            group.mkdir(exist_ok=True)
            (group / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(max(1000, int(cores * CFS_PERIOD_US))))
            self.quotas[node] = cores

    def procs_file(self, node: str) -> Path:
        return self.path / node / "cgroup.procs"

    def usage(self) -> dict[str, dict[str, int]]:
        """Per node: nr_periods, nr_throttled, throttled_time (ns) from cpu.stat."""
        out = {}
        for node in self.quotas:
            with contextlib.suppress(OSError):
                stat = (self.path / node / "cpu.stat").read_text().split()
                out[node] = {k: int(v) for k, v in zip(stat[::2], stat[1::2], strict=True)}
        return out

    def close(self) -> list[str]:
        return remove_cgroups(self.path)


def remove_cgroups(path: Path) -> list[str]:
    """Remove a cgroup tree (its processes must be gone; rmdir refuses otherwise)."""
    removed: list[str] = []
    if not path.exists():
        return removed
    for group in sorted((p for p in path.iterdir() if p.is_dir()), reverse=True):
        with contextlib.suppress(OSError):
            group.rmdir()
            removed.append(f"cgroup {group}")
    with contextlib.suppress(OSError):
        path.rmdir()
        removed.append(f"cgroup {path}")
    return removed


# -- an emulated node port -------------------------------------------------------------------------
class NodePortEntry:
    """A node port on one emulated node, spreading connections over replicas as kube-proxy does."""

    def __init__(self, entry: Host, port: int, backends: Sequence[tuple[str, int]]) -> None:
        assert entry.node is not None
        self.entry, self.port, self.backends = entry, port, list(backends)
        self.chain = f"EDGERIG-NP-{port}"

    def _ipt(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = self.entry.argv(["iptables", "-w", "-t", "nat", *args])
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise TestbedError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
        return done

    def install(self) -> None:
        subprocess.run(self.entry.argv(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]), check=True,
                       capture_output=True)
        self._ipt("-N", self.chain)
        n = len(self.backends)
        for i, (addr, port) in enumerate(self.backends):
            # rule i takes 1/(n-i) of what reaches it: every backend gets 1/n of the connections
            share = ["-m", "statistic", "--mode", "random", "--probability", f"{1 / (n - i):.6f}"]
            self._ipt("-A", self.chain, "-p", "tcp", *(share if i < n - 1 else []), "-j", "DNAT",
                      "--to-destination", f"{addr}:{port}")
        self._ipt("-A", "PREROUTING", "-p", "tcp", "-d", self.entry.address, "--dport", str(self.port),
                  "-j", self.chain)
        if self._ipt("-C", "POSTROUTING", "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE",
                     check=False).returncode != 0:
            self._ipt("-A", "POSTROUTING", "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE")

    def remove(self) -> None:
        self._ipt("-D", "PREROUTING", "-p", "tcp", "-d", self.entry.address, "--dport", str(self.port),
                  "-j", self.chain, check=False)
        self._ipt("-F", self.chain, check=False)
        self._ipt("-X", self.chain, check=False)

    @property
    def url(self) -> str:
        return f"http://{self.entry.address}:{self.port}"


# -- replicas as processes --------------------------------------------------------------------------
@dataclass
class Replica:
    """One replica process. Its readiness follows the probe OpenFaaS gives function pods (the chart's
    `functions.readinessProbe`: GET /_/health, 1 s timeout, not ready after 3 failures in a row, ready
    again after 1 success): a replica too busy to answer one probe in time is not yet taken for
    gone, as a kubelet would not."""

    pod: str
    uid: str
    node: NodeSlot
    port: int
    child: Child
    ready: bool = False           # as the probe last decided
    failures: int = 0             # probes failed in a row

    @property
    def url(self) -> str:
        return f"http://{self.node.host.address}:{self.port}"

    def answers(self, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
        """One health probe."""
        if not self.child.alive():
            return False
        conn = http.client.HTTPConnection(self.node.host.address, self.port, timeout=timeout_s)
        try:
            conn.request("GET", HEALTH_PATH)
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def probe(self) -> bool:
        """One readiness probe with the kubelet's thresholds; returns the readiness it leaves."""
        if self.answers():
            self.failures, self.ready = 0, True
        else:
            self.failures += 1
            if self.failures >= PROBE_FAILURE_THRESHOLD or not self.child.alive():
                self.ready = False
        return self.ready

    def state(self) -> PodState:
        alive = self.child.alive()
        phase = "Running" if alive else ("Succeeded" if self.child.popen.returncode == 0 else "Failed")
        return PodState(self.pod, "", self.node.name, phase, self.probe(), {}, self.uid)


class _Poller:
    """The replicas' state into a tracker, once per interval (a readiness probe each)."""

    def __init__(self, replicas: Sequence[Replica], tracker: PodTracker, interval_s: float) -> None:
        self.replicas, self.tracker, self.interval_s = replicas, tracker, interval_s
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tracker.relist([r.state() for r in self.replicas])
            self.polls += 1
            self._stop.wait(self.interval_s)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(self.interval_s + 5)
        return {"polls": self.polls}


class ProcessDeployment(FunctionDeployment):
    def __init__(self, host: ProcessFunctionHost, request: FunctionRequest, replicas: list[Replica],
                 entry: NodePortEntry | None) -> None:
        self.host, self.request = host, request
        self.function, self.scenario = request.function, request.scenario
        self.replicas, self.entry = replicas, entry
        self._poller: _Poller | None = None

    @property
    def entry_urls(self) -> list[str]:
        return [self.entry.url] if self.entry is not None else [r.url for r in self.replicas]

    @property
    def realms(self) -> dict[str, str]:
        return {n.name: n.realm for n in self.host.nodes}

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(r.probe() for r in self.replicas):
            dead = [r for r in self.replicas if not r.child.alive()]
            if dead or time.monotonic() > deadline:
                r = dead[0] if dead else next(r for r in self.replicas if not r.ready)
                state = (f"exited with code {r.child.popen.returncode}" if dead
                         else f"not ready in {timeout_s:g} s")
                raise TestbedError(f"replica {r.pod} of {self.function} {state}; its log "
                                   f"({r.child.log_path}):\n{r.child.log_tail()}")
            time.sleep(0.1)

    def observe(self, tracker: PodTracker) -> None:
        self._poller = _Poller(self.replicas, tracker, self.host.poll_s)

    def stop_observing(self) -> dict[str, Any]:
        poller, self._poller = self._poller, None
        return poller.stop() if poller is not None else {}

    def scaling(self) -> ScalingState:
        ready = sum(r.ready for r in self.replicas)  # as the last probe left them
        return ScalingState(time.time(), None, None, None, len(self.replicas), ready)

    def remove(self) -> None:
        self.stop_observing()
        if self.entry is not None:
            self.entry.remove()
        for r in self.replicas:
            self.host.sup.stop(r.child)
        if self in self.host.active:
            self.host.active.remove(self)

    def describe(self) -> dict[str, Any]:
        per_node: dict[str, int] = {}
        for r in self.replicas:
            per_node[r.node.name] = per_node.get(r.node.name, 0) + 1
        return {"function": self.function, "scenario": self.scenario.name, "autoscaled": False,
                "replicas": per_node, "entry_urls": self.entry_urls,
                "entry": "node port (iptables DNAT, random per connection)" if self.entry is not None
                else "every replica, users spread round-robin"}


class ProcessFunctionHost(FunctionHost):
    """Function replicas as processes on this machine (local) or in namespace nodes (emulated)."""

    def __init__(self, kind: str, sup: Supervisor, nodes: Sequence[NodeSlot],
                 cgroups: CpuCgroups | None = None, node_ports: bool = False,
                 poll_s: float = PROBE_PERIOD_S) -> None:
        self.kind, self.sup, self.nodes = kind, sup, list(nodes)
        self.cgroups, self.node_ports, self.poll_s = cgroups, node_ports, poll_s
        self._deployed = 0
        self.active: list[ProcessDeployment] = []

    def check(self, request: FunctionRequest) -> None:
        if request.replicas < 1:
            raise TestbedError(f"--replicas must be >= 1 (got {request.replicas})")
        place_replicas(request.scenario, request.replicas, self.nodes)

    def deploy(self, request: FunctionRequest) -> ProcessDeployment:
        counts = place_replicas(request.scenario, request.replicas, self.nodes)
        replicas: list[Replica] = []
        try:
            for node in self.nodes:
                for i in range(counts.get(node.name, 0)):
                    replicas.append(self._start(request.function, node, i))
            entry = None
            if self.node_ports:
                entry_node = next(n for n in self.nodes if n.realm == request.scenario.entry_realm)
                entry = NodePortEntry(entry_node.host, NODE_PORT_BASE + self._deployed,
                                      [(r.node.host.address, r.port) for r in replicas])
                entry.install()
            self._deployed += 1
        except BaseException:
            for r in replicas:
                self.sup.stop(r.child)
            raise
        deployment = ProcessDeployment(self, request, replicas, entry)
        self.active.append(deployment)
        return deployment

    def _start(self, function: str, node: NodeSlot, index: int) -> Replica:
        pod = f"{function}-{node.name}-{index}"
        host = node.host
        port = REPLICA_PORT + index if host.node is not None else free_port()
        spec = launch.server(function=function, listen=f"{host.address}:{port}",
                             env={"HOSTNAME": pod, "NODE_NAME": node.name})
        argv = spec.argv()
        if host.node is not None:
            # A pod of its own: its host name (a UTS namespace) and its node's CPU quota (cgroup). The
            # cgroup is joined before `ip netns exec`, which mounts a sysfs of the namespace's own.
            argv = host.argv(["unshare", "--uts", "--", "sh", "-c", 'hostname "$1" && shift && exec "$@"',
                              "edgerig-pod", pod, *argv])
            if self.cgroups is not None:
                argv = ["sh", "-c", 'echo $$ > "$1" && shift && exec "$@"', "edgerig-pod",
                        str(self.cgroups.procs_file(node.name)), *argv]
        child = self.sup.start(f"fn-{pod}", argv, env=spec.process_env(),
                               ready=lambda: port_open(host.address, port), ready_timeout_s=READY_TIMEOUT_S)
        return Replica(pod, uuid.uuid4().hex, node, port, child)

    def close(self) -> None:
        for deployment in list(self.active):  # what a failed run did not remove itself
            with contextlib.suppress(Exception):
                deployment.remove()
        self.active.clear()
        if self.cgroups is not None:
            self.cgroups.close()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "autoscaling": "not emulated: replicas are fixed per scenario; "
                                                  "autoscaling is measured only on a cluster",
                "nodes": [{"name": n.name, "realm": n.realm, "vcpus": n.vcpus,
                           "cpu_quota_cores": (self.cgroups.quotas.get(n.name) if self.cgroups else None)}
                          for n in self.nodes]}


def cpu_quotas(vcpus: Mapping[str, float], cores: float | None = None) -> dict[str, float]:
    """Each node's share of this machine's cores in the ratio of its flavour's vCPUs."""
    total = sum(vcpus.values())
    cores = float(os.cpu_count() or 1) if cores is None else cores
    return {name: round(cores * v / total, 4) for name, v in vcpus.items()} if total > 0 else {}
