"""Hostile and odd unit files, edits of the example: xenstore paths, names, references, files.

Each case names the class it is counted in and every `file: key: problem` line the
loader must report (file relative to the units directory; `{units}` stands for it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from tests.unit.corpus_edits import (
    NET,
    SA,
    SHA,
    WL,
    ZZ,
    Case,
    H,
    both,
    c,
    dom,
    host,
    lone,
    raw,
    small_domains,
    special,
    three_chars,
    vif,
)
from tests.unit.unit_docs import Raw, Units


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


