"""The build's outputs, its caches, and bad input that must build nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from images_support import TESTED, Built
from testkit import ROOT

from workloads.images import arches, build, lock, oci

EDGERIG = [sys.executable, "-m", "experiments"]


@pytest.mark.images
@pytest.mark.timeout(1500)  # the session build runs here when this test comes first
def test_record_archives_and_index_agree(built: Built) -> None:
    for name in TESTED:
        img = built.record.images[name]
        index = (built.folder / img.index_file).read_bytes()
        assert oci.digest_of(index) == img.index_digest
        doc = json.loads(index)
        assert {m["platform"]["architecture"] for m in doc["manifests"]} == {"amd64", "arm64"}
        for arch, ab in img.arches.items():
            archive = built.folder / ab.archive
            assert oci.sha256_file(archive) == ab.archive_sha256
            top, inner = oci.read_archive_index(archive)
            assert inner == doc
            names = {m["annotations"][oci.CONTAINERD_NAME] for m in top["manifests"]}
            assert names == {f"edgerig.local/{name}:{img.tag}", f"edgerig.local/{name}@{img.index_digest}"}
            with tarfile.open(archive) as tar:
                members = set(tar.getnames())
            manifest = json.loads(oci.read_blob(_unpack(archive), ab.manifest_digest))
            other = next(a for a in img.arches if a != arch)
            other_layers = set(_layers(built, name, other)) - set(_layers(built, name, arch))
            # this arch's config and layers are inside, the other arch's own layers are not
            for layer in manifest["layers"]:
                assert "blobs/sha256/" + layer["digest"].split(":")[1] in members
            assert not {"blobs/sha256/" + d.split(":")[1] for d in other_layers} & members
            assert ab.compressed_bytes < ab.uncompressed_bytes


def _unpack(archive: Path) -> Path:
    target = archive.with_suffix(".unpacked")
    if not target.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    return target


def _layers(built: Built, name: str, arch: str) -> list[str]:
    ab = built.record.images[name].arches[arch]
    doc = json.loads(oci.read_blob(_unpack(built.folder / ab.archive), ab.manifest_digest))
    return [layer["digest"] for layer in doc["layers"]]


@pytest.mark.images
@pytest.mark.timeout(900)
def test_second_build_of_the_same_commit_reuses_every_layer_and_gives_the_same_digests(
    built: Built, tmp_path: Path
) -> None:
    lines: list[str] = []
    again = build.build([arches.ARCHES["amd64"], arches.ARCHES["arm64"]], tmp_path, TESTED, log=lines.append)
    assert {n: i.index_digest for n, i in again.images.items()} == {
        n: i.index_digest for n, i in built.record.images.items()}
    assert not [ln for ln in lines if "built" in ln or "debootstrap" in ln or "Python packages" in ln], lines
    assert sum("cached" in ln for ln in lines) == 2 * len(TESTED) + 2  # every image and both bases
    # earlier builds' code layers are pruned: one image per (image, arch) stays in the store
    names = build.Builder(build.DEFAULT_CACHE, log=lambda _l: None).buildah.image_names()
    for image in TESTED:
        for arch in ("amd64", "arm64"):
            assert sum(n.startswith(f"localhost/edgerig-cache/{image}:{arch}-") for n in names) == 1, names


def _without(tool: str, tmp_path: Path) -> dict[str, str]:
    """PATH with every tool the build uses except `tool` (symlinks in a private bin dir)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("git", "debootstrap", "buildah", "uv"):
        dirs = os.environ["PATH"].split(":")
        found = next((Path(d) / name for d in dirs if (Path(d) / name).exists()), None)
        if name != tool and found:
            (bindir / name).symlink_to(found)
    return {**os.environ, "PATH": f"{bindir}:{Path(sys.executable).parent}"}


def test_unknown_architecture_is_refused_and_builds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([*EDGERIG, "images", "build", "--arch", "amd64,armhf", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 2
    assert "unknown architecture 'armhf'" in done.stderr and "amd64, arm64" in done.stderr
    assert not out.exists()
    done = subprocess.run([*EDGERIG, "images", "build", "--arch", "x86_64", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 2 and "did you mean 'amd64'" in done.stderr
    assert not out.exists()


def test_missing_builder_is_named_with_its_package_and_builds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run([*EDGERIG, "images", "build", "--arch", "amd64", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=_without("buildah", tmp_path),
                          check=False)
    assert done.returncode == 1
    assert "missing builder: buildah (apt-get install buildah)" in done.stderr
    assert not out.exists()


def test_arm64_without_qemu_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from workloads.images import rootfs

    monkeypatch.setattr(rootfs, "binfmt_ready", lambda arch: arch.name == "amd64")
    monkeypatch.setattr(rootfs.shutil, "which", lambda name: None if "qemu" in name else "/usr/bin/" + name)
    expected = r"qemu-aarch64-static is missing \(apt-get install qemu-user-static"
    with pytest.raises(rootfs.RootfsError, match=expected):
        rootfs.check_foreign(arches.ARCHES["arm64"])


def test_lock_is_current_with_pyproject_and_covers_both_architectures() -> None:
    assert lock.recorded_inputs_digest() == lock.inputs_digest(), "run `edgerig images lock`"
    entries = lock.load()
    pins = {}
    for spec in lock.lock_inputs()["dependencies"] + lock.lock_inputs()["dev"]:
        name, _, version = spec.partition("==")
        pins[lock.canonicalize_name(name.split("[")[0])] = version
    for arch in arches.ARCHES.values():
        resolved = lock.for_arch(entries, arch)
        for name, version in pins.items():
            assert resolved[name].version == version, (arch.name, name)
    assert all(e.hashes and all(h.startswith("sha256:") for h in e.hashes) for e in entries)
