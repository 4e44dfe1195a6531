"""xl config rendering, against golden files (UPDATE_GOLDEN=1 to accept a change)."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.units import Vif, load_units
from orchestrator.xlcfg import render_xl_config, vif_spec
from tests.conftest import EXAMPLE_UNITS, check_golden


@pytest.mark.parametrize("name", ["net-vm", "sa-vm", "workload-vm"])
def test_example_domain_renders_as_golden(name: str) -> None:
    domain = load_units(EXAMPLE_UNITS).domain(name)
    text = render_xl_config(domain, f"/run/xen-images/{name}.kernel",
                            f"/run/xen-images/{name}.ramdisk")
    check_golden(f"xl/{name}.cfg", text)


def test_pvh_without_ramdisk_and_with_every_vif_key_renders_as_golden() -> None:
    base = load_units(EXAMPLE_UNITS).domain("workload-vm")
    domain = dataclasses.replace(
        base, type="pvh", ramdisk=None, extra="", on_crash="preserve",
        vifs=(Vif(ip="10.0.5.103 10.0.5.104", backend="net-vm", mac="00:16:3e:00:00:03",
                  at_create=True),
              Vif(bridge="xenbr0", script="vif-route"),
              Vif(ip="10.0.5.105", backend="net-vm")),  # attached later: not in the config
    )
    check_golden("xl/pvh-two-vifs.cfg", render_xl_config(domain, "/img/k", None))


def test_vif_spec_orders_keys_as_xl_documents_them() -> None:
    assert vif_spec(Vif(ip="1.2.3.4", backend="net-vm")) == "ip=1.2.3.4,backend=net-vm"
    assert vif_spec(Vif()) == ""
