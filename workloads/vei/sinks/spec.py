"""Parsing of `--cloud` specs (pure: no network library is imported, so the stack model can use it).

    NAME                      only for NAME=local: the local sink process
    NAME=local[?timeout=S]
    NAME=mqtt://HOST[:PORT]/TOPIC[?qos=0|1]
    NAME=mqtts://HOST[:PORT]/TOPIC[?qos=0|1][&ca=/path/to/ca.pem]     TLS; default port 8883
    NAME=iot-data?region=R&topic=T[&endpoint=URL][&qos=0|1]
    NAME=file:PATH            the gateway writes the results itself (JSONL, as the local sink)

NAME is what clients pass as `cloudProvider` (A-Z a-z 0-9 _ -). The original VEI clients send "AWS",
so `AWS=iot-data?...` serves them unchanged. Examples:
    --cloud local  --cloud mqtt=mqtt://127.0.0.1:1883/vei/results
    --cloud AWS=iot-data?region=eu-north-1&topic=vei/results&endpoint=http://127.0.0.1:5000

A spec never carries a secret: MQTT credentials come from VEI_MQTT_USERNAME / VEI_MQTT_PASSWORD and
AWS ones from the standard AWS chain. A spec that holds one anyway is refused, and no error message
ever repeats a spec as given: `redact` removes user info and every option value that is not known
to be harmless, so a password typed into the wrong place never reaches a log or a terminal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from workloads.vei.validation import NAME_RULE, is_valid_name

SYNTAX = ("NAME | NAME=local[?timeout=S] | NAME=mqtt[s]://HOST[:PORT]/TOPIC[?qos=0|1][&ca=FILE] | "
          "NAME=iot-data?region=R&topic=T[&endpoint=URL][&qos=0|1] | NAME=file:PATH")
MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# Option values shown in errors; anything else (an unknown option may be a secret) is masked.
_SHOWN_OPTIONS = {"qos", "timeout", "region", "topic", "ca", "endpoint"}
_USERINFO = re.compile(r"(?<=//)[^/@?#\s]*@")


class CloudSpecError(ValueError):
    pass


@dataclass(frozen=True)
class CloudSpec:
    name: str
    kind: str  # local | mqtt | aws | file
    target: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    topic: str
    tls: bool
    ca_file: str | None


def redact(spec: str) -> str:
    """`spec` with user info and the values of options that may be secret replaced by ***."""
    name, sep, target = spec.strip().partition("=")
    if not sep:
        return _USERINFO.sub("***@", name)
    base, qsep, query = target.partition("?")
    base = _USERINFO.sub("***@", base)
    if not qsep:
        return f"{name}={base}"
    options = [f"{key}={_USERINFO.sub('***@', value) if key in _SHOWN_OPTIONS else '***'}"
               for key, value in parse_qsl(query, keep_blank_values=True)]
    return f"{name}={base}?{'&'.join(options)}"


def parse_cloud_spec(spec: str) -> CloudSpec:
    text = spec.strip()
    shown = redact(text)
    name, sep, target = text.partition("=")
    if not is_valid_name(name):
        raise CloudSpecError(f"cloud spec {shown!r}: the provider name (before '=') must be {NAME_RULE}; "
                             f"syntax: {SYNTAX}")
    if not sep:
        if name == "local":
            return CloudSpec(name, "local", "local")
        raise CloudSpecError(f"cloud spec {shown!r} needs a target, e.g. {name}=mqtt://HOST:1883/TOPIC; "
                             f"syntax: {SYNTAX}")
    base, _, query = target.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if base == "local":
        _allow(shown, params, {"timeout"})
        return CloudSpec(name, "local", target, params)
    scheme = base.partition("://")[0]
    if scheme in MQTT_PORTS and "://" in base:
        _allow(shown, params, {"qos", "ca"} if scheme == "mqtts" else {"qos"})
        if "ca" in params and not params["ca"]:
            raise CloudSpecError(f"cloud spec {shown!r}: ca= needs the path of a PEM file of CA certificates")
        mqtt_target(CloudSpec(name, "mqtt", target, params), shown)  # checks host, port, topic, credentials
        return CloudSpec(name, "mqtt", target, params)
    if base.startswith("file:"):
        if query or not base[len("file:"):]:
            raise CloudSpecError(f"cloud spec {shown!r}: write file:PATH, e.g. "
                                 f"{name}=file:results/sink.jsonl")
        return CloudSpec(name, "file", target)
    if base == "iot-data":
        _allow(shown, params, {"region", "topic", "endpoint", "qos"})
        missing = [key for key in ("region", "topic") if not params.get(key)]
        if missing:
            raise CloudSpecError(f"cloud spec {shown!r}: iot-data needs {' and '.join(missing)}, e.g. "
                                 f"{name}=iot-data?region=eu-north-1&topic=vei/results")
        endpoint = params.get("endpoint")
        if endpoint and (urlsplit(endpoint).username or urlsplit(endpoint).password):
            raise CloudSpecError(f"cloud spec for {name!r}: the endpoint URL must not hold credentials; "
                                 "AWS credentials come from the standard AWS environment/profile chain")
        return CloudSpec(name, "aws", target, params)
    raise CloudSpecError(f"cloud spec {shown!r}: unknown target {_USERINFO.sub('***@', base)!r}; "
                         f"syntax: {SYNTAX}")


def mqtt_target(spec: CloudSpec, shown: str | None = None) -> MqttTarget:
    shown = shown or redact(f"{spec.name}={spec.target}")
    url = urlsplit(spec.target.partition("?")[0])
    if "@" in url.netloc:
        raise CloudSpecError(f"cloud spec for {spec.name!r}: do not put credentials in the URL; set "
                             "VEI_MQTT_USERNAME / VEI_MQTT_PASSWORD in the gateway's environment")
    try:
        port = url.port or MQTT_PORTS[url.scheme]
    except ValueError:
        raise CloudSpecError(f"cloud spec {shown!r}: the port must be a number 1-65535") from None
    topic = url.path.lstrip("/")
    if not url.hostname or not topic:
        raise CloudSpecError(f"cloud spec {shown!r}: MQTT target needs a host and a topic, "
                             f"e.g. {url.scheme}://127.0.0.1:{MQTT_PORTS[url.scheme]}/vei/results")
    if "+" in topic or "#" in spec.target.partition("?")[0]:  # urlsplit would take '#...' as a fragment
        raise CloudSpecError(f"cloud spec {shown!r}: MQTT topic {topic!r} has a wildcard (+ or #); "
                             "results are published to one fixed topic")
    return MqttTarget(url.hostname, port, topic, url.scheme == "mqtts", spec.params.get("ca") or None)


def _allow(shown: str, params: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise CloudSpecError(f"cloud spec {shown!r}: unknown option(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(allowed))}")
    qos = params.get("qos")
    if qos is not None and qos not in ("0", "1"):
        raise CloudSpecError(f"cloud spec {shown!r}: qos must be 0 or 1, not {qos!r}")
    timeout = params.get("timeout")
    if timeout is not None:
        try:
            ok = float(timeout) > 0
        except ValueError:
            ok = False
        if not ok:
            raise CloudSpecError(f"cloud spec {shown!r}: timeout must be a positive number of seconds")


def parse_cloud_specs(specs: list[str]) -> list[CloudSpec]:
    parsed = [parse_cloud_spec(spec) for spec in specs]
    names = [spec.name for spec in parsed]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise CloudSpecError(f"cloud provider(s) configured twice: {', '.join(dupes)}")
    return parsed
