"""`orchestrate review CAPTURE`: a raw serial capture in, the boot's story out.

The fixtures in tests/fixtures/captures/ are real consoles of `orchestrate` turned into
what a QEMU serial line records; tests/fixtures/captures/make_captures.py made them, in
two stages:

1. `<case>.console`: the console of the real `orchestrate` booting the example appliance
   on the sandbox stand-ins (tests/sandbox/appliance.py), one boot per case: ok;
   fetch-404 (the build server answers 404 for sa-vm's ramdisk); net-vm-never (net-vm
   never gets ready, ready_timeout 2 s); interrupted (SIGTERM at 5/9 fetch-images);
   killed (SIGKILL once net-vm is created: no verdict); two-runs (sa-vm crashes, then a
   second run of the same boot converges and succeeds). Temp paths were put back to a
   dom0's (root /, /etc/orchestrator/units, the build server at 10.0.2.2:8080).
2. `<case>.log`: each console mangled the way the lab's serial line does it: uptimes
   rebased to start at 9.6 s, a Xen and Linux boot before it (with NULs and non-UTF-8
   line noise), OpenRC's coloured lines and cursor-drawn `[ ok ]`/`[ !! ]`, kernel and
   `(XEN)` lines interleaved, our error lines in red, CRLF, one line of ours cut by a
   kernel message with its rest on the next line, one cut with its rest lost, and for
   `killed` a capture that ends inside a line of ours.

Beside them: `lab-4.17-ok.log`, a real capture of the lab (QEMU, Xen 4.17) as recorded;
`lifecycle.log`, hand-written with the lifecycle's lines (boot, follower, restarts,
shutdown); `two-boots.log`, two power cycles in one capture.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import review as reviewmod
from orchestrator.capture import CaptureReader, Line
from orchestrator.review_model import STEP_NAMES
from orchestrator.review_text import report
from tests.conftest import REPO, check_golden, run_orchestrate

CAPTURES = REPO / "tests" / "fixtures" / "captures"
CASES = ("ok", "fetch-404", "net-vm-never", "interrupted", "killed", "two-runs",
         "lifecycle", "two-boots", "lab-4.17-ok")


def review_path(path: str, **kwargs: object) -> tuple[str, int]:
    """(the text review, its exit code), as the command prints it."""
    result = reviewmod.review_path(path, **kwargs)  # type: ignore[arg-type]
    return report(result, path), result.exit_code


def review_bytes(data: bytes, name: str = "capture", **kwargs: object) -> tuple[str, int]:
    result = reviewmod.review_bytes(data, name, **kwargs)  # type: ignore[arg-type]
    return report(result, name), result.exit_code


def read_capture(data: bytes) -> list[Line]:
    return [item for item in CaptureReader(io.BytesIO(data)) if isinstance(item, Line)]


def review(case: str) -> tuple[list[str], int]:
    text, code = review_path(str(CAPTURES / f"{case}.log"))
    return text.splitlines(), code


def has(lines: list[str], pattern: str) -> bool:
    return any(re.fullmatch(pattern, line) for line in lines)


def well_formed(data: bytes) -> int:
    """Any capture gives a report: ASCII, within 80 columns, exit 0 or 1."""
    text, code = review_bytes(data, "fuzz.log")
    assert code in (0, 1)
    assert text.isascii() and text.endswith("\n")
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert all(line.isprintable() for line in text.splitlines()), text
    return code


def ours(uptime: float, text: str, step: int | None = None) -> str:
    """A line of ours as ConsoleRenderer prints it."""
    return f"[{uptime:6.1f}] " + (f"[{step}/9] " if step else "") + text


# ---- the lab's captures ----------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_each_capture_matches_its_golden_review(case: str) -> None:
    text, _ = review_path(str(CAPTURES / f"{case}.log"))
    check_golden(f"review-{case}.txt", text)


def test_a_good_boot_shows_every_step_duration_each_domain_and_exits_0() -> None:
    lines, code = review("ok")
    assert code == 0
    assert lines[0] == "capture: ok.log: 237 lines, 1 boot"
    assert lines[1] == "boot 1 of 1: Xen 4.17.5, lines 1-237, 1 run of orchestrate"
    assert lines[2] == "run 1: orchestrate 0.1.0 (boot), pid 19509"
    assert has(lines, r"  1 make-device-nodes         0\.30 s  ok")
    assert has(lines, r"  3 start-xenstored           0\.53 s  ok")
    assert has(lines, r"  7 create-domains            0\.97 s  ok")
    assert has(lines, r"  9 leave-dom0-idle           0\.01 s  ok")
    assert sum(ln.endswith(" s  ok") for ln in lines) == 9
    assert "  net-vm       domid 1   0.53 s" in lines
    assert "  sa-vm        domid 2   0.55 s" in lines
    assert "  workload-vm  domid 3   0.36 s" in lines
    assert "boot: 2.2 s from first to last line (uptime 9.6 -> 11.8)" in lines
    assert "verdict: OK: 3 domains are ready, 2.2 s (exit 0)" in lines
    assert "first failure: none" in lines


def test_the_critical_path_ends_at_the_domain_ready_last_and_follows_ready_before_create(
) -> None:
    # net-vm and sa-vm were created together; sa-vm's ready line came last before
    # workload-vm's create, so the chain is sa-vm -> workload-vm.
    lines, _ = review("ok")
    assert "critical path: sa-vm (0.55 s) -> workload-vm (0.36 s) = 0.91 s" in lines


def test_a_line_cut_by_a_kernel_message_is_rejoined_with_its_rest_on_the_next_line() -> None:
    raw = (CAPTURES / "ok.log").read_bytes()
    assert re.search(rb"\[7/9\] workload-vm r\[ +\d+\.\d{6}\] xen_pciback", raw), \
        "the fixture has the cut"
    lines, _ = review("ok")
    assert "  workload-vm  domid 3   0.36 s" in lines
    assert "  118 lines of ours recognised, 2 cut by other output (1 rejoined)" in lines


def test_the_serial_noise_changes_nothing_but_the_counts_against_the_clean_console() -> None:
    for case in ("ok", "fetch-404", "net-vm-never", "interrupted", "two-runs"):
        mangled, code = review_path(str(CAPTURES / f"{case}.log"))
        clean, clean_code = review_path(str(CAPTURES / f"{case}.console"))
        assert code == clean_code

        def body(text: str) -> list[str]:
            lines = text.splitlines()
            return [ln for ln in lines[lines.index("steps:"):] if not ln.startswith("boot:")]

        assert body(mangled) == body(clean), case


def test_a_failed_fetch_gives_the_step_the_error_the_hint_and_exit_1() -> None:
    lines, code = review("fetch-404")
    assert code == 1
    assert has(lines, r"  4 check-platform            0\.06 s  ok")
    assert has(lines, r"  5 fetch-images              ~0\.2 s  failed: fetching "
                      r"http://10\.0\.2\.2:8080/i\.\.\.")
    assert all(has(lines, rf"  {n} {name} +not run")
               for n, name in enumerate(STEP_NAMES[5:], start=6))
    assert "domains: none in this run" in lines
    assert "verdict: FAILED at 5/9 fetch-images (exit 1)" in lines
    start = lines.index("first failure: [5/9] fetch-images failed: fetching")
    assert lines[start:] == [
        "first failure: [5/9] fetch-images failed: fetching",
        "  http://10.0.2.2:8080/images/guest/sa-vm.cpio.gz failed after 1 attempt: HTTP",
        "  404 Not Found; no file was written to /run/xen-images/sa-vm.ramdisk",
        "  hint: check that the build server is up and serves this file with the sha256",
        "        and size pinned in /etc/orchestrator/units/domains/sa-vm.toml; dom0",
        "        keeps its NIC, re-run orchestrate when it is fixed",
    ]


def test_a_domain_that_never_gets_ready_is_the_first_failure_with_the_guest_console_hint(
) -> None:
    lines, code = review("net-vm-never")
    assert code == 1
    assert has(lines, r"  7 create-domains            2\.69 s  done with failures: net-vm, "
                      r"workload-vm")
    assert has(lines, r"  net-vm       failed: timed out after 2 s waiting for net-vm "
                      r"xenstore:data/r\.\.\.")
    assert "  sa-vm        domid 2   0.51 s" in lines
    assert "  workload-vm  skipped: it needs net-vm, which is not ready" in lines
    assert "critical path: sa-vm (0.51 s) = 0.51 s" in lines
    assert "verdict: FAILED: net-vm, workload-vm not ready after 4.0 s (exit 1)" in lines
    start = lines.index("first failure: [7/9] net-vm failed: timed out after 2 s waiting "
                        "for net-vm")
    assert lines[start + 1:] == [
        "  xenstore:data/ready",
        "  hint: see the guest's console: /var/log/xen/console/guest-net-vm.log",
    ]


def test_an_interrupted_run_says_where_and_exits_1() -> None:
    lines, code = review("interrupted")
    assert code == 1
    assert has(lines, r"  5 fetch-images              ~0\.0 s  failed: interrupted")
    assert "verdict: INTERRUPTED at 5/9 fetch-images (exit 130)" in lines
    assert lines[-1] == "first failure: [5/9] fetch-images failed: interrupted"


def test_a_killed_run_has_no_verdict_and_says_which_step_it_was_in() -> None:
    lines, code = review("killed")
    assert code == 1
    assert has(lines, r"  6 bind-devices-to-pciback   0\.10 s  ok")  # a rejoined line
    assert has(lines, r"  7 create-domains +running when the run ends")
    assert has(lines, r"  8 provision-xenstore +not reached")
    assert lines[-3:] == [
        "verdict: none: the run stops at uptime 11.1 during 7/9 create-domains (killed,",
        "  or the capture ends there)",
        "first failure: none",
    ]


def test_with_two_runs_the_last_is_reviewed_and_the_earlier_verdict_is_listed() -> None:
    lines, code = review("two-runs")
    assert code == 0
    assert lines[:5] == [
        "capture: two-runs.log: 327 lines, 1 boot",
        "boot 1 of 1: Xen 4.17.5, lines 1-327, 2 runs of orchestrate, reviewing the last",
        "  run 1: FAILED: sa-vm, workload-vm not ready after 4.1 s (exit 1)",
        "run 2: orchestrate 0.1.0 (boot), pid 20656",
        "  71 lines of ours recognised, 1 cut by other output (1 rejoined)",
    ]
    assert has(lines, r"  1 make-device-nodes         0\.00 s  ok")  # converged: nothing to do
    assert "  net-vm       domid 2   adopted (already running)" in lines
    assert "  sa-vm        domid 3   0.40 s" in lines
    assert "critical path: sa-vm (0.40 s) -> workload-vm (0.33 s) = 0.73 s" in lines
    assert "verdict: OK: 3 domains are ready, 1.0 s (exit 0)" in lines
    assert "first failure: none" in lines


# ---- the parser's rules ----------------------------------------------------------------

def test_our_lines_are_found_anywhere_in_a_line_and_kernel_timestamps_are_not_ours() -> None:
    data = ("[    4.567890] e1000 0000:00:03.0 eth0: link up"
            + ours(12.4, "create-domains", 7) + "\r\n"
            + "\x1b[1;31m" + ours(12.5, "net-vm: created paused as domid 1", 7) + "\x1b[0m\r\n"
            + "\x00\x00(XEN) [   12.600000] d1v0: upcall vector f3\r\n").encode()
    assert [(ln.uptime, ln.step_no, ln.body) for ln in read_capture(data)] == [
        (12.4, 7, "create-domains"), (12.5, 7, "net-vm: created paused as domid 1")]


def test_two_lines_of_ours_run_together_are_split_at_each_prefix() -> None:
    lines = read_capture((ours(1.0, "preflight", 2) + ours(1.1, "preflight ok (0.10 s)", 2)
                          ).encode())
    assert [ln.body for ln in lines] == ["preflight", "preflight ok (0.10 s)"]


def test_the_rest_of_a_cut_line_is_only_taken_when_it_makes_an_event() -> None:
    cut = ours(3.0, "sa-vm ready as do", 7) + "[    3.012345] vif vif-2-0: Guest Rx ready\r\n"
    joined = read_capture((cut + "mid 2 (0.30 s after create)\r\n").encode())
    assert joined[0].body == "sa-vm ready as domid 2 (0.30 s after create)"
    assert joined[0].rejoined
    kept = read_capture((cut + "Welcome to Alpine Linux 3.20\r\n").encode())
    assert kept[0].body == "sa-vm ready as do" and kept[0].cut and not kept[0].rejoined


def test_with_the_units_the_critical_path_takes_the_domains_real_needs() -> None:
    run = "\r\n".join([
        ours(1.0, "orchestrate 0.1.0 (boot), pid 7, root /"),
        ours(1.1, "a: created paused as domid 1", 7),
        ours(1.1, "b: created paused as domid 2", 7),
        ours(2.0, "a ready as domid 1 (0.90 s after create)", 7),
        ours(2.5, "b ready as domid 2 (1.40 s after create)", 7),
        ours(2.6, "c: created paused as domid 3", 7),
        ours(3.0, "c ready as domid 3 (0.40 s after create)", 7),
        ours(3.0, "orchestrate: OK: 3 domains are ready, 2.0 s (exit 0)"),
    ]).encode()
    by_order, _ = review_bytes(run)
    assert "critical path: b (1.40 s) -> c (0.40 s) = 1.80 s" in by_order.splitlines()
    by_needs, _ = review_bytes(run, needs={"c": ["a"], "b": [], "a": []})
    assert "critical path: a (0.90 s) -> c (0.40 s) = 1.30 s" in by_needs.splitlines()


def test_a_run_whose_first_line_is_lost_still_starts_after_a_verdict() -> None:
    data = "\n".join([
        ours(1.0, "orchestrate: FAILED at 5/9 fetch-images (exit 1)", 5),
        ours(2.0, "fetch-images ok (0.50 s)", 5),
        ours(3.0, "orchestrate: OK: 0 domains are ready, 1.0 s (exit 0)"),
    ]).encode()
    text, code = review_bytes(data, "lab.log")
    assert code == 0
    assert text.splitlines()[:4] == [
        "capture: lab.log: 3 lines, 1 boot",
        "boot 1 of 1: no Xen banner, lines 1-3, 2 runs of orchestrate, reviewing the last",
        "  run 1: FAILED at 5/9 fetch-images (exit 1)",
        "run 2: its first line is not in the capture",
    ]


def test_a_capture_without_our_lines_says_so_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "xen-only.log"
    path.write_bytes(b"(XEN) Xen version 4.17.5\r\n[    0.000000] Linux version 6.6\r\n")
    assert review_path(str(path)) == (f"no orchestrate lines found in {path}\n", 1)
    result = run_orchestrate("review", "--json", str(path))
    document = json.loads(result.stdout)
    assert result.returncode == 1 and document["boot"] is None
    import jsonschema

    jsonschema.validate(document, json.loads(
        (REPO / "schemas" / "review-v1.schema.json").read_text()))


def test_the_step_names_are_the_runners() -> None:
    from orchestrator.runner import STEPS

    assert tuple(name for name, _ in STEPS) == STEP_NAMES


# ---- the command ---------------------------------------------------------------------------

def test_the_command_prints_the_review_and_exits_with_its_code() -> None:
    for case, code in (("ok", 0), ("net-vm-never", 1)):
        result = run_orchestrate("review", str(CAPTURES / f"{case}.log"))
        assert result.returncode == code, result.stderr
        assert result.stdout == review_path(str(CAPTURES / f"{case}.log"))[0]


def test_stdin_is_read_when_the_capture_is_a_dash() -> None:
    data = (CAPTURES / "ok.log").read_bytes()
    result = subprocess.run([sys.executable, "-m", "orchestrator", "review", "-"],
                            input=data, capture_output=True, timeout=30, cwd=REPO,
                            check=False)
    assert result.returncode == 0
    assert result.stdout.decode().splitlines()[0] == "capture: standard input: 237 lines, 1 boot"


def test_a_missing_capture_is_a_usage_error_naming_the_path_without_a_traceback() -> None:
    result = run_orchestrate("review", "/nonexistent/lab.log")
    assert result.returncode == 2
    assert result.stderr == ("orchestrate review: cannot read /nonexistent/lab.log: "
                             "No such file or directory\n")
    assert result.stdout == ""


def test_the_command_needs_no_unit_files_and_no_structlog() -> None:
    code = ("import sys\nfrom orchestrator import cli\n"
            f"try:\n    cli.main(['review', {str(CAPTURES / 'ok.log')!r}])\n"
            "except SystemExit as exc:\n"
            "    print('structlog' in sys.modules, exc.code, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/", timeout=30, check=False)
    assert result.stderr == "False 0\n"


def test_with_units_the_command_reads_the_topology() -> None:
    result = run_orchestrate("review", "--units", "units", str(CAPTURES / "ok.log"))
    assert result.returncode == 0, result.stderr
    assert "critical path: sa-vm (0.55 s) -> workload-vm (0.36 s) = 0.91 s" in result.stdout


# ---- never a crash -------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_report_or_no_lines_never_a_crash(data: bytes) -> None:
    well_formed(data)


TEMPLATES = [
    "orchestrate 0.1.0 ({mode}), pid {n}, root /",
    "units /etc/orchestrator/units: 3 domains, waves net-vm, sa-vm | workload-vm",
    "{step}", "{step} ok ({s:.2f} s)", "{step} failed: {text}",
    "{step} done with failures ({s:.2f} s): {dom}", "hint: {text}",
    "{dom}: created paused as domid {n}", "{dom}: already running as domid {n}: adopted",
    "{dom} ready as domid {n} ({s:.2f} s after create)", "{dom} failed: {text}",
    "{dom} skipped: it needs {dom}, which is not ready",
    "orchestrate: OK: {n} domains are ready, {s:.1f} s (exit 0)",
    "orchestrate: FAILED at {n}/9 {step} (exit 1)",
    "orchestrate: INTERRUPTED at {n}/9 {step} (exit 130)",
    "an earlier run of this boot: FAILED: {dom} not ready; converging from there",
    "xl create -p /run/orchestrator/xl/{dom}.cfg", "xen-init-dom0",
]
NOISE = [
    "(XEN) d{n}v0: upcall vector f3", "(XEN) [{s:12.6f}] HVM d0v1 save: CPU",
    "[{s:12.6f}] xen_pciback: vpci: assign to virtual slot 0",
    " \x1b[32;01m*\x1b[0m Bringing up the Xen appliance (orchestrate) ...",
    "\x1b[A\x1b[74G \x1b[34;01m[ \x1b[32;01mok\x1b[34;01m ]\x1b[0m", "dom0 login: ", "",
]
names = st.sampled_from(["net-vm", "sa-vm", "workload-vm", "x", "a" * 48, "bad name"])
values = st.fixed_dictionaries({
    "mode": st.sampled_from(["boot", "dry run"]), "n": st.integers(0, 10**9),
    "s": st.floats(0, 1e6), "step": st.sampled_from(STEP_NAMES + ("odd-step",)),
    "dom": names, "text": st.text(max_size=120),
})


@st.composite
def serial_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["ours", "ours", "ours", "noise", "cut", "text"]))
    v = draw(values)
    if kind == "text":
        return draw(st.text(max_size=100))
    if kind == "noise":
        return draw(st.sampled_from(NOISE)).format(**v)
    step = draw(st.one_of(st.none(), st.integers(0, 12)))
    line = f"[{draw(st.floats(0, 99999)):6.1f}] " + (f"[{step}/9] " if step is not None
                                                      else "")
    line += draw(st.sampled_from(TEMPLATES)).format(**v)
    if draw(st.booleans()):
        line = "\x1b[1;31m" + line + "\x1b[0m"
    if kind == "cut":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.sampled_from(NOISE)).format(**v) + "\r\n" + line[at:]
    return line


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(serial_lines(), st.sampled_from(["\r\n", "\n", "\r", "", "\x00"])),
                max_size=40),
       st.lists(st.binary(min_size=1, max_size=4), max_size=3))
def test_mixtures_of_our_lines_noise_cuts_ansi_and_garbage_never_crash(
        lines: list[tuple[str, str]], garbage: list[bytes]) -> None:
    data = "".join(text + end for text, end in lines).encode("utf-8", "surrogatepass")
    for i, junk in enumerate(garbage):
        at = (len(data) * (i + 1)) // (len(garbage) + 1)
        data = data[:at] + junk + data[at:]
    well_formed(data)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.sampled_from(NOISE[:4]),
                          st.floats(0, 100)), max_size=20))
def test_noise_lines_anywhere_between_ours_change_only_the_counts(
        inserts: list[tuple[int, str, float]]) -> None:
    lines = (CAPTURES / "net-vm-never.console").read_text().splitlines()
    for at, noise, s in sorted(inserts, reverse=True):
        lines.insert(at, noise.format(n=3, s=s))
    noisy, code = review_bytes("\r\n".join(lines).encode())
    clean, clean_code = review_bytes((CAPTURES / "net-vm-never.console").read_bytes())
    assert code == clean_code == 1
    assert noisy.splitlines()[4:] == clean.splitlines()[4:]


# ---- the lifecycle: every boot in a capture, and what came after it ----------------------

def test_a_boot_with_transition_lines_has_its_phases_and_critical_path() -> None:
    result = reviewmod.review_path(str(CAPTURES / "lifecycle.log"))
    run = result.boot.reviewed if result.boot else None
    assert run is not None and result.exit_code == 0
    workload = run.domains["workload-vm"]
    assert (workload.created, workload.provisioned, workload.booting, workload.ready) == (
        26.6, 26.7, 26.8, 32.8)  # rebased to start at 9.6 like the other fixtures
    assert workload.seconds == 7.45 and workload.start == pytest.approx(25.35)
    assert [(v.devid, v.backend, v.seconds) for v in workload.vifs] == [(0, "net-vm", 1.38)]
    assert [d.name for d in result.critical_path()] == ["net-vm", "workload-vm"]


def test_after_the_boot_lists_the_restarts_their_repair_times_and_the_shutdown() -> None:
    lines, code = review("lifecycle")
    assert code == 0
    start = lines.index("after the boot: 2 runs (watch, shutdown), 18 lifecycle events")
    assert lines[start + 1: start + 16] == [
        "  follower: pid 290, ready at uptime 35.2, following 3 domains, watching",
        "    @introduceDomain @releaseDomain",
        "  restarts:",
        "    62.1 sa-vm restarted as domid 4 (was 2); plumbing restored in 0.18 s; ready",
        "      at 66.9; repaired 4.80 s after the restart",
        "    93.4 net-vm restarted as domid 5 (was 1); plumbing restored in 0.09 s; ready",
        "      at 102.2; workload-vm vif 0 re-attached Connected in 1.42 s; repaired",
        "      10.30 s after the restart",
        "  shutdown at uptime 141.1, 3 levels: workload-vm | sa-vm | net-vm",
        "    workload-vm stopped in 1.80 s, sa-vm stopped in 1.70 s, net-vm stopped in",
        "    2.40 s",
        "    verdict: OK: 3 domains stopped, 6.3 s (exit 0)",
        "  events:",
        "    [  35.2] follower ready: following 3 domains, watching @introduceDomain",
        "              @releaseDomain",
    ]


def test_a_capture_of_two_power_cycles_reviews_the_last_and_lists_the_first() -> None:
    lines, code = review("two-boots")
    assert code == 0
    assert lines[:3] == [
        "capture: two-boots.log: 404 lines, 2 boots, reviewing boot 2 (--boot N)",
        "  boot 1: lines 1-237, Xen 4.17.5: OK: 3 domains are ready, 2.2 s (exit 0)",
        "boot 2 of 2: Xen 4.17.5, lines 238-404, 3 runs of orchestrate",
    ]
    assert "run 1: orchestrate 0.2.0 (boot), pid 161" in lines


def test_boot_n_reviews_another_power_cycle_and_a_missing_one_is_a_usage_error() -> None:
    first = run_orchestrate("review", "--boot", "1", str(CAPTURES / "two-boots.log"))
    assert first.returncode == 0
    assert first.stdout.splitlines()[2:4] == [
        "boot 1 of 2: Xen 4.17.5, lines 1-237, 1 run of orchestrate",
        "run 1: orchestrate 0.1.0 (boot), pid 19509",
    ]
    missing = run_orchestrate("review", "--boot", "3", str(CAPTURES / "two-boots.log"))
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == (f"orchestrate review: {CAPTURES / 'two-boots.log'}: there is no "
                              "boot 3: the capture holds 2 (--boot 1 to 2)\n")


def test_the_lab_s_real_capture_gives_the_boot_the_lab_saw() -> None:
    lines, code = review("lab-4.17-ok")
    assert code == 0
    assert lines[:3] == ["capture: lab-4.17-ok.log: 864 lines, 1 boot",
                         "boot 1 of 1: Xen 4.17.5, lines 1-864, 1 run of orchestrate",
                         "run 1: orchestrate 0.1.0 (boot), pid 161"]
    assert has(lines, r"  7 create-domains +16\.76 s  ok")
    assert "  net-vm       domid 1   9.06 s" in lines
    assert "critical path: net-vm (9.06 s) -> workload-vm (7.45 s) = 16.51 s" in lines
    assert "verdict: OK: 3 domains are ready, 24.3 s (exit 0)" in lines


# ---- JSON ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_the_json_review_follows_its_schema(case: str) -> None:
    import jsonschema

    schema = json.loads((REPO / "schemas" / "review-v1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    result = run_orchestrate("review", "--json", str(CAPTURES / f"{case}.log"))
    document = json.loads(result.stdout)
    jsonschema.validate(document, schema)
    assert result.returncode == document["exit_code"]


def test_the_json_review_holds_what_the_text_says() -> None:
    result = run_orchestrate("review", "--json", str(CAPTURES / "lifecycle.log"))
    doc = json.loads(result.stdout)
    assert (doc["schema"], doc["version"]) == ("orchestrate-review", 1)
    run = doc["boot"]["run"]
    assert run["critical_path"] == {"domains": ["net-vm", "workload-vm"], "seconds": 16.51}
    assert run["verdict"] == {"word": "OK", "detail": "3 domains are ready, 24.3 s", "code": 0,
                              "text": "OK: 3 domains are ready, 24.3 s (exit 0)"}
    net = next(d for d in run["domains"] if d["name"] == "net-vm")
    assert net["phases"] == {"start": pytest.approx(16.24), "created": 17.7,
                             "provisioned": 17.7, "booting": 17.8, "ready": 25.3,
                             "ended": None}
    after = doc["boot"]["after"]
    assert [(r["domain"], r["domid"], r["was"], r["repair_seconds"]) for r in
            after["restarts"]] == [("sa-vm", 4, 2, 4.8), ("net-vm", 5, 1, 10.3)]
    assert [s["domain"] for s in after["shutdown"]["stopped"]] == [
        "workload-vm", "sa-vm", "net-vm"]
    failed = json.loads(run_orchestrate("review", "--json",
                                        str(CAPTURES / "fetch-404.log")).stdout)
    failure = failed["boot"]["run"]["first_failure"]
    assert failure["step"] == "[5/9]" and failure["text"].startswith("fetch-images failed: ")
    assert failure["hint"].startswith("check that the build server is up")


# ---- any input: a review or one line of error; linear time, bounded memory -------------------

def test_dev_zero_ends_with_one_line_saying_it_is_no_capture() -> None:
    result = run_orchestrate("review", "/dev/zero")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("orchestrate review: /dev/zero: a line is longer than 16 MiB: "
                             "not a serial console capture\n")


def test_a_10_mb_line_without_a_newline_still_gives_the_review(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    path.write_bytes((CAPTURES / "ok.log").read_bytes() + b"\x00junk" * (2 << 20))
    result = run_orchestrate("review", str(path))
    assert result.returncode == 0, result.stderr
    assert "verdict: OK: 3 domains are ready, 2.2 s (exit 0)" in result.stdout.splitlines()


def test_a_directory_is_a_usage_error_naming_it() -> None:
    result = run_orchestrate("review", str(CAPTURES))
    assert result.returncode == 2
    assert result.stderr == f"orchestrate review: cannot read {CAPTURES}: Is a directory\n"


def big_captures(out: Path, megabytes: int) -> None:
    subprocess.run([sys.executable, str(CAPTURES / "make_big.py"), str(out), str(megabytes)],
                   check=True, capture_output=True, timeout=60)


def test_the_audit_s_32000_domains_in_one_run_review_in_seconds(tmp_path: Path) -> None:
    # the audit measured 63 s for 32,000 domains: the critical path was quadratic
    big_captures(tmp_path, 8)
    started = time.monotonic()
    result = reviewmod.review_path(str(tmp_path / "domains-8MB.log"))
    seconds = time.monotonic() - started
    run = result.boot.reviewed if result.boot else None
    assert run is not None and len(run.domains) > 32_000
    path = result.critical_path()
    assert len(path) == len(run.domains), "each domain was created once the one before it was ready"
    assert seconds < 20, f"{seconds:.1f} s"


def test_the_critical_path_with_the_units_costs_one_look_at_each_edge() -> None:
    # a chain of 20,000 domains, each needing the one before: linear in domains + edges
    names = [f"d{i}" for i in range(20_000)]
    lines = [ours(1.0, "orchestrate 0.2.0 (boot), pid 7, root /")]
    for i, name in enumerate(names):
        lines += [ours(2.0 + i, f"{name}: pending -> created (domid {i + 1})", 7),
                  ours(2.5 + i, f"{name}: booting -> ready (domid {i + 1}) in 0.50 s", 7)]
    needs = {name: names[max(0, i - 3): i] for i, name in enumerate(names)}
    started = time.monotonic()
    result = reviewmod.review_bytes("\n".join(lines).encode(), needs=needs)
    assert [d.name for d in result.critical_path()] == names
    assert time.monotonic() - started < 10


def test_peak_memory_does_not_grow_with_the_capture(tmp_path: Path) -> None:
    big_captures(tmp_path, 24)
    # VmHWM: this process's own peak (ru_maxrss would count pytest's pages before exec)
    code = ("import sys\nfrom orchestrator.review import review_path\n"
            "review_path(sys.argv[1])\n"
            "print(next(ln.split()[1] for ln in open('/proc/self/status')\n"
            "           if ln.startswith('VmHWM:')))\n")
    for kind in ("boots", "follower"):
        result = subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{kind}-24MB.log")],
                                capture_output=True, text=True, timeout=120, check=True,
                                cwd=REPO)
        assert int(result.stdout) < 60 * 1024, f"{kind}: {int(result.stdout) >> 10} MiB"


def test_a_domain_whose_vif_waited_for_its_backend_has_that_backend_before_it() -> None:
    """workload-vm is created while net-vm boots (only its vif needs net-vm); its vif is
    attached once net-vm is ready and it is ready once the vif is Connected: the path is
    net-vm then workload-vm, whose share is the time after net-vm was ready (the lab)."""
    lines = [
        ours(9.2, "orchestrate 0.1.0 (boot), pid 169, root /"),
        ours(17.2, "sa-vm: pending -> created (domid 1) in 1.45 s: xl create -p", 7),
        ours(17.3, "net-vm: pending -> created (domid 2) in 1.67 s: xl create -p", 7),
        ours(22.9, "sa-vm: booting -> ready (domid 1) in 7.15 s: data/ready", 7),
        ours(24.7, "workload-vm: pending -> created (domid 3) in 1.70 s: xl create -p", 7),
        ours(26.4, "net-vm: booting -> ready (domid 2) in 10.77 s: data/ready", 7),
        ours(32.2, "workload-vm: vif 0 attached to net-vm (domid 2) in 5.65 s", 7),
        ours(32.5, "workload-vm: booting -> ready (domid 3) in 9.41 s: connected", 7),
        ours(33.8, "orchestrate: OK: 3 domains are ready, 24.6 s (exit 0)"),
    ]
    data = "\r\n".join(lines).encode() + b"\r\n"
    result = reviewmod.review_bytes(data)
    assert [d.name for d in result.critical_path()] == ["net-vm", "workload-vm"]
    text, code = review_bytes(data)
    assert code == 0
    assert ("critical path: net-vm (10.77 s) -> workload-vm (9.41 s, its vif +6.10 s) = "
            "16.87") in text
    # a vif attached after its domain was ready does not make the backend its predecessor
    early = [ln.replace("32.5] [7/9] workload-vm: booting -> ready",
                        "31.0] [7/9] workload-vm: booting -> ready") for ln in lines]
    early.insert(6, early.pop(7))  # ready before the vif's line
    path = reviewmod.review_bytes("\r\n".join(early).encode() + b"\r\n").critical_path()
    assert [d.name for d in path] == ["sa-vm", "workload-vm"]
