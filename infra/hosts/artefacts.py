"""Download pinned binaries (K3s, keadm) once on the operator machine and verify them before use.

The file is streamed into a temporary name next to its final place, hashed while it streams, and
renamed only when its sha256 equals the pinned value: a wrong sum leaves nothing behind. Hosts get
the verified file over SSH and check the sum again before an atomic rename into /usr/local/bin, so
neither a bad mirror nor a broken transfer can leave a half-installed binary.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra import versions
from infra.model import Testbed

DEFAULT_CACHE = Path(os.environ.get("EDGERIG_ARTEFACT_CACHE", Path.home() / ".cache/edgerig/artefacts"))


class ArtefactError(RuntimeError):
    pass


@dataclass(frozen=True)
class Artefact:
    name: str  # the binary's name on the host: k3s | keadm
    repo: str
    tag: str
    filename: str
    member: str | None = None  # path of the binary inside a .tar.gz release file

    @property
    def key(self) -> str:
        return f"{self.repo}/{self.tag}/{self.filename}"


@dataclass(frozen=True)
class VerifiedBinary:
    artefact: Artefact
    path: Path  # local, verified binary (extracted from its tarball when needed)
    sha256: str  # of `path`, which is what the hosts check


def k3s_artefact(testbed: Testbed, arch: str) -> Artefact:
    filename = "k3s" if arch == "amd64" else f"k3s-{arch}"
    return Artefact("k3s", "k3s-io/k3s", testbed.k3s.version, filename)


def keadm_artefact(testbed: Testbed, arch: str) -> Artefact:
    tag = testbed.kubeedge.version
    stem = f"keadm-{tag}-linux-{arch}"
    return Artefact("keadm", "kubeedge/kubeedge", tag, f"{stem}.tar.gz", member=f"{stem}/keadm/keadm")


def url_for(testbed: Testbed, artefact: Artefact) -> str:
    return testbed.artefacts.release_url(
        artefact.repo, urllib.parse.quote(artefact.tag, safe=""), artefact.filename
    )


def _pinned(artefact: Artefact, sums: Mapping[str, str | None]) -> str:
    expected = sums.get(artefact.key)
    if not expected:
        raise ArtefactError(
            f"no sha256 pinned for {artefact.key}: add it to ARTEFACT_SHA256 in infra/versions.py "
            f"(the value published next to the release file); edgerig never installs an unpinned binary"
        )
    return expected.lower()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, dest_dir: Path) -> tuple[Path, str]:
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise ArtefactError(
            f"download of {url} failed: {exc}; check artefacts.baseUrl or the mirror"
        ) from None
    return tmp, digest.hexdigest()


def fetch(
    testbed: Testbed,
    artefact: Artefact,
    *,
    cache_dir: Path = DEFAULT_CACHE,
    sums: Mapping[str, str | None] | None = None,
) -> VerifiedBinary:
    """Return the verified binary for `artefact`, downloading it only when the cache lacks it."""
    expected = _pinned(artefact, versions.ARTEFACT_SHA256 if sums is None else sums)
    release_dir = cache_dir / artefact.repo / artefact.tag
    release_dir.mkdir(parents=True, exist_ok=True)
    release_file = release_dir / artefact.filename
    if not (release_file.exists() and _sha256(release_file) == expected):
        url = url_for(testbed, artefact)
        tmp, actual = _download(url, release_dir)
        if actual != expected:
            tmp.unlink(missing_ok=True)
            raise ArtefactError(
                f"sha256 mismatch for {url}: expected {expected}, got {actual}. Nothing was installed; "
                "the mirror serves a different file than the pinned release (fix the mirror or the pin)"
            )
        tmp.replace(release_file)
    if artefact.member is None:
        return VerifiedBinary(artefact, release_file, expected)
    binary = release_dir / f"{artefact.name}-{artefact.tag}"
    if not binary.exists():
        with tarfile.open(release_file) as tar:
            try:
                member = tar.getmember(artefact.member)
            except KeyError:
                raise ArtefactError(f"{release_file.name} has no {artefact.member}") from None
            src = tar.extractfile(member)
            if src is None:
                raise ArtefactError(f"{artefact.member} in {release_file.name} is not a regular file")
            fd, tmp_name = tempfile.mkstemp(prefix=".extract-", dir=release_dir)
            with os.fdopen(fd, "wb") as out:
                out.write(src.read())
            Path(tmp_name).replace(binary)
    return VerifiedBinary(artefact, binary, _sha256(binary))
