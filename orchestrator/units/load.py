"""load_units: read every unit file, parse it, check it across files; all or nothing."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from orchestrator.errors import InvalidUnits, UnitProblem
from orchestrator.units.model import Config, UnitNote
from orchestrator.units.parse import parse_domain, parse_host
from orchestrator.units.reader import read_unit
from orchestrator.units.validate import cross_file_problems, restart_notes


def load_units(units_dir: str | Path) -> Config:
    """Load and validate every unit file under units_dir; raise InvalidUnits listing all."""
    base = Path(units_dir)
    problems: list[UnitProblem] = []
    if not base.is_dir():
        what = "is not a directory" if base.exists() else "not found"
        raise InvalidUnits([UnitProblem(str(base), "(directory)", what)])
    host_file = str(base / "host.toml")
    host = parse_host(host_file, read_unit(host_file, problems), problems)
    domain_dir = str(base / "domains")
    files, notes = _domain_files(domain_dir, problems)
    domains = []
    for path in files:
        data = read_unit(path, problems)
        if data is not None:
            domains.append(parse_domain(path, data, host, problems))
    config = Config(units_dir=str(base), host=host, domains=tuple(domains))
    problems.extend(cross_file_problems(config, domain_dir, all_read=len(domains) == len(files)))
    if problems:
        raise InvalidUnits(problems)
    return dataclasses.replace(config, notes=notes + restart_notes(config))


def _domain_files(domain_dir: str,
                  problems: list[UnitProblem]) -> tuple[list[str], tuple[UnitNote, ...]]:
    """`domains/*.toml`, sorted; anything else there is named in a note, not read."""
    try:
        if not stat.S_ISDIR(os.stat(domain_dir).st_mode):
            problems.append(UnitProblem(domain_dir, "(files)", "is not a directory"))
            return [], ()
        names = sorted(entry.name for entry in os.scandir(domain_dir))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        problems.append(UnitProblem(domain_dir, "(files)", f"cannot list: {exc.strerror}"))
        return [], ()
    units = [os.path.join(domain_dir, n) for n in names
             if n.endswith(".toml") and not n.startswith(".")]
    if not units:
        problems.append(UnitProblem(domain_dir, "(files)", "no domain units (*.toml) found"))
    notes = tuple(UnitNote(os.path.join(domain_dir, n), "(file)",
                           "ignored: only domains/*.toml are units",
                           "rename it to end in .toml to make it a unit, or move it away")
                  for n in names if not n.endswith(".toml") and not n.startswith("."))
    return units, notes
