"""`orchestrate status`: the live picture against what the journal recorded.

Each domain's recorded state and domid next to the domid `xl list` shows now, and the
restarts seen. With --check, the plan for the domains running now (orchestrator/ipc.py)
is compared with xenstore, node by node and grant by grant, and every vif with its
backend's current domid: exit 1 names each difference (a stale map entry, a grant naming
a dead domid, a rendezvous node missing under a new home, a vif served by a dead
backend). --json prints the same as one JSON document (schema below, versioned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.context import Context
from orchestrator.ipc import XsNode, provisioning_plan
from orchestrator.probes import devices
from orchestrator.state import BootState
from orchestrator.xenstore import Xenstore
from orchestrator.xl import parse_list_states

SCHEMA = "orchestrate-status/1"


@dataclass(frozen=True)
class DomainView:
    name: str
    state: str
    recorded_domid: int | str | None
    current_domid: int | None
    flags: str
    restarts: int
    error: str | None

    @property
    def drift(self) -> str | None:
        if self.current_domid is None:
            return "not running" if self.recorded_domid is not None else None
        if self.recorded_domid != self.current_domid:
            return f"runs as domid {self.current_domid}, recorded {self.recorded_domid}"
        return None


def domain_views(ctx: Context, observed: dict[str, tuple[int, str]] | None
                 ) -> list[DomainView]:
    out = []
    for name in [n for wave in ctx.topology.waves for n in wave]:
        record = ctx.state.domains.get(name)
        current = observed.get(name) if observed is not None else None
        out.append(DomainView(
            name, record.state if record else "unknown", record.domid if record else None,
            current[0] if current else None, current[1] if current else "",
            record.restarts if record else 0, record.error if record else None))
    return out


def differences(ctx: Context, store: Xenstore,
                observed: dict[str, tuple[int, str]]) -> list[str]:
    """Everything in xenstore and the vifs that differs from the plan for the domains that
    run now."""
    cfg = ctx.config.host
    running = {name: domid for name, (domid, flags) in observed.items()
               if name in ctx.topology.names and "d" not in flags}
    nodes = provisioning_plan(ctx.topology, cfg.domain_map, cfg.rendezvous, running)
    out = [d for node in nodes if (d := node_difference(store, node))]
    wanted = {n.path for n in nodes}
    for path in sorted(set(ctx.state.xenstore_written) - wanted):
        if store.read_bytes(path) is not None:
            out.append(f"{path}: dom0 wrote it and the plan no longer has it (stale)")
    for name in sorted(set(store.directory(cfg.domain_map)) - set(running)):
        if name in ctx.topology.names:
            out.append(f"{cfg.domain_map}/{name}: {name} does not run (stale map entry)")
    alive = {domid for domid, _ in observed.values()} | {0}
    for name, domid in sorted(running.items()):
        out += vif_differences(ctx, store, name, domid, running, alive)
    return out


def node_difference(store: Xenstore, node: XsNode) -> str | None:
    untrusted_value = store.read_bytes(node.path)
    if untrusted_value is None:
        return f"{node.path}: missing (want [{node.perms_text()}])"
    if node.value is not None and untrusted_value != node.value.encode():
        return f"{node.path}: value differs (want {node.value!r})"
    perms = store.get_perms(node.path)
    if perms != [str(p) for p in node.perms]:
        return f"{node.path}: perms {' '.join(perms or [])}, want {node.perms_text()}"
    return None


def vif_differences(ctx: Context, store: Xenstore, name: str, domid: int,
                    running: dict[str, int], alive: set[int]) -> list[str]:
    out = []
    found = devices(store, domid, ("vif",))
    domain = ctx.config.domain(name)
    for index, vif in enumerate(domain.vifs):
        if vif.backend is None:
            continue
        want = running.get(vif.backend)
        served = [d for d in found if d.backend_domid == want]
        if want is None:
            out.append(f"{name} vif[{index}]: its backend {vif.backend} does not run")
        elif len(served) < sum(1 for v in domain.vifs[: index + 1] if v.backend == vif.backend):
            out.append(f"{name} vif[{index}]: not attached to {vif.backend} (domid {want})")
    for device in found:
        if device.backend_domid not in alive:
            out.append(f"{name} vif {device.devid}: its backend domid {device.backend_domid} "
                       "is dead")
    return out


def as_json(state: BootState, views: list[DomainView], live: bool,
            diffs: list[str] | None) -> dict[str, Any]:
    """The documented document of `status --json` (README, "orchestrate status")."""
    return {
        "schema": SCHEMA,
        "verdict": state.verdict,
        "exit_code": state.exit_code,
        "steps": {name: {"status": step.status, "seconds": step.seconds,
                         "cpu_seconds": step.cpu_seconds, "error": step.error}
                  for name, step in state.steps.items()},
        "live": live,
        "domains": {v.name: {"state": v.state, "recorded_domid": v.recorded_domid,
                             "current_domid": v.current_domid, "flags": v.flags,
                             "restarts": v.restarts, "error": v.error, "drift": v.drift}
                    for v in views},
        "differences": diffs,
    }


def render(state: BootState, views: list[DomainView], live: bool,
           diffs: list[str] | None) -> list[str]:
    from orchestrator.runner import STEPS

    order = [name for name, _ in STEPS]
    lines = []
    for name, step in sorted(state.steps.items(),
                             key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        seconds = f" {step.seconds:.2f} s" if step.seconds is not None else ""
        if step.cpu_seconds is not None:
            seconds += f" (CPU {step.cpu_seconds:.2f} s)"
        lines.append(f"{name:26} {step.status}{seconds}"
                     f"{': ' + step.error if step.error else ''}")
    for v in views:
        recorded = v.recorded_domid if v.recorded_domid is not None else "-"
        now = ("" if not live else
               f", now {v.current_domid if v.current_domid is not None else 'not running'}")
        restarts = f", {v.restarts} restart{'s' if v.restarts != 1 else ''}" \
            if v.restarts else ""
        lines.append(f"{v.name:26} {v.state} domid {recorded}{now}{restarts}"
                     f"{': ' + v.error if v.error else ''}")
    if not live:
        lines.append("live: unavailable (xl list failed: not root, or no Xen here)")
    lines.append(f"verdict: {state.verdict or '(boot still running or killed)'}")
    if diffs is not None:
        lines += [f"differs: {d}" for d in diffs] or ["check: xenstore and vifs match the plan"]
    return lines


def observe(ctx: Context) -> dict[str, tuple[int, str]] | None:
    """`xl list` now, or None when it cannot run (not root, no Xen)."""
    result = ctx.host.query(["xl", "list"], timeout=ctx.config.host.command_timeout)
    return parse_list_states(result.stdout) if result.ok else None
