"""Platform components: one ComponentResource each, children parented to it, outputs registered last."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_random as random

from infra import versions
from infra.model import Testbed
from infra.platform import objects
from infra.platform.k8s import apply_object, chart_repository, helm_release
from infra.platform.values import metrics_server_values, monitoring_values, nats_values, openfaas_values


def _opts(
    parent: pulumi.Resource, provider: pulumi.ProviderResource, *deps: pulumi.Resource
) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=list(deps))


class Nats(pulumi.ComponentResource):
    """NATS cluster from the nats-io chart: `replicas` servers spread one per node, JetStream optional."""

    urls: list[str]

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        provider: pulumi.ProviderResource,
        after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:platform:Nats", name, None, opts)
        settings = testbed.platform.nats
        # `after`: the chart's PodMonitor needs the Prometheus Operator CRDs from Monitoring first.
        ns = apply_object(f"{name}-ns", objects.namespace(settings.namespace), _opts(self, provider, *after))
        helm_release(
            "nats",
            chart=versions.NATS_CHART,
            repo=chart_repository(testbed, versions.NATS_CHART_REPO),
            version=settings.chart_version,
            namespace=settings.namespace,
            values=nats_values(testbed),
            opts=_opts(self, provider, ns),
        )
        if (external := objects.nats_external_service(testbed)) is not None:
            apply_object(f"{name}-external", external, _opts(self, provider, ns))
        self.urls = nats_urls(testbed)
        self.register_outputs({"urls": self.urls})


def nats_urls(testbed: Testbed) -> list[str]:
    """Every server by its stable StatefulSet DNS name, so clients fail over without a Service hop."""
    ns = testbed.platform.nats.namespace
    return [
        f"nats://nats-{i}.nats-headless.{ns}.svc.cluster.local:4222"
        for i in range(testbed.platform.nats.replicas)
    ]


class MetricsServer(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        testbed: Testbed,
        provider: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:platform:MetricsServer", name, None, opts)
        helm_release(
            "metrics-server",
            chart=versions.METRICS_SERVER_CHART,
            repo=chart_repository(testbed, versions.METRICS_SERVER_CHART_REPO),
            version=testbed.platform.metrics_server.chart_version,
            namespace="kube-system",
            values=metrics_server_values(testbed),
            opts=_opts(self, provider),
        )
        self.register_outputs({})


class Monitoring(pulumi.ComponentResource):
    """Prometheus + Grafana (kube-prometheus-stack, trimmed) and the dashboards in infra/dashboards."""

    grafana_password: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        provider: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:platform:Monitoring", name, None, opts)
        mon = testbed.platform.monitoring
        ns = apply_object(f"{name}-ns", objects.namespace(mon.namespace), _opts(self, provider))
        password = random.RandomPassword(
            f"{name}-grafana-password", length=24, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        admin = apply_object(
            f"{name}-grafana-admin",
            objects.grafana_admin(testbed, password.result),
            _opts(self, provider, ns),
        )
        dashboards = [
            apply_object(f"{name}-{cm['metadata']['name']}", cm, _opts(self, provider, ns))
            for cm in objects.dashboard_configmaps(testbed)
        ]
        helm_release(
            "monitoring",
            chart=versions.KUBE_PROMETHEUS_STACK_CHART,
            repo=chart_repository(testbed, versions.KUBE_PROMETHEUS_STACK_CHART_REPO),
            version=mon.chart_version,
            namespace=mon.namespace,
            values=monitoring_values(testbed),
            opts=_opts(self, provider, ns, admin, *dashboards),
        )
        self.grafana_password = pulumi.Output.secret(password.result)
        self.register_outputs({"grafanaPassword": self.grafana_password})


class OpenFaaS(pulumi.ComponentResource):
    """OpenFaaS CE: admin password generated as a secret, functions namespace, HPAs for listed functions."""

    admin_password: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        provider: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:platform:OpenFaaS", name, None, opts)
        faas = testbed.platform.openfaas
        ns = apply_object(
            f"{name}-ns",
            objects.namespace(faas.namespace, {"role": "openfaas-system"}),
            _opts(self, provider),
        )
        fn_ns = apply_object(
            f"{name}-fn-ns",
            objects.namespace(faas.functions_namespace, {"role": "openfaas-fn"}),
            _opts(self, provider),
        )
        password = random.RandomPassword(
            f"{name}-admin-password", length=24, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        auth = apply_object(
            f"{name}-basic-auth",
            objects.openfaas_basic_auth(testbed, password.result),
            _opts(self, provider, ns),
        )
        helm_release(
            "openfaas",
            chart=versions.OPENFAAS_CHART,
            repo=chart_repository(testbed, versions.OPENFAAS_CHART_REPO),
            version=faas.chart_version,
            namespace=faas.namespace,
            values=openfaas_values(testbed),
            opts=_opts(self, provider, ns, fn_ns, auth),
        )
        for hpa in objects.function_hpas(testbed):
            apply_object(f"{name}-hpa-{hpa['metadata']['name']}", hpa, _opts(self, provider, fn_ns))
        self.admin_password = pulumi.Output.secret(password.result)
        self.register_outputs({"adminPassword": self.admin_password})


class NodeLabels(pulumi.ComponentResource):
    """Applies the labels K3s cannot set at registration (see objects.node_label_patches)."""

    def __init__(
        self,
        name: str,
        testbed: Testbed,
        provider: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("edgerig:platform:NodeLabels", name, None, opts)
        for patch in objects.node_label_patches(testbed):
            apply_object(f"{name}-{patch['metadata']['name']}", patch, _opts(self, provider))
        self.register_outputs({})
