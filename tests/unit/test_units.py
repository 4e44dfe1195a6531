"""Unit validation: every bad unit is reported, all at once, naming file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.errors import InvalidUnits
from orchestrator.units import load_units
from tests.conftest import EXAMPLE_UNITS, run_orchestrate
from tests.unit.unit_docs import Units

SHA = "ab" * 32


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text + "\n")


def prepend(path: Path, text: str) -> None:
    """Top-level keys go before the first [table] (TOML scoping)."""
    path.write_text(text + "\n" + path.read_text())


def problems_of(units: Path) -> list[str]:
    with pytest.raises(InvalidUnits) as info:
        load_units(units)
    return [str(p) for p in info.value.problems]


def test_the_shipped_example_is_valid() -> None:
    config = load_units(EXAMPLE_UNITS)
    assert [d.name for d in config.domains] == ["net-vm", "sa-vm", "workload-vm"]
    assert config.passthrough()["0000:00:03.0"].name == "net-vm"
    workload = config.domain("workload-vm")
    assert workload.vifs[0].backend == "net-vm" and workload.vifs[0].ip == "10.0.5.103"
    assert workload.kernel.url == "http://10.0.2.100/images/guest/vmlinux"


# (case id, file to change, how, the file and key the report must name, a phrase)
BAD = [
    ("unknown key", "domains/sa-vm.toml", ("top", "colour = 'red'"), "sa-vm.toml: colour",
     "unknown key"),
    ("unknown nested key", "host.toml", ("edit", "attempts = 4", "attempts = 4\nretry = 1"),
     "host.toml: build_server.retry", "unknown key"),
    ("wrong type", "domains/sa-vm.toml", ("edit", "memory = 128", "memory = '128'"),
     "sa-vm.toml: memory", "must be an integer, not a string"),
    ("boolean is not a number", "domains/sa-vm.toml", ("edit", "vcpus = 1", "vcpus = true"),
     "sa-vm.toml: vcpus", "not a boolean"),
    ("duplicate name", "domains/sa-vm.toml", ("top", "name = 'net-vm'"),
     "sa-vm.toml: name", "also the name in"),
    ("unsafe name", "domains/sa-vm.toml", ("top", "name = 'sa vm/../x'"),
     "sa-vm.toml: name", "unsafe as a xenstore path component"),
    ("bdf syntax", "domains/sa-vm.toml", ("edit", '"0000:00:04.0"', '"00:04.0"'),
     "sa-vm.toml: pci[0]", "not a PCI address"),
    ("bdf given twice", "domains/sa-vm.toml", ("edit", '"0000:00:04.0"', '"0000:00:03.0"'),
     "sa-vm.toml: pci[0]", "also passed through in"),
    ("pvh with pci", "domains/net-vm.toml", ("edit", 'type = "pv"', 'type = "pvh"'),
     "net-vm.toml: pci", "needs type = \"pv\""),
    ("unknown vif backend", "domains/workload-vm.toml",
     ("edit", 'backend = "net-vm"', 'backend = "router"'),
     "workload-vm.toml: vif[0].backend", "unknown domain 'router'"),
    ("after unknown", "domains/sa-vm.toml", ("edit", 'type = "pv"', 'type = "pv"\nafter = ["db"]'),
     "sa-vm.toml: after[0]", "unknown domain 'db'"),
    ("duplicate ip", "domains/sa-vm.toml",
     ("append", '[[vif]]\nip = "10.0.5.103"\nbackend = "net-vm"'),
     "vif[0].ip", "10.0.5.103 is also used in"),
    ("ipc peer unknown", "domains/sa-vm.toml", ("edit", 'serve = ["workload-vm"]', 'serve = ["x"]'),
     "sa-vm.toml: ipc.serve[0]", "unknown domain 'x'"),
    ("ipc peer is itself", "domains/sa-vm.toml",
     ("edit", 'serve = ["workload-vm"]', 'serve = ["sa-vm"]'),
     "sa-vm.toml: ipc.serve[0]", "its own ipc peer"),
    ("sha256 not 64 hex", "domains/sa-vm.toml", ("edit", 'sha256 = "1b2c', 'sha256 = "zz1b2c'),
     "sa-vm.toml: ramdisk.sha256", "64 lowercase hex digits"),
    ("url scheme", "domains/sa-vm.toml",
     ("edit", 'url = "guest/sa-vm.cpio.gz"', 'url = "ftp://h/sa.gz"'),
     "sa-vm.toml: ramdisk.url", "scheme must be http or https"),
    ("memory out of range", "domains/sa-vm.toml", ("edit", "memory = 128", "memory = 4"),
     "sa-vm.toml: memory", "out of range"),
    ("vcpus out of range", "domains/sa-vm.toml", ("edit", "vcpus = 1", "vcpus = 1000"),
     "sa-vm.toml: vcpus", "out of range"),
    ("unknown readiness", "domains/sa-vm.toml",
     ("edit", 'readiness = "xenstore:data/ready"', 'readiness = "pingable"'),
     "sa-vm.toml: readiness", "unknown mode"),
    ("connected without devices", "domains/workload-vm.toml",
     ("edit", '[[vif]]\nip = "10.0.5.103"\nbackend = "net-vm"\nscript = "vif-route-sh"', ""),
     "workload-vm.toml: readiness", "this domain has none"),
    ("missing kernel", "domains/sa-vm.toml", ("edit", "[kernel]", "[kernel_]"),
     "sa-vm.toml: kernel", "missing (required)"),
    ("toml syntax", "domains/sa-vm.toml", ("append", "memory = = 3"),
     "sa-vm.toml: (syntax)", "not valid TOML"),
    ("quote in extra", "domains/sa-vm.toml",
     ("edit", 'extra = "console=hvc0 role=sa"', "extra = 'a\"b'"),
     "sa-vm.toml: extra", "without quotes or backslashes"),
    ("bad on_crash", "domains/sa-vm.toml", ("top", 'on_crash = "explode"'),
     "sa-vm.toml: on_crash", "must be one of"),
    ("rendezvous outside the server's home", "host.toml",
     ("edit", 'rendezvous = "/local/domain/{server}/ipc/direct/{client}"',
      'rendezvous = "/ipc/{server}/{client}"'),
     "host.toml: ipc.rendezvous", "must start with /local/domain/{server}/"),
    ("nic address", "host.toml", ("edit", 'address = "10.0.2.15/24"', 'address = "10.0.2.15"'),
     "host.toml: nic.address", "a.b.c.d/prefix"),
    ("missing size", "domains/sa-vm.toml", ("edit", "size = 4404019", ""),
     "sa-vm.toml: ramdisk.size", "missing (required)"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_a_bad_unit_is_reported_with_its_file_and_key(units_dir: Path, case: tuple) -> None:
    _, file, change, where, phrase = case
    path = units_dir / file
    if change[0] == "append":
        append(path, change[1])
    elif change[0] == "top":
        prepend(path, change[1])
    else:
        edit(path, change[1], change[2])
    found = problems_of(units_dir)
    assert any(where in p and phrase in p for p in found), found


def test_every_problem_is_reported_at_once(units_dir: Path) -> None:
    prepend(units_dir / "domains/sa-vm.toml", "colour = 'red'")
    edit(units_dir / "domains/net-vm.toml", "memory = 256", "memory = 1")
    edit(units_dir / "host.toml", "attempts = 4", "attempts = 0")
    found = problems_of(units_dir)
    assert len(found) == 3
    assert all(re.match(r"^\S+\.toml: \S+: ", p) for p in found), found


def test_a_dependency_cycle_is_printed_as_a_cycle(units_dir: Path) -> None:
    edit(units_dir / "domains/net-vm.toml", 'type = "pv"', 'type = "pv"\nafter = ["workload-vm"]')
    found = problems_of(units_dir)
    assert any("dependency cycle: net-vm -> workload-vm -> net-vm" in p for p in found), found


def test_invalid_units_exit_2_and_touch_nothing(units_dir: Path, tmp_path: Path) -> None:
    prepend(units_dir / "domains/sa-vm.toml", "colour = 'red'")
    root = tmp_path / "root"
    root.mkdir()
    for args in (["check"], ["--dry-run"], ["boot"]):
        result = run_orchestrate(*args, "--units", str(units_dir), "--root", str(root))
        assert result.returncode == 2, result
        out = result.stdout + result.stderr
        assert "sa-vm.toml: colour: unknown key" in out
        assert "nothing was touched" in out
    assert list(root.iterdir()) == []


def test_check_accepts_the_example_and_prints_its_notes() -> None:
    result = run_orchestrate("check", "--units", str(EXAMPLE_UNITS))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[-1] == f"{EXAMPLE_UNITS}: ok, 3 domains"
    notes = [line for line in lines if line.startswith("note: ")]
    hints = [line for line in lines if line.startswith("      hint: ")]
    assert len(notes) == len(hints) == 3 and len(lines) == 7


# --- odd but valid input: accepted, and normalised once for everyone downstream ---------


def test_odd_but_valid_units_are_accepted_in_canonical_form(tmp_path: Path) -> None:
    units = Units.example()
    wl = units.domains["workload-vm"]
    wl["vif"] = [{"ip": "2001:DB8:0:0::0001  10.0.5.103", "backend": "net-vm",
                  "mac": "00:16:3E:0A:0B:0C", "script": "vif-route"},
                 {"ip": "::ffff:10.0.5.104", "backend": "net-vm",
                  "script": "/usr/lib/xen/scripts/vif-bridge"}]
    wl["stop_timeout"] = 12.5
    units.domains["sa-vm"]["readiness"] = "xenstore:feature/vchan-ready"
    units.host["nic"]["address"] = "10.0.2.15/24"
    units.raw["domains/README"] = b"notes for people\n"
    path = units.write(tmp_path / "units")
    # a byte order mark some editors write, and a unit that is a symbolic link
    net = path / "domains/net-vm.toml"
    net.write_bytes(b"\xef\xbb\xbf" + net.read_bytes())
    (tmp_path / "sa.toml").write_bytes((path / "domains/sa-vm.toml").read_bytes())
    (path / "domains/sa-vm.toml").unlink()
    (path / "domains/sa-vm.toml").symlink_to(tmp_path / "sa.toml")

    config = load_units(path)
    vifs = config.domain("workload-vm").vifs
    assert [v.ip for v in vifs] == ["2001:db8::1 10.0.5.103", "10.0.5.104"]
    assert vifs[0].mac == "00:16:3e:0a:0b:0c"
    assert config.domain("workload-vm").stop_timeout == 12.5
    assert config.domain("net-vm").stop_timeout == 30.0
    assert config.domain("sa-vm").readiness.key == "feature/vchan-ready"
    assert [str(n) for n in config.notes if n.key == "(file)"] == [
        f"{path}/domains/README: (file): ignored: only domains/*.toml are units"]


def test_the_passthrough_list_is_one_mapping_in_unit_order() -> None:
    config = load_units(EXAMPLE_UNITS)
    assert {bdf: d.name for bdf, d in config.passthrough().items()} == {
        "0000:00:03.0": "net-vm", "0000:00:04.0": "sa-vm"}


def test_a_restarting_domain_with_peers_or_vif_clients_gets_a_note(tmp_path: Path) -> None:
    units = Units.example()
    units.domains["net-vm"]["on_reboot"] = "destroy"
    units.domains["net-vm"]["on_crash"] = "coredump-restart"
    units.domains["sa-vm"]["on_reboot"] = "preserve"
    units.small_domain("lonely")  # restarts (the default), but nobody depends on it
    path = units.write(tmp_path / "units")
    notes = {n.file.rsplit("/", 1)[-1]: n for n in load_units(path).notes}
    assert set(notes) == {"net-vm.toml", "workload-vm.toml"}
    assert notes["net-vm.toml"].key == "on_crash"
    assert notes["net-vm.toml"].text == (
        '"coredump-restart" gives net-vm a new domid; the vifs of workload-vm stay dead '
        "until orchestrate runs again")
    assert notes["workload-vm.toml"].text == (
        '"restart" gives workload-vm a new domid; its vchan with sa-vm stays dead until '
        "orchestrate runs again")
    assert "orchestrate watch" in notes["net-vm.toml"].hint


def test_an_unreadable_unit_is_reported_without_noise_about_references_to_it(
        tmp_path: Path) -> None:
    units = Units.example()
    units.raw["domains/sa-vm.toml"] = b"\xff"
    path = units.write(tmp_path / "units")
    found = problems_of(path)
    assert found == [f"{path}/domains/sa-vm.toml: (file): not UTF-8 (byte 0xff at offset 0): "
                     "save the file as UTF-8"]


def test_a_thousand_domains_in_one_after_chain_check_and_plan(tmp_path: Path) -> None:
    """Valid, so accepted: loading, cycle search and waves do not recurse per domain."""
    units = Units.example()
    units.domains.clear()
    names = [f"{'abcdefghij'[i // 100]}{i % 100:02d}" for i in range(1000)]
    for i, name in enumerate(names):
        doc = units.small_domain(name, on_reboot="destroy")
        if i:
            doc["after"] = [names[i - 1]]
    path = units.write(tmp_path / "units")
    check = run_orchestrate("check", "--units", str(path))
    assert check.returncode == 0 and check.stdout == f"{path}: ok, 1000 domains\n"
    plan = run_orchestrate("plan", "--units", str(path))
    assert plan.returncode == 0
    waves = [line for line in plan.stdout.splitlines() if line.startswith("wave ")]
    assert waves[0] == "wave 1: a00" and waves[-1] == "wave 1000: j99" and len(waves) == 1000
