"""The files orchestrate writes, on a real tmpfs that is too small.

Issue 10: a full state tmpfs cut state.json to 4096 bytes, left a temp file, and ended the
boot in a traceback. Every write is checked; on failure the old file is as it was and no
temp file stays; a file the boot needs (an xl config) is a step error naming it; the
records (state.json, boot.jsonl) are said once and never end a boot.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator import log as logmod
from orchestrator.errors import OrchestratorError
from orchestrator.host import Host
from tests.sandbox.tmpfs import PAGE, fill, tiny_tmpfs

STATE = "/run/orchestrator/state.json"


@pytest.fixture
def state_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with tiny_tmpfs(tmp_path / "run/orchestrator", 8 * PAGE) as mount:
        yield mount


def test_a_file_that_does_not_fit_leaves_the_old_one_and_no_temp_file(
        tmp_path: Path, state_tmpfs: Path) -> None:
    host = Host(root=str(tmp_path))
    host.save_file(STATE, '{"old": 1}')
    fill(state_tmpfs, 2 * PAGE)
    with pytest.raises(OrchestratorError) as caught:
        host.save_file(STATE, "x" * (3 * PAGE + 1))  # the first write is short
    assert caught.value.message == (f"writing {STATE} failed: No space left on device; the "
                                    f"old file is unchanged")
    assert caught.value.hint == ("make room on the filesystem of /run/orchestrator (df -h "
                                 "/run/orchestrator; a tmpfs takes size= on remount) and "
                                 "re-run orchestrate")
    assert (state_tmpfs / "state.json").read_text() == '{"old": 1}'
    assert sorted(os.listdir(state_tmpfs)) == [".filler", "state.json"], "no temp file"


def test_a_needed_file_that_does_not_fit_is_an_error_naming_it(
        tmp_path: Path, state_tmpfs: Path) -> None:
    fill(state_tmpfs, 0)
    host = Host(root=str(tmp_path))
    with capture_logs() as logs, pytest.raises(OrchestratorError,
                                               match=r"^writing /run/orchestrator/xl/"
                                               r"net-vm\.cfg failed: No space left"):
        host.write_file("/run/orchestrator/xl/net-vm.cfg", 'name = "net-vm"\n' * 400)
    assert [e["text"] for e in logs if e["event"] == "action"] == [
        "write /run/orchestrator/xl/net-vm.cfg (6400 bytes)"]
    assert os.listdir(state_tmpfs / "xl") == []


def test_a_state_file_that_cannot_be_written_is_said_once_and_the_boot_goes_on(
        tmp_path: Path, state_tmpfs: Path) -> None:
    host = Host(root=str(tmp_path))
    host.save_state(STATE, json.dumps({"steps": 1}))
    fill(state_tmpfs, 0)
    with capture_logs() as logs:
        for step in range(2, 6):  # four transitions, none of them fits
            host.save_state(STATE, json.dumps({"steps": step, "pad": "x" * 9000}))
    warnings = [e["text"] for e in logs if e["log_level"] == "warning"]
    assert warnings == [f"writing {STATE} failed: No space left on device; the old file is "
                        f"unchanged; the boot goes on without it (make room in "
                        f"/run/orchestrator: df -h /run/orchestrator)"]
    assert json.loads((state_tmpfs / "state.json").read_text()) == {"steps": 1}
    assert sorted(os.listdir(state_tmpfs)) == [".filler", "state.json"]


def test_the_json_log_stops_at_a_full_tmpfs_with_whole_lines_and_one_warning(
        state_tmpfs: Path) -> None:
    console = io.StringIO()
    path = state_tmpfs / "boot.jsonl"
    with path.open("a", encoding="utf-8") as json_file:
        logmod.configure("console", stream=console, json_file=json_file)
        log = logmod.get_logger()
        for n in range(400):  # ~120 bytes a line: 48 KiB into 32 KiB
            log.info("note", text=f"line {n:04d} " + "y" * 80)
        lines = path.read_text().splitlines()
    logmod.configure("console")  # json_file closed without an error: nothing left buffered
    assert 100 < len(lines) < 400
    assert [json.loads(line)["text"][:9] for line in lines] == [
        f"line {n:04d}" for n in range(len(lines))], "whole lines, in order, none cut"
    said = [ln for ln in console.getvalue().splitlines() if "WARNING" in ln]
    assert len(said) == 1, said
    assert f"WARNING: cannot write {path}: No space left on device; its JSON lines stop " \
        "here, the console goes on (free space on its filesystem)" in said[0]
    assert console.getvalue().count("line 0399") == 1, "the console keeps every line"
