"""start-xenstored (xenstored, xen-init-dom0, xenconsoled) and check-platform (`xl info`).

xenstored writes its pid file before its socket and before dom0 is initialised, and its
launcher exits 0 first: it is ready only when a READ of `/` over the socket succeeds
(XEN-FACTS.md "Devices and daemons"). xenconsoled daemonizes before it connects and
reports failures to syslog only: we check it is alive afterwards.
"""

from __future__ import annotations

import re

from orchestrator.context import Context
from orchestrator.errors import CommandFailed, OrchestratorError
from orchestrator.xl import Xl, explain_failure

XENSTORED_PID = "/var/run/xenstored.pid"
XENCONSOLED_PID = "/var/run/xen/xenconsoled.pid"
XL_CONF = "/etc/xen/xl.conf"
DAEMON_SETTLE = 3.0  # seconds a daemon may take to write its pid file after its launcher


def xenstored_answers(ctx: Context, timeout: float) -> bool:
    """True when a READ of `/` over the socket succeeds within timeout."""
    from orchestrator.xenstore import XenstoreError

    try:
        store = ctx.host.xenstore(timeout)
        try:
            store.directory("/")
        finally:
            store.close()
        return True
    except XenstoreError:
        return False


def start_xenstored(ctx: Context) -> None:
    host, cfg = ctx.host, ctx.config.host
    _ensure_autoballoon_off(ctx)
    socket = host.xenstored_socket()
    if host.outcome(lambda: xenstored_answers(ctx, 1.0), False):
        ctx.log.info("already done", what=f"xenstored answers on {socket}")
    else:
        host.run(["xenstored", "--pid-file", str(host.path(XENSTORED_PID)),
                  *cfg.xenstored_args], timeout=ctx.remaining(cfg.command_timeout))
        _wait_for_xenstored(ctx, socket)

    if host.outcome(lambda: ctx.xenstore().read("/local/domain/0/name") is not None, False):
        ctx.log.info("already done", what="xen-init-dom0 (/local/domain/0/name exists)")
    else:
        result = host.run(["xen-init-dom0"], timeout=ctx.remaining(cfg.command_timeout),
                          check=False)
        if not result.ok:
            raise CommandFailed(result.argv, result.returncode, result.stderr,
                                explain_failure(result.stderr) or "xen-init-dom0 needs "
                                "/var/lib/xen and a toolstack matching the hypervisor")

    if host.outcome(lambda: _pid_alive(ctx, XENCONSOLED_PID), False):
        ctx.log.info("already done", what="xenconsoled is running")
    else:
        args = cfg.xenconsoled_args or ("--log=guest",
                                        f"--log-dir={host.path('/var/log/xen/console')}")
        host.run(["xenconsoled", f"--pid-file={host.path(XENCONSOLED_PID)}", *args],
                 timeout=ctx.remaining(cfg.command_timeout))

    # xenconsoled's launcher exits before its daemon writes the pid file: give it a moment.
    for name, pidfile in (("xenstored", XENSTORED_PID), ("xenconsoled", XENCONSOLED_PID)):
        alive = host.wait_until(f"{name} is alive (pid file {pidfile})",
                                lambda p=pidfile: _pid_alive(ctx, p),  # type: ignore[misc]
                                ctx.remaining(DAEMON_SETTLE))
        if not alive:
            raise OrchestratorError(
                f"{name} is not running after start (pid file {pidfile})",
                hint=f"run `{name}` by hand to see its error; xenconsoled logs to syslog",
            )


def _wait_for_xenstored(ctx: Context, socket: str) -> None:
    budget = ctx.remaining(ctx.config.host.xenstored_timeout)
    if not ctx.host.wait_until(f"READ / succeeds on {socket}",
                               lambda: xenstored_answers(ctx, min(2.0, budget)), budget):
        raise OrchestratorError(
            f"xenstored did not answer a READ of / on {socket} within {budget:g} s "
            "(its pid file proves nothing: it is written before the socket)",
            hint="run `xenstored -N` by hand to see why; check /dev/xen/* and that xenfs is "
            "mounted",
        )


