"""The Xen toolstack stand-ins act like xl/libxl 4.17, xenstored's launcher, xen-init-dom0
and xenconsoled: the nodes, permissions, messages and exit codes the orchestrator meets on a
real dom0 (XEN-FACTS.md "What libxl writes for a new domain", "xl", "Devices and daemons").

Each test runs the real stand-in programs (by name, through PATH) against an in-process
FakeXenstored and a FakeKernel tree, and ends every process they started.
"""

from __future__ import annotations

import json
import os
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
            on_crash: str = "destroy", kernel: str | None = None) -> str:
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
        lines += ['on_poweroff = "destroy"', 'on_reboot = "restart"',
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
        for sub in ("var/lib/xen", "var/log/xen", "run/xen"):
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
    assert wait_for(lambda: xlstate.domains(dom0.standin)[d]["state"] == "crashed")
    time.sleep(0.1)
    assert dom0.states()["sa-vm"] == (d, "---sc-")  # shut down ("s"), reason crash ("c")
    log = (dom0.root / "var/log/xen/xl-sa-vm.log").read_text()
    assert "Action for shutdown reason code 3 is preserve" in log


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
    dom0.behave({"sa-vm": {"guest": "crash", "crash_after": 0.3}})
    d = dom0.create("sa-vm", on_crash="restart")
    dom0.xl("unpause", str(d))
    assert wait_for(lambda: (xlstate.domid_of(dom0.standin, "sa-vm") or 0) > d)
    dom0.behave({})  # the second boot does not crash (else: a crash loop, as with real xl)
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
    (dom0.root / "var/log/xen").rmdir()
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
    assert dom0.xl("destroy", str(wl)).returncode == 0
    snap = dom0.store.snapshot()
    assert not [p for p in snap if p.startswith((f"/local/domain/{wl}", f"/libxl/{wl}"))]
    assert f"/local/domain/{net}/backend/vif" not in snap
    assert wl not in dom0.store.introduced and net in dom0.store.introduced
    assert not xlstate.alive(monitor["pid"], monitor["start"])
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
    from orchestrator.xlcfg import render_xl_config

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
    entries = json.loads(dom0.xl("list", "-l").stdout)
    by_name = {e["config"]["c_info"]["name"]: e["config"] for e in entries}
    assert by_name["workload-vm"]["nics"][0]["ip"] == "10.0.5.103"
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
