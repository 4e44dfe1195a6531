"""xenstore adapter over pyxs 0.4.1, and the recorder a dry run uses instead.

pyxs traps this wraps (XEN-FACTS.md "pyxs 0.4.1", STYLE.md "pyxs traps"):
- a call blocks forever if xenstored stops answering or the socket drops: every call
  here runs under our own deadline, and a timed-out Client is abandoned (a closed
  Client cannot reconnect; the next call makes a fresh one);
- `write` refuses empty values: empty nodes are made with MKDIR;
- paths and values are 7-bit ASCII bytes;
- `import pyxs` reads /proc/xen/capabilities: imported lazily, after xenfs is mounted.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from orchestrator.errors import OrchestratorError
from orchestrator.ipc import DOM0, XsNode
from orchestrator.xstransaction import transaction_writing_changes as _transaction
from orchestrator.xswatch import Subscription

T = TypeVar("T")

EAGAIN_ATTEMPTS = 8
# The fastest a wait re-evaluates its condition, however many watch events arrive.
MIN_INTERVAL = 0.05


class XenstoreError(OrchestratorError):
    pass


class Xenstore(Protocol):
    def read(self, path: str) -> str | None:
        """A node dom0 or libxl wrote (undecodable bytes come back replaced, never raised)."""
        ...

    def read_bytes(self, path: str) -> bytes | None:
        """A node a guest may have written: its raw bytes (`untrusted_*` until checked)."""
        ...

    def directory(self, path: str) -> list[str]: ...

    def get_perms(self, path: str) -> list[str] | None: ...

    def apply(self, nodes: list[XsNode], remove: Iterable[str] = ()) -> list[str]:
        """Write nodes (value + permissions) and remove paths, then read back and compare.

        dom0's own nodes and the removals go in one transaction, retried on EAGAIN, and any
        failure raises. A node a guest owns (a rendezvous node, [n<server>, ...]) gets a
        transaction of its own, and what goes wrong with it is returned as a warning: a
        guest can change what it owns, and must never be able to fail dom0's provisioning
        or another domain's."""
        ...

    def wait(
        self,
        watch: list[str],
        ready: Callable[[str | None], str | None],
        timeout: float,
        what: str,
        tick: float = 2.0,
    ) -> str:
        """Until ready(event) returns a text (which is returned) or timeout; evaluated
        first with None, on every watch event with the path that fired, and with None
        after `tick` seconds without one."""
        ...

    def close(self) -> None: ...


_tokens = itertools.count(1)


