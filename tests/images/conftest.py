"""Images built once per session (amd64 and arm64, cached in the image cache) and a podman store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from images_support import TESTED, Built
from podman_cli import Podman

from workloads.images import arches, build


def _skip_reason() -> str | None:
    missing = [t for t in ("buildah", "podman", "debootstrap", "runc") if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (experiments/bootstrap.sh --dev installs them as root)"
    return None


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("images")
    lines: list[str] = []
    rec = build.build([arches.ARCHES["amd64"], arches.ARCHES["arm64"]], out, TESTED, log=lines.append)
    return Built(rec, out, lines)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    root = tmp_path_factory.mktemp("podman")
    tool = Podman(root)
    yield tool
    ps = tool("ps", "--all", "--quiet", check=False).stdout.split()
    for container in ps:
        tool.remove(container)
    tool("system", "reset", "--force", check=False)
    shutil.rmtree(root, ignore_errors=True)
