"""Everything a stack installs from outside, pinned by the digest its upstream publishes, and the one
download path that verifies it on the operator machine before any host is touched.

Release files (K3s binaries and airgap images, keadm) come from `artefacts.baseUrl` in the GitHub
release layout; K3s publishes sha256 sums (sha256sum-<arch>.txt), KubeEdge sha512 (checksum_<file>.txt).
Images keadm pulls are pinned by their registry manifest digest and pulled by digest. A file is
streamed into a temporary name next to its final place, hashed while it streams, and renamed only when
the digest equals the pin: a wrong digest leaves nothing behind. Hosts get the verified file over SSH
and check its sha256 again before an atomic rename, so neither a bad mirror nor a broken transfer can
leave a half-installed binary.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra import versions
from infra.model import Node, Testbed
from infra.versions import Algorithm, Pin

DEFAULT_CACHE = Path(os.environ.get("EDGERIG_ARTEFACT_CACHE", Path.home() / ".cache/edgerig/artefacts"))
PIN_COMMAND = "edgerig artefacts pin --from MIRROR [--registry docker.io=URL]"


class ArtefactError(RuntimeError):
    pass


@dataclass(frozen=True)
class ReleaseFile:
    """A file of a GitHub release, as the release publishes it."""

    name: str  # what it is on the host: k3s | k3s-airgap-images | keadm
    repo: str
    tag: str
    filename: str
    algorithm: Algorithm  # the digest the release publishes
    checksum_file: str  # published beside the file in the same release
    member: str | None = None  # path of the binary inside a .tar.gz release file
    executable: bool = True

    @property
    def key(self) -> str:
        return f"{self.repo}/{self.tag}/{self.filename}"

    @property
    def published_at(self) -> str:
        return f"{versions.GITHUB_BASE_URL}/{self.repo}/releases/tag/{urllib.parse.quote(self.tag, safe='')}"

    def where(self) -> str:
        return (
            f"its {self.algorithm} from {self.checksum_file}, published beside it at {self.published_at}"
        )


@dataclass(frozen=True)
class Image:
    """A container image by tag; pinned by the sha256 of its manifest (what `@sha256:` names)."""

    reference: str  # registry/repository:tag, e.g. docker.io/kubeedge/cloudcore:v1.20.0
    algorithm: Algorithm = "sha256"

    @property
    def key(self) -> str:
        return self.reference

    @property
    def registry(self) -> str:
        return self.reference.split("/", 1)[0]

    @property
    def repository(self) -> str:
        return self.reference.split("/", 1)[1].rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]

    def where(self) -> str:
        return (
            f"its sha256 manifest digest, published by the registry {self.registry} "
            f"(`skopeo inspect --format '{{{{.Digest}}}}' docker://{self.reference}`)"
        )

    def by_digest(self, pins: Mapping[str, Pin]) -> str:
        """tag@sha256:... - the tag stays readable, the container runtime pulls and checks the digest."""
        return f"{self.reference}@sha256:{pins[self.key].digest}"


Artefact = ReleaseFile | Image


@dataclass(frozen=True)
class VerifiedFile:
    artefact: ReleaseFile
    path: Path  # local, verified file (the binary extracted from its tarball when needed)
    sha256: str  # of `path`, which is what the hosts check


# --- what a stack installs -------------------------------------------------------------------------
def k3s_binary(tag: str, arch: str) -> ReleaseFile:
    filename = "k3s" if arch == "amd64" else f"k3s-{arch}"
    return ReleaseFile("k3s", "k3s-io/k3s", tag, filename, "sha256", f"sha256sum-{arch}.txt")


def k3s_airgap_images(tag: str, arch: str) -> ReleaseFile:
    """K3s's own system images (CoreDNS, pause, local-path, ...) as one tarball K3s imports at start."""
    filename = f"k3s-airgap-images-{arch}.tar.zst"
    return ReleaseFile(
        "k3s-airgap-images", "k3s-io/k3s", tag, filename, "sha256", f"sha256sum-{arch}.txt", executable=False
    )


def keadm(tag: str, arch: str) -> ReleaseFile:
    stem = f"keadm-{tag}-linux-{arch}"
    return ReleaseFile(
        "keadm", "kubeedge/kubeedge", tag, f"{stem}.tar.gz", "sha512", f"checksum_{stem}.tar.gz.txt",
        member=f"{stem}/keadm/keadm",
    )


def kubeedge_images(kubeedge_version: str) -> dict[str, Image]:
    """What keadm pulls: CloudCore's chart images (init) and the edge's installation package + pause."""
    return {
        "cloudcore": Image(f"docker.io/kubeedge/cloudcore:{kubeedge_version}"),
        "iptables-manager": Image(f"docker.io/kubeedge/iptables-manager:{kubeedge_version}"),
        "installation-package": Image(f"docker.io/kubeedge/installation-package:{kubeedge_version}"),
        "pause": Image(versions.KUBEEDGE_PAUSE_IMAGE),
    }


EDGEMESH_AGENT = Image(versions.EDGEMESH_AGENT_IMAGE)


