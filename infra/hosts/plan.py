"""What each host gets, decided once in Python and executed by pyinfra (Pis) or Ansible (VMs).

A HostPlan is tool-neutral and split by concern, the same split as the Ansible roles in
playbooks/ansible/roles/ and the deploy modules in playbooks/pyinfra/edgerig_deploy/:

- common: hostname, base packages, time sync
- raspberrypi: cgroup flags in cmdline.txt, boot_delay, swap off (reboot when a boot file changed)
- airgap_images: edgerig's own image archives (infra/images.py), where the node's runtime imports them
- k3s: the verified binary, rendered config/token/unit, airgap images; the service is started, and
  restarted whenever one of those changed (as K3s's install.sh restarts on a changed binary or unit)
- kubeedge_cloud: keadm and CloudCore's `keadm init`
- kubeedge_edge: containerd + CNI plugins, their config (containerd restarted when it changed), the
  CNI config version the host's plugins support, and `keadm join`

A command marked `needs_systemd` runs only where a running systemd is a fact (`/run/systemd/system`
exists); elsewhere (the test fleet) it is skipped and reported as skipped. `creates` / `removes` /
`done_check` make a second run change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from infra import images as images_delivery
from infra.hosts import firewall, render, render_kubeedge
from infra.hosts.artefacts import VerifiedFile
from infra.model import Node, Testbed
from infra.versions import Pin

CHRONY_CONF = "/etc/chrony/conf.d/edgerig.conf"
# Latency is measured across hosts: step a wrong clock at once instead of slewing it for hours.
CHRONY_SETTINGS = "# rendered by edgerig\nmakestep 0.1 -1\nrtcsync\n"
BASE_PACKAGES = ("chrony", "iptables")  # time sync: latency is measured across hosts
CGROUP_FLAGS = ("cgroup_memory=1", "cgroup_enable=memory", "cgroup_enable=cpuset")
# Each role's inputs (host variables `<role>_<input>`): the same names are declared with their
# defaults in playbooks/ansible/roles/<role>/defaults/main.yml and in the deploy's data_defaults.
ROLE_INPUTS: dict[str, tuple[str, ...]] = {
    "common": ("hostname", "arch", "packages", "files", "service"),
    # Static hosts (Pis): nftables rules from the security-group rule list, loaded before K3s starts.
    "host_firewall": ("files", "commands", "reset_commands"),
    "raspberrypi": ("cgroup_flags", "boot_delay"),
    # Before K3s starts (it imports its images directory at start) and after containerd is installed.
    "airgap_images": ("archives", "import", "containerd_socket"),
    "k3s": ("binaries", "files", "service", "reset_commands"),
    "kubeedge_cloud": ("binaries", "files", "commands", "reset_commands"),
    "kubeedge_edge": ("binaries", "files", "service", "commands", "reset_commands"),
}
ROLES = tuple(ROLE_INPUTS)


@dataclass(frozen=True)
class GuardedCommand:
    name: str
    command: str
    needs_systemd: bool = True
    creates: str | None = None  # skip when this path exists (Ansible `creates:`)
    removes: str | None = None  # skip unless this path exists (Ansible `removes:`)
    done_check: str | None = None  # skip when this shell test succeeds (what a path cannot express)


@dataclass
class Concern:
    """One concern's part of a host: what to install, deliver, start and run, in that order."""

    role: str
    packages: list[str] = field(default_factory=list)
    binaries: list[tuple[VerifiedFile, str]] = field(default_factory=list)  # (verified file, dest)
    files: list[render.RenderedFile] = field(default_factory=list)
    service: str | None = None  # enabled and started; restarted when a binary or file here changed
    commands: list[GuardedCommand] = field(default_factory=list)
    reset_commands: list[GuardedCommand] = field(default_factory=list)


