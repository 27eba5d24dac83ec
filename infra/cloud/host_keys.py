"""SSH host keys for the VMs, made by the program (pure): an Ed25519 key derived from a 32-byte seed
the stack keeps as a secret (random.RandomBytes), injected through cloud-init, and the operator's
known_hosts lines written from its public half. The same seed always gives the same key files, so a
re-run of the program never changes a VM's user data.

The private key is written in OpenSSH's own format (PROTOCOL.key); its two check integers, random in
ssh-keygen's output, are derived from the seed here so that the file is reproducible.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SEED_BYTES = 32
KEY_TYPE = b"ssh-ed25519"


@dataclass(frozen=True)
class HostKey:
    private_openssh: str  # the host's /etc/ssh/ssh_host_ed25519_key (secret)
    public_openssh: str  # "ssh-ed25519 AAAA... comment"

    @property
    def public_key(self) -> str:
        """Type and key, without the comment: what a known_hosts line carries."""
        return " ".join(self.public_openssh.split()[:2])


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def host_key(seed: bytes, comment: str) -> HostKey:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"an Ed25519 host key needs a {SEED_BYTES}-byte seed, got {len(seed)} bytes")
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    blob = _string(KEY_TYPE) + _string(public)
    check = hashlib.sha256(b"edgerig host key check " + seed).digest()[:4]
    private = check + check + blob + _string(seed + public) + _string(comment.encode())
    private += bytes(range(1, 1 + (-len(private) % 8)))  # padding 1, 2, 3, ... to the cipher block (8)
    body = (
        b"openssh-key-v1\0" + _string(b"none") + _string(b"none") + _string(b"")
        + struct.pack(">I", 1) + _string(blob) + _string(private)
    )
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"
    return HostKey(pem, f"{KEY_TYPE.decode()} {base64.b64encode(blob).decode()} {comment}")


def known_hosts_line(addresses: Iterable[str], key: HostKey) -> str:
    """One known_hosts line naming every address the host is reached on."""
    names = ",".join(dict.fromkeys(a for a in addresses if a))
    return f"{names} {key.public_key}\n"
