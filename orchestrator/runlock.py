"""One orchestrate acts at a time: a boot or re-run, a step of the follower, a shutdown.

They all change the same things (state.json, dom0's xenstore nodes, domains, vifs); an
flock on <state>/lock serialises them. A killed process never leaves it held (the kernel
drops a flock with its last descriptor).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.host import Host

POLL = 0.2  # seconds between tries while another orchestrate holds the lock


def lock_path(state_dir: str) -> str:
    return f"{state_dir}/lock"


@contextmanager
def exclusive(host: Host, state_dir: str, log: Any, timeout: float,
              what: str) -> Iterator[None]:
    path = lock_path(state_dir)
    deadline = time.monotonic() + timeout
    said = False
    while (fd := host.try_lock(path)) is None:
        if not said:
            log.info("note", text=f"{what}: another orchestrate is acting ({path}); waiting")
            said = True
        if time.monotonic() > deadline:
            raise OrchestratorError(
                f"{what}: another orchestrate held {path} for more than {timeout:g} s",
                hint="see `orchestrate status` and `ps`; a stuck one can be killed safely")
        time.sleep(POLL)
    try:
        yield
    finally:
        host.unlock(fd)
