"""A fake /proc and /sys under a sandbox root whose PCI files act like the kernel's.

``build()`` lays out proc/{misc,modules,mounts,filesystems,uptime,cmdline}, sys/hypervisor,
sys/devices/pci<dom>:<bus>/<bdf> (sys/bus/pci/devices/<bdf> are symlinks into it, as in the
real kernel), sys/bus/pci/drivers/<name>, sys/class/net and run/fake-kernel/ (net.json for
``ip``, kernel.json with the module catalog for ``modprobe``, calls.jsonl of the stand-ins'
argv). ``start()`` services the write-only sysfs files (drivers/*/{bind,unbind}, pciback's
{new_slot,remove_slot}, drivers_probe): FIFOs one thread holds open O_RDWR.

Decisions [and why]:
- /proc/misc lists the newest device first and hands out dynamic minors downward from 127
  [Linux 6.1 drivers/char/misc.c: ``list_add`` to the front, ``minor = DYNAMIC_MINORS - i -
  1``, DYNAMIC_MINORS 128]. xen/xenbus and xen/xenbus_backend are there from boot on Xen
  [drivers/xen/xenbus/Makefile builds both in; the backend registers in dom0 only]. With the
  default boot set the lab's load order gives evtchn 122, gntdev 121, gntalloc 120, privcmd
  119, hypercall 118 [privcmd-buf.c is part of xen-privcmd; a 6.8 dom0 in the wild had
  /dev/xen/privcmd at 10,119]. Minors depend on load order: always read /proc/misc.
- A FIFO write returns before it is read, so what the kernel would refuse to the writer
  (-ENODEV, -EBUSY) is dropped and logged in ``dmesg``: check the ``driver`` link, as on real
  hardware. Writes to several FIFOs seen in one wake-up are applied in the order a correct
  caller issues them (unbind, remove_slot, new_slot, bind, drivers_probe).
- driver_override is a regular file: its first line counts ("" or "(null)": unset), so
  writes without O_TRUNC work when they end in a newline, as ``echo``'s do.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import selectors
import struct
import sys
import termios
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

FAKE_BIN = Path(__file__).resolve().parent / "bin"
STATE_DIR = "run/fake-kernel"
PCI = "sys/bus/pci"
_BDF = re.compile(r"\(?\s*((?:[0-9a-fA-F]{1,4}:)?[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}\.[0-7])\s*\)?")
_HIDE = re.compile(r"(?:xen-pciback\.)?hide=((?:\([^)]*\))+)")
_ORDER = {"control": 0, "unbind": 1, "remove_slot": 2, "new_slot": 3, "bind": 4, "probe": 5}
DRIVER_FIFOS = ("bind", "unbind")
PCIBACK_FIFOS = ("new_slot", "remove_slot")  # xen-pciback registers its driver as "pciback"
DEFAULT_CMDLINE = "console=hvc0 earlyprintk=xen panic=-1 rootfstype=ramfs"
NetIf = dict[str, Any]


@dataclass(frozen=True)
class PciDevice:
    bdf: str
    driver: str | None  # its native driver, bound at boot
    vendor: str
    device: str
    net_if: str | None = None
    pci_class: str | None = None  # default: NIC 0x020000, xHCI 0x0c0330, else 0xff0000


@dataclass(frozen=True)
class ModuleSpec:
    size: int
    deps: tuple[str, ...] = ()
    misc: tuple[str, ...] = ()  # dynamic misc devices, in registration order
    filesystem: str | None = None
    proc_dir: str | None = None  # xenfs creates the /proc/xen mount point
    pci_driver: str | None = None
    xen_only: bool = False  # its init returns -ENODEV outside a Xen domain


MODULES: dict[str, ModuleSpec] = {
    "xen_evtchn": ModuleSpec(20480, misc=("xen/evtchn",), xen_only=True),
    "xen_gntdev": ModuleSpec(40960, misc=("xen/gntdev",), xen_only=True),
    "xen_gntalloc": ModuleSpec(20480, misc=("xen/gntalloc",), xen_only=True),
    "xen_privcmd": ModuleSpec(36864, misc=("xen/privcmd", "xen/hypercall"), xen_only=True),
    "xenfs": ModuleSpec(16384, ("xen_privcmd",), filesystem="xenfs", proc_dir="xen",
                        xen_only=True),
    "xen_pciback": ModuleSpec(81920, pci_driver="pciback", xen_only=True),
    "xen_netback": ModuleSpec(73728, xen_only=True),
    "xen_netfront": ModuleSpec(53248, xen_only=True),  # dom0 as a vif frontend (bin/xl)
    "xen_blkback": ModuleSpec(57344, xen_only=True),
    "bridge": ModuleSpec(311296, ("stp", "llc")),
    "stp": ModuleSpec(16384, ("llc",)),
    "llc": ModuleSpec(16384),
    "e1000": ModuleSpec(163840, pci_driver="e1000"),
    "ixgbe": ModuleSpec(389120, pci_driver="ixgbe"),
    "xhci_pci": ModuleSpec(24576, ("xhci_hcd",), pci_driver="xhci_hcd"),
    "xhci_hcd": ModuleSpec(335872, ("usbcore",)),
    "usbcore": ModuleSpec(348160, ("usb_common",)),
    "usb_common": ModuleSpec(16384),
}
# Built-in misc devices in registration order; None: a dynamic minor.
_BOOT_MISC: tuple[tuple[int | None, str], ...] = (
    (None, "vga_arbiter"), (1, "psaux"), (231, "snapshot"), (227, "mcelog"),
    (None, "xen/xenbus"), (None, "xen/xenbus_backend"), (None, "udmabuf"),
    (None, "cpu_dma_latency"), (183, "hw_random"))
_MOUNTS = ("rootfs / rootfs rw", "proc /proc proc rw,relatime", "sysfs /sys sysfs rw,relatime",
           "tmpfs /dev tmpfs rw,relatime,mode=755",
           "devpts /dev/pts devpts rw,relatime,gid=5,mode=620,ptmxmode=666",
           "tmpfs /run tmpfs rw,relatime", "tmpfs /tmp tmpfs rw,relatime")
_FILESYSTEMS = ("sysfs", "tmpfs", "bdev", "proc", "devtmpfs", "devpts", "ramfs", "pipefs")


def normalize_bdf(text: str) -> str | None:
    """``0000:00:03.0``, ``(0000:00:03.0)`` or ``00:03.0`` -> ``0000:00:03.0``."""
    m = _BDF.fullmatch(text.strip())
    if m is None:
        return None
    parts = m.group(1).lower().split(":")
    slot, func = parts[-1].split(".")
    domain = int(parts[0], 16) if len(parts) == 3 else 0
    return f"{domain:04x}:{int(parts[-2], 16):02x}:{int(slot, 16):02x}.{func}"


@contextlib.contextmanager
def locked_json(path: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write ``path`` under an flock on ``path.lock``; written back on success."""
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        yield data
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)  # so readers need no lock


