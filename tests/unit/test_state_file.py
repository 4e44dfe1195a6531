"""state.json read back: a state orchestrate wrote loads as it was; anything else is an
UnreadableState that names the file, the field and what to do, never a traceback.

The corpus is what a full tmpfs, a killed writer, a person with an editor or a stray
program leave at the path (issue 10: `[]`, `null`, truncated, binary, huge, wrong types).
`orchestrate status` is run for real on each: exit 1, one line naming the file, no
traceback.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import typedjson
from orchestrator.state import (
    MAX_STATE_BYTES,
    BootState,
    DomainRecord,
    StepRecord,
    UnreadableState,
    read_state_file,
)
from tests.conftest import EXAMPLE_UNITS, run_orchestrate


def full_state() -> BootState:
    """A state with every field set to something other than its default."""
    return BootState(
        mode="watch", started_uptime=12.5,
        steps={"preflight": StepRecord("ok", 0.25, 0.01),
               "fetch-images": StepRecord("failed", 3.0, None, "HTTP 404", "fix the url")},
        domains={"net-vm": DomainRecord("ready", 3, 4.5, "was slow", restarts=1, vifs={"0": 1}),
                 "sa-vm": DomainRecord("failed", "<domid:sa-vm>", None, "crashed")},
        original_drivers={"0000:00:03.0": "e1000", "0000:00:04.0": None},
        moved_to_pciback=["0000:00:03.0"], images={"k": "/run/xen-images/k"},
        daemons={"xenstored": 42}, warnings=["w"],
        commands=[{"program": "/usr/sbin/xl", "argv": ["xl", "info"], "rc": 0,
                   "seconds": 0.1}],
        journal=[{"domain": "net-vm", "from": "created", "to": "ready", "domid": 3,
                  "uptime": 12.0, "cause": "probe", "seconds": 0.5}],
        xenstore_written=["/ipc/domain-map/net-vm"], standing_down=True,
        usage={"cpu_seconds": 1.0, "peak_rss_mib": 30.0}, verdict="FAILED", exit_code=1)


def test_the_round_trip_below_covers_every_field_of_the_state() -> None:
    """A field added to BootState or DomainRecord must be set in full_state(), so that
    the round trip proves the loader reads it."""
    state = full_state()
    for record, cls in ((state, BootState), (state.domains["net-vm"], DomainRecord)):
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                else f.default
            assert getattr(record, f.name) != default, f"set {cls.__name__}.{f.name}"


def test_a_state_round_trips_through_its_json() -> None:
    state = full_state()
    assert BootState.from_json(state.to_json()) == state
    assert BootState.from_json(state.to_json().encode()) == state


def test_a_state_from_an_older_orchestrate_takes_the_defaults_of_missing_fields() -> None:
    loaded = BootState.from_json('{"mode": "boot", "steps": {"preflight": {}}}')
    assert loaded == BootState(mode="boot", steps={"preflight": StepRecord()})


def test_keys_a_newer_orchestrate_wrote_are_ignored() -> None:
    text = json.dumps({**json.loads(full_state().to_json()), "journal_v9": [1, 2]})
    assert BootState.from_json(text) == full_state()


GOOD = full_state().to_json()

# (case, the file's bytes, what the reason must say)
CORRUPT: list[tuple[str, bytes, str]] = [
    ("empty", b"", r"not JSON"),
    ("a list", b"[]", r"the whole file is a list, not an object"),
    ("null", b"null", r"the whole file is null, not an object"),
    ("a number", b"42", r"the whole file is 42, not an object"),
    ("truncated", GOOD.encode()[:200], r"not JSON"),
    ("binary", bytes(range(256)) * 4, r"not JSON"),
    ("not UTF-8 inside a string", b'{"mode": "\xff\xfe"}', r"not JSON"),
    ("nested too deep", b"[" * 100_000 + b"]" * 100_000, r"nested too deep|not JSON"),
    ("steps is a list", b'{"steps": []}', r"steps is a list, not an object"),
    ("a step is a string", b'{"steps": {"preflight": "ok"}}',
     r"steps\.preflight is \"ok\", not an object"),
    ("seconds is text", b'{"steps": {"preflight": {"seconds": "fast"}}}',
     r"steps\.preflight\.seconds is \"fast\", not a number or null"),
    ("a status is a number", b'{"steps": {"preflight": {"status": 3}}}',
     r"steps\.preflight\.status is 3, not a string"),
    ("a domid is a float", b'{"domains": {"net-vm": {"domid": 1.5}}}',
     r"domains\.net-vm\.domid is 1\.5, not an integer or a string or null"),
    ("a domid is true", b'{"domains": {"net-vm": {"domid": true}}}',
     r"domains\.net-vm\.domid is true, not an integer or a string or null"),
    ("exit_code is a string", b'{"exit_code": "0"}', r"exit_code is \"0\", not an integer"),
    ("moved_to_pciback holds a number", b'{"moved_to_pciback": ["0000:00:03.0", 7]}',
     r"moved_to_pciback\[1\] is 7, not a string"),
    ("original driver is a list", b'{"original_drivers": {"0000:00:03.0": ["e1000"]}}',
     r"original_drivers\.0000:00:03\.0 is a list, not a string or null"),
    ("daemons pid is text", b'{"daemons": {"xenstored": "42"}}',
     r"daemons\.xenstored is \"42\", not an integer"),
    ("commands is an object", b'{"commands": {}}', r"commands is an object, not a list"),
    ("the journal is a string", b'{"journal": "x"}', r"journal is \"x\", not a list"),
    ("a journal entry is a number", b'{"journal": [{}, 3]}',
     r"journal\[1\] is 3, not an object"),
    ("restarts is a float", b'{"domains": {"sa-vm": {"restarts": 0.5}}}',
     r"domains\.sa-vm\.restarts is 0\.5, not an integer"),
    ("a vif devid is text", b'{"domains": {"sa-vm": {"vifs": {"0": "1"}}}}',
     r"domains\.sa-vm\.vifs\.0 is \"1\", not an integer"),
    ("standing_down is 1", b'{"standing_down": 1}',
     r"standing_down is 1, not true or false"),
]


@pytest.mark.parametrize(("data", "reason"),
                         [pytest.param(d, r, id=c) for c, d, r in CORRUPT])
def test_a_corrupted_state_is_unreadable_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableState, match=reason):
        BootState.from_json(data)


def test_a_huge_state_is_refused_before_it_is_parsed() -> None:
    data = b" " * MAX_STATE_BYTES + b"{}"
    with pytest.raises(UnreadableState, match=r"larger than 16 MiB"):
        BootState.from_json(data)


@pytest.mark.parametrize(("data", "reason"),
                         [pytest.param(d, r, id=c) for c, d, r in CORRUPT[:6]])
def test_reading_a_corrupted_file_names_the_path_and_what_to_do(
        tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(data)
    with pytest.raises(UnreadableState) as caught:
        read_state_file(path)
    assert caught.value.message.startswith(f"{path} is unreadable: ")
    assert caught.value.hint == (f"it is only the record of an earlier boot: remove it "
                                 f"(rm {path}); the next boot writes a new one")
    assert path.read_bytes() == data, "reading changes nothing"


def test_a_fifo_or_a_directory_at_the_path_is_unreadable_and_never_blocks(
        tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableState, match=r"not a regular file"):
        read_state_file(fifo)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(UnreadableState, match=r"dir\.json is unreadable"):
        read_state_file(tmp_path / "dir.json")
    with pytest.raises(FileNotFoundError):
        read_state_file(tmp_path / "absent.json")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["mode", "steps", "domains", "preflight", "net-vm", "status",
                         "seconds", "domid", "original_drivers", "commands", "x"]),
        inner, max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_loads_or_is_unreadable_never_anything_else(value: Any) -> None:
    try:
        state = BootState.from_json(json.dumps(value))
    except UnreadableState:
        return
    assert BootState.from_json(state.to_json()) == state


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_load_or_are_unreadable_never_anything_else(data: bytes) -> None:
    try:
        BootState.from_json(data)
    except UnreadableState:
        pass


# ---- the loader follows the dataclasses, whatever their fields -----------------------------

class Phase(enum.Enum):
    CREATED = "created"
    READY = "ready"


@dataclass
class Entry:
    at: float
    phase: Phase
    note: str | None = None


@dataclass
class Grown:
    """A record as the integrator may grow one: an enum, a journal, a literal, a tuple."""

    name: str
    journal: list[Entry] = field(default_factory=list)
    kind: Literal["pv", "pvh"] = "pv"
    window: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)


def test_the_loader_checks_fields_it_was_never_told_about() -> None:
    raw = {"name": "sa-vm", "journal": [{"at": 1, "phase": "created"},
                                        {"at": 2.5, "phase": "ready", "note": "ok"}],
           "kind": "pvh", "window": [1, 2], "extra": {"x": [1, {"y": None}]}}
    assert typedjson.load(Grown, raw) == Grown(
        "sa-vm", [Entry(1.0, Phase.CREATED), Entry(2.5, Phase.READY, "ok")], "pvh", (1, 2),
        {"x": [1, {"y": None}]})


@pytest.mark.parametrize(("raw", "reason"), [
    ({}, r"^name is missing$"),
    ({"name": "a", "journal": [{"at": 1, "phase": "gone"}]},
     r"^journal\[0\]\.phase is \"gone\", not one of \"created\", \"ready\"$"),
    ({"name": "a", "journal": [{"phase": "ready"}]}, r"^journal\[0\]\.at is missing$"),
    ({"name": "a", "kind": "hvm"}, r"^kind is \"hvm\", not one of \"pv\", \"pvh\"$"),
    ({"name": "a", "window": [1, 2, 3]}, r"^window has 3 items, not 2$"),
    ({"name": "a", "window": [1, "2"]}, r"^window\[1\] is \"2\", not an integer$"),
])
def test_the_loader_names_the_field_that_is_wrong(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(typedjson.Mismatch, match=reason):
        typedjson.load(Grown, raw)


def test_a_type_the_loader_does_not_know_is_a_programming_error() -> None:
    @dataclass
    class Odd:
        when: set[int]

    with pytest.raises(TypeError, match=r"no loader for"):
        typedjson.load(Odd, {"when": [1]})


# ---- `orchestrate status`, the real program ------------------------------------------------

@pytest.mark.parametrize(("data", "reason"), [
    pytest.param(b"[]", "the whole file is a list, not an object", id="a list"),
    pytest.param(b"null", "the whole file is null, not an object", id="null"),
    pytest.param(GOOD.encode()[:100], "not JSON", id="truncated"),
    pytest.param(b"\x00\xff" * 64, "not JSON", id="binary"),
    pytest.param(b'{"steps": {"preflight": {"seconds": "x"}}}',
                 "steps.preflight.seconds is \"x\"", id="wrong types"),
])
def test_status_of_a_corrupted_state_file_says_so_and_exits_1(
        tmp_path: Path, data: bytes, reason: str) -> None:
    state = tmp_path / "run/orchestrator/state.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(data)
    done = run_orchestrate("status", "--root", str(tmp_path), "--units", str(EXAMPLE_UNITS))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"orchestrate: {state} is unreadable: " in done.stderr
    assert reason in done.stderr
    assert f"hint: it is only the record of an earlier boot: remove it (rm {state})" \
        in done.stderr
    assert state.read_bytes() == data, "status changes nothing"


def test_status_of_a_good_state_file_prints_it(tmp_path: Path) -> None:
    state = tmp_path / "run/orchestrator/state.json"
    state.parent.mkdir(parents=True)
    state.write_text(full_state().to_json())
    done = run_orchestrate("status", "--root", str(tmp_path), "--units", str(EXAMPLE_UNITS))
    assert done.returncode == 1  # the recorded boot failed
    assert "fetch-images" in done.stdout and "verdict: FAILED" in done.stdout
