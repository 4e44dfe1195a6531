#!/usr/bin/env python3
"""A xenstored stand-in speaking the real xenstore wire protocol on a Unix socket.

Behaviour follows C xenstored of Xen 4.17 (xen-project/xen RELEASE-4.17.7,
tools/xenstore/xenstored_{core,domain,transaction,watch}.c, docs/misc/xenstore.txt,
xen/include/public/io/xs_wire.h), re-implemented here from scratch. Deliberate limits:
no hypervisor, so "a domain exists" means "it was INTRODUCEd" (dom0 always exists); no
per-domain node/watch quotas, no SET_TARGET, no event de-duplication, no live update.

Use in-process (``with FakeXenstored(path) as xs: ...``) or as a process:
``xenstored.py --socket PATH [--pid-file PATH] [--socket-delay S] [--mute] [--daemonize]``.

Test-only CONTROL (op 0) commands, accepted from privileged connections only:
``as-domain|N|`` (this connection now acts as unprivileged, introduced domain N),
``check-access|DOMID|PATH|r-or-w|`` (replies ``1`` or ``0``, see ``could``),
``dump|`` (JSON of ``snapshot()``; E2BIG when over 4096 bytes) and
``domain-shutdown|N|`` (the hypervisor's VIRQ_DOM_EXC for a domain that shut down or crashed:
check_domains() in tools/xenstore/xenstored_domain.c:344-383 fires @releaseDomain once per
shutdown; RESUME clears the mark, RELEASE fires it again when the domain goes away).

Idle, it wakes for nothing: the accept loop and every connection block until a client
sends or ``stop()`` writes to a wake-up pipe (no poll interval).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import select
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

try:  # imported as part of the tests package
    from tests.sandbox.fakes.xswire import HEADER, PAYLOAD_MAX, Op
except ImportError:  # run as a script: its own directory is sys.path[0]
    from xswire import HEADER, PAYLOAD_MAX, Op  # type: ignore[no-redef,import-not-found]


REL_PATH_MAX = 2048  # XENSTORE_REL_PATH_MAX, xenstored's default quota_max_path_len
DOMID_SELF = 0x7FF0
MAX_PERMS_DOMU = 5  # quota_nb_perms_per_node
MAX_ENTRY_SIZE_DOMU = 2048  # quota_max_entry_size (record = 24-byte header + 8 per perm + data)
MAX_TRANSACTIONS_DOMU = 10  # quota_max_transaction
PERM_R, PERM_W, PERM_OWNER = 1, 2, 4
_LETTERS = {"n": 0, "r": PERM_R, "w": PERM_W, "b": PERM_R | PERM_W}
_LETTER_OF = {bits: letter for letter, bits in _LETTERS.items()}
_VALID_PATH = re.compile(r"[A-Za-z0-9/_@-]+")
_LOCAL_DOMAIN = re.compile(r"/local/domain/\d{1,5}/")


_PRIVILEGED_OPS = {Op.CONTROL, Op.INTRODUCE, Op.RELEASE, Op.IS_DOMAIN_INTRODUCED, Op.RESUME}


class XsError(Exception):
    """An error reply: ``name`` is the errno name sent as ``E<NAME>\\0``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class Perm:
    bits: int
    domid: int
    ignore: bool = False  # XS_PERM_IGNORE: names a domain that did not exist

    def __str__(self) -> str:
        return f"{_LETTER_OF[self.bits]}{self.domid}"


@dataclass
class Node:
    name: str
    value: bytes
    perms: list[Perm]
    children: list[str] = field(default_factory=list)
    generation: int = 0

    def copy(self) -> Node:
        return Node(self.name, self.value, list(self.perms), list(self.children), self.generation)

    def record_size(self) -> int:
        kids = sum(len(c) + 1 for c in self.children)
        return 24 + 8 * len(self.perms) + len(self.value) + kids


@dataclass
class Watch:
    path: str  # canonical (absolute or @special)
    token: str
    prefix: str | None  # implicit path when the watch was set with a relative path

    def event_path(self, name: str) -> str:
        if self.prefix is None:
            return name
        rest = name[len(self.prefix) :]
        return rest[1:] if rest.startswith("/") else rest


