"""`orchestrate review CAPTURE`: what a raw serial capture says, as a model. Stdlib only.

The capture is read as a stream (capture.py) and folded, line by line, into a model:
its power cycles (boots), in each boot the runs of orchestrate, of the reviewed run its
steps, domains and their phases, the critical path, the verdict and the first failure,
and "after the boot": the follower's and the shutdown's lifecycle events, the restarts
and how long each took to repair. Memory stays bounded whatever the input: only the
selected boot is kept whole; the others are one summary each, and every list has a cap
(the review says what it left out). The text, JSON and SVG views read this model.

Boots: Xen's banner starts a power cycle (or, when it was lost, our uptime going back).
Runs: a run starts at `orchestrate VERSION (MODE), pid N`, or, if that line is lost, at
the first line of ours after a verdict. Runs in mode boot (or dry run) are the boot; the
last of them in the boot is reviewed and the ones before it are listed. Runs in mode
watch (the follower) and shutdown are "after the boot". A run whose first line is lost
counts as a boot when it has step lines.

The critical path is the chain of domains that ends at the one that became ready last.
The capture does not state the dependencies, but a domain is created only once the
domains it needs are ready, so the chain is rebuilt from the order of the events: the
predecessor of a domain is the domain whose ->ready line (after a create) came last
before that domain's ->created line, or, for a domain created before the backend of its
vif was ready, that backend when the vif was attached before the domain was ready (its
share of the path is then the time from the backend's ready to its own); then the same
for that one, back to a domain created before any was ready. Each predecessor is noted
when the ->created (or vif attached) line is read, so the whole path costs
O(domains + edges). Adopted domains (already running) have no
create-to-ready time and are not on it; a domain whose ->created line is missing ends
the chain. With the units (`--units DIR`), only the domains it needs (topology) are
candidates. The figure is the sum of the domains' shares along the chain.

Exit codes: 0 when the reviewed run's verdict is OK, 1 when it failed, was interrupted or
has no verdict (killed, or the capture ends), or no line of ours was found.
"""

from __future__ import annotations

import io
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from orchestrator.capture import Banner, CaptureReader, Line
from orchestrator.events import parse_body
from orchestrator.review_model import (
    BOOT_MODES,
    MAX_DOMAINS,
    MAX_SUMMARIES,
    MAX_VIFS,
    STEP_NAMES,
    BootSummary,
    BootView,
    CaptureReview,
    DomainView,
    Failure,
    LifecycleEvent,
    Repair,
    RunView,
    Shutdown,
    StepView,
    Verdict,
    VifView,
)

LIFECYCLE = frozenset({"domain transition", "plumbing restored", "vif attached",
                       "vif detached", "shutdown level", "follower ready"})

# ---- folding the stream into the model ----------------------------------------------------

