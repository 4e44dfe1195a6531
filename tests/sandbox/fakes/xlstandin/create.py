"""``xl create [-p] [-q] [-e] CFG``: libxl_domain_create_new() as xl 4.17 runs it, then xl's
unpause and the monitor it forks. Sources: tools/xl/xl_vmcontrol.c create_domain(),
tools/libs/light/libxl_{create,dom,pci,internal}.c."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from dataclasses import asdict
from pathlib import Path

import xlstate
import xswire
from xlstandin.cfg import DomainConfig, parse_domain_config
from xlstandin.common import (
    ERROR_FAIL,
    ERROR_INVAL,
    ERROR_LOCK_FAIL,
    STORE_MFN,
    STORE_PORT,
    Exit,
    behaviour_of,
    destroy_failed_messages,
    host_file,
    in_root,
    libxl_log,
    mknod,
    new_uuid,
    retrying,
    rm_quiet,
    say,
    xs_open,
)
from xlstandin.hypervisor import allocate_domid, name_to_domid, update_record
from xlstandin.info import assignable, libxl_config_json, userdata_path, virt_caps, xs_bdf
from xlstandin.vif import AddFailed, add_vif


class CreateFailed(Exception):
    """libxl failed after the domain existed: xl's error_out destroys it (exit 3)."""

    def __init__(self, code: int = -ERROR_FAIL, destroyed_by_libxl: bool = True) -> None:
        super().__init__(code)
        self.code = code
        self.destroyed_by_libxl = destroyed_by_libxl


def cmd_create(args: list[str]) -> int:
    paused = quiet = False
    monitor = True
    cfg_path: str | None = None
    for arg in args:
        if arg in ("-p", "--paused"):
            paused = True
        elif arg in ("-q", "--quiet"):
            quiet = True
        elif arg == "-e":
            monitor = False  # dom_info.monitor = 0: nobody applies on_poweroff/reboot/crash
        elif arg.startswith("-"):
            continue  # -F -c -V -A -d: not modelled
        elif "=" in arg:
            continue  # extra config lines: not modelled
        elif cfg_path is None:
            cfg_path = arg
    xs = xs_open()
    if cfg_path is None:
        say("Config file not specified and none in save file")
        return -ERROR_FAIL
    try:
        text = Path(cfg_path).read_text()
    except OSError as err:
        say(f"Failed to read config file: {cfg_path}: {os.strerror(err.errno or 2)}")
        return -ERROR_FAIL
    if not quiet:
        say(f"Parsing config from {cfg_path}")
    cfg = parse_domain_config(text, cfg_path)
    how = behaviour_of(cfg.name)
    time.sleep(float(how.get("create_delay", 0)))
    mode = how.get("create", "ok")
    if mode == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        time.sleep(xlstate.lifetime())
        return 1
    if mode == "permission-denied":
        # What the lab saw with a 4.20 hypervisor under Debian's 4.17 toolstack (XEN-LAB.md).
        say("libxl: error: libxl_create.c:711:libxl__domain_make: domain creation fail: "
            "Permission denied")
        libxl_log("libxl_create.c:1294", "initiate_domain_create", "cannot make domain: -3")
        return -ERROR_FAIL
    try:
        code, _ = create(xs, cfg, paused=paused, fail=mode == "fail",
                         fail_stderr=how.get("create_stderr"), monitor=monitor)
        return code
    finally:
        xs.close()


def passthrough_check(cfg: DomainConfig) -> None:
    """libxl__domain_config_setdefault(): before any domain exists (libxl_create.c:1158,
    libxl_x86.c:831). The messages end in "\\n", hence the empty line."""
    if not cfg.pci:
        return
    if "hvm_directio" not in virt_caps():
        libxl_log("libxl_create.c:1158", "libxl__domain_config_setdefault",
                  "passthrough not supported on this platform\n")
        raise Exit(-ERROR_INVAL)
    if cfg.type == "pvh":
        libxl_log("libxl_x86.c:831", "libxl__arch_passthrough_mode_setdefault",
                  "passthrough not yet supported for x86 PVH guests\n")
        raise Exit(-ERROR_INVAL)


