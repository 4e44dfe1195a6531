"""The Xen toolstack stand-ins act like xl/libxl 4.17, xenstored's launcher, xen-init-dom0
and xenconsoled: the nodes, permissions, messages and exit codes the orchestrator meets on a
real dom0 (XEN-FACTS.md "What libxl writes for a new domain", "xl", "Devices and daemons").

Each test runs the real stand-in programs (by name, through PATH) against an in-process
FakeXenstored and a FakeKernel tree, and ends every process they started.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.fakes import xlstate
from tests.sandbox.fakes.kernel import FAKE_BIN, FakeKernel, PciDevice
from tests.sandbox.fakes.xenstored import FakeXenstored
from tests.sandbox.fakes.xswire import Client, XsError

NIC = PciDevice("0000:00:03.0", "e1000", "0x8086", "0x100e", net_if="eth0")
USB = PciDevice("0000:00:04.0", "xhci_hcd", "0x1b36", "0x000d")
PCI = "sys/bus/pci"
Run = subprocess.CompletedProcess[str]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


class Sandbox:
    """A fake root, a running FakeKernel and FakeXenstored, and the stand-ins on PATH."""

    def __init__(self, root: Path, sockdir: Path, kernel: FakeKernel,
                 xsd: FakeXenstored | None) -> None:
        self.root, self.sockdir, self.kernel, self.xsd = root, sockdir, kernel, xsd
        self.standin = root / "run" / "fake-xl"
        self.standin.mkdir(parents=True, exist_ok=True)
        self.socket = sockdir / "socket"
        self.env = kernel.env()
        self.env.update(XENSTORED_PATH=str(self.socket), XL_STANDIN=str(self.standin))
        self.env.pop("XENSTORED_RUNDIR", None)
        if SYSTEM_PYTHON.exists():  # what a dom0 has: no venv, no pyxs (and a faster start)
            pybin = sockdir / "python"
            pybin.mkdir()
            (pybin / "python3").symlink_to(SYSTEM_PYTHON)
            self.env["PATH"] = os.pathsep.join([str(FAKE_BIN), str(pybin), self.env["PATH"]])
        self.images = root / "var" / "lib" / "orchestrator" / "images"
        self.images.mkdir(parents=True)
        (self.images / "vmlinux").write_bytes(b"\x7fELF fake kernel")
        (self.images / "guest.cpio.gz").write_bytes(b"\x1f\x8b fake initramfs")

    @property
    def store(self) -> FakeXenstored:
        assert self.xsd is not None
        return self.xsd

    def run(self, *argv: str, timeout: float = 10) -> Run:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def xl(self, *args: str) -> Run:
        return self.run("xl", *args)

    def cfg(self, name: str, *, pci: list[str] | None = None, vif: list[str] | None = None,
            on_crash: str = "destroy", kernel: str | None = None, on_poweroff: str = "destroy",
            on_reboot: str = "restart") -> str:
        """A config as orchestrator/xlcfg.py renders it."""
        lines = [f"# {name}: rendered by orchestrate from {name}.toml",
                 f'name = "{name}"', 'type = "pv"',
                 f'kernel = "{kernel or self.images / "vmlinux"}"',
                 f'ramdisk = "{self.images / "guest.cpio.gz"}"',
                 f'extra = "console=hvc0 role={name}"', "memory = 128", "vcpus = 1"]
        if pci:
            lines.append("pci = [ " + ", ".join(f'"{p}"' for p in pci) + " ]")
        if vif:
            lines.append("vif = [ " + ", ".join(f'"{v}"' for v in vif) + " ]")
        lines += [f'on_poweroff = "{on_poweroff}"', f'on_reboot = "{on_reboot}"',
                  f'on_crash = "{on_crash}"']
        path = self.root / "var" / "lib" / "orchestrator" / "xl" / f"{name}.cfg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    def create(self, name: str, **kw: Any) -> int:
        result = self.xl("create", "-p", self.cfg(name, **kw))
        assert result.returncode == 0, result.stderr
        domid = xlstate.domid_of(self.standin, name)
        assert domid is not None
        return domid

    def log(self, name: str) -> str:
        """xl's monitor log for the domain name."""
        path = self.root / "var/log/xen" / f"xl-{name}.log"
        return path.read_text() if path.exists() else ""

    def domid(self, name: str) -> int | None:
        result = self.xl("domid", name)
        return int(result.stdout) if result.returncode == 0 else None

    def behave(self, data: dict[str, Any]) -> None:
        (self.standin / xlstate.BEHAVIOUR).write_text(json.dumps(data))

    def read(self, path: str) -> str | None:
        node = self.store.snapshot().get(path)
        return None if node is None else str(node["value"])

    def perms(self, path: str) -> object:
        return self.store.snapshot()[path]["perms"]

    def states(self) -> dict[str, tuple[int, str]]:
        out = {}
        for line in self.xl("list").stdout.splitlines()[1:]:
            fields = line.split()
            out[fields[0]] = (int(fields[1]), fields[4])
        return out

    def record(self, domid: int) -> dict[str, Any]:
        return xlstate.domains(self.standin)[domid]

    def guest(self, domid: int) -> Client:
        """A connection acting as domain ``domid`` (what its kernel sees)."""
        client = Client(str(self.socket), timeout=5.0)
        client.as_domain(domid)
        return client

    def up(self, name: str, **kw: Any) -> int:
        """Create, unpause and wait until the guest's userspace is up."""
        domid = self.create(name, **kw)
        assert self.xl("unpause", str(domid)).returncode == 0
        assert wait_for(lambda: self.record(domid)["booted"]), name
        return domid

    def connected(self, fe: str) -> bool:
        be = self.read(f"{fe}/backend")
        return self.read(f"{fe}/state") == "4" and be is not None and \
            self.read(f"{be}/state") == "4"

    def pair(self, **workload: Any) -> tuple[int, int]:
        """net-vm serving workload-vm's vif 0, both booted and the vif Connected."""
        net = self.up("net-vm")
        wl = self.up("workload-vm", vif=["ip=10.0.5.103,backend=net-vm"], **workload)
        assert wait_for(lambda: self.connected(f"/local/domain/{wl}/device/vif/0"))
        return net, wl

    def new_domid(self, name: str, old: int, timeout: float = 5.0) -> int:
        """The domid xl's monitor restarted ``name`` under, once its guest booted."""
        assert wait_for(lambda: (xlstate.domid_of(self.standin, name) or old) != old, timeout)
        new = xlstate.domid_of(self.standin, name)
        assert new is not None
        assert wait_for(lambda: self.record(new)["booted"], timeout)
        return new

    def console(self, name: str) -> str:
        path = self.root / "var/log/xen/console" / f"guest-{name}.log"
        return path.read_text() if path.exists() else ""

    def hand_to_pciback(self, bdf: str) -> None:
        assert self.run("modprobe", "xen-pciback").returncode == 0
        self.kernel.sysfs_write(f"{PCI}/devices/{bdf}/driver/unbind", f"{bdf}\n")
        self.kernel.sysfs_write(f"{PCI}/drivers/pciback/new_slot", f"{bdf}\n")
        self.kernel.sysfs_write(f"{PCI}/drivers/pciback/bind", f"{bdf}\n")
        self.kernel.settle()
        assert self.kernel.driver_of(bdf) == "pciback"


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="xl-", dir="/tmp"))  # AF_UNIX paths: <= 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _sandbox(tmp_path: Path, sockdir: Path, with_store: bool) -> Iterator[Sandbox]:
    root = tmp_path / "root"
    with FakeKernel(root, [NIC, USB]) as kernel:
        for sub in ("var/lib/xen", "var/log/xen/console", "var/run/xen", "run/xen"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        xsd = FakeXenstored(sockdir / "socket").start() if with_store else None
        box = Sandbox(root, sockdir, kernel, xsd)
        try:
            yield box
        finally:
            xlstate.kill_all(box.standin)
            if xsd is not None:
                xsd.stop()
            assert xlstate.processes(box.standin) == []
    assert kernel.errors == []


@pytest.fixture
def box(tmp_path: Path, sockdir: Path) -> Iterator[Sandbox]:
    """Sandbox with xenstored up and dom0 initialised."""
    yield from _sandbox(tmp_path, sockdir, with_store=True)


@pytest.fixture
def bare(tmp_path: Path, sockdir: Path) -> Iterator[Sandbox]:
    """Sandbox without xenstored (the daemons' own tests start it)."""
    yield from _sandbox(tmp_path, sockdir, with_store=False)


@pytest.fixture
def dom0(box: Sandbox) -> Sandbox:
    assert box.run("xen-init-dom0").returncode == 0
    return box


# ---- xl create -p: what libxl__domain_make and the device setup write ------------------------
def test_create_paused_writes_libxl_nodes_with_libxl_permissions(dom0: Sandbox) -> None:
    cfg = dom0.cfg("sa-vm")
    result = dom0.xl("create", "-p", cfg)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == f"Parsing config from {cfg}\n"
    d = dom0.domid("sa-vm")
    assert d == 1 and 1 in dom0.store.introduced
    home, snap = "/local/domain/1", dom0.store.snapshot()
    assert snap[home]["perms"] == ["n0", "r1"]
    assert dom0.read(f"{home}/name") == "sa-vm" and dom0.read(f"{home}/domid") == "1"
    vm = dom0.read(f"{home}/vm")
    assert vm is not None and vm.startswith("/vm/") and snap[vm]["perms"] == ["n0", "r1"]
    assert dom0.read(f"{vm}/name") == "sa-vm"
    assert snap["/libxl/1"]["perms"] == ["n0"]
    for sub in ("data", "drivers", "feature", "attr", "error", "control/shutdown",
                "control/feature-poweroff", "device/suspend/event-channel"):
        assert snap[f"{home}/{sub}"]["perms"] == ["n1"], sub
    for sub in ("control", "device", "memory", "cpu"):
        assert snap[f"{home}/{sub}"]["perms"] == ["n0", "r1"], sub
    # The guest reads its home but cannot create under it; it can write data/; others see nothing.
    assert dom0.store.could(1, home, "r") and not dom0.store.could(1, home, "w")
    assert not dom0.store.could(1, f"{home}/ipc", "w")
    assert dom0.store.could(1, f"{home}/data/ready", "w")
    assert not dom0.store.could(1, "/local/domain/0/name", "r")
    assert dom0.states()["sa-vm"] == (1, "--p---")
    time.sleep(0.2)
    assert dom0.read(f"{home}/data/ready") is None  # paused: the guest has not run


def test_domid_list_and_list_long_agree(dom0: Sandbox) -> None:
    a, b = dom0.create("net-vm"), dom0.create("sa-vm")
    assert (a, b) == (1, 2)
    assert dom0.states() == {"Domain-0": (0, "r-----"), "net-vm": (1, "--p---"),
                             "sa-vm": (2, "--p---")}
    header = dom0.xl("list").stdout.splitlines()[0]
    assert header == "Name                                        ID   Mem VCPUs\tState\tTime(s)"
    row = dom0.xl("list").stdout.splitlines()[2]
    assert row.startswith("net-vm" + " " * 34 + "     1   128     1     --p---  ")
    entries = json.loads(dom0.xl("list", "-l").stdout)
    assert [(e["domid"], e["config"]["c_info"]["name"]) for e in entries] == \
        [(0, "Domain-0"), (1, "net-vm"), (2, "sa-vm")]
    assert dom0.domid("Domain-0") == 0 and dom0.domid("nope") is None
    missing = dom0.xl("domid", "nope")
    assert (missing.returncode, missing.stderr) == (
        1, "Can't get domid of domain name 'nope', maybe this domain does not exist.\n")


def test_domids_are_never_reused_even_after_failures(dom0: Sandbox) -> None:
    first = dom0.create("net-vm")
    assert dom0.xl("destroy", str(first)).returncode == 0
    assert dom0.xl("create", "-p", dom0.cfg("x", vif=["backend=nope"])).returncode == 3
    assert dom0.create("net-vm") == 3


# ---- the guest, played by the monitor ------------------------------------------------------
def test_unpause_lets_the_guest_write_data_ready_as_itself(dom0: Sandbox) -> None:
    d = dom0.create("sa-vm")
    assert dom0.xl("unpause", str(d)).returncode == 0
    assert wait_for(lambda: dom0.read(f"/local/domain/{d}/data/ready") == "1")
    assert dom0.perms(f"/local/domain/{d}/data/ready") == [f"n{d}"]  # owned by the guest
    assert dom0.read(f"/local/domain/{d}/control/feature-poweroff") == "1"
    assert dom0.states()["sa-vm"] == (d, "-b----")
    assert xlstate.domains(dom0.standin)[d]["booted"] is True


def test_guest_writes_follow_the_behaviour_file_and_refused_writes_are_recorded(
        dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"writes": {"data/vchan": "up", "ipc/x": "1"}, "ready_after": 0}})
    d = dom0.create("sa-vm")
    dom0.xl("unpause", "sa-vm")
    assert wait_for(lambda: xlstate.domains(dom0.standin)[d]["booted"])
    assert dom0.read(f"/local/domain/{d}/data/vchan") == "up"
    assert dom0.read(f"/local/domain/{d}/data/ready") is None  # writes replace the default
    assert xlstate.domains(dom0.standin)[d]["write_errors"] == {"ipc/x": "EACCES"}