class PyxsXenstore:
    """The live adapter. One pyxs Client, replaced by a fresh one after any failure."""

    def __init__(self, socket_path: str, timeout: float, log: Any) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.log = log
        self._client: Any = None
        self._lock = threading.Lock()

    # -- the deadline funnel ---------------------------------------------------------

    def _call(self, what: str, fn: Callable[[Any], T], timeout: float | None = None) -> T:
        """Run fn(client) in a daemon thread; give up after the deadline."""
        timeout = self.timeout if timeout is None else timeout
        box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

        def worker() -> None:
            try:
                box.put((True, fn(self._connected())))
            except BaseException as exc:  # handed to the caller's thread
                box.put((False, exc))

        with self._lock:
            thread = threading.Thread(target=worker, name=f"xenstore {what}", daemon=True)
            thread.start()
            try:
                ok, value = box.get(timeout=timeout)
            except queue.Empty:
                self._abandon()
                raise XenstoreError(
                    f"xenstored at {self.socket_path} did not answer {what} within "
                    f"{timeout:g} s",
                    hint="is xenstored alive? (ps; /var/log/xen/xenstored*.log)",
                ) from None
        if ok:
            return value  # type: ignore[no-any-return]
        self._abandon()
        raise self._translate(what, value)

    def _connected(self) -> Any:
        if self._client is None:
            from pyxs import Client

            client = Client(unix_socket_path=self.socket_path)
            client.connect()
            self._client = client
        return self._client

    def _abandon(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # terminate() joins the router thread, which may be stuck: never wait on it.
            threading.Thread(target=_quiet_close, args=(client,), daemon=True).start()

    def _translate(self, what: str, exc: BaseException) -> BaseException:
        if isinstance(exc, OrchestratorError):
            return exc
        name = type(exc).__name__
        detail = os.strerror(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else exc
        return XenstoreError(
            f"xenstore {what} failed: {name}: {detail}",
            hint=f"check that xenstored is running and its socket is {self.socket_path}",
        )

    # -- reads -----------------------------------------------------------------------

    def read(self, path: str) -> str | None:
        value = self.read_bytes(path)
        return None if value is None else value.decode("utf-8", errors="replace")

    def read_bytes(self, path: str) -> bytes | None:
        def op(c: Any) -> bytes | None:
            import errno

            from pyxs.exceptions import PyXSError

            try:
                return bytes(c.read(path.encode()))
            except PyXSError as exc:
                if exc.args and exc.args[0] in (errno.ENOENT, errno.EACCES):
                    return None
                raise

        return self._call(f"read {path}", op)

    def directory(self, path: str) -> list[str]:
        def op(c: Any) -> list[str]:
            import errno

            from pyxs.exceptions import PyXSError

            try:
                return [bytes(x).decode("utf-8", errors="replace")
                        for x in c.list(path.encode())]
            except PyXSError as exc:
                if exc.args and exc.args[0] == errno.ENOENT:
                    return []
                raise

        return self._call(f"directory {path}", op)

    def get_perms(self, path: str) -> list[str] | None:
        def op(c: Any) -> list[str] | None:
            import errno

            from pyxs.exceptions import PyXSError

            try:
                return [bytes(x).decode("ascii", errors="replace")
                        for x in c.get_perms(path.encode())]
            except PyXSError as exc:
                if exc.args and exc.args[0] == errno.ENOENT:
                    return None
                raise

        return self._call(f"get-perms {path}", op)

    # -- writes ----------------------------------------------------------------------

    def apply(self, nodes: list[XsNode], remove: Iterable[str] = ()) -> list[str]:
        ours = [n for n in nodes if n.owner == DOM0]
        guests = [n for n in nodes if n.owner != DOM0]
        removals = list(remove)
        self._commit(ours, removals)
        self._verify(ours, removals)
        warnings = []
        for node in guests:  # each alone: a guest's node can only spoil its own write
            try:
                self._commit([node], [])
                self._verify([node], [])
            except XenstoreError as exc:
                warnings.append(f"{node.path} (owned by domid {node.owner}): {exc.message}")
        return warnings

    def _commit(self, nodes: list[XsNode], removals: list[str]) -> None:
        if not nodes and not removals:
            return
        for attempt in range(1, EAGAIN_ATTEMPTS + 1):
            changes = self._call("transaction", lambda c: _transaction(c, nodes, removals))
            if changes is not None:
                break
            self.log.debug("xenstore transaction conflict", attempt=attempt)
            time.sleep(min(0.05 * attempt, 0.5))
        else:
            raise XenstoreError(
                f"xenstore transaction still conflicting after {EAGAIN_ATTEMPTS} attempts "
                f"(EAGAIN); nothing of it was written",
                hint="another writer keeps changing the same nodes; re-run orchestrate",
            )
        for op, node in changes:  # only what changed: a re-run that converged prints nothing
            if isinstance(node, str):
                self.log.info("xenstore node", op=op, path=node, perms="-", value_text="")
            else:
                self.log.info("xenstore node", op=op, path=node.path, perms=node.perms_text(),
                              value_text=f" = {node.value}" if node.value is not None else "")

    def _verify(self, nodes: list[XsNode], removals: list[str]) -> None:
        """Read back after commit, byte for byte. A guest-owned node is checked for what
        dom0 decides (it exists, its owner, the grants), never for its value, which its
        owner may write."""
        wrong = []
        for node in nodes:
            untrusted_value = self.read_bytes(node.path)
            perms = self.get_perms(node.path)
            if untrusted_value is None:
                wrong.append(f"{node.path} is missing")
                continue
            if node.value is not None and untrusted_value != node.value.encode():
                wrong.append(f"{node.path} = {_show(untrusted_value)}, expected {node.value!r}")
            if perms != [str(p) for p in node.perms]:
                wrong.append(f"{node.path} perms {perms}, expected [{node.perms_text()}]")
        for path in removals:
            if self.read_bytes(path) is not None:
                wrong.append(f"{path} still exists")
        if wrong:
            raise XenstoreError(
                "xenstore read-back after commit differs: " + "; ".join(wrong),
                hint="another writer changed these nodes; re-run orchestrate to converge",
            )

    # -- waiting ---------------------------------------------------------------------

    def wait(
        self,
        watch: list[str],
        ready: Callable[[str | None], str | None],
        timeout: float,
        what: str,
        tick: float = 2.0,
    ) -> str:
        """A watch, not a sleep loop: a separate connection delivers the events."""
        from pyxs import Client

        deadline = time.monotonic() + timeout
        token = f"orchestrate-{os.getpid()}-{next(_tokens)}".encode()
        holder: dict[str, Any] = {}

        def subscribe() -> None:
            client = Client(unix_socket_path=self.socket_path)
            client.connect()
            holder["client"] = client
            monitor = client.monitor()
            for path in watch:
                monitor.watch(path.encode(), token)
            holder["monitor"] = monitor

        _run_with_deadline(subscribe, self.timeout, f"watch {', '.join(watch)}")
        events: queue.Queue[Any] = holder["monitor"].events
        fired: str | None = None
        evaluated = 0.0
        try:
            while True:
                outcome = ready(fired)
                evaluated = time.monotonic()
                if outcome is not None:
                    return outcome
                left = deadline - time.monotonic()
                if left <= 0:
                    raise XenstoreError(f"timed out after {timeout:g} s waiting for {what}")
                try:
                    fired = _event_path(events.get(timeout=min(tick, left)))
                except queue.Empty:
                    fired = None
                    continue
                # A burst of events (a guest rewriting a node in a loop) is one evaluation:
                # at most one per MIN_INTERVAL, with everything that came meanwhile.
                pause = MIN_INTERVAL - (time.monotonic() - evaluated)
                if pause > 0:
                    time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                for path in _drain(events):
                    fired = "@releaseDomain" if "@releaseDomain" in (fired, path) else path
        finally:
            threading.Thread(target=_quiet_close, args=(holder["client"],), daemon=True).start()

    def subscribe(self, paths: list[str]) -> Subscription:
        """Watches on this adapter's own connection (the follower keeps one connection)."""
        token = f"orchestrate-{os.getpid()}-{next(_tokens)}".encode()

        def op(c: Any) -> Any:
            monitor = c.monitor()
            for path in paths:
                monitor.watch(path.encode(), token)
            return monitor

        monitor = self._call(f"watch {', '.join(paths)}", op)
        client = self._client
        return Subscription(
            monitor.events, client.router.thread,
            lambda path: self._call(f"watch {path}",
                                    lambda c: monitor.watch(path.encode(), token)),
            lambda path: self._call(f"unwatch {path}",
                                    lambda c: monitor.unwatch(path.encode(), token)))

    def close(self) -> None:
        self._abandon()


def _run_with_deadline(fn: Callable[[], None], timeout: float, what: str) -> None:
    box: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)

    def worker() -> None:
        try:
            fn()
            box.put(None)
        except BaseException as exc:
            box.put(exc)

    threading.Thread(target=worker, daemon=True).start()
    try:
        exc = box.get(timeout=timeout)
    except queue.Empty:
        raise XenstoreError(f"xenstored did not answer {what} within {timeout:g} s") from None
    if exc is not None:
        raise XenstoreError(f"xenstore {what} failed: {exc}") from exc


def _event_path(event: Any) -> str:
    return bytes(event[0]).decode("utf-8", errors="replace")


def _drain(events: queue.Queue[Any], limit: int = 100_000) -> list[str]:
    """The paths of every event already queued (bounded: a flood cannot keep us here)."""
    out = []
    for _ in range(limit):
        try:
            out.append(_event_path(events.get_nowait()))
        except queue.Empty:
            break
    return out


def _show(untrusted: bytes) -> str:
    """A guest's bytes, safe to print: printable ASCII, escapes for the rest, cut at 40."""
    text = untrusted[:40].decode("ascii", errors="backslashreplace")
    text = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)
    return repr(text + ("..." if len(untrusted) > 40 else ""))


def _quiet_close(client: Any) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing a broken client: nothing to report
        pass
