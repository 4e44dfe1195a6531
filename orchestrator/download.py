"""One strict HTTP download: never a file unless it is exactly the pinned bytes.

The seeds' curl without -f wrote HTTP error pages into "images" (seed 002, "Silent
failures"). Here a non-2xx status, a Content-Length that is not the pinned size, a
short body, a longer body, or a wrong sha256 is an error, and the temp file (in the
target directory, so the final rename is atomic) is removed. Part of the side-effect
layer: only Host.download calls it.

Every phase of the exchange (resolve, connect, request, status line, headers, body;
the transport is httpget.py) waits only until a deadline (issue 10: a server that sent
one header byte a second outlived every deadline when only each read was timed):

- the response head (connecting included) must be complete within ``timeout`` of the
  attempt's start (build_server.request_timeout);
- the body may stall for at most ``timeout`` at a time;
- everything ends at ``deadline`` (build_server.deadline, capped by deadlines.boot).

No redirect is followed: an image is served at the URL its unit pins, and a 3xx is a
final error that names where the server pointed (the audit's fetch followed a 302 off
the build server to another host silently).

Every write is checked (a short os.write once left a truncated image that the boot
accepted): a chunk is hashed only once the kernel took all of it, so the sha256 covers
exactly what is in the file, whose size is checked again before the rename.
"""

from __future__ import annotations

import glob
import hashlib
import os
import time
from contextlib import suppress
from pathlib import Path

from orchestrator.errors import FetchError
from orchestrator.host import write_all
from orchestrator.httpget import CHUNK, Response, open_get, printable


def download(url: str, dest: Path, sha256: str, size: int, timeout: float,
             deadline: float) -> None:
    """Fetch url into dest, or raise FetchError and leave no file behind.

    timeout: seconds for the response head (connect included) and the longest stall in
    the body; deadline: the time.monotonic() by which everything must be done.
    """
    directory = dest.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(f"cannot create the image directory {directory}", exc) from None
    _remove_stale_parts(dest)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        started = time.monotonic()
        if started >= deadline:
            raise FetchError("no time was left for another attempt", retryable=True)
        head_deadline = min(deadline, started + timeout)
        with open_get(url, head_deadline, head_deadline - started) as response:
            response.read_head()
            _check_status(response)
            _check_length(response, size)
            _save_body(response, tmp, sha256, size, timeout, deadline)
        try:
            os.replace(tmp, dest)
        except OSError as exc:
            raise _disk_error(f"renaming {tmp.name} to {dest}", exc) from None
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


# ---- the response ---------------------------------------------------------------------------

def _check_status(response: Response) -> None:
    code = response.code
    if code == 200:
        return
    if 300 <= code < 400:
        location = response.header("location")
        where = f" to {printable(location[0], 120)}" if location else ""
        raise FetchError(
            f"HTTP {code} redirect{where} refused: orchestrate follows no redirects",
            retryable=False,
            hint="set the image URL in the unit (or build_server.url) to where the server "
            "really serves it; a redirect may lead off the build server",
        )
    if code >= 400:
        raise FetchError(f"HTTP {code} {response.reason}".rstrip(),
                         retryable=code >= 500 or code in (408, 429))
    reason = f" {response.reason}" if response.reason else ""
    raise FetchError(f"unexpected HTTP {code}{reason} from {response.server} (only 200 "
                     f"is an image)", retryable=False)


def _check_length(response: Response, size: int) -> None:
    encodings = response.header("transfer-encoding")
    if encodings:
        raise FetchError(f"{response.server} answered an HTTP/1.0 request with "
                         f"Transfer-Encoding: {printable(encodings[0], 40)}", retryable=False)
    lengths = {value.strip() for value in response.header("content-length")}
    if len(lengths) > 1:
        raise FetchError(f"{response.server} sent conflicting Content-Length headers "
                         f"({', '.join(sorted(printable(v, 20) for v in lengths))})",
                         retryable=True)
    if lengths:
        length = lengths.pop()
        if length != str(size):
            raise FetchError(f"Content-Length {printable(length, 24)} but the unit pins "
                             f"{size} bytes", retryable=False)


def _save_body(response: Response, tmp: Path, sha256: str, size: int, timeout: float,
               deadline: float) -> None:
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _disk_error(f"cannot create {tmp}", exc) from None
    digest = hashlib.sha256()
    got = 0
    try:
        pending = bytes(response.buffer)  # body bytes that came with the head
        response.buffer.clear()
        while True:
            if not pending:
                pending = _next_chunk(response, got, size, timeout, deadline)
                if not pending:
                    break
            if got + len(pending) > size:
                raise FetchError(f"server sent more than the pinned {size} bytes",
                                 retryable=False)
            try:
                write_all(fd, pending)
            except OSError as exc:
                raise _disk_error(f"writing {tmp} failed after {got} of {size} bytes",
                                  exc) from None
            digest.update(pending)  # all of it is written: the hash covers the disk
            got += len(pending)
            pending = b""
        if got != size:
            raise FetchError(f"short body: {got} of {size} bytes", retryable=True)
        if digest.hexdigest() != sha256:
            raise FetchError(f"sha256 {digest.hexdigest()} but the unit pins {sha256}",
                             retryable=True)
        try:
            os.fsync(fd)
            on_disk = os.fstat(fd).st_size
        except OSError as exc:
            raise _disk_error(f"flushing {tmp}", exc) from None
        if on_disk != size:  # every write was acknowledged: this is the last guard
            raise FetchError(f"{tmp} holds {on_disk} bytes after writing {size}",
                             retryable=True)
    finally:
        try:
            os.close(fd)
        except OSError as exc:  # a write error reported only at close
            raise _disk_error(f"closing {tmp}", exc) from None


def _next_chunk(response: Response, got: int, size: int, timeout: float,
                deadline: float) -> bytes:
    now = time.monotonic()
    if now >= deadline:
        raise FetchError(f"took longer than the deadline ({got} of {size} bytes)",
                         retryable=True)
    stall_until = min(now + timeout, deadline)
    try:
        # what one recv brings, so a stall is timed per read and the progress in the
        # error is what really arrived; one byte beyond the pin shows an oversize body
        return response.recv(stall_until, min(CHUNK, size + 1 - got))
    except TimeoutError:
        if stall_until >= deadline:
            raise FetchError(f"took longer than the deadline ({got} of {size} bytes)",
                             retryable=True) from None
        raise FetchError(f"stalled for {timeout:g} s after {got} of {size} bytes",
                         retryable=True) from None
    except OSError as exc:
        raise FetchError(f"connection broke after {got} of {size} bytes: {exc}",
                         retryable=True) from None


def _disk_error(what: str, exc: OSError) -> FetchError:
    reason = exc.strerror or str(exc)
    return FetchError(f"{what}: {reason}", retryable=False,
                      hint="free space in the image directory (paths.images in host.toml, "
                      "a tmpfs: give dom0 more memory or the tmpfs a larger size=), then "
                      "re-run orchestrate; dom0 keeps its NIC")


def _remove_stale_parts(dest: Path) -> None:
    """Temp files of an earlier run that was killed mid-download (pid in the name)."""
    with suppress(OSError):
        for stale in dest.parent.glob(f".{glob.escape(dest.name)}.part-*"):
            with suppress(OSError):
                stale.unlink()
