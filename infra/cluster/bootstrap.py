"""Bootstrap: one HostInstall resource per node, in the order the cluster must form.

first server (cluster-init) -> every further server, one at a time -> cloud agents -> edge nodes.
Pulumi deletes in reverse, so `pulumi destroy` resets edges and agents before the servers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pulumi
from pulumi import dynamic

from infra.cluster.hashing import host_config_hash
from infra.cluster.provider import HostInstallProvider
from infra.model import Node, Testbed


class HostInstall(dynamic.Resource):
    kubeconfig: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        node: Node,
        addresses: Mapping[str, pulumi.Input[str]],
        internal_addresses: Mapping[str, pulumi.Input[str]],
        extra_tls_san: pulumi.Input[list[str]],
        known_hosts: pulumi.Input[str],
        opts: pulumi.ResourceOptions,
    ) -> None:
        props = {
            "node": node.name,
            "role": node.role,
            "provider": node.provider,
            "address": addresses[node.name],
            "addresses": dict(addresses),
            "internal_addresses": dict(internal_addresses),
            "extra_tls_san": extra_tls_san,
            # The VMs' host keys (the program made them); static hosts' come from edgerig:ssh.knownHosts.
            "known_hosts": known_hosts,
            "testbed": testbed.public_dump(),
            "secrets": pulumi.Output.secret(json.dumps(testbed.secret_values(), sort_keys=True)),
            "config_hash": host_config_hash(testbed, node),
            "wants_kubeconfig": node.name == testbed.first_server.name,
            "kubeconfig": None,
        }
        secret_outs = pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig", "secrets"])
        super().__init__(HostInstallProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret_outs))


def install_order(testbed: Testbed) -> list[list[Node]]:
    """Stages of nodes; every node of a stage depends on all nodes of earlier stages."""
    stages: list[list[Node]] = [[s] for s in testbed.servers]
    cloud_rest = [n for n in testbed.nodes if n.role != "server" and n.realm == "cloud"]
    edge_rest = [n for n in testbed.nodes if n.role != "server" and n.realm == "edge"]
    return stages + [group for group in (cloud_rest, edge_rest) if group]


class Bootstrap(pulumi.ComponentResource):
    kubeconfig: pulumi.Output[str]
    installs: dict[str, HostInstall]

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        addresses: Mapping[str, pulumi.Input[str]],
        internal_addresses: Mapping[str, pulumi.Input[str]],
        known_hosts: pulumi.Input[str] = "",
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:cluster:Bootstrap", name, None, opts)
        missing = sorted({n.name for n in testbed.nodes} - set(addresses))
        if missing:
            raise ValueError(f"Bootstrap has no address for nodes {missing}")
        # Floating IPs of the servers reach the API from outside: they go into tls-san.
        extra_tls_san = pulumi.Output.all(*[addresses[s.name] for s in testbed.servers]).apply(
            lambda ips: sorted({str(ip) for ip in ips})
        )
        self.installs = {}
        done: list[pulumi.Resource] = list(after)
        for stage in install_order(testbed):
            created = [
                HostInstall(
                    f"{name}-{node.name}",
                    testbed,
                    node,
                    addresses,
                    internal_addresses,
                    extra_tls_san,
                    known_hosts,
                    pulumi.ResourceOptions(parent=self, depends_on=list(done)),
                )
                for node in stage
            ]
            for node, res in zip(stage, created, strict=True):
                self.installs[node.name] = res
            done += created
        self.kubeconfig = pulumi.Output.secret(self.installs[testbed.first_server.name].kubeconfig)
        self.register_outputs({"kubeconfig": self.kubeconfig, "nodes": list(self.installs)})