def test_never_guest_boots_but_writes_nothing(dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"guest": "never"}})
    d = dom0.create("sa-vm")
    dom0.xl("unpause", str(d))
    time.sleep(0.25)  # ready_after defaults to 0.1 s
    assert dom0.read(f"/local/domain/{d}/data/ready") is None
    assert dom0.states()["sa-vm"] == (d, "-b----")


def test_vif_backend_reaches_initwait_and_connects_once_the_backend_domain_booted(
        dom0: Sandbox) -> None:
    dom0.behave({"net-vm": {"ready_after": 0.8}})
    net = dom0.create("net-vm")
    dom0.xl("unpause", str(net))  # running, but its `xl devd` is not up yet
    wl = dom0.create("workload-vm", vif=["ip=10.0.5.103,backend=net-vm,mac=00:16:3e:00:00:01"])
    fe, be = f"/local/domain/{wl}/device/vif/0", f"/local/domain/{net}/backend/vif/{wl}/0"
    assert dom0.perms(fe) == [f"n{wl}", f"r{net}"]
    assert dom0.perms(be) == [f"n{net}", f"r{wl}"]
    assert (dom0.read(f"{fe}/state"), dom0.read(f"{be}/state")) == ("1", "2")  # InitWait
    assert dom0.read(f"{fe}/backend") == be and dom0.read(f"{be}/frontend") == fe
    assert (dom0.read(f"{fe}/backend-id"), dom0.read(f"{be}/frontend-id")) == (str(net), str(wl))
    assert (dom0.read(f"{be}/ip"), dom0.read(f"{be}/mac")) == ("10.0.5.103", "00:16:3e:00:00:01")
    assert dom0.read(f"{be}/online") == "1" and dom0.read(f"{fe}/handle") == "0"
    dom0.xl("unpause", str(wl))
    assert wait_for(lambda: dom0.read(f"{fe}/state") == "4")  # written by the guest
    assert dom0.read(f"{be}/state") == "2"  # net-vm has not booted: nobody serves the backend
    assert wait_for(lambda: dom0.read(f"{be}/state") == "4")
    assert xlstate.domains(dom0.standin)[net]["booted"]
    assert dom0.read(f"{be}/hotplug-status") == "connected"


def test_create_waits_for_initwait_and_fails_when_the_backend_domain_is_paused(
        dom0: Sandbox) -> None:
    dom0.behave({"workload-vm": {"initwait_timeout": 0.2}})  # libxl waits 10 s
    net = dom0.create("net-vm")
    result = dom0.xl("create", "-p", dom0.cfg("workload-vm", vif=["backend=net-vm"]))
    assert result.returncode == 3
    assert (f"libxl_device.c:1181:device_backend_callback: Domain 2:unable to add device with "
            f"path /local/domain/{net}/backend/vif/2/0\n") in result.stderr
    assert f"/local/domain/{net}/backend/vif" not in dom0.store.snapshot()


def test_vif_backend_must_name_an_existing_domain(dom0: Sandbox) -> None:
    result = dom0.xl("create", "-p", dom0.cfg("workload-vm", vif=["backend=net-vm"]))
    assert result.returncode == 3
    assert ("libxl: error: libxl_create.c:1919:domcreate_attach_devices: Domain 1:unable to "
            "add vif devices\n") in result.stderr
    assert "libxl_domain.c:1183:libxl__destroy_domid: Domain 1:Non-existant domain" in result.stderr
    assert dom0.domid("workload-vm") is None and "/local/domain/1" not in dom0.store.snapshot()
    assert 1 not in dom0.store.introduced


