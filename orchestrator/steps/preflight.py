"""preflight: everything that can be known before the toolstack runs.

Runs before xenstored, xen-init-dom0 and any xl call: with a toolstack that does not
match the hypervisor, xenstored may die on gnttab (seed 001) and `xl create` fails with
a misleading "Permission denied" while `xl list` works (seed 000, XEN-FACTS "Versions").
"""

from __future__ import annotations

import re

from orchestrator.context import Context
from orchestrator.errors import OrchestratorError

# Where distributions put libxenctrl.so.<major>.<minor>; the soname carries the
# toolstack's version (libxenstore.so.4 does not).
LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib",
)
SONAME_RE = re.compile(r"^libxenctrl\.so\.(\d+)\.(\d+)$")

# Which distribution release ships which toolstack (seed 000; XEN-LAB.md).
TOOLSTACK_SOURCES = {
    (4, 17): "Alpine 3.18 or Debian 12 bookworm",
    (4, 18): "Alpine 3.19/3.20",
    (4, 19): "Alpine 3.21",
    (4, 20): "Debian 13 trixie",
}


HYPERVISOR_VERSION = "/sys/hypervisor/version"
VERSION_NUMBER_RE = re.compile(r"^[0-9]{1,4}$")
UNREADABLE_VERSION_HINT = (
    "these files are the dom0 kernel's view of the running Xen (drivers/xen/sys-hypervisor.c);"
    " compare with `xl info` (xen_major, xen_minor) once xenstored runs, or run with "
    "--skip-preflight to go on without the version check"
)


def hypervisor_version(ctx: Context) -> tuple[int, int, str] | None:
    """(major, minor, extra) of the running Xen; None if there is no such directory (not
    a Xen dom0); OrchestratorError naming the file when it is there but not a version."""
    texts: dict[str, str | None] = {}
    for key in ("major", "minor", "extra"):
        path = f"{HYPERVISOR_VERSION}/{key}"
        try:
            texts[key] = ctx.host.read_text(path)
        except OSError as exc:  # e.g. ENODEV from the kernel, a directory in its place
            raise OrchestratorError(f"cannot read {path}: {exc.strerror or exc}",
                                    hint=UNREADABLE_VERSION_HINT) from None
    major, minor = texts["major"], texts["minor"]
    if major is None and minor is None:
        return None
    return parse_hypervisor_version(major, minor, texts["extra"])


def parse_hypervisor_version(major: str | None, minor: str | None,
                             extra: str | None) -> tuple[int, int, str]:
    """The kernel writes major and minor as "%d\n" and extra (XENVER_extraversion, at most
    16 characters) as "%s\n"; anything else names the file and what it holds."""
    numbers = []
    for key, text in (("major", major), ("minor", minor)):
        value = (text or "").strip()
        if not VERSION_NUMBER_RE.match(value):
            shown = "is missing" if text is None else f"holds {_shown(text)}"
            raise OrchestratorError(
                f"{HYPERVISOR_VERSION}/{key} {shown}, not a version number",
                hint=UNREADABLE_VERSION_HINT)
        numbers.append(int(value))
    lines = (extra or "").strip().splitlines()
    return numbers[0], numbers[1], _printable(lines[0].strip() if lines else "", 32)


def _shown(text: str) -> str:
    return repr(_printable(text, 24)) if text.strip() else "nothing"


def _printable(text: str, limit: int) -> str:
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


def toolstack_version(ctx: Context) -> tuple[tuple[int, int], str] | None:
    """((major, minor), path) from the libxenctrl soname found first."""
    for directory in LIB_DIRS:
        for name in ctx.host.listdir(directory):
            match = SONAME_RE.match(name)
            if match:
                return (int(match[1]), int(match[2])), f"{directory}/{name}"
    return None


def version_mismatch_hint(hyp: tuple[int, int]) -> str:
    source = TOOLSTACK_SOURCES.get(hyp)
    where = f" (e.g. from {source})" if source else ""
    return (
        f"install the Xen {hyp[0]}.{hyp[1]} toolstack (xl, xenstored, libxen*){where} into "
        f"the dom0 image, or boot the hypervisor that matches the toolstack"
    )


