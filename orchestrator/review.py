"""`orchestrate review CAPTURE`: what a raw serial capture says about a boot.

A capture of the serial line holds far more than our lines: Xen's `(XEN) ...`, the dom0
kernel's `[    4.567890] ...`, OpenRC's ` * ...` and `[ ok ]`, ANSI colours and cursor
moves, CRLF, NULs and bytes that are no UTF-8 at all, and a kernel message may land in the
middle of one of our lines. The review is tolerant; it never raises on any input:

- bytes are decoded as UTF-8 with replacement; NULs, ANSI escapes and other control
  characters are dropped; CR, LF and CRLF all end a line;
- a line of ours is found by its prefix anywhere in a line: `[%6.1f] ` (seconds since
  boot, one decimal, at least 6 wide; the kernel's has six decimals), then optionally
  `[n/N] `. Several of ours on one line are split at each prefix;
- a line of ours ends early where a kernel timestamp or `(XEN)` starts inside it (it was
  cut); when the next line starts with bare text (no timestamp, no `(XEN)`, no OpenRC
  mark) and gluing it on makes an event we know, that text is the rest of the cut line;
- lines of ours that carry no event the review uses (actions, checks, notes) count as
  recognised and are otherwise ignored, as is everything that is not ours.

A run starts at `orchestrate VERSION (boot|dry run), pid N` (or, if that line is lost,
at the first line of ours after a verdict); a capture may hold several runs (a re-run in
the same boot): the last one is reviewed and the count is said.

The critical path is the chain of domains that ends at the one that became ready last.
The capture does not state the dependencies, but a domain is created only once the
domains it needs are ready, so the chain is rebuilt from the order of the events: the
predecessor of a domain is the domain whose `ready` line came last before that domain's
`created paused` line; then the same for that one, back to a domain created before any
was ready. Adopted domains (already running) have no create-to-ready time and are not
on it; a domain whose `created paused` line is missing ends the chain. With the units
(`--units DIR`), only the domains it needs (topology) are candidates. The figure is the
sum of the create-to-ready times along the chain.

Exit codes: 0 when the reviewed run's verdict is OK, 1 when it failed, was interrupted
or has no verdict (killed, or the capture ends), or no line of ours was found.
"""

from __future__ import annotations

import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WIDTH = 80

# orchestrator.runner.STEPS, by name (the runner imports structlog; the review is stdlib
# only, and a unit test keeps the two in step).
STEP_NAMES = (
    "make-device-nodes",
    "preflight",
    "start-xenstored",
    "check-platform",
    "fetch-images",
    "bind-devices-to-pciback",
    "create-domains",
    "provision-xenstore",
    "leave-dom0-idle",
)

_BREAK = re.compile(r"\r\n|\r|\n")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
                   r"|\x1b[ -/]*[0-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_OURS = re.compile(r"\[( *\d{1,9}\.\d)\] ")
_STEP = re.compile(r"\[(\d{1,3})/(\d{1,3})\] ")
# Where another writer's line starts inside one of ours.
_FOREIGN = re.compile(r"\[ *\d{1,9}\.\d{6}\]|\(XEN\)")
# The start of a line that cannot be the rest of a cut line of ours.
_NOT_REST = re.compile(r"\s*(?:$|\[ *\d{1,9}\.\d{6}\]|\(XEN\)|\*\s|\[ (?:ok|!!) \])")

