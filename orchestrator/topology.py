"""The dependency graph between domains, cut into waves that may start together. Pure.

An edge `before -> after` means: `after` is created only once `before` is ready.
Edges come from
- `after = [...]` in a unit (explicit),
- a vif with `backend = "X"`: xl resolves the backend domain when `xl create` runs and
  the vif only connects once X serves it (XEN-FACTS.md, "xl"); a vif attached later
  (not `at_create`) makes a soft edge: no wait at creation, but the order of waves and
  of the shutdown,
- ipc: the client of a vchan starts after its server, so the server's rendezvous node
  exists before the client looks for it (libxenvchan's client does not wait).

Every walk here is iterative: an `after=` chain of a thousand domains is a valid input,
and Python's recursion limit is not a limit of the appliance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from orchestrator.units.model import Config, DomainUnit


class Edge(NamedTuple):
    before: str
    after: str
    reason: str
    # False: `after` is created without waiting for `before` to be ready: only its vif
    # waits (a vif attached once its backend is ready), or, `early`, it waits until
    # `before` is created and provisioned; the order still holds for the shutdown
    hard: bool = True
    early: bool = False


@dataclass(frozen=True)
class Topology:
    names: tuple[str, ...]
    edges: tuple[Edge, ...]
    waves: tuple[tuple[str, ...], ...]
    ipc_pairs: tuple[tuple[str, str], ...]  # (server, client)

    @cached_property
    def _befores(self) -> dict[str, tuple[str, ...]]:
        return _adjacency(self.names, ((e.after, e.before) for e in self.edges if e.hard))

    @cached_property
    def _later_backends(self) -> dict[str, tuple[str, ...]]:
        return _adjacency(self.names, ((e.after, e.before) for e in self.edges
                                       if not e.hard and not e.early))

    @cached_property
    def _early(self) -> dict[str, tuple[str, ...]]:
        return _adjacency(self.names, ((e.after, e.before) for e in self.edges if e.early))

    @cached_property
    def _afters(self) -> dict[str, tuple[str, ...]]:
        return _adjacency(self.names, ((e.before, e.after) for e in self.edges))

    def needs(self, name: str) -> tuple[str, ...]:
        """The domains that must be ready before `name` is created."""
        return self._befores.get(name, ())

    def created_needs(self, name: str) -> tuple[str, ...]:
        """The domains that must be created and provisioned (not ready) before `name` is
        created: the vchan servers of a client with `wait_for_servers = false`."""
        return self._early.get(name, ())

    def later_backends(self, name: str) -> tuple[str, ...]:
        """The driver domains of vifs attached to `name` once they are ready."""
        return self._later_backends.get(name, ())

    def dependents(self, name: str) -> tuple[str, ...]:
        """Every domain that transitively waits for `name`."""
        found: set[str] = set()
        todo = [name]
        while todo:
            for after in self._afters.get(todo.pop(), ()):
                if after not in found:
                    found.add(after)
                    todo.append(after)
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


def _adjacency(names: Iterable[str],
               pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, set[str]] = {name: set() for name in names}
    for source, target in pairs:
        out.setdefault(source, set()).add(target)
    return {name: tuple(sorted(targets)) for name, targets in out.items()}


def dependency_edges(domains: Iterable[DomainUnit]) -> list[Edge]:
    domains = list(domains)
    known = {d.name for d in domains}
    edges: dict[tuple[str, str], list[str]] = {}
    hard: set[tuple[str, str]] = set()
    early: set[tuple[str, str]] = set()
    waits = {d.name: d.wait_for_servers for d in domains}

    def add(before: str, after: str, reason: str, is_hard: bool = True,
            is_early: bool = False) -> None:
        if before in known and after in known and before != after:
            reasons = edges.setdefault((before, after), [])
            if reason not in reasons:
                reasons.append(reason)
            if is_hard:
                hard.add((before, after))
            if is_early:
                early.add((before, after))

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
            if client in known:
                add(domain.name, client, "ipc serve", waits[client], not waits[client])
        for server in domain.connect:
            add(server, domain.name, "ipc connect", domain.wait_for_servers,
                not domain.wait_for_servers)
    # an edge that waits for ready (hard) for any reason is not also an early one
    out = []
    for (before, after), reasons in sorted(edges.items()):
        is_early = (before, after) in early and (before, after) not in hard
        reason = ", ".join(reasons) + (" (once created: wait_for_servers = false)"
                                       if is_early else "")
        out.append(Edge(before, after, reason, (before, after) in hard, is_early))
    return out


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
    """A dependency cycle as [a, b, ..., a], or None (depth-first, from sorted roots)."""
    domains = list(domains)
    graph = _adjacency((d.name for d in domains),
                       ((e.before, e.after) for e in dependency_edges(domains)))
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path = [root]
        on_path = {root}
        todo = [iter(graph[root])]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                todo.pop()
            elif nxt in on_path:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                todo.append(iter(graph[nxt]))
    return None


def build_topology(config: Config) -> Topology:
    """Waves by longest path from the roots; call only on validated (acyclic) units."""
    edges = dependency_edges(config.domains)
    names = tuple(sorted(d.name for d in config.domains))
    afters = _adjacency(names, ((e.before, e.after) for e in edges))
    waiting = dict.fromkeys(names, 0)
    for edge in edges:
        waiting[edge.after] += 1
    level = dict.fromkeys(names, 0)
    ready = deque(name for name in names if waiting[name] == 0)
    placed = 0
    while ready:  # Kahn's algorithm: a domain is placed once all before it are placed
        name = ready.popleft()
        placed += 1
        for after in afters[name]:
            level[after] = max(level[after], level[name] + 1)
            waiting[after] -= 1
            if waiting[after] == 0:
                ready.append(after)
    if placed != len(names):
        raise ValueError("build_topology: the units have a dependency cycle (validate first)")
    waves: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for name in names:
        waves[level[name]].append(name)
    return Topology(
        names=names,
        edges=tuple(edges),
        waves=tuple(tuple(wave) for wave in waves),
        ipc_pairs=ipc_pairs(config.domains),
    )
