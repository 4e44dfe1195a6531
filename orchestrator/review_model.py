"""The review's model: what `orchestrate review` knows about a capture. Stdlib only.

Plain data, filled in by review.py from the capture's lines; the text, JSON and SVG
views (review_text.py, review_json.py, review_svg.py) only read it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.event_types import verdict_text

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
MAX_DOMAINS = 50_000  # per run; the audit's 32,000 fit
MAX_EVENTS = 10_000  # lifecycle events kept after a boot (the last ones)
MAX_SUMMARIES = 1_000  # boots, and runs in a boot, listed (the last ones)
MAX_VIFS = 16  # per domain
BOOT_MODES = ("boot", "dry run")


@dataclass(slots=True)
class StepView:
    number: int
    name: str = ""
    status: str = ""  # "" (not run), running, ok, partial, failed, skipped
    seconds: float | None = None
    approximate: bool = False  # measured from its lines, not said by orchestrate
    detail: str = ""
    began: float | None = None
    ended: float | None = None


@dataclass(slots=True)
class VifView:
    devid: int
    backend: str
    at: float
    seconds: float | None


@dataclass(slots=True)
class DomainView:
    name: str
    first_seen: float
    domid: object = None  # int, a dry run's "<domid:NAME>", or None
    status: str = ""  # the last state it reached
    seconds: float | None = None  # create -> ready
    cause: str = ""
    hint: str = ""
    created: float | None = None  # uptime of ->created (created paused)
    provisioned: float | None = None
    booting: float | None = None  # unpaused
    ready: float | None = None
    ended: float | None = None  # failed or skipped
    vifs: list[VifView] = field(default_factory=list)
    created_seq: int | None = None
    ready_seq: int | None = None
    after: str | None = None  # its predecessor on the critical path
    # the predecessor is the backend of a vif attached once that backend was ready (the
    # domain was created before it, and its readiness waited for the vif)
    after_vif: bool = False

    @property
    def start(self) -> float | None:
        """When its creation began: the create-to-ready time back from ready."""
        if self.ready is not None and self.seconds is not None:
            return max(0.0, self.ready - self.seconds)
        return self.created


@dataclass(slots=True)
class Failure:
    uptime: float
    step: str  # "[5/9] " or ""
    text: str  # "fetch-images failed: ...", "net-vm failed: ..."
    hint: str = ""


@dataclass(slots=True)
class Verdict:
    word: str
    detail: str
    code: int

    @property
    def text(self) -> str:
        return f"{verdict_text(self.word, self.detail)} (exit {self.code})"


@dataclass(slots=True)
class LifecycleEvent:
    uptime: float
    event: str
    fields: dict[str, object]


@dataclass(slots=True)
class RunSummary:
    number: int
    mode: str | None
    version: str
    pid: int | None
    first_line: int
    first_uptime: float
    last_uptime: float
    verdict: Verdict | None
    is_boot: bool


@dataclass
class RunView:
    number: int
    first_line: int
    first_uptime: float
    mode: str | None = None
    version: str = ""
    pid: int | None = None
    last_uptime: float = 0.0
    lines: int = 0
    cut: int = 0
    rejoined: int = 0
    step_count: int = len(STEP_NAMES)
    steps: dict[int, StepView] = field(default_factory=dict)
    domains: dict[str, DomainView] = field(default_factory=dict)
    untracked_domains: int = 0
    verdict: Verdict | None = None
    failure: Failure | None = None
    lifecycle: deque[LifecycleEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    lifecycle_seen: int = 0
    stepped: bool = False  # a line of it had [n/N]
    follower: dict[str, object] | None = None
    # working state
    seq: int = 0
    last_ready: str | None = None
    hint_for: list[Failure | DomainView] = field(default_factory=list)

    @property
    def is_boot(self) -> bool:
        # a run whose first line is lost: a boot unless it only has lifecycle lines
        return self.mode in BOOT_MODES or (self.mode is None and (
            bool(self.steps) or self.stepped or not self.lifecycle_seen))

    @property
    def exit_code(self) -> int:
        ok = self.verdict is not None and (self.verdict.word, self.verdict.code) == ("OK", 0)
        return 0 if ok else 1

    def summary(self) -> RunSummary:
        return RunSummary(self.number, self.mode, self.version, self.pid, self.first_line,
                          self.first_uptime, self.last_uptime, self.verdict, self.is_boot)


@dataclass
class Repair:
    """A domain restarted after the boot, and what it took to make it whole again."""

    domain: str
    at: float
    domid: object
    was: object
    cause: str
    plumbing: float | None = None  # seconds, as the follower measured them
    ready: float | None = None
    vifs: list[tuple[str, int, float, float | None]] = field(default_factory=list)
    done: float | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.done is None else round(self.done - self.at, 2)


@dataclass
class Shutdown:
    at: float
    levels: list[tuple[int, int, str, float]] = field(default_factory=list)
    stopped: list[tuple[str, str, float, float | None]] = field(default_factory=list)
    verdict: Verdict | None = None


@dataclass
class BootView:
    number: int
    first_line: int
    xen: str | None = None
    last_line: int = 0
    ours: int = 0
    last_uptime: float = 0.0
    runs: deque[RunSummary] = field(default_factory=lambda: deque(maxlen=MAX_SUMMARIES))
    runs_total: int = 0
    reviewed: RunView | None = None
    after: deque[LifecycleEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    after_seen: int = 0
    after_runs: deque[RunSummary] = field(default_factory=lambda: deque(maxlen=MAX_SUMMARIES))
    followers: deque[dict[str, object]] = field(
        default_factory=lambda: deque(maxlen=MAX_SUMMARIES))
    repairs: list[Repair] = field(default_factory=list)
    shutdown: Shutdown | None = None
    current: RunView | None = None

    def summary(self) -> BootSummary:
        verdict = self.reviewed.verdict if self.reviewed else None
        return BootSummary(self.number, self.xen, self.first_line, self.last_line,
                           self.ours, self.runs_total, verdict,
                           self.reviewed is not None)


@dataclass(slots=True)
class BootSummary:
    number: int
    xen: str | None
    first_line: int
    last_line: int
    ours: int
    runs: int
    verdict: Verdict | None
    has_boot_run: bool


@dataclass
class CaptureReview:
    name: str
    lines: int
    boots: list[BootSummary]
    boots_total: int
    boot: BootView | None
    wanted: int | None = None

    @property
    def exit_code(self) -> int:
        run = self.boot.reviewed if self.boot else None
        return run.exit_code if run is not None else 1

    def critical_path(self) -> list[DomainView]:
        run = self.boot.reviewed if self.boot else None
        return critical_path(run.domains) if run else []


def critical_path(domains: Mapping[str, DomainView]) -> list[DomainView]:
    """The chain ending at the domain ready last (the rule is in review.py's docstring)."""
    last: DomainView | None = None
    for dom in domains.values():
        if dom.ready_seq is not None and (last is None or (last.ready_seq or 0) < dom.ready_seq):
            last = dom
    path: list[DomainView] = []
    seen: set[str] = set()
    while last is not None and last.name not in seen:
        path.append(last)
        seen.add(last.name)
        before = domains.get(last.after) if last.after else None
        if before is None or before.ready_seq is None or last.created_seq is None or (
                before.ready_seq >= last.created_seq and not last.after_vif):
            break
        last = before
    path.reverse()
    return path


def path_share(dom: DomainView, before: DomainView | None) -> float:
    """A domain's part of the critical path: its create-to-ready time, or, when it waited
    for a vif whose backend (`before`) became ready after it was created, only the time
    from that backend's ready to its own (the rest overlapped the backend's boot)."""
    if dom.after_vif and before is not None and before.ready is not None \
            and dom.ready is not None:
        return max(0.0, dom.ready - before.ready)
    return dom.seconds or 0.0


def path_seconds(path: Sequence[DomainView]) -> float:
    """The critical path's length: the sum of its domains' shares."""
    return sum(path_share(dom, path[i - 1] if i else None) for i, dom in enumerate(path))
