"""`edgerig run faas` on local and emulated testbeds: real replicas, real locust, nothing left."""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from testkit import assert_nothing_left, edgerig, run_env

from experiments.testbeds import netns
from experiments.testbeds.base import TestbedError
from experiments.testbeds.functions import (
    PROBE_FAILURE_THRESHOLD,
    FunctionRequest,
    NodePortEntry,
    NodeSlot,
    ProcessFunctionHost,
    cpu_quotas,
    place_replicas,
    scenario,
)
from experiments.testbeds.ports import port_open, wait_until
from experiments.testbeds.processes import Supervisor
from experiments.testbeds.system import Host

CGROUP = Path("/sys/fs/cgroup/cpu/edgerig-emulated")


def nodes(*spec: tuple[str, str, float]) -> list[NodeSlot]:
    return [NodeSlot(name, realm, vcpus, Host(name)) for name, realm, vcpus in spec]


THESIS = nodes(("main", "cloud", 4), ("worker", "cloud", 2), ("edge", "edge", 1))


def test_fixed_replicas_follow_the_scenario() -> None:
    assert place_replicas(scenario("base-cloud"), 3, THESIS) == {"main": 2, "worker": 1}
    assert place_replicas(scenario("base-edge"), 3, THESIS) == {"edge": 3}
    assert place_replicas(scenario("e1"), 3, THESIS) == {"edge": 2, "main": 1}      # round(2.4)
    assert place_replicas(scenario("e1", 100), 4, THESIS) == {"edge": 4}
    assert place_replicas(scenario("e1", 0), 3, THESIS) == {"main": 2, "worker": 1}
    assert place_replicas(scenario("base-cloud"), 7, THESIS) == {"main": 5, "worker": 2}
    with pytest.raises(TestbedError, match="needs a node in the edge realm"):
        place_replicas(scenario("base-edge"), 3, nodes(("local", "cloud", 2)))


def test_cpu_quotas_keep_the_thesis_ratio() -> None:
    quotas = cpu_quotas({"main": 4, "worker": 2, "edge": 1}, cores=2.0)
    assert quotas == {"main": pytest.approx(8 / 7, abs=1e-3), "worker": pytest.approx(4 / 7, abs=1e-3),
                      "edge": pytest.approx(2 / 7, abs=1e-3)}
    assert sum(quotas.values()) == pytest.approx(2.0, abs=1e-3)


def test_a_replica_too_busy_for_one_probe_stays_ready_as_under_a_kubelet(tmp_path: Path) -> None:
    """Readiness follows OpenFaaS's probe of function pods: 1 s timeout, 3 failures in a row."""
    with Supervisor(log_dir=tmp_path) as sup:
        host = ProcessFunctionHost("local", sup, nodes(("local", "cloud", 2)))
        deployment = host.deploy(FunctionRequest("nodeinfo", scenario("base-cloud"), replicas=1))
        try:
            deployment.wait_ready(20)
            replica = deployment.replicas[0]
            os.kill(replica.child.pid, signal.SIGSTOP)  # the replica answers nothing: each probe times out
            try:
                seen = [replica.state().ready for _ in range(PROBE_FAILURE_THRESHOLD)]
                assert deployment.scaling().ready_replicas == 0
            finally:
                os.kill(replica.child.pid, signal.SIGCONT)
            assert seen == [True] * (PROBE_FAILURE_THRESHOLD - 1) + [False]
            assert replica.state().ready and deployment.scaling().ready_replicas == 1  # one success
        finally:
            host.close()
    assert not replica.child.alive()


