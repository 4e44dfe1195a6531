"""The serial-console renderer: ASCII, one line per event, time since boot first."""

from __future__ import annotations

import re

from orchestrator.log import ConsoleRenderer


def render(**event: object) -> str:
    return ConsoleRenderer()(None, "info", dict(event))


def test_step_lines_carry_uptime_and_step_number_within_80_columns() -> None:
    line = render(event="step failed", uptime=12.4, step_no=6, step_count=9,
                  step="bind-devices-to-pciback", error="0000:03:00.0 has no driver")
    assert line == "[  12.4] [6/9] bind-devices-to-pciback failed: 0000:03:00.0 has no driver"
    assert len(line) <= 80


def test_hint_lines_are_indented_under_the_step() -> None:
    assert render(event="hint", uptime=1.0, hint="check nic.bdf") == \
        "[   1.0]       hint: check nic.bdf"


def test_non_ascii_is_escaped_never_sent_raw_to_the_serial_line() -> None:
    line = render(event="note", uptime=1.0, text="caf\u00e9 \u2713")
    assert line.isascii() and "caf\\xe9" in line


def test_dry_run_actions_say_would_and_unknown_fields_stay_visible() -> None:
    assert render(event="action", uptime=2.0, text="xl unpause 3", dry_run=True) == \
        "[   2.0] would xl unpause 3"
    assert render(event="action", uptime=2.0, text="xl unpause 3", domid=3) == \
        "[   2.0] xl unpause 3 domid=3"


def test_an_event_without_template_prints_its_name_and_fields() -> None:
    assert re.fullmatch(r"\[   3\.0\] odd thing path=/x n=2",
                        render(event="odd thing", uptime=3.0, path="/x", n=2))
