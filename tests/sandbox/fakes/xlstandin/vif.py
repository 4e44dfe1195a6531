"""Network devices as libxl 4.17 handles them: the nodes of a vif (at create and on
``xl network-attach``), its removal (``xl network-detach``), ``xl network-list``.
Sources: tools/xl/xl_nic.c, tools/libs/light/libxl_{nic,device}.c, libxl_internal.h.
"""

from __future__ import annotations

import re
from dataclasses import asdict

import xswire
from xlstandin import dom0net
from xlstandin.cfg import Vif, parse_nic_token, random_mac
from xlstandin.common import (
    DESTROY_TIMEOUT,
    ERROR_FAIL,
    ERROR_TIMEDOUT,
    INIT_TIMEOUT,
    behaviour_of,
    directory,
    libxl_log,
    number,
    path_cleanup,
    read,
    retrying,
    rm_quiet,
    say,
    wait_for_node,
    xs_open,
)
from xlstandin.hypervisor import (
    find_domain,
    hypervisor_domids,
    qualifier_to_domid,
    record_of,
    update_record,
)
from xlstandin.info import add_nic_to_stored_json

CLOSING, CLOSED = "5", "6"


class AddFailed(Exception):
    """device_addrm_aocomplete() said so; libxl's messages are printed already."""


def frontend_path(domid: int, devid: int) -> str:
    return f"/local/domain/{domid}/device/vif/{devid}"


def backend_path(backend: int, domid: int, devid: int) -> str:
    return f"/local/domain/{backend}/backend/vif/{domid}/{devid}"


def libxl_path(domid: int, devid: int) -> str:
    return f"/libxl/{domid}/device/vif/{devid}"


def resolve_backend(xs: xswire.Client, vif: Vif) -> int | None:
    """libxl__resolve_domid() in libxl__device_nic_setdefault() (libxl_nic.c:92): resolved
    each time the vif is added; None when no domain has that name."""
    return 0 if vif.backend is None else qualifier_to_domid(xs, vif.backend)


def set_defaults(vif: Vif) -> None:
    """libxl__device_nic_setdefault() (libxl_nic.c:58-96): a random MAC once (kept in the
    stored config, so a restart keeps it), the default bridge and script."""
    if not vif.mac:
        vif.mac = random_mac()


def nextid(xs: xswire.Client, domid: int) -> int:
    """libxl__device_nextid() (libxl_device.c:1498): the LAST entry of
    /libxl/<domid>/device/vif (xenstored lists children in creation order) plus one."""
    entries = directory(xs, f"/libxl/{domid}/device/vif")
    return int(entries[-1]) + 1 if entries else 0


def write_nodes(xs: xswire.Client, domid: int, vif: Vif, backend: int) -> None:
    """libxl__device_generic_add() (libxl_device.c:148-260) with libxl__set_xenstore_nic()
    (libxl_nic.c:128-262), in one transaction: /libxl's dom0-only copy, the frontend
    ``[n<domid>, r<backend>]`` (mtu ``[n<backend>, r<domid>]``), the backend
    ``[n<backend>, r<domid>]``, both at state 1 (Initialising)."""
    n = vif.devid
    fe, be, ldev = frontend_path(domid, n), backend_path(backend, domid, n), libxl_path(domid, n)
    fe_perms, be_perms = [f"n{domid}", f"r{backend}"], [f"n{backend}", f"r{domid}"]
    bents = {"frontend-id": str(domid), "online": "1", "state": "1", "script": vif.script,
             **({"vifname": vif.vifname} if vif.vifname else {}), "mac": vif.mac,
             **({"ip": vif.ip} if vif.ip else {}),
             **({"gatewaydev": vif.gatewaydev} if vif.gatewaydev else {}),
             **({"mtu": str(vif.mtu)} if vif.mtu != 1500 else {}),
             "bridge": vif.bridge, "handle": str(n), "type": "vif", "hotplug-status": ""}
    fents = {"backend-id": str(backend), "state": "1", "handle": str(n), "mac": vif.mac,
             "trusted": "1" if vif.trusted else "0"}

    def body(tx: int) -> None:
        rm_quiet(xs, ldev, tx)
        xs.write(f"{ldev}/frontend", fe, tx)
        xs.write(f"{ldev}/backend", be, tx)
        rm_quiet(xs, fe, tx)
        xs.mkdir(fe, tx)
        xs.set_perms(fe, fe_perms, tx)
        xs.write(f"{fe}/backend", be, tx)
        for key, value in fents.items():
            xs.write(f"{fe}/{key}", value, tx)
            xs.set_perms(f"{fe}/{key}", fe_perms, tx)
        xs.write(f"{fe}/mtu", str(vif.mtu), tx)  # ro_fents
        xs.set_perms(f"{fe}/mtu", be_perms, tx)
        rm_quiet(xs, be, tx)
        xs.mkdir(be, tx)
        xs.set_perms(be, be_perms, tx)
        xs.write(f"{be}/frontend", fe, tx)
        for key, value in bents.items():
            xs.write(f"{be}/{key}", value, tx)
        for key, value in bents.items():
            xs.write(f"{ldev}/{key}", value, tx)

    retrying(xs, body)


