"""`make bench`: orchestrate against the seeds' sequential script, same lab, same images.

Two lab boots, one after the other. Boot-to-all-ready is measured on dom0's clock (the
console's uptimes) from the start of the bring-up program (orchestrate, or the script
initramfs-hooks/lab/sequential-boot run in its place) to the line saying the last domain
is ready; both do the same work (modules, xenstored, fetch, handoff, three domains, the map).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.review import review_path
from tests.lab.runner import REPO, LabRun, boot


@dataclass
class Timing:
    start: float
    all_ready: float
    per_domain: dict[str, float]
    # seconds from the start to each vif's attachment, and the critical path (orchestrate)
    attached: dict[str, float] = field(default_factory=dict)
    critical: str = ""

    @property
    def seconds(self) -> float:
        return self.all_ready - self.start


def orchestrate_timing(run: LabRun) -> Timing:
    """From the review of the capture: the console's events are parsed by the same
    definitions that render them (orchestrator/event_types.py), never by a copy here."""
    review = review_path(str(run.capture))
    boot = review.boot
    ours = boot.reviewed if boot else None
    domains = ours.domains if ours else {}
    if ours is None or len(domains) != 3 or any(d.ready is None for d in domains.values()):
        raise SystemExit(f"no complete orchestrate run in {run.capture}")
    ready = {name: d.ready for name, d in domains.items() if d.ready is not None}
    attached = {f"{name} vif {vif.devid}": vif.at for name, d in domains.items()
                for vif in d.vifs}
    path = review.critical_path()
    return Timing(ours.first_uptime, max(ready.values()),
                  {name: d.seconds for name, d in domains.items() if d.seconds is not None},
                  {name: t - ours.first_uptime for name, t in attached.items()},
                  " -> ".join(d.name for d in path))


def sequential_timing(run: LabRun) -> Timing:
    text = run.text()
    start = re.search(r"sequential: (\d+\.\d+) start", text)
    ready = re.findall(r"sequential: (\d+\.\d+) ([a-z-]+-vm) ready", text)
    if not start or len(ready) != 3:
        raise SystemExit(f"no complete sequential run in {run.capture}")
    times = [float(start[1])] + [float(r[0]) for r in ready]
    per = {name: times[i + 1] - times[i] for i, (_, name) in enumerate(ready)}
    return Timing(float(start[1]), max(float(r[0]) for r in ready), per)


# each boot ends at its last figure (the lab report after it would only cost time: the
# sequential script publishes no peers, so the report's vchan checks wait out their limits)
OURS_DONE = re.compile(r"orchestrate: (OK|FAILED|INTERRUPTED)\b")
SEQUENTIAL_DONE = re.compile(r"sequential: [\d.]+ all ready")


def bench(out: Path) -> tuple[Timing, Timing]:
    ours = orchestrate_timing(boot(out, out / "capture-bench-orchestrate.log", timeout=400,
                                   until=OURS_DONE))
    seq = sequential_timing(boot(out, out / "capture-bench-sequential.log", timeout=400,
                                 sequential=True, until=SEQUENTIAL_DONE))
    return ours, seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "lab-4.17")
    args = parser.parse_args()
    ours, seq = bench(args.out)
    print(f"boot-to-all-ready: orchestrate {ours.seconds:.1f} s, sequential script "
          f"{seq.seconds:.1f} s, ratio {ours.seconds / seq.seconds:.2f}x (aim <= 0.75x)")
    print("  orchestrate create-to-ready: " + ", ".join(
        f"{k} {v:.1f} s" for k, v in ours.per_domain.items()))
    print("  orchestrate, from its start: " + ", ".join(
        f"{k} attached at {v:.1f} s" for k, v in ours.attached.items())
        + f"; critical path {ours.critical}")
    print("  sequential, each step of the chain: " + ", ".join(
        f"{k} {v:.1f} s" for k, v in seq.per_domain.items()))
    sys.exit(0)


if __name__ == "__main__":
    main()
