"""The whole appliance in a temp tree: what the end-to-end sandbox tests boot.

``Appliance`` composes the stand-ins into one dom0 that the real ``orchestrate`` process
boots with ``--root``:

- a FakeKernel root (e1000 NIC 0000:00:03.0 as eth0, xHCI USB controller 0000:00:04.0,
  /proc/misc, /sys/hypervisor/version 4.17) whose PCI sysfs files act like the kernel's;
- the toolstack stand-ins first on PATH (xl, xenstored, xen-init-dom0, xenconsoled,
  modprobe, mount, ip) and a Xen 4.17 libxenctrl soname in /usr/lib/x86_64-linux-gnu;
- a real HTTP build server on 127.0.0.1 serving real image bytes;
- the example units (units/) with the build server's URL and the images' real sha256 and
  size pinned, timeouts shortened so a failure test takes seconds, not minutes.

After a boot, ``Boot`` holds the exit code, the console text, the JSON events and
state.json; ``Appliance`` answers what the tests assert: xenstore contents and who could
read them (over the wire protocol, as domains), PCI drivers, dom0's network, files left
in the image directory, processes still running.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLE_UNITS, REPO
from tests.sandbox.fakes import xlstate
from tests.sandbox.fakes.buildserver import BuildServer
from tests.sandbox.fakes.kernel import FAKE_BIN, FakeKernel, PciDevice
from tests.sandbox.fakes.xswire import Client, XsError

NIC = PciDevice("0000:00:03.0", "e1000", "0x8086", "0x100e", net_if="eth0")
USB = PciDevice("0000:00:04.0", "xhci_hcd", "0x1b36", "0x000d")
NIC_ADDRESS = "10.0.2.15/24"
SYSTEM_PYTHON = Path("/usr/bin/python3")
IMAGE_DIR = "run/xen-images"
STATE_DIR = "run/orchestrator"
DOMAINS = ("net-vm", "sa-vm", "workload-vm")

# Sizes of the fake images: big enough to stream in several reads, small enough to be fast.
IMAGE_SIZES = {
    "guest/vmlinux": 384 * 1024,
    "guest/net-vm.cpio.gz": 160 * 1024,
    "guest/sa-vm.cpio.gz": 144 * 1024,
    "guest/workload-vm.cpio.gz": 152 * 1024,
}
# host.toml values for a test run: every failure surfaces within seconds.
TEST_HOST_SETTINGS = {
    ("build_server", "request_timeout"): "1.5",
    ("build_server", "attempts"): "3",
    ("build_server", "deadline"): "8",
    ("xen", "tools_path"): "[]",
    ("deadlines", "boot"): "60",
    ("deadlines", "xenstored"): "4",
    ("deadlines", "command"): "10",
    ("deadlines", "create"): "10",
}


def image_bytes(name: str) -> bytes:
    """Deterministic, incompressible bytes per image."""
    return hashlib.shake_256(name.encode()).digest(IMAGE_SIZES[name])


def stored_name(name: str) -> str:
    """The file an image is kept in by dom0 (named by content: orchestrator/units.py)."""
    return f"{hashlib.sha256(image_bytes(name)).hexdigest()[:12]}-{name.rsplit('/', 1)[-1]}"


def set_key(path: Path, section: str | None, key: str, value: str) -> None:
    """Replace `key = ...` in [section] of a TOML unit (top level when section is None)."""
    lines = path.read_text().splitlines()
    current: str | None = None
    for i, line in enumerate(lines):
        header = re.match(r"^\[+([^\]]+)\]+\s*$", line)
        if header:
            current = header.group(1)
            continue
        if current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            lines[i] = f"{key} = {value}"
            path.write_text("\n".join(lines) + "\n")
            return
    raise KeyError(f"{path.name}: no {key} in [{section or 'top level'}]")


@dataclass
class Boot:
    """One finished `orchestrate` run."""

    code: int
    console: str
    state: dict[str, Any]
    events: list[dict[str, Any]]
    seconds: float

    def lines(self, pattern: str) -> list[str]:
        return [ln for ln in self.console.splitlines() if re.search(pattern, ln)]

    def said(self, pattern: str) -> bool:
        return bool(self.lines(pattern))

    @property
    def programs(self) -> list[str]:
        return [os.path.basename(c["program"]) for c in self.state.get("commands", [])]

    def transitions(self, domain: str | None = None) -> list[dict[str, Any]]:
        """The domain transitions of this run (its JSON events: the console's wording is
        the renderer's business, the fields are the contract)."""
        return [e for e in self.events if e.get("event") == "domain transition"
                and (domain is None or e.get("domain") == domain)]

    def went(self, domain: str, to_state: str, cause: str = "") -> bool:
        """Whether `domain` made a transition to `to_state` whose cause matches `cause`."""
        return any(t["to_state"] == to_state and re.search(cause, t.get("cause") or "")
                   for t in self.transitions(domain))

    def domain_states(self) -> dict[str, str]:
        return {name: d["state"] for name, d in self.state.get("domains", {}).items()}

    def step_status(self) -> dict[str, str]:
        return {name: s["status"] for name, s in self.state.get("steps", {}).items()}


class Follower:
    """A running `orchestrate watch`: its console lines as they come, its process."""

    def __init__(self, box: Appliance, proc: subprocess.Popen[str]) -> None:
        self.box, self.proc = box, proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 20, after: int = 0) -> str:
        """The first console line (from index `after`) matching pattern."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if re.search(pattern, line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no follower line matched {pattern!r}:\n" + "\n".join(self.lines))

    def events(self) -> list[dict[str, Any]]:
        path = self.box.root / STATE_DIR / "boot.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        return code


class Appliance:
    def __init__(self, base: Path, sockdir: Path, *, devices: tuple[PciDevice, ...] = (NIC, USB),
                 **kernel_options: Any) -> None:
        self.base, self.sockdir = base, sockdir
        self.root = base / "root"
        self.units = base / "units"
        self.kernel = FakeKernel(self.root, devices, **kernel_options)
        self.server = BuildServer({f"/images/{n}": image_bytes(n) for n in IMAGE_SIZES})
        self.standin = self.root / "run" / "fake-xl"
        self.socket = sockdir / "socket"
        self.env: dict[str, str] = {}

    # ----- set-up and teardown --------------------------------------------------------------
    def start(self) -> Appliance:
        self.kernel.start()
        self.server.start()
        self.standin.mkdir(parents=True, exist_ok=True)
        lib = self.root / "usr/lib/x86_64-linux-gnu"
        lib.mkdir(parents=True, exist_ok=True)
        (lib / "libxenctrl.so.4.17").write_bytes(b"\x7fELF stand-in soname of Xen 4.17 tools")
        (self.root / "etc/xen").mkdir(parents=True, exist_ok=True)
        self._write_units()
        env = self.kernel.env()
        env.update(XENSTORED_PATH=str(self.socket), XL_STANDIN=str(self.standin),
                   NO_COLOR="1")
        env.pop("XENSTORED_RUNDIR", None)
        if SYSTEM_PYTHON.exists():  # the stand-ins run on the system python, as on a dom0
            pybin = self.sockdir / "python"
            pybin.mkdir(exist_ok=True)
            if not (pybin / "python3").exists():
                (pybin / "python3").symlink_to(SYSTEM_PYTHON)
            env["PATH"] = os.pathsep.join([str(FAKE_BIN), str(pybin), env["PATH"]])
        self.env = env
        return self

    def stop(self) -> None:
        xlstate.kill_all(self.standin)
        self.server.stop()
        self.kernel.stop()

    def _write_units(self) -> None:
        shutil.copytree(EXAMPLE_UNITS, self.units, ignore=shutil.ignore_patterns("openrc"))
        host = self.units / "host.toml"
        set_key(host, "build_server", "url", json.dumps(self.server.url + "/images/"))
        for (section, key), value in TEST_HOST_SETTINGS.items():
            set_key(host, section, key, value)
        for unit in (self.units / "domains").glob("*.toml"):
            self._pin_images(unit)
            set_key(unit, None, "ready_timeout", "10")

    def _pin_images(self, unit: Path) -> None:
        """The example pins placeholder hashes: pin the bytes the server really serves."""
        out, url = [], None
        for line in unit.read_text().splitlines():
            if m := re.match(r'^url\s*=\s*"([^"]+)"', line):
                url = m.group(1)
            elif url and re.match(r"^sha256\s*=", line):
                line = f'sha256 = "{hashlib.sha256(image_bytes(url)).hexdigest()}"'
            elif url and re.match(r"^size\s*=", line):
                line = f"size = {IMAGE_SIZES[url]}"
            out.append(line)
        unit.write_text("\n".join(out) + "\n")

    # ----- knobs ----------------------------------------------------------------------------
    def host_setting(self, section: str | None, key: str, value: str) -> None:
        set_key(self.units / "host.toml", section, key, value)

    def domain_setting(self, domain: str, section: str | None, key: str, value: str) -> None:
        set_key(self.units / "domains" / f"{domain}.toml", section, key, value)

    def behave(self, data: dict[str, Any]) -> None:
        """What the xl stand-in's domains do (see tests/sandbox/fakes/bin/xl)."""
        (self.standin / xlstate.BEHAVIOUR).write_text(json.dumps(data))

    def xenstored_behaves(self, **settings: Any) -> None:
        (self.standin / xlstate.XENSTORED_SETTINGS).write_text(json.dumps(settings))

    # ----- running orchestrate ----------------------------------------------------------------
    def command(self, *args: str) -> list[str]:
        """`orchestrate [COMMAND ...] --root ROOT --units UNITS`: the command first, then
        the options (an older parser reset options given before a command, and `status`
        read the host's /run)."""
        return [sys.executable, "-m", "orchestrator", *args, "--root", str(self.root),
                "--units", str(self.units)]

    def boot(self, *args: str, timeout: float = 90) -> Boot:
        started = time.monotonic()
        proc = subprocess.run(self.command(*args), capture_output=True, text=True,
                              timeout=timeout, cwd=REPO, env=self.env, check=False)
        return self._finished(proc.returncode, proc.stderr + proc.stdout,
                              time.monotonic() - started)

    def run(self, command: str, *args: str, timeout: float = 90) -> Boot:
        """`orchestrate COMMAND ...` (status, shutdown), the subcommand first."""
        started = time.monotonic()
        argv = [sys.executable, "-m", "orchestrator", command, "--root", str(self.root),
                "--units", str(self.units), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env=self.env, check=False)
        return self._finished(proc.returncode, proc.stderr + proc.stdout,
                              time.monotonic() - started)

    def xl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The xl stand-in as an operator runs it (`xl destroy sa-vm`)."""
        return subprocess.run(["xl", *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env, check=False)

    def follower(self) -> Follower:
        """`orchestrate watch` in the background (the orchestrator-watch service)."""
        return Follower(self, subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "watch", "--root", str(self.root),
             "--units", str(self.units)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=self.env))

    def boot_until(self, console_pattern: str, sig: int = signal.SIGKILL,
                   timeout: float = 60) -> Boot:
        """Start a boot and send `sig` once a console line matches the pattern."""
        started = time.monotonic()
        proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, env=self.env)
        assert proc.stderr is not None
        seen: list[str] = []
        try:
            for line in proc.stderr:
                seen.append(line)
                if re.search(console_pattern, line):
                    proc.send_signal(sig)
                    break
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"no console line matched {console_pattern!r}")
            else:
                raise AssertionError(f"the boot ended before {console_pattern!r}:\n"
                                     + "".join(seen))
            _, rest = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return self._finished(proc.returncode, "".join(seen) + rest,
                              time.monotonic() - started)

    def _finished(self, code: int, console: str, seconds: float) -> Boot:
        self.check_only_standins_ran()
        state_path = self.root / STATE_DIR / "state.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        # boot.jsonl holds every run of this power cycle: this run's events follow the
        # last "start" event (its pid is the run's own)
        events_path = self.root / STATE_DIR / "boot.jsonl"
        every = [json.loads(line) for line in events_path.read_text().splitlines()
                 if line.strip()] if events_path.exists() else []
        starts = [i for i, e in enumerate(every) if e.get("event") == "start"]
        events = every[starts[-1]:] if starts else every
        return Boot(code, console, state, events, seconds)

    def check_only_standins_ran(self) -> None:
        """Safety: orchestrate runs as root here; every program it ran must be a stand-in."""
        state_path = self.root / STATE_DIR / "state.json"
        if not state_path.exists():
            return
        for command in json.loads(state_path.read_text()).get("commands", []):
            assert Path(command["program"]).parent == FAKE_BIN, (
                f"orchestrate ran {command['program']} (not a sandbox stand-in)")

    # ----- what the tests assert --------------------------------------------------------------
    def xs(self, as_domain: int | None = None, timeout: float = 5.0) -> Client:
        client = Client(str(self.socket), timeout=timeout)
        if as_domain is not None:
            client.as_domain(as_domain)
        return client

    def read(self, path: str) -> str | None:
        with self.xs() as xs:
            return xs.read_str(path)

    def perms(self, path: str) -> list[str] | None:
        with self.xs() as xs:
            try:
                return xs.get_perms(path)
            except XsError:
                return None

    def could(self, domid: int, path: str, mode: str) -> bool:
        with self.xs() as xs:
            return xs.control("check-access", str(domid), path, mode).rstrip(b"\0") == b"1"

    def tree(self, path: str) -> dict[str, tuple[str | None, list[str]]]:
        """Every node under path: {path: (value, perms)}."""
        out: dict[str, tuple[str | None, list[str]]] = {}
        with self.xs() as xs:
            def walk(p: str) -> None:
                try:
                    out[p] = (xs.read_str(p), xs.get_perms(p))
                    children = xs.directory(p)
                except XsError:
                    return
                for child in children:
                    walk(f"{p.rstrip('/')}/{child}")
            walk(path)
        return out

    def domains(self) -> dict[str, int]:
        """{name: domid} of the domains the stand-in hypervisor has (dom0 excluded)."""
        out = {}
        for domid, record in xlstate.domains(self.standin).items():
            if int(domid) != 0:
                out[str(record["name"])] = int(domid)
        return out

    def monitor_log(self, name: str) -> str:
        """xl's monitor log of a domain name (/var/log/xen/xl-<name>.log), "" if none."""
        path = self.root / "var/log/xen" / f"xl-{name}.log"
        return path.read_text() if path.exists() else ""

    def xl_calls(self, sub: str) -> list[list[str]]:
        return [c for c in xlstate.calls(self.standin) if len(c) > 1 and c[1] == sub]

    def driver_of(self, bdf: str) -> str | None:
        self.kernel.settle()
        return self.kernel.driver_of(bdf)

    def nic(self) -> dict[str, Any] | None:
        return self.kernel.net("eth0")

    def nic_has_address(self) -> bool:
        net = self.nic()
        return bool(net and net["up"] and NIC_ADDRESS in net["addrs"])

    def image_dir_files(self) -> list[str]:
        directory = self.root / IMAGE_DIR
        return sorted(os.listdir(directory)) if directory.is_dir() else []

    def processes(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [p for p in xlstate.processes(self.standin) if kind is None or p["kind"] == kind]
