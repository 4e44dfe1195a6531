"""Keep libssl, and asyncio, out of a process that uses neither.

asyncio: structlog imports it for its async loggers only (`await
asyncio.get_running_loop()` inside async methods; nothing at import time), and orchestrate
logs synchronously. Loading it costs about 2.7 MiB of RSS (130 modules: selectors,
concurrent.futures' process pool, ...), which a resident follower (`orchestrate watch`)
carries for its whole life. Imported under ``without_asyncio()``, structlog binds a stub
that says why if it is ever used; a later plain ``import asyncio`` gets the real one.

ssl:

structlog imports asyncio, and asyncio, http.client and urllib.request import `ssl` if
they can; all three treat it as optional (``try: import ssl / except ImportError``).
Loading ssl costs 1.4 MiB of peak RSS in a dry run (26.1 -> 24.6 MiB VmHWM) and 1.1 MiB
in a boot (hashlib maps libcrypto anyway), and nothing here uses TLS unless an image URL
is https://. Imported under
``without_tls()`` they bind "no ssl"; a later plain ``import ssl`` still works.
"""

from __future__ import annotations

import sys
import types
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


class _AsyncioKeptOut(types.ModuleType):
    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"asyncio.{name}: asyncio was kept out of orchestrate at import "
                           "(orchestrator/footprint.py); log synchronously")


@contextmanager
def without_asyncio() -> Iterator[None]:
    """Imports inside get a stub `asyncio` (no-op if asyncio is already loaded)."""
    if "asyncio" in sys.modules:
        yield
        return
    sys.modules["asyncio"] = _AsyncioKeptOut("asyncio")
    try:
        yield
    finally:
        if isinstance(sys.modules.get("asyncio"), _AsyncioKeptOut):
            del sys.modules["asyncio"]
