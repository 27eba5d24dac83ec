"""Security-group rules follow what the stack runs (pure rendering, no Pulumi)."""

from __future__ import annotations

from stack_fixtures import stack, variant

from infra.cloud.security import GROUP, security_rules


def ports(rules: list, source: str = GROUP) -> set[tuple[str, int | None, int | None]]:
    return {(r.protocol, r.port_min, r.port_max) for r in rules if r.source == source}


def test_flannel_backend_decides_the_udp_port() -> None:
    assert ("udp", 8472, 8472) in ports(security_rules(stack("openstack-kubeedge")))
    wg = security_rules(variant("openstack-kubeedge", k3s={"flannelBackend": "wireguard-native"}))
    assert ("udp", 51820, 51820) in ports(wg) and ("udp", 8472, 8472) not in ports(wg)
    hostgw = security_rules(variant("openstack-kubeedge", k3s={"flannelBackend": "host-gw"}))
    assert not {p for p in ports(hostgw) if p[0] == "udp" and p[1] not in (53, 10001)}  # DNS, KubeEdge QUIC


def test_etcd_only_between_several_servers() -> None:
    assert ("tcp", 2379, 2380) not in ports(security_rules(stack("openstack-kubeedge")))  # one server
    assert ("tcp", 2379, 2380) in ports(security_rules(stack("hybrid")))  # three servers


def test_public_ports_follow_enabled_features_and_every_admin_cidr() -> None:
    tb = stack("hybrid")
    for cidr in tb.admin_cidrs:
        # SSH, API, OpenFaaS, Grafana, Prometheus, and for operator-side VEI clients gateway and NATS
        expected = (22, 6443, 31112, 31300, 30090, 30051, 30422)
        assert ports(security_rules(tb), str(cidr)) == {("tcp", p, p) for p in expected}
    in_cluster = variant("hybrid", vei={"clients": "cluster"})
    assert ("tcp", 30051, 30051) not in ports(security_rules(in_cluster), "203.0.113.0/24")
    bare = variant(
        "hybrid",
        platform={
            "nats": {"jetstream": True},
            "openfaas": {"enabled": False},
            "monitoring": {"enabled": False},
        },
        vei={"enabled": False},
    )
    assert ports(security_rules(bare), "203.0.113.0/24") == {("tcp", 22, 22), ("tcp", 6443, 6443)}


def test_pis_get_only_their_roles_ports() -> None:
    # EdgeCore: CloudHub, its certificate endpoint, the stream tunnel, EdgeMesh's tunnel to its relays.
    edgecore = ports(security_rules(stack("hybrid")), "198.51.100.20/32")
    assert edgecore == {
        ("tcp", 10000, 10000),
        ("tcp", 10002, 10002),
        ("tcp", 10004, 10004),
        ("tcp", 20006, 20006),
    }
    no_mesh = variant(
        "hybrid",
        kubeedge={"enabled": True, "edgemesh": {"enabled": False}},
        platform={"nats": {"jetstream": True}, "openfaas": {"edgeWeight": 0}},
    )
    assert ("tcp", 20006, 20006) not in ports(security_rules(no_mesh), "198.51.100.20/32")
    # K3s agents over public addresses: the API and flannel over WireGuard (the hybrid stack's backend).
    agent = ports(security_rules(variant("hybrid", kubeedge={"enabled": False})), "198.51.100.20/32")
    assert agent == {("tcp", 6443, 6443), ("tcp", 10250, 10250), ("udp", 51820, 51820)}


def test_world_open_only_when_an_operator_asks_for_it() -> None:
    for name in ("openstack-kubeedge", "hybrid"):
        assert not [r for r in security_rules(stack(name)) if r.is_world_open]
    opened = security_rules(variant("hybrid", adminCidrs=["0.0.0.0/0"]))
    public = {22, 6443, 31112, 31300, 30090, 30051, 30422}
    assert {r.port_min for r in opened if r.is_world_open} == public  # public ports only
