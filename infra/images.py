"""The one place where edgerig's image references come from, for every Kubernetes object and node.

The digests are those of the build in `edgerig:images.buildRecord` (an images.json written by
`edgerig images build`). Air-gapped (no `edgerig:images.registry`, the default): objects name
`edgerig.local/<image>@<index digest>` with imagePullPolicy Never - host configuration has copied
each node's architecture archives there and K3s/containerd imported them - so nothing is pulled.
With a registry: `<registry>/<image>@<index digest>`, pulled if not present.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from infra.model import Node, Testbed
from workloads.images import catalog, record
from workloads.images.lock import REPO_ROOT

# K3s imports every archive in this directory into its containerd when it starts.
K3S_IMAGES_DIR = "/var/lib/rancher/k3s/agent/images"
# On KubeEdge edges the archives wait here and are imported into containerd's k8s.io namespace.
EDGE_IMAGES_DIR = "/var/lib/edgerig/images"


@dataclass(frozen=True)
class ImportCommand:
    """How a node's running containerd takes a new archive now (K3s would only at its next start)."""

    argv: tuple[str, ...]  # followed by the archive path
    socket: str  # the import runs only when this exists: a stopped or not yet installed runtime skips it


def import_command(node: Node) -> ImportCommand:
    if node.role == "edge":
        return ImportCommand(("ctr", "--namespace", "k8s.io", "images", "import"),
                             "/run/containerd/containerd.sock")
    return ImportCommand(("/usr/local/bin/k3s", "ctr", "--namespace", "k8s.io", "images", "import"),
                         "/run/k3s/containerd/containerd.sock")


@dataclass(frozen=True)
class ImageRef:
    reference: str
    pull_policy: str  # Never (air-gapped) | IfNotPresent (registry)

    def container_fields(self) -> dict[str, str]:
        return {"image": self.reference, "imagePullPolicy": self.pull_policy}


DEFAULT_RECORD = "build/images/images.json"


def record_path(testbed: Testbed) -> Path:
    return resolve_record_path(testbed.images.build_record)


def resolve_record_path(build_record: str | None) -> Path:
    """The build record to use: the stack's edgerig:images.buildRecord, else EDGERIG_IMAGES_RECORD,
    else the default build folder; relative to the repository."""
    chosen = build_record or os.environ.get("EDGERIG_IMAGES_RECORD") or DEFAULT_RECORD
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int) -> record.BuildRecord:
    return record.load(path)


def has_build(testbed: Testbed) -> bool:
    return record_path(testbed).exists()


def build_record(testbed: Testbed) -> record.BuildRecord:
    path = record_path(testbed)
    if not path.exists():
        record.load(path)  # raises the error that names the fix
    return _load(path, path.stat().st_mtime_ns)


def reference(testbed: Testbed, image: str) -> ImageRef:
    """The reference of `image` (a catalog name: vei, fn-nodeinfo, ...) for this testbed."""
    build = build_record(testbed).images.get(image)
    if build is None:
        raise record.RecordError(f"{record_path(testbed)} has no image {image!r}: build it with "
                                 f"`sudo edgerig images build` (it builds {', '.join(catalog.IMAGES)})")
    needed = {n.arch for n in testbed.nodes}
    missing = sorted(needed - set(build.arches))
    if missing:
        raise record.RecordError(f"the stack has {'/'.join(missing)} nodes but {image} was built for "
                                 f"{', '.join(build.arches)} only: "
                                 "`sudo edgerig images build --arch amd64,arm64`")
    return ref_for(build, testbed.images.registry)


def ref_for(build: record.ImageBuild, registry: str | None) -> ImageRef:
    """A built image as objects name it: pulled from `registry` when there is one, else the name the
    nodes imported it under (never pulled)."""
    if registry:
        return ImageRef(build.registry_reference(registry), "IfNotPresent")
    return ImageRef(build.local_reference(), "Never")


def vei(testbed: Testbed) -> ImageRef:
    return reference(testbed, catalog.VEI.name)


def function(testbed: Testbed, name: str) -> ImageRef:
    """An OpenFaaS function's image (faas-cli stack file name: nodeinfo, gzip-compression, dd, shasum)."""
    return reference(testbed, catalog.function_image(name))


def function_env(testbed: Testbed) -> dict[str, str]:
    """The variables workloads/functions/stack.yaml takes its images from (faas-cli expands them)."""
    return {catalog.function_env_var(fn): function(testbed, fn).reference for fn in catalog.FUNCTIONS}


@dataclass(frozen=True)
class NodeArchive:
    source: Path
    sha256: str
    dest: str  # absolute path on the node


def node_archives(testbed: Testbed, node: Node) -> list[NodeArchive]:
    """Air-gapped delivery: the archives of `node`'s architecture and where they go on it."""
    if testbed.images.registry:
        return []
    build = build_record(testbed)
    folder = record_path(testbed).parent
    directory = EDGE_IMAGES_DIR if node.role == "edge" else K3S_IMAGES_DIR
    out = []
    for name in sorted(build.images):
        arch_build = build.images[name].arches.get(node.arch)
        if arch_build is None:
            raise record.RecordError(f"node {node.name} is {node.arch} but {name} was built for "
                                     f"{', '.join(build.images[name].arches)} only: rebuild with --arch")
        out.append(NodeArchive(folder / arch_build.archive, arch_build.archive_sha256,
                               f"{directory}/{arch_build.archive}"))
    return out
