"""What xl's monitor does when its domain shuts down: handle_domain_death()
(tools/xl/xl_vmcontrol.c:404-490), preserve_domain() (:493-534) and the restart loop of
create_domain() (:1036-1104). xl 4.17 has no restart counting or rate limit: a domain that
crashes at each boot is restarted every time, 2 s apart (the "XXX FIXME" sleep, :1094).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import xswire
from xlstandin.cfg import DomainConfig, Vif
from xlstandin.common import (
    DUMP_DIR,
    ERROR_FAIL,
    REASON_CODE,
    RESTART_SLEEP,
    behaviour_of,
    directory,
    in_root,
    libxl_log,
    new_uuid,
    number,
    retrying,
    xl_log,
)
from xlstandin.hypervisor import Record, update_record

if TYPE_CHECKING:
    from xlstandin.process import DomainProcess

ACTION_OF_REASON = {"poweroff": "on_poweroff", "reboot": "on_reboot", "crash": "on_crash"}
DEFAULT_ACTION = {"watchdog": "destroy", "soft_reset": "soft-reset"}  # on_watchdog, on_soft_reset


def handle_domain_death(proc: DomainProcess, record: Record) -> None:
    """Log and apply the action for the shutdown reason; then either stop following
    (DOMAIN_RESTART_NONE: "Done. Exiting now") or schedule the restart."""
    from xlstandin.control import destroy_domain

    assert proc.domid is not None
    domid, reason = proc.domid, record["shutdown_reason"]
    code = REASON_CODE[reason]
    xl_log(f"Domain {domid} has shut down, reason code {code} 0x{code:x}")
    if reason == "suspend":
        xl_log("Domain has suspended.")
        return finish(proc)
    config = DomainConfig.from_dict(record["config"])
    action = getattr(config, ACTION_OF_REASON[reason]) if reason in ACTION_OF_REASON \
        else DEFAULT_ACTION[reason]  # not configurable in the units: libxl's defaults
    xl_log(f"Action for shutdown reason code {code} is {action}")
    with xswire.Client(timeout=5.0) as xs:
        if action.startswith("coredump-"):
            core_dump(domid, config.name)
            action = "destroy" if action == "coredump-destroy" else "restart"
        if action in ("preserve", "soft-reset"):  # soft-reset of a PV guest: not modelled
            return finish(proc)
        if action in ("restart", "rename-restart"):
            config = reload_domain_config(xs, domid, config)
        if action == "rename-restart":
            if not preserve_domain(xs, domid, config.name):
                return finish(proc)
        else:
            xl_log(f"Domain {domid} needs to be cleaned up: destroying the domain")
            destroy_domain(xs, domid, quiet=True)
    if action == "destroy":
        return finish(proc)
    xl_log("Done. Rebooting now")
    sleep = number(behaviour_of(config.name, int(record.get("boot", 1))), "restart_sleep",
                   RESTART_SLEEP)
    proc.domid = None
    proc.restart = (time.time() + sleep, config, int(record.get("boot", 1)) + 1)
    proc.wake_at(proc.restart[0])


def finish(proc: DomainProcess) -> None:
    xl_log("Done. Exiting now")
    proc.done = True


def core_dump(domid: int, name: str) -> None:
    """libxl_domain_core_dump() (libxl_domain.c:594-614): a file under XEN_DUMP_DIR; when
    it cannot be written xl logs the failure and goes on (xl_vmcontrol.c:447)."""
    corefile = f"{DUMP_DIR}/{name}"
    xl_log(f"dumping core to {corefile}")
    try:
        in_root(corefile).write_bytes(b"ELF core of a stand-in domain\n")
    except OSError as err:
        libxl_log("libxl_domain.c:603", "libxl_domain_core_dump",
                  f"Core dumping domain to {corefile}", domid, errno=err.errno)
        xl_log(f"core dump failed (rc={ERROR_FAIL}).")


def reload_domain_config(xs: xswire.Client, domid: int, config: DomainConfig) -> DomainConfig:
    """reload_domain_config() (xl_vmcontrol.c:364-401) = libxl_retrieve_domain_configuration():
    the stored JSON, whose devices are merged with xenstore (libxl_domain.c:2549-2615): a
    vif still in /libxl/<domid>/device/vif is kept (hot-plugged ones too, with the MAC
    libxl chose), one that was detached is dropped with a warning."""
    present = set(directory(xs, f"/libxl/{domid}/device/vif"))
    kept: list[Vif] = []
    for vif in config.vifs:
        if str(vif.devid) in present:
            kept.append(vif)
        else:
            libxl_log("libxl_domain.c:2604", "retrieve_domain_configuration_end",
                      "Device present in JSON but not in xenstore, ignored", domid,
                      level="warning")
    config.vifs = kept
    return config


def preserve_domain(xs: xswire.Client, domid: int, name: str) -> bool:
    """preserve_domain() + libxl_domain_preserve() (libxl_domain.c:209-272): the old
    domain stays, shut down, renamed ``<name>-<UTC date>`` with a new UUID, so that the
    restart can use the name and UUID."""
    suffix = time.strftime("-%Y%m%dT%H%MZ", time.gmtime())
    xl_log(f"Preserving domain {domid} {name} with suffix{suffix}")
    uuid_text, preserved = new_uuid(), f"{name}{suffix}"
    vm_path = f"/vm/{uuid_text}"

    def body(tx: int) -> None:
        xs.mkdir(vm_path, tx)
        xs.set_perms(vm_path, ["n0", f"r{domid}"], tx)
        xs.write(f"/local/domain/{domid}/vm", vm_path, tx)
        xs.write(f"/local/domain/{domid}/name", preserved, tx)
        xs.write(f"{vm_path}/name", preserved, tx)
        xs.write(f"{vm_path}/uuid", uuid_text, tx)

    retrying(xs, body)
    update_record(domid, name=preserved, uuid=uuid_text)
    return True


def restart_now(proc: DomainProcess) -> None:
    """``goto start`` (xl_vmcontrol.c:1095): create the domain again from the reloaded
    configuration, not paused, no hook of anyone's. If that fails, xl's error_out
    destroys what was made and the monitor exits."""
    from xlstandin.create import create

    assert proc.restart is not None
    _, config, boot = proc.restart
    with xswire.Client(timeout=5.0) as xs:
        code, domid = create(xs, config, paused=False, monitor=None, boot=boot)
    if code != 0 or domid is None:
        proc.done = True
        return
    proc.new_domain(domid)
