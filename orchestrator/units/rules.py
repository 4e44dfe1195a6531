"""What a single unit value may be, and why. Pure: each rule returns a problem or None.

Every limit here is documented in the README's unit file tables; keep the two in step.
The sources cited are in xen-project/xen (tags RELEASE-4.17.0 .. 4.20) unless named.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from orchestrator.units.reader import Range, show

# --- numbers ---------------------------------------------------------------------------
# Every number is bounded: an unbounded deadline (1e10, inf) reached time.monotonic() +
# timeout and select() as an OverflowError in the middle of a boot. A day is longer than
# any boot of an appliance; an hour longer than any one wait in it.
BOOT_DEADLINE = Range(1, 86400, "seconds")
FETCH_DEADLINE = Range(1, 86400, "seconds")
REQUEST_TIMEOUT = Range(0.1, 600, "seconds")
WAIT_TIMEOUT = Range(0.1, 3600, "seconds")  # xenstored, command, create, ready, stop
FETCH_ATTEMPTS = Range(1, 20)
MEMORY_MIB = Range(32, 1024 * 1024, "MiB")
VCPUS = Range(1, 128)
IMAGE_BYTES = Range(1, 1 << 40, "bytes")
# Xen security-supports x86 hosts of up to 12 TiB (SUPPORT.md, "Physical Memory"):
# domains that together need more can never all run.
HOST_MEMORY_MIB = 12 * 1024 * 1024

# --- names -----------------------------------------------------------------------------
# A name becomes a xenstore path component (/ipc/domain-map/<name>), a file name
# (<state>/<name>.cfg) and an xl domain name: keep to what is safe in all three
# (docs/misc/xenstore.txt allows [A-Za-z0-9-/_@] in paths).
NAME_MAX = 48
NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{NAME_MAX - 1}}}")
BDF_RE = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
MODULE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Linux dev_valid_name(): at most IFNAMSIZ-1 = 15 bytes, no '/', ':' or space, not . or ..
IFNAME_RE = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.-]{1,15}")
# POSIX portable file name characters: safe in argv, in xl.cfg's quotes and on a console.
PATH_COMPONENT_RE = re.compile(r"(?!\.\.?$)[A-Za-z0-9._+-]{1,255}")
# A string xl.cfg carries inside double quotes without escapes (libxlu has none for these).
XL_SAFE_TEXT_RE = re.compile(r'[\x20-\x7e]*')
XL_UNSAFE_CHARS = '"\\'
# start_info.cmd_line is MAX_GUEST_CMDLINE (1024) bytes with its NUL: the domain builder
# cuts a longer command line silently (tools/libs/guest/xg_dom_x86.c).
EXTRA_MAX_BYTES = 1023

DOMAIN_TYPES = ("pv", "pvh")
XL_ACTIONS = ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy",
              "coredump-restart", "soft-reset")
READINESS_MODES = ("running", "connected", "xenstore:<key>")


def name_problem(name: str) -> str | None:
    if not NAME_RE.fullmatch(name):
        return (f"{show(name)} is unsafe as a xenstore path component or file name "
                "(use letters, digits, '-' and '_', at most 48)")
    if name.isdigit():
        # xl takes an all-digit argument for a domid (libxl_domain_qualifier_to_domid):
        # `xl destroy 12` would destroy domain 12, whatever its name.
        return f"{show(name)}: xl reads an all-digit name as a domid; add a letter"
    if name == "Domain-0":
        return "'Domain-0' is dom0's own name: `xl domid Domain-0` answers 0"
    return None


def extra_problem(extra: str) -> str | None:
    if not XL_SAFE_TEXT_RE.fullmatch(extra) or any(c in extra for c in XL_UNSAFE_CHARS):
        return "must be printable ASCII without quotes or backslashes (xl.cfg carries it " \
               "in double quotes, without escapes)"
    if len(extra) > EXTRA_MAX_BYTES:
        return (f"is {len(extra)} bytes; the domain builder cuts a guest command line at "
                f"{EXTRA_MAX_BYTES} (MAX_GUEST_CMDLINE)")
    return None


# --- network ---------------------------------------------------------------------------


def mac_problem(mac: str) -> str | None:
    if not MAC_RE.fullmatch(mac):
        return f"{show(mac)} is not a MAC address like 00:16:3e:00:00:01"
    first = int(mac[:2], 16)
    if first & 1:
        return f"{mac} is a multicast or broadcast address (low bit of the first byte " \
               "set); use a unicast one, e.g. 00:16:3e:xx:xx:xx (Xen's prefix)"
    if int(mac.replace(":", ""), 16) == 0:
        return "00:00:00:00:00:00 is no address; use e.g. 00:16:3e:xx:xx:xx (Xen's prefix)"
    return None


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_host_ip(text: str) -> tuple[IPAddress | None, str | None]:
    """A unicast address one host can own, in canonical form (an IPv4-mapped IPv6 address
    is its IPv4 address): so equal addresses spelled differently compare equal."""
    try:
        ip: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        return None, f"{show(text)} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return None, f"{show(text)}: a zone (%...) has no meaning here; drop it"
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    kinds = (
        (ip.is_unspecified, "the unspecified address"),
        (ip.version == 4 and ip.packed[0] == 0, 'in 0.0.0.0/8 ("this network")'),
        (ip.is_loopback, "a loopback address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_link_local, "a link-local address"),
        (ip == ipaddress.IPv4Address("255.255.255.255"), "the broadcast address"),
        (ip.is_reserved, "a reserved address"),
    )
    for test, what in kinds:
        if test:
            return None, f"{ip} is {what}, not one a host can own"
    return ip, None


def interface_problem(address: str) -> tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface
                                             | None, str | None]:
    """dom0's static address: `a.b.c.d/prefix`, a host address of its own network."""
    hint = 'use a.b.c.d/prefix or "dhcp"'
    if "/" not in address:
        return None, f"{show(address)}: {hint}"
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError:
        return None, f"{show(address)}: {hint}"
    _, problem = parse_host_ip(str(iface.ip))
    if problem:
        return None, problem
    net = iface.network
    if net.version == 4 and net.prefixlen <= 30 and \
            iface.ip in (net.network_address, net.broadcast_address):
        return None, f"{iface.ip} is the network or broadcast address of {net}"
    return iface, None


