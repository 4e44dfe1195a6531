"""Read-only subcommands: ``xl info``, ``xl list [-l] [-v] [D]``, ``xl domid NAME``,
``xl pci-assignable-list``, and the libxl-json domain configuration libxl stores
(libxl_retrieve_domain_configuration(): what ``xl list -l`` prints and a restart reloads).
Sources: tools/xl/xl_info.c, tools/libs/light/libxl_{dom,domain,pci}.c."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import xlstate
import xswire
from xlstandin.cfg import _BDF, DomainConfig, Vif
from xlstandin.common import REASON_CODE, behaviour, in_root, libxl_log, say, standin, xs_open
from xlstandin.hypervisor import Record, domid_to_name, find_domain, name_to_domid
from xswire import XsError

DEFAULT_INFO: dict[str, str] = {
    "host": "dom0",
    "release": "6.1.0-28-amd64",
    "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)",
    "machine": "x86_64",
    "nr_cpus": "2",
    "max_cpu_id": "1",
    "nr_nodes": "1",
    "cores_per_socket": "1",
    "threads_per_core": "1",
    "cpu_mhz": "2999.998",
    "hw_caps": "078bfbff:f6f83203:2c100800:00000121:0000000f:00000000:00000000:00000000",
    "virt_caps": "pv hvm hvm_directio pv_directio hap shadow iommu_hap_pt_share gnttab-v1 "
                 "gnttab-v2",
    "total_memory": "1535",
    "free_memory": "",  # computed: total - dom0 - guests, unless overridden
    "sharing_freed_memory": "0",
    "sharing_used_memory": "0",
    "outstanding_claims": "0",
    "free_cpus": "0",
    "xen_major": "",  # from $SANDBOX_ROOT/sys/hypervisor/version/*, else 4 / 17 / .5
    "xen_minor": "",
    "xen_extra": "",
    "xen_version": "",
    "xen_caps": "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64",
    "xen_scheduler": "credit2",
    "xen_pagesize": "4096",
    "platform_params": "virt_start=0xffff800000000000",
    "xen_changeset": "",
    "xen_commandline": "console=com1 com1=115200,8n1 dom0_mem=768M,max:768M loglvl=all "
                       "guest_loglvl=all noreboot console_timestamps=boot",
    "cc_compiler": "x86_64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0",
    "cc_compile_by": "pkg-xen-devel",
    "cc_compile_domain": "lists.alioth.debian.org",
    "cc_compile_date": "Fri Nov 29 15:23:14 UTC 2024",
    "build_id": "7d3cf2a0e1b9c3dd6f1b6ad2f4b8a3c1e0f5d9b2",
    "xend_config_format": "4",
}
SHUTDOWN_LETTERS = "-rscwS"  # xl_info.c:371, indexed by the shutdown reason code


# ---- info ------------------------------------------------------------------------------------
def info_values() -> dict[str, str]:
    values = dict(DEFAULT_INFO)
    version = {"major": "4", "minor": "17", "extra": ".5"}
    for key in version:
        with suppress(OSError):
            version[key] = in_root(f"/sys/hypervisor/version/{key}").read_text().strip()
    kernel_json = in_root("/run/fake-kernel/kernel.json")
    with suppress(OSError, ValueError, KeyError):
        values["release"] = json.loads(kernel_json.read_text())["release"]
    values["xen_major"], values["xen_minor"] = version["major"], version["minor"]
    values["xen_extra"] = version["extra"]
    overrides = {k: str(v) for k, v in behaviour().get("@info", {}).items()}
    values.update(overrides)
    if "xen_version" not in overrides:
        values["xen_version"] = f"{values['xen_major']}.{values['xen_minor']}{values['xen_extra']}"
    if "free_memory" not in overrides:
        used = dom0_memory(values) + sum(
            int(r["config"]["memory"]) for r in xlstate.domains(standin()).values())
        values["free_memory"] = str(max(0, int(values["total_memory"]) - used))
    return values


def dom0_memory(values: dict[str, str]) -> int:
    """dom0_mem=768M[,max:...] on Xen's command line, else most of the host."""
    m = re.search(r"\bdom0_mem=(\d+)([MG])", values.get("xen_commandline", ""))
    if m is None:
        return int(values.get("total_memory", "1535")) - 64
    return int(m.group(1)) * (1024 if m.group(2) == "G" else 1)


def virt_caps() -> set[str]:
    return set(info_values()["virt_caps"].split())


def cmd_info(args: list[str]) -> int:
    xs_open().close()
    for key, value in info_values().items():
        if key == "virt_caps":  # each capability carries its own leading space
            print(f"{key:<23}:" + "".join(f" {c}" for c in value.split()))
        else:
            print(f"{key:<23}: {value}")
    raw_tail("info")
    return 0


def raw_tail(sub: str) -> None:
    """behaviour "@raw_tail": bytes no UTF-8 decoder accepts, after the real output."""
    sys.stdout.flush()
    sys.stdout.buffer.write(bytes.fromhex(behaviour().get("@raw_tail", {}).get(sub, "")))


