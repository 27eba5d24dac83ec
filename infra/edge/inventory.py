"""Inventory entries rendered from the model (pure): what the operator and host configuration see."""

from __future__ import annotations

from typing import Any

from infra.model import Node, Testbed


def inventory_entry(testbed: Testbed, node: Node, address: str | None = None) -> dict[str, Any]:
    """One host: how to reach it (SSH) and what it becomes in Kubernetes (role, labels, taints)."""
    return {
        "name": node.name,
        "address": address if address is not None else (str(node.address) if node.address else None),
        "ssh": {"user": node.ssh_user, "port": node.ssh_port, "keyPath": node.ssh_key_path},
        "provider": node.provider,
        "realm": node.realm,
        "role": node.role,
        "model": node.model,
        "os": node.os,
        "arch": node.arch,
        "labels": testbed.node_labels(node),
        "taints": [t.render() for t in testbed.node_taints(node)],
    }


def static_inventory(testbed: Testbed) -> dict[str, dict[str, Any]]:
    return {node.name: inventory_entry(testbed, node) for node in testbed.static_nodes}
