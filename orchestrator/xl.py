"""xl adapter: argv builders, output parsers, and failures translated into causes.

xl exits 0 from `create` once the domain is built; it does not wait for the guest
(XEN-FACTS.md "xl"). The translations come from what the seeds and the lab saw.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from orchestrator.errors import CommandFailed, OrchestratorError
from orchestrator.host import Host
from orchestrator.ipc import Domid, placeholder_domid

VERSION_HINT = (
    "the toolstack does not match the hypervisor (DOMCTL interface version): install the "
    "toolstack of the hypervisor's release; `orchestrate` checks this in preflight, so "
    "it was skipped or the versions are new to it"
)

# (pattern in xl's stderr, what it really means)
KNOWN_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"domain creation fail: Permission denied|need to rebuild the user-space"),
     VERSION_HINT),
    (re.compile(r"Illegal pool specified: \(null\)"), VERSION_HINT),
    # xen-init-dom0 of 4.20 tools on a 4.17 hypervisor (XEN-LAB.md "The version trap")
    (re.compile(r"Getting domain info: Permission denied"), VERSION_HINT),
    (re.compile(r"passthrough not supported on this platform"),
     "no IOMMU: enable VT-d/AMD-Vi in the firmware (and iommu=on on Xen's command line), "
     "or drop the pci devices from the unit"),
    (re.compile(r"passthrough not yet supported for x86 PVH"),
     "PCI passthrough needs a PV guest: set type = \"pv\" in the unit"),
    (re.compile(r"libgcc_s\.so\.1 must be installed"),
     "add /lib/x86_64-linux-gnu/libgcc_s.so.1 to the dom0 image (ldd does not list it)"),
    (re.compile(r"neither hap nor shadow paging available"),
     "the CPU offers no HAP for PVH: use type = \"pv\" or a CPU with EPT/NPT"),
    (re.compile(r"cannot connect to xenstore|xs_open"),
     "xenstored is not running: see start-xenstored above"),
)


def logs_hint(name: str) -> str:
    """What to read when xl's failure is none we know: every failure says where to look."""
    return (f"see xl's log /var/log/xen/xl-{name}.log and the guest's console "
            f"/var/log/xen/console/guest-{name}.log")


def explain_failure(stderr: str) -> str | None:
    for pattern, hint in KNOWN_FAILURES:
        if pattern.search(stderr):
            return hint
    return None


