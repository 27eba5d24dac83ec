"""Parsing of `--cloud` specs into cloud sinks.

    NAME                      only for NAME=local: the local sink process
    NAME=local[?timeout=S]
    NAME=mqtt://HOST:PORT/TOPIC[?qos=0|1]
    NAME=iot-data?region=R&topic=T[&endpoint=URL][&qos=0|1]

NAME is what clients pass as `cloudProvider` (A-Z a-z 0-9 _ -). Examples:
    --cloud local  --cloud mqtt=mqtt://127.0.0.1:1883/vei/results
    --cloud aws=iot-data?region=eu-north-1&topic=vei/results&endpoint=http://127.0.0.1:5000
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from nats.aio.client import Client

from workloads.vei.sinks.aws import AwsIotSink
from workloads.vei.sinks.base import CloudSink
from workloads.vei.sinks.local import LocalSink
from workloads.vei.sinks.mqtt import MqttSink
from workloads.vei.validation import NAME_RULE, is_valid_name

SYNTAX = ("NAME | NAME=local[?timeout=S] | NAME=mqtt://HOST:PORT/TOPIC[?qos=0|1] | "
          "NAME=iot-data?region=R&topic=T[&endpoint=URL][&qos=0|1]")


class CloudSpecError(ValueError):
    pass


@dataclass(frozen=True)
class CloudSpec:
    name: str
    kind: str  # local | mqtt | aws
    target: str
    params: dict[str, str] = field(default_factory=dict)


def parse_cloud_spec(spec: str) -> CloudSpec:
    text = spec.strip()
    name, sep, target = text.partition("=")
    if not is_valid_name(name):
        raise CloudSpecError(f"cloud spec {spec!r}: provider name {name!r} must be {NAME_RULE}; "
                             f"syntax: {SYNTAX}")
    if not sep:
        if name == "local":
            return CloudSpec(name, "local", "local")
        raise CloudSpecError(f"cloud spec {spec!r} needs a target, e.g. {name}=mqtt://HOST:1883/TOPIC; "
                             f"syntax: {SYNTAX}")
    base, _, query = target.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if base == "local":
        _allow(spec, params, {"timeout"})
        return CloudSpec(name, "local", target, params)
    if base.startswith("mqtt://"):
        _allow(spec, params, {"qos"})
        url = urlsplit(base)
        topic = url.path.lstrip("/")
        if not url.hostname or not topic:
            raise CloudSpecError(f"cloud spec {spec!r}: MQTT target needs a host and a topic, "
                                 "e.g. mqtt://127.0.0.1:1883/vei/results")
        if url.username or url.password:
            raise CloudSpecError(f"cloud spec for {name!r}: do not put credentials in the spec; set "
                                 "VEI_MQTT_USERNAME / VEI_MQTT_PASSWORD in the environment")
        return CloudSpec(name, "mqtt", target, params)
    if base == "iot-data":
        _allow(spec, params, {"region", "topic", "endpoint", "qos"})
        missing = [key for key in ("region", "topic") if not params.get(key)]
        if missing:
            raise CloudSpecError(f"cloud spec {spec!r}: iot-data needs {' and '.join(missing)}, e.g. "
                                 f"{name}=iot-data?region=eu-north-1&topic=vei/results")
        return CloudSpec(name, "aws", target, params)
    raise CloudSpecError(f"cloud spec {spec!r}: unknown target {base!r}; syntax: {SYNTAX}")


def _allow(spec: str, params: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise CloudSpecError(f"cloud spec {spec!r}: unknown option(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(allowed))}")
    qos = params.get("qos")
    if qos is not None and qos not in ("0", "1"):
        raise CloudSpecError(f"cloud spec {spec!r}: qos must be 0 or 1, not {qos!r}")
    timeout = params.get("timeout")
    if timeout is not None:
        try:
            ok = float(timeout) > 0
        except ValueError:
            ok = False
        if not ok:
            raise CloudSpecError(f"cloud spec {spec!r}: timeout must be a positive number of seconds")


def parse_cloud_specs(specs: list[str]) -> list[CloudSpec]:
    parsed = [parse_cloud_spec(spec) for spec in specs]
    names = [spec.name for spec in parsed]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise CloudSpecError(f"cloud provider(s) configured twice: {', '.join(dupes)}")
    return parsed


def build_sink(spec: CloudSpec, nc: Client, timeout_s: float, concurrency: int) -> CloudSink:
    qos = int(spec.params.get("qos", "1"))
    if spec.kind == "local":
        return LocalSink(spec.name, nc, float(spec.params.get("timeout", timeout_s)))
    if spec.kind == "mqtt":
        url = urlsplit(spec.target.partition("?")[0])
        assert url.hostname is not None  # checked by parse_cloud_spec
        return MqttSink(spec.name, url.hostname, url.port or 1883, url.path.lstrip("/"), qos,
                        timeout_s, max_inflight=concurrency)
    return AwsIotSink(spec.name, spec.params["region"], spec.params["topic"],
                      spec.params.get("endpoint") or None, qos, timeout_s, threads=min(32, concurrency))
