"""Typed settings of the VEI processes (environment prefix `VEI_`).

Command-line flags override the environment; the environment overrides the defaults here.
List settings (VEI_NATS_URLS, VEI_CLOUDS) accept a comma-separated string or a JSON list.

Secrets (NATS password/token, MQTT password, the gateway's client token) have no command-line flag,
so they never show in `ps`: each comes from its environment variable or, better in Kubernetes, from
a file named by the `..._FILE` variable (a mounted Secret). They are `SecretStr`, so a settings dump
or a validation error shows `**********`. Certificates and keys are always files.

| variable | process | meaning |
|---|---|---|
| VEI_NATS_USER + VEI_NATS_PASSWORD(_FILE) | gateway, sink | NATS user/password auth |
| VEI_NATS_TOKEN(_FILE) | gateway, sink | NATS token auth |
| VEI_NATS_CREDS_FILE | gateway, sink | NATS decentralised auth: a .creds file (user JWT + nkey seed) |
| VEI_NATS_NKEY_SEED_FILE | gateway, sink | NATS nkey auth: a file holding the user's nkey seed (SU...) |
| VEI_NATS_TLS_CA_FILE | gateway, sink | verify the NATS servers against this CA (turns TLS on) |
| VEI_NATS_TLS_CERT_FILE + VEI_NATS_TLS_KEY_FILE | gateway, sink | client certificate for NATS mTLS |
| VEI_MQTT_USERNAME + VEI_MQTT_PASSWORD(_FILE) | gateway | MQTT broker credentials |
| VEI_GRPC_TOKEN(_FILE) | gateway; camera, vision | bearer token gRPC clients must send |
| VEI_GRPC_TLS_CERT_FILE + VEI_GRPC_TLS_KEY_FILE | gateway | serve gRPC over TLS |
| VEI_GRPC_CLIENT_CA_FILE | gateway | require client certificates signed by this CA (mTLS) |
| VEI_GRPC_REFLECTION | gateway | serve gRPC reflection (default true; the cluster's gateways set false) |
| VEI_GATEWAY_CA_FILE | camera, vision | verify the gateway's TLS certificate (turns TLS on) |
| VEI_GATEWAY_CERT_FILE + VEI_GATEWAY_KEY_FILE | camera, vision | client certificate for gateway mTLS |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1024 * 1024
# The NATS servers' max_payload for VEI: the gateway's largest image (4 MiB by default) plus the
# protobuf envelope, above NATS's 1 MB default. Every NATS the VEI runs on is configured with it.
NATS_MAX_PAYLOAD_BYTES = 8 * MIB
# Every nats-server the VEI runs on gets one Go scheduler thread: at the VEI's message rates it spends
# ~15 % less CPU per message than with one per core (measured; docs/benchmarks.md), and latency does
# not suffer.
NATS_GOMAXPROCS = 1


def read_secret_file(path: str, setting: str) -> SecretStr:
    """The contents of a mounted secret file, without the trailing newline editors add."""
    try:
        return SecretStr(Path(path).read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def check_file(path: str, setting: str) -> str:
    if path and not Path(path).is_file():
        raise ValueError(f"{setting}: {path} is not a readable file")
    return path


def _secret(value: SecretStr | None, file: str, name: str) -> SecretStr | None:
    if file:
        if value is not None:
            raise ValueError(f"set either VEI_{name} or VEI_{name}_FILE, not both")
        return read_secret_file(file, f"VEI_{name}_FILE")
    return value


def split_list(value: Any) -> Any:
    """'a,b' or '["a","b"]' -> ['a', 'b']; lists pass through unchanged."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class NatsSettings(BaseSettings):
    """How a VEI process connects to NATS: every cluster URL, fast dead-peer detection, and
    endless reconnects so a NATS node failure is a short pause rather than an exit."""

    model_config = SettingsConfigDict(env_prefix="VEI_", extra="ignore")

    nats_urls: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    nats_ping_interval_s: float = Field(1.0, gt=0)
    nats_max_outstanding_pings: int = Field(2, ge=1)
    nats_reconnect_wait_s: float = Field(0.2, ge=0)
    nats_connect_timeout_s: float = Field(2.0, gt=0)
    nats_startup_timeout_s: float = Field(60.0, gt=0, description="give up (exit 1) when no NATS "
                                          "server answers within this long at start-up")
    nats_join_timeout_s: float = Field(10.0, ge=0, description="at start-up, wait this long at most for "
                                       "the NATS server to rejoin its cluster before reporting SERVING")
    # Outgoing bytes buffered while reconnecting; frames published during a failover wait here.
    nats_pending_bytes: int = Field(64 * MIB, gt=0)
    # Authentication and TLS towards NATS (see the table above); at most one of user, token, creds, nkey.
    nats_user: str = ""
    nats_password: SecretStr | None = None
    nats_password_file: str = ""
    nats_token: SecretStr | None = None
    nats_token_file: str = ""
    nats_creds_file: str = ""
    nats_nkey_seed_file: str = ""
    nats_tls_ca_file: str = ""
    nats_tls_cert_file: str = ""
    nats_tls_key_file: str = ""

    @field_validator("nats_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("nats_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one NATS URL is needed, e.g. nats://127.0.0.1:4222")
        for url in value:
            if "://" not in url:
                raise ValueError(f"NATS URL {url!r} has no scheme; write nats://{url}")
            if "@" in url.partition("://")[2].partition("/")[0]:
                # Never echo the URL: the part before '@' is a user name and probably a password.
                raise ValueError("a NATS URL holds credentials (user:password@ or token@); remove them and "
                                 "set VEI_NATS_USER + VEI_NATS_PASSWORD_FILE or VEI_NATS_TOKEN_FILE instead")
        return value

    @model_validator(mode="after")
    def _check_nats_auth(self) -> NatsSettings:
        self.nats_password = _secret(self.nats_password, self.nats_password_file, "NATS_PASSWORD")
        self.nats_token = _secret(self.nats_token, self.nats_token_file, "NATS_TOKEN")
        self.nats_password_file = self.nats_token_file = ""
        methods = [name for name, used in (
            ("VEI_NATS_USER", bool(self.nats_user)), ("VEI_NATS_TOKEN", self.nats_token is not None),
            ("VEI_NATS_CREDS_FILE", bool(self.nats_creds_file)),
            ("VEI_NATS_NKEY_SEED_FILE", bool(self.nats_nkey_seed_file))) if used]
        if len(methods) > 1:
            raise ValueError(f"choose one NATS authentication method, not {' and '.join(methods)}")
        if self.nats_password is not None and not self.nats_user:
            raise ValueError("VEI_NATS_PASSWORD is set but VEI_NATS_USER is not")
        for setting in ("nats_creds_file", "nats_nkey_seed_file", "nats_tls_ca_file", "nats_tls_cert_file",
                        "nats_tls_key_file"):
            check_file(getattr(self, setting), f"VEI_{setting.upper()}")
        if bool(self.nats_tls_cert_file) != bool(self.nats_tls_key_file):
            raise ValueError("VEI_NATS_TLS_CERT_FILE and VEI_NATS_TLS_KEY_FILE go together "
                             "(client certificate)")
        return self


class GatewaySettings(NatsSettings):
    listen: str = "127.0.0.1:50051"
    metrics_listen: str = Field("", description="HOST:PORT for Prometheus metrics; empty = off")
    max_image_bytes: int = Field(4 * MIB, gt=0)
    clouds: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["local"])
    grace_s: float = Field(5.0, ge=0, description="how long in-flight RPCs may finish on SIGTERM")
    subscriber_queue: int = Field(1024, gt=0, description="frames buffered per subscriber before "
                                  "it is dropped as too slow")
    ack_linger_s: float = Field(5.0, ge=0, description="after a PublishImageAcked client half-closes, "
                                "how long to wait for its outstanding acks")
    cloud_concurrency: int = Field(256, gt=0, description="in-flight sink deliveries per PublishToCloud")
    sink_timeout_s: float = Field(2.0, gt=0)
    # Where the camera and application registry lives (workloads/vei/registry.py). `memory` needs no
    # JetStream, whose first stream starts a timer in nats-server that costs the idle system CPU;
    # more than one replica needs `kv` to list what the others registered.
    registry: Literal["memory", "kv"] = Field("memory", description="memory: this gateway's own; "
                                              "kv: JetStream KV buckets shared by every replica")
    # kv_timeout_s also bounds the wait for NATS to confirm a Subscribe* call's subscription.
    kv_timeout_s: float = Field(1.0, gt=0)
    kv_replicas: int = Field(0, ge=0, le=5, description="replicas of the registry KV buckets (registry "
                             "kv); 0 = one per NATS URL, at most 3")
    # MQTT sink credentials (environment or file only).
    mqtt_username: str = ""
    mqtt_password: SecretStr | None = None
    mqtt_password_file: str = ""
    # Who may call the gateway: a bearer token (metadata `authorization: Bearer ...`), and/or TLS with
    # client certificates. Off by default; health checks stay open so probes work without them.
    grpc_token: SecretStr | None = None
    grpc_token_file: str = ""
    grpc_tls_cert_file: str = ""
    grpc_tls_key_file: str = ""
    grpc_client_ca_file: str = ""
    # Server reflection (grpcurl and friends list and describe the services): handy on a desk, off in
    # the cluster, where nobody needs to explore the API.
    grpc_reflection: bool = True
    # How long a client may leave data unacknowledged, or a ping unanswered, before it counts as dead
    # (its node cut off) and its queue-group share of frames goes elsewhere.
    grpc_keepalive_s: float = Field(1.0, ge=0.1)
    # How often each connection is pinged. Streaming connections need no ping (unacknowledged data
    # already detects a cut within grpc_keepalive_s), so this only bounds how long a dead idle
    # connection lingers.
    grpc_idle_ping_s: float = Field(10.0, ge=0.1)

    @field_validator("clouds", mode="before")
    @classmethod
    def _split_clouds(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"listen address {value!r} must be HOST:PORT, e.g. 0.0.0.0:50051")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _check_metrics(cls, value: str) -> str:
        if value:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"metrics address {value!r} must be HOST:PORT, e.g. 0.0.0.0:9100")
        return value

    @model_validator(mode="after")
    def _check_gateway_secrets(self) -> GatewaySettings:
        self.mqtt_password = _secret(self.mqtt_password, self.mqtt_password_file, "MQTT_PASSWORD")
        self.grpc_token = _secret(self.grpc_token, self.grpc_token_file, "GRPC_TOKEN")
        self.mqtt_password_file = self.grpc_token_file = ""
        if self.mqtt_password is not None and not self.mqtt_username:
            raise ValueError("VEI_MQTT_PASSWORD is set but VEI_MQTT_USERNAME is not")
        if self.grpc_token is not None and not self.grpc_token.get_secret_value():
            raise ValueError("VEI_GRPC_TOKEN is empty")
        for setting in ("grpc_tls_cert_file", "grpc_tls_key_file", "grpc_client_ca_file"):
            check_file(getattr(self, setting), f"VEI_{setting.upper()}")
        if bool(self.grpc_tls_cert_file) != bool(self.grpc_tls_key_file):
            raise ValueError("VEI_GRPC_TLS_CERT_FILE and VEI_GRPC_TLS_KEY_FILE go together")
        if self.grpc_client_ca_file and not self.grpc_tls_cert_file:
            raise ValueError("VEI_GRPC_CLIENT_CA_FILE (mTLS) needs TLS: set VEI_GRPC_TLS_CERT_FILE and "
                             "VEI_GRPC_TLS_KEY_FILE too")
        return self


