"""Reading a raw serial capture as a stream: our lines and Xen's banners. Stdlib only.

A capture of the serial line holds far more than our lines: Xen's `(XEN) ...`, the dom0
kernel's `[    4.567890] ...`, OpenRC's ` * ...` and `[ ok ]`, ANSI colours and cursor
moves, CRLF (and the CR CR LF of a Linux tty), NULs and bytes that are no UTF-8 at all,
and a kernel message may land in the middle of one of our lines. The rules:

- the capture is read in chunks, never whole: memory does not grow with its size;
- CR LF (with any CRs before the LF), LF and a lone CR each end a line; a line longer
  than LINE_LIMIT is an error (no serial console writes that: it is not a capture, e.g.
  /dev/zero), and so is a capture longer than CAPTURE_LIMIT;
- bytes are decoded as UTF-8 with replacement; NULs, ANSI escapes and other control
  characters are dropped (only for lines that hold a prefix of ours: the rest is not
  decoded at all, which is what makes a 200 MB capture fast);
- a line of ours is found by its prefix anywhere in a line: `[%6.1f] ` (seconds since
  boot, one decimal, at least 6 wide; the kernel's has six decimals), then optionally
  `[n/N] ` (events.py). Several of ours on one line are split at each prefix;
- a line of ours ends early where a kernel timestamp or `(XEN)` starts inside it (it was
  cut); when the next non-empty line starts with bare text (no timestamp, no `(XEN)`, no
  OpenRC mark) and gluing it on makes an event we know, that text is the rest of the cut
  line (the free text of our events is escaped so that it never looks like either);
- `(XEN) ... Xen version X.Y` is Xen's banner: a power cycle starts there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from orchestrator.events import STEP_PREFIX, UPTIME_PREFIX, parse_body

CHUNK = 1 << 20
LINE_LIMIT = 16 << 20  # bytes in one line
CAPTURE_LIMIT = 2 << 30  # bytes in one capture
BODY_LIMIT = 64 << 10  # bytes of one line of ours that are read (ours are far shorter)

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
                   r"|\x1b[ -/]*[0-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Where another writer's line starts inside one of ours.
_FOREIGN = re.compile(r"\[ *\d{1,9}\.\d{6}\]|\(XEN\)")
# The start of a line that cannot be the rest of a cut line of ours.
NOT_REST = re.compile(r"\s*(?:$|\[ *\d{1,9}\.\d{6}\]|\(XEN\)|\*\s|\[ (?:ok|!!) \])")
_OURS_BYTES = re.compile(rb"\[ *\d{1,9}\.\d\] ")
_PLAIN = re.compile(rb"[ -~]*")  # printable ASCII: nothing to decode or clean
_CRS_LF = re.compile(rb"\r+\n")
_INTEREST = re.compile(rb"\[ *\d{1,9}\.\d\] |Xen version")
_BANNER = re.compile(r"\(XEN\) (?:\[[^\]]{0,40}\] )?Xen version (\d{1,3}\.\d{1,3}[^\s(]{0,40})")


class CaptureError(Exception):
    """The input is not a serial capture we can read; `str()` says why in one line."""


@dataclass(slots=True)
class Line:
    """One line of ours as the capture has it."""

    number: int  # the capture's line it starts on (1-based)
    uptime: float
    step_no: int | None
    step_count: int | None
    body: str
    cut: bool = False
    rejoined: bool = False


@dataclass(slots=True)
class Banner:
    """Xen's banner: a power cycle starts on this line."""

    number: int
    version: str


def clean(raw: str) -> str:
    text = _ANSI.sub("", raw.replace("\x00", ""))
    return _CONTROL.sub("", text.replace("\t", " "))


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    """The capture a chunk at a time, each cut after a line's end, CR... LF (a Linux tty
    writes CR CR LF) made LF: after that, LF and a lone CR each end one line."""
    carry = b""
    total = 0
    while True:
        chunk = stream.read(CHUNK)
        total += len(chunk)
        if total > CAPTURE_LIMIT:
            raise CaptureError(f"it is longer than {CAPTURE_LIMIT >> 30} GiB; review a part "
                               "of it (tail -c 100M CAPTURE > part.log)")
        data = carry + chunk
        if not chunk:
            if data:
                yield _normal(data)
            return
        # cut after the last LF (a CR may be the first half of a CR LF in the next chunk)
        end = data.rfind(b"\n")
        if end < 0:
            end = data.rfind(b"\r", 0, len(data) - 1)
        if end < 0:
            if len(data) > LINE_LIMIT:
                raise CaptureError(f"a line is longer than {LINE_LIMIT >> 20} MiB: not a "
                                   "serial console capture")
            carry = data
            continue
        carry = data[end + 1:]
        yield _normal(data[: end + 1])


def _normal(data: bytes) -> bytes:
    data = data.replace(b"\r\r\n", b"\n").replace(b"\r\n", b"\n")  # fast, and the usual
    return _CRS_LF.sub(b"\n", data) if b"\r\n" in data else data


def _breaks(block: bytes, start: int, end: int) -> int:
    return block.count(b"\n", start, end) + block.count(b"\r", start, end)


def _line_end(block: bytes, start: int) -> int:
    lf = block.find(b"\n", start)
    if lf < 0:
        lf = len(block)
    cr = block.find(b"\r", start, lf)  # only up to the LF: never a scan of the whole block
    return cr if cr >= 0 else lf


