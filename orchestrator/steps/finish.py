"""leave-dom0-idle: prove nothing of ours is left running, print the summary, exit.

After we exit, xl's own per-domain monitor processes remain: they apply on_poweroff /
on_reboot / on_crash (XEN-FACTS.md "xl"). They are expected, and listed.
"""

from __future__ import annotations

import os

from orchestrator.context import Context
from orchestrator.errors import OrchestratorError


def our_leftovers() -> list[str]:
    """Our own child processes still alive (every one we start should have ended)."""
    import psutil

    out = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            out.append(f"pid {child.pid} {' '.join(child.cmdline()) or child.name()}")
        except psutil.Error:
            continue
    return out


def xl_monitors() -> list[tuple[int, str]]:
    """xl's per-domain monitors, (pid, domain): `xl create` forks one per domain and it
    keeps the command line `xl create ... <state>/xl/<name>.cfg`."""
    import psutil

    out = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        name = proc.info.get("name") or ""
        cmdline = proc.info.get("cmdline") or []
        if name != "xl" or proc.info["pid"] == os.getpid() or not cmdline:
            continue  # an empty command line: a monitor on its way out
        configs = [os.path.basename(a)[:-4] for a in cmdline if a.endswith(".cfg")]
        out.append((proc.info["pid"], configs[0] if configs else "?"))
    return out


def leave_dom0_idle(ctx: Context) -> None:
    ctx.close()
    none: list[str] = []
    leftovers = ctx.host.outcome(our_leftovers, none)
    if leftovers:
        raise OrchestratorError(
            "processes of ours are still running: " + "; ".join(leftovers),
            hint="this is a bug in orchestrate: report it with this console log",
        )
    monitors: list[tuple[int, str]] = []
    for pid, domain in ctx.host.outcome(xl_monitors, monitors):
        ctx.log.info("note", text=f"expected: xl monitor of {domain}, pid {pid}")
    for name in [n for wave in ctx.topology.waves for n in wave]:
        record = ctx.state.domains.get(name)
        if record is None:
            continue
        timing = (f", {record.create_to_ready:.2f} s create-to-ready"
                  if record.create_to_ready is not None else "")
        detail = f": {record.error}" if record.error else ""
        ctx.log.info("summary", text=f"{name}: {record.state}, domid "
                     f"{record.domid if record.domid is not None else '-'}{timing}{detail}")
    for step, step_record in ctx.state.steps.items():
        if step_record.seconds is not None:
            ctx.log.info("summary", text=f"{step}: {step_record.status} in "
                         f"{step_record.seconds:.2f} s")