@dataclass
class HostPlan:
    node: Node
    tool: str  # "pyinfra" | "ansible"
    concerns: dict[str, Concern] = field(default_factory=dict)
    boot_delay: int | None = None  # raspberrypi only
    notes: list[str] = field(default_factory=list)  # decided in Python, reported with the tool's own
    # airgap_images (infra/images.py): edgerig's image archives for this node's architecture, and how
    # its running containerd imports a new one
    images: list[images_delivery.NodeArchive] = field(default_factory=list)
    image_import: images_delivery.ImportCommand | None = None

    def concern(self, role: str) -> Concern:
        return self.concerns.setdefault(role, Concern(role))

    @property
    def groups(self) -> list[str]:
        """Inventory groups: which plays of playbooks/ansible/install.yml apply to this host."""
        return [role for role in ROLES if role in self.concerns or (role == "airgap_images" and self.images)]


def is_pi(node: Node) -> bool:
    return node.os == "raspios" or node.model.startswith("raspberry-pi")


def tool_for(node: Node) -> str:
    return "pyinfra" if is_pi(node) else "ansible"


def _common(plan: HostPlan) -> None:
    common = plan.concern("common")
    common.packages += BASE_PACKAGES
    common.files.append(render.RenderedFile(CHRONY_CONF, CHRONY_SETTINGS))
    common.service = "chrony"


def _host_firewall(testbed: Testbed, plan: HostPlan, addresses: dict[str, str] | None) -> None:
    plan.concern("common").packages.append("nftables")
    fw = plan.concern("host_firewall")
    fw.files += firewall.files(testbed, addresses)
    fw.commands += [
        GuardedCommand(
            "load the host firewall", firewall.LOAD, needs_systemd=False, done_check=firewall.LOADED
        ),
        GuardedCommand("load the host firewall at every boot", firewall.ENABLE, creates=firewall.ENABLED),
    ]
    if not testbed.admin_cidrs:
        plan.notes.append("host firewall: no adminCidrs in the stack, so SSH is open to any source")


def _add_firewall_reset(plan: HostPlan) -> None:
    plan.concern("host_firewall").reset_commands.append(
        GuardedCommand(
            "remove the host firewall", firewall.REMOVE, needs_systemd=False, removes=firewall.RULESET
        )
    )


def _k3s(
    testbed: Testbed,
    plan: HostPlan,
    files: Mapping[str, VerifiedFile],
    addresses: dict[str, str] | None,
    extra_tls_san: list[str] | None,
    join_tokens: render.JoinTokens | None,
) -> None:
    node = plan.node
    k3s = plan.concern("k3s")
    k3s.binaries.append((files["k3s"], render.K3S_BIN))
    if "k3s-airgap-images" in files:
        images = files["k3s-airgap-images"]
        k3s.binaries.append((images, f"{render.K3S_IMAGES_DIR}/{images.artefact.filename}"))
    k3s.files += render.k3s_files(testbed, node, extra_tls_san, addresses, join_tokens)
    k3s.service = render.service_name(node)


def _kubeedge_cloud(
    testbed: Testbed,
    plan: HostPlan,
    files: Mapping[str, VerifiedFile],
    addresses: dict[str, str] | None,
    pins: Mapping[str, Pin] | None,
) -> None:
    cloud = plan.concern("kubeedge_cloud")
    cloud.binaries.append((files["keadm"], render.KEADM_BIN))
    cloud.files += render_kubeedge.cloudcore_files(testbed, addresses, pins)
    cloud.commands.append(
        GuardedCommand(
            "keadm init (CloudCore)",
            render_kubeedge.KEADM_INIT_SCRIPT,
            creates=render_kubeedge.CLOUDCORE_READY,
        )
    )


