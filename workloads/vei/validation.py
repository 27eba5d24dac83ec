"""Input checks shared by the gateway RPCs.

Camera ids and application names become NATS subject tokens and JetStream KV keys, so they are
restricted to characters that are safe in both (no dots, wildcards or spaces).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Generic, TypeVar

from google.protobuf.message import DecodeError, Message

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = "1-64 characters from A-Z a-z 0-9 _ -"

M = TypeVar("M", bound=Message)


def name_problem(kind: str, value: str) -> str | None:
    """Why `value` is not a valid camera id / application name, or None when it is valid."""
    if not value:
        return f"{kind} is empty; set it to {NAME_RULE}"
    if _NAME_RE.match(value) is None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        return f"{kind} {shown!r} is invalid; use {NAME_RULE} (it becomes a NATS subject token)"
    return None


def is_valid_name(value: str) -> bool:
    return _NAME_RE.match(value) is not None


class Malformed(Generic[M]):
    """Stands in for a request message whose bytes did not parse, so the handler can reject only
    that call with a clear INVALID_ARGUMENT instead of gRPC's generic 'Exception deserializing'."""

    __slots__ = ("message_type", "reason")

    def __init__(self, message_type: type[M], reason: str) -> None:
        self.message_type = message_type
        self.reason = reason

    def describe(self) -> str:
        return (f"malformed {self.message_type.DESCRIPTOR.full_name} message: {self.reason}; "
                "send a message serialized from workloads/vei/proto/vei.proto")


def lenient_deserializer(message_type: type[M]) -> Callable[[bytes], M | Malformed[M]]:
    parse = message_type.FromString

    def deserialize(raw: bytes) -> M | Malformed[M]:
        try:
            return parse(raw)
        except DecodeError as exc:
            return Malformed(message_type, str(exc) or "cannot decode protobuf")

    return deserialize


def identity(raw: bytes) -> bytes:
    """Serializer for responses that are already serialized (NATS payloads pass straight through)."""
    return raw