def _decode(raw: bytes) -> str:
    return clean(raw.decode("utf-8", errors="replace"))


class CaptureReader:
    """Iterate over a capture's lines of ours and Xen's banners; `lines` counts every
    line read so far.

    Only the lines that hold a prefix of ours or Xen's banner, and the line after a cut
    line of ours, are looked at in Python; the others are only counted (in C), which is
    what makes a capture of mostly kernel lines fast.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.lines = 0
        self._held: Line | None = None
        self._pending: Line | None = None  # a line of ours cut at the end of its line

    def __iter__(self) -> Iterator[Line | Banner]:
        block = b""
        for block in _blocks(self.stream):
            yield from self._block(block)
        if block and block[-1:] not in (b"\n", b"\r"):
            self.lines += 1  # the last line has no end
        if self._pending is not None:
            yield _final(self._pending)

    def _block(self, block: bytes) -> Iterator[Line | Banner]:
        pos = 0  # where the next line starts; self.lines lines are before it
        size = len(block)
        while pos < size:
            if self._pending is not None:  # its rest may be on the next non-empty line
                end = _line_end(block, pos)
                raw = block[pos:end]
                text = _decode(raw[:BODY_LIMIT]) if raw else ""
                if text.strip():
                    yield _rejoined(self._pending, text)
                    self._pending = None
                    yield from self._line(raw)
                self.lines += end < size  # a line is counted at its end
                pos = end + 1
                continue
            found = _INTEREST.search(block, pos)
            if found is None:
                break
            start = max(block.rfind(b"\n", pos, found.start()),
                        block.rfind(b"\r", pos, found.start())) + 1
            start = max(start, pos)
            self.lines += _breaks(block, pos, start)
            end = _line_end(block, start)
            yield from self._line(block[start:end])
            self.lines += end < size
            pos = end + 1
        if pos < size:
            self.lines += _breaks(block, pos, size)

    def _line(self, raw: bytes) -> Iterator[Line | Banner]:
        """What one line holds: Xen's banner, or lines of ours."""
        number = self.lines + 1
        if b"Xen version" in raw:
            m = _BANNER.search(_decode(raw[:4096]))
            if m:
                yield Banner(number, m.group(1))
                return
        if _OURS_BYTES.search(raw) is not None:
            yield from self._ours(number, raw)
            self._pending, self._held = self._held, None

    def _ours(self, number: int, raw: bytes) -> Iterable[Line]:
        """The lines of ours on one line, each from its prefix to the next one (at most
        BODY_LIMIT bytes); a last one that was cut is held in `_held`, not returned: its
        rest may be on the next line."""
        if len(raw) > CHUNK:  # a long line: one of ours at a time, never all at once
            return self._ours_of_long(number, raw)
        out: list[Line] = []
        starts = [m for m in _OURS_BYTES.finditer(raw) if len(m.group()) >= 9]
        for i, start in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(raw)
            piece = raw[start.end(): min(end, start.end() + BODY_LIMIT)]
            # most lines are plain ASCII: decode and clean only the others
            body = piece.decode("ascii") if _PLAIN.fullmatch(piece) else _decode(piece)
            foreign = _FOREIGN.search(body) if ("(" in body or "[" in body) else None
            if foreign:
                body = body[: foreign.start()]
            line = _line(number, float(start.group()[1:-2]), body, cut=bool(foreign))
            if line.cut and i + 1 == len(starts):
                self._held = line
            else:
                line.body = line.body.rstrip()
                out.append(line)
        return out


    def _ours_of_long(self, number: int, raw: bytes) -> Iterator[Line]:
        starts = (m for m in _OURS_BYTES.finditer(raw) if len(m.group()) >= 9)
        start = next(starts, None)
        while start is not None:
            after = next(starts, None)
            end = after.start() if after is not None else len(raw)
            yield from self._ours(number, raw[start.start(): min(end, start.end()
                                                                 + BODY_LIMIT)])
            if after is not None and self._held is not None:  # cut, but not the last
                yield _final(self._held)
                self._held = None
            start = after


def _line(number: int, uptime: float, body: str, cut: bool = False,
          rejoined: bool = False) -> Line:
    step_no = step_count = None
    if body[:1] == "[" and (m := STEP_PREFIX.match(body)):
        step_no, step_count = int(m.group(1)), int(m.group(2))
        body = body[m.end():]
    return Line(number, uptime, step_no, step_count, body, cut, rejoined)


def _final(line: Line) -> Line:
    line.body = line.body.rstrip()
    return line


def _rejoined(cut: Line, text: str) -> Line:
    """The cut line with its rest from `text` when that makes an event we know."""
    if NOT_REST.match(text):
        return _final(cut)
    head = text
    if first := next((m for m in UPTIME_PREFIX.finditer(text) if len(m.group(1)) >= 6),
                     None):
        head = text[: first.start()]
    if m := _FOREIGN.search(head):
        head = head[: m.start()]
    if not head.strip():
        return _final(cut)
    step = f"[{cut.step_no}/{cut.step_count}] " if cut.step_no is not None else ""
    joined = _final(_line(cut.number, cut.uptime, step + cut.body + head, True, True))
    return joined if parse_body(joined.body) is not None else _final(cut)
