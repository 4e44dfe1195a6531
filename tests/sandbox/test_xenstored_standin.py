"""The xenstored stand-in is faithful: driven by Debian's real xenstore-utils (libxenstore
4.17) and by pyxs 0.4.1, it answers as C xenstored 4.17 does."""

from __future__ import annotations

import errno
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyxs import Client
from pyxs._internal import Op as PyxsOp
from pyxs.exceptions import PyXSError

from tests.sandbox.fakes.xenstored import HEADER, FakeXenstored, Op

FAKE = Path(__file__).parent / "fakes" / "xenstored.py"
CLI_TOOLS = Path("/usr/bin")
needs_cli = pytest.mark.skipif(
    not (CLI_TOOLS / "xenstore-read").exists(), reason="Debian xenstore-utils not installed"
)


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Short path: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="xsd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def xsd(sockdir: Path) -> Iterator[FakeXenstored]:
    with FakeXenstored(sockdir / "socket") as fake:
        yield fake


CliRunner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def cli(xsd: FakeXenstored) -> CliRunner:
    """Run `/usr/bin/xenstore-<tool> args...` against the stand-in.

    libxenstore 4.17 (X: tools/xenstore/xs_lib.c xs_daemon_socket) connects to
    $XENSTORED_PATH if set, else $XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket;
    if that fails xs_open() falls back to xs_domain_dev(), which is $XENSTORED_PATH again
    or /dev/xen/xenbus. We set XENSTORED_PATH (pyxs honours the same two variables).
    """
    env = {k: v for k, v in os.environ.items() if k != "XENSTORED_RUNDIR"}
    env["XENSTORED_PATH"] = str(xsd.socket_path)

    def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI_TOOLS / f"xenstore-{tool}"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )

    return run


def as_domain(client: Client, domid: int) -> None:
    """Test-only CONTROL `as-domain`: the connection acts as unprivileged domain `domid`."""
    client.execute_command(PyxsOp.DEBUG, b"as-domain\0", f"{domid}\0".encode())


@pytest.fixture
def connect(xsd: FakeXenstored) -> Iterator[Callable[..., Client]]:
    """connect() -> privileged (dom0) pyxs client; connect(N) -> one acting as domain N."""
    clients: list[Client] = []

    def make(domid: int = 0) -> Client:
        client = Client(unix_socket_path=str(xsd.socket_path))
        client.connect()
        clients.append(client)
        if domid:
            as_domain(client, domid)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def dom0(connect: Callable[..., Client]) -> Client:
    return connect()


def introduce(client: Client, *domids: int) -> None:
    for domid in domids:
        client.introduce_domain(domid, 1000 + domid, 5)


def release(client: Client, domid: int) -> None:
    # pyxs's release_domain() refuses locally unless /proc/xen/capabilities says control_d.
    client.ack(PyxsOp.RELEASE, f"{domid}\0".encode())


def outcome(action: Callable[..., Any], *args: Any) -> str:
    """'ok' or the errno name xenstored answered."""
    try:
        action(*args)
    except PyXSError as err:
        return errno.errorcode[err.args[0]]
    return "ok"


class Raw:
    """A bare wire-protocol client, to look at exact payloads and disconnects."""

    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.req_id = 0
        self.events: list[bytes] = []

    def send(self, op: int, payload: bytes, tx_id: int = 0, length: int | None = None) -> int:
        self.req_id += 1
        size = len(payload) if length is None else length
        self.sock.sendall(HEADER.pack(op, self.req_id, tx_id, size) + payload)
        return self.req_id

    def recv(self) -> tuple[int, int, int, bytes]:
        header = self._exact(HEADER.size)
        op, req_id, tx_id, size = HEADER.unpack(header)
        return op, req_id, tx_id, self._exact(size)

    def call(self, op: int, payload: bytes, tx_id: int = 0) -> tuple[int, bytes]:
        req_id = self.send(op, payload, tx_id)
        while True:
            kind, got_id, got_tx, body = self.recv()
            if kind == Op.WATCH_EVENT:
                self.events.append(body)
                continue
            assert (got_id, got_tx) == (req_id, tx_id)
            return kind, body

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by xenstored")
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(xsd: FakeXenstored) -> Iterator[Raw]:
    client = Raw(xsd.socket_path)
    yield client
    client.close()


