"""Keep libssl out of a process that speaks no TLS.

structlog imports asyncio, and asyncio, http.client and urllib.request import `ssl` if
they can; all three treat it as optional (``try: import ssl / except ImportError``).
Loading ssl costs 1.4 MiB of peak RSS in a dry run (26.1 -> 24.6 MiB VmHWM) and 1.1 MiB
in a boot (hashlib maps libcrypto anyway), and nothing here uses TLS unless an image URL
is https://. Imported under
``without_tls()`` they bind "no ssl"; a later plain ``import ssl`` still works.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without_tls() -> Iterator[None]:
    """Imports inside see `ssl` as unavailable (no-op if ssl is already loaded)."""
    if "ssl" in sys.modules:
        yield
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # import ssl -> ImportError
    try:
        yield
    finally:
        if sys.modules.get("ssl", 0) is None:
            del sys.modules["ssl"]
