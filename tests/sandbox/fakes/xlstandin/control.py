"""Subcommands that change a domain's life: ``xl destroy``, ``xl pause``/``unpause``,
``xl shutdown``/``xl reboot`` (``-w``, ``-a``, ``-F``) and ``xl sysrq``.
Sources: tools/xl/xl_vmcontrol.c, xl_misc.c; tools/libs/light/libxl_domain.c, libxl.c.
"""

from __future__ import annotations

import select
import time
from contextlib import suppress

import xlstate
import xswire
from xlstandin.common import (
    ERROR_DOMAIN_NOTFOUND,
    ERROR_FAIL,
    ERROR_TIMEDOUT,
    PVCONTROL_TIMEOUT,
    REASON_CODE,
    behaviour_of,
    destroy_failed_messages,
    directory,
    libxl_log,
    number,
    path_cleanup,
    read,
    rm_quiet,
    say,
    standin,
    wait_for_node,
    xl_log,
    xs_open,
)
from xlstandin.hypervisor import (
    Record,
    destroyed,
    find_domain,
    hypervisor_domids,
    mark_domid_recent,
    record_of,
    set_paused,
    set_running,
)
from xlstandin.info import userdata_path, xs_bdf
from xswire import XsError


# ---- destroy ---------------------------------------------------------------------------------
def destroy_domain(xs: xswire.Client, domid: int, quiet: bool = False) -> bool:
    """libxl__destroy_domid() (libxl_domain.c:1172-1605): PCI devices, every device in
    /libxl/<domid>/device (removed at once, as LIBXL__FORCE_ON does when nobody answers),
    /vm/<uuid>, /local/domain/<domid>, /libxl/<domid>, the stored config; the domid is
    marked recent (libxl_domain.c:1574), then xc_domain_destroy(). xenstored notices the
    dead domain (RELEASE stands in for it): nodes it owned go, @releaseDomain fires.
    xl's monitor of the domain sees that and exits by itself. False if there was none."""
    record = record_of(domid)
    if record is None or record["state"] == "dying":
        if not quiet:
            destroy_failed_messages(domid)
        return False
    if record.get("pci"):
        path_cleanup(xs, f"/local/domain/0/backend/pci/{domid}/0")
        for bdf in record["pci"]:
            rm_quiet(xs, f"/libxl/pci/{xs_bdf(bdf)}")
    for kind in directory(xs, f"/libxl/{domid}/device"):
        for devid in directory(xs, f"/libxl/{domid}/device/{kind}"):
            be = read(xs, f"/libxl/{domid}/device/{kind}/{devid}/backend")
            if be:
                path_cleanup(xs, be)
    vm_path = read(xs, f"/local/domain/{domid}/vm") or f"/vm/{record['uuid']}"
    for path in (vm_path, f"/local/domain/{domid}", f"/libxl/{domid}"):
        rm_quiet(xs, path)
    with suppress(OSError):
        userdata_path(domid, record["uuid"]).unlink()
    mark_domid_recent(domid)
    how = behaviour_of(record["name"], int(record.get("boot", 1)))
    destroyed(domid, number(how, "dying_for", 0.0))
    with suppress(XsError):
        xs.release(domid)
    return True


def cmd_destroy(args: list[str]) -> int:
    force = "-f" in args
    words = [a for a in args if not a.startswith("-")]
    if len(words) != 1:
        say("'xl destroy' requires at least 1 argument.\n")
        return 2
    xs = xs_open()
    domid = find_domain(xs, words[0])
    if domid == 0 and not force:
        say("Not destroying domain 0; use -f to force.\nThis can only be done when using a "
            "disaggregated hardware domain and toolstack.\n")
        return 1
    if not destroy_domain(xs, domid):
        say(f"destroy failed (rc={ERROR_DOMAIN_NOTFOUND})")
        return 1
    return 0


# ---- pause / unpause -------------------------------------------------------------------------
def _pause_or_unpause(args: list[str], what: str) -> int:
    if len(args) != 1:
        say(f"'xl {what}' requires at least 1 argument.\n")
        return 2
    xs = xs_open()
    domid = find_domain(xs, args[0])
    record = set_running(domid) if what == "unpause" else set_paused(domid)
    if record is None and domid != 0:
        # libxl__domain_type() fails (libxl_dom.c:37); xl ignores the result and exits 0.
        libxl_log("libxl_dom.c:37", "libxl__domain_type",
                  f"unable to get domain type for domid={domid}")
    return 0


def cmd_unpause(args: list[str]) -> int:
    return _pause_or_unpause(args, "unpause")


def cmd_pause(args: list[str]) -> int:
    return _pause_or_unpause(args, "pause")


