"""Start-up and footprint figures: median of 5 wall times, peak RSS, top imports, and a
full boot of the example appliance in the sandbox (as root: it makes device nodes).

Run from the repo root with the project's venv: `make measure`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 5


def run(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of argv."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed")
    return wall, usage.ru_maxrss


def main() -> None:
    orchestrate = os.path.join(os.path.dirname(sys.executable), "orchestrate")
    with tempfile.TemporaryDirectory() as root:
        cases = {
            "orchestrate --version": [orchestrate, "--version"],
            "orchestrate --dry-run": [orchestrate, "--dry-run", "--units", "units",
                                      "--root", root],
        }
        for label, argv in cases.items():
            run(argv)  # warm the page cache
            results = [run(argv) for _ in range(RUNS)]
            walls = sorted(r[0] for r in results)
            rss = max(r[1] for r in results)
            print(f"{label:24} median {statistics.median(walls) * 1000:6.1f} ms "
                  f"(min {walls[0] * 1000:.1f}, max {walls[-1] * 1000:.1f}), "
                  f"peak RSS {rss / 1024:.1f} MiB")
        out = subprocess.run([sys.executable, "-X", "importtime", "-m", "orchestrator",
                              "--dry-run", "--units", "units", "--root", root],
                             capture_output=True, text=True).stderr
    rows = []
    for line in out.splitlines():
        if line.startswith("import time:") and "|" in line:
            fields = [p.strip() for p in line[len("import time:"):].split("|")]
            if len(fields) == 3 and fields[1].isdigit():
                rows.append((int(fields[1]), fields[2]))
    print("top imports by cumulative time (us), dry run:")
    for cumulative, name in sorted(rows, reverse=True)[:12]:
        print(f"  {cumulative:8d}  {name}")


def sandbox_boots(runs: int = 3) -> None:
    """Full sandbox boots: wall, orchestrate's own CPU and peak RSS, programs it ran."""
    import collections
    import shutil
    from pathlib import Path

    sys.path.insert(0, os.getcwd())
    from tests.sandbox.appliance import Appliance

    print(f"full sandbox boot of the example ({runs} runs, fresh appliance each):")
    for _ in range(runs):
        base = Path(tempfile.mkdtemp(prefix="measure-"))
        sockdir = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))
        box = Appliance(base, sockdir).start()
        try:
            boot = box.boot()
            if boot.code != 0:
                raise SystemExit(boot.console)
            usage = boot.state["usage"]
            programs = collections.Counter(boot.programs)
            seconds = {c["program"].rsplit("/", 1)[-1]: 0.0 for c in boot.state["commands"]}
            for c in boot.state["commands"]:
                seconds[c["program"].rsplit("/", 1)[-1]] += c["seconds"]
            print(f"  wall {boot.seconds:.2f} s, CPU {usage['cpu_seconds']:.2f} s, "
                  f"peak RSS {usage['peak_rss_mib']:.1f} MiB, "
                  f"{sum(programs.values())} programs: " + ", ".join(
                      f"{name} x{n} ({seconds[name]:.2f} s)"
                      for name, n in programs.most_common()))
        finally:
            box.stop()
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(sockdir, ignore_errors=True)


def follower_idle(seconds: float) -> None:
    """The follower after a sandbox boot: CPU ticks, wake-ups (context switches of every
    thread) and RSS over `seconds` of idle (MEASURE_IDLE, default 60), then a shutdown."""
    import shutil
    from pathlib import Path

    sys.path.insert(0, os.getcwd())
    from tests.sandbox.appliance import Appliance

    def ticks(pid: int) -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def wakeups(pid: int) -> int:
        return sum(int(line.split()[1]) for status in Path(f"/proc/{pid}/task").glob("*/status")
                   for line in status.read_text().splitlines() if "ctxt_switches" in line)

    def rss_kib(pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    base = Path(tempfile.mkdtemp(prefix="measure-"))
    sockdir = Path(tempfile.mkdtemp(prefix="xs-", dir="/tmp"))
    os.environ["XL_STANDIN_LIFETIME"] = str(int(seconds) + 120)
    box = Appliance(base, sockdir).start()
    box.env["XL_STANDIN_LIFETIME"] = os.environ["XL_STANDIN_LIFETIME"]
    try:
        if box.boot().code != 0:
            raise SystemExit("the sandbox boot failed")
        follower = box.follower()
        follower.wait_for(r"follower ready")
        time.sleep(2)
        pid = follower.proc.pid
        before = (ticks(pid), wakeups(pid))
        time.sleep(seconds)
        after = (ticks(pid), wakeups(pid))
        print(f"idle follower over {seconds:g} s: {after[0] - before[0]} CPU ticks, "
              f"{after[1] - before[1]} wake-ups, RSS {rss_kib(pid) / 1024:.1f} MiB")
        shutdown = box.run("shutdown")
        follower.stop()
        stops = [f"{t['domain']} {t['seconds']:.2f} s" for t in shutdown.transitions()
                 if t["to_state"] == "stopped"]
        print(f"sandbox shutdown (exit {shutdown.code}), in order: {', '.join(stops)}")
    finally:
        box.stop()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(sockdir, ignore_errors=True)


if __name__ == "__main__":
    main()
    if os.geteuid() == 0:
        sandbox_boots()
        follower_idle(float(os.environ.get("MEASURE_IDLE", "60")))
    else:
        print("full sandbox boot: skipped (needs root for mknod in the temp root)")