_DOMAIN = r"(?P<domain>[A-Za-z0-9][A-Za-z0-9_-]{0,47})"
_SECONDS = r"(?P<seconds>\d{1,9}\.\d{1,3})"
_EVENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(pattern)) for
                                                         kind, pattern in (
    ("start", r"orchestrate (?P<version>\S{1,40}) \((?P<mode>boot|dry run)\), "
              r"pid (?P<pid>\d{1,10})(?:, .*)?"),
    ("verdict", r"orchestrate: (?P<text>(?P<word>OK|FAILED|INTERRUPTED)\b.*)"
                r" \(exit (?P<code>\d{1,3})\)"),
    ("ok", r"(?P<name>[a-z][a-z0-9-]*) ok \(" + _SECONDS + r" s\)"),
    ("partial", r"(?P<name>[a-z][a-z0-9-]*) done with failures \(" + _SECONDS
                + r" s\): (?P<detail>.*)"),
    ("hint", r"hint: (?P<detail>.*)"),
    ("created", _DOMAIN + r": created paused as domid (?P<domid>\d{1,9})"),
    ("adopted", _DOMAIN + r": already running as domid (?P<domid>\d{1,9}): adopted"),
    ("ready", _DOMAIN + r" ready as domid (?P<domid>\d{1,9}) \(" + _SECONDS
              + r" s after create\)"),
    ("failed", _DOMAIN + r" failed: (?P<detail>.*)"),
    ("skipped", _DOMAIN + r" skipped: (?P<detail>.*)"),
    ("word", r"(?P<name>[a-z][a-z0-9-]*)"),
))


@dataclass
class Line:
    """One line of ours as the capture has it."""

    uptime: float
    step_no: int | None
    step_count: int | None
    text: str
    cut: bool = False
    rejoined: bool = False


@dataclass
class Event:
    kind: str
    line: Line
    fields: dict[str, str]


def event_of(line: Line) -> Event | None:
    """The event a line of ours carries, or None."""
    text = line.text.strip()
    for kind, pattern in _EVENTS:
        m = pattern.fullmatch(text)
        if m:
            return Event(kind, line, {k: v for k, v in m.groupdict().items() if v is not None})
    return None


def clean(raw: str) -> str:
    text = _ANSI.sub("", raw.replace("\x00", ""))
    return _CONTROL.sub("", text.replace("\t", " "))


@dataclass
class Capture:
    lines: int  # every line of the capture
    ours: list[Line]


def read_capture(data: bytes) -> Capture:
    """Our lines out of a capture (see the module docstring for the rules)."""
    physical = _BREAK.split(data.decode("utf-8", errors="replace"))
    ours: list[Line] = []
    pending: Line | None = None  # the last line of ours, if it was cut, on the line before
    for raw in physical:
        text = clean(raw)
        starts = [m for m in _OURS.finditer(text) if len(m.group(1)) >= 6]
        head = text[: starts[0].start()] if starts else text
        if pending is not None and not _NOT_REST.match(head):
            rest = head[: m.start()] if (m := _FOREIGN.search(head)) else head
            joined = Line(pending.uptime, pending.step_no, pending.step_count,
                          pending.text + rest, cut=True, rejoined=True)
            if event_of(joined) is not None:
                ours[-1] = joined
        pending = None
        for i, start in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            body = text[start.end(): end]
            foreign = _FOREIGN.search(body)
            if foreign:
                body = body[: foreign.start()]
            step_no = step_count = None
            if m := _STEP.match(body):
                step_no, step_count = int(m.group(1)), int(m.group(2))
                body = body[m.end():]
            line = Line(float(start.group(1)), step_no, step_count, body, cut=bool(foreign))
            ours.append(line)
            pending = line if line.cut and i + 1 == len(starts) else None
    return Capture(len(physical) - (physical[-1] == ""), ours)


def split_runs(lines: Sequence[Line]) -> list[list[Event | Line]]:
    """The runs in the capture, each its lines of ours (as events where they parse)."""
    runs: list[list[Event | Line]] = []
    ended = False  # the current run has its verdict: what follows is another run
    for line in lines:
        event = event_of(line)
        kind = event.kind if event else None
        if not runs or ended or kind == "start":
            runs.append([])
        runs[-1].append(event or line)
        ended = kind == "verdict"
    return runs


# ---- the review of one run ---------------------------------------------------------------

