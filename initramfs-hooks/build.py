#!/usr/bin/env python3
"""Build the stateless dom0 image and the lab's guest images from Debian's packages.

    python3 initramfs-hooks/build.py [--xen 4.17|4.20] [--out build/lab] [--cache build/cache]
                                     [--hypervisor-from 4.17|4.20] [--no-lab]

--xen picks the release: 4.17 from Debian bookworm (the default), 4.20 from Debian trixie.
--hypervisor-from takes out/xen from the other release: a deliberately MISMATCHED image, for
the version-trap tests only (report.json says which hypervisor went in).

Outputs in --out:
    xen                  the hypervisor (multiboot ELF, for QEMU's -kernel)
    vmlinuz              the dom0 kernel (bzImage)
    dom0.cpio.gz         the dom0 image: busybox init + OpenRC, the Xen toolstack, a Python
                         runtime trimmed to what orchestrator imports, orchestrator and its
                         deps, kernel modules (allowlist closed over the modules' depends),
                         the units (/etc/orchestrator/units) and the OpenRC service
    images/              what the build server serves: vmlinux (raw ELF: `xl create` is
                         ~1.3 s with it, ~9.5 s with the xz bzImage) and one initramfs per
                         guest role (net-vm, sa-vm, workload-vm)
    units/               the units baked into dom0, with the images' real sha256 and size
    report.json          sizes by part, the module closure, the Python modules kept, the
                         packages, which hypervisor went in

Every input comes from the release's Debian packages, fetched with a private apt
configuration (initramfs-hooks/debian.py); orchestrator's Python dependencies from PyPI
wheels (pip download) for the release's python. What runs at build time on the release's
files is the release's own program, never the host's: its loader resolves the libraries,
and in a chroot of its sysroot its python scans and compiles the Python modules and its
zstd unpacks a zstd-compressed kernel. Build-time assertions: every binary present,
every library resolved inside the image by the image's own loader, `import orchestrator`
(every module) succeeds in a chroot of the image, the module closure is complete.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))  # orchestrator.units reads the units (standard library only)
import debian  # noqa: E402
import image_needs  # noqa: E402

from orchestrator.units import Config, load_units  # noqa: E402

# What dom0 and the guests take from the release, by package. The shared libraries these
# need are not listed: debian.Apt.libraries finds them in the release's dependency data
# (their names change between releases: libext2fs2 is libext2fs2t64 in trixie, librc1
# librc1t64, ...), and the closure check names any soname still missing.
BASE_PACKAGES = [
    "busybox-static", "bash", "xen-utils-{xen}", "xen-utils-common", "xenstore-utils",
    "libgcc-s1",  # glibc dlopens libgcc_s for pthread_cancel: no binary names it (XEN-LAB.md)
]
DOM0_PACKAGES = ["openrc", "python{py}-minimal", "libpython{py}-stdlib"]
# Run at build time in a chroot of the sysroot, never copied into an image: zstd
# decompresses a zstd bzImage payload (Linux 6.12), which the host's python cannot.
BUILD_PACKAGES = ["zstd"]
PY_DEPS = ["pyxs==0.4.1", "psutil>=5.9", "structlog>=23.1", "tenacity>=8.2"]

XEN_TOOLS = ["xl", "xenstored", "xenconsoled", "xen-init-dom0", "libxl-save-helper",
             "vchan-socket-proxy"]
XENSTORE_LINKS = ["chmod", "exists", "list", "ls", "read", "rm", "watch", "write"]

# Kernel modules by name; the closure over each module's `depends=` adds the rest. dom0's
# other modules come from the units it carries (image_needs.dom0_needs): host.toml's
# xen.modules, netback and the bridge only if dom0 serves a vif itself, netfront with
# `[nic] after_handoff = "vif"`.
# dom0's own hardware drivers, loaded by rc.dom0 from /etc/modules (no udev/mdev here)
DOM0_DRIVERS = ["e1000", "xhci-pci"]
XEN_GUEST_MODULES = ["xen-evtchn", "xen-gntdev", "xen-gntalloc", "xen-privcmd", "xenfs"]
GUEST_MODULES = {
    # routed (guest/vif-route-sh): netback, no bridge
    "net-vm": [*XEN_GUEST_MODULES, "xen-pcifront", "e1000", "xen-netback"],
    "sa-vm": XEN_GUEST_MODULES,
    "workload-vm": [*XEN_GUEST_MODULES, "xen-netfront"],
}
# What each guest role runs besides busybox (guest/*): files into /etc, and which Xen
# programs. Only net-vm runs `xl` (`xl devd` serves the vifs, running vif-route-sh, a
# plain sh script: no guest needs bash or Xen's bash hotplug scripts).
GUEST_FILES = {
    "net-vm": ["vif-route-sh"],
    "sa-vm": ["vchan-echo-server"],
    "workload-vm": ["vchan-echo-client", "netfront-hotplug", "mdev.conf"],
}
GUEST_XL = {"net-vm"}
GUEST_SCRIPTS = {"vif-route-sh": "etc/xen/scripts/vif-route-sh"}

# Python modules never shipped: TLS (images are plain HTTP, pinned by sha256), OpenSSL's
# hashlib backend (Debian's python has sha256 built in), and what only tests use. The xml
# package stays (`orchestrate review --svg` escapes with xml.sax.saxutils), its expat
# parser does not.
PY_EXCLUDE = {"ssl", "_ssl", "_hashlib", "pydoc", "doctest", "unittest", "tkinter",
              "idlelib", "lib2to3", "ensurepip", "distutils", "test", "sqlite3", "curses",
              "readline", "_ctypes", "ctypes", "pyexpat", "multiprocessing",
              "setuptools", "pip", "_distutils_hack", "pkg_resources",
              # reached only through functions orchestrator never calls (shutil's
              # archives, decimal arithmetic): the chroot import check proves it
              "tarfile", "zipfile", "bz2", "lzma", "_bz2", "_lzma", "_compression",
              "decimal", "_decimal", "_pydecimal", "zipimport", "importlib.metadata"}


# ----- small helpers ----------------------------------------------------------------------

def log(text: str) -> None:
    print(f"build: {text}", flush=True)


def run(argv: list[str], **kw: object) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return str(proc.stdout)


def copy(src: Path, dest: Path) -> None:
    """Copy a file, following symlinks, keeping its mode."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    shutil.copy2(src, dest, follow_symlinks=True)