# ---- start state and wire protocol ---------------------------------------------------------
def test_initial_tree_is_what_xenstored_setup_structure_creates(xsd: FakeXenstored) -> None:
    assert xsd.snapshot() == {
        "/": {"value": "", "perms": ["n0"]},
        "/tool": {"value": "", "perms": ["n0"]},
        "/tool/xenstored": {"value": "", "perms": ["n0"]},
    }
    assert xsd.introduced == {0}  # dom0 is introduced by xenstored itself


def test_replies_echo_req_id_and_tx_id_and_errors_are_named(raw: Raw) -> None:
    raw.send(Op.READ, b"/nope\0")
    assert raw.recv() == (Op.ERROR, 1, 0, b"ENOENT\0")
    assert raw.call(Op.READ, b"/tool/xenstored\0") == (Op.READ, b"")
    assert raw.call(Op.TRANSACTION_START, b"\0") == (Op.TRANSACTION_START, b"1\0")
    assert raw.call(Op.WRITE, b"/t\0v", tx_id=1) == (Op.WRITE, b"OK\0")
    assert raw.call(Op.READ, b"/t\0", tx_id=7) == (Op.ERROR, b"ENOENT\0")  # unknown tx
    assert raw.call(Op.TRANSACTION_END, b"T\0", tx_id=1) == (Op.TRANSACTION_END, b"OK\0")
    assert raw.call(Op.DIRECTORY, b"/\0") == (Op.DIRECTORY, b"tool\0t\0")
    assert raw.call(Op.GET_DOMAIN_PATH, b"7\0") == (Op.GET_DOMAIN_PATH, b"/local/domain/7\0")
    assert raw.call(Op.SET_TARGET, b"1\x002\0") == (Op.ERROR, b"ENOSYS\0")
    assert raw.call(99, b"") == (Op.ERROR, b"ENOSYS\0")


def test_write_accepts_empty_and_binary_values(raw: Raw) -> None:
    assert raw.call(Op.WRITE, b"/empty\0") == (Op.WRITE, b"OK\0")
    assert raw.call(Op.READ, b"/empty\0") == (Op.READ, b"")
    assert raw.call(Op.WRITE, b"/bin\0a\0b") == (Op.WRITE, b"OK\0")
    assert raw.call(Op.READ, b"/bin\0") == (Op.READ, b"a\0b")
    assert raw.call(Op.WRITE, b"/nonul") == (Op.ERROR, b"EINVAL\0")


@pytest.mark.parametrize(
    "path",
    ["/trailing/", "/double//slash", "/bad.char", "/sp ace", "", "/" + "a" * 2048],
)
def test_invalid_paths_are_einval(raw: Raw, path: str) -> None:
    assert raw.call(Op.READ, path.encode() + b"\0") == (Op.ERROR, b"EINVAL\0")


def test_path_length_limit_counts_only_below_a_domain_home(raw: Raw) -> None:
    long_leaf = "/local/domain/3/" + "a" * 2048
    assert raw.call(Op.WRITE, long_leaf.encode() + b"\0x") == (Op.WRITE, b"OK\0")
    assert raw.call(Op.WRITE, ("/" + "a" * 2047).encode() + b"\0x") == (Op.WRITE, b"OK\0")


def test_payload_over_4096_bytes_disconnects_the_client(raw: Raw) -> None:
    raw.send(Op.WRITE, b"", length=4097)
    with pytest.raises(ConnectionError):
        raw.recv()


def test_directory_part_returns_generation_then_children(raw: Raw) -> None:
    raw.call(Op.WRITE, b"/d/a\0")
    raw.call(Op.WRITE, b"/d/bb\0")
    kind, body = raw.call(Op.DIRECTORY_PART, b"/d\x000\0")
    generation, rest = body.split(b"\0", 1)
    assert kind == Op.DIRECTORY_PART and generation.isdigit() and rest == b"a\0bb\0\0"
    assert raw.call(Op.DIRECTORY_PART, b"/d\x002\0")[1] == generation + b"\0bb\0\0"
    assert raw.call(Op.DIRECTORY_PART, b"/d\x009\0")[1] == generation + b"\0\0"


