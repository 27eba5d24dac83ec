"""Fixtures every infra test gets:

- an image build record for the real image catalogue (objects name edgerig's images by the digests of
  a build), EDGERIG_IMAGES_RECORD pointing at it (subprocesses inherit it);
- pins for every artefact the stacks install (made-up digests, nothing is fetched), so the program
  runs past its pin check; tests of the check itself use the shipped pins.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from image_record import write_record

from infra import versions
from infra.hosts.artefacts import catalogue


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


def _digest(algorithm: str, key: str) -> str:
    return hashlib.new(algorithm, f"test fixture {key}".encode()).hexdigest()


def fixture_pins() -> dict[str, versions.Pin]:
    return {
        item.key: versions.Pin(item.algorithm, _digest(item.algorithm, item.key), "test")
        for item in catalogue()
    }


@pytest.fixture(autouse=True)
def pinned_artefacts(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, versions.Pin]]:
    pins = fixture_pins()
    monkeypatch.setattr(versions, "ARTEFACT_PINS", pins)
    yield pins
