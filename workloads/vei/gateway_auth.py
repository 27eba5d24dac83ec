"""Who may call the gateway: an optional bearer token and optional TLS / mutual TLS.

Both are off by default (the baseline system and the thesis's setup are plaintext on a private
network). With `VEI_GRPC_TOKEN(_FILE)` every VEI call must carry `authorization: Bearer <token>`;
the health service stays open, so Kubernetes gRPC probes and load balancers need no secret. With
`VEI_GRPC_TLS_CERT_FILE`/`KEY_FILE` the port speaks TLS, and `VEI_GRPC_CLIENT_CA_FILE` additionally
requires a client certificate signed by that CA (mTLS).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from workloads.vei.settings import GatewaySettings

OPEN_PREFIX = "/grpc.health.v1.Health/"


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without the right bearer token with UNAUTHENTICATED (the token is never logged)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIX):
            return handler
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(given, self._expected):
                    return handler
        return _refusal(handler)


def _refusal(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    message = ("missing or wrong gateway token: send metadata 'authorization: Bearer <token>' "
               "(clients read it from VEI_GRPC_TOKEN or VEI_GRPC_TOKEN_FILE)")

    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator, as streaming handlers are

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[(handler.request_streaming, handler.response_streaming)]
    body = deny_stream if handler.response_streaming else deny
    return make(body, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


def interceptors(settings: GatewaySettings) -> list[grpc.aio.ServerInterceptor]:
    if settings.grpc_token is None:
        return []
    return [TokenInterceptor(settings.grpc_token.get_secret_value())]


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    """TLS credentials for the listening port, or None for plaintext."""
    if not settings.grpc_tls_cert_file:
        return None
    key = Path(settings.grpc_tls_key_file).read_bytes()
    cert = Path(settings.grpc_tls_cert_file).read_bytes()
    client_ca = Path(settings.grpc_client_ca_file).read_bytes() if settings.grpc_client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)