# ---- shutdown / reboot -----------------------------------------------------------------------
def pvcontrol(xs: xswire.Client, domid: int, cmd: str) -> int:
    """libxl__domain_pvcontrol() (libxl_domain.c:769-799) as libxl_domain_shutdown() /
    libxl_domain_reboot() run it synchronously: write control/shutdown, then wait for the
    guest's kernel to acknowledge by emptying it (pvcontrol_acked(), 60 s)."""
    record = record_of(domid)
    if record is None and domid != 0:
        libxl_log("libxl_dom.c:37", "libxl__domain_type",
                  f"unable to get domain type for domid={domid}")
        return ERROR_FAIL
    path = f"/local/domain/{domid}/control/shutdown"
    xs.write(path, cmd)
    name = "Domain-0" if record is None else record["name"]
    how = behaviour_of(name, int((record or {}).get("boot", 1)))
    if wait_for_node(xs, path, lambda v: v in (None, ""),
                     number(how, "ack_timeout", PVCONTROL_TIMEOUT)):
        return 0
    libxl_log("libxl_domain.c:854", "pvcontrol_cb",
              f"guest didn't acknowledge control request: {ERROR_TIMEDOUT}")
    return ERROR_TIMEDOUT


def wait_for_domain_deaths(xs: xswire.Client, domids: list[int], stop_at_shutdown: bool) -> None:
    """wait_for_domain_deaths() (xl_vmcontrol.c:163-200) on libxl's death events, which
    come from a @releaseDomain watch and the hypervisor's list (libxl_domain.c:882-986).
    xl waits without a deadline; so does this, within the stand-ins' lifetime."""
    xl_log(f"Waiting for {len(domids)} domains")
    token = f"xl-deaths-{time.monotonic_ns()}"
    xs.watch("@releaseDomain", token)
    pending, reported = list(domids), set()
    deadline = time.monotonic() + xlstate.lifetime()
    while pending and time.monotonic() < deadline:
        xs.events.clear()
        for domid in list(pending):
            record = record_of(domid)
            if record is None or record["state"] == "dying":
                xl_log(f"Domain {domid} has been destroyed")
                pending.remove(domid)
            elif record["state"] == "shutdown" and domid not in reported:
                reported.add(domid)
                code = REASON_CODE[record["shutdown_reason"]]
                xl_log(f"Domain {domid} has been shut down, reason code {code}")
                if stop_at_shutdown:
                    pending.remove(domid)
                else:
                    xl_log(f"Domain {domid} continue waiting for death")
        while pending and not xs.events:
            if select.select([xs.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                xs.pump()
            elif time.monotonic() >= deadline:
                break


def shutdown_or_reboot(args: list[str], reboot: bool) -> int:
    """main_shutdown_or_reboot() (xl_vmcontrol.c:202-271). -F only matters for HVM guests
    without PV drivers (ERROR_NOPARAVIRT); a PV guest always has the control node."""
    what = "reboot" if reboot else "shutdown"
    everyone = any(a in ("-a", "--all") for a in args)
    wait = sum(a.count("w") for a in args if a.startswith("-") and not a.startswith("--")) + \
        args.count("--wait")
    words = [a for a in args if not a.startswith("-")]
    if not words and not everyone:
        say("You must specify -a or a domain id.\n")
        return 1
    xs = xs_open()
    if everyone:
        domids = [d for d in hypervisor_domids() if d != 0 and _alive(record_of(d))]
    else:
        domids = [find_domain(xs, words[0])]
    for domid in domids:
        say(f"{'Rebooting' if reboot else 'Shutting down'} domain {domid}")
        rc = pvcontrol(xs, domid, "reboot" if reboot else "poweroff")
        if rc:
            say(f"{what} failed (rc={rc})")
            return 1
    if wait:
        wait_for_domain_deaths(xs, domids, stop_at_shutdown=wait == 1)
    return 0


def _alive(record: Record | None) -> bool:
    return record is not None and record["state"] != "dying"


def cmd_shutdown(args: list[str]) -> int:
    return shutdown_or_reboot(args, reboot=False)


def cmd_reboot(args: list[str]) -> int:
    return shutdown_or_reboot(args, reboot=True)


# ---- sysrq -----------------------------------------------------------------------------------
def cmd_sysrq(args: list[str]) -> int:
    """main_sysrq() (xl_misc.c:114-137) and libxl_send_sysrq() (libxl.c:641-651): write the
    letter to /local/domain/<domid>/control/sysrq; the guest's kernel does the rest."""
    if len(args) != 2:
        say("'xl sysrq' requires at least 2 arguments.\n")
        return 2
    xs = xs_open()
    domid = find_domain(xs, args[0])
    if len(args[1]) != 1:
        say("Invalid sysrq.\n")
        say("Usage: xl [-v] sysrq <Domain> <letter>\n\nSend a sysrq to a domain.\n")
        return 1
    xs.write(f"/local/domain/{domid}/control/sysrq", args[1])
    return 0


__all__ = ["cmd_destroy", "cmd_pause", "cmd_reboot", "cmd_shutdown", "cmd_sysrq",
           "cmd_unpause", "destroy_domain", "standin"]