def link(target: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def inside(sysroot: Path, path: str) -> Path:
    """A path of the target system, resolved inside the sysroot (symlinks kept inside)."""
    current = sysroot
    parts = [p for p in path.split("/") if p]
    seen = 0
    while parts:
        part = parts.pop(0)
        candidate = current / part
        if candidate.is_symlink():
            seen += 1
            if seen > 40:
                raise SystemExit(f"symlink loop at {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = sysroot
            parts = [p for p in target.split("/") if p] + parts
            continue
        if part == "..":
            current = current.parent if current != sysroot else sysroot
            continue
        current = candidate
    return current


# ----- the release's files ----------------------------------------------------------------------

class Sysroot:
    """Every package of the release unpacked into one tree."""

    def __init__(self, path: Path, release: debian.Release) -> None:
        self.path, self.release = path, release
        self.loader = inside(path, "/lib64/ld-linux-x86-64.so.2")
        self.lib_dirs = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64",
                         "/usr/lib"]

    def file(self, path: str) -> Path:
        found = inside(self.path, path)
        if not found.exists():
            raise SystemExit(f"{path} is not in the {self.release.suite} packages")
        return found

    def real(self, path: str) -> str:
        """Where `path` is in the release's own layout, links followed: /lib/rc is
        /usr/lib/rc in trixie (merged /usr), /lib/rc in bookworm."""
        return "/" + str(self.file(path).relative_to(self.path))

    @contextmanager
    def scratch(self) -> Iterator[tuple[Path, str]]:
        """A scratch directory inside the sysroot, removed afterwards: (its path here, its
        path in a chroot of the sysroot). Unique: two builds may share the cache."""
        path = Path(tempfile.mkdtemp(prefix=".build-", dir=self.path))
        try:
            yield path, f"/{path.name}"
        finally:
            shutil.rmtree(path)

    def chroot(self, argv: list[str], stdin: str | None = None) -> str:
        """Run one of the release's own programs in a chroot of the sysroot (its loader, its
        libraries): what runs on the release's files at build time is never the host's."""
        return run(["chroot", str(self.path), *argv], input=stdin,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})

    def needed(self, binary: Path, root: Path) -> dict[str, str | None]:
        """soname -> path inside `root` (None: not found), resolved by the release's own
        loader with only `root`'s library directories: never the host's ldd."""
        libpath = ":".join(str(root / d.lstrip("/")) for d in self.lib_dirs)
        proc = subprocess.run([str(self.loader), "--library-path", libpath, "--list",
                               str(binary)], capture_output=True, text=True, check=False,
                              env={"LC_ALL": "C"})
        out: dict[str, str | None] = {}
        if proc.returncode != 0 and "not a dynamic executable" in proc.stdout + proc.stderr:
            return out
        for line in proc.stdout.splitlines():
            line = line.strip()
            m = re.match(r"(\S+) => (\S+|not found)", line)
            if m:
                out[m[1]] = None if m[2] == "not found" else m[2]
        return out


# ----- the image tree ----------------------------------------------------------------------

class Tree:
    def __init__(self, root: Path, sysroot: Sysroot) -> None:
        self.root, self.sys = root, sysroot
        if root.exists():
            shutil.rmtree(root)
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run",
                  "etc", "root", "mnt", "var/lib/xen", "var/log/xen/console", "lib64",
                  "lib/x86_64-linux-gnu"):
            (root / d).mkdir(parents=True, exist_ok=True)
        link("../run", root / "var/run")
        link("../run/lock", root / "var/lock")
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (root / "etc/group").write_text("root:x:0:\ntty:x:5:\nuucp:x:10:\n")
        (root / "etc/fstab").write_text("# RAM-resident: nothing to mount from a disk\n")
        (root / "etc/insserv.conf").write_text("# no LSB init scripts here\n")
        (root / "etc/shadow").write_text("root::0:0:99999:7:::\n")
        (root / "etc/shadow").chmod(0o600)
        self.binaries: list[str] = []

    def put(self, path: str, src: str | None = None) -> Path:
        dest = self.root / path.lstrip("/")
        copy(self.sys.file(src or path), dest)
        return dest

    def put_tree(self, path: str, skip: Iterable[str] = ()) -> None:
        src = self.sys.file(path)
        dest = self.root / path.lstrip("/")
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*skip))

    def binary(self, path: str) -> None:
        self.put(path)
        self.binaries.append(path)

    def busybox(self) -> None:
        self.put("/bin/busybox")
        applets = run([str(self.root / "bin/busybox"), "--list-full"]).split()
        for applet in applets:
            dest = self.root / applet
            if not dest.exists() and not dest.is_symlink():
                link(os.path.relpath("/bin/busybox", "/" + str(Path(applet).parent)), dest)

    def xen_tools(self, tools: Sequence[str], hotplug_scripts: bool) -> None:
        """The named Xen programs (the release's tool directory), the xenstore clients and
        libgcc_s; with xl, its configuration; Xen's hotplug scripts (bash) only in a
        domain that serves a device itself (image_needs)."""
        xb = f"/usr/lib/xen-{self.sys.release.xen}/bin"
        for tool in tools:
            self.binary(f"{xb}/{tool}")
        # ldd never lists it; xl and vchan-socket-proxy abort without it ("libgcc_s.so.1
        # must be installed for pthread_cancel to work", exit 134; XEN-LAB.md)
        self.put(self.sys.real("/lib/x86_64-linux-gnu/libgcc_s.so.1"))
        if "xl" in tools:
            link(f"{xb}/xl", self.root / "usr/sbin/xl")
            self.put("/etc/xen/xl.conf")
        if "vchan-socket-proxy" in tools:
            link(f"{xb}/vchan-socket-proxy", self.root / "usr/bin/vchan-socket-proxy")
        self.binary("/usr/bin/xenstore")
        for name in XENSTORE_LINKS:
            link("xenstore", self.root / f"usr/bin/xenstore-{name}")
        if hotplug_scripts:
            self.put_tree("/etc/xen/scripts")

    def libraries(self) -> list[str]:
        """Copy the closure of every binary and shared object in the tree; returns sonames
        that the release's packages listed here do not provide (must be empty)."""
        missing: set[str] = set()
        loader = "/lib64/ld-linux-x86-64.so.2"
        copy(self.sys.loader, self.root / loader.lstrip("/"))
        for _ in range(10):  # until nothing new is copied
            added = False
            for elf in self.elves():
                for soname, where in self.sys.needed(elf, self.sys.path).items():
                    if where is None:
                        missing.add(f"{soname} (for {elf.relative_to(self.root)})")
                        continue
                    found = Path(where)
                    # into the directory the release installs it in (/usr/lib/... when /usr
                    # is merged), whichever of the search directories found it
                    home = self.sys.real(f"/{found.parent.relative_to(self.sys.path)}")
                    dest = self.root / home.lstrip("/") / found.name
                    if not dest.exists():
                        copy(found, dest)
                        added = True
            if not added:
                break
        return sorted(missing)

    def elves(self) -> list[Path]:
        out = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.suffix not in (".ko", ".py",
                                                                                 ".pyc"):
                with path.open("rb") as f:
                    if f.read(4) == b"\x7fELF":
                        out.append(path)
        return out

    def unresolved(self) -> list[str]:
        """Every ELF resolved by the image's own loader against the image only."""
        problems = []
        for elf in self.elves():
            for soname, where in self.sys.needed(elf, self.root).items():
                if where is None:
                    problems.append(f"{elf.relative_to(self.root)}: {soname} not found")
        return problems


