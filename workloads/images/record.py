"""The build record (`images.json` beside the archives): what one `edgerig images build` produced.

It is the single source of image digests: the Kubernetes manifests (infra/images.py), host
configuration (which archive goes to which node) and `edgerig images push` all read it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

RECORD_NAME = "images.json"
LOCAL_REPOSITORY = "edgerig.local"  # the name imported images carry on the nodes (never pulled)


class ArchBuild(BaseModel):
    arch: str
    manifest_digest: str
    config_digest: str
    archive: str  # file name, beside the record
    archive_sha256: str
    compressed_bytes: int = Field(description="config + compressed layers: what a node transfers")
    uncompressed_bytes: int = Field(description="the unpacked image on a node's disk")


class ImageBuild(BaseModel):
    name: str
    tag: str
    index_digest: str
    index_file: str
    arches: dict[str, ArchBuild]

    def local_reference(self) -> str:
        return f"{LOCAL_REPOSITORY}/{self.name}@{self.index_digest}"

    def registry_reference(self, registry: str) -> str:
        return f"{registry.rstrip('/')}/{self.name}@{self.index_digest}"


class BuildRecord(BaseModel):
    version: str
    revision: str
    dirty: bool
    source_date_epoch: int
    images: dict[str, ImageBuild]
    seconds: float = 0.0

    def write(self, directory: Path) -> Path:
        path = directory / RECORD_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(path)
        return path


class RecordError(RuntimeError):
    pass


def load(path: Path) -> BuildRecord:
    if not path.exists():
        raise RecordError(f"no image build at {path}: run `sudo edgerig images build` first "
                          "(or set edgerig:images.buildRecord to the images.json of a build)")
    try:
        return BuildRecord.model_validate(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise RecordError(f"{path} is not an edgerig image build record: {exc}") from exc
