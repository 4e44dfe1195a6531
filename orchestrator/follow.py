"""`orchestrate watch`: the follower keeps the appliance's plumbing true after the boot.

One xenstore connection, watches on @introduceDomain and @releaseDomain
(docs/misc/xenstore.txt), no polling loop: idle, the process blocks on its event queue
with no timeout and wakes for nothing. A domain event (xl restarted a domain, someone
destroyed one, a crash) makes it compare `xl list` with the journal (level-triggered, so
a follower killed mid-event converges when it starts again) and react:

- a domain of ours under a new domid (restarted): its map entry, the grants on its peers'
  nodes and the nodes under its new home are written in one transaction and read back;
  once its readiness probe passes it is ready again;
- a driver domain ready again under a new domid: the vifs it served, now dead, are
  detached and attached again with the same spec (netfront never recovers by itself);
- a domain of ours gone for good: its map entry and every grant naming its domid go (a
  reused domid must never inherit access), and the vifs it served are detached;
- a crash left preserved: said, nothing else touched.

A readiness probe in progress watches its own paths on the same connection and carries
its own deadline; the loop sleeps until the next event or the nearest deadline. What a
guest can make it re-evaluate is bounded: events are taken in batches, at most one batch
per SETTLE seconds. It writes only dom0's own nodes and runs `xl`; it is in no data path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from orchestrator import dom0net, lifecycle, plumbing
from orchestrator.context import Context
from orchestrator.errors import EXIT_FAILED, EXIT_OK, OrchestratorError
from orchestrator.ipc import Domid
from orchestrator.lifecycle import DomainState
from orchestrator.probes import Probe, probe_for
from orchestrator.runlock import exclusive
from orchestrator.state import BootState
from orchestrator.vifs import repair_vifs
from orchestrator.xenstore import PyxsXenstore
from orchestrator.xl import Xl, is_shut_down, shutdown_cause
from orchestrator.xswatch import ConnectionLost, Subscription

DOMAIN_EVENTS = ("@introduceDomain", "@releaseDomain")
SETTLE = 0.1  # seconds a burst of events may take to arrive before one evaluation
DOM0 = 0


@dataclass
class Waiting:
    """A domain whose readiness probe runs (after a restart, or adopted not ready)."""

    name: str
    domid: Domid
    probe: Probe
    deadline: float
    since: float
    paths: tuple[str, ...]


class Follower:
    def __init__(self, ctx: Context, store: PyxsXenstore, load_state: Any) -> None:
        self.ctx = ctx
        self.store = store
        self.load_state = load_state  # () -> BootState | None, the file as it is now
        self.xl = Xl(ctx.host, ctx.config.host.command_timeout)
        self.waiting: dict[str, Waiting] = {}
        self.events = 0
        self.sub: Subscription | None = None

    # ---- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        self.sub = self.store.subscribe(list(DOMAIN_EVENTS))
        self.ctx.log.info("follower ready", domains=len(self.ctx.topology.names),
                          watches=" ".join(DOMAIN_EVENTS))
        try:
            while True:
                path = self.sub.next(self._timeout())
                arrived = time.monotonic()
                batch = [] if path is None else [path]
                if path is not None:
                    time.sleep(SETTLE)  # a burst is one evaluation
                    batch += self.sub.drain()
                    self.events += len(batch)
                self.step(batch, arrived)
        except ConnectionLost as exc:
            self.ctx.log.error("step failed", step="watch", error=exc.message)
            self.ctx.log.error("hint", hint=exc.hint)
            return EXIT_FAILED
        except KeyboardInterrupt:
            return EXIT_OK

    def _timeout(self) -> float | None:
        if not self.waiting:
            return None  # nothing pending: sleep until xenstored says something
        return max(0.0, min(w.deadline for w in self.waiting.values()) - time.monotonic())

    def step(self, batch: list[str], arrived: float) -> None:
        """One evaluation under the lock, on the state file as it is now."""
        ctx = self.ctx
        ctx.deadline = time.monotonic() + ctx.config.host.boot_deadline  # per reaction
        with exclusive(ctx.host, ctx.config.host.state_dir, ctx.log,
                       ctx.config.host.boot_deadline, "watch"):
            state = self.load_state()
            if state is not None:
                ctx.adopt_state(state)
            if ctx.state.standing_down:
                return  # `orchestrate shutdown` began: the domains are going on purpose
            try:
                if any(p in DOMAIN_EVENTS for p in batch) or not batch:
                    self.reconcile(arrived)
                self.check_waiting()
            except OrchestratorError as exc:  # said; the next event tries again
                ctx.log.error("step failed", step="watch", error=exc.message)
                if exc.hint:
                    ctx.log.error("hint", hint=exc.hint)

    # ---- domain events --------------------------------------------------------------------

    def reconcile(self, seen: float) -> None:
        """seen: when xenstored told us (the repair time counts from there)."""
        ctx = self.ctx
        observed = self.xl.states()
        alive = {domid for domid, _ in observed.values()} | {DOM0}
        restarted: list[str] = []
        for name in [n for wave in ctx.topology.waves for n in wave]:
            record = ctx.journal.record(name)
            state = lifecycle.state_of(record)
            if name not in observed:
                if lifecycle.is_present(record):
                    ctx.journal.apply(name, lifecycle.vanish,
                                      f"domid {record.domid} is gone; its plumbing goes")
                    self._stop_waiting(name)
                continue
            domid, flags = observed[name]
            if is_shut_down(flags):
                if state is not DomainState.CRASHED:
                    ctx.journal.apply(name, lifecycle.crash, shutdown_cause(
                        name, flags, ctx.config.domain(name).shutdown_actions))
                continue
            if record.domid == domid and lifecycle.is_present(record):
                continue
            was = record.domid if record.domid is not None else ctx.journal.last_domid(name)
            if was is None:  # never seen by orchestrate: started by hand, or no state file
                ctx.journal.apply(name, lifecycle.adopt, domid,
                                  f"running as domid {domid}, not started by orchestrate")
            else:
                ctx.journal.apply(name, lifecycle.restart, domid,
                                  f"new domid {domid} (was domid {was})")
            restarted.append(name)
        what = plumbing.provision(ctx)  # map, grants, nodes: the whole plan, diff-only
        for name in restarted:
            record = ctx.journal.record(name)
            ctx.log.info("plumbing restored", domain=name, domid=record.domid,
                         seconds=round(time.monotonic() - seen, 2), what=what)
            self._wait_for(name)
        for name in ctx.topology.names:  # what still waits: e.g. a follower restarted
            record = ctx.journal.record(name)
            if name not in self.waiting and lifecycle.state_of(record) in (
                    DomainState.RESTARTED, DomainState.ADOPTED):
                self._wait_for(name)
        self.repair_all_vifs(alive)

    def repair_all_vifs(self, alive: set[int]) -> None:
        """Every present domain's vifs: the dead ones detached, the missing ones attached
        to their backend's current domid once it is ready."""
        ctx = self.ctx
        for name in ctx.topology.names:
            record = ctx.journal.record(name)
            if not ctx.config.domain(name).vifs or record.domid is None:
                continue
            if lifecycle.state_of(record) not in (DomainState.READY, DomainState.ADOPTED,
                                                  DomainState.RESTARTED):
                continue
            try:
                repair_vifs(ctx, self.xl, name, record.domid, alive,
                            cause="its backend is ready again")
            except OrchestratorError as exc:
                ctx.log.error("step failed", step=f"watch: {name}'s vifs", error=exc.message)
                if exc.hint:
                    ctx.log.error("hint", hint=exc.hint)
        try:
            dom0net.connect(ctx, self.xl, alive)
        except OrchestratorError as exc:
            ctx.log.error("step failed", step="watch: dom0's vif", error=exc.message)
            if exc.hint:
                ctx.log.error("hint", hint=exc.hint)

    # ---- readiness after a restart ----------------------------------------------------------

    def _wait_for(self, name: str) -> None:
        record = self.ctx.journal.record(name)
        assert record.domid is not None
        domain = self.ctx.config.domain(name)
        probe = probe_for(domain)
        paths = tuple(probe.watch(self.store, record.domid))
        assert self.sub is not None
        for path in paths:
            self.sub.watch(path)
        now = time.monotonic()
        self.waiting[name] = Waiting(name, record.domid, probe,
                                     now + domain.readiness.timeout, now, paths)

    def _stop_waiting(self, name: str) -> None:
        waiting = self.waiting.pop(name, None)
        if waiting is not None and self.sub is not None:
            for path in waiting.paths:
                self.sub.unwatch(path)

    def check_waiting(self) -> None:
        ctx = self.ctx
        now = time.monotonic()
        became_ready = False
        for name, waiting in list(self.waiting.items()):
            record = ctx.journal.record(name)
            if record.domid != waiting.domid:
                self._stop_waiting(name)
                continue
            reason = waiting.probe.check(self.store, waiting.domid)
            if reason is not None:
                self._stop_waiting(name)
                ctx.journal.apply(name, lifecycle.ready, reason,
                                  round(now - waiting.since, 2))
                became_ready = True
            elif now >= waiting.deadline:
                self._stop_waiting(name)
                timeout = ctx.config.domain(name).readiness.timeout
                if lifecycle.state_of(record) is DomainState.RESTARTED:
                    ctx.journal.apply(name, lifecycle.fail,
                                      f"not {waiting.probe.describe()} within {timeout:g} s "
                                      "of its restart; it runs on, untouched",
                                      destroyed=False)
                else:
                    record.error = f"runs but is not {waiting.probe.describe()}"
                    ctx.log.warning("warning", text=f"{name} (domid {waiting.domid}) "
                                    f"{record.error} after {timeout:g} s")
        if became_ready:  # a driver domain that is ready serves its clients' vifs again
            observed = self.xl.states()
            self.repair_all_vifs({d for d, _ in observed.values()} | {DOM0})


def run_follower(ctx: Context, store: PyxsXenstore) -> int:
    def load() -> BootState | None:
        from orchestrator.context import state_file

        text = ctx.host.read_text(state_file(ctx.config))
        if not text:
            return None
        try:
            return BootState.from_json(text)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            ctx.log.warning("warning", text=f"ignoring unreadable state file: {exc}")
            return None

    return Follower(ctx, store, load).run()