# ---- list / domid ----------------------------------------------------------------------------
def state_flags(record: Record | None) -> str:
    """xl_info.c:402-415 ``%c%c%c%c%c%c``: running, blocked, paused, shutdown, the shutdown
    reason's letter of "-rscwS" ("-" for poweroff), dying."""
    if record is None:
        return "r-----"  # dom0 is running this very command
    state, reason = record["state"], record.get("shutdown_reason")
    shutdown = "s" + SHUTDOWN_LETTERS[REASON_CODE[reason]] if reason else "--"
    return {"paused": "--p---", "running": "-b----", "shutdown": f"---{shutdown}-",
            "dying": f"--p{shutdown}d"}[state]


def cpu_time(record: Record | None, booted_at: float) -> float:
    now = time.time()
    if record is None:
        return 4.2 + (now - booted_at) * 0.3
    if not record.get("unpaused_at"):
        return 0.0
    end = float(record.get("shutdown_at") or now)
    return max(0.0, end - float(record["unpaused_at"])) * 0.05


def cmd_list(args: list[str]) -> int:
    """main_list() (xl_info.c:549); -v adds the UUID, the shutdown reason code in hex and
    the security label (xl_info.c:379, 418-426)."""
    fail_after = behaviour().get("@list", {}).get("fail_after")
    if fail_after is not None:  # the hypervisor stops answering: libxl_list_domain fails
        made = sum(1 for c in xlstate.calls(standin()) if c[1:2] == ["list"])
        if made > int(fail_after):
            say("libxl: error: libxl_domain.c:331:libxl_list_domain: getting domain info "
                "list: Permission denied")
            say("libxl_list_domain failed.")
            return 1
    long_format = any(a in ("-l", "--long") for a in args)
    verbose = any(a in ("-v", "--verbose") for a in args)
    wanted = [a for a in args if not a.startswith("-")]
    xs = xs_open()
    state = xlstate.read_state(standin())
    records: dict[int, Record | None] = {0: None}
    for domid_text, record in sorted(state["domains"].items(), key=lambda i: int(i[0])):
        records[int(domid_text)] = record
    if wanted:
        domid = find_domain(xs, wanted[0])
        if domid not in records:
            say(f"Error: Domain '{wanted[0]}' does not exist.")
            return 1
        records = {domid: records[domid]}
    if long_format:
        out = []
        for domid, record in records.items():
            config = domain_json(xs, domid, record)
            if config is not None:
                out.append({"domid": domid, "config": config})
        print(json.dumps(out, indent=4))
        return 0
    values = info_values()
    header = "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    print(header + ("   UUID                            Reason-Code\tSecurity Label"
                    if verbose else ""))
    for domid, record in records.items():
        name = domid_to_name(xs, domid) or "(null)"
        if record is None:
            mem, vcpus = dom0_memory(values), int(values["nr_cpus"])
        else:
            mem, vcpus = int(record["config"]["memory"]), int(record["config"]["vcpus"])
        line = (f"{name:<40} {domid:5d} {mem:5d} {vcpus:5d}     {state_flags(record)}  "
                f"{cpu_time(record, state['booted_at']):8.1f}")
        if verbose:
            uuid_text = dom0_uuid() if record is None else record["uuid"]
            reason = (record or {}).get("shutdown_reason")
            code = f"{REASON_CODE[reason]:8x}" if reason else f"{'-':>8}"
            line += f" {uuid_text} {code} {'-':>16}"
        print(line)
    raw_tail("list")
    return 0


def dom0_uuid() -> str:
    stored = sorted(in_root("/var/lib/xen").glob("userdata-d.0.*.libxl-json"))
    return stored[0].name.split(".")[2] if stored else "00000000-0000-0000-0000-000000000000"


def cmd_domid(args: list[str]) -> int:
    if len(args) != 1:
        say("'xl domid' requires at least 1 argument.\n")
        return 2
    xs = xs_open()
    domid = name_to_domid(xs, args[0])
    if domid is None:
        say(f"Can't get domid of domain name '{args[0]}', maybe this domain does not exist.")
        return 1
    print(domid)
    return 0


# ---- the stored domain configuration (libxl-json) -------------------------------------------
def userdata_path(domid: int, uuid_text: str) -> Path:
    """libxl__userdata_path() (libxl_dom.c:1203), inside $SANDBOX_ROOT."""
    return in_root(f"/var/lib/xen/userdata-d.{domid}.{uuid_text}.libxl-json")


def stored_json_path(domid: int, record: Record | None) -> Path | None:
    """Where libxl keeps the domain's libxl-json (xen-init-dom0 stores dom0's stub)."""
    if record is None:
        stored = sorted(in_root("/var/lib/xen").glob(f"userdata-d.{domid}.*.libxl-json"))
        return stored[0] if stored else None
    path = userdata_path(domid, record["uuid"])
    return path if path.exists() else None


def load_json(path: Path) -> Any:
    return json.loads(path.read_text().rstrip("\0"))


def domain_json(xs: xswire.Client, domid: int, record: Record | None) -> Any:
    """libxl_retrieve_domain_configuration(): the stored libxl-json with the name from
    xenstore; None (skipped by xl) when there is none."""
    path = stored_json_path(domid, record)
    if path is None:  # ERROR_JSON_CONFIG_EMPTY
        libxl_log("libxl_domain.c:2335", "retrieve_domain_configuration_lock_acquired",
                  "Fail to get domain configuration", domid)
        return None
    config: Any = load_json(path)
    name = domid_to_name(xs, domid)
    if name is not None:
        config.setdefault("c_info", {})["name"] = name
    return config


def nic_json(vif: Vif, backend: int) -> dict[str, Any]:
    nic: dict[str, Any] = {"backend_domid": backend, "devid": vif.devid, "mac": vif.mac,
                           "bridge": vif.bridge, "script": vif.script, "nictype": "vif"}
    if vif.backend:
        nic["backend_domname"] = vif.backend
    if vif.ip:
        nic["ip"] = vif.ip
    return nic


def libxl_config_json(cfg: DomainConfig, uuid_text: str,
                      backends: dict[int, int]) -> dict[str, Any]:
    """The libxl_domain_config JSON that libxl stores and `xl list -l` prints (a subset);
    ``backends`` maps each vif's devid to its backend domid."""
    b_info: dict[str, Any] = {
        "max_vcpus": cfg.vcpus,
        "avail_vcpus": list(range(cfg.vcpus)),
        "max_memkb": cfg.memory * 1024,
        "target_memkb": cfg.memory * 1024,
        "sched_params": {},
        f"type.{cfg.type}": {
            "kernel": cfg.kernel, "ramdisk": cfg.ramdisk, "cmdline": cfg.extra,
        },
        "arch_arm": {},
        "arch_x86": {"msr_relaxed": "False"},
    }
    pcidevs = []
    for bdf in cfg.pci:
        seg, bus, rest = bdf.split(":")
        dev, func = rest.split(".")
        pcidevs.append({"func": int(func), "dev": int(dev, 16), "bus": int(bus, 16),
                        "domain": int(seg, 16)} if int(seg, 16) else
                       {"func": int(func), "dev": int(dev, 16), "bus": int(bus, 16)})
    config: dict[str, Any] = {
        "c_info": {"type": cfg.type, "name": cfg.name, "uuid": uuid_text,
                   "run_hotplug_scripts": "True"},
        "b_info": b_info,
        "on_poweroff": cfg.on_poweroff.replace("-", "_"),
        "on_reboot": cfg.on_reboot.replace("-", "_"),
        "on_watchdog": "destroy",
        "on_crash": cfg.on_crash.replace("-", "_"),
        "on_soft_reset": "soft_reset",
    }
    nics = [nic_json(v, backends[v.devid]) for v in cfg.vifs if v.devid in backends]
    if nics:
        config["nics"] = nics
    if pcidevs:
        config["pcidevs"] = pcidevs
    return config


def add_nic_to_stored_json(domid: int, record: Record | None, vif: Vif, backend: int) -> None:
    """device_add_domain_config() + libxl__set_domain_configuration() for a hot-plugged
    vif (libxl_device.c:1961-2003): replace the entry with that devid or append."""
    path = stored_json_path(domid, record)
    if path is None:
        return
    config = load_json(path)
    nics = [n for n in config.get("nics", []) if n.get("devid") != vif.devid]
    config["nics"] = [*nics, nic_json(vif, backend)]
    path.write_text(json.dumps(config, indent=4) + "\0")


# ---- pci-assignable-list ---------------------------------------------------------------------
def xs_bdf(bdf: str) -> str:
    """PCI_BDF_XSPATH "%04x-%02x-%02x-%01x" (libxl_pci.c:25)."""
    return bdf.replace(":", "-").replace(".", "-")


def assignable(xs: xswire.Client) -> list[str] | None:
    """libxl_device_pci_assignable_list() (libxl_pci.c:432): BDFs in pciback's sysfs
    directory not yet given to a domain (/libxl/pci/<bdf>/domid); None without pciback."""
    pciback = in_root("/sys/bus/pci/drivers/pciback")
    if not pciback.is_dir():
        libxl_log("libxl_pci.c:444", "libxl_device_pci_assignable_list",
                  "Looks like pciback driver not loaded")
        return None
    out = []
    for entry in sorted(os.listdir(pciback)):
        if _BDF.fullmatch(entry) is None:
            continue
        try:
            xs.read(f"/libxl/pci/{xs_bdf(entry)}/domid")
        except XsError:
            out.append(entry)
    return out


def cmd_pci_assignable_list(args: list[str]) -> int:
    xs = xs_open()
    for bdf in assignable(xs) or []:
        print(f"{bdf} ")
    return 0

