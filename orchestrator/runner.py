"""The boot state machine: the steps, in order, in one place.

Each step logs begin / ok / failed with its duration, and the state file is written
after every transition. The first step that raises stops the boot (exit 1); a step that
records partial failures (create-domains) lets the rest run so the summary is complete,
and the verdict is then FAILED too.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

import structlog

from orchestrator.context import Context
from orchestrator.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, OrchestratorError
from orchestrator.event_types import verdict_text
from orchestrator.state import StepRecord
from orchestrator.steps.devices import make_device_nodes
from orchestrator.steps.domains import create_domains
from orchestrator.steps.fetch import fetch_images
from orchestrator.steps.finish import leave_dom0_idle
from orchestrator.steps.handoff import bind_devices_to_pciback, settle_after_abort
from orchestrator.steps.preflight import preflight
from orchestrator.steps.provision import provision_xenstore
from orchestrator.steps.xenstored import check_platform, start_xenstored

Step = Callable[[Context], None]

# The boot, in order. preflight comes before xenstored: a toolstack that does not match
# the hypervisor must be caught before xenstored, xen-init-dom0 or any xl call runs.
STEPS: tuple[tuple[str, Step], ...] = (
    ("make-device-nodes", make_device_nodes),
    ("preflight", preflight),
    ("start-xenstored", start_xenstored),
    ("check-platform", check_platform),
    ("fetch-images", fetch_images),
    ("bind-devices-to-pciback", bind_devices_to_pciback),
    ("create-domains", create_domains),
    ("provision-xenstore", provision_xenstore),
    ("leave-dom0-idle", leave_dom0_idle),
)


def run_boot(ctx: Context, debug: bool = False) -> int:
    count = len(STEPS)
    boot_started = time.monotonic()
    ctx.state.steps = {name: StepRecord() for name, _ in STEPS}
    number, name, started = 0, "", boot_started
    try:
        for number, (name, step) in enumerate(STEPS, start=1):
            with structlog.contextvars.bound_contextvars(step_no=number, step_count=count):
                started = time.monotonic()
                failure = _run_step(ctx, name, step, debug)
                if failure is not None:
                    return _stop(ctx, number, name, *failure, started)
    except KeyboardInterrupt:  # SIGINT, or SIGTERM (the CLI turns it into this)
        ctx.cancelled.clear()  # the domain threads have stopped; the rollback may wait
        with structlog.contextvars.bound_contextvars(step_no=number, step_count=count):
            return _stop(ctx, number, name, "interrupted", None, started,
                         EXIT_INTERRUPTED, "INTERRUPTED")
    total = time.monotonic() - boot_started
    failed = ctx.state.not_ready() + [
        what for step in ctx.state.steps.values() if step.status == "partial"
        for what in (step.error or "").split(", ") if what not in ctx.state.domains]
    if failed:
        return _finish(ctx, EXIT_FAILED, "FAILED", f"{', '.join(failed)} not ready "
                       f"after {total:.1f} s")
    ready = len(ctx.state.domains)
    word = "would be" if ctx.host.dry_run else "are"
    return _finish(ctx, EXIT_OK, "OK", f"{ready} domains {word} ready, {total:.1f} s")


def _run_step(ctx: Context, name: str, step: Step,
              debug: bool) -> tuple[str, str | None] | None:
    """Run one step; (error, hint) if it stopped the boot, else None."""
    record = ctx.state.steps[name]
    ctx.log.info("step begin", step=name)
    record.status = "running"
    ctx.save()
    started = time.monotonic()
    cpu_started = time.process_time()
    ctx.partial.clear()
    try:
        step(ctx)
    except OrchestratorError as exc:
        return exc.message, exc.hint
    except Exception as exc:  # a bug: say so, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        return (f"internal error: {type(exc).__name__}: {exc}",
                "this is a bug in orchestrate; run with --debug for the traceback and "
                "report it")
    record.seconds = round(time.monotonic() - started, 3)
    record.cpu_seconds = round(time.process_time() - cpu_started, 3)
    if ctx.partial:  # the step went on past failures it recorded (create-domains)
        record.status, record.error = "partial", ", ".join(ctx.partial)
        ctx.log.warning("step partial", step=name, seconds=record.seconds,
                        failed=record.error)
    else:
        record.status = "ok"
        ctx.log.info("step ok", step=name, seconds=record.seconds)
    ctx.save()
    return None


def _stop(ctx: Context, number: int, name: str, error: str, hint: str | None,
          started: float, code: int = EXIT_FAILED, word: str = "FAILED") -> int:
    record = ctx.state.steps[name] if name else StepRecord()
    record.status, record.error, record.hint = "failed", error, hint
    record.seconds = round(time.monotonic() - started, 3)
    ctx.log.error("step failed", step=name, error=error)
    if hint:
        ctx.log.error("hint", hint=hint)
    for later, _ in STEPS[number:]:
        ctx.state.steps[later].status = "skipped"
    if ctx.state.steps["bind-devices-to-pciback"].status != "pending":
        settle_after_abort(ctx)
    ctx.close()
    return _finish(ctx, code, word, f"at {number}/{len(STEPS)} {name}")


def _finish(ctx: Context, code: int, word: str, detail: str) -> int:
    ctx.state.verdict = verdict_text(word, detail)
    ctx.state.exit_code = code
    ctx.state.usage = own_usage()
    if not ctx.host.dry_run:
        usage = ctx.state.usage
        ctx.log.info("summary", text=f"orchestrate: {usage['cpu_seconds']:.2f} s CPU, peak "
                     f"RSS {usage['peak_rss_mib']:.1f} MiB, {len(ctx.host.executed)} "
                     f"programs run")
    ctx.save()
    ctx.log.info("verdict", word=word, detail=detail, code=code)
    return code


def own_usage() -> dict[str, float]:
    """This process's CPU time and peak RSS (children excluded: they are the toolstack's).

    Peak RSS is VmHWM, the high-water mark of this program's own memory: ru_maxrss also
    counts the pages of the process that forked us, as they were before our exec.
    """
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    peak_kib = float(ru.ru_maxrss)
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak_kib = float(line.split()[1])
    except OSError:
        pass
    return {"cpu_seconds": round(ru.ru_utime + ru.ru_stime, 3),
            "peak_rss_mib": round(peak_kib / 1024, 1)}