class SinkSettings(NatsSettings):
    out: str = "vei-sink.jsonl"
    # Keys remembered for de-duplication; at 10 fps this is more than a day of frames.
    dedup_window: int = Field(1_000_000, gt=0)


class GatewayClientSettings(BaseSettings):
    """How the camera and the vision app authenticate to the gateway (environment only)."""

    model_config = SettingsConfigDict(env_prefix="VEI_", extra="ignore")

    grpc_token: SecretStr | None = None
    grpc_token_file: str = ""
    # Keepalive ping interval (and ping timeout) towards the gateway: a silently dead replica is left
    # after about twice this; each ping wakes both ends (see docs/benchmarks.md for the trade-off).
    grpc_keepalive_s: float = Field(default=1.0, ge=0.1)
    gateway_ca_file: str = ""
    gateway_cert_file: str = ""
    gateway_key_file: str = ""

    @model_validator(mode="after")
    def _check(self) -> GatewayClientSettings:
        self.grpc_token = _secret(self.grpc_token, self.grpc_token_file, "GRPC_TOKEN")
        self.grpc_token_file = ""
        for setting in ("gateway_ca_file", "gateway_cert_file", "gateway_key_file"):
            check_file(getattr(self, setting), f"VEI_{setting.upper()}")
        if bool(self.gateway_cert_file) != bool(self.gateway_key_file):
            raise ValueError("VEI_GATEWAY_CERT_FILE and VEI_GATEWAY_KEY_FILE go together "
                             "(client certificate)")
        if self.gateway_cert_file and not self.gateway_ca_file:
            raise ValueError("a client certificate needs TLS: set VEI_GATEWAY_CA_FILE too")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.gateway_ca_file)


def explain(exc: ValidationError) -> str:
    """A settings error without the offending values (pydantic's own text repeats them, and a value
    may be a password), naming each setting as its environment variable."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"])
        name = f"VEI_{where.upper()}" if where else "settings"
        lines.append(f"{name}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(lines)
