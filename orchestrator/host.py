"""Host: the only layer that touches the system (STYLE.md, "Layers").

Every path is joined onto `root` (`/` on a dom0, a temp tree in the sandbox tests), every
program runs through `query()` (reads, also run in a dry run) or `run()` (changes), with
an argument list and a timeout, never a shell string.

Its dry-run twin is DryRunHost (orchestrator/dryrun.py): same reads, every mutation a
"would ..." line.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.errors import CommandFailed, OrchestratorError

if TYPE_CHECKING:
    from orchestrator.units import Image
    from orchestrator.xenstore import Xenstore

T = TypeVar("T")

# The places a toolstack puts its programs on the distributions we boot from; tried
# after PATH (Debian keeps xl and xenstored in /usr/lib/xen-<ver>/bin).
DEFAULT_TOOL_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Host:
    dry_run = False

    def __init__(
        self,
        root: str = "/",
        log: Any = None,
        tools_path: Sequence[str] = (),
        command_timeout: float = 30.0,
    ) -> None:
        from orchestrator.log import get_logger

        self.root = Path(root)
        self.log = log or get_logger()
        self.command_timeout = command_timeout
        # every program run, in order: {program, argv, rc, seconds} (state.json "commands")
        self.executed: list[dict[str, Any]] = []
        self._unsaved: set[str] = set()  # state files whose write failed (said once)
        extra = [str(self.path(p)) for p in tools_path]
        self.search_path = os.pathsep.join(
            [*extra, os.environ.get("PATH", ""), *DEFAULT_TOOL_DIRS]
        )

    # ---------------------------------------------------------------- paths and reads

    def path(self, p: str | Path) -> Path:
        """`/proc/misc` -> `<root>/proc/misc`."""
        return self.root / str(p).lstrip("/")

    def read_text(self, p: str | Path) -> str | None:
        try:
            return self.path(p).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, p: str | Path) -> bool:
        return os.path.lexists(self.path(p))

    def listdir(self, p: str | Path) -> list[str]:
        try:
            return sorted(os.listdir(self.path(p)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def readlink(self, p: str | Path) -> str | None:
        try:
            return os.readlink(self.path(p))
        except (FileNotFoundError, OSError):
            return None

    def char_device(self, p: str | Path) -> tuple[int, int] | str | None:
        """(major, minor) of a char device, None if absent, or what else is there."""
        try:
            st = os.lstat(self.path(p))
        except FileNotFoundError:
            return None
        if stat.S_ISCHR(st.st_mode):
            return (os.major(st.st_rdev), os.minor(st.st_rdev))
        return "a directory" if stat.S_ISDIR(st.st_mode) else "not a character device"

    def free_bytes(self, p: str | Path) -> int:
        """Free space of the filesystem that holds p (or its nearest existing parent)."""
        target = self.path(p)
        while not target.exists() and target != target.parent:
            target = target.parent
        st = os.statvfs(target)
        return st.f_bavail * st.f_frsize

    def file_matches(self, p: str, sha256: str, size: int) -> bool:
        """True if p holds exactly the pinned bytes (so it is not fetched again)."""
        import hashlib

        try:
            path = self.path(p)
            if path.stat().st_size != size:
                return False
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 18), b""):
                    digest.update(chunk)
            return digest.hexdigest() == sha256
        except OSError:
            return False

    def which(self, program: str) -> str | None:
        return shutil.which(program, path=self.search_path)

    def pid_alive(self, pid: int) -> bool:
        import psutil

        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def query(self, argv: Sequence[str], timeout: float | None = None) -> Result:
        """Run a program that only reads (xl info, xl list, ip addr show)."""
        return self._exec(list(argv), timeout)

    def outcome(self, produce: Callable[[], T], placeholder: T) -> T:
        """A value only a real boot can know; a dry run gets the placeholder."""
        return produce()

    def parallelism(self, tasks: int) -> int:
        """How many domains may be brought up at once."""
        return max(1, tasks)

    def refuse(self, error: OrchestratorError) -> None:
        """A precondition does not hold: stop the boot (a dry run says so and goes on)."""
        raise error

    def explain(self, text: str) -> None:
        """Detail a dry run shows in full and a boot only with --debug (xl configs,
        rollback plans)."""
        self.log.debug("note", text=text)

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float) -> bool:
        """Poll check() with bounded exponential backoff until it holds or timeout."""
        from tenacity import RetryError, Retrying, stop_after_delay, wait_exponential

        try:
            for attempt in Retrying(stop=stop_after_delay(timeout),
                                    wait=wait_exponential(multiplier=0.05, max=0.5)):
                with attempt:
                    if not check():
                        raise _NotYet(what)
        except RetryError:
            return False
        return True

    # ---------------------------------------------------------------- mutations

    def action(self, text: str, **fields: Any) -> None:
        self.log.info("action", text=text, dry_run=self.dry_run, **fields)

    def load_module(self, name: str) -> None:
        self.action(f"modprobe {name}")
        self.run(["modprobe", name], quiet=True,
                 hint=f"is {name}.ko in the image's module closure (initramfs-hooks)?")

    def make_dirs(self, p: str, mode: int = 0o755) -> None:
        if self.path(p).is_dir():
            return
        self.action(f"mkdir -p {p}")
        self.path(p).mkdir(mode=mode, parents=True, exist_ok=True)

    def mknod_char(self, p: str, major: int, minor: int, mode: int) -> None:
        self.action(f"mknod {p} c {major} {minor} (mode {mode:04o})")
        os.mknod(self.path(p), stat.S_IFCHR | mode, os.makedev(major, minor))
        os.chmod(self.path(p), mode)

    def mount(self, fstype: str, source: str, target: str) -> None:
        self.action(f"mount -t {fstype} {source} {target}")
        self.run(["mount", "-t", fstype, source, str(self.path(target))], quiet=True)

    def write_file(self, p: str, text: str, mode: int = 0o644) -> None:
        """Atomically replace a file the boot needs (an xl config, xl.conf): temp file
        beside it, every write checked, fsync, rename; OrchestratorError naming p if not."""
        self.action(f"write {p} ({len(text)} bytes)")
        self.save_file(p, text, mode)

    def save_file(self, p: str, text: str, mode: int = 0o644) -> None:
        """Like write_file, without a console line. On any failure (a full tmpfs cut
        state.json to 4096 bytes once, issue 10) the old file is left as it was, the temp
        file is removed, and an OrchestratorError names p and what to do."""
        target = self.path(p)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
            try:
                write_all(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            with suppress(OSError):
                tmp.unlink()
            parent = str(Path(p).parent)
            raise OrchestratorError(
                f"writing {p} failed: {exc.strerror or exc}; the old file is unchanged",
                hint=f"make room on the filesystem of {parent} (df -h {parent}; a tmpfs "
                f"takes size= on remount) and re-run orchestrate",
            ) from None

    def write_sysfs(self, p: str, value: str) -> None:
        """One write to a kernel attribute; the kernel's refusal is an OSError."""
        self.action(f"write {p} <- {value.strip() or '(empty)'}")
        try:
            # O_NONBLOCK: a sysfs attribute never blocks; a stand-in FIFO with no kernel
            # behind it fails at once (ENXIO) instead of hanging the boot.
            fd = os.open(self.path(p), os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise OrchestratorError(
                f"writing {value} to {p} failed: {exc.strerror or exc}",
            ) from exc

    def run(
        self,
        argv: Sequence[str],
        timeout: float | None = None,
        check: bool = True,
        hint: str | None = None,
        quiet: bool = False,
    ) -> Result:
        """Run a program that changes the system; raise CommandFailed unless check=False."""
        if not quiet:
            self.action(" ".join(argv))
        result = self._exec(list(argv), timeout)
        if check and not result.ok:
            raise CommandFailed(result.argv, result.returncode, result.stderr, hint)
        return result

    def save_state(self, p: str, text: str) -> None:
        """The state file is a record for `orchestrate status` and a re-run, never a
        reason to stop a boot: a failed write is said once (per path) and the boot goes
        on; the last state.json that was written stays as it was."""
        try:
            self.save_file(p, text)
        except OrchestratorError as exc:
            if p in self._unsaved:
                return
            self._unsaved.add(p)
            parent = str(Path(p).parent)
            self.log.warning("warning", text=f"{exc.message}; the boot goes on without it "
                             f"(make room in {parent}: df -h {parent})")

    def terminate(self, pid: int, what: str) -> None:
        """SIGTERM one process (xl's monitor of a domain we give up on)."""
        self.action(f"kill {what} (pid {pid})")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # it ended on its own meanwhile

    def try_lock(self, p: str) -> int | None:
        """An exclusive flock on p (created if needed): the file descriptor, or None while
        another orchestrate holds it. One boot, re-run, follower step or shutdown acts at a
        time; the lock goes with the process, so a killed one never leaves it held."""
        import fcntl

        target = self.path(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def unlock(self, fd: int) -> None:
        os.close(fd)  # closing the last descriptor releases the flock

    def download(self, image: Image, dest: str, timeout: float, deadline: float,
                 tls: bool = False) -> None:
        """One strict HTTP attempt into dest (temp file, verify, fsync, rename): the
        response head within timeout s, no body stall longer than that, all of it by
        deadline (time.monotonic()). tls: some image of this boot is https:// (else
        libssl is never loaded)."""
        from contextlib import nullcontext

        from orchestrator.footprint import without_tls

        with nullcontext() if tls else without_tls():
            from orchestrator.download import download

        download(image.url, self.path(dest), image.sha256, image.size, timeout, deadline)

    def xenstore(self, timeout: float) -> Xenstore:
        from orchestrator.xenstore import PyxsXenstore

        return PyxsXenstore(self.xenstored_socket(), timeout, self.log)

    def xenstored_socket(self) -> str:
        override = os.environ.get("XENSTORED_PATH")
        return override or str(self.path("/var/run/xenstored/socket"))

    # ---------------------------------------------------------------- processes

    def _exec(self, argv: list[str], timeout: float | None) -> Result:
        timeout = self.command_timeout if timeout is None else timeout
        env = dict(os.environ, PATH=self.search_path)
        program = self.which(argv[0]) or argv[0]
        self.log.debug("exec", argv=argv, program=program, timeout=timeout)
        started = time.monotonic()
        rc: int | None = None  # None: killed at the timeout
        try:
            result = self._spawn(argv, program, env, timeout)
            rc = result.returncode
            return result
        finally:
            self.executed.append({"program": program, "argv": argv, "rc": rc,
                                  "seconds": round(time.monotonic() - started, 3)})

    def _spawn(self, argv: list[str], program: str, env: dict[str, str],
               timeout: float) -> Result:
        try:
            proc = subprocess.Popen(
                [program, *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                # its own session: on a timeout we kill the whole group (xl forks helpers)
                start_new_session=True,
            )
        except FileNotFoundError:
            return Result(argv, 127, "", f"{argv[0]}: command not found in {self.search_path}")
        except PermissionError as exc:
            return Result(argv, 126, "", f"{argv[0]}: {exc.strerror}")
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            raise OrchestratorError(
                f"`{' '.join(argv)}` did not finish within {timeout:g} s (killed)",
                hint="see the console above for what it was waiting on",
            ) from None
        # Bytes in, text out with U+FFFD for what is not UTF-8: a domain name or a Xen
        # command line in another encoding once made `xl list`/`xl info` an internal
        # error (issue 10); the parsers compare with our ASCII names and keys anyway.
        return Result(argv, proc.returncode, out.decode("utf-8", "replace"),
                      err.decode("utf-8", "replace"))

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class _NotYet(Exception):
    pass


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of data is written: a short write (a filesystem that is
    nearly full) is retried, and the next write then says why (ENOSPC)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, f"write made no progress with {len(view)} bytes left")
        view = view[written:]