class Reviewer:
    """Feed it the capture's items in order, then `finish()`."""

    def __init__(self, boot: int | None = None,
                 needs: Mapping[str, Sequence[str]] | None = None) -> None:
        self.wanted = boot
        self.needs = needs
        self.boots: deque[BootSummary] = deque(maxlen=MAX_SUMMARIES)
        self.boots_total = 0
        self.current = BootView(1, 1)
        self.kept: BootView | None = None  # the last closed boot with lines of ours
        self.banner_seen = False

    def feed(self, item: Line | Banner) -> None:
        boot = self.current
        if isinstance(item, Banner):
            if self.banner_seen or boot.ours:
                self._next_boot(item.number)
            self.current.xen = item.version
            self.current.last_line = item.number
            self.banner_seen = True
            return
        if boot.ours and item.uptime < boot.last_uptime - 1.0:
            self._next_boot(item.number)  # our clock went back: a boot whose banner is lost
            boot = self.current
        boot.ours += 1
        boot.last_line, boot.last_uptime = item.number, item.uptime
        parsed = parse_body(item.body)
        name, fields = (parsed[0].name, parsed[1]) if parsed else (None, {})
        run = boot.current
        if run is None or name == "start" or run.verdict is not None:
            self._close_run(boot)
            run = RunView(boot.runs_total + 1, item.number, item.uptime)
            boot.current = run
            boot.runs_total += 1
        _fold(run, item, name, fields, self.needs)

    def finish(self, name: str, lines: int) -> CaptureReview:
        self._close_boot(lines)
        boot = self.kept
        if self.wanted is not None and (boot is None or boot.number != self.wanted):
            boot = None
        return CaptureReview(name, lines, list(self.boots), self.boots_total, boot,
                             self.wanted)

    def _next_boot(self, line: int) -> None:
        self._close_boot(line - 1)
        self.current = BootView(self.boots_total + 1, line)

    def _close_boot(self, last_line: int) -> None:
        boot = self.current
        boot.last_line = max(boot.last_line, last_line)
        self._close_run(boot)
        self.boots_total += 1
        self.boots.append(boot.summary())
        keep = boot.number == self.wanted if self.wanted is not None else boot.ours > 0
        if keep:
            _after_the_boot(boot)
            self.kept = boot

    @staticmethod
    def _close_run(boot: BootView) -> None:
        run = boot.current
        if run is None:
            return
        boot.current = None
        boot.runs.append(run.summary())
        if run.is_boot:
            boot.reviewed = run
            return
        boot.after_runs.append(run.summary())
        boot.after_seen += run.lifecycle_seen
        boot.after.extend(run.lifecycle)
        if run.follower is not None:
            boot.followers.append({"pid": run.pid, "version": run.version, **run.follower})
        if run.mode == "shutdown" or any(e.event == "shutdown level" for e in run.lifecycle):
            boot.shutdown = _shutdown_of(run)


def _fold(run: RunView, line: Line, name: str | None, f: dict[str, object],
          needs: Mapping[str, Sequence[str]] | None) -> None:
    run.lines += 1
    run.cut += line.cut
    run.rejoined += line.rejoined
    run.last_uptime = line.uptime
    if line.step_count is not None:
        run.step_count, run.stepped = line.step_count, True
    if name is None:
        return
    if name == "domain transition":  # the most frequent: first
        _transition(run, line, str(f["domain"]), str(f["to_state"]), f["domid"],
                    _float(f["seconds"]), str(f["cause"]), needs)
    elif name == "start":
        if run.lines == 1:
            run.mode, run.version = str(f["mode"]), str(f["version"])
            run.pid = f["pid"] if isinstance(f["pid"], int) else None
    elif name == "verdict":
        run.verdict = Verdict(str(f["word"]), str(f["detail"]), int(str(f["code"])))
    elif name == "step begin":
        step = str(f["step"])
        if step in STEP_NAMES or (run.step_count != len(STEP_NAMES)
                                  and line.step_no is not None
                                  and line.step_no not in run.steps):
            view = _step_of(run, line, step)
            view.status, view.began = "running", line.uptime
    elif name in ("step ok", "step partial"):
        step = str(f["step"])
        if step in STEP_NAMES or line.step_no is not None:
            view = _step_of(run, line, step)
            view.status = "ok" if name == "step ok" else "partial"
            view.seconds, view.approximate = _float(f["seconds"]), False
            view.detail, view.ended = str(f.get("failed", "")), line.uptime
    elif name in ("step failed", "step skipped"):
        step = str(f["step"])
        detail = str(f.get("error", f.get("reason", "")))
        known = run.steps.get(line.step_no) if line.step_no is not None else None
        if step in STEP_NAMES or (known is not None and known.name == step):
            view = _step_of(run, line, step)
            view.status, view.detail, view.ended = name[5:], detail, line.uptime
            run.hint_for = []
            if name == "step failed":
                if view.began is not None:
                    view.seconds, view.approximate = max(0.0, line.uptime - view.began), True
                _failed(run, line, f"{step} failed: {detail}")
        else:  # 0.1.0's "domain failed" / "domain skipped"
            _transition(run, line, step, "failed" if name == "step failed" else "skipped",
                        None, None, detail, needs)
    elif name == "hint":
        for target in run.hint_for:
            target.hint = str(f["hint"])
        run.hint_for = []
    elif name == "domain state":  # 0.1.0
        state = str(f["state"])
        words = state.split()
        if state.startswith("created paused as domid ") and len(words) == 5:
            _transition(run, line, str(f["domain"]), "created", _domid(words[4]), None, "",
                        needs)
        elif state.startswith("already running as domid ") and state.endswith(": adopted"):
            _transition(run, line, str(f["domain"]), "adopted",
                        _domid(words[4].rstrip(":")), None, "", needs)
    elif name == "domain ready":  # 0.1.0
        _transition(run, line, str(f["domain"]), "ready", f["domid"], _float(f["seconds"]),
                    "", needs)
    elif name == "vif attached":
        dom = _domain(run, str(f["domain"]), line.uptime)
        if dom is not None and len(dom.vifs) < MAX_VIFS:
            dom.vifs.append(VifView(int(str(f["devid"])), str(f["backend"]), line.uptime,
                                    _float(f["seconds"])))
        if dom is not None:
            _waited_for_backend(run, dom, str(f["backend"]))
    elif name == "follower ready":
        run.follower = {"at": line.uptime, **f}
    if name in LIFECYCLE:
        run.lifecycle_seen += 1
        if run.mode not in BOOT_MODES:  # a boot's own are in its domains already
            run.lifecycle.append(LifecycleEvent(line.uptime, name, f))


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _domid(text: str) -> object:
    return int(text) if text.isdigit() else text


