"""`orchestrate`: boot (default), --dry-run, check, plan, status, review, watch, shutdown.

The commands and their options are the tables at the end of this module, parsed by
`orchestrator.commandline` the same in any order. Imports stay lazy: `orchestrate
--version` and argument errors must not pay for structlog, tenacity or psutil
(cloud-init's lesson: start-up is boot time).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from orchestrator import __version__, cli_after
from orchestrator.cli_support import DEFAULT_UNITS, json_log, load
from orchestrator.commandline import Argument, Command, CommandLine, Option
from orchestrator.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK


def main(argv: list[str] | None = None) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        # a unit path or value with bytes that are not UTF-8 is shown escaped, not a traceback
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    command, args = COMMAND_LINE.parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(command.run(args))
    except KeyboardInterrupt:  # before the boot's own handling started, or after it
        print(f"orchestrate: interrupted (exit {EXIT_INTERRUPTED})", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


def _check(args: argparse.Namespace) -> int:
    config = load(args, sys.stdout)
    if config is None:
        return EXIT_INVALID
    for note in config.notes:
        print(f"note: {note}")
        print(f"      hint: {note.hint}")
    print(f"{config.units_dir}: ok, {len(config.domains)} domains")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    from orchestrator.topology import build_topology

    config = load(args, sys.stdout)
    if config is None:
        return EXIT_INVALID
    topology = build_topology(config)
    for i, wave in enumerate(topology.waves, start=1):
        print(f"wave {i}: {', '.join(wave)}")
        for name in wave:
            for edge in topology.edges:
                if edge.after == name:
                    print(f"  {edge.before} -> {edge.after}  ({edge.reason})")
    passthrough = config.passthrough()
    for bdf in sorted(passthrough):
        print(f"passthrough: {bdf} -> {passthrough[bdf].name} (after fetch-images)")
    for server, client in topology.ipc_pairs:
        print(f"vchan: {server} serves {client}")
    for domain in config.domains:
        for index, vif in enumerate(domain.vifs):
            if vif.backend is None:
                when = "served by dom0, in the xl config"
            elif vif.attached_later:
                when = (f"created without it; attached once {vif.backend} is ready "
                        "(xl network-attach)")
            else:
                when = f"in the xl config: {domain.name} is created once {vif.backend} is ready"
            print(f"vif: {domain.name} vif[{index}] -> {vif.backend or 'dom0'}: {when}")
    return EXIT_OK


def _review(args: argparse.Namespace) -> int:
    """Stdlib only, no unit files needed: with --units, the exact needs of each domain."""
    from orchestrator.capture import CaptureError
    from orchestrator.review import review_path

    needs = None
    if args.units:
        from orchestrator.topology import build_topology

        config = load(args, sys.stderr)
        if config is None:
            return EXIT_INVALID
        topology = build_topology(config)
        # whatever it waits for at its creation, ready or only created
        needs = {name: topology.needs(name) + topology.created_needs(name)
                 for name in topology.names}
    where = f"orchestrate review: {args.capture}"
    try:
        review = review_path(args.capture, args.boot, needs)
    except OSError as exc:
        print(f"orchestrate review: cannot read {args.capture}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_INVALID
    except CaptureError as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.boot is not None and review.boot is None:
        print(f"{where}: there is no boot {args.boot}: the capture holds "
              f"{review.boots_total} (--boot 1 to {review.boots_total})", file=sys.stderr)
        return EXIT_INVALID
    if args.svg and review.boot is not None:
        from orchestrator.review_svg import render_svg

        try:
            Path(args.svg).write_text(render_svg(review), encoding="ascii")
        except OSError as exc:
            print(f"{where}: cannot write the chart to {args.svg}: {exc.strerror or exc}",
                  file=sys.stderr)
            return EXIT_INVALID
    if args.json:
        from orchestrator.review_json import dumps

        sys.stdout.write(dumps(review))
    else:
        from orchestrator.review_text import report

        sys.stdout.write(report(review, args.capture))
    return review.exit_code


def _resume(host: Any, config: Any, state: Any, log: Any) -> None:
    """A run earlier in this boot (its state file is on tmpfs) may have been killed: say
    so, and keep the devices' original drivers it recorded before it moved them."""
    from orchestrator.state import DomainRecord, UnreadableState, read_state_file

    path = f"{config.host.state_dir}/state.json"
    try:
        previous = read_state_file(host.path(path))
    except FileNotFoundError:
        return
    except UnreadableState as exc:  # a record only: never a reason to stop the boot
        log.warning("warning", text=f"ignoring {path}: {exc.reason}; this boot starts "
                    f"afresh and writes a new one")
        return
    running = [name for name, step in previous.steps.items() if step.status == "running"]
    how = previous.verdict or (f"killed during {running[0]}" if running else "unfinished")
    log.info("note", text=f"an earlier run of this boot: {how}; converging from there")
    state.original_drivers = {bdf: driver for bdf, driver in previous.original_drivers.items()
                              if driver and driver != "pciback"}
    # what this power cycle has seen and done: the journal goes on, dom0 still owns the
    # nodes it wrote, and the vifs it attached keep their devids
    state.journal = previous.journal
    state.xenstore_written = previous.xenstore_written
    state.domains = {name: DomainRecord(restarts=record.restarts, vifs=record.vifs)
                     for name, record in previous.domains.items()}


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _boot(args: argparse.Namespace) -> int:
    # Units first: invalid units exit 2 before the logging stack is even imported.
    config = load(args, sys.stderr)
    if config is None:
        return EXIT_INVALID

    from orchestrator import log as logmod

    logmod.configure(args.log_format, args.debug)

    from orchestrator.dryrun import DryRunHost
    from orchestrator.host import Host

    host = (DryRunHost if args.dry_run else Host)(
        root=args.root, tools_path=config.host.tools_path,
        command_timeout=config.host.command_timeout)
    # JSON lines beside the console, for `orchestrate review` and machines
    with json_log(args, host, config) as log:
        return _boot_with(args, host, config, log)


