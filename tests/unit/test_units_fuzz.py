"""The unit loader under hypothesis: arbitrary bytes, and arbitrary TOML documents built
from the real keys. Every outcome is a Config (that plans and renders) or InvalidUnits
whose problems are one line each; never another exception.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import InvalidUnits
from orchestrator.topology import build_topology
from orchestrator.units import Config, load_units
from orchestrator.xlcfg import render_xl_config
from tests.unit.unit_docs import Raw, Units

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

HOST_KEYS = {
    "build_server": ("url", "request_timeout", "attempts", "deadline"),
    "nic": ("bdf", "interface", "address", "gateway", "after_handoff", "vif_mac",
            "vif_script"),
    "xen": ("modules", "tools_path", "xenstored_args", "xenconsoled_args", "autoballoon"),
    "paths": ("images", "state"),
    "deadlines": ("boot", "xenstored", "command", "create"),
    "ipc": ("domain_map", "rendezvous"),
}
DOMAIN_KEYS = ("name", "type", "memory", "vcpus", "extra", "pci", "after", "readiness",
               "ready_timeout", "stop_timeout", "on_poweroff", "on_reboot", "on_crash")
DOMAIN_TABLES = {"kernel": ("url", "sha256", "size"), "ramdisk": ("url", "sha256", "size"),
                 "ipc": ("serve", "connect")}
VIF_KEYS = ("ip", "backend", "mac", "bridge", "script", "at_create")

PLAUSIBLE = [
    "net-vm", "sa-vm", "workload-vm", "Domain-0", "0", "pv", "pvh", "restart", "destroy",
    "running", "connected", "xenstore:data/ready", "xenstore:name", "xenstore:data",
    "0000:00:03.0", "0000:00:04.0", "vif", "none", "10.0.5.103", "10.0.2.15", "dhcp",
    "10.0.2.15/24",
    "::ffff:10.0.5.103", "2001:db8::1", "00:16:3e:00:00:01", "ff:ff:ff:ff:ff:ff", "eth0",
    "vif-route", "../x", "/etc/xen/scripts/vif-nat", "/run/x", "/", "/proc", "/ipc/map",
    "/local/domain/0", "/local/domain/{server}/ipc/direct/{client}", "guest/vmlinux",
    "http://10.0.2.100/images/", "http://u:p@h/", "http://[::1/", "ab" * 32, "",
]
scalars = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.just(Raw("1979-05-27T07:32:00Z")),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(VIF_KEYS + ("x",)), inner,
                                                 max_size=3)), max_leaves=8)


@st.composite
def edits(draw: st.DrawFn, keys: list[tuple[str | None, str]]) -> list[tuple[Any, ...]]:
    """Some (table, key) of the real keys set to a value or removed, and a stray key."""
    chosen = draw(st.lists(st.sampled_from(keys), max_size=6, unique=True))
    out: list[tuple[Any, ...]] = [(t, k, draw(st.one_of(values, st.just(None))))
                                  for t, k in chosen]
    if draw(st.integers(0, 9)) == 0:
        out.append((None, draw(st.text(min_size=1, max_size=10)), draw(scalars)))
    return out


def apply(doc: dict[str, Any], changes: list[tuple[Any, ...]]) -> None:
    for table, key, value in changes:
        target = doc if table is None else doc.setdefault(table, {})
        if not isinstance(target, dict):
            continue
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value


HOST_EDIT_KEYS = [(t, k) for t, ks in HOST_KEYS.items() for k in ks]
DOMAIN_EDIT_KEYS = [(None, k) for k in DOMAIN_KEYS] + \
    [(t, k) for t, ks in DOMAIN_TABLES.items() for k in ks] + [(None, "vif")]


def outcome(units: Path) -> Config | InvalidUnits:
    try:
        config = load_units(units)
    except InvalidUnits as exc:
        for problem in exc.problems:
            assert "\n" not in str(problem) and str(problem).startswith(str(units)), problem
        return exc
    topology = build_topology(config)  # anything accepted plans ...
    assert sum(len(w) for w in topology.waves) == len(config.domains)
    for domain in config.domains:  # ... and renders
        render_xl_config(domain, "/img/k", "/img/r")
    return config


@FUZZ
@given(st.sampled_from(["host.toml", "domains/sa-vm.toml"]), st.binary(max_size=2000))
def test_arbitrary_bytes_as_a_unit_are_a_config_or_invalid_units(file: str,
                                                                  data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        units = Units.example()
        units.raw[file] = data
        outcome(units.write(Path(tmp) / "units"))


@FUZZ
@given(edits(HOST_EDIT_KEYS), st.sampled_from(["net-vm", "sa-vm", "workload-vm"]),
       edits(DOMAIN_EDIT_KEYS))
def test_arbitrary_documents_of_the_real_keys_are_a_config_or_invalid_units(
        host_changes: list[tuple[Any, ...]], name: str,
        domain_changes: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        units = Units.example()
        apply(units.host, host_changes)
        apply(units.domains[name], domain_changes)
        outcome(units.write(Path(tmp) / "units"))


@FUZZ
@given(st.lists(st.fixed_dictionaries({}, optional={k: values for k in VIF_KEYS}),
                max_size=3))
def test_arbitrary_vifs_are_a_config_or_invalid_units(vifs: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        units = Units.example()
        units.domains["workload-vm"]["vif"] = vifs
        units.domains["workload-vm"]["readiness"] = "running"
        outcome(units.write(Path(tmp) / "units"))
