"""Fixtures of the end-to-end sandbox tier."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.appliance import Appliance


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))  # AF_UNIX paths: <= 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def appliance(tmp_path: Path, sockdir: Path) -> Iterator[Appliance]:
    """The example appliance on a fresh fake dom0, ready to boot; everything it started
    is ended afterwards."""
    box = Appliance(tmp_path, sockdir).start()
    try:
        yield box
    finally:
        box.stop()
