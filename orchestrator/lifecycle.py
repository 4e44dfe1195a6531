"""The domain lifecycle: typed states, one function per transition. Pure.

Every change of a domain's state goes through one of the functions below; each checks that
the domain is in a state the transition may start from (anything else is a bug in
orchestrate, never something a guest can cause) and returns the Transition, which the
journal (orchestrator/journal.py) stamps, appends to state.json and prints as one line.

Boot, re-run, follower (`orchestrate watch`) and shutdown all use the same states:

    pending -> created -> provisioned -> booting -> ready          (a boot)
    pending -> adopted -> ready                                    (a re-run finds it running)
    ready/adopted/... -> restarted -> ready                        (xl restarted it: new domid)
    ready/... -> crashed                                           (shut down, not destroyed yet)
    ready/... -> stopping -> stopped                               (orchestrate shutdown)
    created/provisioned/booting -> failed                          (ours, destroyed by us)
    pending -> skipped                                             (a domain it needs failed)
    ready/... -> gone                                              (destroyed by someone else)

xl's restart creates a new domain with a new domid, the same name, not paused, and runs no
hook (tools/xl/xl_vmcontrol.c handle_domain_death): `restarted` is that domain before its
plumbing (map entry, grants, rendezvous nodes, vifs) is true again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from orchestrator.ipc import Domid
from orchestrator.state import DomainRecord


class DomainState(StrEnum):
    PENDING = "pending"  # not running; not created by this run yet
    CREATED = "created"  # `xl create -p` done: built, paused
    PROVISIONED = "provisioned"  # its xenstore plan written, still paused
    BOOTING = "booting"  # unpaused; its readiness probe runs
    READY = "ready"  # its readiness mode says so
    ADOPTED = "adopted"  # found running (a re-run, the follower); being checked
    RESTARTED = "restarted"  # running under a new domid; plumbing being restored
    CRASHED = "crashed"  # shut down or crashed; xl restarts, destroys or preserves it (on_*)
    STOPPING = "stopping"  # `xl shutdown` sent
    STOPPED = "stopped"  # shut down (or destroyed at its deadline) by orchestrate
    FAILED = "failed"  # did not come up; destroyed by us unless it runs on
    SKIPPED = "skipped"  # not created: a domain it needs is not ready
    GONE = "gone"  # vanished: destroyed by someone else


S = DomainState

# The states in which the domain exists under its recorded domid: it has plumbing.
PRESENT = frozenset({S.CREATED, S.PROVISIONED, S.BOOTING, S.READY, S.ADOPTED, S.RESTARTED,
                     S.CRASHED, S.STOPPING})
# Up and trusted by the domains that need it.
UP = frozenset({S.READY})
_RUNNING = frozenset({S.READY, S.ADOPTED, S.RESTARTED, S.BOOTING})
# A domain that was there and is not any more may come back under a new domid.
_AFTER_LIFE = frozenset({S.GONE, S.FAILED, S.SKIPPED, S.STOPPED, S.CRASHED, S.PENDING})


class IllegalTransition(Exception):
    """A transition from a state it may not start from: a bug in orchestrate."""


@dataclass(frozen=True)
class Transition:
    domain: str
    from_state: DomainState
    to_state: DomainState
    domid: Domid | None
    cause: str
    seconds: float | None = None


def state_of(record: DomainRecord) -> DomainState:
    return DomainState(record.state)


def is_present(record: DomainRecord) -> bool:
    return state_of(record) in PRESENT and record.domid is not None


def _move(name: str, record: DomainRecord, to: DomainState, allowed: frozenset[DomainState],
          cause: str, domid: Domid | None = None, keep_domid: bool = True,
          seconds: float | None = None) -> Transition:
    current = state_of(record)
    if current not in allowed:
        raise IllegalTransition(f"{name}: {current} -> {to} is not a transition "
                                f"(from {', '.join(sorted(allowed))} only)")
    if domid is not None:
        record.domid = domid
    elif not keep_domid:
        record.domid = None
    record.state = to.value
    return Transition(name, current, to, record.domid, cause, seconds)


def create(name: str, record: DomainRecord, domid: Domid, seconds: float) -> Transition:
    """`xl create -p` returned and the domain is there, paused."""
    record.error = None
    return _move(name, record, S.CREATED, frozenset({S.PENDING}), "xl create -p",
                 domid=domid, seconds=seconds)


def provision(name: str, record: DomainRecord, what: str) -> Transition:
    """Its map entry, grants and rendezvous nodes are written and read back."""
    return _move(name, record, S.PROVISIONED, frozenset({S.CREATED}), what)


def unpause(name: str, record: DomainRecord) -> Transition:
    return _move(name, record, S.BOOTING, frozenset({S.PROVISIONED}), "xl unpause")


def ready(name: str, record: DomainRecord, cause: str,
          seconds: float | None = None) -> Transition:
    """Its readiness probe passed (after a create: seconds is create-to-ready)."""
    record.error = None
    if seconds is not None and state_of(record) is S.BOOTING:
        record.create_to_ready = round(seconds, 2)
    return _move(name, record, S.READY, frozenset({S.BOOTING, S.ADOPTED, S.RESTARTED}),
                 cause, seconds=seconds)


def adopt(name: str, record: DomainRecord, domid: Domid, cause: str) -> Transition:
    """Found running under its name: a re-run or the follower takes it as it is."""
    return _move(name, record, S.ADOPTED, _AFTER_LIFE | frozenset({S.PENDING}), cause,
                 domid=domid)


def restart(name: str, record: DomainRecord, domid: Domid, cause: str) -> Transition:
    """Running under a new domid (xl's on_reboot/on_crash "restart", or re-created by hand):
    every piece of plumbing naming the old domid is stale."""
    record.restarts += 1
    record.error = None
    return _move(name, record, S.RESTARTED, _RUNNING | _AFTER_LIFE, cause, domid=domid)


def crash(name: str, record: DomainRecord, cause: str) -> Transition:
    record.error = cause
    return _move(name, record, S.CRASHED, _RUNNING | frozenset({S.CREATED, S.PROVISIONED}),
                 cause)


def stop_begin(name: str, record: DomainRecord, cause: str) -> Transition:
    return _move(name, record, S.STOPPING, PRESENT - {S.STOPPING} | frozenset({S.FAILED}),
                 cause)


def stop_end(name: str, record: DomainRecord, cause: str,
             seconds: float | None) -> Transition:
    return _move(name, record, S.STOPPED, frozenset({S.STOPPING}), cause, keep_domid=False,
                 seconds=seconds)


def fail(name: str, record: DomainRecord, cause: str, destroyed: bool) -> Transition:
    """It did not come up. destroyed: we destroyed it (it has no domid any more); else it
    runs on as it is (a restarted domain that never got ready: never harmed)."""
    record.error = cause
    return _move(name, record, S.FAILED,
                 frozenset({S.PENDING, S.CREATED, S.PROVISIONED, S.BOOTING, S.RESTARTED}),
                 cause, keep_domid=not destroyed)


def skip(name: str, record: DomainRecord, cause: str) -> Transition:
    record.error = cause
    return _move(name, record, S.SKIPPED, frozenset({S.PENDING}), cause, keep_domid=False)


def vanish(name: str, record: DomainRecord, cause: str) -> Transition:
    """It is not there any more and we did not destroy it."""
    return _move(name, record, S.GONE, PRESENT | frozenset({S.FAILED}), cause,
                 keep_domid=False)
