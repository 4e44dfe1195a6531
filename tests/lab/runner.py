"""The real-Xen lab: Xen + the dom0 image from initramfs-hooks under QEMU (TCG).

    python -m tests.lab.runner [--out build/lab-4.17] [--scenario ok|server-down|...]
                               [--timeout 600]

Starts the build server on 127.0.0.1 (a random port) serving <out>/images, boots Xen
under QEMU (q35 + intel-iommu, e1000 at 00:03.0 and an xHCI controller at 00:04.0, user
networking with restrict=on and a guestfwd of 10.0.2.100:80 to the build server), captures
the serial console to a file, waits after the lab report's last line until the machine
has powered off (a graceful poweroff runs OpenRC's shutdown runlevel first), and always
ends every process it started. Never two labs at once: a lock file says so.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.sandbox.fakes.buildserver import BuildServer  # noqa: E402

LOCK = Path("/tmp/xen-boot-lab.lock")
DONE = re.compile(r"@@LAB done|reboot: Power down|Entering ACPI S5|\(XEN\) Hardware Dom0 "
                  r"halted")
SHUTDOWN_GRACE = 240.0  # seconds from the report's last line until QEMU must have exited
DOM0_MEMORY_MIB = 320  # the orchestrator, xenstored, the unpacked image and the fetched images
XEN_OVERHEAD_MIB = 48  # Xen itself and per-domain overhead (page tables, grant frames)


@dataclass
class LabRun:
    capture: Path
    returncode: int | None
    seconds: float
    peak_rss_mib: float
    timed_out: bool
    requests: list[tuple[str, int, int]] = field(default_factory=list)
    stamps: list[tuple[float, str]] = field(default_factory=list)  # (host s, line)

    @classmethod
    def load(cls, capture: Path) -> LabRun:
        """A finished run from its files: the capture and the host times beside it
        (`<capture>.times`, written by boot()), to compute figures after the fact."""
        # split as the pump read them (readline: at b"\n" only)
        lines = [line.decode("utf-8", "replace")
                 for line in io.BytesIO(capture.read_bytes()).readlines()]
        times = [float(t) for t in capture.with_suffix(".times").read_text().split()]
        return cls(capture, None, times[-1] if times else 0.0, 0.0, False,
                   stamps=list(zip(times, lines, strict=False)))

    def host_time(self, pattern: str, after: float = 0.0) -> float | None:
        """Host seconds after QEMU started at which a line matching pattern arrived (the
        first one at or after `after`)."""
        for seconds, line in self.stamps:
            if seconds >= after and re.search(pattern, line):
                return seconds
        return None

    def text(self) -> str:
        return self.capture.read_bytes().decode("utf-8", "replace")

    def lab(self, key: str) -> list[str]:
        """Values of the `@@LAB <key> <value>` lines."""
        out = []
        for line in self.text().splitlines():
            line = line.rstrip("\r")
            m = re.search(r"@@LAB " + re.escape(key) + r"(?: (.*))?$", line)
            if m:
                out.append(m.group(1) or "")
        return out

    def data(self, domain: str, key: str) -> str | None:
        """A guest's data/<key> as the report read it after the boot."""
        values = self.lab(f"data {domain} {key}")
        return values[-1] if values else None

    def after(self, domain: str, key: str) -> str | None:
        """A guest's data/<key> as the report read it after the lifecycle scenario."""
        values = self.lab(f"after {domain} {key}")
        return values[-1] if values else None

    def events(self) -> list[tuple[float, str]]:
        """(host seconds, what) of the report's `@@LAB event <what> at <uptime>` lines."""
        out = []
        for seconds, line in self.stamps:
            m = re.search(r"@@LAB event (.*?)\s*$", line)
            if m:
                out.append((seconds, m.group(1)))
        return out

    def event_time(self, pattern: str) -> float | None:
        """Host seconds of the first report event matching pattern."""
        for seconds, what in self.events():
            if re.search(pattern, what):
                return seconds
        return None


