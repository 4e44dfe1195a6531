"""What dom0 reads from the kernel, in shapes the kernel does not write: each either works
or is an OrchestratorError that names the file and says what to do (issue 10: a /proc/misc
minor out of range made mknod raise; an odd /sys/hypervisor/version was "not a Xen dom0").
"""

from __future__ import annotations

import pytest

from orchestrator.errors import OrchestratorError
from orchestrator.steps.devices import MINOR_MAX, parse_misc
from orchestrator.steps.preflight import parse_hypervisor_version

# ---- /proc/misc --------------------------------------------------------------------------

MISC_OK = [
    ("as Linux 6.1 writes it", "122 xen/evtchn\n121 xen/gntdev\n 60 device-mapper\n",
     {"evtchn": 122, "gntdev": 121}),
    ("a large dynamic minor (Linux >= 6.2)", "255 xen/evtchn\n1048575 xen/gntdev\n",
     {"evtchn": 255, "gntdev": MINOR_MAX}),
    ("other devices with odd minors are not ours", "x9 hw_random\n-1 fuse\n",
     {}),
    ("a name that is no file name is left out", "120 xen/../evil\n121 xen/.\n122 xen/\n"
     "123 xen/a\ufffdb\n124 xen/evtchn\n", {"evtchn": 124}),
    ("blank and short lines", "\n\n122\nxen/evtchn\n 122 xen/evtchn extra\n", {}),
    ("empty", "", {}),
]


@pytest.mark.parametrize(("text", "nodes"), [pytest.param(t, n, id=c) for c, t, n in MISC_OK])
def test_proc_misc_gives_the_xen_nodes(text: str, nodes: dict[str, int]) -> None:
    assert parse_misc(text) == nodes


@pytest.mark.parametrize("minor", ["1048576", "99999999999999999999", "-1", "0x7a", "12a",
                                   "\u0661\u0662\u0662", "\u00b2"])
def test_a_xen_entry_whose_minor_is_no_device_minor_is_named(minor: str) -> None:
    with pytest.raises(OrchestratorError) as caught:
        parse_misc(f"121 xen/gntdev\n{minor} xen/evtchn\n")
    error = caught.value
    assert error.message.startswith("/proc/misc has ")
    assert "is not a device minor (0..1048575), so /dev/xen/evtchn cannot be made" \
        in error.message
    assert error.hint and "cat /proc/misc" in error.hint
    assert error.message.isascii()


# ---- /sys/hypervisor/version --------------------------------------------------------------

VERSION_OK = [
    ("as Linux writes it", ("4\n", "17\n", ".5\n"), (4, 17, ".5")),
    ("no extra file", ("4\n", "20\n", None), (4, 20, "")),
    ("spaces", (" 4 ", "\t17\n\n", "  -rc1  \n"), (4, 17, "-rc1")),
    ("an extra of several lines keeps the first", ("4\n", "19\n", ".1\ngarbage\n"),
     (4, 19, ".1")),
    ("an extra with control bytes and overlong", ("4", "17", "\x1b[31m" + "x" * 80),
     (4, 17, "?[31m" + "x" * 27 + "...")),
]


@pytest.mark.parametrize(("files", "version"),
                         [pytest.param(f, v, id=c) for c, f, v in VERSION_OK])
def test_the_hypervisor_version_files_give_the_version(
        files: tuple[str | None, str | None, str | None], version: tuple[int, int, str]) -> None:
    assert parse_hypervisor_version(*files) == version


VERSION_BAD = [
    ("major holds a dotted version", ("4.17\n", "17\n"), r"/major holds '4\.17\?', not a"),
    ("minor is empty", ("4\n", "\n"), r"/minor holds nothing, not a version number"),
    ("minor is missing", ("4\n", None), r"/minor is missing, not a version number"),
    ("major is a word", ("four\n", "17\n"), r"/major holds 'four\?', not a version number"),
    ("major is negative", ("-1\n", "17\n"), r"/major holds '-1\?'"),
    ("major is huge", ("9" * 40, "17"), r"/major holds '9{24}\.\.\.'"),
    ("major is binary", ("\xff\x00", "17"), r"/major holds '\?\?'"),
    ("underscores are no digits", ("4_0", "17"), r"/major holds '4_0'"),
]


@pytest.mark.parametrize(("files", "said"), [pytest.param(f, s, id=c) for c, f, s in VERSION_BAD])
def test_a_version_file_of_an_unexpected_shape_is_named(
        files: tuple[str | None, str | None], said: str) -> None:
    with pytest.raises(OrchestratorError, match=rf"^/sys/hypervisor/version{said}") as caught:
        parse_hypervisor_version(*files, ".5")
    assert caught.value.hint and "--skip-preflight" in caught.value.hint
    assert caught.value.message.isascii()
