"""A tiny blocking xenstore wire-protocol client (stdlib only) for the sandbox stand-ins.

The stand-ins in ``bin/`` run under the system python3, which has no pyxs, so they speak the
protocol themselves (X: xen/include/public/io/xs_wire.h): a native-endian header
``struct xsd_sockmsg { u32 type, req_id, tx_id, len; }`` then the payload; arguments are
NUL-terminated except WRITE's value; an error reply is type ERROR (16) carrying ``"E<NAME>\\0"``.

Like libxenstore's ``xs_open()``, the socket is ``$XENSTORED_PATH`` if set, else
``$XENSTORED_RUNDIR/socket``, else ``/var/run/xenstored/socket``. Watch events that arrive
while waiting for a reply are kept in ``events``.
"""

from __future__ import annotations

import os
import socket
import struct
from enum import IntEnum
from types import TracebackType

HEADER = struct.Struct("=IIII")
PAYLOAD_MAX = 4096

class Op(IntEnum):
    """xsd_sockmsg types (xen/include/public/io/xs_wire.h)."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22

Value = str | bytes


class XsError(Exception):
    """xenstored answered ERROR; ``name`` is the errno name, e.g. ``"ENOENT"``."""

    def __init__(self, name: str, path: str = "") -> None:
        super().__init__(f"{name} {path}".strip())
        self.name = name
        self.path = path


def socket_path() -> str:
    """Where libxenstore would connect (xs_daemon_socket())."""
    if os.environ.get("XENSTORED_PATH"):
        return os.environ["XENSTORED_PATH"]
    rundir = os.environ.get("XENSTORED_RUNDIR", "/var/run/xenstored")
    return f"{rundir}/socket"


def _b(value: Value) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Client:
    """One connection. ``timeout`` bounds every reply wait (None: block like libxenstore)."""

    def __init__(self, path: str | None = None, timeout: float | None = 30.0) -> None:
        self.path = path or socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError:
            self.sock.close()
            raise
        self._req_id = 0
        self.events: list[tuple[str, str]] = []

    # ---- plumbing --------------------------------------------------------------------------
    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def pump(self) -> None:
        """Read one message the daemon sent unasked (call when the socket is readable and
        no request is outstanding): a watch event lands in ``events``. EOF raises
        ConnectionError, as libxenstore's reader thread sees a dead daemon."""
        kind, _req_id, _tx, size = HEADER.unpack(self._exact(HEADER.size))
        body = self._exact(size) if size else b""
        if kind == Op.WATCH_EVENT:
            parts = body.split(b"\0")
            if len(parts) >= 2:
                self.events.append((parts[0].decode("latin-1"), parts[1].decode("latin-1")))

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError(f"xenstored closed the connection ({self.path})")
            data += chunk
        return data

    def request(self, op: int, payload: bytes, tx: int = 0, what: str = "") -> bytes:
        """Send one request and return the reply payload; ERROR replies raise XsError."""
        if len(payload) > PAYLOAD_MAX:
            raise XsError("E2BIG", what)
        self._req_id += 1
        self.sock.sendall(HEADER.pack(op, self._req_id, tx, len(payload)) + payload)
        while True:
            kind, req_id, _tx, size = HEADER.unpack(self._exact(HEADER.size))
            body = self._exact(size) if size else b""
            if kind == Op.WATCH_EVENT:
                parts = body.split(b"\0")
                if len(parts) >= 2:
                    self.events.append((parts[0].decode("latin-1"), parts[1].decode("latin-1")))
                continue
            if req_id != self._req_id:
                continue  # a stale reply; libxenstore would not see one either
            if kind == Op.ERROR:
                raise XsError(body.rstrip(b"\0").decode("latin-1"), what)
            return body

    @staticmethod
    def args(*items: Value) -> bytes:
        return b"".join(_b(i) + b"\0" for i in items)

    # ---- operations ------------------------------------------------------------------------
    def read(self, path: str, tx: int = 0) -> bytes:
        return self.request(Op.READ, self.args(path), tx, path)

    def read_str(self, path: str, tx: int = 0) -> str | None:
        """READ as text, or None when the node does not exist (ENOENT)."""
        try:
            return self.read(path, tx).decode("utf-8", "replace")
        except XsError as err:
            if err.name == "ENOENT":
                return None
            raise

    def write(self, path: str, value: Value, tx: int = 0) -> None:
        self.request(Op.WRITE, _b(path) + b"\0" + _b(value), tx, path)

    def mkdir(self, path: str, tx: int = 0) -> None:
        self.request(Op.MKDIR, self.args(path), tx, path)

    def rm(self, path: str, tx: int = 0) -> None:
        self.request(Op.RM, self.args(path), tx, path)

    def directory(self, path: str, tx: int = 0) -> list[str]:
        body = self.request(Op.DIRECTORY, self.args(path), tx, path)
        return [c.decode("latin-1") for c in body.split(b"\0") if c]

    def get_perms(self, path: str, tx: int = 0) -> list[str]:
        body = self.request(Op.GET_PERMS, self.args(path), tx, path)
        return [p.decode("latin-1") for p in body.split(b"\0") if p]

    def set_perms(self, path: str, perms: list[str], tx: int = 0) -> None:
        """``perms`` like ``["n0", "r3"]``: entry 0 is the owner and everyone's default."""
        self.request(Op.SET_PERMS, self.args(path, *perms), tx, path)

    def introduce(self, domid: int, mfn: int, port: int) -> None:
        self.request(Op.INTRODUCE, self.args(str(domid), str(mfn), str(port)))

    def release(self, domid: int) -> None:
        self.request(Op.RELEASE, self.args(str(domid)))

    def is_domain_introduced(self, domid: int) -> bool:
        return self.request(Op.IS_DOMAIN_INTRODUCED, self.args(str(domid))) == b"T\0"

    def watch(self, path: str, token: str) -> None:
        self.request(Op.WATCH, self.args(path, token), what=path)

    def unwatch(self, path: str, token: str) -> None:
        self.request(Op.UNWATCH, self.args(path, token), what=path)

    def transaction_start(self) -> int:
        return int(self.request(Op.TRANSACTION_START, b"\0").rstrip(b"\0"))

    def transaction_end(self, tx: int, commit: bool = True) -> None:
        """Commit (or abort); a conflicting commit raises XsError("EAGAIN")."""
        self.request(Op.TRANSACTION_END, b"T\0" if commit else b"F\0", tx)

    def control(self, *args: Value) -> bytes:
        return self.request(Op.CONTROL, self.args(*args))

    def as_domain(self, domid: int) -> None:
        """Test-only CONTROL of the stand-in xenstored: act as unprivileged domain ``domid``."""
        self.control("as-domain", str(domid))

    def domain_shutdown(self, domid: int) -> None:
        """Test-only CONTROL: the hypervisor says ``domid`` shut down or crashed (what
        VIRQ_DOM_EXC tells C xenstored); it fires @releaseDomain once."""
        self.control("domain-shutdown", str(domid))
