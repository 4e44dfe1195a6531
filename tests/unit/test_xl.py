"""xl's failures translated into their causes: the messages are the ones the lab and the
seeds saw (XEN-LAB.md "The version trap"), not invented ones."""

from __future__ import annotations

import pytest

from orchestrator.xl import VERSION_HINT, explain_failure, parse_list_states

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
