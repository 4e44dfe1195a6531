"""`orchestrate shutdown`: stop the appliance's domains in order (OpenRC's stop()).

The follower stands down first (the state file says a shutdown began, and the lock keeps
it out meanwhile: its domains are going on purpose). Then the scheduler walks the
topology backwards: a domain stops once every domain that needs it has stopped, so
clients stop before their vchan servers and before the driver domain of their vifs
(xendomains stops driver domains last too); domains whose turn has come stop in parallel.
Each gets `xl shutdown` and its own deadline (`stop_timeout` in its unit); one still there
at its deadline is destroyed. Its map entry and the grants naming it go with it, and the
devices it held go back to dom0's drivers (dom0 stopped it, so dom0 takes them back; the
NIC gets its address again).

Exit codes: 0 every domain stopped within its deadline; 1 some domain had to be destroyed
or could not be stopped (each said); 2 invalid units.
"""

from __future__ import annotations

import time

from orchestrator import dom0net, lifecycle, plumbing, scheduler
from orchestrator.context import Context
from orchestrator.errors import EXIT_FAILED, EXIT_OK, OrchestratorError
from orchestrator.event_types import verdict_text
from orchestrator.ipc import Domid
from orchestrator.lifecycle import DomainState
from orchestrator.probes import devices
from orchestrator.runlock import exclusive
from orchestrator.state import BootState
from orchestrator.steps.handoff import return_devices
from orchestrator.xl import Xl

Observed = dict[str, tuple[int, str]]


class Shutdown:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.xl = Xl(ctx.host, ctx.config.host.command_timeout)
        self.forced: list[str] = []
        self.problems: list[str] = []
        self.stopped = 0

    def run(self, previous: BootState | None) -> int:
        ctx = self.ctx
        started = time.monotonic()
        with exclusive(ctx.host, ctx.config.host.state_dir, ctx.log,
                       ctx.config.host.boot_deadline, "shutdown"):
            if previous is not None:
                ctx.adopt_state(previous)
            ctx.state.standing_down = True
            ctx.save()
            none: Observed = {}
            try:
                observed = ctx.host.outcome(self.xl.states, none)
            except OrchestratorError as exc:
                ctx.log.error("step failed", step="shutdown", error=exc.message)
                ctx.log.error("hint", hint=exc.hint)
                return self._verdict(EXIT_FAILED, "FAILED", "`xl list` failed: nothing "
                                     "was stopped")
            order = [n for wave in reversed(ctx.topology.waves) for n in wave]
            before = scheduler.backwards(ctx.topology)
            levels = scheduler.levels(order, before)
            for number, level in enumerate(levels, start=1):
                ctx.log.info("shutdown level", number=number, levels=len(levels),
                             domains=", ".join(level))
            scheduler.walk(order, before, lambda name: self.stop(name, observed),
                           ctx.host.parallelism(len(order)))
        seconds = time.monotonic() - started
        if self.forced or self.problems:
            what = [f"{', '.join(self.forced)} destroyed"] if self.forced else []
            return self._verdict(EXIT_FAILED, "FAILED",
                                 "; ".join(what + self.problems) + f", {seconds:.1f} s")
        word = "would be" if ctx.host.dry_run else "are"
        return self._verdict(EXIT_OK, "OK", f"{self.stopped} domains {word} stopped, "
                             f"{seconds:.1f} s")

    def _verdict(self, code: int, word: str, detail: str) -> int:
        self.ctx.state.verdict = verdict_text(word, detail)
        self.ctx.state.exit_code = code
        self.ctx.save()
        self.ctx.log.info("verdict", word=word, detail=detail, code=code)
        return code

    def stop(self, name: str, observed: Observed) -> None:
        ctx = self.ctx
        record = ctx.journal.record(name)
        if name not in observed:
            if lifecycle.is_present(record):
                ctx.journal.apply(name, lifecycle.vanish, "not running at shutdown")
            return
        domid, flags = observed[name]
        if record.domid != domid and lifecycle.is_present(record):
            ctx.journal.apply(name, lifecycle.restart, domid,
                              f"new domid {domid} (was domid {record.domid})")
        elif record.domid != domid or lifecycle.state_of(record) not in (
                lifecycle.PRESENT | {DomainState.FAILED}):
            ctx.journal.apply(name, lifecycle.adopt, domid, f"running as domid {domid}")
        ctx.journal.apply(name, lifecycle.stop_begin, "xl shutdown")
        self.release_dom0_vif(name)
        started = time.monotonic()
        domain = ctx.config.domain(name)
        try:
            self.xl.shutdown(name)
        except OrchestratorError as exc:
            cause = "destroyed: `xl shutdown` failed"
            ctx.log.warning("warning", text=f"{name} (domid {domid}): {exc.message}")
        else:
            try:
                self.wait_gone(name, domid, domain.stop_timeout)
                cause = "shut down"
            except OrchestratorError:
                cause = f"destroyed at its {domain.stop_timeout:g} s deadline"
        if cause != "shut down":
            if not self.destroy(name, domid):
                return
            self.forced.append(name)
        ctx.journal.apply(name, lifecycle.stop_end, cause, round(time.monotonic() - started, 2))
        self.stopped += 1
        try:
            plumbing.provision(ctx)  # its map entry and every grant naming it go
        except OrchestratorError as exc:
            self.problems.append(f"xenstore not cleaned after {name}: {exc.message}")
        if domain.pci:
            return_devices(ctx, list(domain.pci))

    def release_dom0_vif(self, name: str) -> None:
        """Before the driver domain serving dom0's vif stops: detach it (dom0 gets its NIC
        back after, with the same address)."""
        want = dom0net.wanted(self.ctx)
        if want is None or want[1] != name:
            return
        for device in devices(self.ctx.xenstore(), 0, ("vif",)):
            try:
                self.xl.network_detach("0", device.devid,
                                       self.ctx.config.host.command_timeout)
            except OrchestratorError as exc:
                self.ctx.log.warning("warning", text=f"dom0's vif {device.devid}: "
                                     f"{exc.message}")

    def wait_gone(self, name: str, domid: Domid, timeout: float) -> None:
        """Until `name` under `domid` is gone from `xl list` (or shut down and preserved),
        woken by @releaseDomain; raises at the deadline."""
        store = self.ctx.xenstore()

        def gone(event: str | None) -> str | None:
            try:
                state = self.xl.states().get(name)
            except OrchestratorError:
                return None  # unknown: wait on, its deadline holds
            if state is None or state[0] != domid:
                return "gone"
            return "shut down" if "s" in state[1] else None

        if gone(None):
            return
        store.wait(["@releaseDomain"], gone, self.ctx.remaining(timeout),
                   what=f"{name} to shut down", tick=max(1.0, timeout / 10))

    def destroy(self, name: str, domid: Domid) -> bool:
        result = self.ctx.host.run(["xl", "destroy", name], check=False,
                                   timeout=self.ctx.config.host.command_timeout)
        if result.ok:
            return True
        try:
            if self.xl.states().get(name, (None,))[0] != domid:
                return True
        except OrchestratorError:
            pass
        tail = " | ".join(result.stderr.strip().splitlines()[-2:])
        self.problems.append(f"{name} (domid {domid}) could not be destroyed: {tail}")
        self.ctx.log.error("hint", hint=f"destroy it by hand: xl destroy {name}")
        return False


def run_shutdown(ctx: Context, previous: BootState | None) -> int:
    return Shutdown(ctx).run(previous)
