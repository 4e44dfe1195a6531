"""Start-up and footprint figures: median of 5 wall times, peak RSS, top imports.

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


if __name__ == "__main__":
    main()
