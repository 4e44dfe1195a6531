"""A real tmpfs of a given size, mounted for one test and always unmounted after (the
tests run as root). What a full /run looks like to orchestrate: short writes, ENOSPC."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PAGE = 4096


@contextmanager
def tiny_tmpfs(where: Path, size: int) -> Iterator[Path]:
    """Mount a tmpfs of `size` bytes (rounded up to pages by the kernel) at `where`."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def fill(directory: Path, leave: int) -> Path:
    """Fill the tmpfs that holds directory until only `leave` bytes are free."""
    import os

    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    filler = directory / ".filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler
