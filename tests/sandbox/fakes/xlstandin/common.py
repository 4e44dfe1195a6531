"""What every part of the xl stand-in shares: the sandbox's paths, the behaviour file, xl's
and libxl's way of printing, and the xenstore helpers libxl is built on.

File:line references are xen-project/xen RELEASE-4.17.7 unless said otherwise.
"""

from __future__ import annotations

import os
import select
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import xlstate
import xswire
from xswire import XsError

# libxl error codes (tools/libs/light/libxl_types.idl)
ERROR_FAIL, ERROR_INVAL, ERROR_TIMEDOUT = -3, -6, -9
ERROR_LOCK_FAIL, ERROR_DOMAIN_NOTFOUND = -15, -21
ACTIONS = ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy",
           "coredump-restart", "soft-reset")
REASON_CODE = {name: code for code, name in enumerate(xlstate.SHUTDOWN_REASONS)}
INIT_TIMEOUT = 10.0  # LIBXL_INIT_TIMEOUT (libxl_internal.h:94): a backend's InitWait
DESTROY_TIMEOUT = 10.0  # LIBXL_DESTROY_TIMEOUT (libxl_internal.h:95): a device's removal
PVCONTROL_TIMEOUT = 60.0  # libxl_domain.c:793: the guest's ack of control/shutdown
RESTART_SLEEP = 2.0  # xl_vmcontrol.c:1094: "XXX FIXME" sleep(2) before a restart
DUMP_DIR = "/var/lib/xen/dump"  # XEN_DUMP_DIR
STORE_MFN, STORE_PORT = 0xFEFFE, 1
XenbusState = str  # "1" Initialising, "2" InitWait, "4" Connected, "5" Closing, "6" Closed


class Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def say(line: str = "") -> None:
    print(line, file=sys.stderr, flush=True)


def libxl_log(where: str, func: str, msg: str, domid: int | None = None,
              errno: int | None = None, level: str = "error") -> None:
    """libxl__logv() through xl's stdiostream logger: ``libxl: error: file:line:func:
    Domain N:msg[: strerror]`` (the prefix only for a valid guest domid). xl shows levels
    from XTL_PROGRESS up (xl.h:272), so "info" lines appear too."""
    prefix = f"Domain {domid}:" if domid is not None and 0 < domid < 0x7FF0 else ""
    tail = f": {os.strerror(errno)}" if errno is not None else ""
    say(f"libxl: {level}: {where}:{func}: {prefix}{msg}{tail}")


def xl_log(msg: str) -> None:
    """xl's LOG() (xl_utils.h:55): dolog() to stderr, or the monitor's log file."""
    say(msg)


def destroy_failed_messages(domid: int) -> None:
    """xl's error_out destroys the domain libxl already destroyed (xl_vmcontrol.c:1128)."""
    libxl_log("libxl_domain.c:1183", "libxl__destroy_domid", "Non-existant domain", domid)
    libxl_log("libxl_domain.c:1137", "domain_destroy_callback", "Unable to destroy guest", domid)
    libxl_log("libxl_domain.c:1064", "domain_destroy_cb", "Destruction of domain failed", domid)


def new_uuid() -> str:
    return str(uuid.uuid4())


# ---- the sandbox ---------------------------------------------------------------------------
def sandbox_root() -> Path:
    return Path(os.environ.get("SANDBOX_ROOT", "/"))


def in_root(path: str) -> Path:
    return sandbox_root() / path.lstrip("/")


def host_file(path: str) -> Path | None:
    """A path from a config file: as given (the orchestrator passes root-joined paths), or
    inside $SANDBOX_ROOT."""
    for candidate in (Path(path), in_root(path)):
        if candidate.is_file():
            return candidate
    return None


def standin() -> Path:
    return xlstate.standin_dir()


def behaviour() -> dict[str, Any]:
    return xlstate.load_json(standin(), xlstate.BEHAVIOUR)


def behaviour_of(name: str, boot: int = 1) -> dict[str, Any]:
    """The domain's entry; from its second boot on (a restart by xl's monitor) the keys in
    ``after_restart`` replace the others."""
    entry = behaviour().get(name, {})
    if not isinstance(entry, dict):
        return {}
    later = entry.get("after_restart")
    if boot > 1 and isinstance(later, dict):
        return {**entry, **later}
    return entry


def number(how: dict[str, Any], key: str, default: float) -> float:
    try:
        return float(how.get(key, default))
    except (TypeError, ValueError):
        return default


