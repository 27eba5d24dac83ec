"""A Pulumi stack from stacks/ as a testbed, through the Automation API (a LocalWorkspace on this
repository; the engine runs in its own process, experiments/testbeds/stack_engine.py).

- up: `pulumi up`, with progress from the engine's events (resources done / started); then the
  stack outputs (inventory, kubeconfig, gateway and NATS endpoints, OpenFaaS, Prometheus), every
  node Ready in Kubernetes and every gateway replica SERVING.
- down: `pulumi destroy`, which resets the hosts (k3s-uninstall / keadm reset) and removes the VMs;
  afterwards the stack must hold no resources.
- `attach` (`--rebuild never`): the deployed stack as it is, no up and no destroy.
- faults go over SSH with the inventory's user and key: `cut` is a self-reverting firewall drop,
  `kill` is `reboot -f` (or stopping K3s and its containers), `hard-stop` a stop/start of an
  OpenStack VM through the OpenStack API.
- clients (camera, sink) run on this machine, the operator's, so latency has one clock. The stack
  must run its VEI clients on the operator's side (`edgerig:vei.clients: operator`) or its own
  camera and sink would compete with the experiment's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from experiments.testbeds import journal, ssh_faults
from experiments.testbeds.base import (
    CleanCheck,
    Endpoints,
    FaultRecord,
    NodeInfo,
    Progress,
    SystemSpec,
    Testbed,
    TestbedError,
)
from experiments.testbeds.cluster_api import ClusterApi, FaasClusterApi, KubernetesApi
from experiments.testbeds.readiness import probe_serving
from infra.hosts.inventory import SshTarget

if TYPE_CHECKING:
    from experiments.testbeds.stack_functions import StackFunctionHost

REPO = Path(__file__).resolve().parents[2]
STACKS_DIR = REPO / "stacks"
READY_TIMEOUT_S = 600.0
ENGINE_TIMEOUT_S = 3 * 3600.0
CLIENTS_OUTPUT = "veiClients"
# Secret outputs the operator's clients authenticate with (infra/program.py exports them).
NATS_SEED_OUTPUT = "natsOperatorNkeySeed"
GATEWAY_TOKEN_OUTPUT = "veiGatewayToken"


def _engine_argv(operation: str, stack: str) -> list[str]:
    return [sys.executable, "-m", "experiments.testbeds.stack_engine", operation, stack]


def run_engine(operation: str, stack: str, on_step: Callable[[dict[str, Any]], None] | None = None,
               timeout_s: float = ENGINE_TIMEOUT_S) -> dict[str, Any]:
    """One Automation API operation in its own process; returns its result or raises TestbedError."""
    proc = subprocess.Popen(_engine_argv(operation, stack), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    result: dict[str, Any] | None = None
    error: str | None = None
    deadline = time.monotonic() + timeout_s
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if "event" in data and on_step is not None:
                on_step(data)
            elif "result" in data:
                result = data["result"]
            elif "error" in data:
                error = data["error"]
            if time.monotonic() > deadline:
                raise TestbedError(f"pulumi {operation} {stack} did not finish within {timeout_s:.0f} s")
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if error is not None or result is None:
        stderr = proc.stderr.read().strip() if proc.stderr else ""
        raise TestbedError(error or f"pulumi {operation} {stack} ended without a result "
                                    f"(exit {proc.returncode}): {stderr[-2000:]}")
    return result


def preflight(stack: str) -> None:
    """Fail at once, before anything is created, when a prerequisite is missing."""
    stack_file = STACKS_DIR / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        raise TestbedError(f"no stack file {stack_file}")
    if not os.environ.get("EDGERIG_PULUMI_COMMAND"):
        root = os.environ.get("EDGERIG_PULUMI_ROOT")
        found = (Path(root) / "bin" / "pulumi").exists() if root else shutil.which("pulumi") is not None
        if not found:
            from experiments.testbeds.stack_engine import INSTALL_HINT

            raise TestbedError(f"--target {stack} needs the Pulumi CLI, which is not installed here "
                               f"(`pulumi` is not on PATH): {INSTALL_HINT}. Nothing was created.")
    config = (yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}
    openstack = any((n or {}).get("provider") == "openstack" for n in config.get("edgerig:nodes") or [])
    if openstack and not (os.environ.get("OS_CLOUD") or os.environ.get("OS_AUTH_URL")
                          or (config.get("edgerig:openstack") or {}).get("cloud")):
        raise TestbedError(f"stack {stack} creates OpenStack VMs but no OpenStack credentials are set: "
                           "`source openrc.sh` (OS_AUTH_URL and the other OS_* variables), or name a "
                           "clouds.yaml entry in edgerig:openstack.cloud / OS_CLOUD. Nothing was created.")


def _sweep_stack(teardown: dict[str, Any]) -> list[str]:
    """A crashed run's stack: destroy it, unless the run only attached to it."""
    name = teardown.get("stack")
    if not name or teardown.get("attach") or not teardown.get("up_started"):
        return []
    left = run_engine("destroy", str(name))["resources"]
    if left:
        raise TestbedError(f"pulumi destroy {name} left {left} resources in the stack a crashed run had "
                           f"deployed; run `pulumi destroy --stack {name}` and check the cloud by hand")
    return [f"stack {name} destroyed (0 resources left)"]