def test_rm_is_recursive_ok_on_missing_node_enoent_without_parent_einval_on_root(
    raw: Raw, xsd: FakeXenstored
) -> None:
    raw.call(Op.WRITE, b"/a/b/c\0x")
    assert raw.call(Op.RM, b"/a\0") == (Op.RM, b"OK\0")
    assert not any(p.startswith("/a") for p in xsd.snapshot())
    assert raw.call(Op.RM, b"/tool/nothing\0") == (Op.RM, b"OK\0")
    assert raw.call(Op.RM, b"/no/parent\0") == (Op.ERROR, b"ENOENT\0")
    assert raw.call(Op.RM, b"/\0") == (Op.ERROR, b"EINVAL\0")


def test_relative_paths_are_under_the_connection_home(raw: Raw, dom0: Client) -> None:
    assert raw.call(Op.WRITE, b"rel/x\0v") == (Op.WRITE, b"OK\0")
    assert dom0.read(b"/local/domain/0/rel/x") == b"v"
    introduce(dom0, 3)
    dom0.mkdir(b"/local/domain/3/data")
    dom0.set_perms(b"/local/domain/3/data", [b"n3"])
    assert raw.call(Op.CONTROL, b"as-domain\x003\0") == (Op.CONTROL, b"OK\0")
    assert raw.call(Op.WRITE, b"data/k\0v") == (Op.WRITE, b"OK\0")
    assert dom0.read(b"/local/domain/3/data/k") == b"v"


# ---- Debian's real clients (libxenstore 4.17) -----------------------------------------------
@needs_cli
def test_cli_write_then_read_round_trips_value(cli: CliRunner) -> None:
    assert cli("write", "/vm/name", "guest one", "/vm/empty", "").returncode == 0
    assert cli("read", "/vm/name").stdout == "guest one\n"
    assert cli("read", "/vm/empty").stdout == "\n"


@needs_cli
def test_cli_ls_p_shows_each_node_with_its_permissions(cli: CliRunner, dom0: Client) -> None:
    introduce(dom0, 2, 3)
    dom0.write(b"/vm/state", b"up")
    dom0.set_perms(b"/vm/state", [b"n2", b"r3"])
    result = cli("ls", "-p", "/vm")
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[0]
    assert line.startswith('state = "up"') and line.endswith("(n2,r3)")


@needs_cli
def test_cli_chmod_sets_permissions_seen_by_get_perms(cli: CliRunner, dom0: Client) -> None:
    introduce(dom0, 2, 3)
    cli("write", "/vm/key", "v")
    result = cli("chmod", "/vm/key", "n2", "r3", "w9")
    assert result.returncode == 0, result.stderr
    assert dom0.get_perms(b"/vm/key") == [b"n2", b"r3", b"w9"]  # w9: shown though ignored


@needs_cli
def test_cli_chmod_to_unintroduced_owner_fails_with_enoent(cli: CliRunner) -> None:
    cli("write", "/vm/key", "v")
    result = cli("chmod", "/vm/key", "n42")
    assert result.returncode != 0
    assert "No such file or directory" in result.stderr


@needs_cli
def test_cli_rm_removes_the_whole_subtree(cli: CliRunner, xsd: FakeXenstored) -> None:
    cli("write", "/vm/a/b", "1", "/vm/a/c/d", "2", "/vm/keep", "3")
    assert cli("rm", "/vm/a").returncode == 0
    assert [p for p in xsd.snapshot() if p.startswith("/vm")] == ["/vm", "/vm/keep"]
    assert cli("list", "/vm").stdout == "keep\n"


@needs_cli
def test_cli_read_of_missing_key_prints_the_real_message_and_exits_1(cli: CliRunner) -> None:
    result = cli("read", "/no/such/key")
    assert result.returncode == 1
    assert result.stderr == "xenstore-read: couldn't read path /no/such/key\n"


@needs_cli
def test_cli_exists_exit_status_follows_node_presence(cli: CliRunner) -> None:
    cli("write", "/vm/here", "")
    assert cli("exists", "/vm/here").returncode == 0
    assert cli("exists", "/vm/gone").returncode == 1


@needs_cli
def test_cli_relative_path_from_the_socket_is_under_dom0_home(
    cli: CliRunner, xsd: FakeXenstored
) -> None:
    assert cli("write", "name", "Domain-0").returncode == 0
    assert xsd.snapshot()["/local/domain/0/name"]["value"] == "Domain-0"


