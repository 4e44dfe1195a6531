"""Reading unit files safely, and a typed reader over one TOML table.

A unit file is input from a person, maybe a careless or hostile one: `check` must answer
for anything found in the unit directory without hanging, without side effects and
without a traceback. So a unit is opened only when stat says it is a regular file (a
FIFO would block the open, a device open can act: /dev/watchdog arms the watchdog),
opened non-blocking, read up to a size limit, decoded as strict UTF-8, and parsed with
the deep-nesting RecursionError and the int-digits ValueError of tomllib caught.

`Table` records problems instead of raising, so one pass reports every problem at once
(ignition's rule), each as `file: key: problem`.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Callable
from typing import Any

from orchestrator.errors import UnitProblem

# The example units are under 2 KiB each; nothing legitimate comes near this.
MAX_UNIT_BYTES = 1 << 20

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_ABSENT = object()
_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def show(value: object, width: int = 40) -> str:
    """A value for a message: ASCII only (no terminal escapes reach the console), short,
    and never an int too long for str() (Python refuses more than 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a number too large to show"
    text = ascii(value)
    return text if len(text) <= width else text[: width - 5] + "...'"


def show_key(key: str) -> str:
    """A TOML key for `file: key: problem`: plain keys as they are, others quoted."""
    return key if _PLAIN_KEY_RE.fullmatch(key) else show(key, 30)


def read_unit(path: str, problems: list[UnitProblem]) -> dict[str, Any] | None:
    """The TOML document in `path`, or None with the reason in `problems`."""
    raw = _read_regular_file(path, problems)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(UnitProblem(path, "(file)", f"not UTF-8 (byte {raw[exc.start]:#04x} at "
                                    f"offset {exc.start}): save the file as UTF-8"))
        return None
    if text.startswith("\ufeff"):  # a byte order mark some editors write; TOML has none
        text = text[1:]
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problems.append(UnitProblem(path, "(syntax)", f"not valid TOML: {exc}"))
    except RecursionError:
        problems.append(UnitProblem(path, "(syntax)", "arrays or inline tables nested too "
                                    "deeply to read: flatten them"))
    except ValueError:  # tomllib's int(): a decimal integer of more than 4300 digits
        problems.append(UnitProblem(path, "(syntax)", "a number too long to read"))
    return None


def _read_regular_file(path: str, problems: list[UnitProblem]) -> bytes | None:
    def problem(text: str) -> None:
        problems.append(UnitProblem(path, "(file)", text))

    try:
        before = os.stat(path)
    except FileNotFoundError:
        problem("not found" + (" (a dangling symbolic link)" if os.path.islink(path) else ""))
        return None
    except (OSError, ValueError) as exc:
        problem(f"cannot read: {_reason(exc)}")
        return None
    for is_kind, kind in _FILE_KINDS:
        if is_kind(before.st_mode):
            problem(f"is {kind}, not a regular file: a unit must be a regular file")
            return None
    if not stat.S_ISREG(before.st_mode):
        problem("is not a regular file: a unit must be a regular file")
        return None
    if before.st_size > MAX_UNIT_BYTES:
        problem(f"is {before.st_size} bytes; a unit file is at most {MAX_UNIT_BYTES} bytes")
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        problem(f"cannot read: {_reason(exc)}")
        return None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino) \
                or not stat.S_ISREG(now.st_mode):
            problem("was replaced while being read: run check again")
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_UNIT_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        problem(f"grew past {MAX_UNIT_BYTES} bytes while being read")
        return None
    except OSError as exc:
        problem(f"cannot read: {_reason(exc)}")
        return None
    finally:
        os.close(fd)


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or "error"


# --------------------------------------------------------------------------------------


