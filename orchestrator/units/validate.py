"""Checks across unit files, and the notes a valid set of units still deserves. Pure.

Each finding names the file and key it comes from; `load_units` raises them all at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.errors import UnitProblem
from orchestrator.topology import find_cycle, ipc_pairs
from orchestrator.units import rules
from orchestrator.units.model import Config, DomainUnit, UnitNote
from orchestrator.units.reader import show

# XENSTORE_PAYLOAD_MAX (xen/include/public/io/xs_wire.h): xenstored answers DIRECTORY
# with E2BIG past it (send_reply), and provisioning lists the domain map with DIRECTORY
# (pyxs 0.4.1 has no DIRECTORY_PART).
XS_PAYLOAD_MAX = 4096


def cross_file_problems(config: Config, domain_dir: str,
                        all_read: bool = True) -> list[UnitProblem]:
    """Names, references, devices, addresses, shared images, totals, then cycles.

    When a domain unit could not be read (reported by itself), a reference to a domain
    not found may name that unit: such references and cycles are not judged.
    """
    problems: list[UnitProblem] = []
    by_name: dict[str, DomainUnit] = {}
    for domain in config.domains:
        if domain.name in by_name:
            problems.append(UnitProblem(domain.source, "name", f"{show(domain.name)} is also "
                                        f"the name in {by_name[domain.name].source}"))
        else:
            by_name[domain.name] = domain
    references = list(_reference_problems(config.domains, by_name, all_read))
    problems += references
    problems += _device_problems(config)
    problems += _image_problems(config.domains)
    problems += _total_problems(config, domain_dir)
    nic = config.host.nic
    if nic is not None and nic.after_handoff == "vif" and nic.bdf not in config.passthrough():
        problems.append(UnitProblem(config.host.source, "nic.after_handoff",
                                    f'"vif" needs a domain that takes {nic.bdf} (its pci) to '
                                    "serve dom0's vif"))
    if not references and all_read:
        cycle = find_cycle(config.domains)
        if cycle:
            problems.append(UnitProblem(by_name[cycle[0]].source, "(dependencies)",
                                        f"dependency cycle: {_cycle_text(cycle)}"))
    return problems


def _cycle_text(cycle: list[str]) -> str:
    """[a, b, ..., a] on one line; a long one shortened (a cycle can be 1000 domains)."""
    if len(cycle) <= 10:
        return " -> ".join(cycle)
    hidden = len(cycle) - 7
    return (" -> ".join(cycle[:4]) + f" -> ({hidden} more) -> " + " -> ".join(cycle[-3:])
            + f" ({len(cycle) - 1} domains)")


def _reference_problems(domains: Iterable[DomainUnit], by_name: dict[str, DomainUnit],
                        all_read: bool) -> Iterable[UnitProblem]:
    for domain in domains:
        refs = [(f"vif[{i}].backend", vif.backend, "be its own vif backend")
                for i, vif in enumerate(domain.vifs) if vif.backend is not None]
        refs += [(f"after[{i}]", other, "start after itself")
                 for i, other in enumerate(domain.after)]
        refs += [(f"ipc.{role}[{i}]", peer, "be its own ipc peer")
                 for role, peers in (("serve", domain.serve), ("connect", domain.connect))
                 for i, peer in enumerate(peers)]
        for key, other, itself in refs:
            if other == domain.name:
                yield UnitProblem(domain.source, key, f"a domain cannot {itself}")
            elif other not in by_name and all_read:
                yield UnitProblem(domain.source, key, f"names unknown domain {show(other)}")


def _device_problems(config: Config) -> Iterable[UnitProblem]:
    """A PCI device, an IP address, a MAC address: each belongs to one owner."""
    bdf_owner: dict[str, str] = {}
    ip_owner: dict[str, str] = {}
    mac_owner: dict[str, str] = {}
    nic = config.host.nic
    if nic and nic.address != "dhcp":
        ip_owner[nic.address.split("/")[0]] = f"{config.host.source} (nic.address)"
    if nic and nic.gateway:
        ip_owner.setdefault(nic.gateway, f"{config.host.source} (nic.gateway)")
    if nic and nic.after_handoff == "vif" and nic.vif_mac:
        mac_owner[nic.vif_mac] = f"{config.host.source} (nic.vif_mac)"
    for domain in config.domains:
        for i, bdf in enumerate(domain.pci):
            if bdf_owner.setdefault(bdf, domain.source) != domain.source:
                yield UnitProblem(domain.source, f"pci[{i}]",
                                  f"{bdf} is also passed through in {bdf_owner[bdf]}")
        for i, vif in enumerate(domain.vifs):
            where = f"{domain.source} (vif[{i}])"
            # Addresses are canonical in the model (parse_host_ip), so equal is equal.
            for ip in (vif.ip or "").split():
                if ip_owner.setdefault(ip, where) != where:
                    yield UnitProblem(domain.source, f"vif[{i}].ip",
                                      f"{ip} is also used in {ip_owner[ip]}")
            if vif.mac and mac_owner.setdefault(vif.mac, where) != where:
                yield UnitProblem(domain.source, f"vif[{i}].mac",
                                  f"{vif.mac} is also used in {mac_owner[vif.mac]}")


def _image_problems(domains: Iterable[DomainUnit]) -> Iterable[UnitProblem]:
    """Images are stored by content (sha256 prefix and name): one file, one pin."""
    first: dict[str, tuple[str, str, int]] = {}
    for domain in domains:
        for key, image in (("kernel", domain.kernel), ("ramdisk", domain.ramdisk)):
            if image is None or not image.sha256:
                continue
            source, sha256, size = first.setdefault(
                image.file_name, (domain.source, image.sha256, image.size))
            if (sha256, size) != (image.sha256, image.size):
                yield UnitProblem(domain.source, key, f"is stored as {image.file_name}, like "
                                  f"the image in {source} pinned with another sha256 or "
                                  "size: fix the pin that is wrong")


def _total_problems(config: Config, domain_dir: str) -> Iterable[UnitProblem]:
    memory = sum(domain.memory for domain in config.domains)
    if memory > rules.HOST_MEMORY_MIB:
        yield UnitProblem(domain_dir, "(memory)", f"the domains need {memory} MiB together; "
                          f"Xen supports hosts of up to {rules.HOST_MEMORY_MIB} MiB (12 TiB)")
    names = sum(len(domain.name) + 1 for domain in config.domains)
    if names > XS_PAYLOAD_MAX:
        yield UnitProblem(domain_dir, "(names)", f"{len(config.domains)} domain names take "
                          f"{names} bytes in {config.host.domain_map}; xenstored lists at "
                          f"most {XS_PAYLOAD_MAX}: use shorter names or fewer domains")


def restart_notes(config: Config) -> tuple[UnitNote, ...]:
    """A domain xl restarts comes back with a new domid, and only the follower
    (`orchestrate watch`) re-provisions it (DESIGN.md, "After the boot")."""
    notes = []
    peers_of: dict[str, set[str]] = {}
    for server, client in ipc_pairs(config.domains):
        peers_of.setdefault(server, set()).add(client)
        peers_of.setdefault(client, set()).add(server)
    clients_of: dict[str, set[str]] = {}
    for domain in config.domains:
        for vif in domain.vifs:
            if vif.backend is not None:
                clients_of.setdefault(vif.backend, set()).add(domain.name)
    for domain in config.domains:
        keys = domain.restart_keys()
        peers = sorted(peers_of.get(domain.name, ()))
        clients = sorted(clients_of.get(domain.name, ()))
        if not keys or not (peers or clients):
            continue
        lost = []
        if peers:
            lost.append(f"its vchan{'s' if len(peers) > 1 else ''} with {', '.join(peers)}")
        if clients:
            lost.append(f"the vifs of {', '.join(clients)}")
        verb = "stay" if clients or len(peers) > 1 else "stays"
        notes.append(UnitNote(
            domain.source, keys[0],
            f'"{getattr(domain, keys[0])}" gives {domain.name} a new domid; '
            f"{' and '.join(lost)} {verb} dead until orchestrate runs again",
            "run the follower, `orchestrate watch` (the orchestrator-watch OpenRC service), "
            "which re-provisions a restarted domain"))
    return tuple(notes)

