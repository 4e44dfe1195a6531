"""Unit files -> the model: load_units reads every file (`reader`), parses each into the
model, one file at a time, and checks them across files (`validate`): all problems at
once, or a Config. What a single value may be is in `rules`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from orchestrator.errors import InvalidUnits, UnitProblem
from orchestrator.units import rules
from orchestrator.units.model import (
    DEFAULT_STOP_TIMEOUT,
    Config,
    DomainUnit,
    HostUnit,
    Image,
    NicConfig,
    Readiness,
    UnitNote,
    Vif,
)
from orchestrator.units.reader import Table, read_unit, show
from orchestrator.units.validate import cross_file_problems, restart_notes

DEFAULT_MODULES = ("xen-evtchn", "xen-gntdev", "xen-gntalloc", "xen-privcmd", "xenfs",
                   "xen-pciback")
DEFAULT_DOMAIN_MAP = "/ipc/domain-map"
DEFAULT_RENDEZVOUS = "/local/domain/{server}/ipc/direct/{client}"
MIB = 1 << 20
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def load_units(units_dir: str | Path) -> Config:
    """Load and validate every unit file under units_dir; raise InvalidUnits listing all."""
    base = Path(units_dir)
    problems: list[UnitProblem] = []
    if not base.is_dir():
        what = "is not a directory" if base.exists() else "not found"
        raise InvalidUnits([UnitProblem(str(base), "(directory)", what)])
    host_file = str(base / "host.toml")
    host = parse_host(host_file, read_unit(host_file, problems), problems)
    domain_dir = str(base / "domains")
    files, notes = _domain_files(domain_dir, problems)
    domains = []
    for path in files:
        data = read_unit(path, problems)
        if data is not None:
            domains.append(parse_domain(path, data, host, problems))
    config = Config(units_dir=str(base), host=host, domains=tuple(domains))
    problems.extend(cross_file_problems(config, domain_dir, all_read=len(domains) == len(files)))
    if problems:
        raise InvalidUnits(problems)
    return dataclasses.replace(config, notes=notes + restart_notes(config))


def _domain_files(domain_dir: str,
                  problems: list[UnitProblem]) -> tuple[list[str], tuple[UnitNote, ...]]:
    """`domains/*.toml`, sorted; anything else there is named in a note, not read."""
    try:
        if not stat.S_ISDIR(os.stat(domain_dir).st_mode):
            problems.append(UnitProblem(domain_dir, "(files)", "is not a directory"))
            return [], ()
        names = sorted(entry.name for entry in os.scandir(domain_dir))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        problems.append(UnitProblem(domain_dir, "(files)", f"cannot list: {exc.strerror}"))
        return [], ()
    units = [os.path.join(domain_dir, n) for n in names
             if n.endswith(".toml") and not n.startswith(".")]
    if not units:
        problems.append(UnitProblem(domain_dir, "(files)", "no domain units (*.toml) found"))
    notes = tuple(UnitNote(os.path.join(domain_dir, n), "(file)",
                           "ignored: only domains/*.toml are units",
                           "rename it to end in .toml to make it a unit, or move it away")
                  for n in names if not n.endswith(".toml") and not n.startswith("."))
    return units, notes


def parse_host(file: str, data: dict[str, Any] | None, problems: list[UnitProblem]) -> HostUnit:
    t = Table(problems, file, data or {})
    server = t.table("build_server", required=data is not None)
    url = ""
    request_timeout, attempts, deadline = 20.0, 4, 300.0
    if server:
        url = _server_url(server)
        request_timeout = server.number("request_timeout", request_timeout,
                                        rules.REQUEST_TIMEOUT)
        attempts = server.integer("attempts", attempts, rules.FETCH_ATTEMPTS)
        deadline = server.number("deadline", deadline, rules.FETCH_DEADLINE)
        server.finish()

    nic_t = t.table("nic")
    nic = _nic(nic_t) if nic_t else None

    xen = t.table_or_empty("xen")
    modules = xen.strings("modules") if xen.has("modules") else DEFAULT_MODULES
    for i, module in enumerate(modules):
        if not rules.MODULE_RE.fullmatch(module):
            xen.problem(f"modules[{i}]", f"{show(module)} is not a module name")
    tools_path = xen.strings("tools_path")
    for i, entry in enumerate(tools_path):
        _report(xen, f"tools_path[{i}]", rules.absolute_path_problem(entry))
    xenstored_args = xen.strings("xenstored_args")
    xenconsoled_args = xen.strings("xenconsoled_args")
    autoballoon_off = not xen.flag("autoballoon", False)
    xen.finish()

    paths = t.table_or_empty("paths")
    image_dir = paths.string("images", "/run/xen-images", rule=rules.state_dir_problem)
    state_dir = paths.string("state", "/run/orchestrator", rule=rules.state_dir_problem)
    paths.finish()

    limits = t.table_or_empty("deadlines")
    boot_deadline = limits.number("boot", 600.0, rules.BOOT_DEADLINE)
    xenstored_timeout = limits.number("xenstored", 15.0, rules.WAIT_TIMEOUT)
    command_timeout = limits.number("command", 30.0, rules.WAIT_TIMEOUT)
    create_timeout = limits.number("create", 60.0, rules.WAIT_TIMEOUT)
    limits.finish()

    ipc = t.table_or_empty("ipc")
    domain_map = ipc.string("domain_map", DEFAULT_DOMAIN_MAP, rule=rules.domain_map_problem)
    rendezvous = ipc.string("rendezvous", DEFAULT_RENDEZVOUS, rule=rules.rendezvous_problem)
    ipc.finish()
    t.finish()
    return HostUnit(
        source=file, build_server=url, request_timeout=request_timeout,
        fetch_attempts=attempts, fetch_deadline=deadline, nic=nic, modules=tuple(modules),
        tools_path=tools_path, xenstored_args=xenstored_args,
        xenconsoled_args=xenconsoled_args, autoballoon_off=autoballoon_off,
        image_dir=image_dir, state_dir=state_dir, boot_deadline=boot_deadline,
        xenstored_timeout=xenstored_timeout, command_timeout=command_timeout,
        create_timeout=create_timeout, domain_map=domain_map, rendezvous=rendezvous,
    )


def _server_url(server: Table) -> str:
    url = server.text("url", required=True)
    if url is None:
        return ""
    problem = rules.url_problem(url)
    if problem is None and urlsplit(url).path and not urlsplit(url).path.endswith("/"):
        # urljoin("http://h/images", "guest/k") is http://h/guest/k (RFC 3986)
        problem = (f"{show(url)} must end with '/': image URLs are relative to it, and "
                   "without the slash its last path component is dropped")
    _report(server, "url", problem)
    return "" if problem else url


def _nic(t: Table) -> NicConfig:
    bdf = t.string("bdf", "", required=True, rule=_bdf_problem).lower()
    interface = t.string("interface", "", required=True, rule=_ifname_problem)
    address = t.string("address", "dhcp")
    iface = None
    if address != "dhcp":
        iface, problem = rules.interface_problem(address)
        _report(t, "address", problem)
        address = str(iface) if iface else address
    gateway = t.text("gateway")
    if gateway is not None:
        ip, problem = rules.parse_host_ip(gateway)
        if ip is not None and address == "dhcp":
            problem = "a gateway needs a static address (udhcpc takes the DHCP server's)"
        elif ip is not None and iface is not None and \
                (ip not in iface.network or ip == iface.ip):
            problem = f"{ip} must be another host of {iface.network} (nic.address)"
        _report(t, "gateway", problem)
        gateway = str(ip) if ip is not None else gateway
    after_handoff = t.string("after_handoff", "none")
    if after_handoff not in ("none", "vif"):
        t.problem("after_handoff", f'{show(after_handoff)}: must be "none" or "vif"')
    vif_mac = t.text("vif_mac", rule=rules.mac_problem)
    vif_script = t.text("vif_script", rule=rules.script_problem)
    t.finish()
    return NicConfig(bdf=bdf, interface=interface, address=address, gateway=gateway,
                     after_handoff=after_handoff,
                     vif_mac=vif_mac.lower() if vif_mac is not None else None,
                     vif_script=vif_script)


def parse_domain(file: str, data: dict[str, Any], host: HostUnit,
                 problems: list[UnitProblem]) -> DomainUnit:
    t = Table(problems, file, data)
    stem = Path(file).stem
    name = t.string("name", stem)
    _report(t, "name", rules.name_problem(name))  # the file name too, when it is the name
    dtype = t.string("type", "pv")
    if dtype not in rules.DOMAIN_TYPES:
        t.problem("type", f"{show(dtype)}: must be one of {', '.join(rules.DOMAIN_TYPES)}")
    memory = t.integer("memory", 128, rules.MEMORY_MIB)
    vcpus = t.integer("vcpus", 1, rules.VCPUS)
    extra = t.string("extra", "", rule=rules.extra_problem)

    kernel = _image(t, "kernel", name, host, required=True)
    ramdisk = _image(t, "ramdisk", name, host, required=False)
    loaded = sum(image.size for image in (kernel, ramdisk) if image)
    if loaded >= memory * MIB:
        # The domain builder loads both into the guest's own memory (tools/libs/guest).
        t.problem("memory", f"{memory} MiB cannot hold the kernel and ramdisk "
                  f"({-(-loaded // MIB)} MiB); give the domain more memory")

    pci = tuple(bdf.lower() for bdf in t.strings("pci"))
    for i, bdf in enumerate(pci):
        _report(t, f"pci[{i}]", _bdf_problem(bdf))
    if len(set(pci)) != len(pci):
        t.problem("pci", "lists a device twice")
    if dtype == "pvh" and pci:
        t.problem("pci", "PCI passthrough needs type = \"pv\": libxl refuses it for PVH "
                  "guests (\"passthrough not yet supported for x86 PVH guests\")")

    vifs = tuple(_vif(vt) for vt in t.tables("vif"))
    after = t.strings("after")
    readiness = _readiness(t, host)
    if readiness.mode == "connected" and not vifs and not pci:
        t.problem("readiness", "\"connected\" waits for the domain's vifs and pci devices, "
                  "and this domain has none: use \"running\" or \"xenstore:<key>\"")
    stop_timeout = t.number("stop_timeout", DEFAULT_STOP_TIMEOUT, rules.WAIT_TIMEOUT)
    serve: tuple[str, ...] = ()
    connect: tuple[str, ...] = ()
    wait_for_servers = True
    ipc = t.table("ipc")
    if ipc:
        serve = ipc.strings("serve")
        connect = ipc.strings("connect")
        wait_for_servers = ipc.flag("wait_for_servers", True)
        ipc.finish()
    actions = {}
    for key, default in (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                         ("on_crash", "destroy")):
        value = t.string(key, default)
        if value not in rules.XL_ACTIONS:
            t.problem(key, f"{show(value)}: must be one of {', '.join(rules.XL_ACTIONS)}")
            value = default
        actions[key] = value
    t.finish()
    return DomainUnit(
        name=name, source=file, type=dtype, memory=memory, vcpus=vcpus,
        kernel=kernel or Image("", "", 0, f"{name}.kernel"), ramdisk=ramdisk, extra=extra,
        pci=pci, vifs=vifs, after=after, readiness=readiness, serve=serve, connect=connect,
        stop_timeout=stop_timeout, wait_for_servers=wait_for_servers, **actions,
    )


def _vif(t: Table) -> Vif:
    ip = t.text("ip")
    if ip is not None:
        addresses = []
        for part in ip.split():
            address, problem = rules.parse_host_ip(part)
            _report(t, "ip", problem)
            if address is not None:
                addresses.append(str(address))
        if not ip.strip():
            t.problem("ip", "is empty: name at least one address, or leave the key out")
        ip = " ".join(addresses)
    backend = t.text("backend")
    mac = t.text("mac", rule=rules.mac_problem)
    mac = mac.lower() if mac is not None else None
    bridge = t.text("bridge", rule=_ifname_problem)
    script = t.text("script", rule=rules.script_problem)
    at_create = t.flag("at_create", False)
    t.finish()
    return Vif(ip=ip, backend=backend, mac=mac, bridge=bridge, script=script,
               at_create=at_create)


def _readiness(t: Table, host: HostUnit) -> Readiness:
    raw = t.string("readiness", "running")
    timeout = t.number("ready_timeout", host.create_timeout, rules.WAIT_TIMEOUT)
    if raw in ("running", "connected"):
        return Readiness(raw, None, timeout)
    if raw.startswith("xenstore:"):
        key = raw[len("xenstore:"):]
        _report(t, "readiness", rules.readiness_key_problem(key))
        return Readiness("xenstore", key, timeout)
    t.problem("readiness",
              f"{show(raw)}: unknown mode; use one of {', '.join(rules.READINESS_MODES)}")
    return Readiness("running", None, timeout)


def _image(t: Table, key: str, domain: str, host: HostUnit, required: bool) -> Image | None:
    it = t.table(key, required=required)
    if it is None:
        return None
    url = it.string("url", "", required=True)
    absolute = _absolute(host.build_server, url)
    if it.has("url"):
        _report(it, "url", _image_url_problem(url, absolute, host.build_server))
    sha256 = it.string("sha256", "", required=True)
    if it.has("sha256") and not rules.SHA256_RE.fullmatch(sha256):
        it.problem("sha256", "must be 64 lowercase hex digits (sha256sum's output)")
        sha256 = ""
    size = it.integer("size", 0, rules.IMAGE_BYTES)
    if not it.has("size"):
        it.problem("size", "missing (required): the exact size in bytes")
    it.finish()
    # Named by content: domains that pin the same bytes (one guest kernel) share one file,
    # fetched once and held in dom0's RAM once.
    path = urlsplit(absolute).path if url and rules.url_problem(absolute) is None else ""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", path.rsplit("/", 1)[-1]).lstrip(".") or key
    name = f"{sha256[:12]}-{base}" if sha256 else f"{domain}.{key}"
    return Image(url=absolute, sha256=sha256, size=size, file_name=name)


def _absolute(base: str, url: str) -> str:
    try:
        return urljoin(base, url) if base and url else url
    except ValueError:  # e.g. "http://[::1": url_problem says why
        return url


def _image_url_problem(url: str, absolute: str, build_server: str) -> str | None:
    if not url:
        return "is empty: give the image's path relative to build_server.url"
    if not build_server and not _SCHEME_RE.match(url):
        return None  # relative to a build_server.url that is missing or wrong (said there)
    problem = rules.url_problem(absolute)
    if problem is None and build_server and not rules.same_origin(absolute, build_server):
        return (f"{show(absolute)} is not on the build server ({build_server}): give a "
                "path relative to build_server.url")
    if problem is None and absolute.endswith("/"):
        return f"{show(absolute)} names a directory, not an image file"
    return problem


def _bdf_problem(bdf: str) -> str | None:
    if not rules.BDF_RE.fullmatch(bdf):
        return f"{show(bdf)} is not a PCI address like 0000:03:00.0 (lspci -D shows them)"
    return None


def _ifname_problem(name: str) -> str | None:
    if not rules.IFNAME_RE.fullmatch(name):
        return f"{show(name)} is not an interface name (at most 15 of letters, digits, . _ -)"
    return None


def _report(t: Table, key: str, problem: str | None) -> None:
    if problem is not None:
        t.problem(key, problem)
