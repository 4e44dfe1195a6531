"""create-domains: every domain as soon as the domains it needs are ready.

Per domain: `xl create -p` (paused) -> read the domid -> provision xenstore -> `xl unpause`
-> wait for readiness, each wait with its own timeout. Domains whose needs are met start
together (the waves of `orchestrate plan` are the coarse view of the same graph; starting
each domain as soon as its own needs are ready is never slower). A domain already running
under its name is adopted, never duplicated. A failure skips its dependents and
independent domains still start; a failed domain is destroyed and the devices it held
go back to dom0, so dom0 keeps its NIC when net-vm does not come up.
"""

from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from orchestrator.context import Context
from orchestrator.errors import OrchestratorError
from orchestrator.ipc import Domid
from orchestrator.state import DomainRecord
from orchestrator.steps.handoff import return_devices
from orchestrator.steps.provision import provision
from orchestrator.units import DomainUnit
from orchestrator.xl import Xl
from orchestrator.xlcfg import render_xl_config

ALIVE_INTERVAL = 5.0  # seconds between `xl list` checks while a domain boots
ALIVE_ON_RELEASE = 0.5  # ... and after some domain shut down or died (@releaseDomain)


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
    order = [name for wave in ctx.topology.waves for name in wave]
    done = {name: threading.Event() for name in order}
    xl = Xl(ctx.host, ctx.config.host.command_timeout)
    # Adopt what already runs first, all at once: every provisioning below then sees the
    # whole running set (a map entry of a running domain is never dropped and re-added).
    none: dict[str, tuple[int, str]] = {}
    running = ctx.host.outcome(xl.states, none)
    for name in order:
        if name in running:
            domid, flags = running[name]
            ctx.state.domains[name] = DomainRecord(status="adopted", domid=domid)
            ctx.log.info("domain state", domain=name, state=f"already running as domid "
                         f"{domid}: adopted")
        else:
            ctx.state.domains[name] = DomainRecord()

    def task(name: str) -> None:
        try:
            for need in ctx.topology.needs(name):
                if not done[need].wait(timeout=ctx.remaining(ctx.config.host.boot_deadline)):
                    raise OrchestratorError(
                        f"gave up waiting for {need}, which {name} needs: the boot deadline "
                        f"of {ctx.config.host.boot_deadline:g} s passed",
                        hint=f"see {need}'s lines above; raise deadlines.boot in "
                        f"{ctx.config.host.source} if it is just slow")
                if ctx.state.domains[need].status not in ("ready", "adopted"):
                    ctx.state.domains[name] = DomainRecord(status="skipped",
                                                           error=f"{need} is not ready")
                    ctx.log.warning("domain skipped", domain=name,
                                    reason=f"it needs {need}, which is not ready")
                    return
            bring_up(ctx, xl, ctx.config.domain(name))
        except OrchestratorError as exc:
            fail(ctx, xl, name, exc)
        finally:
            done[name].set()

    # A dry run prints in one stable order: one worker, tasks in wave order.
    with ThreadPoolExecutor(max_workers=ctx.host.parallelism(len(order)),
                            thread_name_prefix="domain") as pool:
        futures = [pool.submit(contextvars.copy_context().run, task, n) for n in order]
        for future in futures:
            future.result()

    ctx.partial.extend(ctx.state.failed_domains())


def bring_up(ctx: Context, xl: Xl, domain: DomainUnit) -> None:
    host, name = ctx.host, domain.name
    adopted = ctx.state.domains[name]
    if adopted.status == "adopted" and adopted.domid is not None:
        provision(ctx)
        flags = host.outcome(lambda: xl.states().get(name, (0, ""))[1], "")
        if "p" in flags:  # an earlier run was stopped between `create -p` and unpause
            xl.unpause(name, adopted.domid)
        wait_ready(ctx, xl, domain, adopted.domid)
        return
    started = time.monotonic()
    timeout = ctx.remaining(ctx.config.host.create_timeout)
    domid = xl.create_paused(name, xl_config_path(ctx, name), timeout)
    ctx.state.domains[name] = DomainRecord(status="created", domid=domid)
    ctx.log.info("domain state", domain=name, state=f"created paused as domid {domid}")
    provision(ctx)
    xl.unpause(name, domid)
    wait_ready(ctx, xl, domain, domid)
    seconds = round(time.monotonic() - started, 2)
    ctx.state.domains[name] = DomainRecord(status="ready", domid=domid,
                                           create_to_ready=seconds)
    ctx.log.info("domain ready", domain=name, domid=domid, seconds=seconds)