def wait_connection(xs: xswire.Client, domid: int, devid: int, backend: int,
                    timeout: float) -> bool:
    """libxl__wait_device_connection() (libxl_device.c:985): the backend's netback reaches
    InitWait (2) within LIBXL_INIT_TIMEOUT. Dom0's own netback answers at once and libxl
    then runs vif-bridge, which writes hotplug-status; a driver domain's netback answers
    only while that domain runs (its stand-in process writes it). A backend already past
    InitWait counts (the stand-in's processes can be faster than libxl's watch)."""
    be = backend_path(backend, domid, devid)
    if backend == 0:
        xs.write(f"{be}/state", "2")
        xs.write(f"{be}/hotplug-status", "connected")
        return True
    return wait_for_node(xs, f"{be}/state", lambda v: v in ("2", "4"), timeout)


def add_vif(xs: xswire.Client, domid: int, vif: Vif, *, name: str) -> int:
    """One vif of ``xl create`` or ``xl network-attach``: defaults, backend by name, devid,
    nodes, then the wait for InitWait. Returns the backend domid; AddFailed after libxl's
    messages. The caller updates the stored configuration."""
    set_defaults(vif)
    backend = resolve_backend(xs, vif)
    if backend is None:
        raise AddFailed("backend")
    if vif.devid < 0:
        vif.devid = nextid(xs, domid)
    write_nodes(xs, domid, vif, backend)
    timeout = number(behaviour_of(name), "initwait_timeout", INIT_TIMEOUT)
    if not wait_connection(xs, domid, vif.devid, backend, timeout):
        libxl_log("libxl_device.c:1181", "device_backend_callback",
                  f"unable to add device with path {backend_path(backend, domid, vif.devid)}",
                  domid)
        raise AddFailed("initwait")
    return backend


# ---- xl network-attach -----------------------------------------------------------------------
def cmd_network_attach(args: list[str]) -> int:
    """main_networkattach() (xl_nic.c:50-93): every argument after the domain is ONE
    parse_nic_config() token; then libxl_device_nic_add() (libxl__device_add_async(),
    libxl_device.c:1920)."""
    if len(args) < 1:
        say("'xl network-attach' requires at least 1 argument.\n")
        return 2
    xs = xs_open()
    domid = find_domain(xs, args[0])
    vif = Vif()
    for token in args[1:]:
        if not parse_nic_token(vif, token):
            return 1
    record = record_of(domid)
    name = "Domain-0" if domid == 0 else (record or {}).get("name", "")
    set_defaults(vif)
    backend = resolve_backend(xs, vif)
    if backend is not None and domid != 0 and record is None:
        # libxl__domain_type() in the nic's setdefault (libxl_nic.c:95, libxl_dom.c:37)
        libxl_log("libxl_dom.c:37", "libxl__domain_type",
                  f"unable to get domain type for domid={domid}")
        backend = None
    if backend is None:
        libxl_log("libxl_device.c:1486", "device_addrm_aocomplete", "unable to add device")
        say("libxl_device_nic_add failed.")
        return 1
    if vif.devid < 0:
        vif.devid = nextid(xs, domid)
    if read(xs, libxl_path(domid, vif.devid)) is not None:  # libxl__device_exists()
        libxl_log("libxl_device.c:1998", "libxl__device_add_async",
                  "device already exists in xenstore", domid)
        libxl_log("libxl_device.c:1486", "device_addrm_aocomplete", "unable to add device")
        say("libxl_device_nic_add failed.")
        return 1
    store_vif(domid, vif, backend)
    try:
        add_vif(xs, domid, vif, name=name)
    except AddFailed:
        libxl_log("libxl_device.c:1481", "device_addrm_aocomplete",
                  f"Unable to add vif with id {vif.devid}", domid)
        say("libxl_device_nic_add failed.")
        return 1
    return 0


