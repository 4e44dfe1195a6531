"""The sandbox fakes behave like the things they stand in for.

FakeKernel's sysfs FIFOs act like the kernel's PCI core and xen-pciback, the stand-ins in
fakes/bin act like kmod's modprobe, util-linux mount and iproute2/BusyBox ip, and BuildServer
injects the HTTP faults the orchestrator must survive. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.fakes.buildserver import BuildServer, Served
from tests.sandbox.fakes.kernel import FakeKernel, PciDevice

NIC = PciDevice("0000:00:03.0", "e1000", "0x8086", "0x100e", net_if="eth0")
USB = PciDevice("0000:00:04.0", "xhci_hcd", "0x1b36", "0x000d")
BDF = NIC.bdf
PCI = "sys/bus/pci"


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[FakeKernel]:
    with FakeKernel(tmp_path / "root", [NIC, USB]) as k:
        yield k
    assert k.errors == []


def run(k: FakeKernel, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env={**k.env(), **env}, capture_output=True, text=True,
                          timeout=10, check=False)


def read(k: FakeKernel, rel: str) -> str:
    return k.path(rel).read_text()


def link(k: FakeKernel, rel: str) -> str:
    return os.readlink(k.path(rel))


def hand_to_pciback(k: FakeKernel, slot_form: str = BDF) -> None:
    run(k, "modprobe", "xen-pciback").check_returncode()
    k.sysfs_write(f"{PCI}/devices/{BDF}/driver/unbind", f"{BDF}\n")
    k.sysfs_write(f"{PCI}/drivers/pciback/new_slot", f"{slot_form}\n")
    k.sysfs_write(f"{PCI}/drivers/pciback/bind", f"{BDF}\n")
    k.settle()


# ----- FakeKernel -----------------------------------------------------------------------------
def test_build_lays_out_proc_and_sys_like_a_xen_dom0(kernel: FakeKernel) -> None:
    misc = read(kernel, "proc/misc")
    assert "183 hw_random\n" in misc and "xen/evtchn" not in misc
    assert "126 xen/xenbus\n" in misc and "125 xen/xenbus_backend\n" in misc  # built in
    assert "xenfs" not in read(kernel, "proc/mounts")
    assert "e1000 163840 0 - Live" in read(kernel, "proc/modules")
    assert [read(kernel, f"sys/hypervisor/version/{k}") for k in ("major", "minor", "extra")] \
        == ["4\n", "17\n", ".5\n"]
    assert link(kernel, f"{PCI}/devices/{BDF}") == f"../../../devices/pci0000:00/{BDF}"
    assert link(kernel, f"{PCI}/devices/{BDF}/driver") == "../../../bus/pci/drivers/e1000"
    assert link(kernel, f"{PCI}/drivers/e1000/{BDF}") == f"../../../../devices/pci0000:00/{BDF}"
    assert read(kernel, f"{PCI}/devices/{BDF}/class") == "0x020000\n"
    assert read(kernel, f"{PCI}/devices/{BDF}/driver_override") == "(null)\n"
    assert kernel.driver_of(USB.bdf) == "xhci_hcd"
    assert kernel.path("sys/class/net/eth0/address").read_text() == "52:54:00:12:34:56\n"
    assert stat.S_ISFIFO(kernel.path(f"{PCI}/drivers/e1000/unbind").stat().st_mode)
    assert stat.S_ISFIFO(kernel.path(f"{PCI}/drivers_probe").stat().st_mode)
    assert not kernel.path(f"{PCI}/drivers/pciback").exists()
    assert kernel.net("eth0") == {"up": False, "addrs": [], "routes": [],
                                  "mac": "52:54:00:12:34:56", "ifindex": 2}


def test_a_box_without_xen_has_no_hypervisor_files_and_xen_modules_fail(tmp_path: Path) -> None:
    with FakeKernel(tmp_path, [NIC], xen_version=None) as k:
        assert not k.path("sys/hypervisor").exists()
        assert "xen/" not in read(k, "proc/misc")
        result = run(k, "modprobe", "xen-evtchn")
    assert result.returncode == 1
    assert result.stderr == "modprobe: ERROR: could not insert 'xen_evtchn': No such device\n"


@pytest.mark.parametrize("slot_form", [BDF, f"({BDF})"])
def test_unbind_new_slot_bind_moves_the_nic_to_pciback_and_its_interface_disappears(
        kernel: FakeKernel, slot_form: str) -> None:
    hand_to_pciback(kernel, slot_form)
    assert kernel.driver_of(BDF) == "pciback"
    assert link(kernel, f"{PCI}/devices/{BDF}/driver") == "../../../bus/pci/drivers/pciback"
    assert not kernel.path("sys/class/net/eth0").exists() and kernel.net("eth0") is None
    assert read(kernel, f"{PCI}/drivers/pciback/slots") == f"{BDF}\n"
    assert kernel.events == [(f"{PCI}/drivers/e1000/unbind", BDF),
                             (f"{PCI}/drivers/pciback/new_slot", slot_form),
                             (f"{PCI}/drivers/pciback/bind", BDF)]
    shown = run(kernel, "ip", "addr", "show", "dev", "eth0")
    assert (shown.returncode, shown.stderr) == (1, 'Device "eth0" does not exist.\n')


def test_the_interface_loses_its_address_on_unbind(kernel: FakeKernel) -> None:
    run(kernel, "ip", "link", "set", "eth0", "up").check_returncode()
    run(kernel, "ip", "addr", "add", "10.0.2.15/24", "dev", "eth0").check_returncode()
    hand_to_pciback(kernel)
    assert kernel.net("eth0") is None


def test_rebind_via_driver_override_and_drivers_probe_restores_the_native_driver_without_address(
        kernel: FakeKernel) -> None:
    run(kernel, "ip", "link", "set", "eth0", "up").check_returncode()
    run(kernel, "ip", "addr", "add", "10.0.2.15/24", "dev", "eth0").check_returncode()
    hand_to_pciback(kernel)
    kernel.sysfs_write(f"{PCI}/drivers/pciback/unbind", f"{BDF}\n")
    kernel.sysfs_write(f"{PCI}/drivers/pciback/remove_slot", f"{BDF}\n")
    kernel.sysfs_write(f"{PCI}/devices/{BDF}/driver_override", "\n")  # clear, as `echo >`
    kernel.sysfs_write(f"{PCI}/drivers_probe", f"{BDF}\n")
    kernel.settle()
    assert kernel.driver_of(BDF) == "e1000"
    assert read(kernel, f"{PCI}/devices/{BDF}/driver_override") == "(null)\n"
    assert kernel.net("eth0") == {"up": False, "addrs": [], "routes": [],
                                  "mac": "52:54:00:12:34:56", "ifindex": 3}
    assert kernel.path("sys/class/net/eth0/operstate").read_text() == "down\n"


def test_drivers_probe_follows_driver_override(kernel: FakeKernel) -> None:
    run(kernel, "modprobe", "xen-pciback").check_returncode()
    kernel.sysfs_write(f"{PCI}/devices/{BDF}/driver_override", "pciback\n")
    kernel.sysfs_write(f"{PCI}/devices/{BDF}/driver/unbind", f"{BDF}\n")
    kernel.sysfs_write(f"{PCI}/drivers_probe", f"{BDF}\n")
    kernel.settle()
    assert kernel.driver_of(BDF) == "pciback"  # an override needs no new_slot
    assert kernel.slots() == []


def test_direct_bind_restores_the_native_driver_with_an_empty_interface(
        kernel: FakeKernel) -> None:
    hand_to_pciback(kernel)
    kernel.sysfs_write(f"{PCI}/drivers/pciback/unbind", f"{BDF}\n")
    kernel.sysfs_write(f"{PCI}/drivers/e1000/bind", f"{BDF}\n")
    kernel.settle()
    assert kernel.driver_of(BDF) == "e1000"
    net = kernel.net("eth0")
    assert net is not None and (net["up"], net["addrs"], net["routes"]) == (False, [], [])


def test_native_bind_is_refused_while_driver_override_names_another_driver(
        kernel: FakeKernel) -> None:
    hand_to_pciback(kernel)
    kernel.sysfs_write(f"{PCI}/devices/{BDF}/driver_override", "pciback\n")
    kernel.sysfs_write(f"{PCI}/drivers/pciback/unbind", f"{BDF}\n")
    kernel.sysfs_write(f"{PCI}/drivers/e1000/bind", f"{BDF}\n")
    kernel.settle()
    assert kernel.driver_of(BDF) is None
    assert any("no match" in line for line in kernel.dmesg)


def test_a_refused_pciback_bind_leaves_the_device_driverless(kernel: FakeKernel) -> None:
    kernel.refuse_bind.add(("pciback", BDF))
    hand_to_pciback(kernel)
    assert kernel.driver_of(BDF) is None and kernel.net("eth0") is None
    assert f"pciback: probe of {BDF} failed with error -5" in kernel.dmesg


def test_a_pciback_bind_without_new_slot_is_refused(kernel: FakeKernel) -> None:
    run(kernel, "modprobe", "xen-pciback").check_returncode()
    kernel.sysfs_write(f"{PCI}/devices/{BDF}/driver/unbind", f"{BDF}\n")
    kernel.sysfs_write(f"{PCI}/drivers/pciback/bind", f"{BDF}\n")
    kernel.settle()
    assert kernel.driver_of(BDF) is None


def test_a_hung_unbind_never_takes_effect(kernel: FakeKernel) -> None:
    kernel.hang_unbind.add(BDF)
    kernel.sysfs_write(f"{PCI}/devices/{BDF}/driver/unbind", f"{BDF}\n")
    kernel.settle()
    assert kernel.driver_of(BDF) == "e1000"
    assert kernel.events == [(f"{PCI}/drivers/e1000/unbind", BDF)]


def test_the_kernel_applies_a_write_within_20_ms(kernel: FakeKernel) -> None:
    start = time.monotonic()
    kernel.sysfs_write(f"{PCI}/drivers/e1000/unbind", BDF)
    while kernel.driver_of(BDF) is not None:
        assert time.monotonic() - start < 0.02
        time.sleep(0.0005)


def test_writes_fail_with_enxio_once_the_kernel_is_stopped(tmp_path: Path) -> None:
    k = FakeKernel(tmp_path, [NIC]).build()
    with k:
        k.sysfs_write(f"{PCI}/drivers/e1000/unbind", BDF)
        k.settle()
    with pytest.raises(OSError) as err:
        k.sysfs_write(f"{PCI}/drivers/e1000/bind", BDF)
    assert err.value.errno == 6  # ENXIO: no reader on the FIFO
    assert k.driver_of(BDF) is None


def test_pciback_loaded_first_claims_devices_hidden_on_the_command_line(tmp_path: Path) -> None:
    with FakeKernel(tmp_path, [NIC, USB], loaded_modules=["xen-pciback"],
                    cmdline=f"console=hvc0 xen-pciback.hide=({BDF})") as k:
        assert k.driver_of(BDF) == "pciback" and k.net("eth0") is None
        assert k.driver_of(USB.bdf) == "xhci_hcd"
        assert "xen_pciback 81920" in read(k, "proc/modules")


# ----- modprobe -------------------------------------------------------------------------------
def test_modprobe_registers_xen_misc_devices_with_dynamic_minors(kernel: FakeKernel) -> None:
    for name in ("xen-evtchn", "xen_gntdev", "xen-gntalloc", "xen-privcmd"):
        assert run(kernel, "modprobe", name).returncode == 0
    misc = read(kernel, "proc/misc").splitlines()
    assert misc[:5] == ["118 xen/hypercall", "119 xen/privcmd", "120 xen/gntalloc",
                        "121 xen/gntdev", "122 xen/evtchn"]
    assert read(kernel, "proc/modules").startswith("xen_privcmd 36864 0 - Live")
    assert kernel.calls()[0] == ["modprobe", "xen-evtchn"]


def test_modprobe_xen_pciback_creates_a_pciback_dir_the_kernel_services(
        kernel: FakeKernel) -> None:
    assert run(kernel, "modprobe", "-b", "xen-pciback").returncode == 0
    pciback = kernel.path(f"{PCI}/drivers/pciback")
    assert all(stat.S_ISFIFO((pciback / f).stat().st_mode)
               for f in ("bind", "unbind", "new_slot", "remove_slot"))
    hand_to_pciback(kernel)
    assert kernel.driver_of(BDF) == "pciback"


def test_modprobe_pciback_without_a_running_kernel_leaves_fifos_for_its_start(
        tmp_path: Path) -> None:
    k = FakeKernel(tmp_path, [NIC]).build()
    assert run(k, "modprobe", "xen-pciback").returncode == 0
    with k:
        hand_to_pciback(k)
        assert k.driver_of(BDF) == "pciback"


def test_modprobe_fails_like_kmod(kernel: FakeKernel) -> None:
    before = read(kernel, "proc/modules")
    missing = run(kernel, "modprobe", "foo")
    assert (missing.returncode, missing.stderr) == (
        1, "modprobe: FATAL: Module foo not found in directory /lib/modules/6.1.0-28-amd64\n")
    assert run(kernel, "modprobe", "-q", "foo").stderr == ""
    injected = run(kernel, "modprobe", "xen-netback", FAKE_MODPROBE_FAIL="xen_netback,bridge")
    assert injected.returncode == 1 and "could not insert 'xen_netback'" in injected.stderr
    assert read(kernel, "proc/modules") == before


def test_modprobe_of_a_loaded_module_changes_nothing(kernel: FakeKernel) -> None:
    run(kernel, "modprobe", "xenfs").check_returncode()
    assert read(kernel, "proc/modules").startswith("xenfs 16384 0 - Live")
    assert "xen_privcmd 36864 1 xenfs, Live" in read(kernel, "proc/modules")
    assert "nodev\txenfs\n" in read(kernel, "proc/filesystems")
    snapshot = (read(kernel, "proc/modules"), read(kernel, "proc/misc"))
    assert run(kernel, "modprobe", "xen_privcmd").returncode == 0
    assert (read(kernel, "proc/modules"), read(kernel, "proc/misc")) == snapshot


# ----- mount ----------------------------------------------------------------------------------
def test_mount_xenfs_writes_proc_mounts_and_capabilities(kernel: FakeKernel) -> None:
    run(kernel, "modprobe", "xenfs").check_returncode()
    assert run(kernel, "mount", "-t", "xenfs", "xenfs", "/proc/xen").returncode == 0
    assert read(kernel, "proc/mounts").endswith("xenfs /proc/xen xenfs rw,relatime 0 0\n")
    assert read(kernel, "proc/xen/capabilities") == "control_d\n"
    assert kernel.path("proc/xen/xsd_port").exists()
    again = run(kernel, "mount", "-t", "xenfs", "xenfs", "/proc/xen")
    assert (again.returncode, again.stderr) == (
        32, "mount: /proc/xen: xenfs already mounted on /proc/xen.\n")
    assert "xenfs on /proc/xen type xenfs (rw,relatime)" in run(kernel, "mount").stdout


def test_mount_xenfs_before_modprobe_is_an_unknown_filesystem(kernel: FakeKernel) -> None:
    result = run(kernel, "mount", "-t", "xenfs", "xenfs", "/proc/xen")
    assert (result.returncode, result.stderr) == (
        32, "mount: /proc/xen: unknown filesystem type 'xenfs'.\n")


def test_mount_of_other_types_is_only_recorded(kernel: FakeKernel) -> None:
    before = read(kernel, "proc/mounts")
    assert run(kernel, "mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run").returncode == 0
    assert read(kernel, "proc/mounts") == before
    assert kernel.calls() == [["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run"]]


# ----- ip -------------------------------------------------------------------------------------
def test_ip_add_show_route_flush_round_trip(kernel: FakeKernel) -> None:
    for argv in (["link", "set", "eth0", "up"], ["addr", "add", "10.0.2.15/24", "dev", "eth0"],
                 ["route", "add", "default", "via", "10.0.2.2", "dev", "eth0"]):
        assert run(kernel, "ip", *argv).returncode == 0, argv
    shown = run(kernel, "ip", "addr", "show", "dev", "eth0").stdout
    assert "    inet 10.0.2.15/24 scope global eth0\n" in shown
    assert shown.startswith("2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500")
    assert run(kernel, "ip", "route", "show").stdout == (
        "default via 10.0.2.2 dev eth0\n"
        "10.0.2.0/24 dev eth0 proto kernel scope link src 10.0.2.15\n")
    assert run(kernel, "ip", "route", "show", "dev", "eth0").stdout.startswith(
        "default via 10.0.2.2\n")
    assert kernel.net("eth0") == {"up": True, "addrs": ["10.0.2.15/24"], "mac": "52:54:00:12:34:56",
                                  "ifindex": 2, "routes": [
                                      "10.0.2.0/24 proto kernel scope link src 10.0.2.15",
                                      "default via 10.0.2.2"]}
    assert run(kernel, "ip", "addr", "flush", "dev", "eth0").returncode == 0
    assert "inet " not in run(kernel, "ip", "addr", "show", "dev", "eth0").stdout
    assert run(kernel, "ip", "route", "show").stdout == ""


def test_ip_refuses_what_the_kernel_refuses(kernel: FakeKernel) -> None:
    early = run(kernel, "ip", "route", "add", "default", "via", "10.0.2.2")
    assert (early.returncode, early.stderr) == (2, "Error: Nexthop has invalid gateway.\n")
    run(kernel, "ip", "addr", "add", "10.0.2.15/24", "dev", "eth0").check_returncode()
    down = run(kernel, "ip", "route", "add", "default", "via", "10.0.2.2", "dev", "eth0")
    assert (down.returncode, down.stderr) == (2, "Error: Nexthop device is not up.\n")
    duplicate = run(kernel, "ip", "addr", "add", "10.0.2.15/24", "dev", "eth0")
    assert (duplicate.returncode, duplicate.stderr) == (2, "RTNETLINK answers: File exists\n")
    run(kernel, "ip", "link", "set", "dev", "eth0", "up").check_returncode()
    run(kernel, "ip", "route", "add", "default", "via", "10.0.2.2").check_returncode()
    again = run(kernel, "ip", "route", "add", "default", "via", "10.0.2.2")
    assert (again.returncode, again.stderr) == (2, "RTNETLINK answers: File exists\n")
    assert run(kernel, "ip", "route", "replace", "default", "via", "10.0.2.3").returncode == 0
    assert run(kernel, "ip", "route", "show", "default").stdout == "default via 10.0.2.3 dev eth0\n"
    missing = run(kernel, "ip", "link", "set", "eth9", "up")
    assert (missing.returncode, missing.stderr) == (1, 'Cannot find device "eth9"\n')


def test_ip_speaks_busybox_when_asked(kernel: FakeKernel) -> None:
    run(kernel, "ip", "addr", "add", "10.0.2.15/24", "dev", "eth0").check_returncode()
    shown = run(kernel, "ip", "addr", "show", "dev", "eth0", FAKE_IP_FLAVOR="busybox").stdout
    assert "    inet 10.0.2.15/24 scope global eth0\n" in shown and "valid_lft" not in shown
    missing = run(kernel, "ip", "addr", "show", "dev", "eth9", FAKE_IP_FLAVOR="busybox")
    assert (missing.returncode, missing.stderr) == (1, "ip: can't find device 'eth9'\n")


# ----- BuildServer ----------------------------------------------------------------------------
IMAGE = bytes(range(256)) * 64  # 16 KiB
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def server() -> Iterator[BuildServer]:
    with BuildServer({"/img": IMAGE}) as srv:
        yield srv


def fetch(url: str, timeout: float = 2.0, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    with NO_PROXY.open(urllib.request.Request(url, method=method), timeout=timeout) as resp:
        return resp.status, dict(resp.headers), resp.read()


def test_the_server_serves_get_and_head_and_logs_them(server: BuildServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    status, headers, body = fetch(server.url_for("/img"))
    assert (status, body, headers["Content-Length"]) == (200, IMAGE, str(len(IMAGE)))
    status, headers, body = fetch(server.url_for("/img"), method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(IMAGE)))
    with pytest.raises(urllib.error.HTTPError) as missing:
        fetch(server.url_for("/nope"))
    assert missing.value.code == 404
    assert server.requests[:2] == [Served("/img", 200, len(IMAGE)), Served("/img", 200, 0)]


@pytest.mark.parametrize("code", [404, 500])
def test_a_status_fault_is_an_http_error_with_an_html_body(server: BuildServer,
                                                           code: int) -> None:
    server.status("/img", code)
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(server.url_for("/img"))
    assert err.value.code == code and b"<h1>Error response</h1>" in err.value.read()
    assert server.requests[-1].status == code


def test_a_truncated_body_raises_incomplete_read(server: BuildServer) -> None:
    server.truncate("/img", 1000)
    with pytest.raises(http.client.IncompleteRead) as err:
        fetch(server.url_for("/img"))
    assert len(err.value.partial) == 1000


def test_a_wrong_content_length_is_short_or_incomplete(server: BuildServer) -> None:
    server.wrong_length("/img", 100)
    assert len(fetch(server.url_for("/img"))[2]) == 100
    server.wrong_length("/img", len(IMAGE) + 100)
    with pytest.raises(http.client.IncompleteRead):
        fetch(server.url_for("/img"))


def test_a_corrupt_body_has_the_same_length_and_another_sha256(server: BuildServer) -> None:
    server.corrupt("/img")
    body = fetch(server.url_for("/img"))[2]
    assert len(body) == len(IMAGE)
    assert hashlib.sha256(body).digest() != hashlib.sha256(IMAGE).digest()


def test_an_oversize_body_streams_past_the_file(server: BuildServer) -> None:
    server.oversize("/img", None)
    with NO_PROXY.open(server.url_for("/img"), timeout=2) as resp:
        assert resp.headers["Content-Length"] is None
        assert len(resp.read(len(IMAGE) * 4)) == len(IMAGE) * 4  # and it would go on
    server.oversize("/img", 10, mode="declared")
    assert len(fetch(server.url_for("/img"))[2]) == len(IMAGE) + 10
    server.oversize("/img", 10, mode="excess")  # the extra bytes follow the declared body
    assert fetch(server.url_for("/img"))[2] == IMAGE
    assert server.requests[-1].bytes_sent == len(IMAGE) + 10


def test_a_hung_request_times_out_the_client_and_stop_ends_it(server: BuildServer) -> None:
    server.hang("/img")
    start = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        fetch(server.url_for("/img"), timeout=0.3)
    server.hang("/img", headers=True)
    with pytest.raises(TimeoutError):
        fetch(server.url_for("/img"), timeout=0.3)
    assert time.monotonic() - start < 2
    server.stop()
    deadline = time.monotonic() + 1
    while any("process_request" in t.name for t in threading.enumerate()):
        assert time.monotonic() < deadline, "handler threads outlived stop()"
        time.sleep(0.01)


def test_a_released_hang_finishes_normally(server: BuildServer) -> None:
    server.hang("/img", headers=True, body_bytes=10)
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(fetch(server.url_for("/img"))[2]))
    reader.start()
    time.sleep(0.1)
    server.release("/img")
    reader.join(2)
    assert result == [IMAGE]


def test_fail_times_fails_then_succeeds(server: BuildServer) -> None:
    server.fail_times("/img", 2, 503)
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as err:
            fetch(server.url_for("/img"))
        assert err.value.code == 503
    assert fetch(server.url_for("/img"))[2] == IMAGE
    assert [r.status for r in server.requests_for("/img")] == [503, 503, 200]


def test_a_slow_body_takes_its_time(server: BuildServer) -> None:
    server.put("/small", b"x" * 2000)
    server.slow("/small", 10_000)
    start = time.monotonic()
    assert fetch(server.url_for("/small"))[2] == b"x" * 2000
    assert time.monotonic() - start >= 0.15


def test_the_refused_url_refuses_connections(server: BuildServer) -> None:
    url = server.refused_url("/img")
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.URLError) as err:
        fetch(url)
    assert isinstance(err.value.reason, ConnectionRefusedError)
