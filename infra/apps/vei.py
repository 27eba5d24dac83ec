"""VeiApp: gateway (N replicas, gRPC probes, spread), its Services, vision app, cameras, sink."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from infra.apps import clients, manifests
from infra.model import Testbed
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


class VeiApp(pulumi.ComponentResource):
    gateway_target: str

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        provider: pulumi.ProviderResource,
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:apps:VeiApp", name, None, opts)

        def child(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[*depends_on, *deps])

        ns = apply_object(f"{name}-ns", namespace(testbed.vei.namespace), child())
        secret = manifests.credentials_secret(testbed, credential_values(testbed))
        creds = [apply_object(f"{name}-credentials", secret, child(ns))] if secret else []
        gateway = apply_object(f"{name}-gateway", manifests.gateway_deployment(testbed), child(ns, *creds))
        for svc in manifests.gateway_services(testbed):
            apply_object(f"{name}-svc-{svc['metadata']['name']}", svc, child(ns))
        if (external := manifests.external_gateway_service(testbed)) is not None:
            apply_object(f"{name}-svc-{external['metadata']['name']}", external, child(ns))
        sink = clients.sink_deployment(testbed)
        if sink is not None:
            apply_object(f"{name}-sink", sink, child(ns))
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
