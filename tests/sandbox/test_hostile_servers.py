"""Hostile build servers on 127.0.0.1, end to end: the real `orchestrate` boots the
appliance against a server that misbehaves on every image.

Each case asserts: exit 1 at 5/9 fetch-images, the console line naming the image URL on
that server, dom0 keeps its NIC with its address and route, the image directory holds
no file at all (no image, no temp file), and nothing was handed over (no pciback slot,
no domain). Issue 10: the slow-header server outlived both deadlines; the garbage status
line, >100 headers and the 64 KiB line were "internal error ... this is a bug"; the
redirect to another host was followed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.sandbox.appliance import IMAGE_SIZES, Appliance, Boot
from tests.sandbox.fakes.buildserver import BuildServer
from tests.sandbox.test_failures import dom0_kept_its_nic, nothing_handed_over, stopped_at

PATHS = [f"/images/{name}" for name in IMAGE_SIZES]


def everywhere(fault: Callable[[BuildServer, str], None]) -> Callable[[Appliance], None]:
    """The whole server is hostile: the fault on every image it serves."""
    def apply(box: Appliance) -> None:
        for path in PATHS:
            fault(box.server, path)
    return apply


def fetch_failure(box: Appliance, boot: Boot) -> str:
    """The step's failure line, checked to name an image URL on this server."""
    stopped_at(boot, 5, "fetch-images")
    line = boot.lines(r"\[5/9\] fetch-images failed: ")[0]
    assert re.search(rf"fetching {re.escape(box.server.url)}/images/\S+ failed after", line), line
    assert "no file was written to /run/xen-images/" in line
    return line


def nothing_lost(box: Appliance, boot: Boot) -> None:
    assert "internal error" not in boot.console and "Traceback" not in boot.console
    dom0_kept_its_nic(box, configured=True)
    nothing_handed_over(box)
    assert box.image_dir_files() == [], "no image and no temp file"


# (case, the fault, what the failure line says after "attempt(s): ", attempts)
HOSTILE: list[tuple[str, Callable[[Appliance], None], str, int]] = [
    ("slow headers", everywhere(lambda s, p: s.slow_headers(p, 0.25)),
     r"no complete response head from 127\.0\.0\.1:\d+ within 1\.5 s \(waiting for the "
     r"response headers", 3),
    ("garbage status line", everywhere(lambda s, p: s.raw(p, b"220 ProFTPD Server ready.\r\n")),
     r"127\.0\.0\.1:\d+ did not answer with an HTTP status line \(it sent '220 ProFTPD", 3),
    ("more than 100 headers",
     everywhere(lambda s, p: s.extra_headers(p, [(f"X-Pad-{i}", "1") for i in range(120)])),
     r"127\.0\.0\.1:\d+ sent more than 100 header lines", 3),
    ("a header line over 64 KiB",
     everywhere(lambda s, p: s.extra_headers(p, [("X-Cookie", "c" * (64 * 1024 + 10))])),
     r"127\.0\.0\.1:\d+ sent a line longer than 64 KiB in the response headers", 3),
    ("closes before any byte", everywhere(lambda s, p: s.raw(p, b"")),
     r"127\.0\.0\.1:\d+ closed the connection before the end of the status line", 3),
    ("closes in the middle of the headers",
     everywhere(lambda s, p: s.raw(p, b"HTTP/1.1 200 OK\r\nServer: x\r\n")),
     r"127\.0\.0\.1:\d+ closed the connection before the end of the response headers", 3),
]


@pytest.mark.parametrize(("fault", "said", "attempts"),
                         [pytest.param(f, s, a, id=c) for c, f, s, a in HOSTILE])
