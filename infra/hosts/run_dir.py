"""The directory both tools run from: rendered files plus one inventory per tool, same hosts, same data.

    <dir>/inventory.yaml   Ansible: `ansible-playbook -i <dir>/inventory.yaml playbooks/ansible/install.yml`
    <dir>/inventory.py     pyinfra: `pyinfra <dir>/inventory.py edgerig_deploy.install`
    <dir>/files/<host>/... every rendered file (0600, in 0700 directories; secrets never in an inventory)

Host variables are the HostPlan's concerns, one prefix per role (k3s_files, kubeedge_edge_commands,
...); every one of them is declared with its default in the role's defaults/main.yml and in the
deploy's data_defaults. `edgerig cluster up` and `pulumi up` write this directory and run the same
playbooks and deploys on it through ansible-runner and pyinfra's API.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from pprint import pformat
from typing import Any

import yaml

from infra.hosts.inventory import SshTarget, ansible_connection_vars, pyinfra_connection_data
from infra.hosts.plan import CGROUP_FLAGS, ROLE_INPUTS, Concern, GuardedCommand, HostPlan
from infra.model import Testbed

ANSIBLE_INVENTORY = "inventory.yaml"
PYINFRA_INVENTORY = "inventory.py"
# Groups beside the roles: where the install plays start K3s, in which order.
STAGE_GROUPS = ("k3s_first_server", "k3s_servers", "k3s_agents")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def ansible_inventory(self) -> Path:
        return self.path / ANSIBLE_INVENTORY

    @property
    def pyinfra_inventory(self) -> Path:
        return self.path / PYINFRA_INVENTORY

    def _doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = yaml.safe_load(self.ansible_inventory.read_text())
        return doc

    def host_vars(self) -> dict[str, dict[str, Any]]:
        return dict(self._doc()["all"]["hosts"])

    def groups(self) -> dict[str, list[str]]:
        children = self._doc()["all"].get("children") or {}
        return {name: list((g or {}).get("hosts") or {}) for name, g in children.items()}


def _command(c: GuardedCommand) -> dict[str, Any]:
    return {
        "name": c.name,
        "command": c.command,
        "needs_systemd": c.needs_systemd,
        "creates": c.creates or "",
        "removes": c.removes or "",
        "done_check": c.done_check or "",
    }


def _files(concern: Concern, role_dir: Path) -> list[dict[str, Any]]:
    role_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = []
    for i, item in enumerate(concern.files):
        src = role_dir / f"{i:03d}-{Path(item.path).name}"
        src.write_text(item.content)
        src.chmod(0o600)
        entry = {"src": str(src), "dest": item.path, "mode": item.mode}
        out.append({**entry, "secret": item.secret, "restarts": item.restarts})
    return out


def _binaries(concern: Concern) -> list[dict[str, Any]]:
    # Every binary and image tarball restarts the concern's service when it changed.
    return [
        {
            "name": b.artefact.name,
            "src": str(b.path),
            "dest": dest,
            "sha256": b.sha256,
            "mode": "0755" if b.artefact.executable else "0644",
        }
        for b, dest in concern.binaries
    ]


def plan_vars(plan: HostPlan, files_dir: Path) -> dict[str, Any]:
    """The plan as the roles' and deploys' inputs (ROLE_INPUTS); file contents go to files_dir."""
    out: dict[str, Any] = {}
    for role, concern in plan.concerns.items():
        values: dict[str, Any] = {
            "hostname": plan.node.name,
            "arch": plan.node.arch,
            "packages": list(dict.fromkeys(concern.packages)),
            "binaries": _binaries(concern),
            "files": _files(concern, files_dir / role),
            "service": concern.service or "",
            "commands": [_command(c) for c in concern.commands],
            "reset_commands": [_command(c) for c in concern.reset_commands],
            "cgroup_flags": list(CGROUP_FLAGS),
            "boot_delay": plan.boot_delay,
        }
        inputs = ROLE_INPUTS[role]
        given = ("packages", "binaries", "files", "service", "commands", "reset_commands")
        unused = [k for k in given if values[k] and k not in inputs]
        if unused:
            raise ValueError(f"the {role} role takes no {unused}; ROLE_INPUTS and the plan disagree")
        out.update({f"{role}_{key}": values[key] for key in inputs})
    if plan.images:
        out.update(_image_vars(plan))
    return out


def _image_vars(plan: HostPlan) -> dict[str, Any]:
    """airgap_images' inputs: each archive is checked on the host against its sha256 before the rename."""
    archives = [{"src": str(a.source), "dest": a.dest, "sha256": a.sha256} for a in plan.images]
    values = {
        "archives": archives,
        "import": list(plan.image_import.argv) if plan.image_import else [],
        "containerd_socket": plan.image_import.socket if plan.image_import else "",
    }
    return {f"airgap_images_{key}": values[key] for key in ROLE_INPUTS["airgap_images"]}


def groups(testbed: Testbed, plans: Sequence[HostPlan]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for plan in plans:
        names = [*plan.groups]
        if "k3s" in plan.concerns:
            names.append("k3s_servers" if plan.node.role == "server" else "k3s_agents")
            if plan.node.name == testbed.first_server.name:
                names.append("k3s_first_server")
        names.append(f"via_{plan.tool}")  # the tool `edgerig cluster up` drives for this host
        for name in names:
            out.setdefault(name, []).append(plan.node.name)
    return out


def pyinfra_data(host_vars: Mapping[str, Any], target: SshTarget) -> dict[str, Any]:
    """pyinfra host data: the same inputs, with pyinfra's connection keys instead of Ansible's."""
    data = {k: v for k, v in host_vars.items() if not k.startswith("ansible_")}
    return {**pyinfra_connection_data(target), **data}


def write(
    path: Path, testbed: Testbed, plans: Sequence[HostPlan], targets: Mapping[str, SshTarget]
) -> RunDir:
    """(Re)write the run directory for `plans`; files of hosts no longer planned are removed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    files_root = path / "files"
    if files_root.exists():
        shutil.rmtree(files_root)
    files_root.mkdir(mode=0o700)
    hosts: dict[str, dict[str, Any]] = {}
    pyinfra_hosts: list[tuple[str, dict[str, Any]]] = []
    for plan in plans:
        target = targets[plan.node.name]
        plan_data = plan_vars(plan, files_root / plan.node.name)
        hosts[plan.node.name] = {**ansible_connection_vars(target), **plan_data}
        pyinfra_hosts.append((plan.node.name, pyinfra_data(plan_data, target)))
    grouped = groups(testbed, plans)
    doc = {
        "all": {
            "hosts": hosts,
            "children": {name: {"hosts": dict.fromkeys(hosts_)} for name, hosts_ in sorted(grouped.items())},
        }
    }
    (path / ANSIBLE_INVENTORY).write_text(
        f"# Written by edgerig for testbed {testbed.name}: ansible-playbook -i {path / ANSIBLE_INVENTORY} "
        "playbooks/ansible/install.yml\n" + yaml.safe_dump(doc, sort_keys=False)
    )
    lines = [
        f'"""pyinfra inventory written by edgerig for testbed {testbed.name}: the hosts and data of',
        f"{ANSIBLE_INVENTORY} beside it.  pyinfra {path / PYINFRA_INVENTORY} edgerig_deploy.install",
        '"""',
        "",
        f"hosts = {pformat(pyinfra_hosts, width=110, sort_dicts=False)}",
    ]
    for name, members in sorted(grouped.items()):
        lines.append(f"{name} = {members!r}")
    (path / PYINFRA_INVENTORY).write_text("\n".join(lines) + "\n")
    return RunDir(path)
