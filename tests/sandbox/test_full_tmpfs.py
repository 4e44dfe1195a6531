"""Full tmpfs directories during a boot: the real `orchestrate` with its image directory or
its state directory on a real tmpfs that runs out (tests run as root; each mount is
unmounted after).

Issue 10: an image directory one page too small kept a truncated image and the boot said
OK; a full state tmpfs cut state.json to 4096 bytes, left a temp file and ended the boot
in a traceback with the devices on pciback.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator

import pytest

from orchestrator.state import read_state_file
from tests.sandbox.appliance import IMAGE_DIR, IMAGE_SIZES, STATE_DIR, Appliance, Boot
from tests.sandbox.test_failures import dom0_kept_its_nic, nothing_handed_over, stopped_at
from tests.sandbox.tmpfs import PAGE, fill, tiny_tmpfs

PATHS = [f"/images/{name}" for name in IMAGE_SIZES]


@pytest.fixture
def image_tmpfs(appliance: Appliance) -> Iterator[Appliance]:
    """The appliance with /run/xen-images on a 2 MiB tmpfs (the images need 840 KiB)."""
    with tiny_tmpfs(appliance.root / IMAGE_DIR, 2 << 20):
        yield appliance


def no_traceback(boot: Boot) -> None:
    assert "internal error" not in boot.console and "Traceback" not in boot.console, \
        boot.console


def test_an_image_directory_that_fills_mid_download_is_a_final_fetch_error(
        image_tmpfs: Appliance) -> None:
    """Preflight sees room; then something else takes it while the first image streams."""
    box = image_tmpfs
    for path in PATHS:
        box.server.hang(path, headers=True, body_bytes=64 * 1024)
    done: list[Boot] = []
    booting = threading.Thread(target=lambda: done.append(box.boot()))
    booting.start()
    deadline = time.monotonic() + 30
    while not any(r.bytes_sent > 0 for r in box.server.requests):
        assert time.monotonic() < deadline and booting.is_alive(), "no fetch started"
        time.sleep(0.05)
    filler = fill(box.root / IMAGE_DIR, 16 * PAGE)  # less than the rest of any image
    box.server.release()
    booting.join(60)
    (boot,) = done
    no_traceback(boot)
    stopped_at(boot, 5, "fetch-images")
    line = boot.lines(r"\[5/9\] fetch-images failed: ")[0]
    assert "failed after 1 attempt: writing " in line, "a full disk is not retried"
    assert f"{box.root / IMAGE_DIR}/." in line and "No space left on device" in line, line
    assert boot.lines(r"hint: free space in the image directory \(paths\.images in "
                      r"host\.toml")
    dom0_kept_its_nic(box, configured=True)
    nothing_handed_over(box)
    assert box.image_dir_files() == [filler.name], "no image, no temp file"


@pytest.fixture
def state_tmpfs(appliance: Appliance) -> Iterator[Appliance]:
    """/run/orchestrator on a 16 KiB tmpfs: a normal boot writes 17 KiB of JSON log,
    7.5 KiB of state.json (twice, with its temp file) and three xl configs."""
    with tiny_tmpfs(appliance.root / STATE_DIR, 4 * PAGE):
        yield appliance


def test_a_full_state_tmpfs_ends_the_boot_at_the_xl_config_it_needs_with_a_clear_error(
        state_tmpfs: Appliance) -> None:
    box = state_tmpfs
    boot = box.boot()
    no_traceback(boot)
    assert boot.code == 1, boot.console
    # state.json is first to miss (its temp file beside the old one), said once
    assert len(boot.lines(r"WARNING: writing /run/orchestrator/state\.json failed: No "
                          r"space left on device")) == 1
    assert len(boot.lines(r"WARNING: cannot write \S+/boot\.jsonl")) <= 1
    assert boot.lines(r"\[7/9\] create-domains failed: writing /run/orchestrator/xl/"
                      r"\S+\.cfg failed: No space left on device; the old file is unchanged")
    assert boot.lines(r"hint: make room on the filesystem of /run/orchestrator/xl \(df -h "
                      r"/run/orchestrator/xl")
    assert boot.lines(r"orchestrate: FAILED at 7/9 create-domains \(exit 1\)")
    state_dir = box.root / STATE_DIR
    assert not [n for n in os.listdir(state_dir) if ".tmp-" in n], "no temp file"
    assert not [n for n in os.listdir(state_dir / "xl") if ".tmp-" in n]
    read_state_file(state_dir / "state.json")  # whatever it holds, it is a whole state
    assert box.domains() == {}, "no domain without its config"
    # the boot ended after the handoff: the runner gives the devices back
    nothing_handed_over(box)
    dom0_kept_its_nic(box, configured=True)


def test_a_state_file_that_cannot_be_written_never_ends_the_boot(
        state_tmpfs: Appliance) -> None:
    box = state_tmpfs
    with tiny_tmpfs(box.root / STATE_DIR / "xl", 16 * PAGE):  # the configs have room
        boot = box.boot()
        no_traceback(boot)
        assert boot.code == 0, boot.console
        assert boot.lines(r"orchestrate: OK: 3 domains are ready")
        warnings = boot.lines(r"WARNING: writing /run/orchestrator/state\.json failed: No "
                              r"space left on device; the old file is unchanged; the boot "
                              r"goes on without it \(make room in /run/orchestrator: df -h "
                              r"/run/orchestrator\)")
        assert len(warnings) == 1, "said once"
        state_dir = box.root / STATE_DIR
        assert not [n for n in os.listdir(state_dir) if ".tmp-" in n], "no temp file"
        older = read_state_file(state_dir / "state.json")
        assert older.verdict is None, "the last state that fitted, whole"
        json.loads((state_dir / "state.json").read_text())
        for name in ("net-vm", "sa-vm", "workload-vm"):
            assert box.domains().get(name) is not None
        box.stop()  # ends the stand-in domains before the xl tmpfs goes