@pytest.mark.parametrize(("args", "message"), [
    (["--function", "nodeinf"], "unknown function nodeinf"),
    (["--scenario", "e2"], "unknown scenario e2"),
    (["--edge-weight", "101"], "--edge-weight must be 0-100"),
    (["--edge-weight", "-1"], "--edge-weight must be 0-100"),
    (["--ramp-s", "0"], "--ramp-s must be > 0"),
    (["--ramp-s", "-5"], "--ramp-s must be > 0"),
    (["--scenario", "e1"], "needs an edge node"),
    (["--target", "emulated:5"], "thesis's 3 VMs"),
    (["--cpu-request", "lots"], "--cpu-request must be a Kubernetes CPU quantity"),
])
def test_bad_input_is_refused_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = edgerig(["run", "faas", "--out", str(out), "--no-progress", *args], env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert not out.exists()
    assert_nothing_left(marker, tmp)


@pytest.mark.slow
def test_local_run_writes_every_file_and_leaves_nothing(tmp_path: Path) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = edgerig(["run", "faas", "--function", "nodeinfo,dd", "--users", "3",
                    "--ramp-s", "2", "--hold-s", "1", "--replicas", "2", "--out", str(out),
                    "--no-progress"], env, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "skipping Base Edge" in proc.stderr and "skipping E1" in proc.stderr
    assert "autoscaling is not emulated, it is measured only on a cluster" in " ".join(proc.stderr.split())
    printed = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [p["cell"] for p in printed] == ["nodeinfo/base-cloud", "dd/base-cloud"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["cells"]) == {"nodeinfo/base-cloud", "dd/base-cloud"}
    assert set(summary["skipped_scenarios"]) == {"base-edge", "e1"}
    run = json.loads((out / "run.json").read_text())
    assert run["experiment"] == "faas" and run["clean_check"]["clean"] and run["run"]["completed"]
    for cell in ("nodeinfo-base-cloud", "dd-base-cloud"):
        s = json.loads((out / cell / "summary.json").read_text())
        assert s["requests"] > 10 and s["errors"] == 0 and s["error_rate"] == 0
        assert 0 < s["p50_ms"] <= s["p95_ms"] and s["requests_per_s"] > 0
        assert s["max_pods"] == {"cloud": 2} and s["vus_max"] == 3
        assert "measured only on a cluster" in s["autoscaling"]
        for name in ("requests.csv", "pods.csv", "hpa.csv", "faas.png"):
            assert (out / cell / name).stat().st_size > 0
        with (out / cell / "hpa.csv").open() as f:
            timeline = list(csv.DictReader(f))
        assert max(int(r["vus"]) for r in timeline) == 3 and {r["ready_cloud"] for r in timeline} >= {"2"}
    with (out / "nodeinfo-base-cloud" / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["realm"] for r in rows} == {"cloud"} and {r["node"] for r in rows} == {"local"}
    # every answer names its replica, though both share this machine's host name
    with (out / "nodeinfo-base-cloud" / "pods.csv").open() as f:
        pods = {r["pod"] for r in csv.DictReader(f)}
    assert {r["hostname"] for r in rows} == pods == {"nodeinfo-local-0", "nodeinfo-local-1"}
    assert_nothing_left(marker, tmp)


@pytest.mark.root
@pytest.mark.slow
def test_emulated_run_of_all_three_scenarios(tmp_path: Path) -> None:
    env, marker, tmp = run_env(tmp_path)
    out = tmp_path / "results"
    proc = edgerig(["run", "faas", "--target", "emulated", "--function", "nodeinfo",
                    "--users", "4", "--ramp-s", "3", "--hold-s", "2", "--out", str(out),
                    "--no-progress"], env, timeout=400)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["cells"]) == {"nodeinfo/base-cloud", "nodeinfo/base-edge", "nodeinfo/e1"}
    quotas = {n["name"]: n["cpu_quota_cores"] for n in summary["functions"]["nodes"]}
    assert quotas["main"] == pytest.approx(2 * quotas["worker"], rel=0.01)
    assert quotas["worker"] == pytest.approx(2 * quotas["edge"], rel=0.01)
    cells = summary["cells"]
    assert cells["nodeinfo/base-cloud"]["max_pods"] == {"cloud": 3}
    edge = cells["nodeinfo/base-edge"]
    assert edge["answers_per_realm"] == {"edge": edge["answered"]}
    e1 = cells["nodeinfo/e1"]
    assert e1["max_pods"] == {"edge": 2, "cloud": 1} and e1["first_cloud_pod_s"] == 0.0
    # Requests enter at the edge node, whose node port spreads *connections* over edge and cloud
    # pods, as kube-proxy does. Each locust user keeps one connection, so with 4 users which realms
    # answer is chance: that the spread reaches every replica is the node-port test below.
    answers = e1["answers_per_realm"]
    assert e1["answered"] > 0 and sum(answers.values()) == e1["answered"]
    assert set(answers) <= {"edge", "cloud"}
    assert (out / "nodeinfo-base.png").stat().st_size > 0
    assert_nothing_left(marker, tmp)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "erf-" not in left and not CGROUP.exists()


# Its own small network, so the test needs no testbed: an entry node and three replica nodes.
NODE_PORT_NET = netns.NetworkSpec(prefix="ernp-", bridge="ernpbr0", veth_prefix="ernpv",
                                  subnet="10.233.0.0/24", first_host=11)
# A replica: answers every connection with its node's name, then closes it.
NAME_SERVER = ("import socket, sys\n"
               "s = socket.create_server((sys.argv[1], 8080))\n"
               "while True:\n"
               "    c, _ = s.accept(); c.sendall(sys.argv[2].encode()); c.close()\n")


def _running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def _answer_from(address: str, port: int) -> str:
    with socket.create_connection((address, port), timeout=5) as conn:
        return conn.recv(64).decode()


@pytest.mark.root
def test_node_port_spreads_fresh_connections_over_every_replica_in_even_shares() -> None:
    entry, *replicas = netns.nodes_for(NODE_PORT_NET, ["entry", "r1", "r2", "r3"])
    netns.sweep(NODE_PORT_NET)
    servers: list[subprocess.Popen[bytes]] = []
    port = NodePortEntry(Host("entry", entry), 31080, [(r.address, 8080) for r in replicas])
    try:
        netns.build(NODE_PORT_NET, [entry, *replicas])
        for r in replicas:
            servers.append(subprocess.Popen(Host(r.name, r).argv([sys.executable, "-c", NAME_SERVER,
                                                                   r.address, r.name])))
        for r, server in zip(replicas, servers, strict=True):
            wait_until(functools.partial(port_open, r.address, 8080), 10, f"the replica on {r.name}",
                       alive=functools.partial(_running, server))
        port.install()
        assert port.url == f"http://{entry.address}:31080"
        # Even shares come from the rule chain (1/3, then 1/2 of the rest, then the rest); sampling
        # alone would barely tell them from uneven ones.
        rules = subprocess.run(port.entry.argv(["iptables", "-t", "nat", "-S", port.chain]),
                               capture_output=True, text=True, check=True).stdout
        assert [round(float(p), 4) for p in re.findall(r"--probability (\S+)", rules)] == [0.3333, 0.5]
        assert rules.count("-j DNAT") == 3
        seen = Counter(_answer_from(entry.address, 31080) for _ in range(120))
    finally:
        port.remove()
        for server in servers:
            server.kill()
            server.wait()
        netns.sweep(NODE_PORT_NET)
    # and each replica is reached: 40 of 120 expected, sd 5.2; outside 15-70 about one chance in a million
    assert set(seen) == {"r1", "r2", "r3"} and all(15 <= n <= 70 for n in seen.values()), seen
    assert netns.leftovers(NODE_PORT_NET) == []
