"""The failure matrix: every way the boot can go wrong, end to end on the sandbox.

Each test breaks one thing, runs the real `orchestrate`, and asserts the exit code, what
the console says (which step, the unit, path or device, what to do), and that nothing
was lost: dom0's NIC back on its driver (with its address once orchestrate had set it),
no partial image, no xenstore entry of a domain that is not running, every failure said.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pytest

from orchestrator.runner import STEPS
from tests.sandbox.appliance import (
    IMAGE_DIR,
    IMAGE_SIZES,
    NIC,
    NIC_ADDRESS,
    USB,
    Appliance,
    Boot,
    image_bytes,
    stored_name,
)

MAP = "/ipc/domain-map"
RAMDISK = "/images/guest/sa-vm.cpio.gz"  # the image the fetch faults are put on
SIZE = IMAGE_SIZES["guest/sa-vm.cpio.gz"]


def dom0_kept_its_nic(box: Appliance, configured: bool) -> None:
    """The NIC is on its own driver; with its address and default route once orchestrate
    had given them (the fetch step does, before any handoff)."""
    assert box.driver_of(NIC.bdf) == "e1000"
    net = box.nic()
    assert net is not None, "eth0 exists in dom0"
    if configured:
        assert net["up"] and NIC_ADDRESS in net["addrs"], net
        assert "default via 10.0.2.2" in net["routes"], net["routes"]


def no_partial_images(box: Appliance) -> None:
    """Every file in the image directory is exactly a pinned image; no temp files."""
    pinned = {stored_name(name): name for name in IMAGE_SIZES}
    for name in box.image_dir_files():
        assert name in pinned, f"stray file {name} in the image directory"
        data = (box.root / IMAGE_DIR / name).read_bytes()
        assert hashlib.sha256(data).digest() == hashlib.sha256(
            image_bytes(pinned[name])).digest(), name


def stopped_at(boot: Boot, number: int, step: str) -> None:
    assert boot.code == 1, boot.console
    assert boot.lines(rf"orchestrate: FAILED at {number}/9 {step} \(exit 1\)$"), boot.console
    assert boot.lines(rf"\[{number}/9\] {step} failed: "), boot.console
    assert boot.lines(r"\] +hint: "), "every failure says what to do"
    steps = boot.step_status()
    order = [name for name, _ in STEPS]
    assert order[number - 1] == step and steps[step] == "failed"
    assert all(steps[later] == "skipped" for later in order[number:]), steps


def nothing_handed_over(box: Appliance) -> None:
    assert box.driver_of(USB.bdf) == "xhci_hcd"
    assert box.domains() == {}
    assert box.kernel.slots() == []


# ---- the build server --------------------------------------------------------------------

FETCH_FAULTS: list[tuple[str, Callable[[Appliance], None], str, int]] = [
    # (case, the fault, what the console must say, attempts made)
    ("refused", lambda b: b.host_setting(
        "build_server", "url", f'"{b.server.refused_url("/images/")}"'),
     r"cannot connect: \[Errno 111\] Connection refused", 3),
    ("404", lambda b: b.server.status(RAMDISK, 404), r"HTTP 404 Not Found", 1),
    ("500", lambda b: b.server.status(RAMDISK, 500), r"HTTP 500 Internal Server Error", 3),
    ("truncated body", lambda b: b.server.truncate(RAMDISK, 50_000),
     rf"(short body: 50000 of {SIZE} bytes|connection broke after 50000 of {SIZE} bytes)", 3),
    ("wrong sha256", lambda b: b.server.corrupt(RAMDISK),
     r"sha256 [0-9a-f]{64} but the unit pins [0-9a-f]{64}", 3),
    ("wrong content-length", lambda b: b.server.wrong_length(RAMDISK, 4096),
     rf"Content-Length 4096 but the unit pins {SIZE} bytes", 1),
    ("oversize", lambda b: b.server.oversize(RAMDISK, 10_000),
     rf"server sent more than the pinned {SIZE} bytes", 1),
    ("hanging", lambda b: b.server.hang(RAMDISK, headers=True, body_bytes=1000),
     rf"stalled for 1\.5 s after 1000 of {SIZE} bytes|took longer than", 3),
]


@pytest.mark.parametrize(("fault", "said", "attempts"),
                         [pytest.param(f, s, a, id=c) for c, f, s, a in FETCH_FAULTS])
def test_a_failed_fetch_stops_before_the_handoff_and_dom0_keeps_its_nic(
        appliance: Appliance, fault: Callable[[Appliance], None], said: str,
        attempts: int) -> None:
    fault(appliance)
    boot = appliance.boot()
    stopped_at(boot, 5, "fetch-images")
    failure = boot.lines(r"fetch-images failed: ")[0]
    assert re.search(said, failure), failure
    assert "guest/sa-vm.cpio.gz" in failure or "refused" in boot.console
    assert f"after {attempts} attempt" in failure, failure
    assert "no file was written to /run/xen-images/" in failure
    assert boot.lines(r"hint: check that the build server is up .* pinned in "
                      r"\S*(sa-vm|net-vm)\.toml; dom0 keeps its NIC")
    dom0_kept_its_nic(appliance, configured=True)
    nothing_handed_over(appliance)
    no_partial_images(appliance)
    if "sa-vm" in failure:
        assert stored_name("guest/sa-vm.cpio.gz") not in appliance.image_dir_files()


def test_a_server_that_fails_twice_then_serves_is_retried_with_backoff(
        appliance: Appliance) -> None:
    appliance.server.fail_times(RAMDISK, 2, code=503)
    boot = appliance.boot()
    assert boot.code == 0, boot.console
    assert len(boot.lines(r"guest/sa-vm.cpio.gz: attempt [12]/3 failed: HTTP 503")) == 2
    assert [r.status for r in appliance.server.requests_for(RAMDISK)] == [503, 503, 200]


# ---- devices -------------------------------------------------------------------------------

def test_a_missing_passthrough_device_is_named_with_its_unit(appliance: Appliance) -> None:
    appliance.domain_setting("sa-vm", None, "pci", '["0000:00:05.0"]')
    boot = appliance.boot()
    stopped_at(boot, 2, "preflight")
    assert boot.lines(r"PCI device 0000:00:05.0 \(pci in \S*sa-vm\.toml\) does not exist")
    assert boot.lines(r"hint: check the BDF with `lspci -D` and fix \S*sa-vm\.toml")
    assert appliance.server.requests == []
    dom0_kept_its_nic(appliance, configured=False)
    nothing_handed_over(appliance)


def test_a_refused_pciback_bind_rolls_every_device_back(
        make_appliance: Callable[..., Appliance]) -> None:
    box = make_appliance(refuse_bind=[("pciback", USB.bdf)])
    boot = box.boot()
    stopped_at(boot, 6, "bind-devices-to-pciback")
    assert boot.lines(r"0000:00:04.0 is not bound to pciback after bind \(driver now: none\)")
    assert boot.lines(r"handoff failed, rolling back")
    assert boot.lines(r"0000:00:03.0 is back on e1000")
    assert boot.lines(r"0000:00:04.0 is back on xhci_hcd")
    dom0_kept_its_nic(box, configured=True)
    nothing_handed_over(box)
    assert boot.state["moved_to_pciback"] == []
    no_partial_images(box)


# ---- the toolstack -----------------------------------------------------------------------

def test_a_xenstored_that_never_answers_stops_the_boot_in_time(appliance: Appliance) -> None:
    appliance.xenstored_behaves(mute=True, socket_delay=0.1)
    boot = appliance.boot()
    stopped_at(boot, 3, "start-xenstored")
    assert boot.lines(r"xenstored did not answer a READ of / on \S+ within 4 s")
    assert boot.seconds < 20
    assert "xen-init-dom0" not in boot.programs
    assert appliance.server.requests == []
    dom0_kept_its_nic(appliance, configured=False)
    nothing_handed_over(appliance)


def test_a_toolstack_of_another_release_is_caught_before_it_runs(
        make_appliance: Callable[..., Appliance]) -> None:
    box = make_appliance(xen_version=(4, 19, ".1"))
    boot = box.boot()
    stopped_at(boot, 2, "preflight")
    assert boot.lines(r"version mismatch: Xen hypervisor 4\.19\.1 but toolstack 4\.17")
    assert boot.lines(r"misleading \"Permission denied\"")
    assert boot.lines(r"hint: install the Xen 4\.19 toolstack .*Alpine 3\.21")
    assert set(boot.programs) <= {"modprobe", "mount"}, "no xenstored, no xl"


def test_a_failed_xl_create_skips_its_dependents_and_returns_its_device(
        appliance: Appliance) -> None:
    appliance.behave({"sa-vm": {"create": "fail"}})
    boot = appliance.boot()
    assert boot.code == 1, boot.console
    assert boot.went("sa-vm", "failed", r"^creating sa-vm failed: `xl create -p \S+` exited")
    # the example's workload-vm waits for sa-vm created, not ready (wait_for_servers)
    assert boot.went("workload-vm", "skipped", r"^it needs sa-vm, which was not created$")
    assert boot.lines(r"orchestrate: FAILED: sa-vm, workload-vm not ready after")
    domains = appliance.domains()
    assert list(domains) == ["net-vm"], "the independent domain still starts"
    assert appliance.driver_of(USB.bdf) == "xhci_hcd", "sa-vm's USB controller is dom0's again"
    assert appliance.driver_of(NIC.bdf) == "pciback", "net-vm keeps the NIC"
    assert appliance.tree(MAP).keys() == {MAP, f"{MAP}/net-vm"}
    assert boot.lines(r"WARNING: not provisioned \(domain not running\): sa-vm, workload-vm")


def test_permission_denied_from_xl_create_is_explained_as_the_version_trap(
        appliance: Appliance) -> None:
    appliance.behave({"workload-vm": {"create": "permission-denied"}})
    boot = appliance.boot()
    assert boot.code == 1, boot.console
    assert boot.went("workload-vm", "failed", r"^creating workload-vm failed")
    assert boot.lines(r"hint: the toolstack does not match the hypervisor")


# ---- the guests --------------------------------------------------------------------------

def test_a_net_vm_that_never_gets_ready_gives_dom0_its_nic_back(appliance: Appliance) -> None:
    appliance.behave({"net-vm": {"guest": "never"}})
    appliance.domain_setting("net-vm", None, "ready_timeout", "2")
    boot = appliance.boot()
    assert boot.code == 1, boot.console
    assert boot.went("net-vm", "failed",
                     r"^timed out after 2 s waiting for net-vm xenstore:data/ready")
    assert boot.lines(r"create-domains done with failures \(\d+\.\d\d s\): net-vm, "
                      r"workload-vm")
    assert boot.lines(r"hint: see the guest's console: /var/log/xen/console/guest-net-vm.log")
    # workload-vm is created beside net-vm (only its vif waits for net-vm); its readiness
    # ("connected") cannot come without its vif, so it fails at once and is destroyed
    assert boot.went("workload-vm", "failed",
                     r"^its vif's backend net-vm is not ready, so workload-vm cannot get "
                     r"connected$")
    assert list(appliance.domains()) == ["sa-vm"], "net-vm destroyed, sa-vm still starts"
    dom0_kept_its_nic(appliance, configured=True)
    assert boot.lines(r"0000:00:03.0 is back on e1000")
    assert MAP + "/net-vm" not in appliance.tree(MAP)


def test_a_domain_that_crashes_before_ready_is_reported_and_cleaned_up(
        appliance: Appliance) -> None:
    appliance.behave({"sa-vm": {"guest": "crash", "crash_after": 0.3, "ready_after": 30}})
    boot = appliance.boot()
    assert boot.code == 1, boot.console
    assert boot.went("sa-vm", "failed", r"^sa-vm \(domid \d+\) (crashed|is gone) before it "
                     r"was ready")
    assert "sa-vm" not in appliance.domains()
    assert appliance.driver_of(USB.bdf) == "xhci_hcd"
    assert boot.seconds < 15, "a crash is noticed, not waited out"
    assert f"{MAP}/sa-vm" not in appliance.tree(MAP)


def test_an_interrupted_boot_says_so_and_exits_130(appliance: Appliance) -> None:
    import signal

    boot = appliance.boot_until(r"\[5/9\] fetch-images$", signal.SIGTERM)
    assert boot.code == 130, boot.console
    assert boot.lines(r"orchestrate: INTERRUPTED at \d/9 [a-z-]+ \(exit 130\)")


# ---- the platform --------------------------------------------------------------------------

def test_a_wrong_node_at_a_device_path_is_named(appliance: Appliance) -> None:
    (appliance.root / "dev/xen").mkdir(parents=True)
    (appliance.root / "dev/xen/evtchn").write_text("left over\n")
    boot = appliance.boot()
    stopped_at(boot, 1, "make-device-nodes")
    assert boot.lines(r"/dev/xen/evtchn exists but is not a character device, not char 10:122")
    assert boot.lines(r"hint: remove /dev/xen/evtchn .* and re-run orchestrate")


def test_passthrough_without_an_iommu_stops_before_any_fetch(appliance: Appliance) -> None:
    appliance.behave({"@info": {"virt_caps": "pv hvm hap shadow"}})
    boot = appliance.boot()
    stopped_at(boot, 4, "check-platform")
    assert boot.lines(r"PCI passthrough is requested but there is no IOMMU \(virt_caps: pv hvm")
    assert boot.lines(r"hint: enable VT-d/AMD-Vi in the firmware and iommu=on")
    assert appliance.server.requests == []
    dom0_kept_its_nic(appliance, configured=False)


def test_dom0_mem_without_max_is_a_warning_not_a_failure(appliance: Appliance) -> None:
    appliance.behave({"@info": {"xen_commandline": "console=com1 dom0_mem=1024M"}})
    boot = appliance.boot()
    assert boot.code == 0, boot.console
    assert boot.lines(r"WARNING: dom0_mem=1024M has no max: .* use dom0_mem=1024M,max:1024M")
    assert boot.state["warnings"]


def test_images_that_cannot_fit_stop_the_boot_before_the_fetch(appliance: Appliance) -> None:
    # 512 GiB: more than the image directory holds, less than the domain's memory (a
    # ramdisk larger than its domain's memory is already refused by the units' check)
    appliance.domain_setting("sa-vm", None, "memory", str(1 << 20))
    appliance.domain_setting("sa-vm", "ramdisk", "size", str(1 << 39))
    boot = appliance.boot()
    stopped_at(boot, 2, "preflight")
    assert boot.lines(r"/run/xen-images has \d+ MiB free but the images need \d+ MiB")
    assert appliance.server.requests == []


def test_pvh_without_hap_or_shadow_paging_is_refused_before_any_fetch(
        appliance: Appliance) -> None:
    appliance.domain_setting("workload-vm", None, "type", '"pvh"')
    appliance.behave({"@info": {"virt_caps": "pv hvm hvm_directio pv_directio"}})
    boot = appliance.boot()
    stopped_at(boot, 4, "check-platform")
    assert boot.lines(r"workload-vm is PVH but Xen has neither HAP nor shadow paging here")
    assert boot.lines(r"hint: use a CPU with EPT/NPT")
    assert appliance.server.requests == []


def test_pvh_on_a_host_without_hvm_is_refused(appliance: Appliance) -> None:
    appliance.domain_setting("workload-vm", None, "type", '"pvh"')
    appliance.behave({"@info": {"virt_caps": "pv pv_directio"}})
    boot = appliance.boot()
    stopped_at(boot, 4, "check-platform")
    assert boot.lines(r"workload-vm is PVH but this host cannot run HVM/PVH guests")


def test_with_skip_preflight_the_version_trap_still_gets_the_version_hint(
        make_appliance: Callable[..., Appliance]) -> None:
    box = make_appliance(xen_version=(4, 17, ".5"))
    # 4.20 tools on a 4.17 hypervisor, as the lab saw it: xen-init-dom0 is refused
    (box.root / "usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17").rename(
        box.root / "usr/lib/x86_64-linux-gnu/libxenctrl.so.4.20")
    box.behave({"@xen-init-dom0": {"mode": "version-mismatch"}})
    boot = box.boot("--skip-preflight")
    stopped_at(boot, 3, "start-xenstored")
    assert boot.lines(r"WARNING: version mismatch: Xen hypervisor 4\.17\.5 but toolstack 4\.20 "
                      r".*\(going on: --skip-preflight\)")
    assert boot.lines(r"hint: the toolstack does not match the hypervisor")


def test_a_domain_restarted_by_xl_before_ready_is_a_failure_and_is_destroyed(
        appliance: Appliance) -> None:
    unit = appliance.units / "domains/sa-vm.toml"
    unit.write_text('on_crash = "restart"\n' + unit.read_text())  # a top-level key
    # xl's monitor sleeps 2 s before it re-creates (xl_vmcontrol.c:1094) and a crash fires
    # @releaseDomain: only a restarted domain that stays up is seen under its new domid
    appliance.behave({"sa-vm": {"guest": "crash", "crash_after": 0.3, "ready_after": 30,
                                "restart_sleep": 0.1, "after_restart": {"guest": "ready"}}})
    boot = appliance.boot()
    assert boot.code == 1, boot.console
    assert boot.went("sa-vm", "failed", r"^sa-vm \(domid \d+\) crashed or rebooted before it "
                     r"was ready and was restarted as domid \d+")
    assert boot.lines(r"xl destroy sa-vm")
    assert "sa-vm" not in appliance.domains(), "the restarted domain is destroyed too"
    assert appliance.driver_of(USB.bdf) == "xhci_hcd"
