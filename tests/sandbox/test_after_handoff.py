"""Whatever ends a boot after the handoff, the devices are back on their drivers and dom0
has its NIC address, or the console says exactly what is left (issue 10's property).

The boot is ended at every point after the devices went to pciback: by SIGTERM (exit
130), and by a failure of `xl list` itself, the program the rollback also needs. Each
passthrough device must then be either on its original driver (the NIC with dom0's
address and route), or with a domain that runs, and the console must say so for that
device.
"""

from __future__ import annotations

import signal

import pytest

from tests.sandbox.appliance import NIC, NIC_ADDRESS, USB, Appliance, Boot

OWNERS = {NIC.bdf: ("net-vm", "e1000"), USB.bdf: ("sa-vm", "xhci_hcd")}

# console lines after the handoff began, in the order a boot prints them
AFTER_HANDOFF = [
    r"\[6/9\] bind-devices-to-pciback ok",
    r"\[7/9\] net-vm: pending -> created",
    r"\[7/9\] sa-vm: created -> provisioned",
    r"\[7/9\] net-vm: provisioned -> booting",
    r"\[7/9\] workload-vm: pending -> created",
    r"\[7/9\] create-domains ok",
    r"\[8/9\] provision-xenstore ok",
]


def devices_back_or_said(box: Appliance, boot: Boot) -> None:
    running = box.domains()
    for bdf, (owner, driver) in OWNERS.items():
        now = box.driver_of(bdf)
        if owner in running:
            if now == "pciback":
                assert boot.said(rf"{bdf} stays with {owner} \(domid {running[owner]}\), "
                                 "which runs"), boot.console
            continue
        assert now == driver, f"{bdf} is on {now}, {owner} does not run:\n{boot.console}"
        if bdf == NIC.bdf:
            net = box.nic()
            assert net is not None and NIC_ADDRESS in net["addrs"], net
            assert "default via 10.0.2.2" in net["routes"], net["routes"]


@pytest.mark.parametrize("stop_at", AFTER_HANDOFF, ids=lambda p: p.split("] ")[1][:28])
def test_an_interrupt_after_the_handoff_leaves_no_device_stranded(
        appliance: Appliance, stop_at: str) -> None:
    boot = appliance.boot_until(stop_at, signal.SIGTERM)
    assert boot.code == 130, boot.console
    assert boot.said(r"orchestrate: INTERRUPTED at [6-9]/9 [a-z-]+ \(exit 130\)")
    devices_back_or_said(appliance, boot)


def test_a_boot_whose_xl_list_breaks_after_the_handoff_says_what_is_left(
        appliance: Appliance) -> None:
    """`xl list` fails from create-domains on: the boot ends there, and since it cannot
    tell whether the devices' domains run, it leaves them where they are and names each
    with the commands that give it back."""
    appliance.behave({"@list": {"fail_after": 0}})
    boot = appliance.boot()
    assert boot.code == 1, boot.console
    assert boot.said(r"orchestrate: FAILED at 7/9 create-domains \(exit 1\)")
    assert boot.said(r"create-domains failed: `xl list` exited 1")
    for bdf, (owner, driver) in OWNERS.items():
        assert appliance.driver_of(bdf) == "pciback"
        assert boot.said(rf"{bdf} stays on pciback: could not tell whether {owner} runs")
        assert boot.said(rf"hint: if {owner} does not run: echo {bdf} > "
                         rf"/sys/bus/pci/drivers/pciback/unbind; echo {bdf} > "
                         rf"/sys/bus/pci/drivers/{driver}/bind")