def store_vif(domid: int, vif: Vif, backend: int) -> None:
    """The stored configuration gains the vif (a later restart re-adds it)."""
    record = record_of(domid)
    if record is not None:
        vifs = [v for v in record["config"]["vifs"] if v["devid"] != vif.devid]
        update_record(domid, config={**record["config"], "vifs": [*vifs, asdict(vif)]})
    add_nic_to_stored_json(domid, record, vif, backend)


# ---- xl network-detach -----------------------------------------------------------------------
def device_destroy(xs: xswire.Client, domid: int, devid: int, be: str) -> None:
    """libxl__device_destroy() (libxl_device.c:801-851) as the toolstack domain: the
    frontend, the /libxl record and the backend path, each with its empty parents."""

    def body(tx: int) -> None:
        path_cleanup(xs, frontend_path(domid, devid), tx)
        path_cleanup(xs, libxl_path(domid, devid), tx)
        path_cleanup(xs, be, tx)

    retrying(xs, body)
    if domid == 0:
        dom0net.remove_netdev(frontend_path(domid, devid))  # dom0's kernel: xennet_remove()


def remove_vif(xs: xswire.Client, domid: int, devid: int, timeout: float) -> int:
    """libxl__initiate_device_generic_remove() (libxl_device.c:1002-1111) with
    LIBXL__FORCE_AUTO, then device_hotplug() and device_hotplug_done(). Returns libxl's rc.

    - backend gone (its domain died): "already removed, cleanup frontend only"
      (libxl_device.c:1063-1068), then libxl__device_destroy(): rc 0;
    - else online=0 and state Closing (5), and a wait of LIBXL_DESTROY_TIMEOUT for Closed
      (6): netfront answers Closing with Closed, netback follows. At the timeout the
      removal is forced (the frontend path goes first, which netback answers with Closed)
      and waited for once more (libxl_device.c:1163-1178);
    - a driver domain's backend: its `xl devd` removes the backend path, waited for
      (libxl_device.c:1221-1241, 1366-1389); dom0's own: vif-bridge offline."""
    ldev = libxl_path(domid, devid)
    be = read(xs, f"{ldev}/backend") or backend_path(0, domid, devid)
    backend = int(be.split("/")[3]) if be.startswith("/local/domain/") else 0
    if domid != 0 and record_of(domid) is None:
        libxl_log("libxl_device.c:1026", "libxl__initiate_device_generic_remove",
                  f"unable to get info for domain {domid}", domid)
        return ERROR_FAIL
    forced = False
    rc = 0
    while True:
        gone = not close_backend(xs, domid, devid, be, forced)
        if gone:
            libxl_log("libxl_device.c:1067", "libxl__initiate_device_generic_remove",
                      f"backend {be} already removed, cleanup frontend only", level="info")
            device_destroy(xs, domid, devid, be)
            return 0
        if wait_for_node(xs, f"{be}/state", lambda v: v in (CLOSED, None), timeout):
            break
        if not forced:
            forced = True  # device_backend_callback(): ERROR_TIMEDOUT with FORCE_AUTO
            continue
        libxl_log("libxl_device.c:1181", "device_backend_callback",
                  f"unable to remove device with path {be}", domid)
        rc = ERROR_TIMEDOUT
        break
    if rc == 0 and backend != 0 and not wait_for_node(xs, be, lambda v: v is None, timeout):
        libxl_log("libxl_device.c:1376", "device_destroy_be_watch_cb",
                  f"timed out while waiting for {be} to be removed", domid)
        rc = ERROR_TIMEDOUT
    if rc == 0 or forced:  # device_hotplug_done() (libxl_device.c:1392-1409)
        device_destroy(xs, domid, devid, be)
    return rc


