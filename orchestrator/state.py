"""BootState: the mutable results of one boot, persisted after every transition.

The frozen Config is the intent; BootState is what happened (STYLE.md, "State").
It is written to <state_dir>/state.json after each step begins and ends, so that
`orchestrate status` and a re-run after a crash can see how far a boot got.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import typedjson
from orchestrator.errors import OrchestratorError
from orchestrator.ipc import Domid

JOURNAL_MAX = 2000  # transitions kept in state.json (a restart loop must not grow it forever)
# lifecycle.PRESENT, by value (lifecycle imports this module)
PRESENT_STATES = frozenset({"created", "provisioned", "booting", "ready", "adopted",
                            "restarted", "crashed", "stopping"})
# A state file is tens of KiB (every program run is in it); one this big is not ours.
MAX_STATE_BYTES = 16 << 20


@dataclass
class StepRecord:
    status: str = "pending"  # pending running ok partial failed skipped
    seconds: float | None = None
    cpu_seconds: float | None = None  # orchestrate's own CPU time in this step
    error: str | None = None
    hint: str | None = None


@dataclass
class DomainRecord:
    """One domain's place in its lifecycle (orchestrator/lifecycle.py changes it)."""

    state: str = "pending"  # a lifecycle.DomainState value
    domid: Domid | None = None
    create_to_ready: float | None = None
    error: str | None = None
    restarts: int = 0  # new domids seen since the boot (xl restarts, re-creations)
    # the unit's vifs that were attached after the create (by index in the unit) and the
    # devid each got: a later repair detaches exactly these
    vifs: dict[str, int] = field(default_factory=dict)


@dataclass
class BootState:
    mode: str = "boot"
    started_uptime: float | None = None
    steps: dict[str, StepRecord] = field(default_factory=dict)
    domains: dict[str, DomainRecord] = field(default_factory=dict)
    original_drivers: dict[str, str | None] = field(default_factory=dict)
    moved_to_pciback: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    daemons: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)  # every program run
    # every domain transition of this power cycle (domain, from, to, domid, uptime, cause,
    # seconds), carried across re-runs, the follower and the shutdown; the last JOURNAL_MAX
    journal: list[dict[str, Any]] = field(default_factory=list)
    # the xenstore nodes dom0 wrote and still owns: the only ones it ever removes
    xenstore_written: list[str] = field(default_factory=list)
    standing_down: bool = False  # `orchestrate shutdown` began: the follower does nothing
    usage: dict[str, float] = field(default_factory=dict)  # our own CPU time and peak RSS
    verdict: str | None = None
    exit_code: int | None = None

    def domid(self, name: str) -> Domid | None:
        record = self.domains.get(name)
        return record.domid if record else None

    def live_domids(self) -> dict[str, Domid]:
        """Domains that exist now under their recorded domid (they have plumbing)."""
        return {name: rec.domid for name, rec in self.domains.items()
                if rec.domid is not None and rec.state in PRESENT_STATES}

    def failed_domains(self) -> list[str]:
        return [n for n, r in self.domains.items() if r.state in ("failed", "skipped")]

    def not_ready(self) -> list[str]:
        """Domains a boot promised and that are not ready (failed, skipped, or running but
        not ready)."""
        return [n for n, r in self.domains.items() if r.state != "ready"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes) -> BootState:
        """Parse and check state.json against the fields above (whatever they are:
        orchestrator/typedjson.py); UnreadableState says what is wrong with it."""
        if len(data) > MAX_STATE_BYTES:
            raise UnreadableState(f"it is larger than {MAX_STATE_BYTES >> 20} MiB")
        try:
            raw = json.loads(data)
        except RecursionError:
            raise UnreadableState("it is JSON nested too deep") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise UnreadableState(f"it is not JSON ({exc})") from None
        try:
            return typedjson.load(cls, raw)
        except typedjson.Mismatch as exc:
            raise UnreadableState(str(exc)) from None


class UnreadableState(OrchestratorError, ValueError):
    """A state file that this orchestrate did not write as it is (`reason` says why).
    Never a reason to stop a boot: it is only the record of an earlier run."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        self.reason = reason
        self.path = path
        if path is None:
            super().__init__(reason)
        else:
            super().__init__(
                f"{path} is unreadable: {reason}",
                hint=f"it is only the record of an earlier boot: remove it (rm {path}); "
                "the next boot writes a new one",
            )


def read_state_file(path: Path) -> BootState:
    """The state file at path: FileNotFoundError if there is none, UnreadableState
    (naming path and what to do) if it is not a state; never blocks on a FIFO and never
    reads more than MAX_STATE_BYTES + 1 bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableState(exc.strerror or str(exc), path) from None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UnreadableState("it is not a regular file")
            data = f.read(MAX_STATE_BYTES + 1)
        return BootState.from_json(data)
    except UnreadableState as exc:
        raise UnreadableState(exc.reason, path) from None
    except OSError as exc:
        raise UnreadableState(exc.strerror or str(exc), path) from None
