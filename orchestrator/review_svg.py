"""`orchestrate review CAPTURE --svg FILE`: a boot chart, like `systemd-analyze plot`.

A self-contained SVG (no script, no external font or image: it shows the same in any
browser, offline): a time axis in seconds since boot; a bar per step; a bar per domain
from the start of its `xl create` to ready, in phases where the lines exist (xl create
running, created paused, provisioned, unpaused and booting) with a tick where a vif
was attached; the critical path outlined in black and joined by lines; failures in red
with their one-line cause; and after the boot, a row per domain with its restarts and
repairs, vif re-attachments and its shutdown, and a line at each shutdown level.

An idle stretch (the follower waiting for hours) would flatten the boot into a line,
so a gap longer than GAP_SECONDS with nothing in it is drawn as a break of BREAK_WIDTH
pixels marked with its length. `Layout` holds the geometry (x of a time, y of a row);
the test renders the SVG with Chromium and reads pixels where the layout says the bars
are. Stdlib only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from orchestrator.review_model import (
    BootView,
    CaptureReview,
    DomainView,
    RunView,
    critical_path,
)
from orchestrator.review_text import ascii_text

LABEL_WIDTH = 230  # the names on the left
PLOT_WIDTH = 900  # pixels for the time that is not a break
ROW = 20
BAR = 12
HEADER = 74
BREAK_WIDTH = 36
GAP_SECONDS = 20.0
MAX_ROWS = 400  # rows drawn (a capture of 32,000 domains makes a chart of its first ones)

COLOURS = {
    "step ok": "#4a7fc1",
    "step partial": "#e89a3c",
    "step failed": "#d0021b",
    "step running": "#9b9b9b",
    "creating": "#a9bcd6",
    "created paused": "#f2c94c",
    "provisioned": "#9fd07a",
    "booting": "#3f9d3f",
    "failed": "#d0021b",
    "adopted": "#c8c8c8",
    "vif attached": "#0b6e7a",
    "restart": "#f08a00",
    "repair": "#9b3fbf",
    "stopping": "#8b5a2b",
    "critical path": "#000000",
}
GRID = "#e4e4e4"
TEXT = "#222222"


@dataclass
class Layout:
    """Where things are: the same numbers draw the chart and check its picture."""

    start: float  # the time at the left edge of the plot
    scale: float  # pixels a second
    breaks: list[tuple[float, float]]  # (from, to) idle gaps drawn BREAK_WIDTH wide
    rows: dict[str, float] = field(default_factory=dict)  # row key -> y of its bar centre
    width: int = 0
    height: int = 0

    def x(self, t: float) -> float:
        """The x of time t (seconds since boot)."""
        x = LABEL_WIDTH + 10.0
        at = self.start
        for gap_from, gap_to in self.breaks:
            if t <= gap_from:
                break
            x += (gap_from - at) * self.scale + BREAK_WIDTH
            at = gap_to
            if t < gap_to:  # inside a break: along it
                return x - BREAK_WIDTH + BREAK_WIDTH * (t - gap_from) / (gap_to - gap_from)
        return x + (max(t, at) - at) * self.scale


def _spans(boot: BootView) -> list[tuple[float, float]]:
    """Every stretch of time the chart draws something in (a bar, or a point)."""
    spans: list[tuple[float, float]] = []
    run = boot.reviewed
    if run is not None:
        spans.append((run.first_uptime, run.last_uptime))
        for step in run.steps.values():
            if step.began is not None:
                spans.append((step.began, max(step.began, step.ended or step.began)))
        for dom in list(run.domains.values())[:MAX_ROWS]:
            marks = [t for t in (dom.start, dom.first_seen, dom.created, dom.ready, dom.ended)
                     if t is not None]
            spans.append((min(marks), max(marks)))
    spans += [(e.uptime, e.uptime) for e in boot.after]
    return sorted((a, b) for a, b in spans if math.isfinite(a) and math.isfinite(b))


def _times(boot: BootView) -> list[float]:
    return sorted(t for span in _spans(boot) for t in span)


def layout(review: CaptureReview) -> Layout:
    assert review.boot is not None
    spans = _spans(review.boot) or [(0.0, 1.0)]
    times = _times(review.boot) or [0.0, 1.0]
    breaks: list[tuple[float, float]] = []
    covered = spans[0][1]
    for a, b in spans[1:]:  # idle: no bar covers it, nothing happens in it
        if a - covered > GAP_SECONDS:
            breaks.append((covered + 2.0, a - 2.0))
        covered = max(covered, b)
    drawn = (times[-1] - times[0]) - sum(b - a for a, b in breaks)
    tick = _tick(max(drawn, 1.0))
    start = math.floor(times[0] / tick) * tick
    scale = PLOT_WIDTH / max(times[-1] - start - sum(b - a for a, b in breaks) + tick, 1.0)
    return Layout(start, scale, breaks)


def _tick(span: float) -> float:
    for tick in (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600):
        if span / tick <= 16:
            return float(tick)
    return 7200.0


class _Svg:
    def __init__(self) -> None:
        self.under: list[str] = []  # the grid, drawn first
        self.parts: list[str] = []
        self.right = 0.0  # where the rightmost text ends (monospace: ~6.7 px a letter)

    def rect(self, x: float, y: float, w: float, h: float, fill: str, kind: str,
             title: str = "", stroke: str | None = None, under: bool = False) -> None:
        outline = f' stroke="{stroke}" stroke-width="2"' if stroke else ""
        tip = f"<title>{_text(title)}</title>" if title else ""
        layer = self.under if under else self.parts
        layer.append(f'<rect class="{kind}" x="{x:.1f}" y="{y:.1f}" width="{max(w, 2):.1f}"'
                          f' height="{h:.1f}" fill="{fill}"{outline}>{tip}</rect>')

    def line(self, x1: float, y1: float, x2: float, y2: float, colour: str,
             dash: str = "", width: float = 1, under: bool = False) -> None:
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        layer = self.under if under else self.parts
        layer.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                     f'stroke="{colour}" stroke-width="{width}"{dashed}/>')

    def text(self, x: float, y: float, text: str, colour: str = TEXT, anchor: str = "start",
             size: float = 11, weight: str = "normal") -> None:
        if anchor == "start":
            self.right = max(self.right, x + len(text[:160]) * size * 0.61)
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" fill="{colour}" font-size="{size}" '
                          f'text-anchor="{anchor}" font-weight="{weight}">{_text(text)}</text>')


def _text(text: str) -> str:
    return escape(ascii_text(text)[:160], {'"': "&quot;"})


def render_svg(review: CaptureReview) -> str:
    return chart(review)[0]


def chart(review: CaptureReview) -> tuple[str, Layout]:
    """The SVG text, and the layout it was drawn with."""
    boot = review.boot
    assert boot is not None
    geo = layout(review)
    svg = _Svg()
    run = boot.reviewed
    y = float(HEADER)
    if run is not None:
        y = _steps(svg, geo, run, y)
        y = _domains(svg, geo, run, y)
    y = _after(svg, geo, boot, y)
    _header(svg, review, run)
    end = max([geo.x(t) for t in _times(boot)] + [LABEL_WIDTH + PLOT_WIDTH])
    geo.width = int(max(end + 40, svg.right + 20, LABEL_WIDTH + PLOT_WIDTH + 60))
    geo.height = int(y) + 64
    _axis(svg, geo, boot)
    _legend(svg, geo)
    body = "\n".join(svg.under + svg.parts)
    return (f'<?xml version="1.0" encoding="us-ascii"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{geo.width}" '
            f'height="{geo.height}" viewBox="0 0 {geo.width} {geo.height}" '
            f'font-family="monospace">\n'
            f'<rect class="background" x="0" y="0" width="{geo.width}" height="{geo.height}" '
            f'fill="#ffffff"/>\n{body}\n</svg>\n'), geo


def _header(svg: _Svg, review: CaptureReview, run: RunView | None) -> None:
    boot = review.boot
    assert boot is not None
    xen = f", Xen {boot.xen}" if boot.xen else ""
    svg.text(10, 18, f"orchestrate boot chart: {review.name}, boot {boot.number} of "
             f"{review.boots_total}{xen}", size=13, weight="bold")
    if run is None:
        svg.text(10, 36, "no boot run of orchestrate in this boot")
        return
    verdict = run.verdict.text if run.verdict else "no verdict (killed, or the capture ends)"
    colour = TEXT if run.exit_code == 0 else COLOURS["failed"]
    svg.text(10, 34, f"run {run.number}: orchestrate {run.version} ({run.mode or '?'}): "
             f"{verdict}", colour=colour)
    path = critical_path(run.domains)
    if path:
        chain = " -> ".join(d.name for d in path)
        total = sum(d.seconds or 0.0 for d in path)
        svg.text(10, 50, f"critical path: {chain} = {total:.2f} s")


def _axis(svg: _Svg, geo: Layout, boot: BootView) -> None:
    times = _times(boot) or [0.0]
    tick = _tick(max(times[-1] - geo.start - sum(b - a for a, b in geo.breaks), 1.0))
    top, bottom = HEADER - 8, geo.height - 54
    t = geo.start
    while t <= times[-1] + tick:
        if not any(a < t < b for a, b in geo.breaks):
            x = geo.x(t)
            svg.line(x, top, x, bottom, GRID, under=True)
            label = f"{t:g} s"
            svg.text(x, top - 2, label, colour="#777777", anchor="middle", size=10)
        t += tick
    for gap_from, gap_to in geo.breaks:
        x = geo.x(gap_from)
        svg.rect(x, top, BREAK_WIDTH, bottom - top, "#f4f4f4", "break",
                 f"nothing happened for {gap_to - gap_from:.0f} s", under=True)
        svg.text(x + BREAK_WIDTH / 2, bottom + 12, f"+{gap_to - gap_from:.0f} s",
                 colour="#777777", anchor="middle", size=9)
    svg.text(LABEL_WIDTH + 10, bottom + 26, "seconds since boot", colour="#777777", size=10)


def _row(svg: _Svg, geo: Layout, key: str, label: str, y: float,
         colour: str = TEXT) -> float:
    geo.rows[key] = y + ROW / 2
    svg.text(LABEL_WIDTH, y + ROW / 2 + 4, label, colour=colour, anchor="end")
    return y + ROW


def _section(svg: _Svg, title: str, y: float) -> float:
    svg.text(10, y + 14, title, size=12, weight="bold")
    return y + ROW


def _steps(svg: _Svg, geo: Layout, run: RunView, y: float) -> float:
    y = _section(svg, "steps", y)
    for number, step in sorted(run.steps.items()):
        if step.began is None:
            continue
        end = step.ended if step.ended is not None else run.last_uptime
        if step.seconds is not None and not step.approximate:
            end = step.began + step.seconds
        status = step.status or "running"
        colour = COLOURS.get(f"step {status}", COLOURS["step ok"])
        if status == "skipped":
            colour = COLOURS["step running"]
        label = f"{number}/{run.step_count} {step.name}"
        top = y + (ROW - BAR) / 2
        svg.rect(geo.x(step.began), top, geo.x(end) - geo.x(step.began), BAR, colour,
                 f"step {status}", f"{label}: {status}")
        note = f"{step.seconds:.2f} s" if step.seconds is not None else status
        if status in ("failed", "partial"):
            note = f"{status}: {step.detail}"
        svg.text(max(geo.x(end), geo.x(step.began) + 2) + 4, top + BAR - 2, note,
                 colour=COLOURS["failed"] if status == "failed" else TEXT)
        y = _row(svg, geo, f"step:{number}", label, y,
                 COLOURS["failed"] if status == "failed" else TEXT)
    return y


def _phases(dom: DomainView) -> list[tuple[str, float, float]]:
    """(phase, from, to) of a domain's bar."""
    marks = [("creating", dom.start), ("created paused", dom.created),
             ("provisioned", dom.provisioned), ("booting", dom.booting)]
    known = [(name, t) for name, t in marks if t is not None]
    end = dom.ready if dom.ready is not None else dom.ended
    if end is None or not known:
        return []
    if dom.booting is None and dom.ready is not None and len(known) > 1:
        known[-1] = ("booting", known[-1][1])  # 0.1.0: created, then ready
    out = []
    for i, (name, t) in enumerate(known):
        stop = known[i + 1][1] if i + 1 < len(known) else end
        if stop > t:
            out.append((name, t, stop))
    return out


def _domains(svg: _Svg, geo: Layout, run: RunView, y: float) -> float:
    if not run.domains:
        return y
    y = _section(svg, "domains (xl create -> ready)", y)
    path = {d.name for d in critical_path(run.domains)}
    previous: tuple[float, float] | None = None
    for dom in list(run.domains.values())[:MAX_ROWS]:
        top = y + (ROW - BAR) / 2
        stroke = COLOURS["critical path"] if dom.name in path else None
        if dom.status in ("failed", "skipped"):
            begin = dom.start if dom.start is not None else dom.first_seen
            end = dom.ended if dom.ended is not None else begin
            colour = COLOURS["failed"] if dom.status == "failed" else COLOURS["adopted"]
            svg.rect(geo.x(begin), top, geo.x(end) - geo.x(begin), BAR, colour,
                     f"domain {dom.status}", f"{dom.name}: {dom.status}: {dom.cause}")
            svg.text(geo.x(end) + 6, top + BAR - 2, f"{dom.status}: {dom.cause}",
                     colour=COLOURS["failed"] if dom.status == "failed" else TEXT)
        elif dom.seconds is None and dom.status in ("adopted", "ready"):
            svg.rect(geo.x(dom.first_seen), top + 3, geo.x(run.last_uptime)
                     - geo.x(dom.first_seen), BAR - 6, COLOURS["adopted"], "domain adopted",
                     f"{dom.name}: adopted (already running)")
            svg.text(geo.x(run.last_uptime) + 6, top + BAR - 2, "adopted (already running)")
        else:
            phases = _phases(dom)
            for name, t0, t1 in phases:
                svg.rect(geo.x(t0), top, geo.x(t1) - geo.x(t0), BAR, COLOURS[name],
                         f"phase {name}", f"{dom.name}: {name} {t0:.1f} -> {t1:.1f}")
            if phases and stroke:
                begin, end = phases[0][1], phases[-1][2]
                svg.parts.append(f'<rect class="critical" x="{geo.x(begin):.1f}" '
                                 f'y="{top:.1f}" width="{geo.x(end) - geo.x(begin):.1f}" '
                                 f'height="{BAR}" fill="none" stroke="{stroke}" '
                                 'stroke-width="2"/>')
                if previous is not None:
                    svg.line(previous[0], previous[1], geo.x(begin), top + BAR / 2, stroke,
                             "3,2")
                previous = (geo.x(end), top + BAR / 2)
            for vif in dom.vifs:
                svg.rect(geo.x(vif.at) - 1.5, top - 3, 3, BAR + 6, COLOURS["vif attached"],
                         "vif attached", f"{dom.name}: vif {vif.devid} attached to "
                         f"{vif.backend}")
            end = phases[-1][2] if phases else (dom.created or dom.first_seen)
            note = f"{dom.seconds:.2f} s" if dom.seconds is not None else dom.status
            if dom.name in path:
                note += " (critical path)"
            svg.text(geo.x(end) + 6, top + BAR - 2, note)
        y = _row(svg, geo, f"domain:{dom.name}", f"{dom.name} (domid {dom.domid})"
                 if dom.domid is not None else dom.name, y,
                 COLOURS["failed"] if dom.status == "failed" else TEXT)
    if len(run.domains) > MAX_ROWS:
        svg.text(10, y + 14, f"... and {len(run.domains) - MAX_ROWS} more domains "
                 "(--json lists them all)")
        y += ROW
    return y


def _after(svg: _Svg, geo: Layout, boot: BootView, y: float) -> float:
    if not boot.after:
        return y
    y = _section(svg, "after the boot", y)
    first_row = y
    rows: dict[str, float] = {}
    for event in boot.after:
        domain = event.fields.get("domain")
        if isinstance(domain, str) and domain not in rows and len(rows) < MAX_ROWS:
            rows[domain] = y
            y = _row(svg, geo, f"after:{domain}", domain, y)
    for repair in boot.repairs:
        top = rows.get(repair.domain)
        if top is None:
            continue
        top += (ROW - BAR) / 2
        end = repair.done if repair.done is not None else repair.at
        svg.rect(geo.x(repair.at), top, geo.x(end) - geo.x(repair.at), BAR, COLOURS["repair"],
                 "repair", f"{repair.domain}: restarted as domid {repair.domid}, repaired in "
                 f"{repair.seconds} s")
        svg.rect(geo.x(repair.at) - 3, top - 3, 6, BAR + 6, COLOURS["restart"], "restart",
                 f"{repair.domain} restarted as domid {repair.domid}")
        text = (f"domid {repair.domid}, repaired in {repair.seconds:.2f} s"
                if repair.seconds is not None else f"restarted as domid {repair.domid}")
        svg.text(geo.x(repair.at) - 8, top + BAR - 2, text, anchor="end")  # idle before it
    stopping: dict[str, float] = {}
    level: dict[str, str] = {}
    for event in boot.after:
        f = event.fields
        domain = str(f.get("domain", ""))
        top = rows.get(domain, first_row) + (ROW - BAR) / 2
        if event.event in ("vif attached", "vif detached"):
            name = "vif attached" if event.event == "vif attached" else "failed"
            svg.rect(geo.x(event.uptime) - 1.5, top - 3, 3, BAR + 6, COLOURS[name],
                     event.event, f"{domain}: vif {f.get('devid')} {event.event[4:]} "
                     f"{'to' if name != 'failed' else 'from'} {f.get('backend')}")
        elif event.event == "domain transition" and f.get("to_state") == "stopping":
            stopping[domain] = event.uptime
        elif event.event == "domain transition" and domain in stopping and \
                f.get("to_state") in ("stopped", "gone", "failed"):
            began = stopping.pop(domain)
            colour = COLOURS["stopping"] if f.get("to_state") != "failed" else COLOURS["failed"]
            svg.rect(geo.x(began), top, geo.x(event.uptime) - geo.x(began), BAR, colour,
                     "stopping", f"{domain}: stopping -> {f.get('to_state')}")
            svg.text(geo.x(event.uptime) + 6, top + BAR - 2, f"{level.get(domain, '')}"
                     f"{f.get('to_state')} in {event.uptime - began:.1f} s")
        elif event.event == "shutdown level":
            for name in str(f.get("domains", "")).split(", "):
                level[name] = f"level {f.get('level')}/{f.get('levels')}: "
        elif event.event == "follower ready":
            x = geo.x(event.uptime)
            svg.line(x, first_row, x, max(y, first_row + ROW), "#555555", "4,3")
            svg.text(x + 3, first_row - 4, "follower ready", colour="#555555", size=10)
    return y


def _legend(svg: _Svg, geo: Layout) -> None:
    x, y = 10.0, geo.height - 14.0
    for name in ("step ok", "step partial", "step failed", "creating", "created paused",
                 "provisioned", "booting", "vif attached", "critical path", "restart",
                 "repair", "stopping"):
        if name == "critical path":
            svg.parts.append(f'<rect class="legend" x="{x:.1f}" y="{y - 9:.1f}" width="14" '
                             'height="10" fill="none" stroke="#000000" stroke-width="2"/>')
        else:
            svg.rect(x, y - 9, 14, 10, COLOURS[name], "legend")
        svg.text(x + 18, y, name, size=10)
        x += 26 + 7 * len(name)
