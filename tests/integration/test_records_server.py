"""Issue 17, "The server keeps serving": the records endpoint of a real `jupyter server`, over
HTTP. A FIFO, socket, device or link is never opened or followed; a record being opened (a lease
another process holds stands in for a slow disk) or sent leaves the server answering; a record
over the cap is refused unread; only real run stores are served, and never written; errors carry
the MlpipeError's fields."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import signal
import socket
import sqlite3
import stat
import struct
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlpipe_jupyter.run.store import RunStore
from tests.conftest import jupyter_server, wait_for

CAP = 2 * 1024 * 1024  # the server's MlpipeServer.max_record_size in these tests
NB = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
API = "/mlpipe/api/records/"


class Server:
    def __init__(self, url: str, token: str, root: Path, log: Path) -> None:
        self.url, self.token, self.root, self.log = url, token, root, log
        self.port = int(url.rsplit(":", 1)[1])

    def get(self, path: str, *, timeout: float = 30) -> tuple[int, dict, dict]:
        """(status, headers, JSON body) of a GET with the token."""
        request = urllib.request.Request(f"{self.url}{path}",
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, dict(r.headers), json.load(r)
        except urllib.error.HTTPError as e:
            body = e.read()
            return e.code, dict(e.headers), (json.loads(body) if body.startswith(b"{") else {})

    def record(self, rel: str, *, query: str = "", timeout: float = 30):
        return self.get(API + urllib.parse.quote(rel) + query, timeout=timeout)

    def status(self, timeout: float = 10) -> int:
        return self.get("/api/status", timeout=timeout)[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("records-server")
    root = base / "root"
    root.mkdir()
    with jupyter_server(base, root, f"--MlpipeServer.max_record_size={CAP}") as running:
        yield Server(running.url, running.token, root, running.log)
    log = running.log
    assert "mlpipe_jupyter | extension was successfully loaded" in log.read_text()


def _store(server: Server, name: str) -> Path:
    """A real run store (RunStore's schema), closed: `<root>/<name>/.mlpipe`."""
    home = server.root / name / ".mlpipe"
    RunStore(home / "mlpipe.db").close()
    return home


def _write(home: Path, content: bytes | dict = NB, *, run: str = "r1", step: str = "s",
           name: str = "output.ipynb") -> Path:
    path = home / "runs" / run / step / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def _rel(server: Server, path: Path) -> str:
    return path.relative_to(server.root).as_posix()


def _not_found(server: Server, rel: str, *words: str) -> dict:
    status, headers, body = server.record(rel)
    assert status == 404, (rel, body)
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"]["error"] == "NotFound" and body["error"]["file"] == rel, body
    assert body["message"] == body["error"]["message"] and "\n" not in body["message"], body
    for word in words:
        assert word in body["message"], body
    return body


# -- never blocked ---------------------------------------------------------------------------

def test_a_fifo_is_not_found_and_never_opened(server):
    """Before issue 17 the server read the FIFO on its event loop and answered nobody again."""
    home = _store(server, "fifo")
    fifo = home / "runs" / "r1" / "s" / "output.ipynb"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.record, _rel(server, fifo), timeout=20)
        try:
            assert server.status() == 200
            status, _, body = pending.result(timeout=30)
            assert status == 404 and "FIFO" in body["message"], body
        finally:  # a reader stuck on the FIFO (the server before the fix) gets its end of file
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.fixture
def lease_signals() -> Iterator[list[int]]:
    """The signals this process gets when another opens a file it holds a lease on."""
    got: list[int] = []
    old = signal.signal(signal.SIGIO, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        signal.signal(signal.SIGIO, old)


def test_a_record_whose_open_blocks_leaves_the_server_answering(server, lease_signals):
    """A write lease makes the server's open() of the record wait until this test lets go: a
    disk that does not answer. Meanwhile the server answers other requests, records included."""
    home = _store(server, "lease")
    slow, other = _write(home, run="slow"), _write(home, run="other")
    fd = os.open(slow, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(server.record, _rel(server, slow), timeout=60)
            wait_for(lambda: lease_signals, "the server to open the record", 30)
            assert server.status() == 200
            status, _, body = server.record(_rel(server, other), timeout=10)
            assert status == 200 and body["content"] == NB, body
            assert not pending.done()  # still waiting for the lease, and the server answered
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
            status, _, body = pending.result(timeout=30)
        assert status == 200 and body["content"] == NB, body
    finally:
        os.close(fd)  # also ends the lease, so a server stuck on it goes on


def _raw_get(server: Server, rel: str, rcvbuf: int = 4096) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {API}{urllib.parse.quote(rel)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: token {server.token}\r\nConnection: close\r\n\r\n".encode())
    return sock


def test_a_big_record_is_streamed_while_other_requests_are_answered(server):
    home = _store(server, "big")
    nb = {**NB, "cells": [{"cell_type": "code", "id": "c0", "metadata": {},
                           "execution_count": 1, "source": "x",
                           "outputs": [{"output_type": "stream", "name": "stdout",
                                        "text": "é" * (CAP // 2 - 4096)}]}]}
    big = _write(home, json.dumps(nb, ensure_ascii=False).encode(), run="big")
    assert CAP - 8192 < big.stat().st_size <= CAP
    small = _write(home, run="small")
    with _raw_get(server, _rel(server, big)) as sock:
        received = b""
        while b"\r\n\r\n" not in received:  # the headers and the start of the body, no more
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        # this client reads nothing more for now: the big record is in flight
        assert server.status() == 200
        status, _, body = server.record(_rel(server, small), timeout=10)
        assert status == 200 and body["content"] == NB
        while chunk := sock.recv(1 << 16):
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
              if line.lower().startswith(b"content-length:")]
    assert length == [len(payload)]
    model = json.loads(payload)
    assert model["content"] == nb and model["size"] == big.stat().st_size
    assert model["format"] == "json" and model["writable"] is False


# -- the cap ---------------------------------------------------------------------------------

class Inotify:
    """Which watched files some process read (IN_ACCESS), through Linux's inotify."""

    IN_ACCESS = 0x1

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.names: dict[int, str] = {}

    def watch(self, path: Path) -> None:
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_ACCESS)
        assert wd >= 0, os.strerror(ctypes.get_errno())
        self.names[wd] = path.name

    def read(self) -> set[str]:
        """The names of the watched files read since the last call."""
        seen: set[str] = set()
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return seen
            offset = 0
            while offset < len(data):
                wd, mask, _, size = struct.unpack_from("iIII", data, offset)
                offset += 16 + size
                if mask & self.IN_ACCESS:
                    seen.add(self.names[wd])

    def close(self) -> None:
        os.close(self.fd)


def test_a_record_over_the_cap_is_413_and_never_read(server):
    home = _store(server, "cap")
    small = _write(home, run="small", name="step.ipynb")
    big = home / "runs" / "big" / "s" / "output.ipynb"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as fh:  # CAP + 1 bytes, sparse
        fh.truncate(CAP + 1)
    inotify = Inotify()
    try:
        inotify.watch(small)
        inotify.watch(big)
        assert server.record(_rel(server, small))[0] == 200
        assert inotify.read() == {"step.ipynb"}  # the watch sees the server read a record
        status, _, body = server.record(_rel(server, big))
        assert status == 413, body
        assert body["error"]["error"] == "RecordTooLarge", body
        assert body["error"]["option"] == "MlpipeServer.max_record_size", body
        assert body["error"]["file"] == _rel(server, big)
        assert "2.0 MiB" in body["message"], body
        status, _, light = server.record(_rel(server, big), query="?content=0")
        assert status == 200 and light["content"] is None and light["size"] == CAP + 1
        assert inotify.read() == set()  # nothing read the big record
    finally:
        inotify.close()


# -- only run stores -------------------------------------------------------------------------

def _sqlite(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(sql)
    conn.close()


def _link_to_real_store(db: Path) -> None:
    real = db.parent.parent / "real.db"
    RunStore(real).close()
    db.symlink_to(real)


FAKE_STORES = {
    "empty file": lambda db: db.touch(),
    "garbage": lambda db: db.write_bytes(b"SQLite format 3\x00" + os.urandom(4096)),
    "text": lambda db: db.write_text("mlpipe.db\n"),
    "another sqlite db": lambda db: _sqlite(db, "CREATE TABLE notes (id TEXT);"),
    "runs but no steps": lambda db: _sqlite(db, "CREATE TABLE runs (id TEXT, state TEXT);"),
    "steps without columns": lambda db: _sqlite(
        db, "CREATE TABLE runs (id TEXT, state TEXT); CREATE TABLE steps (x TEXT);"),
    "a directory": lambda db: db.mkdir(),
    "a FIFO": lambda db: os.mkfifo(db),
    "a link to a real store": lambda db: _link_to_real_store(db),
    "missing": lambda db: None,
}


@pytest.mark.parametrize("kind", FAKE_STORES)
def test_a_directory_that_is_not_a_run_store_is_not_served(server, kind):
    home = server.root / f"fake-{kind.replace(' ', '-')}" / ".mlpipe"
    home.mkdir(parents=True)
    FAKE_STORES[kind](home / "mlpipe.db")
    record = _write(home)
    before = sorted(os.listdir(home))
    body = _not_found(server, _rel(server, record))
    assert "mlpipe.db" in body["message"], body
    assert sorted(os.listdir(home)) == before  # nothing created beside it
    if kind == "empty file":
        assert (home / "mlpipe.db").stat().st_size == 0


def test_a_real_store_is_served_and_never_written(server):
    home = _store(server, "real")
    record = _write(home)
    db = home / "mlpipe.db"
    before = (sorted(os.listdir(home)), hashlib.sha256(db.read_bytes()).hexdigest(),
              db.stat().st_mtime_ns)
    status, _, body = server.record(_rel(server, record))
    assert status == 200 and body["content"] == NB, body
    after = (sorted(os.listdir(home)), hashlib.sha256(db.read_bytes()).hexdigest(),
             db.stat().st_mtime_ns)
    assert after == before  # no -wal or -shm left behind, the db untouched
    live = RunStore(db)  # a runner has it open: its WAL holds what is not checkpointed
    try:
        assert (home / "mlpipe.db-wal").exists()
        status, _, body = server.record(_rel(server, record))
        assert status == 200 and body["content"] == NB, body
    finally:
        live.close()


# -- links and other kinds of files ----------------------------------------------------------

def test_no_symlink_is_followed_wherever_it_points(server):
    home = _store(server, "links")
    inside = _write(home, run="real")  # a record of the same store: a link to it is still a link
    (home / "runs" / "r1" / "s").mkdir(parents=True)
    (home / "runs" / "r1" / "s" / "output.ipynb").symlink_to("/etc/passwd")
    (home / "runs" / "r1" / "s" / "step.ipynb").symlink_to(inside)
    (home / "runs" / "r2").mkdir()
    (home / "runs" / "r2" / "s").symlink_to(inside.parent)
    (home / "runs" / "r3").symlink_to(inside.parent.parent)
    (server.root / "links-alias").symlink_to(home.parent)
    assert server.record(_rel(server, inside))[0] == 200
    _not_found(server, "links/.mlpipe/runs/r1/s/output.ipynb", "`output.ipynb` is a symlink")
    _not_found(server, "links/.mlpipe/runs/r1/s/step.ipynb", "`step.ipynb` is a symlink")
    _not_found(server, "links/.mlpipe/runs/r2/s/output.ipynb", "is a symlink")
    _not_found(server, "links/.mlpipe/runs/r3/s/output.ipynb", "is a symlink")
    _not_found(server, "links-alias/.mlpipe/runs/real/s/output.ipynb", "is a symlink")


def test_only_regular_files_are_served(server, tmp_path):
    home = _store(server, "kinds")
    _write(home)
    (home / "runs" / "dir" / "s" / "output.ipynb").mkdir(parents=True)
    _not_found(server, "kinds/.mlpipe/runs/dir/s/output.ipynb", "is a directory")
    sock_path = home / "runs" / "sock" / "s" / "output.ipynb"
    sock_path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "s"))  # a short path (sun_path is 108 bytes), then moved in place
        os.rename(tmp_path / "s", sock_path)
        _not_found(server, "kinds/.mlpipe/runs/sock/s/output.ipynb", "is a socket")
    device = home / "runs" / "dev" / "s" / "output.ipynb"
    device.parent.mkdir(parents=True)
    # like /dev/null; needs root, as `make test` is (it installs Docker): never skipped
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    _not_found(server, "kinds/.mlpipe/runs/dev/s/output.ipynb", "is a device")


# -- errors ----------------------------------------------------------------------------------

def test_errors_carry_the_structured_fields_and_log_one_line(server):
    home = _store(server, "errors")
    broken = _write(home, b'{"cells": [NaN]}', run="nan")
    body = _not_found(server, _rel(server, broken), "not a readable notebook")
    assert body["reason"] == "NotFound"
    status, headers, body = server.get(API + "%2Fetc%2Fpasswd")
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert body["error"] == {"error": "UsageError", "message": body["message"],
                             "file": "/etc/passwd"}, body
    assert body["reason"] == "UsageError"
    missing = "errors/.mlpipe/runs/none/s/output.ipynb"
    assert _not_found(server, missing, "`errors/.mlpipe/runs/none` does not exist")

    def logged() -> str | None:
        text = server.log.read_text()
        return text if missing in text else None

    log = wait_for(logged, "the server's log of that request", 30)
    assert "Traceback" not in log and "Uncaught exception" not in log, log[-3000:]
