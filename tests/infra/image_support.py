"""A build record for the real image catalogue, with made-up digests, for rendering tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from workloads.images import catalog, record


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def write_record(folder: Path, arches: tuple[str, ...] = ("amd64", "arm64")) -> Path:
    images = {}
    for name in catalog.IMAGES:
        per_arch = {a: record.ArchBuild(arch=a, manifest_digest=_digest(f"{name}-{a}-manifest"),
                                        config_digest=_digest(f"{name}-{a}-config"),
                                        archive=f"{name}-0.1.0-{a}.oci.tar", archive_sha256=_digest(name)[7:],
                                        compressed_bytes=1, uncompressed_bytes=2) for a in arches}
        images[name] = record.ImageBuild(name=name, tag="0.1.0-test", index_digest=_digest(f"{name}-index"),
                                         index_file=f"{name}-0.1.0.index.json", arches=per_arch)
    rec = record.BuildRecord(version="0.1.0", revision="0" * 40, dirty=False, source_date_epoch=0,
                             images=images)
    return rec.write(folder)
