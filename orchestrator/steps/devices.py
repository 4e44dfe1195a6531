"""make-device-nodes: Xen modules, /dev/xen/* from /proc/misc, /dev/hvc0, xenfs, run dirs.

Never relies on devtmpfs or mdev: under a Xen PV dom0 mdev cannot scan /sys/dev and
devtmpfs may be missing, so the nodes are made from /proc/misc (seed 001, "Problem 3").
/proc/misc minors are dynamic and differ between boots and kernels: always read them.
"""

from __future__ import annotations

import re

from orchestrator.context import Context
from orchestrator.errors import OrchestratorError

MISC_MAJOR = 10
# include/linux/kdev_t.h: MINORBITS 20; since Linux 6.2 dynamic misc minors may be large
# (drivers/char/misc.c), so any minor the kernel can make is accepted, nothing beyond.
MINOR_MAX = (1 << 20) - 1
MISC_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
HVC0 = ("/dev/hvc0", 229, 0)  # the PV console (seed 001, "Problem 1")
RUN_DIRS = (
    "/var/run/xen",
    "/var/run/xenstored",
    "/var/lib/xen",
    "/var/log/xen",
    "/var/log/xen/console",
    "/var/lock",
)


def parse_misc(text: str) -> dict[str, int]:
    """`/proc/misc` lines `122 xen/evtchn` -> {"evtchn": 122} for the xen/* entries.

    The kernel writes "%3i %s" (drivers/char/misc.c misc_seq_show). A xen/* entry whose
    minor is not a decimal in 0..MINOR_MAX is an error naming the line (mknod would fail
    on it, or make a node of another device); a name that is not a plain file name is
    not ours to make a node for and is left out.
    """
    nodes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("xen/"):
            continue
        name = parts[1][len("xen/"):]
        if not MISC_NAME_RE.match(name):
            continue
        if not re.fullmatch(r"[0-9]{1,7}", parts[0]) or int(parts[0]) > MINOR_MAX:
            raise OrchestratorError(
                f"/proc/misc has \"{_printable(line.strip(), 60)}\": "
                f"\"{_printable(parts[0], 20)}\" is not a device minor (0..{MINOR_MAX}), "
                f"so /dev/xen/{name} cannot be made",
                hint="/proc/misc comes from the dom0 kernel (cat /proc/misc); boot a dom0 "
                "kernel whose misc devices list as '<minor> xen/<name>'",
            )
        nodes[name] = int(parts[0])
    return nodes


def _printable(text: str, limit: int) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:limit]


def loaded_modules(proc_modules: str) -> set[str]:
    return {line.split()[0] for line in proc_modules.splitlines() if line.strip()}


def is_xenfs_mounted(proc_mounts: str, target: str = "/proc/xen") -> bool:
    for line in proc_mounts.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "xenfs" and parts[1].endswith(target):
            return True
    return False


def make_device_nodes(ctx: Context) -> None:
    host = ctx.host
    loaded = loaded_modules(host.read_text("/proc/modules") or "")
    for module in ctx.config.host.modules:
        kname = module.replace("-", "_")
        if kname in loaded or host.exists(f"/sys/module/{kname}"):
            ctx.log.debug("already done", what=f"module {module}")
            continue
        host.load_module(module)

    misc = parse_misc(host.read_text("/proc/misc") or "")
    if not misc:
        ctx.log.info("note", text="/proc/misc has no xen/* entries yet (not a Xen dom0, or "
                     "the modules above are not loaded)")
    host.make_dirs("/dev/xen")
    for name, minor in sorted(misc.items()):
        _ensure_char_node(ctx, f"/dev/xen/{name}", MISC_MAJOR, minor, 0o600)
    _ensure_char_node(ctx, *HVC0, 0o600)

    if is_xenfs_mounted(host.read_text("/proc/mounts") or ""):
        ctx.log.debug("already done", what="xenfs on /proc/xen")
    else:
        host.make_dirs("/proc/xen")
        host.mount("xenfs", "xenfs", "/proc/xen")
    for directory in RUN_DIRS:
        host.make_dirs(directory)


def _ensure_char_node(ctx: Context, path: str, major: int, minor: int, mode: int) -> None:
    found = ctx.host.char_device(path)
    if found == (major, minor):
        ctx.log.debug("already done", what=f"{path} c {major}:{minor}")
        return
    if found is not None:
        what = f"char {found[0]}:{found[1]}" if isinstance(found, tuple) else found
        raise OrchestratorError(
            f"{path} exists but is {what}, not char {major}:{minor}",
            hint=f"remove {path} (a stale node from another kernel?) and re-run orchestrate",
        )
    ctx.host.mknod_char(path, major, minor, mode)
