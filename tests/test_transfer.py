"""The transfer queue against real servers, with real faults (cut connections, full disks...)."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import os
import pwd
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import pytest

from tests.fixtures_sshd import ServerInfo, TcpProxy
from tests.locks import flock_held_elsewhere
from tui.core.model import RemoteFile
from tui.sftp import download as download_mod
from tui.sftp.client import connect
from tui.sftp.download import CHANGED, NEW, SAME, changed_name, download
from tui.sftp.errors import AuthFailed, FileBusy, LocalDiskFull, LocalWriteFailed, PermissionDenied, RemoteFileGone
from tui.sftp.parts import ensure_work_dir, part_path, part_progress, work_dir
from tui.sftp.queue import Cancelled, Done, Failed, Queued, Retrying, Running, TransferQueue

ROOT = Path(__file__).resolve().parent.parent


def _put(info: ServerInfo, name: str, size: int, seed: int = 0) -> bytes:
    data = hashlib.sha256(f"{seed}:{name}".encode()).digest() * (size // 32 + 1)
    data = bytes(b ^ (i & 0xFF) for i, b in enumerate(data[:size])) if size < 100_000 else data[:size]
    (info.root / name).write_bytes(data)
    return data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _listing(info: ServerInfo, **opts) -> dict[str, RemoteFile]:
    async with await connect(info.options(**opts)) as conn:
        listing = await conn.listdir(info.remote_dir)
    return {f.name: f for f in listing.files}


def _factory(info: ServerInfo, **opts):
    async def make():
        return await connect(info.options(**opts))

    return make


def _entries(folder: Path) -> list[str]:
    """The files a person sees in a download folder (not report-keeper's working folder)."""
    return sorted(n for n in os.listdir(folder) if n != ".report-keeper") if folder.exists() else []


def _parts(folder: Path) -> list[str]:
    """Part files in the folder's private working folder."""
    work = work_dir(folder)
    return sorted(n for n in os.listdir(work) if n.endswith(".part")) if work.exists() else []


async def test_queue_downloads_files_intact_private_and_in_order_of_events(sftp_server, tmp_path):
    sizes = {"r_20260601_070000.xlsx": 300_000, "r_20260602_070000.xlsx": 5_000_000,
             "empty.xlsx": 0, "r_20260603_070000.xlsx": 1}
    data = {n: _put(sftp_server, n, s) for n, s in sizes.items()}
    files = await _listing(sftp_server)
    events = []
    out = tmp_path / "reports"
    async with TransferQueue(_factory(sftp_server), concurrency=2, on_event=events.append) as q:
        for f in files.values():
            q.add(f, sftp_server.remote_dir, out)
        jobs = await q.join()
    assert [j.state for j in jobs] == ["done"] * 4
    assert q.connections_opened == 1
    for job in jobs:
        path = out / job.name
        assert path.read_bytes() == data[job.name]
        assert job.result.sha256 == _sha(data[job.name]) and job.result.status == NEW
        assert path.stat().st_mode & 0o777 == 0o600
    assert out.stat().st_mode & 0o777 == 0o700
    assert _entries(out) == sorted(sizes)  # no part files left
    for job in jobs:
        mine = [e for e in events if e.job_id == job.id]
        assert isinstance(mine[0], Queued) and isinstance(mine[-1], Done)
        assert all(isinstance(e, Running) for e in mine[1:-1])
        assert mine[-2].bytes == mine[-2].total == sizes[job.name]
        assert mine[-1].sha256 == _sha(data[job.name]) and mine[-1].path == str(out / job.name)


async def test_concurrency_is_bounded(sftp_server, tmp_path):
    for i in range(6):
        _put(sftp_server, f"f{i}.xlsx", 200_000)
    files = await _listing(sftp_server)
    running: set[int] = set()
    peak = [0]

    def on_event(e):
        if isinstance(e, Running):
            running.add(e.job_id)
            peak[0] = max(peak[0], len(running))
        elif isinstance(e, (Done, Failed)):
            running.discard(e.job_id)

    async with TransferQueue(_factory(sftp_server), concurrency=2, on_event=on_event) as q:
        for f in files.values():
            q.add(f, sftp_server.remote_dir, tmp_path / "out")
        jobs = await q.join()
    assert all(j.state == "done" for j in jobs)
    assert 1 <= peak[0] <= 2


async def test_progress_events_collapse(embedded_sftp, tmp_path):
    _put(embedded_sftp, "big.xlsx", 12_000_000)
    files = await _listing(embedded_sftp)
    events = asyncio.Queue()
    async with TransferQueue(_factory(embedded_sftp), events=events, progress_interval=3600) as q:
        q.add(files["big.xlsx"], ".", tmp_path / "out")
        await q.join()
    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    running = [e for e in seen if isinstance(e, Running)]
    # the attempt's start, the first block, the last block: nothing in between
    assert len(running) == 3
    assert running[-1].bytes == 12_000_000 and running[-1].rate > 0
    assert isinstance(seen[-1], Done)


async def test_cut_connection_resumes_from_part_file(sftp_server, tmp_path):
    size = 10_000_000
    data = _put(sftp_server, "r_20260601_070000.xlsx", size)
    files = await _listing(sftp_server)
    events = []
    async with TcpProxy(sftp_server.port, cut_after=4_000_000) as proxy:
        kh = tmp_path / "kh_proxy"
        kh.write_bytes(f"[127.0.0.1]:{proxy.port} ".encode() + sftp_server.host_key.export_public_key())
        async with TransferQueue(_factory(sftp_server, port=proxy.port, known_hosts=kh),
                                 on_event=events.append, backoff_base=0.01) as q:
            job = q.add(files["r_20260601_070000.xlsx"], sftp_server.remote_dir, tmp_path / "out")
            await q.join()
    assert proxy.cuts == 1 and proxy.connections == 2
    assert job.state == "done", job.error
    assert (tmp_path / "out" / job.name).read_bytes() == data
    assert job.result.sha256 == _sha(data)
    assert job.attempts == 2 and q.connections_opened == 2
    retry = [e for e in events if isinstance(e, Retrying)]
    assert len(retry) == 1 and "connection" in retry[0].reason.lower()
    # resumed, not restarted: the second attempt started inside the file and fetched the rest only
    assert 0 < job.result.resumed_from < size
    assert job.result.transferred == size - job.result.resumed_from < size
    done = [e for e in events if isinstance(e, Done)][0]
    assert done.resumed_from == job.result.resumed_from and done.attempts == 2
    assert _entries(tmp_path / "out") == [job.name]


async def test_file_deleted_after_listing_fails_alone_without_retry(sftp_server, tmp_path):
    _put(sftp_server, "keep.xlsx", 1000)
    _put(sftp_server, "gone.xlsx", 1000)
    files = await _listing(sftp_server)
    (sftp_server.root / "gone.xlsx").unlink()
    async with TransferQueue(_factory(sftp_server), backoff_base=0.01) as q:
        gone = q.add(files["gone.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        keep = q.add(files["keep.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        await q.join()
    assert keep.state == "done"
    assert gone.state == "failed" and isinstance(gone.error, RemoteFileGone) and gone.attempts == 1
    assert "gone.xlsx" in str(gone.error) and "no longer on" in str(gone.error)
    assert _entries(tmp_path / "out") == ["keep.xlsx"]
    assert _parts(tmp_path / "out") == []  # not even an empty part file


class _DenyingSFTP(asyncssh.SFTPServer):
    def open(self, path, pflags, attrs):
        if b"secret" in path:
            raise asyncssh.SFTPPermissionDenied("Permission denied")
        return super().open(path, pflags, attrs)


async def test_permission_denied_on_one_file_others_complete(request, tmp_path, make_embedded_sftp):
    await _permission_denied(await make_embedded_sftp(_DenyingSFTP), tmp_path, {})


async def test_permission_denied_on_one_file_others_complete_sshd(sftp_server_sshd, tmp_path):
    info = sftp_server_sshd
    opts = {}
    if os.geteuid() == 0:  # root reads everything: use an unprivileged account for this test
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root and there is no 'nobody' account")
        opts["username"] = "nobody"
    await _permission_denied(info, tmp_path, opts, chmod=True)


@pytest.fixture
def sftp_server_sshd(sshd, tmp_path):
    import shutil
    import tempfile

    sub = Path(tempfile.mkdtemp(prefix="t-", dir=sshd.root))
    os.chmod(sub, 0o755)
    kh = tmp_path / "known_hosts"
    shutil.copy(sshd.known_hosts, kh)
    (tmp_path / "empty_ssh_config").write_text("")
    yield ServerInfo("sshd", sshd.host, sshd.port, sshd.username, sshd.key, kh, sub,
                     sshd.host_key, None, sub.name, tmp_path / "empty_ssh_config")
    shutil.rmtree(sub, ignore_errors=True)


async def _permission_denied(info: ServerInfo, tmp_path: Path, opts: dict, chmod: bool = False):
    for name in ("a.xlsx", "secret.xlsx", "z.xlsx"):
        _put(info, name, 50_000)
        os.chmod(info.root / name, 0o644)
    if chmod:
        os.chmod(info.root / "secret.xlsx", 0o000)
    files = await _listing(info, **opts)
    out = tmp_path / "out"
    async with TransferQueue(_factory(info, **opts), backoff_base=0.01) as q:
        jobs = [q.add(f, info.remote_dir, out) for f in files.values()]
        await q.join()
    states = {j.name: j.state for j in jobs}
    assert states == {"a.xlsx": "done", "secret.xlsx": "failed", "z.xlsx": "done"}
    secret = [j for j in jobs if j.name == "secret.xlsx"][0]
    assert isinstance(secret.error, PermissionDenied) and secret.attempts == 1
    assert "read access" in str(secret.error)
    assert _entries(out) == ["a.xlsx", "z.xlsx"]


_DISK_FULL_CHILD = r"""
import asyncio, json, resource, sys
from pathlib import Path
from tui.sftp.client import ConnectOptions, connect
from tui.sftp.download import download
from tui.sftp.errors import SftpError

args = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (args["limit"], args["limit"]))

async def main():
    opts = ConnectOptions(host="127.0.0.1", port=args["port"], username=args["user"],
                          key=Path(args["key"]), known_hosts=Path(args["known_hosts"]),
                          ssh_config=Path(args["ssh_config"]), use_agent=False)
    conn = await connect(opts)
    listing = await conn.listdir(args["remote_dir"])
    remote = [f for f in listing.files if f.name == args["name"]][0]
    try:
        await download(conn, remote, args["remote_dir"], Path(args["local_dir"]))
        out = {"ok": True}
    except SftpError as exc:
        out = {"ok": False, "kind": type(exc).__name__, "message": str(exc), "transient": exc.transient}
    await conn.close()
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.parametrize("size", [3_000_000, 6_000_000], ids=["inline-writes", "writer-thread"])
async def test_local_disk_full_gives_clear_error_and_no_partial_final_file(sftp_server, tmp_path, size):
    data = _put(sftp_server, "r_20260601_070000.xlsx", size)
    out = tmp_path / "out"
    args = dict(limit=1_000_000, port=sftp_server.port, user=sftp_server.username,
                key=str(sftp_server.key), known_hosts=str(sftp_server.known_hosts),
                ssh_config=str(sftp_server.ssh_config), remote_dir=sftp_server.remote_dir,
                name="r_20260601_070000.xlsx", local_dir=str(out))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DISK_FULL_CHILD, json.dumps(args), cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    result = json.loads(stdout)
    assert result["ok"] is False and result["kind"] == "LocalDiskFull"
    assert "no room" in result["message"] and "Free some space" in result["message"]
    assert result["transient"] is False
    assert "Traceback" not in stderr.decode()
    remote = (await _listing(sftp_server))["r_20260601_070000.xlsx"]
    part = part_path(out, remote)
    assert _entries(out) == [] and _parts(out) == [part.name]  # nothing under the final name
    assert part.stat().st_size == 1_000_000 and part.read_bytes() == data[:1_000_000]
    # space freed: the next download resumes from the part file
    async with await connect(sftp_server.options()) as conn:
        result = await download(conn, remote, sftp_server.remote_dir, out)
    assert result.resumed_from == 1_000_000 and result.transferred == size - 1_000_000
    assert result.sha256 == _sha(data) and (out / remote.name).read_bytes() == data
    assert _entries(out) == [remote.name] and _parts(out) == []


async def test_cancel_keeps_part_and_next_run_resumes(sftp_server, tmp_path):
    size = 12_000_000
    data = _put(sftp_server, "big.xlsx", size)
    files = await _listing(sftp_server)
    out = tmp_path / "out"
    events = []
    q = TransferQueue(_factory(sftp_server), on_event=events.append, progress_interval=0)

    def on_event(e):
        events.append(e)
        if isinstance(e, Running) and e.bytes > 0 and not q.paused:
            q.pause()  # hold the transfer between two blocks, then cancel it there

    q._on_event = on_event
    async with q:
        job = q.add(files["big.xlsx"], sftp_server.remote_dir, out)
        while not q.paused:
            await asyncio.sleep(0.01)
        assert q.cancel(job.id)
        await q.join()
        assert not q.cancel(job.id)
    assert job.state == "cancelled"
    assert isinstance(events[-1], Cancelled)
    part = part_path(out, files["big.xlsx"])
    assert _entries(out) == [] and _parts(out) == [part.name]
    have = part.stat().st_size
    assert 0 < have < size and part.read_bytes() == data[:have]
    async with TransferQueue(_factory(sftp_server)) as q2:
        job2 = q2.add(files["big.xlsx"], sftp_server.remote_dir, out)
        await q2.join()
    assert job2.state == "done" and job2.result.resumed_from == have
    assert (out / "big.xlsx").read_bytes() == data


async def test_a_cancelled_download_ends_only_once_its_part_holds_what_it_reported(
        sftp_server, tmp_path, held_writes):
    """Cancelled, and cancelled again while it stops (closing the queue cancels the job, then
    its worker cancels it once more), a download ends only once every block it received and
    reported is in its part file and the part is unlocked: whoever looks next (the sync that
    records the partial download, a retry that locks the part) sees what arrived. The writer
    thread is held here, as a loaded machine holds it: the download used to end while its
    last write was still on its way, and the sync then read an empty part and recorded
    nothing (the ledger said "new" beside a part file)."""
    size = 12_000_000
    data = _put(sftp_server, "big.xlsx", size)
    remote = (await _listing(sftp_server))["big.xlsx"]
    out = tmp_path / "out"
    reported = []
    async with await connect(sftp_server.options()) as conn:
        task = asyncio.ensure_future(download(conn, remote, sftp_server.remote_dir, out,
                                              progress=lambda done, total: reported.append(done)))
        assert await asyncio.to_thread(held_writes.held.wait, 30)  # the first block is on its way
        assert reported and reported[-1] > 0
        task.cancel()
        await asyncio.sleep(0.1)  # it is stopping now
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        assert not done, "the download ended while a block it had reported was still being written"
        held_writes.release()
        with pytest.raises(asyncio.CancelledError):
            await task
    part = part_path(out, remote)
    have = part.stat().st_size
    assert have == reported[-1] and part.read_bytes() == data[:have]
    assert part_progress(out, remote) == have  # its record names this copy: the next run resumes
    fd = os.open(part, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nothing holds the part's lock any more
    finally:
        os.close(fd)
    assert _entries(out) == []


async def test_a_big_download_is_written_back_while_it_arrives_and_fsynced_before_its_name(
        sftp_server, tmp_path, monkeypatch):
    """A big file's part is handed to the disk every ``WRITE_BACK_EVERY`` bytes while the rest
    still arrives, so the fsync at the end has little left to write; the part is still
    fsync'ed whole, after every write-back ended, before it gets its final name."""
    step = download_mod.WRITE_BACK_EVERY
    size = 3 * step + 12_345
    data = _put(sftp_server, "big.xlsx", size)
    remote = (await _listing(sftp_server))["big.xlsx"]
    out = tmp_path / "out"
    part = part_path(out, remote)
    steps: list[tuple[str, int]] = []
    real_back, real_fsync, real_link = download_mod._write_back, os.fsync, os.link

    def write_back(fd: int) -> None:
        size_then = os.fstat(fd).st_size
        real_back(fd)
        steps.append(("written back", size_then))

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        if part.exists() and info.st_ino == part.stat().st_ino:
            steps.append(("fsync", info.st_size))
        real_fsync(fd)

    def link(src, dst, *args, **kwargs):
        steps.append(("link", Path(dst).name))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(download_mod, "_write_back", write_back)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    async with await connect(sftp_server.options()) as conn:
        result = await download(conn, remote, sftp_server.remote_dir, out)
    assert result.sha256 == _sha(data) and (out / "big.xlsx").read_bytes() == data
    backs = [n for what, n in steps if what == "written back"]
    assert backs and all(step <= n <= size for n in backs), steps
    assert [what for what, _n in steps][len(backs):] == ["fsync", "link"], steps
    assert steps[len(backs)] == ("fsync", size)


async def test_a_write_back_that_fails_fails_the_download_and_names_nothing(
        sftp_server, tmp_path, monkeypatch):
    """An error of the write-back (a disk that fails) is the download's: the fsync at the end
    would not report it again (an error is reported once per open file), so a file whose
    bytes may not be on the disk must never get its final name."""
    size = 2 * download_mod.WRITE_BACK_EVERY + 1
    _put(sftp_server, "big.xlsx", size)
    remote = (await _listing(sftp_server))["big.xlsx"]
    out = tmp_path / "out"

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(download_mod, "_write_back", failing)
    async with await connect(sftp_server.options()) as conn:
        with pytest.raises(LocalWriteFailed, match="Input/output error"):
            await download(conn, remote, sftp_server.remote_dir, out)
    assert _entries(out) == []


async def test_a_stopped_download_ends_only_once_its_write_back_is_over(
        sftp_server, tmp_path, monkeypatch):
    """Cancelled while the disk is still taking a write-back (a slow disk), the download ends
    only once that write-back is over: its descriptor is never closed under it (the number
    could be another file's by then) and the part is unlocked when the download ends."""
    import threading

    size = 3 * download_mod.WRITE_BACK_EVERY
    data = _put(sftp_server, "big.xlsx", size)
    remote = (await _listing(sftp_server))["big.xlsx"]
    out = tmp_path / "out"
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def held_back(fd: int) -> None:
        ino = os.fstat(fd).st_ino
        started.set()
        release.wait(60)
        seen.append(os.fstat(fd).st_ino == ino)  # still this file's descriptor

    monkeypatch.setattr(download_mod, "_write_back", held_back)
    async with await connect(sftp_server.options()) as conn:
        task = asyncio.ensure_future(download(conn, remote, sftp_server.remote_dir, out))
        assert await asyncio.to_thread(started.wait, 30)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        assert not done, "the download ended while its write-back was still running"
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert seen == [True]
    part = part_path(out, remote)
    have = part.stat().st_size
    assert 0 < have < size and part.read_bytes() == data[:have]
    fd = os.open(part, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nothing holds the part's lock any more
    finally:
        os.close(fd)
    assert _entries(out) == []


def _fails_for(part: Path, real, err: int):
    """``real`` (an fsync/fdatasync), failing with ``err`` for the descriptor of ``part`` only
    (the disk dropped its dirty pages: marked clean, not written), as a failing disk does."""
    def sync(fd: int) -> None:
        info = os.fstat(fd)
        if part.exists() and info.st_ino == part.stat().st_ino:
            raise OSError(err, os.strerror(err))
        real(fd)

    return sync


_LOST = {errno.EIO: (LocalWriteFailed, "Input/output error"),
         errno.ENOSPC: (LocalDiskFull, "no room"),
         errno.EDQUOT: (LocalDiskFull, "no room")}


async def _again_from_zero(info: ServerInfo, remote: RemoteFile, out: Path, data: bytes) -> None:
    """Nothing of the failed part is trusted: the next attempt starts from byte 0."""
    assert part_progress(out, remote) == 0
    part = part_path(out, remote)
    assert not part.exists() or part.stat().st_size == 0
    assert not part.with_suffix(".json").exists()  # nor its record
    async with await connect(info.options()) as conn:
        result = await download(conn, remote, info.remote_dir, out)
    assert result.resumed_from == 0 and result.transferred == len(data)
    assert result.sha256 == _sha(data) and (out / remote.name).read_bytes() == data
    assert _parts(out) == []


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC, errno.EDQUOT],
                         ids=["EIO", "ENOSPC", "EDQUOT"])
async def test_a_failed_write_back_discards_the_part_and_the_next_attempt_starts_again(
        embedded_sftp, tmp_path, monkeypatch, err):
    """A write-back (fdatasync) that fails may have left the part's bytes only in the cache,
    marked clean though never written: a later fsync would not say so, and resuming would
    trust them (the tail check reads the cache, and only 64 KiB). The part and its record go,
    under the part's lock, and the error says what happened and that it starts again."""
    size = 2 * download_mod.WRITE_BACK_EVERY + 12_345
    data = _put(embedded_sftp, "big.xlsx", size)
    remote = (await _listing(embedded_sftp))["big.xlsx"]
    out = tmp_path / "out"
    real = download_mod._sync_data
    monkeypatch.setattr(download_mod, "_sync_data", _fails_for(part_path(out, remote), real, err))
    kind, text = _LOST[err]
    async with await connect(embedded_sftp.options()) as conn:
        with pytest.raises(kind) as caught:
            await download(conn, remote, embedded_sftp.remote_dir, out)
    message = str(caught.value)
    assert text in message and "starts again from the beginning" in message
    assert "resumes from there" not in message
    assert _entries(out) == []
    monkeypatch.setattr(download_mod, "_sync_data", real)
    await _again_from_zero(embedded_sftp, remote, out, data)


@pytest.mark.parametrize("batched", [False, True], ids=["alone", "sync_dir"])
@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
async def test_a_failed_final_fsync_discards_the_part_and_the_next_attempt_starts_again(
        embedded_sftp, tmp_path, monkeypatch, err, batched):
    """The fsync before the final name fails: the whole part may not be on the disk, and no
    later fsync would say so. It is not kept for resuming (it used to be, and the next attempt
    placed it as it was: every byte of it already there)."""
    size = 2_000_000  # its record is written (more than RECORD_FROM), no write-back
    data = _put(embedded_sftp, "r.xlsx", size)
    remote = (await _listing(embedded_sftp))["r.xlsx"]
    out = tmp_path / "out"
    real = os.fsync
    monkeypatch.setattr(os, "fsync", _fails_for(part_path(out, remote), real, err))
    kind, text = _LOST[err]
    sync_dir = (lambda folder, wait=True: True) if batched else None
    async with await connect(embedded_sftp.options()) as conn:
        with pytest.raises(kind) as caught:
            await download(conn, remote, embedded_sftp.remote_dir, out, sync_dir=sync_dir)
    message = str(caught.value)
    assert text in message and "starts again from the beginning" in message
    assert _entries(out) == []
    monkeypatch.setattr(os, "fsync", real)
    await _again_from_zero(embedded_sftp, remote, out, data)


async def test_a_write_back_failing_while_the_download_is_cancelled_discards_the_part(
        embedded_sftp, tmp_path, monkeypatch):
    """Cancelled while a write-back is still on the disk, which then fails: the cancel stays
    a cancel, but the part is not kept for resuming either."""
    import threading

    size = 3 * download_mod.WRITE_BACK_EVERY
    data = _put(embedded_sftp, "big.xlsx", size)
    remote = (await _listing(embedded_sftp))["big.xlsx"]
    out = tmp_path / "out"
    started, release = threading.Event(), threading.Event()

    def held_then_failing(fd: int) -> None:
        started.set()
        release.wait(60)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(download_mod, "_sync_data", held_then_failing)
    async with await connect(embedded_sftp.options()) as conn:
        task = asyncio.ensure_future(download(conn, remote, embedded_sftp.remote_dir, out))
        assert await asyncio.to_thread(started.wait, 30)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    monkeypatch.undo()
    await _again_from_zero(embedded_sftp, remote, out, data)


@pytest.mark.parametrize("size", [3_000_000, 2 * 8 * 1024 * 1024 + 1],
                         ids=["inline-writes", "writer-thread"])
async def test_a_full_disk_at_write_keeps_the_part_for_resuming(
        embedded_sftp, tmp_path, monkeypatch, size):
    """ENOSPC from write() (what the disk shows when it is full) leaves what was written
    before intact: the part stays, and once space is freed the download resumes from it."""
    data = _put(embedded_sftp, "r.xlsx", size)
    remote = (await _listing(embedded_sftp))["r.xlsx"]
    out = tmp_path / "out"
    part = part_path(out, remote)
    limit = size - 1_500_000  # after one write-back at least, for the writer thread
    real_write = os.write

    def write(fd: int, data_: bytes) -> int:
        info = os.fstat(fd)
        if (part.exists() and info.st_ino == part.stat().st_ino
                and info.st_size + len(data_) > limit):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data_)

    monkeypatch.setattr(os, "write", write)
    async with await connect(embedded_sftp.options()) as conn:
        with pytest.raises(LocalDiskFull) as caught:
            await download(conn, remote, embedded_sftp.remote_dir, out)
    assert "resumes from there" in str(caught.value) and "Free some space" in str(caught.value)
    monkeypatch.setattr(os, "write", real_write)
    have = part.stat().st_size
    assert 0 < have <= limit and part.read_bytes() == data[:have]
    assert part_progress(out, remote) == have
    async with await connect(embedded_sftp.options()) as conn:
        result = await download(conn, remote, embedded_sftp.remote_dir, out)
    assert result.resumed_from == have and result.sha256 == _sha(data)
    assert (out / remote.name).read_bytes() == data and _parts(out) == []


async def test_cancel_all_and_pause_hold_queued_jobs(embedded_sftp, tmp_path):
    for i in range(3):
        _put(embedded_sftp, f"f{i}.xlsx", 1000)
    files = await _listing(embedded_sftp)
    events = []
    async with TransferQueue(_factory(embedded_sftp), on_event=events.append) as q:
        q.pause()
        jobs = [q.add(f, ".", tmp_path / "out") for f in files.values()]
        for _ in range(20):
            await asyncio.sleep(0)
        assert not any(isinstance(e, Running) for e in events)  # paused: nothing started
        q.cancel_all()
        q.resume()
        await q.join()
    assert [j.state for j in jobs] == ["cancelled"] * 3
    assert _entries(tmp_path / "out") == []


async def test_auth_failure_is_not_retried_and_stops_the_queue(sftp_server, tmp_path):
    _put(sftp_server, "a.xlsx", 10)
    _put(sftp_server, "b.xlsx", 10)
    files = await _listing(sftp_server)
    stranger = tmp_path / "id_stranger"
    stranger.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    calls = []

    async def factory():
        calls.append(1)
        return await connect(sftp_server.options(key=stranger))

    async with TransferQueue(factory, backoff_base=0.01) as q:
        jobs = [q.add(f, sftp_server.remote_dir, tmp_path / "out") for f in files.values()]
        await q.join()
    assert len(calls) == 1
    assert all(j.state == "failed" and isinstance(j.error, AuthFailed) and j.attempts == 1 for j in jobs)


async def test_existing_file_never_overwritten(sftp_server, tmp_path):
    name = "r_20260601_070000.xlsx"
    data = _put(sftp_server, name, 20_000)
    os.utime(sftp_server.root / name, (1_780_300_800, 1_780_300_800))  # 2026-06-01T08:00Z
    files = await _listing(sftp_server)
    out = tmp_path / "out"
    out.mkdir()
    async with await connect(sftp_server.options()) as conn:
        (out / name).write_bytes(data)  # already held, identical
        same = await download(conn, files[name], sftp_server.remote_dir, out)
        assert same.status == SAME and same.path == out / name
        (out / name).write_bytes(b"an older copy")
        changed = await download(conn, files[name], sftp_server.remote_dir, out)
        again = await download(conn, files[name], sftp_server.remote_dir, out)
    assert changed.status == CHANGED
    assert changed.path.name == "r_20260601_070000 (changed 2026-06-01T0800Z).xlsx"
    assert changed.path.name == changed_name(name, files[name])
    assert changed.path.read_bytes() == data and (out / name).read_bytes() == b"an older copy"
    assert again.status == SAME and again.path == changed.path
    assert len(_entries(out)) == 2


async def test_a_placed_file_can_stay_locked_until_its_record_is_committed(sftp_server, tmp_path):
    """``hold_placed``: a descriptor of the file just placed, still holding the part's lock, now
    the final file's. Another process finds the file locked (its record is on the way) until
    the descriptor is closed; a file found in place (``same``) is not ours to lock."""
    from tui.sftp.sync import _being_recorded

    name = "r_20260601_070000.xlsx"
    data = _put(sftp_server, name, 20_000)
    files = await _listing(sftp_server)
    out = tmp_path / "out"
    held: list[tuple[Path, int]] = []
    async with await connect(sftp_server.options()) as conn:
        placed = await download(conn, files[name], sftp_server.remote_dir, out,
                                hold_placed=lambda final, fd: held.append((final, fd)))
        assert placed.status == NEW and [final for final, _fd in held] == [out / name]
        assert placed.path.read_bytes() == data
        assert _being_recorded(out / name, len(data))
        assert not _being_recorded(out / name, len(data) + 1)  # another copy's size: not this one
        with pytest.raises(BlockingIOError), open(out / name, "rb") as f:  # another open file
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        os.close(held[0][1])
        assert not _being_recorded(out / name, len(data))
        again = await download(conn, files[name], sftp_server.remote_dir, out,
                               hold_placed=lambda final, fd: held.append((final, fd)))
    assert again.status == SAME and len(held) == 1


async def test_server_file_changed_after_listing_is_fetched_fresh(sftp_server, tmp_path):
    _put(sftp_server, "r.xlsx", 100_000, seed=1)
    files = await _listing(sftp_server)
    newer = _put(sftp_server, "r.xlsx", 150_000, seed=2)
    events = []
    async with TransferQueue(_factory(sftp_server), on_event=events.append, backoff_base=0.01) as q:
        job = q.add(files["r.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        await q.join()
    assert job.state == "done" and job.attempts == 2
    assert "changed on the server" in [e for e in events if isinstance(e, Retrying)][0].reason
    assert (tmp_path / "out" / "r.xlsx").read_bytes() == newer
    assert _entries(tmp_path / "out") == ["r.xlsx"]


@pytest.mark.parametrize("seconds", [2**32 - 1, 0])
async def test_a_file_changed_to_the_ends_of_server_time_is_fetched_on_retry(sftp_server, tmp_path, seconds):
    """The retry takes the changed file's size and mtime from the server: an mtime at either end
    of what SFTP can say (2106-02-07, 1970-01-01; a broken clock) is taken as it is."""
    _put(sftp_server, "r.xlsx", 100_000, seed=1)
    files = await _listing(sftp_server)
    newer = _put(sftp_server, "r.xlsx", 150_000, seed=2)
    os.utime(sftp_server.root / "r.xlsx", (seconds, seconds))
    async with TransferQueue(_factory(sftp_server), backoff_base=0.01) as q:
        job = q.add(files["r.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        await q.join()
    assert job.state == "done" and job.attempts == 2, job.error
    assert job.remote.mtime == datetime.fromtimestamp(seconds, UTC) and job.remote.size == 150_000
    assert (tmp_path / "out" / "r.xlsx").read_bytes() == newer


async def test_a_bug_while_handling_a_retry_fails_that_file_not_the_queue(sftp_server, tmp_path, monkeypatch):
    """Whatever raises while a failed attempt is handled (the wait, the server's new size and
    mtime) fails that one file with the unexpected-error message; the others complete and
    the queue ends. A fault is injected: nothing raises there today."""
    _put(sftp_server, "r.xlsx", 100_000, seed=1)
    _put(sftp_server, "s.xlsx", 50_000, seed=3)
    files = await _listing(sftp_server)
    _put(sftp_server, "r.xlsx", 150_000, seed=2)  # changed after the listing: a retry follows

    async def broken_refresh(self, job, conn):
        raise RuntimeError("injected")

    monkeypatch.setattr(TransferQueue, "_refresh", broken_refresh)
    async with TransferQueue(_factory(sftp_server), backoff_base=0.01) as q:
        r = q.add(files["r.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        s = q.add(files["s.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        await asyncio.wait_for(q.join(), 60)
    assert r.state == "failed" and "Unexpected error" in str(r.error), (r.state, r.error)
    assert s.state == "done"
    assert not (tmp_path / "out" / "r.xlsx").exists()


async def test_a_job_cancelled_before_its_task_first_ran_still_ends(sftp_server, tmp_path):
    """Cancel all at the moment a job's task is created but has not run yet (the app's x while
    a batch starts): the job ends cancelled and join returns. Its task's body never ran, so
    nothing inside it could mark the job; the app's download worker waited for ever."""
    _put(sftp_server, "r.xlsx", 10_000, seed=1)
    files = await _listing(sftp_server)
    async with TransferQueue(_factory(sftp_server)) as q:
        job = q.add(files["r.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        for _ in range(20):  # until the worker has made the job's task, before it ran
            await asyncio.sleep(0)
            if job.task is not None:
                break
        assert job.task is not None and not job.task.done()
        q.cancel_all()
        await asyncio.wait_for(q.join(), 10)
    assert job.state == "cancelled" and job.finished.is_set()
    assert not (tmp_path / "out" / "r.xlsx").exists()


async def test_jobs_cancelled_before_any_of_their_tasks_ran_end_and_free_their_places(sftp_server, tmp_path):
    """A job's task is made as it is added; cancelled before its first step it never runs the
    body that ends the job: the queue ends it, and the next job still gets its place."""
    data = {n: _put(sftp_server, n, 10_000, seed=i) for i, n in enumerate(("a.xlsx", "b.xlsx", "c.xlsx"))}
    files = await _listing(sftp_server)
    async with TransferQueue(_factory(sftp_server), concurrency=1) as q:
        a = q.add(files["a.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        assert a.task is not None and not a.started
        q.cancel(a.id)  # before its task ever ran
        b = q.add(files["b.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        c = q.add(files["c.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        await asyncio.wait_for(q.join(), 30)
        assert a.state == "cancelled" and a.finished.is_set()
        assert b.state == c.state == "done", (b.error, c.error)
        d = q.add(files["a.xlsx"], sftp_server.remote_dir, tmp_path / "out")
        e = q.add(files["c.xlsx"], sftp_server.remote_dir, tmp_path / "again")
        q.cancel_all()  # one running (not yet begun), one queued
        await asyncio.wait_for(q.join(), 30)
        assert d.state == e.state == "cancelled"
    assert (tmp_path / "out" / "b.xlsx").read_bytes() == data["b.xlsx"]
    assert not (tmp_path / "out" / "a.xlsx").exists()


async def test_jobs_added_while_paused_start_on_resume(sftp_server, tmp_path):
    data = {n: _put(sftp_server, n, 10_000, seed=i) for i, n in enumerate(("a.xlsx", "b.xlsx"))}
    files = await _listing(sftp_server)
    async with TransferQueue(_factory(sftp_server), concurrency=1) as q:
        q.pause()
        jobs = [q.add(files[n], sftp_server.remote_dir, tmp_path / "out") for n in sorted(data)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert [j.state for j in jobs] == ["queued", "queued"]
        q.resume()
        await asyncio.wait_for(q.join(), 30)
    assert [j.state for j in jobs] == ["done", "done"]
    for n, d in data.items():
        assert (tmp_path / "out" / n).read_bytes() == d


class _CappingSFTP(asyncssh.SFTPServer):
    """Answers every read with at most an odd number of bytes (a server capping reads)."""

    CAP = 100_003

    async def read(self, file_obj, offset, size):
        return super().read(file_obj, offset, min(size, self.CAP))


async def test_a_big_file_from_a_server_capping_its_reads_lands_whole(make_embedded_sftp, tmp_path):
    """Short reads of a big file (writer thread, write-back) are asked for again in order."""
    info = await make_embedded_sftp(_CappingSFTP)
    size = download_mod.WRITE_BACK_EVERY + 3 * 1024 * 1024 + 17
    data = _put(info, "big.xlsx", size)
    remote = (await _listing(info))["big.xlsx"]
    async with await connect(info.options()) as conn:
        result = await download(conn, remote, info.remote_dir, tmp_path / "out")
    assert result.sha256 == _sha(data) and result.path.read_bytes() == data


async def test_a_big_file_read_in_blocks_larger_than_sshd_answers_lands_whole(sftp_server_sshd, tmp_path):
    """OpenSSH answers at most 255 KB per read: asked for 1 MiB blocks, every answer is short."""
    info = sftp_server_sshd
    size = download_mod.WRITE_BACK_EVERY + 3 * 1024 * 1024 + 17
    data = _put(info, "big.xlsx", size)
    remote = (await _listing(info))["big.xlsx"]
    async with await connect(info.options(block_size=1024 * 1024)) as conn:
        result = await download(conn, remote, info.remote_dir, tmp_path / "out", max_requests=8)
    assert result.sha256 == _sha(data) and result.path.read_bytes() == data


class _HostileSFTP(asyncssh.SFTPServer):
    """Lists names no client may write, and serves data for them if asked."""

    HOSTILE = [b"../evil.xlsx", b"sub/evil.xlsx", b"..\\evil.xlsx", b"evil\x1b]0;pwned\x07.xlsx",
               b"evil\x00.xlsx", b"\xe2\x80\xaeevil.xlsx", b"evil\xff.xlsx"]

    async def scandir(self, path):
        async for entry in super().scandir(path):
            yield entry
        for name in self.HOSTILE:
            attrs = asyncssh.SFTPAttrs(type=asyncssh.FILEXFER_TYPE_REGULAR, size=5,
                                       permissions=0o100644, mtime=1_780_000_000)
            yield asyncssh.SFTPName(name, attrs=attrs)


async def test_hostile_names_refused_and_never_written(make_embedded_sftp, tmp_path):
    info = await make_embedded_sftp(_HostileSFTP)
    _put(info, "fine.xlsx", 10)
    async with await connect(info.options()) as conn:
        listing = await conn.listdir(".")
        assert [f.name for f in listing.files] == ["fine.xlsx"]
        refused = dict(listing.refused)
        assert len(refused) == len(_HostileSFTP.HOSTILE)
        assert all(reason for reason in refused.values())
    out = tmp_path / "deep" / "out"
    mtime = datetime.fromtimestamp(1_780_000_000, UTC)
    async with TransferQueue(_factory(info)) as q:
        jobs = [q.add(RemoteFile(n, 5, mtime), ".", out) for n in refused]
        await q.join()
    assert all(j.state == "failed" and "refused" in str(j.error) for j in jobs)
    assert _entries(out) == []
    for dirpath, dirnames, filenames in os.walk(tmp_path):
        assert not [n for n in filenames + dirnames if "evil" in n], dirpath


async def test_long_name_uses_a_short_part_file(embedded_sftp, tmp_path):
    name = "L" * 240 + ".xlsx"  # allowed (<= 255 bytes), but its part name would not be
    data = _put(embedded_sftp, name, 5000)
    files = await _listing(embedded_sftp)
    assert len(part_path(tmp_path / "out", files[name]).name.encode()) <= 255
    async with await connect(embedded_sftp.options()) as conn:
        result = await download(conn, files[name], ".", tmp_path / "out")
    assert result.path.read_bytes() == data and _entries(tmp_path / "out") == [name]


async def test_a_file_another_process_is_downloading_is_left_to_it(embedded_sftp, tmp_path):
    """The app and a scheduled sync at the same time: one writer per part file."""
    data = _put(embedded_sftp, "busy.xlsx", 300_000)
    files = await _listing(embedded_sftp)
    out = tmp_path / "out"
    async with await connect(embedded_sftp.options()) as conn:  # an interrupted download
        task = asyncio.ensure_future(download(
            conn, files["busy.xlsx"], embedded_sftp.remote_dir, out, max_requests=1,
            progress=lambda done, total: task.cancel() if done else None))
        with pytest.raises(asyncio.CancelledError):
            await task
    have = part_progress(out, files["busy.xlsx"])
    assert 0 < have < len(data)
    part = part_path(out, files["busy.xlsx"])
    with flock_held_elsewhere(part):  # as a running download holds its part file
        async with await connect(embedded_sftp.options()) as conn:
            with pytest.raises(FileBusy, match="Another Report Keeper process") as err:
                await download(conn, files["busy.xlsx"], embedded_sftp.remote_dir, out)
        assert not err.value.transient
        assert part.read_bytes() == data[:have]  # untouched
        assert not (out / "busy.xlsx").exists()
    # Once the other process is gone, the download resumes from its part file.
    async with await connect(embedded_sftp.options()) as conn:
        result = await download(conn, files["busy.xlsx"], embedded_sftp.remote_dir, out)
    assert result.resumed_from == have
    assert (out / "busy.xlsx").read_bytes() == data


async def test_placing_is_made_at_once_or_else_in_a_thread_and_its_folder_always_handed_on(embedded_sftp, tmp_path, monkeypatch):
    """With ``sync_dir`` (the sync's batches) only the fsync goes to a thread when the copy's
    name is free; a taken name (another copy there) or a file system without hard links (the
    placing renames instead) is placed in a thread as before. Either way the folder is handed
    to ``sync_dir`` once the copy is in place: at once when it takes it so, else in a thread."""
    import errno
    import threading

    from tui.sftp import download as download_mod

    for name, seed in (("a.xlsx", 0), ("b.xlsx", 1), ("c.xlsx", 2)):
        _put(embedded_sftp, name, 5000, seed=seed)
    files = await _listing(embedded_sftp)
    out = tmp_path / "out"
    handed: list[tuple[str, bool, bool, bool]] = []

    def sync_dir(folder: Path, *, wait: bool = True) -> bool:
        in_thread = threading.current_thread() is not threading.main_thread()
        placed = sorted(n for n in os.listdir(folder) if n.endswith(".xlsx"))
        handed.append((",".join(placed), wait, in_thread, folder == out))
        return wait  # takes it only where it may wait

    async with await connect(embedded_sftp.options()) as conn:
        a = await download(conn, files["a.xlsx"], embedded_sftp.remote_dir, out, sync_dir=sync_dir)
        (out / "b.xlsx").write_bytes(b"another copy")  # its name is taken
        b = await download(conn, files["b.xlsx"], embedded_sftp.remote_dir, out, sync_dir=sync_dir)
        real_link = os.link

        def no_links(src, dst, *args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(download_mod.os, "link", no_links)
        try:
            c = await download(conn, files["c.xlsx"], embedded_sftp.remote_dir, out, sync_dir=sync_dir)
        finally:
            monkeypatch.setattr(download_mod.os, "link", real_link)
    assert (a.status, b.status, c.status) == (NEW, CHANGED, NEW)
    assert a.path == out / "a.xlsx" and c.path == out / "c.xlsx" and b.path.name.startswith("b (changed")
    for result in (a, b, c):
        assert result.path.read_bytes() == (embedded_sftp.root / result.name).read_bytes()
    assert _parts(out) == []
    assert handed == [("a.xlsx", False, False, True), ("a.xlsx", True, True, True),  # asked at once, then in a thread
                      (f"a.xlsx,{b.path.name},b.xlsx", True, True, True),  # placed in a thread
                      (f"a.xlsx,{b.path.name},b.xlsx,c.xlsx", True, True, True)]


async def test_a_placed_copy_is_0600_whatever_the_umask(embedded_sftp, tmp_path):
    """The part file is made 0600 less the umask; the copy placed from it is 0600 all the
    same (set only when it is not that already)."""
    _put(embedded_sftp, "u.xlsx", 5000)
    files = await _listing(embedded_sftp)
    old = os.umask(0o277)  # the part is made 0400
    try:
        async with await connect(embedded_sftp.options()) as conn:
            result = await download(conn, files["u.xlsx"], embedded_sftp.remote_dir, tmp_path / "out")
    finally:
        os.umask(old)
    assert result.status == NEW and result.path.stat().st_mode & 0o777 == 0o600


async def test_whether_another_process_holds_the_copy_is_asked_at_once_or_else_in_a_thread(embedded_sftp, tmp_path):
    """The claim asks ``already_held`` on the event loop first, where it must not wait; when it
    cannot tell at once (None) it is asked again in a thread, where it may wait, the part
    staying locked meanwhile. Either way True stops the download before a byte is read."""
    import threading

    _put(embedded_sftp, "a.xlsx", 5000)
    _put(embedded_sftp, "b.xlsx", 5000, seed=1)
    files = await _listing(embedded_sftp)
    out = tmp_path / "out"
    ensure_work_dir(out)  # made by an earlier run (the first claim of a run makes it in a thread)
    asked: list[tuple[str, bool, bool]] = []

    def cannot_tell_at_once(answer: bool):
        def held(remote: RemoteFile, *, wait: bool = True) -> bool | None:
            in_thread = threading.current_thread() is not threading.main_thread()
            asked.append((remote.name, wait, in_thread))
            assert part_path(out, remote).exists()  # asked once the part is there, locked
            return answer if wait else None
        return held

    async with await connect(embedded_sftp.options()) as conn:
        result = await download(conn, files["a.xlsx"], embedded_sftp.remote_dir, out,
                                already_held=cannot_tell_at_once(False))
        assert result.status == NEW and (out / "a.xlsx").exists()
        with pytest.raises(FileBusy):
            await download(conn, files["b.xlsx"], embedded_sftp.remote_dir, out,
                           already_held=cannot_tell_at_once(True))
    assert asked == [("a.xlsx", False, False), ("a.xlsx", True, True),
                     ("b.xlsx", False, False), ("b.xlsx", True, True)]
    assert not (out / "b.xlsx").exists() and _parts(out) == []

    asked.clear()

    def at_once(remote: RemoteFile, *, wait: bool = True) -> bool | None:
        asked.append((remote.name, wait, threading.current_thread() is not threading.main_thread()))
        return False

    (out / "a.xlsx").unlink()
    async with await connect(embedded_sftp.options()) as conn:
        result = await download(conn, files["a.xlsx"], embedded_sftp.remote_dir, out, already_held=at_once)
    assert result.status == NEW and asked == [("a.xlsx", False, False)]  # no thread needed


async def test_a_part_is_resumed_only_when_its_record_names_this_server_copy(sftp_server, tmp_path):
    """Size and mtime are recorded beside the part, not only trusted from a name."""
    data = _put(sftp_server, "r_20260601_070000.xlsx", 3_000_000)
    remote = (await _listing(sftp_server))["r_20260601_070000.xlsx"]
    out = tmp_path / "out"

    async def interrupted() -> int:
        async with await connect(sftp_server.options()) as conn:
            task = asyncio.ensure_future(download(
                conn, remote, sftp_server.remote_dir, out, max_requests=1,
                progress=lambda done, total: task.cancel() if done >= 1_500_000 else None))
            with pytest.raises(asyncio.CancelledError):
                await task
        return part_progress(out, remote)

    have = await interrupted()
    assert have >= 1_500_000
    record = part_path(out, remote).with_suffix(".json")
    forged = json.loads(record.read_text())
    for key, value in (("mtime", "2020-01-01T00:00:00+00:00"), ("size", 1), ("name", "other.xlsx")):
        doctored = {**forged, key: value}
        record.write_text(json.dumps(doctored))
        assert part_progress(out, remote) == 0
        part_path(out, remote).write_bytes(os.urandom(have))  # its bytes are someone else's now
        async with await connect(sftp_server.options()) as conn:
            result = await download(conn, remote, sftp_server.remote_dir, out)
        assert result.resumed_from == 0 and result.path.read_bytes() == data
        result.path.unlink()
        have = await interrupted()
    # With its own record it resumes.
    async with await connect(sftp_server.options()) as conn:
        result = await download(conn, remote, sftp_server.remote_dir, out)
    assert result.resumed_from == have > 0 and result.path.read_bytes() == data
    assert _parts(out) == [] and os.listdir(work_dir(out)) == []


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE])
def test_running_out_of_open_files_is_not_blamed_on_the_folder(code):
    """A download that cannot open its file because the process (or the system) has too many
    open already is told as that, with what to do: not as a folder that is missing or not
    writable, which would send a person to check the wrong thing."""
    from tui.sftp.errors import translate

    err = translate(OSError(code, os.strerror(code)), local_path="/srv/reports/Loans_20260601.xlsx")
    text = str(err)  # what happened, then what to do
    assert "open files" in text and "ulimit -n" in text, text
    assert "writable" not in text, text


@pytest.mark.parametrize("code", [errno.EIO, errno.EROFS])
def test_a_failing_or_read_only_disk_is_not_blamed_on_the_folders_permissions(code):
    """A write the disk itself failed (an input/output error) or refused (the file system is
    mounted read-only, which is what Linux does to one after disk errors) is told as that, with
    what to do: not as a folder that may be missing or not writable, which would send a person to
    check permissions while the disk fails."""
    from tui.sftp.errors import LocalWriteFailed, translate

    err = translate(OSError(code, os.strerror(code)), local_path="/srv/reports/Loans_20260601.xlsx")
    text = str(err)
    assert isinstance(err, LocalWriteFailed), type(err)
    assert "writable by you" not in text, text
    if code == errno.EIO:
        assert "input/output error" in text.lower() and "dmesg" in text, text
    else:
        assert "read-only" in text and "mount" in text, text
    assert "kept" in text, text  # the copies already kept are said to be unaffected


async def test_a_small_download_stopped_before_its_fsync_leaves_what_arrived_in_the_part(
        embedded_sftp, tmp_path, monkeypatch):
    """Its one block arrived, then the download is cancelled while it waits for the file's
    size and time (the FSTAT after the last read): it ends with the block in its part file
    and the part's record written, as for any block received (the next attempt resumes it)."""
    data = _put(embedded_sftp, "small.xlsx", 200_000)
    remote = (await _listing(embedded_sftp))["small.xlsx"]
    arrived = asyncio.Event()
    never = asyncio.Event()

    async def stat_held(self, *args, **kwargs):
        await never.wait()

    monkeypatch.setattr(asyncssh.SFTPClientFile, "stat", stat_held)
    out = tmp_path / "out"
    async with await connect(embedded_sftp.options()) as conn:
        task = asyncio.ensure_future(download(
            conn, remote, embedded_sftp.remote_dir, out, sync_dir=lambda folder, *, wait=True: True,
            progress=lambda done, total: arrived.set() if done == total else None))
        await asyncio.wait_for(arrived.wait(), 30)  # received: it waits for the FSTAT now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    part = part_path(out, remote)
    assert part.read_bytes() == data
    assert part_progress(out, remote) == len(data)
    assert _entries(out) == []
