"""End to end: the real `orchestrate` boots the example appliance on a fake dom0.

Stand-ins behave like Xen 4.17's toolstack, the kernel's PCI sysfs and a build server
(tests/sandbox/appliance.py); everything asserted here is read back from them: the
hypervisor's domain list, xenstore over the wire protocol (as dom0 and as each domain),
the PCI driver links, dom0's network, the files in the image directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat

import pytest

from tests.sandbox.appliance import (
    DOMAINS,
    IMAGE_DIR,
    IMAGE_SIZES,
    NIC,
    USB,
    Appliance,
    Boot,
    image_bytes,
    stored_name,
)

MAP = "/ipc/domain-map"


def assert_appliance_up(box: Appliance, boot: Boot) -> dict[str, int]:
    """Everything a finished boot promises; returns {name: domid}."""
    assert boot.code == 0, boot.console
    assert boot.lines(r"orchestrate: OK: 3 domains are ready")
    domids = box.domains()
    assert sorted(domids) == sorted(DOMAINS), "exactly one domain per unit"
    states = {d["name"]: d["state"] for d in _records(box)}
    assert set(states.values()) == {"running"}, states
    # the name -> domid map and the vchan rendezvous, least privilege
    for name, domid in domids.items():
        assert box.read(f"{MAP}/{name}") == str(domid)
    net, sa, work = domids["net-vm"], domids["sa-vm"], domids["workload-vm"]
    assert box.perms(MAP) == ["n0"]
    assert box.perms(f"{MAP}/net-vm") == ["n0", f"r{net}"]
    assert perm_set(box, f"{MAP}/sa-vm") == ("n0", {f"r{sa}", f"r{work}"})
    assert perm_set(box, f"{MAP}/workload-vm") == ("n0", {f"r{work}", f"r{sa}"})
    rendezvous = f"/local/domain/{sa}/ipc/direct/{work}"
    assert box.perms(rendezvous) == [f"n{sa}", f"r{work}"]
    assert box.could(sa, rendezvous, "w") and box.could(work, rendezvous, "r")
    assert not box.could(work, rendezvous, "w") and not box.could(net, rendezvous, "r")
    assert box.could(work, f"{MAP}/sa-vm", "r") and not box.could(net, f"{MAP}/sa-vm", "r")
    assert not box.could(net, f"{MAP}/workload-vm", "r")
    # devices on pciback, the NIC gone from dom0 with them
    assert box.driver_of(NIC.bdf) == "pciback" and box.driver_of(USB.bdf) == "pciback"
    assert box.nic() is None
    # images: exactly the pinned bytes, nothing half-written beside them
    # one kernel shared by the three domains: fetched and stored once
    assert box.image_dir_files() == sorted(stored_name(n) for n in IMAGE_SIZES)
    return domids


def perm_set(box: Appliance, path: str) -> tuple[str, set[str]]:
    """(owner entry, the grants): the order of grants carries no meaning."""
    perms = box.perms(path)
    assert perms, f"{path} is missing"
    return perms[0], set(perms[1:])


def _records(box: Appliance) -> list[dict[str, object]]:
    from tests.sandbox.fakes import xlstate

    return list(xlstate.domains(box.standin).values())


def test_a_cold_boot_brings_the_appliance_up_and_exits(appliance: Appliance) -> None:
    boot = appliance.boot()
    domids = assert_appliance_up(appliance, boot)

    # step 1: modules, /dev/xen/* from /proc/misc, /dev/hvc0, xenfs, run dirs
    misc = {line.split()[1][4:]: int(line.split()[0])
            for line in (appliance.root / "proc/misc").read_text().splitlines()
            if line.split()[1].startswith("xen/")}
    assert {"evtchn", "gntdev", "privcmd", "xenbus"} <= set(misc)
    for name, minor in misc.items():
        st = os.lstat(appliance.root / "dev/xen" / name)
        assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 10
        assert os.minor(st.st_rdev) == minor and stat.S_IMODE(st.st_mode) == 0o600
    hvc0 = os.lstat(appliance.root / "dev/hvc0")
    assert (os.major(hvc0.st_rdev), os.minor(hvc0.st_rdev)) == (229, 0)
    assert any(" /proc/xen xenfs " in line for line in
               (appliance.root / "proc/mounts").read_text().splitlines())
    # step 2: the daemons run, dom0 is set up, xl will not balloon dom0
    assert appliance.read("/local/domain/0/name") == "Domain-0"
    kinds = [p["kind"] for p in appliance.processes()]
    assert kinds.count("xenstored") == 1 and kinds.count("xenconsoled") == 1
    assert 'autoballoon="off"' in (appliance.root / "etc/xen/xl.conf").read_text()
    # every image fetched once, with the NIC up at the time
    for name in IMAGE_SIZES:
        served = appliance.server.requests_for(f"/images/{name}")
        assert [r.status for r in served] == [200], "each distinct image fetched once"
    # the guests could read what they were given, and only that
    net = domids["net-vm"]
    assert appliance.could(net, f"{MAP}/net-vm", "r")
    # step 8: nothing of ours runs; xl's monitors (one per domain) are expected, and said
    for name in DOMAINS:
        assert boot.lines(rf"expected: xl monitor of {name}, pid \d+")
    assert len(appliance.processes("monitor")) == 3
    # the state file tells `orchestrate status` the same story
    assert all(s == "ok" for s in boot.step_status().values()), boot.step_status()
    assert boot.domain_states() == dict.fromkeys(DOMAINS, "ready")
    # every domain went through its lifecycle, each transition journaled in state.json
    for name in DOMAINS:
        assert [(t["from_state"], t["to_state"]) for t in boot.transitions(name)] == [
            ("pending", "created"), ("created", "provisioned"), ("provisioned", "booting"),
            ("booting", "ready")]
        journal = [(j["from"], j["to"], j["domid"]) for j in boot.state["journal"]
                   if j["domain"] == name]
        assert journal[-1] == ("booting", "ready", domids[name])


def test_the_boot_runs_no_xenstore_client_programs(appliance: Appliance) -> None:
    """xenstore is spoken over the socket (pyxs); the programs run are the toolstack's."""
    boot = appliance.boot()
    assert boot.code == 0, boot.console
    programs = boot.programs
    assert not [p for p in programs if p.startswith("xenstore-")]
    assert set(programs) == {"modprobe", "mount", "xenstored", "xen-init-dom0", "xenconsoled",
                             "xl", "ip"}
    assert programs.count("xenstored") == 1 and programs.count("xen-init-dom0") == 1
    creates = [c for c in boot.state["commands"] if c["argv"][:2] == ["xl", "create"]]
    assert len(creates) == 3 and all(c["argv"][2] == "-p" for c in creates)