def fail(ctx: Context, xl: Xl, name: str, exc: OrchestratorError) -> None:
    """Record the failure, destroy what was built, give its devices back to dom0."""
    record = ctx.state.domains.get(name) or DomainRecord()
    ctx.log.error("domain failed", domain=name, error=exc.message)
    if exc.hint:
        ctx.log.error("hint", hint=exc.hint)
    if record.domid is not None and record.status != "adopted":
        xl.destroy(name, record.domid)
    ctx.state.domains[name] = DomainRecord(status="failed", error=exc.message)
    try:
        provision(ctx)  # drops its map entry and rendezvous grants
    except OrchestratorError as perr:
        ctx.log.error("note", text=f"could not clean xenstore after {name}: {perr.message}")
    devices = list(ctx.config.domain(name).pci)
    if devices:
        return_devices(ctx, devices)


def wait_ready(ctx: Context, xl: Xl, domain: DomainUnit, domid: Domid) -> None:
    readiness = domain.readiness
    timeout = ctx.remaining(readiness.timeout)
    store = ctx.xenstore()
    home = f"/local/domain/{domid}"

    last_check = [0.0]

    def alive(event: str | None) -> None:
        """Raise if the domain crashed or is gone. `xl list` is a process (and costs a
        lot of CPU under emulation): run it when xenstored says some domain shut down or
        died (@releaseDomain), else at most every ALIVE_INTERVAL seconds."""
        now = time.monotonic()
        # a watch fires once when it is set: that first @releaseDomain is not news
        wait = ALIVE_ON_RELEASE if event == "@releaseDomain" else ALIVE_INTERVAL
        if now - last_check[0] < wait:
            return
        last_check[0] = now
        state = xl.states().get(domain.name)
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

    if readiness.mode == "xenstore":
        key = f"{home}/{readiness.key}"

        def ready(event: str | None) -> str | None:
            if store.read(key) is not None:
                return f"{key} written"
            alive(event)
            return None

        watch = [key, "@releaseDomain"]
    elif readiness.mode == "connected":

        def ready(event: str | None) -> str | None:
            if devices_connected(ctx, home):
                return "all devices connected"
            alive(event)
            return None

        # libxl wrote every frontend's `backend` key before `xl create` returned: watch
        # the backends' state too (a driver domain's backend is not under our home).
        watch = [f"{home}/device", "@releaseDomain", *backend_states(ctx, home)]
    else:

        def ready(event: str | None) -> str | None:
            alive(event)
            return "running"

        watch = ["@releaseDomain"]
    try:
        store.wait(watch, ready, timeout, what=f"{domain.name} {readiness.describe()}")
    except OrchestratorError as exc:
        if exc.hint is None:
            exc.hint = _console_hint(domain.name)
        raise


def backend_states(ctx: Context, home: str) -> list[str]:
    store = ctx.xenstore()
    out = []
    for kind in store.directory(f"{home}/device"):
        for dev in store.directory(f"{home}/device/{kind}"):
            backend = store.read(f"{home}/device/{kind}/{dev}/backend")
            if backend is not None:
                out.append(f"{backend}/state")
    return out


def devices_connected(ctx: Context, home: str) -> bool:
    """Every frontend under home/device and its backend are XenbusState 4 (Connected).

    Only nodes with a `backend` key are frontends: libxl also writes
    device/suspend/event-channel, which is no device and never has a state.
    """
    store = ctx.xenstore()
    frontends = 0
    for kind in store.directory(f"{home}/device"):
        for dev in store.directory(f"{home}/device/{kind}"):
            front = f"{home}/device/{kind}/{dev}"
            backend = store.read(f"{front}/backend")
            if backend is None:
                continue
            frontends += 1
            if store.read(f"{front}/state") != "4" or store.read(f"{backend}/state") != "4":
                return False
    return frontends > 0


def _console_hint(name: str) -> str:
    return f"see the guest's console: /var/log/xen/console/guest-{name}.log"