# ----- kernel modules ----------------------------------------------------------------------

# How a release's kernel ships its modules (bookworm's 6.1: plain .ko; trixie's 6.12: .ko.xz,
# which busybox's modprobe decompresses itself) and how to read one's modinfo.
MODULE_FORMATS = {".ko": lambda data: data, ".ko.xz": lzma.decompress,
                  ".ko.gz": gzip.decompress}


def modinfo_depends(ko: Path) -> list[str]:
    data = MODULE_FORMATS[ko.name[ko.name.index(".ko"):]](ko.read_bytes())
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    return [d.replace("-", "_") for d in m[1].decode().split(",") if d] if m else []


class Modules:
    def __init__(self, sysroot: Sysroot, version: str) -> None:
        self.version = version
        # /lib/modules in bookworm, /usr/lib/modules in trixie (merged /usr); the images
        # keep them in /lib/modules, where busybox's modprobe looks, with the files' own
        # names (.ko.xz too) in the modules.dep written here (trixie ships none)
        for where in (f"/usr/lib/modules/{version}", f"/lib/modules/{version}"):
            if inside(sysroot.path, where).is_dir():
                self.base = inside(sysroot.path, where)
                break
        else:
            raise SystemExit(f"no modules of {version} in the {sysroot.release.suite} packages")
        self.by_name: dict[str, Path] = {}
        for ko in self.base.rglob("*.ko*"):
            if ko.name[ko.name.index(".ko"):] not in MODULE_FORMATS:
                raise SystemExit(f"{ko.name}: a module format this build cannot read")
            name = ko.name.split(".ko")[0].replace("-", "_")
            self.by_name[name] = ko

    def closure(self, wanted: list[str]) -> tuple[list[str], list[str]]:
        """(every module needed, the ones the closure added to the allowlist)."""
        out: list[str] = []
        todo = [w.replace("-", "_") for w in wanted]
        while todo:
            name = todo.pop(0)
            if name in out:
                continue
            if name not in self.by_name:
                raise SystemExit(f"kernel module {name} is not in {self.version}")
            out.append(name)
            todo += modinfo_depends(self.by_name[name])
        allow = {w.replace("-", "_") for w in wanted}
        return out, [m for m in out if m not in allow]

    def _load_order(self, name: str) -> list[str]:
        """name's dependencies, deepest first, then name (DFS post-order)."""
        order: list[str] = []

        def visit(module: str) -> None:
            for dep in modinfo_depends(self.by_name[module]):
                if dep not in order:
                    visit(dep)
            if module not in order:
                order.append(module)
        visit(name)
        return order

    def install(self, tree: Tree, names: list[str]) -> None:
        dest = tree.root / "lib/modules" / self.version
        dep_lines = []
        for name in names:
            ko = self.by_name[name]
            rel = ko.relative_to(self.base)
            copy(ko, dest / rel)
            # as depmod writes it: every dependency, transitively, loaded last to first
            deps = [str(self.by_name[d].relative_to(self.base))
                    for d in reversed(self._load_order(name)[:-1])]
            dep_lines.append(f"{rel}: {' '.join(deps)}".rstrip())
        (dest / "modules.dep").write_text("\n".join(dep_lines) + "\n")
        for extra in ("modules.builtin", "modules.order"):
            if (self.base / extra).exists():
                copy(self.base / extra, dest / extra)
        for name in names:  # complete closure, checked
            for dep in modinfo_depends(self.by_name[name]):
                if dep not in names:
                    raise SystemExit(f"module closure incomplete: {name} needs {dep}")


# ----- python ----------------------------------------------------------------------