def test_the_console_is_ascii_one_event_a_line_and_fits_80_columns(
        appliance: Appliance) -> None:
    boot = appliance.boot()
    assert boot.code == 0, boot.console
    lines = boot.console.splitlines()
    assert len(lines) == len(boot.events), "one console line per event"
    for line, event in zip(lines, boot.events, strict=True):
        assert line.isascii()
        assert line.startswith("[")
        # an action shows an exact argv or path; everything else fits a serial console
        shown = line.replace(str(appliance.root), "").replace(str(appliance.units), "UNITS")
        # as at a dom0's boot: this machine's uptime may have more digits than `%6.1f`
        shown = re.sub(r"^\[ *\d+\.\d\]", "[  12.3]", shown)
        if event["event"] != "action":
            assert len(shown) <= 80, shown
    verdict = boot.events[-1]
    assert verdict["event"] == "verdict" and (verdict["word"], verdict["code"]) == ("OK", 0)


def test_its_own_footprint_is_reported_and_small(appliance: Appliance) -> None:
    boot = appliance.boot()
    assert boot.code == 0, boot.console
    usage = boot.state["usage"]
    assert 0 < usage["cpu_seconds"] < 5
    assert 5 < usage["peak_rss_mib"] <= 40  # aim 30 MB; measured figures in the issue note
    assert boot.lines(r"orchestrate: \d+\.\d\d s CPU, peak RSS \d+\.\d MiB, \d+ programs run")


def test_a_second_run_adopts_everything_and_duplicates_nothing(appliance: Appliance) -> None:
    first = assert_appliance_up(appliance, appliance.boot())
    creates = len(appliance.xl_calls("create"))
    requests = len(appliance.server.requests)

    again = appliance.boot()
    assert assert_appliance_up(appliance, again) == first, "same domains, same domids"
    assert len(appliance.xl_calls("create")) == creates, "no second xl create"
    assert len(appliance.server.requests) == requests, "no image fetched twice"
    for name, domid in first.items():
        assert again.went(name, "adopted", rf"^already running as domid {domid}$")
        assert again.went(name, "ready")
    assert again.said("xenstored answers on .*: already done")
    assert again.said(r"0000:00:03.0 on pciback: already done")
    # a converged xenstore is not rewritten
    assert not again.lines(r"xenstore (write|mkdir|set-perms|rm) ")
    kinds = [p["kind"] for p in appliance.processes()]
    assert kinds.count("xenstored") == 1 and kinds.count("xenconsoled") == 1


