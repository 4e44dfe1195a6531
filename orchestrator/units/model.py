"""The frozen intent of one boot, as the unit files state it. Pure data, no I/O.

`orchestrator.units.parse` builds these from TOML and `orchestrator.units.validate`
checks them across files; everything downstream (topology, xl configs, the steps) reads
only these classes. The reference for every field is the README's unit file table.

Frozen dataclasses (callers use dataclasses.replace on them), but UnitNote, a message, is
a NamedTuple: a frozen dataclass costs ~0.5 ms to define (its methods are generated with
exec), every run imports this module, and start-up is boot time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# Defaults that more than one place needs (the parser, hand-built units in tests).
DEFAULT_STOP_TIMEOUT = 30.0
# xl actions that create the domain again, with a new domid (xl.cfg(5); XEN-FACTS.md,
# "After the boot": handle_domain_death runs no hook of ours).
RESTART_ACTIONS = ("restart", "rename-restart", "coredump-restart")


@dataclass(frozen=True)
class Image:
    """A file fetched from the build server, pinned by size and sha256."""

    url: str
    sha256: str
    size: int
    file_name: str


@dataclass(frozen=True)
class Vif:
    ip: str | None = None  # one or more addresses, space-separated, canonical spelling
    backend: str | None = None
    mac: str | None = None  # lower case
    bridge: str | None = None
    script: str | None = None
    # True: in the xl config, so the domain is created only once the backend is ready (the
    # guest has its network at first boot). False: the domain boots without it and the vif
    # is attached (`xl network-attach`) once the backend is ready.
    at_create: bool = False

    @property
    def attached_later(self) -> bool:
        return self.backend is not None and not self.at_create


@dataclass(frozen=True)
class Readiness:
    """What "ready" means for a domain (DESIGN.md, "Readiness")."""

    mode: str  # "running" | "connected" | "xenstore"
    key: str | None
    timeout: float

    def describe(self) -> str:
        return f"xenstore:{self.key}" if self.mode == "xenstore" else self.mode


@dataclass(frozen=True)
class DomainUnit:
    name: str
    source: str
    type: str
    memory: int
    vcpus: int
    kernel: Image
    ramdisk: Image | None
    extra: str
    pci: tuple[str, ...]
    vifs: tuple[Vif, ...]
    after: tuple[str, ...]
    readiness: Readiness
    serve: tuple[str, ...]
    connect: tuple[str, ...]
    on_poweroff: str
    on_reboot: str
    on_crash: str
    # seconds `orchestrate shutdown` gives `xl shutdown` before `xl destroy`
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    # [ipc] wait_for_servers: created once its vchan servers are ready (True) or once they
    # are created and provisioned, booting beside them (False)
    wait_for_servers: bool = True

    @property
    def images(self) -> tuple[Image, ...]:
        return (self.kernel,) if self.ramdisk is None else (self.kernel, self.ramdisk)

    @property
    def shutdown_actions(self) -> dict[str, str]:
        """{"on_reboot": "restart", ...}: what xl does when the domain shuts down."""
        return {"on_poweroff": self.on_poweroff, "on_reboot": self.on_reboot,
                "on_crash": self.on_crash}

    def restart_keys(self) -> tuple[str, ...]:
        """The on_* keys whose action makes xl create this domain again (a new domid)."""
        return tuple(key for key, action in self.shutdown_actions.items()
                     if action in RESTART_ACTIONS)


@dataclass(frozen=True)
class NicConfig:
    """dom0's physical NIC: used for the fetch, then handed to pciback."""

    bdf: str
    interface: str
    address: str  # "a.b.c.d/len" or "dhcp"
    gateway: str | None
    # dom0's network after the handoff: "none" (dom0 has none, seed 002's end state) or
    # "vif" (a vif served by the domain that takes the NIC; the address and default route
    # move there, seed 000)
    after_handoff: str = "none"
    vif_mac: str | None = None  # the vif's MAC (default: derived from the NIC's BDF)
    vif_script: str | None = None  # the hotplug script the driver domain runs for it


@dataclass(frozen=True)
class HostUnit:
    source: str
    build_server: str
    request_timeout: float
    fetch_attempts: int
    fetch_deadline: float
    nic: NicConfig | None
    modules: tuple[str, ...]
    tools_path: tuple[str, ...]
    xenstored_args: tuple[str, ...]
    xenconsoled_args: tuple[str, ...]
    autoballoon_off: bool
    image_dir: str
    state_dir: str
    boot_deadline: float
    xenstored_timeout: float
    command_timeout: float
    create_timeout: float
    domain_map: str
    rendezvous: str


class UnitNote(NamedTuple):
    """Something true of valid units that a person should know; printed, never fatal.

    `orchestrate check` prints `note: file: key: text` and `hint: ...`; a boot can print
    the same two lines as a "note" and a "hint" event.
    """

    file: str
    key: str
    text: str
    hint: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.text}"


@dataclass(frozen=True)
class Config:
    """Everything the unit files say: the frozen intent of one boot."""

    units_dir: str
    host: HostUnit
    domains: tuple[DomainUnit, ...] = field(default_factory=tuple)
    # Filled by load_units: what `orchestrate check` and the boot both print.
    notes: tuple[UnitNote, ...] = ()

    def domain(self, name: str) -> DomainUnit:
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise KeyError(name)

    def images(self) -> list[tuple[Image, DomainUnit]]:
        """Every distinct image (by file name, i.e. content) and the first unit pinning it."""
        seen: dict[str, tuple[Image, DomainUnit]] = {}
        for domain in self.domains:
            for image in domain.images:
                seen.setdefault(image.file_name, (image, domain))
        return list(seen.values())

    def passthrough(self) -> dict[str, DomainUnit]:
        """Every PCI device passed through (BDF, lower case) and its domain, in unit order.

        The one definition of the list: the preflight, the handoff to pciback and `plan`
        all read it here. Validation guarantees each BDF is given to one domain only.
        """
        devices: dict[str, DomainUnit] = {}
        for domain in self.domains:
            for bdf in domain.pci:
                devices.setdefault(bdf, domain)
        return devices
