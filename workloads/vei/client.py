"""Gateway endpoints for VEI clients (camera, vision app): several replicas, fast failover.

One grpc.aio channel over all gateway replicas, with client-side `round_robin` and health checking:
the channel keeps a connection to every replica, so when one dies the next call starts at once on a
connection that is already up (no connect handshake, no DNS lookup). One channel per endpoint with our
own rotation would have to connect after the failure, and would re-implement health tracking. A dead
replica is noticed by the stream error (process killed: the kernel sends RST) or by keepalive within
about `keepalive_time + keepalive_timeout` (link cut silently, no RST).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from workloads.vei.settings import GatewayClientSettings

HEALTH_SERVICE = "VEIv1_0.VEIv1_0"

# Keepalive ~1 s so a silently dead replica is detected in about 2 s. The gateway must allow pings this
# often (grpc.http2.min_ping_interval_without_data_ms <= 1000, grpc.keepalive_permit_without_calls=1),
# otherwise it answers with GOAWAY "too_many_pings".
KEEPALIVE_MS = 1000


def service_config(health_service: str = HEALTH_SERVICE) -> str:
    return json.dumps({
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": health_service},
    })


def channel_options(health_service: str = HEALTH_SERVICE,
                    keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, str | int]]:
    return [
        ("grpc.service_config", service_config(health_service)),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", keepalive_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Without this, an unanswered ping (keepalive or BDP probe) to a silently dead replica is only
        # given up after the default 60 s ping timeout (measured: no failover for > 10 s).
        ("grpc.http2.ping_timeout_ms", keepalive_ms),
        # Reconnect quickly when a replica comes back (the default backoff grows to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        # Distinct channels (camera and vision in one process) must not share subchannels.
        ("grpc.use_local_subchannel_pool", 1),
        # Resending is the camera's job (it knows what was acked); the channel's retry buffer would only
        # keep an extra copy of every streamed message.
        ("grpc.enable_retries", 0),
    ]


class EndpointError(ValueError):
    """A gateway endpoint list that cannot be used."""


def _split_host_port(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EndpointError(f"gateway endpoint {endpoint!r} is not HOST:PORT (e.g. 127.0.0.1:50051)")
    return host.strip("[]"), int(port)


def grpc_target(endpoints: Sequence[str] | str) -> str:
    """One gRPC target for all gateway replicas.

    - a `dns:///name:port` target is passed through: the resolver returns every record of a headless
      Service and round_robin spreads over them, re-resolving when a connection drops;
    - a list of HOST:PORT (or one comma-separated string) becomes an `ipv4:`/`ipv6:` multi-address
      target. Host names are resolved once, here.
    """
    if isinstance(endpoints, str):
        if endpoints.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
            return endpoints
        endpoints = [e for e in endpoints.split(",") if e.strip()]
    if not endpoints:
        raise EndpointError("no gateway endpoint given: pass --gateway HOST:PORT[,HOST:PORT...] "
                            "or dns:///name:port")
    v4: list[str] = []
    v6: list[str] = []
    for endpoint in endpoints:
        host, port = _split_host_port(endpoint.strip())
        for addr in _resolve(host, port):
            if ipaddress.ip_address(addr).version == 4:
                v4.append(f"{addr}:{port}")
            else:
                v6.append(f"[{addr}]:{port}")
    if v4 and v6:
        raise EndpointError("gateway endpoints mix IPv4 and IPv6 addresses; use one family")
    return "ipv4:" + ",".join(dict.fromkeys(v4)) if v4 else "ipv6:" + ",".join(dict.fromkeys(v6))


def _resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise EndpointError(f"cannot resolve gateway host {host!r}: {err}") from err
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _Token:
    """Adds `authorization: Bearer <token>` to a call (plaintext channels cannot carry gRPC call
    credentials, so the metadata is added by interceptors; with TLS it travels encrypted)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(tuple(details.metadata or ())), self._header)
        return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials,
                                          details.wait_for_ready)


# grpc.aio files each interceptor under the first of the four kinds it is an instance of, so one
# class per kind of call.
class _UnaryUnaryToken(_Token, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


class _UnaryStreamToken(_Token, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


class _StreamUnaryToken(_Token, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self._with_token(details), request_iterator)


class _StreamStreamToken(_Token, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await continuation(self._with_token(details), request_iterator)


def token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    kinds = (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)
    return [kind(token) for kind in kinds]


def open_channel(endpoints: Sequence[str] | str, health_service: str = HEALTH_SERVICE,
                 security: GatewayClientSettings | None = None) -> grpc.aio.Channel:
    """One channel over every replica; TLS and the token come from VEI_GATEWAY_* / VEI_GRPC_TOKEN*."""
    security = security or GatewayClientSettings()
    target = grpc_target(endpoints)
    options = channel_options(health_service, round(security.grpc_keepalive_s * 1000))
    interceptors = (token_interceptors(security.grpc_token.get_secret_value())
                    if security.grpc_token is not None else None)
    if not security.tls:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    key, cert = security.gateway_key_file, security.gateway_cert_file
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(security.gateway_ca_file).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


async def backoff_sleep(attempt: int, base_s: float = 0.05, cap_s: float = 1.0) -> None:
    """Pause before re-opening a stream; short, because round_robin already has other replicas up."""
    await asyncio.sleep(min(cap_s, base_s * (2 ** min(attempt, 10))))


def describe(err: BaseException) -> str:
    """One log line for a stream error (an AioRpcError's repr spans several lines)."""
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {err.details()}"
    return str(err) or type(err).__name__
