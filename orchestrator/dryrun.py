"""DryRunHost: reads the real system exactly like Host, and turns every mutation into one
"would ..." line: same steps, same code path, nothing changed (DESIGN.md, "One picture").
Values only a real boot can know come back as placeholders (`outcome()`), e.g.
`<domid:net-vm>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from orchestrator.errors import OrchestratorError
from orchestrator.host import Host, Result

if TYPE_CHECKING:
    from orchestrator.units import Image
    from orchestrator.xenstore import Xenstore

T = TypeVar("T")


class DryRunHost(Host):
    """Reads for real, records every mutation as a "would ..." line, changes nothing."""

    dry_run = True

    def refuse(self, error: OrchestratorError) -> None:
        self.log.warning("warning", text=f"a boot would stop here: {error.message}")
        if error.hint:
            self.log.warning("hint", hint=error.hint)

    def explain(self, text: str) -> None:
        self.log.info("note", text=text)

    def parallelism(self, tasks: int) -> int:
        return 1  # "would" lines in one stable order

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float) -> bool:
        self.action(f"wait up to {timeout:g} s until {what}")
        return True

    def outcome(self, produce: Callable[[], T], placeholder: T) -> T:
        return placeholder

    def load_module(self, name: str) -> None:
        self.action(f"modprobe {name}")

    def make_dirs(self, p: str, mode: int = 0o755) -> None:
        if not self.path(p).is_dir():
            self.action(f"mkdir -p {p}")

    def mknod_char(self, p: str, major: int, minor: int, mode: int) -> None:
        self.action(f"mknod {p} c {major} {minor} (mode {mode:04o})")

    def mount(self, fstype: str, source: str, target: str) -> None:
        self.action(f"mount -t {fstype} {source} {target}")

    def write_file(self, p: str, text: str, mode: int = 0o644) -> None:
        self.action(f"write {p} ({len(text)} bytes)")

    def save_file(self, p: str, text: str, mode: int = 0o644) -> None:
        pass

    def write_sysfs(self, p: str, value: str) -> None:
        self.action(f"write {p} <- {value.strip() or '(empty)'}")

    def run(
        self,
        argv: Sequence[str],
        timeout: float | None = None,
        check: bool = True,
        hint: str | None = None,
        quiet: bool = False,
    ) -> Result:
        if not quiet:
            self.action(" ".join(argv))
        return Result(list(argv), 0, "", "")

    def save_state(self, p: str, text: str) -> None:
        pass

    def terminate(self, pid: int, what: str) -> None:
        self.action(f"kill {what} (pid {pid})")

    def try_lock(self, p: str) -> int | None:
        return -1  # a dry run changes nothing: it needs no lock

    def unlock(self, fd: int) -> None:
        pass

    def download(self, image: Image, dest: str, timeout: float, deadline: float,
                 tls: bool = False) -> None:
        pass  # the fetch step logs the request and the expected hash and size

    def xenstore(self, timeout: float) -> Xenstore:
        from orchestrator.xenstore_dryrun import RecordingXenstore

        return RecordingXenstore(self.log)
