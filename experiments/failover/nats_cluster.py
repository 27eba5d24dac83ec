"""A 3-server NATS cluster (routes + clustered JetStream), one server per NATS node.

Ping settings are what make a silently cut peer visible: the server pings routes and clients every
`PING_INTERVAL` and closes a connection after `PING_MAX` unanswered pings, so a dead route or client
is dropped after about PING_INTERVAL * (PING_MAX + 1) = 1.5 s instead of the default 2 min * 2.
That matters most for queue groups: until then NATS keeps handing frames to the queue subscription
of a gateway on the cut node, and those frames are only recovered by the camera's resend.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from experiments.failover.netns import Node

CLIENT_PORT = 4222  # fixed ports are fine: every node has its own address in its own namespace
CLUSTER_PORT = 6222
MONITOR_PORT = 8222
CLUSTER_NAME = "erf"
PING_INTERVAL = "500ms"
PING_MAX = 2
# A write to a dead peer blocks until the kernel buffer is full; the deadline bounds that stall.
WRITE_DEADLINE = "2s"


def client_url(node: Node) -> str:
    return f"nats://{node.address}:{CLIENT_PORT}"


def client_urls(nats_nodes: Sequence[Node]) -> str:
    return ",".join(client_url(n) for n in nats_nodes)


def render_config(node: Node, nats_nodes: Sequence[Node], store_dir: Path) -> str:
    routes = [f"nats-route://{n.address}:{CLUSTER_PORT}" for n in nats_nodes if n != node]
    # JSON strings are valid NATS config strings, so json.dumps quotes paths and names safely.
    return "\n".join([
        f"server_name: {json.dumps(node.netns)}",
        f"listen: {json.dumps(f'{node.address}:{CLIENT_PORT}')}",
        f"http: {json.dumps(f'{node.address}:{MONITOR_PORT}')}",
        f"ping_interval: {json.dumps(PING_INTERVAL)}",
        f"ping_max: {PING_MAX}",
        f"write_deadline: {json.dumps(WRITE_DEADLINE)}",
        "cluster {",
        f"  name: {json.dumps(CLUSTER_NAME)}",
        f"  listen: {json.dumps(f'{node.address}:{CLUSTER_PORT}')}",
        f"  routes: [{', '.join(json.dumps(r) for r in routes)}]",
        "}",
        "jetstream {",
        f"  store_dir: {json.dumps(str(store_dir))}",
        "  max_memory_store: 268435456",
        "  max_file_store: 1073741824",
        "}",
        "",
    ])


def write_config(node: Node, nats_nodes: Sequence[Node], work_dir: Path) -> Path:
    store = work_dir / f"jetstream-{node.name}"
    store.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"nats-{node.name}.conf"
    path.write_text(render_config(node, nats_nodes, store))
    return path


def healthz(node: Node) -> bool:
    """True once the server serves clients and JetStream (the monitor's /healthz says ok)."""
    url = f"http://{node.address}:{MONITOR_PORT}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(json.load(response).get("status") == "ok")
    except (OSError, urllib.error.URLError, ValueError):
        return False


def connected_peers(node: Node) -> int:
    """How many other servers this one has a route to (-1 if it does not answer).

    Route pooling opens several connections per peer, so count distinct peers, not routes.
    """
    url = f"http://{node.address}:{MONITOR_PORT}/routez"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            routes = json.load(response).get("routes") or []
    except (OSError, urllib.error.URLError, ValueError):
        return -1
    return len({r.get("remote_id") for r in routes})
