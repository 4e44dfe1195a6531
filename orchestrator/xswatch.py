"""A stream of xenstore watch events on one connection, for the follower.

Idle, it wakes for nothing: the reader blocks on the event queue without a timeout (a
Condition wait, no polling), pyxs's router thread blocks in select() without one, and a
third thread blocks joining the router. When the connection ends, pyxs's router thread
ends: the joiner then queues a sentinel, so the reader learns it at once instead of
waiting forever (pyxs never says so itself).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from orchestrator.errors import OrchestratorError

_CLOSED = object()


class ConnectionLost(OrchestratorError):
    pass


class Subscription:
    def __init__(self, events: queue.Queue[Any], router: threading.Thread,
                 add: Callable[[str], None], remove: Callable[[str], None]) -> None:
        self._events = events
        self._add, self._remove = add, remove
        self.watched: set[str] = set()
        threading.Thread(target=self._on_close, args=(router,), name="xenstore closed",
                         daemon=True).start()

    def _on_close(self, router: threading.Thread) -> None:
        router.join()
        self._events.put(_CLOSED)

    def watch(self, path: str) -> None:
        if path not in self.watched:
            self._add(path)
            self.watched.add(path)

    def unwatch(self, path: str) -> None:
        if path in self.watched:
            self.watched.discard(path)
            try:
                self._remove(path)
            except OrchestratorError:
                pass  # the node's domain is gone and xenstored dropped the watch with it

    def next(self, timeout: float | None) -> str | None:
        """The path of the next event; None after `timeout` seconds without one (None:
        wait as long as it takes). Raises ConnectionLost when xenstored is gone."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        return self._path(event)

    def drain(self, limit: int = 100_000) -> list[str]:
        """Every event already queued (bounded: a flood cannot keep the caller here)."""
        out = []
        for _ in range(limit):
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            out.append(self._path(event))
        return out

    def _path(self, event: Any) -> str:
        if event is _CLOSED:
            self._events.put(_CLOSED)  # every later read says so too
            raise ConnectionLost("the connection to xenstored was lost",
                                 hint="is xenstored alive? (ps; /var/log/xen/xenstored*.log)")
        return bytes(event[0]).decode("utf-8", errors="replace")
