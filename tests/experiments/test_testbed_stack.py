"""The stack testbed with only the Pulumi engine and the Kubernetes API replaced.

The engine runs through pulumi.automation's own seam (a PulumiCommand stand-in, automation_support.py);
Kubernetes through the testbed's ClusterApi seam. Everything the stack's outputs point at is real:
SSH test hosts from the fleet, each running a NATS server, a gateway and a vision app in its own
network namespace. So after `up` everything runs for real: waiting for SERVING, streaming from the
operator's side, the SSH cut and its self-revert, collecting records, and the tear-down.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from automation_support import write_state

from experiments.failover.config import RunConfig
from experiments.failover.run import run_once as failover_once
from experiments.latency.config import LatencyConfig
from experiments.latency.run import run_latency
from experiments.runs.repeat import RunPlan, run_repeated
from experiments.testbeds import journal, parse_target
from experiments.testbeds.base import SystemSpec, TestbedError
from experiments.testbeds.cluster_api import NodeState, PodState
from experiments.testbeds.fleet.testbed import FleetTestbed
from experiments.testbeds.stack import StackTestbed

HERE = Path(__file__).resolve().parent
FAKE_KUBECONFIG = "apiVersion: v1\nkind: Config\n# stand-in: nothing Kubernetes runs here\n"


class FakeCluster:
    """Kubernetes as the fleet would look to it: every host a node (not Ready at first), one pod per
    component on its host."""

    def __init__(self, fleet: FleetTestbed) -> None:
        self.fleet = fleet
        self.node_calls = 0

    def nodes(self) -> list[NodeState]:
        self.node_calls += 1
        ready = self.node_calls > 1  # the testbed has to wait for Ready
        return [NodeState(n.name, ready, {}) for n in self.fleet.nodes]

    def pods(self, namespace: str, selector: str = "") -> list[PodState]:
        return [PodState(f"vei-{c}-{n.name}", "vei", n.name, "Running", True,
                         {"app.kubernetes.io/name": f"vei-{c}"})
                for n in self.fleet.nodes for c in n.components if c != "nats"]


class EmptyCluster:
    """A cluster with nothing in it (a stack whose inventory is empty)."""

    def nodes(self) -> list[NodeState]:
        return []

    def pods(self, namespace: str, selector: str = "") -> list[PodState]:
        return []


def stack_outputs(fleet: FleetTestbed) -> dict[str, tuple[Any, bool]]:
    assert fleet.fleet is not None
    inventory = {n.name: {"address": n.address, "realm": "edge", "role": "server", "provider": "static",
                          "ssh": {"user": "root", "port": 22, "keyPath": str(fleet.fleet.key_path),
                                  "knownHosts": str(fleet.fleet.known_hosts)}}
                 for n in fleet.nodes}
    return {"inventory": (inventory, False), "kubeconfig": (FAKE_KUBECONFIG, True),
            "veiGatewayEndpoints": (list(fleet.endpoints.gateways), False),
            "natsUrls": (list(fleet.endpoints.nats_urls), False), "veiClients": ("operator", False),
            "grafanaPassword": ("not-a-real-password", True)}


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The engine process of the stack testbed answers from the stand-in; returns its state file."""
    state = tmp_path / "pulumi-state.json"
    monkeypatch.setenv("EDGERIG_PULUMI_COMMAND", "automation_support:make")
    monkeypatch.setenv("EDGERIG_TEST_PULUMI_STATE", str(state))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    return state


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[FleetTestbed]:
    with FleetTestbed(SystemSpec(nodes=3), log_dir=tmp_path / "fleet-logs") as tb:
        yield tb


def calls(state: Path, first: str) -> list[list[str]]:
    return [c for c in json.loads(state.read_text())["calls"] if c[0] == first]


