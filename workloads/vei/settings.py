"""Typed settings of the VEI gateway and the local sink (environment prefix `VEI_`).

Command-line flags override the environment; the environment overrides the defaults here.
List settings (VEI_NATS_URLS, VEI_CLOUDS) accept a comma-separated string or a JSON list.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 1024 * 1024


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
    # Outgoing bytes buffered while reconnecting; frames published during a failover wait here.
    nats_pending_bytes: int = Field(64 * MIB, gt=0)

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
        return value


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
    kv_timeout_s: float = Field(1.0, gt=0)
    cloud_ttl_s: float = Field(30.0, ge=1, description="a cloud provider vanishes from ListClouds this "
                               "long after the last gateway offering it stopped")
    kv_replicas: int = Field(0, ge=0, le=5, description="replicas of the registry KV buckets; "
                             "0 = one per NATS URL, at most 3")

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


class SinkSettings(NatsSettings):
    out: str = "vei-sink.jsonl"
    # Keys remembered for de-duplication; at 10 fps this is more than a day of frames.
    dedup_window: int = Field(1_000_000, gt=0)
