"""The background process ``xl create`` leaves per domain: xl's monitor ``xl-<name>``
(create_domain() after do_daemonize(), tools/xl/xl_vmcontrol.c:1000-1126) and, as the
stand-in's hypervisor runs no vCPUs, the guest itself (guest.py).

It sleeps in select() on two xenstore connections (dom0's, with xl's @releaseDomain watch;
the guest's, with the guest kernel's watches), a signal wake-up pipe (SIGUSR1: the
hypervisor changed this domain, e.g. ``xl unpause``; SIGTERM: stop) and the next instant
the guest's behaviour names (ready_after, crash_after, ...). Idle, it does not wake. Every
wake-up runs ``step()``, which compares what is with what should be and acts.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import traceback
from contextlib import suppress
from pathlib import Path
from typing import Any

import xlstate
import xswire
from xlstandin.cfg import DomainConfig
from xlstandin.common import ERROR_FAIL, in_root, libxl_log, say, standin, xenstored_gone, xl_log
from xlstandin.hypervisor import record_of, update_record
from xswire import XsError


def start_monitor(xs: xswire.Client, domid: int, name: str, monitor: bool) -> int:
    """do_daemonize("xl-<name>") (xl_utils.c:255-290): the log is /var/log/xen/xl-<name>.log;
    without /var/log/xen the child dies and xl exits 3 with the domain left running (then
    only the guest is played, by a process named ``fake-guest``, and nobody applies
    on_poweroff/on_reboot/on_crash). With ``xl create -e`` there is no monitor either."""
    log_dir = in_root("/var/log/xen")
    if not monitor:
        spawn(domid, name, None, monitor=False)
        return 0
    if not log_dir.is_dir():
        say("xl: fatal error: xl_utils.c:277: No such file or directory: logfile = open("
            "fullname, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)")
        child = os.fork()
        if child == 0:
            os._exit(1)
        os.waitpid(child, 0)
        libxl_log("libxl_exec.c:117", "libxl_report_child_exitstatus",
                  f"domain monitoring daemonizing child [{child}] exited with error status 1")
        spawn(domid, name, None, monitor=False)
        return -ERROR_FAIL
    xs.close()
    spawn(domid, name, log_dir / f"xl-{name}.log", monitor=True)
    return 0


def spawn(domid: int, name: str, logfile: Path | None, monitor: bool) -> None:
    """Double-fork a detached process (new session, stdio away from our caller's pipes)
    that registers itself before ``xl create`` returns."""
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child:
        os.close(ready_w)
        os.waitpid(child, 0)
        select.select([ready_r], [], [], 5.0)
        os.close(ready_r)
        return
    code = 0
    try:
        os.close(ready_r)
        os.setsid()
        if os.fork():
            os._exit(0)
        with suppress(OSError):
            Path("/proc/self/comm").write_text("xl" if monitor else "fake-guest")
        null = os.open(os.devnull, os.O_RDWR)
        out = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if logfile \
            else null
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        kind = "monitor" if monitor else "fake-guest"
        xlstate.register_process(standin(), kind, os.getpid(), name=name)
        process = DomainProcess(domid, name, monitor)  # handles SIGUSR1 from here on
        adopt(domid, monitor)  # so xlstate.kick() may signal it only now
        os.write(ready_w, b"1")
        os.close(ready_w)
        code = process.run()
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def adopt(domid: int, monitor: bool) -> None:
    """Record this process as the one that plays ``domid`` (xlstate.kick() finds it)."""
    update_record(domid, monitor={"pid": os.getpid(), "start": xlstate.start_time(os.getpid()),
                                  "is_monitor": monitor})


class DomainProcess:
    """xl's monitor for one domain name and the guest that runs under it, across restarts
    (each restart is a new domid and a fresh boot, with the same process)."""

    def __init__(self, domid: int, name: str, monitor: bool) -> None:
        from xlstandin.guest import Guest

        self.domid: int | None = domid
        self.name, self.monitor = name, monitor
        self.done = False
        self.death_handled = False
        self.next_wake: float | None = None
        self.restart: tuple[float, DomainConfig, int] | None = None  # (when, config, boot)
        self.dom0 = xswire.Client(timeout=5.0)
        self.dom0.watch("@releaseDomain", "xl-death")  # libxl_evenable_domain_death()
        self.guest = Guest(self, domid)
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGUSR1, lambda *_: None)  # only wakes select()

    def _on_term(self, signum: int, frame: Any) -> None:
        self.done = True

    def wake_at(self, when: float) -> None:
        """Run step() again at ``when`` (time.time()) even if nothing happens."""
        if self.next_wake is None or when < self.next_wake:
            self.next_wake = when

    def run(self) -> int:
        xl_log(f"Waiting for domain {self.name} (domid {self.domid}) to die "
               f"[pid {os.getpid()}]")
        deadline = time.time() + xlstate.lifetime()
        while not self.done:
            self.next_wake = None
            try:
                self.step()
            except (OSError, XsError) as err:
                if xenstored_gone():
                    return 0
                say(f"xl (stand-in): xenstore error, retrying: {err!r}")  # a race, or a bug
                self.wake_at(time.time() + 0.1)
            if self.done:
                break
            if self.dom0.events or (self.guest.conn and self.guest.conn.events):
                self.dom0.events.clear()
                self.guest.clear_events()
                continue
            if not self.wait(deadline):
                return 0
        self.guest.close()
        self.dom0.close()
        return 0

    def wait(self, deadline: float) -> bool:
        """Sleep until a xenstore event, a signal or the next wake-up; False to exit."""
        until = min(deadline, self.next_wake or deadline)
        readable = [self.dom0.fileno(), self._wake_r, *self.guest.fds()]
        ready = select.select(readable, [], [], max(0.0, until - time.time()))[0]
        if not ready and time.time() >= deadline:
            return False
        if self._wake_r in ready:
            os.read(self._wake_r, 512)
        if self.dom0.fileno() in ready:
            try:
                self.dom0.pump()
            except (OSError, ConnectionError):
                return False  # xenstored went away: so does xl's monitor
        if set(self.guest.fds()) & set(ready):
            self.guest.pump()
        return True

    def step(self) -> None:
        from xlstandin.monitor import handle_domain_death, restart_now

        if self.domid is None:  # between two domains: xl's restart sleeps, then creates
            assert self.restart is not None
            if time.time() >= self.restart[0]:
                restart_now(self)
            else:
                self.wake_at(self.restart[0])
            return
        record = record_of(self.domid)
        if record is None or record["state"] == "dying":  # LIBXL_EVENT_TYPE_DOMAIN_DEATH
            if self.monitor:
                xl_log(f"Domain {self.domid} has been destroyed.")
            self.done = True
            return
        if record["state"] == "shutdown":  # LIBXL_EVENT_TYPE_DOMAIN_SHUTDOWN
            self.guest.close()
            if not self.monitor:
                self.done = True  # the guest is dead and nobody applies the actions
            elif not self.death_handled:
                self.death_handled = True
                handle_domain_death(self, record)
            return
        self.guest.step(record)

    def new_domain(self, domid: int) -> None:
        """After a restart: follow the new domain (xl_vmcontrol.c:1013)."""
        from xlstandin.guest import Guest

        adopt(domid, self.monitor)
        self.domid, self.death_handled, self.restart = domid, False, None
        self.guest = Guest(self, domid)
        xl_log(f"Waiting for domain {self.name} (domid {domid}) to die [pid {os.getpid()}]")
        self.wake_at(time.time())  # the new guest boots: step() again at once