def test_crash_shows_c_in_list_and_preserve_keeps_the_domain(dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"guest": "crash", "crash_after": 0.1}})
    d = dom0.create("sa-vm", on_crash="preserve")
    dom0.xl("unpause", str(d))
    assert wait_for(lambda: "Done. Exiting now" in dom0.log("sa-vm"))
    record = xlstate.domains(dom0.standin)[d]
    assert (record["state"], record["shutdown_reason"]) == ("shutdown", "crash")
    assert dom0.states()["sa-vm"] == (d, "---sc-")  # shut down ("s"), reason crash ("c")
    assert "Action for shutdown reason code 3 is preserve" in dom0.log("sa-vm")
    assert d in dom0.store.introduced  # preserved: it still exists for xenstored


def test_crash_with_on_crash_destroy_makes_the_domain_disappear(dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"guest": "crash", "crash_after": 0.1}})
    d = dom0.create("sa-vm", on_crash="destroy")
    dom0.xl("unpause", str(d))
    assert wait_for(lambda: d not in xlstate.domains(dom0.standin))
    assert "sa-vm" not in dom0.states()
    assert f"/local/domain/{d}" not in dom0.store.snapshot()
    assert d not in dom0.store.introduced
    assert xlstate.processes(dom0.standin) == []  # the monitor exited too


def test_crash_with_on_crash_restart_recreates_the_domain_under_a_new_domid(
        dom0: Sandbox) -> None:
    # the second boot does not crash (else: a crash loop, as with real xl)
    dom0.behave({"sa-vm": {"guest": "crash", "crash_after": 0.3, "restart_sleep": 0.1,
                           "after_restart": {"guest": "ready"}}})
    d = dom0.create("sa-vm", on_crash="restart")
    dom0.xl("unpause", str(d))
    assert wait_for(lambda: (xlstate.domid_of(dom0.standin, "sa-vm") or 0) > d)
    new = xlstate.domid_of(dom0.standin, "sa-vm")
    assert new is not None
    assert wait_for(lambda: dom0.read(f"/local/domain/{new}/data/ready") == "1")
    assert dom0.states()["sa-vm"] == (new, "-b----")
    assert f"/local/domain/{d}" not in dom0.store.snapshot()


# ---- failures with libxl's own words ----------------------------------------------------------
def test_create_of_a_name_in_use_fails_like_libxl(dom0: Sandbox) -> None:
    dom0.create("net-vm")
    result = dom0.xl("create", "-p", dom0.cfg("net-vm"))
    assert result.returncode == 3
    assert ('libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain 2:Domain with name '
            '"net-vm" already exists.\n') in result.stderr
    assert [n for n in dom0.states() if n == "net-vm"] == ["net-vm"]
    assert "/local/domain/2" not in dom0.store.snapshot()


def test_pci_device_not_on_pciback_is_not_assignable(dom0: Sandbox) -> None:
    assert dom0.run("modprobe", "xen-pciback").returncode == 0  # loaded, NIC still on e1000
    result = dom0.xl("create", "-p", dom0.cfg("net-vm", pci=[NIC.bdf]))
    assert result.returncode == 3
    assert ("libxl: error: libxl_pci.c:1677:libxl__device_pci_add: Domain 1:PCI device 0:0:3.0 "
            "is not assignable\n") in result.stderr
    assert "unable to add pci devices" in result.stderr
    assert dom0.domid("net-vm") is None and "/local/domain/1" not in dom0.store.snapshot()


def test_pci_device_on_pciback_is_passed_through(dom0: Sandbox) -> None:
    dom0.hand_to_pciback(NIC.bdf)
    assert dom0.xl("pci-assignable-list").stdout == f"{NIC.bdf} \n"
    result = dom0.xl("create", "-p", dom0.cfg("net-vm", pci=[NIC.bdf]))
    assert result.returncode == 0, result.stderr
    # what the lab saw, harmless: the fake sysfs has no reset file either
    assert "doesn't support reset from sysfs for PCI device 0000:00:03.0" in result.stderr
    assert dom0.read("/libxl/pci/0000-00-03-0/domid") == "1"
    assert dom0.xl("pci-assignable-list").stdout == ""  # assigned now
    assert dom0.xl("destroy", "1").returncode == 0
    assert dom0.xl("pci-assignable-list").stdout == f"{NIC.bdf} \n"


def test_pci_without_iommu_fails_before_any_domain_exists(dom0: Sandbox) -> None:
    dom0.behave({"@info": {"virt_caps": "pv hvm hap shadow"}})
    result = dom0.xl("create", "-p", dom0.cfg("net-vm", pci=[NIC.bdf]))
    assert result.returncode == 6
    assert ("libxl__domain_config_setdefault: passthrough not supported on this platform\n\n"
            in result.stderr)
    assert dom0.create("sa-vm") == 1  # no domid was used


def test_permission_denied_reproduces_the_version_trap(dom0: Sandbox) -> None:
    dom0.behave({"net-vm": {"create": "permission-denied"}})
    result = dom0.xl("create", "-p", dom0.cfg("net-vm"))
    assert result.returncode == 3
    assert ("libxl: error: libxl_create.c:711:libxl__domain_make: domain creation fail: "
            "Permission denied\n") in result.stderr
    assert dom0.xl("list").returncode == 0 and dom0.xl("info").returncode == 0


def test_create_fail_and_hang_behaviours(dom0: Sandbox) -> None:
    dom0.behave({"net-vm": {"create": "fail", "create_stderr": "libxl: error: boom"},
                 "sa-vm": {"create": "hang"}})
    result = dom0.xl("create", "-p", dom0.cfg("net-vm"))
    assert (result.returncode, result.stderr.splitlines()[-1]) == (3, "libxl: error: boom")
    assert dom0.domid("net-vm") is None
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(["xl", "create", "-p", dom0.cfg("sa-vm")], env=dom0.env,
                       capture_output=True, timeout=0.3)


def test_missing_kernel_fails_like_xc_dom_kernel_file(dom0: Sandbox) -> None:
    result = dom0.xl("create", "-p", dom0.cfg("net-vm", kernel="/nope/vmlinux"))
    assert result.returncode == 3
    assert ("xc: error: panic: xg_dom_core.c:205: failed to open file '/nope/vmlinux': No such "
            "file or directory: Internal error\n") in result.stderr
    assert "libxl__build_pv: xc_dom_kernel_file failed: No such file or directory" in result.stderr


def test_missing_var_log_xen_exits_3_with_the_domain_left_behind(dom0: Sandbox) -> None:
    shutil.rmtree(dom0.root / "var/log/xen")
    result = dom0.xl("create", "-p", dom0.cfg("net-vm"))
    assert result.returncode == 3
    assert "xl: fatal error: xl_utils.c:277: No such file or directory" in result.stderr
    assert dom0.states()["net-vm"] == (1, "--p---")


def test_xl_without_xenstored_cannot_init_its_context(bare: Sandbox) -> None:
    result = bare.xl("list")
    assert result.returncode == 1
    assert result.stderr == ("libxl: error: libxl.c:108:libxl_ctx_alloc: cannot connect to "
                             "xenstore: No such file or directory\ncannot init xl context\n")


# ---- destroy, unpause, info, calls -----------------------------------------------------------
def test_destroy_removes_homes_and_backends_releases_and_ends_the_monitor(dom0: Sandbox) -> None:
    net = dom0.create("net-vm")
    dom0.xl("unpause", str(net))
    wl = dom0.create("workload-vm", vif=["backend=net-vm"])
    monitor = xlstate.domains(dom0.standin)[wl]["monitor"]
    assert xlstate.alive(monitor["pid"], monitor["start"])
    assert Path(f"/proc/{monitor['pid']}/comm").read_text() == "xl\n"
    vm = dom0.read(f"/local/domain/{wl}/vm")
    assert vm is not None and vm in dom0.store.snapshot()
    assert dom0.xl("destroy", str(wl)).returncode == 0
    snap = dom0.store.snapshot()
    assert not [p for p in snap if p.startswith((f"/local/domain/{wl}", f"/libxl/{wl}", vm))]
    assert f"/local/domain/{net}/backend/vif" not in snap
    assert wl not in dom0.store.introduced and net in dom0.store.introduced
    # xl's monitor sees the death (@releaseDomain) and exits by itself, as real xl does
    assert wait_for(lambda: not xlstate.alive(monitor["pid"], monitor["start"]))
    assert dom0.log("workload-vm").endswith(f"Domain {wl} has been destroyed.\n")
    again = dom0.xl("destroy", str(wl))
    assert (again.returncode, again.stderr.splitlines()[-1]) == (1, "destroy failed (rc=-21)")
    refused = dom0.xl("destroy", "0")
    assert refused.returncode == 1 and "Not destroying domain 0" in refused.stderr


