"""Every test that renders Kubernetes objects needs an image build record: one is written here, for
the real image catalogue, and EDGERIG_IMAGES_RECORD points at it (subprocesses inherit it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_record import write_record


@pytest.fixture(scope="session", autouse=True)
def image_build_record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = write_record(tmp_path_factory.mktemp("image-record"))
    old = os.environ.get("EDGERIG_IMAGES_RECORD")
    os.environ["EDGERIG_IMAGES_RECORD"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EDGERIG_IMAGES_RECORD", None)
    else:
        os.environ["EDGERIG_IMAGES_RECORD"] = old
