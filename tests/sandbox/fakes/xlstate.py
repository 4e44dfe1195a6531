"""Shared state of the sandbox's Xen toolstack stand-ins (``bin/xl``, ``bin/xenstored``,
``bin/xenconsoled``, ``bin/xen-init-dom0``), importable from tests. Stdlib only.

Everything lives in one directory, ``$XL_STANDIN`` (default ``$SANDBOX_ROOT/run/fake-xl``):

- ``state.json``: the "hypervisor" (which domains exist, their state, the next domid) and
  every background process a stand-in started (xl monitors, xenstored, xenconsoled), each
  with its /proc start time so that a recycled pid is never signalled.
  Read-modify-write under an flock on ``state.lock``.
- ``calls.jsonl``: one JSON argv per stand-in invocation, ``["xl", "create", "-p", ...]``.
- ``behaviour.json`` (written by tests, optional): see ``bin/xl``.
- ``xenstored.json`` (optional): ``{"socket_delay": 0.3, "mute": false}`` for ``bin/xenstored``.
- ``xenconsoled.json`` (optional): ``{"pidfile_delay": 0.0}`` for ``bin/xenconsoled``.

Tests call ``kill_all(dir)`` at teardown to end every process the stand-ins started. No
background process of a stand-in lives longer than ``lifetime()``: 120 s, or
``$XL_STANDIN_LIFETIME`` seconds (set it for a test that idles longer, e.g. a CPU
measurement over minutes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

STATE = "state.json"
LOCK = "state.lock"
CALLS = "calls.jsonl"
BEHAVIOUR = "behaviour.json"
XENSTORED_SETTINGS = "xenstored.json"
XENCONSOLED_SETTINGS = "xenconsoled.json"
LIFETIME = 120.0  # default lifetime of a stand-in's background process (seconds)
# libxl_shutdown_reason (tools/libs/light/libxl_types.idl): the code is the index
SHUTDOWN_REASONS = ("poweroff", "reboot", "suspend", "crash", "watchdog", "soft_reset")

State = dict[str, Any]


def lifetime() -> float:
    """Seconds a stand-in's background process may live: ``$XL_STANDIN_LIFETIME`` or 120."""
    try:
        return max(1.0, float(os.environ.get("XL_STANDIN_LIFETIME", LIFETIME)))
    except ValueError:
        return LIFETIME


