"""A server that changes a file between the listing and its download, or stops answering."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import pytest

from tests.daily_config import server_folder
from tests.fixtures_sshd import ServerInfo
from tui.core.model import RemoteFile
from tui.sftp.client import connect
from tui.sftp.download import _finish, download
from tui.sftp.errors import ServerStalled, TransferFailed, translate
from tui.sftp.parts import part_progress
from tui.sftp.queue import Failed, Retrying, Running, TransferQueue


def _put(info: ServerInfo, name: str, size: int, seed: int = 0) -> bytes:
    data = (hashlib.sha256(f"{seed}:{name}".encode()).digest() * (size // 32 + 1))[:size]
    (info.root / name).write_bytes(data)
    return data


async def _one(info: ServerInfo, name: str):
    async with await connect(info.options()) as conn:
        listing = await conn.listdir(info.remote_dir)
    return {f.name: f for f in listing.files}[name]


@pytest.fixture
def sshd_dir(sshd, tmp_path):
    """A folder of its own on the real sshd (the embedded server runs on the test's own event
    loop: a pipe it opens would stop the test itself)."""
    kh = tmp_path / "known_hosts"
    shutil.copy(sshd.known_hosts, kh)
    with server_folder(sshd.root, "race-") as sub:
        yield ServerInfo("sshd", sshd.host, sshd.port, sshd.username, sshd.key, kh, sub,
                         sshd.host_key, None, sub.name, sshd.ssh_config)


def _release(fifo: Path) -> None:
    """Let the server's SFTP process, stuck opening the pipe, go on (it has a reader now)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


async def test_a_file_replaced_by_a_named_pipe_after_the_listing_does_not_hang(sshd_dir, tmp_path):
    # sshd's SFTP process blocks opening a pipe while sshd itself answers the keepalives:
    # without a limit of its own the download (and a scheduled sync) waits for ever.
    info = sshd_dir
    _put(info, "r.xlsx", 5000)
    remote = await _one(info, "r.xlsx")
    path = info.root / "r.xlsx"
    path.unlink()
    os.mkfifo(path)
    try:
        conn = await connect(info.options(request_timeout=1))
        async with conn:
            with pytest.raises(ServerStalled) as caught:
                await asyncio.wait_for(download(conn, remote, info.remote_dir, tmp_path / "out"), 15)
            assert conn.closed
    finally:
        _release(path)
    text = str(caught.value)
    assert "answered nothing for 1 s while opening 'r.xlsx'" in text and caught.value.transient
    assert not (tmp_path / "out" / "r.xlsx").exists()


class _StallingSFTP(asyncssh.SFTPServer):
    """Answers the first reads of a file, then never again (a hung disk under the server)."""

    active = True

    async def read(self, file_obj, offset, size):
        if offset >= 4096 and _StallingSFTP.active:
            await asyncio.sleep(3600)
        return super().read(file_obj, offset, size)


async def test_a_server_that_stops_answering_mid_read_ends_the_download_in_bounded_time(
        make_embedded_sftp, tmp_path):
    info = await make_embedded_sftp(_StallingSFTP)
    data = _put(info, "r.xlsx", 20_000)
    remote = await _one(info, "r.xlsx")
    conn = await connect(info.options(request_timeout=0.5, block_size=1024))
    async with conn:
        with pytest.raises(ServerStalled, match="answered nothing for 0.5 s while reading 'r.xlsx'"):
            await asyncio.wait_for(download(conn, remote, info.remote_dir, tmp_path / "out"), 10)
    # what arrived is kept for resuming, and nothing has the final name
    assert not (tmp_path / "out" / "r.xlsx").exists()
    assert 4096 <= part_progress(tmp_path / "out", remote) < len(data)


class _SlowSFTP(asyncssh.SFTPServer):
    """Answers every read, one at a time, slowly: a slow link that still delivers."""

    lock: asyncio.Lock | None = None

    async def read(self, file_obj, offset, size):
        if _SlowSFTP.lock is None:
            _SlowSFTP.lock = asyncio.Lock()
        async with _SlowSFTP.lock:
            await asyncio.sleep(0.06)
            return super().read(file_obj, offset, size)


