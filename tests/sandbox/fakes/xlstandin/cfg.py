"""xl.cfg(5) as xl 4.17 reads it (tools/xl/xl_parse.c, tools/libs/util/libxlu_cfg*.c), for
the keys orchestrate renders, and the vif spec of xl-network-configuration(5)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from xlstandin.common import ACTIONS, ERROR_INVAL, Exit, say

_TOKENS = re.compile(r"""
    (?P<ws>[ \t\r]+) | (?P<comment>\#[^\n]*) | (?P<nl>\n)
  | (?P<string>"[^"\n]*"|'[^'\n]*')
  | (?P<number>0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[=\[\],;])
""", re.X)
CfgValue = str | list[str]


def parse_cfg_text(text: str, source: str) -> dict[str, CfgValue]:
    """libxlu's grammar for what we render: ``key = atom`` or ``key = [ atom, ... ]``, where
    an atom is a quoted string or a number; ``#`` comments; ``;`` or newline ends a setting."""
    tokens: list[tuple[str, str, int]] = []
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKENS.match(text, pos)
        if m is None:
            raise CfgError(source, line, text[pos])
        kind = m.lastgroup or ""
        if kind == "nl":
            tokens.append(("nl", "\n", line))
            line += 1
        elif kind not in ("ws", "comment"):
            tokens.append((kind, m.group(0), line))
        pos = m.end()
    tokens.append(("eof", "", line))
    out: dict[str, CfgValue] = {}
    i = 0

    def expect(kind: str, value: str | None = None) -> tuple[str, str, int]:
        nonlocal i
        tok = tokens[i]
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise CfgError(source, tok[2], tok[1])
        i += 1
        return tok

    def atom() -> str:
        nonlocal i
        tok = tokens[i]
        if tok[0] == "string":
            i += 1
            return tok[1][1:-1]
        if tok[0] == "number":
            i += 1
            return tok[1]
        raise CfgError(source, tok[2], tok[1])

    while tokens[i][0] != "eof":
        if tokens[i][0] == "nl" or tokens[i][1] == ";":
            i += 1
            continue
        key = expect("ident")[1]
        expect("punct", "=")
        value: CfgValue
        if tokens[i][1] == "[":
            i += 1
            items: list[str] = []
            while True:
                while tokens[i][0] == "nl":
                    i += 1
                if tokens[i][1] == "]":
                    i += 1
                    break
                items.append(atom())
                while tokens[i][0] == "nl":
                    i += 1
                if tokens[i][1] == ",":
                    i += 1
                elif tokens[i][1] != "]":
                    raise CfgError(source, tokens[i][2], tokens[i][1])
            value = items
        else:
            value = atom()
        if tokens[i][0] not in ("nl", "eof") and tokens[i][1] != ";":
            raise CfgError(source, tokens[i][2], tokens[i][1])
        out[key] = value
    return out


class CfgError(Exception):
    def __init__(self, source: str, line: int, near: str) -> None:
        super().__init__(f"{source}:{line}")
        self.source, self.line, self.near = source, line, near

    def report(self) -> None:
        """xlu__cfg_yyerror() (libxlu_cfg.c:677), then xl_parse.c:1252."""
        near = self.near.rstrip(" \t")
        shown = f"`{near}'" if near and near != "\n" else "<newline>"
        say(f"{self.source}:{self.line}: config parsing error near {shown}: syntax error")
        say("Failed to parse config: Invalid argument")


@dataclass
class Vif:
    """One libxl_device_nic, as xl parsed it. ``backend`` is the name (or domid) given with
    ``backend=``: libxl resolves it each time the vif is added (libxl_nic.c:92), so a
    restarted domain finds its driver domain's current domid."""

    devid: int = -1  # -1: libxl picks one (libxl__device_nextid / __nic_set_devids)
    mac: str = ""  # "": libxl makes one (libxl_nic.c:73)
    bridge: str = "xenbr0"
    script: str = "/etc/xen/scripts/vif-bridge"
    ip: str | None = None
    backend: str | None = None
    vifname: str | None = None
    gatewaydev: str | None = None
    mtu: int = 1500
    trusted: bool = True


@dataclass
class DomainConfig:
    name: str
    type: str = "pv"
    kernel: str | None = None
    ramdisk: str | None = None
    extra: str | None = None
    memory: int = 32  # libxl's default max_memkb is 32 MiB
    vcpus: int = 1
    pci: list[str] = field(default_factory=list)
    vifs: list[Vif] = field(default_factory=list)
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    source: str = ""
    uuid: str | None = None  # xl_parse.c:1326 makes one; a restart keeps it

    @staticmethod
    def from_dict(data: dict[str, Any]) -> DomainConfig:
        vifs = [Vif(**v) for v in data.get("vifs", [])]
        return DomainConfig(**{**data, "vifs": vifs})


def random_mac() -> str:
    """libxl__device_nic_setdefault(): Xen's OUI 00:16:3e, then random (libxl_nic.c:73)."""
    import random  # imported where needed: every xl call pays for start-up

    tail = [random.randrange(0x80), random.randrange(256), random.randrange(256)]
    return "00:16:3e:" + ":".join(f"{b:02x}" for b in tail)


_BDF = re.compile(r"(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])")
_STRTOUL16 = re.compile(r"\s*[+-]?(?:0[xX])?([0-9a-fA-F]+)")
_IGNORED_NIC_KEYS = ("model", "rate", "forwarddev", "accel")  # accepted, not modelled


def parse_bdf(spec: str) -> str | None:
    """xlu_pci_parse_spec_string() for ``[DDDD:]BB:DD.F[@VSLOT][,opts]`` -> DDDD:BB:DD.F."""
    bdf = spec.split(",", 1)[0].split("@", 1)[0].strip()
    m = _BDF.fullmatch(bdf)
    if m is None:
        return None
    domain = int(m.group(1) or "0", 16)
    return f"{domain:04x}:{int(m.group(2), 16):02x}:{int(m.group(3), 16):02x}.{m.group(4)}"


def parse_mac(text: str) -> str | None:
    """xl_parse.c:437-446: six strtoul(.., 16) each followed by ONE separator of any kind;
    whatever follows the sixth byte is ignored (so "mac=00:16:3e:00:00:01,ip=..." as one
    token is that MAC, and the rest is lost). None where xl says "Invalid parameter"."""
    out, rest = [], text
    for i in range(6):
        m = _STRTOUL16.match(rest)
        if m is None or int(m.group(1), 16) > 255:
            return None
        out.append(int(m.group(1), 16))
        if i < 5 and len(rest) <= m.end():
            return None  # xl would read past the end of the string
        rest = rest[m.end() + 1:]
    return ":".join(f"{b:02x}" for b in out)


def parse_nic_token(vif: Vif, token: str) -> bool:
    """parse_nic_config() (xl_parse.c:419-568) for ONE ``key=value`` token; False (after
    xl's message) when xl returns 1. Each key matches as a prefix ``key=`` and takes the
    whole rest of the token: ``xl network-attach`` passes each argument as one token, so
    ``ip=10.0.5.103,backend=net-vm`` is an ip of "10.0.5.103,backend=net-vm"."""
    key, sep, value = token.partition("=")
    if not sep:
        if token in ("trusted", "untrusted"):
            vif.trusted = token == "trusted"
            return True
        say(f"unrecognized argument `{token}'")
        return False
    if key == "mac":
        mac = parse_mac(value)
        if mac is None:
            say("Invalid parameter `mac'.")
            return False
        vif.mac = mac
    elif key == "type":
        if value not in ("vif", "ioemu"):
            say("Invalid parameter `type'.")
            return False
    elif key == "netdev":
        say("the netdev parameter is deprecated, please use gatewaydev instead")
        vif.gatewaydev = value
    elif key in ("ip", "bridge", "script", "backend", "vifname", "gatewaydev"):
        setattr(vif, key, value)
    elif key in ("devid", "mtu"):
        digits = re.match(r"\d*", value)
        setattr(vif, key, int(digits.group(0) or "0") if digits else 0)  # parse_ulong()
    elif key == "accel":
        say("the accel parameter for vifs is currently not supported")
    elif key in _IGNORED_NIC_KEYS or key.startswith("colo_"):
        pass
    else:
        say(f"unrecognized argument `{token}'")
        return False
    return True


def parse_vif(spec: str) -> Vif:
    """One ``vif = [ ... ]`` item: split at commas (xl_parse.c:2293-2299); xl ignores
    parse_nic_config()'s return value there."""
    vif = Vif()
    for token in spec.split(","):
        parse_nic_token(vif, token.lstrip(" "))
    return vif


def set_devids(vifs: list[Vif]) -> None:
    """libxl__device_nic_set_devids() (libxl_nic.c:483): unset devids follow the largest."""
    last = max((v.devid for v in vifs), default=-1)
    for vif in vifs:
        if vif.devid < 0:
            last += 1
            vif.devid = last


def parse_domain_config(text: str, source: str) -> DomainConfig:
    """parse_config_data() (xl_parse.c) for the keys we render; exits like xl on errors."""
    try:
        raw = parse_cfg_text(text, source)
    except CfgError as err:
        err.report()
        raise Exit(1) from None

    def one(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) else None

    def many(key: str) -> list[str]:
        value = raw.get(key)
        return value if isinstance(value, list) else ([value] if value else [])

    dom_type = one("type") or one("builder") or "pv"
    if dom_type == "generic":
        dom_type = "pv"
    if dom_type not in ("pv", "pvh", "hvm"):
        say(f"Invalid domain type {dom_type}.")
        raise Exit(1)
    name = one("name")
    if not name:
        say("Domain name must be specified.")
        raise Exit(1)
    cfg = DomainConfig(name=name, type=dom_type, kernel=one("kernel"),
                       ramdisk=one("ramdisk"), extra=one("extra") or one("cmdline"),
                       source=source, uuid=one("uuid"))
    for key in ("memory", "vcpus"):
        value = one(key)
        if value is not None:
            try:
                setattr(cfg, key, int(value, 0))
            except ValueError:
                say(f"{source}: warning: parameter `{key}' is not a valid number")
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        action = one(key) or getattr(cfg, key)
        if action not in ACTIONS:
            say(f"Unknown {key} action \"{action}\" specified")
            raise Exit(1)
        setattr(cfg, key, action)
    for spec in many("pci"):
        bdf = parse_bdf(spec)
        if bdf is None:
            say(f"unable to parse PCI_SPEC_STRING `{spec}' for passthrough")
            raise Exit(-ERROR_INVAL)
        cfg.pci.append(bdf)
    cfg.vifs = [parse_vif(spec) for spec in many("vif")]
    set_devids(cfg.vifs)
    return cfg
