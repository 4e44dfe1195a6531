"""dom0's network after the handoff, when host.toml says `nic.after_handoff = "vif"`.

Seed 000: "dom0's IP moves to the vif backend interface and routes through net-vm". Once
the domain that took the NIC is ready, dom0 gets a vif served by it (`xl network-attach 0
...`: a frontend in dom0, xen-netfront) and dom0's address and default route move to that
interface, found by its MAC. The trade-off (README, "dom0's network after the handoff"):
dom0 is on the network again, behind the driver domain, so a re-run can fetch an image;
with "none" (the default, seed 002's end state) dom0 has no network at all after the
handoff. The follower keeps this vif attached across a restart of the driver domain like
any other vif.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Collection

from orchestrator.context import Context
from orchestrator.errors import OrchestratorError
from orchestrator.ipc import Domid
from orchestrator.probes import Device, devices, is_connected
from orchestrator.steps.fetch import bring_nic_up
from orchestrator.units import NicConfig
from orchestrator.xl import Xl

DOM0 = 0


def wanted(ctx: Context) -> tuple[NicConfig, str] | None:
    """(dom0's NIC settings, the driver domain that serves its vif), or None."""
    nic = ctx.config.host.nic
    if nic is None or nic.after_handoff != "vif":
        return None
    owner = ctx.config.passthrough().get(nic.bdf)
    return (nic, owner.name) if owner is not None else None


def vif_mac(nic: NicConfig) -> str:
    """Given, or derived from the NIC's BDF: stable across boots and re-attaches, in Xen's
    OUI 00:16:3e, so dom0 finds its interface again."""
    if nic.vif_mac:
        return nic.vif_mac.lower()
    digest = hashlib.sha256(nic.bdf.encode()).digest()
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in (digest[0] & 0x7F, digest[1], digest[2]))


def vif_spec(nic: NicConfig, backend: str) -> str:
    parts = [f"mac={vif_mac(nic)}"]
    if nic.address != "dhcp":
        parts.append(f"ip={nic.address.split('/')[0]}")
    if nic.vif_script:
        parts.append(f"script={nic.vif_script}")
    parts.append(f"backend={backend}")
    return ",".join(parts)


def interface_with_mac(ctx: Context, mac: str) -> str | None:
    for name in ctx.host.listdir("/sys/class/net"):
        address = ctx.host.read_text(f"/sys/class/net/{name}/address")
        if address is not None and address.strip().lower() == mac:
            return name
    return None


def connect(ctx: Context, xl: Xl, alive: Collection[Domid]) -> None:
    """Converge dom0's vif: served by the driver domain's current domid, Connected, with
    dom0's address and route. Dead ones (their backend gone) are detached first."""
    want = wanted(ctx)
    if want is None:
        return
    nic, backend = want
    record = ctx.state.domains.get(backend)
    current = record.domid if record is not None and record.state == "ready" else None
    store = ctx.xenstore()
    mine = devices(store, DOM0, ("vif",))
    for device in mine:
        if device.backend_domid != current and device.backend_domid not in alive:
            xl.network_detach("0", device.devid, ctx.remaining(ctx.config.host.command_timeout))
            ctx.log.info("vif detached", domain="Domain-0", devid=device.devid,
                         backend=backend, backend_domid=device.backend_domid,
                         cause=f"its backend domid {device.backend_domid} is gone")
    if current is None:
        return
    if not any(d.backend_domid == current for d in mine):
        if _attach(ctx, xl, nic, backend, {d.devid for d in mine}) is None:
            return  # a dry run
    _configure(ctx, nic)


def _attach(ctx: Context, xl: Xl, nic: NicConfig, backend: str,
            before: set[int]) -> Device | None:
    started = time.monotonic()
    spec = vif_spec(nic, backend)
    xl.network_attach("0", spec, ctx.remaining(ctx.config.host.command_timeout))
    store = ctx.xenstore()
    if ctx.host.dry_run:
        ctx.log.info("vif attached", domain="Domain-0", devid=0, backend=backend,
                     backend_domid=f"<domid:{backend}>", seconds=None,
                     cause=f"dom0's network moves to {backend}")
        return None
    new = [d for d in devices(store, DOM0, ("vif",)) if d.devid not in before]
    if not new:
        raise OrchestratorError(f"`xl network-attach 0 {spec}` returned but libxl recorded "
                                "no new vif for dom0",
                                hint="see /var/log/xen/xl-Domain-0.log (or xl -vvv)")
    device = new[0]
    store.wait([f"{device.backend}/state"],
               lambda _: "connected" if is_connected(store, device) else None,
               ctx.remaining(ctx.config.domain(backend).readiness.timeout),
               what=f"dom0's vif to connect to {backend}")
    ctx.log.info("vif attached", domain="Domain-0", devid=device.devid, backend=backend,
                 backend_domid=device.backend_domid,
                 seconds=round(time.monotonic() - started, 2),
                 cause=f"dom0's network moves to {backend}")
    return device


def _configure(ctx: Context, nic: NicConfig) -> None:
    """dom0's address and default route on the vif (found by its MAC: netfront names it)."""
    mac = vif_mac(nic)
    host = ctx.host
    if not host.wait_until(f"an interface with MAC {mac} appears",
                           lambda: interface_with_mac(ctx, mac) is not None,
                           ctx.remaining(10.0)):
        raise OrchestratorError(
            f"dom0's vif is Connected but no interface has MAC {mac}",
            hint="is xen-netfront in xen.modules (host.toml) and in the dom0 image?")
    interface = interface_with_mac(ctx, mac) or ""
    bring_nic_up(ctx, dataclasses.replace(nic, interface=interface))