class Range:
    """Inclusive bounds of a number, and its unit for messages ("seconds", "MiB", "").
    (A plain class: every run defines it, and a NamedTuple costs ~0.1 ms to define.)"""

    __slots__ = ("low", "high", "unit")

    def __init__(self, low: float, high: float, unit: str = "") -> None:
        self.low, self.high, self.unit = low, high, unit

    def describe(self) -> str:
        return f"{_num(self.low)}..{_num(self.high)}" + (f" {self.unit}" if self.unit else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class Table:
    """Typed access to one TOML table; problems are recorded, defaults returned."""

    def __init__(self, problems: list[UnitProblem], file: str, data: dict[str, Any],
                 prefix: str = "") -> None:
        self.problems = problems
        self.file = file
        self.data = data
        self.prefix = prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def problem(self, key: str, text: str) -> None:
        self.problems.append(UnitProblem(self.file, self.key(key), text))

    def has(self, name: str) -> bool:
        return name in self.data

    def _get(self, name: str, kinds: tuple[type, ...], what: str, default: Any,
             required: bool) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                self.problem(name, "missing (required)")
            return default
        value = self.data[name]
        # TOML booleans are ints to Python: never accept true where a number is meant.
        if isinstance(value, bool) and bool not in kinds:
            self.problem(name, f"must be {what}, not a boolean")
            return default
        if not isinstance(value, kinds):
            self.problem(name, f"must be {what}, not {toml_type(value)}")
            return default
        if isinstance(value, str) and not self._clean(name, value):
            return default
        return value

    def _clean(self, key: str, value: str) -> bool:
        """No string becomes a path, an argv word, a console line or xl.cfg text with a
        control character in it (a NUL makes every os call raise)."""
        found = _CONTROL_RE.search(value)
        if found:
            self.problem(key, f"contains the control character {found.group()!a} at offset "
                         f"{found.start()}")
        return found is None

    def text(self, name: str, required: bool = False,
             rule: Callable[[str], str | None] | None = None) -> str | None:
        """The string, or None when missing (or of another type: reported). `rule` judges
        a given value (an empty string included) and returns its problem, if any."""
        value = self._get(name, (str,), "a string", None, required)
        if value is not None and rule is not None:
            problem = rule(value)
            if problem is not None:
                self.problem(name, problem)
        return value  # type: ignore[no-any-return]

    def string(self, name: str, default: str, required: bool = False,
               rule: Callable[[str], str | None] | None = None) -> str:
        """Like text(), with a default for a missing key (never judged by `rule`)."""
        value = self.text(name, required, rule)
        return default if value is None else value

    def integer(self, name: str, default: int, bounds: Range) -> int:
        value = self._get(name, (int,), "an integer", _ABSENT, False)
        if value is _ABSENT:  # missing or of another type: the default, already reported
            return default
        if not bounds.low <= value <= bounds.high:
            self.problem(name, f"{show(value)} is out of range {bounds.describe()}")
            return default
        return int(value)

    def number(self, name: str, default: float, bounds: Range) -> float:
        value = self._get(name, (int, float), "a number", _ABSENT, False)
        if value is _ABSENT:
            return default
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(name, f"must be a finite number of {bounds.unit or 'units'} "
                         f"({bounds.describe()}), not {value}")
            return default
        if not bounds.low <= value <= bounds.high:
            self.problem(name, f"{show(value)} is out of range {bounds.describe()}")
            return default
        return float(value)

    def flag(self, name: str, default: bool) -> bool:
        value: bool = self._get(name, (bool,), "true or false", default, False)
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self._get(name, (list,), "a list of strings", [], False)
        items = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.problem(f"{name}[{i}]", f"must be a string, not {toml_type(item)}")
            elif self._clean(f"{name}[{i}]", item):
                items.append(item)
        return tuple(items)

    def table(self, name: str, required: bool = False) -> Table | None:
        value = self._get(name, (dict,), "a table", None, required)
        if value is None:
            return None
        return Table(self.problems, self.file, value, f"{self.key(name)}.")

    def table_or_empty(self, name: str) -> Table:
        return self.table(name) or Table(self.problems, self.file, {}, f"{self.key(name)}.")

    def tables(self, name: str) -> list[Table]:
        value = self._get(name, (list,), "an array of tables ([[...]])", [], False)
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                out.append(Table(self.problems, self.file, item, f"{self.key(name)}[{i}]."))
            else:
                self.problem(f"{name}[{i}]", f"must be a table, not {toml_type(item)}")
        return out

    def finish(self) -> None:
        for name in sorted(set(self.data) - self.seen):
            self.problem(show_key(name), "unknown key (see the unit file reference in "
                         "README.md)")


def toml_type(value: object) -> str:
    kinds = {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
             list: "an array", dict: "a table"}
    return kinds.get(type(value), "a date or time")