def create(xs: xswire.Client, cfg: DomainConfig, *, paused: bool, fail: bool = False,
           fail_stderr: str | None = None, monitor: bool | None = True,
           boot: int = 1) -> tuple[int, int | None]:
    """libxl_domain_create_new(), xl's unpause, and (``monitor`` not None) the process that
    plays xl's monitor (True) or only the guest (False). Returns (xl's exit code, domid)."""
    from xlstandin.control import destroy_domain  # control imports create (restart)

    try:
        passthrough_check(cfg)
    except Exit as done:
        return done.code, None
    taken = name_to_domid(xs, cfg.name)
    cfg.uuid = cfg.uuid or new_uuid()
    domid = allocate_domid(cfg, cfg.uuid, boot)
    # xc_domain_create(): from here on the domain exists. The stand-in xenstored knows
    # only introduced domains, and libxl__domain_make() already names the new domid in
    # permissions (refused or ignored for an unknown domain), so introduce it now.
    xs.introduce(domid, STORE_MFN, STORE_PORT)
    if taken is not None:  # libxl__domain_rename() inside libxl__domain_make()
        libxl_log("libxl_domain.c:81", "libxl__domain_rename",
                  f'Domain with name "{cfg.name}" already exists.', domid)
        libxl_log("libxl_create.c:1294", "initiate_domain_create",
                  f"cannot make domain: {ERROR_INVAL}", domid)
        destroy_domain(xs, domid, quiet=True)
        destroy_failed_messages(domid)
        return -ERROR_FAIL, None
    try:
        build_domain(xs, cfg, domid, fail, fail_stderr)
    except CreateFailed as failed:
        destroy_domain(xs, domid, quiet=True)
        if failed.destroyed_by_libxl:
            destroy_failed_messages(domid)
        return failed.code, None
    if not paused:
        update_record(domid, state="running", unpaused_at=time.time())
    if monitor is None:
        return 0, domid
    from xlstandin.process import start_monitor

    return start_monitor(xs, domid, cfg.name, monitor), domid


def build_domain(xs: xswire.Client, cfg: DomainConfig, domid: int, fail: bool,
                 fail_stderr: str | None) -> None:
    """libxl__domain_make, the build, libxl__build_post, then the devices; raises
    CreateFailed after printing libxl's messages."""
    domain_make(xs, cfg, domid)
    if fail:
        if fail_stderr is not None:
            say(fail_stderr.rstrip("\n"))
            raise CreateFailed(destroyed_by_libxl=False)
        libxl_log("libxl_create.c:1638", "domcreate_rebuild_done",
                  f"cannot (re-)build domain: {ERROR_FAIL}", domid)
        raise CreateFailed()
    load_images(cfg, domid)
    build_post(xs, cfg, domid)
    backends: dict[int, int] = {}
    for vif in cfg.vifs:
        try:
            backends[vif.devid] = add_vif(xs, domid, vif, name=cfg.name)
        except AddFailed:
            libxl_log("libxl_create.c:1919", "domcreate_attach_devices",
                      "unable to add vif devices", domid)
            raise CreateFailed() from None
    add_pcis(xs, cfg, domid)
    store_config(cfg, domid, backends)


