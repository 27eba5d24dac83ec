"""The Pulumi program as a function of the typed model, so tests can run it under mocks per stack."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.apps.vei import VeiApp
from infra.cloud.host_keys import HostKey, known_hosts_line
from infra.cloud.openstack_nodes import OpenStackNodes
from infra.cluster.bootstrap import Bootstrap
from infra.edge.inventory import inventory_entry
from infra.edge.pi_nodes import PiNodes
from infra.hosts.artefacts import check_pins
from infra.hosts.inventory import require_host_keys
from infra.model import Testbed
from infra.platform.components import MetricsServer, Monitoring, Nats, NodeLabels, OpenFaaS
from infra.platform.edgemesh import EdgeMesh
from infra.platform.values import edge_function_patch


@dataclass
class Program:
    """What build() created, for tests and for exports."""

    testbed: Testbed
    cloud: OpenStackNodes | None = None
    edge: PiNodes | None = None
    bootstrap: Bootstrap | None = None
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


def build(testbed: Testbed) -> Program:
    # Every artefact the stack installs must have its published digest pinned: refuse before any VM.
    check_pins(testbed)
    # Every host's SSH key must be checkable: the VMs' come from the program, the Pis' from the operator.
    require_host_keys(testbed, vm_keys_known=True)
    prog = Program(testbed)
    addresses: dict[str, pulumi.Input[str]] = {}
    internal: dict[str, pulumi.Input[str]] = {}
    if testbed.openstack_nodes:
        prog.cloud = OpenStackNodes("cloud", testbed)
        addresses.update(prog.cloud.addresses)
        internal.update(prog.cloud.internal_addresses)
    if testbed.static_nodes:
        prog.edge = PiNodes("edge", testbed)
        addresses.update(prog.edge.addresses)

    # Hosts are configured once their VMs, ports and floating IPs exist.
    known_hosts = vm_known_hosts(testbed, prog.cloud)
    prog.bootstrap = Bootstrap(
        "cluster", testbed, addresses, internal, known_hosts, after=[prog.cloud] if prog.cloud else []
    )
    provider = k8s.Provider(
        "k8s",
        kubeconfig=prog.bootstrap.kubeconfig,
        enable_server_side_apply=True,
        opts=pulumi.ResourceOptions(depends_on=[prog.bootstrap]),
    )
    platform = testbed.platform
    # Edge role labels first: the placement of everything below selects on them.
    labels = NodeLabels("node-labels", testbed, provider)
    ready: list[pulumi.Resource] = [labels]
    if platform.monitoring.enabled:
        # First: its Prometheus Operator CRDs back the PodMonitors of NATS and the gateway.
        monitoring = Monitoring("monitoring", testbed, provider)
        prog.components["monitoring"] = monitoring
        ready.append(monitoring)
    if testbed.edgemesh_enabled:
        # Pods on EdgeCore nodes reach Services (NATS, the gateway) only through EdgeMesh.
        edgemesh = EdgeMesh("edgemesh", testbed, provider, addresses, after=[labels])
        prog.components["edgemesh"] = edgemesh
        ready.append(edgemesh)
    nats = Nats("nats", testbed, provider, after=ready)
    prog.components["nats"] = nats
    if platform.metrics_server.enabled:
        prog.components["metrics-server"] = MetricsServer("metrics-server", testbed, provider)
    if platform.openfaas.enabled:
        prog.components["openfaas"] = OpenFaaS("openfaas", testbed, provider)
    if testbed.vei.enabled:
        prog.components["vei"] = VeiApp("vei", testbed, provider, depends_on=[nats, *ready])

    _export(prog, addresses, known_hosts)
    return prog


def vm_known_hosts(testbed: Testbed, cloud: OpenStackNodes | None) -> pulumi.Output[str]:
    """known_hosts lines for the VMs, from the host keys the program gave them (floating and fixed IP)."""
    if cloud is None:
        return pulumi.Output.from_input("")
    parts = [
        pulumi.Output.all(cloud.addresses[n.name], cloud.internal_addresses[n.name], cloud.host_keys[n.name])
        for n in testbed.openstack_nodes
    ]
    return pulumi.Output.all(*parts).apply(
        lambda rows: "".join(known_hosts_line(r[:2], HostKey("", r[2])) for r in rows)
    )


def _export(prog: Program, addresses: dict[str, pulumi.Input[str]], known_hosts: pulumi.Output[str]) -> None:
    testbed = prog.testbed
    assert prog.bootstrap is not None

    def inventory(resolved: list[str]) -> dict[str, Any]:
        by_name = dict(zip(addresses, resolved, strict=True))
        return {n.name: inventory_entry(testbed, n, by_name.get(n.name)) for n in testbed.nodes}

    first = pulumi.Output.from_input(addresses[testbed.first_server.name])
    outputs: dict[str, Any] = {
        "inventory": pulumi.Output.all(*addresses.values()).apply(inventory),
        "kubeconfig": prog.bootstrap.kubeconfig,  # secret: `pulumi stack output kubeconfig --show-secrets`
        "apiEndpoint": first.apply(lambda ip: f"https://{ip}:6443"),
    }
    if testbed.openstack_nodes:
        # The VMs' host keys, for the operator's ssh and `edgerig cluster`: append to a known_hosts file.
        outputs["knownHosts"] = known_hosts
    if isinstance(openfaas := prog.components.get("openfaas"), OpenFaaS):
        outputs["openfaasAdminPassword"] = openfaas.admin_password
        outputs["openfaasGateway"] = first.apply(
            lambda ip: f"http://{ip}:{testbed.platform.openfaas.gateway_node_port}"
        )
        if testbed.platform.openfaas.edge_weight > 0:
            outputs["openfaasEdgePlacementPatch"] = json.dumps(edge_function_patch(testbed))
    if isinstance(monitoring := prog.components.get("monitoring"), Monitoring):
        outputs["grafanaPassword"] = monitoring.grafana_password
        port = testbed.platform.monitoring.prometheus_node_port
        outputs["prometheusUrl"] = first.apply(lambda ip: f"http://{ip}:{port}")
    if isinstance(vei := prog.components.get("vei"), VeiApp):
        outputs["veiGatewayTarget"] = vei.gateway_target
        outputs["veiClients"] = testbed.vei.clients
        if testbed.vei.clients == "operator":
            # Node ports answer on every node; clients balance over (and fail over between) them.
            gw_port, nats_port = testbed.vei.gateway_node_port, testbed.platform.nats.client_node_port
            every = pulumi.Output.all(*addresses.values())
            outputs["veiGatewayEndpoints"] = every.apply(lambda ips: [f"{ip}:{gw_port}" for ip in ips])
            outputs["natsUrls"] = every.apply(lambda ips: [f"nats://{ip}:{nats_port}" for ip in ips])
    if testbed.cloudcore_node is not None:
        outputs["cloudcoreNode"] = testbed.cloudcore_node.name
    for key, value in outputs.items():
        pulumi.export(key, value)
    prog.outputs = outputs
