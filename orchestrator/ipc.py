"""What dom0 writes to xenstore so domUs talk peer to peer, with least privilege. Pure.

Rules (XEN-FACTS.md "xenstore permissions", docs/misc/xenstore.txt):
- entry 0 of a permission list is the owner AND the access of every domain not listed,
  so every list we write starts with `n`: `[n2, r3]`, never the seeds' `b2 r3`, which
  lets every domain read and write (shown in the lab);
- grants naming a domid that does not exist yet are ignored by xenstored, so the plan is
  recomputed on each domain's arrival over the domains that exist at that moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.topology import Topology

# A domid is an int on a real boot; in a dry run, a placeholder such as "<domid:net-vm>".
Domid = int | str

DOM0 = 0


def placeholder_domid(name: str) -> str:
    return f"<domid:{name}>"


@dataclass(frozen=True)
class Perm:
    letter: str  # n r w b
    domid: Domid

    def __str__(self) -> str:
        return f"{self.letter}{self.domid}"


@dataclass(frozen=True)
class XsNode:
    """A node dom0 provisions: value None means an empty node (pyxs needs MKDIR for those)."""

    path: str
    value: str | None
    perms: tuple[Perm, ...]

    def perms_text(self) -> str:
        return " ".join(str(p) for p in self.perms)

    @property
    def owner(self) -> Domid:
        """Entry 0 names the owner (docs/misc/xenstore.txt, permissions)."""
        return self.perms[0].domid


def owner_only(owner: Domid, readers: list[Domid]) -> tuple[Perm, ...]:
    """`[n<owner>, r<reader>...]`: owner full, the readers read, everybody else nothing."""
    seen: list[Domid] = []
    for reader in readers:
        if reader != owner and reader not in seen:
            seen.append(reader)
    return (Perm("n", owner),) + tuple(Perm("r", r) for r in seen)


def rendezvous_path(template: str, server: Domid, client: Domid) -> str:
    return template.replace("{server}", str(server)).replace("{client}", str(client))


def map_readers(topology: Topology, name: str) -> tuple[str, ...]:
    """Who may read /ipc/domain-map/<name>: the domain itself and its ipc peers."""
    return tuple(sorted({name, *topology.peers(name)}))


def provisioning_plan(
    topology: Topology,
    domain_map: str,
    rendezvous_template: str,
    domids: Mapping[str, Domid],
) -> list[XsNode]:
    """Every node dom0 owns for the domains that exist now (names in `domids`).

    Idempotent: writing the whole plan again after a new arrival adds the new
    domain's grants to the entries written before it, and nothing else changes.
    """
    present = [n for n in topology.names if n in domids]
    # /ipc and /ipc/domain-map are dom0's alone: readers need only their leaf, since
    # xenstored checks the node itself and never its parents.
    nodes = [
        XsNode(ancestor, None, owner_only(DOM0, []))
        for ancestor in _ancestors(domain_map)
    ]
    for name in present:
        readers = [domids[r] for r in map_readers(topology, name) if r in domids]
        nodes.append(
            XsNode(f"{domain_map}/{name}", str(domids[name]), owner_only(DOM0, readers))
        )
    for name in present:  # each guest is told its peers by name, and only it can read them
        for role, peers in (("serve", topology.clients(name)),
                            ("connect", topology.servers(name))):
            if topology.peers(name):
                nodes.append(XsNode(peers_path(domids[name], role), " ".join(peers) or None,
                                    owner_only(DOM0, [domids[name]])))
    for server, client in topology.ipc_pairs:
        if server in domids and client in domids:
            path = rendezvous_path(rendezvous_template, domids[server], domids[client])
            nodes.append(XsNode(path, None, owner_only(domids[server], [domids[client]])))
    return nodes


def peers_path(domid: Domid, role: str) -> str:
    """Where a guest reads its vchan peers by name: `~/ipc/serve` (the domains it serves)
    and `~/ipc/connect` (the domains it connects to), space-separated (README, "What a
    guest reads"). In its own home, so it needs no configuration to find them."""
    return f"/local/domain/{domid}/ipc/{role}"


def _ancestors(path: str) -> list[str]:
    """`/ipc/domain-map` -> [`/ipc`, `/ipc/domain-map`] (never `/` itself)."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
