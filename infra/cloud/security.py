"""Security-group rules generated from what the stack runs (pure: no Pulumi resources here).

Reference: the OpenFaaS thesis, Table 4.2. Differences, on purpose:
- flannel VXLAN 8472/udp is opened (the table listed it, the thesis's rules had no UDP); the
  deprecated flannel UDP backend port 8285 is not.
- K3s serves the supervisor and the API on 6443 (no separate 9345 as in RKE2); kube-scheduler and
  controller-manager run inside k3s on localhost, so the table's 10251-10258 are not opened.
- 80/443 are not opened: traefik and servicelb are disabled by default, nothing listens there.
- Intra-cluster ports are opened to the security group itself, public ones only to admin CIDRs, and
  static hosts outside the cloud (Pis) get /32 rules for exactly the ports their role needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from infra.model import Node, Testbed

Protocol = Literal["tcp", "udp", "icmp"]
GROUP = "group"  # the cluster's own security group (remote_group_id)


@dataclass(frozen=True)
class Rule:
    description: str
    protocol: Protocol
    port_min: int | None
    port_max: int | None
    source: str  # GROUP or an IPv4 CIDR

    @property
    def is_world_open(self) -> bool:
        return self.source in ("0.0.0.0/0", "::/0")

    @property
    def slug(self) -> str:
        ports = "all" if self.port_min is None else f"{self.port_min}-{self.port_max}"
        src = "group" if self.source == GROUP else self.source.replace("/", "_").replace(".", "-")
        return f"{self.protocol}-{ports}-{src}"


def _r(desc: str, proto: Protocol, lo: int | None, hi: int | None = None, *, source: str = GROUP) -> Rule:
    return Rule(desc, proto, lo, hi if hi is not None else lo, source)


def cluster_rules(testbed: Testbed) -> list[Rule]:
    """Ports the cluster nodes use among themselves: only ever to the group."""
    rules = [
        _r("K3s API server and supervisor", "tcp", 6443),
        _r("kubelet", "tcp", 10250),
        _r("Kubernetes NodePorts", "tcp", 30000, 32767),
        _r("Prometheus", "tcp", 9090),
        _r("Prometheus node-exporter", "tcp", 9100),
        _r("DNS (CoreDNS)", "tcp", 53),
        _r("DNS (CoreDNS)", "udp", 53),
        _r("ICMP inside the cluster (path MTU, ping)", "icmp", None, None),
    ]
    if len(testbed.servers) > 1:
        rules.append(_r("embedded etcd client and peer, between servers", "tcp", 2379, 2380))
    backend = testbed.flannel_backend
    if backend == "vxlan":
        rules.append(_r("flannel VXLAN", "udp", 8472))
    elif backend == "wireguard-native":
        rules.append(_r("flannel WireGuard", "udp", 51820))
    if testbed.kubeedge.enabled:
        # KubeEdge v1.20: CloudHub websocket 10000, its certificate endpoint 10002, CloudStream 10003
        # (apiserver side, reached through iptables-manager's DNAT of each edge's tunnel port 10351+,
        # which is local to the node), the edge stream tunnel 10004. CloudHub's QUIC (10001) is off in
        # the chart; metaServer's 10550 listens on the edge's loopback only.
        rules.append(_r("KubeEdge CloudHub, CloudStream, tunnel", "tcp", 10000, 10004))
    if testbed.edgemesh_enabled:
        rules.append(_r("EdgeMesh tunnel (libp2p)", "tcp", testbed.kubeedge.edgemesh.tunnel_port))
    return rules


def admin_rules(testbed: Testbed) -> list[Rule]:
    """Public entry points, only from the configured admin networks."""
    ports: list[tuple[str, int]] = [("SSH", 22), ("Kubernetes API", 6443)]
    if testbed.platform.openfaas.enabled:
        ports.append(("OpenFaaS gateway NodePort", testbed.platform.openfaas.gateway_node_port))
    if testbed.platform.monitoring.enabled:
        ports.append(("Grafana NodePort", testbed.platform.monitoring.grafana_node_port))
        ports.append(("Prometheus NodePort", testbed.platform.monitoring.prometheus_node_port))
    if testbed.vei.enabled and testbed.vei.clients == "operator":
        ports.append(("VEI gateway NodePort", testbed.vei.gateway_node_port))
        ports.append(("NATS client NodePort", testbed.platform.nats.client_node_port))
    return [
        _r(f"{desc} from admin network", "tcp", port, source=str(cidr))
        for cidr in testbed.admin_cidrs
        for desc, port in ports
    ]


def _external_node_ports(testbed: Testbed, node: Node) -> list[tuple[str, Protocol, int, int]]:
    if node.role == "edge":
        ports: list[tuple[str, Protocol, int, int]] = [
            ("KubeEdge CloudHub for EdgeCore", "tcp", 10000, 10000),
            ("KubeEdge CloudHub certificates for EdgeCore", "tcp", 10002, 10002),
            ("KubeEdge edge stream tunnel for EdgeCore", "tcp", 10004, 10004),
        ]
        if testbed.edgemesh_enabled:
            port = testbed.kubeedge.edgemesh.tunnel_port
            ports.append(("EdgeMesh tunnel to its cloud relays", "tcp", port, port))
        return ports
    ports = [
        ("K3s API/supervisor for a K3s node", "tcp", 6443, 6443),
        ("kubelet", "tcp", 10250, 10250),
    ]
    if testbed.flannel_backend == "vxlan":
        ports.append(("flannel VXLAN", "udp", 8472, 8472))
    elif testbed.flannel_backend == "wireguard-native":
        ports.append(("flannel WireGuard", "udp", 51820, 51820))
    if node.role == "server":
        ports.append(("embedded etcd peer", "tcp", 2379, 2380))
    return ports


def external_node_rules(testbed: Testbed) -> list[Rule]:
    """Static hosts (Pis) that join cloud VMs: a /32 per host, only the ports its role needs."""
    if not testbed.openstack_nodes:
        return []
    rules = []
    for node in testbed.static_nodes:
        for desc, proto, lo, hi in _external_node_ports(testbed, node):
            rules.append(_r(f"{desc} from {node.name}", proto, lo, hi, source=f"{node.address}/32"))
    return rules


def security_rules(testbed: Testbed) -> list[Rule]:
    rules = cluster_rules(testbed) + admin_rules(testbed) + external_node_rules(testbed)
    unique = list(dict.fromkeys(rules))
    slugs = [r.slug for r in unique]
    assert len(set(slugs)) == len(slugs), "rule slugs name Pulumi resources and must be unique"
    return unique
