"""What each host gets, decided once in Python and then executed by pyinfra (Pis) or Ansible (VMs).

A HostPlan is tool-neutral: host preparation settings, verified binaries, rendered files and
guarded commands. A command marked `needs_systemd` runs only where a running systemd is a fact
(`/run/systemd/system` exists); elsewhere (the test fleet) it is skipped and reported as skipped.
A command with a `done_check` is only run when that check fails, so a second run changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from infra import images as images_delivery
from infra.hosts import render, render_kubeedge
from infra.hosts.artefacts import VerifiedBinary
from infra.model import Node, Testbed

CHRONY_CONF = "/etc/chrony/conf.d/edgerig.conf"
# Latency is measured across hosts: step a wrong clock at once instead of slewing it for hours.
CHRONY_SETTINGS = "# rendered by edgerig\nmakestep 0.1 -1\nrtcsync\n"


@dataclass(frozen=True)
class GuardedCommand:
    name: str
    command: str
    needs_systemd: bool = True
    done_check: str | None = None  # shell test that succeeds when nothing needs doing


@dataclass
class HostPlan:
    node: Node
    tool: str  # "pyinfra" | "ansible"
    files: list[render.RenderedFile] = field(default_factory=list)
    binaries: list[tuple[VerifiedBinary, str]] = field(default_factory=list)
    commands: list[GuardedCommand] = field(default_factory=list)
    boot_delay: int | None = None
    # images hook (air-gapped image delivery, infra/images.py): archives for this node's architecture
    images: list[images_delivery.NodeArchive] = field(default_factory=list)
    image_import: images_delivery.ImportCommand | None = None


def is_pi(node: Node) -> bool:
    return node.os == "raspios" or node.model.startswith("raspberry-pi")


def tool_for(node: Node) -> str:
    return "pyinfra" if is_pi(node) else "ansible"


def install_plan(
    testbed: Testbed,
    node: Node,
    binaries: Mapping[str, VerifiedBinary],
    *,
    addresses: dict[str, str] | None = None,
    extra_tls_san: list[str] | None = None,
    kubeedge_token: str | None = None,
    boot_delay: int | None = None,
) -> HostPlan:
    plan = HostPlan(node=node, tool=tool_for(node), boot_delay=boot_delay if is_pi(node) else None)
    if images_delivery.has_build(testbed):  # images hook: air-gapped delivery when a build exists
        plan.images = images_delivery.node_archives(testbed, node)
        plan.image_import = images_delivery.import_command(node)
    plan.files.append(render.RenderedFile(CHRONY_CONF, CHRONY_SETTINGS))
    plan.commands.append(
        GuardedCommand(
            "start chrony", "systemctl enable --now chrony", done_check="systemctl is-active --quiet chrony"
        )
    )
    if node.role == "edge":
        plan.binaries.append((binaries["keadm"], render.KEADM_BIN))
        plan.files += render_kubeedge.edge_files(testbed, node, addresses)
        if kubeedge_token:
            plan.files.append(
                render.RenderedFile(render.KUBEEDGE_TOKEN_FILE, kubeedge_token + "\n", "0600", secret=True)
            )
        plan.commands += [
            GuardedCommand(
                "start containerd",
                "systemctl enable containerd && systemctl restart containerd",
                done_check="systemctl is-active --quiet containerd",
            ),
            GuardedCommand(
                "keadm join",
                render_kubeedge.KEADM_JOIN_SCRIPT,
                done_check="test -f /etc/kubeedge/config/edgecore.yaml",
            ),
        ]
        return plan
    svc = render.service_name(node)
    plan.binaries.append((binaries["k3s"], render.K3S_BIN))
    plan.files += render.k3s_files(testbed, node, extra_tls_san, addresses)
    plan.commands.append(
        GuardedCommand(
            f"start {svc}",
            f"systemctl daemon-reload && systemctl enable --now {svc}",
            done_check=f"systemctl is-active --quiet {svc}",
        )
    )
    if testbed.kubeedge.enabled and testbed.edge_nodes and node.role == "server":
        plan.files += render_kubeedge.apiserver_files(testbed, addresses)
        # iptables works inside a network namespace, so this one runs for real on the fleet too.
        plan.commands.append(
            GuardedCommand(
                "DNAT edge kubelet port to cloudStream",
                f"{render_kubeedge.STREAM_DNAT_SCRIPT} add",
                needs_systemd=False,
                done_check=f"{render_kubeedge.STREAM_DNAT_SCRIPT} check",
            )
        )
        cloudcore = testbed.cloudcore_node
        if cloudcore is not None and cloudcore.name == node.name:
            plan.binaries.append((binaries["keadm"], render.KEADM_BIN))
            plan.files += render_kubeedge.cloudcore_files(testbed, addresses)
            plan.commands.append(
                GuardedCommand(
                    "keadm init (CloudCore)",
                    render_kubeedge.KEADM_INIT_SCRIPT,
                    done_check=f"{render.K3S_BIN} kubectl -n kubeedge get deploy cloudcore",
                )
            )
    return plan


def reset_commands(testbed: Testbed, node: Node) -> list[GuardedCommand]:
    """Runs everywhere: the uninstall scripts themselves skip their systemd parts without systemd."""
    commands = []
    if node.role == "server" and testbed.kubeedge.enabled and testbed.edge_nodes:
        dnat = render_kubeedge.STREAM_DNAT_SCRIPT
        commands.append(
            GuardedCommand(
                "remove stream DNAT",
                f"{dnat} delete && rm -f {dnat}",
                needs_systemd=False,
                done_check=f"! test -x {dnat}",
            )
        )
    script = render.uninstall_script_path(node)
    commands.append(
        GuardedCommand(f"run {script}", script, needs_systemd=False, done_check=f"! test -x {script}")
    )
    if node.role != "edge" and testbed.kubeedge.enabled:
        commands.append(
            GuardedCommand(
                "remove keadm",
                f"rm -rf {render.KEADM_BIN} {render_kubeedge.LIB_DIR}",
                needs_systemd=False,
                done_check=f"! test -e {render.KEADM_BIN} -o -e {render_kubeedge.LIB_DIR}",
            )
        )
    return commands