journal.register_sweeper("stack", _sweep_stack)


class StackTestbed(Testbed):
    kind = "stack"
    fault_kinds = ("kill", "cut", "hard-stop")
    # How the testbed reaches Kubernetes with the stack's kubeconfig (tests put a stand-in here:
    # nothing Kubernetes runs on this project's CI machine).
    cluster_api_factory: ClassVar[Callable[[str], ClusterApi]] = KubernetesApi

    def __init__(self, stack: str, spec: SystemSpec | None = None, log_dir: Path | None = None,
                 progress: Progress | None = None, *, attach: bool = False,
                 kill_mode: str = "reboot") -> None:
        super().__init__(spec, log_dir, progress)
        self.stack = stack
        self.attach = attach
        self.kill_mode = kill_mode
        self._up_started = False
        self.cluster: ClusterApi | None = None
        self.outputs: dict[str, dict[str, Any]] = {}
        self._secret_files: dict[str, str] = {}  # output -> file holding it, for this bring-up
        self.functions: StackFunctionHost | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def preflight(self) -> None:
        preflight(self.stack)

    def _hold(self) -> contextlib.AbstractContextManager[None]:
        return journal.exclusive(f"stack-{self.stack}")

    def _teardown_record(self) -> dict[str, Any]:
        return {"stack": self.stack, "attach": self.attach}

    def _up(self) -> None:
        run_engine("check", self.stack)
        if self.attach:
            self.progress(f"using the deployed stack {self.stack} as it is")
            self.outputs = run_engine("outputs", self.stack)["outputs"]
        else:
            self.progress(f"pulumi up {self.stack}")
            # From here on the stack may hold resources: a teardown (or a later sweep) destroys it.
            self._up_started = True
            if self.journal is not None:
                self.journal.teardown["up_started"] = True
                self.journal.save()
            self.outputs = run_engine("up", self.stack, self._on_step)["outputs"]
        kubeconfig = self._output("kubeconfig")
        self.cluster = type(self).cluster_api_factory(str(kubeconfig))
        self._wait_ready()

    def _down(self) -> None:
        if self.functions is not None:
            self.functions.close()
            self.functions = None
        if self.attach or not self._up_started:
            return
        self.progress(f"pulumi destroy {self.stack}")
        left = run_engine("destroy", self.stack, self._on_step)["resources"]
        if left:
            raise TestbedError(f"pulumi destroy {self.stack} left {left} resources in the stack; run "
                               f"`pulumi destroy --stack {self.stack}` and check the cloud by hand")

    def _on_step(self, step: dict[str, Any]) -> None:
        if step.get("op") in ("done", "failed"):
            self.progress(f"  {step['done']}/{step['started']} resources "
                          f"({step['op']}: {step.get('urn', '')})")

    def _output(self, key: str, required: bool = True) -> Any:
        entry = self.outputs.get(key)
        if entry is None:
            if required:
                raise TestbedError(f"stack {self.stack} has no output {key!r}: is it deployed from this "
                                   "checkout's program (pulumi up)?")
            return None
        return entry["value"]

    def _wait_ready(self) -> None:
        assert self.cluster is not None
        names = set(self.inventory())
        deadline = time.monotonic() + READY_TIMEOUT_S
        self.progress(f"waiting for {len(names)} nodes to be Ready")
        while True:
            ready = {n.name for n in self.cluster.nodes() if n.ready}
            if names <= ready:
                break
            if time.monotonic() > deadline:
                raise TestbedError(f"nodes not Ready after {READY_TIMEOUT_S:.0f} s: {sorted(names - ready)}")
            time.sleep(2)
        if self.endpoints.gateways:
            self.progress(f"waiting for {len(self.endpoints.gateways)} gateway replicas to be SERVING")
            pending = probe_serving(list(self.endpoints.gateways), READY_TIMEOUT_S)
            if pending:
                raise TestbedError(f"gateways not SERVING after {READY_TIMEOUT_S:.0f} s: "
                                   f"{', '.join(pending)}")

    # -- what it is --------------------------------------------------------------------------------
    def inventory(self) -> dict[str, dict[str, Any]]:
        inv = self._output("inventory")
        return dict(inv) if isinstance(inv, dict) else {}

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(gateways=tuple(self._output("veiGatewayEndpoints", False) or ()),
                         nats_urls=tuple(self._output("natsUrls", False) or ()),
                         openfaas=self._output("openfaasGateway", False),
                         prometheus=self._output("prometheusUrl", False))

    @property
    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(name, str(e.get("address")), str(e.get("realm", "cloud")), (str(e.get("role")),),
                         tuple(self._components_on(name)))
                for name, e in self.inventory().items()]

    def _components_on(self, node: str) -> list[str]:
        if self.cluster is None:
            return []
        found = set()
        for pod in self.cluster.pods("", "app.kubernetes.io/part-of=vei"):
            if pod.node == node:
                found.add(pod.labels.get("app.kubernetes.io/name", pod.name))
        return sorted(found)

    def public_outputs(self) -> dict[str, Any] | None:
        """The stack outputs with every secret redacted (for run.json)."""
        return {k: ("[secret]" if v.get("secret") else v.get("value")) for k, v in self.outputs.items()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "stack": self.stack, "attach": self.attach, "kill_mode": self.kill_mode}

    def ssh_target(self, name: str) -> SshTarget:
        entry = self.inventory().get(name)
        if entry is None:
            raise TestbedError(f"no node {name!r} in the inventory of stack {self.stack}")
        ssh = entry.get("ssh") or {}
        return SshTarget(name, str(entry["address"]), int(ssh.get("port", 22)), str(ssh.get("user", "root")),
                         os.path.expanduser(str(ssh.get("keyPath", "~/.ssh/id_ed25519"))),
                         ssh.get("knownHosts") or os.environ.get("EDGERIG_SSH_KNOWN_HOSTS"))

    def start_client(self, name: str, launch: Any, ready: Callable[[], bool] | None = None,
                     ready_timeout_s: float = 20.0) -> Any:
        clients = self._output(CLIENTS_OUTPUT, False)
        if clients == "cluster" and getattr(launch, "component", "") in ("camera", "sink"):
            raise TestbedError(f"stack {self.stack} runs its own camera and sink (edgerig:vei.clients: "
                               "cluster), which would compete with this experiment's: set "
                               "`edgerig:vei.clients: operator` in its stack file and `pulumi up` again")
        return super().start_client(name, launch, ready, ready_timeout_s)

    def function_host(self) -> StackFunctionHost:
        """OpenFaaS on this stack, for the FaaS experiment (experiments/testbeds/stack_functions.py)."""
        if self.functions is None:
            from experiments.testbeds.openfaas_api import OpenFaaSClient
            from experiments.testbeds.stack_functions import StackFunctionHost

            if not isinstance(self.cluster, FaasClusterApi):
                raise TestbedError(f"the Kubernetes access of stack {self.stack} cannot watch pods or manage "
                                   "HPAs")
            url = self._output("openfaasGateway", False)
            password = self._output("openfaasAdminPassword", False)
            if not url or not password:
                raise TestbedError(f"stack {self.stack} runs no OpenFaaS (no openfaasGateway output): set "
                                   "edgerig:platform.openfaas.enabled: true and `pulumi up`")
            self.functions = StackFunctionHost(self, self.cluster, OpenFaaSClient(str(url), str(password)),
                                               self._functions_namespace())
        return self.functions

    def setting(self, key: str, *path: str, default: str) -> str:
        """A plain setting from the stack file (the model's default where it sets none)."""
        config = (yaml.safe_load((STACKS_DIR / f"Pulumi.{self.stack}.yaml").read_text()) or {}).get("config")
        value: Any = (config or {}).get(key) or {}
        for part in path:
            value = (value or {}).get(part) if isinstance(value, dict) else None
        return str(value or default)

    def _functions_namespace(self) -> str:
        return self.setting("edgerig:platform", "openfaas", "functionsNamespace", default="openfaas-fn")

    def system_namespaces(self) -> dict[str, str]:
        return {self.setting("edgerig:platform", "nats", "namespace", default="nats"): "nats",
                self.setting("edgerig:vei", "namespace", default="vei"): ""}

    def _sink_ready(self) -> bool:
        # The sink is ready once it answers the readiness request on the local-sink subject.
        from experiments.testbeds.readiness import sink_answers

        return sink_answers(list(self.endpoints.nats_urls), nkeys_seed=self.nats_seed_file)

    def _secret_file(self, output: str) -> str | None:
        """A secret output in a file only this user reads (in the run's temp dir), or None without it."""
        value = self._output(output, False)
        if value is None:
            return None
        if output not in self._secret_files:
            path = self.supervisor.temp_dir("credentials") / output
            path.touch(mode=0o600)
            path.write_text(str(value))
            self._secret_files[output] = str(path)
        return self._secret_files[output]

    @property
    def nats_seed_file(self) -> str | None:
        return self._secret_file(NATS_SEED_OUTPUT)

    def client_env(self) -> dict[str, str]:
        env = super().client_env()
        if (token := self._secret_file(GATEWAY_TOKEN_OUTPUT)) is not None:
            env["VEI_GRPC_TOKEN_FILE"] = token
        return env

    def _check_clean(self, check: CleanCheck) -> None:
        assert self.cluster is not None
        names = set(self.inventory())
        check.checked.append("no stale Node objects; every node Ready")
        for node in self.cluster.nodes():
            if node.name not in names:
                check.problems.append(f"stale Node object {node.name} (not in the stack's inventory)")
            elif not node.ready:
                check.problems.append(f"node {node.name} is not Ready")

    # -- faults ------------------------------------------------------------------------------------
    def _fail(self, node: str, kind: str, down_for_s: float | None) -> FaultRecord:
        target = self.ssh_target(node)
        if kind == "cut":
            if down_for_s is None or down_for_s <= 0:
                raise TestbedError("a cut over SSH reverts itself, so it needs down_for_s > 0 up front")
            ssh_faults.inject(target, ssh_faults.cut_command(target, down_for_s), "cut")
            injected = time.time_ns() + int(ssh_faults.CUT_DELAY_S * 1e9)
            return FaultRecord(kind, node, injected, detail={"down_for_s": down_for_s, "via": "ssh"})
        if kind == "kill":
            ssh_faults.inject(target, ssh_faults.kill_command(target, self.kill_mode),
                              f"kill ({self.kill_mode})")
            return FaultRecord(kind, node, time.time_ns(), detail={"via": "ssh", "mode": self.kill_mode})
        with self._openstack() as conn:
            conn.compute.stop_server(self._server_id(conn, node))
        return FaultRecord(kind, node, time.time_ns(), detail={"via": "openstack"})

    def _restore(self, fault: FaultRecord) -> None:
        target = self.ssh_target(fault.node)
        if fault.kind == "hard-stop":
            with self._openstack() as conn:
                conn.compute.start_server(self._server_id(conn, fault.node))
        if fault.kind == "kill" and self.kill_mode == "k3s":
            ssh_faults.inject(target, ssh_faults.start_k3s_command(target), "start K3s again")
        else:
            # A cut reverts itself after down_for_s; a rebooted or restarted VM comes back on its own.
            down_for = float(fault.detail.get("down_for_s", 0))
            remaining = max(0.0, fault.injected_unix_ns / 1e9 + down_for - time.time())
            ssh_faults.wait_reachable(target, remaining + READY_TIMEOUT_S)
        self._wait_ready()

    @contextlib.contextmanager
    def _openstack(self) -> Iterator[Any]:
        try:
            import openstack
        except ImportError as err:
            raise TestbedError(f"the hard-stop fault needs openstacksdk: {err}") from None
        conn = openstack.connect(cloud=os.environ.get("OS_CLOUD"))
        try:
            yield conn
        finally:
            conn.close()

    def _server_id(self, conn: Any, node: str) -> str:
        entry = self.inventory().get(node) or {}
        if entry.get("provider") != "openstack":
            raise TestbedError(f"node {node} is not an OpenStack VM: hard-stop works only on VMs; "
                               "use kill or cut")
        server = conn.compute.find_server(node)
        if server is None:
            raise TestbedError(f"OpenStack has no server named {node}")
        return str(server.id)