@dataclass
class StepView:
    number: int
    name: str = ""
    status: str = ""  # "", running, ok, partial, failed
    seconds: float | None = None
    approximate: bool = False
    detail: str = ""
    began: float | None = None


@dataclass
class DomainView:
    name: str
    domid: str = ""
    status: str = ""  # created, ready, adopted, failed, skipped
    seconds: float = 0.0
    detail: str = ""
    created_at: int | None = None  # the index of the event in the run
    ready_at: int | None = None


@dataclass
class Review:
    """One run, reviewed; `render` prints it."""

    start: dict[str, str] | None
    ours: int
    cut: int
    rejoined: int
    steps: dict[int, StepView]
    step_count: int
    domains: dict[str, DomainView]
    path: list[DomainView]
    first_uptime: float
    last_uptime: float
    verdict: Event | None
    failure: Event | None
    hint: Event | None
    last_step: StepView | None
    # about the capture, filled in by review_bytes
    name: str = ""
    capture_lines: int = 0
    runs: int = 1
    earlier: list[str] = field(default_factory=list)  # the verdicts of the runs before

    @property
    def exit_code(self) -> int:
        """0 only for a verdict OK (exit 0)."""
        if self.verdict is None:
            return 1
        ok = self.verdict.fields["word"] == "OK" and self.verdict.fields["code"] == "0"
        return 0 if ok else 1


def _step_of(steps: dict[int, StepView], line: Line, name: str) -> StepView:
    number = line.step_no
    if number is None and name in STEP_NAMES:
        number = STEP_NAMES.index(name) + 1
    if number is None:  # a step line without its [n/N]: keep it under its name
        for view in steps.values():
            if view.name == name:
                return view
        number = max([*steps, 0]) + 1
    view = steps.setdefault(number, StepView(number))
    view.name = name or view.name
    return view


def _is_step(name: str, line: Line, steps: dict[int, StepView]) -> bool:
    if name in STEP_NAMES:
        return True
    known = steps.get(line.step_no) if line.step_no is not None else None
    return known is not None and known.name == name


def review_run(items: Sequence[Event | Line], needs: Mapping[str, Sequence[str]] | None
               ) -> Review:
    lines = [i.line if isinstance(i, Event) else i for i in items]
    events = [i for i in items if isinstance(i, Event)]
    counts = Counter(ln.step_count for ln in lines if ln.step_count)
    step_count = counts.most_common(1)[0][0] if counts else len(STEP_NAMES)
    steps: dict[int, StepView] = {}
    domains: dict[str, DomainView] = {}
    start = verdict = failure = hint = None
    hint_open = False  # a hint now belongs to the first failure
    for index, event in enumerate(events):
        f, line, kind = event.fields, event.line, event.kind
        name = f.get("name") or f.get("domain") or ""
        if kind == "start" and start is None:
            start = f
        elif kind == "verdict":
            verdict = event
        elif kind == "word":
            # A step's first line is its name alone; other one-word lines are actions
            # (xen-init-dom0). Steps of another set: the first word under each number.
            if name in STEP_NAMES or (step_count != len(STEP_NAMES)
                                      and line.step_no is not None
                                      and line.step_no not in steps):
                view = _step_of(steps, line, name)
                view.status, view.began = "running", line.uptime
        elif kind in ("ok", "partial") and (name in STEP_NAMES or line.step_no is not None):
            view = _step_of(steps, line, name)
            view.status, view.seconds = kind, float(f["seconds"])
            view.approximate, view.detail = False, f.get("detail", "")
        elif kind in ("failed", "skipped") and _is_step(name, line, steps):
            view = _step_of(steps, line, name)
            view.status, view.detail = kind, f["detail"]
            if view.began is not None and kind == "failed":
                view.seconds, view.approximate = max(0.0, line.uptime - view.began), True
        elif kind in ("created", "adopted", "ready", "failed", "skipped"):
            dom = domains.setdefault(name, DomainView(name))
            dom.status = kind
            dom.domid = f.get("domid", dom.domid)
            if kind == "created":
                dom.created_at = index
            elif kind == "ready":
                dom.ready_at, dom.seconds = index, float(f["seconds"])
            elif kind in ("failed", "skipped"):
                dom.detail = f["detail"]
        if kind == "failed":
            hint_open = failure is None
            failure = failure or event
        elif kind == "hint" and hint_open:
            hint, hint_open = event, False
    return Review(
        start=start, ours=len(lines),
        cut=sum(ln.cut for ln in lines), rejoined=sum(ln.rejoined for ln in lines),
        steps=steps, step_count=step_count, domains=domains,
        path=critical_path(domains, needs),
        first_uptime=lines[0].uptime if lines else 0.0,
        last_uptime=lines[-1].uptime if lines else 0.0,
        verdict=verdict, failure=failure, hint=hint,
        last_step=steps[max(steps)] if steps else None,
    )


