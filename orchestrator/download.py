"""One strict HTTP download: never a file unless it is exactly the pinned bytes.

The seeds' curl without -f wrote HTTP error pages into "images" (seed 002, "Silent
failures"). Here a non-2xx status, a Content-Length that is not the pinned size, a
short body, a longer body, or a wrong sha256 is an error, and the temp file (in the
target directory, so the final rename is atomic) is removed. Part of the side-effect
layer: only Host.download calls it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from orchestrator import __version__
from orchestrator.errors import FetchError

CHUNK = 256 * 1024


def download(url: str, dest: Path, sha256: str, size: int, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    deadline = time.monotonic() + timeout
    try:
        _fetch_to(url, tmp, sha256, size, timeout, deadline)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_to(url: str, tmp: Path, sha256: str, size: int, timeout: float,
              deadline: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": f"orchestrate/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FetchError(f"HTTP {exc.code} {exc.reason}",
                         retryable=exc.code >= 500 or exc.code in (408, 429)) from None
    except urllib.error.URLError as exc:
        raise FetchError(f"cannot connect: {exc.reason}", retryable=True) from None
    except TimeoutError:
        raise FetchError(f"no answer within {timeout:g} s", retryable=True) from None
    except OSError as exc:
        raise FetchError(f"connection failed: {exc}", retryable=True) from None
    with response:
        length = response.headers.get("Content-Length")
        if length is not None and length.strip() != str(size):
            raise FetchError(f"Content-Length {length.strip()} but the unit pins {size} bytes",
                             retryable=False)
        digest = hashlib.sha256()
        got = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(f"took longer than {timeout:g} s ({got} of {size} bytes)",
                                     retryable=True)
                try:
                    # read1: what one recv brings, so a stall is timed per read and the
                    # progress in the error is what really arrived
                    chunk = response.read1(min(CHUNK, size + 1 - got))
                except TimeoutError:
                    raise FetchError(f"stalled for {timeout:g} s after {got} of {size} bytes",
                                     retryable=True) from None
                except (OSError, http.client.HTTPException) as exc:
                    raise FetchError(f"connection broke after {got} of {size} bytes: {exc}",
                                     retryable=True) from None
                if not chunk:
                    break
                got += len(chunk)
                if got > size:
                    raise FetchError(f"server sent more than the pinned {size} bytes",
                                     retryable=False)
                digest.update(chunk)
                os.write(fd, chunk)
            if got != size:
                raise FetchError(f"short body: {got} of {size} bytes", retryable=True)
            if digest.hexdigest() != sha256:
                raise FetchError(f"sha256 {digest.hexdigest()} but the unit pins {sha256}",
                                 retryable=True)
            os.fsync(fd)
        finally:
            os.close(fd)
