"""structlog set-up: a serial-console renderer and JSON lines.

Console lines are ASCII, one event a line, time since boot first, then the step:

    [  12.4] [5/9] bind-devices-to-pciback failed: 0000:03:00.0 ...
    [  12.4]       hint: check nic.bdf in units/host.toml (lspci -D)

Event names are constant phrases; the fields carry the values. The event catalogue
(events.py) turns each event into a short sentence for people that `orchestrate review`
parses back; the JSON renderer keeps every field for machines.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections.abc import Callable, MutableMapping
from contextlib import suppress
from pathlib import Path
from typing import IO, Any, TextIO

from orchestrator import events
from orchestrator.footprint import without_asyncio, without_tls

# structlog -> asyncio -> ssl: no TLS is spoken here, and nothing logs asynchronously
with without_tls(), without_asyncio():
    import structlog

# How the console shows each event: orchestrator/events.py (one definition for this
# renderer and for `orchestrate review`).
TEMPLATES: dict[str, str] = {name: d.template for name, d in events.CATALOGUE.items()}


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


class ConsoleRenderer:
    """One ASCII line per event for hvc0/ttyS0; colour only on a pseudo-terminal."""

    def __init__(self, colour: bool = False) -> None:
        self.colour = colour

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> str:
        body, stepless = events.render_body(event)
        try:
            at = float(event.get("uptime", 0.0))
        except (TypeError, ValueError):
            at = 0.0
        step_no = None if stepless else event.get("step_no")
        line = events.line_prefix(at, step_no, event.get("step_count")) + body
        if self.colour and event.get("level") in ("error", "warning"):
            line = f"\x1b[1;31m{line}\x1b[0m"
        return line


class _TeeJson:
    """Writes every event as a JSON line to a file, then passes it on.

    The file is on tmpfs: a full one (ENOSPC) or any other write error must not end
    the boot. The first error is said once, on the console, and the tee stops.
    """

    def __init__(self, stream: IO[str], say: Callable[[str], None]) -> None:
        self.stream: IO[str] | None = stream
        self.say = say

    def __call__(
        self, _: Any, __: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self.stream is None:
            return event
        try:
            line = json.dumps(dict(event), default=str, sort_keys=True)
        except (TypeError, ValueError):  # keys of mixed types, a circular value
            line = json.dumps({str(k): str(v) for k, v in event.items()}, sort_keys=True)
        try:
            _append_line(self.stream, line + "\n")
        except OSError as exc:
            name = getattr(self.stream, "name", "the JSON log")
            try:  # drop what is buffered: closing later must not raise it again
                self.stream.close()
            except OSError:
                pass
            self.stream = None
            self.say(f"cannot write {name}: {exc.strerror or exc}; its JSON lines stop "
                     "here, the console goes on (free space on its filesystem)")
        return event


def _append_line(stream: IO[str], line: str) -> None:
    """One whole line or nothing: written below the text layer with every write checked
    (a full tmpfs takes part of a line, then ENOSPC), a part is cut off again, so the
    readers of the file (review, the sandbox) never meet half a JSON line (issue 10)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # an in-memory stream
        stream.write(line)
        stream.flush()
        return
    stream.flush()  # nothing of ours is buffered above the descriptor
    start = os.lseek(fd, 0, os.SEEK_END)
    view = memoryview(line.encode("utf-8", "backslashreplace"))
    try:
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "write made no progress")
            view = view[written:]
    except OSError:
        with suppress(OSError):
            os.ftruncate(fd, start)
        raise


def open_json_lines(path: Path) -> IO[str] | None:
    """The JSON lines file of a boot, appended to; None (said once) if it cannot be
    opened: the console is the record that matters, the file is for machines."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        get_logger().warning("warning", text=f"cannot open {path}: {exc.strerror or exc}; "
                             "no JSON lines for this run, the console goes on")
        return None


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
    if fmt == "json":
        render: Any = structlog.processors.JSONRenderer(default=str, sort_keys=True)
    else:
        render = ConsoleRenderer(colour=_interactive(stream))
    if json_file is not None:
        out = stream

        def say(text: str) -> None:
            event = {"event": "warning", "level": "warning", "text": text,
                     "uptime": round(uptime(), 2)}
            print(render(None, "warning", event), file=out, flush=True)

        processors.append(_TeeJson(json_file, say))
    processors.append(render)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(10 if debug else 20),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger() -> Any:
    return structlog.get_logger()
