"""One scheduler: walk the dependency graph forwards (the boot) or backwards (the shutdown).

A domain's task starts as soon as every domain before it has finished its own task:
forwards, the domains it needs (topology.needs); backwards, the domains that need it, so
clients stop before their vchan servers and before the driver domain of their vifs
(xendomains stops driver domains last too). Tasks whose turn has come run in parallel;
each decides from the others' outcomes (the journal's states) what to do. The `waves` /
levels of `orchestrate plan` are the coarse view of the same order; starting each domain
as soon as its own predecessors are done is never slower.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    InvalidStateError,
    ThreadPoolExecutor,
    wait,
)

from orchestrator.topology import Topology


def forwards(topology: Topology) -> dict[str, tuple[str, ...]]:
    """Each domain's predecessors for the boot: the domains it needs."""
    return {name: topology.needs(name) for name in topology.names}


def forwards_early(topology: Topology) -> dict[str, tuple[str, ...]]:
    """Each domain's predecessors whose milestone is enough for the boot: the vchan
    servers it waits to be created and provisioned (`wait_for_servers = false`)."""
    return {name: topology.created_needs(name) for name in topology.names}


def backwards(topology: Topology) -> dict[str, tuple[str, ...]]:
    """Each domain's predecessors for the shutdown: the domains that need it."""
    return {name: tuple(sorted(e.after for e in topology.edges if e.before == name))
            for name in topology.names}


def levels(order: Sequence[str], before: Mapping[str, Collection[str]]) -> list[list[str]]:
    """The walk as levels (each: every domain whose predecessors are all in earlier levels),
    for people to read; the walk itself does not wait for a whole level."""
    placed: dict[str, int] = {}
    out: list[list[str]] = []
    remaining = list(order)
    while remaining:
        level = [n for n in remaining if all(p in placed for p in before.get(n, ()))]
        if not level:
            raise ValueError(f"dependency cycle among {', '.join(remaining)}")
        for name in level:
            placed[name] = len(out)
        out.append(level)
        remaining = [n for n in remaining if n not in placed]
    return out


def walk(order: Sequence[str], before: Mapping[str, Collection[str]],
         task: Callable[[str], None], workers: int,
         interrupted: Callable[[], None] = lambda: None,
         early: Mapping[str, Collection[str]] | None = None,
         milestones: Mapping[str, Future[None]] | None = None) -> None:
    """Run task(name) for each name once its predecessors' tasks have returned, and its
    `early` predecessors have reached their milestone (milestones[p], a future their task
    resolves part-way, e.g. created and provisioned; an ended task counts as reached);
    tasks are submitted in `order` (with one worker, a stable order: the dry run's). A
    task's exception is re-raised after the others finish (it is a bug: tasks report
    failures through the journal). On an interrupt, `interrupted()` tells the running
    tasks to stop, nothing more is started, and the interrupt goes on once they have."""
    early = early or {}
    marks: Mapping[str, Future[None]] = milestones or {}
    pending = list(order)
    done: set[str] = set()
    running: dict[Future[None], str] = {}
    errors: list[BaseException] = []

    def startable(name: str) -> bool:
        return all(p in done for p in before.get(name, ())) and all(
            p in done or (p in marks and marks[p].done()) for p in early.get(name, ()))

    with ThreadPoolExecutor(max_workers=max(1, workers),
                            thread_name_prefix="domain") as pool:
        while pending or running:
            # the milestones still to come, taken before the start check: one reached in
            # between is then in the wait below, which returns at once
            awaited = {marks[p] for n in pending for p in early.get(n, ())
                       if p in marks and p not in done and not marks[p].done()}
            for name in [n for n in pending if startable(n)]:
                pending.remove(name)
                context = contextvars.copy_context()
                running[pool.submit(context.run, task, name)] = name
            if not running:
                raise ValueError(f"dependency cycle among {', '.join(pending)}")
            try:
                finished, _ = wait([*running, *awaited], return_when=FIRST_COMPLETED)
            except BaseException:
                interrupted()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            for future in finished:
                if future not in running:
                    continue  # a milestone: the next round starts who waited for it
                name = running.pop(future)
                done.add(name)
                if name in marks:
                    reach(marks[name])
                if future.exception() is not None:
                    errors.append(future.exception())  # type: ignore[arg-type]
    if errors:
        raise errors[0]


def reach(milestone: Future[None]) -> None:
    """Resolve a milestone (once: a second call, e.g. when the task ends, is a no-op)."""
    with contextlib.suppress(InvalidStateError):
        milestone.set_result(None)