def test_unpause_of_an_unknown_domid_logs_and_exits_0_like_xl(dom0: Sandbox) -> None:
    result = dom0.xl("unpause", "7")
    assert result.returncode == 0
    assert "libxl__domain_type: unable to get domain type for domid=7" in result.stderr
    named = dom0.xl("unpause", "nope")
    assert (named.returncode, named.stderr) == (1, "nope is an invalid domain identifier (rc=-6)\n")


def test_info_reports_the_fake_hypervisor_and_overrides(dom0: Sandbox) -> None:
    lines = dom0.xl("info").stdout.splitlines()
    info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert (info["xen_major"], info["xen_minor"], info["xen_extra"]) == ("4", "17", ".5")
    assert info["xen_version"] == "4.17.5" and "pv_directio" in info["virt_caps"].split()
    assert "virt_caps              : pv hvm hvm_directio pv_directio" in lines[11]
    before = int(info["free_memory"])
    dom0.create("net-vm")
    after = dom0.xl("info").stdout
    assert f"free_memory            : {before - 128}\n" in after
    dom0.behave({"@info": {"virt_caps": "pv hvm", "xen_commandline": "dom0_mem=1G"}})
    changed = dom0.xl("info").stdout
    assert "virt_caps              : pv hvm\n" in changed
    assert "xen_commandline        : dom0_mem=1G\n" in changed


def test_every_invocation_is_logged_with_its_argv(dom0: Sandbox) -> None:
    cfg = dom0.cfg("net-vm")
    dom0.xl("create", "-p", cfg)
    dom0.xl("unpause", "1")
    assert xlstate.calls(dom0.standin) == [
        ["xen-init-dom0"], ["xl", "create", "-p", cfg], ["xl", "unpause", "1"]]


def test_monitor_is_detached_and_ends_when_xenstored_goes_away(dom0: Sandbox) -> None:
    d = dom0.create("net-vm")
    monitor = xlstate.domains(dom0.standin)[d]["monitor"]
    assert os.getsid(monitor["pid"]) != os.getsid(0)  # detached: a session of its own
    dom0.store.stop()
    assert wait_for(lambda: not xlstate.alive(monitor["pid"], monitor["start"]))


def test_configs_orchestrate_renders_for_the_example_units_are_accepted(dom0: Sandbox) -> None:
    from orchestrator.units import load_units
    from orchestrator.xlcfg import render_xl_config, vif_spec

    config = load_units(Path(__file__).resolve().parents[2] / "units")
    dom0.hand_to_pciback(NIC.bdf)
    dom0.hand_to_pciback(USB.bdf)
    for name in ("net-vm", "sa-vm", "workload-vm"):
        unit = config.domain(name)
        text = render_xl_config(unit, str(dom0.images / "vmlinux"),
                                str(dom0.images / "guest.cpio.gz"))
        path = dom0.root / f"{name}.cfg"
        path.write_text(text)
        result = dom0.xl("create", "-p", str(path))
        assert result.returncode == 0, result.stderr
        dom0.xl("unpause", name)  # a vif backend must run before its frontend's create
        for vif in (v for v in unit.vifs if v.attached_later):
            # xl network-attach takes the spec's items as separate arguments (xl_nic.c:72)
            tokens = vif_spec(vif).split(",")
            attached = dom0.xl("network-attach", name, *tokens)
            assert attached.returncode == 0, attached.stderr
    entries = json.loads(dom0.xl("list", "-l").stdout)
    by_name = {e["config"]["c_info"]["name"]: e["config"] for e in entries}
    nic = by_name["workload-vm"]["nics"][0]
    assert (nic["ip"], nic["backend_domid"]) == ("10.0.5.103", xlstate.domid_of(dom0.standin,
                                                                              "net-vm"))
    assert by_name["net-vm"]["b_info"]["max_memkb"] == 256 * 1024


# ---- xenstored, xen-init-dom0, xenconsoled ----------------------------------------------------
def _answers(path: Path) -> bool:
    try:
        with Client(str(path), timeout=0.2) as client:
            client.directory("/")
        return True
    except (OSError, XsError):
        return False


def test_xenstored_launcher_exits_at_once_and_its_pid_file_precedes_the_socket(
        bare: Sandbox) -> None:
    (bare.standin / xlstate.XENSTORED_SETTINGS).write_text('{"socket_delay": 0.3}')
    missing_dir = bare.run("xenstored", "--pid-file", str(bare.root / "nodir/xenstored.pid"))
    assert missing_dir.returncode == 0 and xlstate.processes(bare.standin) == []
    pid_file = bare.root / "run/xenstored.pid"
    started = time.monotonic()
    result = bare.run("xenstored", "--pid-file", str(pid_file))
    assert result.returncode == 0 and time.monotonic() - started < 0.3
    pid = int(pid_file.read_text())
    assert xlstate.alive(pid, None) and not _answers(bare.socket)
    assert Path(f"/proc/{pid}/comm").read_text() == "xenstored\n"
    assert wait_for(lambda: _answers(bare.socket))
    assert time.monotonic() - started >= 0.3
    assert [p["kind"] for p in xlstate.processes(bare.standin)] == ["xenstored"]


def test_mute_xenstored_accepts_but_never_answers(bare: Sandbox) -> None:
    (bare.standin / xlstate.XENSTORED_SETTINGS).write_text('{"socket_delay": 0, "mute": true}')
    assert bare.run("xenstored", "--pid-file", str(bare.root / "pid")).returncode == 0
    assert wait_for(lambda: bare.socket.exists())
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(bare.socket))
    sock.close()
    assert not _answers(bare.socket)


def test_xen_init_dom0_writes_domain0_and_is_idempotent(box: Sandbox) -> None:
    result = box.run("xen-init-dom0")
    assert (result.returncode, result.stderr) == (0, "")
    assert box.read("/local/domain/0/domid") == "0"
    assert box.read("/local/domain/0/name") == "Domain-0"
    assert box.read("/local/pool/0/name") == "Pool-0"
    assert list((box.root / "var/lib/xen").glob("userdata-d.0.*.libxl-json"))
    assert box.states() == {"Domain-0": (0, "r-----")}
    again = box.run("xen-init-dom0")
    assert (again.returncode, again.stderr) == (0, "Dom0 is already set up\n")


def test_xl_list_before_xen_init_dom0_shows_a_nameless_dom0(box: Sandbox) -> None:
    assert box.xl("list").stdout.splitlines()[1].startswith("(null)   ")


def test_xen_init_dom0_fails_without_xenstored_or_var_lib_xen(bare: Sandbox) -> None:
    result = bare.run("xen-init-dom0")
    assert (result.returncode, result.stderr) == (
        1, "cannot open xenstore connection: No such file or directory\n")
    bare.xsd = FakeXenstored(bare.socket).start()
    try:
        (bare.root / "var/lib/xen").rmdir()
        result = bare.run("xen-init-dom0")
        assert result.returncode == 1
        assert result.stderr.endswith("cannot store stub json config for domain 0\n")
        assert bare.read("/local/domain/0/name") is None
    finally:
        bare.store.stop()


def test_xenconsoled_daemonizes_writes_its_pid_file_and_follows_xenstored(dom0: Sandbox) -> None:
    pid_file = dom0.root / "run/xen/xenconsoled.pid"
    result = dom0.run("xenconsoled", f"--pid-file={pid_file}", "--log=all",
                      f"--log-dir={dom0.root / 'var/log/xen/console'}")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}/comm").read_text() == "xenconsoled\n"
    assert os.getsid(pid) != os.getsid(0)
    dom0.store.stop()
    assert wait_for(lambda: not xlstate.alive(pid, None))