def python_deps(cache: Path, py: str) -> Path:
    """orchestrator's dependencies as wheels for the release's python, unpacked once."""
    wheels = cache / f"wheels-py{py}"
    site = cache / f"site-py{py}"
    if not (site / ".done").exists():
        wheels.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheels),
             "--only-binary=:all:", "--python-version", py, "--implementation", "cp",
             "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
             *PY_DEPS])
        if site.exists():
            shutil.rmtree(site)
        import zipfile

        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
        (site / ".done").touch()
    return site


# Run by the release's own python in a chroot of the sysroot, never the host's: its
# modulefinder reads the release's stdlib (3.13 syntax too), knows its extension suffixes
# (.cpython-313-x86_64-linux-gnu.so), and its bytecode carries the release's pyc magic.
# Each reads its job as JSON on stdin.
PY_SCAN = """
import json, sys
from modulefinder import ModuleFinder
job = json.load(sys.stdin)
finder = ModuleFinder(path=job["path"], excludes=job["excludes"])
for script in job["scripts"]:
    finder.run_script(script)
for name in job["hooks"]:
    finder.import_hook(name)
print(json.dumps({name: module.__file__ for name, module in finder.modules.items()
                  if module.__file__ and not name.startswith("orchestrator")
                  and name != "__main__"}))
"""
PY_COMPILE = """
import json, py_compile, sys
for source, cfile, dfile in json.load(sys.stdin):
    py_compile.compile(source, cfile=cfile, dfile=dfile, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def codec_modules() -> dict[str, str]:
    """Every codec orchestrator names in an `.encode("...")` or `.decode("...")`, and its
    module in the encodings package: codecs are looked up by name at run time, so no
    import scan finds them (a missing one is a LookupError at the first such call)."""
    import encodings
    import encodings.aliases

    names: set[str] = set()
    for source in (REPO / "orchestrator").rglob("*.py"):
        names |= set(re.findall(r'\.(?:en|de)code\(\s*"([A-Za-z0-9_-]+)"', source.read_text()))
    out = {}
    for name in sorted(names):
        normal = encodings.normalize_encoding(name).lower()
        out[name] = encodings.aliases.aliases.get(normal, normal)
    return out


def python_modules(sysroot: Sysroot, there: str, site: Path) -> dict[str, str]:
    """Every module orchestrator can import (bytecode scan of every function, so lazy
    imports count), found in the release's stdlib and the dependencies: name -> its file as
    a chroot of the sysroot sees it (orchestrator's sources in `there`/src, the
    dependencies in `there`/site)."""
    stdlib = f"/usr/lib/python{sysroot.release.python}"
    hooks = []
    for top in ("pyxs", "psutil", "structlog", "tenacity", "encodings"):
        hooks.append(top)
        hooks += [f"{top}.{sub.stem}" for sub in sorted((site / top).glob("*.py"))]
    hooks += ["encodings.ascii", "encodings.utf_8", "encodings.latin_1",
              "encodings.idna"]  # http.client encodes host names by codec lookup
    hooks += [f"encodings.{module}" for module in codec_modules().values()]
    job = {"path": [f"{there}/src", f"{there}/site", stdlib, f"{stdlib}/lib-dynload"],
           "excludes": sorted(PY_EXCLUDE),
           "scripts": [f"{there}/src/{module.relative_to(REPO)}"
                       for module in sorted((REPO / "orchestrator").rglob("*.py"))],
           "hooks": hooks}
    out = sysroot.chroot([f"/usr/bin/python{sysroot.release.python}", "-I", "-c", PY_SCAN],
                         stdin=json.dumps(job))
    return dict(json.loads(out))


def install_python(tree: Tree, sysroot: Sysroot, site: Path) -> dict[str, list[str]]:
    py = sysroot.release.python
    tree.binary(f"/usr/bin/python{py}")
    link(f"python{py}", tree.root / "usr/bin/python3")
    stdlib = f"/usr/lib/python{py}"
    dest_std = f"usr/lib/python{py}"
    dest_site = "usr/lib/python3/dist-packages"
    kept: dict[str, list[str]] = {"stdlib": [], "deps": [], "extensions": []}
    with sysroot.scratch() as (here, there):
        # what the release's python sees in the chroot: orchestrator's sources, the
        # dependencies' wheels unpacked, and out/, the bytecode laid out as in the image
        shutil.copytree(REPO / "orchestrator", here / "src/orchestrator",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(site, here / "site")
        jobs = []  # (source, bytecode, the name tracebacks show), all in the chroot
        for name, path in sorted(python_modules(sysroot, there, site).items()):
            if path.startswith(f"{stdlib}/"):
                rel, dest, kind = path.removeprefix(f"{stdlib}/"), dest_std, "stdlib"
                src = sysroot.file(path)
            elif path.startswith(f"{there}/site/"):
                rel, dest, kind = path.removeprefix(f"{there}/site/"), dest_site, "deps"
                src = site / rel
            else:
                raise SystemExit(f"python module {name} from {path}: not in the release's "
                                 "stdlib nor in orchestrator's dependencies")
            if rel.endswith(".so"):
                copy(src, tree.root / dest / rel)
                kept["extensions"].append(name)
                continue
            kept[kind].append(name)
            # sourceless: compiled once, here
            jobs.append((path, f"{there}/out/{dest}/{Path(rel).with_suffix('.pyc')}", f"/{rel}"))
        # orchestrator itself, every module (the wheels' metadata is not needed at run time)
        for module in sorted((REPO / "orchestrator").rglob("*.py")):
            rel = str(module.relative_to(REPO))
            jobs.append((f"{there}/src/{rel}",
                         f"{there}/out/{dest_site}/{Path(rel).with_suffix('.pyc')}", f"/{rel}"))
        sysroot.chroot([f"/usr/bin/python{py}", "-I", "-c", PY_COMPILE], stdin=json.dumps(jobs))
        shutil.copytree(here / "out", tree.root, symlinks=True, dirs_exist_ok=True)
    script = tree.root / "usr/bin/orchestrate"
    script.write_text(f"#!/usr/bin/python{py}\nfrom orchestrator.cli import main\nmain()\n")
    script.chmod(0o755)
    return kept


# ----- cpio ----------------------------------------------------------------------

def write_cpio(root: Path, out: Path) -> int:
    """A gzipped newc archive of `root`, deterministic (sorted, mtime 0, owner root)."""
    buf = io.BytesIO()
    ino = 1

    def header(name: str, mode: int, size: int, nlink: int, rdev: tuple[int, int]) -> None:
        nonlocal ino
        fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        buf.write(b"070701" + b"".join(f"{f:08X}".encode() for f in fields))
        buf.write(name.encode() + b"\0")
        buf.write(b"\0" * (-(110 + len(name) + 1) % 4))
        ino += 1

    paths = sorted(p for p in root.rglob("*"))
    for path in paths:
        rel = str(path.relative_to(root))
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            data = os.readlink(path).encode()
            header(rel, st.st_mode, len(data), 1, (0, 0))
            buf.write(data + b"\0" * (-len(data) % 4))
        elif stat.S_ISDIR(st.st_mode):
            header(rel, st.st_mode, 0, 2, (0, 0))
        elif stat.S_ISREG(st.st_mode):
            data = path.read_bytes()
            header(rel, st.st_mode, len(data), 1, (0, 0))
            buf.write(data + b"\0" * (-len(data) % 4))
    header("TRAILER!!!", 0, 0, 1, (0, 0))
    raw = buf.getvalue()
    out.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    return len(raw)


def gz_size(root: Path, parts: Iterable[Path]) -> int:
    """gzip -9 size of the given files and links (how much they add to the image)."""
    buf = io.BytesIO()
    for part in parts:
        for path in sorted([part] if part.is_file() or part.is_symlink() else part.rglob("*")):
            if path.is_symlink():
                buf.write(os.readlink(path).encode())
            elif path.is_file():
                buf.write(path.read_bytes())
    return len(gzip.compress(buf.getvalue(), compresslevel=9))


# ----- the kernel ----------------------------------------------------------------------

def extract_vmlinux(bzimage: Path, sysroot: Sysroot) -> bytes:
    """The raw ELF kernel in a bzImage. Its payload is where the x86 boot header says
    (protocol 2.08+: payload_offset from the protected-mode code, payload_length) and ends
    with the decompressed size (the kernel build's size_append), which is checked. xz
    (bookworm's 6.1) and gzip are decompressed here; zstd (trixie's 6.12, magic 28 b5 2f fd)
    by the release's own zstd in a chroot of the sysroot: the host's Python 3.11 has none."""
    data = bzimage.read_bytes()
    if data[0x202:0x206] != b"HdrS" or struct.unpack_from("<H", data, 0x206)[0] < 0x208:
        raise SystemExit(f"{bzimage}: not a bzImage of boot protocol 2.08 or later")
    protected_mode = ((data[0x1F1] or 4) + 1) * 512  # setup_sects (0 means 4) + boot sector
    offset, length = struct.unpack_from("<II", data, 0x248)
    payload = data[protected_mode + offset:protected_mode + offset + length]
    payload, size = payload[:-4], struct.unpack("<I", payload[-4:])[0]
    if payload.startswith(b"\xfd7zXZ\x00"):
        out = lzma.LZMADecompressor().decompress(payload)
    elif payload.startswith(b"\x1f\x8b\x08"):
        out = zlib.decompressobj(wbits=31).decompress(payload)
    elif payload.startswith(b"\x28\xb5\x2f\xfd"):
        with sysroot.scratch() as (here, there):
            (here / "vmlinux.zst").write_bytes(payload)
            sysroot.chroot(["zstd", "-d", "-q", "-o", f"{there}/vmlinux", f"{there}/vmlinux.zst"])
            out = (here / "vmlinux").read_bytes()
    else:
        raise SystemExit(f"{bzimage}: payload {payload[:4].hex(' ')} is not xz, gzip or zstd")
    if out[:4] != b"\x7fELF" or len(out) != size:
        raise SystemExit(f"{bzimage}: the payload is not the {size}-byte ELF kernel")
    return out


# ----- assembling ----------------------------------------------------------------------

def guest_tree(root: Path, sysroot: Sysroot, modules: Modules, role: str) -> Tree:
    tree = Tree(root, sysroot)
    tree.busybox()
    tree.xen_tools(["xl"] if role in GUEST_XL else ["vchan-socket-proxy"],
                   hotplug_scripts=False)
    names, _ = modules.closure(GUEST_MODULES[role])
    modules.install(tree, names)
    guest = HERE / "guest"
    copy(guest / "init", tree.root / "init")
    copy(guest / "lib.sh", tree.root / "etc/guest-lib.sh")
    copy(guest / f"role-{role}.sh", tree.root / f"etc/role-{role}.sh")
    for name in GUEST_FILES[role]:
        copy(guest / name, tree.root / GUEST_SCRIPTS.get(name, f"etc/{name}"))
    for program in ["init"] + [GUEST_SCRIPTS.get(n, f"etc/{n}") for n in GUEST_FILES[role]
                               if not n.endswith(".conf")]:
        (tree.root / program).chmod(0o755)
    (tree.root / "etc/role").write_text(role + "\n")
    if problems := image_needs.interpreter_problems(tree.root):
        raise SystemExit(f"{role}: {problems}")
    return tree


def dom0_tree(root: Path, sysroot: Sysroot, modules: Modules, site: Path,
              units: Path, lab: bool) -> tuple[Tree, dict[str, object]]:
    configs = baked_units(units, lab)
    loaded = [config for _, config in configs.values()]
    needs = image_needs.dom0_needs(loaded, DOM0_DRIVERS)
    if problems := image_needs.module_problems(loaded):
        raise SystemExit("dom0: " + "; ".join(problems))
    tree = Tree(root, sysroot)
    tree.busybox()
    if needs.bash:
        tree.binary("/bin/bash")
    tree.xen_tools(XEN_TOOLS, hotplug_scripts=needs.hotplug_scripts)
    # OpenRC under busybox init (Alpine's arrangement): /etc/inittab runs the runlevels
    for path in ("/sbin/openrc", "/sbin/openrc-run", "/sbin/rc-service", "/sbin/rc-update",
                 "/bin/rc-status", "/sbin/start-stop-daemon", "/sbin/supervise-daemon"):
        if inside(sysroot.path, path).exists():
            tree.binary(path)
    tree.put_tree(sysroot.real("/lib/rc"))  # where openrc looks: /usr/lib/rc in trixie
    tree.put("/etc/rc.conf")
    for level in ("sysinit", "boot", "default", "shutdown", "nonetwork"):
        (tree.root / "etc/runlevels" / level).mkdir(parents=True, exist_ok=True)
    for name in ("inittab", "rc.dom0", "hostname", "profile"):
        copy(HERE / "dom0" / name, tree.root / "etc" / name)
    (tree.root / "etc/rc.dom0").chmod(0o755)
    install_services(tree)
    if lab:
        initd = tree.root / "etc/init.d"
        copy(HERE / "lab/lab-report", initd / "lab-report")
        link("/etc/init.d/lab-report", tree.root / "etc/runlevels/default/lab-report")
        for name in ("lab-scenario", "sequential-boot", "no-follower"):
            copy(HERE / "lab" / name, tree.root / "usr/lib/lab" / name)
            (tree.root / "usr/lib/lab" / name).chmod(0o755)
        for service, text in LAB_CONFD.items():
            confd = tree.root / "etc/conf.d" / service
            if confd.exists():
                confd.write_text(confd.read_text() + LAB_UNITS_CONFD + text)
    for where, (source, _) in configs.items():
        shutil.copytree(source, tree.root / where.lstrip("/"),
                        ignore=shutil.ignore_patterns("openrc"))
    names, added = modules.closure(list(needs.modules))
    modules.install(tree, names)
    (tree.root / "etc/modules").write_text("".join(f"{m}\n" for m in needs.boot_modules))
    kept = install_python(tree, sysroot, site)
    link("/bin/busybox", tree.root / "init")  # the kernel runs /init: busybox init
    check_dom0_needs(tree, needs, names)
    info: dict[str, object] = {"modules": names, "closure_added": added, "python": kept,
                               "dom0_backends": list(needs.backends),
                               "hotplug_scripts_and_bash": needs.hotplug_scripts}
    return tree, info


def install_services(tree: Tree) -> None:
    """units/openrc/*: each service without a dot in its name (a `.confd` beside it goes
    to /etc/conf.d), in the default runlevel: `orchestrator`, and `orchestrator-watch`
    (the follower) when the checkout has it."""
    initd, confd = tree.root / "etc/init.d", tree.root / "etc/conf.d"
    for service in sorted((REPO / "units/openrc").iterdir()):
        if "." in service.name:
            continue
        copy(service, initd / service.name)
        (initd / service.name).chmod(0o755)
        if service.with_suffix(".confd").exists():
            copy(service.with_suffix(".confd"), confd / service.name)
        link(f"/etc/init.d/{service.name}", tree.root / "etc/runlevels/default" / service.name)


def baked_units(units: Path, lab: bool) -> dict[str, tuple[Path, Config]]:
    """The unit sets dom0 carries, by where they go in the image: the example's (with the
    lab's images) and, in a lab image, the scenarios' variants (LAB_CONFD picks one)."""
    sets = {"/etc/orchestrator/units": units}
    for variant in LAB_UNIT_SETS if lab else ():
        sets[f"/etc/orchestrator/{variant}"] = units.with_name(variant)
    return {where: (source, load_units(source)) for where, source in sets.items()}


def check_dom0_needs(tree: Tree, needs: image_needs.Dom0Needs, modules: list[str]) -> None:
    """What nothing in dom0 uses is not in the image, and every script's interpreter is."""
    problems = image_needs.interpreter_problems(tree.root)
    if not needs.hotplug_scripts:
        unused = [path for path in ("/etc/xen/scripts", "/bin/bash")
                  if (tree.root / path.lstrip("/")).exists()]
        unused += [f"kernel module {m}" for m in image_needs.BACKEND_MODULES
                   if m.replace("-", "_") in modules]
        problems += [f"{what} is in the image, but no unit has a vif that dom0 serves"
                     for what in unused]
    if problems:
        raise SystemExit("dom0: " + "; ".join(problems))


# Lab only: switches on the kernel command line (the runner sets them per scenario), in
# the conf.d of both services: the follower follows the units the boot used.
LAB_UNITS_CONFD = """
# lab only: switches on the kernel command line
if grep -qw lab.pvh /proc/cmdline; then  # the PVH smoke test: one PVH domain
\torchestrate_units=/etc/orchestrator/units-pvh
fi
if grep -qw lab.handoff-vif /proc/cmdline; then  # dom0 on a vif served by net-vm
\torchestrate_units=/etc/orchestrator/units-vif
fi
"""
LAB_CONFD = {
    "orchestrator": """if grep -qw lab.sequential /proc/cmdline; then  # the seeds' way (make bench)
\torchestrate_command=/usr/lib/lab/sequential-boot
fi
if grep -qw lab.skip-preflight /proc/cmdline; then  # the version trap, unguarded
\torchestrate_args="$orchestrate_args --skip-preflight"
fi
""",
    # the seeds' sequential script had no follower (make bench)
    "orchestrator-watch": """if grep -qw lab.sequential /proc/cmdline; then
\torchestrate_command=/usr/lib/lab/no-follower
fi
""",
}

# The scenarios' unit sets besides the example's, in a lab image (LAB_CONFD picks one).
LAB_UNIT_SETS = ("units-pvh", "units-vif")
# What the lab's guests and dom0 fetch from the build server to prove a network path
# (workload-vm through net-vm): 64 KiB the tests know by sha256.
LAB_PROBE = "lab-probe.bin"


def lab_probe() -> bytes:
    return hashlib.shake_256(b"xen-boot lab probe").digest(64 * 1024)

PVH_UNIT = """# Lab only: the PVH smoke test (a single PVH domU is reliable under TCG, a full PVH
# scenario is not: XEN-LAB.md "PVH guests under TCG"). sa-vm's image: it writes
# data/ready at boot.
type = "pvh"
memory = 128
vcpus = 1
extra = "console=hvc0 role=pvh"
readiness = "xenstore:data/ready"
ready_timeout = 120
"""


def vif_units(dest: Path, units: Path) -> None:
    """The lab's units with dom0 on its own vif after the handoff, served by net-vm
    (nic.after_handoff = "vif"; net-vm routes it like any guest: vif-route-sh)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(units, dest)
    host = dest / "host.toml"
    text = host.read_text()
    text = re.sub(r'^(gateway = .*)$', r'\1\nafter_handoff = "vif"\nvif_script = "vif-route-sh"',
                  text, count=1, flags=re.M)
    text = re.sub(r'^(modules = \[[^\]]*?)\s*\]', r'\1, "xen-netfront"]', text, count=1,
                  flags=re.M)
    host.write_text(text)


def pvh_units(dest: Path, units: Path) -> None:
    """The lab's units with one PVH domain (no passthrough, no vif) instead of three."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "domains").mkdir(parents=True)
    copy(units / "host.toml", dest / "host.toml")
    sa = (units / "domains/sa-vm.toml").read_text()
    images = sa[sa.index("[kernel]"):sa.index("[ipc]")].rstrip() + "\n"
    (dest / "domains/pvh-vm.toml").write_text(PVH_UNIT + "\n" + images)


def lab_units(dest: Path, images: dict[str, bytes], release: debian.Release) -> None:
    """The example units, pointing at the lab's build server and images."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(REPO / "units", dest, ignore=shutil.ignore_patterns("openrc"))
    host = dest / "host.toml"
    text = host.read_text()
    text = re.sub(r'tools_path = \[.*\]', f'tools_path = ["/usr/lib/xen-{release.xen}/bin"]',
                  text)
    text = re.sub(r'^url = ".*"', 'url = "http://10.0.2.100/images/"', text, flags=re.M)
    host.write_text(text)
    # the lab's workload-vm proves its network path by fetching the probe (guest/
    # netfront-hotplug), through net-vm, from the build server
    workload = dest / "domains/workload-vm.toml"
    workload.write_text(re.sub(r'^extra = "(.*)"',
                               rf'extra = "\1 probe_url=http://10.0.2.100/images/{LAB_PROBE}"',
                               workload.read_text(), count=1, flags=re.M))
    for unit in (dest / "domains").glob("*.toml"):
        out, url = [], None
        for line in unit.read_text().splitlines():
            if m := re.match(r'^url\s*=\s*"([^"]+)"', line):
                url = m[1].rsplit("/", 1)[-1]
                line = f'url = "{url}"'
            elif url and line.startswith("sha256"):
                line = f'sha256 = "{hashlib.sha256(images[url]).hexdigest()}"'
            elif url and line.startswith("size"):
                line = f"size = {len(images[url])}"
            out.append(line)
        unit.write_text("\n".join(out) + "\n")


def hypervisor(cache: Path, release: debian.Release) -> tuple[Path, bytes]:
    """A release's hypervisor package and its multiboot ELF (QEMU's -kernel wants that, not
    the .gz), unpacked into that release's sysroot."""
    apt = debian.Apt(cache, release)
    apt.update()
    [deb] = apt.download([f"xen-hypervisor-{release.xen}-amd64"])
    sysroot = Sysroot(cache / f"sysroot-{release.suite}", release)
    debian.unpack([deb], sysroot.path, release.merged_usr)
    return deb, gzip.decompress(sysroot.file(f"/boot/xen-{release.xen}-amd64.gz").read_bytes())


def build(xen: str, out: Path, cache: Path, lab: bool,
          hypervisor_from: str | None = None) -> dict[str, object]:
    release = debian.RELEASES[xen]
    apt = debian.Apt(cache, release)
    log(f"Xen {xen} from Debian {release.suite} (private apt state in {apt.dir})")
    apt.update()
    kernel_pkg = next(d for d in apt.depends(release.kernel_meta)
                      if d.startswith("linux-image-"))
    named = [p.format(xen=xen, py=release.python)
             for p in BASE_PACKAGES + DOM0_PACKAGES + BUILD_PACKAGES]
    libraries = apt.libraries(named)
    log(f"libraries by {release.suite}'s dependencies: {' '.join(libraries)}")
    debs = apt.download(named + libraries + [kernel_pkg])
    sysroot_path = cache / f"sysroot-{release.suite}"
    debian.unpack(debs, sysroot_path, release.merged_usr)
    sysroot = Sysroot(sysroot_path, release)
    kversion = kernel_pkg.removeprefix("linux-image-")
    modules = Modules(sysroot, kversion)
    out.mkdir(parents=True, exist_ok=True)

    # hypervisor (the release's own unless --hypervisor-from: the version trap) and kernels
    hv_release = debian.RELEASES[hypervisor_from or xen]
    if hv_release != release:
        log(f"MISMATCHED image: Xen {hv_release.xen} hypervisor ({hv_release.suite}) under the "
            f"Xen {xen} toolstack: for the version-trap tests only")
    hv_deb, xen_elf = hypervisor(cache, hv_release)
    (out / "xen").write_bytes(xen_elf)
    report: dict[str, object] = {
        "xen": xen, "suite": release.suite, "kernel": kversion,
        "packages": sorted(d.name for d in [*debs, hv_deb]),
        "hypervisor": {"xen": hv_release.xen, "suite": hv_release.suite,
                       "package": hv_deb.name, "matches_toolstack": hv_release == release}}
    bzimage = sysroot.file(f"/boot/vmlinuz-{kversion}")
    copy(bzimage, out / "vmlinuz")
    images_dir = out / "images"
    images_dir.mkdir(exist_ok=True)
    images: dict[str, bytes] = {"vmlinux": extract_vmlinux(bzimage, sysroot)}

    # guests
    for role in GUEST_MODULES:
        tree = guest_tree(out / f"{role}-root", sysroot, modules, role)
        missing = tree.libraries()
        if missing:
            raise SystemExit(f"{role}: libraries no fetched package provides: {missing}")
        if problems := tree.unresolved():
            raise SystemExit(f"{role}: unresolved inside the image: {problems}")
        write_cpio(tree.root, images_dir / f"{role}.cpio.gz")
        images[f"{role}.cpio.gz"] = (images_dir / f"{role}.cpio.gz").read_bytes()
        shutil.rmtree(tree.root)
    (images_dir / "vmlinux").write_bytes(images["vmlinux"])
    (images_dir / LAB_PROBE).write_bytes(lab_probe())

    # dom0
    lab_units(out / "units", images, release)
    pvh_units(out / "units-pvh", out / "units")
    vif_units(out / "units-vif", out / "units")
    site = python_deps(cache, release.python)
    tree, info = dom0_tree(out / "dom0-root", sysroot, modules, site, out / "units", lab)
    missing = tree.libraries()
    if missing:
        raise SystemExit(f"dom0: libraries no fetched package provides: {missing}")
    if problems := tree.unresolved():
        raise SystemExit(f"dom0: unresolved inside the image: {problems}")
    check_binaries(tree)
    check_python(tree, release.python)
    raw = write_cpio(tree.root, out / "dom0.cpio.gz")
    report.update(info)
    report["sizes"] = sizes(tree, release, raw, out)
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def check_binaries(tree: Tree) -> None:
    for path in tree.binaries:
        f = tree.root / path.lstrip("/")
        if not (f.is_file() and os.access(f, os.X_OK)):
            raise SystemExit(f"dom0: {path} missing or not executable")


def check_python(tree: Tree, py: str) -> None:
    """Every orchestrator module imports inside the image (chroot, the image's python),
    and every codec it names is there."""
    modules = sorted({".".join(p.relative_to(REPO).with_suffix("").parts)
                      for p in (REPO / "orchestrator").rglob("*.py")} - {
        "orchestrator.__main__"})
    code = ("import importlib, sys\n"
            f"for m in {modules!r} + ['pyxs', 'psutil', 'tenacity', 'structlog',"
            " 'urllib.request', 'http.client', 'concurrent.futures', 'hashlib']:\n"
            "    importlib.import_module(m)\n"
            "import hashlib; hashlib.sha256(b'x').hexdigest()\n"
            "import codecs\n"
            f"for c in {sorted(codec_modules())!r}:\n"
            "    codecs.lookup(c)\n"
            "assert 'ssl' not in sys.modules, 'ssl was imported'\n"
            "print('ok', len(sys.modules))\n")
    out = run(["chroot", str(tree.root), f"/usr/bin/python{py}", "-c", code])
    if not out.startswith("ok"):
        raise SystemExit(f"import check in the image failed: {out}")
    out = run(["chroot", str(tree.root), "/usr/bin/orchestrate", "check"])
    for variant in LAB_UNIT_SETS:
        if (tree.root / "etc/orchestrator" / variant).is_dir():
            out += run(["chroot", str(tree.root), "/usr/bin/orchestrate", "check", "--units",
                        f"/etc/orchestrator/{variant}"])
    log(f"in the image: {out.strip()}")


def sizes(tree: Tree, release: debian.Release, raw: int, out: Path) -> dict[str, int]:
    r = tree.root
    py = release.python
    parts = {
        "kernel modules": [r / "lib/modules"],
        "xen tools": [r / f"usr/lib/xen-{release.xen}", r / "usr/bin/xenstore", r / "etc/xen"]
        + [lib for libs in ("lib", "usr/lib") for pattern in ("libxen*", "libxl*")
           for lib in sorted((r / libs / "x86_64-linux-gnu").glob(pattern))],
        "python runtime": [r / f"usr/bin/python{py}", r / f"usr/lib/python{py}"],
        "orchestrator and deps": [r / "usr/lib/python3/dist-packages", r / "usr/bin/orchestrate",
                                  r / "etc/orchestrator"],
        "openrc": [r / tree.sys.real("/lib/rc").lstrip("/"), r / "sbin/openrc",
                   r / "sbin/openrc-run"],
        "busybox (and bash if needed)": [r / "bin/busybox", r / "bin/bash"],
    }
    out_sizes = {name: gz_size(r, paths) for name, paths in parts.items()}
    out_sizes["python runtime + orchestrator + deps"] = (
        out_sizes["python runtime"] + out_sizes["orchestrator and deps"])
    out_sizes["dom0.cpio.gz"] = (out / "dom0.cpio.gz").stat().st_size
    out_sizes["dom0 unpacked"] = raw
    return out_sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--xen", default="4.17", choices=sorted(debian.RELEASES))
    parser.add_argument("--out", type=Path, default=REPO / "build" / "lab-4.17")
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "cache")
    parser.add_argument("--no-lab", action="store_true",
                        help="leave out the lab's report service")
    parser.add_argument("--hypervisor-from", choices=sorted(debian.RELEASES),
                        help="take out/xen from this release instead: a MISMATCHED image, "
                             "for the version-trap tests only")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("build.py needs root (chroot: the release's programs, the import "
                         "check)")
    report = build(args.xen, args.out.resolve(), args.cache.resolve(), not args.no_lab,
                   args.hypervisor_from)
    for name, size in report["sizes"].items():  # type: ignore[attr-defined]
        log(f"{name:38} {size / 1e6:7.2f} MB")
    log(f"kernel modules: {len(report['modules'])} "  # type: ignore[arg-type]
        f"(the closure added {', '.join(report['closure_added']) or 'nothing'})")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
