"""The narrow interface between the Pulumi program (and `edgerig cluster`) and host configuration.

Order: the first server (cluster-init) alone, every further server alone, then cloud agents, then
edge agents / EdgeCore nodes. Pis go through pyinfra, VMs through ansible-runner, both on the same run
directory (run_dir.py) a user can drive with the tools' own CLIs. Every artefact is checked against its
pin and downloaded before any host is touched. Any failure raises HostStepError(host, step, message).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra import versions
from infra.hosts import ansible, artefacts, node_objects, pyinfra_runner, run_dir
from infra.hosts.errors import HostStepError, RunSummary
from infra.hosts.inventory import SshTarget, targets_from_nodes
from infra.hosts.plan import HostPlan, install_plan, reset_plan
from infra.hosts.render import (
    API_PORT,
    K3S_AGENT_TOKEN,
    K3S_BIN,
    K3S_KUBECONFIG,
    K3S_SERVER_TOKEN,
    KEADM_BIN,
    JoinTokens,
)
from infra.hosts.ssh import run_ssh
from infra.model import Node, Testbed, nodes_named
from infra.versions import Pin

Progress = Callable[[str, str], None]
KUBECTL = f"{K3S_BIN} kubectl"


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


def _ssh(target: SshTarget, command: str, *, root: bool = False) -> subprocess.CompletedProcess[str]:
    return run_ssh(target, command, root=root)


def _systemd(target: SshTarget) -> bool:
    return _ssh(target, "test -d /run/systemd/system").returncode == 0


def _run_stage(
    plans: Sequence[HostPlan],
    testbed: Testbed,
    targets: dict[str, SshTarget],
    stage: str,
    progress: Progress | None,
) -> RunSummary:
    summary = RunSummary()
    for plan in plans:
        summary.notes.setdefault(plan.node.name, []).extend(plan.notes)
    with tempfile.TemporaryDirectory(prefix="edgerig-hosts-") as tmp:
        written = run_dir.write(Path(tmp) / "run", testbed, plans, targets)
        for tool in ("pyinfra", "ansible"):
            hosts = [p.node.name for p in plans if p.tool == tool]
            if not hosts:
                continue
            if tool == "pyinfra":
                summary.merge(pyinfra_runner.run(written, hosts, targets, stage=stage, progress=progress))
            else:
                summary.merge(ansible.run(written, hosts, stage=stage, progress=progress))
    return summary


def verified_files(
    testbed: Testbed,
    nodes: Sequence[Node],
    pins: Mapping[str, Pin] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, dict[str, artefacts.VerifiedFile]]:
    """node name -> its verified release files. Every pin is checked first (all missing ones named at
    once), then every file downloaded and verified: a bad digest stops the run before any host."""
    pins = versions.ARTEFACT_PINS if pins is None else pins
    artefacts.check_pins(testbed, nodes, pins)
    cache: dict[str, artefacts.VerifiedFile] = {}
    out: dict[str, dict[str, artefacts.VerifiedFile]] = {}
    for node in nodes:
        out[node.name] = {}
        for name, item in artefacts.host_files(testbed, node).items():
            if item.key not in cache:
                cache[item.key] = artefacts.fetch(
                    testbed, item, pins=pins, cache_dir=cache_dir or artefacts.DEFAULT_CACHE
                )
            out[node.name][name] = cache[item.key]
    return out


def plans_for(
    testbed: Testbed,
    nodes: Sequence[Node],
    files: Mapping[str, Mapping[str, artefacts.VerifiedFile]],
    *,
    addresses: dict[str, str],
    extra_tls_san: Sequence[str] | None,
    kubeedge_token: str | None,
    boot_delay: int | None,
    pins: Mapping[str, Pin] | None = None,
    join_tokens: JoinTokens | None = None,
) -> list[HostPlan]:
    return [
        install_plan(
            testbed,
            n,
            files[n.name],
            addresses=addresses,
            extra_tls_san=list(extra_tls_san or []),
            kubeedge_token=kubeedge_token,
            boot_delay=boot_delay,
            pins=pins,
            join_tokens=join_tokens,
        )
        for n in nodes
    ]


def prepare(
    testbed: Testbed,
    out_dir: Path,
    *,
    nodes: Sequence[str] | None = None,
    addresses: Mapping[str, str] | None = None,
    extra_tls_san: Sequence[str] | None = None,
    known_hosts: str | None = None,
    boot_delay: int | None = None,
    artefact_pins: Mapping[str, Pin] | None = None,
    artefact_cache: Path | None = None,
) -> tuple[run_dir.RunDir, RunSummary]:
    """Write the run directory users drive with `ansible-playbook` and `pyinfra` themselves, and the
    Node-object steps as node-objects.sh. The edges' join token is fetched from CloudCore when it runs;
    otherwise their join is left out (noted): prepare again once CloudCore runs."""
    selected = nodes_named(testbed, nodes)
    addr = dict(addresses or {})
    targets = targets_from_nodes(testbed, addr, known_hosts)
    files = verified_files(testbed, selected, artefact_pins, artefact_cache)
    summary = RunSummary()
    token = _kubeedge_token(testbed, targets, summary) if any(n.role == "edge" for n in selected) else None
    first = targets.get(testbed.first_server.name)
    later = any(_joins_k3s(testbed, n) for n in selected)
    join_tokens = _join_tokens(first, summary) if first is not None and later else None
    plans = plans_for(
        testbed, selected, files, addresses=addr, extra_tls_san=extra_tls_san, kubeedge_token=token,
        boot_delay=boot_delay, pins=artefact_pins, join_tokens=join_tokens,
    )
    for plan in plans:
        summary.notes.setdefault(plan.node.name, []).extend(plan.notes)
    written = run_dir.write(out_dir, testbed, plans, targets)
    script = written.path / node_objects.SCRIPT
    script.write_text(node_objects.script(testbed, selected))
    script.chmod(0o700)
    return written, summary


def install(
    testbed: Testbed,
    *,
    nodes: Sequence[str] | None = None,
    progress: Progress | None = None,
    addresses: Mapping[str, str] | None = None,
    extra_tls_san: Sequence[str] | None = None,
    known_hosts: str | None = None,
    boot_delay: int | None = None,
    artefact_pins: Mapping[str, Pin] | None = None,
    artefact_cache: Path | None = None,
) -> InstallResult:
    """Install K3s (and KubeEdge) on `nodes` (default: all), in the documented order.

    `addresses`: node name -> reachable address (OpenStack VMs learn theirs at deploy time);
    `extra_tls_san`: further API addresses such as floating IPs.
    """
    selected = nodes_named(testbed, nodes)
    addr = dict(addresses or {})
    targets = targets_from_nodes(testbed, addr, known_hosts)
    files = verified_files(testbed, selected, artefact_pins, artefact_cache)
    result = InstallResult(kubeconfig=None)
    kubeedge_token: str | None = None
    join_tokens: JoinTokens | None = None
    first = targets[testbed.first_server.name]
    for stage in install_stages(testbed, selected):
        if any(n.role == "edge" for n in stage) and kubeedge_token is None:
            kubeedge_token = _kubeedge_token(testbed, targets, result.summary)
        if join_tokens is None and any(_joins_k3s(testbed, n) for n in stage):
            join_tokens = _join_tokens(first, result.summary)
        plans = plans_for(
            testbed, stage, files, addresses=addr, extra_tls_san=extra_tls_san, kubeedge_token=kubeedge_token,
            boot_delay=boot_delay, pins=artefact_pins, join_tokens=join_tokens,
        )
        for plan in plans:
            if progress:
                progress(plan.node.name, f"install as {plan.node.role} ({plan.tool})")
        result.summary.merge(_run_stage(plans, testbed, targets, "install", progress))
    if not _systemd(first):
        result.reason = (
            f"K3s was not started on {first.name}: no running systemd there (test fleet), "
            "so there is no kubeconfig to fetch"
        )
        return result
    _label_and_taint_through_api(testbed, selected, first)
    result.kubeconfig = read_kubeconfig(first)
    return result


def read_kubeconfig(first: SshTarget) -> str:
    """The admin kubeconfig of the first server (root-only k3s.yaml), its server address rewritten."""
    fetched = _ssh(first, f"cat {K3S_KUBECONFIG}", root=True)
    if fetched.returncode != 0:
        raise HostStepError(first.name, "fetch kubeconfig", fetched.stderr)
    return fetched.stdout.replace(f"https://127.0.0.1:{API_PORT}", f"https://{first.address}:{API_PORT}")


def read_join_tokens(first: SshTarget) -> JoinTokens:
    """The CA-pinning tokens the first server wrote (K10<CA hash>::server:... and ::node:...): later
    servers and agents join with them, so they check the cluster's CA before sending credentials."""
    tokens = {}
    for kind, path in (("server", K3S_SERVER_TOKEN), ("agent", K3S_AGENT_TOKEN)):
        got = _ssh(first, f"cat {path}", root=True)
        value = got.stdout.strip()
        if got.returncode != 0 or not value.startswith("K10"):
            # The file's content is never echoed: only whether it could be read.
            raise HostStepError(
                first.name, f"read the {kind} join token", f"{path} is missing or not a secure token "
                f"(exit {got.returncode}): {got.stderr.strip()[-300:]}"
            )
        tokens[kind] = value
    return JoinTokens(server=tokens["server"], agent=tokens["agent"])