def _modprobe() -> ModuleType:
    """The modprobe stand-in's code: boot-time modules load exactly as later ones do."""
    loader = SourceFileLoader("fake_modprobe", str(FAKE_BIN / "modprobe"))
    module = ModuleType(loader.name)
    loader.exec_module(module)
    return module


@dataclass(frozen=True)
class _Fifo:
    rel: str
    kind: str
    driver: str | None = None


class FakeKernel:
    def __init__(self, root: Path, devices: Iterable[PciDevice], *,
                 xen_version: tuple[int, int, str] | None = (4, 17, ".5"),
                 xenbus_builtin: bool = True, loaded_modules: Iterable[str] = (),
                 builtin_modules: Iterable[str] = (), release: str = "6.1.0-28-amd64",
                 cmdline: str = DEFAULT_CMDLINE, uptime: float = 12.34,
                 net: Mapping[str, Mapping[str, Any]] | None = None,
                 refuse_bind: Iterable[tuple[str, str]] = (),
                 hang_unbind: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.devices = {d.bdf: d for d in devices}
        self.xen_version, self.xenbus_builtin = xen_version, xenbus_builtin
        self.loaded_modules = [m.replace("-", "_") for m in loaded_modules]
        self.builtin_modules = [m.replace("-", "_") for m in builtin_modules]
        if unknown := set(self.loaded_modules) - set(MODULES):
            raise ValueError(f"not in the fake module catalog: {sorted(unknown)}")
        self.release, self.cmdline, self.uptime = release, cmdline, uptime
        self.initial_net = dict(net or {})
        self.refuse_bind: set[tuple[str, str]] = set(refuse_bind)  # (driver, bdf): probe fails
        self.hang_unbind: set[str] = set(hang_unbind)  # BDFs whose unbind never completes
        self.events: list[tuple[str, str]] = []  # (file relative to root, value written)
        self.dmesg: list[str] = []
        self.errors: list[str] = []  # tracebacks from the service thread: should stay empty
        self._bound: dict[str, str | None] = {b: d.driver for b, d in self.devices.items()}
        self._slots: list[str] = []
        self._ifindex = 1
        self._fifos: dict[int, _Fifo] = {}
        self._cond = threading.Condition()
        self._busy = self._built = False
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None
        self._wake = (-1, -1)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def _write(self, rel: str, text: str) -> None:
        self.path(rel).parent.mkdir(parents=True, exist_ok=True)
        self.path(rel).write_text(text)

    def _dev_dir(self, bdf: str) -> Path:
        return self.path(f"sys/devices/pci{bdf[:7]}/{bdf}")

    # ----- layout -------------------------------------------------------------------------
    def build(self) -> FakeKernel:
        state, xen = self.path(STATE_DIR), self.xen_version is not None
        (state / "acks").mkdir(parents=True, exist_ok=True)
        (state / "calls.jsonl").touch()
        for sub in (f"{PCI}/devices", f"{PCI}/drivers", "sys/class/net"):
            self.path(sub).mkdir(parents=True, exist_ok=True)
        self._write("proc/uptime", f"{self.uptime:.2f} {self.uptime * 1.6:.2f}\n")
        self._write("proc/cmdline", self.cmdline + "\n")
        self._write("proc/mounts", "".join(f"{m} 0 0\n" for m in _MOUNTS))
        self._write("proc/filesystems", "".join(f"nodev\t{f}\n" for f in _FILESYSTEMS))
        misc: list[tuple[int, str]] = []
        for minor, name in _BOOT_MISC:
            if (xen and self.xenbus_builtin) or not name.startswith("xen/"):
                used = {m for m, _ in misc}
                dynamic = next(m for m in range(127, -1, -1) if m not in used)
                misc.insert(0, (dynamic if minor is None else minor, name))
        self._write("proc/misc", "".join(f"{m:3d} {n}\n" for m, n in misc))
        if self.xen_version is not None:
            for key, value in zip(("major", "minor", "extra"), self.xen_version, strict=True):
                self._write(f"sys/hypervisor/version/{key}", f"{value}\n")
            self._write("sys/hypervisor/type", "xen\n")
        os.mkfifo(self.path(f"{PCI}/drivers_probe"))
        os.mkfifo(state / "control")
        kernel: dict[str, Any] = {"release": self.release, "xen": xen,
                                  "builtin": self.builtin_modules,
                                  "modules": {n: asdict(s) for n, s in MODULES.items()}}
        self._write(f"{STATE_DIR}/kernel.json", json.dumps(kernel, indent=1))
        self._write("proc/modules", "")
        modprobe, drivers = _modprobe(), {d.driver for d in self.devices.values()}
        for name in self.builtin_modules:  # their devices and filesystems, not their lines
            modprobe.insert(self.root, name, kernel["modules"].get(name, {}), [])
        native = [m for m, spec in MODULES.items() if spec.pci_driver in drivers]
        for name in native + self.loaded_modules:  # no thread yet: modprobe makes the FIFOs
            modprobe.load(self.root, kernel, name, [], False)
        if self.path(f"{PCI}/drivers/pciback").exists():  # loaded before the NIC drivers
            self._hide(self.cmdline)
        with locked_json(state / "net.json") as net:
            net["lo"] = {"up": True, "addrs": ["127.0.0.1/8"], "routes": [],
                         "mac": "00:00:00:00:00:00", "ifindex": 1}
        for dev in self.devices.values():
            self._make_device(dev)
        self._built = True
        return self

    def _make_driver_dir(self, name: str) -> None:
        d = self.path(f"{PCI}/drivers/{name}")
        d.mkdir(parents=True, exist_ok=True)
        for fifo in DRIVER_FIFOS + (PCIBACK_FIFOS if name == "pciback" else ()):
            if not (d / fifo).exists():
                os.mkfifo(d / fifo)
        if name == "pciback":
            (d / "slots").touch()

    def _make_device(self, dev: PciDevice) -> None:
        ddir = self._dev_dir(dev.bdf)
        ddir.mkdir(parents=True, exist_ok=True)
        xhci = (dev.driver or "").startswith("xhci")
        klass = dev.pci_class or ("0x020000" if dev.net_if else "0x0c0330" if xhci else "0xff0000")
        for key, value in (("vendor", dev.vendor), ("device", dev.device), ("class", klass),
                           ("driver_override", "(null)"), ("enable", "1")):
            (ddir / key).write_text(value + "\n")
        link = self.path(f"{PCI}/devices/{dev.bdf}")
        link.symlink_to(os.path.relpath(ddir, link.parent))
        if dev.bdf in self._slots:  # xen-pciback.hide= claimed it first
            self._attach("pciback", dev.bdf)
        elif dev.driver is not None:
            self._make_driver_dir(dev.driver)
            self._attach(dev.driver, dev.bdf)

    # ----- the kernel's side of bind/unbind -----------------------------------------------
    def _attach(self, driver: str, bdf: str) -> None:
        ddir, drv = self._dev_dir(bdf), self.path(f"{PCI}/drivers/{driver}")
        (ddir / "driver").symlink_to(os.path.relpath(drv, ddir))
        (drv / bdf).symlink_to(os.path.relpath(ddir, drv))
        self._bound[bdf] = driver
        if self.devices[bdf].net_if and driver == self.devices[bdf].driver:
            self._add_netdev(self.devices[bdf])

    def _detach(self, bdf: str) -> None:
        ddir, ifname = self._dev_dir(bdf), self.devices[bdf].net_if
        (ddir / "driver").unlink()
        self.path(f"{PCI}/drivers/{self._bound[bdf]}/{bdf}").unlink(missing_ok=True)
        self._bound[bdf] = None
        if ifname and (ddir / "net" / ifname).exists():
            self.path(f"sys/class/net/{ifname}").unlink(missing_ok=True)
            for f in (ddir / "net" / ifname).iterdir():
                f.unlink()
            (ddir / "net" / ifname).rmdir()
            with locked_json(self.path(f"{STATE_DIR}/net.json")) as net:
                net.pop(ifname, None)  # its addresses and routes go with it

    def _add_netdev(self, dev: PciDevice) -> None:
        assert dev.net_if is not None
        self._ifindex += 1  # a re-registered netdev gets a new ifindex
        nics = sorted(b for b, d in self.devices.items() if d.net_if)
        mac = f"52:54:00:12:34:{0x56 + nics.index(dev.bdf):02x}"  # QEMU's default first MAC
        ndir = self._dev_dir(dev.bdf) / "net" / dev.net_if
        ndir.mkdir(parents=True, exist_ok=True)
        for key, value in (("address", mac), ("operstate", "down"), ("ifindex", self._ifindex)):
            (ndir / key).write_text(f"{value}\n")
        link = self.path(f"sys/class/net/{dev.net_if}")
        link.symlink_to(os.path.relpath(ndir, link.parent))
        entry: NetIf = {"up": False, "addrs": [], "routes": [], "mac": mac,
                        "ifindex": self._ifindex}
        if not self._built:  # boot state may be preset, e.g. an address from the initramfs
            entry.update(self.initial_net.get(dev.net_if, {}))
        with locked_json(self.path(f"{STATE_DIR}/net.json")) as net:
            net[dev.net_if] = entry

    def _override(self, bdf: str) -> str | None:
        f = self._dev_dir(bdf) / "driver_override"
        raw = f.read_text()
        value = raw.split("\n", 1)[0].strip()
        shown = "(null)\n" if value in ("", "(null)") else f"{value}\n"
        if raw != shown:
            f.write_text(shown)  # read back as the kernel shows it
        return None if shown == "(null)\n" else value

    def _matches(self, driver: str, bdf: str) -> bool:
        override = self._override(bdf)  # pci_match_device: an override excludes the others
        if override is not None:
            return override == driver
        return bdf in self._slots if driver == "pciback" else self.devices[bdf].driver == driver

    def _bind(self, driver: str, bdf: str) -> None:
        if self._bound[bdf] is not None:
            self._log(f"fake-kernel: bind {bdf} to {driver}: bound to {self._bound[bdf]} (-EBUSY)")
        elif not self._matches(driver, bdf):
            self._log(f"fake-kernel: bind {bdf} to {driver}: no match (-ENODEV)")
        elif (driver, bdf) in self.refuse_bind:
            self._log(f"{driver}: probe of {bdf} failed with error -5")
        else:
            self._attach(driver, bdf)

    def _unbind(self, driver: str, bdf: str) -> None:
        if self._bound[bdf] != driver:
            self._log(f"fake-kernel: unbind {bdf} from {driver}: not bound to it (-ENODEV)")
        elif bdf in self.hang_unbind:
            self._log(f"fake-kernel: unbind {bdf} from {driver} hangs (injected)")
        else:
            self._detach(bdf)

    def _probe(self, bdf: str) -> None:
        if self._bound[bdf] is not None:
            return
        driver = self._override(bdf) or self.devices[bdf].driver
        if driver is None or not self.path(f"{PCI}/drivers/{driver}/bind").exists():
            self._log(f"fake-kernel: drivers_probe {bdf}: no driver {driver!r} loaded")
        else:
            self._bind(driver, bdf)

    def _set_slot(self, bdf: str, add: bool) -> None:
        if add and bdf not in self._slots:
            self._slots.append(bdf)
        elif not add and bdf in self._slots:
            self._slots.remove(bdf)
        self._write(f"{PCI}/drivers/pciback/slots", "".join(f"{s}\n" for s in self._slots))

    def _hide(self, text: str) -> None:
        for hide in _HIDE.finditer(text):
            for slot in re.findall(r"\(([^)]*)\)", hide.group(1)):
                if bdf := normalize_bdf(slot):
                    self._set_slot(bdf, add=True)

    def _log(self, line: str) -> None:
        self.dmesg.append(line)

    # ----- the service thread -------------------------------------------------------------
    def start(self) -> FakeKernel:
        if self._thread is None:
            if not self._built:
                self.build()
            self._sel, self._wake = selectors.DefaultSelector(), os.pipe()
            self._sel.register(self._wake[0], selectors.EVENT_READ, None)
            self._open(_Fifo(f"{STATE_DIR}/control", "control"))
            self._open(_Fifo(f"{PCI}/drivers_probe", "probe"))
            self._scan_drivers()
            self._thread = threading.Thread(target=self._run, name="fake-kernel", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Writers get ENXIO from now on: no FIFO has a reader."""
        if self._thread is None or self._sel is None:
            return
        os.write(self._wake[1], b"x")
        self._thread.join(5)
        with self._cond:
            for fd in self._fifos:
                os.close(fd)
            self._fifos.clear()
        self._sel.close()
        os.close(self._wake[0])
        os.close(self._wake[1])
        self._thread = self._sel = None

    def __enter__(self) -> FakeKernel:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _open(self, fifo: _Fifo) -> None:
        assert self._sel is not None
        if all(f.rel != fifo.rel for f in self._fifos.values()):
            fd = os.open(self.path(fifo.rel), os.O_RDWR | os.O_NONBLOCK)  # never sees EOF
            with self._cond:
                self._fifos[fd] = fifo
            self._sel.register(fd, selectors.EVENT_READ, fifo)

    def _scan_drivers(self) -> None:
        for d in sorted(self.path(f"{PCI}/drivers").iterdir()):
            for name in DRIVER_FIFOS + PCIBACK_FIFOS:
                if (d / name).exists():
                    self._open(_Fifo(f"{PCI}/drivers/{d.name}/{name}", name, d.name))

    def _run(self) -> None:
        assert self._sel is not None
        stopping = False
        while not stopping:
            ready = self._sel.select()
            with self._cond:
                self._busy = True
            batch: list[tuple[_Fifo, bytes]] = []
            for key, _ in ready:
                if key.data is None:  # the wake-up pipe: stop() was called
                    stopping = True
                    continue
                chunks = []
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(key.fd, 65536):
                        chunks.append(chunk)
                batch.append((key.data, b"".join(chunks)))
            for fifo, data in sorted(batch, key=lambda item: _ORDER[item[0].kind]):
                try:
                    self._dispatch(fifo, data.decode(errors="replace"))
                except Exception:
                    self.errors.append(traceback.format_exc())
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _dispatch(self, fifo: _Fifo, text: str) -> None:
        if fifo.kind == "control":
            for line in text.splitlines():
                self._control(line.split())
            return
        for value in [m.group(0).strip() for m in _BDF.finditer(text)] or [text.strip()]:
            self.events.append((fifo.rel, value))
            bdf = normalize_bdf(value)
            if bdf is None or (bdf not in self.devices and fifo.kind not in PCIBACK_FIFOS):
                self._log(f"fake-kernel: {fifo.rel}: no such device {value!r} (-ENODEV)")
            elif fifo.kind in PCIBACK_FIFOS:
                self._set_slot(bdf, add=fifo.kind == "new_slot")  # any BDF, as pcistub does
            elif fifo.kind == "probe":
                self._probe(bdf)
            elif fifo.kind == "bind" and fifo.driver:
                self._bind(fifo.driver, bdf)
            elif fifo.kind == "unbind" and fifo.driver:
                self._unbind(fifo.driver, bdf)

    def _control(self, args: list[str]) -> None:
        """``register-driver NAME TOKEN [module params]`` from modprobe; acked when done."""
        if len(args) < 3 or args[0] != "register-driver":
            self._log(f"fake-kernel: bad control message {args!r}")
            return
        name, token = args[1], args[2]
        self._make_driver_dir(name)
        self._scan_drivers()
        if name == "pciback":  # pcistub_init reads hide= before it registers
            self._hide(" ".join([self.cmdline, *args[3:]]))
        for bdf, bound in self._bound.items():  # driver_register probes unbound devices
            if bound is None and self._matches(name, bdf):
                self._bind(name, bdf)
        ack = self.path(f"{STATE_DIR}/acks/{token}")
        ack.with_suffix(".tmp").write_text("ok\n")
        os.replace(ack.with_suffix(".tmp"), ack)

    # ----- for tests ----------------------------------------------------------------------
    def settle(self, timeout: float = 2.0) -> None:
        """Wait until every write made so far has been processed."""
        deadline = time.monotonic() + timeout

        def pending(fd: int) -> int:
            count: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
            return count
        with self._cond:
            while self._busy or any(pending(fd) for fd in self._fifos):
                if time.monotonic() > deadline:
                    raise TimeoutError("fake kernel did not settle")
                self._cond.wait(0.002)

    def driver_of(self, bdf: str) -> str | None:
        try:
            return os.path.basename(os.readlink(self.path(f"{PCI}/devices/{bdf}/driver")))
        except FileNotFoundError:
            return None

    def net(self, ifname: str) -> NetIf | None:
        net: dict[str, NetIf] = json.loads(self.path(f"{STATE_DIR}/net.json").read_text())
        return net.get(ifname)

    def slots(self) -> list[str]:
        return list(self._slots)

    def calls(self) -> list[list[str]]:
        text = self.path(f"{STATE_DIR}/calls.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines() if line]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """PATH: the stand-ins, then this interpreter's directory (so their ``#!/usr/bin/env
        python3`` skips slow shims such as pyenv's), then the rest; SANDBOX_ROOT set."""
        env = dict(os.environ if base is None else base)
        path = [str(FAKE_BIN), os.path.dirname(sys.executable), env.get("PATH", os.defpath)]
        env["PATH"] = os.pathsep.join(path)
        env["SANDBOX_ROOT"] = str(self.root)
        return env

    def sysfs_write(self, rel: str, value: str) -> None:
        """Write as the orchestrator does: O_WRONLY|O_NONBLOCK, no truncation."""
        fd = os.open(self.path(rel), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
