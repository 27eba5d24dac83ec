"""The host firewall of static hosts (Pis), rendered as an nftables ruleset from the same rule list as
the OpenStack security groups (infra/cloud/security.py): a Pi gets what a VM gets from its group.

The chain hooks prerouting before NAT (priority -150), so traffic to a NodePort is judged by the port
the client asked for, before kube-proxy rewrites it to a pod. Only packets addressed to the host
itself are judged: forwarded pod and service traffic is K3s's own business. The security group's
"the group itself" becomes the set of every node address the model knows.
"""

from __future__ import annotations

from collections.abc import Mapping

from infra.cloud.security import GROUP, Rule, security_rules
from infra.hosts.render import RenderedFile
from infra.model import Node, Testbed

TABLE = "edgerig_host_firewall"
RULESET = "/etc/edgerig/firewall.nft"
STAMP = "/run/edgerig-firewall.sha256"  # which ruleset is loaded: gone at reboot, as the ruleset is
UNIT = "edgerig-firewall.service"
NFT = "/usr/sbin/nft"
# Interfaces K3s/KubeEdge create for pod traffic to the host (flannel VXLAN/WireGuard, the CNI bridge,
# EdgeMesh): what arrives there was already admitted on the node's own address.
POD_INTERFACES = ("cni0", "flannel.1", "flannel-wg", "edgemesh0", "kube-ipvs0")


def cluster_addresses(testbed: Testbed, addresses: Mapping[str, str] | None = None) -> list[str]:
    """Every address a node of the testbed may send from (the security group's members)."""
    found: list[str] = []
    for node in testbed.nodes:
        for addr in ((addresses or {}).get(node.name), node.address, node.internal_address):
            if addr is not None:
                found.append(str(addr))
    return sorted(set(found), key=lambda a: tuple(int(p) for p in a.split(".")))


def _match(rule: Rule) -> str:
    source = "@cluster" if rule.source == GROUP else rule.source
    if rule.protocol == "icmp":
        return f"ip saddr {source} meta l4proto icmp"
    ports = str(rule.port_min) if rule.port_min == rule.port_max else f"{rule.port_min}-{rule.port_max}"
    return f"ip saddr {source} {rule.protocol} dport {ports}"


def _comment(text: str) -> str:
    return text.replace('"', "'")[:120]


def host_rules(testbed: Testbed) -> list[Rule]:
    """The security-group rules, plus what a static host opens that a VM's group never needs to: with
    no adminCidrs, SSH stays open to any source (a Pi must not lock its operator out)."""
    rules = security_rules(testbed)
    if not testbed.admin_cidrs:
        rules.append(Rule("SSH (no adminCidrs: from anywhere)", "tcp", 22, 22, "0.0.0.0/0"))
    return rules


def ruleset(testbed: Testbed, addresses: Mapping[str, str] | None = None) -> str:
    """The whole nftables file: replaces edgerig's own table atomically, touches no other table."""
    members = ", ".join(cluster_addresses(testbed, addresses))
    pods = ", ".join(str(c) for c in (testbed.k3s.cluster_cidr, testbed.k3s.service_cidr))
    ifaces = ", ".join(f'"{i}"' for i in POD_INTERFACES)
    accepts = [f'    {_match(r)} accept comment "{_comment(r.description)}"' for r in host_rules(testbed)]
    return "\n".join(
        [
            "#!/usr/sbin/nft -f",
            "# rendered by edgerig from the testbed's security-group rules (infra/cloud/security.py)",
            f"table inet {TABLE}",
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
            "  set cluster {",
            "    type ipv4_addr",
            *([f"    elements = {{ {members} }}"] if members else []),
            "  }",
            "",
            "  chain prerouting {",
            "    type filter hook prerouting priority -150; policy accept;",
            "    fib daddr type != local accept",
            '    iifname "lo" accept',
            "    ct state established,related accept",
            "    ct state invalid drop",
            f"    iifname {{ {ifaces} }} accept",
            f"    ip saddr {{ {pods} }} accept",
            "    meta l4proto ipv6-icmp accept",
            '    udp sport 67 udp dport 68 accept comment "DHCP replies"',
            *accepts,
            '    counter drop comment "everything else addressed to this host"',
            "  }",
            "}",
            "",
        ]
    )


def unit() -> str:
    return f"""[Unit]
Description=edgerig host firewall (nftables table {TABLE})
Documentation=file://{RULESET}
DefaultDependencies=no
Before=network-pre.target k3s.service k3s-agent.service edgecore.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={NFT} -f {RULESET}
ExecStop={NFT} delete table inet {TABLE}

[Install]
WantedBy=multi-user.target
"""


def applies_to(node: Node) -> bool:
    """Static hosts only: OpenStack VMs have their security group."""
    return node.provider == "static"


LOAD = f"{NFT} -c -f {RULESET} && {NFT} -f {RULESET} && sha256sum {RULESET} > {STAMP}"
LOADED = f"sha256sum -c --status {STAMP}"
ENABLE = f"systemctl daemon-reload && systemctl enable {UNIT}"
ENABLED = f"/etc/systemd/system/multi-user.target.wants/{UNIT}"
REMOVE = (
    f"if [ -d /run/systemd/system ]; then systemctl disable {UNIT} 2>/dev/null || true; fi; "
    f"{NFT} delete table inet {TABLE} 2>/dev/null || true; "
    f"rm -f {RULESET} {STAMP} /etc/systemd/system/{UNIT}; rmdir /etc/edgerig 2>/dev/null || true"
)


def files(testbed: Testbed, addresses: Mapping[str, str] | None = None) -> list[RenderedFile]:
    return [
        RenderedFile(RULESET, ruleset(testbed, addresses), "0600"),
        RenderedFile(f"/etc/systemd/system/{UNIT}", unit()),
    ]
