"""The guest a domain runs, played from outside as it would act from inside: its kernel
(Linux 6.1's drivers/xen: manage.c for control/shutdown and control/sysrq, xen-netfront,
xen-netback, xen-pcifront) and its userspace (the writes of its init, ``xl devd``).

It talks to xenstored AS THE GUEST (CONTROL ``as-domain``): its watches and writes obey the
guest's permissions. Two things it plays for dom0, through the monitor's connection, as dom0
has no process of its own here: dom0's netback for its vifs served by dom0 (and dom0's
pciback), and dom0's netfront for dom0's vifs this domain serves (only once the fake dom0
kernel has ``xen_netfront`` loaded; the vif then appears in dom0 as ethN for ``ip``).

Stages after unpause: the kernel at ``kernel_after`` (feature-* nodes, control watches,
netfront/netback/pcifront), userspace at ``ready_after`` (the behaviour's writes, ``xl
devd``, so a backend it serves can reach Connected).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import xswire
from xlstandin import dom0net, hypervisor
from xlstandin.common import behaviour_of, directory, in_root, number, path_cleanup, read, retrying
from xlstandin.hypervisor import Record, record_of, update_record
from xswire import XsError

if TYPE_CHECKING:
    from xlstandin.process import DomainProcess

SHUTDOWN_HANDLERS = {"poweroff": "poweroff", "halt": "poweroff", "reboot": "reboot",
                     "suspend": "suspend"}  # manage.c shutdown_handlers[]
SYSRQ_SHUTDOWNS = {"b": "reboot", "o": "poweroff", "c": "crash"}  # emergency_restart() etc.


class Guest:
    """One boot of the domain ``domid``: a restart is a new Guest (a fresh kernel)."""

    def __init__(self, proc: DomainProcess, domid: int | None) -> None:
        self.proc, self.domid = proc, domid
        self.conn: xswire.Client | None = None
        self.booted = False
        self.pending: tuple[str, float] | None = None  # a shutdown the guest is carrying out
        self.ignored: str | None = None
        self.watched: set[str] = set()

    # ---- plumbing -------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        """The guest's console, as xenconsoled keeps it (--log=guest), if that dir exists."""
        path = in_root(f"/var/log/xen/console/guest-{self.proc.name}.log")
        if path.parent.is_dir():
            with suppress(OSError), open(path, "a") as console:
                console.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")

    def fds(self) -> list[int]:
        return [self.conn.fileno()] if self.conn is not None else []

    def pump(self) -> None:
        assert self.conn is not None
        try:
            self.conn.pump()
        except (OSError, ConnectionError):
            self.close()  # xenstored dropped the connection: the domain was released

    def clear_events(self) -> None:
        if self.conn is not None:
            self.conn.events.clear()

    def close(self) -> None:
        if self.conn is not None:
            with suppress(OSError):
                self.conn.close()
            self.conn = None

    def watch(self, path: str) -> None:
        """xenbus_watch_path(): the other end's state, watched once per path."""
        if self.conn is not None and path not in self.watched:
            self.watched.add(path)
            with suppress(XsError):
                self.conn.watch(path, f"otherend:{path}")

    def write_if(self, xs: xswire.Client, path: str, value: str) -> None:
        """Write when the value differs: our own watches must fall quiet."""
        if read(xs, path) != value:
            xs.write(path, value)

    # ---- the state machine ---------------------------------------------------------------
    def step(self, record: Record) -> None:
        if record["state"] != "running" or self.domid is None:
            return  # paused: its vCPUs do not run
        how = behaviour_of(self.proc.name, int(record.get("boot", 1)))
        now = time.time()
        started = float(record["unpaused_at"])
        if how.get("guest", "ready") == "crash":
            crash_at = started + number(how, "crash_after", 0.5)
            if now >= crash_at:
                self.log("Kernel panic - not syncing: stand-in crash")
                self.shut_down("crash")
                return
            self.proc.wake_at(crash_at)
        if self.pending is not None:
            if now >= self.pending[1]:
                self.shut_down(self.pending[0])
                return
            self.proc.wake_at(self.pending[1])
        kernel_at = started + number(how, "kernel_after", 0.0)
        if now < kernel_at:
            self.proc.wake_at(kernel_at)
            return
        if self.conn is None:
            self.kernel_boot(how)
        if self.control(how):
            return
        ready_at = started + number(how, "ready_after", 0.1)
        if not self.booted and how.get("guest", "ready") != "never":
            if now >= ready_at:
                self.userspace_boot(how)
            else:
                self.proc.wake_at(ready_at)
        self.devices(record, how)

    def shut_down(self, reason: str) -> None:
        """SCHEDOP_shutdown: the hypervisor marks the domain, xenstored tells the world."""
        assert self.domid is not None
        self.log(f"reboot: {reason}")
        self.close()
        hypervisor.shut_down(self.domid, reason)
        self.proc.wake_at(time.time())

    # ---- kernel ----------------------------------------------------------------------------
    def kernel_boot(self, how: dict[str, Any]) -> None:
        """xenbus comes up: the frontend and backend buses watch ``device`` and ``backend``;
        manage.c's setup_shutdown_watcher() watches control/shutdown and control/sysrq and
        advertises feature-poweroff/-reboot/-suspend. An ``unresponsive`` kernel has no PV
        control: no watches, no features, no acknowledgement."""
        assert self.domid is not None
        self.conn = xswire.Client(timeout=5.0)
        self.conn.as_domain(self.domid)
        for path in ("device", "backend"):
            self.conn.watch(path, f"xenbus:{path}")
        if how.get("on_shutdown", "obey") != "unresponsive":
            for path in ("control/shutdown", "control/sysrq"):
                self.conn.watch(path, f"manage:{path}")
            for feature in ("poweroff", "reboot", "suspend"):
                self.write_if(self.conn, f"control/feature-{feature}", "1")
        self.log("Linux version 6.1.0 (stand-in): xenbus up")

    def control(self, how: dict[str, Any]) -> bool:
        """shutdown_handler() and sysrq_handler() (drivers/xen/manage.c): acknowledge in a
        transaction by emptying the node, then act. True when the domain went down."""
        if self.conn is None or how.get("on_shutdown", "obey") == "unresponsive":
            return False
        request = self.take("control/shutdown", lambda v: v in SHUTDOWN_HANDLERS)
        if request is not None and request in SHUTDOWN_HANDLERS:
            self.log(f"xen:manage: {request} requested")
            if how.get("on_shutdown", "obey") == "obey" and self.pending is None:
                when = time.time() + number(how, "shutdown_after", 0.2)
                self.pending = (SHUTDOWN_HANDLERS[request], when)
                self.proc.wake_at(when)
        elif request and request != self.ignored:
            self.ignored = request
            self.log(f"xen:manage: Ignoring shutdown request: {request}")
        key = self.take("control/sysrq", lambda v: v != "")
        if key:
            assert self.domid is not None
            self.log(f"sysrq: SysRq : {key[0]}")
            record_sysrq(self.domid, key[0])
            if key[0] in SYSRQ_SHUTDOWNS:
                self.shut_down(SYSRQ_SHUTDOWNS[key[0]])
                return True
        return False

    def take(self, path: str, handled: Callable[[str], bool]) -> str | None:
        """Read ``path`` in a transaction and empty it when ``handled(value)``, as
        manage.c's handlers do; the value (None when missing or empty)."""
        assert self.conn is not None
        conn, seen = self.conn, [""]

        def body(tx: int) -> None:
            seen[0] = read(conn, path, tx) or ""
            if seen[0] and handled(seen[0]):
                conn.write(path, "", tx)

        retrying(conn, body)
        return seen[0] or None

    # ---- userspace -------------------------------------------------------------------------
    def userspace_boot(self, how: dict[str, Any]) -> None:
        """What the guest's init writes, as the guest; then its services (xl devd) run."""
        assert self.conn is not None and self.domid is not None
        errors: dict[str, str] = {}
        for key, value in how.get("writes", {"data/ready": "1"}).items():
            try:
                self.conn.write(key, str(value))
            except XsError as err:
                errors[key] = err.name
                self.log(f"write {key} refused: {err.name}")
        self.booted = True
        update_record(self.domid, booted=True, booted_at=time.time(), write_errors=errors)
        self.log("init: ready")

    # ---- devices ---------------------------------------------------------------------------
    def devices(self, record: Record, how: dict[str, Any]) -> None:
        """Its netfront (unless ``connect_vifs`` is false: no netfront driver at all),
        its netback, its pcifront, and dom0's netback for its vifs that dom0 serves (found
        from dom0's own backend directory, never from the guest's ``backend`` key)."""
        if self.conn is None or self.domid is None:
            return
        if how.get("connect_vifs", True):
            for devid in directory(self.conn, "device/vif"):
                self.netfront(f"/local/domain/{self.domid}/device/vif/{devid}")
        for frontend in directory(self.conn, "backend/vif"):
            for devid in directory(self.conn, f"backend/vif/{frontend}"):
                self.netback(f"/local/domain/{self.domid}/backend/vif/{frontend}/{devid}")
        served = f"/local/domain/0/backend/vif/{self.domid}"
        for devid in directory(self.proc.dom0, served):
            dom0net.netback_in_dom0(self.proc.dom0, f"{served}/{devid}")
        if record.get("pci"):
            self.pcifront()

    def netfront(self, fe: str) -> None:
        """netback_changed() (drivers/net/xen-netfront.c): Initialising -> Connected once
        the backend is at InitWait (the rings and event channel written first); Closed
        when it closes; nothing at all when the backend is gone (XenbusStateUnknown:
        netfront never recovers from a dead driver domain)."""
        assert self.conn is not None
        state, be = read(self.conn, f"{fe}/state"), read(self.conn, f"{fe}/backend")
        if state is None or be is None:
            return
        self.watch(f"{be}/state")
        be_state = read(self.conn, f"{be}/state")
        if state == "1" and be_state == "2":
            for key, value in dom0net.RING_NODES:
                self.conn.write(f"{fe}/{key}", value)
            self.conn.write(f"{fe}/state", "4")
            self.log(f"xen_netfront: {fe} connected to {be}")
        elif state not in ("5", "6") and be_state in ("5", "6"):
            self.conn.write(f"{fe}/state", "6")  # xenbus_frontend_closed()

    def netback(self, be: str) -> None:
        """xen-netback's probe (InitWait) and frontend_changed() (Connected when the
        frontend is and the hotplug script ran; Closing/Closed after it; Closed when the
        frontend vanished), and ``xl devd`` once userspace runs: vif-bridge online writes
        hotplug-status, offline removes the backend path (libxl__device_destroy() as the
        driver domain: it may remove only what it owns)."""
        assert self.conn is not None
        state, online = read(self.conn, f"{be}/state"), read(self.conn, f"{be}/online")
        fe = read(self.conn, f"{be}/frontend")
        if state is None or fe is None:
            return
        self.watch(f"{fe}/state")
        fe_state = read(self.conn, f"{fe}/state")
        if state == "1" and online == "1":
            self.conn.write(f"{be}/state", "2")
            state = "2"
        hotplug = read(self.conn, f"{be}/hotplug-status")
        if state in ("2", "4") and online == "1":
            if self.booted and hotplug != "connected":
                self.conn.write(f"{be}/hotplug-status", "connected")
                hotplug = "connected"
            if state == "2" and fe_state == "4" and hotplug == "connected":
                state = dom0net.connect_backend(self.conn, fe, be)
        if state in ("2", "4", "5") and fe_state in (None, "6"):
            self.conn.write(f"{be}/state", "6")
            state = "6"
        elif state in ("2", "4") and fe_state == "5":
            self.conn.write(f"{be}/state", "5")
        if self.booted and state == "6" and online == "0":
            path_cleanup(self.conn, be)
            self.log(f"xl devd: vif-bridge offline, removed {be}")
            return
        if fe.startswith("/local/domain/0/"):
            dom0net.netfront_in_dom0(self.proc.dom0, fe, be, read(self.conn, f"{be}/state"))

    def pcifront(self) -> None:
        """xen-pcifront connects, and dom0's pciback answers."""
        assert self.conn is not None and self.domid is not None
        self.write_if(self.conn, "device/pci/0/state", "4")
        self.write_if(self.proc.dom0, f"/local/domain/0/backend/pci/{self.domid}/0/state", "4")


def record_sysrq(domid: int, key: str) -> None:
    record = record_of(domid)
    if record is not None:
        update_record(domid, sysrq=[*record.get("sysrq", []), key])
