"""The field types of the console events (events.py): how a value looks on the console,
the pattern that finds it again, and how it is read back. Stdlib only.

Free text is escaped so that a line stays one printable ASCII line and round-trips:
backslash, control and non-ASCII characters as Python escapes (`\\n`, `\\xe9`), and the
two things the review takes for another writer inside our line, `(XEN)` and a `[` that
starts a timestamp, as `\\x28XEN)` and `\\x5b`. Plain English text is unchanged.
"""

from __future__ import annotations

import math
import re

DOMAIN_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}"
STEP_NAME = r"[a-z][a-z0-9-]{0,47}"

# ---- free text -----------------------------------------------------------------------------

_LOOKS_FOREIGN = re.compile(r"\[(?= *\d{1,9}\.\d)|\((?=XEN\))")


def escape_text(text: str) -> str:
    """One printable ASCII line that `unescape_text` turns back into `text`."""
    out = text.encode("unicode_escape").decode("ascii")
    out = _LOOKS_FOREIGN.sub(lambda m: f"\\x{ord(m.group()):02x}", out)
    if out.endswith(" "):  # a capture's line ends are stripped: keep a trailing space
        out = out[:-1] + "\\x20"
    return out


def unescape_text(text: str) -> str:
    if "\\" not in text:
        return text
    try:
        return text.encode("latin-1").decode("unicode_escape")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return text  # not written by us (a cut line glued to foreign text): keep it as is


# ---- field types ---------------------------------------------------------------------------

class FieldType:
    """How one field looks on the console: render, its regex, and parse back."""

    unbounded = False  # matches any text: only as the last field, or before a fixed tail

    def pattern(self) -> str:
        raise NotImplementedError

    def render(self, value: object) -> str | None:
        """The console text, or None if the value does not fit the type."""
        raise NotImplementedError

    def parse(self, text: str | None) -> object:
        raise NotImplementedError

    def canonical(self, value: object) -> object:
        """What `parse(render(value))` gives: the value at the console's precision."""
        return value

    def regex(self, group: str) -> str:
        return f"(?P<{group}>{self.pattern()})"


class Token(FieldType):
    """A name from a fixed alphabet: a domain, a step, a version."""

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._re = re.compile(pattern)

    def pattern(self) -> str:
        return self._pattern

    def render(self, value: object) -> str | None:
        return value if isinstance(value, str) and self._re.fullmatch(value) else None

    def parse(self, text: str | None) -> object:
        return text