# A console line that marks each boundary between two steps, and one inside create-domains
# (between `xl create -p` and `xl unpause`, the window where a domain exists but is paused).
KILL_POINTS = [
    r"\[1/9\] make-device-nodes ok",
    r"\[2/9\] preflight ok",
    r"\[3/9\] start-xenstored ok",
    r"\[4/9\] check-platform ok",
    r"\[5/9\] fetch-images ok",
    r"\[6/9\] bind-devices-to-pciback ok",
    r"\[7/9\] net-vm\b[^|]*\bcreated\b",
    r"\[7/9\] create-domains ok",
    r"\[8/9\] provision-xenstore ok",
]


@pytest.mark.parametrize("kill_at", KILL_POINTS, ids=lambda p: p.split("] ")[1][:30])
def test_sigkill_anywhere_then_a_rerun_converges(appliance: Appliance, kill_at: str) -> None:
    killed = appliance.boot_until(kill_at, signal.SIGKILL)
    assert killed.code == -signal.SIGKILL

    again = appliance.boot()
    assert again.lines(r"an earlier run of this boot: killed during [a-z-]+; converging")
    assert_appliance_up(appliance, again)
    assert again.state["original_drivers"] == {NIC.bdf: "e1000", USB.bdf: "xhci_hcd"}


def test_images_already_present_are_not_fetched_and_the_nic_is_not_needed(
        appliance: Appliance) -> None:
    images = appliance.root / IMAGE_DIR
    images.mkdir(parents=True)
    for name in IMAGE_SIZES:
        (images / stored_name(name)).write_bytes(image_bytes(name))
    boot = appliance.boot()
    assert_appliance_up(appliance, boot)
    assert appliance.server.requests == []
    assert "ip" not in boot.programs
    digest = hashlib.sha256(image_bytes("guest/vmlinux")).hexdigest()
    kernel = images / stored_name("guest/vmlinux")
    assert hashlib.sha256(kernel.read_bytes()).hexdigest() == digest


def _order(boot: Boot) -> list[tuple[str, str]]:
    return [(t["domain"], t["to_state"]) for t in boot.transitions()]


def test_a_client_that_does_not_wait_for_its_server_boots_beside_it(
        appliance: Appliance) -> None:
    """The example's workload-vm (wait_for_servers = false): created once sa-vm is created
    and provisioned, before sa-vm is ready; its rendezvous node and grants exist before
    it is unpaused, and the boot ends with the plumbing true."""
    appliance.behave({"sa-vm": {"ready_after": 2}})
    boot = appliance.boot()
    assert boot.code == 0, boot.console
    order = _order(boot)
    assert order.index(("sa-vm", "provisioned")) < order.index(("workload-vm", "created"))
    assert order.index(("workload-vm", "created")) < order.index(("sa-vm", "ready"))
    domids = appliance.domains()
    node = f"/local/domain/{domids['sa-vm']}/ipc/direct/{domids['workload-vm']}"
    assert appliance.perms(node) == [f"n{domids['sa-vm']}", f"r{domids['workload-vm']}"]
    assert appliance.could(domids["workload-vm"], f"{MAP}/sa-vm", "r")


def test_a_client_that_waits_for_its_server_is_created_once_the_server_is_ready(
        appliance: Appliance) -> None:
    appliance.domain_setting("workload-vm", "ipc", "wait_for_servers", "true")
    appliance.behave({"sa-vm": {"ready_after": 2}})
    boot = appliance.boot()
    assert boot.code == 0, boot.console
    order = _order(boot)
    assert order.index(("sa-vm", "ready")) < order.index(("workload-vm", "created"))


def test_a_server_that_never_gets_ready_fails_alone_and_its_running_client_keeps_running(
        appliance: Appliance) -> None:
    """The client already boots beside it: dom0 destroys only the domain it failed (its
    USB controller comes back), says the boot failed, and leaves the client running with
    its own map entry; no grant names the destroyed domid."""
    appliance.domain_setting("sa-vm", None, "ready_timeout", "3")
    appliance.behave({"sa-vm": {"ready_after": 3600}})
    boot = appliance.boot()
    assert boot.code == 1, boot.console
    assert boot.went("sa-vm", "failed")
    assert boot.went("workload-vm", "ready")
    assert set(appliance.domains()) == {"net-vm", "workload-vm"}
    assert appliance.driver_of(USB.bdf) == "xhci_hcd"
    tree = appliance.tree(MAP)
    assert f"{MAP}/sa-vm" not in tree and f"{MAP}/workload-vm" in tree
    assert boot.lines(r"orchestrate: FAILED: sa-vm")
