"""A corpus of hostile and odd unit files: each is refused by the real `orchestrate` with
exit 2 and exactly the expected `file: key: problem` lines, and nothing is touched.

Each case changes a copy of the example units (as data: tests/unit/unit_docs.py, or as
raw bytes and special files), checks in-process that the loader refuses it (so a case
that validation missed never reaches a real boot), then runs the real program's boot
against a bare temp root, with an empty PATH, and compares the tree before and after.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import InvalidUnits
from orchestrator.units import load_units
from tests.conftest import run_orchestrate
from tests.unit.unit_docs import Raw, Units

DELETE = object()
SHA = "ab" * 32
U = "/local/domain/{server}/ipc/direct/{client}"


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # the class it is counted in
    edit: Callable[[Units, Path], None]
    lines: tuple[str, ...]  # every problem, `file: key: problem`, file relative to units


def host(section: str, key: str, value: Any) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        table = u.host.setdefault(section, {})
        if value is DELETE:
            del table[key]
        else:
            table[key] = value
    return edit


def dom(name: str, key: str, value: Any, section: str | None = None
        ) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        table = u.domains[name] if section is None else u.domains[name].setdefault(section, {})
        if value is DELETE:
            del table[key]
        else:
            table[key] = value
    return edit


def vif(key: str, value: Any) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        u.domains["workload-vm"]["vif"][0][key] = value
    return edit


def add_vif(name: str, **keys: Any) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        u.domains[name].setdefault("vif", []).append({"backend": "net-vm", **keys})
    return edit


def both(*edits: Callable[[Units, Path], None]) -> Callable[[Units, Path], None]:
    def edit(u: Units, units: Path) -> None:
        for e in edits:
            e(u, units)
    return edit


def raw(rel: str, data: bytes) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        u.raw[rel] = data
    return edit


def special(rel: str, make: Callable[[Path], None]) -> Callable[[Units, Path], None]:
    """Replace a unit (or the domains directory) with a special file."""
    def edit(u: Units, _: Path) -> None:
        u.special[rel] = make
    return edit


def lone(key: str, value: Any) -> Callable[[Units, Path], None]:
    """A fourth domain, zz, that nothing refers to, with `key = value`."""
    def edit(u: Units, _: Path) -> None:
        u.small_domain("zz", **{key: value})
    return edit


def small_domains(count: int, name: Callable[[int], str], chain: bool = False,
                  cycle: bool = False, memory: int = 32) -> Callable[[Units, Path], None]:
    def edit(u: Units, _: Path) -> None:
        u.domains.clear()
        kernel = {"url": "guest/vmlinux", "sha256": SHA, "size": 1 << 20}
        for i in range(count):
            doc: dict[str, Any] = {"memory": memory, "on_reboot": "destroy", "kernel": kernel}
            if chain and i:
                doc["after"] = [name(i - 1)]
            if cycle and i == 0:
                doc["after"] = [name(count - 1)]
            u.domains[name(i)] = doc
    return edit


def three_chars(i: int) -> str:
    return f"{'abcdefghij'[i // 100]}{i % 100:02d}"


def c(id: str, kind: str, edit: Callable[[Units, Path], None], *lines: str) -> Case:
    return Case(id, kind, edit, lines)


SA = "domains/sa-vm.toml"
NET = "domains/net-vm.toml"
WL = "domains/workload-vm.toml"
ZZ = "domains/zz.toml"
H = "host.toml"
TIMEOUT_KEYS = [
    ("build_server.request_timeout", "0.1..600 seconds"),
    ("build_server.deadline", "1..86400 seconds"),
    ("deadlines.boot", "1..86400 seconds"),
    ("deadlines.xenstored", "0.1..3600 seconds"),
    ("deadlines.command", "0.1..3600 seconds"),
    ("deadlines.create", "0.1..3600 seconds"),
]


def numbers() -> list[Case]:
    """Every number key: inf, -inf, nan, huge, negative, zero (where 0 is not allowed)."""
    cases = []
    keys = [(H, k, lambda v, k=k: host(*k.split("."), v), r) for k, r in TIMEOUT_KEYS]
    keys += [(SA, "ready_timeout", lambda v: dom("sa-vm", "ready_timeout", v),
              "0.1..3600 seconds"),
             (SA, "stop_timeout", lambda v: dom("sa-vm", "stop_timeout", v),
              "0.1..3600 seconds")]
    for file, key, setter, bounds in keys:
        unit = bounds.split()[-1]
        cases += [
            c(f"{key} inf", "numbers", setter(float("inf")),
              f"{file}: {key}: must be a finite number of {unit} ({bounds}), not inf"),
            c(f"{key} -inf", "numbers", setter(float("-inf")),
              f"{file}: {key}: must be a finite number of {unit} ({bounds}), not -inf"),
            c(f"{key} nan", "numbers", setter(float("nan")),
              f"{file}: {key}: must be a finite number of {unit} ({bounds}), not nan"),
            c(f"{key} 1e10", "numbers", setter(1e10),
              f"{file}: {key}: 10000000000.0 is out of range {bounds}"),
            c(f"{key} negative", "numbers", setter(-5),
              f"{file}: {key}: -5 is out of range {bounds}"),
        ]
    cases += [
        c("a deadline as a string", "numbers", host("deadlines", "boot", "600"),
          f"{H}: deadlines.boot: must be a number, not a string"),
        c("a timeout as a boolean", "numbers", dom("sa-vm", "stop_timeout", True),
          f"{SA}: stop_timeout: must be a number, not a boolean"),
        c("attempts 0", "numbers", host("build_server", "attempts", 0),
          f"{H}: build_server.attempts: 0 is out of range 1..20"),
        c("attempts a float", "numbers", host("build_server", "attempts", 2.5),
          f"{H}: build_server.attempts: must be an integer, not a float"),
        c("memory below 32 MiB", "numbers", dom("sa-vm", "memory", 31),
          f"{SA}: memory: 31 is out of range 32..1048576 MiB"),
        c("memory of 4400 decimal digits", "numbers",
          dom("sa-vm", "memory", Raw("0x" + "f" * 4000)),
          f"{SA}: memory: a number too large to show is out of range 32..1048576 MiB"),
        c("memory inf", "numbers", dom("sa-vm", "memory", float("inf")),
          f"{SA}: memory: must be an integer, not a float"),
        c("vcpus 0", "numbers", dom("sa-vm", "vcpus", 0), f"{SA}: vcpus: 0 is out of range 1..128"),
        c("image size 0", "numbers", dom("sa-vm", "size", 0, "ramdisk"),
          f"{SA}: ramdisk.size: 0 is out of range 1..1099511627776 bytes"),
        c("image size 2 TiB", "numbers", dom("sa-vm", "size", 1 << 41, "ramdisk"),
          f"{SA}: ramdisk.size: 2199023255552 is out of range 1..1099511627776 bytes"),
        c("kernel and ramdisk larger than memory", "numbers", dom("sa-vm", "memory", 34),
          f"{SA}: memory: 34 MiB cannot hold the kernel and ramdisk (35 MiB); give the "
          "domain more memory"),
        c("domains need more memory than a host has", "numbers",
          small_domains(13, lambda i: f"big{i:02d}", memory=1 << 20),
          "domains: (memory): the domains need 13631488 MiB together; Xen supports hosts "
          "of up to 12582912 MiB (12 TiB)"),
    ]
    return cases


def network() -> list[Case]:
    ip_cases = [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("::1", "::1 is a loopback address"),
        ("0.0.0.0", "0.0.0.0 is the unspecified address"),
        ("::", ":: is the unspecified address"),
        ("0.1.2.3", '0.1.2.3 is in 0.0.0.0/8 ("this network")'),
        ("255.255.255.255", "255.255.255.255 is the broadcast address"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ("ff02::1", "ff02::1 is a multicast address"),
        ("169.254.1.1", "169.254.1.1 is a link-local address"),
        ("fe80::1", "fe80::1 is a link-local address"),
        ("240.0.0.1", "240.0.0.1 is a reserved address"),
    ]
    cases = [c(f"vif ip {ip}", "network", vif("ip", ip),
               f"{WL}: vif[0].ip: {text}, not one a host can own") for ip, text in ip_cases]
    cases += [
        c("vif ip not an address", "network", vif("ip", "10.0.5.300"),
          f"{WL}: vif[0].ip: '10.0.5.300' is not an IP address"),
        c("vif ip with a zone", "network", vif("ip", "2001:db8::1%eth0"),
          f"{WL}: vif[0].ip: '2001:db8::1%eth0': a zone (%...) has no meaning here; drop it"),
        c("vif ip empty", "network", vif("ip", ""),
          f"{WL}: vif[0].ip: is empty: name at least one address, or leave the key out"),
        c("vif ip with a tab", "network", vif("ip", "10.0.5.103\t10.0.5.104"),
          f"{WL}: vif[0].ip: contains the control character '\\t' at offset 10"),
        c("equal IPv6 addresses spelled differently", "network",
          both(vif("ip", "2001:db8::1"), add_vif("sa-vm", ip="2001:DB8:0:0::0001")),
          f"{WL}: vif[0].ip: 2001:db8::1 is also used in {{units}}/{SA} (vif[0])"),
        c("IPv4-mapped IPv6 equals its IPv4 address", "network",
          add_vif("sa-vm", ip="::ffff:10.0.5.103"),
          f"{WL}: vif[0].ip: 10.0.5.103 is also used in {{units}}/{SA} (vif[0])"),
        c("vif ip is dom0's address", "network", vif("ip", "10.0.2.15"),
          f"{WL}: vif[0].ip: 10.0.2.15 is also used in {{units}}/{H} (nic.address)"),
        c("vif ip is the gateway's", "network", vif("ip", "10.0.2.2"),
          f"{WL}: vif[0].ip: 10.0.2.2 is also used in {{units}}/{H} (nic.gateway)"),
        c("multicast MAC", "network", vif("mac", "01:00:5e:00:00:01"),
          f"{WL}: vif[0].mac: 01:00:5e:00:00:01 is a multicast or broadcast address (low bit "
          "of the first byte set); use a unicast one, e.g. 00:16:3e:xx:xx:xx (Xen's prefix)"),
        c("broadcast MAC", "network", vif("mac", "FF:FF:FF:FF:FF:FF"),
          f"{WL}: vif[0].mac: FF:FF:FF:FF:FF:FF is a multicast or broadcast address (low bit "
          "of the first byte set); use a unicast one, e.g. 00:16:3e:xx:xx:xx (Xen's prefix)"),
        c("all-zero MAC", "network", vif("mac", "00:00:00:00:00:00"),
          f"{WL}: vif[0].mac: 00:00:00:00:00:00 is no address; use e.g. 00:16:3e:xx:xx:xx "
          "(Xen's prefix)"),
        c("MAC syntax", "network", vif("mac", "00-16-3e-00-00-01"),
          f"{WL}: vif[0].mac: '00-16-3e-00-00-01' is not a MAC address like "
          "00:16:3e:00:00:01"),
        c("duplicate MAC in another case", "network",
          both(vif("mac", "00:16:3e:00:00:01"), add_vif("sa-vm", mac="00:16:3E:00:00:01")),
          f"{WL}: vif[0].mac: 00:16:3e:00:00:01 is also used in {{units}}/{SA} (vif[0])"),
        c("bridge name too long", "network", vif("bridge", "a-bridge-of-16ch"),
          f"{WL}: vif[0].bridge: 'a-bridge-of-16ch' is not a bridge interface name (at most "
          "15 of letters, digits, . _ -)"),
        c("nic interface ..", "network", host("nic", "interface", ".."),
          f"{H}: nic.interface: '..' is not a network interface name (at most 15 of "
          "letters, digits, . _ -)"),
        c("nic address without prefix", "network", host("nic", "address", "10.0.2.15"),
          f"{H}: nic.address: '10.0.2.15': use a.b.c.d/prefix or \"dhcp\""),
        c("nic address is its network's broadcast", "network",
          host("nic", "address", "10.0.2.255/24"),
          f"{H}: nic.address: 10.0.2.255 is the network or broadcast address of 10.0.2.0/24"),
        c("nic address loopback", "network", host("nic", "address", "127.0.0.2/8"),
          f"{H}: nic.address: 127.0.0.2 is a loopback address, not one a host can own"),
        c("gateway outside the network", "network", host("nic", "gateway", "10.0.3.1"),
          f"{H}: nic.gateway: 10.0.3.1 must be another host of 10.0.2.0/24 (nic.address)"),
        c("gateway is dom0 itself", "network", host("nic", "gateway", "10.0.2.15"),
          f"{H}: nic.gateway: 10.0.2.15 must be another host of 10.0.2.0/24 (nic.address)"),
        c("gateway with dhcp", "network", host("nic", "address", "dhcp"),
          f"{H}: nic.gateway: a gateway needs a static address (udhcpc takes the DHCP "
          "server's)"),
        c("nic bdf syntax", "network", host("nic", "bdf", "00:03.0"),
          f"{H}: nic.bdf: '00:03.0' is not a PCI address like 0000:03:00.0 (lspci -D shows "
          "them)"),
    ]
    return cases


def urls() -> list[Case]:
    def url(value: str) -> Callable[[Units, Path], None]:
        return host("build_server", "url", value)
    return [
        c("credentials in build_server.url", "urls", url("http://user:secret@10.0.2.100/i/"),
          f"{H}: build_server.url: must not carry credentials (user:password@): URLs are "
          "printed on the console and in the JSON log; serve the images without them"),
        c("credentials in an image url", "urls",
          dom("sa-vm", "url", "http://u:p@10.0.2.100/images/sa.gz", "ramdisk"),
          f"{SA}: ramdisk.url: must not carry credentials (user:password@): URLs are "
          "printed on the console and in the JSON log; serve the images without them"),
        c("image url off the build server", "urls",
          dom("sa-vm", "url", "http://10.9.9.9/sa.gz", "ramdisk"),
          f"{SA}: ramdisk.url: 'http://10.9.9.9/sa.gz' is not on the build server "
          "(http://10.0.2.100/images/): give a path relative to build_server.url"),
        c("url scheme ftp", "urls", url("ftp://10.0.2.100/images/"),
          f"{H}: build_server.url: 'ftp://10.0.2.100/images/': scheme must be http or https "
          "with a host"),
        c("url port out of range", "urls", url("http://10.0.2.100:99999/images/"),
          f"{H}: build_server.url: 'http://10.0.2.100:99999/images/' is not a URL: Port "
          "out of range 0-65535"),
        c("url with a broken IPv6 host", "urls", url("http://[::1/images/"),
          f"{H}: build_server.url: 'http://[::1/images/' is not a URL: Invalid IPv6 URL"),
        c("url with a space", "urls", url("http://10.0.2.100/my images/"),
          f"{H}: build_server.url: 'http://10.0.2.100/my images/': spaces and non-ASCII "
          "characters must be percent-encoded"),
        c("url with a fragment", "urls", url("http://10.0.2.100/images/#x"),
          f"{H}: build_server.url: 'http://10.0.2.100/images/#x': a URL fragment (#...) is "
          "never sent to the server; remove it"),
        c("url without its trailing slash", "urls", url("http://10.0.2.100/images"),
          f"{H}: build_server.url: 'http://10.0.2.100/images' must end with '/': image URLs "
          "are relative to it, and without the slash its last path component is dropped"),
        c("url with an escape sequence", "urls", url("http://10.0.2.100/\x1b[2J/"),
          f"{H}: build_server.url: contains the control character '\\x1b' at offset 18"),
    ]


def paths() -> list[Case]:
    def bad(value: str) -> str:
        return (f"{value!a} must be an absolute path without '.', '..', '//' or a trailing "
                "'/', of letters, digits and . _ + -")
    return [
        c("script with ..", "paths", vif("script", "../../../tmp/evil"),
          f"{WL}: vif[0].script: '../../../tmp/evil': use a script name from "
          "/etc/xen/scripts (e.g. vif-route) or an absolute path"),
        c("script in a subdirectory", "paths", vif("script", "sub/vif-x"),
          f"{WL}: vif[0].script: 'sub/vif-x': use a script name from /etc/xen/scripts "
          "(e.g. vif-route) or an absolute path"),
        c("absolute script with ..", "paths", vif("script", "/etc/xen/scripts/../../bin/sh"),
          f"{WL}: vif[0].script: {bad('/etc/xen/scripts/../../bin/sh')}"),
        c("hidden script", "paths", vif("script", ".vif"),
          f"{WL}: vif[0].script: '.vif': use a script name from /etc/xen/scripts (e.g. "
          "vif-route) or an absolute path"),
        c("image dir is /", "paths", host("paths", "images", "/"),
          f"{H}: paths.images: '/' is the whole filesystem; name a directory of its own, e.g. "
          "/run/xen"),
        c("image dir escapes the root", "paths", host("paths", "images", "/run/../../etc"),
          f"{H}: paths.images: {bad('/run/../../etc')}"),
        c("image dir with a quote (xl.cfg)", "paths", host("paths", "images", '/run/a"b'),
          f"{H}: paths.images: {bad('/run/a' + chr(34) + 'b')}"),
        c("state dir in /sys", "paths", host("paths", "state", "/sys/bus/pci"),
          f"{H}: paths.state: /sys/bus/pci is in /sys, a kernel filesystem; use a tmpfs such "
          "as /run"),
        c("state dir relative", "paths", host("paths", "state", "run/orchestrator"),
          f"{H}: paths.state: {bad('run/orchestrator')}"),
        c("tools_path with //", "paths", host("xen", "tools_path", ["/usr//bin"]),
          f"{H}: xen.tools_path[0]: {bad('/usr//bin')}"),
        c("tools_path relative", "paths", host("xen", "tools_path", ["bin"]),
          f"{H}: xen.tools_path[0]: {bad('bin')}"),
        c("module name with a slash", "paths", host("xen", "modules", ["../../evil"]),
          f"{H}: xen.modules[0]: '../../evil' is not a module name"),
        c("NUL in a daemon argument", "paths", host("xen", "xenstored_args", ["-T\x00x"]),
          f"{H}: xen.xenstored_args[0]: contains the control character '\\x00' at offset 2"),
    ]


def xenstore() -> list[Case]:
    def dmap(value: str) -> Callable[[Units, Path], None]:
        return host("ipc", "domain_map", value)

    def ready(key: str) -> Callable[[Units, Path], None]:
        return dom("sa-vm", "readiness", f"xenstore:{key}")

    def toolstack(path: str, tree: str) -> str:
        return (f"{H}: ipc.domain_map: {path} is in {tree}, which the toolstack owns: dom0 "
                "would write and remove nodes there; use a tree of its own such as "
                "/ipc/domain-map")

    def not_guest_only(key: str) -> str:
        return (f"{SA}: readiness: {key!a} must name a node inside a directory only the guest "
                "writes (data/, drivers/, feature/, attr/, error/), e.g. data/ready: libxl "
                "creates the others before the guest runs")
    long_map = "/ipc/" + "m" * 2000
    return [
        c("domain map in dom0's home", "xenstore", dmap("/local/domain/0"),
          toolstack("/local/domain/0", "/local")),
        c("domain map /local", "xenstore", dmap("/local"), toolstack("/local", "/local")),
        c("domain map in /libxl", "xenstore", dmap("/libxl/map"),
          toolstack("/libxl/map", "/libxl")),
        c("domain map /vm", "xenstore", dmap("/vm"), toolstack("/vm", "/vm")),
        c("domain map in /tool", "xenstore", dmap("/tool/xenstored"),
          toolstack("/tool/xenstored", "/tool")),
        c("domain map the root", "xenstore", dmap("/"),
          f"{H}: ipc.domain_map: / is the root of xenstore, not a tree of dom0's own; use "
          "/ipc/domain-map"),
        c("domain map a special watch", "xenstore", dmap("@introduceDomain"),
          f"{H}: ipc.domain_map: '@introduceDomain' is not an absolute xenstore path "
          "(components of letters, digits, '-' and '_', no '//', no trailing '/')"),
        c("domain map with a trailing slash", "xenstore", dmap("/ipc/"),
          f"{H}: ipc.domain_map: '/ipc/' is not an absolute xenstore path (components of "
          "letters, digits, '-' and '_', no '//', no trailing '/')"),
        c("domain map past xenstore's path limit", "xenstore", dmap(long_map),
          f"{H}: ipc.domain_map: '/ipc/{'m' * 29}...' leaves no room for /<name> in "
          "xenstore's 2048-byte path limit"),
        c("rendezvous in libxl's backend tree", "xenstore",
          host("ipc", "rendezvous", "/local/domain/{server}/backend/vif/{client}"),
          f"{H}: ipc.rendezvous: 'backend' in a domain's home belongs to libxl or the guest; "
          "put the node in a directory of its own, e.g. ipc/direct/{client}"),
        c("rendezvous in the guest's data/", "xenstore",
          host("ipc", "rendezvous", "/local/domain/{server}/data/{client}"),
          f"{H}: ipc.rendezvous: 'data' in a domain's home belongs to libxl or the guest; "
          "put the node in a directory of its own, e.g. ipc/direct/{client}"),
        c("rendezvous right in the home", "xenstore",
          host("ipc", "rendezvous", "/local/domain/{server}/{client}"),
          f"{H}: ipc.rendezvous: put the node in a directory of its own, e.g. "
          "ipc/direct/{client}"),
        c("rendezvous outside the server's home", "xenstore",
          host("ipc", "rendezvous", "/ipc/{server}/{client}"),
          f"{H}: ipc.rendezvous: must start with /local/domain/{{server}}/"),
        c("readiness xenstore:data", "xenstore", ready("data"), not_guest_only("data")),
        c("readiness xenstore:name", "xenstore", ready("name"), not_guest_only("name")),
        c("readiness xenstore:control/shutdown", "xenstore", ready("control/shutdown"),
          not_guest_only("control/shutdown")),
        c("readiness on a frontend node", "xenstore", ready("device/vif/0/state"),
          not_guest_only("device/vif/0/state")),
        c("readiness absolute", "xenstore", ready("/local/domain/0/name"),
          f"{SA}: readiness: '/local/domain/0/name': the key must be relative to the "
          "domain's home, e.g. data/ready"),
        c("readiness with ..", "xenstore", ready("data/../name"),
          f"{SA}: readiness: 'data/../name': the key must be relative to the domain's home, "
          "e.g. data/ready"),
        c("readiness empty key", "xenstore", ready(""),
          f"{SA}: readiness: '': the key must be relative to the domain's home, e.g. "
          "data/ready"),
        c("readiness past xenstore's path limit", "xenstore", ready("data/" + "r" * 2100),
          f"{SA}: readiness: exceeds xenstore's 2048-byte path limit"),
        c("names past xenstore's DIRECTORY limit", "xenstore",
          small_domains(90, lambda i: f"{i:02d}" + "n" * 44),
          "domains: (names): 90 domain names take 4230 bytes in /ipc/domain-map; "
          "xenstored lists at most 4096: use shorter names or fewer domains"),
    ]


def names_and_types() -> list[Case]:
    return [
        c("name Domain-0", "names", lone("name", "Domain-0"),
          f"{ZZ}: name: 'Domain-0' is dom0's own name: `xl domid Domain-0` answers 0"),
        c("all-digit name", "names", lone("name", "12"),
          f"{ZZ}: name: '12': xl reads an all-digit name as a domid; add a letter"),
        c("name with a slash", "names", lone("name", "zz/../x"),
          f"{ZZ}: name: 'zz/../x' is unsafe as a xenstore path component or file name (use "
          "letters, digits, '-' and '_', at most 48)"),
        c("name of 49 characters", "names", lone("name", "s" * 49),
          f"{ZZ}: name: '{'s' * 34}...' is unsafe as a xenstore path component or file "
          "name (use letters, digits, '-' and '_', at most 48)"),
        c("extra with a newline", "names", dom("sa-vm", "extra", "console=hvc0\nmemory=1"),
          f"{SA}: extra: contains the control character '\\n' at offset 12"),
        c("extra not ASCII", "names", dom("sa-vm", "extra", "role=s\u00e4"),
          f"{SA}: extra: must be printable ASCII without quotes or backslashes (xl.cfg "
          "carries it in double quotes, without escapes)"),
        c("extra past MAX_GUEST_CMDLINE", "names", dom("sa-vm", "extra", "x" * 1024),
          f"{SA}: extra: is 1024 bytes; the domain builder cuts a guest command line at 1023 "
          "(MAX_GUEST_CMDLINE)"),
        c("unknown key with an escape in its name", "names", dom("sa-vm", "\x1b[2Jx", 1),
          f"{SA}: '\\x1b[2Jx': unknown key (see the unit file reference in README.md)"),
        c("a date where a number goes", "names", dom("sa-vm", "memory", Raw("1979-05-27")),
          f"{SA}: memory: must be an integer, not a date or time"),
        c("type hvm", "names", dom("sa-vm", "type", "hvm"),
          f"{SA}: type: 'hvm': must be one of pv, pvh"),
        c("on_crash unknown", "names", dom("sa-vm", "on_crash", "explode"),
          f"{SA}: on_crash: 'explode': must be one of destroy, restart, rename-restart, "
          "preserve, coredump-destroy, coredump-restart, soft-reset"),
        c("sha256 in upper case", "names", dom("sa-vm", "sha256", SHA.upper(), "ramdisk"),
          f"{SA}: ramdisk.sha256: must be 64 lowercase hex digits (sha256sum's output)"),
    ]


def references() -> list[Case]:
    return [
        c("duplicate name", "cross-file", lone("name", "net-vm"),
          f"{ZZ}: name: 'net-vm' is also the name in {{units}}/{NET}"),
        c("pci device in two domains, spelled in two cases", "cross-file",
          both(dom("net-vm", "pci", ["0000:00:0a.0"]), dom("sa-vm", "pci", ["0000:00:0A.0"])),
          f"{SA}: pci[0]: 0000:00:0a.0 is also passed through in {{units}}/{NET}"),
        c("vif backend unknown", "cross-file", vif("backend", "router"),
          f"{WL}: vif[0].backend: names unknown domain 'router'"),
        c("vif backend itself", "cross-file", vif("backend", "workload-vm"),
          f"{WL}: vif[0].backend: a domain cannot be its own vif backend"),
        c("after itself", "cross-file", dom("sa-vm", "after", ["sa-vm"]),
          f"{SA}: after[0]: a domain cannot start after itself"),
        c("ipc peer unknown", "cross-file", dom("sa-vm", "serve", ["x"], "ipc"),
          f"{SA}: ipc.serve[0]: names unknown domain 'x'"),
        c("cycle through vif, ipc and after", "cross-file",
          dom("net-vm", "after", ["workload-vm"]),
          f"{NET}: (dependencies): dependency cycle: net-vm -> workload-vm -> net-vm"),
        c("one image pinned with two sizes", "cross-file",
          dom("sa-vm", "size", 31457281, "kernel"),
          f"{SA}: kernel: is stored as 5f6e0a3b1c9d-vmlinux, like the image in "
          f"{{units}}/{NET} pinned with another sha256 or size: fix the pin that is wrong"),
        c("a cycle of a thousand domains", "cross-file",
          small_domains(1000, three_chars, chain=True, cycle=True),
          "domains/a00.toml: (dependencies): dependency cycle: a00 -> a01 -> a02 -> a03 -> "
          "(994 more) -> j98 -> j99 -> a00 (1000 domains)"),
    ]


def files() -> list[Case]:
    return [
        c("host.toml is a FIFO", "files", special("host.toml", os.mkfifo),
          f"{H}: (file): is a FIFO, not a regular file: a unit must be a regular file"),
        c("a domain unit is a FIFO", "files", special(SA, os.mkfifo),
          f"{SA}: (file): is a FIFO, not a regular file: a unit must be a regular file"),
        c("a domain unit is /dev/zero (a device node)", "files",
          special(SA, lambda p: os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 5))),
          f"{SA}: (file): is a character device, not a regular file: a unit must be a "
          "regular file"),
        c("a domain unit is a symlink to /dev/zero", "files",
          special(SA, lambda p: os.symlink("/dev/zero", p)),
          f"{SA}: (file): is a character device, not a regular file: a unit must be a "
          "regular file"),
        c("a domain unit is a directory", "files", special(SA, os.mkdir),
          f"{SA}: (file): is a directory, not a regular file: a unit must be a regular file"),
        c("a dangling symlink", "files", special(SA, lambda p: os.symlink("gone.toml", p)),
          f"{SA}: (file): not found (a dangling symbolic link)"),
        c("a symlink loop", "files", special(SA, lambda p: os.symlink(p.name, p)),
          f"{SA}: (file): cannot read: Too many levels of symbolic links"),
        c("a unit of 2 MiB", "files", special(SA, _sparse_2_mib),
          f"{SA}: (file): is 2097152 bytes; a unit file is at most 1048576 bytes"),
        c("not UTF-8", "files", raw(SA, b'memory = 128\nextra = "\xff"\n'),
          f"{SA}: (file): not UTF-8 (byte 0xff at offset 22): save the file as UTF-8"),
        c("arrays nested 500 deep", "files", raw(SA, b"x = " + b"[" * 500 + b"]" * 500),
          f"{SA}: (syntax): arrays or inline tables nested too deeply to read: flatten them"),
        c("inline tables nested 500 deep", "files",
          raw(SA, b"x = " + b"{a = " * 500 + b"1" + b"}" * 500),
          f"{SA}: (syntax): arrays or inline tables nested too deeply to read: flatten them"),
        c("an integer of 5000 digits", "files", raw(SA, b"memory = " + b"9" * 5000),
          f"{SA}: (syntax): a number too long to read"),
        c("no domains directory", "files", special("domains", lambda p: None),
          "domains: (files): no domain units (*.toml) found"),
        c("domains is a file", "files", special("domains", lambda p: p.write_bytes(b"")),
          "domains: (files): is not a directory"),
        c("only a misnamed unit", "files",
          both(special("domains", os.mkdir), raw("domains/net-vm.tml", b"memory = 64\n")),
          "domains: (files): no domain units (*.toml) found"),
    ]


def _sparse_2_mib(path: Path) -> None:
    path.write_bytes(b"")
    os.truncate(path, 2 << 20)


CORPUS = numbers() + network() + urls() + paths() + xenstore() + names_and_types() + \
    references() + files()


def build(case: Case, base: Path) -> Path:
    units = Units.example()
    case.edit(units, base / "units")
    return units.write(base / "units")


def bare_root(root: Path) -> Path:
    """A tree a boot would write to, read from and mount on, if it ever started."""
    for rel, text in {"proc/misc": "122 xen/evtchn\n", "etc/xen/xl.conf": "# kept\n",
                      "run/.keep": "", "dev/.keep": "", "var/log/xen/.keep": "",
                      "sys/bus/pci/devices/0000:00:03.0/driver_override": "(null)\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def tree(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    out = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
    return out


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_a_hostile_unit_is_refused_with_exit_2_naming_file_and_key_and_nothing_is_touched(
        case: Case, tmp_path: Path) -> None:
    units = build(case, tmp_path)
    expected = sorted(f"{units}/{line}".replace("{units}", str(units)) for line in case.lines)
    with pytest.raises(InvalidUnits) as refused:  # never let a missed case reach a boot
        load_units(units)
    assert [str(p) for p in refused.value.problems] == expected

    root = bare_root(tmp_path / "root")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    before = tree(root)
    result = run_orchestrate("--root", str(root), "--units", str(units),
                             env={"PATH": str(empty)}, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[:-1] == expected
    count = len(expected)
    assert lines[-1] == (f"orchestrate: {count} problem{'s' if count > 1 else ''} in the unit "
                         f"files in {units}; nothing was touched (exit 2)")
    assert result.stdout == ""
    assert tree(root) == before


def test_the_corpus_covers_every_class() -> None:
    counts = Counter(case.kind for case in CORPUS)
    print(dict(counts), sum(counts.values()))
    assert set(counts) == {"numbers", "network", "urls", "paths", "xenstore", "names",
                           "cross-file", "files"}
    assert len({case.id for case in CORPUS}) == len(CORPUS)


def test_check_refuses_like_the_boot(tmp_path: Path) -> None:
    """`orchestrate check` prints the same lines on stdout, and exits 2."""
    case = next(case for case in CORPUS if case.id == "host.toml is a FIFO")
    units = build(case, tmp_path)
    result = run_orchestrate("check", "--units", str(units), timeout=30)
    assert result.returncode == 2
    assert result.stdout.splitlines()[0] == f"{units}/{case.lines[0]}"