async def test_a_slow_server_that_keeps_answering_is_never_taken_for_stalled(make_embedded_sftp, tmp_path):
    # Two downloads share the connection: each one's oldest read waits behind the other's
    # (8 x 0.06 s, longer than the limit), but the connection answers all the time.
    _SlowSFTP.lock = None
    info = await make_embedded_sftp(_SlowSFTP)
    data = {n: _put(info, n, 10 * 1024) for n in ("a.xlsx", "b.xlsx")}
    conn = await connect(info.options(request_timeout=0.3, block_size=1024))
    async with conn:
        listing = await conn.listdir(info.remote_dir)
        results = await asyncio.gather(*(download(conn, f, info.remote_dir, tmp_path / "out", max_requests=8)
                                         for f in listing.files))
    for result in results:
        assert result.path.read_bytes() == data[result.path.name]


async def test_a_part_is_not_resumed_into_another_file_of_the_same_size_and_mtime(make_embedded_sftp, tmp_path):
    # A download stops part-way; on the server the file is then replaced by another of the
    # same size and modification time (SFTP gives whole seconds). The part's record matches
    # the new copy, but its bytes are the old one's: the copy must be the new file's bytes.
    stalling = await make_embedded_sftp(_StallingSFTP)
    _put(stalling, "r.xlsx", 20_000, seed=1)
    remote = await _one(stalling, "r.xlsx")
    conn = await connect(stalling.options(request_timeout=0.3, block_size=1024))
    async with conn:
        with pytest.raises(ServerStalled):
            await download(conn, remote, stalling.remote_dir, tmp_path / "out")
    assert part_progress(tmp_path / "out", remote) >= 4096
    path = stalling.root / "r.xlsx"
    before = path.stat()
    newer = _put(stalling, "r.xlsx", 20_000, seed=2)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    _StallingSFTP.active = False
    try:
        again = await _one(stalling, "r.xlsx")
        assert (again.size, again.mtime) == (remote.size, remote.mtime)
        async with await connect(stalling.options()) as conn:
            result = await download(conn, again, stalling.remote_dir, tmp_path / "out")
    finally:
        _StallingSFTP.active = True
    assert result.path.read_bytes() == newer
    assert result.sha256 == hashlib.sha256(newer).hexdigest()


def _factory(info: ServerInfo, **opts):
    async def make():
        return await connect(info.options(**opts))

    return make


async def _fetch(info: ServerInfo, remote, out: Path, **opts):
    events: list = []
    async with TransferQueue(_factory(info, **opts), on_event=events.append, backoff_base=0.01) as q:
        job = q.add(remote, info.remote_dir, out)
        await asyncio.wait_for(q.join(), 30)
    return job, events


async def test_a_file_replaced_by_a_link_to_an_endless_device_fails_without_keeping_anything(sftp_server, tmp_path):
    _put(sftp_server, "r.xlsx", 5000)
    remote = await _one(sftp_server, "r.xlsx")
    path = sftp_server.root / "r.xlsx"
    path.unlink()
    path.symlink_to("/dev/zero")
    job, events = await _fetch(sftp_server, remote, tmp_path / "out")
    assert job.state == "failed", job.result
    assert "changed on the server" in str(job.error)
    assert not (tmp_path / "out" / "r.xlsx").exists()
    assert sum(e.bytes for e in events if isinstance(e, Running)) < 10 * 5000


class _GrowingSFTP(asyncssh.SFTPServer):
    """A file still being written: every time it is opened it has grown since the last look."""

    def open(self, path, pflags, attrs):
        with open(self.map_path(path), "ab") as grow:
            grow.write(b"more")
        return super().open(path, pflags, attrs)


async def _three_attempts(info: ServerInfo, out: Path):
    """A 5000-byte report fetched by a queue of three attempts that fail (the server's doing):
    the job, the reasons of its retries and its one ``Failed`` event."""
    _put(info, "r.xlsx", 5000)
    remote = await _one(info, "r.xlsx")
    events: list = []
    async with TransferQueue(_factory(info), on_event=events.append, backoff_base=0.01, max_attempts=3) as q:
        job = q.add(remote, info.remote_dir, out)
        await asyncio.wait_for(q.join(), 30)
    assert job.state == "failed" and job.attempts == 3, job.error
    (failed,) = [e for e in events if isinstance(e, Failed)]
    return job, [e.reason for e in events if isinstance(e, Retrying)], failed


