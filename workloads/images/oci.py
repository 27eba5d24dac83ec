"""OCI image layouts and archives: the multi-arch index and one importable archive per architecture.

Each per-architecture archive (`<image>-<version>-<arch>.oci.tar`) is an OCI image layout whose
`index.json` points at the image's multi-arch index, so the one digest the manifests reference
resolves on a node of either architecture. It holds the index, every architecture's manifest (each a
few hundred bytes) and this architecture's config and layers only: containerd's import walks
indexes and manifests, never another platform's layers, and a node gets just what it runs.

`index.json` names the image twice for containerd: by tag, and by `name@<index digest>` - the form a
pod spec uses - so an imported image is found by its digest and never pulled.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class OciError(RuntimeError):
    pass


def canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(layout: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    return layout / "blobs" / algo / hexpart


def read_blob(layout: Path, digest: str) -> bytes:
    data = blob_path(layout, digest).read_bytes()
    if digest_of(data) != digest:
        raise OciError(f"blob {digest} in {layout} is corrupt (its content has another digest)")
    return data


def manifest_descriptor(layout: Path, ref: str) -> dict[str, Any]:
    """The descriptor of the manifest tagged `ref` in an OCI layout directory."""
    index = json.loads((layout / "index.json").read_text())
    for desc in index.get("manifests", []):
        if desc.get("annotations", {}).get(REF_NAME) == ref:
            return {k: desc[k] for k in ("mediaType", "digest", "size")}
    raise OciError(f"no image tagged {ref!r} in {layout}")


def has_ref(layout: Path, ref: str) -> bool:
    try:
        manifest_descriptor(layout, ref)
    except (OciError, FileNotFoundError):
        return False
    return True


@dataclass(frozen=True)
class ArchImage:
    """One architecture's image inside a layout: its manifest descriptor and platform."""

    arch: str
    platform: dict[str, str]
    manifest: dict[str, Any]

    def manifest_doc(self, layout: Path) -> dict[str, Any]:
        return dict(json.loads(read_blob(layout, self.manifest["digest"])))

    def blobs(self, layout: Path) -> list[str]:
        doc = self.manifest_doc(layout)
        return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]

    def compressed_bytes(self, layout: Path) -> int:
        """What a node transfers and stores: config + compressed layers."""
        doc = self.manifest_doc(layout)
        return int(doc["config"]["size"] + sum(layer["size"] for layer in doc["layers"]))


_UNPACKED: dict[str, int] = {}


def unpacked_bytes(layout: Path, image: ArchImage) -> int:
    """The image's files on a node's disk: its layers decompressed (what `du` of the rootfs says)."""
    import gzip

    total = 0
    for layer in image.manifest_doc(layout)["layers"]:
        digest = layer["digest"]
        if digest not in _UNPACKED:
            n = 0
            with gzip.open(blob_path(layout, digest), "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    n += len(chunk)
            _UNPACKED[digest] = n
        total += _UNPACKED[digest]
    return total


def make_index(images: Iterable[ArchImage], annotations: Mapping[str, str]) -> bytes:
    manifests = [{**img.manifest, "platform": img.platform} for img in images]
    return canonical({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests,
                      "annotations": dict(annotations)})


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    tar.addfile(info)


def write_arch_archive(layout: Path, out: Path, index: bytes, image: ArchImage, all_images: list[ArchImage],
                       repository: str, tag: str) -> None:
    """Write the importable archive of one architecture (see the module docstring)."""
    index_digest = digest_of(index)
    index_desc = {"mediaType": INDEX_MEDIA_TYPE, "digest": index_digest, "size": len(index)}
    top = canonical({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [
        {**index_desc, "annotations": {CONTAINERD_NAME: f"{repository}:{tag}", REF_NAME: tag}},
        {**index_desc, "annotations": {CONTAINERD_NAME: f"{repository}@{index_digest}"}},
    ]})
    blobs = {index_digest: index}
    for other in all_images:
        blobs[other.manifest["digest"]] = read_blob(layout, other.manifest["digest"])
    for digest in image.blobs(layout):
        blobs[digest] = b""  # streamed from the layout below (layers are large)
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, "oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        _add(tar, "index.json", top)
        _add_dir(tar, "blobs/")
        _add_dir(tar, "blobs/sha256/")
        for digest in sorted(blobs):
            name = "blobs/sha256/" + digest.partition(":")[2]
            if blobs[digest]:
                _add(tar, name, blobs[digest])
                continue
            src = blob_path(layout, digest)
            info = tarfile.TarInfo(name)
            info.size = src.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with src.open("rb") as f:
                tar.addfile(info, f)


def read_archive_index(archive: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the archive's index.json, the multi-arch index it points at)."""
    with tarfile.open(archive) as tar:
        top = json.loads(_member(tar, "index.json"))
        digest = top["manifests"][0]["digest"]
        index = json.loads(_member(tar, "blobs/sha256/" + digest.partition(":")[2]))
    return top, index


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    if f is None:
        raise OciError(f"{name} missing from {tar.name!r}")
    return f.read()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prune_layout(layout: Path, drop: Callable[[str], bool]) -> int:
    """Forget the refs for which `drop(ref)` is true and delete blobs no remaining ref uses.
    Returns the bytes freed."""
    index_path = layout / "index.json"
    if not index_path.exists():
        return 0
    index = json.loads(index_path.read_text())
    keep = [d for d in index.get("manifests", []) if not drop(d.get("annotations", {}).get(REF_NAME, ""))]
    used: set[str] = set()
    for desc in keep:
        used.add(desc["digest"])
        doc = json.loads(read_blob(layout, desc["digest"]))
        used.add(doc["config"]["digest"])
        used.update(layer["digest"] for layer in doc["layers"])
    index["manifests"] = keep
    tmp = index_path.with_name("index.json.tmp")
    tmp.write_text(json.dumps(index))
    tmp.replace(index_path)
    freed = 0
    for blob in (layout / "blobs" / "sha256").iterdir():
        if f"sha256:{blob.name}" not in used:
            freed += blob.stat().st_size
            blob.unlink()
    return freed