def _step_of(run: RunView, line: Line, name: str) -> StepView:
    number = line.step_no
    if number is None and name in STEP_NAMES:
        number = STEP_NAMES.index(name) + 1
    if number is None:  # a step line without its [n/N]: keep it under its name
        for view in run.steps.values():
            if view.name == name:
                return view
        number = max([*run.steps, 0]) + 1
    found = run.steps.get(number)
    if found is None:
        found = run.steps[number] = StepView(number)
    found.name = name or found.name
    return found


def _domain(run: RunView, name: str, uptime: float) -> DomainView | None:
    dom = run.domains.get(name)
    if dom is None:
        if len(run.domains) >= MAX_DOMAINS:
            run.untracked_domains += 1
            return None
        dom = run.domains[name] = DomainView(name, uptime)
    return dom


def _failed(run: RunView, line: Line, text: str) -> None:
    """The run's first failure (a hint that follows it is its hint)."""
    if run.failure is None:
        step = f"[{line.step_no}/{line.step_count}] " if line.step_no is not None else ""
        run.failure = Failure(line.uptime, step, text)
        run.hint_for.append(run.failure)


def _transition(run: RunView, line: Line, name: str, to: str, domid: object,
                seconds: float | None, cause: str,
                needs: Mapping[str, Sequence[str]] | None) -> None:
    dom = _domain(run, name, line.uptime)
    if dom is None:
        return
    run.seq += 1
    dom.status = to
    if domid is not None or to in ("failed", "skipped", "gone"):
        dom.domid = domid if domid is not None else dom.domid
    at = line.uptime
    if to == "created":
        dom.created, dom.created_seq = at, run.seq
        dom.provisioned = dom.booting = dom.ready = dom.ended = None
        dom.after = _predecessor(run, name, needs)
    elif to == "provisioned":
        dom.provisioned = at
    elif to == "booting":
        dom.booting = at
    elif to == "ready":
        dom.ready = at
        if seconds is not None and dom.created_seq is not None:
            dom.seconds, dom.ready_seq, run.last_ready = seconds, run.seq, name
    elif to in ("failed", "skipped"):
        dom.ended, dom.cause = at, cause
        run.hint_for = [dom]
        if to == "failed":
            _failed(run, line, f"{name} failed: {cause}")


def _waited_for_backend(run: RunView, dom: DomainView, backend_name: str) -> None:
    """A vif attached before its domain is ready, to a backend that became ready after the
    domain was created: the domain's readiness waited for that backend, which becomes its
    predecessor if it was ready later than the current one."""
    backend = run.domains.get(backend_name)
    if dom.ready is not None or dom.created_seq is None or backend is None \
            or backend.ready_seq is None or backend.ready_seq < dom.created_seq:
        return
    current = run.domains.get(dom.after) if dom.after else None
    if current is None or current.ready_seq is None or current.ready_seq < backend.ready_seq:
        dom.after, dom.after_vif = backend.name, True