def _kubeedge_edge(
    testbed: Testbed,
    plan: HostPlan,
    files: Mapping[str, VerifiedFile],
    addresses: dict[str, str] | None,
    kubeedge_token: str | None,
    pins: Mapping[str, Pin] | None,
) -> None:
    node = plan.node
    edge = plan.concern("kubeedge_edge")
    # The runtime is installed with the host's packages, before its configuration is written (Debian
    # ships a config.toml conffile); a changed configuration then restarts it.
    plan.concern("common").packages += render_kubeedge.EDGE_PACKAGES
    edge.binaries.append((files["keadm"], render.KEADM_BIN))
    edge.files += render_kubeedge.edge_files(testbed, node, addresses, pins)
    edge.service = "containerd"
    edge.commands.append(
        GuardedCommand(
            "choose the CNI config version this host's plugins support",
            f"{render_kubeedge.CNI_SELECT_SCRIPT} apply",
            needs_systemd=False,
            done_check=f"{render_kubeedge.CNI_SELECT_SCRIPT} check",
        )
    )
    if kubeedge_token:
        edge.files.append(
            render.RenderedFile(render.KUBEEDGE_TOKEN_FILE, kubeedge_token + "\n", "0600", secret=True)
        )
        edge.commands.append(
            GuardedCommand(
                "keadm join", render_kubeedge.KEADM_JOIN_SCRIPT, creates=render_kubeedge.EDGE_JOINED
            )
        )
    else:
        plan.notes.append("keadm join left out: no join token yet (CloudCore is not running)")


def _runs_cloudcore(testbed: Testbed, node: Node) -> bool:
    cloudcore = testbed.cloudcore_node
    return cloudcore is not None and cloudcore.name == node.name and bool(testbed.edge_nodes)


def _add_reset_commands(testbed: Testbed, plan: HostPlan) -> None:
    """The uninstall scripts the install delivered; each runs only while it exists (`removes`)."""
    node = plan.node
    if firewall.applies_to(node):
        _add_firewall_reset(plan)
    script = render.uninstall_script_path(node)
    role = "kubeedge_edge" if node.role == "edge" else "k3s"
    plan.concern(role).reset_commands.append(
        GuardedCommand(f"run {script}", script, needs_systemd=False, removes=script)
    )
    if _runs_cloudcore(testbed, node):
        plan.concern("kubeedge_cloud").reset_commands.append(
            GuardedCommand(
                "remove keadm and the CloudCore scripts",
                f"rm -rf {render.KEADM_BIN} {render_kubeedge.LIB_DIR} {render_kubeedge.STATE_DIR}",
                needs_systemd=False,
                removes=render_kubeedge.LIB_DIR,
            )
        )


def install_plan(
    testbed: Testbed,
    node: Node,
    files: Mapping[str, VerifiedFile],
    *,
    addresses: dict[str, str] | None = None,
    extra_tls_san: list[str] | None = None,
    kubeedge_token: str | None = None,
    boot_delay: int | None = None,
    pins: Mapping[str, Pin] | None = None,
    join_tokens: render.JoinTokens | None = None,
) -> HostPlan:
    """`files`: the verified release files this host gets (artefacts.host_files), by name; `pins`: the
    digests images are pulled by (default: infra/versions.py's ARTEFACT_PINS). The plan
    carries the reset commands too, so one inventory serves install.yml and reset.yml."""
    plan = HostPlan(node=node, tool=tool_for(node))
    _common(plan)
    if firewall.applies_to(node):
        _host_firewall(testbed, plan, addresses)
    if is_pi(node):
        plan.concern("raspberrypi")
        plan.boot_delay = boot_delay
    if images_delivery.has_build(testbed):  # air-gapped delivery of edgerig's images, when built
        plan.images = images_delivery.node_archives(testbed, node)
        plan.image_import = images_delivery.import_command(node)
    if node.role == "edge":
        _kubeedge_edge(testbed, plan, files, addresses, kubeedge_token, pins)
    else:
        _k3s(testbed, plan, files, addresses, extra_tls_san, join_tokens)
        if _runs_cloudcore(testbed, node):
            _kubeedge_cloud(testbed, plan, files, addresses, pins)
    _add_reset_commands(testbed, plan)
    return plan


def reset_plan(testbed: Testbed, node: Node) -> HostPlan:
    """Only the reset commands: the uninstall scripts need nothing else delivered or downloaded."""
    plan = HostPlan(node=node, tool=tool_for(node))
    _add_reset_commands(testbed, plan)
    return plan
