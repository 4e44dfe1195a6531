"""The journal: where every domain transition is applied, recorded and said.

One place changes a domain's lifecycle state (orchestrator/lifecycle.py computes the
transition): the record in BootState changes, the transition is appended to state.json's
journal (domain, from, to, domid, uptime, cause, seconds) and printed as one console
line, and the state file is saved. Threads of a boot share one journal (a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

from orchestrator.ipc import Domid
from orchestrator.lifecycle import DomainState, Transition
from orchestrator.state import JOURNAL_MAX, BootState, DomainRecord

P = ParamSpec("P")
_LEVELS = {DomainState.FAILED: "error", DomainState.CRASHED: "warning",
           DomainState.GONE: "warning", DomainState.SKIPPED: "warning"}


class Journal:
    def __init__(self, state: BootState, log: Any, save: Callable[[], None],
                 uptime: Callable[[], float]) -> None:
        self.state = state
        self.log = log
        self.save = save
        self.uptime = uptime
        self.lock = threading.RLock()

    def record(self, name: str) -> DomainRecord:
        with self.lock:
            return self.state.domains.setdefault(name, DomainRecord())

    def last_domid(self, name: str) -> Domid | None:
        """The domid the journal last saw for `name` (this power cycle, any run)."""
        with self.lock:
            for entry in reversed(self.state.journal):
                if entry.get("domain") == name and entry.get("domid") is not None:
                    domid: Domid = entry["domid"]
                    return domid
        return None

    def apply(self, name: str,
              change: Callable[Concatenate[str, DomainRecord, P], Transition],
              *args: P.args, **kwargs: P.kwargs) -> Transition:
        """Apply one lifecycle transition to `name`, record it, say it, save."""
        with self.lock:
            record = self.state.domains.setdefault(name, DomainRecord())
            transition = change(name, record, *args, **kwargs)
            self.state.journal.append({
                "domain": name, "from": transition.from_state.value,
                "to": transition.to_state.value, "domid": transition.domid,
                "uptime": round(self.uptime(), 2), "cause": transition.cause,
                "seconds": (round(transition.seconds, 2)
                            if transition.seconds is not None else None),
            })
            del self.state.journal[:-JOURNAL_MAX]
            level = _LEVELS.get(transition.to_state, "info")
            getattr(self.log, level)(
                "domain transition", domain=name, from_state=transition.from_state.value,
                to_state=transition.to_state.value, domid=transition.domid,
                cause=transition.cause,
                seconds=(round(transition.seconds, 2)
                         if transition.seconds is not None else None))
            self.save()
        return transition
