"""Shared helpers: the repo's paths and a way to run the real `orchestrate`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_UNITS = REPO / "units"
GOLDEN = REPO / "tests" / "golden"


def run_orchestrate(*args: str, env: dict[str, str] | None = None,
                    timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real program, as a user runs it (python -m orchestrator == `orchestrate`)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def normalise_console(text: str, root: Path | None = None) -> str:
    """Drop what differs between runs and machines: uptimes, durations, free space."""
    if root is not None:
        text = text.replace(str(root), "ROOT")
    text = re.sub(r"^\[ *\d+\.\d\]", "[T]", text, flags=re.M)
    text = re.sub(r"\d+\.\d+ s\b", "N s", text)
    text = re.sub(r"\d+ MiB free", "N MiB free", text)
    text = re.sub(r"pid=\d+", "pid=N", text)
    text = re.sub(r"pid \d+", "pid N", text)
    # a rendered xl config holds root-joined paths: its size depends on the root
    text = re.sub(r"\.cfg \(\d+ bytes\)", ".cfg (N bytes)", text)
    text = re.sub(r"root=\S+", "root=ROOT", text)
    return text


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/<name>; UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.exists(), f"missing golden file {path}: run with UPDATE_GOLDEN=1"
    assert actual == path.read_text(), f"{path} differs (UPDATE_GOLDEN=1 to accept)"


@pytest.fixture
def units_dir(tmp_path: Path) -> Path:
    """A copy of the example units, for tests that break them."""
    import shutil

    dest = tmp_path / "units"
    shutil.copytree(EXAMPLE_UNITS, dest)
    return dest