def test_a_hostile_build_server_stops_the_boot_before_the_handoff(
        appliance: Appliance, fault: Callable[[Appliance], None], said: str,
        attempts: int) -> None:
    fault(appliance)
    boot = appliance.boot()
    line = fetch_failure(appliance, boot)
    assert re.search(rf"failed after {attempts} attempts: {said}", line), line
    assert len(boot.lines(r"fetch \S+: attempt \d/3 failed: ")) == attempts
    assert boot.lines(r"hint: check that the build server is up")
    nothing_lost(appliance, boot)


def test_a_redirect_to_another_host_is_refused_and_that_host_never_asked(
        appliance: Appliance) -> None:
    with BuildServer({p: b"not the image" for p in PATHS}) as elsewhere:
        everywhere(lambda s, p: s.redirect(p, elsewhere.url_for(p), 302))(appliance)
        boot = appliance.boot()
        assert elsewhere.requests == [], "the redirect was not followed"
    line = fetch_failure(appliance, boot)
    assert re.search(rf"failed after 1 attempt: HTTP 302 redirect to "
                     rf"{re.escape(elsewhere.url)}/images/\S+ refused: orchestrate follows "
                     rf"no redirects", line), line
    assert boot.lines(r"hint: set the image URL in the unit \(or build_server\.url\) to "
                      r"where the server really serves it")
    nothing_lost(appliance, boot)


def fetch_seconds(boot: Boot) -> float:
    return float(boot.state["steps"]["fetch-images"]["seconds"])


def test_slow_headers_are_cut_per_attempt_by_the_request_timeout(appliance: Appliance) -> None:
    """request_timeout 1.5 s, 3 attempts, backoff 0.5 + 1 s: about 5.5 s, under the 8 s
    fetch deadline."""
    everywhere(lambda s, p: s.slow_headers(p, 0.25))(appliance)
    boot = appliance.boot()
    fetch_failure(appliance, boot)
    seconds = fetch_seconds(boot)
    print(f"\nslow headers, request_timeout 1.5 s x 3, deadline 8 s: fetch-images "
          f"{seconds:.2f} s, whole boot {boot.seconds:.2f} s")
    assert 3 * 1.5 + 1.5 - 0.1 < seconds < 8.0 + 0.5, seconds
    nothing_lost(appliance, boot)


def test_slow_headers_end_at_the_fetch_deadline_whatever_the_request_timeout(
        appliance: Appliance) -> None:
    appliance.host_setting("build_server", "request_timeout", "60")
    appliance.host_setting("build_server", "deadline", "4")
    everywhere(lambda s, p: s.slow_headers(p, 0.25))(appliance)
    boot = appliance.boot()
    line = fetch_failure(appliance, boot)
    assert re.search(r"failed after 1 attempt: no complete response head from "
                     r"127\.0\.0\.1:\d+ within 4 s .*; build_server\.deadline of 4 s ended "
                     r"it;", line), line
    seconds = fetch_seconds(boot)
    print(f"\nslow headers, request_timeout 60 s, build_server.deadline 4 s: fetch-images "
          f"{seconds:.2f} s, whole boot {boot.seconds:.2f} s")
    assert 3.9 < seconds < 4.5, seconds
    nothing_lost(appliance, boot)


def test_slow_headers_end_at_the_boot_deadline_when_it_comes_first(
        appliance: Appliance) -> None:
    appliance.host_setting("build_server", "request_timeout", "60")
    appliance.host_setting("build_server", "deadline", "300")
    appliance.host_setting("deadlines", "boot", "6")
    everywhere(lambda s, p: s.slow_headers(p, 0.25))(appliance)
    boot = appliance.boot()
    line = fetch_failure(appliance, boot)
    assert "the boot deadline of 6 s (deadlines.boot) ended it" in line, line
    print(f"\nslow headers, request_timeout 60 s, deadlines.boot 6 s: fetch-images "
          f"{fetch_seconds(boot):.2f} s, whole boot {boot.seconds:.2f} s")
    assert boot.seconds < 6 + 2.5, "the process ends soon after the boot deadline"
    nothing_lost(appliance, boot)
