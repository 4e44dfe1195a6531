"""One download against hostile servers on 127.0.0.1 and full tmpfs directories.

The real download() against the real build server stand-in (fault injection per path)
and real tmpfs mounts. Each case asserts the error (retryable or final, naming the
server, URL or directory), that it came within its deadline, and that the image
directory holds nothing afterwards: no image, no temp file.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.download import download
from orchestrator.errors import FetchError
from tests.sandbox.fakes.buildserver import BuildServer
from tests.sandbox.tmpfs import PAGE, fill, tiny_tmpfs

IMAGE = "/images/guest.img"
DATA = hashlib.shake_256(b"guest image").digest(75 * PAGE - 100)  # not page-aligned
SHA = hashlib.sha256(DATA).hexdigest()
TIMEOUT = 0.6  # build_server.request_timeout
DEADLINE = 2.0  # what is left of build_server.deadline


@pytest.fixture
def server() -> Iterator[BuildServer]:
    with BuildServer({IMAGE: DATA}) as srv:
        yield srv


def fetch(server: BuildServer, dest_dir: Path, timeout: float = TIMEOUT,
          deadline: float = DEADLINE) -> float:
    """download() as Host.download calls it; returns its wall time."""
    started = time.monotonic()
    try:
        download(server.url_for(IMAGE), dest_dir / "guest.img", SHA, len(DATA), timeout,
                 started + deadline)
    finally:
        elapsed = time.monotonic() - started
    return elapsed


def fetch_error(server: BuildServer, dest_dir: Path, **kw: float) -> tuple[FetchError, float]:
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch(server, dest_dir, **kw)
    return caught.value, time.monotonic() - started


def test_a_good_server_gives_exactly_the_pinned_file(server: BuildServer,
                                                     tmp_path: Path) -> None:
    fetch(server, tmp_path)
    assert os.listdir(tmp_path) == ["guest.img"]
    assert (tmp_path / "guest.img").read_bytes() == DATA


# (case, the fault, what the error says, retryable)
HOSTILE: list[tuple[str, Callable[[BuildServer], None], str, bool]] = [
    ("status line then a header byte every 0.1 s",
     lambda s: s.slow_headers(IMAGE, 0.1),
     r"^no complete response head from 127\.0\.0\.1:\d+ within 0\.6 s \(waiting for the "
     r"response headers, \d+ bytes received\)$", True),
    ("garbage status line", lambda s: s.raw(IMAGE, b"SSH-2.0-OpenSSH_9.2\r\n\r\n"),
     r"^127\.0\.0\.1:\d+ did not answer with an HTTP status line \(it sent "
     r"'SSH-2\.0-OpenSSH_9\.2'\)$", True),
    ("binary status line", lambda s: s.raw(IMAGE, b"\x16\x03\x01\x02\x00\xff\n"),
     r"^127\.0\.0\.1:\d+ did not answer with an HTTP status line \(it sent '\?\?\?\?\?\?'\)$",
     True),
    ("a status line over 64 KiB", lambda s: s.raw(IMAGE, b"HTTP/1.1 200 " + b"O" * 70_000),
     r"sent a line longer than 64 KiB in the status line$", True),
    ("closes before any byte", lambda s: s.raw(IMAGE, b""),
     r"closed the connection before the end of the status line \(0 bytes received\)$", True),
    ("closes in the middle of the headers",
     lambda s: s.raw(IMAGE, b"HTTP/1.1 200 OK\r\nContent-Len"),
     r"closed the connection before the end of the response headers \(28 bytes", True),
    ("104 header lines", lambda s: s.extra_headers(IMAGE, [(f"X-{i}", "v") for i in range(99)]),
     r"^127\.0\.0\.1:\d+ sent more than 100 header lines$", True),
    ("a header line over 64 KiB", lambda s: s.extra_headers(IMAGE, [("X-Big", "a" * 65_600)]),
     r"sent a line longer than 64 KiB in the response headers$", True),
    ("a header line without a colon", lambda s: s.raw(IMAGE, b"HTTP/1.0 200 OK\r\nhello\r\n\r\n"),
     r"sent a malformed header line 'hello'$", True),
    ("a redirect to another host",
     lambda s: s.redirect(IMAGE, "http://127.0.0.2:9/images/guest.img", 302),
     r"^HTTP 302 redirect to http://127\.0\.0\.2:9/images/guest\.img refused: orchestrate "
     r"follows no redirects$", False),
    ("a redirect on the same server", lambda s: s.redirect(IMAGE, "/images/other.img", 301),
     r"^HTTP 301 redirect to /images/other\.img refused", False),
    ("chunked to an HTTP/1.0 request",
     lambda s: s.extra_headers(IMAGE, [("Transfer-Encoding", "chunked")]),
     r"answered an HTTP/1\.0 request with Transfer-Encoding: chunked$", False),
    ("two Content-Lengths", lambda s: s.extra_headers(IMAGE, [("Content-Length", "5")]),
     r"sent conflicting Content-Length headers \(\d+, 5\)$", True),
    ("204 No Content", lambda s: s.status(IMAGE, 204),
     r"^unexpected HTTP 204 No Content from 127\.0\.0\.1:\d+ \(only 200 is an image\)$", False),
    ("404", lambda s: s.status(IMAGE, 404), r"^HTTP 404 Not Found$", False),
    ("503", lambda s: s.status(IMAGE, 503), r"^HTTP 503 Service Unavailable$", True),
    ("a body that stops", lambda s: s.hang(IMAGE, headers=True, body_bytes=1000),
     rf"^stalled for 0\.6 s after 1000 of {len(DATA)} bytes$", True),
    ("a short body", lambda s: s.truncate(IMAGE, 5000),
     rf"^short body: 5000 of {len(DATA)} bytes$", True),
    ("a longer body", lambda s: s.oversize(IMAGE, 1), r"more than the pinned", False),
    ("a wrong sha256", lambda s: s.corrupt(IMAGE), r"^sha256 [0-9a-f]{64} but the unit pins",
     True),
    ("a slow body past the deadline", lambda s: s.slow(IMAGE, 60_000),
     rf"^took longer than the deadline \(\d+ of {len(DATA)} bytes\)$", True),
]


@pytest.mark.parametrize(("fault", "said", "retryable"),
                         [pytest.param(f, s, r, id=c) for c, f, s, r in HOSTILE])
def test_a_hostile_server_ends_in_a_fetch_error_and_no_file(
        server: BuildServer, tmp_path: Path, fault: Callable[[BuildServer], None], said: str,
        retryable: bool) -> None:
    fault(server)
    error, elapsed = fetch_error(server, tmp_path)
    import re

    assert re.search(said, error.message), error.message
    assert error.retryable is retryable
    assert error.message.isascii()
    assert elapsed < DEADLINE + 0.3, "every phase ends by the deadline"
    assert os.listdir(tmp_path) == [], "no image and no temp file"


def test_a_redirect_is_not_followed_to_the_other_host(server: BuildServer,
                                                      tmp_path: Path) -> None:
    with BuildServer({IMAGE: DATA}) as elsewhere:
        server.redirect(IMAGE, elsewhere.url_for(IMAGE))
        error, _ = fetch_error(server, tmp_path)
        assert error.hint and "a redirect may lead off the build server" in error.hint
        assert elsewhere.requests == [], "nothing asked of the other host"
    assert os.listdir(tmp_path) == []


def test_slow_headers_end_at_the_deadline_even_with_a_long_request_timeout(
        server: BuildServer, tmp_path: Path) -> None:
    server.slow_headers(IMAGE, 0.2)
    error, elapsed = fetch_error(server, tmp_path, timeout=30.0, deadline=1.5)
    assert error.message.startswith("no complete response head from 127.0.0.1:")
    assert "within 1.5 s" in error.message
    assert 1.4 < elapsed < 1.8, elapsed
    assert os.listdir(tmp_path) == []


def test_a_refused_connection_is_retryable_and_names_the_reason(tmp_path: Path) -> None:
    with BuildServer() as srv:
        url = srv.refused_url(IMAGE)
        with pytest.raises(FetchError, match=r"^cannot connect: \[Errno 111\] Connection "
                           r"refused$") as caught:
            download(url, tmp_path / "guest.img", SHA, len(DATA), TIMEOUT,
                     time.monotonic() + DEADLINE)
    assert caught.value.retryable
    assert os.listdir(tmp_path) == []


def test_no_attempt_starts_after_the_deadline(server: BuildServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"no time was left"):
        download(server.url_for(IMAGE), tmp_path / "guest.img", SHA, len(DATA), TIMEOUT,
                 time.monotonic() - 0.1)
    assert server.requests == []


def test_a_temp_file_of_a_killed_run_is_removed(server: BuildServer, tmp_path: Path) -> None:
    (tmp_path / ".guest.img.part-99999").write_bytes(b"half")
    (tmp_path / "other.img").write_bytes(b"kept")
    fetch(server, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["guest.img", "other.img"]


# ---- a full image directory (real tmpfs) ---------------------------------------------------

@pytest.fixture
def image_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with tiny_tmpfs(tmp_path / "images", 256 * PAGE) as mount:
        yield mount


@pytest.mark.parametrize("leave", [
    pytest.param(len(DATA) - 5000, id="one page too small: the last write is short"),
    pytest.param(20 * PAGE, id="full after 20 pages"),
    pytest.param(0, id="already full"),
])
def test_a_full_image_directory_is_a_final_error_that_names_it_and_leaves_nothing(
        server: BuildServer, image_tmpfs: Path, leave: int) -> None:
    filler = fill(image_tmpfs, leave)
    error, _ = fetch_error(server, image_tmpfs)
    assert not error.retryable, "retrying cannot make room"
    assert str(image_tmpfs) in error.message
    assert "No space left on device" in error.message
    assert error.hint and "free space in the image directory" in error.hint
    assert sorted(os.listdir(image_tmpfs)) == [filler.name], "no image, no temp file"
    filler.unlink()
    fetch(server, image_tmpfs)
    assert (image_tmpfs / "guest.img").read_bytes() == DATA, "with room it works"


def test_an_image_directory_that_cannot_be_made_is_named(server: BuildServer,
                                                         tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(FetchError, match=r"cannot create the image directory .*/file/images"):
        download(server.url_for(IMAGE), tmp_path / "file/images/guest.img", SHA, len(DATA),
                 TIMEOUT, time.monotonic() + DEADLINE)
    assert server.requests == [], "no request before there is somewhere to put the image"
