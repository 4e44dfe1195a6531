"""The dependency graph and its waves."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.topology import build_topology, find_cycle
from orchestrator.units import Config, DomainUnit, Image, Readiness, Vif, load_units
from tests.conftest import EXAMPLE_UNITS


def dom(name: str, after: tuple[str, ...] = (), backend: str | None = None,
        serve: tuple[str, ...] = (), connect: tuple[str, ...] = (),
        wait_for_servers: bool = True) -> DomainUnit:
    return DomainUnit(
        name=name, source=f"{name}.toml", type="pv", memory=128, vcpus=1,
        kernel=Image("http://h/k", "a" * 64, 1, f"{name}.kernel"), ramdisk=None, extra="",
        pci=(), vifs=(Vif(backend=backend),) if backend else (), after=after,
        readiness=Readiness("running", None, 10), serve=serve, connect=connect,
        on_poweroff="destroy", on_reboot="restart", on_crash="destroy",
        wait_for_servers=wait_for_servers,
    )


def topo(*domains: DomainUnit):  # type: ignore[no-untyped-def]
    host = load_units(EXAMPLE_UNITS).host
    return build_topology(Config(units_dir="u", host=host, domains=domains))


def test_example_starts_net_vm_and_sa_vm_together_then_workload_vm() -> None:
    topology = build_topology(load_units(EXAMPLE_UNITS))
    assert topology.waves == (("net-vm", "sa-vm"), ("workload-vm",))
    reasons = {(e.before, e.after): e.reason for e in topology.edges}
    assert reasons == {
        ("net-vm", "workload-vm"): "vif backend= (attached once ready)",
        ("sa-vm", "workload-vm"): "ipc serve, ipc connect (once created: wait_for_servers = "
                                  "false)",
    }
    assert topology.ipc_pairs == (("sa-vm", "workload-vm"),)


def test_independent_domains_share_the_first_wave() -> None:
    assert topo(dom("a"), dom("b"), dom("c")).waves == (("a", "b", "c"),)


def test_a_domain_waits_for_its_longest_chain() -> None:
    # c needs a directly and b (which needs a): c must be in the third wave
    t = topo(dom("a"), dom("b", after=("a",)), dom("c", after=("a", "b")))
    assert t.waves == (("a",), ("b",), ("c",))
    assert t.needs("c") == ("a", "b")
    assert t.dependents("a") == ("b", "c")


def test_ipc_declared_on_one_side_only_still_orders_client_after_server() -> None:
    t = topo(dom("client", connect=("server",)), dom("server"))
    assert t.waves == (("server",), ("client",))
    assert t.ipc_pairs == (("server", "client"),)
    assert t.peers("server") == ("client",)


def test_cycles_are_found_with_their_path() -> None:
    assert find_cycle([dom("a", after=("b",)), dom("b", after=("a",))]) == ["a", "b", "a"]
    # b -> a (vif backend), a -> c (ipc serve), c -> b (after)
    assert find_cycle([dom("a", backend="b", serve=("c",)), dom("b", after=("c",)), dom("c")]) \
        == ["a", "c", "b", "a"]
    assert find_cycle([dom("a"), dom("b", after=("a",))]) is None


def test_plan_prints_waves_and_the_edges_behind_them(tmp_path: Path) -> None:
    from tests.conftest import run_orchestrate

    result = run_orchestrate("plan", "--units", str(EXAMPLE_UNITS))
    assert result.returncode == 0
    assert result.stdout.splitlines()[:5] == [
        "wave 1: net-vm, sa-vm",
        "wave 2: workload-vm",
        "  net-vm -> workload-vm  (vif backend= (attached once ready))",
        "  sa-vm -> workload-vm  (ipc serve, ipc connect (once created: wait_for_servers = "
        "false))",
        "passthrough: 0000:00:03.0 -> net-vm (after fetch-images)",
    ]
    # when each vif attaches (issue 11: the shorter critical path)
    assert result.stdout.splitlines()[-1] == (
        "vif: workload-vm vif[0] -> net-vm: created without it; attached once net-vm is "
        "ready (xl network-attach)")


def test_a_chain_of_a_thousand_domains_needs_no_recursion() -> None:
    """Cycle search and waves are iterative: they work 50 frames above this test's."""
    import sys

    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    names = [f"d{i:03d}" for i in range(1000)]
    chain = [dom(n, after=(names[i - 1],) if i else ()) for i, n in enumerate(names)]
    closed = [dom(names[0], after=(names[-1],)), *chain[1:]]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 50)
    try:
        t = topo(*chain)
        cycle = find_cycle(closed)
        no_cycle = find_cycle(chain)
        dependents = t.dependents(names[0])
    finally:
        sys.setrecursionlimit(limit)
    assert t.waves == tuple((n,) for n in names)
    assert t.needs(names[500]) == (names[499],)
    assert dependents == tuple(names[1:])
    assert cycle == [*names, names[0]]
    assert no_cycle is None


def test_build_topology_refuses_a_cycle_it_was_not_meant_to_see() -> None:
    with pytest.raises(ValueError, match="dependency cycle"):
        topo(dom("a", after=("b",)), dom("b", after=("a",)))


def test_a_vif_attached_later_is_no_create_dependency_but_orders_the_shutdown() -> None:
    import dataclasses

    from orchestrator.scheduler import backwards, forwards

    config = load_units(EXAMPLE_UNITS)
    topology = build_topology(config)
    assert topology.needs("workload-vm") == (), "created once sa-vm is created"
    assert topology.created_needs("workload-vm") == ("sa-vm",)
    assert topology.later_backends("workload-vm") == ("net-vm",)
    assert forwards(topology)["workload-vm"] == ()
    assert backwards(topology)["net-vm"] == ("workload-vm",), "it stops after its client"
    work = config.domain("workload-vm")
    at_create = dataclasses.replace(work, vifs=(dataclasses.replace(work.vifs[0],
                                                                     at_create=True),))
    other = tuple(d for d in config.domains if d.name != "workload-vm")
    topology = build_topology(dataclasses.replace(config, domains=(*other, at_create)))
    assert topology.needs("workload-vm") == ("net-vm",), "today's behaviour, per vif"


def test_a_client_that_does_not_wait_for_its_servers_needs_them_created_only() -> None:
    """wait_for_servers = false: the vchan server (declared on either side) must be
    created and provisioned first, not ready; the shutdown still stops the client first."""
    from orchestrator.scheduler import backwards, forwards, forwards_early

    for client, server in ((dom("client", connect=("server",), wait_for_servers=False),
                            dom("server")),
                           (dom("client", wait_for_servers=False),
                            dom("server", serve=("client",)))):
        t = topo(client, server)
        assert t.needs("client") == () and forwards(t)["client"] == ()
        assert t.created_needs("client") == ("server",)
        assert forwards_early(t)["client"] == ("server",)
        assert t.later_backends("client") == ()
        assert backwards(t)["server"] == ("client",)
        assert t.waves == (("server",), ("client",)), "plan still shows the order"
        [edge] = t.edges
        assert edge.reason.endswith("(once created: wait_for_servers = false)")
    # another reason to wait for readiness wins: after= keeps the edge hard
    t = topo(dom("client", after=("server",), connect=("server",), wait_for_servers=False),
             dom("server"))
    assert t.needs("client") == ("server",) and t.created_needs("client") == ()