def _boot_with(args: argparse.Namespace, host: Any, config: Any, log: Any) -> int:
    from orchestrator import log as logmod
    from orchestrator.context import Context
    from orchestrator.errors import OrchestratorError
    from orchestrator.runlock import exclusive
    from orchestrator.runner import run_boot
    from orchestrator.state import BootState
    from orchestrator.topology import build_topology

    topology = build_topology(config)
    state = BootState(mode="dry-run" if args.dry_run else "boot",
                      started_uptime=logmod.uptime())
    waves = " | ".join(", ".join(w) for w in topology.waves)
    log.info("start", version=__version__, pid=os.getpid(), root=args.root,
             mode="dry run" if args.dry_run else "boot")
    log.info("units loaded", units=config.units_dir, domains=len(config.domains), waves=waves)
    try:
        # one orchestrate acts at a time (a follower step waits for the boot to end)
        with exclusive(host, config.host.state_dir, log, config.host.boot_deadline, "boot"):
            _resume(host, config, state, log)
            ctx = Context(config=config, topology=topology, host=host, state=state, log=log,
                          skip_version_check=args.skip_preflight)
            return run_boot(ctx, debug=args.debug)
    except OrchestratorError as exc:  # the lock: another orchestrate never let go
        log.error("step failed", step="boot", error=exc.message)
        log.error("hint", hint=exc.hint)
        return EXIT_FAILED


def _nonempty(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _count(value: str) -> int:
    if not value.isdigit() or len(value) > 9:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number 0..999999999")
    return int(value)


def _directory(value: str) -> str:
    if not value or not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is not a directory")
    return value


OPTIONS = (
    Option("--units", f"unit directory (default {DEFAULT_UNITS}, else ./units)", "DIR",
           convert=_nonempty),
    Option("--root", "join every system path onto DIR (default /)", "DIR", default="/",
           convert=_directory),
    Option("--log-format", "console (default: lines for a serial console) or json",
           "FORMAT", default="console", choices=("console", "json")),
    Option("--debug", "show every argv and tracebacks of internal errors"),
    Option("--dry-run", "print every action it would take; change nothing"),
    Option("--skip-preflight", "only warn when the toolstack and the hypervisor versions "
           "differ (a version pair the check does not know yet; expect xl to fail)"),
    Option("--check", "compare xenstore and the vifs with the plan; exit 1 naming every "
           "difference"),
    Option("--json", "one JSON document (review: schemas/review-v1.schema.json)"),
    Option("--svg", "also write a boot chart (a self-contained SVG) to FILE", "FILE",
           convert=_nonempty),
    Option("--boot", "review power cycle N of the capture (default: the last with lines of "
           "orchestrate)", "N", convert=_count),
)

COMMANDS = (
    Command("boot", "run the boot (the default)", _boot,
            options=("--dry-run", "--skip-preflight")),
    Command("check", "validate the unit files only", _check),
    Command("plan", "print the waves and the edges behind them", _plan),
    Command("status", "the last boot, each domain's state and current domid", cli_after.status,
            options=("--check", "--json")),
    Command("review", "read a serial capture: steps, domains, critical path, verdict, "
            "first failure", _review, options=("--json", "--svg", "--boot"),
            arguments=(Argument("capture", "the raw serial capture (a file; - reads stdin)"),)),
    Command("watch", "follow the domains after the boot and keep their plumbing true (the "
            "orchestrator-watch service; runs until stopped)", cli_after.watch),
    Command("shutdown", "stop the domains in reverse dependency order (OpenRC's stop)",
            cli_after.shutdown, options=("--dry-run",)),
)

COMMAND_LINE = CommandLine(
    prog="orchestrate",
    description="Bring a stateless Xen dom0's domains up from cold boot, then exit.",
    epilog="exit codes: 0 ok, 1 a step failed, 2 invalid units or usage, 130 interrupted",
    version=f"orchestrate {__version__}",
    commands=COMMANDS,
    options=OPTIONS,
    global_options=("--units", "--root", "--log-format", "--debug"),
    default_command="boot",
)