@pytest.mark.parametrize(("server", "what", "retry", "given_up"), [
    # a file that changes at every attempt
    ("growing", "changed on the server during the download", "downloaded again",
     ["No attempt is left (3 made), so it was not downloaded", "The next sync tries again"]),
    # a server-side fault at every attempt
    ("refusing", "storage backend unavailable", "retried automatically",
     ["No attempt is left (3 made), so the file was not downloaded",
      "The next sync tries again; if it fails the same way, ask the server's administrator"]),
])
async def test_a_failure_at_every_attempt_ends_saying_no_attempt_is_left(make_embedded_sftp, tmp_path,
                                                                        server, what, retry, given_up):
    """Each retry says the retry; the final failure does not promise one any more."""
    info = await make_embedded_sftp(_GrowingSFTP if server == "growing" else _RefusingSFTP)
    job, retrying, failed = await _three_attempts(info, tmp_path / "out")
    assert len(retrying) == 2 and all(retry in r for r in retrying)
    for text in (str(job.error), failed.reason):
        assert what in text
        assert retry not in text  # no attempt is left: it is not
        for said in given_up:
            assert said in text
    assert not (tmp_path / "out" / "r.xlsx").exists()


async def test_a_file_that_shrank_after_the_listing_is_fetched_fresh(sftp_server, tmp_path):
    _put(sftp_server, "r.xlsx", 100_000, seed=1)
    remote = await _one(sftp_server, "r.xlsx")
    smaller = _put(sftp_server, "r.xlsx", 60_000, seed=2)
    job, events = await _fetch(sftp_server, remote, tmp_path / "out")
    assert job.state == "done" and job.attempts == 2, job.error
    assert "it ended after 60000 of the listed 100000 bytes" in [e for e in events if isinstance(e, Retrying)][0].reason
    assert (tmp_path / "out" / "r.xlsx").read_bytes() == smaller


async def test_a_named_pipe_stalls_the_server_once_and_costs_the_other_files_nothing(sshd_dir, tmp_path):
    # The pipe keeps the server's SFTP process (and every transfer of that connection) waiting:
    # after one stall it is asked about, never opened again; the other files then complete.
    info = sshd_dir
    good = {n: _put(info, n, 300_000, seed=i) for i, n in enumerate(("a.xlsx", "b.xlsx", "c.xlsx"))}
    _put(info, "pipe.xlsx", 5000)
    async with await connect(info.options()) as conn:
        files = {f.name: f for f in (await conn.listdir(info.remote_dir)).files}
    fifo = info.root / "pipe.xlsx"
    fifo.unlink()
    os.mkfifo(fifo)
    try:
        async with TransferQueue(_factory(info, request_timeout=1, block_size=4096), concurrency=4,
                                 backoff_base=0.01, max_attempts=3) as q:
            jobs = {n: q.add(f, info.remote_dir, tmp_path / "out") for n, f in sorted(files.items())}
            await asyncio.wait_for(q.join(), 20)
    finally:
        _release(fifo)
    pipe = jobs.pop("pipe.xlsx")
    assert pipe.state == "failed" and pipe.attempts == 2
    assert "no longer a regular file on the server but a named pipe" in str(pipe.error)
    for name, job in jobs.items():
        assert job.state == "done", (name, job.error)
        assert (tmp_path / "out" / name).read_bytes() == good[name]


class _StallingListSFTP(asyncssh.SFTPServer):
    """Starts a listing, then answers nothing more (a folder on a hung disk)."""

    async def scandir(self, path):
        async for entry in super().scandir(path):
            yield entry
        await asyncio.sleep(3600)


async def test_a_listing_the_server_never_finishes_ends_in_bounded_time(make_embedded_sftp):
    info = await make_embedded_sftp(_StallingListSFTP)
    _put(info, "r.xlsx", 10)
    conn = await connect(info.options(request_timeout=0.5))
    async with conn:
        with pytest.raises(ServerStalled, match="answered nothing for 0.5 s while listing '.'"):
            await asyncio.wait_for(conn.listdir(info.remote_dir), 10)
        assert conn.closed


