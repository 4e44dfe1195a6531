"""The live xenstore adapter (pyxs under our deadlines) against the wire-protocol stand-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyxs import Client

from orchestrator.ipc import provisioning_plan
from orchestrator.log import get_logger
from orchestrator.topology import build_topology
from orchestrator.units import load_units
from orchestrator.xenstore import PyxsXenstore, XenstoreError
from tests.conftest import EXAMPLE_UNITS
from tests.sandbox.fakes.xenstored import FakeXenstored

MAP = "/ipc/domain-map"
RDV = "/local/domain/{server}/ipc/direct/{client}"


@pytest.fixture
def xenstored(tmp_path: Path) -> Iterator[FakeXenstored]:
    with FakeXenstored(tmp_path / "socket") as fake:
        yield fake


def introduce(fake: FakeXenstored, *domids: int) -> None:
    with Client(unix_socket_path=str(fake.socket_path)) as c:
        for domid in domids:
            c.mkdir(f"/local/domain/{domid}".encode())
            c.introduce_domain(domid, 1000 + domid, 1)


def test_a_mute_xenstored_fails_within_our_deadline_instead_of_hanging(tmp_path: Path) -> None:
    with FakeXenstored(tmp_path / "mute", mute=True):
        store = PyxsXenstore(str(tmp_path / "mute"), 0.5, get_logger())
        started = time.monotonic()
        with pytest.raises(XenstoreError, match="did not answer"):
            store.read("/")
        assert time.monotonic() - started < 2.0


def test_a_missing_socket_is_a_clear_error(tmp_path: Path) -> None:
    store = PyxsXenstore(str(tmp_path / "nothing"), 0.5, get_logger())
    with pytest.raises(XenstoreError, match="No such file or directory") as info:
        store.read("/")
    assert info.value.hint is not None and str(tmp_path / "nothing") in info.value.hint


def test_the_example_plan_gives_least_privilege(xenstored: FakeXenstored) -> None:
    introduce(xenstored, 1, 2, 3)
    topology = build_topology(load_units(EXAMPLE_UNITS))
    nodes = provisioning_plan(topology, MAP, RDV, {"net-vm": 1, "sa-vm": 2, "workload-vm": 3})
    store = PyxsXenstore(str(xenstored.socket_path), 2.0, get_logger())
    store.apply(nodes)  # reads back and compares itself
    rdv = "/local/domain/2/ipc/direct/3"
    assert store.get_perms(rdv) == ["n2", "r3"]
    # sa-vm owns the rendezvous and may write its ring-ref; workload-vm only reads it;
    # net-vm, a third domain, can do neither (the seeds' `b2 r3` would let it write).
    assert xenstored.could(2, rdv, "w") and xenstored.could(3, rdv, "r")
    assert not xenstored.could(3, rdv, "w")
    assert not xenstored.could(1, rdv, "r") and not xenstored.could(1, rdv, "w")
    assert xenstored.could(3, f"{MAP}/sa-vm", "r") and not xenstored.could(1, f"{MAP}/sa-vm", "r")
    assert not xenstored.could(3, MAP, "r")  # the directory stays dom0's
    assert store.read(f"{MAP}/workload-vm") == "3"
    store.close()


def test_removing_stale_entries_and_rewriting_is_one_transaction(
        xenstored: FakeXenstored) -> None:
    introduce(xenstored, 4)
    store = PyxsXenstore(str(xenstored.socket_path), 2.0, get_logger())
    topology = build_topology(load_units(EXAMPLE_UNITS))
    store.apply(provisioning_plan(topology, MAP, RDV, {"sa-vm": 4, "net-vm": 9}))
    store.apply(provisioning_plan(topology, MAP, RDV, {"sa-vm": 4}), remove=[f"{MAP}/net-vm"])
    assert store.directory(MAP) == ["sa-vm"]
    store.close()


def test_wait_returns_on_the_watch_event_not_a_sleep_loop(xenstored: FakeXenstored) -> None:
    store = PyxsXenstore(str(xenstored.socket_path), 2.0, get_logger())
    key = "/local/domain/5/data/ready"

    def guest_writes_later() -> None:
        time.sleep(0.3)
        with Client(unix_socket_path=str(xenstored.socket_path)) as c:
            c.write(key.encode(), b"1")

    threading.Thread(target=guest_writes_later, daemon=True).start()
    started = time.monotonic()
    # tick=30: only the watch event can end this wait early
    outcome = store.wait([key], lambda _: "ready" if store.read(key) else None, 5.0, "ready",
                         tick=30.0)
    assert outcome == "ready"
    assert time.monotonic() - started < 2.0
    store.close()


def test_wait_times_out_with_what_it_waited_for(xenstored: FakeXenstored) -> None:
    store = PyxsXenstore(str(xenstored.socket_path), 2.0, get_logger())
    with pytest.raises(XenstoreError, match="waiting for net-vm data/ready"):
        store.wait(["/local/domain/6/data/ready"], lambda _: None, 0.4, "net-vm data/ready")
