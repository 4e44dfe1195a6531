"""Hostile and odd unit files, as edits of the example units: the case type and the edits.

Each case names the class it is counted in and every `file: key: problem` line the
loader must report (file relative to the units directory; `{units}` stands for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.unit.unit_docs import Units

DELETE = object()
SHA = "ab" * 32


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # the class it is counted in
    edit: Callable[[Units, Path], None]
    lines: tuple[str, ...]  # every problem, `file: key: problem`, file relative to units


def host(section: str, key: str, value: Any) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        table = u.host.setdefault(section, {})
        if value is DELETE:
            del table[key]
        else:
            table[key] = value
    return edit


def dom(name: str, key: str, value: Any, section: str | None = None
        ) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        table = u.domains[name] if section is None else u.domains[name].setdefault(section, {})
        if value is DELETE:
            del table[key]
        else:
            table[key] = value
    return edit


def vif(key: str, value: Any) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        u.domains["workload-vm"]["vif"][0][key] = value
    return edit


def add_vif(name: str, **keys: Any) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        u.domains[name].setdefault("vif", []).append({"backend": "net-vm", **keys})
    return edit


def both(*edits: Callable[[Units, Path], None]) -> Callable[[Units, Path], None]:
    def edit(u: Units, units: Path) -> None:
        for e in edits:
            e(u, units)
    return edit


def raw(rel: str, data: bytes) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        u.raw[rel] = data
    return edit


def special(rel: str, make: Callable[[Path], None]) -> Callable[[Units, Path], None]:
    """Replace a unit (or the domains directory) with a special file."""
    def edit(u: Units, _: Path) -> None:
        u.special[rel] = make
    return edit


def lone(key: str, value: Any) -> Callable[[Units, Path], None]:
    """A fourth domain, zz, that nothing refers to, with `key = value`."""
    def edit(u: Units, _: Path) -> None:
        u.small_domain("zz", **{key: value})
    return edit


def small_domains(count: int, name: Callable[[int], str], chain: bool = False,
                  cycle: bool = False, memory: int = 32) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        u.domains.clear()
        kernel = {"url": "guest/vmlinux", "sha256": SHA, "size": 1 << 20}
        for i in range(count):
            doc: dict[str, Any] = {"memory": memory, "on_reboot": "destroy", "kernel": kernel}
            if chain and i:
                doc["after"] = [name(i - 1)]
            if cycle and i == 0:
                doc["after"] = [name(count - 1)]
            u.domains[name(i)] = doc
    return edit


def three_chars(i: int) -> str:
    return f"{'abcdefghij'[i // 100]}{i % 100:02d}"


def c(id: str, kind: str, edit: Callable[[Units, Path], None], *lines: str) -> Case:
    return Case(id, kind, edit, lines)


SA = "domains/sa-vm.toml"
NET = "domains/net-vm.toml"
WL = "domains/workload-vm.toml"
ZZ = "domains/zz.toml"
H = "host.toml"
TIMEOUT_KEYS = [
    ("build_server.request_timeout", "0.1..600 seconds"),
    ("build_server.deadline", "1..86400 seconds"),
    ("deadlines.boot", "1..86400 seconds"),
    ("deadlines.xenstored", "0.1..3600 seconds"),
    ("deadlines.command", "0.1..3600 seconds"),
    ("deadlines.create", "0.1..3600 seconds"),
]