class _RewrittenSFTP(asyncssh.SFTPServer):
    """The report is rewritten in place (same size, a later mtime) while it is being read:
    the export job on the server overwrote it."""

    newer: bytes = b""
    done = False

    async def read(self, file_obj, offset, size):
        if offset >= 4096 and not _RewrittenSFTP.done:
            _RewrittenSFTP.done = True
            path = Path(file_obj.name.decode() if isinstance(file_obj.name, bytes) else file_obj.name)
            with open(path, "r+b") as f:
                f.write(_RewrittenSFTP.newer)
            os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 60))
        await asyncio.sleep(0)
        return super().read(file_obj, offset, size)


async def test_a_file_rewritten_in_place_during_the_download_is_never_kept_spliced(make_embedded_sftp, tmp_path):
    info = await make_embedded_sftp(_RewrittenSFTP)
    older = _put(info, "r.xlsx", 20_000, seed=1)
    _RewrittenSFTP.newer = hashlib.sha256(b"2").digest() * (20_000 // 32 + 1)
    _RewrittenSFTP.newer = _RewrittenSFTP.newer[:20_000]
    _RewrittenSFTP.done = False
    remote = await _one(info, "r.xlsx")
    job, events = await _fetch(info, remote, tmp_path / "out", block_size=1024)
    assert _RewrittenSFTP.done
    kept = (tmp_path / "out" / "r.xlsx").read_bytes()
    assert kept in (older, _RewrittenSFTP.newer)
    assert kept == _RewrittenSFTP.newer and job.attempts == 2


class _NoFstatSFTP(asyncssh.SFTPServer):
    """A server that refuses to say the size and time of a file open for reading (some
    servers answer FSTAT with a failure, or permission denied, on a read-only handle)."""

    refusal: type[asyncssh.SFTPError] = asyncssh.SFTPFailure

    async def fstat(self, file_obj):
        raise _NoFstatSFTP.refusal("not on this server")


@pytest.mark.parametrize("refusal", [asyncssh.SFTPFailure, asyncssh.SFTPPermissionDenied,
                                     asyncssh.SFTPOpUnsupported])
async def test_a_server_that_will_not_stat_an_open_file_still_delivers_it(make_embedded_sftp, tmp_path, refusal):
    """The after-read check of the open file's size and time is skipped where the server
    will not answer it: the whole file, checked by its size, is kept on the first attempt."""
    _NoFstatSFTP.refusal = refusal
    info = await make_embedded_sftp(_NoFstatSFTP)
    data = _put(info, "f.xlsx", 20_000, seed=3)
    remote = await _one(info, "f.xlsx")
    job, _events = await _fetch(info, remote, tmp_path / "out", block_size=1024)
    assert (tmp_path / "out" / "f.xlsx").read_bytes() == data and job.attempts == 1


class _RefusingSFTP(asyncssh.SFTPServer):
    """Answers every open of a file with a generic failure (a server-side fault that may pass)."""

    def open(self, path, pflags, attrs):
        raise asyncssh.SFTPFailure("storage backend unavailable")


async def test_a_server_that_stalls_at_every_attempt_fails_saying_no_attempt_is_left(make_embedded_sftp, tmp_path):
    info = await make_embedded_sftp(_StallingSFTP)
    _put(info, "r.xlsx", 20_000)
    remote = await _one(info, "r.xlsx")
    events: list = []
    async with TransferQueue(_factory(info, request_timeout=0.3, block_size=1024), on_event=events.append,
                             backoff_base=0.01, max_attempts=2) as q:
        job = q.add(remote, info.remote_dir, tmp_path / "out")
        await asyncio.wait_for(q.join(), 30)
    assert job.state == "failed" and job.attempts == 2 and isinstance(job.error, ServerStalled), job.error
    (retrying,) = [e.reason for e in events if isinstance(e, Retrying)]
    assert "It is tried again on a new connection" in retrying
    (failed,) = [e for e in events if isinstance(e, Failed)]
    for text in (str(job.error), failed.reason):
        assert "answered nothing for 0.3 s" in text
        assert "tried again on a new connection" not in text
        assert "No attempt is left (2 made), so the file was not downloaded" in text


class _StallThenDropSFTP(asyncssh.SFTPServer):
    """The file stalls the server when opened (as a named pipe put in its place does); the
    first STAT asked about it afterwards loses the connection; the next one says it is a
    named pipe now. ``ops`` records what the client asked, in order."""

    ops: list[str] = []
    armed = False

    def _mine(self, path) -> bool:
        return _StallThenDropSFTP.armed and bytes(path).endswith(b"r.xlsx")

    async def open(self, path, pflags, attrs):
        if self._mine(path):
            _StallThenDropSFTP.ops.append("open")
            await asyncio.sleep(3600)
        return super().open(path, pflags, attrs)

    async def stat(self, path):
        if self._mine(path):
            _StallThenDropSFTP.ops.append("stat")
            if _StallThenDropSFTP.ops.count("stat") == 1:
                self.connection.abort()  # an ordinary connection loss, during the check
                await asyncio.sleep(3600)
            return asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_SPECIAL,
                                      permissions=stat.S_IFIFO | 0o644, size=0)
        return super().stat(path)


