"""What dom0's image needs, read from the unit sets it carries. Pure (over loaded units).

The seeds added bash to dom0 only for Xen's hotplug scripts (`#!/bin/bash`, seed 000's
thread), and dom0 runs those only for a device whose backend is dom0 itself: with a vif's
`backend=<domain>`, libxl leaves the hotplug to that driver domain's `xl devd`
(XEN-FACTS.md "xl"). So when every vif names its backend, dom0 needs neither the scripts,
nor bash, nor netback and the bridge; with `[nic] after_handoff = "vif"` it needs
netfront for its own vif served by net-vm, which orchestrate loads from xen.modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.units import Config

# Modules a dom0 backend needs (netback serves the vif; Xen's default vif-bridge script
# puts it on a bridge).
BACKEND_MODULES = ("xen-netback", "bridge")
FRONTEND_MODULE = "xen-netfront"


@dataclass(frozen=True)
class Dom0Needs:
    modules: tuple[str, ...]  # kernel modules the image carries (closed over depends= later)
    boot_modules: tuple[str, ...]  # loaded by rc.dom0 at boot (/etc/modules): the drivers
    backends: tuple[str, ...]  # every vif dom0 would serve, as "<unit file>: vif[<i>]"
    hotplug_scripts: bool  # /etc/xen/scripts, and bash to run them

    @property
    def bash(self) -> bool:
        return self.hotplug_scripts


def is_vif_handoff(config: Config) -> bool:
    """dom0 takes a vif served by the NIC's new owner after the handoff."""
    nic = config.host.nic
    return nic is not None and nic.after_handoff == "vif"


def dom0_needs(configs: Sequence[Config], drivers: Sequence[str]) -> Dom0Needs:
    """configs: every unit set baked into the image (the boot picks one); drivers: dom0's
    hardware drivers, loaded at boot (the NIC's, for the fetch before the handoff)."""
    backends = tuple(
        f"{domain.source}: vif[{i}]"
        for config in configs for domain in config.domains
        for i, vif in enumerate(domain.vifs) if vif.backend is None)
    modules: list[str] = []
    for config in configs:
        modules += config.host.modules
    if backends:
        modules += BACKEND_MODULES
    return Dom0Needs(modules=_unique([*modules, *drivers]), boot_modules=_unique(drivers),
                     backends=backends, hotplug_scripts=bool(backends))


def module_problems(configs: Sequence[Config]) -> list[str]:
    """What a unit set needs dom0 to load must be in its xen.modules (orchestrate loads
    them): netback to serve a vif itself, netfront for its own vif after the handoff."""
    problems = []
    for config in configs:
        served = [d.source for d in config.domains if any(v.backend is None for v in d.vifs)]
        if served and "xen-netback" not in config.host.modules:
            problems.append(f"{config.host.source}: xen.modules lacks xen-netback, which "
                            f"dom0 needs to serve the vifs of {', '.join(served)} (no "
                            f"backend=): add it, or name a driver domain in each vif")
        if is_vif_handoff(config) and FRONTEND_MODULE not in config.host.modules:
            problems.append(f"{config.host.source}: xen.modules lacks {FRONTEND_MODULE}, "
                            f"which dom0's own vif needs (nic.after_handoff = \"vif\"): "
                            "add it, or set after_handoff = \"none\"")
    return problems


def interpreter_problems(root: Path) -> list[str]:
    """Every executable script's `#!` interpreter is in the image (a script whose
    interpreter was left out fails only when something runs it)."""
    problems = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or not path.stat().st_mode & 0o111:
            continue
        with path.open("rb") as f:
            head = f.read(128)
        if not head.startswith(b"#!"):
            continue
        words = head[2:].split(b"\n", 1)[0].decode("ascii", "replace").split()
        if not words:
            problems.append(f"/{path.relative_to(root)}: an empty #! line")
            continue
        interpreter = root / words[0].lstrip("/")
        if not (interpreter.exists() or interpreter.is_symlink()):
            problems.append(f"/{path.relative_to(root)}: its interpreter {words[0]} is not "
                            "in the image")
    return problems


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))