def url_problem(url: str) -> str | None:
    """An http(s) URL urllib can fetch and the console can show."""
    if not url.isascii() or any(c.isspace() for c in url):
        return f"{show(url)}: spaces and non-ASCII characters must be percent-encoded"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
        host = parts.hostname
    except ValueError as exc:
        return f"{show(url)} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not host:
        return f"{show(url)}: scheme must be http or https with a host"
    if parts.username is not None or parts.password is not None:
        # The URL is printed on the console and in boot.jsonl (every fetch logs it).
        return "must not carry credentials (user:password@): URLs are printed on the " \
               "console and in the JSON log; serve the images without them"
    if parts.fragment or url.endswith("#"):
        return f"{show(url)}: a URL fragment (#...) is never sent to the server; remove it"
    if port == 0:
        return f"{show(url)}: port 0 is no port"
    return None


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    default = {"http": 80, "https": 443}
    return (pa.scheme, pa.hostname, pa.port or default.get(pa.scheme)) == \
        (pb.scheme, pb.hostname, pb.port or default.get(pb.scheme))


def script_problem(script: str) -> str | None:
    """A vif hotplug script: a name in libxl's script directory, or an absolute path.

    libxl joins a relative script onto /etc/xen/scripts (libxl__abs_path in
    tools/libs/light/libxl_internal.c, called from libxl_nic.c), so `../x` would run a
    program outside it; a name keeps to the directory, an absolute path says where.
    """
    if script.startswith("/"):
        return absolute_path_problem(script)
    if not PATH_COMPONENT_RE.fullmatch(script) or script.startswith("."):
        return (f"{show(script)}: use a script name from /etc/xen/scripts (e.g. vif-route) "
                "or an absolute path")
    return None


def absolute_path_problem(path: str) -> str | None:
    """Absolute, normalised, portable: joined onto --root it stays inside the root, and it
    is safe in argv and in xl.cfg's quotes."""
    if path == "/":
        return "'/' is the whole filesystem; name a directory of its own, e.g. /run/xen"
    parts = path.split("/")
    if not path.startswith("/") or \
            not all(PATH_COMPONENT_RE.fullmatch(p) for p in parts[1:]):
        return (f"{show(path)} must be an absolute path without '.', '..', '//' or a "
                "trailing '/', of letters, digits and . _ + -")
    return None


def state_dir_problem(path: str) -> str | None:
    """paths.images and paths.state hold files dom0 writes: never in a kernel filesystem."""
    problem = absolute_path_problem(path)
    if problem:
        return problem
    for kernel_fs in ("/proc", "/sys", "/dev"):
        if path == kernel_fs or path.startswith(kernel_fs + "/"):
            return f"{path} is in {kernel_fs}, a kernel filesystem; use a tmpfs such as /run"
    return None


