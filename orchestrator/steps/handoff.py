"""bind-devices-to-pciback: hand every passthrough device from its driver to xen-pciback.

Runs only after a successful fetch. The sysfs writes are the manual form of what
`xl pci-assignable-add` does (XEN-FACTS.md "PCI handoff"); on any failure every device
moved so far goes back to its original driver and dom0's NIC gets its address back.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.context import Context
from orchestrator.errors import OrchestratorError
from orchestrator.steps.fetch import bring_nic_up
from orchestrator.steps.preflight import pci_driver

PCIBACK = "pciback"
DEVICES = "/sys/bus/pci/devices"
DRIVERS = "/sys/bus/pci/drivers"


@dataclass(frozen=True)
class SysfsWrite:
    path: str
    value: str

    def __str__(self) -> str:
        return f"{self.path} <- {self.value.strip() or '(empty)'}"


def handoff_writes(bdf: str, driver: str | None) -> list[SysfsWrite]:
    writes = []
    if driver:
        writes.append(SysfsWrite(f"{DEVICES}/{bdf}/driver/unbind", bdf))
    writes += [
        SysfsWrite(f"{DRIVERS}/{PCIBACK}/new_slot", bdf),
        SysfsWrite(f"{DRIVERS}/{PCIBACK}/bind", bdf),
    ]
    return writes


def rollback_writes(bdf: str, driver: str | None) -> list[SysfsWrite]:
    """pciback unbind, remove_slot, clear driver_override, then the original driver
    (or drivers_probe, which lets the kernel pick it, when we never knew it)."""
    writes = [
        SysfsWrite(f"{DRIVERS}/{PCIBACK}/unbind", bdf),
        SysfsWrite(f"{DRIVERS}/{PCIBACK}/remove_slot", bdf),
        SysfsWrite(f"{DEVICES}/{bdf}/driver_override", "\n"),
    ]
    if driver:
        writes.append(SysfsWrite(f"{DRIVERS}/{driver}/bind", bdf))
    else:
        writes.append(SysfsWrite("/sys/bus/pci/drivers_probe", bdf))
    return writes


def bind_devices_to_pciback(ctx: Context) -> None:
    host = ctx.host
    devices = list(ctx.config.passthrough())
    if not devices:
        ctx.log.info("note", text="no passthrough devices")
        return
    if not host.exists(f"{DRIVERS}/{PCIBACK}"):
        host.refuse(OrchestratorError(
            f"{DRIVERS}/{PCIBACK} is missing: xen-pciback is not loaded",
            hint="add xen-pciback to xen.modules in host.toml and to the image's modules",
        ))
    for bdf in devices:
        driver = _original_driver(ctx, bdf)
        host.explain(f"if the handoff fails, {bdf} goes back to {driver or 'its driver'}:")
        for write in rollback_writes(bdf, driver):
            host.explain(f"  {write}")
    try:
        for bdf in devices:
            _move_to_pciback(ctx, bdf)
    except OrchestratorError as exc:
        ctx.log.error("note", text=f"handoff failed, rolling back: {exc.message}")
        return_devices(ctx, list(reversed(ctx.state.moved_to_pciback)))
        raise


def _original_driver(ctx: Context, bdf: str) -> str | None:
    recorded = ctx.state.original_drivers.get(bdf)
    if recorded and recorded != PCIBACK:
        return recorded
    current = pci_driver(ctx, bdf)
    if current and current != PCIBACK:
        ctx.state.original_drivers[bdf] = current
        return current
    # A dry run on a machine without this device shows the plan with a placeholder.
    placeholder: str | None = f"<driver of {bdf}>"
    return ctx.host.outcome(lambda: None, placeholder)


def _move_to_pciback(ctx: Context, bdf: str) -> None:
    host = ctx.host
    if pci_driver(ctx, bdf) == PCIBACK:
        ctx.log.info("already done", what=f"{bdf} on {PCIBACK}")
        return
    driver = _original_driver(ctx, bdf)
    ctx.state.moved_to_pciback.append(bdf)
    for write in handoff_writes(bdf, pci_driver(ctx, bdf) or driver):
        host.write_sysfs(write.path, write.value)
    if not host.wait_until(f"{bdf} is bound to {PCIBACK}",
                           lambda: pci_driver(ctx, bdf) == PCIBACK, 2.0):
        raise OrchestratorError(
            f"{bdf} is not bound to {PCIBACK} after bind (driver now: "
            f"{pci_driver(ctx, bdf) or 'none'})",
            hint="see dmesg for pciback's reason; is the device in use or hidden by "
            "another stub (vfio-pci)?",
        )


def return_devices(ctx: Context, bdfs: list[str]) -> None:
    """Give devices back to their original drivers and restore dom0's NIC address.

    Best effort over all devices: one that will not go back does not stop the others,
    and each failure is logged with what to do.
    """
    host = ctx.host
    nic = ctx.config.host.nic
    for bdf in bdfs:
        driver = ctx.state.original_drivers.get(bdf)
        try:
            now = pci_driver(ctx, bdf)
            if now in (PCIBACK, None):  # None: unbound, pciback refused it
                for write in rollback_writes(bdf, driver)[0 if now else 1:]:
                    host.write_sysfs(write.path, write.value)
            def is_back(bdf: str = bdf, driver: str | None = driver) -> bool:
                return _is_back(ctx, bdf, driver)

            back = host.wait_until(f"{bdf} is back on {driver or 'a driver'}", is_back, 3.0)
            if not back:
                raise OrchestratorError(f"driver now {pci_driver(ctx, bdf) or 'none'}")
            ctx.log.info("note", text=f"{bdf} is back on {pci_driver(ctx, bdf)}")
            if bdf in ctx.state.moved_to_pciback:
                ctx.state.moved_to_pciback.remove(bdf)
        except OrchestratorError as exc:
            ctx.log.error("note", text=f"could not give {bdf} back to "
                          f"{driver or 'its driver'}: {exc.message}")
            ctx.log.error("hint", hint=f"echo {bdf} > /sys/bus/pci/drivers/"
                          f"{driver or '<driver>'}/bind, or reboot")
    if nic is not None and nic.bdf in bdfs:
        try:
            host.wait_until(f"{nic.interface} reappears",
                            lambda: host.exists(f"/sys/class/net/{nic.interface}"), 3.0)
            bring_nic_up(ctx, nic)
        except OrchestratorError as exc:
            ctx.log.error("note", text=f"could not restore {nic.interface} "
                          f"{nic.address}: {exc.message}")


def _is_back(ctx: Context, bdf: str, driver: str | None) -> bool:
    now = pci_driver(ctx, bdf)
    return now not in (None, PCIBACK) and (driver is None or now == driver)


def settle_after_abort(ctx: Context) -> None:
    """The boot ends early (a failure, an interrupt, a bug) after the handoff began: every
    device dom0 moved whose domain does not run goes back to its driver (the NIC with its
    address); each that stays, stays with a running domain, and the console says so."""
    from orchestrator.xl import Xl

    passthrough = ctx.config.passthrough()
    moved = [bdf for bdf in passthrough
             if bdf in ctx.state.original_drivers and pci_driver(ctx, bdf) == PCIBACK]
    if not moved:
        return
    try:
        none: dict[str, tuple[int, str]] = {}
        running: dict[str, tuple[int, str]] | None = ctx.host.outcome(
            Xl(ctx.host, ctx.config.host.command_timeout).states, none)
    except Exception:  # noqa: BLE001 - whatever broke the boot may break xl too
        running = None
    back = []
    for bdf in moved:
        owner = passthrough[bdf].name
        if running is None:
            ctx.log.error("note", text=f"{bdf} stays on {PCIBACK}: could not tell whether "
                          f"{owner} runs (`xl list` failed)")
            ctx.log.error("hint", hint=f"if {owner} does not run: echo {bdf} > "
                          f"{DRIVERS}/{PCIBACK}/unbind; echo {bdf} > {DRIVERS}/"
                          f"{ctx.state.original_drivers[bdf] or '<driver>'}/bind")
        elif owner is not None and owner in running:
            ctx.log.info("note", text=f"{bdf} stays with {owner} (domid "
                         f"{running[owner][0]}), which runs")
        else:
            back.append(bdf)
    if back:
        return_devices(ctx, back)
