"""A real HTTP build server on 127.0.0.1 with per-path fault injection (sandbox test tier).

``with BuildServer({"/images/net-vm.img": data}) as srv:`` serves GET and HEAD at
``srv.url + path``; every request is in ``srv.requests`` as ``Served(path, status,
bytes_sent)``, in arrival order, entered before its first byte is sent and updated before
each later write, so a client never sees more than the log says (status 0: nothing sent
yet). Faults, settable at any time and one per path (a new one replaces the old;
``clear(path)`` removes it):

- ``status(path, code)``: that status with an HTML error body, the body a client that ignores
  the status (curl without -f) would save as the image.
- ``truncate(path, n)``: Content-Length of the whole file, only n body bytes, then close.
- ``wrong_length(path, n)``: Content-Length n, the whole file sent, then close.
- ``corrupt(path)``: same length, every byte flipped (wrong sha256).
- ``oversize(path, extra, mode)``: len+extra bytes; ``mode="stream"`` without Content-Length
  (``extra=None`` streams until the client hangs up or the server stops), ``"declared"`` an
  honest larger Content-Length, ``"excess"`` a Content-Length of the file with extra after it.
- ``hang(path, headers=False, body_bytes=0)``: send nothing (or the headers, and maybe some
  body), then block until ``release(path)`` (then finish normally) or ``stop()``.
- ``fail_times(path, n, code=503)``: the first n requests fail with ``code``, later ones work.
- ``slow(path, bytes_per_s)``: paced body.

Hostile servers (issue 10), each on one path:

- ``slow_headers(path, interval)``: the status line, then one header byte every
  ``interval`` seconds, forever (until ``stop()``): a per-read timeout never fires.
- ``raw(path, data)``: exactly these bytes, then close: a garbage status line, a close
  before any byte (``b""``) or in the middle of the headers.
- ``extra_headers(path, headers)``: a correct 200 response with these ``(name, value)``
  header lines first: more than 100 headers, a header line over 64 KiB.
- ``redirect(path, location, code=302)``: a redirect, e.g. to another host.

``refused_url()`` names a 127.0.0.1 port that refuses connections: a socket is bound there
and never listens, so nothing else can take the port while the server lives. Handler threads
are daemons and wake on ``stop()``; nothing here keeps the test process alive.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import NamedTuple
from urllib.parse import urlsplit

CHUNK = 65536


class Served(NamedTuple):
    path: str
    status: int
    bytes_sent: int


@dataclass
class _Fault:
    kind: str
    code: int = 0
    n: int = 0
    extra: int | None = 0
    mode: str = "stream"
    rate: float = 0.0
    headers: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    raw: bytes = b""
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    location: str = ""


def error_body(code: int) -> bytes:
    """Python http.server's default error page."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    return (f'<!DOCTYPE HTML>\n<html lang="en">\n    <head>\n        <meta charset="utf-8">\n'
            f"        <title>Error response</title>\n    </head>\n    <body>\n"
            f"        <h1>Error response</h1>\n        <p>Error code: {code}</p>\n"
            f"        <p>Message: {phrase}.</p>\n    </body>\n</html>\n").encode()


