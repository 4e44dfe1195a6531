"""Permission computation for the domain map and the vchan rendezvous nodes."""

from __future__ import annotations

from orchestrator.ipc import owner_only, placeholder_domid, provisioning_plan
from orchestrator.topology import build_topology
from orchestrator.units import load_units
from tests.conftest import EXAMPLE_UNITS

MAP = "/ipc/domain-map"
RDV = "/local/domain/{server}/ipc/direct/{client}"


def plan(domids: dict[str, int | str]) -> dict[str, tuple[str | None, str]]:
    topology = build_topology(load_units(EXAMPLE_UNITS))
    return {n.path: (n.value, n.perms_text())
            for n in provisioning_plan(topology, MAP, RDV, domids)}


def test_every_list_starts_with_n_so_unlisted_domains_get_nothing() -> None:
    # Entry 0 is the owner AND everybody else's access: `b2 r3` is world-writable.
    for domids in ({}, {"sa-vm": 2}, {"net-vm": 1, "sa-vm": 2, "workload-vm": 3}):
        for _, perms in plan(domids).values():
            assert perms.startswith("n"), perms
    assert str(owner_only(5, [5, 7, 7])[0]) == "n5"
    assert [str(p) for p in owner_only(5, [5, 7, 7])] == ["n5", "r7"]


def test_all_three_domains_get_least_privilege_entries() -> None:
    assert plan({"net-vm": 1, "sa-vm": 2, "workload-vm": 3}) == {
        "/ipc": (None, "n0"),
        "/ipc/domain-map": (None, "n0"),
        "/ipc/domain-map/net-vm": ("1", "n0 r1"),
        "/ipc/domain-map/sa-vm": ("2", "n0 r2 r3"),
        "/ipc/domain-map/workload-vm": ("3", "n0 r2 r3"),
        "/local/domain/2/ipc/direct/3": (None, "n2 r3"),
        # each guest is told its peers by name, readable by it alone (net-vm has none)
        "/local/domain/2/ipc/serve": ("workload-vm", "n0 r2"),
        "/local/domain/2/ipc/connect": (None, "n0 r2"),
        "/local/domain/3/ipc/serve": (None, "n0 r3"),
        "/local/domain/3/ipc/connect": ("sa-vm", "n0 r3"),
    }


def test_grants_arrive_with_the_peer_and_never_name_an_absent_domain() -> None:
    # xenstored ignores grants to domids that do not exist yet: only name live ones.
    early = plan({"sa-vm": 2})
    assert early["/ipc/domain-map/sa-vm"] == ("2", "n0 r2")
    assert not any("ipc/direct" in path for path in early)
    later = plan({"sa-vm": 2, "workload-vm": 7})
    assert later["/ipc/domain-map/sa-vm"] == ("2", "n0 r2 r7")
    assert later["/local/domain/2/ipc/direct/7"] == (None, "n2 r7")


def test_a_dry_run_shows_placeholders_not_invented_numbers() -> None:
    ids = {n: placeholder_domid(n) for n in ("net-vm", "sa-vm", "workload-vm")}
    p = plan(ids)
    assert p["/local/domain/<domid:sa-vm>/ipc/direct/<domid:workload-vm>"] == \
        (None, "n<domid:sa-vm> r<domid:workload-vm>")
