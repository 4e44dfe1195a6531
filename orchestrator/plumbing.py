"""The plumbing dom0 provides: the name->domid map, the peers each guest is told and the
vchan rendezvous nodes, for the domains that exist now (DESIGN.md "Domain creation and
xenstore provisioning", XEN-FACTS.md "Provisioning rules").

One function converges xenstore on the plan for the present domids, whoever calls it (the
boot on each arrival, a re-run, the follower after a restart, the shutdown after each
stop): dom0's nodes in one transaction, read back byte for byte; each guest-owned
rendezvous node alone. dom0 removes only nodes it wrote (recorded in state.json before
each commit, so a run killed in between still knows them) and that the plan no longer
has: the entry of a domain that is gone, grants naming a dead domid (rewritten without
it: xenstored ignores entries naming a dead domid, and a reused domid must never inherit
access).
"""

from __future__ import annotations

from orchestrator.context import Context
from orchestrator.ipc import DOM0, XsNode, provisioning_plan


def plan(ctx: Context) -> list[XsNode]:
    """For the domains present now; one being stopped has no plumbing any more (everything
    that needs it stopped first), and its home is never written while it goes."""
    cfg = ctx.config.host
    domids = {name: domid for name, domid in ctx.state.live_domids().items()
              if ctx.state.domains[name].state != "stopping"}
    return provisioning_plan(ctx.topology, cfg.domain_map, cfg.rendezvous, domids)


def provision(ctx: Context) -> str:
    """Converge xenstore on the plan; returns what the plan holds for the record."""
    cfg = ctx.config.host
    with ctx.provision_lock:
        nodes = plan(ctx)
        wanted = [n.path for n in nodes]
        # Ours for certain: map entries named after our units (the map's path is dom0's
        # alone: units/validate refuses one that overlaps the toolstack's).
        candidates = set(ctx.state.xenstore_written) | {
            f"{cfg.domain_map}/{name}" for name in ctx.topology.names}
        stale = sorted(candidates - set(wanted))
        ctx.state.xenstore_written = sorted(set(ctx.state.xenstore_written) | set(wanted))
        ctx.save()  # write-ahead: a run killed during the commit still knows them
        store = ctx.xenstore()
        present = [p for p in stale if store.read_bytes(p) is not None]
        for warning in store.apply(nodes, remove=present):
            ctx.log.warning("warning", text=f"rendezvous node not provisioned: {warning}")
        ctx.state.xenstore_written = sorted(wanted)
        ctx.save()
    return describe(nodes, cfg.domain_map)


def describe(nodes: list[XsNode], domain_map: str) -> str:
    """E.g. "map 3, grants 5, rendezvous 1": map entries, their grants, vchan nodes."""
    entries = [n for n in nodes if n.path.startswith(f"{domain_map}/")]
    grants = sum(len(n.perms) - 1 for n in entries)
    rendezvous = sum(1 for n in nodes if n.owner != DOM0)
    return f"map {len(entries)}, grants {grants}, rendezvous {rendezvous}"
