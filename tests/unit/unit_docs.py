"""Unit files as Python data, for tests that break them: the example units read into dicts,
changed, and written back as TOML (values tomllib reads back exactly, inf and nan too)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLE_UNITS

Doc = dict[str, Any]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Raw:
    """TOML text written as is (e.g. a hex integer too long for str())."""

    text: str


def toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() < 4000 else hex(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def dumps(doc: Doc) -> str:
    """Top-level values, then [tables] and [[arrays of tables]] (one level, as units use)."""
    lines = []
    tables = []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((f"[{toml_key(key)}]", value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables += [(f"[[{toml_key(key)}]]", item) for item in value]
        else:
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for header, table in tables:
        lines.append(header)
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Units:
    """The example units as data: change `host` and `domains[name]`, then `write(dir)`."""

    host: Doc = field(default_factory=dict)
    domains: dict[str, Doc] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes, written last
    # relative path -> how to make it a special file (FIFO, device, link...), made next
    special: dict[str, Callable[[Path], None]] = field(default_factory=dict)

    @classmethod
    def example(cls) -> Units:
        host = tomllib.loads((EXAMPLE_UNITS / "host.toml").read_text())
        domains = {p.stem: tomllib.loads(p.read_text())
                   for p in sorted((EXAMPLE_UNITS / "domains").glob("*.toml"))}
        return cls(host=host, domains=domains)

    def write(self, units: Path) -> Path:
        (units / "domains").mkdir(parents=True, exist_ok=True)
        (units / "host.toml").write_text(dumps(self.host))
        for name, doc in self.domains.items():
            (units / "domains" / f"{name}.toml").write_text(dumps(doc))
        for rel, make in self.special.items():
            target = units / rel
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            make(target)
        for rel, data in self.raw.items():
            (units / rel).write_bytes(data)
        return units

    def small_domain(self, name: str, /, **keys: Any) -> Doc:
        """A minimal valid domain (32 MiB, a kernel of its own), plus `keys`."""
        kernel = {"url": f"guest/{name}", "sha256": hashlib.sha256(name.encode()).hexdigest(),
                  "size": 1 << 20}
        doc: Doc = {"memory": 32, **keys, "kernel": kernel}
        self.domains[name] = doc
        return doc
