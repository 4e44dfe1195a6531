"""The dependency graph between domains, cut into waves that may start together.

An edge `before -> after` means: `after` is created only once `before` is ready.
Edges come from
- `after = [...]` in a unit (explicit),
- a vif with `backend = "X"`: xl resolves the backend domain when `xl create` runs and
  the vif only connects once X serves it (XEN-FACTS.md, "xl"),
- ipc: the client of a vchan starts after its server, so the server's rendezvous node
  exists before the client looks for it (libxenvchan's client does not wait).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.units import Config, DomainUnit


@dataclass(frozen=True)
class Edge:
    before: str
    after: str
    reason: str
    # False: `after` is created without waiting for `before`, and only its vif waits (a vif
    # attached once its backend is ready); the order still holds for the shutdown
    hard: bool = True


@dataclass(frozen=True)
class Topology:
    names: tuple[str, ...]
    edges: tuple[Edge, ...]
    waves: tuple[tuple[str, ...], ...]
    ipc_pairs: tuple[tuple[str, str], ...]  # (server, client)

    def needs(self, name: str) -> tuple[str, ...]:
        """The domains that must be ready before `name` is created."""
        return tuple(sorted({e.before for e in self.edges if e.after == name and e.hard}))

    def later_backends(self, name: str) -> tuple[str, ...]:
        """The driver domains of vifs attached to `name` once they are ready."""
        return tuple(sorted({e.before for e in self.edges if e.after == name and not e.hard}))

    def dependents(self, name: str) -> tuple[str, ...]:
        """Every domain that transitively waits for `name`."""
        found: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            for edge in self.edges:
                if edge.before == current and edge.after not in found:
                    found.add(edge.after)
                    todo.append(edge.after)
        return tuple(sorted(found))

    def clients(self, name: str) -> tuple[str, ...]:
        """The domains `name` serves a vchan to."""
        return tuple(sorted(c for s, c in self.ipc_pairs if s == name))

    def servers(self, name: str) -> tuple[str, ...]:
        """The domains `name` connects to as a vchan client."""
        return tuple(sorted(s for s, c in self.ipc_pairs if c == name))

    def peers(self, name: str) -> tuple[str, ...]:
        """The ipc peers of `name`, whichever side it is on."""
        out = {c for s, c in self.ipc_pairs if s == name} | {
            s for s, c in self.ipc_pairs if c == name
        }
        return tuple(sorted(out))


def dependency_edges(domains: Iterable[DomainUnit]) -> list[Edge]:
    domains = list(domains)
    known = {d.name for d in domains}
    edges: dict[tuple[str, str], list[str]] = {}
    hard: set[tuple[str, str]] = set()

    def add(before: str, after: str, reason: str, is_hard: bool = True) -> None:
        if before in known and after in known and before != after:
            edges.setdefault((before, after), [])
            if reason not in edges[(before, after)]:
                edges[(before, after)].append(reason)
            if is_hard:
                hard.add((before, after))

    for domain in domains:
        for other in domain.after:
            add(other, domain.name, "after=")
        for vif in domain.vifs:
            if vif.backend and vif.at_create:
                add(vif.backend, domain.name, "vif backend=, at_create")
            elif vif.backend:
                add(vif.backend, domain.name, "vif backend= (attached once ready)",
                    is_hard=False)
        for client in domain.serve:
            add(domain.name, client, "ipc serve")
        for server in domain.connect:
            add(server, domain.name, "ipc connect")
    return [
        Edge(before, after, ", ".join(reasons), (before, after) in hard)
        for (before, after), reasons in sorted(edges.items())
    ]


def ipc_pairs(domains: Iterable[DomainUnit]) -> tuple[tuple[str, str], ...]:
    """Every (server, client) vchan pair, declared on either side or both."""
    domains = list(domains)
    known = {d.name for d in domains}
    pairs: set[tuple[str, str]] = set()
    for domain in domains:
        pairs.update((domain.name, client) for client in domain.serve if client in known)
        pairs.update((server, domain.name) for server in domain.connect if server in known)
    return tuple(sorted(pairs))


def find_cycle(domains: Iterable[DomainUnit]) -> list[str] | None:
    """A dependency cycle as [a, b, ..., a], or None."""
    domains = list(domains)
    graph: dict[str, list[str]] = {d.name: [] for d in domains}
    for edge in dependency_edges(domains):
        graph[edge.before].append(edge.after)
    colour: dict[str, int] = dict.fromkeys(graph, 0)  # 0 new, 1 on stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if colour[nxt] == 1:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == 0:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if colour[node] == 0:
            found = visit(node)
            if found:
                return found
    return None


def build_topology(config: Config) -> Topology:
    """Waves by longest path from the roots; call only on validated (acyclic) units."""
    edges = dependency_edges(config.domains)
    names = tuple(sorted(d.name for d in config.domains))
    level: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in level:
            befores = [e.before for e in edges if e.after == name]
            level[name] = 1 + max((depth(b) for b in befores), default=-1)
        return level[name]

    for name in names:
        depth(name)
    count = 1 + max(level.values(), default=-1)
    waves = tuple(tuple(n for n in names if level[n] == i) for i in range(count))
    return Topology(
        names=names,
        edges=tuple(edges),
        waves=waves,
        ipc_pairs=ipc_pairs(config.domains),
    )
