"""The appliance's life after the boot, as xl lives it: xl's monitor restarts a domain that
reboots (`xl sysrq D b`) under a new domid, a crash can be preserved, and `orchestrate
shutdown` stops everything in reverse dependency order.

The follower (`orchestrate watch`) runs as the orchestrator-watch service would; what it
restores is read back from the stand-ins (xenstore as each domain, libxl's device
records, the PCI drivers), and `orchestrate status --check` must agree.
"""

from __future__ import annotations

import re
import time

from tests.sandbox.appliance import NIC, USB, Appliance
from tests.sandbox.test_boot import MAP, assert_appliance_up
from tests.sandbox.test_lifecycle import plumbing_is_true


def wait_domid_change(box: Appliance, name: str, old: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        domid = box.domains().get(name)
        if domid is not None and domid != old:
            return domid
        time.sleep(0.05)
    raise AssertionError(f"{name} did not come back under a new domid: {box.domains()}")


def vif_backends(box: Appliance, domid: int) -> list[str]:
    """Where libxl's own record says each vif of domid is served."""
    with box.xs() as xs:
        return [xs.read_str(f"/libxl/{domid}/device/vif/{dev}/backend") or ""
                for dev in xs.directory(f"/libxl/{domid}/device/vif")]


def test_a_rebooted_vchan_server_is_replumbed_by_the_follower(appliance: Appliance) -> None:
    first = assert_appliance_up(appliance, appliance.boot())
    follower = appliance.follower()
    try:
        follower.wait_for(r"follower ready")
        mark = len(follower.lines)
        assert appliance.xl("sysrq", "sa-vm", "b").returncode == 0
        new_sa = wait_domid_change(appliance, "sa-vm", first["sa-vm"])
        follower.wait_for(rf"sa-vm: plumbing restored for domid {new_sa}", after=mark)
        follower.wait_for(r"sa-vm: restarted -> ready", after=mark)
        # if the follower saw the old domain shut down, it said what xl does next
        assert not [ln for ln in follower.lines[mark:] if "crashed" in ln and
                    "xl restarts it (on_reboot = \"restart\")" not in ln]
        restored = [e for e in follower.events() if e.get("event") == "plumbing restored"]
        assert restored[-1]["seconds"] <= 1.0, restored[-1]
        work = first["workload-vm"]
        assert appliance.perms(f"/local/domain/{new_sa}/ipc/direct/{work}") == [
            f"n{new_sa}", f"r{work}"]
        assert appliance.could(work, f"{MAP}/sa-vm", "r")
        plumbing_is_true(appliance)
        assert appliance.driver_of(USB.bdf) == "pciback", "its device went with it, as xl does"
    finally:
        assert follower.stop() == 0


def test_a_rebooted_driver_domain_gets_its_clients_vifs_back(appliance: Appliance) -> None:
    first = assert_appliance_up(appliance, appliance.boot())
    work = first["workload-vm"]
    assert vif_backends(appliance, work) == [
        f"/local/domain/{first['net-vm']}/backend/vif/{work}/0"]
    follower = appliance.follower()
    try:
        follower.wait_for(r"follower ready")
        mark = len(follower.lines)
        assert appliance.xl("sysrq", "net-vm", "b").returncode == 0
        new_net = wait_domid_change(appliance, "net-vm", first["net-vm"])
        follower.wait_for(r"workload-vm: vif \d+ detached from net-vm", after=mark)
        attached = follower.wait_for(
            rf"workload-vm: vif (\d+) attached to net-vm \(domid {new_net}\) in", after=mark)
        devid = re.search(r"vif (\d+) attached", attached)
        assert devid is not None
        assert vif_backends(appliance, work) == [
            f"/local/domain/{new_net}/backend/vif/{work}/{devid[1]}"]
        assert appliance.domains()["workload-vm"] == work, "the client was never restarted"
        plumbing_is_true(appliance)
    finally:
        assert follower.stop() == 0


def test_a_crash_left_preserved_is_said_and_nothing_else_is_touched(
        appliance: Appliance) -> None:
    unit = appliance.units / "domains/sa-vm.toml"
    unit.write_text('on_crash = "preserve"\n' + unit.read_text())
    first = assert_appliance_up(appliance, appliance.boot())
    follower = appliance.follower()
    try:
        follower.wait_for(r"follower ready")
        mark = len(follower.lines)
        before = appliance.tree(MAP)
        assert appliance.xl("sysrq", "sa-vm", "c").returncode == 0
        follower.wait_for(r"sa-vm: ready -> crashed \(domid \d+\): crashed \(xl list: "
                          r"---sc-\), preserved \(on_crash = \"preserve\"\)", after=mark)
        time.sleep(0.5)
        assert appliance.domains()["sa-vm"] == first["sa-vm"], "preserved, same domid"
        assert appliance.tree(MAP) == before, "its plumbing stays while it exists"
        assert appliance.driver_of(USB.bdf) == "pciback"
    finally:
        assert follower.stop() == 0


def test_the_shutdown_stops_clients_first_and_gives_dom0_its_nic_back(
        appliance: Appliance) -> None:
    assert_appliance_up(appliance, appliance.boot())
    follower = appliance.follower()
    follower.wait_for(r"follower ready")
    shutdown = appliance.run("shutdown")
    assert shutdown.code == 0, shutdown.console
    assert shutdown.said(r"orchestrate: OK: 3 domains are stopped, [\d.]+ s \(exit 0\)")
    stopped = [t["domain"] for t in shutdown.transitions() if t["to_state"] == "stopped"]
    assert stopped.index("workload-vm") < stopped.index("sa-vm")
    assert stopped.index("workload-vm") < stopped.index("net-vm")
    levels = [e for e in shutdown.events if e.get("event") == "shutdown level"]
    assert [e["domains"] for e in levels][0] == "workload-vm"
    assert [e["number"] for e in levels] == list(range(1, len(levels) + 1))
    # the console line the review reads (it fell back to key=value when the field was
    # named "level", which structlog's own level overwrote)
    assert shutdown.said(r"shutdown level 1 of \d: workload-vm")
    for t in shutdown.transitions():
        if t["to_state"] == "stopped":
            assert t["cause"] == "shut down" and t["seconds"] is not None
    assert appliance.domains() == {}
    assert appliance.tree(MAP).keys() <= {MAP}, "map entries go with their domains"
    assert appliance.driver_of(NIC.bdf) == "e1000" and appliance.driver_of(USB.bdf) == \
        "xhci_hcd"
    assert appliance.nic_has_address()
    time.sleep(0.5)
    assert not [ln for ln in follower.lines if re.search(r"-> (restarted|gone)", ln)], \
        "the follower stood down: the domains went on purpose"
    assert follower.stop() == 0


def test_a_domain_that_ignores_shutdown_is_destroyed_at_its_deadline(
        appliance: Appliance) -> None:
    appliance.behave({"sa-vm": {"on_shutdown": "ignore"}})
    appliance.domain_setting("sa-vm", None, "ready_timeout", "10")
    unit = appliance.units / "domains/sa-vm.toml"
    unit.write_text("stop_timeout = 1.5\n" + unit.read_text())
    assert_appliance_up(appliance, appliance.boot())
    shutdown = appliance.run("shutdown")
    assert shutdown.code == 1, shutdown.console
    assert shutdown.went("sa-vm", "stopped", r"^destroyed at its 1\.5 s deadline$")
    assert shutdown.went("workload-vm", "stopped", r"^shut down$")
    assert shutdown.said(r"orchestrate: FAILED: sa-vm destroyed")
    assert appliance.domains() == {}


def test_the_follower_revokes_nothing_while_xl_cannot_tell_who_runs(
        appliance: Appliance) -> None:
    from tests.sandbox.fakes import xlstate

    first = assert_appliance_up(appliance, appliance.boot())
    follower = appliance.follower()
    try:
        follower.wait_for(r"follower ready")
        time.sleep(0.5)
        made = sum(1 for c in xlstate.calls(appliance.standin) if c[1:2] == ["list"])
        appliance.behave({"@list": {"fail_after": made}})
        before = appliance.tree(MAP)
        mark = len(follower.lines)
        assert appliance.xl("destroy", "workload-vm").returncode == 0
        follower.wait_for(r"watch failed: `xl list` exited 1", after=mark)
        time.sleep(0.5)
        assert appliance.tree(MAP) == before, "unknown is no verdict: nothing revoked"
        assert not [ln for ln in follower.lines[mark:] if "-> gone" in ln]
        appliance.behave({})  # xl answers again; the next event converges
        mark = len(follower.lines)
        created = appliance.xl("create", str(appliance.root / "run/orchestrator/xl/"
                                              "workload-vm.cfg"))
        assert created.returncode == 0, created.stderr
        follower.wait_for(r"workload-vm: \w+ -> (restarted|adopted)", after=mark)
        follower.wait_for(r"workload-vm: (restarted|adopted) -> ready", after=mark)
        domids = plumbing_is_true(appliance)
        assert domids["sa-vm"] == first["sa-vm"]
    finally:
        assert follower.stop() == 0
