"""Odd program output and kernel files, end to end on the sandbox appliance.

Issue 10: `xl list`/`xl info` output with a byte that is not UTF-8, a /proc/misc minor out
of range, a /sys/hypervisor/version of an unexpected shape, and a corrupted state.json
from an earlier run each ended in an internal error (one before step 1 on every later
boot). Each now works, or stops at its step with an error that names the file or program
and says what to do, before anything was handed over.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from orchestrator.host import Host
from tests.sandbox.appliance import NIC, STATE_DIR, USB, Appliance, Boot

NOT_UTF8 = "(null)\xff\xfe garbage \xc3\x28\n".encode("latin-1").hex()


def no_internal_error(boot: Boot) -> None:
    assert "internal error" not in boot.console and "Traceback" not in boot.console, \
        boot.console


def test_program_output_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    host = Host()
    result = host.query([sys.executable, "-c",
                         "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe\\n'); "
                         "sys.stderr.buffer.write(b'\\xc3\\x28')"])
    assert result.ok
    assert result.stdout == "ok \ufffd\ufffd\n"
    assert result.stderr == "\ufffd("


@pytest.mark.parametrize("program", ["list", "info"])
def test_xl_output_with_bytes_that_are_not_utf8_still_boots_the_appliance(
        appliance: Appliance, program: str) -> None:
    appliance.behave({"@raw_tail": {program: NOT_UTF8}})
    boot = appliance.boot()
    no_internal_error(boot)
    assert boot.code == 0, boot.console
    assert boot.lines(r"orchestrate: OK: 3 domains are ready")
    assert sorted(appliance.domains()) == ["net-vm", "sa-vm", "workload-vm"]


def test_a_proc_misc_minor_out_of_range_stops_at_make_device_nodes(
        appliance: Appliance) -> None:
    misc = appliance.root / "proc/misc"
    misc.write_text(misc.read_text() + "1048576 xen/evtchn\n")
    boot = appliance.boot()
    no_internal_error(boot)
    assert boot.code == 1, boot.console
    assert boot.lines(r'\[1/9\] make-device-nodes failed: /proc/misc has "1048576 '
                      r'xen/evtchn": "1048576" is not a device minor \(0\.\.1048575\)')
    assert boot.lines(r"hint: /proc/misc comes from the dom0 kernel \(cat /proc/misc\)")
    assert not (appliance.root / "dev/xen/evtchn").exists()
    assert appliance.server.requests == []
    assert appliance.driver_of(NIC.bdf) == "e1000" and appliance.driver_of(USB.bdf) == "xhci_hcd"


VERSION_FILES: list[tuple[str, Callable[[Appliance], None], str]] = [
    ("major holds 4.17", lambda b: (b.root / "sys/hypervisor/version/major").write_text("4.17\n"),
     r"/sys/hypervisor/version/major holds '4\.17\?', not a version number"),
    ("minor is empty", lambda b: (b.root / "sys/hypervisor/version/minor").write_text(""),
     r"/sys/hypervisor/version/minor holds nothing, not a version number"),
    ("minor is a directory", lambda b: _replace_with_dir(b, "minor"),
     r"cannot read /sys/hypervisor/version/minor: Is a directory"),
    ("minor is missing", lambda b: (b.root / "sys/hypervisor/version/minor").unlink(),
     r"/sys/hypervisor/version/minor is missing, not a version number"),
]


def _replace_with_dir(box: Appliance, key: str) -> None:
    path = box.root / f"sys/hypervisor/version/{key}"
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(("damage", "said"),
                         [pytest.param(d, s, id=c) for c, d, s in VERSION_FILES])
def test_a_hypervisor_version_of_an_unexpected_shape_stops_preflight_naming_the_file(
        appliance: Appliance, damage: Callable[[Appliance], None], said: str) -> None:
    damage(appliance)
    boot = appliance.boot()
    no_internal_error(boot)
    assert boot.code == 1, boot.console
    assert boot.lines(rf"\[2/9\] preflight failed: {said}"), boot.console
    assert boot.lines(r"hint: these files are the dom0 kernel's view of the running Xen")
    assert set(boot.programs) <= {"modprobe", "mount"}, "no xenstored, no xl"
    assert appliance.server.requests == []


def test_with_skip_preflight_an_unreadable_version_is_a_warning(appliance: Appliance) -> None:
    (appliance.root / "sys/hypervisor/version/major").write_text("x\n")
    boot = appliance.boot("--skip-preflight")
    no_internal_error(boot)
    assert boot.lines(r"WARNING: /sys/hypervisor/version/major holds 'x\?', not a version "
                      r"number; no version check \(going on: --skip-preflight\)")
    assert boot.lines(r"\[3/9\] start-xenstored ok"), "the boot went on past preflight"


@pytest.mark.parametrize("content", [
    pytest.param(b"[]", id="a list"),
    pytest.param(b"null", id="null"),
    pytest.param(b'{"steps": {"preflight": {"status"', id="truncated"),
    pytest.param(bytes(range(256)), id="binary"),
    pytest.param(b'{"original_drivers": {"0000:00:03.0": 7}}', id="wrong types"),
])
def test_a_corrupted_state_file_of_an_earlier_run_is_a_warning_and_the_boot_goes_on(
        appliance: Appliance, content: bytes) -> None:
    state = appliance.root / STATE_DIR / "state.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    boot = appliance.boot()
    no_internal_error(boot)
    assert boot.code == 0, boot.console
    assert boot.lines(r"WARNING: ignoring /run/orchestrator/state\.json: .*; this boot "
                      r"starts afresh and writes a new one")
    assert boot.state["verdict"].startswith("OK"), "a new state file replaced it"
