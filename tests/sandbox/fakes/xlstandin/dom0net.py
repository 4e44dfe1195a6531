"""dom0's kernel drivers for vifs, which no process of the sandbox runs: the domain at the
other end of each vif plays them through its monitor's (dom0) connection.

- dom0's netback, for a guest's vif served by dom0 (no ``backend=``): Connected once the
  frontend is and vif-bridge ran (libxl runs it in dom0 and writes hotplug-status);
  Closed when the frontend closes or vanishes (drivers/net/xen-netback/xenbus.c
  frontend_changed()).
- dom0's netfront, for ``xl network-attach 0 ...`` served by a driver domain: only when
  dom0's kernel has the driver (``modprobe xen-netfront``: the fake kernel lists
  ``xen_netfront`` in /proc/modules; loading it later probes the waiting vifs, as the real
  driver does at registration). Connected, it is a network interface of dom0: ``ethN``
  (the lowest free), MAC from the vif, down and without address, in the fake kernel's
  net.json, which ``ip`` reads. ``xl network-detach 0 ...`` removes the interface with the
  device (xennet_remove()). If the driver domain dies, the interface stays and the
  frontend stays Connected to the dead backend, as for any netfront.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import xswire
from xlstandin.common import in_root, read

NET_JSON = "/run/fake-kernel/net.json"  # shared with FakeKernel and bin/ip (same lock)
# What netfront writes before it says Connected (one queue: setup_netfront(),
# talk_to_netback() in drivers/net/xen-netfront.c); fake grant refs and port.
RING_NODES = (("tx-ring-ref", "8"), ("rx-ring-ref", "9"), ("event-channel", "10"),
              ("request-rx-copy", "1"), ("feature-rx-notify", "1"))


def connect_backend(xs: xswire.Client, fe: str, be: str) -> str:
    """netback's connect() once the frontend says Connected (drivers/net/xen-netback/
    xenbus.c connect_data_rings()): it maps the rings the frontend published; without
    them xenbus_dev_fatal() writes the error under the backend domain's ``error/`` and
    switches to Closing. A frontend's word "4" alone connects nothing. The new state."""
    refs = [read(xs, f"{fe}/{key}") for key in ("tx-ring-ref", "rx-ring-ref", "event-channel")]
    if all(ref is not None and ref.isdigit() for ref in refs):
        xs.write(f"{be}/state", "4")
        return "4"
    home, rel = be.split("/backend/", 1)
    xs.write(f"{home}/error/backend/{rel}/error", f"-2 reading {fe}/tx-ring-ref")
    xs.write(f"{be}/state", "5")
    return "5"


def netback_in_dom0(dom0: xswire.Client, be: str) -> None:
    fe = read(dom0, f"{be}/frontend")  # written by libxl in dom0: trusted
    if fe is None:
        return
    be_state, online = read(dom0, f"{be}/state"), read(dom0, f"{be}/online")
    hotplug, fe_state = read(dom0, f"{be}/hotplug-status"), read(dom0, f"{fe}/state")
    if be_state == "2" and online == "1" and hotplug == "connected" and fe_state == "4":
        connect_backend(dom0, fe, be)
    elif be_state in ("2", "4", "5") and fe_state in (None, "6"):
        dom0.write(f"{be}/state", "6")
    elif be_state in ("2", "4") and fe_state == "5":
        dom0.write(f"{be}/state", "5")


def xen_netfront_loaded() -> bool:
    try:
        modules = in_root("/proc/modules").read_text()
    except OSError:
        return False
    return any(line.split(" ", 1)[0] == "xen_netfront" for line in modules.splitlines())


def netfront_in_dom0(dom0: xswire.Client, fe: str, be: str, be_state: str | None) -> None:
    if not xen_netfront_loaded():
        return
    fe_state = read(dom0, fe + "/state")
    if fe_state == "1" and be_state == "2":
        for key, value in RING_NODES:
            dom0.write(f"{fe}/{key}", value)
        dom0.write(f"{fe}/state", "4")
        add_netdev(fe, read(dom0, f"{fe}/mac") or "00:00:00:00:00:00")
    elif fe_state not in (None, "5", "6") and be_state in ("5", "6"):
        dom0.write(f"{fe}/state", "6")


@contextmanager
def net_json() -> Iterator[dict[str, Any]]:
    """Read-modify-write net.json under the flock FakeKernel and ``ip`` use."""
    path = in_root(NET_JSON)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        yield data
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


def add_netdev(fe: str, mac: str) -> str | None:
    """register_netdev() in netfront_probe(): ``eth%d``, the lowest free number."""
    if not in_root(NET_JSON).parent.is_dir():
        return None
    with net_json() as net:
        for entry_name, entry in net.items():
            if entry.get("xen_vif") == fe:
                return str(entry_name)
        ifname = next(f"eth{n}" for n in range(len(net) + 1) if f"eth{n}" not in net)
        ifindex = max([int(e.get("ifindex", 1)) for e in net.values()] + [10]) + 1
        net[ifname] = {"up": False, "addrs": [], "routes": [], "mac": mac,
                       "ifindex": ifindex, "xen_vif": fe}
    devid = fe.rsplit("/", 1)[1]
    ndir = in_root(f"/sys/devices/vif-{devid}/net/{ifname}")
    with suppress(OSError):
        ndir.mkdir(parents=True, exist_ok=True)
        (ndir / "address").write_text(f"{mac}\n")
        link = in_root(f"/sys/class/net/{ifname}")
        link.symlink_to(os.path.relpath(ndir, link.parent))
    return ifname


def remove_netdev(fe: str) -> None:
    """xennet_remove(): the interface goes with the device (its addresses and routes)."""
    if not in_root(NET_JSON).exists():
        return
    with net_json() as net:
        gone = [name for name, entry in net.items() if entry.get("xen_vif") == fe]
        for name in gone:
            del net[name]
    for name in gone:
        with suppress(OSError):
            in_root(f"/sys/class/net/{name}").unlink()
        devdir = in_root(f"/sys/devices/vif-{fe.rsplit('/', 1)[1]}")
        with suppress(OSError):
            for path in sorted(devdir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()
            devdir.rmdir()