async def test_a_check_after_a_stall_that_loses_the_connection_is_made_again_before_opening(
        make_embedded_sftp, tmp_path):
    # After a stall, each later attempt asks first what the file is; an attempt whose check
    # itself lost the connection proved nothing, so the next one asks again instead of
    # opening (a named pipe would stall the server again).
    _StallThenDropSFTP.ops = []
    _StallThenDropSFTP.armed = False
    info = await make_embedded_sftp(_StallThenDropSFTP)
    _put(info, "r.xlsx", 5000)
    remote = await _one(info, "r.xlsx")
    _StallThenDropSFTP.armed = True
    events: list = []
    async with TransferQueue(_factory(info, request_timeout=0.3), on_event=events.append,
                             backoff_base=0.01, max_attempts=5) as q:
        job = q.add(remote, info.remote_dir, tmp_path / "out")
        await asyncio.wait_for(q.join(), 30)
    assert _StallThenDropSFTP.ops == ["open", "stat", "stat"]
    reasons = [e.reason for e in events if isinstance(e, Retrying)]
    assert len(reasons) == 2 and "answered nothing" in reasons[0] and "answered nothing" not in reasons[1]
    assert job.state == "failed" and job.attempts == 3, job.error
    assert "no longer a regular file on the server but a named pipe" in str(job.error)
    assert not (tmp_path / "out" / "r.xlsx").exists()


@pytest.mark.parametrize("exc", [
    asyncssh.SFTPConnectionLost("gone"),
    asyncssh.ConnectionLost("gone"),
    asyncssh.SFTPFailure("backend down"),
    asyncssh.DisconnectError(asyncssh.DISC_BY_APPLICATION, "bye"),
    ConnectionResetError(104, "Connection reset by peer"),
    BrokenPipeError(32, "Broken pipe"),
], ids=lambda e: type(e).__name__)
def test_every_transient_error_promising_a_retry_says_none_is_left_once_given_up(exc):
    err = translate(exc, host="h", port=22, path="r.xlsx")
    assert err.transient
    promise = err.todo
    err.given_up(4)
    assert err.todo != promise
    assert promise not in str(err)
    assert "No attempt is left (4 made), so the file was not downloaded" in str(err)


def test_a_part_file_of_the_wrong_size_after_writing_says_no_attempt_is_left_once_given_up(tmp_path):
    part = tmp_path / "r.xlsx.part"
    part.write_bytes(b"x" * 10)
    remote = RemoteFile("r.xlsx", 11, datetime(2026, 1, 5, tzinfo=UTC))
    fd = os.open(part, os.O_RDWR)
    try:
        with pytest.raises(TransferFailed) as caught:
            _finish(fd, part, tmp_path, remote, "0" * 64)
    finally:
        os.close(fd)
    err = caught.value
    assert err.transient and "It is downloaded again." in str(err)
    err.given_up(5)
    assert "has the wrong size after writing" in str(err)
    assert "downloaded again" not in str(err)
    assert "No attempt is left (5 made), so it was not downloaded" in str(err)
    assert not (tmp_path / "r.xlsx").exists()


