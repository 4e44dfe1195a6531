"""fetch-images: bring dom0's NIC up and fetch every image, strictly, before any handoff.

If this step fails, the handoff never runs and dom0 keeps its NIC (seed 000: "If the
fetch fails, the script aborts and dom0 keeps its NIC as a fallback").
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from orchestrator.context import Context
from orchestrator.errors import FetchError, OrchestratorError
from orchestrator.steps.preflight import pci_driver
from orchestrator.units import Image, NicConfig


def needs_tls(ctx: Context) -> bool:
    return any(image.url.startswith("https:") for domain in ctx.config.domains
               for image in domain.images)


def nic_up_argvs(nic: NicConfig) -> list[list[str]]:
    """The commands that give dom0's NIC its configured address and route."""
    if nic.address == "dhcp":
        return [["ip", "link", "set", nic.interface, "up"],
                ["udhcpc", "-i", nic.interface, "-n", "-q", "-t", "3", "-T", "2"]]
    argvs = [["ip", "link", "set", nic.interface, "up"],
             ["ip", "addr", "add", nic.address, "dev", nic.interface]]
    if nic.gateway:
        argvs.append(["ip", "route", "replace", "default", "via", nic.gateway,
                      "dev", nic.interface])
    return argvs


def parse_inet_addresses(ip_addr_show: str) -> list[str]:
    """`ip addr show dev X` (iproute2 or busybox) -> ["10.0.2.15/24", ...]."""
    out = []
    for line in ip_addr_show.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("inet", "inet6"):
            out.append(words[1])
    return out


def nic_has_address(ctx: Context, nic: NicConfig) -> bool:
    result = ctx.host.query(["ip", "addr", "show", "dev", nic.interface])
    if not result.ok:
        return False
    addresses = parse_inet_addresses(result.stdout)
    if nic.address == "dhcp":
        return any(":" not in a for a in addresses)
    return nic.address in addresses


def bring_nic_up(ctx: Context, nic: NicConfig) -> None:
    if nic_has_address(ctx, nic):
        ctx.log.info("already done", what=f"{nic.interface} has {nic.address}")
        return
    timeout = ctx.remaining(ctx.config.host.command_timeout)
    for argv in nic_up_argvs(nic):
        ctx.host.run(argv, timeout=timeout,
                     hint=f"check nic.interface/nic.address in {ctx.config.host.source}")


def fetch_images(ctx: Context) -> None:
    cfg = ctx.config.host
    wanted = []
    for image, domain in ctx.config.images():  # each distinct image once
        dest = f"{cfg.image_dir}/{image.file_name}"
        if ctx.host.file_matches(dest, image.sha256, image.size):
            ctx.log.info("already done", what=f"{dest} (sha256 matches)")
            ctx.state.images[image.file_name] = dest
        else:
            wanted.append((domain, image, dest))
    if not wanted:
        return  # nothing to fetch: dom0's NIC is not needed (it may be net-vm's already)
    if cfg.nic is not None and not _through_driver_domain(ctx, cfg.nic):
        _nic_still_ours(ctx, cfg.nic)
        bring_nic_up(ctx, cfg.nic)
    # One deadline for every fetch and every phase of each (issue 10: a server that sent
    # a header byte a second outlived both deadlines when only each read was timed).
    fetch_ends = time.monotonic() + cfg.fetch_deadline
    if fetch_ends <= ctx.deadline:
        deadline = FetchDeadline(fetch_ends, f"build_server.deadline of {cfg.fetch_deadline:g} s")
    else:
        deadline = FetchDeadline(ctx.deadline, f"the boot deadline of {cfg.boot_deadline:g} s "
                                 f"(deadlines.boot)")
    for domain, image, dest in wanted:
        _fetch_one(ctx, image, dest, deadline, domain.source)
        ctx.state.images[image.file_name] = dest


