"""What dom0's image carries follows from its units (initramfs-hooks/image_needs.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from orchestrator.units import load_units
from tests.conftest import EXAMPLE_UNITS, REPO

sys.path.insert(0, str(REPO / "initramfs-hooks"))
import image_needs  # noqa: E402

DRIVERS = ["e1000", "xhci-pci"]


def test_with_every_vif_served_by_a_driver_domain_dom0_needs_no_scripts_bash_or_netback(
) -> None:
    config = load_units(EXAMPLE_UNITS)
    needs = image_needs.dom0_needs([config], DRIVERS)
    assert needs.backends == ()
    assert not needs.hotplug_scripts and not needs.bash
    assert needs.modules == (*config.host.modules, *DRIVERS)
    assert needs.boot_modules == tuple(DRIVERS)
    assert not {"xen-netback", "xen-blkback", "bridge"} & set(needs.modules)
    assert image_needs.module_problems([config]) == []


def test_a_vif_without_a_backend_keeps_the_scripts_bash_and_netback(units_dir: Path) -> None:
    workload = units_dir / "domains/workload-vm.toml"
    workload.write_text(workload.read_text().replace('backend = "net-vm"\n', ""))
    config = load_units(units_dir)
    needs = image_needs.dom0_needs([config], DRIVERS)
    assert needs.backends == (f"{units_dir}/domains/workload-vm.toml: vif[0]",)
    assert needs.hotplug_scripts and needs.bash
    assert {"xen-netback", "bridge"} <= set(needs.modules)


def test_a_dom0_backend_without_netback_in_xen_modules_is_named_with_the_fix(
        units_dir: Path) -> None:
    workload = units_dir / "domains/workload-vm.toml"
    workload.write_text(workload.read_text().replace('backend = "net-vm"\n', ""))
    [problem] = image_needs.module_problems([load_units(units_dir)])
    assert problem.startswith(f"{units_dir}/host.toml: xen.modules lacks xen-netback")
    assert f"{units_dir}/domains/workload-vm.toml" in problem
    assert "name a driver domain in each vif" in problem
    host = units_dir / "host.toml"
    host.write_text(host.read_text().replace('"xen-pciback"]', '"xen-pciback", "xen-netback"]'))
    assert image_needs.module_problems([load_units(units_dir)]) == []


def test_dom0_s_own_vif_after_the_handoff_needs_netfront_in_xen_modules(
        units_dir: Path) -> None:
    host = units_dir / "host.toml"
    host.write_text(host.read_text().replace('gateway = "10.0.2.2"\n',
                                             'gateway = "10.0.2.2"\nafter_handoff = "vif"\n'))
    [problem] = image_needs.module_problems([load_units(units_dir)])
    assert problem == (f"{units_dir}/host.toml: xen.modules lacks xen-netfront, which dom0's "
                       'own vif needs (nic.after_handoff = "vif"): add it, or set '
                       'after_handoff = "none"')
    host.write_text(host.read_text().replace('"xen-pciback"]', '"xen-pciback", "xen-netfront"]'))
    config = load_units(units_dir)
    assert image_needs.module_problems([config]) == []
    needs = image_needs.dom0_needs([config], DRIVERS)
    assert "xen-netfront" in needs.modules and not needs.hotplug_scripts


def test_the_needs_of_every_unit_set_in_the_image_add_up(units_dir: Path) -> None:
    """A lab image carries several unit sets (the boot picks one): any of them that has
    dom0 serve a vif is enough to keep the scripts."""
    example = load_units(EXAMPLE_UNITS)
    workload = units_dir / "domains/workload-vm.toml"
    workload.write_text(workload.read_text().replace('backend = "net-vm"\n', ""))
    needs = image_needs.dom0_needs([example, load_units(units_dir)], DRIVERS)
    assert needs.hotplug_scripts
    assert len(needs.modules) == len(set(needs.modules)), "each module once"


def _script(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_a_script_whose_interpreter_is_not_in_the_image_is_named(tmp_path: Path) -> None:
    _script(tmp_path / "etc/xen/scripts/vif-bridge", "#!/bin/bash\necho hi\n")
    _script(tmp_path / "bin/busybox", "\x7fELF...")
    (tmp_path / "bin/sh").symlink_to("busybox")
    _script(tmp_path / "etc/init.d/orchestrator", "#!/sbin/openrc-run\n")
    _script(tmp_path / "etc/ok", "#!/bin/sh\n")
    _script(tmp_path / "etc/not-executable", "#!/bin/bash\n", mode=0o644)
    assert image_needs.interpreter_problems(tmp_path) == [
        "/etc/init.d/orchestrator: its interpreter /sbin/openrc-run is not in the image",
        "/etc/xen/scripts/vif-bridge: its interpreter /bin/bash is not in the image",
    ]
    _script(tmp_path / "bin/bash", "\x7fELF...")
    _script(tmp_path / "sbin/openrc-run", "\x7fELF...")
    assert image_needs.interpreter_problems(tmp_path) == []