def standin_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XL_STANDIN``, else ``$SANDBOX_ROOT/run/fake-xl``; created if missing."""
    env = os.environ if env is None else env
    if env.get("XL_STANDIN"):
        path = Path(env["XL_STANDIN"])
    elif env.get("SANDBOX_ROOT"):
        path = Path(env["SANDBOX_ROOT"]) / "run" / "fake-xl"
    else:
        raise RuntimeError("neither XL_STANDIN nor SANDBOX_ROOT is set")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _empty() -> State:
    return {"next_domid": 1, "domains": {}, "processes": [], "booted_at": time.time()}


def _load(directory: Path) -> State:
    try:
        data: State = json.loads((directory / STATE).read_text())
    except FileNotFoundError:
        return _empty()
    # A destroyed domain whose memory is still held (a zombie, "d" in `xl list`) goes away
    # by itself once its time is up: the hypervisor needs nobody to ask.
    now = time.time()
    data["domains"] = {k: v for k, v in data["domains"].items()
                       if v.get("state") != "dying" or float(v.get("dying_until", 0)) > now}
    return data


@contextlib.contextmanager
def locked_state(directory: Path) -> Iterator[State]:
    """Read-modify-write the state under an exclusive flock; written back on success."""
    directory = Path(directory)
    with open(directory / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _load(directory)
        yield data
        tmp = directory / f".{STATE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, directory / STATE)


def read_state(directory: Path) -> State:
    directory = Path(directory)
    if not (directory / STATE).exists():
        return _empty()
    with open(directory / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        return _load(directory)


def domains(directory: Path) -> dict[int, dict[str, Any]]:
    """The domains that exist now (dom0 is implicit and not listed): domid -> record with
    ``name``, ``uuid``, ``state`` ("paused" | "running" | "shutdown" | "dying"),
    ``shutdown_reason`` (one of SHUTDOWN_REASONS while shut down), ``boot`` (1, then +1 at
    each restart by xl's monitor), ``booted`` (the guest's userspace is up), ``config`` (the
    stored domain config, hot-plugged vifs included), ``pci``, ``sysrq`` (keys the guest
    handled), ``write_errors``, ``monitor`` ({"pid", "start", "is_monitor"} or None)."""
    return {int(k): v for k, v in read_state(directory)["domains"].items()}


def domid_of(directory: Path, name: str) -> int | None:
    for domid, record in domains(directory).items():
        if record.get("name") == name:
            return domid
    return None


def record_call(directory: Path, argv: list[str]) -> None:
    line = json.dumps([os.path.basename(argv[0]), *argv[1:]]) + "\n"
    with open(Path(directory) / CALLS, "a") as f:
        f.write(line)


def calls(directory: Path) -> list[list[str]]:
    path = Path(directory) / CALLS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def load_json(directory: Path, name: str) -> dict[str, Any]:
    path = Path(directory) / name
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# ---- processes ---------------------------------------------------------------------------
def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int, start: int | None) -> bool:
    """Is ``pid`` still the process that had ``start`` (not a recycled pid, not a zombie)?"""
    now = start_time(pid)
    return now is not None and (start is None or now == start)


def register_process(directory: Path, kind: str, pid: int, **extra: Any) -> None:
    """Remember a background process (kill_all ends it)."""
    entry = {"kind": kind, "pid": pid, "start": start_time(pid), **extra}
    with locked_state(directory) as state:
        state["processes"] = [p for p in state["processes"] if alive(p["pid"], p["start"])]
        state["processes"].append(entry)


def processes(directory: Path) -> list[dict[str, Any]]:
    """Every recorded background process still alive, once each: xl's monitors (kind
    "monitor", or "fake-guest" when no monitor could start), then the daemons. A monitor
    that sits between two domains (xl's restart) is listed without a domid."""
    state = read_state(directory)
    out: list[dict[str, Any]] = []
    for domid, record in state["domains"].items():
        monitor = record.get("monitor")
        if monitor:
            kind = "monitor" if monitor.get("is_monitor", True) else "fake-guest"
            out.append({"kind": kind, "domid": int(domid), "name": record.get("name"),
                        **monitor})
    seen = {p["pid"] for p in out}
    out += [p for p in state["processes"] if p["pid"] not in seen]
    return [p for p in out if alive(p["pid"], p.get("start"))]


def kick(directory: Path, domid: int) -> None:
    """Tell the process that plays domain ``domid`` that the hypervisor changed its state
    (SIGUSR1; it re-reads state.json): what the scheduler does to a vCPU on unpause."""
    record = read_state(directory)["domains"].get(str(domid))
    monitor = (record or {}).get("monitor")
    if monitor and alive(int(monitor["pid"]), monitor.get("start")):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(monitor["pid"]), signal.SIGUSR1)


def kick_all(directory: Path) -> None:
    """kick() every domain's process (e.g. dom0's kernel gained a driver they stand in for)."""
    for domid in domains(directory):
        kick(directory, domid)


def terminate(pid: int, start: int | None, timeout: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; True if the process is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive(pid, start):
            return True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid, start):
                return True
            time.sleep(0.01)
    return not alive(pid, start)


def kill_all(xl_standin_dir: str | os.PathLike[str], timeout: float = 3.0) -> list[int]:
    """End every monitor and daemon the stand-ins started (by recorded pid and start
    time, never by name). Returns the pids that were still running."""
    directory = Path(xl_standin_dir)
    if not directory.exists():
        return []
    found = processes(directory)
    for proc in found:
        terminate(proc["pid"], proc.get("start"), timeout)
    return [p["pid"] for p in found]