def host_files(testbed: Testbed, node: Node) -> dict[str, ReleaseFile]:
    """Release files one host gets, by name."""
    out: dict[str, ReleaseFile] = {}
    if node.role != "edge":
        out["k3s"] = k3s_binary(testbed.k3s.version, node.arch)
        if testbed.artefacts.air_gapped:
            out["k3s-airgap-images"] = k3s_airgap_images(testbed.k3s.version, node.arch)
    cloudcore = testbed.cloudcore_node
    if node.role == "edge" or (cloudcore is not None and cloudcore.name == node.name and testbed.edge_nodes):
        out["keadm"] = keadm(testbed.kubeedge.version, node.arch)
    return out


def required(testbed: Testbed, nodes: Sequence[Node] | None = None) -> list[Artefact]:
    """Every artefact installing `nodes` (default: all) needs, each once."""
    found: dict[str, Artefact] = {}
    for node in testbed.nodes if nodes is None else nodes:
        for item in host_files(testbed, node).values():
            found.setdefault(item.key, item)
    if testbed.kubeedge.enabled and testbed.edge_nodes:
        for image in kubeedge_images(testbed.kubeedge.version).values():
            found.setdefault(image.key, image)
        if testbed.edgemesh_enabled:
            found.setdefault(EDGEMESH_AGENT.key, EDGEMESH_AGENT)
    return list(found.values())


def catalogue() -> list[Artefact]:
    """Everything the pinned versions can install, for both architectures (what `pin` fills)."""
    items: list[Artefact] = []
    for arch in ("amd64", "arm64"):
        items += [
            k3s_binary(versions.K3S_VERSION, arch),
            k3s_airgap_images(versions.K3S_VERSION, arch),
            keadm(versions.KUBEEDGE_VERSION, arch),
        ]
    return [*items, *kubeedge_images(versions.KUBEEDGE_VERSION).values(), EDGEMESH_AGENT]


def unpinned(items: Iterable[Artefact], pins: Mapping[str, Pin]) -> list[Artefact]:
    return [i for i in items if i.key not in pins or pins[i.key].algorithm != i.algorithm]


def missing_pins_message(missing: Sequence[Artefact]) -> str:
    lines = [f"  {i.key}: add {i.where()}" for i in missing]
    return (
        "edgerig installs nothing without a digest its upstream published, and these have none pinned:\n"
        + "\n".join(lines)
        + f"\nAdd them to {versions.ARTEFACT_PINS_FILE}, or fill them from your mirror with `{PIN_COMMAND}` "
        "(it checks every file against the checksum file published beside it)"
    )


def check_pins(
    testbed: Testbed, nodes: Sequence[Node] | None = None, pins: Mapping[str, Pin] | None = None
) -> None:
    """Refuse before anything is created or touched when any needed artefact has no pin."""
    missing = unpinned(required(testbed, nodes), versions.ARTEFACT_PINS if pins is None else pins)
    if missing:
        raise ArtefactError(missing_pins_message(missing))


# --- download and verify ---------------------------------------------------------------------------
def url_for(testbed: Testbed, artefact: ReleaseFile) -> str:
    return testbed.artefacts.release_url(
        artefact.repo, urllib.parse.quote(artefact.tag, safe=""), artefact.filename
    )


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str, dest_dir: Path, algorithm: str, *, what: str = "artefacts.baseUrl or the mirror"
) -> tuple[Path, str]:
    """Stream `url` into a temporary file in dest_dir; return it and its digest."""
    digest = hashlib.new(algorithm)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise ArtefactError(f"download of {url} failed: {exc}; check {what}") from None
    return tmp, digest.hexdigest()


def _pin_for(artefact: ReleaseFile, pins: Mapping[str, Pin]) -> Pin:
    if unpinned([artefact], pins):
        raise ArtefactError(missing_pins_message([artefact]))
    return pins[artefact.key]


def fetch(
    testbed: Testbed,
    artefact: ReleaseFile,
    *,
    cache_dir: Path = DEFAULT_CACHE,
    pins: Mapping[str, Pin] | None = None,
) -> VerifiedFile:
    """Return the verified file for `artefact`, downloading it only when the cache lacks it."""
    pin = _pin_for(artefact, versions.ARTEFACT_PINS if pins is None else pins)
    release_dir = cache_dir / artefact.repo / artefact.tag
    release_dir.mkdir(parents=True, exist_ok=True)
    release_file = release_dir / artefact.filename
    if not (release_file.exists() and file_digest(release_file, pin.algorithm) == pin.digest):
        url = url_for(testbed, artefact)
        tmp, actual = download(url, release_dir, pin.algorithm)
        if actual != pin.digest:
            tmp.unlink(missing_ok=True)
            raise ArtefactError(
                f"{pin.algorithm} mismatch for {url}: expected {pin.digest}, got {actual}. Nothing was "
                "installed; the mirror serves a different file than the pinned release (fix the mirror or "
                f"the pin in {versions.ARTEFACT_PINS_FILE})"
            )
        tmp.replace(release_file)
    if artefact.member is None:
        sha256 = pin.digest if pin.algorithm == "sha256" else file_digest(release_file, "sha256")
        return VerifiedFile(artefact, release_file, sha256)
    # The extracted binary is named after the verified tarball's digest: a new pin never reuses it.
    binary = release_dir / f"{artefact.name}-{artefact.tag}-{pin.digest[:16]}"
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
    return VerifiedFile(artefact, binary, file_digest(binary, "sha256"))