def memory_mib(out: Path) -> int:
    """QEMU's memory: dom0 + every domain the baked units create + Xen's overhead (the lab
    is sized to its scenario: a smaller lab leaves the host room)."""
    from orchestrator.units import load_units

    domains = sum(d.memory for d in load_units(out / "units").domains)
    return DOM0_MEMORY_MIB + domains + XEN_OVERHEAD_MIB


CPU = "qemu64,+rdrand"  # -cpu max crashes dom0; rdrand seeds the guests' RNG early
CPU_PVH = CPU + ",+svm,+npt"  # Debian's Xen has no shadow paging: PVH needs HAP (NPT)


def qemu_argv(out: Path, port: int, cmdline_extra: str = "", cpu: str = CPU) -> list[str]:
    relay = f"{sys.executable} {REPO / 'tests/lab/relay.py'} 127.0.0.1 {port}"
    dom0 = f"{DOM0_MEMORY_MIB}M"
    xen_cmdline = (f"console=com1 com1=115200,8n1 dom0_mem={dom0},max:{dom0} "
                   "loglvl=all guest_loglvl=all noreboot console_timestamps=boot")
    dom0_cmdline = "console=hvc0 earlyprintk=xen panic=-1 rootfstype=ramfs " + cmdline_extra
    return [
        "qemu-system-x86_64",
        "-accel", "tcg,thread=multi,tb-size=256", "-cpu", cpu,
        "-machine", "q35", "-m", str(memory_mib(out)), "-smp", "2",
        *([] if cpu == CPU_PVH else ["-device", "intel-iommu,intremap=on"]),
        "-netdev", f"user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:{relay}",
        "-device", "e1000,netdev=n0,addr=03.0",
        "-device", "qemu-xhci,addr=04.0",
        "-nographic", "-no-reboot", "-serial", "stdio", "-monitor", "none",
        "-kernel", str(out / "xen"), "-append", xen_cmdline,
        "-initrd", f"{out / 'vmlinuz'} {dom0_cmdline.strip()},{out / 'dom0.cpio.gz'}",
    ]


def serve_images(out: Path) -> BuildServer:
    files = {f"/images/{p.name}": p.read_bytes() for p in (out / "images").iterdir()}
    return BuildServer(files).start()


def boot(out: Path, capture: Path, timeout: float = 600, server_down: bool = False,
         echo: bool = False, sequential: bool = False, switches: tuple[str, ...] = (),
         cpu: str = CPU, until: re.Pattern[str] | None = None) -> LabRun:
    """One lab boot; returns when the lab report is done, QEMU exits, or the timeout.
    switches: lab.* words for dom0's kernel command line (the image's lab conf.d reads
    them: lab.sequential, lab.skip-preflight, lab.pvh). until: a console line that ends
    the run at once (QEMU killed: `make bench` needs the boot, not the report)."""
    lock = open(LOCK, "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another lab is running ({LOCK}): never two QEMU labs at once") from None
    server = serve_images(out)
    port = server.port
    if server_down:
        server.stop()  # nothing listens there now: connections are refused
    capture.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    extra = " ".join([*switches, *(["lab.sequential"] if sequential else [])])
    proc = subprocess.Popen(qemu_argv(out, port, extra, cpu), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None
    done = threading.Event()
    cut_short = threading.Event()
    timed_out = False
    stamps: list[tuple[float, str]] = []

    def pump() -> None:
        assert proc.stdout is not None
        with capture.open("wb") as f:
            for line in iter(proc.stdout.readline, b""):
                f.write(line)
                f.flush()
                # one console line at a time, stamped when it arrived (host time)
                stamps.append((time.monotonic() - started, line.decode("utf-8", "replace")))
                if echo:
                    sys.stdout.write(line.decode("utf-8", "replace"))
                    sys.stdout.flush()
                text = line.decode("utf-8", "replace")
                if until is not None and until.search(text):
                    cut_short.set()
                    done.set()
                if DONE.search(text):
                    done.set()
        done.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    rusage = None
    status = None
    try:
        if not done.wait(timeout):
            timed_out = True
        # the report's poweroff ends QEMU by itself (a graceful one stops the domains first)
        deadline = time.monotonic() + (
            0 if timed_out or cut_short.is_set() else SHUTDOWN_GRACE)
        while time.monotonic() < deadline:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.1)
    finally:
        if status is None:
            status, rusage = _kill(proc)
        reader.join(5)
        server.stop()
        lock.close()
    returncode = os.waitstatus_to_exitcode(status) if status is not None else None
    peak = rusage.ru_maxrss / 1024 if rusage is not None else 0.0
    # the host time of each captured line, one a line: LabRun.load reads them back
    capture.with_suffix(".times").write_text("".join(f"{s:.3f}\n" for s, _ in stamps))
    return LabRun(capture, returncode, time.monotonic() - started, peak, timed_out,
                  [tuple(r) for r in server.requests], stamps)  # type: ignore[misc]


