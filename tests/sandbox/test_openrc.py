"""The OpenRC service runs orchestrate at boot and says [ ok ] only when it exits 0.

Real OpenRC (Debian's openrc package: openrc-run, ebegin/eend) runs the shipped
units/openrc/orchestrator with its conf.d beside it, against the sandbox appliance.
openrc-run refuses to run on a system it did not boot unless /run/openrc/softlevel
exists: the test creates it when missing and removes it afterwards, and resets the
service's state (zap) whatever happens.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.sandbox.appliance import Appliance

OPENRC_RUN = Path("/sbin/openrc-run")
SOFTLEVEL = Path("/run/openrc/softlevel")
SERVICE = REPO / "units" / "openrc" / "orchestrator"
CONFD = REPO / "units" / "openrc" / "orchestrator.confd"


class Service:
    def __init__(self, base: Path, box: Appliance) -> None:
        self.script = base / "init.d" / "orchestrator"
        self.console = base / "console.log"
        self.script.parent.mkdir(parents=True)
        shutil.copy2(SERVICE, self.script)
        # openrc-run clears the environment: a wrapper carries the sandbox's
        wrapper = base / "orchestrate"
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in box.env.items()
                          if k in ("PATH", "SANDBOX_ROOT", "XENSTORED_PATH", "XL_STANDIN",
                                   "NO_COLOR", "PYTHONPATH"))
        wrapper.write_text(f"#!/bin/sh\n{exports}cd {shlex.quote(str(REPO))}\n"
                           f"exec {shlex.quote(sys.executable)} -m orchestrator \"$@\"\n")
        wrapper.chmod(0o755)
        confd = base / "conf.d" / "orchestrator"  # OpenRC reads ../conf.d/<service>
        confd.parent.mkdir()
        confd.write_text(CONFD.read_text() + "\n"
                         f'orchestrate_command="{wrapper}"\n'
                         f'orchestrate_units="{box.units}"\n'
                         f'orchestrate_console="{self.console}"\n'
                         f'orchestrate_args="--root {box.root}"\n')

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.script), "--nodeps", *command], capture_output=True,
                              text=True, timeout=120, check=False)


@pytest.fixture
def service(tmp_path: Path, appliance: Appliance) -> Iterator[Service]:
    assert OPENRC_RUN.exists(), "install openrc (apt-get install openrc), as .ci/run does"
    created = not SOFTLEVEL.exists()
    if created:
        SOFTLEVEL.parent.mkdir(parents=True, exist_ok=True)
        SOFTLEVEL.touch()
    svc = None
    try:
        svc = Service(tmp_path / "openrc", appliance)
        yield svc
    finally:
        if svc is not None:
            svc.run("zap")
        if created:
            SOFTLEVEL.unlink(missing_ok=True)


def test_the_service_brings_the_appliance_up_and_says_ok(
        service: Service, appliance: Appliance) -> None:
    result = service.run("start")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out + service.console.read_text()
    assert "Bringing up the Xen appliance (orchestrate)" in out
    assert "[ ok ]" in out and "[ !! ]" not in out
    console = service.console.read_text()
    assert "orchestrate: OK: 3 domains are ready" in console
    assert sorted(appliance.domains()) == ["net-vm", "sa-vm", "workload-vm"]
    assert "status: started" in service.run("status").stdout + service.run("status").stderr
    report = service.run("report")
    assert "verdict: OK: 3 domains are ready" in report.stdout, report.stdout + report.stderr


def test_a_failed_bring_up_is_reported_as_failed(
        service: Service, appliance: Appliance) -> None:
    appliance.server.status("/images/guest/sa-vm.cpio.gz", 404)
    result = service.run("start")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "[ !! ]" in out and "[ ok ]" not in out
    assert "orchestrate failed: see the console above" in out
    assert "FAILED at 5/9 fetch-images (exit 1)" in service.console.read_text()
    status = service.run("status")
    assert "started" not in status.stdout + status.stderr
    assert appliance.nic_has_address(), "dom0 kept its NIC"


def test_the_service_file_is_valid_shell() -> None:
    for shell in ("sh", "bash"):
        if shutil.which(shell):
            assert subprocess.run([shell, "-n", str(SERVICE)], check=False).returncode == 0
    assert os.access(SERVICE, os.X_OK)
