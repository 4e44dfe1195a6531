"""A corpus of hostile and odd unit files: each is refused by the real `orchestrate` with
exit 2 and exactly the expected `file: key: problem` lines, and nothing is touched.

The cases are in corpus_values.py and corpus_structure.py. Each changes a copy of the
example units (as data, tests/unit/unit_docs.py, or as raw bytes and special files),
checks in-process that the loader refuses it (so a case that validation missed never
reaches a real boot), then runs the real program's boot against a bare temp root, with
an empty PATH, and compares the tree before and after.
"""

from __future__ import annotations

import stat
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.errors import InvalidUnits
from orchestrator.units import load_units
from tests.conftest import run_orchestrate
from tests.unit.corpus_edits import Case
from tests.unit.corpus_structure import files, names_and_types, references, xenstore
from tests.unit.corpus_values import empty_strings, network, numbers, paths, urls
from tests.unit.unit_docs import Units

CORPUS = numbers() + network() + empty_strings() + urls() + paths() + xenstore() + \
    names_and_types() + references() + files()


def build(case: Case, base: Path) -> Path:
    units = Units.example()
    case.edit(units, base / "units")
    return units.write(base / "units")


def bare_root(root: Path) -> Path:
    """A tree a boot would write to, read from and mount on, if it ever started."""
    for rel, text in {"proc/misc": "122 xen/evtchn\n", "etc/xen/xl.conf": "# kept\n",
                      "run/.keep": "", "dev/.keep": "", "var/log/xen/.keep": "",
                      "sys/bus/pci/devices/0000:00:03.0/driver_override": "(null)\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def tree(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    out = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
    return out


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_a_hostile_unit_is_refused_with_exit_2_naming_file_and_key_and_nothing_is_touched(
        case: Case, tmp_path: Path) -> None:
    units = build(case, tmp_path)
    expected = sorted(f"{units}/{line}".replace("{units}", str(units)) for line in case.lines)
    with pytest.raises(InvalidUnits) as refused:  # never let a missed case reach a boot
        load_units(units)
    assert [str(p) for p in refused.value.problems] == expected

    root = bare_root(tmp_path / "root")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    before = tree(root)
    result = run_orchestrate("--root", str(root), "--units", str(units),
                             env={"PATH": str(empty)}, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[:-1] == expected
    count = len(expected)
    assert lines[-1] == (f"orchestrate: {count} problem{'s' if count > 1 else ''} in the unit "
                         f"files in {units}; nothing was touched (exit 2)")
    assert result.stdout == ""
    assert tree(root) == before


def test_the_corpus_covers_every_class() -> None:
    counts = Counter(case.kind for case in CORPUS)
    print(dict(counts), sum(counts.values()))
    assert set(counts) == {"numbers", "network", "empty", "urls", "paths", "xenstore",
                           "names", "cross-file", "files"}
    assert len({case.id for case in CORPUS}) == len(CORPUS)


def test_check_refuses_like_the_boot(tmp_path: Path) -> None:
    """`orchestrate check` prints the same lines on stdout, and exits 2."""
    case = next(case for case in CORPUS if case.id == "host.toml is a FIFO")
    units = build(case, tmp_path)
    result = run_orchestrate("check", "--units", str(units), timeout=30)
    assert result.returncode == 2
    assert result.stdout.splitlines()[0] == f"{units}/{case.lines[0]}"
