"""Debian packages for one release, fetched and unpacked without touching the machine.

A private apt configuration (its own sources.list, lists, cache and an empty dpkg status)
downloads the packages (`apt-get download`) into a cache and `dpkg-deb -x` unpacks each
into one sysroot. Nothing is installed; the machine's apt state is never read or changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR = "http://deb.debian.org/debian"
LISTS_MAX_AGE = 24 * 3600  # seconds before the package lists are refreshed


@dataclass(frozen=True)
class Release:
    """Everything that differs between the Xen releases the lab boots."""

    xen: str          # "4.17"
    suite: str        # Debian suite that ships that hypervisor and toolstack
    python: str       # the suite's python3.X
    kernel_meta: str  # the metapackage naming the current kernel
    merged_usr: bool  # the packages ship everything under /usr (/bin, /lib... are links)


RELEASES = {
    "4.17": Release("4.17", "bookworm", "3.11", "linux-image-amd64", merged_usr=False),
    # trixie: Xen 4.20, Linux 6.12 (zstd bzImage, .ko.xz modules in /usr/lib/modules)
    "4.20": Release("4.20", "trixie", "3.13", "linux-image-amd64", merged_usr=True),
}


class Apt:
    def __init__(self, cache: Path, release: Release) -> None:
        self.dir = cache / f"apt-{release.suite}"
        self.release = release
        (self.dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (self.dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (self.dir / "debs").mkdir(exist_ok=True)
        (self.dir / "sources.list").write_text(
            f"deb [signed-by={KEYRING}] {MIRROR} {release.suite} main\n")
        (self.dir / "status").touch()

    def _options(self) -> list[str]:
        d = self.dir
        return ["-o", f"Dir::Etc::sourcelist={d / 'sources.list'}",
                "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State::Lists={d / 'lists'}",
                "-o", f"Dir::Cache={d / 'cache'}",
                "-o", f"Dir::State::status={d / 'status'}",
                "-o", "APT::Get::AllowUnauthenticated=false",
                "-q"]

    def update(self) -> None:
        stamp = self.dir / "lists" / ".updated"
        if stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE:
            return
        _run(["apt-get", *self._options(), "update"], "apt-get update (private lists)")
        stamp.touch()

    def depends(self, package: str) -> list[str]:
        out = _run(["apt-cache", *self._options(), "depends", package], "apt-cache depends")
        return [line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.strip().startswith("Depends:")]

    def libraries(self, packages: list[str]) -> list[str]:
        """The shared-library packages `packages` need, transitively, by the release's own
        dependency data: library names differ between releases (the t64 transition renamed
        libext2fs2, librc1, libdb5.3, ...), so they are looked up, never listed by hand.

        Only library packages (lib*, zlib1g) are followed: a program's dependency on, say,
        python3 or udev is not something the images take. Of an or-group the first
        alternative counts; a virtual library name stands for its first provider."""
        seen = set(packages)
        found: list[str] = []
        todo = list(packages)
        while todo:
            out = _run(["apt-cache", *self._options(), "depends", "--no-recommends",
                        "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                        "--no-enhances", *todo], "apt-cache depends")
            todo = []
            for name in _first_alternatives(out):
                if _is_library(name) and name not in seen:
                    seen.add(name)
                    found.append(name)
                    todo.append(name)
        return sorted(found)

    def download(self, packages: list[str]) -> list[Path]:
        """The .deb of each package (the candidate version), downloaded once."""
        debs = self.dir / "debs"
        wanted = [p for p in packages if not list(debs.glob(f"{p}_*.deb"))]
        if wanted:
            _run(["apt-get", *self._options(), "download", *wanted], "apt-get download",
                 cwd=debs)
        out = []
        for package in packages:
            found = sorted(debs.glob(f"{package}_*.deb"))
            if not found:
                raise SystemExit(f"apt-get download left no .deb for {package}")
            out.append(found[-1])
        return out


def _is_library(package: str) -> bool:
    return package.startswith("lib") or package == "zlib1g"


def _first_alternatives(depends_output: str) -> list[str]:
    """Of `apt-cache depends` output, the first alternative of every (Pre)Depends group,
    a virtual package (`<name>`) replaced by the first provider listed under it."""
    names: list[str] = []
    in_group = False      # the previous line was `|Depends:`: this one is an alternative
    virtual = False       # the last name was virtual: the next provider line stands for it
    for line in depends_output.splitlines():
        if not line.startswith(" "):
            in_group = virtual = False  # a package's own name: its dependencies follow
            continue
        text = line.strip()
        if ":" not in text:  # a provider of the virtual package just named
            if virtual:
                names.append(text)
                virtual = False
            continue
        kind, name = (part.strip() for part in text.split(":", 1))
        alternative, in_group = in_group, kind.startswith("|")
        virtual = False
        if alternative or kind.lstrip("|") not in ("Depends", "PreDepends"):
            continue
        if name.startswith("<"):
            virtual = True
        else:
            names.append(name)
    return names


def unpack(debs: list[Path], sysroot: Path, merged_usr: bool) -> None:
    """dpkg-deb -x every package into one tree (a marker per .deb: done once)."""
    marks = sysroot / ".unpacked"
    marks.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        mark = marks / deb.name
        if mark.exists():
            continue
        _run(["dpkg-deb", "-x", str(deb), str(sysroot)], f"dpkg-deb -x {deb.name}")
        mark.touch()
    if merged_usr:
        merge_usr(sysroot)


MERGED_DIRS = ("bin", "sbin", "lib", "lib64")


def merge_usr(sysroot: Path) -> None:
    """Make /bin, /sbin, /lib and /lib64 links into /usr, as a merged-/usr system has them
    (base-files makes them on an installed system; it is not unpacked here). Without them
    the binaries' interpreter /lib64/ld-linux-x86-64.so.2 does not exist in a chroot of the
    sysroot. dpkg-deb -x replaces such a link by a directory when a package still ships a
    file there: its contents move into /usr and the link comes back."""
    for name in MERGED_DIRS:
        top, usr = sysroot / name, sysroot / "usr" / name
        if top.is_symlink():
            continue
        if top.is_dir():
            _move_into(top, usr)
            top.rmdir()
        usr.mkdir(parents=True, exist_ok=True)
        top.symlink_to(f"usr/{name}")


def _move_into(src: Path, dest: Path) -> None:
    """Move src's entries into dest, merging directories (dest's files win: /usr's own)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in list(src.iterdir()):
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _move_into(entry, target)
            entry.rmdir()
        elif not (target.exists() or target.is_symlink()):
            entry.rename(target)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout
