"""structlog set-up: a serial-console renderer and JSON lines.

Console lines are ASCII, one event a line, time since boot first, then the step:

    [  12.4] [5/9] bind-devices-to-pciback failed: 0000:03:00.0 ...
    [  12.4]       hint: check nic.bdf in units/host.toml (lspci -D)

Event names are constant phrases; the fields carry the values. TEMPLATES turns the
common events into short sentences for people; the JSON renderer keeps every field
for machines (and `orchestrate review`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import MutableMapping
from typing import IO, Any, TextIO

from orchestrator.footprint import without_tls

with without_tls():  # structlog -> asyncio -> ssl: no TLS is spoken here
    import structlog

# How the console shows an event; `{would}` is "would " in a dry run and "" otherwise.
TEMPLATES: dict[str, str] = {
    "start": "orchestrate {version} ({mode}), pid {pid}, root {root}",
    "units loaded": "units {units}: {domains} domains, waves {waves}",
    "step begin": "{step}",
    "step ok": "{step} ok ({seconds:.2f} s)",
    "step failed": "{step} failed: {error}",
    "step partial": "{step} done with failures ({seconds:.2f} s): {failed}",
    "step skipped": "{step} skipped: {reason}",
    "hint": "hint: {hint}",
    "already done": "{what}: already done",
    "action": "{would}{text}",
    "note": "{text}",
    "check": "check {check}: {result}",
    "warning": "WARNING: {text}",
    "xl config": "  | {line}",
    "xenstore node": "{would}xenstore {op} {path}{value_text} [{perms}]",
    "fetch": "{would}fetch {url}",
    "fetch expect": "  -> {path} ({size} B)",
    "fetch sha256": "  sha256 {sha256:.24}...",
    "fetch attempt failed": "fetch {url}: attempt {attempt}/{attempts} failed: {error}",
    "domain transition": "{domain} {to_state}, domid {domid}: {cause}",
    "vif attached": "{domain}: vif {devid} attached to {backend} (domid {backend_domid}): "
                    "{cause}",
    "vif detached": "{domain}: vif {devid} detached from dead {backend} (domid "
                    "{backend_domid}): {cause}",
    "domain state": "{domain}: {state}",
    "domain ready": "{domain} ready as domid {domid} ({seconds:.2f} s after create)",
    "domain failed": "{domain} failed: {error}",
    "domain skipped": "{domain} skipped: {reason}",
    "summary": "{text}",
    "verdict": "{text}",
}

# Fields that only feed templates or context, and `detail` (for machines: JSON only);
# not repeated as key=value on the console.
_CONTEXT_FIELDS = {"event", "level", "uptime", "step_no", "step_count", "dry_run", "timestamp",
                   "detail"}
# Fields the console leaves to the JSON lines, per event.
_JSON_ONLY = {"domain transition": {"from_state", "seconds"}}


def uptime() -> float:
    """Seconds since the machine booted (the clock a serial console reader compares)."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def _add_uptime(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.setdefault("uptime", round(uptime(), 2))
    return event


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")


class ConsoleRenderer:
    """One ASCII line per event for hvc0/ttyS0; colour only on a pseudo-terminal."""

    def __init__(self, colour: bool = False) -> None:
        self.colour = colour

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> str:
        name = str(event.get("event", ""))
        values = {k: ("-" if v is None else v) for k, v in event.items()}
        fields = {k: v for k, v in event.items()
                  if k not in _CONTEXT_FIELDS and v is not None}
        values["would"] = "would " if event.get("dry_run") else ""
        template = TEMPLATES.get(name)
        text = None
        if template is not None:
            try:
                text = template.format(**values)
                used = {k for k in fields if "{" + k in template}
                fields = {k: v for k, v in fields.items() if k not in used}
            except (KeyError, ValueError, IndexError):
                text = None
        if text is None:
            text = name
        hidden = _JSON_ONLY.get(name, set())
        extra = " ".join(f"{k}={_show(v)}" for k, v in fields.items() if k not in hidden)
        if extra:
            text = f"{text} {extra}"
        if "step_no" in event:
            prefix = f"[{event['step_no']}/{event['step_count']}] "
        else:
            prefix = "      " if name == "hint" else ""
        line = f"[{float(event.get('uptime', 0.0)):6.1f}] {prefix}{_ascii(text)}"
        if self.colour and event.get("level") in ("error", "warning"):
            line = f"\x1b[1;31m{line}\x1b[0m"
        return line


def _show(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


class _TeeJson:
    """Writes every event as a JSON line to a file, then passes it on."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.stream.write(json.dumps(dict(event), default=str, sort_keys=True) + "\n")
        self.stream.flush()
        return event


def _interactive(stream: TextIO) -> bool:
    """Colour only on a pseudo-terminal (ssh, a terminal window): never on the serial or
    PV console (/dev/console, ttyS*, hvc*), whose capture is read afterwards."""
    if os.environ.get("NO_COLOR") is not None:
        return False
    try:
        return stream.isatty() and os.ttyname(stream.fileno()).startswith("/dev/pts/")
    except (OSError, ValueError, AttributeError):
        return False


def configure(
    fmt: str = "console",
    debug: bool = False,
    stream: TextIO | None = None,
    json_file: IO[str] | None = None,
) -> None:
    """Set up structlog for this process; call once, early, from the CLI."""
    stream = stream or sys.stderr
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_uptime,
    ]
    if json_file is not None:
        processors.append(_TeeJson(json_file))
    if fmt == "json":
        processors.append(structlog.processors.JSONRenderer(default=str, sort_keys=True))
    else:
        processors.append(ConsoleRenderer(colour=_interactive(stream)))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(10 if debug else 20),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger() -> Any:
    return structlog.get_logger()
