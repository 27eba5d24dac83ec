"""VeiApp: gateway (N replicas, gRPC probes, spread), its Services, vision app, cameras, sink, the
secrets they authenticate with and the NetworkPolicies of their namespace."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_random as random

from infra.apps import clients, manifests
from infra.model import Testbed
from infra.platform import network_policies
from infra.platform.k8s import apply_object
from infra.platform.objects import namespace


def credential_values(testbed: Testbed) -> dict[str, Any]:
    """Secret keys of vei-cloud-credentials, each value a Pulumi secret Output."""
    vei = testbed.vei
    pairs = {
        "aws-access-key-id": vei.aws_access_key_id,
        "aws-secret-access-key": vei.aws_secret_access_key,
        "mqtt-password": vei.mqtt_password,
    }
    return {key: pulumi.Output.secret(v.get_secret_value()) for key, v in pairs.items() if v is not None}


def client_names(testbed: Testbed) -> list[str]:
    """app.kubernetes.io/name of every pod that calls the gateway."""
    return [d["metadata"]["name"] for d in [*clients.vision_deployments(testbed),
                                            *clients.camera_deployments(testbed)]]


def vei_network_policies(testbed: Testbed) -> list[dict[str, Any]]:
    return network_policies.vei_network_policies(testbed, manifests.GATEWAY, manifests.SINK,
                                                 client_names(testbed))


class VeiApp(pulumi.ComponentResource):
    gateway_target: str
    gateway_token: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        provider: pulumi.ProviderResource,
        nats_seeds: Mapping[str, pulumi.Output[str]],
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:apps:VeiApp", name, None, opts)

        def child(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[*depends_on, *deps])

        ns = apply_object(f"{name}-ns", namespace(testbed.vei.namespace), child())
        for policy in vei_network_policies(testbed):
            apply_object(f"{name}-netpol-{policy['metadata']['name']}", policy, child(ns))
        secret = manifests.credentials_secret(testbed, credential_values(testbed))
        creds = [apply_object(f"{name}-credentials", secret, child(ns))] if secret else []
        self.gateway_token = None
        if testbed.vei.gateway_auth == "token":
            token = random.RandomPassword(f"{name}-gateway-token", length=32, special=False,
                                          opts=pulumi.ResourceOptions(parent=self))
            self.gateway_token = pulumi.Output.secret(token.result)
        auth = apply_object(f"{name}-auth", manifests.auth_secret(testbed, nats_seeds, self.gateway_token),
                            child(ns))
        gateway = apply_object(f"{name}-gateway", manifests.gateway_deployment(testbed),
                               child(ns, auth, *creds))
        for svc in manifests.gateway_services(testbed):
            apply_object(f"{name}-svc-{svc['metadata']['name']}", svc, child(ns))
        if (external := manifests.external_gateway_service(testbed)) is not None:
            apply_object(f"{name}-svc-{external['metadata']['name']}", external, child(ns))
        sink = clients.sink_deployment(testbed)
        if sink is not None:
            apply_object(f"{name}-sink", sink, child(ns, auth))
        # Clients start after the gateway exists; they retry until it is ready anyway.
        for vision in clients.vision_deployments(testbed):
            apply_object(f"{name}-{vision['metadata']['name']}", vision, child(ns, gateway))
        for cam in clients.camera_deployments(testbed):
            apply_object(f"{name}-{cam['metadata']['name']}", cam, child(ns, gateway))
        if testbed.platform.monitoring.enabled:
            for monitor in manifests.pod_monitors(testbed):
                apply_object(f"{name}-podmonitor-{monitor['metadata']['name']}", monitor, child(ns))
        self.gateway_target = manifests.gateway_target(testbed)
        self.register_outputs({"gatewayTarget": self.gateway_target})
