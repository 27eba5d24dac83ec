"""`edgerig images push`: a build's images to the lab's registry, with the digests the build produced.

The per-architecture archives of an image are joined into one OCI layout (the multi-arch index and
every architecture's blobs) and copied with skopeo `--all --preserve-digests`, so the registry serves
the same index digest that the rendered manifests name.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from workloads.images import oci, record


class PushError(RuntimeError):
    pass


def _verify(folder: Path, image: record.ImageBuild) -> None:
    for build in image.arches.values():
        archive = folder / build.archive
        if not archive.exists():
            raise PushError(f"{archive} is missing: rebuild with `sudo edgerig images build`")
        if oci.sha256_file(archive) != build.archive_sha256:
            raise PushError(f"{archive} does not match its sha256 in {record.RECORD_NAME}: rebuild it")
    if oci.digest_of((folder / image.index_file).read_bytes()) != image.index_digest:
        raise PushError(f"{image.index_file} does not match the index digest in {record.RECORD_NAME}")


def _join(folder: Path, image: record.ImageBuild, layout: Path) -> None:
    for build in image.arches.values():
        with tarfile.open(folder / build.archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith("blobs/"):
                    tar.extract(member, layout, filter="data")
    index = (folder / image.index_file).read_bytes()
    oci.blob_path(layout, image.index_digest).write_bytes(index)
    (layout / "oci-layout").write_bytes(oci.canonical({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_bytes(oci.canonical({"schemaVersion": 2, "manifests": [
        {"mediaType": oci.INDEX_MEDIA_TYPE, "digest": image.index_digest, "size": len(index),
         "annotations": {oci.REF_NAME: image.tag}}]}))


def push(folder: Path, registry: str, tls_verify: bool = True,
         log: Callable[[str], None] = print) -> list[str]:
    """Push every image of the build in `folder`; returns the digest references now in the registry."""
    if shutil.which("skopeo") is None:
        raise PushError("missing tool: skopeo (apt-get install skopeo)")
    if not registry or "://" in registry or registry.endswith("/"):
        raise PushError(f"--registry {registry!r} must look like HOST[:PORT][/PATH], "
                        "e.g. registry.lab:5000/edgerig")
    try:
        build = record.load(folder / record.RECORD_NAME)
    except record.RecordError as exc:
        raise PushError(str(exc)) from exc
    for image in build.images.values():  # every file checked before anything is pushed
        _verify(folder, image)
    refs = []
    for image in build.images.values():
        with tempfile.TemporaryDirectory(prefix="edgerig-push-") as tmp:
            layout = Path(tmp)
            _join(folder, image, layout)
            dest = f"{registry}/{image.name}:{image.tag}"
            log(f"push {image.name} ({', '.join(image.arches)}) -> {dest}")
            cmd = ["skopeo", "copy", "--all", "--preserve-digests", "--quiet",
                   f"--dest-tls-verify={'true' if tls_verify else 'false'}",
                   f"oci:{layout}:{image.tag}", f"docker://{dest}"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise PushError(f"pushing {image.name} to {registry} failed: {done.stderr.strip()[-1500:]}")
        refs.append(image.registry_reference(registry))
    return refs


def registry_manifest(registry: str, name: str, digest: str, tls_verify: bool = True) -> dict[str, object]:
    """The manifest the registry serves for name@digest (skopeo inspect --raw)."""
    cmd = ["skopeo", "inspect", "--raw", f"--tls-verify={'true' if tls_verify else 'false'}",
           f"docker://{registry}/{name}@{digest}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PushError(f"{registry}/{name}@{digest}: {done.stderr.strip()}")
    return dict(json.loads(done.stdout))
