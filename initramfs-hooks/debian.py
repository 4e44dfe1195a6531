"""Debian packages for one release, fetched and unpacked without touching the machine.

A private apt configuration (its own sources.list, lists, cache and an empty dpkg status)
downloads the packages (`apt-get download`) into a cache and `dpkg-deb -x` unpacks each
into one sysroot. Nothing is installed; the machine's apt state is never read or changed.
"""

from __future__ import annotations

import os
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


RELEASES = {
    "4.17": Release("4.17", "bookworm", "3.11", "linux-image-amd64"),
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


def unpack(debs: list[Path], sysroot: Path) -> None:
    """dpkg-deb -x every package into one tree (a marker per .deb: done once)."""
    marks = sysroot / ".unpacked"
    marks.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        mark = marks / deb.name
        if mark.exists():
            continue
        _run(["dpkg-deb", "-x", str(deb), str(sysroot)], f"dpkg-deb -x {deb.name}")
        mark.touch()


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=900, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout
