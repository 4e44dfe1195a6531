"""Unit files: the model of a boot's intent, and load_units to read it from TOML.

- `model`: the frozen dataclasses everything downstream reads (no I/O, no TOML);
- `reader`: opening unit files safely and a typed reader over TOML tables;
- `rules`: what one value may be, with its limits and their upstream reasons;
- `parse`: load_units, and TOML -> model per file;  `validate`: checks across files,
  and notes. All problems at once (InvalidUnits), or a Config.

Importing this package imports only the model: `topology` depends on the model, and
`validate` on `topology`, so `load_units` pulls the loader in when it is called.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.units.model import (
    Config,
    DomainUnit,
    HostUnit,
    Image,
    NicConfig,
    Readiness,
    UnitNote,
    Vif,
)

__all__ = ["Config", "DomainUnit", "HostUnit", "Image", "NicConfig", "Readiness", "UnitNote",
           "Vif", "load_units"]


def load_units(units_dir: str | Path) -> Config:
    """Load and validate every unit file under units_dir; raise InvalidUnits listing all."""
    from orchestrator.units.parse import load_units as load

    return load(units_dir)