def xen_present() -> bool:
    """No /sys/hypervisor/type = xen in a fake /sys means: not running on Xen."""
    if "SANDBOX_ROOT" not in os.environ:
        return True
    sys_dir = in_root("/sys")
    if not sys_dir.is_dir():
        return True  # no fake kernel at all: assume a Xen host
    try:
        return in_root("/sys/hypervisor/type").read_text().strip() == "xen"
    except OSError:
        return False


def xs_open(timeout: float | None = None) -> xswire.Client:
    """libxl_ctx_alloc(): libxc handle first (libxl.c:102), then xs_open(0) (libxl.c:108).
    libxenstore blocks forever; we give up after the stand-ins' lifetime."""
    if not xen_present():
        say("xencall: error: Could not obtain handle on privileged command interface: "
            "No such file or directory")
        libxl_log("libxl.c:102", "libxl_ctx_alloc", "cannot open libxc handle", errno=2)
        say("cannot init xl context")
        raise Exit(1)
    try:
        return xswire.Client(timeout=xlstate.lifetime() if timeout is None else timeout)
    except OSError as err:
        libxl_log("libxl.c:108", "libxl_ctx_alloc", "cannot connect to xenstore",
                  errno=err.errno or 111)
        say("cannot init xl context")
        raise Exit(1) from None


def xenstored_gone() -> bool:
    return not os.path.exists(xswire.socket_path())


# ---- xenstore as libxl uses it -------------------------------------------------------------
def mknod(xs: xswire.Client, path: str, perms: list[str], tx: int) -> None:
    """libxl__xs_mknod(): mkdir + set_permissions."""
    xs.mkdir(path, tx)
    xs.set_perms(path, perms, tx)


def rm_quiet(xs: xswire.Client, path: str, tx: int = 0) -> None:
    with suppress(XsError):
        xs.rm(path, tx)


def read(xs: xswire.Client, path: str, tx: int = 0) -> str | None:
    """A node's value, None when it is missing or unreadable (libxl__xs_read())."""
    try:
        return xs.read(path, tx).decode("utf-8", "replace")
    except XsError:
        return None


def directory(xs: xswire.Client, path: str, tx: int = 0) -> list[str]:
    try:
        return xs.directory(path, tx)
    except XsError:
        return []


@contextmanager
def transaction(xs: xswire.Client) -> Iterator[int]:
    """One attempt; callers loop on EAGAIN (``retrying``)."""
    tx = xs.transaction_start()
    try:
        yield tx
    except BaseException:
        with suppress(XsError, OSError):
            xs.transaction_end(tx, commit=False)
        raise
    xs.transaction_end(tx, commit=True)


def retrying(xs: xswire.Client, body: Callable[[int], None]) -> None:
    """libxl's ``for (;;) { transaction_start ... commit; if (!rc) break; }`` (bounded)."""
    for _ in range(100):
        try:
            with transaction(xs) as tx:
                body(tx)
            return
        except XsError as err:
            if err.name != "EAGAIN":
                raise
    raise XsError("EAGAIN")


def path_cleanup(xs: xswire.Client, path: str, tx: int = 0) -> bool:
    """libxl__xs_path_cleanup() (libxl_xshelp.c:287): remove ``path``, then each parent
    while it has an empty value and no children. False if ``path`` could not be removed."""
    try:
        xs.rm(path, tx)
    except XsError:
        return False
    while "/" in path.strip("/"):
        path = path.rsplit("/", 1)[0]
        if read(xs, path, tx) != "" or directory(xs, path, tx):
            break
        try:
            xs.rm(path, tx)
        except XsError:
            return False
    return True


def wait_for_node(xs: xswire.Client, path: str, done: Callable[[str | None], bool],
                  timeout: float) -> bool:
    """A libxl__ev_devstate_wait()/libxl__xswait_start(): watch ``path`` and test its value
    each time it changes (and once at the start, as a watch fires when set), up to
    ``timeout`` seconds. True when ``done(value)``; no polling."""
    token = f"xl-wait-{os.getpid()}-{time.monotonic_ns()}"
    xs.watch(path, token)
    deadline = time.monotonic() + timeout
    try:
        while True:
            xs.events = [e for e in xs.events if e[1] != token]
            if done(read(xs, path)):
                return True
            while not any(e[1] == token for e in xs.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if select.select([xs.sock], [], [], left)[0]:
                    xs.pump()
    finally:
        with suppress(XsError, OSError):
            xs.unwatch(path, token)
