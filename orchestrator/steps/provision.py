"""provision-xenstore: the name->domid map, the peers and the vchan rendezvous nodes.

Also written on every domain's arrival (between `xl create -p` and `xl unpause`, so the
guest finds everything on first boot); as its own step at the end it converges a re-run:
entries dom0 wrote for domains that no longer exist are removed (orchestrator/plumbing.py).
"""

from __future__ import annotations

from orchestrator import plumbing
from orchestrator.context import Context


def provision_xenstore(ctx: Context) -> None:
    plumbing.provision(ctx)
    missing = [n for n in ctx.topology.names if n not in ctx.state.live_domids()]
    if missing:
        ctx.log.warning("warning", text=f"not provisioned (domain not running): "
                        f"{', '.join(missing)}")
