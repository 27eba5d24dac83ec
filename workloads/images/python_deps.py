"""An image's Python packages: the closure of its requirements, taken from the lock, for its platform.

uv resolves which locked packages the image's top-level requirements pull in for CPython 3.11 on
linux/<arch> (markers evaluated for that platform, versions held to the lock), then installs exactly
those lines of the lock - hashes checked, wheels only, no build step - into a directory tree that
becomes one image layer. The wheels come from PyPI through uv's cache, so a second build downloads
nothing. Bytecode is compiled here with unchecked hashes, so a container never recompiles at start.
"""

from __future__ import annotations

import compileall
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name

from workloads.images import lock
from workloads.images.arches import Arch

SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"  # on Debian's python3 sys.path
# botocore ships the API models of ~450 AWS services (28 MB); the gateway's AWS sink calls IoT data
# only, and the credential chain may use STS (web identity / assume role) and SSO.
PRUNE: dict[str, tuple[str, ...]] = {
    "botocore/data": ("*.json", "iot-data", "sts", "sso", "sso-oidc"),
}


class DependencyError(RuntimeError):
    pass


def _uv(uv: str, *args: str, cache: Path) -> str:
    env = {**os.environ, "UV_CACHE_DIR": str(cache), "UV_NO_PROGRESS": "1"}
    done = subprocess.run([uv, *args], capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise DependencyError(f"uv {args[0]} {args[1]} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def locked_closure(uv: str, requirements: tuple[str, ...], arch: Arch, cache: Path) -> list[lock.Locked]:
    """The lock entries `requirements` need on linux/<arch>, CPython 3.11.

    Remembered per (requirements, lock file, arch), so a rebuild asks no index at all."""
    locked = lock.for_arch(lock.load(), arch)
    memo_key = hashlib.sha256("\n".join([arch.name, *requirements, lock.LOCK_FILE.read_text()]).encode())
    memo = cache / "closures" / f"{memo_key.hexdigest()[:24]}.txt"
    if memo.exists():
        names = memo.read_text().split()
        if all(n in locked for n in names):
            return [locked[n] for n in names]
    chosen = _resolve_closure(uv, requirements, arch, cache, locked)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text("\n".join(e.name for e in chosen) + "\n")
    return chosen


def _resolve_closure(uv: str, requirements: tuple[str, ...], arch: Arch, cache: Path,
                     locked: dict[str, lock.Locked]) -> list[lock.Locked]:
    with tempfile.TemporaryDirectory(prefix="edgerig-closure-") as tmp:
        roots = Path(tmp) / "roots.in"
        pins = Path(tmp) / "pins.txt"
        roots.write_text("\n".join(requirements) + "\n")
        pins.write_text("".join(f"{p.name}=={p.version}\n" for p in locked.values()))
        out = _uv(uv, "pip", "compile", "--no-config", "--quiet", "--no-header", "--no-annotate",
                  "--python-version", lock.PYTHON_VERSION, "--python-platform", arch.uv_platform,
                  "--only-binary", ":all:", str(roots), "-c", str(pins), cache=cache)
    chosen = []
    for line in filter(None, (raw.split("#", 1)[0].strip() for raw in out.splitlines())):
        name, _, version = line.partition("==")
        pinned = locked.get(canonicalize_name(name))
        if pinned is None or pinned.version != version:
            raise DependencyError(f"{name}=={version} is needed by the image but the lock has "
                                  f"{pinned.version if pinned else 'nothing'}: run `edgerig images lock`")
        chosen.append(pinned)  # the lock's own line, hashes included
    return sorted(chosen, key=lambda p: p.name)


def key(entries: list[lock.Locked], arch: Arch) -> str:
    text = "\n".join([arch.name, lock.PYTHON_VERSION, repr(sorted(PRUNE.items())),
                      *(e.requirement_line() for e in entries)])
    return hashlib.sha256(text.encode()).hexdigest()


def install_tree(uv: str, entries: list[lock.Locked], arch: Arch, dest: Path, cache: Path) -> None:
    """Install exactly `entries` (hash-checked wheels) for `arch` into dest/<site-packages>."""
    site = dest / SITE_PACKAGES
    site.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="edgerig-reqs-") as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("".join(e.requirement_line() + "\n" for e in entries))
        _uv(uv, "pip", "install", "--no-config", "--quiet", "--target", str(site), "--python-version",
            lock.PYTHON_VERSION, "--python-platform", arch.uv_platform, "--no-deps", "--require-hashes",
            "--only-binary", ":all:", "--link-mode", "copy", "--no-compile", "-r", str(reqs), cache=cache)
    # console scripts would name this machine's interpreter; the images run `python -m` only
    shutil.rmtree(site / "bin", ignore_errors=True)
    prune(site)
    compile_bytecode(site)


def prune(site: Path) -> None:
    for rel, keep in PRUNE.items():
        folder = site / rel
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if not any(fnmatch.fnmatch(child.name, pattern) for pattern in keep):
                shutil.rmtree(child) if child.is_dir() else child.unlink()


def compile_bytecode(tree: Path) -> None:
    """Unchecked-hash .pyc for CPython 3.11 (bytecode is the same on every architecture)."""
    if sys.version_info[:2] != (3, 11):
        raise DependencyError(f"the image build compiles bytecode for the images' Python 3.11 but runs on "
                              f"{sys.version.split()[0]}: run it from the project's Python 3.11 virtualenv")
    import py_compile

    ok = compileall.compile_dir(str(tree), quiet=2, workers=0,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise DependencyError(f"compiling the Python files under {tree} failed")