class _Stopped(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: BuildServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "FakeBuildServer/1.0"
    timeout = 30  # a client that connects and sends nothing cannot pin a thread for long

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet; see BuildServer.requests

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        self._path = urlsplit(self.path).path
        self._status, self._sent = 0, 0
        self._index = owner._record(None, Served(self._path, 0, 0))
        try:
            data, fault = owner._lookup(self._path)
            self._respond(owner, data, fault, head)
        except (_Stopped, BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            self.close_connection = True

    def _log_progress(self) -> None:
        self.server.owner._record(self._index, Served(self._path, self._status, self._sent))

    def _respond(self, owner: BuildServer, data: bytes | None, fault: _Fault | None,
                 head: bool) -> None:
        kind = fault.kind if fault else ""
        if fault and kind in ("raw", "slow_headers", "redirect"):
            self._hostile(owner, fault)
            return
        if fault and kind == "hang":
            if fault.headers and data is not None:
                self._headers(200, len(data))
                self._body(owner, data[:fault.n], 0.0)
            owner._wait(fault.released)
            if self._status:
                self._body(owner, data[fault.n:] if data else b"", 0.0)
                return
            kind = ""
        if kind in ("status", "fail") or data is None:
            code = fault.code if fault and kind in ("status", "fail") else 404
            body = error_body(code)
            self._headers(code, len(body), "text/html;charset=utf-8")
            if not head:
                self._body(owner, body, 0.0)
            return
        assert data is not None
        body, length, rate = data, len(data), fault.rate if fault else 0.0
        if fault and kind == "corrupt":
            body = bytes(b ^ 0xFF for b in data)
        elif fault and kind == "truncate":
            body = data[:fault.n]
        elif fault and kind == "wrong_length":
            length = fault.n
        elif fault and kind == "oversize":
            extra = fault.extra
            length = {"declared": len(data) + (extra or 0), "excess": len(data)}.get(fault.mode, -1)
            body = data + b"\0" * (extra or 0)
            if extra is None:
                self._headers(200, None)
                if not head:
                    self._body(owner, data, 0.0)
                    while True:
                        self._body(owner, b"\0" * CHUNK, 0.0)
                return
        self._headers(200, None if length < 0 else length,
                      extra=fault.extra_headers if fault else [])
        if not head:
            self._body(owner, body, rate)

    def _hostile(self, owner: BuildServer, fault: _Fault) -> None:
        """The responses no well-behaved server sends (the request log shows status 0
        unless a status line that parses went out)."""
        if fault.kind == "raw":
            self.wfile.write(fault.raw)
            self._sent = len(fault.raw)
            self._log_progress()
        elif fault.kind == "redirect":
            self._headers(fault.code, 0, extra=[("Location", fault.location)])
        else:  # slow_headers: a header byte every interval, never the end of the head
            self._status = 200
            self._log_progress()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not owner._stop.wait(fault.rate):
                self.wfile.write(b"a")
                self.wfile.flush()
                self._sent += 1
                self._log_progress()
        self.wfile.flush()

    def _headers(self, code: int, length: int | None, ctype: str = "application/octet-stream",
                 extra: list[tuple[str, str]] | None = None) -> None:
        self._status = code
        self._log_progress()
        self.send_response(code)
        for name, value in extra or []:
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()

    def _body(self, owner: BuildServer, data: bytes, rate: float) -> None:
        step = max(1, int(rate / 20)) if rate else CHUNK
        for i in range(0, len(data), step):
            if owner._stop.is_set():
                raise _Stopped
            self._sent += len(data[i:i + step])
            self._log_progress()
            self.wfile.write(data[i:i + step])
            self.wfile.flush()
            if rate and owner._stop.wait(step / rate):
                raise _Stopped


class BuildServer:
    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = {self._key(p): d for p, d in (files or {}).items()}
        self.requests: list[Served] = []
        self._faults: dict[str, _Fault] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._waiting: list[threading.Event] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None
        self._refuser: socket.socket | None = None

    @staticmethod
    def _key(path: str) -> str:
        return path if path.startswith("/") else f"/{path}"

    # ----- lifecycle ----------------------------------------------------------------------
    def start(self) -> BuildServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever,
                                            kwargs={"poll_interval": 0.05},
                                            name="fake-buildserver", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for event in self._waiting:
                event.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()
        if self._refuser is not None:
            self._refuser.close()
            self._refuser = None

    def __enter__(self) -> BuildServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ----- content and faults -------------------------------------------------------------
    def url_for(self, path: str) -> str:
        return self.url + self._key(path)

    def put(self, path: str, data: bytes) -> None:
        with self._lock:
            self.files[self._key(path)] = data

    def _set(self, path: str, fault: _Fault) -> None:
        with self._lock:
            self._faults[self._key(path)] = fault

    def clear(self, path: str | None = None) -> None:
        """Remove the fault on ``path`` (all faults if None); hung requests are released."""
        with self._lock:
            keys = list(self._faults) if path is None else [self._key(path)]
            for key in keys:
                fault = self._faults.pop(key, None)
                if fault is not None:
                    fault.released.set()

    def status(self, path: str, code: int) -> None:
        self._set(path, _Fault("status", code=code))

    def truncate(self, path: str, n: int) -> None:
        self._set(path, _Fault("truncate", n=n))

    def wrong_length(self, path: str, n: int) -> None:
        self._set(path, _Fault("wrong_length", n=n))

    def corrupt(self, path: str) -> None:
        self._set(path, _Fault("corrupt"))

    def oversize(self, path: str, extra: int | None, mode: str = "stream") -> None:
        if mode not in ("stream", "declared", "excess") or (extra is None and mode != "stream"):
            raise ValueError(f"bad oversize mode {mode!r} for extra={extra!r}")
        self._set(path, _Fault("oversize", extra=extra, mode=mode))

    def hang(self, path: str, headers: bool = False, body_bytes: int = 0) -> None:
        self._set(path, _Fault("hang", headers=headers, n=body_bytes))

    def release(self, path: str | None = None) -> None:
        """Let hung requests on ``path`` (or all) finish normally; later ones do not hang."""
        with self._lock:
            for key, fault in list(self._faults.items()):
                if fault.kind == "hang" and (path is None or key == self._key(path)):
                    fault.released.set()
                    del self._faults[key]

    def fail_times(self, path: str, n: int, code: int = 503) -> None:
        self._set(path, _Fault("fail", code=code, n=n))

    def slow(self, path: str, bytes_per_s: float) -> None:
        if bytes_per_s <= 0:
            raise ValueError("bytes_per_s must be positive")
        self._set(path, _Fault("slow", rate=bytes_per_s))

    def slow_headers(self, path: str, interval: float = 1.0) -> None:
        self._set(path, _Fault("slow_headers", rate=interval))

    def raw(self, path: str, data: bytes) -> None:
        self._set(path, _Fault("raw", raw=data))

    def extra_headers(self, path: str, headers: list[tuple[str, str]]) -> None:
        self._set(path, _Fault("extra_headers", extra_headers=list(headers)))

    def redirect(self, path: str, location: str, code: int = 302) -> None:
        self._set(path, _Fault("redirect", code=code, location=location))

    def refused_url(self, path: str = "/") -> str:
        if self._refuser is None:
            self._refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._refuser.bind(("127.0.0.1", 0))  # bound, never listening: SYN gets RST
        return f"http://127.0.0.1:{self._refuser.getsockname()[1]}{self._key(path)}"

    def requests_for(self, path: str) -> list[Served]:
        with self._lock:
            return [r for r in self.requests if r.path == self._key(path)]

    # ----- used by the handler ------------------------------------------------------------
    def _lookup(self, path: str) -> tuple[bytes | None, _Fault | None]:
        with self._lock:
            fault = self._faults.get(path)
            if fault is not None and fault.kind == "fail":
                if fault.n <= 0:
                    del self._faults[path]
                    fault = None
                else:
                    fault.n -= 1
            return self.files.get(path), fault

    def _wait(self, event: threading.Event) -> None:
        with self._lock:
            self._waiting.append(event)
        if self._stop.is_set():
            raise _Stopped
        event.wait()  # set by release(), clear() or stop(): no polling
        if self._stop.is_set():
            raise _Stopped

    def _record(self, index: int | None, served: Served) -> int:
        with self._lock:
            if index is None:
                self.requests.append(served)
                return len(self.requests) - 1
            self.requests[index] = served
            return index