# --- xenstore --------------------------------------------------------------------------
# Paths: [A-Za-z0-9-/_@], no '//', no trailing '/'; outside /local/domain/<domid>/ at most
# 2048 bytes, inside it 2048 bytes after that prefix (docs/misc/xenstore.txt;
# tools/xenstore/xenstored_core.c is_valid_nodename, quota_max_path_len).
XS_PATH_MAX = 2048
XS_COMPONENT_RE = re.compile(r"[A-Za-z0-9_-]+")  # '@' is for special watches only
# Toolstack-owned trees: dom0 must never write or remove there (/local/domain/0 made a
# boot remove dom0's own domid, name and backend nodes).
TOOLSTACK_TREES = ("/local", "/libxl", "/vm", "/tool")
# What libxl, xl and xenstored keep in a domain's home (libxl_create.c libxl__domain_make,
# libxl_dom.c libxl__build_post, the device and console code): a rendezvous node there
# would be written over or removed by the toolstack, or write over its nodes.
TOOLSTACK_HOME_NODES = frozenset((
    "attr", "backend", "console", "control", "cpu", "data", "device", "device-model",
    "domid", "drivers", "error", "feature", "hvmloader", "image", "libxl", "memory", "name",
    "platform", "serial", "store", "vm", "vnc",
))
# The directories libxl creates [n<domid>] (guest-writable) in every domain's home, with
# nothing inside until the guest writes (libxl__domain_make). A readiness key must be
# strictly inside one: libxl itself creates `name`, `control/shutdown`, `data`, ... before
# the guest runs, so a key naming one of those is "ready" for a guest that never booted.
GUEST_WRITABLE_DIRS = ("data", "drivers", "feature", "attr", "error")


def _components_ok(path: str) -> bool:
    return all(XS_COMPONENT_RE.fullmatch(c) for c in path.split("/"))


def domain_map_problem(path: str) -> str | None:
    if path == "/":
        return "/ is the root of xenstore, not a tree of dom0's own; use /ipc/domain-map"
    if not path.startswith("/") or not _components_ok(path[1:]):
        return (f"{show(path)} is not an absolute xenstore path (components of letters, "
                "digits, '-' and '_', no '//', no trailing '/')")
    for tree in TOOLSTACK_TREES:
        if path == tree or path.startswith(tree + "/"):
            return (f"{path} is in {tree}, which the toolstack owns: dom0 would write and "
                    "remove nodes there; use a tree of its own such as /ipc/domain-map")
    if len(path) + 1 + NAME_MAX > XS_PATH_MAX:
        return f"{show(path)} leaves no room for /<name> in xenstore's {XS_PATH_MAX}-byte " \
               "path limit"
    return None


def rendezvous_problem(template: str) -> str | None:
    """Under the server's home (it goes away with the server), naming both ends, outside
    every node the toolstack keeps there (XEN-FACTS.md, "Provisioning rules")."""
    prefix = "/local/domain/{server}/"
    if not template.startswith(prefix):
        return "must start with /local/domain/{server}/"
    if "{client}" not in template:
        return "must contain {client}"
    rest = template[len(prefix):]
    first = rest.split("/", 1)[0]
    if first in TOOLSTACK_HOME_NODES:
        return (f"{show(first)} in a domain's home belongs to libxl or the guest; put the "
                "node in a directory of its own, e.g. ipc/direct/{client}")
    if "/" not in rest:
        return "put the node in a directory of its own, e.g. ipc/direct/{client}"
    sample = rest.replace("{server}", "32751").replace("{client}", "32751")
    if not _components_ok(sample):
        return f"{show(template)} is not a valid xenstore path template"
    if len(sample) > XS_PATH_MAX:
        return f"exceeds xenstore's {XS_PATH_MAX}-byte path limit"
    return None


def readiness_key_problem(key: str) -> str | None:
    if not key or not _components_ok(key):
        return (f"{show(key)}: the key must be relative to the domain's home, e.g. "
                "data/ready")
    first = key.split("/", 1)[0]
    if first not in GUEST_WRITABLE_DIRS or "/" not in key:
        return (f"{show(key)} must name a node inside a directory only the guest writes "
                f"({', '.join(d + '/' for d in GUEST_WRITABLE_DIRS)}), e.g. data/ready: "
                "libxl creates the others before the guest runs")
    if len(key) > XS_PATH_MAX:
        return f"exceeds xenstore's {XS_PATH_MAX}-byte path limit"
    return None
