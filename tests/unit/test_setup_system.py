"""tools/setup-system, the set-up step of `make lab`/`make test`/.ci/run, run for real.

What it does as root (apt-get update + install) changes the machine, so it was proven in
a fresh Debian 12 chroot instead (README "Set up and run"); here: the list it reads, the
groups it picks, and the one line it prints when it cannot install.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import REPO

SETUP = REPO / "tools/setup-system"
PACKAGES = REPO / "tools/system-packages"
GROUPS = {"venv", "unit", "sandbox", "lab"}
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
ABSENT = "orchestrate-test-no-such-package"


def setup(*groups: str, packages: str, as_nobody: bool = True,
          path: str | None = None) -> subprocess.CompletedProcess[str]:
    # in /tmp itself: pytest's own temp tree is closed to the unprivileged user
    with tempfile.NamedTemporaryFile("w", dir="/tmp", prefix="packages-") as listing:
        listing.write(packages)
        listing.flush()
        os.chmod(listing.name, 0o644)
        env = {**os.environ, "SYSTEM_PACKAGES": listing.name}
        if path is not None:
            env["PATH"] = path
        argv = [*NOBODY, str(SETUP), *groups] if as_nobody else [str(SETUP), *groups]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30,
                              check=False, cwd="/")


def test_nothing_missing_is_quiet_and_succeeds() -> None:
    done = setup("sandbox", packages="coreutils sandbox  # always there\n")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_missing_packages_without_root_stop_with_one_line_naming_them_and_the_command() -> None:
    done = setup("venv", "lab", packages=f"coreutils venv\n{ABSENT} lab\n{ABSENT}-2 venv lab\n"
                 f"{ABSENT}-3 sandbox\n")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"setup: missing Debian packages: {ABSENT} {ABSENT}-2; as root run: apt-get update "
        f"&& apt-get install -y --no-install-recommends {ABSENT} {ABSENT}-2"]
    query = subprocess.run(["dpkg-query", "-W", ABSENT], capture_output=True, check=False)
    assert query.returncode != 0, "nothing was installed"


def test_without_dpkg_it_says_this_is_not_debian(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "awk", "dirname", "id"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    done = setup("lab", packages=f"{ABSENT} lab\n", as_nobody=False, path=str(bin_dir))
    assert done.returncode == 1
    assert done.stderr == (f"setup: missing: {ABSENT}; this is not a Debian system: install "
                           f"them with its package manager\n")


def test_the_shipped_list_names_each_package_once_with_known_groups() -> None:
    names = []
    for line in PACKAGES.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = line.split("#", 1)[0].split()
        assert len(words) >= 2 and set(words[1:]) <= GROUPS, line
        assert re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", words[0]), line
        names.append(words[0])
    assert len(names) == len(set(names))
    assert {"qemu-system-x86", "debian-archive-keyring", "xenstore-utils", "openrc",
            "util-linux", "python3-venv", "chromium"} <= set(names)


def test_the_makefile_and_ci_ask_only_for_known_groups() -> None:
    calls = re.findall(r"\$\(SETUP\) ([a-z ]+)", (REPO / "Makefile").read_text())
    calls += re.findall(r"tools/setup-system ([a-z ]+)", (REPO / ".ci/run").read_text())
    assert calls and all(set(c.split()) <= GROUPS for c in calls), calls
    assert any(set(c.split()) == GROUPS for c in calls), "make test and CI: every group"
