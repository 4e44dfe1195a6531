"""Unit files: load `host.toml` and `domains/*.toml` into frozen intent, validate it all.

Validation runs before any side effect and reports every problem at once, each as
`file: key: problem` (ignition's rule: the machine specified or no machine at all).
The reference for every key is the README's unit file table; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from orchestrator.errors import InvalidUnits, UnitProblem

# A name becomes a xenstore path component (/ipc/domain-map/<name>), a file name
# (<image_dir>/<name>.kernel) and an xl domain name: keep to what is safe in all three
# (docs/misc/xenstore.txt allows [A-Za-z0-9-/_@] in paths).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
BDF_RE = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[01][0-9a-fA-F]\.[0-7]$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
# A key the guest writes under its own home, e.g. data/ready.
XS_RELATIVE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_@-]+)*$")
MODULE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# Strings rendered into xl.cfg inside double quotes: libxlu would need escapes for these.
XL_UNSAFE_RE = re.compile(r'["\\\x00-\x1f\x7f]')

DOMAIN_TYPES = ("pv", "pvh")
XL_ACTIONS = (
    "destroy",
    "restart",
    "rename-restart",
    "preserve",
    "coredump-destroy",
    "coredump-restart",
    "soft-reset",
)
READINESS_MODES = ("running", "connected", "xenstore:<key>")
MEMORY_MIB = (32, 1024 * 1024)
VCPUS = (1, 128)


@dataclass(frozen=True)
class Image:
    """A file fetched from the build server, pinned by size and sha256."""

    url: str
    sha256: str
    size: int
    file_name: str


@dataclass(frozen=True)
class Vif:
    ip: str | None = None
    backend: str | None = None
    mac: str | None = None
    bridge: str | None = None
    script: str | None = None
    # True: in the xl config, so the domain is created only once the backend is ready (the
    # guest has its network at first boot). False: the domain boots without it and the vif
    # is attached (`xl network-attach`) once the backend is ready.
    at_create: bool = False

    @property
    def attached_later(self) -> bool:
        return self.backend is not None and not self.at_create


@dataclass(frozen=True)
class Readiness:
    """What "ready" means for a domain (DESIGN.md, "Readiness")."""

    mode: str  # "running" | "connected" | "xenstore"
    key: str | None
    timeout: float

    def describe(self) -> str:
        return f"xenstore:{self.key}" if self.mode == "xenstore" else self.mode


@dataclass(frozen=True)
class DomainUnit:
    name: str
    source: str
    type: str
    memory: int
    vcpus: int
    kernel: Image
    ramdisk: Image | None
    extra: str
    pci: tuple[str, ...]
    vifs: tuple[Vif, ...]
    after: tuple[str, ...]
    readiness: Readiness
    serve: tuple[str, ...]
    connect: tuple[str, ...]
    on_poweroff: str
    on_reboot: str
    on_crash: str
    stop_timeout: float = 30.0  # `orchestrate shutdown`: destroyed if still there after

    @property
    def images(self) -> tuple[Image, ...]:
        return (self.kernel,) if self.ramdisk is None else (self.kernel, self.ramdisk)


@dataclass(frozen=True)
class NicConfig:
    """dom0's physical NIC: used for the fetch, then handed to pciback."""

    bdf: str
    interface: str
    address: str  # "a.b.c.d/len" or "dhcp"
    gateway: str | None
    # dom0's network after the handoff: "none" (dom0 has none, seed 002's end state) or
    # "vif" (a vif served by the domain that takes the NIC; the address and default route
    # move there, seed 000)
    after_handoff: str = "none"
    vif_mac: str | None = None  # the vif's MAC (default: derived from the NIC's BDF)
    vif_script: str | None = None  # the hotplug script the driver domain runs for it


@dataclass(frozen=True)
class HostUnit:
    source: str
    build_server: str
    request_timeout: float
    fetch_attempts: int
    fetch_deadline: float
    nic: NicConfig | None
    modules: tuple[str, ...]
    tools_path: tuple[str, ...]
    xenstored_args: tuple[str, ...]
    xenconsoled_args: tuple[str, ...]
    autoballoon_off: bool
    image_dir: str
    state_dir: str
    boot_deadline: float
    xenstored_timeout: float
    command_timeout: float
    create_timeout: float
    domain_map: str
    rendezvous: str


