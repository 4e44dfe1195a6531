"""`orchestrate --dry-run` on the shipped example: every action, in order, nothing changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_UNITS, check_golden, normalise_console, run_orchestrate


def dom0_like_root(root: Path) -> Path:
    """What a Xen dom0 shows before orchestrate runs: modules loaded, no nodes yet."""
    files = {
        "proc/misc": "183 hw_random\n122 xen/evtchn\n121 xen/gntdev\n120 xen/gntalloc\n"
                     "119 xen/privcmd\n 60 device-mapper\n",
        "proc/modules": "".join(f"{m} 16384 0 - Live 0x0\n" for m in
                                ("xen_evtchn", "xen_gntdev", "xen_gntalloc", "xen_privcmd")),
        "proc/mounts": "proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n",
        "sys/hypervisor/version/major": "4\n",
        "sys/hypervisor/version/minor": "17\n",
        "sys/hypervisor/version/extra": ".5\n",
        "usr/lib/x86_64-linux-gnu/libxenctrl.so.4.17": "",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for bdf, driver in (("0000:00:03.0", "e1000"), ("0000:00:04.0", "xhci_hcd")):
        (root / f"sys/bus/pci/drivers/{driver}").mkdir(parents=True)
        dev = root / f"sys/bus/pci/devices/{bdf}"
        dev.mkdir(parents=True)
        os.symlink(f"../../../bus/pci/drivers/{driver}", dev / "driver")
    (root / "sys/bus/pci/drivers/pciback").mkdir()
    return root


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.lstat().st_mode, p.lstat().st_mtime) for p in root.rglob("*")}


@pytest.mark.parametrize("fixture", ["dom0", "devbox"])
def test_dry_run_prints_every_action_in_order(tmp_path: Path, fixture: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    if fixture == "dom0":
        dom0_like_root(root)
    before = snapshot(root)
    result = run_orchestrate("--dry-run", "--units", "units", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert snapshot(root) == before, "a dry run changed the root"
    check_golden(f"dry-run-{fixture}.txt", normalise_console(result.stderr, root))
    assert result.stderr.isascii()


def test_dry_run_shows_what_the_issue_asks_for(tmp_path: Path) -> None:
    root = dom0_like_root(tmp_path)
    out = run_orchestrate("--dry-run", "--units", "units", "--root", str(root)).stderr
    wanted = [
        "would mknod /dev/xen/evtchn c 10 122 (mode 0600)",
        "would xenstored --pid-file",
        "would wait up to 15 s until READ / succeeds",
        "would fetch http://10.0.2.100/images/guest/net-vm.cpio.gz",
        "-> /run/xen-images/0a1b2c3d4e5f-net-vm.cpio.gz (4613734 B)",
        "sha256 0a1b2c3d4e5f60718293a4b5...",
        "  /sys/bus/pci/drivers/e1000/bind <- 0000:00:03.0",  # the rollback plan
        "would write /sys/bus/pci/devices/0000:00:03.0/driver/unbind <- 0000:00:03.0",
        "would xl create -p",
        "would xenstore mkdir /local/domain/<domid:sa-vm>/ipc/direct/<domid:workload-vm> "
        "[n<domid:sa-vm> r<domid:workload-vm>]",
        "would xl unpause <domid:workload-vm>",
        # the vif is attached once net-vm is ready, after workload-vm was created
        "would xl network-attach workload-vm ip=10.0.5.103 backend=net-vm",
        "orchestrate: OK: 3 domains would be ready",
    ]
    for line in wanted:
        assert line in out, line
    positions = [out.index(line) for line in wanted]
    assert positions == sorted(positions), "actions out of order"


def test_dry_run_needs_no_root() -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root to drop to nobody (setpriv)")
    import subprocess
    import sys
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="dry-run-nobody-"))
    tmp_path.chmod(0o755)
    request_cleanup = shutil.rmtree
    result = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
         "-m", "orchestrator", "--dry-run", "--units", str(EXAMPLE_UNITS), "--root",
         str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=EXAMPLE_UNITS.parent,
    )
    request_cleanup(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "orchestrate: OK" in result.stderr


def test_json_lines_carry_every_field(tmp_path: Path) -> None:
    result = run_orchestrate("--dry-run", "--log-format", "json", "--units", "units",
                             "--root", str(dom0_like_root(tmp_path)))
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert all("uptime" in e and "event" in e for e in events)
    steps = [e["step"] for e in events if e["event"] == "step begin"]
    assert steps == ["make-device-nodes", "preflight", "start-xenstored", "check-platform",
                     "fetch-images", "bind-devices-to-pciback", "create-domains",
                     "provision-xenstore", "leave-dom0-idle"]
    assert events[-1]["event"] == "verdict"
