"""The console event catalogue: every event's console form, defined once. Stdlib only.

Each event has a name (the structlog event), a template and typed fields. The console
renderer (log.py) and `orchestrate review` (which has only the serial capture) both
derive from this table, so the two cannot drift: `render_body` turns fields into the
text after the line's prefix, `parse_body` turns that text back into (event, fields).

A line is `[%6.1f] ` (seconds since boot), then `[n/N] ` for a line inside a step, then
the body. A hint is indented instead, under the step text (STYLE.md), so that no hint
can read like a line of a domain named `hint`.

Three kinds of event:
- structured: the review reads them. Their forms are pairwise disjoint, so any field
  values of the right type render to a line that parses back to the same event with
  the same fields (tests/unit/test_events.py proves it with hypothesis, also for lines
  cut by kernel and Xen output). A value that does not fit its type (a domain name with
  a space) is rendered as `event key=value ...`, which the review does not mistake.
- prose: notes, actions, checks, xl config lines: for people; the review only counts
  them as lines of ours. Their free text may look like anything, so they are never
  parsed into fields.
- legacy: forms of orchestrate 0.1.0 (the "domain state/ready/failed/skipped" lines that
  the lifecycle's "domain transition" replaces, and the hint with its step number):
  parsed, tried after every structured form, so captures of older boots still review.

Free text is escaped (event_types.py) so that a line stays one printable ASCII line
and round-trips, and never reads as Xen's or the kernel's output cutting ours.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.event_types import (
    DOMAIN_NAME,
    STEP_NAME,
    Abbrev,
    BareDomid,
    Choice,
    Clause,
    Domid,
    FieldType,
    Int,
    NameList,
    Optional,
    Path,
    Seconds,
    Text,
    Token,
    escape_text,
)

DOMAIN = Token(DOMAIN_NAME)
STEP = Token(STEP_NAME)
TEXT = Text()

# The states of a domain's lifecycle (issue 9), as "domain transition" carries them.
STATES = ("pending", "created", "provisioned", "booting", "ready", "adopted", "restarted",
          "crashed", "stopping", "stopped", "failed", "skipped", "gone")
MODES = ("boot", "dry run", "watch", "shutdown")
VERDICT_WORDS = ("OK", "FAILED", "INTERRUPTED")
INDENT = " " * 6  # a hint sits under the text of a `[n/N] ` line

# ---- the line's prefix --------------------------------------------------------------------

UPTIME_PREFIX = re.compile(r"\[( *\d{1,9}\.\d)\] ")  # ours: one decimal, >= 6 wide
STEP_PREFIX = re.compile(r"\[(\d{1,3})/(\d{1,3})\] ")


def line_prefix(uptime: float, step_no: object = None, step_count: object = None) -> str:
    step = f"[{step_no}/{step_count}] " if step_no is not None else ""
    return f"[{uptime:6.1f}] {step}"


# ---- events ----------------------------------------------------------------------------

_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class EventDef:
    name: str
    template: str
    fields: Mapping[str, FieldType]
    kind: str = "structured"  # structured, prose, legacy
    stepless: bool = False  # printed without [n/N] (a hint: its template is indented)
    renders: bool = True  # False: a legacy form only read (nothing prints it any more)

    def parts(self) -> list[tuple[str, str]]:
        """("lit", text) and ("field", name), in order."""
        out, at = [], 0
        for m in _FIELD.finditer(self.template):
            if m.start() > at:
                out.append(("lit", self.template[at: m.start()]))
            out.append(("field", m.group(1)))
            at = m.end()
        if at < len(self.template):
            out.append(("lit", self.template[at:]))
        return out

    def render(self, values: Mapping[str, object]) -> str | None:
        """The body, or None when a field is missing or does not fit its type."""
        out = []
        for what, text in self.parts():
            if what == "lit":
                out.append(text)
                continue
            if text == "would":
                out.append("would " if values.get("dry_run") else "")
                continue
            if text not in values and not isinstance(self.fields[text], Optional):
                return None
            shown = self.fields[text].render(values.get(text))
            if shown is None:
                return None
            out.append(shown)
        return "".join(out)

    def regex(self, prefix: str) -> str:
        parts = self.parts()
        out = []
        for i, (what, text) in enumerate(parts):
            if what == "lit":
                out.append(re.escape(text))
                continue
            group = self.fields[text].regex(f"{prefix}{text}")
            last = i + 1 == len(parts)
            if last and type(self.fields[text]) is Text and out and parts[i - 1][1][-1:] == " ":
                # "waves " + "": a capture's line ends are stripped, so is that space
                out[-1] = re.escape(parts[i - 1][1][:-1])
                group = f"(?: {group})?"
            out.append(group)
        return "".join(out)


def _event(name: str, template: str, kind: str = "structured", stepless: bool = False,
           renders: bool = True, **fields: FieldType) -> EventDef:
    return EventDef(name, template, fields, kind, stepless, renders)


_OPT_SECONDS = Optional(Seconds(), " in ", " s")
_CAUSE = Optional(TEXT, ": ")

STRUCTURED: tuple[EventDef, ...] = (
    _event("start", "orchestrate {version} ({mode}), pid {pid}, root {root}",
           version=Token(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,39}"), mode=Choice(MODES),
           pid=Int(), root=Path()),
    _event("units loaded", "units {units}: {domains} domains, waves {waves}",
           units=Path(), domains=Int(), waves=TEXT),
    _event("step begin", "{step}", step=STEP),
    _event("step ok", "{step} ok ({seconds} s)", step=STEP, seconds=Seconds()),
    _event("step partial", "{step} done with failures ({seconds} s): {failed}",
           step=STEP, seconds=Seconds(), failed=TEXT),
    _event("step failed", "{step} failed: {error}", step=STEP, error=TEXT),
    _event("step skipped", "{step} skipped: {reason}", step=STEP, reason=TEXT),
    _event("hint", INDENT + "hint: {hint}", stepless=True, hint=TEXT),
    _event("verdict", "orchestrate: {word}{detail} (exit {code})",
           word=Choice(VERDICT_WORDS), detail=Clause(), code=Int(0, 255)),
    _event("domain transition", "{domain}: {from_state} -> {to_state} ({domid}){seconds}"
           "{cause}", domain=DOMAIN, from_state=Choice(STATES), to_state=Choice(STATES),
           domid=Domid(), seconds=_OPT_SECONDS, cause=_CAUSE),
    _event("plumbing restored", "{domain}: plumbing restored for {domid} in {seconds} s"
           "{what}", domain=DOMAIN, domid=Domid(), seconds=Seconds(), what=_CAUSE),
    _event("vif attached", "{domain}: vif {devid} attached to {backend} ({backend_domid})"
           "{seconds}{cause}", domain=DOMAIN, devid=Int(), backend=DOMAIN,
           backend_domid=Domid(), seconds=Optional(Seconds(), " in ", " s"),
           cause=_CAUSE),
    _event("vif detached", "{domain}: vif {devid} detached from {backend} ({backend_domid})"
           "{cause}", domain=DOMAIN, devid=Int(), backend=DOMAIN, backend_domid=Domid(),
           cause=_CAUSE),
    # not {level}: structlog's own "level" (info, warning) would overwrite it
    _event("shutdown level", "shutdown level {number} of {levels}: {domains}",
           number=Int(), levels=Int(), domains=NameList()),
    _event("follower ready", "follower ready: following {domains} domains, watching "
           "{watches}", domains=Int(), watches=TEXT),
)



# orchestrate 0.1.0's domain lines (steps/domains.py prints them until it emits
# "domain transition"); step failed/skipped read them for a name that is no step.
LEGACY: tuple[EventDef, ...] = (
    _event("domain ready", "{domain} ready as domid {domid} ({seconds} s after create)",
           "legacy", renders=False, domain=DOMAIN, domid=BareDomid(),
           seconds=Seconds()),
    _event("hint", "hint: {hint}", "legacy", renders=False, hint=TEXT),
    _event("domain state", "{domain}: {state}", "legacy", renders=False, domain=DOMAIN,
           state=TEXT),
    _event("domain failed", "{domain} failed: {error}", "legacy", renders=False,
           domain=DOMAIN, error=TEXT),
    _event("domain skipped", "{domain} skipped: {reason}", "legacy", renders=False,
           domain=DOMAIN, reason=TEXT),
)


PROSE: tuple[EventDef, ...] = tuple(
    EventDef(name, template, {f: Abbrev(24) if f == "sha256" else TEXT
                              for f in _FIELD.findall(template) if f != "would"}, "prose")
    for name, template in (
        ("already done", "{what}: already done"),
        ("action", "{would}{text}"),
        ("note", "{text}"),
        ("check", "check {check}: {result}"),
        ("warning", "WARNING: {text}"),
        ("xl config", "  | {line}"),
        ("xenstore node", "{would}xenstore {op} {path}{value_text} [{perms}]"),
        ("fetch", "{would}fetch {url}"),
        ("fetch expect", "  -> {path} ({size} B)"),
        ("fetch sha256", "  sha256 {sha256}..."),
        ("fetch attempt failed", "fetch {url}: attempt {attempt}/{attempts} failed: {error}"),
        ("summary", "{text}"),
        ("exec", "exec {argv}"),  # --debug
        ("xenstore transaction conflict", "xenstore transaction conflict, attempt {attempt}"),
    )
)

CATALOGUE: dict[str, EventDef] = {}
for _def in (*STRUCTURED, *LEGACY, *PROSE):
    if _def.renders:
        CATALOGUE.setdefault(_def.name, _def)

# Fields that carry context, not content: never shown as key=value on the console.
CONTEXT_FIELDS = frozenset({"event", "level", "uptime", "step_no", "step_count", "dry_run",
                            "timestamp", "detail"})


def render_body(values: Mapping[str, object]) -> tuple[str, bool]:
    """(the body of the console line, printed without [n/N]?) for one event's fields.

    Never raises: an event without a definition, or whose values do not fit it, is shown
    as its name and key=value pairs (free text escaped like any other).
    """
    name = str(values.get("event", ""))
    definition = CATALOGUE.get(name)
    if definition is not None:
        body = definition.render(values)
        if body is not None:
            if definition.kind == "prose":
                used = set(_FIELD.findall(definition.template))
                extra = [(k, v) for k, v in values.items()
                         if k not in used and k not in CONTEXT_FIELDS]
                body += "".join(f" {k}={_show(v)}" for k, v in extra)
            return body, definition.stepless
    shown = [f"{k}={_show(v)}" for k, v in values.items() if k not in CONTEXT_FIELDS]
    return " ".join([escape_text(name), *shown]), False


def _show(value: object) -> str:
    text = escape_text(str(value))
    return '"' + text.replace('"', '\\"') + '"' if (" " in text or not text) else text


# ---- parsing -----------------------------------------------------------------------------

_PARSED = (*STRUCTURED, *LEGACY)
Plan = tuple[EventDef, "re.Pattern[str]", list[tuple[str, str, str | None, Callable[..., object]]]]


@functools.cache
def _parser() -> tuple[re.Pattern[str], list[Plan], dict[str, int]]:
    """Compiled on first use: only `review` parses, and a boot or the follower should not
    pay the regexes at start-up (they were 6-8 ms of its import on this machine).

    The alternation of all events finds which event; per event, its own pattern (a
    handful of groups, not every event's) gives the fields: (field, its group, the
    Clause's second group or None, the field's parser)."""
    any_event = re.compile("|".join(f"(?P<e{i}>{d.regex(f'e{i}_')})"
                                    for i, d in enumerate(_PARSED)))
    plans: list[Plan] = [
        (d, re.compile(d.regex("")),
         [(name, name, f"{name}_" if isinstance(k, Clause) else None, k.parse)
          for name, k in d.fields.items()])
        for d in _PARSED]
    return any_event, plans, {f"e{i}": i for i in range(len(_PARSED))}


def parse_body(body: str) -> tuple[EventDef, dict[str, object]] | None:
    """The structured (or legacy) event a line's body carries, or None (prose, foreign)."""
    any_event, plans, index = _parser()
    m = any_event.fullmatch(body)
    if m is None or m.lastgroup is None:
        return None
    definition, single, plan = plans[index[m.lastgroup]]
    found = single.fullmatch(body)
    if found is None:  # cannot be: the same pattern matched inside the alternation
        return None
    groups = found.groupdict()
    fields: dict[str, object] = {}
    for name, group, alternative, parse in plan:
        text = groups[group]
        if text is None and alternative is not None:
            text = groups[alternative]
        fields[name] = parse(text)
    return definition, fields
