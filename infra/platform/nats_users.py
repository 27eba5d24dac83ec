"""Who may do what on the cluster's NATS (pure): one nkey user per VEI process, each allowed only its
own subjects, and no anonymous access.

nkeys keep the server side free of secrets: the NATS config (a ConfigMap the chart renders) holds
only public keys; each process's seed is a Kubernetes Secret mounted as a file
(VEI_NATS_NKEY_SEED_FILE). Seeds are made from Pulumi `RandomBytes`, so they live in Pulumi state
only as secrets and stay the same from one `pulumi up` to the next.

- gateway: frames, vision outputs, acks and the local sink's subject (`vei.v1.>`), and JetStream for
  its two registry KV buckets only;
- sink: takes results from `vei.v1.sink.local` (queue group) and answers on the cameras' ack
  subjects and request inboxes;
- operator (only with operator-side clients): the sink's rights plus the floor measurement's own
  subjects, for the processes `edgerig run` starts on the operator's machine.

Cameras and vision apps never talk to NATS (they call the gateway), so they get no NATS user; the
NetworkPolicies keep them off the NATS port too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import nkeys

from workloads.vei import subjects

GATEWAY: Final = "gateway"
SINK: Final = "sink"
OPERATOR: Final = "operator"
# The pods (app.kubernetes.io/name) that hold each in-cluster user's seed.
PODS: Final[dict[str, str]] = {GATEWAY: "vei-gateway", SINK: "vei-sink"}
SEED_BYTES: Final = 32  # an ed25519 seed
SEED_KEY_SUFFIX: Final = ".nk"  # Secret key (and file name) of a user's seed: gateway.nk, sink.nk
FLOOR_PREFIX: Final = "edgerig.floor"  # the operator's bare publish->subscribe measurement
FLOOR_SUBJECTS: Final = f"{FLOOR_PREFIX}.>"

_INBOXES = "_INBOX.>"


def _kv_api(bucket: str) -> list[str]:
    """The JetStream API subjects nats-py's KeyValue uses on one bucket (its stream is KV_<bucket>)."""
    stream = f"KV_{bucket}"
    return [
        f"$JS.API.STREAM.CREATE.{stream}", f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.UPDATE.{stream}", f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>", f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.ACK.{stream}.>", f"$KV.{bucket}.>",
    ]


def permissions(user: str) -> dict[str, Any]:
    """The NATS `permissions` block of one user: publish and subscribe allow-lists."""
    sink_publish = [f"{subjects.ACK_PREFIX}*", _INBOXES]
    sink_subscribe = [subjects.LOCAL_SINK]
    if user == GATEWAY:
        buckets = (subjects.CAMERAS_BUCKET, subjects.APPLICATIONS_BUCKET)
        kv = [s for bucket in buckets for s in _kv_api(bucket)]
        return {
            # $JS.API.INFO: the gateway's proof that its server has rejoined the cluster (nats_conn).
            "publish": {"allow": [f"{subjects.PREFIX}.>", "$JS.API.INFO", *kv]},
            "subscribe": {"allow": [f"{subjects.PREFIX}.>", _INBOXES, f"$KV.{subjects.CAMERAS_BUCKET}.>",
                                    f"$KV.{subjects.APPLICATIONS_BUCKET}.>"]},
        }
    if user == SINK:
        return {"publish": {"allow": sink_publish}, "subscribe": {"allow": sink_subscribe}}
    if user == OPERATOR:
        return {"publish": {"allow": [*sink_publish, subjects.LOCAL_SINK, FLOOR_SUBJECTS]},
                "subscribe": {"allow": [*sink_subscribe, _INBOXES, FLOOR_SUBJECTS]}}
    raise ValueError(f"no NATS user {user!r}: one of {GATEWAY}, {SINK}, {OPERATOR}")


def users(operator: bool) -> list[str]:
    return [GATEWAY, SINK, *([OPERATOR] if operator else [])]


def seed_from_hex(raw_hex: str) -> str:
    """A user nkey seed (SU...) from SEED_BYTES random bytes in hex (RandomBytes.hex)."""
    raw = bytes.fromhex(raw_hex)
    if len(raw) != SEED_BYTES:
        raise ValueError(f"an nkey seed needs {SEED_BYTES} random bytes, got {len(raw)}")
    seed: bytes = nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER)
    return seed.decode()


def public_key(seed: str) -> str:
    key: bytes = nkeys.from_seed(bytearray(seed.encode())).public_key
    return key.decode()


def authorization(public_keys: Mapping[str, Any]) -> dict[str, Any]:
    """The server's `authorization` block: only these nkey users, each with its permissions.

    `public_keys` maps user -> public key (a Pulumi Output at deploy time, a plain string in tests).
    """
    return {"authorization": {"users": [{"nkey": key, "permissions": permissions(user)}
                                        for user, key in public_keys.items()]}}
