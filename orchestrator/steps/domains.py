"""create-domains: every domain as soon as the domains it needs are ready.

Per domain, through the lifecycle (orchestrator/lifecycle.py): `xl create -p` (created) ->
provision xenstore (provisioned) -> `xl unpause` (booting) -> its readiness probe (ready),
each wait under its own timeout and the boot's deadline. The scheduler starts each domain
once its needs are done (orchestrator/scheduler.py).

A re-run never harms a running domain. What already runs under its name is adopted, never
duplicated: it is unpaused if a killed run left it paused, its vifs whose backend died are
re-attached to the backend's current domid, and its readiness is probed; if it is not
ready it is said so, and it keeps its devices, its map entry and its grants. Only a domain
this run created and that did not come up is destroyed, and only then are its devices
given back to dom0 (DESIGN.md "After the boot").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from orchestrator import dom0net, lifecycle, plumbing, scheduler
from orchestrator.context import Context
from orchestrator.errors import OrchestratorError
from orchestrator.ipc import Domid
from orchestrator.probes import probe_for
from orchestrator.steps.finish import xl_monitors
from orchestrator.steps.handoff import return_devices
from orchestrator.units import DomainUnit
from orchestrator.vifs import attach_later_vifs, repair_vifs
from orchestrator.xl import Xl, is_shut_down, logs_hint, shutdown_cause
from orchestrator.xlcfg import render_xl_config

ALIVE_INTERVAL = 5.0  # seconds between `xl list` checks while a domain boots
ALIVE_ON_RELEASE = 0.5  # ... and after some domain shut down or died (@releaseDomain)
DOM0 = 0

Observed = dict[str, tuple[int, str]]  # `xl list`: name -> (domid, state flags)


def xl_config_path(ctx: Context, name: str) -> str:
    return f"{ctx.config.host.state_dir}/xl/{name}.cfg"


def write_xl_configs(ctx: Context) -> None:
    image_dir = ctx.config.host.image_dir
    for wave in ctx.topology.waves:
        for name in wave:
            domain = ctx.config.domain(name)
            text = render_xl_config(
                domain,
                str(ctx.host.path(f"{image_dir}/{domain.kernel.file_name}")),
                str(ctx.host.path(f"{image_dir}/{domain.ramdisk.file_name}"))
                if domain.ramdisk else None,
            )
            ctx.host.write_file(xl_config_path(ctx, name), text)
            for line in text.splitlines():
                ctx.host.explain(f"  | {line}")


def create_domains(ctx: Context) -> None:
    write_xl_configs(ctx)
    xl = Xl(ctx.host, ctx.config.host.command_timeout)
    order = [name for wave in ctx.topology.waves for name in wave]
    none: Observed = {}
    observed = ctx.host.outcome(xl.states, none)
    # Adopt what already runs first, all at once: every provisioning below then sees the
    # whole running set (a map entry of a running domain is never dropped and re-added).
    for name in order:
        if name in observed:
            adopt(ctx, name, *observed[name])
    if any(lifecycle.is_present(ctx.journal.record(n)) for n in order):
        plumbing.provision(ctx)
    alive = {domid for domid, _ in observed.values()} | {DOM0}
    finished = {name: threading.Event() for name in order}
    # created and provisioned (or its bring-up ended): what a client that does not wait
    # for its vchan servers' readiness waits for
    provisioned: dict[str, Future[None]] = {name: Future() for name in order}

    def task(name: str) -> None:
        try:
            bring_up(ctx, xl, ctx.config.domain(name), observed, alive,
                     lambda backend: _wait_finished(ctx, finished[backend]),
                     lambda: scheduler.reach(provisioned[name]))
        finally:
            finished[name].set()

    scheduler.walk(order, scheduler.forwards(ctx.topology), task,
                   ctx.host.parallelism(len(order)), interrupted=ctx.cancelled.set,
                   early=scheduler.forwards_early(ctx.topology), milestones=provisioned)
    ctx.partial.extend(n for n in ctx.state.not_ready() if n not in ctx.partial)


def adopt(ctx: Context, name: str, domid: int, flags: str) -> None:
    was = ctx.journal.last_domid(name)
    cause = f"already running as domid {domid}"
    if was is not None and was != domid:
        cause += f" (was domid {was}: restarted since)"
    if is_shut_down(flags):
        ctx.journal.apply(name, lifecycle.adopt, domid, cause)
        ctx.journal.apply(name, lifecycle.crash, shutdown_cause(
            name, flags, ctx.config.domain(name).shutdown_actions))
        return
    ctx.journal.apply(name, lifecycle.adopt, domid, cause)


def _wait_finished(ctx: Context, event: threading.Event) -> bool:
    """Until a domain's own bring-up ended (bounded by the boot's deadline)."""
    while not event.wait(timeout=min(1.0, ctx.remaining(ctx.config.host.boot_deadline))):
        pass
    return True


_CREATED = frozenset({lifecycle.DomainState.PROVISIONED, lifecycle.DomainState.BOOTING,
                      lifecycle.DomainState.READY, lifecycle.DomainState.ADOPTED})


def bring_up(ctx: Context, xl: Xl, domain: DomainUnit, observed: Observed,
             alive: set[int], backend_done: Callable[[str], bool],
             provisioned: Callable[[], None]) -> None:
    """provisioned(): called once the domain exists with its plumbing (its clients that
    do not wait for its readiness start then)."""
    name = domain.name
    record = ctx.journal.record(name)
    state = lifecycle.state_of(record)
    if state is lifecycle.DomainState.ADOPTED and record.domid is not None:
        provisioned()  # running, and provisioned with the whole running set already
        converge_adopted(ctx, xl, domain, record.domid, observed[name][1], alive)
        return
    if state is not lifecycle.DomainState.PENDING:
        return  # crashed and preserved: said when adopted
    for need in ctx.topology.needs(name):
        if ctx.state.domains[need].state != lifecycle.DomainState.READY:
            ctx.journal.apply(name, lifecycle.skip, f"it needs {need}, which is not ready")
            return
    for need in ctx.topology.created_needs(name):
        if ctx.state.domains[need].state not in _CREATED:
            ctx.journal.apply(name, lifecycle.skip, f"it needs {need}, which was not created")
            return
    try:
        create_and_boot(ctx, xl, domain, backend_done, provisioned)
    except OrchestratorError as exc:
        fail_ours(ctx, xl, domain, exc)


def create_and_boot(ctx: Context, xl: Xl, domain: DomainUnit,
                    backend_done: Callable[[str], bool],
                    provisioned: Callable[[], None]) -> None:
    name = domain.name
    started = time.monotonic()
    domid = xl.create_paused(name, xl_config_path(ctx, name),
                             ctx.remaining(ctx.config.host.create_timeout))
    ctx.journal.apply(name, lifecycle.create, domid, round(time.monotonic() - started, 2))
    plumbing.provision(ctx)  # each node written is its own line: the cause stays short
    ctx.journal.apply(name, lifecycle.provision, "xenstore written")
    provisioned()
    xl.unpause(name, domid)
    ctx.journal.apply(name, lifecycle.unpause)
    missing = attach_later_vifs(ctx, xl, name, domid, backend_done)
    if missing and domain.readiness.mode == "connected":
        raise OrchestratorError(
            f"its vif's backend {missing[0]} is not ready, so {name} cannot get connected",
            hint=f"see {missing[0]}'s lines above")
    reason = wait_ready(ctx, xl, domain, domid)
    ctx.journal.apply(name, lifecycle.ready, reason, round(time.monotonic() - started, 2))
    connect_dom0(ctx, xl, name)


def connect_dom0(ctx: Context, xl: Xl, name: str) -> None:
    """When `name` takes dom0's NIC and dom0's network moves to a vif it serves."""
    want = dom0net.wanted(ctx)
    if want is None or want[1] != name:
        return
    try:
        dom0net.connect(ctx, xl, alive=[DOM0])
    except OrchestratorError as exc:
        ctx.partial.append("dom0's vif")
        ctx.log.error("note", text=f"dom0's network through {name}: {exc.message}")
        ctx.log.error("hint", hint=exc.hint or logs_hint(name))


def converge_adopted(ctx: Context, xl: Xl, domain: DomainUnit, domid: Domid, flags: str,
                     alive: set[int]) -> None:
    """A running domain of ours: make it true again, never harm it."""
    name = domain.name
    try:
        if "p" in flags:  # an earlier run was stopped between `create -p` and unpause
            xl.unpause(name, domid)
        repair_vifs(ctx, xl, name, domid, alive, cause="its backend restarted")
        reason = wait_ready(ctx, xl, domain, domid)
    except OrchestratorError as exc:
        record = ctx.journal.record(name)
        record.error = f"runs but is not ready: {exc.message}"
        ctx.log.warning("warning", text=f"{name} (domid {domid}) {record.error}; it keeps "
                        "its devices and plumbing")
        ctx.log.warning("hint", hint=exc.hint or logs_hint(name))
        return
    ctx.journal.apply(name, lifecycle.ready, reason)
    connect_dom0(ctx, xl, name)


def fail_ours(ctx: Context, xl: Xl, domain: DomainUnit, exc: OrchestratorError) -> None:
    """A domain this run created did not come up: destroy it, drop its plumbing, and give
    its devices back to dom0 (dom0 keeps its NIC when net-vm does not come up)."""
    name = domain.name
    record = ctx.journal.record(name)
    if record.domid is not None:
        # xl's monitor goes first: between destroying a crashed domain and creating it
        # again it sleeps (xl_vmcontrol.c), and a destroy in that window finds nothing
        # while the monitor then brings the domain back with its devices
        none: list[tuple[int, str]] = []
        for pid, monitored in ctx.host.outcome(xl_monitors, none):
            if monitored == name:
                ctx.host.terminate(pid, f"xl's monitor of {name}")
        xl.destroy(name, record.domid)
    ctx.journal.apply(name, lifecycle.fail, exc.message, destroyed=True)
    ctx.log.error("hint", hint=exc.hint or logs_hint(name))
    try:
        plumbing.provision(ctx)  # drops its map entry and the grants naming it
    except OrchestratorError as perr:
        ctx.log.error("note", text=f"could not clean xenstore after {name}: {perr.message}")
    if domain.pci:
        return_devices(ctx, list(domain.pci))


def wait_ready(ctx: Context, xl: Xl, domain: DomainUnit, domid: Domid) -> str:
    """Until the domain's readiness probe passes; raises if it crashed, was restarted by
    xl, is gone, or the timeout passed."""
    probe = probe_for(domain)
    timeout = ctx.remaining(domain.readiness.timeout)
    store = ctx.xenstore()
    last_check = [0.0]

    def alive(event: str | None) -> None:
        """`xl list` is a process (costly under emulation): run it when xenstored says some
        domain shut down or died (@releaseDomain), else at most every ALIVE_INTERVAL."""
        now = time.monotonic()
        # a watch fires once when it is set: that first @releaseDomain is not news
        wait = ALIVE_ON_RELEASE if event == "@releaseDomain" else ALIVE_INTERVAL
        if now - last_check[0] < wait:
            return
        last_check[0] = now
        try:
            state = xl.states().get(domain.name)
        except OrchestratorError as exc:  # unknown is no verdict: the deadline still holds
            ctx.log.warning("warning", text=f"{domain.name}: liveness unknown: {exc.message}")
            return
        if state is None:
            raise OrchestratorError(f"{domain.name} (domid {domid}) is gone before it was "
                                    "ready", hint=_console_hint(domain.name))
        if state[0] != domid:  # xl's monitor applied on_reboot/on_crash "restart"
            raise OrchestratorError(
                f"{domain.name} (domid {domid}) crashed or rebooted before it was ready and "
                f"was restarted as domid {state[0]}", hint=_console_hint(domain.name))
        if "c" in state[1]:
            raise OrchestratorError(f"{domain.name} (domid {domid}) crashed before it was "
                                    "ready", hint=_console_hint(domain.name))

    def ready(event: str | None) -> str | None:
        ctx.check_cancelled()
        reason = probe.check(store, domid)
        if reason is None or probe.describe() == "running":
            alive(event)
        return reason

    try:
        return store.wait([*probe.watch(store, domid), "@releaseDomain"], ready, timeout,
                          what=f"{domain.name} {probe.describe()}")
    except OrchestratorError as exc:
        if exc.hint is None:
            exc.hint = _console_hint(domain.name)
        raise


def _console_hint(name: str) -> str:
    return f"see the guest's console: /var/log/xen/console/guest-{name}.log"
