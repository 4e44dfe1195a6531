"""After the boot: a re-run never harms a running domain, and the follower keeps the
plumbing true when domains come back under new domids or go away for good.

The domains here change the way an operator or xl's monitor changes them, through the xl
stand-in (`xl destroy`, `xl create`): a domain that comes back under the same name gets a
new domid, and everything dom0 provisioned for the old one is stale.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.sandbox.appliance import NIC, USB, Appliance
from tests.sandbox.test_boot import MAP, assert_appliance_up, perm_set


def recreate(box: Appliance, name: str) -> int:
    """Destroy `name` and create it again from orchestrate's own config: a new domid."""
    assert box.xl("destroy", name).returncode == 0
    created = box.xl("create", str(box.root / f"run/orchestrator/xl/{name}.cfg"))
    assert created.returncode == 0, created.stderr
    return box.domains()[name]


def plumbing_is_true(box: Appliance) -> dict[str, int]:
    """The map names the current domids, the rendezvous node is under the current server's
    home granted to the current client, the peers are published, nothing names a dead
    domid; `orchestrate status --check` agrees."""
    domids = box.domains()
    net, sa, work = domids["net-vm"], domids["sa-vm"], domids["workload-vm"]
    for name, domid in domids.items():
        assert box.read(f"{MAP}/{name}") == str(domid)
    assert box.perms(f"{MAP}/net-vm") == ["n0", f"r{net}"]
    assert perm_set(box, f"{MAP}/sa-vm") == ("n0", {f"r{sa}", f"r{work}"})
    assert perm_set(box, f"{MAP}/workload-vm") == ("n0", {f"r{sa}", f"r{work}"})
    assert box.perms(f"/local/domain/{sa}/ipc/direct/{work}") == [f"n{sa}", f"r{work}"]
    assert box.read(f"/local/domain/{sa}/ipc/serve") == "workload-vm"
    assert box.read(f"/local/domain/{work}/ipc/connect") == "sa-vm"
    check = box.run("status", "--check")
    assert check.code == 0, check.console
    return domids


def test_a_rerun_after_a_domain_came_back_under_a_new_domid_converges(
        appliance: Appliance) -> None:
    first = assert_appliance_up(appliance, appliance.boot())
    new_sa = recreate(appliance, "sa-vm")
    assert new_sa != first["sa-vm"]
    stale = appliance.run("status", "--check")
    assert stale.code == 1
    assert stale.said(rf"differs: {MAP}/sa-vm: value differs \(want '{new_sa}'\)")
    assert stale.said(rf"differs: /local/domain/{new_sa}/ipc/direct/{first['workload-vm']}: "
                      "missing")

    again = appliance.boot()
    assert again.code == 0, again.console
    assert again.went("sa-vm", "adopted",
                      rf"already running as domid {new_sa} \(was domid {first['sa-vm']}")
    assert len(appliance.xl_calls("create")) == 4, "three at boot, one by hand: none by us"
    plumbing_is_true(appliance)
    assert appliance.driver_of(USB.bdf) == "pciback", "sa-vm's device stays with sa-vm"


def test_a_rerun_never_harms_a_running_domain_that_is_not_ready(appliance: Appliance) -> None:
    """A guest deleted its own readiness key: a re-run says so and touches nothing of it
    (the audit saw the NIC put back on e1000 under a running net-vm)."""
    domids = assert_appliance_up(appliance, appliance.boot())
    net = domids["net-vm"]
    with appliance.xs(as_domain=net) as guest:
        guest.rm(f"/local/domain/{net}/data/ready")
    appliance.domain_setting("net-vm", None, "ready_timeout", "1")
    before = appliance.tree(MAP)

    again = appliance.boot()
    assert again.code == 1, again.console
    assert again.said(rf"net-vm \(domid {net}\) runs but is not ready: timed out")
    assert not again.went("net-vm", "failed")
    assert again.domain_states()["net-vm"] == "adopted"
    assert appliance.domains() == domids, "nothing destroyed, nothing created"
    assert appliance.driver_of(NIC.bdf) == "pciback", "the NIC stays with net-vm"
    assert appliance.nic() is None, "dom0 did not take the NIC back"
    assert appliance.tree(MAP) == before, "map entries and grants untouched"
    assert again.went("workload-vm", "ready"), "its client is adopted and ready as before"


