"""Context: what every step receives — intent, host, results, journal, log, the deadline.

The boot, a re-run, the follower and the shutdown each make one; `deadline` bounds the
whole operation (deadlines.boot for a boot).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.host import Host
from orchestrator.journal import Journal
from orchestrator.state import BootState
from orchestrator.topology import Topology
from orchestrator.units import Config
from orchestrator.xenstore import Xenstore


class Cancelled(BaseException):
    """The run was interrupted: a domain thread stops where it is, and nothing of what it
    built is undone (a re-run converges from there)."""


def state_file(config: Config) -> str:
    return f"{config.host.state_dir}/state.json"


@dataclass
class Context:
    config: Config
    topology: Topology
    host: Host
    state: BootState
    log: Any
    deadline: float = field(default=0.0)
    provision_lock: threading.Lock = field(default_factory=threading.Lock)
    # what the running step failed at but went on past (e.g. one domain of three)
    partial: list[str] = field(default_factory=list)
    skip_version_check: bool = False  # --skip-preflight: a version mismatch only warns
    _xenstore: Xenstore | None = None
    journal: Journal = field(init=False)
    # set when the run is interrupted: domain threads stop at their next check
    cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.config.host.boot_deadline
        from orchestrator.log import uptime

        self.journal = Journal(self.state, self.log, self.save, uptime)

    def adopt_state(self, state: BootState) -> None:
        """Continue from the state file as another orchestrate left it (the follower reads
        it before each step: a re-run may have changed it)."""
        with self.journal.lock:
            self.state = state
            self.journal.state = state

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled()

    def remaining(self, cap: float) -> float:
        """min(cap, time left in the deadline); fails once the deadline passed."""
        self.check_cancelled()
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise OrchestratorError(
                f"the deadline of {self.config.host.boot_deadline:g} s has passed",
                hint="raise deadlines.boot in host.toml, or see which step is slow above",
            )
        return min(cap, left)

    def xenstore(self) -> Xenstore:
        if self._xenstore is None:
            self._xenstore = self.host.xenstore(self.config.host.xenstored_timeout)
        return self._xenstore

    def save(self) -> None:
        """state.json after every transition (for `status`, the follower, a re-run)."""
        with self.journal.lock:
            self.state.commands = list(self.host.executed)
            self.host.save_state(state_file(self.config), self.state.to_json())

    def close(self) -> None:
        if self._xenstore is not None:
            self._xenstore.close()
            self._xenstore = None