def critical_path(domains: Mapping[str, DomainView],
                  needs: Mapping[str, Sequence[str]] | None = None) -> list[DomainView]:
    """The chain ending at the domain ready last (the rule is in the module docstring)."""
    ready = [d for d in domains.values() if d.ready_at is not None]
    if not ready:
        return []
    current = max(ready, key=lambda d: d.ready_at or 0)
    path, seen = [current], {current.name}
    while current.created_at is not None:
        created = current.created_at
        if needs is not None:
            candidates: Iterable[DomainView] = [domains[n] for n in needs.get(current.name, ())
                                                if n in domains]
        else:
            candidates = domains.values()
        before = [d for d in candidates if d.name not in seen and d.ready_at is not None
                  and d.ready_at < created]
        if not before:
            break
        current = max(before, key=lambda d: d.ready_at or 0)
        path.append(current)
        seen.add(current.name)
    path.reverse()
    return path


# ---- the report --------------------------------------------------------------------------

def ascii_text(text: str) -> str:
    """Printable ASCII only: whatever was on the wire, the report is safe to print."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def fit(line: str, width: int = WIDTH) -> str:
    line = ascii_text(line).rstrip()
    return line if len(line) <= width else line[: width - 3] + "..."


def wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(ascii_text(text), WIDTH, initial_indent=first, subsequent_indent=rest,
                         break_on_hyphens=False) or [first.rstrip()]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render(review: Review) -> list[str]:
    out: list[str] = []
    runs = _plural(review.runs, "run") + " of orchestrate"
    which = ", reviewing the last" if review.runs > 1 else ""
    out.append(f"capture: {review.name}: {_plural(review.capture_lines, 'line')}, {runs}"
               f"{which}")
    shown = review.earlier[-3:]  # the verdicts of the runs before it, the last three
    first = len(review.earlier) - len(shown) + 1
    if first > 1:
        out.append(f"  {'run 1' if first == 2 else f'runs 1-{first - 1}'}: not shown")
    for number, verdict in enumerate(shown, start=first):
        out.append(f"  run {number}: {verdict}")
    if review.start:
        start = review.start
        out.append(f"run {review.runs}: orchestrate {start['version']} ({start['mode']}), "
                   f"pid {start['pid']}")
    else:
        out.append(f"run {review.runs}: its first line is not in the capture")
    cut = f", {review.cut} cut by other output ({review.rejoined} rejoined)" if review.cut \
        else ""
    out.append(f"  {_plural(review.ours, 'line')} of ours recognised{cut}")

    out.append("steps:")
    numbers = sorted(review.steps)
    if review.step_count == len(STEP_NAMES):
        numbers = sorted(set(numbers) | set(range(1, len(STEP_NAMES) + 1)))
    digits = len(str(max(numbers, default=1)))
    for number in numbers:
        view = review.steps.get(number) or StepView(number)
        name = view.name
        if not name and review.step_count == len(STEP_NAMES) and number <= len(STEP_NAMES):
            name = STEP_NAMES[number - 1]
        seconds = ""
        if view.seconds is not None:
            seconds = f"~{view.seconds:.1f} s" if view.approximate else f"{view.seconds:.2f} s"
        status = {
            "": "not run" if review.verdict else "not reached",
            "running": "running when the run ends" if not review.verdict else "no end seen",
            "ok": "ok",
            "partial": f"done with failures: {view.detail}",
            "failed": f"failed: {view.detail}",
            "skipped": f"skipped: {view.detail}",
        }[view.status]
        out.append(fit(f"  {number:>{digits}} {name:<23} {seconds:>8}  {status}"))

    if review.domains:
        out.append("domains (create -> ready):")
        width = min(24, max(len(n) for n in review.domains))
        for dom in review.domains.values():
            domid = f"domid {dom.domid}" if dom.domid else ""
            what = {
                "ready": f"{domid:<9} {dom.seconds:.2f} s",
                "adopted": f"{domid:<9} adopted (already running)",
                "created": f"{domid:<9} created, not ready when the run ends",
                "failed": f"failed: {dom.detail}",
                "skipped": f"skipped: {dom.detail}",
            }[dom.status]
            out.append(fit(f"  {dom.name:<{width}}  {what}"))
    else:
        out.append("domains: none in this run")

    if review.path:
        chain = " -> ".join(f"{d.name} ({d.seconds:.2f} s)" for d in review.path)
        total = sum(d.seconds for d in review.path)
        out += wrap(f"{chain} = {total:.2f} s", "critical path: ", "  ")
    else:
        out.append("critical path: none (no domain became ready)")

    span = review.last_uptime - review.first_uptime
    out.append(fit(f"boot: {span:.1f} s from first to last line (uptime "
                   f"{review.first_uptime:.1f} -> {review.last_uptime:.1f})"))
    if review.verdict:
        f = review.verdict.fields
        out += wrap(f"{f['text']} (exit {f['code']})", "verdict: ", "  ")
    else:
        during = ""
        if review.last_step is not None:
            last = review.last_step
            during = f" during {last.number}/{review.step_count} {last.name}".rstrip()
        out += wrap(f"none: the run stops at uptime {review.last_uptime:.1f}{during} (killed, "
                    "or the capture ends there)", "verdict: ", "  ")
    if review.failure:
        line = review.failure.line
        where = f"[{line.step_no}/{line.step_count}] " if line.step_no is not None else ""
        out += wrap(where + line.text.strip(), "first failure: ", "  ")
        if review.hint:
            out += wrap(review.hint.fields["detail"], "  hint: ", "        ")
    else:
        out.append("first failure: none")
    return [fit(line) for line in out]


def _verdict_of(run: Sequence[Event | Line]) -> str:
    for item in reversed(run):
        if isinstance(item, Event) and item.kind == "verdict":
            return f"{item.fields['text']} (exit {item.fields['code']})"
    return "no verdict (killed, or cut off)"


def review_bytes(data: bytes, name: str = "capture",
                 needs: Mapping[str, Sequence[str]] | None = None) -> tuple[str, int]:
    """(the report, the exit code) for a capture's bytes. Never raises on any bytes.

    `name` is the capture's path: the report names its file, "no lines" the whole path.
    """
    capture = read_capture(data)
    if not capture.ours:
        return ascii_text(f"no orchestrate lines found in {name}") + "\n", 1  # the whole path
    runs = split_runs(capture.ours)
    review = review_run(runs[-1], needs)
    review.name = Path(name).name or name
    review.capture_lines, review.runs = capture.lines, len(runs)
    review.earlier = [_verdict_of(run) for run in runs[:-1]]
    return "\n".join(render(review)) + "\n", review.exit_code


def review_path(path: str, needs: Mapping[str, Sequence[str]] | None = None
                ) -> tuple[str, int]:
    """Like review_bytes for a file; OSError if it cannot be read."""
    return review_bytes(Path(path).read_bytes(), path, needs)