def close_backend(xs: xswire.Client, domid: int, devid: int, be: str, forced: bool) -> bool:
    """One transaction of libxl__initiate_device_generic_remove(): (forced: the frontend
    first), then online=0 and Closing unless already Closed. False if the backend is gone."""
    found = [True]

    def body(tx: int) -> None:
        if forced:
            path_cleanup(xs, frontend_path(domid, devid), tx)
        state = read(xs, f"{be}/state", tx)
        found[0] = state is not None
        if state is None:
            return
        xs.write(f"{be}/online", "0", tx)
        if state != CLOSED:
            xs.write(f"{be}/state", CLOSING, tx)

    retrying(xs, body)
    return found[0]


def cmd_network_detach(args: list[str]) -> int:
    """main_networkdetach() (xl_nic.c:133-161): a devid, or a MAC (any argument with a
    colon), looked up in /libxl/<domid>/device/vif."""
    if len(args) < 2:
        say("'xl network-detach' requires at least 2 arguments.\n")
        return 2
    xs = xs_open()
    domid = find_domain(xs, args[0])
    devid = find_vif(xs, domid, args[1])
    if devid is None:
        say(f"Unknown device {args[1]}.")
        return 1
    record = record_of(domid)
    name = "Domain-0" if domid == 0 else (record or {}).get("name", "")
    timeout = number(behaviour_of(name), "destroy_timeout", DESTROY_TIMEOUT)
    if remove_vif(xs, domid, devid, timeout) != 0:
        libxl_log("libxl_device.c:1481", "device_addrm_aocomplete",
                  f"Unable to remove vif with id {devid}", domid)
        say("libxl_device_nic_del failed.")
        return 1
    return 0


def find_vif(xs: xswire.Client, domid: int, text: str) -> int | None:
    """libxl_devid_to_device_nic() / libxl_mac_to_device_nic() (libxl_nic.c:20-52)."""
    devids = [int(d) for d in directory(xs, f"/libxl/{domid}/device/vif") if d.isdigit()]
    if ":" not in text:
        digits = re.match(r"\d*", text)
        wanted = int(digits.group(0) or "0") if digits else 0  # atoi()
        return wanted if wanted in devids and read(xs, f"/libxl/{domid}/device/vif/"
                                                          f"{wanted}/backend") else None
    try:
        mac = [int(b, 16) for b in text.split(":")]
    except ValueError:
        return None
    for devid in devids:
        stored = read(xs, f"/libxl/{domid}/device/vif/{devid}/mac") or ""
        try:
            if [int(b, 16) for b in stored.split(":")] == mac:
                return devid
        except ValueError:
            continue
    return None


# ---- xl network-list -------------------------------------------------------------------------
def cmd_network_list(args: list[str]) -> int:
    """main_networklist() (xl_nic.c:95-131) with libxl_device_nic_getinfo()
    (libxl_nic.c:398-438): the state is the FRONTEND's, the backend path /libxl's record
    (so a vif whose driver domain died still shows the dead path)."""
    xs = xs_open()
    print(f"{'Idx':<3} {'BE':<2} {'Mac Addr.':<17} {'handle':<6} {'state':<5} {'evt-ch':<6} "
          f"{'tx-':>5}/{'rx-ring-ref':<5} {'BE-path':<30}")
    for text in args:
        domid = find_domain(xs, text)
        if domid != 0 and domid not in hypervisor_domids():
            continue
        for entry in directory(xs, f"/libxl/{domid}/device/vif"):
            ldev, fe = f"/libxl/{domid}/device/vif/{entry}", frontend_path(domid, int(entry))
            be = read(xs, f"{ldev}/backend")
            if be is None:
                libxl_log("libxl_nic.c:294", "libxl__nic_from_xenstore",
                          f"nic {ldev} does not exist (no backend path)")
                continue
            backend = int(be.split("/")[3])
            mac = read(xs, f"{ldev}/mac") or "00:00:00:00:00:00"
            state, evtch, tx_ref, rx_ref = (number_at(xs, f"{fe}/{key}") for key in (
                "state", "event-channel", "tx-ring-ref", "rx-ring-ref"))
            print(f"{int(entry):<3d} {backend:<2d} {mac}{int(entry):6d} {state:5d} "
                  f"{evtch:6d} {tx_ref:5d}/{rx_ref:<11d} {be:<30}")
    return 0



def number_at(xs: xswire.Client, path: str) -> int:
    """strtoul() of the node, -1 when it is missing (libxl_nic.c:425-432)."""
    value = read(xs, path)
    return int(value) if value is not None and value.isdigit() else -1
