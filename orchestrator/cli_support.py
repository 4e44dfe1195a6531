"""What every command of `orchestrate` shares: the unit directory, loading the units with
every problem printed, and the console + JSON lines log of a run."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.errors import EXIT_INVALID

DEFAULT_UNITS = "/etc/orchestrator/units"


def units_dir(args: argparse.Namespace) -> str:
    if args.units:
        return str(args.units)
    if Path(DEFAULT_UNITS, "host.toml").exists():
        return DEFAULT_UNITS
    return "units"


def load(args: argparse.Namespace, out: Any) -> Any:
    from orchestrator.errors import InvalidUnits
    from orchestrator.units import load_units

    units = units_dir(args)
    try:
        return load_units(units)
    except InvalidUnits as exc:
        for problem in exc.problems:
            print(problem, file=out)
        print(f"orchestrate: {exc.message} in {units}; nothing was touched (exit "
              f"{EXIT_INVALID})", file=out)
        return None


@contextlib.contextmanager
def json_log(args: argparse.Namespace, host: Any, config: Any) -> Iterator[Any]:
    """The console log, and its JSON lines appended to <state>/boot.jsonl (not in a dry
    run): the boot, the follower and the shutdown of one power cycle in one file."""
    from orchestrator import log as logmod

    if host.dry_run:
        logmod.configure(args.log_format, args.debug)
        host.log = logmod.get_logger()
        yield host.log
        return
    json_file = logmod.open_json_lines(host.path(config.host.state_dir) / "boot.jsonl")
    try:
        logmod.configure(args.log_format, args.debug, json_file=json_file)
        host.log = logmod.get_logger()
        yield host.log
    finally:
        if json_file is not None:
            try:
                json_file.close()
            except OSError:
                pass  # the tee said so already


# --------------------------------------------------------------------------------------
# The command line: one Option entry per option, one Command entry per command. A
# command's own options are named in its `options`; the global ones apply to all.