@dataclass
class Transaction:
    tid: int
    overlay: dict[str, Node | None] = field(default_factory=dict)
    first_gen: dict[str, int | None] = field(default_factory=dict)  # None: absent when read
    old_perms: dict[str, list[Perm] | None] = field(default_factory=dict)
    modified: set[str] = field(default_factory=set)
    events: dict[str, bool] = field(default_factory=dict)  # path -> exact

    def note(self, path: str, node: Node | None) -> None:
        if path not in self.overlay:
            self.overlay[path] = node.copy() if node else None
            self.first_gen[path] = node.generation if node else None
            self.old_perms[path] = list(node.perms) if node else None


class Conn:
    """One client connection (or a detached caller identity for ``could``)."""

    def __init__(self, domid: int = 0, sock: socket.socket | None = None) -> None:
        self.domid = domid
        self.sock = sock
        self.tx: Transaction | None = None  # transaction of the request being processed
        self.transactions: dict[int, Transaction] = {}
        self.next_tx_id = 1
        self.watches: list[Watch] = []
        self.outbox: queue.Queue[bytes | None] = queue.Queue()

    @property
    def privileged(self) -> bool:
        return self.domid == 0

    @property
    def home(self) -> str:
        return f"/local/domain/{self.domid}"

    def send(self, op: int, req_id: int, tx_id: int, payload: bytes) -> None:
        if self.sock is not None:
            self.outbox.put(HEADER.pack(op, req_id, tx_id, len(payload)) + payload)

    def disconnect(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _join(parent: str, child: str) -> str:
    return f"/{child}" if parent == "/" else f"{parent}/{child}"


def _is_child(child: str, parent: str) -> bool:
    if parent == "/":
        return True
    return child == parent or child.startswith(parent + "/")


def valid_path(path: str) -> bool:
    """is_valid_nodename(): absolute, no '//', no trailing '/', allowed chars, length."""
    if not path.startswith("/") or (path.endswith("/") and path != "/") or "//" in path:
        return False
    local = _LOCAL_DOMAIN.match(path)
    if len(path) > (local.end() if local else 0) + REL_PATH_MAX:
        return False
    return _VALID_PATH.fullmatch(path) is not None


def _atoi(text: str) -> int:
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def _strings(payload: bytes) -> list[str]:
    """NUL-terminated strings of a payload (trailing bytes without NUL are ignored)."""
    return [s.decode("latin-1") for s in payload.split(b"\0")[:-1]]


def onearg(payload: bytes) -> str | None:
    """The single argument of a payload holding exactly one NUL, at its end."""
    if not payload or payload.find(b"\0") != len(payload) - 1:
        return None
    return payload[:-1].decode("latin-1")


def parse_perms(strings: list[str]) -> list[Perm]:
    """xs_strings_to_perms(): letter n/r/w/b then a domid (strtol base 0; negatives refused)."""
    perms = []
    for text in strings:
        number = text[1:]
        base = 16 if number[:2].lower() == "0x" else 8 if number[:1] == "0" else 10
        if not text or text[0] not in _LETTERS or not re.fullmatch(r"(0[xX])?[0-9a-fA-F]+", number):
            raise XsError("EINVAL")
        try:
            perms.append(Perm(_LETTERS[text[0]], int(number, base)))
        except ValueError:
            raise XsError("EINVAL") from None
    return perms


class Xenstore:
    """The store and the request semantics; every public method takes ``self.lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._generation = 0
        self.nodes: dict[str, Node] = {}
        self.domains: dict[int, int] = {0: 0}  # introduced domid -> generation at introduction
        self.shut_down: set[int] = set()  # struct domain's `shutdown` flag
        self.special_perms = {"@introduceDomain": [Perm(0, 0)], "@releaseDomain": [Perm(0, 0)]}
        self.conns: list[Conn] = []
        self._pending_initial: tuple[Conn, Watch] | None = None  # WATCH's first event
        # setup_structure(): xenstored itself creates only /, /tool, /tool/xenstored, all [n0];
        # /local/domain/0 comes later from xen-init-dom0.
        for name, kids in (("/", ["tool"]), ("/tool", ["xenstored"]), ("/tool/xenstored", [])):
            self.nodes[name] = Node(name, b"", [Perm(0, 0)], kids, self._next_generation())

    # ---- storage, with transactions and XS_PERM_IGNORE handling ------------------------
    def _next_generation(self) -> int:
        self._generation += 1
        return self._generation

    def _adjusted(self, node: Node) -> Node:
        """domain_adjust_node_perms(): ignore entries 1..n naming a domain that does not
        exist or was introduced after the node was last written (a recycled domid)."""
        out = node.copy()
        for i, perm in enumerate(out.perms[1:], start=1):
            born = self.domains.get(perm.domid)
            if not perm.ignore and (born is None or born > node.generation):
                out.perms[i] = replace(perm, ignore=True)
        return out

    def _read(self, conn: Conn, path: str) -> Node | None:
        if conn.tx is None:
            node = self.nodes.get(path)
        else:
            conn.tx.note(path, self.nodes.get(path))
            node = conn.tx.overlay[path]
        return None if node is None else self._adjusted(node)

    def _store(self, conn: Conn, node: Node, quota: bool = True) -> None:
        if quota and not conn.privileged and node.record_size() >= MAX_ENTRY_SIZE_DOMU:
            raise XsError("ENOSPC")
        node.generation = self._next_generation()
        if conn.tx is None:
            self.nodes[node.name] = node
        else:
            conn.tx.note(node.name, self.nodes.get(node.name))
            conn.tx.overlay[node.name] = node
            conn.tx.modified.add(node.name)

    def _remove(self, conn: Conn, path: str) -> None:
        self._next_generation()
        if conn.tx is None:
            self.nodes.pop(path, None)
        else:
            conn.tx.note(path, self.nodes.get(path))
            conn.tx.overlay[path] = None
            conn.tx.modified.add(path)

    # ---- permissions ---------------------------------------------------------------------
    @staticmethod
    def perm_for(conn: Conn, perms: list[Perm]) -> int:
        """perm_for_conn(): privileged or owner -> all; first own entry 1..n; else entry 0."""
        if conn.privileged or perms[0].domid == conn.domid:
            return PERM_R | PERM_W | PERM_OWNER
        for perm in perms[1:]:
            if not perm.ignore and perm.domid == conn.domid:
                return perm.bits
        return perms[0].bits

    def _ancestor_perm(self, conn: Conn, path: str) -> int:
        """ask_parents(): the permission on the nearest existing ancestor."""
        while path != "/":
            path = _parent(path)
            node = self._read(conn, path)
            if node is not None:
                return self.perm_for(conn, node.perms)
        return 0

    def _get_node(self, conn: Conn, path: str | None, want: int) -> Node:
        """get_node(): EINVAL, the node, or ENOENT/EACCES (EACCES unless the nearest
        existing ancestor grants ``want``, so that errors leak nothing)."""
        if path is None or not valid_path(path):
            raise XsError("EINVAL")
        node = self._read(conn, path)
        if node is not None and self.perm_for(conn, node.perms) & want == want:
            return node
        error = "ENOENT" if node is None else "EACCES"
        raise XsError(error if self._ancestor_perm(conn, path) & want else "EACCES")

    @staticmethod
    def _canonical(conn: Conn, path: str | None) -> str | None:
        if path is None or path.startswith(("/", "@")):
            return path
        return f"{conn.home}/{path}"

    # ---- watches -------------------------------------------------------------------------
    def _watch_permitted(
        self, conn: Conn, name: str, node: Node | None, old: list[Perm] | None
    ) -> bool:
        if old is not None and self.perm_for(conn, old) & PERM_R:
            return True
        if node is None:
            stored = self.nodes.get(name)
            if stored is None:
                return False
            node = self._adjusted(stored)
        if self.perm_for(conn, node.perms) & PERM_R:
            return True
        parent = self.nodes.get(_parent(name))
        if parent is None:
            return False
        return bool(self.perm_for(conn, self._adjusted(parent).perms) & PERM_R)

    def _fire(
        self,
        conn: Conn | None,
        name: str,
        node: Node | None,
        exact: bool,
        old: list[Perm] | None = None,
    ) -> None:
        if conn is not None and conn.tx is not None:  # queue_watches(): fire at commit
            events = conn.tx.events
            events[name] = events.get(name, True) and exact
            return
        for target in self.conns:
            if name.startswith("@"):
                perms = self.special_perms.get(name)
                if perms is None or not self.perm_for(target, perms) & PERM_R:
                    continue
            elif not self._watch_permitted(target, name, node, old):
                continue
            for watch in target.watches:
                if (name == watch.path) if exact else _is_child(name, watch.path):
                    self._send_event(target, watch, name)

    @staticmethod
    def _send_event(conn: Conn, watch: Watch, name: str) -> None:
        payload = f"{watch.event_path(name)}\0{watch.token}\0".encode("latin-1")
        if len(payload) <= PAYLOAD_MAX:
            conn.send(Op.WATCH_EVENT, 0, 0, payload)

    # ---- node operations -----------------------------------------------------------------
    def _create(self, conn: Conn, name: str, value: bytes) -> Node:
        """construct_node()/create_node(): implicit parents inherit the nearest existing
        ancestor's permissions; an unprivileged creator becomes the owner."""
        missing = [name]
        parent = self._read(conn, _parent(name))
        while parent is None:
            missing.append(_parent(missing[-1]))
            parent = self._read(conn, _parent(missing[-1]))
        created: list[Node] = []
        for path in reversed(missing):
            parent.children.append(_basename(path))
            perms = list(parent.perms)
            if not conn.privileged:
                perms[0] = Perm(perms[0].bits, conn.domid)
            created.append(parent)
            parent = Node(path, b"", perms)
        parent.value = value
        created.append(parent)
        if not conn.privileged and any(n.record_size() >= MAX_ENTRY_SIZE_DOMU for n in created):
            raise XsError("ENOSPC")
        for node in reversed(created):
            self._store(conn, node)
        return parent

    def _rm_node(self, conn: Conn, name: str) -> None:
        parent = self._read(conn, _parent(name))
        if parent is None:
            raise XsError("EINVAL")
        self._delete_tree(conn, name, name)
        if _basename(name) not in parent.children:
            raise XsError("EIO")
        parent.children.remove(_basename(name))
        self._store(conn, parent, quota=False)

    def _delete_tree(self, conn: Conn, name: str, root: str) -> None:
        node = self._read(conn, name)
        if node is None:
            return
        for child in node.children:
            self._delete_tree(conn, _join(name, child), root)
        self._remove(conn, name)
        self._fire(conn, name, node, exact=name != root)

    # ---- request handlers: (conn, payload) -> reply payload --------------------------------
    def op_read(self, conn: Conn, payload: bytes) -> bytes:
        return self._get_node(conn, self._canonical(conn, onearg(payload)), PERM_R).value

    def op_directory(self, conn: Conn, payload: bytes) -> bytes:
        node = self._get_node(conn, self._canonical(conn, onearg(payload)), PERM_R)
        return b"".join(c.encode("latin-1") + b"\0" for c in node.children)

    def op_directory_part(self, conn: Conn, payload: bytes) -> bytes:
        args = _strings(payload)
        if payload.count(b"\0") != 2:
            raise XsError("EINVAL")
        node = self._get_node(conn, self._canonical(conn, args[0]), PERM_R)
        offset, gen = _atoi(args[1]), f"{node.generation}\0".encode()
        children = b"".join(c.encode("latin-1") + b"\0" for c in node.children)
        if offset >= len(children):
            return gen + b"\0"
        out = b""
        for child in children[offset:].split(b"\0")[:-1]:
            if len(out) + len(child) >= PAYLOAD_MAX - len(gen) - 1:
                return gen + out
            out += child + b"\0"
        return gen + out + b"\0"

    def op_get_perms(self, conn: Conn, payload: bytes) -> bytes:
        node = self._get_node(conn, self._canonical(conn, onearg(payload)), PERM_R)
        return b"".join(str(p).encode() + b"\0" for p in node.perms)

    def op_write(self, conn: Conn, payload: bytes) -> bytes:
        if b"\0" not in payload:
            raise XsError("EINVAL")
        raw, value = payload.split(b"\0", 1)
        name = self._canonical(conn, raw.decode("latin-1"))
        try:
            node = self._get_node(conn, name, PERM_W)
        except XsError as err:
            if err.name != "ENOENT" or name is None:
                raise
            node = self._create(conn, name, value)
        else:
            node.value = value
            self._store(conn, node)
        self._fire(conn, node.name, node, exact=False)
        return b"OK\0"

    def op_mkdir(self, conn: Conn, payload: bytes) -> bytes:
        name = self._canonical(conn, onearg(payload))
        try:
            self._get_node(conn, name, PERM_W)
        except XsError as err:
            if err.name != "ENOENT" or name is None:
                raise
            self._fire(conn, name, self._create(conn, name, b""), exact=False)
        return b"OK\0"

    def op_rm(self, conn: Conn, payload: bytes) -> bytes:
        name = self._canonical(conn, onearg(payload))
        try:
            self._get_node(conn, name, PERM_W)
        except XsError as err:
            if err.name != "ENOENT" or name is None:
                raise
            if self._read(conn, _parent(name)) is None:
                raise
            return b"OK\0"  # already gone and its parent exists: fine
        if name is None or name == "/":
            raise XsError("EINVAL")
        self._rm_node(conn, name)
        return b"OK\0"

    def op_set_perms(self, conn: Conn, payload: bytes) -> bytes:
        args = _strings(payload)
        if len(args) < 2:
            raise XsError("EINVAL")
        if not conn.privileged and len(args) - 1 > MAX_PERMS_DOMU:
            raise XsError("ENOSPC")
        perms = [  # domain_alloc_permrefs(): entries naming no existing domain are ignored
            p if p.domid in self.domains else replace(p, ignore=True) for p in parse_perms(args[1:])
        ]
        if perms[0].ignore:
            raise XsError("ENOENT")
        if args[0].startswith("@"):
            current = self.special_perms.get(args[0])
            if current is None:
                raise XsError("EINVAL")
            if self.perm_for(conn, current) & (PERM_W | PERM_OWNER) != PERM_W | PERM_OWNER:
                raise XsError("EACCES")
            self.special_perms[args[0]] = perms
            return b"OK\0"
        name = self._canonical(conn, args[0])
        node = self._get_node(conn, name, PERM_W | PERM_OWNER)
        if not conn.privileged and perms[0].domid != node.perms[0].domid:
            raise XsError("EPERM")
        old, node.perms = node.perms, perms
        self._store(conn, node)
        self._fire(conn, node.name, node, exact=False, old=old)
        return b"OK\0"

    def op_watch(self, conn: Conn, payload: bytes) -> bytes:
        args = _strings(payload)
        if len(args) != 2:
            raise XsError("EINVAL")
        path, token = args
        relative = not path.startswith(("/", "@"))
        canonical = self._canonical(conn, path) or path
        if path.startswith("@") and len(path) > REL_PATH_MAX:
            raise XsError("EINVAL")
        if not path.startswith("@") and not valid_path(canonical):
            raise XsError("EINVAL")
        if any(w.path == canonical and w.token == token for w in conn.watches):
            raise XsError("EEXIST")
        watch = Watch(canonical, token, conn.home if relative else None)
        conn.watches.append(watch)
        self._pending_initial = (conn, watch)  # fired right after the OK, like do_watch()
        return b"OK\0"

    def op_unwatch(self, conn: Conn, payload: bytes) -> bytes:
        args = _strings(payload)
        if len(args) != 2:
            raise XsError("EINVAL")
        canonical = self._canonical(conn, args[0])
        for watch in conn.watches:
            if watch.path == canonical and watch.token == args[1]:
                conn.watches.remove(watch)
                return b"OK\0"
        raise XsError("ENOENT")

    def op_transaction_start(self, conn: Conn, payload: bytes) -> bytes:
        if conn.tx is not None:
            raise XsError("EBUSY")
        if not conn.privileged and len(conn.transactions) > MAX_TRANSACTIONS_DOMU:
            raise XsError("ENOSPC")
        self._next_generation()
        while conn.next_tx_id == 0 or conn.next_tx_id in conn.transactions:
            conn.next_tx_id = (conn.next_tx_id + 1) & 0xFFFFFFFF
        tid, conn.next_tx_id = conn.next_tx_id, (conn.next_tx_id + 1) & 0xFFFFFFFF
        conn.transactions[tid] = Transaction(tid)
        return f"{tid}\0".encode()

    def op_transaction_end(self, conn: Conn, payload: bytes) -> bytes:
        arg = onearg(payload)
        if arg not in ("T", "F"):
            raise XsError("EINVAL")
        tx = conn.tx
        if tx is None:
            raise XsError("ENOENT")
        del conn.transactions[tx.tid]
        conn.tx = None
        if arg == "T":
            self._commit(tx)
        return b"OK\0"

    def _commit(self, tx: Transaction) -> None:
        """finalize_transaction(): EAGAIN if any node accessed in the transaction changed."""
        for path, generation in tx.first_gen.items():
            current = self.nodes.get(path)
            if (current.generation if current else None) != generation:
                raise XsError("EAGAIN")
        for path in tx.first_gen:
            node = tx.overlay[path]
            if path not in tx.modified:
                continue
            if node is None:
                self.nodes.pop(path, None)
            else:
                node.generation = self._next_generation()
                self.nodes[path] = node
        for path in tx.first_gen:
            if path in tx.events:
                self._fire(None, path, None, tx.events[path], tx.old_perms.get(path))

    def op_get_domain_path(self, conn: Conn, payload: bytes) -> bytes:
        arg = onearg(payload)
        if arg is None:
            raise XsError("EINVAL")
        return f"/local/domain/{_atoi(arg)}\0".encode()

    def op_introduce(self, conn: Conn, payload: bytes) -> bytes:
        args = _strings(payload)
        if len(args) < 3 or _atoi(args[2]) <= 0:
            raise XsError("EINVAL")
        domid = _atoi(args[0])
        if not 0 <= domid < DOMID_SELF:
            raise XsError("EINVAL")
        if domid not in self.domains:
            self.domains[domid] = self._generation  # not incremented: see transaction.c notes
            self._fire(None, "@introduceDomain", None, exact=True)
        return b"OK\0"

    def _introduced_arg(self, payload: bytes) -> int:
        """onearg_domain(): EINVAL for a bad argument or dom0, ENOENT if not introduced."""
        arg = onearg(payload)
        domid = _atoi(arg) if arg is not None else 0
        if domid == 0:
            raise XsError("EINVAL")
        if domid not in self.domains:
            raise XsError("ENOENT")
        return domid

    def op_release(self, conn: Conn, payload: bytes) -> bytes:
        self.release(self._introduced_arg(payload))
        return b"OK\0"

    def op_resume(self, conn: Conn, payload: bytes) -> bytes:
        self.shut_down.discard(self._introduced_arg(payload))  # do_resume(): shutdown = false
        return b"OK\0"

    def release(self, domid: int) -> None:
        """destroy_domain() (tools/xenstore/xenstored_domain.c): the domain's connection goes
        first; then domain_tree_remove() deletes every node the domain OWNS together with
        its whole subtree (firing watches; without --keep-orphans), drops the domain from
        the @introduceDomain/@releaseDomain permissions, and @releaseDomain fires. Nodes
        owned by dom0, like the libxl-made /local/domain/<domid>, stay for the toolstack."""
        with self.lock:
            for conn in [c for c in self.conns if c.domid == domid]:
                self.detach(conn)
                conn.disconnect()
            owned: list[str] = []
            pending = ["/"]
            while pending:
                node = self.nodes.get(pending.pop())
                if node is None:
                    continue
                if node.perms[0].domid == domid:
                    owned.append(node.name)
                else:
                    pending.extend(_join(node.name, c) for c in reversed(node.children))
            system = Conn(0)
            for name in owned:
                self._rm_node(system, name)
            for key, perms in self.special_perms.items():
                owner = perms[0] if perms[0].domid != domid else replace(perms[0], domid=0)
                self.special_perms[key] = [owner] + [p for p in perms[1:] if p.domid != domid]
            del self.domains[domid]
            self.shut_down.discard(domid)
            self._fire(None, "@releaseDomain", None, exact=True)

    def domain_shutdown(self, domid: int) -> None:
        """check_domains() on VIRQ_DOM_EXC (xenstored_domain.c:363-382): the first time a
        domain is seen shut down (or crashed) @releaseDomain fires; later scans do not."""
        with self.lock:
            if domid not in self.domains:
                raise XsError("ENOENT")
            if domid != 0 and domid not in self.shut_down:
                self.shut_down.add(domid)
                self._fire(None, "@releaseDomain", None, exact=True)

    def op_is_domain_introduced(self, conn: Conn, payload: bytes) -> bytes:
        arg = onearg(payload)
        if arg is None:
            raise XsError("EINVAL")
        domid = _atoi(arg)
        return b"T\0" if domid == DOMID_SELF or domid in self.domains else b"F\0"

    def op_reset_watches(self, conn: Conn, payload: bytes) -> bytes:
        conn.watches.clear()
        conn.transactions.clear()
        return b"OK\0"

    def op_control(self, conn: Conn, payload: bytes) -> bytes:
        args = _strings(payload)
        if not args:
            raise XsError("EINVAL")
        try:
            if args[0] == "as-domain" and len(args) == 2 and int(args[1]) > 0:
                if int(args[1]) not in self.domains:
                    raise XsError("ENOENT")
                conn.domid = int(args[1])
                return b"OK\0"
            if args[0] == "check-access" and len(args) == 4 and args[3] in ("r", "w"):
                domid = int(args[1])
                path = self._canonical(Conn(domid), args[2]) or ""
                return b"1\0" if self.could(domid, path, args[3]) else b"0\0"
            if args[0] == "dump" and len(args) == 1:
                return json.dumps(self.snapshot(), separators=(",", ":")).encode() + b"\0"
            if args[0] == "domain-shutdown" and len(args) == 2:
                self.domain_shutdown(int(args[1]))
                return b"OK\0"
        except ValueError:
            pass
        raise XsError("EINVAL")

    # ---- dispatch ------------------------------------------------------------------------
    def process(self, conn: Conn, op: int, req_id: int, tx_id: int, payload: bytes) -> None:
        """process_message(): run one request and queue its reply (plus any events)."""
        with self.lock:
            self._pending_initial = None
            reply_type = op
            name = Op(op).name if op in Op.__members__.values() else "unknown"
            handler = getattr(self, f"op_{name.lower()}", None)
            try:
                if handler is None:
                    raise XsError("ENOSYS")
                if op in _PRIVILEGED_OPS and not conn.privileged:
                    raise XsError("EACCES")
                conn.tx = None
                if op not in (Op.WATCH, Op.UNWATCH) and tx_id != 0:
                    conn.tx = conn.transactions.get(tx_id)
                    if conn.tx is None:
                        raise XsError("ENOENT")
                reply = handler(conn, payload)
                if len(reply) > PAYLOAD_MAX:
                    raise XsError("E2BIG")
            except XsError as err:
                reply_type, reply = Op.ERROR, f"{err.name}\0".encode()
            except Exception:  # a bug in the stand-in: answer rather than hang the client
                traceback.print_exc()
                reply_type, reply = Op.ERROR, b"EIO\0"
            finally:
                conn.tx = None
            conn.send(reply_type, req_id, tx_id, reply)
            if self._pending_initial is not None and reply_type != Op.ERROR:
                watcher, watch = self._pending_initial
                self._send_event(watcher, watch, watch.path)

    def attach(self, conn: Conn) -> None:
        with self.lock:
            self.conns.append(conn)

    def detach(self, conn: Conn) -> None:
        with self.lock:
            if conn in self.conns:
                self.conns.remove(conn)
            conn.watches.clear()
            conn.transactions.clear()

    # ---- inspection for tests ------------------------------------------------------------
    def could(self, domid: int, path: str, mode: str) -> bool:
        """Would domain ``domid`` be allowed to read ("r") / write ("w") ``path`` now?
        Only the node itself counts. For a missing node "w" means "could create it"
        (the nearest existing ancestor is writable) and "r" is False."""
        if mode not in ("r", "w") or not valid_path(path):
            raise ValueError(f"bad mode {mode!r} or path {path!r}")
        want = PERM_R if mode == "r" else PERM_W
        with self.lock:
            caller = Conn(domid)
            node = self._read(caller, path)
            if node is not None:
                return self.perm_for(caller, node.perms) & want == want
            return mode == "w" and bool(self._ancestor_perm(caller, path) & PERM_W)

    def snapshot(self) -> dict[str, dict[str, object]]:
        with self.lock:
            return {
                path: {
                    "value": node.value.decode("utf-8", "backslashreplace"),
                    "perms": [str(p) for p in node.perms],
                }
                for path, node in sorted(self.nodes.items())
            }


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def _writer(conn: Conn, sock: socket.socket) -> None:
    while (message := conn.outbox.get()) is not None:
        try:
            sock.sendall(message)
        except OSError:
            return


def _serve_connection(fake: FakeXenstored, sock: socket.socket) -> None:
    """One client: a reader (this thread, blocked in recv) and a writer thread (blocked on
    its outbox), so that replies and watch events go out in order."""
    conn = Conn(0, sock)
    try:
        if fake.mute:  # accept, read, never answer (attached only so that stop() ends it)
            with fake.store.lock:
                fake.store.conns.append(conn)
            while _recv_exact(sock, 1) is not None:
                pass
            fake.store.detach(conn)
            return
        writer = threading.Thread(target=_writer, args=(conn, sock), daemon=True)
        writer.start()
        fake.store.attach(conn)
        try:
            while (header := _recv_exact(sock, HEADER.size)) is not None:
                op, req_id, tx_id, length = HEADER.unpack(header)
                if length > PAYLOAD_MAX:  # the real daemon drops such a client
                    break
                payload = _recv_exact(sock, length) if length else b""
                if payload is None:
                    break
                fake.store.process(conn, op, req_id, tx_id, payload)
        finally:
            fake.store.detach(conn)
            conn.outbox.put(None)
            writer.join(timeout=2)
    finally:
        sock.close()


class FakeXenstored:
    """Threaded in-process server: ``FakeXenstored(path).start()`` ... ``.stop()``."""

    def __init__(self, socket_path: str | os.PathLike[str], *, mute: bool = False) -> None:
        self.socket_path = Path(socket_path)
        self.mute = mute
        self.store = Xenstore()
        self._listener: socket.socket | None = None
        self._wake: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeXenstored:
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        listener.listen(64)
        self._listener, self._wake = listener, os.pipe()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        """Blocks until a client connects or stop() writes to the wake-up pipe."""
        assert self._listener is not None and self._wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake[0], selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj == self._wake[0]:
                        return
                    try:
                        sock, _ = self._listener.accept()
                    except OSError:
                        continue
                    threading.Thread(target=_serve_connection, args=(self, sock),
                                     daemon=True).start()

    def stop(self) -> None:
        if self._wake is not None:
            os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with self.store.lock:
                conns = list(self.store.conns)
            for conn in conns:
                conn.disconnect()
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> FakeXenstored:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def could(self, domid: int, path: str, mode: str) -> bool:
        return self.store.could(domid, path, mode)

    def snapshot(self) -> dict[str, dict[str, object]]:
        return self.store.snapshot()

    @property
    def introduced(self) -> set[int]:
        """Introduced domains; dom0 is always there (xenstored's dom0_init())."""
        with self.store.lock:
            return set(self.store.domains)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--socket", required=True, help="Unix socket path to serve")
    parser.add_argument("--pid-file", help="write the (daemon's) pid here")
    parser.add_argument("--socket-delay", type=float, default=0.0, help="seconds before bind")
    parser.add_argument("--mute", action="store_true", help="accept but never answer")
    parser.add_argument(
        "--daemonize", action="store_true", help="fork; the launcher writes the pid file, exits 0"
    )
    args = parser.parse_args(argv)
    if args.daemonize:
        child = os.fork()
        if child:
            if args.pid_file:
                Path(args.pid_file).write_text(f"{child}\n")
            os._exit(0)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    elif args.pid_file:
        Path(args.pid_file).write_text(f"{os.getpid()}\n")
    # A signal may land in any thread; the wake-up fd gets a byte whichever it is, so the
    # main thread sleeps in select() on it: no periodic wake-up.
    stopping = threading.Event()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    def sleep(seconds: float | None) -> bool:
        """Sleep until a signal stops us (True) or ``seconds`` pass (False)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not stopping.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if select.select([wake_r], [], [], left)[0]:
                os.read(wake_r, 512)
        return True

    if sleep(args.socket_delay):
        return 0
    fake = FakeXenstored(args.socket, mute=args.mute).start()
    try:
        sleep(None)
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
