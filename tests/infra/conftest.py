"""Pins for every artefact the stacks install (test fixtures: made-up digests, nothing is fetched),
so the program runs past its pin check; tests of the check itself use the shipped pins."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from infra import versions
from infra.hosts.artefacts import catalogue


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
