"""The review as text for a person at a terminal: ASCII, 80 columns. Stdlib only."""

from __future__ import annotations

import textwrap

from orchestrator.events import render_body
from orchestrator.review_model import (
    MAX_DOMAINS,
    STEP_NAMES,
    BootView,
    CaptureReview,
    DomainView,
    RunSummary,
    RunView,
    StepView,
    critical_path,
    path_seconds,
    path_share,
)

WIDTH = 80
SHOWN_EVENTS = 20  # lifecycle events listed in the text (JSON has them all)


def ascii_text(text: str) -> str:
    """Printable ASCII only: whatever was on the wire, the report is safe to print."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def fit(line: str, width: int = WIDTH) -> str:
    line = ascii_text(line).rstrip()
    return line if len(line) <= width else line[: width - 3] + "..."


def wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(ascii_text(text), WIDTH, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False) or [first.rstrip()]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def report(review: CaptureReview, path: str) -> str:
    """The whole text review; `path` is named when the capture has no line of ours."""
    if review.boot is None:
        return ascii_text(f"no orchestrate lines found in {path}") + "\n"
    return "\n".join(render(review)) + "\n"


def render(review: CaptureReview) -> list[str]:
    boot = review.boot
    assert boot is not None
    out = wrap(_capture_line(review), "", "  ")
    others = [b for b in review.boots if b.number != boot.number]
    for summary in others[-5:]:
        verdict = summary.verdict.text if summary.verdict else (
            "no verdict" if summary.has_boot_run else "no run of orchestrate")
        xen = f", Xen {summary.xen}" if summary.xen else ""
        out.append(f"  boot {summary.number}: lines {summary.first_line}-{summary.last_line}"
                   f"{xen}: {verdict}")
    if len(others) > 5:
        out.insert(1, f"  boots 1-{others[-6].number}: not shown")
    run = boot.reviewed
    xen = f"Xen {boot.xen}" if boot.xen else "no Xen banner"
    boot_runs = [r for r in boot.runs if r.is_boot]
    which = ", reviewing the last" if len(boot_runs) > 1 else ""
    out.append(f"boot {boot.number} of {review.boots_total}: {xen}, lines {boot.first_line}-"
               f"{boot.last_line}, {plural(boot.runs_total, 'run')} of orchestrate{which}")
    if run is None:
        out.append("  no boot run of orchestrate in this boot (only what came after it)")
    else:
        out += _run(run, [r for r in boot_runs if r.number < run.number])
    out += _after(boot)
    return [fit(line) for line in out]


def _capture_line(review: CaptureReview) -> str:
    boots = plural(review.boots_total, "boot")
    which = ""
    if review.boots_total > 1 and review.boot is not None:
        which = f", reviewing boot {review.boot.number} (--boot N)"
    return f"capture: {review.name}: {plural(review.lines, 'line')}, {boots}{which}"


def _run(run: RunView, earlier: list[RunSummary]) -> list[str]:
    out: list[str] = []
    shown = earlier[-3:]
    if len(earlier) > len(shown):
        first = len(earlier) - len(shown)
        out.append(f"  {'run 1' if first == 1 else f'runs 1-{first}'}: not shown")
    for summary in shown:
        verdict = summary.verdict
        text = verdict.text if verdict is not None else "no verdict (killed, or cut off)"
        out.append(f"  run {summary.number}: {text}")
    if run.mode is not None:
        out.append(f"run {run.number}: orchestrate {run.version} ({run.mode}), pid {run.pid}")
    else:
        out.append(f"run {run.number}: its first line is not in the capture")
    cut = f", {run.cut} cut by other output ({run.rejoined} rejoined)" if run.cut else ""
    out.append(f"  {plural(run.lines, 'line')} of ours recognised{cut}")
    out += _steps(run)
    out += _domains(run)
    out += _path(run)
    span = run.last_uptime - run.first_uptime
    out.append(fit(f"boot: {span:.1f} s from first to last line (uptime "
                   f"{run.first_uptime:.1f} -> {run.last_uptime:.1f})"))
    if run.verdict:
        out += wrap(run.verdict.text, "verdict: ", "  ")
    else:
        during = ""
        if run.steps:
            last = run.steps[max(run.steps)]
            during = f" during {last.number}/{run.step_count} {last.name}".rstrip()
        out += wrap(f"none: the run stops at uptime {run.last_uptime:.1f}{during} (killed, "
                    "or the capture ends there)", "verdict: ", "  ")
    if run.failure:
        out += wrap(run.failure.step + run.failure.text, "first failure: ", "  ")
        if run.failure.hint:
            out += wrap(run.failure.hint, "  hint: ", "        ")
    else:
        out.append("first failure: none")
    return out


def _steps(run: RunView) -> list[str]:
    out = ["steps:"]
    numbers = sorted(run.steps)
    standard = run.step_count == len(STEP_NAMES)
    if standard:
        numbers = sorted(set(numbers) | set(range(1, len(STEP_NAMES) + 1)))
    digits = len(str(max(numbers, default=1)))
    for number in numbers:
        view = run.steps.get(number) or StepView(number)
        name = view.name
        if not name and standard and number <= len(STEP_NAMES):
            name = STEP_NAMES[number - 1]
        seconds = ""
        if view.seconds is not None:
            seconds = f"~{view.seconds:.1f} s" if view.approximate else f"{view.seconds:.2f} s"
        status = {
            "": "not run" if run.verdict else "not reached",
            "running": "running when the run ends" if not run.verdict else "no end seen",
            "ok": "ok",
            "partial": f"done with failures: {view.detail}",
            "failed": f"failed: {view.detail}",
            "skipped": f"skipped: {view.detail}",
        }[view.status]
        out.append(fit(f"  {number:>{digits}} {name:<23} {seconds:>8}  {status}"))
    return out


def domain_status(dom: DomainView) -> str:
    domid = f"domid {dom.domid}" if dom.domid is not None else ""
    if dom.status == "ready" and dom.seconds is not None:
        return f"{domid:<9} {dom.seconds:.2f} s"
    if dom.status in ("adopted", "ready"):
        return f"{domid:<9} adopted (already running)"
    if dom.status in ("created", "provisioned", "booting"):
        return f"{domid:<9} {dom.status}, not ready when the run ends"
    if dom.status in ("failed", "skipped"):
        return f"{dom.status}: {dom.cause}"
    return f"{domid:<9} {dom.status}".strip()


def _domains(run: RunView) -> list[str]:
    if not run.domains:
        return ["domains: none in this run"]
    out = ["domains (create -> ready):"]
    width = min(24, max(len(n) for n in run.domains))
    for dom in list(run.domains.values())[:200]:
        out.append(fit(f"  {dom.name:<{width}}  {domain_status(dom)}"))
    if len(run.domains) > 200:
        out.append(f"  ... and {len(run.domains) - 200} more (--json lists them all)")
    if run.untracked_domains:
        out += wrap(f"... and {plural(run.untracked_domains, 'line')} of more domains not "
                    f"followed (the review follows at most {MAX_DOMAINS} domains a run)",
                    "  ", "    ")
    return out


def _path(run: RunView) -> list[str]:
    path = critical_path(run.domains)
    if not path:
        return ["critical path: none (no domain became ready)"]
    shown = path if len(path) <= 12 else [*path[:6], None, *path[-5:]]
    chain = " -> ".join(_link(d, path) if d else f"({len(path) - 11} more)" for d in shown)
    return wrap(f"{chain} = {path_seconds(path):.2f} s", "critical path: ", "  ")


def _link(dom: DomainView, path: list[DomainView]) -> str:
    if not dom.after_vif:
        return f"{dom.name} ({dom.seconds:.2f} s)"
    before = path[path.index(dom) - 1] if path.index(dom) else None
    return f"{dom.name} ({dom.seconds:.2f} s, its vif +{path_share(dom, before):.2f} s)"


def _after(boot: BootView) -> list[str]:
    if not boot.after_runs and not boot.after:
        return []
    modes = ", ".join(r.mode or "first line lost" for r in boot.after_runs)
    out = [fit(f"after the boot: {plural(len(boot.after_runs), 'run')} ({modes}), "
               f"{plural(boot.after_seen, 'lifecycle event')}")]
    for follower in boot.followers:
        out += wrap(f"follower: pid {follower.get('pid')}, ready at uptime "
                    f"{follower.get('at', 0.0):.1f}, following {follower.get('domains')} "
                    f"domains, watching {follower.get('watches')}", "  ", "    ")
    if boot.repairs:
        shown = "" if len(boot.repairs) <= 10 else f" (the last 10 of {len(boot.repairs)})"
        out.append(f"  restarts{shown}:")
    for repair in boot.repairs[-10:]:
        was = f" (was {repair.was})" if repair.was is not None else ""
        parts = [f"{repair.at:.1f} {repair.domain} restarted as domid {repair.domid}{was}"]
        if repair.plumbing is not None:
            parts.append(f"plumbing restored in {repair.plumbing:.2f} s")
        if repair.ready is not None:
            parts.append(f"ready at {repair.ready:.1f}")
        for client, devid, _, seconds in repair.vifs:
            connected = f" Connected in {seconds:.2f} s" if seconds is not None else ""
            parts.append(f"{client} vif {devid} re-attached{connected}")
        done = (f"repaired {repair.seconds:.2f} s after the restart" if repair.seconds
                is not None else "not repaired when the capture ends")
        out += wrap("; ".join([*parts, done]), "    ", "      ")
    if boot.shutdown is not None:
        shutdown = boot.shutdown
        order = " | ".join(domains for _, _, domains, _ in shutdown.levels) or "no level seen"
        out += wrap(f"shutdown at uptime {shutdown.at:.1f}, "
                    f"{plural(len(shutdown.levels), 'level')}: {order}", "  ", "    ")
        stops = [f"{d} {how} in {s:.2f} s" if s is not None else f"{d} {how}"
                 for d, how, _, s in shutdown.stopped]
        if stops:
            out += wrap(", ".join(stops), "    ", "    ")
        verdict = shutdown.verdict.text if shutdown.verdict else "none (the capture ends)"
        out += wrap(verdict, "    verdict: ", "      ")
    events = list(boot.after)[-SHOWN_EVENTS:]
    if events:
        what = "" if boot.after_seen <= len(events) else \
            f" (the last {len(events)} of {boot.after_seen})"
        out.append(f"  events{what}:")
        for event in events:
            body, _ = render_body({"event": event.event, **event.fields})
            out += wrap(body, f"    [{event.uptime:6.1f}] ", " " * 14)
    return out
