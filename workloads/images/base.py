"""The images' base: the files of a few Debian packages and their run-time dependencies, nothing else.

The debootstrapped root filesystem (rootfs.py) is complete Debian: apt, dpkg, perl, a shell. The
image base copies from it only the files that dpkg lists for the dependency closure of the wanted
packages (python3 -> libpython3.11-stdlib -> libc6, libssl3, ...). Packages needed only to install
or configure packages (dpkg, debconf, perl) are left out, and so are documentation, man pages and
translations. A few files that maintainer scripts generate are taken as generated (the CA bundle,
ld.so.cache), and /etc/passwd and /etc/group are written for root and the images' user.

Python's own modules are compiled to unchecked-hash bytecode here (Debian compiles them in a
postinst with timestamps, which the image's fixed file times would invalidate), so a container
never recompiles the standard library at start - which costs seconds on a Pi.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from workloads.images.catalog import USER_ID, USER_NAME

# Needed to install or configure packages, never to run them.
CONFIGURE_ONLY = frozenset({"dpkg", "debconf", "perl-base", "debianutils", "init-system-helpers"})
DROP = ("usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
        "usr/share/lintian/*", "usr/share/bug/*", "usr/share/doc-base/*", "usr/share/menu/*")
KEEP = ("usr/share/doc/*/copyright",)  # licences stay with the binaries
GENERATED = ("etc/ssl/certs/ca-certificates.crt", "etc/ld.so.cache")
BUILD_RECIPE = "3"  # bump when the rules of this module change: cached bases are rebuilt


class BaseError(RuntimeError):
    pass


@dataclass(frozen=True)
class Package:
    name: str
    arch: str
    depends: tuple[tuple[str, ...], ...]  # each entry: alternatives
    provides: tuple[str, ...]
    stanza: str


def _parse_relations(text: str) -> tuple[tuple[str, ...], ...]:
    out = []
    for clause in filter(None, (c.strip() for c in text.split(","))):
        alts = tuple(re.split(r"[\s(:]", a.strip(), maxsplit=1)[0] for a in clause.split("|"))
        out.append(alts)
    return tuple(out)


def installed_packages(rootfs: Path) -> dict[str, Package]:
    status = (rootfs / "var/lib/dpkg/status").read_text()
    out: dict[str, Package] = {}
    for stanza in status.strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "install ok installed" not in fields.get("Status", ""):
            continue
        deps = ", ".join(filter(None, (fields.get("Pre-Depends", ""), fields.get("Depends", ""))))
        provides = tuple(alt[0] for alt in _parse_relations(fields.get("Provides", "")))
        out[fields["Package"]] = Package(fields["Package"], fields.get("Architecture", "all"),
                                         _parse_relations(deps), provides, stanza)
    return out


def closure(rootfs: Path, wanted: tuple[str, ...]) -> list[Package]:
    """The installed packages `wanted` needs at run time (Pre-Depends and Depends, transitively)."""
    pkgs = installed_packages(rootfs)
    virtual: dict[str, str] = {}
    for p in pkgs.values():
        for v in p.provides:
            virtual.setdefault(v, p.name)
    missing = [w for w in wanted if w not in pkgs]
    if missing:
        raise BaseError(f"{', '.join(missing)} not installed in {rootfs}: add them to the rootfs packages")
    seen: dict[str, Package] = {}
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name in seen or name in CONFIGURE_ONLY:
            continue
        pkg = pkgs[name]
        seen[name] = pkg
        for alts in pkg.depends:
            chosen = next((a for a in alts if a in pkgs), None) or next(
                (virtual[a] for a in alts if a in virtual), None)
            if chosen is None and not any(a in CONFIGURE_ONLY for a in alts):
                raise BaseError(f"{name} depends on {' | '.join(alts)}, which is not installed in {rootfs}")
            if chosen is not None:
                todo.append(chosen)
    return sorted(seen.values(), key=lambda p: p.name)


def _listed_files(rootfs: Path, pkg: Package) -> list[str]:
    info = rootfs / "var/lib/dpkg/info"
    for candidate in (info / f"{pkg.name}:{pkg.arch}.list", info / f"{pkg.name}.list"):
        if candidate.exists():
            return [line for line in candidate.read_text().splitlines() if line not in ("", "/.")]
    raise BaseError(f"dpkg has no file list for {pkg.name} in {info}")


def _dropped(rel: str) -> bool:
    if any(fnmatch.fnmatch(rel, k) for k in KEEP):
        return False
    return any(fnmatch.fnmatch(rel, d) for d in DROP)


def _copy_entry(rootfs: Path, dest: Path, rel: str) -> None:
    src = rootfs / rel
    target = dest / rel
    if not src.is_symlink() and not src.exists():
        return  # dpkg lists diverted or removed paths too
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        if target.is_symlink() or target.exists():
            return
        os.symlink(os.readlink(src), target)
    elif src.is_dir():
        target.mkdir(exist_ok=True)
        shutil.copystat(src, target)
    elif not target.exists():
        shutil.copy2(src, target)


def _parent_dirs_like(rootfs: Path, dest: Path) -> None:
    """Directories created on the way keep the rootfs's modes (e.g. /tmp is 1777 there)."""
    for path in sorted(dest.rglob("*"), key=lambda p: len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            src = rootfs / path.relative_to(dest)
            if src.is_dir():
                os.chmod(path, src.stat().st_mode & 0o7777)


def write_tree(rootfs: Path, packages: list[Package], dest: Path, with_accounts: bool = True) -> None:
    """Copy the packages' files from `rootfs` into `dest` (a new directory)."""
    dest.mkdir(parents=True)
    # usrmerge: /bin, /lib, /sbin, /lib64 are symlinks into /usr on bookworm; dpkg lists the old paths.
    for link in ("bin", "lib", "lib64", "sbin"):
        if (rootfs / link).is_symlink():
            target = os.readlink(rootfs / link)
            (dest / link).parent.joinpath(target).mkdir(parents=True, exist_ok=True)
            os.symlink(target, dest / link)
    for pkg in packages:
        for path in _listed_files(rootfs, pkg):
            rel = path.lstrip("/")
            if not _dropped(rel):
                _copy_entry(rootfs, dest, rel)
    if with_accounts:
        for rel in GENERATED:
            if (rootfs / rel).exists():
                _copy_entry(rootfs, dest, rel)
        _accounts(dest)
    _parent_dirs_like(rootfs, dest)
    status = dest / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True, exist_ok=True)
    # What is inside, for scanners (versions, licences); no dpkg to act on it.
    status.write_text("\n\n".join(p.stanza for p in packages) + "\n")


def _accounts(dest: Path) -> None:
    etc = dest / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{USER_NAME}:x:{USER_ID}:{USER_ID}:edgerig:/home/{USER_NAME}:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text(f"root:x:0:\n{USER_NAME}:x:{USER_ID}:\nnogroup:x:65534:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
    home = dest / "home" / USER_NAME
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, USER_ID, USER_ID)
    tmp = dest / "tmp"
    tmp.mkdir(exist_ok=True)
    os.chmod(tmp, 0o1777)
    (dest / "root").mkdir(exist_ok=True)
    os.chmod(dest / "root", 0o700)


def extra_tree(rootfs: Path, base: list[Package], extra: tuple[str, ...], dest: Path) -> list[Package]:
    """Files of `extra` packages (with their closure) that the base does not hold already."""
    have = {p.name for p in base}
    more = [p for p in closure(rootfs, extra) if p.name not in have]
    write_tree(rootfs, more, dest, with_accounts=False)
    # the base's dpkg status already lists the base packages; this layer lists the whole set
    (dest / "var/lib/dpkg/status").write_text("\n\n".join(p.stanza for p in [*base, *more]) + "\n")
    return more