def _label_and_taint_through_api(testbed: Testbed, selected: Sequence[Node], first: SshTarget) -> None:
    _run_api_steps(node_objects.install_steps(testbed, selected, KUBECTL), first)


def _run_api_steps(steps: Sequence[node_objects.ApiStep], target: SshTarget) -> None:
    for step in steps:
        done = _ssh(target, step.command, root=True)
        if done.returncode != 0 and not step.may_fail:
            raise HostStepError(step.node, step.step, done.stderr)


def _joins_k3s(testbed: Testbed, node: Node) -> bool:
    """A K3s server or agent that joins the first server (EdgeCore nodes join CloudCore instead)."""
    return node.role != "edge" and node.name != testbed.first_server.name


def _join_tokens(first: SshTarget, summary: RunSummary) -> JoinTokens | None:
    """The first server's secure tokens once it runs; without systemd (test fleet) K3s never started,
    so the joins keep the configured secrets (noted)."""
    if not _systemd(first):
        summary.notes.setdefault(first.name, []).append(
            "secure join tokens not read: K3s cannot run without systemd (test fleet); later joins use the "
            "configured tokens"
        )
        return None
    return read_join_tokens(first)


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
    got = _ssh(target, f"{KEADM_BIN} gettoken --kube-config={K3S_KUBECONFIG}", root=True)
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
    targets = targets_from_nodes(testbed, dict(addresses or {}), known_hosts)
    summary = RunSummary()
    for stage in reversed(install_stages(testbed, selected)):
        for n in stage:
            if progress:
                progress(n.name, "reset")
        plans = [reset_plan(testbed, n) for n in stage]
        summary.merge(_run_stage(plans, testbed, targets, "reset", progress))
    _delete_node_objects(testbed, selected, targets, summary)
    return summary


def _delete_node_objects(
    testbed: Testbed, selected: Sequence[Node], targets: dict[str, SshTarget], summary: RunSummary
) -> None:
    """Delete Node objects and K3s node-password secrets: `keadm join` refuses a name whose Node still
    exists, and K3s refuses a rejoin whose node password changed."""
    names = {n.name for n in selected}
    survivors = [s for s in testbed.servers if s.name not in names]
    if not survivors or not _systemd(targets[survivors[0].name]):
        for n in selected:
            summary.notes.setdefault(n.name, []).append(
                "Node object not deleted: no running cluster left to delete it from"
            )
        return
    _run_api_steps(node_objects.reset_steps(selected, KUBECTL), targets[survivors[0].name])


__all__ = ["InstallResult", "install", "install_stages", "prepare", "reset", "versions"]