@pytest.mark.root  # SSH test hosts in network namespaces
@pytest.mark.slow
def test_latency_and_a_cut_over_ssh_on_a_stack(tmp_path: Path, engine: Path, fleet: FleetTestbed,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(engine, "pi-k3s", stack_outputs(fleet))
    monkeypatch.setattr(StackTestbed, "cluster_api_factory", lambda kubeconfig: FakeCluster(fleet))

    # latency: up, wait Ready + SERVING, stream from the operator's side, collect, destroy
    out = tmp_path / "latency"
    cfg = LatencyConfig(target="stack:pi-k3s", frames=60, fps=20, quiet_s=0, floor_frames=20, out=out,
                        progress=False)
    [summary] = run_latency(cfg)
    assert (summary["frames_sent"], summary["lost"]) == (60, 0)
    assert summary["testbed"] == "stack" and summary["cpu"] is None  # CPU of a stack: from Prometheus
    run = json.loads((out / "run.json").read_text())
    assert run["testbed"]["kind"] == "stack" and run["testbed"]["stack"] == "pi-k3s"
    assert run["stack_outputs"]["kubeconfig"] == run["stack_outputs"]["grafanaPassword"] == "[secret]"
    assert run["stack_outputs"]["veiClients"] == "operator"
    assert run["stack_file"]["sha256"] and run["clean_check"]["clean"]
    assert FAKE_KUBECONFIG not in (out / "run.json").read_text()
    assert len(calls(engine, "up")) == 1 and len(calls(engine, "destroy")) == 1
    assert (out / "records.csv").exists() and (out / "sink.jsonl").stat().st_size > 0

    # failover: the SSH cut takes the node off for 3 s and it lifts the drop itself
    victim = fleet.nodes[0].name
    plan = RunPlan(experiment="failover", target=parse_target("pi-k3s"), out=tmp_path / "failover",
                   config={}, system=SystemSpec())
    cfg_f = RunConfig(warmup_s=1, baseline_s=3, down_for_s=3, margin_s=2, cap_s=30)
    [result] = run_repeated(plan, lambda ctx: failover_once(cfg_f, "all", "cut", victim, ctx))
    assert result["testbed"] == "stack" and result["node"] == victim
    assert result["lost"] == 0 and result["duplicates_delivered"] == 0
    assert result["outage_s"] is not None and result["outage_s"] <= 3.0
    assert result["node_components"] == ["vei-gateway", "vei-vision"]
    assert len(calls(engine, "up")) == 2 and len(calls(engine, "destroy")) == 2  # a fresh stack per run
    # the drop is gone from the host again, and nothing of the fault is left running there
    rules = subprocess.run(["ip", "netns", "exec", f"erh-{victim}", "iptables", "-S"], capture_output=True,
                           text=True, check=True).stdout
    assert "DROP" not in rules


def test_missing_prerequisites_are_named_before_anything_is_created(
        tmp_path: Path, engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(engine, "pi-k3s", {}, token=False)
    with pytest.raises(TestbedError, match=r"has no edgerig:k3sToken: run `pulumi config set --secret"):
        StackTestbed("pi-k3s", log_dir=tmp_path / "logs").up()
    write_state(engine, "some-other-stack", {})
    with pytest.raises(TestbedError, match=r"stack 'pi-k3s' does not exist .*pulumi stack init pi-k3s"):
        StackTestbed("pi-k3s").up()
    assert not [c for c in json.loads(engine.read_text())["calls"] if c[0] in ("up", "destroy")]
    # nothing was deployed, so nothing is left to sweep either
    assert not [j for j in journal.live_journals("stack") if j.owner_pid == os.getpid()]
    for var in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(TestbedError, match=r"creates OpenStack VMs but no OpenStack credentials are set"):
        StackTestbed("openstack-kubeedge").preflight()


def test_a_deployed_stack_is_used_as_it_is_without_up_or_destroy(
        tmp_path: Path, engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_state(engine, "pi-k3s", {"kubeconfig": (FAKE_KUBECONFIG, True), "inventory": ({}, False)})
    state = json.loads(engine.read_text())
    state["stacks"]["pi-k3s"]["deployed"] = True
    engine.write_text(json.dumps(state))
    monkeypatch.setattr(StackTestbed, "cluster_api_factory", lambda kubeconfig: EmptyCluster())
    with StackTestbed("pi-k3s", attach=True) as tb:
        assert tb.public_outputs() == {"kubeconfig": "[secret]", "inventory": {}}
        assert tb.check_clean().clean
    assert not calls(engine, "up") and not calls(engine, "destroy")
    with pytest.raises(TestbedError, match="is not up"):
        tb.start_sink(tmp_path / "sink.jsonl")


def test_the_operators_clients_get_the_stacks_credentials_as_private_files(
        engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The NATS seed and the gateway token (secret outputs) reach the operator's processes as files only
    its user reads, named in their environment; run.json never shows them; the files go at down()."""
    seed, token = "SU" + os.urandom(8).hex(), os.urandom(8).hex()  # made per run, never a real credential
    write_state(engine, "pi-k3s", {"kubeconfig": (FAKE_KUBECONFIG, True), "inventory": ({}, False),
                                   "natsOperatorNkeySeed": (seed, True), "veiGatewayToken": (token, True)})
    state = json.loads(engine.read_text())
    state["stacks"]["pi-k3s"]["deployed"] = True
    engine.write_text(json.dumps(state))
    monkeypatch.setattr(StackTestbed, "cluster_api_factory", lambda kubeconfig: EmptyCluster())
    with StackTestbed("pi-k3s", attach=True) as tb:
        env = tb.client_env()
        files = {var: Path(env[var]) for var in ("VEI_NATS_NKEY_SEED_FILE", "VEI_GRPC_TOKEN_FILE")}
        assert files["VEI_NATS_NKEY_SEED_FILE"] == Path(str(tb.nats_seed_file))
        assert files["VEI_NATS_NKEY_SEED_FILE"].read_text() == seed
        assert files["VEI_GRPC_TOKEN_FILE"].read_text() == token
        assert all(f.stat().st_mode & 0o077 == 0 for f in files.values())
        assert seed not in json.dumps(tb.public_outputs()) and token not in json.dumps(tb.describe())
    assert not any(f.exists() for f in files.values())


def test_the_engine_runs_in_a_process_of_its_own() -> None:
    """pulumi.automation serves engine events over gRPC; the orchestrator must not load it."""
    code = "import experiments.testbeds.stack, sys; print('pulumi.automation' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_hard_stop_goes_through_the_openstack_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenStack cannot run here: a stand-in for openstacksdk records the calls. The node's "sshd" is
    a real listener on loopback that sends an SSH banner once the VM is started again."""
    import socket
    import threading
    import types

    calls: list[tuple[str, str]] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    servers: list[threading.Thread] = []

    def serve() -> None:
        listener.listen()
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-stand-in\r\n")
            conn.close()

    class Compute:
        def find_server(self, name: str) -> Any:
            calls.append(("find", name))
            return types.SimpleNamespace(id=f"id-{name}")

        def stop_server(self, server_id: str) -> None:
            calls.append(("stop", server_id))

        def start_server(self, server_id: str) -> None:
            calls.append(("start", server_id))
            servers.append(threading.Thread(target=serve, daemon=True))  # the VM boots: sshd answers
            servers[-1].start()

    conn = types.SimpleNamespace(compute=Compute(), close=lambda: calls.append(("close", "")))
    monkeypatch.setitem(sys.modules, "openstack", types.SimpleNamespace(connect=lambda cloud=None: conn))
    tb = StackTestbed("openstack-kubeedge")
    tb.outputs = {"inventory": {"value": {
        "edge": {"address": "127.0.0.1", "provider": "openstack", "ssh": {"user": "ubuntu", "port": port}},
        "pi": {"address": "127.0.0.1", "provider": "static", "ssh": {"user": "pi", "port": port}}},
        "secret": False}}

    class Ready:
        def nodes(self) -> list[NodeState]:
            return [NodeState("edge", True, {}), NodeState("pi", True, {})]

        def pods(self, namespace: str, selector: str = "") -> list[PodState]:
            return []

    tb.cluster = Ready()
    try:
        fault = tb.fail("edge", "hard-stop", down_for_s=1)
        assert fault.detail == {"via": "openstack"} and ("stop", "id-edge") in calls
        tb.restore(fault)
        assert ("start", "id-edge") in calls and fault.restored_unix_ns is not None
        with pytest.raises(TestbedError, match="node pi is not an OpenStack VM"):
            tb.fail("pi", "hard-stop")
        with pytest.raises(TestbedError, match="cannot inject fault 'unplug'"):
            tb.fail("edge", "unplug")
    finally:
        # close() alone leaves a thread blocked in accept() on a socket that keeps listening, and
        # answering with the banner, for the rest of the session; shutdown() wakes it first.
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for thread in servers:
            thread.join(timeout=5)
    assert not any(t.is_alive() for t in servers), "the stand-in sshd outlived its test"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
