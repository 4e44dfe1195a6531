"""The commands that follow the appliance after the boot: `status`, `watch`, `shutdown`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from orchestrator import __version__
from orchestrator.cli_support import json_log as _json_log
from orchestrator.cli_support import load as _load
from orchestrator.errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK


def status(args: argparse.Namespace) -> int:
    """The recorded boot, the live picture, and with --check every difference from the plan."""
    import json

    from orchestrator import log as logmod
    from orchestrator.context import Context, state_file
    from orchestrator.host import Host
    from orchestrator.state import UnreadableState, read_state_file
    from orchestrator.status import as_json, differences, domain_views, observe, render
    from orchestrator.topology import build_topology

    config = _load(args, sys.stderr)
    if config is None:
        return EXIT_INVALID
    logmod.configure("json" if args.json else args.log_format, args.debug)
    host = Host(root=args.root, tools_path=config.host.tools_path,
                command_timeout=config.host.command_timeout)
    path = host.path(state_file(config))
    try:
        state = read_state_file(path)
    except FileNotFoundError:
        print(f"no state file at {path}: orchestrate has not run since boot")
        return EXIT_FAILED
    except UnreadableState as exc:
        print(f"orchestrate: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return EXIT_FAILED
    ctx = Context(config=config, topology=build_topology(config), host=host, state=state,
                  log=logmod.get_logger())
    observed = observe(ctx)
    diffs = None
    if args.check:
        if observed is None:
            print("orchestrate status --check: `xl list` failed: run it as root on the dom0")
            return EXIT_FAILED
        try:
            diffs = differences(ctx, ctx.xenstore(), observed)
        finally:
            ctx.close()
    views = domain_views(ctx, observed)
    if args.json:
        print(json.dumps(as_json(state, views, observed is not None, diffs), indent=1))
    else:
        print("\n".join(render(state, views, observed is not None, diffs)))
    return EXIT_OK if state.exit_code == 0 and not diffs else EXIT_FAILED


def watch(args: argparse.Namespace) -> int:
    """The follower: one xenstore connection, no polling, until SIGTERM (exit 0)."""
    from orchestrator import log as logmod

    logmod.configure(args.log_format, args.debug)
    config = _load(args, sys.stderr)
    if config is None:
        return EXIT_INVALID
    if getattr(args, "dry_run", False):
        print("orchestrate: watch has no dry run (it changes nothing while all is well)",
              file=sys.stderr)
        return EXIT_INVALID

    from orchestrator.context import Context, state_file
    from orchestrator.follow import run_follower
    from orchestrator.host import Host
    from orchestrator.state import BootState
    from orchestrator.topology import build_topology
    from orchestrator.xenstore import PyxsXenstore

    host = Host(root=args.root, tools_path=config.host.tools_path,
                command_timeout=config.host.command_timeout)
    with _json_log(args, host, config) as log:
        state = BootState(mode="watch")
        text = host.read_text(state_file(config))
        if text:
            try:
                state = BootState.from_json(text)
            except (ValueError, TypeError, KeyError, AttributeError):
                pass  # the follower reads it again before each step, and says so there
        log.info("start", version=__version__, pid=os.getpid(), root=args.root, mode="watch")
        store = PyxsXenstore(host.xenstored_socket(), config.host.xenstored_timeout, log)
        ctx = Context(config=config, topology=build_topology(config), host=host,
                      state=state, log=log, _xenstore=store)
        try:
            code = run_follower(ctx, store)
        finally:
            store.close()
        word = "OK" if code == EXIT_OK else "FAILED"
        log.info("verdict", word=word, detail="the follower stopped", code=code)
        return code


def shutdown(args: argparse.Namespace) -> int:
    from orchestrator import log as logmod

    logmod.configure(args.log_format, args.debug)
    config = _load(args, sys.stderr)
    if config is None:
        return EXIT_INVALID

    from orchestrator.dryrun import DryRunHost
    from orchestrator.host import Host

    dry_run = getattr(args, "dry_run", False)
    host = (DryRunHost if dry_run else Host)(root=args.root, tools_path=config.host.tools_path,
                                             command_timeout=config.host.command_timeout)
    with _json_log(args, host, config) as log:
        return _shutdown_with(args, host, config, log, dry_run)


def _shutdown_with(args: argparse.Namespace, host: Any, config: Any, log: Any,
                   dry_run: bool) -> int:
    from orchestrator.context import Context, state_file
    from orchestrator.shutdown import run_shutdown
    from orchestrator.state import BootState
    from orchestrator.topology import build_topology

    previous = None
    text = host.read_text(state_file(config))
    if text:
        try:
            previous = BootState.from_json(text)
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("warning", text=f"ignoring unreadable {state_file(config)}")
    log.info("start", version=__version__, pid=os.getpid(), root=args.root,
             mode="dry run" if dry_run else "shutdown")
    ctx = Context(config=config, topology=build_topology(config), host=host,
                  state=BootState(mode="shutdown"), log=log)
    try:
        return run_shutdown(ctx, previous)
    finally:
        ctx.close()
