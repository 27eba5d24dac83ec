"""The narrow interface between the Pulumi program (and `edgerig cluster`) and host configuration.

Order: cloud hosts before edge hosts, servers before agents; the first server (cluster-init) alone,
every further server alone, then cloud agents, then edge agents / EdgeCore nodes. Pis go through
pyinfra, VMs through ansible-runner. Any failure raises HostStepError(host, step, tool message).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra import versions
from infra.hosts import ansible, artefacts, pyinfra_runner
from infra.hosts.errors import HostStepError, RunSummary
from infra.hosts.inventory import SshTarget, targets_from_nodes
from infra.hosts.plan import GuardedCommand, HostPlan, install_plan, reset_commands, tool_for
from infra.hosts.render import API_PORT, K3S_BIN
from infra.hosts.ssh import run_ssh
from infra.model import Node, Testbed, nodes_named

Progress = Callable[[str, str], None]


@dataclass
class InstallResult:
    kubeconfig: str | None  # from the first server, server address rewritten; None when K3s cannot run
    reason: str = ""  # why kubeconfig is None
    summary: RunSummary = field(default_factory=RunSummary)


def install_stages(testbed: Testbed, selected: Sequence[Node]) -> list[list[Node]]:
    names = {n.name for n in selected}
    servers = [n for n in testbed.servers if n.name in names]
    rest = [n for n in selected if n.role != "server"]
    stages = [[s] for s in servers]
    stages += [
        g for g in ([n for n in rest if n.realm == "cloud"], [n for n in rest if n.realm == "edge"]) if g
    ]
    return stages


def _ssh(target: SshTarget, command: str) -> subprocess.CompletedProcess[str]:
    return run_ssh(target, command)


def _systemd(target: SshTarget) -> bool:
    return _ssh(target, "test -d /run/systemd/system").returncode == 0


def _run_stage(
    plans: list[HostPlan],
    targets: dict[str, SshTarget],
    stage: str,
    progress: Progress | None,
    commands: dict[str, list[GuardedCommand]] | None = None,
) -> RunSummary:
    summary = RunSummary()
    for tool, runner in (("pyinfra", pyinfra_runner.run), ("ansible", ansible.run)):
        group = [p for p in plans if p.tool == tool]
        if group:
            summary.merge(runner(group, targets, stage=stage, commands=commands, progress=progress))
    return summary


def _binaries(
    testbed: Testbed, nodes: Sequence[Node], sums: Mapping[str, str | None] | None, cache_dir: Path | None
) -> dict[str, dict[str, artefacts.VerifiedBinary]]:
    """Download and verify everything first: a bad sum stops the run before any host is touched."""
    out: dict[str, dict[str, artefacts.VerifiedBinary]] = {}
    for arch in sorted({n.arch for n in nodes}):
        wanted = [artefacts.k3s_artefact(testbed, arch)]
        if testbed.kubeedge.enabled:
            wanted.append(artefacts.keadm_artefact(testbed, arch))
        out[arch] = {
            a.name: artefacts.fetch(testbed, a, sums=sums, cache_dir=cache_dir or artefacts.DEFAULT_CACHE)
            for a in wanted
        }
    return out


def install(
    testbed: Testbed,
    *,
    nodes: Sequence[str] | None = None,
    progress: Progress | None = None,
    addresses: Mapping[str, str] | None = None,
    extra_tls_san: Sequence[str] | None = None,
    known_hosts: str | None = None,
    boot_delay: int | None = None,
    artefact_sums: Mapping[str, str | None] | None = None,
    artefact_cache: Path | None = None,
) -> InstallResult:
    """Install K3s (and KubeEdge) on `nodes` (default: all), in the documented order.

    `addresses`: node name -> reachable address (OpenStack VMs learn theirs at deploy time);
    `extra_tls_san`: further API addresses such as floating IPs.
    """
    selected = nodes_named(testbed, nodes)
    addr = dict(addresses or {})
    targets = targets_from_nodes(list(testbed.nodes), addr, known_hosts)
    binaries = _binaries(testbed, selected, artefact_sums, artefact_cache)
    result = InstallResult(kubeconfig=None)
    kubeedge_token: str | None = None
    for stage in install_stages(testbed, selected):
        if any(n.role == "edge" for n in stage) and kubeedge_token is None:
            kubeedge_token = _kubeedge_token(testbed, targets, result.summary)
        plans = [
            install_plan(
                testbed,
                n,
                binaries[n.arch],
                addresses=addr,
                extra_tls_san=list(extra_tls_san or []),
                kubeedge_token=kubeedge_token,
                boot_delay=boot_delay,
            )
            for n in stage
        ]
        for plan in plans:
            if progress:
                progress(plan.node.name, f"install as {plan.node.role} ({plan.tool})")
        result.summary.merge(_run_stage(plans, targets, "install", progress))
    first = targets[testbed.first_server.name]
    if not _systemd(first):
        result.reason = (
            f"K3s was not started on {first.name}: no running systemd there (test fleet), "
            "so there is no kubeconfig to fetch"
        )
        return result
    _label_through_api(testbed, selected, first)
    fetched = _ssh(first, "cat /etc/rancher/k3s/k3s.yaml")
    if fetched.returncode != 0:
        raise HostStepError(first.name, "fetch kubeconfig", fetched.stderr)
    result.kubeconfig = fetched.stdout.replace(
        f"https://127.0.0.1:{API_PORT}", f"https://{first.address}:{API_PORT}"
    )
    return result


def _label_through_api(testbed: Testbed, selected: Sequence[Node], first: SshTarget) -> None:
    """Labels NodeRestriction forbids a kubelet to set on itself (e.g. node-role.kubernetes.io/edge)."""
    for node in selected:
        labels = testbed.api_labels(node)
        if not labels or node.role == "edge":  # keadm labels its EdgeCore nodes itself
            continue
        pairs = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(labels.items()))
        done = _ssh(first, f"{K3S_BIN} kubectl label node {node.name} {pairs} --overwrite")
        if done.returncode != 0:
            raise HostStepError(node.name, "label node through the API", done.stderr)


def _kubeedge_token(testbed: Testbed, targets: dict[str, SshTarget], summary: RunSummary) -> str | None:
    cloudcore = testbed.cloudcore_node
    if cloudcore is None:
        return None
    target = targets[cloudcore.name]
    if not _systemd(target):
        summary.notes.setdefault(cloudcore.name, []).append(
            "keadm gettoken skipped: CloudCore cannot run without systemd (test fleet); edges get no token"
        )
        return None
    got = _ssh(target, "keadm gettoken --kube-config=/etc/rancher/k3s/k3s.yaml")
    if got.returncode != 0 or not got.stdout.strip():
        raise HostStepError(cloudcore.name, "keadm gettoken", got.stderr)
    return got.stdout.strip().splitlines()[-1]


def reset(
    testbed: Testbed,
    nodes: Sequence[str],
    *,
    progress: Progress | None = None,
    addresses: Mapping[str, str] | None = None,
    known_hosts: str | None = None,
) -> RunSummary:
    """Uninstall `nodes` (edges and agents first, servers last, in reverse) and delete their Node objects."""
    selected = nodes_named(testbed, nodes)
    targets = targets_from_nodes(list(testbed.nodes), dict(addresses or {}), known_hosts)
    summary = RunSummary()
    stages = list(reversed(install_stages(testbed, selected)))
    for stage in stages:
        plans = [HostPlan(node=n, tool=tool_for(n)) for n in stage]
        commands = {n.name: reset_commands(testbed, n) for n in stage}
        for n in stage:
            if progress:
                progress(n.name, "reset")
        summary.merge(_run_stage(plans, targets, "reset", progress, commands))
    _delete_node_objects(testbed, selected, targets, summary)
    return summary


def _delete_node_objects(
    testbed: Testbed, selected: Sequence[Node], targets: dict[str, SshTarget], summary: RunSummary
) -> None:
    """Delete Node objects and K3s node-password secrets (the stale-password trap on rejoin)."""
    names = {n.name for n in selected}
    survivors = [s for s in testbed.servers if s.name not in names]
    if not survivors or not _systemd(targets[survivors[0].name]):
        for n in selected:
            summary.notes.setdefault(n.name, []).append(
                "Node object not deleted: no running cluster left to delete it from"
            )
        return
    api = targets[survivors[0].name]
    for n in selected:
        cmd = (
            f"{K3S_BIN} kubectl delete node {n.name} --ignore-not-found && {K3S_BIN} kubectl -n kube-system "
            f"delete secret {n.name}.node-password.k3s --ignore-not-found"
        )
        done = _ssh(api, cmd)
        if done.returncode != 0:
            raise HostStepError(n.name, "delete Node object", done.stderr)


__all__ = ["InstallResult", "install", "install_stages", "reset", "versions"]
