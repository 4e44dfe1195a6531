"""Fixtures of the end-to-end sandbox tier."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.appliance import Appliance


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))  # AF_UNIX paths: <= 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_appliance(tmp_path: Path, sockdir: Path) -> Iterator[Callable[..., Appliance]]:
    """Appliance(**FakeKernel options), started; everything it started is ended after."""
    made: list[Appliance] = []

    def make(**kernel_options: Any) -> Appliance:
        assert not made, "one appliance per test"
        box = Appliance(tmp_path, sockdir, **kernel_options)
        made.append(box)
        return box.start()

    yield make
    for box in made:
        box.stop()


@pytest.fixture
def appliance(make_appliance: Callable[..., Appliance]) -> Appliance:
    """The example appliance on a fresh fake dom0, ready to boot."""
    return make_appliance()