def test_the_daemons_use_no_cpu_while_nothing_happens(bare: Sandbox) -> None:
    """xenstored (the launched daemon) and xenconsoled block: no periodic wake-up that a
    CPU measurement of the orchestrator's follower would have to share the machine with."""
    (bare.standin / xlstate.XENSTORED_SETTINGS).write_text('{"socket_delay": 0}')
    assert bare.run("xenstored", "--pid-file", str(bare.root / "xenstored.pid")).returncode == 0
    assert wait_for(lambda: _answers(bare.socket))
    assert bare.run("xen-init-dom0").returncode == 0
    assert bare.run("xenconsoled", f"--pid-file={bare.root / 'xenconsoled.pid'}").returncode == 0
    pids = [p["pid"] for p in xlstate.processes(bare.standin)]
    assert len(pids) == 2
    time.sleep(0.3)
    before = [cpu_ticks(pid) for pid in pids]
    time.sleep(2.0)
    assert [cpu_ticks(pid) for pid in pids] == before


def test_xenconsoled_can_exit_before_its_daemon_writes_the_pid_file(dom0: Sandbox) -> None:
    (dom0.standin / xlstate.XENCONSOLED_SETTINGS).write_text('{"pidfile_delay": 0.2}')
    pid_file = dom0.root / "run/xen/xenconsoled.pid"
    assert dom0.run("xenconsoled", f"--pid-file={pid_file}").returncode == 0
    assert not pid_file.exists()  # the real order: launcher gone, pid file not yet written
    assert wait_for(pid_file.exists)
    assert wait_for(lambda: pid_file.read_text().strip().isdigit())


def test_xenconsoled_without_xenstored_daemonizes_then_dies_silently(bare: Sandbox) -> None:
    pid_file = bare.root / "run/xen/xenconsoled.pid"
    result = bare.run("xenconsoled", f"--pid-file={pid_file}")
    assert (result.returncode, result.stderr) == (0, "")
    pid = int(pid_file.read_text())
    assert wait_for(lambda: not xlstate.alive(pid, None))


# ---- after the boot: the domain lifecycle ------------------------------------------------------
class DomainEvents:
    """A privileged connection with the follower's two watches (docs/misc/xenstore.txt):
    @introduceDomain and @releaseDomain carry no domid; each fires once when set."""

    def __init__(self, socket_path: Path) -> None:
        self.client = Client(str(socket_path), timeout=5.0)
        self.client.watch("@introduceDomain", "in")
        self.client.watch("@releaseDomain", "out")
        assert self.drain() == ["@introduceDomain", "@releaseDomain"]

    def drain(self, quiet: float = 0.3) -> list[str]:
        """Every event until none came for ``quiet`` seconds."""
        while select.select([self.client.sock], [], [], quiet)[0]:
            self.client.pump()
        out = [path for path, _ in self.client.events]
        self.client.events.clear()
        return out


