"""The one interface every experiment receives: a testbed, the place the system under test runs.

An experiment drives load, injects faults through the testbed and analyses what it recorded; it
never starts a process, a namespace or a stack itself. A testbed gives:

- `up()` / `down()` (also as a context manager): build it, and leave nothing behind;
- `endpoints`: where the system answers (gateway targets, NATS URLs, OpenFaaS, Prometheus);
- `nodes`: every node with its roles, realm and what runs on it (the placement);
- `check_clean()`: proof that a run starts from nothing (recorded in its provenance);
- `start_client()`: a camera or a sink on the operator's machine, so latency has one clock;
- `fail(node, kind)` / `restore(fault)`: the faults this testbed can inject;
- `describe()`: what it is, for run.json.

Implementations: `local` (processes here), `emulated` (N network-namespace nodes), `fleet` (SSH
test hosts), and a Pulumi stack (stacks/Pulumi.<name>.yaml, through the Automation API).
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from experiments.testbeds import journal as journals
from experiments.testbeds.errors import SystemDied as SystemDied
from experiments.testbeds.errors import TestbedError as TestbedError
from experiments.testbeds.processes import Child, Supervisor
from workloads.vei import launch
from workloads.vei.launch import Launch

if TYPE_CHECKING:
    from experiments.testbeds.functions import FunctionHost

# What runs on a node, by component name (the VEI launch names plus NATS).
NATS = "nats"
GATEWAY = "gateway"
VISION = "vision"
SYSTEM_COMPONENTS: tuple[str, ...] = (NATS, GATEWAY, VISION)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class NodeInfo:
    name: str
    address: str
    realm: str = "cloud"            # cloud | edge
    roles: tuple[str, ...] = ()     # e.g. server, agent, edge (K3s/KubeEdge) or nats, gateway, vision
    components: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoints:
    gateways: tuple[str, ...]               # HOST:PORT of every gateway replica the clients may use
    nats_urls: tuple[str, ...]
    openfaas: str | None = None
    prometheus: str | None = None

    @property
    def gateway_target(self) -> str:
        """What the VEI clients take as --gateway: every replica, comma-separated."""
        return ",".join(self.gateways)


@dataclass
class FaultRecord:
    kind: str
    node: str
    injected_unix_ns: int
    restored_unix_ns: int | None = None
    killed_pids: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class CleanCheck:
    """The result of checking that a run starts from nothing; `problems` empty means clean."""

    checked_unix_ns: int
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, **asdict(self)}


@dataclass(frozen=True)
class SystemSpec:
    """What an experiment asks a self-built testbed to run (a stack runs what its stack file says).

    `placement`: node name -> components on it, for the emulated and fleet testbeds; None = the
    testbed's default spread (3 replicas of each component, never two of a kind on one node).
    `vei` False: no VEI system at all (an experiment that brings its own workload, e.g. functions).
    `realms` / `vcpus`: per node name, its realm (default cloud) and its flavour's vCPUs (the emulated
    testbed gives function replicas CPU quotas in that ratio).
    """

    camera_ids: tuple[str, ...] = ("cam-0",)
    processing_ms: float = 0.0
    max_image_bytes: int = 4 * 1024 * 1024
    nodes: int = 5
    placement: dict[str, frozenset[str]] | None = None
    # How a stack's `kill` fault fails a real node: reboot -f (power cut) or k3s (stop K3s and its pods).
    kill_mode: str = "reboot"
    # nats-server's GOMAXPROCS on self-built testbeds; None = Go's default (one thread per core).
    nats_gomaxprocs: int | None = 1
    # The gateways' --cloud specs; `local` delivers to the sink process an experiment starts, and
    # `local=file:PATH` makes each gateway write (and ack) results itself, with no sink process.
    clouds: tuple[str, ...] = ("local",)
    vei: bool = True
    realms: dict[str, str] | None = None
    vcpus: dict[str, float] | None = None

    def realm(self, node: str) -> str:
        return (self.realms or {}).get(node, "cloud")


class Testbed(ABC):
    """Base of every testbed. Subclasses implement `_up`, `_down` and the abstract queries; the
    base owns the supervisor of the operator-side clients and the phase times."""

    kind: str = ""
    fault_kinds: tuple[str, ...] = ()

    def __init__(self, spec: SystemSpec | None = None, log_dir: Path | None = None,
                 progress: Progress | None = None) -> None:
        self.spec = spec or SystemSpec()
        self.log_dir = log_dir
        self.progress: Progress = progress or (lambda _msg: None)
        self.sup: Supervisor | None = None
        self.journal: journals.Journal | None = None
        self.swept: list[str] = []
        self._exclusive: contextlib.ExitStack | None = None
        self._held = False  # the kind's exclusive hold is ours: tearing down its parts is safe
        self.phases: dict[str, dict[str, float]] = {}
        self._clients: list[Child] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Testbed:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    def up(self) -> None:
        """Build the testbed; on any failure remove what was built and re-raise.

        First the leftovers of crashed testbeds of the same kind are swept (their journals say what
        they were); what that removed is kept for the clean check."""
        with self.phase("up"):
            self._exclusive = contextlib.ExitStack()
            try:
                self.preflight()
                self._exclusive.enter_context(self._hold())  # before the sweep: it may remove shared names
                self._held = True
                self.swept = journals.sweep_stale(self.kind)
                self.journal = journals.Journal.open(self.kind, self._teardown_record())
                self.sup = Supervisor(log_dir=self.log_dir, journal=self.journal)
                self.sup.__enter__()
                self._up()
            except BaseException:
                self._teardown()
                raise

    def down(self) -> None:
        with self.phase("down"):
            self._teardown()

    def _teardown(self) -> None:
        sup = self.sup
        try:
            if sup is not None:
                # Clients first (a camera must not see the system vanish and start resending), then
                # the system's processes gracefully, then what the kind built around them.
                for child in reversed(self._clients):
                    sup.stop(child)
                sup.stop_all()
            if self._held:  # never tear down what another holder of the kind's names owns
                self._down()
        finally:
            if sup is not None:
                self.sup = None
                sup.__exit__(None, None, None)
            self._clients.clear()
            if self._exclusive is not None:
                self._exclusive.close()
                self._exclusive = None
            self._held = False
        # Only a complete teardown closes the journal; otherwise a later sweep finishes the job.
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def preflight(self) -> None:  # noqa: B027 - optional hook
        """Fail at once, before anything is created, when a prerequisite is missing (root, a CLI,
        credentials). `up()` calls it too."""

    def _hold(self) -> contextlib.AbstractContextManager[None]:
        """What this kind holds exclusively while it is up (a machine-wide network, a stack)."""
        return contextlib.nullcontext()

    def _teardown_record(self) -> dict[str, Any]:
        """What a sweep needs to remove this testbed's kind-specific parts after a crash."""
        return {}

    def phase(self, name: str) -> _Phase:
        """Record wall-clock start and end of a phase (up, warm-up, run, down) for the provenance."""
        return _Phase(self.phases, name)

    @abstractmethod
    def _up(self) -> None: ...

    @abstractmethod
    def _down(self) -> None: ...

    # -- what it is --------------------------------------------------------------------------------
    @property
    @abstractmethod
    def endpoints(self) -> Endpoints: ...

    @property
    @abstractmethod
    def nodes(self) -> list[NodeInfo]: ...

    def describe(self) -> dict[str, Any]:
        """Kind, nodes, placement and endpoints, for run.json (never a secret)."""
        eps = self.endpoints
        return {
            "kind": self.kind,
            "nodes": [asdict(n) for n in self.nodes],
            "endpoints": {"gateways": list(eps.gateways), "nats_urls": list(eps.nats_urls),
                          "openfaas": eps.openfaas, "prometheus": eps.prometheus},
            "fault_kinds": list(self.fault_kinds),
        }

    def public_outputs(self) -> dict[str, Any] | None:
        """A stack's outputs with secrets redacted; None for testbeds that have none."""
        return None

    def check_clean(self, sink_out: Path | None = None) -> CleanCheck:
        """Before a run: nothing of an earlier run is left (processes, namespaces, Node objects) and
        the run's sink file is empty. Kinds add their own checks in `_check_clean`."""
        check = CleanCheck(time.time_ns())
        check.checked.append("no testbed left behind by a crashed run")
        stale = journals.stale_journals(self.kind)
        if stale:
            check.problems.append(f"{len(stale)} crashed {self.kind} testbed(s) not yet swept")
        if self.swept:
            check.checked.append(f"swept at bring-up: {', '.join(self.swept)}")
        if sink_out is not None:
            check.checked.append(f"sink {sink_out} empty")
            if sink_out.exists() and sink_out.stat().st_size > 0:
                check.problems.append(f"sink file {sink_out} already holds results")
        self._check_clean(check)
        return check

    def _check_clean(self, check: CleanCheck) -> None:  # noqa: B027 - optional hook
        """Kind-specific checks; append to check.checked and check.problems."""

    # -- clients on the operator's machine ---------------------------------------------------------
    @property
    def nats_seed_file(self) -> str | None:
        """The nkey seed file the operator's NATS clients log in with (None: the system's NATS is open)."""
        return None

    def client_env(self) -> dict[str, str]:
        """Environment of the operator's VEI processes: how they authenticate (files, never values)."""
        return {"VEI_NATS_NKEY_SEED_FILE": self.nats_seed_file} if self.nats_seed_file else {}

    def start_client(self, name: str, launch: Launch, ready: Callable[[], bool] | None = None,
                     ready_timeout_s: float = 20.0) -> Child:
        """A camera or sink on this machine (the operator's), stopped at `down()` at the latest."""
        child = self.supervisor.start(name, launch.argv(), env={**launch.process_env(), **self.client_env()},
                                      ready=ready, ready_timeout_s=ready_timeout_s)
        self._clients.append(child)
        return child

    def start_sink(self, out: Path, name: str = "sink") -> Child:
        """The local sink on this machine, recording into `out`; returns once it serves."""
        spec = launch.sink(nats_urls=self.endpoints.nats_urls, out=out, log_level="WARNING")
        return self.start_client(name, spec, ready=self._sink_ready, ready_timeout_s=30.0)

    def _sink_ready(self) -> bool:
        """True once a sink subscribes to the local-sink subject (kinds know how to see that)."""
        return True

    def stop_client(self, child: Child) -> int | None:
        code = self.supervisor.stop(child)
        if child in self._clients:
            self._clients.remove(child)
        return code

    @property
    def supervisor(self) -> Supervisor:
        if self.sup is None:
            raise TestbedError(f"the {self.kind} testbed is not up: call up() (or use it in a with block)")
        return self.sup

    # -- the system's own processes ------------------------------------------------------------
    def system_processes(self) -> dict[str, list[int]]:
        """Component -> pids of the system's processes on this machine ({} where they run elsewhere)."""
        return {}

    def process_names(self) -> dict[int, str]:
        """pid -> process name (gateway-n1, ...) of the system's processes, for per-replica figures."""
        return {}

    def system_namespaces(self) -> dict[str, str]:
        """Where a cluster runs the system: namespace -> component ("" = by container name), for the
        CPU and memory series of its pods; {} where the system's processes are on this machine."""
        return {}

    # -- functions ---------------------------------------------------------------------------------
    def function_host(self) -> FunctionHost:
        """Where the FaaS experiment deploys functions (experiments/testbeds/functions.py)."""
        raise TestbedError(f"the {self.kind} testbed cannot run functions: use local, emulated or a stack "
                           "with OpenFaaS")

    def dead_system_processes(self) -> list[Child]:
        """System processes that exited on their own (a run cannot measure anything then)."""
        return []

    # -- faults ------------------------------------------------------------------------------------
    def fail(self, node: str, kind: str, down_for_s: float | None = None) -> FaultRecord:
        """Inject `kind` on `node`. `down_for_s`: how long the node stays down; faults that revert
        themselves (a firewall drop over SSH cuts SSH too) need it up front, others ignore it."""
        if kind not in self.fault_kinds:
            raise TestbedError(f"the {self.kind} testbed cannot inject fault {kind!r}: it offers "
                               f"{', '.join(self.fault_kinds) or 'no faults'}")
        if node not in {n.name for n in self.nodes}:
            raise TestbedError(f"no node {node!r} in this {self.kind} testbed: its nodes are "
                               f"{', '.join(n.name for n in self.nodes)}")
        return self._fail(node, kind, down_for_s)

    def restore(self, fault: FaultRecord) -> None:
        self._restore(fault)
        fault.restored_unix_ns = time.time_ns()

    def _fail(self, node: str, kind: str, down_for_s: float | None) -> FaultRecord:
        raise TestbedError(f"the {self.kind} testbed injects no faults")

    def _restore(self, fault: FaultRecord) -> None:
        raise TestbedError(f"the {self.kind} testbed injects no faults")


class _Phase:
    def __init__(self, phases: dict[str, dict[str, float]], name: str) -> None:
        self.phases, self.name = phases, name

    def __enter__(self) -> None:
        self.phases[self.name] = {"start_unix_s": round(time.time(), 3)}

    def __exit__(self, *exc: object) -> None:
        self.phases[self.name]["end_unix_s"] = round(time.time(), 3)


def gateway_nodes(nodes: Sequence[NodeInfo]) -> list[NodeInfo]:
    return [n for n in nodes if GATEWAY in n.components]