def _kill(proc: subprocess.Popen[bytes]) -> tuple[int, resource.struct_rusage]:
    """TERM, then KILL, QEMU's process group; reaped here with wait4 (its rusage is the
    peak RSS figure: Popen.poll would reap it first and lose that)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for _ in range(50):
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                return status, rusage
            time.sleep(0.1)
    _, status, rusage = os.wait4(proc.pid, 0)
    return status, rusage


@dataclass(frozen=True)
class Scenario:
    """How one lab boot differs from the plain appliance: switches on dom0's kernel command
    line (lab.* words, read by the image's lab conf.d and the lab scenario), the CPU, and
    whether the build server is down."""

    switches: tuple[str, ...] = ()
    cpu: str = CPU
    server_down: bool = False


SCENARIOS = {
    # the appliance, then the domain lifecycle (restarts) and a graceful poweroff
    "ok": Scenario(("lab.lifecycle",)),
    "appliance": Scenario(),  # the boot alone, then poweroff -f
    # dom0 on its own vif served by net-vm after the handoff; a re-run fetches through it
    "handoff-vif": Scenario(("lab.handoff-vif",)),
    "server-down": Scenario(server_down=True),
    "sequential": Scenario(("lab.sequential",)),
    "pvh": Scenario(("lab.pvh",), CPU_PVH),
    "skip-preflight": Scenario(("lab.skip-preflight",)),
}

# What `python -m tests.lab.runner` prints of the host timeline (the first line matching).
MILESTONES = (("Xen starts", r"\(XEN\).*Xen version"),
              ("dom0 kernel starts", r"Linux version \d"),
              ("OpenRC starts", r"OpenRC .* is starting up"),
              ("orchestrate starts", r"orchestrate \S+ \(boot\), pid"),
              ("orchestrate verdict", r"orchestrate: (OK|FAILED|INTERR)"),
              ("lab report done", r"@@LAB done"),
              ("dom0 powered off", r"reboot: Power down|Hardware Dom0 (halted|shutdown)"))


def run_scenario(out: Path, name: str, timeout: float = 600, capture: Path | None = None,
                 echo: bool = False) -> LabRun:
    scenario = SCENARIOS[name]
    return boot(out, capture or out / f"capture-{name}.log", timeout, scenario.server_down,
                echo, switches=scenario.switches, cpu=scenario.cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "lab-4.17")
    parser.add_argument("--scenario", default="ok", choices=sorted(SCENARIOS))
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--capture", type=Path)
    parser.add_argument("--echo", action="store_true", help="copy the console to stdout")
    args = parser.parse_args()
    run = run_scenario(args.out, args.scenario, args.timeout, args.capture, args.echo)
    print(f"lab: {args.scenario}: QEMU exit {run.returncode}, {run.seconds:.1f} s wall, "
          f"peak RSS {run.peak_rss_mib:.0f} MiB{', TIMED OUT' if run.timed_out else ''}; "
          f"console in {run.capture}")
    for label, pattern in MILESTONES:
        seconds = run.host_time(pattern)
        if seconds is not None:
            print(f"  {seconds:6.1f} s after QEMU started: {label}")
    for seconds, what in run.events():
        print(f"  {seconds:6.1f} s: {what}")
    sys.exit(1 if run.timed_out else 0)


if __name__ == "__main__":
    main()
