"""Plain helpers of the image tests (fixtures stay in conftest.py; import these by module name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workloads.images import record

# The images the tests run: the VEI image, and two function images (dd adds a Debian layer).
TESTED = ["vei", "fn-shasum", "fn-dd"]


@dataclass(frozen=True)
class Built:
    record: record.BuildRecord
    folder: Path
    log: list[str]

    def archive(self, image: str, arch: str = "amd64") -> Path:
        return self.folder / self.record.images[image].arches[arch].archive