def _predecessor(run: RunView, name: str,
                 needs: Mapping[str, Sequence[str]] | None) -> str | None:
    if needs is None:
        return run.last_ready
    best: DomainView | None = None
    for need in needs.get(name, ()):
        dom = run.domains.get(need)
        if dom is not None and dom.ready_seq is not None and (
                best is None or (best.ready_seq or 0) < dom.ready_seq):
            best = dom
    return best.name if best else None


# ---- after the boot -------------------------------------------------------------------------

def _after_the_boot(boot: BootView) -> None:
    """The restarts and how long each took to repair, from the lifecycle events."""
    known: dict[str, object] = {}
    if boot.reviewed is not None:
        known = {d.name: d.domid for d in boot.reviewed.domains.values()}
    open_repairs: dict[str, Repair] = {}
    for event in boot.after:
        f, at = event.fields, event.uptime
        domain = str(f.get("domain", ""))
        if event.event == "domain transition":
            to = f["to_state"]
            if to == "restarted":
                repair = Repair(domain, at, f["domid"], known.get(domain), str(f["cause"]))
                boot.repairs.append(repair)
                open_repairs[domain] = repair
            elif to == "ready" and domain in open_repairs:
                open_repairs[domain].ready = at
                open_repairs[domain].done = max(open_repairs[domain].done or at, at)
            known[domain] = f["domid"] if f["domid"] is not None else known.get(domain)
        elif event.event == "plumbing restored" and domain in open_repairs:
            repair = open_repairs[domain]
            repair.plumbing, repair.done = _float(f["seconds"]), max(repair.done or at, at)
        elif event.event == "vif attached":
            for whose in (str(f["backend"]), domain):
                if whose in open_repairs:
                    repair = open_repairs[whose]
                    repair.vifs.append((domain, int(str(f["devid"])), at,
                                        _float(f["seconds"])))
                    repair.done = max(repair.done or at, at)
                    break


def _shutdown_of(run: RunView) -> Shutdown:
    shutdown = Shutdown(run.first_uptime, verdict=run.verdict)
    stopping: dict[str, float] = {}
    for event in run.lifecycle:
        f = event.fields
        if event.event == "shutdown level":
            shutdown.levels.append((int(str(f["number"])), int(str(f["levels"])),
                                    str(f["domains"]), event.uptime))
        elif event.event == "domain transition":
            to, domain = f["to_state"], str(f["domain"])
            if to == "stopping":
                stopping[domain] = event.uptime
            elif to in ("stopped", "gone", "failed") and domain in stopping:
                seconds = _float(f["seconds"])
                if seconds is None:
                    seconds = round(event.uptime - stopping[domain], 2)
                shutdown.stopped.append((domain, str(to), event.uptime, seconds))
    return shutdown


# ---- entry points ---------------------------------------------------------------------------

def review_stream(stream: BinaryIO, name: str, boot: int | None = None,
                  needs: Mapping[str, Sequence[str]] | None = None) -> CaptureReview:
    """The review of a capture read from `stream`; CaptureError if it is no capture."""
    reader = CaptureReader(stream)
    reviewer = Reviewer(boot, needs)
    for item in reader:
        reviewer.feed(item)
    return reviewer.finish(name, reader.lines)


def review_path(path: str, boot: int | None = None,
                needs: Mapping[str, Sequence[str]] | None = None) -> CaptureReview:
    """The review of the capture at `path` (`-`: standard input). OSError if it cannot be
    read, CaptureError if it is no capture."""
    if path == "-":
        return review_stream(sys.stdin.buffer, "standard input", boot, needs)
    with open(path, "rb") as stream:
        return review_stream(stream, Path(path).name or path, boot, needs)


def review_bytes(data: bytes, name: str = "capture", boot: int | None = None,
                 needs: Mapping[str, Sequence[str]] | None = None) -> CaptureReview:
    return review_stream(io.BytesIO(data), name, boot, needs)