def preflight(ctx: Context) -> None:
    host = ctx.host
    unreadable = None
    try:
        hyp = hypervisor_version(ctx)
    except OrchestratorError as exc:
        hyp, unreadable = None, exc
    tools = toolstack_version(ctx)
    if unreadable is not None:
        if ctx.skip_version_check:
            text = f"{unreadable.message}; no version check (going on: --skip-preflight)"
            ctx.state.warnings.append(text)
            ctx.log.warning("warning", text=text)
        else:
            host.refuse(unreadable)
    elif hyp is None:
        host.refuse(OrchestratorError(
            "no /sys/hypervisor/version: this kernel is not running as a Xen dom0",
            hint="boot the dom0 kernel from the Xen hypervisor (multiboot2 xen.gz)",
        ))
    if tools is None:
        host.refuse(OrchestratorError(
            f"no libxenctrl.so.X.Y in {', '.join(LIB_DIRS)}: the Xen toolstack is missing",
            hint="add xl, xenstored and the libxen* libraries to the dom0 image",
        ))
    if hyp is not None and tools is not None:
        version, lib = tools
        text = f"Xen {hyp[0]}.{hyp[1]}{hyp[2]}, tools {version[0]}.{version[1]} " \
               f"({lib.rsplit('/', 1)[-1]})"
        if (hyp[0], hyp[1]) != version:
            mismatch = OrchestratorError(
                f"version mismatch: Xen hypervisor {hyp[0]}.{hyp[1]}{hyp[2]} but toolstack "
                f"{version[0]}.{version[1]} ({lib}); `xl create` would fail with a "
                f"misleading \"Permission denied\"",
                hint=version_mismatch_hint((hyp[0], hyp[1])),
            )
            if ctx.skip_version_check:
                text = f"{mismatch.message} (going on: --skip-preflight)"
                ctx.state.warnings.append(text)
                ctx.log.warning("warning", text=text)
            else:
                host.refuse(mismatch)
        else:
            ctx.log.info("check", check="versions", result=text)

    for bdf, unit in _passthrough(ctx):
        if not host.exists(f"/sys/bus/pci/devices/{bdf}"):
            host.refuse(OrchestratorError(
                f"PCI device {bdf} (pci in {unit}) does not exist on this machine",
                hint=f"check the BDF with `lspci -D` and fix {unit}",
            ))
            continue
        driver = pci_driver(ctx, bdf)
        if driver != "pciback":  # pciback is where we put it, never where it came from
            ctx.state.original_drivers.setdefault(bdf, driver)
        ctx.log.info("check", check=f"device {bdf}", result=f"driver {driver or '(none)'}")

    need = sum(image.size for image, _ in ctx.config.images()
               if not _present(ctx, image.file_name, image.size))
    image_dir = ctx.config.host.image_dir
    free = host.free_bytes(image_dir)
    if need > free:
        host.refuse(OrchestratorError(
            f"{image_dir} has {free >> 20} MiB free but the images need {need >> 20} MiB",
            hint="give dom0 more memory (dom0_mem=...,max:...) or point paths.images at a "
            "larger tmpfs",
        ))
    else:
        ctx.log.info("check", check="space", result=f"images need {need >> 20} MiB, "
                     f"{free >> 20} MiB free in {image_dir}")


def pci_driver(ctx: Context, bdf: str) -> str | None:
    link = ctx.host.readlink(f"/sys/bus/pci/devices/{bdf}/driver")
    return link.rstrip("/").rsplit("/", 1)[-1] if link else None


def _passthrough(ctx: Context) -> list[tuple[str, str]]:
    devices = [(bdf, domain.source) for bdf, domain in ctx.config.passthrough().items()]
    nic = ctx.config.host.nic
    if nic and nic.bdf not in ctx.config.passthrough():
        devices.append((nic.bdf, ctx.config.host.source))
    return devices


def _present(ctx: Context, file_name: str, size: int) -> bool:
    path = ctx.host.path(f"{ctx.config.host.image_dir}/{file_name}")
    return path.is_file() and path.stat().st_size == size
