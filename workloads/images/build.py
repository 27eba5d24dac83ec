"""`edgerig images build`: the VEI image and the function images, offline, for amd64 and arm64.

Per architecture, four layers, each cached under a key of everything that goes into it:
1. base: the Python runtime files of a debootstrapped Debian (rootfs.py, base.py);
2. packages: the image's closure of the lock file, wheels for that platform (python_deps.py);
3. extra Debian packages, for the one image that needs some (dd runs the dd binary);
4. code: the image's packages from this checkout, config, user and labels.
A layer whose key is already in the buildah store is reused, so a second build of the same commit
only re-exports. Layers 1-3 carry a fixed timestamp, so they keep their digests from commit to
commit; the code layer and the image's `created` carry the commit's time, so the same commit always
gives the same digests.

Nothing is pulled from a container registry: the base is a directory made by debootstrap from the
Debian mirror, the wheels come from PyPI, hash-checked against the lock.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from workloads.images import base, lock, oci, python_deps, rootfs
from workloads.images.arches import Arch
from workloads.images.buildah import Buildah
from workloads.images.catalog import BASE_PACKAGES, IMAGES, USER_ID, ImageDef
from workloads.images.record import LOCAL_REPOSITORY, ArchBuild, BuildRecord, ImageBuild

REPO_ROOT = lock.REPO_ROOT
DEFAULT_OUT = REPO_ROOT / "build" / "images"
DEFAULT_CACHE = Path(os.environ.get("EDGERIG_IMAGES_CACHE", str(rootfs.DEFAULT_CACHE_DIR / "images")))
LAYER_EPOCH = 0  # layers 1-3: the same bytes whatever the commit
# (tool, Debian package that provides it)
TOOLS = (("buildah", "buildah"), ("debootstrap", "debootstrap"), ("git", "git"))
Log = Callable[[str], None]


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Source:
    version: str
    revision: str
    dirty: bool
    epoch: int


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BuildError(f"git {' '.join(args)} failed in {REPO_ROOT}: {done.stderr.strip()} "
                         "(the images are labelled with the commit they are built from)")
    return done.stdout.strip()


def source() -> Source:
    import tomllib

    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return Source(version, _git("rev-parse", "HEAD"), dirty, int(_git("log", "-1", "--format=%ct")))


def uv_binary() -> str:
    candidate = Path(sys.executable).parent / "uv"
    found = str(candidate) if candidate.exists() else shutil.which("uv")
    if not found:
        raise BuildError("uv is missing from this virtualenv: run experiments/bootstrap.sh")
    return found


def preflight(arches: list[Arch], out: Path) -> None:
    """Everything that can be checked before anything is built; raises BuildError naming the fix."""
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in TOOLS if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"missing builder: {', '.join(missing)}")
    if os.geteuid() != 0:
        raise BuildError("the image build needs root (debootstrap, and buildah's vfs store keeps file "
                         "owners): run it with sudo")
    for arch in arches:
        try:
            rootfs.check_foreign(arch)
        except rootfs.RootfsError as exc:
            raise BuildError(str(exc)) from exc
    if sys.version_info[:2] != (3, 11):
        raise BuildError(f"run the build with the project's Python 3.11 (this is {sys.version.split()[0]})")
    uv_binary()
    lock.load()
    if lock.recorded_inputs_digest() != lock.inputs_digest():
        raise BuildError(f"{lock.LOCK_FILE.name} is older than pyproject.toml's pins: "
                         "run `edgerig images lock`")
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} exists and is not a directory")


@contextmanager
def _exclusive(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "build.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BuildError(f"another image build is using {cache}; wait for it to finish") from exc
        yield


def _tree_digest(root: Path, paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(root)).encode() + b"\0" + oct(path.stat().st_mode).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def code_files(image: ImageDef) -> list[Path]:
    out: list[Path] = []
    for entry in image.code:
        path = REPO_ROOT / entry
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            rel = str(f.relative_to(REPO_ROOT))
            if "__pycache__" in f.parts or any(fnmatch.fnmatch(f.name, pat) for pat in image.exclude):
                continue
            if f.suffix == ".py" or rel.endswith(".json"):
                out.append(f)
    return sorted(out)


class Builder:
    def __init__(self, cache: Path, log: Log) -> None:
        self.cache = cache
        self.log = log
        self.buildah = Buildah(cache / "storage", Path("/run/edgerig-images"))
        self.layout = cache / "oci"
        self.uv = uv_binary()
        self.uv_cache = cache / "uv"
        self.trees = cache / "trees"

    # -- layers -------------------------------------------------------------------------------
    def _fresh_tree(self, name: str) -> Path:
        tree = self.trees / name
        shutil.rmtree(tree, ignore_errors=True)
        tree.parent.mkdir(parents=True, exist_ok=True)
        return tree

    def _layer(self, parent: str | None, name: str, tree: Path | None, arch: Arch, timestamp: int,
               **config: object) -> str:
        container = self.buildah.from_image(parent or "scratch", arch.name, arch.oci_variant)
        try:
            if tree is not None:
                self.buildah.add_tree(container, tree)
            self.buildah.configure(container, arch=arch.name, variant=arch.oci_variant, **config)  # type: ignore[arg-type]
            self.buildah.commit(container, name, timestamp)
        except BaseException:
            self.buildah.remove_container(container)
            raise
        return name

    def base_image(self, arch: Arch) -> tuple[str, str, Path, list[base.Package]]:
        extras = sorted({pkg for d in IMAGES.values() for pkg in d.debian_extra})
        spec = rootfs.RootfsSpec("image-base", (*BASE_PACKAGES, *extras), arch=arch.name)
        if not rootfs.is_cached(spec=spec):
            self.log(f"{arch.name}: debootstrap {spec.suite} (cached for later builds; "
                     f"{'several minutes under qemu-user' if spec.foreign else 'about a minute'})")
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / f"debootstrap-{arch.name}.log").open("w") as log:  # its output is long
            root = rootfs.ensure_rootfs(spec=spec, log=log)
        packages = base.closure(root, BASE_PACKAGES)
        key = hashlib.sha256("\n".join([spec.stamp_text(), base.BUILD_RECIPE,
                                        *(p.stanza for p in packages)]).encode()).hexdigest()
        name = f"localhost/edgerig-cache/base:{arch.name}-{key[:16]}"
        if self.buildah.image_exists(name):
            self.log(f"{arch.name}: base {key[:12]} cached")
            return name, key, root, packages
        self.log(f"{arch.name}: base layer from {len(packages)} Debian packages")
        tree = self._fresh_tree(f"base-{arch.name}")
        base.write_tree(root, packages, tree)
        python_deps.compile_bytecode(tree / "usr/lib/python3.11")
        self._layer(None, name, tree, arch, LAYER_EPOCH)
        shutil.rmtree(tree)
        return name, key, root, packages

    def packages_image(self, parent: tuple[str, str], image: ImageDef, arch: Arch) -> tuple[str, str]:
        entries = python_deps.locked_closure(self.uv, image.requirements, arch, self.uv_cache)
        key = hashlib.sha256((parent[1] + python_deps.key(entries, arch)).encode()).hexdigest()
        name = f"localhost/edgerig-cache/packages:{arch.name}-{key[:16]}"
        if self.buildah.image_exists(name):
            return name, key
        self.log(f"{arch.name}: {len(entries)} Python packages for {image.name} (wheels for {arch.machine})")
        tree = self._fresh_tree(f"packages-{arch.name}")
        python_deps.install_tree(self.uv, entries, arch, tree, self.uv_cache)
        self._layer(parent[0], name, tree, arch, LAYER_EPOCH)
        shutil.rmtree(tree)
        return name, key

    def extra_image(self, parent: tuple[str, str], image: ImageDef, arch: Arch, root: Path,
                    packages: list[base.Package]) -> tuple[str, str]:
        if not image.debian_extra:
            return parent
        key = hashlib.sha256((parent[1] + " ".join(image.debian_extra)).encode()).hexdigest()
        name = f"localhost/edgerig-cache/extra:{arch.name}-{key[:16]}"
        if self.buildah.image_exists(name):
            return name, key
        tree = self._fresh_tree(f"extra-{arch.name}")
        base.extra_tree(root, packages, image.debian_extra, tree)
        self._layer(parent[0], name, tree, arch, LAYER_EPOCH)
        shutil.rmtree(tree)
        return name, key

    def final_image(self, parent: tuple[str, str], image: ImageDef, arch: Arch,
                    src: Source) -> tuple[str, str]:
        files = code_files(image)
        labels = {
            "org.opencontainers.image.revision": src.revision,
            "org.opencontainers.image.version": src.version,
            "org.opencontainers.image.title": f"edgerig {image.name}",
            "org.opencontainers.image.description": image.description,
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(src.epoch)),
        }
        if src.dirty:
            labels["io.edgerig.source.dirty"] = "true"
        config = {"user": f"{USER_ID}:{USER_ID}", "cmd": list(image.cmd), "ports": list(image.ports),
                  "workdir": "/home/edgerig",
                  "env": {"LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", **image.env}, "labels": labels}
        key = hashlib.sha256("\n".join([parent[1], _tree_digest(REPO_ROOT, files), str(src.epoch),
                                        json.dumps(config, sort_keys=True)]).encode()).hexdigest()
        name = f"localhost/edgerig-cache/{image.name}:{arch.name}-{key[:16]}"
        if self.buildah.image_exists(name):
            self.log(f"{arch.name}: {image.name} cached")
            return name, key
        tree = self._fresh_tree(f"code-{image.name}-{arch.name}")
        site = tree / python_deps.SITE_PACKAGES
        for f in files:
            target = site / f.relative_to(REPO_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
        python_deps.compile_bytecode(site)
        self._layer(parent[0], name, tree, arch, src.epoch, **config)
        shutil.rmtree(tree)
        self.log(f"{arch.name}: {image.name} built")
        return name, key

    def prune(self, current: dict[tuple[str, str], str], used: set[str], whole_catalog: bool) -> None:
        """Drop the code-layer images (and their exported blobs) of earlier builds of the images and
        architectures just built: one per commit would otherwise pile up (a full copy each in vfs).
        After a build of every image, base and package layers no image uses any more go too."""
        arches = {arch for _, arch in current}
        for name in self.buildah.image_names():
            repo, _, tag = name.rpartition(":")
            image = repo.removeprefix("localhost/edgerig-cache/")
            arch = tag.split("-", 1)[0]
            stale_code = (image, arch) in current and current[(image, arch)] != name
            stale_layer = (whole_catalog and arch in arches and image in ("base", "packages", "extra")
                           and name not in used)
            if stale_code or stale_layer:
                self.buildah.remove_image(name)
        refs = {f"{image}-{arch}-{final.rpartition('-')[2]}" for (image, arch), final in current.items()}
        prefixes = tuple(f"{image}-{arch}-" for image, arch in current)
        oci.prune_layout(self.layout, lambda ref: ref.startswith(prefixes) and ref not in refs)

    def export(self, name: str, key: str, image: ImageDef, arch: Arch) -> oci.ArchImage:
        ref = f"{image.name}-{arch.name}-{key[:16]}"
        if not oci.has_ref(self.layout, ref):
            self.buildah.push_to_layout(name, self.layout, ref)
        return oci.ArchImage(arch.name, arch.oci_platform(), oci.manifest_descriptor(self.layout, ref))



def build(arches: list[Arch], out: Path, names: list[str] | None = None, cache: Path = DEFAULT_CACHE,
          log: Log = print) -> BuildRecord:
    """Build every image (or `names`) for `arches`; write archives, indexes and images.json to `out`."""
    unknown = sorted(set(names or []) - set(IMAGES))
    if unknown:
        raise BuildError(f"unknown image {', '.join(unknown)}: choose from {', '.join(IMAGES)}")
    preflight(arches, out)
    started = time.monotonic()
    src = source()
    wanted = [IMAGES[n] for n in (names or list(IMAGES))]
    with _exclusive(cache):
        builder = Builder(cache, log)
        built: dict[str, dict[str, tuple[oci.ArchImage, int]]] = {d.name: {} for d in wanted}
        current: dict[tuple[str, str], str] = {}
        used: set[str] = set()
        for arch in arches:
            base_name, base_key, root, packages = builder.base_image(arch)
            used.add(base_name)
            for image in wanted:
                parent = builder.packages_image((base_name, base_key), image, arch)
                used.add(parent[0])
                parent = builder.extra_image(parent, image, arch, root, packages)
                used.add(parent[0])
                final, key = builder.final_image(parent, image, arch, src)
                current[(image.name, arch.name)] = final
                exported = builder.export(final, key, image, arch)
                built[image.name][arch.name] = (exported, oci.unpacked_bytes(builder.layout, exported))
        record = _write_outputs(builder.layout, out, built, src)
        builder.prune(current, used, whole_catalog=len(wanted) == len(IMAGES))
    record.seconds = round(time.monotonic() - started, 1)
    record.write(out)
    return record


def _write_outputs(layout: Path, out: Path, built: dict[str, dict[str, tuple[oci.ArchImage, int]]],
                   src: Source) -> BuildRecord:
    """Archives and indexes go to a staging folder first; only a complete set replaces `out`'s files."""
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    tag = f"{src.version}-{src.revision[:12]}"
    images: dict[str, ImageBuild] = {}
    try:
        for name, per_arch in built.items():
            arch_images = [img for img, _ in per_arch.values()]
            index = oci.make_index(arch_images, {"org.opencontainers.image.revision": src.revision,
                                                 "org.opencontainers.image.version": src.version})
            index_file = f"{name}-{src.version}.index.json"
            (staging / index_file).write_bytes(index)
            arch_builds = {}
            for arch_name, (img, uncompressed) in per_arch.items():
                archive = f"{name}-{src.version}-{arch_name}.oci.tar"
                oci.write_arch_archive(layout, staging / archive, index, img, arch_images,
                                       f"{LOCAL_REPOSITORY}/{name}", tag)
                doc = img.manifest_doc(layout)
                arch_builds[arch_name] = ArchBuild(
                    arch=arch_name, manifest_digest=img.manifest["digest"],
                    config_digest=doc["config"]["digest"],
                    archive=archive, archive_sha256=oci.sha256_file(staging / archive),
                    compressed_bytes=img.compressed_bytes(layout), uncompressed_bytes=uncompressed)
            images[name] = ImageBuild(name=name, tag=tag, index_digest=oci.digest_of(index),
                                      index_file=index_file, arches=arch_builds)
        for f in staging.iterdir():
            f.replace(out / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BuildRecord(version=src.version, revision=src.revision, dirty=src.dirty,
                       source_date_epoch=src.epoch, images=images)
