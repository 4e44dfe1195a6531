"""xl's failures translated into their causes: the messages are the ones the lab and the
seeds saw (XEN-LAB.md "The version trap"), not invented ones."""

from __future__ import annotations

import pytest

from orchestrator.xl import (
    VERSION_HINT,
    explain_failure,
    is_shut_down,
    parse_list_states,
    shutdown_cause,
)

SEEN = [
    # 4.17 tools on a 4.20 hypervisor: xl create exits 3 after 0.15 s
    ("libxl: error: libxl_create.c:711:libxl__domain_make: domain creation fail: "
     "Permission denied\nlibxl: error: libxl_create.c:1295:initiate_domain_create: "
     "cannot make domain: -3", VERSION_HINT),
    # ... and with xl -v
    ("xc: detail: domctl operation failed -- need to rebuild the user-space tool set?",
     VERSION_HINT),
    # 4.20 tools on a 4.17 hypervisor: xl create exits 3
    ("libxl: error: libxl_create.c:657:libxl__domain_make: Illegal pool specified: (null)",
     VERSION_HINT),
    # ... where xen-init-dom0 exits 1 first
    ("Getting domain info: Permission denied\ncannot get domain type", VERSION_HINT),
]


@pytest.mark.parametrize(("stderr", "hint"), SEEN)
def test_the_version_trap_is_named_whatever_xl_says(stderr: str, hint: str) -> None:
    assert explain_failure(stderr) == hint


def test_an_unknown_failure_gets_no_invented_cause() -> None:
    assert explain_failure("libxl: error: something new") is None


def test_passthrough_without_iommu_and_libgcc_are_explained() -> None:
    assert "IOMMU" in (explain_failure("passthrough not supported on this platform") or "")
    assert "libgcc_s" in (explain_failure("libgcc_s.so.1 must be installed for "
                                          "pthread_cancel to work") or "")


def test_xl_list_states_parse_the_flags_column() -> None:
    text = ("Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
            "Domain-0                                     0   320     2     r-----      20.5\n"
            "pvh-vm                                       1   128     1     -b----       9.6\n")
    assert parse_list_states(text) == {"Domain-0": (0, "r-----"), "pvh-vm": (1, "-b----")}


def test_xl_list_states_keep_a_domain_in_every_shutdown_reason() -> None:
    """A watchdog or soft-reset shutdown ('w', 'S') or an unknown reason ('?') is still a
    domain: dropping the line would read as 'gone' and revoke its plumbing."""
    rows = {"wd-vm": "---sw-", "soft-vm": "---sS-", "odd-vm": "---s?-", "dying-vm": "---srd"}
    text = "Name  ID   Mem VCPUs\tState\tTime(s)\n" + "".join(
        f"{name:<40} {i:5d}   128     1     {flags}       1.0\n"
        for i, (name, flags) in enumerate(rows.items(), start=3))
    assert {name: flags for name, (_, flags) in parse_list_states(text).items()} == rows


@pytest.mark.parametrize(("flags", "down"), [
    ("-b----", False), ("r-----", False), ("--p---", False), ("-----d", False),
    ("---s--", True), ("---sr-", True), ("---sc-", True), ("---ss-", True)])
def test_shut_down_is_the_fourth_letter_not_a_reason_letter(flags: str, down: bool) -> None:
    assert is_shut_down(flags) is down


ACTIONS = {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "preserve"}


def test_a_reboot_under_on_reboot_restart_says_a_new_domid_follows() -> None:
    cause = shutdown_cause("sa-vm", "---sr-", ACTIONS)
    assert cause.startswith('rebooting (xl list: ---sr-): xl restarts it (on_reboot = '
                            '"restart"), a new domid follows')
    assert "preserved" not in cause


def test_a_crash_under_on_crash_preserve_says_preserved_and_what_to_do() -> None:
    cause = shutdown_cause("sa-vm", "---sc-", ACTIONS)
    assert cause.startswith('crashed (xl list: ---sc-), preserved (on_crash = "preserve")')
    assert "`xl destroy sa-vm`" in cause


def test_a_poweroff_under_on_poweroff_destroy_says_xl_destroys_it() -> None:
    assert shutdown_cause("sa-vm", "---s--", ACTIONS).startswith(
        'powered off (xl list: ---s--): xl destroys it (on_poweroff = "destroy")')


def test_a_reason_with_no_unit_action_is_said_plainly() -> None:
    cause = shutdown_cause("sa-vm", "---sw-", ACTIONS)
    assert cause.startswith("stopped by its watchdog (xl list: ---sw-), preserved: ")
