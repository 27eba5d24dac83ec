"""Fixtures for host-configuration tests (helpers live in hosts_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hosts_support import Mirror


@pytest.fixture(scope="session")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    m = Mirror(tmp_path_factory.mktemp("mirror"))
    yield m
    m.close()
