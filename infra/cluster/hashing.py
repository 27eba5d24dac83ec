"""What a host's installation depends on, hashed (pure). A changed hash re-runs that host's install."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from infra import images, versions
from infra.model import Node, Testbed

_HOST_VERSION_PREFIXES = ("K3S_", "KUBEEDGE_", "ARTEFACT_", "GITHUB_")


def pinned_host_versions() -> dict[str, Any]:
    """Every pinned constant that ends up on a host (binaries, images, their digests); chart pins do
    not. The pins count by value, not by where their file lies on this machine."""
    found: dict[str, Any] = {
        name: value
        for name, value in sorted(vars(versions).items())
        if name.startswith(_HOST_VERSION_PREFIXES) and not callable(value) and name != "ARTEFACT_PINS_FILE"
    }
    found["ARTEFACT_PINS"] = {k: [p.algorithm, p.digest] for k, p in sorted(versions.ARTEFACT_PINS.items())}
    return found


def host_inputs(testbed: Testbed, node: Node) -> dict[str, Any]:
    """Everything a host's rendered config depends on, secrets excluded (they are masked)."""
    return {
        "node": node.model_dump(mode="json"),
        "labels": testbed.node_labels(node),
        "taints": [t.render() for t in testbed.node_taints(node)],
        "k3s": testbed.k3s.model_dump(mode="json"),
        "kubeedge": testbed.kubeedge.model_dump(mode="json"),
        "artefacts": testbed.artefacts.model_dump(mode="json"),
        "servers": [n.name for n in testbed.servers],
        "cloudcore": testbed.cloudcore_node.name if testbed.cloudcore_node else None,
        "versions": pinned_host_versions(),
        # images hook: a new image build re-runs delivery (air-gapped archives for this node)
        "images": [(a.dest, a.sha256) for a in images.node_archives(testbed, node)]
        if images.has_build(testbed) else [],
    }


def host_config_hash(testbed: Testbed, node: Node) -> str:
    blob = json.dumps(host_inputs(testbed, node), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