def parse_xl_info(text: str) -> dict[str, str]:
    """`xl info` `key : value` lines -> dict (values may contain ':')."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info[key.strip()] = value.strip()
    return info


def parse_domid(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


# the six letters of `xl list`'s State column: r b p s <shutdown reason> d, where the
# reason is one of "-rscwS" (poweroff, reboot, suspend, crash, watchdog, soft reset) or '?'
# (tools/xl/xl_info.c list_domains)
_STATE_RE = re.compile(r"^(\S+)\s+(\d+)\s+\d+\s+\d+\s+([-rbpscdwS?]{6})\s")
_REASONS = {"-": ("powered off", "on_poweroff"), "r": ("rebooting", "on_reboot"),
            "s": ("suspended", None), "c": ("crashed", "on_crash"),
            "w": ("stopped by its watchdog", None), "S": ("soft-resetting", None)}


def is_shut_down(flags: str) -> bool:
    """The domain has shut down (for any reason) and is not yet destroyed."""
    return len(flags) == 6 and flags[3] == "s"


def shutdown_cause(name: str, flags: str, actions: Mapping[str, str]) -> str:
    """What a shut-down domain is doing, from `xl list`'s state and the unit's on_* actions
    (which xl's monitor of the domain carries out): e.g. a `xl sysrq b` reads "rebooting
    (xl list: ---sr-): xl restarts it (on_reboot = "restart"), a new domid follows"."""
    what, key = _REASONS.get(flags[4:5], ("shut down", None))
    head = f"{what} (xl list: {flags})"
    action = actions.get(key, "") if key else ""
    if action in ("restart", "rename-restart", "coredump-restart"):
        return (f"{head}: xl restarts it ({key} = \"{action}\"), a new domid follows; if "
                f"none does, `xl destroy {name}` and re-run orchestrate")
    if action in ("destroy", "coredump-destroy"):
        return f"{head}: xl destroys it ({key} = \"{action}\"); its plumbing goes then"
    setting = f" ({key} = \"{action}\")" if action else ""
    return (f"{head}, preserved{setting}: it keeps its devices; `xl destroy {name}` to let "
            f"it go, then re-run orchestrate")


def parse_list_states(text: str) -> dict[str, tuple[int, str]]:
    """Plain `xl list` -> {name: (domid, state flags like "-b----")}."""
    out = {}
    for line in text.splitlines():
        match = _STATE_RE.match(line)
        if match:
            out[match[1]] = (int(match[2]), match[3])
    return out


def network_attach_argv(name: str, spec: str) -> list[str]:
    """`xl network-attach` for a vif= spec (`ip=...,script=...,backend=...`): one argument
    per key. xl parses each argument as ONE key=value (tools/xl/xl_nic.c
    main_networkattach -> parse_nic_config); the commas are split only in a config file's
    vif= list, so a joined spec made `ip` swallow the rest and the backend default to dom0
    (seen in the lab: "unable to add device with path /local/domain/0/backend/vif/3/0")."""
    return ["xl", "network-attach", name, *(part for part in spec.split(",") if part)]


class Xl:
    def __init__(self, host: Host, timeout: float) -> None:
        self.host = host
        self.timeout = timeout

    def _fail(self, exc: CommandFailed, what: str, name: str) -> OrchestratorError:
        hint = explain_failure(exc.stderr) or exc.hint or logs_hint(name)
        return OrchestratorError(f"{what}: {exc.message}", hint=hint)

    def info(self) -> dict[str, str] | None:
        result = self.host.query(["xl", "info"], timeout=self.timeout)
        return parse_xl_info(result.stdout) if result.ok else None

    def domid(self, name: str) -> int | None:
        result = self.host.query(["xl", "domid", name], timeout=self.timeout)
        return parse_domid(result.stdout) if result.ok else None

    def states(self) -> dict[str, tuple[int, str]]:
        """`xl list`: {name: (domid, state flags)}. A failure raises: "no domains" and
        "xl could not tell" must never look alike (the follower would revoke the plumbing
        of every running domain)."""
        result = self.host.query(["xl", "list"], timeout=self.timeout)
        if not result.ok:
            raise CommandFailed(result.argv, result.returncode, result.stderr,
                                hint="is xenstored running, and the toolstack the "
                                "hypervisor's? (`xl info`)")
        return parse_list_states(result.stdout)

    def create_paused(self, name: str, cfg_path: str, timeout: float) -> Domid:
        """`xl create -p`: built, devices set up, not yet running; returns the domid."""
        try:
            self.host.run(["xl", "create", "-p", str(self.host.path(cfg_path))],
                          timeout=timeout)
        except CommandFailed as exc:
            raise self._fail(exc, f"creating {name} failed", name) from None

        def read() -> Domid:
            domid = self.domid(name)
            if domid is None:
                raise OrchestratorError(
                    f"`xl create` of {name} returned but `xl domid {name}` finds no such "
                    "domain (it died at once, or another toolstack destroyed it)",
                    hint=f"see /var/log/xen/xl-{name}.log and "
                    f"/var/log/xen/console/guest-{name}.log")
            return domid

        fallback: Domid = placeholder_domid(name)
        return self.host.outcome(read, fallback)

    def unpause(self, name: str, domid: Domid) -> None:
        try:
            self.host.run(["xl", "unpause", str(domid)], timeout=self.timeout)
        except CommandFailed as exc:
            raise self._fail(exc, f"unpausing {name} failed", name) from None

    def destroy(self, name: str, domid: Domid) -> None:
        """Best effort (a failed domain is being cleaned up): a failure is said, not raised.
        By name: xl's monitor may have restarted it under a new domid (on_crash=restart)."""
        result = self.host.run(["xl", "destroy", name], timeout=self.timeout, check=False)
        if not result.ok:
            tail = " | ".join(result.stderr.strip().splitlines()[-2:])
            self.host.log.error("note", text=f"`xl destroy {name}` (domid {domid}) exited "
                                f"{result.returncode}: {tail}")
            self.host.log.error("hint", hint=f"destroy it by hand: xl destroy {name}")

    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (control/shutdown); the caller waits with its own
        deadline (xl's -w has none)."""
        try:
            self.host.run(["xl", "shutdown", name], timeout=self.timeout)
        except CommandFailed as exc:
            raise self._fail(exc, f"`xl shutdown {name}` failed", name) from None

    def network_attach(self, name: str, spec: str, timeout: float) -> None:
        """Attach a vif; xl resolves backend=<name> now, and waits (up to 10 s,
        LIBXL_INIT_TIMEOUT) for the backend to reach InitWait."""
        try:
            self.host.run(network_attach_argv(name, spec), timeout=timeout)
        except CommandFailed as exc:
            raise self._fail(exc, f"attaching vif {spec} to {name} failed", name) from None

    def network_detach(self, name: str, devid: int, timeout: float) -> None:
        """Detach a vif; with its backend domain gone, libxl cleans the frontend up alone
        (tools/libs/light/libxl_device.c)."""
        try:
            self.host.run(["xl", "network-detach", name, str(devid)], timeout=timeout)
        except CommandFailed as exc:
            raise self._fail(exc, f"detaching vif {devid} of {name} failed", name) from None
