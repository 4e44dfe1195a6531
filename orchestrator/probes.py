"""Readiness probes, one per readiness mode (DESIGN.md "Readiness"), and the device checks.

A probe answers for one domain under one domid: is it ready (the reason), and which
xenstore paths to watch until it is. Everything a guest writes is `untrusted_*`: compared
as bytes with what it must be, never decoded, never followed as a path. Which devices a
domain has and where their backends are comes from libxl's dom0-only records
(/libxl/<domid>/device/<kind>/<devid>/{frontend,backend}, tools/libs/light/libxl_device.c
libxl__device_generic_add: "This means we don't need to trust the backend"), never from the
frontend's own `backend` key, which the guest can rewrite to point anywhere.

What is watched is chosen so that a guest cannot make dom0 busy: a guest's own frontend
state is read, never watched; the backend's state (written by the driver domain) is, and
the waits coalesce events (orchestrator/xenstore.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from orchestrator.ipc import Domid
from orchestrator.units import DomainUnit
from orchestrator.xenstore import Xenstore

XENBUS_CONNECTED = b"4"  # XenbusStateConnected (xen/include/public/io/xenbus.h)
# Device kinds whose frontend and backend walk the xenbus states to Connected. Console 0
# never does (xenconsoled serves it outside the state machine).
STATEFUL_KINDS = ("vif", "vbd", "pci")
_BACKEND_RE = re.compile(r"^/local/domain/(\d{1,5})/backend/([a-z0-9]+)/(\d{1,5})/(\d{1,9})$")


@dataclass(frozen=True)
class Device:
    """One device of a domain as libxl recorded it (dom0's own record)."""

    kind: str
    devid: int
    frontend: str
    backend: str

    @property
    def backend_domid(self) -> int:
        match = _BACKEND_RE.match(self.backend)
        assert match is not None  # checked when read
        return int(match[1])


def devices(store: Xenstore, domid: Domid, kinds: tuple[str, ...] = STATEFUL_KINDS
            ) -> list[Device]:
    """The domain's devices from /libxl/<domid>/device (paths written by libxl in dom0)."""
    out = []
    for kind in kinds:
        base = f"/libxl/{domid}/device/{kind}"
        for devid in store.directory(base):
            if not devid.isdigit():
                continue
            frontend = store.read(f"{base}/{devid}/frontend")
            backend = store.read(f"{base}/{devid}/backend")
            match = _BACKEND_RE.match(backend or "")
            if frontend is None or match is None or match[3] != str(domid):
                continue  # half-written by libxl right now, or removed: not a device yet
            out.append(Device(kind, int(devid), frontend, backend or ""))
    return out


def is_connected(store: Xenstore, device: Device) -> bool:
    """Frontend and backend both XenbusState 4. The frontend's state is the guest's word
    (it only speaks for the guest itself); the backend's is the driver domain's."""
    untrusted_frontend_state = store.read_bytes(f"{device.frontend}/state")
    untrusted_backend_state = store.read_bytes(f"{device.backend}/state")
    return (untrusted_frontend_state == XENBUS_CONNECTED
            and untrusted_backend_state == XENBUS_CONNECTED)


class Probe(Protocol):
    def watch(self, store: Xenstore, domid: Domid) -> list[str]:
        """Paths whose change may make check() pass."""
        ...

    def check(self, store: Xenstore, domid: Domid) -> str | None:
        """Why the domain is ready, or None while it is not."""
        ...

    def describe(self) -> str: ...


class RunningProbe:
    """`running`: the domain exists and has not crashed (the caller checks that with xl)."""

    def watch(self, store: Xenstore, domid: Domid) -> list[str]:
        return []

    def check(self, store: Xenstore, domid: Domid) -> str | None:
        return "running"

    def describe(self) -> str:
        return "running"


@dataclass(frozen=True)
class KeyProbe:
    """`xenstore:<key>`: the guest wrote <key> under its home (any value: its own word)."""

    key: str

    def watch(self, store: Xenstore, domid: Domid) -> list[str]:
        return [f"/local/domain/{domid}/{self.key}"]

    def check(self, store: Xenstore, domid: Domid) -> str | None:
        untrusted_value = store.read_bytes(f"/local/domain/{domid}/{self.key}")
        return self.key if untrusted_value is not None else None  # "data/ready": written

    def describe(self) -> str:
        return f"xenstore:{self.key}"


@dataclass(frozen=True)
class ConnectedProbe:
    """`connected`: every device the unit gives the domain is there (libxl's records) and
    Connected on both ends."""

    vifs: int
    pci: bool

    def watch(self, store: Xenstore, domid: Domid) -> list[str]:
        # new records appear under /libxl (a vif attached later); a backend's state is
        # written by its driver domain
        return [f"/libxl/{domid}/device",
                *(f"{d.backend}/state" for d in devices(store, domid))]

    def check(self, store: Xenstore, domid: Domid) -> str | None:
        found = devices(store, domid)
        vifs = [d for d in found if d.kind == "vif"]
        if len(vifs) < self.vifs or (self.pci and not any(d.kind == "pci" for d in found)):
            return None
        if not found or not all(is_connected(store, d) for d in found):
            return None
        return "connected"

    def describe(self) -> str:
        return "connected"


def probe_for(domain: DomainUnit) -> Probe:
    readiness = domain.readiness
    if readiness.mode == "xenstore" and readiness.key:
        return KeyProbe(readiness.key)
    if readiness.mode == "connected":
        return ConnectedProbe(vifs=len(domain.vifs), pci=bool(domain.pci))
    return RunningProbe()
