"""Keep every vif of a domain served by its backend domain's current domid.

netfront never recovers from a dead backend, and xl's restart of a driver domain runs no
hook: the toolstack must `xl network-detach` the dead vif (libxl cleans the frontend up
alone when the backend is gone) and `xl network-attach` it again with the same spec once
the new backend runs (XEN-FACTS.md "After the boot"; Qubes does this in
qubes/vm/mix/net.py). Where a vif's backend is comes from libxl's dom0-only records
(orchestrator/probes.py), never from the frontend's own say-so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from orchestrator.context import Context
from orchestrator.errors import OrchestratorError
from orchestrator.ipc import Domid, placeholder_domid
from orchestrator.probes import Device, devices, is_connected
from orchestrator.units import Vif
from orchestrator.xl import Xl
from orchestrator.xlcfg import vif_spec


def served_by(ctx: Context, backend: str) -> Domid | None:
    """The domid a vif with backend=<name> must be served by now: the backend's, once it
    is ready (a driver domain serves vifs only once it runs `xl devd`)."""
    record = ctx.state.domains.get(backend)
    if record is None or record.state != "ready":
        return None
    return record.domid


def repair_vifs(ctx: Context, xl: Xl, name: str, domid: Domid,
                alive: Collection[Domid], cause: str) -> int:
    """Detach each of the unit's vifs whose backend domain is dead, attach each that has
    none while its backend is ready; returns how many vifs were attached."""
    domain = ctx.config.domain(name)
    record = ctx.journal.record(name)
    store = ctx.xenstore()
    present = {d.devid: d for d in devices(store, domid, ("vif",))}
    attached = 0
    for index, vif in enumerate(domain.vifs):
        if vif.backend is None:
            continue  # dom0 serves it: no driver domain can die under it
        want = served_by(ctx, vif.backend)
        devid = record.vifs.get(str(index), config_devid(domain.vifs, index))
        device = present.get(devid) if devid is not None else None
        if device is not None and device.backend_domid == want:
            continue
        if device is not None:
            if device.backend_domid in alive:
                continue  # served by a live domain: the backend is on its way up
            _detach(ctx, xl, name, device, vif.backend)
            present.pop(device.devid)
            record.vifs.pop(str(index), None)
        if want is None:
            continue
        device = _attach(ctx, xl, name, domid, index, vif_spec(vif), set(present), cause)
        if device is not None:
            present[device.devid] = device
        attached += 1
    return attached


def config_devid(vifs: tuple[Vif, ...], index: int) -> int | None:
    """The devid libxl gave a vif of the xl config: its place among the config's vifs
    (xl_parse numbers them in order); None for one attached later."""
    if vifs[index].attached_later:
        return None
    return sum(1 for v in vifs[:index] if not v.attached_later)


def attach_later_vifs(ctx: Context, xl: Xl, name: str, domid: Domid,
                      backend_done: Callable[[str], bool]) -> list[str]:
    """During the boot: each vif of `name` left out of its xl config is attached once its
    backend is ready (backend_done(backend) waits until the backend's own bring-up ended).
    A backend that did not get ready leaves the vif unattached, said; the follower attaches
    it when the backend comes up. Returns the backends that were not ready."""
    domain = ctx.config.domain(name)
    store = ctx.xenstore()
    missing = []
    for index, vif in enumerate(domain.vifs):
        if not vif.attached_later or vif.backend is None:
            continue
        if not backend_done(vif.backend) or served_by(ctx, vif.backend) is None:
            ctx.log.warning("warning", text=f"{name}'s vif[{index}] is not attached: "
                            f"{vif.backend} is not ready")
            missing.append(vif.backend)
            continue
        before = {d.devid for d in devices(store, domid, ("vif",))}
        _attach(ctx, xl, name, domid, index, vif_spec(vif), before, cause="")
    return missing


def _detach(ctx: Context, xl: Xl, name: str, device: Device, backend: str) -> None:
    xl.network_detach(name, device.devid, ctx.remaining(ctx.config.host.command_timeout))
    ctx.log.info("vif detached", domain=name, devid=device.devid, backend=backend,
                 backend_domid=device.backend_domid,
                 cause=f"its backend domid {device.backend_domid} is gone")


def _attach(ctx: Context, xl: Xl, name: str, domid: Domid, index: int, spec: str,
            before: set[int], cause: str) -> Device | None:
    """`xl network-attach`, then until the vif is Connected; None in a dry run."""
    domain = ctx.config.domain(name)
    backend = domain.vifs[index].backend or "Domain-0"
    started = time.monotonic()
    xl.network_attach(name, spec, ctx.remaining(ctx.config.host.command_timeout))
    store = ctx.xenstore()
    if ctx.host.dry_run:  # no devid before a real attach: say what would be waited for
        store.wait([], lambda _: None, domain.readiness.timeout,
                   what=f"{name}'s vif[{index}] to connect to {backend}")
        ctx.log.info("vif attached", domain=name, devid=index, backend=backend,
                     backend_domid=placeholder_domid(backend), seconds=None, cause=cause)
        return None
    new = [d for d in devices(store, domid, ("vif",)) if d.devid not in before]
    if not new:
        raise OrchestratorError(
            f"`xl network-attach {name} {spec}` returned but libxl recorded no new vif",
            hint=f"see /var/log/xen/xl-{name}.log and the backend's `xl devd`")
    device = new[0]
    ctx.journal.record(name).vifs[str(index)] = device.devid
    timeout = ctx.remaining(domain.readiness.timeout)
    try:
        # the backend goes Connected only after the frontend did (netback): its state,
        # written by the driver domain, is the one watched; the guest's is only read
        def connected(_: str | None) -> str | None:
            ctx.check_cancelled()
            return "connected" if is_connected(store, device) else None

        store.wait([f"{device.backend}/state"], connected, timeout,
                   what=f"{name}'s vif {device.devid} to connect")
    except OrchestratorError as exc:
        exc.hint = exc.hint or (f"is `xl devd` running in {backend}? see its console "
                                f"/var/log/xen/console/guest-{backend}.log")
        raise
    ctx.log.info("vif attached", domain=name, devid=device.devid, backend=backend,
                 backend_domid=device.backend_domid,
                 seconds=round(time.monotonic() - started, 2), cause=cause)
    return device
