"""The "hypervisor": which domains exist and in what state (``$XL_STANDIN/state.json``, see
../xlstate.py), domid allocation, and libxl's name <-> domid look-ups.

A domain is "paused" (created, or `xl pause`), "running", "shutdown" (it stopped itself:
poweroff, reboot, suspend, crash; it stays until someone destroys it) or "dying" (destroyed
while something still holds its memory: listed as ``(null)`` with "d" until ``dying_for``
seconds pass). Each state change the hypervisor would report reaches xenstored as it does
on Xen: a shutdown through VIRQ_DOM_EXC (our CONTROL ``domain-shutdown``), a destruction
as the domain's release (RELEASE).
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from dataclasses import asdict
from typing import Any

import xlstate
import xswire
from xlstandin.cfg import DomainConfig
from xlstandin.common import ERROR_INVAL, Exit, in_root, read, say, standin
from xswire import XsError

DOMID_FIRST_RESERVED = 0x7FF0
DOMID_REUSE_TIMEOUT = 60  # LIBXL_DOMID_REUSE_TIMEOUT (libxl_internal.h:4862)
DOMID_HISTORY = "/var/run/xen/domid-history"  # libxl__domid_history_path()

Record = dict[str, Any]


def record_of(domid: int) -> Record | None:
    record: Record | None = xlstate.read_state(standin())["domains"].get(str(domid))
    return record


def hypervisor_domids() -> list[int]:
    """What xc_domain_getinfolist() lists: dom0 and every domain, dying ones included."""
    return [0, *sorted(int(d) for d in xlstate.read_state(standin())["domains"])]


# ---- domids: Xen's rover and libxl's recently-used list ------------------------------------
def _reuse_timeout() -> int:
    """libxl__get_domid_reuse_timeout() (libxl_domain.c:1287): $LIBXL_DOMID_REUSE_TIMEOUT."""
    try:
        return int(os.environ.get("LIBXL_DOMID_REUSE_TIMEOUT", str(DOMID_REUSE_TIMEOUT)), 0)
    except ValueError:
        return DOMID_REUSE_TIMEOUT


def is_domid_recent(domid: int) -> bool:
    """libxl__is_domid_recent() (libxl_domain.c:1478): "<monotonic seconds> <domid>" lines."""
    now = int(time.monotonic())
    try:
        lines = in_root(DOMID_HISTORY).read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) == 2 and fields[1] == str(domid) and now - int(fields[0]) <= \
                _reuse_timeout():
            return True
    return False


def mark_domid_recent(domid: int) -> None:
    """libxl__mark_domid_recent() (libxl_domain.c:1406), called before xc_domain_destroy():
    keep the entries younger than the timeout, append this one. Without /var/run/xen the
    fopen fails and libxl goes on."""
    path = in_root(DOMID_HISTORY)
    now = int(time.monotonic())
    with suppress(OSError):
        kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
                if len(line.split()) == 2 and now - int(line.split()[0]) <= _reuse_timeout()]
        tmp = path.with_name(path.name + ".new")
        tmp.write_text("".join(f"{line}\n" for line in [*kept, f"{now} {domid}"]))
        os.replace(tmp, path)


def allocate_domid(cfg: DomainConfig, uuid_text: str, boot: int) -> int:
    """xc_domain_create() with no domid: Xen's rover hands out the next free domid after the
    last one (xen/common/domctl.c:682-706); libxl then refuses one used in the last 60 s,
    destroys that domain and asks again (libxl_create.c:679-749)."""
    with xlstate.locked_state(standin()) as state:
        rover = int(state["next_domid"]) - 1
        while True:
            domid = rover + 1
            while str(domid) in state["domains"] or domid >= DOMID_FIRST_RESERVED:
                domid = 1 if domid + 1 >= DOMID_FIRST_RESERVED else domid + 1
            rover = domid
            if not is_domid_recent(domid):
                break
        state["next_domid"] = domid + 1
        state["domains"][str(domid)] = {
            "name": cfg.name, "uuid": uuid_text, "state": "paused", "shutdown_reason": None,
            "boot": boot, "booted": False, "created_at": time.time(), "unpaused_at": None,
            "shutdown_at": None, "config": asdict(cfg), "pci": [], "monitor": None,
            "write_errors": {}, "sysrq": [],
        }
    return domid


# ---- state changes ---------------------------------------------------------------------------
def set_running(domid: int) -> Record | None:
    """xc_domain_unpause(): a paused domain runs; a shut-down one stays shut down."""
    with xlstate.locked_state(standin()) as state:
        record: Record | None = state["domains"].get(str(domid))
        if record is not None and record["state"] == "paused":
            record["state"] = "running"
            record["unpaused_at"] = record["unpaused_at"] or time.time()
    xlstate.kick(standin(), domid)
    return record


def set_paused(domid: int) -> Record | None:
    """xc_domain_pause()."""
    with xlstate.locked_state(standin()) as state:
        record: Record | None = state["domains"].get(str(domid))
        if record is not None and record["state"] == "running":
            record["state"] = "paused"
    xlstate.kick(standin(), domid)
    return record


def shut_down(domid: int, reason: str) -> bool:
    """SCHEDOP_shutdown from the guest (or a crash): the domain stops and stays, marked with
    its reason; xenstored hears of it (VIRQ_DOM_EXC) and fires @releaseDomain."""
    with xlstate.locked_state(standin()) as state:
        record = state["domains"].get(str(domid))
        if record is None or record["state"] not in ("running", "paused"):
            return False
        record.update(state="shutdown", shutdown_reason=reason, shutdown_at=time.time())
    with suppress(OSError, XsError), xswire.Client(timeout=5.0) as xs:
        xs.domain_shutdown(domid)
    return True


def destroyed(domid: int, dying_for: float) -> Record | None:
    """xc_domain_destroy(): the domain goes (or lingers as "dying" for ``dying_for`` s);
    returns its last record, None if there was none."""
    with xlstate.locked_state(standin()) as state:
        record: Record | None = state["domains"].get(str(domid))
        if record is None or record["state"] == "dying":
            return None
        if dying_for > 0:
            state["domains"][str(domid)] = {**record, "state": "dying", "monitor": None,
                                            "dying_until": time.time() + dying_for}
        else:
            del state["domains"][str(domid)]
    return record


def update_record(domid: int, **changes: Any) -> None:
    with xlstate.locked_state(standin()) as state:
        record = state["domains"].get(str(domid))
        if record is not None:
            record.update(changes)


# ---- libxl's look-ups ------------------------------------------------------------------------
def domid_to_name(xs: xswire.Client, domid: int) -> str | None:
    """libxl_domid_to_name(): /local/domain/<d>/name, None if unreadable."""
    return read(xs, f"/local/domain/{domid}/name")


def name_to_domid(xs: xswire.Client, name: str) -> int | None:
    """libxl_name_to_domid() (libxl_utils.c:63): the first domain (by domid) whose xenstore
    name matches: a preserved, shut-down domain of that name counts too."""
    for domid in hypervisor_domids():
        if domid_to_name(xs, domid) == name:
            return domid
    return None


def qualifier_to_domid(xs: xswire.Client, text: str) -> int | None:
    """libxl_domain_qualifier_to_domid() (libxl_utils.c:91): digits are a domid, not
    checked; anything else a name."""
    if text.isdigit():
        return int(text)
    return name_to_domid(xs, text)


def find_domain(xs: xswire.Client, text: str) -> int:
    """xl's find_domain() (xl_utils.c:133): exits like xl when the name is unknown."""
    domid = qualifier_to_domid(xs, text)
    if domid is None:
        say(f"{text} is an invalid domain identifier (rc={ERROR_INVAL})")
        raise Exit(1)
    return domid
