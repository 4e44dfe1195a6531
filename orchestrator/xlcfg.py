"""Render an xl domain configuration (xl.cfg(5)) from a DomainUnit. Pure.

Strings are written in double quotes. units.py already refused every value that would
need an escape inside them (quotes, backslashes, control characters), so no escaping
is needed here and what the unit says is exactly what xl reads.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.units import DomainUnit, Vif


def _q(value: str) -> str:
    return f'"{value}"'


def _list(items: list[str]) -> str:
    return "[ " + ", ".join(_q(i) for i in items) + " ]" if items else "[ ]"


def vif_spec(vif: Vif) -> str:
    """One vif= entry, e.g. `ip=10.0.5.103,backend=net-vm` (xl-network-configuration(5))."""
    parts = []
    for key in ("mac", "ip", "bridge", "script", "backend"):
        value = getattr(vif, key)
        if value is not None:
            parts.append(f"{key}={value}")
    return ",".join(parts)


def render_xl_config(domain: DomainUnit, kernel_path: str, ramdisk_path: str | None) -> str:
    lines = [
        f"# {domain.name}: rendered by orchestrate from {Path(domain.source).name}",
        f"name = {_q(domain.name)}",
        f"type = {_q(domain.type)}",
        f"kernel = {_q(kernel_path)}",
    ]
    if ramdisk_path is not None:
        lines.append(f"ramdisk = {_q(ramdisk_path)}")
    if domain.extra:
        lines.append(f"extra = {_q(domain.extra)}")
    lines += [
        f"memory = {domain.memory}",
        f"vcpus = {domain.vcpus}",
    ]
    if domain.pci:
        lines.append(f"pci = {_list(list(domain.pci))}")
    # a vif attached once its backend is ready is not in the config (orchestrator/vifs.py)
    at_create = [v for v in domain.vifs if not v.attached_later]
    if at_create:
        lines.append(f"vif = {_list([vif_spec(v) for v in at_create])}")
    lines += [
        f"on_poweroff = {_q(domain.on_poweroff)}",
        f"on_reboot = {_q(domain.on_reboot)}",
        f"on_crash = {_q(domain.on_crash)}",
    ]
    return "\n".join(lines) + "\n"