@dataclass(frozen=True)
class Config:
    """Everything the unit files say: the frozen intent of one boot."""

    units_dir: str
    host: HostUnit
    domains: tuple[DomainUnit, ...] = field(default_factory=tuple)

    def domain(self, name: str) -> DomainUnit:
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise KeyError(name)

    def images(self) -> list[tuple[Image, DomainUnit]]:
        """Every distinct image (by file name, i.e. content) and the first unit pinning it."""
        seen: dict[str, tuple[Image, DomainUnit]] = {}
        for domain in self.domains:
            for image in domain.images:
                seen.setdefault(image.file_name, (image, domain))
        return list(seen.values())

    def owner_of(self, bdf: str) -> str | None:
        """The domain a PCI device is passed through to, if any."""
        for domain in self.domains:
            if bdf in domain.pci:
                return domain.name
        return None


# --------------------------------------------------------------------------------------
# A tiny typed reader over one TOML table that records problems instead of raising.


class _Table:
    def __init__(self, problems: list[UnitProblem], file: str, data: dict[str, Any], prefix: str):
        self.problems = problems
        self.file = file
        self.data = data
        self.prefix = prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def problem(self, key: str, text: str) -> None:
        self.problems.append(UnitProblem(self.file, self.key(key), text))

    def _get(
        self, name: str, kinds: tuple[type, ...], what: str, default: Any, required: bool
    ) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                self.problem(name, "missing (required)")
            return default
        value = self.data[name]
        # TOML booleans are ints to Python: never accept true where a number is meant.
        if isinstance(value, bool) and bool not in kinds:
            self.problem(name, f"must be {what}, not a boolean")
            return default
        if not isinstance(value, kinds):
            self.problem(name, f"must be {what}, not {_toml_type(value)}")
            return default
        return value

    def text(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        value: str | None = self._get(name, (str,), "a string", default, required)
        return value

    def integer(self, name: str, default: int, bounds: tuple[int, int] | None = None) -> int:
        value: int = self._get(name, (int,), "an integer", default, False)
        if bounds and not bounds[0] <= value <= bounds[1]:
            self.problem(name, f"{value} is out of range {bounds[0]}..{bounds[1]}")
            return default
        return value

    def number(self, name: str, default: float, low: float = 0.001) -> float:
        value = self._get(name, (int, float), "a number", default, False)
        if value < low:
            self.problem(name, f"must be at least {low}")
            return default
        return float(value)

    def flag(self, name: str, default: bool) -> bool:
        value: bool = self._get(name, (bool,), "true or false", default, False)
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self._get(name, (list,), "a list of strings", [], False)
        items = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                items.append(item)
            else:
                self.problem(f"{name}[{i}]", f"must be a string, not {_toml_type(item)}")
        return tuple(items)

    def table(self, name: str, required: bool = False) -> _Table | None:
        value = self._get(name, (dict,), "a table", None, required)
        if value is None:
            return None
        return _Table(self.problems, self.file, value, f"{self.key(name)}.")

    def tables(self, name: str) -> list[_Table]:
        value = self._get(name, (list,), "an array of tables ([[...]])", [], False)
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                out.append(_Table(self.problems, self.file, item, f"{self.key(name)}[{i}]."))
            else:
                self.problem(f"{name}[{i}]", f"must be a table, not {_toml_type(item)}")
        return out

    def finish(self) -> None:
        for name in sorted(set(self.data) - self.seen):
            self.problem(name, "unknown key (see the unit file reference in README.md)")


def _toml_type(value: object) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a float",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------


def load_units(units_dir: str | Path) -> Config:
    """Load and validate every unit file under units_dir; raise InvalidUnits listing all."""
    base = Path(units_dir)
    problems: list[UnitProblem] = []
    host_file = base / "host.toml"
    host_data = _read_toml(host_file, problems, required=True)
    host = _parse_host(str(host_file), host_data, problems)
    domains = []
    domain_dir = base / "domains"
    files = sorted(domain_dir.glob("*.toml")) if domain_dir.is_dir() else []
    if not files:
        problems.append(
            UnitProblem(str(domain_dir), "(files)", "no domain units (*.toml) found")
        )
    for path in files:
        data = _read_toml(path, problems, required=True)
        if data is not None:
            domains.append(_parse_domain(str(path), data, host, problems))
    config = Config(units_dir=str(base), host=host, domains=tuple(domains))
    problems.extend(_cross_checks(config))
    if problems:
        raise InvalidUnits(problems)
    return config


def _read_toml(path: Path, problems: list[UnitProblem], required: bool) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        if required:
            problems.append(UnitProblem(str(path), "(file)", "not found"))
    except tomllib.TOMLDecodeError as exc:
        problems.append(UnitProblem(str(path), "(syntax)", f"not valid TOML: {exc}"))
    except OSError as exc:
        problems.append(UnitProblem(str(path), "(file)", f"cannot read: {exc.strerror}"))
    return None


_DEFAULT_MODULES = (
    "xen-evtchn",
    "xen-gntdev",
    "xen-gntalloc",
    "xen-privcmd",
    "xenfs",
    "xen-pciback",
)


def _parse_host(file: str, data: dict[str, Any] | None, problems: list[UnitProblem]) -> HostUnit:
    t = _Table(problems, file, data or {}, "")
    server = t.table("build_server", required=data is not None)
    url = ""
    request_timeout, attempts, deadline = 20.0, 4, 300.0
    if server:
        url = server.text("url", "", required=True) or ""
        if url and not _url_ok(url):
            server.problem("url", f"{url!r}: scheme must be http or https with a host")
        request_timeout = server.number("request_timeout", request_timeout)
        attempts = server.integer("attempts", attempts, (1, 20))
        deadline = server.number("deadline", deadline)
        server.finish()

    nic = None
    nic_t = t.table("nic")
    if nic_t:
        bdf = _bdf(nic_t, "bdf", nic_t.text("bdf", "", required=True) or "")
        interface = nic_t.text("interface", "", required=True) or ""
        if interface and not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", interface):
            nic_t.problem("interface", f"{interface!r} is not a network interface name")
        address = nic_t.text("address", "dhcp") or "dhcp"
        if address != "dhcp":
            try:
                ipaddress.ip_interface(address)
                if "/" not in address:
                    raise ValueError
            except ValueError:
                nic_t.problem("address", f"{address!r}: use a.b.c.d/prefix or \"dhcp\"")
        gateway = nic_t.text("gateway")
        if gateway is not None:
            _ip(nic_t, "gateway", gateway)
        after_handoff = nic_t.text("after_handoff", "none") or "none"
        if after_handoff not in ("none", "vif"):
            nic_t.problem("after_handoff", f"{after_handoff!r}: must be \"none\" or \"vif\"")
        vif_mac = nic_t.text("vif_mac")
        if vif_mac is not None and not MAC_RE.match(vif_mac):
            nic_t.problem("vif_mac", f"{vif_mac!r} is not a MAC address like 00:16:3e:00:00:01")
        vif_script = nic_t.text("vif_script")
        if vif_script is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", vif_script):
            nic_t.problem("vif_script", f"{vif_script!r}: a script name in /etc/xen/scripts")
        nic_t.finish()
        nic = NicConfig(bdf=bdf, interface=interface, address=address, gateway=gateway,
                        after_handoff=after_handoff, vif_mac=vif_mac, vif_script=vif_script)

    xen = t.table("xen") or _Table(problems, file, {}, "xen.")
    modules = xen.strings("modules") if "modules" in xen.data else _DEFAULT_MODULES
    for i, module in enumerate(modules):
        if not MODULE_RE.match(module):
            xen.problem(f"modules[{i}]", f"{module!r} is not a module name")
    tools_path = xen.strings("tools_path")
    for i, entry in enumerate(tools_path):
        if not entry.startswith("/"):
            xen.problem(f"tools_path[{i}]", f"{entry!r} must be an absolute directory")
    xenstored_args = xen.strings("xenstored_args")
    xenconsoled_args = xen.strings("xenconsoled_args")
    autoballoon_off = not xen.flag("autoballoon", False)
    xen.finish()

    paths = t.table("paths") or _Table(problems, file, {}, "paths.")
    image_dir = paths.text("images", "/run/xen-images") or "/run/xen-images"
    state_dir = paths.text("state", "/run/orchestrator") or "/run/orchestrator"
    for key, value in (("images", image_dir), ("state", state_dir)):
        if not value.startswith("/"):
            paths.problem(key, f"{value!r} must be an absolute path")
    paths.finish()

    boot = t.table("deadlines") or _Table(problems, file, {}, "deadlines.")
    boot_deadline = boot.number("boot", 600.0)
    xenstored_timeout = boot.number("xenstored", 15.0)
    command_timeout = boot.number("command", 30.0)
    create_timeout = boot.number("create", 60.0)
    boot.finish()

    ipc = t.table("ipc") or _Table(problems, file, {}, "ipc.")
    domain_map = ipc.text("domain_map", "/ipc/domain-map") or "/ipc/domain-map"
    if not re.fullmatch(r"(/[A-Za-z0-9_@-]+)+", domain_map):
        ipc.problem("domain_map", f"{domain_map!r} is not an absolute xenstore path")
    rendezvous = (
        ipc.text("rendezvous", "/local/domain/{server}/ipc/direct/{client}")
        or "/local/domain/{server}/ipc/direct/{client}"
    )
    _check_rendezvous(ipc, rendezvous)
    ipc.finish()
    t.finish()
    return HostUnit(
        source=file,
        build_server=url,
        request_timeout=request_timeout,
        fetch_attempts=attempts,
        fetch_deadline=deadline,
        nic=nic,
        modules=tuple(modules),
        tools_path=tuple(tools_path),
        xenstored_args=tuple(xenstored_args),
        xenconsoled_args=tuple(xenconsoled_args),
        autoballoon_off=autoballoon_off,
        image_dir=image_dir,
        state_dir=state_dir,
        boot_deadline=boot_deadline,
        xenstored_timeout=xenstored_timeout,
        command_timeout=command_timeout,
        create_timeout=create_timeout,
        domain_map=domain_map,
        rendezvous=rendezvous,
    )


def _check_rendezvous(ipc: _Table, template: str) -> None:
    # The node must live in the server's own home so that it goes away with the
    # server domain, and must name both ends (XEN-FACTS.md, "Provisioning rules").
    if not template.startswith("/local/domain/{server}/"):
        ipc.problem("rendezvous", "must start with /local/domain/{server}/")
        return
    if "{client}" not in template:
        ipc.problem("rendezvous", "must contain {client}")
        return
    sample = template.replace("{server}", "1").replace("{client}", "2")
    if not re.fullmatch(r"(/[A-Za-z0-9_@-]+)+", sample):
        ipc.problem("rendezvous", f"{template!r} is not a valid xenstore path template")


def _parse_domain(
    file: str, data: dict[str, Any], host: HostUnit, problems: list[UnitProblem]
) -> DomainUnit:
    t = _Table(problems, file, data, "")
    stem = Path(file).stem
    name = t.text("name", stem) or stem
    if not NAME_RE.match(name):
        t.problem(
            "name",
            f"{name!r} is unsafe as a xenstore path component or file name "
            "(use letters, digits, '-' and '_', at most 48)",
        )
    dtype = t.text("type", "pv") or "pv"
    if dtype not in DOMAIN_TYPES:
        t.problem("type", f"{dtype!r}: must be one of {', '.join(DOMAIN_TYPES)}")
    memory = t.integer("memory", 128, MEMORY_MIB)
    vcpus = t.integer("vcpus", 1, VCPUS)
    extra = t.text("extra", "") or ""
    if XL_UNSAFE_RE.search(extra):
        t.problem("extra", "must not contain quotes, backslashes or control characters")

    kernel = _image(t, "kernel", name, host, required=True)
    ramdisk = _image(t, "ramdisk", name, host, required=False)

    pci = tuple(_bdf(t, f"pci[{i}]", bdf) for i, bdf in enumerate(t.strings("pci")))
    if len(set(pci)) != len(pci):
        t.problem("pci", "lists a device twice")
    if dtype == "pvh" and pci:
        t.problem(
            "pci",
            "PCI passthrough needs type = \"pv\": libxl refuses it for PVH guests "
            "(\"passthrough not yet supported for x86 PVH guests\")",
        )

    vifs = []
    for vt in t.tables("vif"):
        ip = vt.text("ip")
        if ip is not None:
            for part in ip.split():
                _ip(vt, "ip", part)
        backend = vt.text("backend")
        mac = vt.text("mac")
        if mac is not None and not MAC_RE.match(mac):
            vt.problem("mac", f"{mac!r} is not a MAC address like 00:16:3e:00:00:01")
        bridge = vt.text("bridge")
        script = vt.text("script")
        at_create = vt.flag("at_create", False)
        for key, value in (("bridge", bridge), ("script", script)):
            if value is not None and not re.fullmatch(r"[A-Za-z0-9_./-]+", value):
                vt.problem(key, f"{value!r} contains characters xl.cfg cannot carry here")
        vt.finish()
        vifs.append(Vif(ip=ip, backend=backend, mac=mac, bridge=bridge, script=script,
                        at_create=at_create))

    after = t.strings("after")
    readiness = _readiness(t, host)
    if readiness.mode == "connected" and not vifs and not pci:
        t.problem("readiness", "\"connected\" waits for the domain's vifs and pci devices, "
                  "and this domain has none: use \"running\" or \"xenstore:<key>\"")
    serve: tuple[str, ...] = ()
    connect: tuple[str, ...] = ()
    ipc = t.table("ipc")
    if ipc:
        serve = ipc.strings("serve")
        connect = ipc.strings("connect")
        ipc.finish()
    stop_timeout = t.number("stop_timeout", 30.0)
    actions = {}
    for key, default in (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                         ("on_crash", "destroy")):
        value = t.text(key, default) or default
        if value not in XL_ACTIONS:
            t.problem(key, f"{value!r}: must be one of {', '.join(XL_ACTIONS)}")
        actions[key] = value
    t.finish()
    return DomainUnit(
        name=name,
        source=file,
        type=dtype,
        memory=memory,
        vcpus=vcpus,
        kernel=kernel or Image("", "", 0, f"{name}.kernel"),
        ramdisk=ramdisk,
        extra=extra,
        pci=pci,
        vifs=tuple(vifs),
        after=after,
        readiness=readiness,
        serve=serve,
        connect=connect,
        stop_timeout=stop_timeout,
        **actions,
    )


def _readiness(t: _Table, host: HostUnit) -> Readiness:
    raw = t.text("readiness", "running") or "running"
    timeout = t.number("ready_timeout", host.create_timeout)
    if raw in ("running", "connected"):
        return Readiness(raw, None, timeout)
    if raw.startswith("xenstore:"):
        key = raw[len("xenstore:"):]
        if not XS_RELATIVE_KEY_RE.match(key):
            t.problem(
                "readiness",
                f"{key!r}: the key must be relative to the domain's home, e.g. data/ready",
            )
        return Readiness("xenstore", key, timeout)
    t.problem("readiness", f"{raw!r}: unknown mode; use one of {', '.join(READINESS_MODES)}")
    return Readiness("running", None, timeout)


def _image(t: _Table, key: str, domain: str, host: HostUnit, required: bool) -> Image | None:
    it = t.table(key, required=required)
    if it is None:
        return None
    url = it.text("url", "", required=True) or ""
    absolute = urljoin(host.build_server, url) if host.build_server else url
    if url and not _url_ok(absolute):
        it.problem("url", f"{absolute!r}: scheme must be http or https with a host")
    sha256 = it.text("sha256", "", required=True) or ""
    if sha256 and not SHA256_RE.match(sha256):
        it.problem("sha256", "must be 64 lowercase hex digits (sha256sum's output)")
    size = it.integer("size", 0, (1, 1 << 40))
    if "size" not in it.data:
        it.problem("size", "missing (required): the exact size in bytes")
    it.finish()
    # Named by content: domains that pin the same bytes (one guest kernel) share one file,
    # fetched once and held in dom0's RAM once.
    base = re.sub(r"[^A-Za-z0-9._-]", "_", urlsplit(absolute).path.rsplit("/", 1)[-1]) or key
    name = f"{sha256[:12]}-{base}" if sha256 else f"{domain}.{key}"
    return Image(url=absolute, sha256=sha256, size=size, file_name=name)


def _url_ok(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _bdf(t: _Table, key: str, bdf: str) -> str:
    if not BDF_RE.match(bdf):
        t.problems.append(
            UnitProblem(
                t.file,
                t.key(key),
                f"{bdf!r} is not a PCI address like 0000:03:00.0 (lspci -D shows them)",
            )
        )
    return bdf.lower()


def _ip(t: _Table, key: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        t.problem(key, f"{value!r} is not an IP address")


def _cross_checks(config: Config) -> list[UnitProblem]:
    """Checks across files: names, references, devices, addresses, cycles."""
    from orchestrator.topology import find_cycle

    problems: list[UnitProblem] = []
    by_name: dict[str, DomainUnit] = {}
    for domain in config.domains:
        if domain.name in by_name:
            problems.append(
                UnitProblem(domain.source, "name",
                            f"{domain.name!r} is also the name in {by_name[domain.name].source}")
            )
        else:
            by_name[domain.name] = domain

    bdf_owner: dict[str, str] = {}
    ip_owner: dict[str, str] = {}
    if config.host.nic and config.host.nic.address != "dhcp":
        ip_owner[config.host.nic.address.split("/")[0]] = config.host.source
    for domain in config.domains:
        for i, bdf in enumerate(domain.pci):
            if bdf in bdf_owner and bdf_owner[bdf] != domain.source:
                problems.append(UnitProblem(domain.source, f"pci[{i}]",
                                            f"{bdf} is also passed through in {bdf_owner[bdf]}"))
            bdf_owner.setdefault(bdf, domain.source)
        for i, vif in enumerate(domain.vifs):
            if vif.backend is not None and vif.backend not in by_name:
                problems.append(UnitProblem(domain.source, f"vif[{i}].backend",
                                            f"names unknown domain {vif.backend!r}"))
            elif vif.backend == domain.name:
                problems.append(UnitProblem(domain.source, f"vif[{i}].backend",
                                            "a domain cannot be its own vif backend"))
            for ip in (vif.ip or "").split():
                if ip in ip_owner:
                    problems.append(UnitProblem(domain.source, f"vif[{i}].ip",
                                                f"{ip} is also used in {ip_owner[ip]}"))
                ip_owner.setdefault(ip, domain.source)
        for i, other in enumerate(domain.after):
            if other not in by_name:
                problems.append(UnitProblem(domain.source, f"after[{i}]",
                                            f"names unknown domain {other!r}"))
            elif other == domain.name:
                problems.append(UnitProblem(domain.source, f"after[{i}]",
                                            "a domain cannot start after itself"))
        for role, peers in (("serve", domain.serve), ("connect", domain.connect)):
            for i, peer in enumerate(peers):
                if peer == domain.name:
                    problems.append(UnitProblem(domain.source, f"ipc.{role}[{i}]",
                                                "a domain cannot be its own ipc peer"))
                elif peer not in by_name:
                    problems.append(UnitProblem(domain.source, f"ipc.{role}[{i}]",
                                                f"names unknown domain {peer!r}"))
    nic = config.host.nic
    if nic is not None and nic.after_handoff == "vif" and config.owner_of(nic.bdf) is None:
        problems.append(UnitProblem(config.host.source, "nic.after_handoff",
                                    f"\"vif\" needs a domain that takes {nic.bdf} (its pci) "
                                    "to serve dom0's vif"))
    if not problems:
        cycle = find_cycle(config.domains)
        if cycle:
            first = by_name[cycle[0]]
            problems.append(UnitProblem(first.source, "(dependencies)",
                                        "dependency cycle: " + " -> ".join(cycle)))
    return problems
