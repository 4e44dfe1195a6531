"""The serial-console renderer: ASCII, one line per event, time since boot first."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_a_full_disk_under_the_json_lines_says_so_once_and_the_console_goes_on() -> None:
    import io
    import json

    import structlog

    from orchestrator import log

    console = io.StringIO()
    full = open("/dev/full", "a", encoding="utf-8")  # noqa: SIM115  (writes fail: ENOSPC)
    try:
        log.configure("console", stream=console, json_file=full)
        logger = structlog.get_logger()
        logger.info("step begin", step="fetch-images")
        logger.info("step ok", step="fetch-images", seconds=1.0)
        logger.info("verdict", word="OK", detail="3 domains are ready, 2.0 s", code=0)
    finally:
        structlog.reset_defaults()
        full.close()
    lines = [re.sub(r"^\[ *\d+\.\d\]", "[T]", ln) for ln in console.getvalue().splitlines()]
    assert lines == [
        "[T] WARNING: cannot write /dev/full: No space left on device; its JSON lines stop "
        "here, the console goes on (free space on its filesystem)",
        "[T] fetch-images",
        "[T] fetch-images ok (1.00 s)",
        "[T] orchestrate: OK: 3 domains are ready, 2.0 s (exit 0)",
    ]
    # and in JSON mode the warning is a JSON line like every other
    console = io.StringIO()
    full = open("/dev/full", "a", encoding="utf-8")  # noqa: SIM115
    try:
        log.configure("json", stream=console, json_file=full)
        structlog.get_logger().info("note", text="x")
    finally:
        structlog.reset_defaults()
        full.close()
    first = json.loads(console.getvalue().splitlines()[0])
    assert (first["event"], first["level"]) == ("warning", "warning")


def test_a_json_lines_file_that_cannot_be_opened_is_said_once_and_nothing_is_created(
        tmp_path: Path) -> None:
    import io

    import structlog

    from orchestrator import log

    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be\n")
    console = io.StringIO()
    try:
        log.configure("console", stream=console)
        assert log.open_json_lines(blocker / "boot.jsonl") is None
    finally:
        structlog.reset_defaults()
    assert console.getvalue().count("\n") == 1
    assert f"WARNING: cannot open {blocker / 'boot.jsonl'}: " in console.getvalue()
    assert blocker.read_text() == "a file where the state directory should be\n"