async def _waiting_on(conn, within: float = 20.0) -> None:
    """Until some request of ``conn`` waits for its answer (a generous bound, then fail)."""
    deadline = asyncio.get_running_loop().time() + within
    while not conn._waiting:
        assert asyncio.get_running_loop().time() < deadline, "no request ever waited"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _download_waiting_on_a_stalled_server(make_embedded_sftp, tmp_path):
    """A download whose request the server never answers, waiting for it (a limit of 600 s):
    its connection and its task."""
    info = await make_embedded_sftp(_StallingSFTP)
    _put(info, "r.xlsx", 20_000)
    remote = await _one(info, "r.xlsx")
    conn = await connect(info.options(request_timeout=600, block_size=1024))
    async with conn:
        task = asyncio.ensure_future(download(conn, remote, info.remote_dir, tmp_path / "out"))
        await _waiting_on(conn)
        yield conn, task


async def test_a_wait_cancelled_from_outside_on_a_stalled_server_stays_a_cancel(make_embedded_sftp, tmp_path):
    # Requests are awaited in the caller's task and the stall watch cancels that task: a
    # cancel from outside (Ctrl-C, the app's cancel) must end as a cancel, at once, the
    # connection left open, for a read and for a listing (whose closing of the folder would
    # itself wait for the stalled server).
    async with _download_waiting_on_a_stalled_server(make_embedded_sftp, tmp_path) as (conn, task):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert not conn.closed and not conn._waiting
    listing = await make_embedded_sftp(_StallingListSFTP)
    _put(listing, "r.xlsx", 10)
    conn = await connect(listing.options(request_timeout=600))
    async with conn:
        task = asyncio.ensure_future(conn.listdir(listing.remote_dir))
        await _waiting_on(conn)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert not conn.closed and not conn._waiting


async def test_a_stall_and_a_cancel_from_outside_at_once_end_as_the_cancel(make_embedded_sftp, tmp_path):
    # The stall watch and an outside cancel reach the waiting task in the same turn of the
    # loop: the connection is closed (it stalled), and the task ends cancelled, not stalled.
    async with _download_waiting_on_a_stalled_server(make_embedded_sftp, tmp_path) as (conn, task):
        for waiter in conn._waiting:  # as if it had waited for the whole limit
            waiter.began -= 601
        conn._answered -= 601
        conn._watch_stall()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert conn.closed


async def test_a_stalled_wait_leaves_no_cancellation_behind(make_embedded_sftp, tmp_path):
    # The stall is raised in the waiting task by cancelling it: once ServerStalled is raised,
    # nothing of that cancellation may remain (the queue waits and retries in the same task).
    info = await make_embedded_sftp(_StallingSFTP)
    _put(info, "r.xlsx", 20_000)
    remote = await _one(info, "r.xlsx")

    async def fetch() -> int:
        conn = await connect(info.options(request_timeout=0.3, block_size=1024))
        async with conn:
            try:
                await download(conn, remote, info.remote_dir, tmp_path / "out")
            except ServerStalled:
                pass
            left = asyncio.current_task().cancelling()
            await asyncio.sleep(0.01)  # not cancelled by anything left over
            async with asyncio.timeout(5):  # which counts the task's cancellations
                await asyncio.sleep(0)
            return left

    assert await asyncio.wait_for(fetch(), 15) == 0


class _OrderSFTP(asyncssh.SFTPServer):
    """Records, in order, the reads and FSTATs it is asked for."""

    ops: list[str] = []

    async def read(self, file_obj, offset, size):
        _OrderSFTP.ops.append("read")
        return super().read(file_obj, offset, size)

    async def fstat(self, file_obj):
        _OrderSFTP.ops.append("fstat")
        return super().fstat(file_obj)


@pytest.mark.parametrize("size", [20_000, 700_000])
async def test_the_open_file_is_asked_about_after_its_last_read(make_embedded_sftp, tmp_path, size):
    # The check that the file was not rewritten in place relies on the FSTAT being answered
    # after every read: it is sent after the last one, whether the file takes one read (no
    # task of its own) or many.
    _OrderSFTP.ops = []
    info = await make_embedded_sftp(_OrderSFTP)
    data = _put(info, "r.xlsx", size)
    remote = await _one(info, "r.xlsx")
    async with await connect(info.options()) as conn:
        result = await download(conn, remote, info.remote_dir, tmp_path / "out")
    assert result.path.read_bytes() == data
    assert _OrderSFTP.ops[-1] == "fstat" and _OrderSFTP.ops.count("fstat") == 1, _OrderSFTP.ops
    assert _OrderSFTP.ops.count("read") == (1 if size < 261120 else -(-(size + 1) // 261120))
