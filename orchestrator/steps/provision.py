"""provision-xenstore: the name->domid map and the vchan rendezvous nodes.

Called on every domain's arrival (between `xl create -p` and `xl unpause`, so the guest
finds everything on first boot) and once more as its own step at the end, which
converges a re-run: stale entries of domains that no longer exist are removed.
Each call writes the whole plan for the domains that exist now, in one transaction,
then reads it back (XEN-FACTS.md "Provisioning rules").
"""

from __future__ import annotations

from orchestrator.context import Context
from orchestrator.ipc import provisioning_plan


def provision(ctx: Context) -> None:
    cfg = ctx.config.host
    with ctx.provision_lock:
        domids = ctx.state.live_domids()
        nodes = provisioning_plan(ctx.topology, cfg.domain_map, cfg.rendezvous, domids)
        store = ctx.xenstore()
        stale = [f"{cfg.domain_map}/{name}" for name in store.directory(cfg.domain_map)
                 if name not in domids]
        store.apply(nodes, remove=stale)


def provision_xenstore(ctx: Context) -> None:
    provision(ctx)
    missing = [n for n in ctx.topology.names if n not in ctx.state.live_domids()]
    if missing:
        ctx.log.warning("warning", text=f"not provisioned (domain not running): "
                        f"{', '.join(missing)}")