@needs_cli
def test_cli_also_finds_the_socket_through_xenstored_rundir(
    xsd: FakeXenstored, sockdir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XENSTORED_PATH"}
    env["XENSTORED_RUNDIR"] = str(sockdir)  # the fixture's socket is <sockdir>/socket
    result = subprocess.run(
        [str(CLI_TOOLS / "xenstore-list"), "/tool"], env=env, capture_output=True, text=True
    )
    assert result.stdout == "xenstored\n"


# ---- pyxs: transactions, watches, domains ---------------------------------------------------
def test_transaction_commits_atomically_and_abort_discards(connect: Callable[..., Client]) -> None:
    writer, reader = connect(), connect()
    writer.transaction()
    writer.write(b"/tx/a", b"1")
    assert reader.read(b"/tx/a", b"absent") == b"absent"  # invisible before commit
    assert writer.read(b"/tx/a") == b"1"
    assert writer.commit() is True
    assert reader.read(b"/tx/a") == b"1"
    writer.transaction()
    writer.write(b"/tx/a", b"2")
    writer.rollback()
    assert reader.read(b"/tx/a") == b"1"


def test_transaction_conflict_between_two_clients_gives_eagain(
    connect: Callable[..., Client],
) -> None:
    first, second = connect(), connect()
    first.write(b"/counter", b"0")
    first.transaction()
    second.transaction()
    first.write(b"/counter", str(int(first.read(b"/counter")) + 1).encode())
    second.write(b"/counter", str(int(second.read(b"/counter")) + 1).encode())
    assert first.commit() is True
    assert second.commit() is False  # EAGAIN: /counter changed since it read it
    assert first.read(b"/counter") == b"1"


def test_transaction_conflicts_on_a_node_only_read_and_on_creation(
    connect: Callable[..., Client],
) -> None:
    tx_client, other = connect(), connect()
    other.write(b"/cfg", b"a")
    tx_client.transaction()
    tx_client.read(b"/cfg")
    tx_client.write(b"/out", b"x")
    other.write(b"/cfg", b"b")
    assert tx_client.commit() is False
    tx_client.transaction()
    assert tx_client.read(b"/later", b"none") == b"none"
    other.write(b"/later", b"now")
    assert tx_client.commit() is False


def test_transaction_end_outside_a_transaction_is_enoent(raw: Raw) -> None:
    assert raw.call(Op.TRANSACTION_END, b"T\0") == (Op.ERROR, b"ENOENT\0")
    raw.call(Op.TRANSACTION_START, b"\0")
    assert raw.call(Op.TRANSACTION_START, b"\0", tx_id=1) == (Op.ERROR, b"EBUSY\0")
    assert raw.call(Op.TRANSACTION_END, b"X\0", tx_id=1) == (Op.ERROR, b"EINVAL\0")


def test_watch_fires_once_when_set_then_on_changes_at_or_below(dom0: Client) -> None:
    monitor = dom0.monitor()
    monitor.watch(b"/w", b"tok-w")
    assert monitor.events.get(timeout=2) == (b"/w", b"tok-w")  # immediately, though missing
    dom0.write(b"/w/deep/key", b"1")
    assert monitor.events.get(timeout=2) == (b"/w/deep/key", b"tok-w")
    dom0.write(b"/elsewhere", b"1")
    dom0.write(b"/w", b"2")
    assert monitor.events.get(timeout=2) == (b"/w", b"tok-w")
    monitor.unwatch(b"/w", b"tok-w")
    dom0.write(b"/w", b"3")
    assert monitor.events.empty()


def test_watch_on_a_child_fires_when_its_parent_is_removed(dom0: Client) -> None:
    dom0.write(b"/p/c/leaf", b"1")
    monitor = dom0.monitor()
    monitor.watch(b"/p/c/leaf", b"leaf")
    monitor.watch(b"/p", b"top")
    assert {monitor.events.get(timeout=2) for _ in range(2)} == {
        (b"/p/c/leaf", b"leaf"),
        (b"/p", b"top"),
    }
    dom0.delete(b"/p")
    # X: xenstored_core.c delnode_sub(): each removed descendant fires only watches set
    # exactly on it; watches at or above the removed root get one event for the root.
    assert monitor.events.get(timeout=2) == (b"/p/c/leaf", b"leaf")
    assert monitor.events.get(timeout=2) == (b"/p", b"top")
    time.sleep(0.05)
    assert monitor.events.empty()


def test_watch_events_of_a_transaction_fire_at_commit(connect: Callable[..., Client]) -> None:
    watcher, writer = connect(), connect()
    monitor = watcher.monitor()
    monitor.watch(b"/txw", b"t")
    monitor.events.get(timeout=2)
    writer.transaction()
    writer.write(b"/txw/k", b"v")
    time.sleep(0.1)
    assert monitor.events.empty()
    assert writer.commit()
    assert monitor.events.get(timeout=2) == (b"/txw/k", b"t")


def test_duplicate_watch_is_eexist_and_unknown_unwatch_enoent(dom0: Client) -> None:
    monitor = dom0.monitor()
    monitor.watch(b"/x", b"t")
    assert outcome(monitor.watch, b"/x", b"t") == "EEXIST"
    assert outcome(monitor.unwatch, b"/x", b"other") == "ENOENT"


def test_relative_watch_reports_paths_relative_to_the_home(
    connect: Callable[..., Client],
) -> None:
    dom0 = connect()
    introduce(dom0, 3)
    dom0.mkdir(b"/local/domain/3/data")
    dom0.set_perms(b"/local/domain/3/data", [b"n3"])
    guest = connect(3)
    monitor = guest.monitor()
    monitor.watch(b"data", b"d")
    assert monitor.events.get(timeout=2) == (b"data", b"d")
    dom0.write(b"/local/domain/3/data/ready", b"1")
    assert monitor.events.get(timeout=2) == (b"data/ready", b"d")


def test_introduce_fires_watch_and_is_domain_introduced_until_release(
    dom0: Client, xsd: FakeXenstored
) -> None:
    monitor = dom0.monitor()
    monitor.watch(b"@introduceDomain", b"in")
    monitor.watch(b"@releaseDomain", b"out")
    assert {monitor.events.get(timeout=2) for _ in range(2)} == {
        (b"@introduceDomain", b"in"),
        (b"@releaseDomain", b"out"),
    }
    assert dom0.is_domain_introduced(5) is False
    introduce(dom0, 5)
    assert monitor.events.get(timeout=2) == (b"@introduceDomain", b"in")
    assert dom0.is_domain_introduced(5) is True and xsd.introduced == {0, 5}
    release(dom0, 5)
    assert monitor.events.get(timeout=2) == (b"@releaseDomain", b"out")
    assert dom0.is_domain_introduced(5) is False and xsd.introduced == {0}
    assert outcome(release, dom0, 5) == "ENOENT"
    assert outcome(release, dom0, 0) == "EINVAL"


def test_release_deletes_what_the_domain_owns_and_keeps_dom0_nodes(
    connect: Callable[..., Client], xsd: FakeXenstored
) -> None:
    dom0 = connect()
    introduce(dom0, 4)
    dom0.mkdir(b"/local/domain/4/data")
    dom0.set_perms(b"/local/domain/4", [b"n0", b"r4"])
    dom0.set_perms(b"/local/domain/4/data", [b"n4"])
    guest = connect(4)
    guest.write(b"/local/domain/4/data/mine/x", b"1")
    guest.close()  # xenstored drops the domain's connection on RELEASE
    release(dom0, 4)
    assert "/local/domain/4" in xsd.snapshot()
    assert not any(p.startswith("/local/domain/4/data") for p in xsd.snapshot())


def domain_shutdown(client: Client, domid: int) -> None:
    """Test-only CONTROL `domain-shutdown`: the hypervisor's VIRQ_DOM_EXC for `domid`."""
    client.execute_command(PyxsOp.DEBUG, b"domain-shutdown\0", f"{domid}\0".encode())


def test_a_domain_shutdown_fires_release_domain_once_until_resumed_then_again_at_release(
    connect: Callable[..., Client], xsd: FakeXenstored
) -> None:
    dom0 = connect()
    monitor = dom0.monitor()
    monitor.watch(b"@releaseDomain", b"out")
    assert monitor.events.get(timeout=2) == (b"@releaseDomain", b"out")  # set: fires once
    introduce(dom0, 5)
    domain_shutdown(dom0, 5)
    assert monitor.events.get(timeout=2) == (b"@releaseDomain", b"out")
    domain_shutdown(dom0, 5)  # check_domains() reports a shutdown once
    with pytest.raises(queue.Empty):
        monitor.events.get(timeout=0.3)
    assert xsd.introduced == {0, 5}, "a shut-down domain still exists"
    dom0.ack(PyxsOp.RESUME, b"5\0")  # do_resume() clears the mark
    domain_shutdown(dom0, 5)
    assert monitor.events.get(timeout=2) == (b"@releaseDomain", b"out")
    release(dom0, 5)
    assert monitor.events.get(timeout=2) == (b"@releaseDomain", b"out")
    assert outcome(domain_shutdown, dom0, 5) == "ENOENT"
    introduce(dom0, 6)
    assert outcome(domain_shutdown, connect(6), 6) == "EACCES"  # privileged only


def test_the_daemon_uses_no_cpu_while_idle(sockdir: Path) -> None:
    """No poll interval: the accept loop, the connections and the main thread all block."""
    sock_path = sockdir / "socket"
    proc = subprocess.Popen([sys.executable, str(FAKE), "--socket", str(sock_path)])
    try:
        assert _wait_for(lambda: _connects(sock_path))
        with Client(unix_socket_path=str(sock_path)) as client:  # an idle connection too
            client.read(b"/")
            time.sleep(0.3)
            before = _cpu_ticks(proc.pid)
            time.sleep(2.0)
            assert _cpu_ticks(proc.pid) == before
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_domu_sees_introduce_events_only_when_granted(connect: Callable[..., Client]) -> None:
    dom0 = connect()
    introduce(dom0, 3)
    guest = connect(3)
    monitor = guest.monitor()
    monitor.watch(b"@introduceDomain", b"in")
    assert monitor.events.get(timeout=2) == (b"@introduceDomain", b"in")
    introduce(dom0, 6)
    dom0.set_perms(b"@introduceDomain", [b"n0", b"r3"])
    introduce(dom0, 7)
    assert monitor.events.get(timeout=2) == (b"@introduceDomain", b"in")
    assert monitor.events.empty()  # the event for dom6 was not delivered


# ---- permissions, through as-domain connections ---------------------------------------------
PERMISSION_TABLE = [
    # perms on /node, acting domain, can read, can write
    (["n2", "r3"], 2, True, True),  # the owner always has full access
    (["n2", "r3"], 3, True, False),
    (["n2", "r3"], 4, False, False),
    (["b2", "r3"], 4, True, True),  # entry 0 is the default: every domain may write!
    (["b2", "r3"], 3, True, False),  # ...except a domain with its own entry
    (["n0", "w3"], 3, False, True),
    (["r0"], 3, True, False),
    (["n2", "r3", "b3"], 3, True, False),  # first matching entry wins
]


@pytest.mark.parametrize(("perms", "domid", "can_read", "can_write"), PERMISSION_TABLE)
def test_permission_decision_matches_xen(
    connect: Callable[..., Client],
    xsd: FakeXenstored,
    perms: list[str],
    domid: int,
    can_read: bool,
    can_write: bool,
) -> None:
    dom0 = connect()
    introduce(dom0, 2, 3, 4)
    dom0.write(b"/node", b"v")
    dom0.set_perms(b"/node", [p.encode() for p in perms])
    guest = connect(domid)
    assert outcome(guest.read, b"/node") == ("ok" if can_read else "EACCES")
    assert outcome(guest.write, b"/node", b"new") == ("ok" if can_write else "EACCES")
    assert xsd.could(domid, "/node", "r") is can_read
    assert xsd.could(domid, "/node", "w") is can_write
    assert xsd.could(0, "/node", "r") and xsd.could(0, "/node", "w")


def test_grant_to_unintroduced_domid_is_ignored_even_after_introduce_until_regranted(
    connect: Callable[..., Client], xsd: FakeXenstored
) -> None:
    # X: xenstored_domain.c domain_alloc_permrefs() marks the entry XS_PERM_IGNORE when
    # SET_PERMS runs and that flag is stored with the node.
    dom0 = connect()
    dom0.write(b"/grant", b"v")
    dom0.set_perms(b"/grant", [b"n0", b"r5"])
    assert dom0.get_perms(b"/grant") == [b"n0", b"r5"]
    assert xsd.could(5, "/grant", "r") is False
    introduce(dom0, 5)
    assert xsd.could(5, "/grant", "r") is False
    assert outcome(connect(5).read, b"/grant") == "EACCES"
    dom0.set_perms(b"/grant", [b"n0", b"r5"])
    assert xsd.could(5, "/grant", "r") is True
    assert connect(5).read(b"/grant") == b"v"


def test_recycled_domid_does_not_inherit_grants_of_its_predecessor(
    connect: Callable[..., Client], xsd: FakeXenstored
) -> None:
    dom0 = connect()
    introduce(dom0, 5)
    dom0.write(b"/grant", b"v")
    dom0.set_perms(b"/grant", [b"n0", b"r5"])
    assert xsd.could(5, "/grant", "r") is True
    release(dom0, 5)
    dom0.write(b"/local/domain/5/name", b"new-guest")  # the toolstack writes in between
    introduce(dom0, 5)
    assert xsd.could(5, "/grant", "r") is False
    assert dom0.get_perms(b"/grant") == [b"n0", b"r5"]


def test_unprivileged_create_inherits_parent_perms_with_creator_as_owner(
    connect: Callable[..., Client],
) -> None:
    dom0 = connect()
    introduce(dom0, 3, 4)
    dom0.mkdir(b"/shared")
    dom0.set_perms(b"/shared", [b"n0", b"b3", b"r4"])
    guest = connect(3)
    guest.write(b"/shared/made/by/three", b"x")
    for path in (b"/shared/made", b"/shared/made/by", b"/shared/made/by/three"):
        assert dom0.get_perms(path) == [b"n3", b"b3", b"r4"]
    dom0.write(b"/shared/by-dom0/x", b"y")
    assert dom0.get_perms(b"/shared/by-dom0") == [b"n0", b"b3", b"r4"]


def test_domu_chmod_may_not_change_the_owner(connect: Callable[..., Client]) -> None:
    dom0 = connect()
    introduce(dom0, 3, 4)
    dom0.mkdir(b"/own")
    dom0.set_perms(b"/own", [b"n3"])
    guest = connect(3)
    assert outcome(guest.set_perms, b"/own", [b"n0"]) == "EPERM"
    assert outcome(guest.set_perms, b"/own", [b"n3", b"r4"]) == "ok"
    many = [b"n3", b"r4", b"r5", b"r6", b"r7", b"r8"]
    assert outcome(guest.set_perms, b"/own", many) == "ENOSPC"
    assert outcome(dom0.set_perms, b"/own", many) == "ok"


def test_set_perms_needs_ownership_not_just_write(connect: Callable[..., Client]) -> None:
    dom0 = connect()
    introduce(dom0, 3)
    dom0.write(b"/w", b"v")
    dom0.set_perms(b"/w", [b"n0", b"b3"])
    assert outcome(connect(3).set_perms, b"/w", [b"n0", b"b3"]) == "EACCES"


def test_leaf_is_readable_inside_an_unreadable_directory(
    connect: Callable[..., Client], xsd: FakeXenstored
) -> None:
    dom0 = connect()
    introduce(dom0, 3)
    dom0.write(b"/secret/leaf", b"visible")
    dom0.set_perms(b"/secret/leaf", [b"n0", b"r3"])
    dom0.mkdir(b"/pub")
    dom0.set_perms(b"/pub", [b"r0"])
    guest = connect(3)
    assert guest.read(b"/secret/leaf") == b"visible"
    assert outcome(guest.list, b"/secret") == "EACCES"
    assert outcome(guest.read, b"/secret/missing") == "EACCES"  # parent unreadable
    assert outcome(guest.read, b"/pub/missing") == "ENOENT"
    assert outcome(guest.write, b"/pub/new", b"x") == "EACCES"  # needs write on /pub
    assert xsd.could(3, "/secret/leaf", "r") and not xsd.could(3, "/secret", "r")


def test_privileged_operations_from_a_domu_are_eacces(connect: Callable[..., Client]) -> None:
    dom0 = connect()
    introduce(dom0, 3)
    guest = connect(3)
    assert outcome(guest.introduce_domain, 9, 1, 1) == "EACCES"
    assert outcome(guest.is_domain_introduced, 3) == "EACCES"
    assert outcome(as_domain, guest, 4) == "EACCES"


def test_as_domain_needs_an_introduced_domain(dom0: Client) -> None:
    assert outcome(as_domain, dom0, 8) == "ENOENT"


def test_domu_entry_size_quota_is_enospc(connect: Callable[..., Client]) -> None:
    dom0 = connect()
    introduce(dom0, 3)
    dom0.mkdir(b"/q")
    dom0.set_perms(b"/q", [b"n3"])
    guest = connect(3)
    assert outcome(guest.write, b"/q/big", b"x" * 2100) == "ENOSPC"
    assert outcome(dom0.write, b"/q/big", b"x" * 2100) == "ok"


# ---- test-only CONTROL extensions -----------------------------------------------------------
def test_control_check_access_answers_like_could(raw: Raw, dom0: Client) -> None:
    introduce(dom0, 3)
    dom0.write(b"/c", b"v")
    dom0.set_perms(b"/c", [b"n0", b"r3"])
    assert raw.call(Op.CONTROL, b"check-access\x003\x00/c\0r\0") == (Op.CONTROL, b"1\0")
    assert raw.call(Op.CONTROL, b"check-access\x003\x00/c\0w\0") == (Op.CONTROL, b"0\0")
    assert raw.call(Op.CONTROL, b"check-access\x003\x00/c\0x\0") == (Op.ERROR, b"EINVAL\0")


def test_control_dump_is_snapshot_json_or_e2big(raw: Raw, xsd: FakeXenstored) -> None:
    kind, body = raw.call(Op.CONTROL, b"dump\0")
    assert kind == Op.CONTROL and json.loads(body.rstrip(b"\0")) == xsd.snapshot()
    for i in range(40):
        raw.call(Op.WRITE, f"/bulk/{i}\0".encode() + b"x" * 100)
    assert raw.call(Op.CONTROL, b"dump\0") == (Op.ERROR, b"E2BIG\0")


def test_unknown_control_command_is_einval(raw: Raw) -> None:
    assert raw.call(Op.CONTROL, b"frobnicate\0") == (Op.ERROR, b"EINVAL\0")


# ---- process mode ---------------------------------------------------------------------------
def _connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _terminate(pid: int, sock_path: Path) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    assert _wait_for(lambda: not sock_path.exists()), "socket not removed after SIGTERM"


def test_daemonize_writes_pid_file_at_once_and_binds_only_after_delay(sockdir: Path) -> None:
    sock_path, pid_file = sockdir / "socket", sockdir / "xenstored.pid"
    launcher = subprocess.run(
        [sys.executable, str(FAKE), "--socket", str(sock_path), "--pid-file", str(pid_file)]
        + ["--daemonize", "--socket-delay", "0.5"],
        capture_output=True,
        timeout=10,
    )
    started = time.monotonic()
    assert launcher.returncode == 0
    pid = int(pid_file.read_text())
    try:
        assert pid != os.getpid()
        os.kill(pid, 0)  # the daemon is alive
        assert not _connects(sock_path)
        assert _wait_for(lambda: _connects(sock_path))
        assert time.monotonic() - started > 0.2
        client = Raw(sock_path)
        assert client.call(Op.READ, b"/\0") == (Op.READ, b"")
        client.close()
    finally:
        _terminate(pid, sock_path)


def test_mute_accepts_connections_but_never_answers(sockdir: Path) -> None:
    sock_path = sockdir / "socket"
    proc = subprocess.Popen([sys.executable, str(FAKE), "--socket", str(sock_path), "--mute"])
    try:
        assert _wait_for(lambda: _connects(sock_path))
        client = Raw(sock_path, timeout=0.3)
        client.send(Op.READ, b"/\0")
        with pytest.raises(TimeoutError):
            client.recv()
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    assert not sock_path.exists()


def test_foreground_process_writes_own_pid_and_removes_socket_on_sigterm(sockdir: Path) -> None:
    sock_path, pid_file = sockdir / "socket", sockdir / "pid"
    proc = subprocess.Popen(
        [sys.executable, str(FAKE), "--socket", str(sock_path), "--pid-file", str(pid_file)]
    )
    try:
        assert _wait_for(lambda: _connects(sock_path))
        assert int(pid_file.read_text()) == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    assert not sock_path.exists()