def cpu_ticks(pid: int) -> int:
    """utime + stime of /proc/<pid>/stat (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_shutdown_is_acknowledged_by_the_guest_and_on_poweroff_destroy_removes_it(
        dom0: Sandbox) -> None:
    d = dom0.up("sa-vm")
    monitor = dom0.record(d)["monitor"]
    result = dom0.xl("shutdown", "sa-vm")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "", f"Shutting down domain {d}\n")
    assert wait_for(lambda: "sa-vm" not in dom0.states())
    assert f"/local/domain/{d}" not in dom0.store.snapshot() and d not in dom0.store.introduced
    assert wait_for(lambda: not xlstate.alive(monitor["pid"], monitor["start"]))
    assert dom0.log("sa-vm").splitlines()[1:] == [
        f"Domain {d} has shut down, reason code 0 0x0",
        "Action for shutdown reason code 0 is destroy",
        f"Domain {d} needs to be cleaned up: destroying the domain",
        "Done. Exiting now"]


def test_shutdown_w_waits_for_the_shutdown_and_preserve_keeps_the_domain(dom0: Sandbox) -> None:
    d = dom0.up("sa-vm", on_poweroff="preserve")
    result = dom0.xl("shutdown", "-w", "sa-vm")
    assert (result.returncode, result.stderr) == (0, (
        f"Shutting down domain {d}\nWaiting for 1 domains\n"
        f"Domain {d} has been shut down, reason code 0\n"))
    assert dom0.read(f"/local/domain/{d}/control/shutdown") == ""  # the guest's ack
    assert dom0.states()["sa-vm"] == (d, "---s--")
    assert (dom0.record(d)["state"], dom0.record(d)["shutdown_reason"]) == ("shutdown",
                                                                            "poweroff")
    assert wait_for(lambda: dom0.log("sa-vm").endswith("Done. Exiting now\n"))
    assert wait_for(lambda: xlstate.processes(dom0.standin) == [])  # nobody follows it now
    assert d in dom0.store.introduced


def test_shutdown_ww_waits_until_the_domain_is_destroyed(dom0: Sandbox) -> None:
    d = dom0.up("sa-vm", on_poweroff="preserve")
    waiting = subprocess.Popen(["xl", "shutdown", "-w", "-w", "sa-vm"], env=dom0.env,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: dom0.states()["sa-vm"][1] == "---s--")
        time.sleep(0.2)
        assert waiting.poll() is None, "-ww goes on waiting after the shutdown"
        assert dom0.xl("destroy", "sa-vm").returncode == 0
        _, err = waiting.communicate(timeout=5)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0
    assert err == (f"Shutting down domain {d}\nWaiting for 1 domains\n"
                   f"Domain {d} has been shut down, reason code 0\n"
                   f"Domain {d} continue waiting for death\nDomain {d} has been destroyed\n")


def test_shutdown_a_shuts_down_every_domain_but_dom0(dom0: Sandbox) -> None:
    a, b = dom0.up("net-vm", on_poweroff="preserve"), dom0.up("sa-vm", on_poweroff="preserve")
    result = dom0.xl("shutdown", "-a", "-w")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"Shutting down domain {a}\nShutting down domain {b}\n"
                                    "Waiting for 2 domains\n")
    states = dom0.states()
    assert (states["net-vm"][1], states["sa-vm"][1], states["Domain-0"][1]) == (
        "---s--", "---s--", "r-----")
    missing = dom0.xl("shutdown")
    assert (missing.returncode, missing.stderr) == (1, "You must specify -a or a domain id.\n\n")


def test_a_guest_that_ignores_shutdown_acknowledges_it_and_stays_up(dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"on_shutdown": "ignore"}})
    d = dom0.up("sa-vm")
    assert dom0.xl("shutdown", "sa-vm").returncode == 0  # acked: xl is satisfied
    with pytest.raises(subprocess.TimeoutExpired):  # -w waits as long as it takes
        subprocess.run(["xl", "shutdown", "-w", "sa-vm"], env=dom0.env, capture_output=True,
                       timeout=1.0)
    assert dom0.states()["sa-vm"] == (d, "-b----")
    assert "xen:manage: poweroff requested" in dom0.console("sa-vm")


def test_an_unresponsive_guest_never_acknowledges_and_xl_shutdown_fails_at_libxls_timeout(
        dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"on_shutdown": "unresponsive", "ack_timeout": 0.3}})
    d = dom0.up("sa-vm")
    assert dom0.read(f"/local/domain/{d}/control/feature-poweroff") == ""  # no PV control
    result = dom0.xl("shutdown", "sa-vm")
    assert (result.returncode, result.stderr) == (1, (
        f"Shutting down domain {d}\nlibxl: error: libxl_domain.c:854:pvcontrol_cb: guest "
        "didn't acknowledge control request: -9\nshutdown failed (rc=-9)\n"))
    assert dom0.read(f"/local/domain/{d}/control/shutdown") == "poweroff"
    assert dom0.xl("sysrq", "sa-vm", "b").returncode == 0
    time.sleep(0.3)
    assert dom0.states()["sa-vm"] == (d, "-b----")  # sysrq needs the same kernel support


def test_a_paused_guest_acknowledges_only_once_it_runs_again(dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"ack_timeout": 0.3}})
    d = dom0.up("sa-vm", on_poweroff="preserve")
    assert dom0.xl("pause", "sa-vm").returncode == 0
    assert dom0.states()["sa-vm"] == (d, "--p---")
    assert dom0.xl("shutdown", "sa-vm").returncode == 1
    assert dom0.xl("unpause", "sa-vm").returncode == 0
    assert wait_for(lambda: dom0.states()["sa-vm"] == (d, "---s--"))
    assert dom0.read(f"/local/domain/{d}/control/shutdown") == ""


def test_shutdown_of_a_domain_that_does_not_exist_fails_like_libxl(dom0: Sandbox) -> None:
    result = dom0.xl("shutdown", "7")
    assert (result.returncode, result.stderr) == (1, (
        "Shutting down domain 7\nlibxl: error: libxl_dom.c:37:libxl__domain_type: unable to "
        "get domain type for domid=7\nshutdown failed (rc=-3)\n"))


def test_reboot_gives_a_new_domid_same_name_and_uuid_unpaused_and_freshly_booted(
        dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"restart_sleep": 0.1, "writes": {"data/ready": "1"}}})
    d = dom0.up("sa-vm")
    uuid_before, monitor = dom0.record(d)["uuid"], dom0.record(d)["monitor"]
    events = DomainEvents(dom0.socket)
    result = dom0.xl("reboot", "sa-vm")
    assert (result.returncode, result.stderr) == (0, f"Rebooting domain {d}\n")
    new = dom0.new_domid("sa-vm", d)
    assert new > d and dom0.domid("sa-vm") == new
    assert dom0.read(f"/local/domain/{new}/data/ready") == "1"  # the new boot wrote it
    assert dom0.states()["sa-vm"] == (new, "-b----")  # not paused
    record = dom0.record(new)
    assert (record["uuid"], record["boot"]) == (uuid_before, 2)
    assert record["monitor"]["pid"] == monitor["pid"], "the same monitor follows the new domain"
    assert f"/local/domain/{d}" not in dom0.store.snapshot()
    assert d not in dom0.store.introduced and new in dom0.store.introduced
    # the shutdown, the old domain's destruction, the new domain's introduction
    assert events.drain() == ["@releaseDomain", "@releaseDomain", "@introduceDomain"]
    assert dom0.log("sa-vm").splitlines() == [
        f"Waiting for domain sa-vm (domid {d}) to die [pid {monitor['pid']}]",
        f"Domain {d} has shut down, reason code 1 0x1",
        "Action for shutdown reason code 1 is restart",
        f"Domain {d} needs to be cleaned up: destroying the domain",
        "Done. Rebooting now",
        f"Waiting for domain sa-vm (domid {new}) to die [pid {monitor['pid']}]"]


@pytest.mark.parametrize(("key", "code", "flags"), [("b", 1, "---sr-"), ("c", 3, "---sc-"),
                                                    ("o", 0, "---s--")])
def test_sysrq_b_c_o_reboot_crash_and_power_off_the_guest_at_once(
        dom0: Sandbox, key: str, code: int, flags: str) -> None:
    d = dom0.up("sa-vm", on_poweroff="preserve", on_reboot="preserve", on_crash="preserve")
    events = DomainEvents(dom0.socket)
    result = dom0.xl("sysrq", "sa-vm", key)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert wait_for(lambda: dom0.states()["sa-vm"] == (d, flags))
    assert dom0.read(f"/local/domain/{d}/control/sysrq") == ""  # acknowledged by the kernel
    assert dom0.record(d)["sysrq"] == [key]
    assert events.drain() == ["@releaseDomain"]  # shut down, preserved: released once
    assert f"Domain {d} has shut down, reason code {code} 0x{code:x}" in dom0.log("sa-vm")


def test_other_sysrq_keys_reach_the_guest_and_change_nothing(dom0: Sandbox) -> None:
    d = dom0.up("sa-vm")
    assert dom0.xl("sysrq", "sa-vm", "h").returncode == 0
    assert wait_for(lambda: dom0.record(d)["sysrq"] == ["h"])
    assert dom0.states()["sa-vm"] == (d, "-b----")
    invalid = dom0.xl("sysrq", "sa-vm", "bb")
    assert invalid.returncode == 1 and invalid.stderr.startswith("Invalid sysrq.\n")


def test_rename_restart_keeps_the_old_domain_shut_down_under_a_dated_name(dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"restart_sleep": 0.1}})
    d = dom0.up("sa-vm", on_reboot="rename-restart")
    assert dom0.xl("reboot", "sa-vm").returncode == 0
    new = dom0.new_domid("sa-vm", d)
    states = dom0.states()
    old = [name for name, (domid, _) in states.items() if domid == d]
    assert len(old) == 1 and re.fullmatch(r"sa-vm-\d{8}T\d{4}Z", old[0]), states
    assert states[old[0]] == (d, "---sr-") and states["sa-vm"] == (new, "-b----")
    assert f"Preserving domain {d} sa-vm with suffix-" in dom0.log("sa-vm")
    assert f"Domain {d} needs to be cleaned up" not in dom0.log("sa-vm")


def test_coredump_destroy_writes_the_core_then_destroys(dom0: Sandbox) -> None:
    (dom0.root / "var/lib/xen/dump").mkdir()
    dom0.behave({"sa-vm": {"guest": "crash", "crash_after": 0.2}})
    d = dom0.create("sa-vm", on_crash="coredump-destroy")
    dom0.xl("unpause", str(d))
    assert wait_for(lambda: "sa-vm" not in dom0.states())
    assert (dom0.root / "var/lib/xen/dump/sa-vm").exists()
    assert "dumping core to /var/lib/xen/dump/sa-vm" in dom0.log("sa-vm")


def test_xl_restarts_a_domain_that_crashes_at_every_boot_without_limit(dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"guest": "crash", "crash_after": 0.05, "restart_sleep": 0.05}})
    d = dom0.create("sa-vm", on_crash="restart")
    dom0.xl("unpause", str(d))
    assert wait_for(lambda: (xlstate.domid_of(dom0.standin, "sa-vm") or 0) >= d + 3, 10)
    assert dom0.log("sa-vm").count("Done. Rebooting now") >= 3


def test_a_restart_that_cannot_create_the_domain_ends_the_monitor(dom0: Sandbox) -> None:
    dom0.behave({"workload-vm": {"restart_sleep": 0.1}})
    net, wl = dom0.pair()
    assert dom0.xl("destroy", "net-vm").returncode == 0
    assert dom0.xl("reboot", "workload-vm").returncode == 0
    assert wait_for(lambda: xlstate.processes(dom0.standin) == [])
    assert "workload-vm" not in dom0.states()
    assert "unable to add vif devices" in dom0.log("workload-vm")


def test_a_domid_destroyed_less_than_60_s_ago_is_skipped_when_the_rover_comes_back(
        dom0: Sandbox) -> None:
    first = dom0.create("net-vm")
    assert dom0.xl("destroy", str(first)).returncode == 0
    history = (dom0.root / "var/run/xen/domid-history").read_text().split()
    assert history[1] == str(first) and abs(int(history[0]) - time.monotonic()) < 5
    with xlstate.locked_state(dom0.standin) as state:  # as if the rover wrapped around
        state["next_domid"] = first
    assert dom0.create("net-vm") == first + 1


def test_a_recycled_domid_inherits_no_grant_naming_its_predecessor(dom0: Sandbox) -> None:
    """Why a follower must drop the grants of a domain gone for good: xenstored ignores
    them for any later domain with that domid (domain_adjust_node_perms()), but they stay
    listed, and only a re-grant after the new domain exists counts."""
    d = dom0.create("sa-vm")
    with Client(str(dom0.socket), timeout=5.0) as xs:
        xs.write("/ipc/grant", "x")
        xs.set_perms("/ipc/grant", ["n0", f"r{d}"])
    assert dom0.store.could(d, "/ipc/grant", "r")
    assert dom0.xl("destroy", str(d)).returncode == 0
    assert dom0.perms("/ipc/grant") == ["n0", f"r{d}"]  # still listed, ignored
    dom0.env["LIBXL_DOMID_REUSE_TIMEOUT"] = "0"  # libxl: reuse once a second has passed
    second = int(time.monotonic())
    assert wait_for(lambda: int(time.monotonic()) > second, 2)
    with xlstate.locked_state(dom0.standin) as state:  # the rover comes back to d
        state["next_domid"] = d
    assert dom0.create("sa-vm") == d
    assert not dom0.store.could(d, "/ipc/grant", "r")


def test_release_fires_when_a_preserved_domain_shuts_down_and_again_when_destroyed(
        dom0: Sandbox) -> None:
    events = DomainEvents(dom0.socket)
    d = dom0.up("sa-vm", on_poweroff="preserve")
    assert events.drain() == ["@introduceDomain"]
    assert dom0.xl("shutdown", "-w", "sa-vm").returncode == 0
    assert events.drain() == ["@releaseDomain"]
    assert d in dom0.store.introduced
    assert dom0.xl("destroy", "sa-vm").returncode == 0
    assert events.drain() == ["@releaseDomain"]
    assert d not in dom0.store.introduced and f"/local/domain/{d}" not in dom0.store.snapshot()


def test_list_shows_running_paused_shut_down_crashed_and_dying_domains(dom0: Sandbox) -> None:
    dom0.behave({"sa-vm": {"guest": "crash", "crash_after": 0.1},
                 "gone-vm": {"dying_for": 3.0}})
    running, paused = dom0.up("net-vm"), dom0.create("usb-vm")
    off = dom0.up("off-vm", on_poweroff="preserve")
    assert dom0.xl("shutdown", "-w", "off-vm").returncode == 0
    crashed = dom0.create("sa-vm", on_crash="preserve")
    dom0.xl("unpause", "sa-vm")
    dying = dom0.create("gone-vm")
    assert wait_for(lambda: dom0.states()["sa-vm"][1] == "---sc-")
    assert dom0.xl("destroy", "gone-vm").returncode == 0
    assert dom0.states() == {"Domain-0": (0, "r-----"), "net-vm": (running, "-b----"),
                             "usb-vm": (paused, "--p---"), "off-vm": (off, "---s--"),
                             "sa-vm": (crashed, "---sc-"), "(null)": (dying, "--p--d")}
    lines = dom0.xl("list", "-v").stdout.splitlines()
    assert lines[0].endswith("Time(s)   UUID                            Reason-Code\t"
                             "Security Label")
    rows = {line.split()[0]: line.split()[6:] for line in lines[1:]}
    assert rows["net-vm"] == [dom0.record(running)["uuid"], "-", "-"]
    assert rows["off-vm"][1:] == ["0", "-"] and rows["sa-vm"][1:] == ["3", "-"]
    assert wait_for(lambda: "(null)" not in dom0.states(), 6)  # the zombie goes by itself


# ---- vifs after the boot: a driver domain's death, network-detach/-attach/-list -------------
def test_a_frontend_that_only_says_connected_gets_its_backend_closed_not_connected(
        dom0: Sandbox) -> None:
    """netback maps the rings the frontend published; a guest that writes state 4 and
    nothing else gets xenbus_dev_fatal(): an error node and Closing."""
    dom0.behave({"workload-vm": {"connect_vifs": False}})  # no netfront in this guest
    net = dom0.up("net-vm")
    wl = dom0.up("workload-vm", vif=["backend=net-vm"])
    fe, be = f"/local/domain/{wl}/device/vif/0", f"/local/domain/{net}/backend/vif/{wl}/0"
    assert dom0.read(f"{fe}/state") == "1"
    with dom0.guest(wl) as guest:
        guest.write(f"{fe}/state", "4")
    assert wait_for(lambda: dom0.read(f"{be}/state") == "5")
    assert dom0.read(f"/local/domain/{net}/error/backend/vif/{wl}/0/error") == \
        f"-2 reading {fe}/tx-ring-ref"


def test_a_dead_driver_domain_leaves_its_clients_frontend_connected_to_nothing(
        dom0: Sandbox) -> None:
    dom0.behave({"net-vm": {"restart_sleep": 0.1}})
    net, wl = dom0.pair()
    fe, be = f"/local/domain/{wl}/device/vif/0", f"/local/domain/{net}/backend/vif/{wl}/0"
    assert dom0.xl("sysrq", "net-vm", "b").returncode == 0
    new_net = dom0.new_domid("net-vm", net)
    time.sleep(0.3)
    with dom0.guest(wl) as guest:  # what workload-vm's netfront sees
        assert (guest.read_str(f"{fe}/state"), guest.read_str(f"{fe}/backend")) == ("4", be)
        with pytest.raises(XsError):
            guest.read(f"{be}/state")
    assert dom0.read(f"/libxl/{wl}/device/vif/0/backend") == be  # libxl's record: the same
    assert not [p for p in dom0.store.snapshot() if p.startswith(f"/local/domain/{new_net}/back")]
    listed = dom0.xl("network-list", "workload-vm").stdout.splitlines()
    assert listed[1].split()[:5] == ["0", str(net), dom0.read(f"{fe}/mac"), "0", "4"]
    assert listed[1].split()[-1] == be


def test_network_detach_of_a_vif_whose_backend_died_cleans_the_frontend_alone(
        dom0: Sandbox) -> None:
    net, wl = dom0.pair()
    be = f"/local/domain/{net}/backend/vif/{wl}/0"
    assert dom0.xl("destroy", "net-vm").returncode == 0
    result = dom0.xl("network-detach", "workload-vm", "0")
    assert (result.returncode, result.stderr) == (0, (
        "libxl: info: libxl_device.c:1067:libxl__initiate_device_generic_remove: backend "
        f"{be} already removed, cleanup frontend only\n"))
    snap = dom0.store.snapshot()
    assert f"/local/domain/{wl}/device/vif" not in snap  # with its empty parent
    assert f"/libxl/{wl}/device" not in snap and f"/libxl/{wl}/type" in snap
    unknown = dom0.xl("network-detach", "workload-vm", "0")
    assert (unknown.returncode, unknown.stderr) == (1, "Unknown device 0.\n")


def test_network_detach_with_a_live_backend_closes_both_ends_then_removes_them(
        dom0: Sandbox) -> None:
    net, wl = dom0.pair()
    mac = dom0.read(f"/local/domain/{wl}/device/vif/0/mac")
    assert mac is not None
    result = dom0.xl("network-detach", "workload-vm", mac.upper())  # a MAC selects it too
    assert (result.returncode, result.stderr) == (0, "")
    snap = dom0.store.snapshot()
    assert not [p for p in snap if "/device/vif" in p or "/backend/vif" in p]
    assert f"/local/domain/{net}/backend" not in snap  # empty parents go too
    assert f"xl devd: vif-bridge offline, removed /local/domain/{net}/backend/vif/{wl}/0" in \
        dom0.console("net-vm")  # the driver domain removed its backend itself


def test_network_detach_forces_the_removal_when_the_frontend_does_not_answer(
        dom0: Sandbox) -> None:
    dom0.behave({"workload-vm": {"destroy_timeout": 0.3}})
    net, wl = dom0.pair()
    assert dom0.xl("pause", "workload-vm").returncode == 0  # its netfront cannot close
    started = time.monotonic()
    result = dom0.xl("network-detach", "workload-vm", "0")
    assert (result.returncode, result.stderr) == (0, "")
    assert time.monotonic() - started >= 0.3, "one timeout, then the forced removal"
    assert not [p for p in dom0.store.snapshot() if "/device/vif" in p or "/backend/vif" in p]


def test_network_attach_resolves_the_backend_by_name_and_writes_what_create_writes(
        dom0: Sandbox) -> None:
    net = dom0.up("net-vm")
    wl = dom0.up("workload-vm", vif=["ip=10.0.5.103,backend=net-vm"])
    assert dom0.xl("network-detach", "workload-vm", "0").returncode == 0
    result = dom0.xl("network-attach", "workload-vm", "ip=10.0.5.104", "backend=net-vm",
                     "mac=00:16:3e:00:00:07")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    fe, be = f"/local/domain/{wl}/device/vif/0", f"/local/domain/{net}/backend/vif/{wl}/0"
    assert dom0.perms(fe) == [f"n{wl}", f"r{net}"] and dom0.perms(be) == [f"n{net}", f"r{wl}"]
    assert dom0.perms(f"{fe}/mtu") == [f"n{net}", f"r{wl}"]
    assert (dom0.read(f"{fe}/backend"), dom0.read(f"{be}/frontend")) == (be, fe)
    assert (dom0.read(f"{be}/ip"), dom0.read(f"{be}/mac")) == ("10.0.5.104", "00:16:3e:00:00:07")
    assert dom0.read(f"/libxl/{wl}/device/vif/0/backend") == be
    assert dom0.read(f"/libxl/{wl}/device/vif/0/ip") == "10.0.5.104"
    assert wait_for(lambda: dom0.connected(fe))  # hot-plugged: the guest connects it too
    nics = {e["config"]["c_info"]["name"]: e["config"].get("nics") for e in
            json.loads(dom0.xl("list", "-l").stdout)}
    assert nics["workload-vm"] == [{"backend_domid": net, "devid": 0, "mac": "00:16:3e:00:00:07",
                                    "bridge": "xenbr0", "script": "/etc/xen/scripts/vif-bridge",
                                    "nictype": "vif", "backend_domname": "net-vm",
                                    "ip": "10.0.5.104"}]
    # libxl__device_nextid(): the last entry + 1
    assert dom0.xl("network-attach", "workload-vm", "backend=net-vm").returncode == 0
    assert dom0.read(f"/libxl/{wl}/device/vif/1/backend") == \
        f"/local/domain/{net}/backend/vif/{wl}/1"
    listed = dom0.xl("network-list", "workload-vm").stdout.splitlines()
    # main_networklist()'s printf formats, copied verbatim from xl_nic.c:107-124
    header = "%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s %-30s" % (  # noqa: UP031
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path")
    row = "%-3d %-2d " % (0, net) + "00:16:3e:00:00:07" + (  # noqa: UP031
        "%6d %5d %6d %5d/%-11d %-30s" % (0, 4, 10, 8, 9, be))  # noqa: UP031
    assert listed[:2] == [header, row] and listed[2].startswith(f"1   {net:<2d} ")


def test_network_attach_takes_each_argument_as_one_token_like_xl(dom0: Sandbox) -> None:
    dom0.up("net-vm")
    wl = dom0.up("workload-vm")
    result = dom0.xl("network-attach", "workload-vm", "ip=10.0.5.103,backend=net-vm")
    assert result.returncode == 0, result.stderr
    be = f"/local/domain/0/backend/vif/{wl}/0"  # no backend= token: dom0 serves it
    assert dom0.read(f"{be}/ip") == "10.0.5.103,backend=net-vm"
    assert wait_for(lambda: dom0.connected(f"/local/domain/{wl}/device/vif/0"))
    # a mac= token takes six bytes and drops the rest (xl_parse.c:437-446)
    spec = "mac=00:16:3e:00:00:0a,ip=10.0.5.9,backend=net-vm"
    assert dom0.xl("network-attach", "workload-vm", spec).returncode == 0
    be1 = f"/local/domain/0/backend/vif/{wl}/1"
    assert (dom0.read(f"{be1}/mac"), dom0.read(f"{be1}/ip")) == ("00:16:3e:00:00:0a", None)
    bad = dom0.xl("network-attach", "workload-vm", "nonsense")
    assert (bad.returncode, bad.stderr) == (1, "unrecognized argument `nonsense'\n")


def test_network_attach_to_a_backend_that_does_not_run_fails_like_libxl(dom0: Sandbox) -> None:
    dom0.behave({"workload-vm": {"initwait_timeout": 0.3}})
    wl = dom0.up("workload-vm")
    missing = dom0.xl("network-attach", "workload-vm", "backend=net-vm")
    assert (missing.returncode, missing.stderr) == (1, (
        "libxl: error: libxl_device.c:1486:device_addrm_aocomplete: unable to add device\n"
        "libxl_device_nic_add failed.\n"))
    assert f"/libxl/{wl}/device/vif" not in dom0.store.snapshot()
    net = dom0.create("net-vm")  # paused: its netback never answers
    paused = dom0.xl("network-attach", "workload-vm", "backend=net-vm")
    assert (paused.returncode, paused.stderr) == (1, (
        f"libxl: error: libxl_device.c:1181:device_backend_callback: Domain {wl}:unable to add "
        f"device with path /local/domain/{net}/backend/vif/{wl}/0\n"
        f"libxl: error: libxl_device.c:1481:device_addrm_aocomplete: Domain {wl}:Unable to add "
        "vif with id 0\nlibxl_device_nic_add failed.\n"))


def test_a_hot_plugged_vif_is_part_of_the_domain_when_xl_restarts_it(dom0: Sandbox) -> None:
    dom0.behave({"workload-vm": {"restart_sleep": 0.1}})
    net = dom0.up("net-vm")
    wl = dom0.up("workload-vm")
    assert dom0.xl("network-attach", "workload-vm", "backend=net-vm", "ip=10.0.5.103")\
        .returncode == 0
    mac = dom0.read(f"/local/domain/{wl}/device/vif/0/mac")
    assert dom0.xl("sysrq", "workload-vm", "b").returncode == 0
    new = dom0.new_domid("workload-vm", wl)
    fe = f"/local/domain/{new}/device/vif/0"
    assert dom0.read(f"{fe}/mac") == mac  # the MAC libxl chose is in the stored config
    assert dom0.read(f"{fe}/backend") == f"/local/domain/{net}/backend/vif/{new}/0"
    assert wait_for(lambda: dom0.connected(fe))


def test_a_restart_re_resolves_backend_names_and_drops_a_detached_vif_with_a_warning(
        dom0: Sandbox) -> None:
    dom0.behave({"workload-vm": {"restart_sleep": 0.1}, "net-vm": {"restart_sleep": 0.1}})
    net, wl = dom0.pair()
    assert dom0.xl("sysrq", "net-vm", "b").returncode == 0
    new_net = dom0.new_domid("net-vm", net)
    assert dom0.xl("reboot", "workload-vm").returncode == 0
    new_wl = dom0.new_domid("workload-vm", wl)
    fe = f"/local/domain/{new_wl}/device/vif/0"
    assert dom0.read(f"{fe}/backend") == f"/local/domain/{new_net}/backend/vif/{new_wl}/0"
    assert wait_for(lambda: dom0.connected(fe))
    assert dom0.xl("network-detach", "workload-vm", "0").returncode == 0
    assert dom0.xl("reboot", "workload-vm").returncode == 0
    third = dom0.new_domid("workload-vm", new_wl)
    assert f"/local/domain/{third}/device/vif" not in dom0.store.snapshot()
    assert (f"libxl: warning: libxl_domain.c:2604:retrieve_domain_configuration_end: Domain "
            f"{new_wl}:Device present in JSON but not in xenstore, ignored") in \
        dom0.log("workload-vm")


def test_dom0_gets_a_vif_from_a_driver_domain_once_xen_netfront_is_loaded(
        dom0: Sandbox) -> None:
    net = dom0.up("net-vm")
    result = dom0.xl("network-attach", "0", "backend=net-vm", "mac=00:16:3e:00:00:09")
    assert (result.returncode, result.stderr) == (0, "")
    fe, be = "/local/domain/0/device/vif/0", f"/local/domain/{net}/backend/vif/0/0"
    assert dom0.perms(fe) == ["n0", f"r{net}"] and dom0.perms(be) == [f"n{net}", "r0"]
    time.sleep(0.3)
    assert (dom0.read(f"{fe}/state"), dom0.read(f"{be}/state")) == ("1", "2")  # no driver
    assert dom0.run("modprobe", "xen-netfront").returncode == 0
    assert wait_for(lambda: dom0.connected(fe))
    link = dom0.run("ip", "link", "show", "eth1")  # eth0 is the NIC, still in dom0 here
    assert link.returncode == 0 and "link/ether 00:16:3e:00:00:09 " in link.stdout
    assert dom0.xl("network-detach", "0", "0").returncode == 0
    assert dom0.run("ip", "link", "show", "eth1").returncode == 1
    assert fe not in dom0.store.snapshot()


# ---- processes -----------------------------------------------------------------------------
def test_the_domains_processes_sleep_when_nothing_happens_and_end_with_their_domain(
        dom0: Sandbox) -> None:
    net, wl = dom0.pair()
    monitors = [p["pid"] for p in xlstate.processes(dom0.standin) if p["kind"] == "monitor"]
    assert len(monitors) == 2
    time.sleep(0.3)
    before = [cpu_ticks(pid) for pid in monitors]
    time.sleep(2.0)
    assert [cpu_ticks(pid) for pid in monitors] == before, "idle: no wake-ups, no CPU"
    assert dom0.xl("destroy", "workload-vm").returncode == 0
    assert dom0.xl("destroy", "net-vm").returncode == 0
    assert wait_for(lambda: xlstate.processes(dom0.standin) == [])


def test_no_domain_process_outlives_the_stand_ins_lifetime(dom0: Sandbox) -> None:
    dom0.env["XL_STANDIN_LIFETIME"] = "1.5"
    d = dom0.up("sa-vm")
    monitor = dom0.record(d)["monitor"]
    assert wait_for(lambda: not xlstate.alive(monitor["pid"], monitor["start"]), 4)
