"""Platform and VEI application settings of the Testbed model (infra/model.py re-exports them).

Config keys: edgerig:platform (nats, openfaas, monitoring, metricsServer) and edgerig:vei.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from infra import versions
from infra.model_base import ConfigModel as _Model
from workloads.vei.sinks.spec import CloudSpecError, parse_cloud_spec
from workloads.vei.validation import NAME_RULE, is_valid_name


class NatsSettings(_Model):
    replicas: int = Field(default=3, ge=1, le=7)
    jetstream: bool = False
    chart_version: str = versions.NATS_CHART_VERSION
    namespace: str = "nats"
    # With vei.clients operator: NATS on every node at this port, for the operator's sink.
    client_node_port: int = Field(default=30422, ge=30000, le=32767)

    @field_validator("replicas")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v > 1 and v % 2 == 0:
            raise ValueError("platform.nats.replicas must be odd (RAFT/JetStream quorum): use 1, 3 or 5")
        return v


class HpaSettings(_Model):
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=25, ge=1)
    cpu_target_percent: int = Field(default=50, ge=1, le=100)


class OpenFaaSSettings(_Model):
    enabled: bool = True
    chart_version: str = versions.OPENFAAS_CHART_VERSION
    namespace: str = "openfaas"
    functions_namespace: str = "openfaas-fn"
    # Preferred node-affinity weight towards edge nodes for edge-capable functions (thesis scenario E1: 80);
    # 0 keeps the functions in the cloud (no edge toleration in the placement patch).
    edge_weight: int = Field(default=80, ge=0, le=100)
    gateway_node_port: int = Field(default=31112, ge=30000, le=32767)
    hpa: HpaSettings = Field(default_factory=HpaSettings)
    # Function deployments that get an HPA (CPU target) - the thesis evaluated nodeinfo,
    # gzip-compression, dd and shasum.
    hpa_functions: list[str] = Field(default_factory=list)


class MonitoringSettings(_Model):
    enabled: bool = True
    chart_version: str = versions.KUBE_PROMETHEUS_STACK_CHART_VERSION
    namespace: str = "monitoring"
    retention: str = "12h"
    grafana_node_port: int = Field(default=31300, ge=30000, le=32767)
    # Prometheus's HTTP API on every node, for experiments that read CPU and memory series.
    prometheus_node_port: int = Field(default=30090, ge=30000, le=32767)


class MetricsServerSettings(_Model):
    enabled: bool = True
    chart_version: str = versions.METRICS_SERVER_CHART_VERSION


class PlatformSettings(_Model):
    nats: NatsSettings = Field(default_factory=NatsSettings)
    openfaas: OpenFaaSSettings = Field(default_factory=OpenFaaSSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    metrics_server: MetricsServerSettings = Field(default_factory=MetricsServerSettings)


class CloudSink(_Model):
    """One VEI cloud sink; `name` is the cloudProvider string clients send (the original VEI clients
    send "AWS": name an aws sink "AWS" to serve them unchanged).

    The MQTT URL is checked with the gateway's own spec parser, so a URL the gateway would refuse fails
    here, before anything is deployed; it must not hold credentials (they would land in Pulumi state,
    the Deployment's args and `stack render`): the user goes into mqttUsername and the password into
    the secret edgerig:mqttPassword. Errors never repeat the URL.
    """

    name: str
    kind: Literal["local", "mqtt", "aws"]
    mqtt_url: str | None = None
    mqtt_username: str | None = None
    aws_region: str | None = None
    aws_endpoint: str | None = None
    aws_topic: str = "vei/results"

    @model_validator(mode="after")
    def _kind_fields(self) -> CloudSink:
        if not is_valid_name(self.name):
            raise ValueError(f"cloud sink name {self.name[:80]!r} must be {NAME_RULE} (clients send it as "
                             "cloudProvider)")
        if self.kind == "mqtt":
            if not self.mqtt_url:
                raise ValueError(f"cloud sink {self.name!r} is mqtt but has no mqttUrl "
                                 "(e.g. mqtt://broker:1883/vei/results or mqtts://broker:8883/vei/results)")
            if "@" in self.mqtt_url.partition("://")[2].partition("/")[0]:
                raise ValueError(f"cloud sink {self.name!r}: mqttUrl must not hold credentials "
                                 "(user:password@); put the user into mqttUsername and the password into "
                                 "the secret edgerig:mqttPassword "
                                 "(`pulumi config set --secret edgerig:mqttPassword ...`)")
            try:
                parse_cloud_spec(f"{self.name}={self.mqtt_url}")
            except CloudSpecError as exc:
                raise ValueError(f"cloud sink {self.name!r}: {exc}") from None
        if self.kind == "aws":
            if not self.aws_region:
                raise ValueError(f"cloud sink {self.name!r} is aws but has no awsRegion (e.g. eu-central-1)")
            if self.aws_endpoint and "@" in self.aws_endpoint.partition("://")[2].partition("/")[0]:
                raise ValueError(f"cloud sink {self.name!r}: awsEndpoint must not hold credentials; the keys "
                                 "are the secrets edgerig:awsAccessKeyId / edgerig:awsSecretAccessKey")
        return self


class ImageSettings(_Model):
    """Where the Kubernetes objects find edgerig's images (config key edgerig:images).

    Unset `registry` (the default) is air-gapped delivery: host configuration copies each node's
    architecture archives to the node, and the objects name `edgerig.local/<image>@<digest>` with
    imagePullPolicy Never. With `registry` (HOST[:PORT][/PATH]) the images are pushed there
    (`edgerig images push`) and the objects name `<registry>/<image>@<digest>`.
    """

    registry: str | None = None
    # The images.json of the build to deploy; a relative path is taken from the repository root.
    # Unset: $EDGERIG_IMAGES_RECORD, else build/images/images.json (see infra/images.py).
    build_record: str | None = None

    @field_validator("registry")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        if v is not None and (not v or "://" in v or v.endswith("/") or "@" in v or " " in v):
            raise ValueError(f"images.registry {v!r} must look like HOST[:PORT][/PATH], e.g. "
                             "registry.lab:5000/edgerig (no scheme, no trailing slash)")
        return v


class VeiSettings(_Model):
    enabled: bool = True
    namespace: str = "vei"
    gateway_replicas: int = Field(default=3, ge=1)
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    metrics_port: int = Field(default=9102, ge=1, le=65535)
    # Overrides the apiserver's default not-ready/unreachable tolerations for VEI pods only.
    toleration_seconds: int = Field(default=10, ge=0)
    # VEI pods tolerate the edge taint and prefer edge nodes with this weight (0 = no preference).
    edge_weight: int = Field(default=80, ge=0, le=100)
    cameras: int = Field(default=1, ge=0)
    fps: float = Field(default=10.0, gt=0)
    frame_bytes: int = Field(default=24_000, gt=0)
    vision_processing_ms: float = Field(default=50.0, ge=0)
    clouds: list[CloudSink] = Field(default_factory=lambda: [CloudSink(name="local", kind="local")])
    # Where the cameras and the local sink run. cluster: as Deployments (the pipeline runs on its own
    # after `pulumi up`). operator: on the operator's machine, started by `edgerig run` (one clock for
    # creation and arrival times); the gateway and NATS are then also published on node ports.
    clients: Literal["cluster", "operator"] = "cluster"
    gateway_node_port: int = Field(default=30051, ge=30000, le=32767)
    # Secrets: config keys edgerig:awsAccessKeyId / edgerig:awsSecretAccessKey / edgerig:mqttPassword.
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    mqtt_password: SecretStr | None = None

    @model_validator(mode="after")
    def _credentials(self) -> VeiSettings:
        names = [c.name for c in self.clouds]
        if len(set(names)) != len(names):
            raise ValueError(f"vei.clouds has duplicate names {names}: give each sink a unique name")
        if any(c.kind == "aws" for c in self.clouds) and not (
            self.aws_access_key_id and self.aws_secret_access_key
        ):
            raise ValueError(
                "an aws cloud sink is configured but AWS credentials are missing: run "
                "`pulumi config set --secret edgerig:awsAccessKeyId ...` and "
                "`pulumi config set --secret edgerig:awsSecretAccessKey ...`"
            )
        return self
