"""An HTTP/1.0 GET whose every phase waits only until a deadline (the transport of
download.py; part of the side-effect layer).

Why not urllib: a socket timeout bounds one read, not a response, so a server that sent
one header byte a second kept urllib's fetch alive past every deadline (issue 10), and
http.client's protocol errors (a garbage status line, more than 100 headers, a line over
64 KiB) escaped as internal errors. Here resolving, connecting, TLS, sending the request
and reading the status line and headers all end at one ``head_deadline``; the caller reads
the body with ``recv(until)``. Every failure is a FetchError that names the server.

HTTP/1.0: a server must not answer it with chunked encoding or a 1xx (RFC 9110 15.2,
RFC 9112 7.1), so a body is exactly Content-Length bytes or runs to the close. Limits as
http.client's: a line of at most 64 KiB, at most 100 header lines.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from orchestrator import __version__
from orchestrator.errors import FetchError

CHUNK = 256 * 1024
MAX_LINE = 65536  # http.client._MAXLINE
MAX_HEADERS = 100  # http.client._MAXHEADERS
STATUS_RE = re.compile(rb"^HTTP/(\d)\.(\d) +(\d{3})(?: (.*))?$")
TOKEN_RE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class Response:
    """One HTTP exchange on a socket; every read waits only until a given deadline."""

    def __init__(self, sock: socket.socket, server: str, head_deadline: float,
                 head_seconds: float) -> None:
        self.sock = sock
        self.server = server
        self.head_deadline = head_deadline
        self.head_seconds = head_seconds
        self.buffer = bytearray()
        self.received = 0  # bytes of the response head and body read off the socket
        self.code = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def recv(self, until: float, limit: int = CHUNK) -> bytes:
        """What one recv brings (b"" at the close); socket.timeout once `until` passes."""
        left = until - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        data = self.sock.recv(limit)
        self.received += len(data)
        return data

    def read_head(self) -> None:
        """The status line and the header lines, under head_deadline and the limits."""
        status = self._line("the status line")
        match = STATUS_RE.match(status)
        if match is None:
            raise FetchError(f"{self.server} did not answer with an HTTP status line (it "
                             f"sent {shown(status)})", retryable=True)
        self.code = int(match[3])
        self.reason = printable((match[4] or b"").decode("latin-1"), 60)
        while True:
            line = self._line("the response headers")
            if not line:
                return
            if line[:1] in (b" ", b"\t") and self.headers:  # obs-fold (RFC 9112 5.2)
                key, text = self.headers[-1]
                self.headers[-1] = (key, f"{text} {line.strip().decode('latin-1')}")
                continue
            name, sep, value = line.partition(b":")
            if not sep or not TOKEN_RE.match(name):
                raise FetchError(f"{self.server} sent a malformed header line "
                                 f"{shown(line)}", retryable=True)
            if len(self.headers) >= MAX_HEADERS:
                raise FetchError(f"{self.server} sent more than {MAX_HEADERS} header lines",
                                 retryable=True)
            self.headers.append((name.decode("ascii").lower(),
                                 value.strip().decode("latin-1")))

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    def _line(self, what: str) -> bytes:
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0:
                if end > MAX_LINE:
                    break
                line = bytes(self.buffer[:end]).rstrip(b"\r")
                del self.buffer[:end + 1]
                return line
            if len(self.buffer) > MAX_LINE:
                break
            start = len(self.buffer)
            try:
                data = self.recv(self.head_deadline)
            except TimeoutError:
                raise FetchError(f"no complete response head from {self.server} within "
                                 f"{_seconds(self.head_seconds)} s (waiting for {what}, "
                                 f"{self.received} bytes received)", retryable=True) from None
            except OSError as exc:
                raise FetchError(f"connection to {self.server} broke while receiving "
                                 f"{what}: {exc}", retryable=True) from None
            if not data:
                raise FetchError(f"{self.server} closed the connection before the end of "
                                 f"{what} ({self.received} bytes received)", retryable=True)
            self.buffer += data
        raise FetchError(f"{self.server} sent a line longer than {MAX_LINE // 1024} KiB in "
                         f"{what}", retryable=True)


def open_get(url: str, head_deadline: float, head_seconds: float) -> Response:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url} is not an http:// or https:// URL", retryable=False)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"{url} has an invalid port", retryable=False) from None
    host = parts.hostname
    server = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    sock = _open_socket(host, port, server, head_deadline, head_seconds)
    try:
        if scheme == "https":
            sock = _start_tls(sock, host, server, head_deadline)
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
        host_header = server if port != (443 if scheme == "https" else 80) else (
            host if ":" not in host else f"[{host}]")
        request = (f"GET {target} HTTP/1.0\r\nHost: {host_header}\r\n"
                   f"User-Agent: orchestrate/{__version__}\r\nAccept-Encoding: identity\r\n"
                   f"Connection: close\r\n\r\n").encode("ascii")
        left = head_deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        sock.sendall(request)  # one timeout for the whole send (Python >= 3.5)
    except TimeoutError:
        sock.close()
        raise FetchError(f"{server} did not take the request within {_seconds(head_seconds)} s",
                         retryable=True) from None
    except OSError as exc:
        sock.close()
        raise FetchError(f"sending the request to {server} failed: {exc}",
                         retryable=True) from None
    except BaseException:
        sock.close()
        raise
    return Response(sock, server, head_deadline, head_seconds)


def _open_socket(host: str, port: int, server: str, until: float,
                 seconds: float) -> socket.socket:
    last: OSError | None = None
    for family, kind, proto, _, address in _resolve(host, port, server, until, seconds):
        left = until - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if last is None or isinstance(last, TimeoutError):
        raise FetchError(f"no connection to {server} within {_seconds(seconds)} s", retryable=True)
    raise FetchError(f"cannot connect: {last}", retryable=True)


AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


def _resolve(host: str, port: int, server: str, until: float,
             seconds: float) -> Sequence[AddrInfo]:
    """getaddrinfo has no timeout: a name is resolved in a daemon thread we stop waiting
    for at the deadline (an IP address, the usual build server, needs no thread)."""
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    found: list[Sequence[AddrInfo] | OSError] = []

    def lookup() -> None:
        try:
            found.append(list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))
        except OSError as exc:
            found.append(exc)

    if literal:
        lookup()
    else:
        thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
        thread.start()
        thread.join(max(0.0, until - time.monotonic()))
    if not found:
        raise FetchError(f"resolving {host} took longer than {_seconds(seconds)} s", retryable=True)
    result = found[0]
    if isinstance(result, OSError):
        raise FetchError(f"cannot resolve {host} ({server}): {result}", retryable=True)
    return result


def _start_tls(sock: socket.socket, host: str, server: str, until: float) -> socket.socket:
    try:
        import ssl  # only for https:// images (orchestrator/footprint.py)
    except ImportError:
        sock.close()
        raise FetchError(f"this Python has no ssl module, so https://{server} cannot be "
                         f"fetched", retryable=False,
                         hint="serve the images over http:// (they are pinned by sha256) "
                         "or add ssl to the dom0 image") from None

    try:
        sock.settimeout(max(0.001, until - time.monotonic()))
        # the handshake runs under one timeout as a whole (CPython's _ssl.c deadline)
        return ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise FetchError(f"the TLS certificate of {server} is not trusted: "
                         f"{exc.verify_message}", retryable=False) from None
    except TimeoutError:
        sock.close()
        raise FetchError(f"no TLS handshake with {server} within the head timeout",
                         retryable=True) from None
    except OSError as exc:
        sock.close()
        raise FetchError(f"TLS handshake with {server} failed: {exc}", retryable=True) from None


def printable(text: str, limit: int) -> str:
    """Server-chosen text for the console: printable ASCII, cut to limit."""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


def shown(raw: bytes) -> str:
    return repr(printable(raw.decode("latin-1"), 60))


def _seconds(value: float) -> str:
    """A budget as set (4, 1.5), not as measured a moment later (3.9987)."""
    return f"{round(value, 1):g}"