def domain_make(xs: xswire.Client, cfg: DomainConfig, domid: int) -> None:
    """libxl__domain_make() (libxl_create.c:605): one transaction."""
    assert cfg.uuid is not None
    dom_path, vm_path, libxl_path = f"/local/domain/{domid}", f"/vm/{cfg.uuid}", f"/libxl/{domid}"
    roperm, rwperm, noperm = ["n0", f"r{domid}"], [f"n{domid}"], ["n0"]

    def body(tx: int) -> None:
        rm_quiet(xs, dom_path, tx)
        mknod(xs, dom_path, roperm, tx)
        rm_quiet(xs, vm_path, tx)
        mknod(xs, vm_path, roperm, tx)
        rm_quiet(xs, libxl_path, tx)
        mknod(xs, libxl_path, noperm, tx)
        mknod(xs, f"{libxl_path}/device", noperm, tx)
        xs.write(f"{dom_path}/vm", vm_path, tx)
        xs.write(f"{dom_path}/name", cfg.name, tx)
        for sub in ("cpu", "memory", "device"):
            mknod(xs, f"{dom_path}/{sub}", roperm, tx)
        mknod(xs, f"{dom_path}/device/suspend/event-channel", rwperm, tx)
        mknod(xs, f"{dom_path}/control", roperm, tx)
        if cfg.type == "hvm":
            mknod(xs, f"{dom_path}/hvmloader", roperm, tx)
        features = ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend"]
        if cfg.type == "hvm":
            features += ["feature-s3", "feature-s4"]
        for sub in [*features, "sysrq"]:
            mknod(xs, f"{dom_path}/control/{sub}", rwperm, tx)
        for sub in ("data", "drivers", "feature", "attr", "error"):
            mknod(xs, f"{dom_path}/{sub}", rwperm, tx)
        xs.write(f"{vm_path}/uuid", cfg.uuid or "", tx)
        xs.write(f"{vm_path}/name", cfg.name, tx)
        xs.write(f"{dom_path}/control/platform-feature-multiprocessor-suspend", "1", tx)
        xs.write(f"{dom_path}/control/platform-feature-xs_reset_watches", "1", tx)
        xs.write(f"{libxl_path}/type", cfg.type, tx)

    retrying(xs, body)


def load_images(cfg: DomainConfig, domid: int) -> None:
    """xc_dom_kernel_file() / xc_dom_module_file(): open() the files (xg_dom_core.c:205)."""
    where = ("libxl_dom.c:646", "libxl__build_pv") if cfg.type == "pv" else \
        ("libxl_dom.c:909", "libxl__domain_firmware")
    for what, path in (("kernel", cfg.kernel), ("ramdisk", cfg.ramdisk)):
        if path is None or (what == "ramdisk" and not path):
            continue
        if host_file(path) is not None:
            continue
        say(f"xc: error: panic: xg_dom_core.c:205: failed to open file '{path}': "
            "No such file or directory: Internal error")
        if what == "kernel":
            libxl_log(where[0], where[1], "xc_dom_kernel_file failed", errno=2)
        else:
            line = "libxl_dom.c:659" if cfg.type == "pv" else "libxl_dom.c:926"
            libxl_log(line, where[1], "xc_dom_ramdisk_file failed", errno=2)
        if cfg.type != "pv":
            libxl_log("libxl_dom.c:1075", "libxl__build_hvm", "initializing domain firmware failed")
        libxl_log("libxl_create.c:1638", "domcreate_rebuild_done",
                  f"cannot (re-)build domain: {ERROR_FAIL}", domid)
        raise CreateFailed()


def build_post(xs: xswire.Client, cfg: DomainConfig, domid: int) -> None:
    """libxl__build_post() (libxl_dom.c:435) plus the PV console entries, then INTRODUCE."""
    dom_path = f"/local/domain/{domid}"
    vm_path = xs.read(f"{dom_path}/vm").decode()
    ents = {
        "memory/static-max": str(cfg.memory * 1024),
        "memory/target": str(cfg.memory * 1024),
        "memory/videoram": "0",
        "domid": str(domid),
        "store/port": str(STORE_PORT),
        "store/ring-ref": str(STORE_MFN),
        "console/port": "2",
        "console/ring-ref": str(STORE_MFN + 1),
        **{f"cpu/{i}/availability": "online" for i in range(cfg.vcpus)},
    }
    vms = {"image/ostype": "linux" if cfg.type == "pv" else cfg.type,
           "image/kernel": cfg.kernel or "", "image/ramdisk": cfg.ramdisk or "",
           "image/cmdline": cfg.extra or "", "start_time": f"{time.time():.2f}"}

    def body(tx: int) -> None:
        for key, value in ents.items():
            xs.write(f"{dom_path}/{key}", value, tx)
        for key, value in vms.items():
            xs.write(f"{vm_path}/{key}", value, tx)

    retrying(xs, body)
    xs.introduce(domid, STORE_MFN, STORE_PORT)


