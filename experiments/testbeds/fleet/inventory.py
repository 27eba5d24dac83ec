"""Write the fleet's inventory: one YAML file that Ansible reads natively and that
`infra.hosts.inventory` turns into pyinfra hosts, plus a Testbed stack file for `--inventory`.
"""

from __future__ import annotations

from typing import Any

import yaml

from experiments.testbeds.fleet.state import Fleet


def inventory_data(fleet: Fleet) -> dict[str, Any]:
    hosts = {h.name: {"ansible_host": h.address, "ansible_port": 22, "edgerig_pi": h.pi} for h in fleet.hosts}
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(fleet.key_path),
                # A per-fleet known_hosts file: host keys are checked, never blindly accepted.
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={fleet.known_hosts} "
                "-o StrictHostKeyChecking=yes",
                "edgerig_known_hosts": str(fleet.known_hosts),
                "edgerig_test_fleet": True,
            },
            "hosts": hosts,
            "children": {
                "pi": {"hosts": {h.name: None for h in fleet.hosts if h.pi}},
                "vm": {"hosts": {h.name: None for h in fleet.hosts if not h.pi}},
            },
        }
    }


def write_inventory(fleet: Fleet) -> None:
    fleet.inventory_path.write_text(
        "# Written by `edgerig fleet up`; removed by `edgerig fleet down`.\n"
        + yaml.safe_dump(inventory_data(fleet), sort_keys=False)
    )