class Choice(Token):
    def __init__(self, values: tuple[str, ...]) -> None:
        super().__init__("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
        self.values = values


class Int(FieldType):
    def __init__(self, lo: int = 0, hi: int = 2**31 - 1) -> None:
        self.lo, self.hi = lo, hi

    def pattern(self) -> str:
        return r"-?\d{1,19}" if self.lo < 0 else r"\d{1,19}"

    def render(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return str(value) if self.lo <= value <= self.hi else None

    def parse(self, text: str | None) -> object:
        return int(text) if text is not None else None


class Seconds(FieldType):
    """A duration, shown to the hundredth (JSON lines keep full precision)."""

    def pattern(self) -> str:
        return r"\d{1,10}\.\d\d"

    def render(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value) or not 0 <= value < 1e9:
            return None
        return f"{value:.2f}"

    def parse(self, text: str | None) -> object:
        return float(text) if text is not None else None

    def canonical(self, value: object) -> object:
        return float(f"{value:.2f}") if isinstance(value, int | float) else value


class Text(FieldType):
    """Free text, escaped (see the module docstring)."""

    unbounded = True

    def pattern(self) -> str:
        return r".*"

    def render(self, value: object) -> str | None:
        return escape_text(str(value))

    def parse(self, text: str | None) -> object:
        return unescape_text(text or "")

    def canonical(self, value: object) -> object:
        return str(value)


class Path(Text):
    """A path or URL: free text without spaces (a space is escaped as \\x20)."""

    unbounded = False

    def pattern(self) -> str:
        return r"\S+"

    def render(self, value: object) -> str | None:
        text = str(value)
        return escape_text(text).replace(" ", "\\x20") if text else None


class Domid(FieldType):
    """`domid 3`, `domid <domid:net-vm>` in a dry run, or `no domid`."""

    _placeholder = re.compile(f"<domid:{DOMAIN_NAME}>")

    def pattern(self) -> str:
        return rf"domid (?:\d{{1,10}}|<domid:{DOMAIN_NAME}>)|no domid"

    def render(self, value: object) -> str | None:
        if value is None:
            return "no domid"
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
            return f"domid {value}"
        if isinstance(value, str) and self._placeholder.fullmatch(value):
            return f"domid {value}"
        return None

    def parse(self, text: str | None) -> object:
        if text is None or text == "no domid":
            return None
        value = text.removeprefix("domid ")
        return int(value) if value.isdigit() else value


class NameList(FieldType):
    """Domain names, `net-vm, sa-vm` (given as that string or as a list)."""

    def pattern(self) -> str:
        return f"{DOMAIN_NAME}(?:, {DOMAIN_NAME})*"

    def _names(self, value: object) -> list[str] | None:
        if isinstance(value, str):
            names = [n.strip() for n in value.split(",")]
        elif isinstance(value, list | tuple):
            names = [str(n) for n in value]
        else:
            return None
        ok = names and all(re.fullmatch(DOMAIN_NAME, n) for n in names)
        return names if ok else None

    def render(self, value: object) -> str | None:
        names = self._names(value)
        return ", ".join(names) if names else None

    def parse(self, text: str | None) -> object:
        return text

    def canonical(self, value: object) -> object:
        return self.render(value)


_PREPOSITION = re.compile(r"(?:at|during) ")


def verdict_text(word: str, detail: str) -> str:
    """`FAILED at 5/9 fetch-images`, `OK: 3 domains are ready, 2.2 s`."""
    return word + (f" {detail}" if _PREPOSITION.match(detail) else f": {detail}")


class Clause(Text):
    """The verdict's detail: `FAILED at 5/9 x` (a clause starting with at/during follows
    the word), `OK: 3 domains are ready` (anything else after a colon)."""

    def regex(self, group: str) -> str:
        return f"(?: (?P<{group}>(?:at|during) .*)|: (?P<{group}_>.*))"

    def render(self, value: object) -> str | None:
        return verdict_text("", escape_text(str(value)))


class Optional(FieldType):
    """A field shown only when it has a value, with its own words around it."""

    def __init__(self, inner: FieldType, before: str, after: str = "") -> None:
        self.inner, self.before, self.after = inner, before, after
        self.unbounded = inner.unbounded

    def regex(self, group: str) -> str:
        return (f"(?:{re.escape(self.before)}{self.inner.regex(group)}"
                f"{re.escape(self.after)})?")

    def render(self, value: object) -> str | None:
        if value is None or value == "":
            return ""
        text = self.inner.render(value)
        return None if text is None else f"{self.before}{text}{self.after}"

    def parse(self, text: str | None) -> object:
        if text is None:
            return "" if isinstance(self.inner, Text) else None
        return self.inner.parse(text)

    def canonical(self, value: object) -> object:
        if value is None or value == "":
            return "" if isinstance(self.inner, Text) else None
        return self.inner.canonical(value)







class BareDomid(Domid):
    """A domid without the word: `3`, `<domid:net-vm>` (0.1.0's "domain ready")."""

    def pattern(self) -> str:
        return rf"\d{{1,10}}|<domid:{DOMAIN_NAME}>"

    def render(self, value: object) -> str | None:
        shown = super().render(value) if value is not None else None
        return shown.removeprefix("domid ") if shown else None

    def parse(self, text: str | None) -> object:
        return None if text is None else super().parse("domid " + text)


class Abbrev(Text):
    """The start of a long value (a sha256): enough to recognise it."""

    def __init__(self, length: int) -> None:
        self.length = length

    def render(self, value: object) -> str | None:
        return escape_text(str(value)[: self.length])
