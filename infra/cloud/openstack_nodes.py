"""OpenStackNodes: network, subnet, router, generated security group, keypair, VMs and floating IPs."""

from __future__ import annotations

import base64
import functools

import pulumi
import pulumi_openstack as openstack
import pulumi_random as random

from infra.cloud.host_keys import SEED_BYTES, HostKey, host_key
from infra.cloud.security import GROUP, security_rules
from infra.cloud.userdata import user_data
from infra.model import Testbed


def _host_key(node_name: str, seed_base64: str) -> HostKey:
    return host_key(base64.b64decode(seed_base64), f"root@{node_name}")


class OpenStackNodes(pulumi.ComponentResource):
    """One VM per `provider: openstack` node. `addresses` is what SSH/the operator uses (floating IP
    when enabled), `internal_addresses` the fixed IP on the cluster subnet."""

    addresses: dict[str, pulumi.Output[str]]
    internal_addresses: dict[str, pulumi.Output[str]]
    security_group_id: pulumi.Output[str]
    host_keys: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, testbed: Testbed, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("edgerig:cloud:OpenStackNodes", name, None, opts)
        settings = testbed.openstack
        if settings is None:  # the model guarantees this for stacks with OpenStack nodes
            raise ValueError("OpenStackNodes needs edgerig:openstack settings")
        child = pulumi.ResourceOptions(parent=self)
        if settings.cloud:
            provider = openstack.Provider(f"{name}-provider", cloud=settings.cloud, opts=child)
            child = pulumi.ResourceOptions(parent=self, provider=provider)
        invoke = pulumi.InvokeOptions(parent=self, provider=child.provider)

        external = openstack.networking.get_network_output(name=settings.external_network, opts=invoke)
        network = openstack.networking.Network(f"{name}-net", name=f"{testbed.name}-net", opts=child)
        subnet = openstack.networking.Subnet(
            f"{name}-subnet",
            name=f"{testbed.name}-subnet",
            network_id=network.id,
            cidr=str(settings.network_cidr),
            ip_version=4,
            dns_nameservers=[str(ip) for ip in settings.dns_nameservers],
            opts=child,
        )
        router = openstack.networking.Router(
            f"{name}-router", name=f"{testbed.name}-router", external_network_id=external.id, opts=child
        )
        openstack.networking.RouterInterface(
            f"{name}-router-if", router_id=router.id, subnet_id=subnet.id, opts=child
        )

        group = openstack.networking.SecGroup(
            f"{name}-sg",
            name=f"{testbed.name}-cluster",
            description=f"edgerig {testbed.name}: generated from the stack (infra/cloud/security.py)",
            opts=child,
        )
        for rule in security_rules(testbed):
            openstack.networking.SecGroupRule(
                f"{name}-sg-{rule.slug}",
                direction="ingress",
                ethertype="IPv4",
                protocol=rule.protocol,
                port_range_min=rule.port_min,
                port_range_max=rule.port_max,
                remote_group_id=group.id if rule.source == GROUP else None,
                remote_ip_prefix=None if rule.source == GROUP else rule.source,
                security_group_id=group.id,
                description=rule.description,
                opts=child,
            )

        keypair = openstack.compute.Keypair(
            f"{name}-keypair", name=f"{testbed.name}-operator", public_key=settings.public_key, opts=child
        )

        self.addresses = {}
        self.internal_addresses = {}
        self.host_keys = {}  # node -> its SSH host public key
        for node in testbed.openstack_nodes:
            # The VM's SSH host key, generated here (a secret seed in the stack's state) and injected
            # through cloud-init, so the operator knows it before the first connection.
            seed = random.RandomBytes(
                f"{name}-{node.name}-host-key", length=SEED_BYTES, opts=pulumi.ResourceOptions(parent=self)
            )
            # Secret whatever the provider declares: the private key and the user data derive from it.
            seed_b64: pulumi.Output[str] = pulumi.Output.secret(seed.base64)
            key = seed_b64.apply(functools.partial(_host_key, node.name))
            self.host_keys[node.name] = pulumi.Output.unsecret(key.apply(lambda k: k.public_key))
            image = openstack.images.get_image_output(name=node.image, most_recent=True, opts=invoke)
            port = openstack.networking.Port(
                f"{name}-{node.name}-port",
                name=f"{testbed.name}-{node.name}",
                network_id=network.id,
                fixed_ips=[{"subnet_id": subnet.id}],
                security_group_ids=[group.id],
                opts=child,
            )
            instance = openstack.compute.Instance(
                f"{name}-{node.name}",
                name=node.name,
                flavor_name=node.flavor,
                key_pair=keypair.name,
                availability_zone=settings.availability_zone,
                # Secret like the seed it comes from: it holds the host's private key.
                user_data=key.apply(functools.partial(user_data, node)),
                networks=[{"port": port.id}],
                block_devices=[
                    {
                        "uuid": image.id,
                        "source_type": "image",
                        "destination_type": "volume",
                        "volume_size": node.volume_gb or 20,
                        "boot_index": 0,
                        "delete_on_termination": True,
                    }
                ],
                metadata={
                    "edgerig-testbed": testbed.name,
                    "edgerig-role": node.role,
                    "edgerig-realm": node.realm,
                },
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[subnet])),
            )
            fixed_ip = port.all_fixed_ips.apply(lambda ips: ips[0])
            self.internal_addresses[node.name] = fixed_ip
            if settings.floating_ips:
                fip = openstack.networking.FloatingIp(
                    f"{name}-{node.name}-fip", pool=settings.external_network, opts=child
                )
                openstack.networking.FloatingIpAssociate(
                    f"{name}-{node.name}-fip-assoc",
                    floating_ip=fip.address,
                    port_id=port.id,
                    opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[instance])),
                )
                self.addresses[node.name] = fip.address
            else:
                self.addresses[node.name] = fixed_ip
        self.security_group_id = group.id
        self.register_outputs(
            {
                "addresses": self.addresses,
                "internalAddresses": self.internal_addresses,
                "securityGroupId": self.security_group_id,
                "hostKeys": self.host_keys,
            }
        )
