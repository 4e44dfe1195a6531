"""The scheduler's walk: a task starts once its predecessors ended, or, for an early
predecessor, once that one's task reached its milestone (created and provisioned)."""

from __future__ import annotations

import threading
from concurrent.futures import Future

from orchestrator.scheduler import reach, walk

TIMEOUT = 10


def test_an_early_successor_starts_at_the_milestone_while_its_predecessor_runs() -> None:
    marks: dict[str, Future[None]] = {"server": Future(), "client": Future()}
    client_started = threading.Event()
    log: list[str] = []

    def task(name: str) -> None:
        log.append(f"{name} start")
        if name == "server":
            reach(marks["server"])  # created and provisioned
            # still booting: it ends only once the client has started beside it
            assert client_started.wait(TIMEOUT), "the client did not start at the milestone"
        else:
            client_started.set()
        log.append(f"{name} end")

    walk(["server", "client"], {}, task, workers=2, early={"client": ["server"]},
         milestones=marks)
    assert log.index("client start") < log.index("server end")
    assert all(m.done() for m in marks.values())


def test_a_predecessor_that_ends_without_its_milestone_still_releases_the_successor() -> None:
    """A server whose creation failed never reaches its milestone: the client's task runs
    (and decides from the journal to skip), it never waits forever."""
    marks: dict[str, Future[None]] = {"server": Future(), "client": Future()}
    ran: list[str] = []
    walk(["server", "client"], {}, ran.append, workers=2, early={"client": ["server"]},
         milestones=marks)
    assert ran == ["server", "client"]
    assert marks["server"].done(), "an ended task counts as reached"


def test_with_one_worker_the_order_is_the_submission_order() -> None:
    marks: dict[str, Future[None]] = {n: Future() for n in ("a", "b", "c")}
    ran: list[str] = []

    def task(name: str) -> None:
        ran.append(name)
        reach(marks[name])

    walk(["a", "b", "c"], {"c": ["a"]}, task, workers=1, early={"b": ["a"]},
         milestones=marks)
    assert ran == ["a", "b", "c"]


def test_reaching_a_milestone_twice_is_harmless() -> None:
    mark: Future[None] = Future()
    reach(mark)
    reach(mark)
    assert mark.done()