def add_pcis(xs: xswire.Client, cfg: DomainConfig, domid: int) -> None:
    """libxl__device_pci_add() (libxl_pci.c:1629) for each device, PV style."""
    if not cfg.pci:
        return
    free = assignable(xs)
    for bdf in cfg.pci:
        short = ":".join(f"{int(p, 16):x}" for p in re.split(r"[:.]", bdf))
        short = short[::-1].replace(":", ".", 1)[::-1]  # %x:%x:%x.%x
        if free is None or bdf not in free:
            libxl_log("libxl_pci.c:1677", "libxl__device_pci_add",
                      f"PCI device {short} is not assignable", domid)
            libxl_log("libxl_pci.c:1809", "device_pci_add_done",
                      f"libxl__device_pci_add failed for PCI device {short} (rc {ERROR_FAIL})",
                      domid)
            libxl_log("libxl_create.c:1919", "domcreate_attach_devices",
                      "unable to add pci devices", domid)
            raise CreateFailed()
        xs.write(f"/libxl/pci/{xs_bdf(bdf)}/domid", str(domid))
        if not (in_root("/sys/bus/pci/drivers/pciback/do_flr").exists()
                or in_root(f"/sys/bus/pci/devices/{bdf}/reset").exists()):
            libxl_log("libxl_pci.c:1573", "libxl__device_pci_reset",
                      f"The kernel doesn't support reset from sysfs for PCI device {bdf}")
    be = f"/local/domain/0/backend/pci/{domid}/0"
    fe = f"/local/domain/{domid}/device/pci/0"

    def body(tx: int) -> None:
        rm_quiet(xs, fe, tx)
        xs.mkdir(fe, tx)
        xs.set_perms(fe, [f"n{domid}", "r0"], tx)
        for key, value in (("backend", be), ("backend-id", "0"), ("state", "1")):
            xs.write(f"{fe}/{key}", value, tx)
        rm_quiet(xs, be, tx)
        xs.mkdir(be, tx)
        xs.set_perms(be, ["n0", f"r{domid}"], tx)
        for key, value in (("frontend", fe), ("frontend-id", str(domid)), ("online", "1"),
                           ("state", "1"), ("domain", cfg.name),
                           ("num_devs", str(len(cfg.pci)))):
            xs.write(f"{be}/{key}", value, tx)
        for i, bdf in enumerate(cfg.pci):
            for key, value in ((f"key-{i}", bdf), (f"dev-{i}", bdf), (f"state-{i}", "1"),
                               (f"opts-{i}", "msitranslate=0,power_mgmt=0,permissive=0,"
                                             "rdm_policy=strict")):
                xs.write(f"{be}/{key}", value, tx)

    retrying(xs, body)
    update_record(domid, pci=list(cfg.pci))


def store_config(cfg: DomainConfig, domid: int, backends: dict[int, int]) -> None:
    """domcreate_complete(): libxl__lock_domain_userdata() + the libxl-json (needs
    /var/lib/xen; without it libxl__lock_file() fails and xl destroys the domain). The
    stand-in's record keeps the same configuration (with the MACs libxl chose) for a
    restart by xl's monitor."""
    assert cfg.uuid is not None
    lock = in_root(f"/var/lib/xen/userdata-l.{domid}.{cfg.uuid}.domain-userdata-lock")
    if not lock.parent.is_dir():
        libxl_log("libxl_internal.c:417", "libxl__lock_file",
                  f"cannot open lockfile /var/lib/xen/{lock.name}, errno=2", errno=2)
        raise CreateFailed(-ERROR_LOCK_FAIL, destroyed_by_libxl=False)
    data = json.dumps(libxl_config_json(cfg, cfg.uuid, backends), indent=4)
    userdata_path(domid, cfg.uuid).write_text(data + "\0")
    update_record(domid, config=asdict(cfg))