def _pid_alive(ctx: Context, pidfile: str) -> bool:
    text = ctx.host.read_text(pidfile)
    if not text or not text.strip().isdigit():
        return False
    return ctx.host.pid_alive(int(text.strip()))


def _ensure_autoballoon_off(ctx: Context) -> None:
    """A RAM-resident dom0 must not be ballooned down by xl (XEN-FACTS.md "xl")."""
    if not ctx.config.host.autoballoon_off:
        return
    text = ctx.host.read_text(XL_CONF) or ""
    lines = [ln for ln in text.splitlines() if not re.match(r"\s*autoballoon\s*=", ln)]
    wanted = "\n".join([*lines, 'autoballoon="off"']) + "\n"
    if text == wanted:
        ctx.log.debug("already done", what=f'{XL_CONF} autoballoon="off"')
        return
    ctx.host.write_file(XL_CONF, wanted)


def check_platform(ctx: Context) -> None:
    """What only the running toolstack can tell: IOMMU, PVH support, dom0_mem."""
    host = ctx.host
    info = Xl(host, ctx.remaining(ctx.config.host.command_timeout)).info()
    if info is None:
        host.refuse(OrchestratorError(
            "`xl info` failed: the platform's capabilities are unknown",
            hint="see the xenstored and xen-init-dom0 lines above",
        ))
        return
    caps = info.get("virt_caps", "").split()
    wants_pci = any(d.pci for d in ctx.config.domains)
    if wants_pci and "pv_directio" not in caps:
        host.refuse(OrchestratorError(
            f"PCI passthrough is requested but there is no IOMMU (virt_caps: "
            f"{' '.join(caps) or 'none'})",
            hint="enable VT-d/AMD-Vi in the firmware and iommu=on on Xen's command line",
        ))
    pvh = [d.name for d in ctx.config.domains if d.type == "pvh"]
    is_are = "is" if len(pvh) == 1 else "are"
    if pvh and "hvm" not in caps:
        host.refuse(OrchestratorError(
            f"{', '.join(pvh)} {is_are} PVH but this host cannot run HVM/PVH guests "
            f"(virt_caps: {' '.join(caps) or 'none'})",
            hint="enable VT-x/AMD-V (and EPT/NPT) or use type = \"pv\"",
        ))
    elif pvh and "hap" not in caps and "shadow" not in caps:
        # Debian builds Xen without shadow paging: no HAP means `xl create` fails with
        # "neither hap nor shadow paging available" (XEN-LAB.md, "PVH guests under TCG")
        host.refuse(OrchestratorError(
            f"{', '.join(pvh)} {is_are} PVH but Xen has neither HAP nor shadow paging here "
            f"(virt_caps: {' '.join(caps)})",
            hint="use a CPU with EPT/NPT (under QEMU: -cpu ...,+svm,+npt) or type = \"pv\"",
        ))
    cmdline = info.get("xen_commandline", "")
    for warning in dom0_mem_warnings(cmdline):
        ctx.state.warnings.append(warning)
        ctx.log.warning("warning", text=warning)
    mem = re.search(r"(?:^|\s)dom0_mem=(\S+)", cmdline)
    ctx.log.info("check", check="platform", detail={"virt_caps": caps}, result=(
        f"{'IOMMU' if 'pv_directio' in caps else 'no IOMMU'}, "
        f"{'HVM/PVH' if 'hvm' in caps else 'no HVM/PVH'}, "
        f"dom0_mem={mem[1] if mem else '(unset)'}"))


def dom0_mem_warnings(xen_cmdline: str) -> list[str]:
    """dom0_mem without max: lets dom0's struct pages cover all RAM (seed 001, Problem 4)."""
    match = re.search(r"(?:^|\s)dom0_mem=(\S+)", xen_cmdline)
    if match is None:
        return ["Xen's command line has no dom0_mem=: xl may balloon dom0; "
                "set dom0_mem=<size>,max:<size>"]
    if "max:" not in match[1]:
        return [f"dom0_mem={match[1]} has no max: - on a large machine dom0 spends its "
                f"memory on struct pages; use dom0_mem={match[1]},max:{match[1]}"]
    return []
