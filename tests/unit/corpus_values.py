"""Hostile and odd unit files, as edits of the example units: numbers, network, URLs, paths.

Each case names the class it is counted in and every `file: key: problem` line the
loader must report (file relative to the units directory; `{units}` stands for it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.unit.corpus_edits import (
    DELETE,
    SA,
    TIMEOUT_KEYS,
    WL,
    ZZ,
    Case,
    H,
    add_vif,
    both,
    c,
    dom,
    host,
    lone,
    small_domains,
    vif,
)
from tests.unit.unit_docs import Raw, Units


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
        c("image size missing", "numbers", dom("sa-vm", "size", DELETE, "ramdisk"),
          f"{SA}: ramdisk.size: missing (required): the exact size in bytes"),
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
          f"{WL}: vif[0].bridge: 'a-bridge-of-16ch' is not an interface name (at most "
          "15 of letters, digits, . _ -)"),
        c("nic interface missing", "network", host("nic", "interface", DELETE),
          f"{H}: nic.interface: missing (required)"),
        c("nic interface ..", "network", host("nic", "interface", ".."),
          f"{H}: nic.interface: '..' is not an interface name (at most 15 of letters, "
          "digits, . _ -)"),
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
        c("dom0's vif with no domain taking the NIC", "network",
          both(host("nic", "after_handoff", "vif"), dom("net-vm", "pci", [])),
          f"{H}: nic.after_handoff: \"vif\" needs a domain that takes 0000:00:03.0 (its "
          "pci) to serve dom0's vif"),
        c("nic after_handoff unknown", "network", host("nic", "after_handoff", "bridge"),
          f"{H}: nic.after_handoff: 'bridge': must be \"none\" or \"vif\""),
        c("dom0's vif MAC is multicast", "network", host("nic", "vif_mac", "03:16:3e:00:00:01"),
          f"{H}: nic.vif_mac: 03:16:3e:00:00:01 is a multicast or broadcast address (low bit "
          "of the first byte set); use a unicast one, e.g. 00:16:3e:xx:xx:xx (Xen's prefix)"),
        c("dom0's vif MAC used by a domain's vif", "network",
          both(host("nic", "after_handoff", "vif"), host("nic", "vif_mac", "00:16:3e:0a:0b:0c"),
               vif("mac", "00:16:3E:0A:0B:0C")),
          f"{WL}: vif[0].mac: 00:16:3e:0a:0b:0c is also used in {{units}}/{H} (nic.vif_mac)"),
        c("dom0's vif script with ..", "network", host("nic", "vif_script", "../vif-x"),
          f"{H}: nic.vif_script: '../vif-x': use a script name from /etc/xen/scripts (e.g. "
          "vif-route) or an absolute path"),
        c("vif at_create not a boolean", "network", vif("at_create", "yes"),
          f"{WL}: vif[0].at_create: must be true or false, not a string"),
        c("nic bdf syntax", "network", host("nic", "bdf", "00:03.0"),
          f"{H}: nic.bdf: '00:03.0' is not a PCI address like 0000:03:00.0 (lspci -D shows "
          "them)"),
    ]
    return cases


def empty_strings() -> list[Case]:
    """An empty string is a value, never the default (it used to be: `images = ""` meant
    /run/xen-images, `kernel.url = ""` the build server's directory)."""
    return [
        c("empty image url", "empty", dom("sa-vm", "url", "", "kernel"),
          f"{SA}: kernel.url: is empty: give the image's path relative to build_server.url"),
        c("image url naming a directory", "empty", dom("sa-vm", "url", "./", "kernel"),
          f"{SA}: kernel.url: 'http://10.0.2.100/images/' names a directory, not an image "
          "file"),
        c("empty build server url", "empty", host("build_server", "url", ""),
          f"{H}: build_server.url: '': scheme must be http or https with a host"),
        c("empty nic bdf", "empty", host("nic", "bdf", ""),
          f"{H}: nic.bdf: '' is not a PCI address like 0000:03:00.0 (lspci -D shows them)"),
        c("empty nic address", "empty", host("nic", "address", ""),
          f"{H}: nic.address: '': use a.b.c.d/prefix or \"dhcp\""),
        c("empty image dir", "empty", host("paths", "images", ""),
          f"{H}: paths.images: '' must be an absolute path without '.', '..', '//' or a "
          "trailing '/', of letters, digits and . _ + -"),
        c("empty domain map", "empty", host("ipc", "domain_map", ""),
          f"{H}: ipc.domain_map: '' is not an absolute xenstore path (components of "
          "letters, digits, '-' and '_', no '//', no trailing '/')"),
        c("empty name", "empty", lone("name", ""),
          f"{ZZ}: name: '' is unsafe as a xenstore path component or file name (use "
          "letters, digits, '-' and '_', at most 48)"),
        c("empty type", "empty", dom("sa-vm", "type", ""),
          f"{SA}: type: '': must be one of pv, pvh"),
        c("empty readiness", "empty", dom("sa-vm", "readiness", ""),
          f"{SA}: readiness: '': unknown mode; use one of running, connected, "
          "xenstore:<key>"),
        c("empty sha256", "empty", dom("sa-vm", "sha256", "", "kernel"),
          f"{SA}: kernel.sha256: must be 64 lowercase hex digits (sha256sum's output)"),
    ]


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


