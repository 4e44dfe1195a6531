"""The xenstore a dry run uses: reads find nothing, writes and waits become "would" lines."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from orchestrator.ipc import XsNode


class RecordingXenstore:
    """A dry run's xenstore: reads find nothing, writes and waits become "would" lines."""

    def __init__(self, log: Any) -> None:
        self.log = log

    def read(self, path: str) -> str | None:
        return None

    def read_bytes(self, path: str) -> bytes | None:
        return None

    def directory(self, path: str) -> list[str]:
        return []

    def get_perms(self, path: str) -> list[str] | None:
        return None

    def apply(self, nodes: list[XsNode], remove: Iterable[str] = ()) -> list[str]:
        for path in remove:
            self.log.info("xenstore node", op="rm", path=path, value_text="", perms="-",
                          dry_run=True)
        for node in nodes:
            self.log.info(
                "xenstore node",
                op="write" if node.value is not None else "mkdir",
                path=node.path,
                value_text=f" = {node.value}" if node.value is not None else "",
                perms=node.perms_text(),
                dry_run=True,
            )
        return []

    def wait(
        self,
        watch: list[str],
        ready: Callable[[str | None], str | None],
        timeout: float,
        what: str,
        tick: float = 2.0,
    ) -> str:
        self.log.info("action", text=f"wait up to {timeout:g} s for {what}", watch=watch,
                      dry_run=True)
        return "dry run"

    def close(self) -> None:
        pass
