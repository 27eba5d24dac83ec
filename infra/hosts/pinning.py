"""`edgerig artefacts pin --from MIRROR`: fill missing pins once, from a mirror that carries each
release's checksum files beside the files (and, for images, from a registry's manifests).

Every file is downloaded and hashed with the algorithm its upstream publishes; it is pinned only when
that digest equals the one in the checksum file. An existing pin is never changed: a mirror that
disagrees with it is reported as serving another file. Nothing is written unless every check passed.
Install time never consults a checksum file; it only compares against the pins written here.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from infra import versions
from infra.hosts.artefacts import Artefact, ArtefactError, Image, ReleaseFile, download
from infra.versions import Pin

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@dataclass
class PinReport:
    pinned: dict[str, Pin] = field(default_factory=dict)  # newly pinned
    kept: list[str] = field(default_factory=list)  # already pinned, mirror agrees
    absent: dict[str, str] = field(default_factory=dict)  # key -> why it could not be checked
    failed: dict[str, str] = field(default_factory=dict)  # key -> mismatch or conflict


def _mirror_url(mirror: str) -> str:
    if "://" not in mirror:
        return Path(mirror).resolve().as_uri()
    return mirror.rstrip("/")


def _read(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        data: bytes = resp.read()
        return data


def published_digest(text: str, filename: str, algorithm: str) -> str | None:
    """The digest for `filename` in a checksum file: `<hex>  <name>` lines (sha256sum format) or a
    single bare `<hex>` (KubeEdge's checksum_<file>.txt)."""
    want = versions.DIGEST_LENGTH[algorithm]
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    for parts in lines:
        if len(parts) >= 2 and parts[-1].lstrip("*") == filename and len(parts[0]) == want:
            return parts[0].lower()
    if len(lines) == 1 and len(lines[0]) == 1 and re.fullmatch(f"[0-9a-fA-F]{{{want}}}", lines[0][0]):
        return lines[0][0].lower()
    return None


def _check_file(item: ReleaseFile, mirror: str, work: Path) -> Pin:
    base = f"{mirror}/{item.repo}/releases/download/{urllib.parse.quote(item.tag, safe='')}"
    try:
        listed = _read(f"{base}/{item.checksum_file}").decode()
    except (urllib.error.URLError, OSError) as exc:
        raise LookupError(f"{item.checksum_file} not on the mirror ({exc})") from None
    expected = published_digest(listed, item.filename, item.algorithm)
    if expected is None:
        raise ValueError(f"{item.checksum_file} lists no {item.algorithm} for {item.filename}")
    try:
        tmp, actual = download(f"{base}/{item.filename}", work, item.algorithm, what="the mirror")
    except ArtefactError as exc:
        raise LookupError(str(exc)) from None
    tmp.unlink()
    if actual != expected:
        raise ValueError(
            f"the mirror's {item.filename} has {item.algorithm} {actual}, but {item.checksum_file} beside "
            f"it says {expected}: the mirror serves a damaged or different file"
        )
    day = datetime.now(UTC).date().isoformat()
    source = f"{item.checksum_file} on {mirror}, checked against the file ({day})"
    return Pin(item.algorithm, expected, source)


def _bearer_token(challenge: str, timeout: float) -> str | None:
    """Anonymous pull token for a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not challenge.lower().startswith("bearer") or "realm" not in fields:
        return None
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
    body = json.loads(_read(f"{fields['realm']}?{query}", timeout))
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None


def manifest_digest(registry_url: str, image: Image, timeout: float = 30) -> str:
    """sha256 of the image's manifest (index) as the registry serves it, checked against the
    Docker-Content-Digest the registry publishes for it."""
    url = f"{registry_url.rstrip('/')}/v2/{image.repository}/manifests/{image.tag}"
    headers = {"Accept": MANIFEST_TYPES}
    request = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        token = _bearer_token(exc.headers.get("WWW-Authenticate", ""), timeout) if exc.code == 401 else None
        if token is None:
            raise
        request = urllib.request.Request(url, headers={**headers, "Authorization": f"Bearer {token}"})
        resp = urllib.request.urlopen(request, timeout=timeout)
    with resp:
        body = resp.read()
        published = resp.headers.get("Docker-Content-Digest")
    digest = hashlib.sha256(body).hexdigest()
    if published and published != f"sha256:{digest}":
        raise ValueError(f"{url} says {published} but its manifest hashes to sha256:{digest}")
    return digest


def _check_image(image: Image, registry_url: str) -> Pin:
    try:
        digest = manifest_digest(registry_url, image)
    except (urllib.error.URLError, OSError) as exc:
        raise LookupError(f"not on {registry_url} ({exc})") from None
    day = datetime.now(UTC).date().isoformat()
    return Pin("sha256", digest, f"manifest of {image.reference} on {registry_url} ({day})")


def collect(
    items: Sequence[Artefact],
    mirror: str,
    registries: Mapping[str, str],
    pins: Mapping[str, Pin],
) -> PinReport:
    report = PinReport()
    mirror = _mirror_url(mirror)
    with tempfile.TemporaryDirectory(prefix="edgerig-pin-") as tmp:
        for item in items:
            try:
                if isinstance(item, Image):
                    if item.registry not in registries:
                        raise LookupError(f"no registry given (--registry {item.registry}=URL)")
                    found = _check_image(item, registries[item.registry])
                else:
                    found = _check_file(item, mirror, Path(tmp))
            except LookupError as exc:
                report.absent[item.key] = str(exc)
                continue
            except (ValueError, urllib.error.URLError, OSError) as exc:
                report.failed[item.key] = str(exc)
                continue
            old = pins.get(item.key)
            if old is None:
                report.pinned[item.key] = found
            elif (old.algorithm, old.digest) == (found.algorithm, found.digest):
                report.kept.append(item.key)
            else:
                report.failed[item.key] = (
                    f"pinned {old.algorithm} {old.digest} ({old.source}) but the mirror has {found.digest}: "
                    "the mirror serves another file; the pin stays as it is"
                )
    return report


HEADER_END = re.compile(r"^[^#\s]", re.M)


def write_pins(path: Path, pins: Mapping[str, Pin]) -> None:
    """Rewrite the pins file, keeping its leading comment block."""
    text = path.read_text() if path.exists() else ""
    match = HEADER_END.search(text)
    header = text[: match.start()] if match else text
    body = {
        key: {"algorithm": pin.algorithm, "digest": pin.digest, "source": pin.source}
        for key, pin in sorted(pins.items())
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(body, sort_keys=False, width=100))
    tmp.replace(path)


def pin_from_mirror(
    mirror: str,
    registries: Mapping[str, str] | None = None,
    items: Sequence[Artefact] | None = None,
    pins_file: Path | None = None,
) -> PinReport:
    """Check everything against the mirror and write the new pins, or nothing if any check failed."""
    from infra.hosts.artefacts import catalogue

    path = pins_file or versions.ARTEFACT_PINS_FILE
    pins = versions.load_pins(path)
    report = collect(catalogue() if items is None else items, mirror, registries or {}, pins)
    if report.pinned and not report.failed:
        write_pins(path, {**pins, **report.pinned})
    return report
