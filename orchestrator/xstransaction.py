"""One xenstore transaction that writes only what differs (pyxs; part of the adapter).

A run that converged writes nothing and prints nothing: each node is read first, inside
the transaction, and written (value, then permissions) only where it differs. The commit
is the only place EAGAIN appears (XEN-FACTS.md "Wire protocol"); the caller retries the
whole transaction.
"""

from __future__ import annotations

from typing import Any

from orchestrator.ipc import XsNode


def transaction_writing_changes(client: Any, nodes: list[XsNode],
                 removals: list[str]) -> list[tuple[str, XsNode | str]] | None:
    """One transaction that writes only what differs; returns what it changed, or None
    when the commit hit EAGAIN (the caller retries it all)."""
    import errno

    from pyxs.exceptions import PyXSError

    def current(path: bytes) -> tuple[bytes, list[bytes]] | None:
        try:
            return bytes(client.read(path)), [bytes(p) for p in client.get_perms(path)]
        except PyXSError as exc:
            if exc.args and exc.args[0] == errno.ENOENT:
                return None
            raise

    changes: list[tuple[str, XsNode | str]] = []
    client.transaction()
    try:
        for path in removals:
            if current(path.encode()) is not None:
                client.delete(path.encode())
                changes.append(("rm", path))
        for node in nodes:
            key = node.path.encode()
            perms = [str(p).encode() for p in node.perms]
            now = current(key)
            value_ok = now is not None and (node.value is None
                                            or now[0] == node.value.encode())
            if not value_ok:
                if node.value is None:
                    client.mkdir(key)
                else:
                    client.write(key, node.value.encode())
            if now is None or now[1] != perms or not value_ok:
                client.set_perms(key, perms)
            if not value_ok:
                changes.append(("write" if node.value is not None else "mkdir", node))
            elif now is not None and now[1] != perms:
                changes.append(("set-perms", node))
    except BaseException:
        client.rollback()
        raise
    return changes if client.commit() else None