def _through_driver_domain(ctx: Context, nic: NicConfig) -> bool:
    """After the handoff with `after_handoff = "vif"`: dom0 fetches through its vif (the
    driver domain routes it), if the vif has dom0's address."""
    if nic.after_handoff != "vif" or pci_driver(ctx, nic.bdf) != "pciback":
        return False
    from orchestrator.dom0net import interface_with_mac, vif_mac

    interface = interface_with_mac(ctx, vif_mac(nic))
    if interface is None:
        return False
    import dataclasses

    through = nic_has_address(ctx, dataclasses.replace(nic, interface=interface))
    owner = ctx.config.passthrough().get(nic.bdf)
    if through:
        ctx.log.info("note", text=f"fetching through dom0's vif {interface} (the NIC is "
                     f"{owner.name if owner else 'no domain'}'s)")
    return through


@dataclass(frozen=True)
class FetchDeadline:
    at: float  # time.monotonic()
    what: str  # which setting it comes from, for the console

    def passed(self) -> bool:
        return time.monotonic() >= self.at


def _nic_still_ours(ctx: Context, nic: NicConfig) -> None:
    """A run earlier in this boot may have handed the NIC over already."""
    if pci_driver(ctx, nic.bdf) == "pciback":
        driver = ctx.state.original_drivers.get(nic.bdf) or "<its driver>"
        raise OrchestratorError(
            f"images are missing but dom0's NIC {nic.bdf} is already on pciback (handed "
            f"over by an earlier run), so dom0 cannot fetch them",
            hint=f"give it back (echo {nic.bdf} > /sys/bus/pci/drivers/pciback/unbind; echo "
            f"{nic.bdf} > /sys/bus/pci/drivers/{driver}/bind) and re-run, or reboot",
        )


def _fetch_one(ctx: Context, image: Image, dest: str, deadline: FetchDeadline,
               unit: str) -> None:
    from tenacity import (
        RetryCallState,
        RetryError,
        Retrying,
        retry_if_exception,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential,
    )

    cfg = ctx.config.host
    ctx.log.info("fetch", url=image.url, dry_run=ctx.host.dry_run)
    ctx.log.info("fetch expect", path=dest, size=image.size)
    ctx.log.info("fetch sha256", sha256=image.sha256)
    ctx.remaining(cfg.request_timeout)  # the boot deadline has not passed yet
    attempt_no = 0
    backoff = wait_exponential(multiplier=0.5, max=8)

    def one_attempt() -> None:
        nonlocal attempt_no
        attempt_no += 1
        try:
            ctx.host.download(image, dest, timeout=cfg.request_timeout, deadline=deadline.at,
                              tls=needs_tls(ctx))
        except FetchError as exc:
            ctx.log.warning("fetch attempt failed", url=image.url, attempt=attempt_no,
                            attempts=cfg.fetch_attempts, error=exc.message)
            raise

    def pause(state: RetryCallState) -> float:  # never sleep past the deadline
        return max(0.0, min(backoff(state), deadline.at - time.monotonic()))

    try:
        for attempt in Retrying(
            # stop_after_delay counts from now, the first attempt: it ends at deadline.at
            stop=stop_after_attempt(cfg.fetch_attempts)
            | stop_after_delay(max(0.0, deadline.at - time.monotonic())),
            wait=pause,
            retry=retry_if_exception(lambda e: isinstance(e, FetchError) and e.retryable),
            reraise=False,
        ):
            with attempt:
                one_attempt()
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise _failed(ctx, image, dest, unit, attempt_no, last, deadline) from None
    except FetchError as exc:  # not retryable: the first failure is the answer
        raise _failed(ctx, image, dest, unit, attempt_no, exc, deadline) from None


def _failed(ctx: Context, image: Image, dest: str, unit: str, attempts: int,
            error: BaseException | None, deadline: FetchDeadline) -> OrchestratorError:
    detail = getattr(error, "message", str(error))
    late = f"; {deadline.what} ended it" if deadline.passed() else ""
    own_hint = error.hint if isinstance(error, OrchestratorError) else None
    return OrchestratorError(
        f"fetching {image.url} failed after {attempts} attempt"
        f"{'s' if attempts != 1 else ''}: {detail}{late}; no file was written to {dest}",
        hint=own_hint or f"check that the build server is up and serves this file with the "
        f"sha256 and size pinned in {unit}; dom0 keeps its NIC, re-run orchestrate when it "
        f"is fixed",
    )