def test_a_domain_destroyed_by_hand_is_created_again_by_a_rerun(appliance: Appliance) -> None:
    first = assert_appliance_up(appliance, appliance.boot())
    assert appliance.xl("destroy", "workload-vm").returncode == 0
    again = appliance.boot()
    assert again.code == 0, again.console
    assert again.went("workload-vm", "created") and again.went("workload-vm", "ready")
    domids = plumbing_is_true(appliance)
    assert domids["workload-vm"] != first["workload-vm"]
    assert {k: v for k, v in domids.items() if k != "workload-vm"} == {
        k: v for k, v in first.items() if k != "workload-vm"}


def test_the_follower_replumbs_a_domain_that_came_back_within_a_second(
        appliance: Appliance) -> None:
    first = assert_appliance_up(appliance, appliance.boot())
    follower = appliance.follower()
    try:
        follower.wait_for(r"follower ready")
        mark = len(follower.lines)
        started = time.monotonic()
        new_sa = recreate(appliance, "sa-vm")
        follower.wait_for(r"sa-vm\b.*\bplumbing restored|plumbing restored.*sa-vm",
                          after=mark)
        restored = [e for e in follower.events() if e.get("event") == "plumbing restored"
                    and e.get("domain") == "sa-vm"]
        assert restored and restored[-1]["domid"] == new_sa
        assert restored[-1]["seconds"] <= 1.0, restored[-1]
        follower.wait_for(r"sa-vm: restarted -> ready", after=mark)
        assert time.monotonic() - started < 10
        plumbing_is_true(appliance)
        assert appliance.domains()["workload-vm"] == first["workload-vm"]
    finally:
        assert follower.stop() == 0


def test_the_follower_revokes_everything_naming_a_domain_gone_for_good(
        appliance: Appliance) -> None:
    first = assert_appliance_up(appliance, appliance.boot())
    follower = appliance.follower()
    try:
        follower.wait_for(r"follower ready")
        mark = len(follower.lines)
        assert appliance.xl("destroy", "sa-vm").returncode == 0
        follower.wait_for(r"sa-vm: \w+ -> gone", after=mark)
        time.sleep(0.5)
        work = first["workload-vm"]
        assert f"{MAP}/sa-vm" not in appliance.tree(MAP)
        assert appliance.perms(f"{MAP}/workload-vm") == ["n0", f"r{work}"], \
            "no grant names the dead domid (a reused domid must never inherit access)"
        assert appliance.read(f"/local/domain/{work}/ipc/connect") == "sa-vm", \
            "the peer's name stays published: it may come back"
        assert appliance.driver_of(USB.bdf) == "pciback", \
            "dom0 only takes devices back from domains it destroyed itself"
    finally:
        assert follower.stop() == 0


def test_a_follower_killed_mid_event_converges_when_it_starts_again(
        appliance: Appliance) -> None:
    assert_appliance_up(appliance, appliance.boot())
    follower = appliance.follower()
    follower.wait_for(r"follower ready")
    follower.stop(sig=9)
    recreate(appliance, "sa-vm")  # nobody follows now
    again = appliance.follower()
    try:
        again.wait_for(r"sa-vm: restarted -> ready")
        plumbing_is_true(appliance)
    finally:
        assert again.stop() == 0


def wakeups(pid: int) -> int:
    """Context switches of every thread of pid so far (/proc/<pid>/task/*/status)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def test_an_idle_follower_wakes_for_nothing(appliance: Appliance) -> None:
    import psutil

    assert_appliance_up(appliance, appliance.boot())
    follower = appliance.follower()
    try:
        follower.wait_for(r"follower ready")
        time.sleep(1.0)  # its first reconcile is done
        proc = psutil.Process(follower.proc.pid)
        cpu, woke = proc.cpu_times(), wakeups(proc.pid)
        time.sleep(10)
        spent = sum(proc.cpu_times()[:2]) - sum(cpu[:2])
        assert spent == 0.0, f"{spent} s of CPU in 10 s idle"
        assert wakeups(proc.pid) == woke, "a thread of the follower woke up while idle"
        assert proc.memory_info().rss / 2**20 < 40
    finally:
        assert follower.stop() == 0
