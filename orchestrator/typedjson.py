"""Load JSON into typed dataclasses, checking every value against the field's type.

state.json is read back by `orchestrate status` and by the next run; a file that is `[]`,
`null`, truncated, binary or of the wrong types once made both a traceback (issue 10).
The loader is driven by the dataclasses' own fields and type hints, so a field added to
BootState or DomainRecord (or a new dataclass inside them) is checked with no change
here. Missing keys take the field's default (a file from an older orchestrate); unknown
keys are ignored (one from a newer one). Pure: no I/O.

Types understood: the dataclasses themselves, str, int, float, bool, None, Any, unions
(`X | None`, `Domid = int | str`), list[T], tuple[T, ...], tuple[A, B], dict[str, T],
Literal[...] and Enum subclasses (by value). Anything else is a programming error
(TypeError), caught by the round-trip test of every state dataclass.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class Mismatch(ValueError):
    """A value does not have its field's type; the message names the field's path."""


def load(cls: type[T], raw: Any, where: str = "") -> T:
    """raw (as json.loads returns it) -> an instance of the dataclass cls, or Mismatch."""
    value: T = _convert(cls, raw, where)
    return value


def _convert(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _union(tp, value, where)
    if tp is type(None):
        return _expect(value is None, tp, value, where, None)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value, where)
    if tp is bool:
        return _expect(isinstance(value, bool), tp, value, where, value)
    if tp is int:
        return _expect(isinstance(value, int) and not isinstance(value, bool), tp, value,
                       where, value)
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return _expect(ok, tp, value, where, float(value) if ok else None)
    if tp is str:
        return _expect(isinstance(value, str), tp, value, where, value)
    if origin is Literal:
        return _expect(value in get_args(tp), tp, value, where, value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except (ValueError, TypeError):
            raise Mismatch(f"{_name(where)} is {_shown(value)}, not {_describe(tp)}") from None
    if origin is list:
        _expect(isinstance(value, list), tp, value, where, None)
        (item,) = get_args(tp) or (Any,)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        return _tuple(tp, value, where)
    if origin is dict:
        _expect(isinstance(value, dict), tp, value, where, None)
        key_type, item = get_args(tp) or (str, Any)
        if key_type not in (str, Any):
            raise TypeError(f"typedjson: JSON object keys are strings, not {key_type}")
        return {k: _convert(item, v, _join(where, k)) for k, v in value.items()}
    raise TypeError(f"typedjson: no loader for {tp!r} (at {_name(where)})")


def _dataclass(cls: type, value: Any, where: str) -> Any:
    _expect(isinstance(value, dict), cls, value, where, None)
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if field.name in value:
            kwargs[field.name] = _convert(hints[field.name], value[field.name],
                                          _join(where, field.name))
        elif (field.default is dataclasses.MISSING
              and field.default_factory is dataclasses.MISSING):
            raise Mismatch(f"{_name(_join(where, field.name))} is missing")
    return cls(**kwargs)


def _union(tp: Any, value: Any, where: str) -> Any:
    for option in get_args(tp):
        try:
            return _convert(option, value, where)
        except Mismatch:
            continue
    raise Mismatch(f"{_name(where)} is {_shown(value)}, not {_describe(tp)}")


def _tuple(tp: Any, value: Any, where: str) -> tuple[Any, ...]:
    _expect(isinstance(value, list), tp, value, where, None)
    args = get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise Mismatch(f"{_name(where)} has {len(value)} items, not {len(args)}")
    pairs = enumerate(zip(args, value, strict=True))
    return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in pairs)


def _expect(ok: bool, tp: Any, value: Any, where: str, result: Any) -> Any:
    if not ok:
        raise Mismatch(f"{_name(where)} is {_shown(value)}, not {_describe(tp)}")
    return result


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "an object"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(json.dumps(m.value) for m in tp)
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            type(None): "null"}.get(tp, str(tp))


def _join(where: str, key: str) -> str:
    key = "".join(c if " " < c <= "~" else "?" for c in key)[:40]
    return f"{where}.{key}" if where else key


def _name(where: str) -> str:
    return where or "the whole file"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."
