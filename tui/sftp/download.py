"""Downloading one file safely: :func:`download`.

    result = await download(conn, remote_file, remote_dir, local_dir, progress=cb)
    # -> DownloadResult(name, size, sha256, path, status new|same|changed, resumed_from, ...)

How a file is written (docs/ARCHITECTURE.md, "Local files"):
- into its part file in report-keeper's private working folder (:mod:`tui.sftp.parts`),
  locked while it is written; the part's record (remote name, size, mtime) is written once
  1 MiB has arrived, or when the transfer stops early, so a part is resumed only for the very
  server copy it holds;
- blocks are requested many at a time but written and hashed strictly in order, so a part
  file is always a valid prefix: after a broken connection (or a full disk, or a cancel)
  the next attempt resumes at offset = part size, hashing the prefix it already has, once
  the part's last 64 KiB are found to be the server's bytes there (a file replaced by another
  of the same size and mtime is otherwise spliced; different: downloaded from the start);
- the reads ask for one byte past the listed size, so a file that grew (still being
  uploaded) or shrank since the listing is noticed without an extra round trip, and is
  fetched again from the start with its new size (a transient ``TransferFailed``); an FSTAT
  of the open file sent right after the last read (so answered after all of them, at no
  extra wait) must still give the listed size and mtime: a file rewritten in place meanwhile
  is fetched again the same way, never kept as half the old and half the new file (once the
  queue has no attempt left, its message says the file was not downloaded and what to do);
- the size is checked against the server's, the part is fsync'ed, then linked to its final
  name with ``os.link`` (fails instead of overwriting) and removed; files 0600, folder 0700;
  then the folder is fsync'ed, or, given ``sync_dir``, handed to ``sync_dir(folder)``, whose
  caller makes it durable before anything relies on the new entry (the ledger fsyncs the
  folders of a batch's downloads once, just before the commit that records them);
- files of 4 MB and more are written and hashed by a writer thread of their own, so the
  disk and the network overlap; memory stays bounded by the reads in flight (32 x 255 KB);
  their part is written back to the disk (``fdatasync`` in a thread, one at a time) every
  8 MB while the rest arrives, so the fsync before the final name has little left to write;
  a write-back's error fails the download (the fsync would not report it again), and the
  part's descriptor is closed only once its write-back is over;
- a write-back or final fsync that fails (EIO; ENOSPC or EDQUOT on some file systems) may
  leave the part's pages marked clean though never written, and no later fsync says so: the
  part is then not kept for resuming (emptied, removed with its record, under its lock, also
  when the download was cancelled or failed otherwise meanwhile), and the error, of its usual
  class and message, says the download starts again from the beginning;
- a final name that already exists is never overwritten: identical content gives status
  ``same``; different content is written beside it as ``<stem> (changed <server mtime
  YYYY-MM-DDTHHMMZ>)<suffix>`` (then `` 2``, `` 3``... if needed) with status ``changed``,
  the stem shortened when needed so the name stays within 255 bytes;
- names refused by :func:`tui.core.names.refusal_reason` are never written;
- ``already_held(remote)`` (optional) is asked once the part is locked: True means another
  process has just finished this very copy, and the download stops with :class:`FileBusy`
  before reading a byte;
- ``hold_placed(final, fd)`` (optional) is given, for a file this download placed under its
  final name, a descriptor of it that still holds the part's lock (``flock``), now the final
  file's: the caller keeps it until the file's record is committed, so another process that
  finds the file in place meanwhile knows its record is on the way (the lock goes with the
  process, so a killed run leaves none).

Errors are :mod:`tui.sftp.errors` classes; a full local disk fails with
:class:`LocalDiskFull` and, when it shows at a write (what was written before is intact),
keeps the part file for resuming once space is freed (at a write-back or fsync: see above). Nothing
partial ever has the final name. Retrying is the queue's business (:mod:`tui.sftp.queue`).
However it stops (an error, a cancel, a second cancel while it stops), a download ends only
once its reads in flight are over, every block it received is in the part file and the part
is unlocked: what the caller then reads of the part (the sync records it as partial) is what
arrived, and the next attempt can lock it at once. Once the file is placed under its final
name a cancel no longer stops it: it ends as done, returning the placed file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import logging
import os
import stat
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Protocol, cast

import asyncssh

from tui.core import clock
from tui.core.durable import fsync_dir
from tui.core.model import RemoteFile
from tui.core.names import fit_name, portable_name, refusal_reason
from tui.core.validate import sniffed_bytes
from tui.sftp import parts
from tui.sftp.client import SftpConnection
from tui.sftp.errors import FileBusy, SftpError, TransferFailed, given_up_next_sync, translate

log = logging.getLogger("report_keeper.sftp.download")


class Placed(StrEnum):
    """How a finished download was placed under its final name."""

    NEW = "new"  # under the server's name
    SAME = "same"  # those exact bytes were already there (another process placed them)
    CHANGED = "changed"  # beside an older, different copy of the same name


NEW = Placed.NEW
SAME = Placed.SAME
CHANGED = Placed.CHANGED

#: Outstanding SFTP read requests per file (of ConnectOptions.block_size each).
MAX_REQUESTS = 32
#: Downloads from this size on write through a thread of their own.
THREADED_WRITES_FROM = 4 * 1024 * 1024
#: Such a download hands its part to the disk every time this much more has been written
#: (in the background), so the fsync before its final name has at most about this much left.
WRITE_BACK_EVERY = 8 * 1024 * 1024
_HASH_CHUNK = 1024 * 1024
#: A part's record is written once this much is in it (or when the transfer stops before).
RECORD_FROM = 1024 * 1024
#: Resuming a part first compares this much of its end with the server's bytes there.
RESUME_CHECK = 64 * 1024


@dataclass(frozen=True)
class DownloadResult:
    name: str
    size: int
    sha256: str
    path: Path  # where the content now is (the existing file for status "same")
    status: Placed
    resumed_from: int = 0  # bytes taken from an existing part file
    transferred: int = 0  # bytes received from the server in this call
    #: A file that arrived whole in one read and is no zip package: what it is (the unreadable
    #: message, :func:`tui.core.validate.sniffed_bytes` of the bytes hashed to ``sha256``), so
    #: its verification need not read it again. None otherwise.
    sniffed: str | None = None


def changed_name(name: str, remote: RemoteFile, n: int = 1) -> str:
    """The name a changed server copy is written under, beside the old one (<= 255 bytes)."""
    stamp = remote.mtime.astimezone(UTC).strftime("%Y-%m-%dT%H%MZ")
    extra = f" {n}" if n > 1 else ""
    return fit_name(name, f" (changed {stamp}){extra}")


def same_copy(target: Path, size: int, digest: str, *, follow_links: bool = False) -> bool:
    """``target`` is a regular file (never through a link, unless ``follow_links``) holding
    exactly these bytes. A link (to the user's file elsewhere), a named pipe (opening it to
    read would wait for a writer for ever) or a folder there is not the copy. What is checked
    is what was opened: a file swapped for a pipe in between cannot block the read."""
    nofollow = 0 if follow_links else getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, os.O_RDONLY | nofollow | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        return (stat.S_ISREG(info.st_mode) and info.st_size == size
                and _sha256_fd(fd, size).hexdigest() == digest)
    except OSError:
        return False
    finally:
        os.close(fd)


def _sha256_fd(fd: int, limit: int) -> hashlib._Hash:
    """The hash of the first ``limit`` bytes of an open file (the part being resumed)."""
    h = hashlib.sha256()
    offset = 0
    while offset < limit:
        chunk = os.pread(fd, min(_HASH_CHUNK, limit - offset), offset)
        if not chunk:
            break
        h.update(chunk)
        offset += len(chunk)
    return h


def _write_and_hash(fd: int, h: hashlib._Hash, data: bytes) -> int:
    """Append one block to the part file, then hash it (hashing releases the GIL)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    h.update(data)
    return len(data)


def _write_back(fd: int) -> None:
    """Write the part's bytes so far to the disk (in a thread, while more arrive); its error,
    if any, is the download's: the fsync at the end would not report it again, so the part
    is then discarded, never resumed."""
    _sync_data(fd)


_sync_data = getattr(os, "fdatasync", os.fsync)


def _fsync_part(fd: int, lost: list[bool]) -> None:
    """The fsync of a complete part before its final name. Failed (EIO; ENOSPC or EDQUOT on
    some file systems), its pages may have been dropped (marked clean, never written) and no
    later fsync would say so: ``lost[0]`` is set, and the part is not kept for resuming."""
    try:
        os.fsync(fd)
    except OSError:
        lost[0] = True
        raise


def _discard(fd: int, work: Path, remote: RemoteFile) -> None:
    """Under the part's lock (``fd``): its record first (what lets a part be resumed), then
    its bytes and its name, so the next attempt starts from byte 0."""
    parts.drop_record(work, remote)
    try:
        os.ftruncate(fd, 0)
    except OSError as exc:
        log.warning("could not empty the part of %r: %s", remote.name, exc)
    parts.discard_part(work, remote)


def local_name_of(remote: RemoteFile) -> str:
    """The name the copy gets: the one the ledger assigned, else the server's name made
    portable (:func:`tui.core.names.portable_name`)."""
    return remote.local_name or portable_name(remote.name)


def _place(part: Path, local_dir: Path, remote: RemoteFile, digest: str,
           local_name: str | None = None) -> tuple[Path, Placed]:
    """Give a complete part file its final name without overwriting anything.

    ``local_name`` (a version of a rolling report): that name, else ``NAME 2.ext``... beside a
    different file of that name; each is a copy of its own (``new``), never a changed one.
    Otherwise the file's local name (:func:`local_name_of`)."""
    local = local_name_of(remote)

    def candidates() -> Iterator[str]:
        if local_name is not None:
            yield local_name
            for n in range(2, 101):
                yield fit_name(local_name, f" {n}")
            return
        yield local
        for n in range(1, 100):
            yield changed_name(local, remote, n)

    for i, name in enumerate(candidates()):
        target = local_dir / name
        try:
            os.link(part, target)
        except FileExistsError:
            if same_copy(target, remote.size, digest):
                part.unlink()
                parts.drop_record(part.parent, remote)
                return target, SAME
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            # File systems without hard links: a rename, guarded by an existence check (a
            # link there, even one to nothing, is someone's: never replaced).
            if os.path.lexists(target):
                continue
            os.rename(part, target)
            parts.drop_record(part.parent, remote)
            return target, (NEW if i == 0 or local_name is not None else CHANGED)
        part.unlink()
        parts.drop_record(part.parent, remote)
        return target, (NEW if i == 0 or local_name is not None else CHANGED)
    raise TransferFailed(f"Too many changed copies of '{remote.name}' in '{local_dir}'.",
                         "Move the old copies out of the folder and download again.")


class DirSync(Protocol):
    """``sync_dir(folder)``: makes ``folder``'s new entry durable before anything relies on it
    (may wait: called in a thread). With ``wait=False`` (asked on the event loop) only when it
    can at once: a false answer means nothing was done."""

    def __call__(self, folder: Path, *, wait: bool = True) -> object: ...


def _size_checked(fd: int, remote: RemoteFile) -> os.stat_result:
    info = os.fstat(fd)
    if info.st_size != remote.size:
        err = TransferFailed(f"The part file of '{remote.name}' has the wrong size after writing.",
                             "It is downloaded again.", transient=True)
        err.todo_given_up = given_up_next_sync("check the disk that holds the local folder", it="it")
        raise err
    return info


def _placed_at_once(fd: int, part: Path, local_dir: Path, remote: RemoteFile,
                    local_name: str | None) -> Path | None:
    """The usual placing, on the event loop: the fsync'ed part linked under the copy's first
    name (a few quick system calls, as a block's write is), as :func:`_place` would; None when
    that name is taken or the file system has no hard links (then :func:`_finish`, in a thread:
    comparing with a file in place reads it)."""
    info = _size_checked(fd, remote)
    target = local_dir / (local_name if local_name is not None else local_name_of(remote))
    try:
        os.link(part, target)
    except OSError:
        return None
    part.unlink()
    parts.drop_record(part.parent, remote)
    if stat.S_IMODE(info.st_mode) != 0o600:
        os.chmod(target, 0o600)
    return target


def _finish(fd: int, part: Path, local_dir: Path, remote: RemoteFile, digest: str,
            local_name: str | None = None,
            sync_dir: DirSync | None = None, *, fsynced: bool = False,
            lost: list[bool] | None = None) -> tuple[Path, Placed]:
    """fsync (unless ``fsynced``; its failure sets ``lost[0]``, :func:`_fsync_part`), size
    check, placing under the final name, fsync of the folder (in a thread)."""
    if not fsynced:
        _fsync_part(fd, [False] if lost is None else lost)
    info = _size_checked(fd, remote)
    final, status = _place(part, local_dir, remote, digest, local_name)
    # A file found in place keeps its permissions: it is not ours to change. Ours (the part's
    # inode, made 0600 less the umask) is set to 0600 unless it is that already.
    if status != SAME and stat.S_IMODE(info.st_mode) != 0o600:
        os.chmod(final, 0o600)
    if sync_dir is None:
        fsync_dir(local_dir)
    else:
        sync_dir(local_dir)
    return final, status


def _changed(remote: RemoteFile, how: str) -> TransferFailed:
    err = TransferFailed(
        f"'{remote.name}' changed on the server during the download ({how}).",
        "It is downloaded again from the start.",
        transient=True,
    )
    err.todo_given_up = given_up_next_sync(
        "ask the server's administrator what rewrites the file", it="it",
        why="; a file that keeps changing is probably still being written on the server")
    return err


def _unchanged_since_listing(remote: RemoteFile, attrs: asyncssh.SFTPAttrs) -> None:
    """The open file's size and mtime, asked after its last read, are still the listed ones
    (a time the listing did not give is not compared)."""
    if attrs.size is not None and attrs.size != remote.size:
        raise _changed(remote, "its size changed while it was read")
    if (attrs.mtime is not None and remote.mtime_known
            and clock.file_time(attrs.mtime) != remote.mtime):
        raise _changed(remote, "it was rewritten while it was read")


def _read(f: asyncssh.SFTPClientFile, n: int, offset: int) -> Awaitable[bytes]:
    """One read request (the file is open in binary mode: it reads bytes)."""
    return cast("Awaitable[bytes]", f.read(n, offset))


async def _close_quietly(f: asyncssh.SFTPClientFile) -> None:
    """Close ``f`` in a task kept in ``_background`` until this ends (it lets itself go: no
    done-callback per file)."""
    try:
        await f.close()
    except Exception:  # noqa: BLE001 - the handle dies with a broken connection anyway
        pass
    finally:
        _background.discard(asyncio.current_task())


#: What a stopping download waits for: its reads, its last write, its part's closing.
_Pending = asyncio.Future[bytes] | asyncio.Future[int] | asyncio.Future[None]


async def _settle(pending: Collection[_Pending]) -> None:
    """Wait until every one of ``pending`` has ended, also when cancelled meanwhile (once they
    have, ``CancelledError`` is raised). A download that stops ends only after this: its reads
    in flight are over, its last block is in the part file and the part is unlocked, so
    whoever looks next (the sync recording the partial download, the next attempt locking the
    part) finds what arrived. Their own outcomes are not the error to report (retrieved here,
    so never logged as lost)."""
    if await _outlasted(pending):
        raise asyncio.CancelledError


async def _outlasted(pending: Collection[_Pending]) -> bool:
    """:func:`_settle` that says whether it was cancelled meanwhile instead of raising it."""
    if all(fut.done() for fut in pending):  # (a stat answered with the last read): no wait
        for fut in pending:
            if not fut.cancelled():
                fut.exception()
        return False
    cancelled = False
    while True:
        try:
            await asyncio.wait(pending)  # cancelled, it leaves them running: waited for again
            break
        except asyncio.CancelledError:
            cancelled = True
    for fut in pending:
        if not fut.cancelled():
            fut.exception()
    return cancelled


def _placed_though_cancelled(placing: asyncio.Future[tuple[Path, Placed]],
                             remote: RemoteFile) -> tuple[Path, Placed]:
    """The outcome of a placing that a cancel came during (it went on in its thread): placed,
    the file is complete under its final name, and the download ends as done (a cancel
    stops what is still to fetch; this is fetched), so its record is written and nothing
    partial of it remains; not placed, the cancel stands."""
    if placing.cancelled() or placing.exception() is not None:
        raise asyncio.CancelledError
    log.info("%r was in place when its download was cancelled: kept as downloaded", remote.name)
    return placing.result()


_background: set[asyncio.Task[None]] = set()


async def _resumable(conn: SftpConnection, f: asyncssh.SFTPClientFile, fd: int, have: int,
                     remote: RemoteFile) -> bool:
    """The part's last bytes (up to ``RESUME_CHECK``) are the server's at the same place. A
    part's record names the server copy by size and mtime, which a different file can share
    (replaced within the same second, or its time set back): resuming would splice the old
    file's beginning to the new one's end. Not the same: the part is started again."""
    n = min(have, RESUME_CHECK)
    try:
        theirs = await conn.answer(_read(f, n, have - n), "reading", remote.name)
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, host=conn.host, port=conn.port, path=remote.name) from None
    if theirs == os.pread(fd, n, have - n):
        return True
    log.info("the part of %r is not the server's copy (replaced by one of the same size and "
             "time); downloading it from the start", remote.name)
    return False


class HeldCheck(Protocol):
    """``already_held(remote)``: whether another process has just finished this very copy (it
    may wait for that process's record, in a thread). With ``wait=False`` (asked on the event
    loop) it must not wait: None when it cannot tell at once."""

    def __call__(self, remote: RemoteFile, *, wait: bool = True) -> bool | None: ...


def _claim(local_dir: Path, work: Path, remote: RemoteFile,
           already_held: HeldCheck | None) -> tuple[int, int, bool]:
    """Check the working folder, open and lock the part file; ``(fd, bytes to resume from,
    held by now)`` (in a thread)."""
    work = parts.ensure_work_dir(local_dir)
    fd, have = parts.lock_part(work, remote)
    try:
        held = already_held is not None and bool(already_held(remote))
    except BaseException:
        os.close(fd)
        raise
    return fd, have, held


async def _claimed(local_dir: Path, work: Path, remote: RemoteFile,
                   already_held: HeldCheck | None) -> tuple[int, int, bool]:
    """:func:`_claim`: on the event loop when the working folder is in order (the part file
    is then made and locked here: a few quick system calls, as each block's write is), with
    ``already_held`` asked here first and, only when it cannot tell at once, in a thread (where
    it may wait), the part staying locked meanwhile. A hop to a thread per file (waking it,
    passing the interpreter's lock back and forth) cost more than all of that. Otherwise all
    of it in a thread; cancelled while the thread runs, the thread still finishes: what it
    opened is closed then (the part's lock with it), never left open."""
    if parts.work_dir_ready(local_dir):
        fd, have = parts.lock_part(work, remote)
        try:
            held = False if already_held is None else already_held(remote, wait=False)
            if held is None:
                assert already_held is not None
                held = await asyncio.to_thread(already_held, remote)
        except BaseException:  # cancelled too: the thread only reads, the part is let go
            os.close(fd)
            raise
        return fd, have, bool(held)
    claim = asyncio.ensure_future(asyncio.to_thread(_claim, local_dir, work, remote, already_held))
    try:
        return await asyncio.shield(claim)
    except asyncio.CancelledError:
        def close(done: asyncio.Future[tuple[int, int, bool]]) -> None:
            if not done.cancelled() and done.exception() is None:
                os.close(done.result()[0])

        claim.add_done_callback(close)
        raise


async def _finished(fd: int, part: Path, local_dir: Path, remote: RemoteFile, digest: str,
                    local_name: str | None, sync_dir: DirSync,
                    lost: list[bool]) -> tuple[Path, Placed]:
    """:func:`_finish` with only what may wait in a thread: the fsync (waited for, also when
    cancelled meanwhile: the descriptor is closed only after it), and, when the usual
    placing cannot be done at once, the placing; the folder's entry is handed to ``sync_dir``
    at once when it takes it so. Each hop to a thread wakes it and passes the interpreter's
    lock back and forth once for every system call it makes while the event loop runs."""
    syncing = asyncio.get_running_loop().run_in_executor(None, _fsync_part, fd, lost)  # (no task needed)
    await _settle([syncing])  # cancelled meanwhile: nothing placed, the complete part is kept
    syncing.result()
    final = _placed_at_once(fd, part, local_dir, remote, local_name)
    if final is None:
        placing = asyncio.ensure_future(asyncio.to_thread(
            _finish, fd, part, local_dir, remote, digest, local_name, sync_dir, fsynced=True))
        if await _outlasted([cast("_Pending", placing)]):
            return _placed_though_cancelled(placing, remote)
        return placing.result()
    # In place from here on: a cancel no longer undoes the download (_placed_though_cancelled).
    if not sync_dir(local_dir, wait=False):
        handing = asyncio.ensure_future(asyncio.to_thread(sync_dir, local_dir))
        cancelled = await _outlasted([cast("_Pending", handing)])
        handing.result()
        if cancelled:
            log.info("%r was in place when its download was cancelled: kept as downloaded",
                     remote.name)
    return final, NEW


async def download(conn: SftpConnection, remote: RemoteFile, remote_dir: str, local_dir: Path | str, *,
                   progress: Callable[[int, int], object] | None = None,
                   gate: asyncio.Event | None = None,
                   max_requests: int = MAX_REQUESTS,
                   already_held: HeldCheck | None = None,
                   local_name: str | None = None,
                   sync_dir: DirSync | None = None,
                   hold_placed: Callable[[Path, int], object] | None = None) -> DownloadResult:
    """Download one file into ``local_dir`` safely; see the module docstring.

    ``sync_dir(folder)``: called (in a thread) instead of fsyncing ``local_dir`` after the
    placing; the caller then owns making the new name durable before it relies on it.

    ``local_name``: the name to place it under instead of the server's (a version of a rolling
    report, :func:`tui.core.names.version_name`).

    ``progress(bytes_done, total)`` is called after every written block; ``gate``, when
    given, is awaited between blocks (pause). Raises :class:`SftpError` subclasses only
    (and ``asyncio.CancelledError`` when cancelled; the part file is then kept). A cancel
    that comes once the file is in place under its final name does not undo it: the
    download then ends as done.
    """
    local_dir = Path(local_dir)
    reason = refusal_reason(remote.name) or refusal_reason(
        local_name if local_name is not None else local_name_of(remote))
    if reason is not None:
        raise TransferFailed(f"The server-supplied name was refused: {reason}.",
                             "Nothing was written; ask the server's administrator to rename the file.")
    work = parts.work_dir(local_dir)  # checked (and made) with the part file, in a thread
    remote_path = SftpConnection.join(remote_dir, remote.name)

    counter = [0]
    try:
        return await _download(conn, remote, remote_path, local_dir, work, progress, gate,
                               max_requests, counter, already_held, local_name, sync_dir, hold_placed)
    except SftpError as exc:
        exc.received = counter[0]
        raise


async def _download(conn: SftpConnection, remote: RemoteFile, remote_path: str, local_dir: Path,
                    work: Path, progress: Callable[[int, int], object] | None,
                    gate: asyncio.Event | None, max_requests: int, counter: list[int],
                    already_held: HeldCheck | None,
                    local_name: str | None = None,
                    sync_dir: DirSync | None = None,
                    hold_placed: Callable[[Path, int], object] | None = None) -> DownloadResult:
    size = remote.size
    part = work / parts.part_name(remote)

    def local_err(exc: BaseException) -> SftpError:
        return translate(exc, host=conn.host, port=conn.port, path=remote.name,
                         local_path=str(local_dir / local_name_of(remote)))

    def remote_err(exc: BaseException) -> SftpError:
        return translate(exc, host=conn.host, port=conn.port, path=remote.name)

    def lost_err(exc: BaseException) -> SftpError:
        """A failed write-back or fsync of the part: the part is discarded (below)."""
        return translate(exc, host=conn.host, port=conn.port, path=remote.name,
                         local_path=str(local_dir / local_name_of(remote)), part_lost=True)

    # The remote file first: a file gone from the server leaves nothing behind locally.
    try:
        # block_size=0: every f.read() below is exactly one SFTP request (no hidden tasks);
        # this function does the pipelining itself.
        f = await conn.answer(conn.sftp.open(remote_path.encode("utf-8", "surrogateescape"), "rb",
                                             block_size=0), "opening", remote.name)
    except (asyncssh.Error, OSError) as exc:
        raise remote_err(exc) from None
    fd = -1
    writer: concurrent.futures.ThreadPoolExecutor | None = None
    placed = recorded = False
    pos = have = 0
    writing: asyncio.Future[int] | None = None  # the block the writer thread is writing
    # The writer's part is written back to the disk in the background as it grows, one
    # write-back at a time, so the disk works while the network does (the fsync at the
    # end used to write the whole file while nothing else happened).
    back: asyncio.Future[None] | None = None
    # A write-back or the final fsync of the part failed: its bytes may never reach the disk
    # (dropped pages are marked clean, and no later fsync says so), so it is not resumed.
    lost = [False]

    def back_failed() -> BaseException | None:
        """The error of the last write-back, once it is over."""
        if back is None or not back.done() or back.cancelled():
            return None
        return back.exception()

    try:
        try:
            # Creating and locking the part, and asking the ledger: here when nothing has to
            # wait, else in a thread, so the other transfers go on meanwhile (_claimed).
            fd, have, held = await _claimed(local_dir, work, remote, already_held)
            if held:
                if have == 0:
                    parts.discard_part(work, remote)
                raise FileBusy(
                    f"'{remote.name}' was downloaded meanwhile by another Report Keeper process "
                    "(the app and a scheduled sync at the same time).",
                    "Nothing to do: it is held, and counted by the process that fetched it.",
                )
            if have and not await _resumable(conn, f, fd, have, remote):
                os.ftruncate(fd, 0)
                have = 0
            if have:
                h = await asyncio.to_thread(_sha256_fd, fd, have)
                log.info("resuming %r at %d of %d bytes", remote.name, have, size)
            else:
                h = hashlib.sha256()
            os.lseek(fd, have, os.SEEK_SET)
        except OSError as exc:
            raise local_err(exc) from None
        pos = have  # bytes of the server's file received in order
        written = have  # bytes of it in the part file
        recorded = have > 0  # a resumed part's record matched already
        received = 0
        block = max(1024, conn.opts.block_size)
        inflight: deque[tuple[int, int, asyncio.Task[bytes]]] = deque()
        next_off = pos
        # Big files are written and hashed by a writer thread of their own, overlapping disk
        # and network; its FIFO order also closes the descriptor only after the last write.
        if size - have >= THREADED_WRITES_FROM:
            writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rk-write")
        loop = asyncio.get_running_loop()
        reported = -1  # bytes last given to progress()
        backed = have  # bytes of the part when the last write-back began

        def written_back() -> None:
            """The last write-back's error, if it failed (it is over)."""
            exc = back_failed()
            if exc is not None:
                raise lost_err(exc) from None

        async def flush() -> None:
            nonlocal writing, written, back, backed
            if writing is not None:
                try:  # shielded: cancelled meanwhile, the write still lands and is waited for
                    n = await asyncio.shield(writing)
                except OSError as exc:
                    writing = None
                    raise local_err(exc) from None
                writing = None
                written += n
                if written - backed >= WRITE_BACK_EVERY and (back is None or back.done()):
                    if back is not None:
                        written_back()
                    back = loop.run_in_executor(None, _write_back, fd)
                    backed = written

        # The requests cover one byte past the listed size: getting it means the file grew
        # (still being written, or replaced) without a separate stat round trip.
        end = size + 1

        # Sent right after the last read, so answered after every read: a file rewritten in
        # place meanwhile (same size) shows another mtime, and is not kept spliced.
        after: asyncio.Future[asyncssh.SFTPAttrs] | None = None

        def fill() -> None:
            nonlocal next_off, after
            while next_off < end and len(inflight) < max_requests:
                n = min(block, end - next_off)
                inflight.append((next_off, n, asyncio.ensure_future(_read(f, n, next_off))))
                next_off += n
            if next_off >= end and after is None:
                after = asyncio.ensure_future(cast("Awaitable[asyncssh.SFTPAttrs]", f.stat()))

        try:
            first: tuple[int, bytes] | None = None
            if end - next_off <= block and writer is None:
                # The whole rest in one read (most reports): awaited here, no task of its own.
                # The FSTAT's task sends its request on the loop's next turn, so after this
                # read, which is sent as it is awaited, right below.
                n = end - next_off
                next_off = end
                after = asyncio.ensure_future(cast("Awaitable[asyncssh.SFTPAttrs]", f.stat()))
                first = (n, await conn.answer(_read(f, n, pos), "reading", remote.name))
            else:
                fill()
            # Many reads in flight; each is written and hashed in file order as it lands,
            # so the part file is always a valid prefix of the server's file.
            while first is not None or inflight:
                if first is not None:
                    (n, data), first = first, None
                else:
                    _off, n, task = inflight[0]
                    data = await conn.answer(task, "reading", remote.name)
                    inflight.popleft()
                if not data:
                    break  # end of file
                if pos + len(data) > size:
                    raise _changed(remote, "it is now larger than listed")
                received += len(data)
                counter[0] = received
                pos += len(data)
                if writer is not None:
                    await flush()  # the previous block; this one is written while more arrive
                    writing = loop.run_in_executor(writer, _write_and_hash, fd, h, data)
                else:
                    try:
                        written += _write_and_hash(fd, h, data)
                    except OSError as exc:
                        raise local_err(exc) from None
                if len(data) < n and pos < size:  # a short read: ask for the rest first
                    rest = asyncio.ensure_future(_read(f, n - len(data), pos))
                    inflight.appendleft((pos, n - len(data), rest))
                fill()
                if not recorded and pos >= RECORD_FROM:
                    try:
                        parts.write_record(work, remote)
                    except OSError as exc:
                        raise local_err(exc) from None
                    recorded = True
                if progress is not None:
                    progress(pos, size)  # received in order (the last block may be in the writer)
                    reported = pos
                if gate is not None and not gate.is_set():
                    await gate.wait()
            await flush()
            if back is not None:  # over before the fsync, and its error is the download's
                await asyncio.wait([back])
                written_back()
            if progress is not None and written != reported:
                progress(written, size)
            if after is not None and written == size:
                try:
                    attrs = await conn.answer(after, "reading", remote.name)
                except (asyncssh.SFTPOpUnsupported, asyncssh.SFTPFailure, asyncssh.SFTPPermissionDenied) as exc:
                    # A server without FSTAT, or that refuses it on a file open for reading:
                    # the size check below still holds.
                    log.info("the server did not say the size and time of open %r (%s); not compared",
                             remote.name, type(exc).__name__)
                    attrs = None
                if attrs is not None:
                    _unchanged_since_listing(remote, attrs)
        except SftpError:
            raise
        except (asyncssh.Error, OSError) as exc:
            raise remote_err(exc) from None
        finally:
            # Stopped (by an error, or cancelled: once or again while stopping, as closing the
            # queue does), the reads end and the last write lands before anything goes on.
            for _off, _n, task in inflight:
                task.cancel()
            extra: list[_Pending] = [writing] if writing is not None else []
            if back is not None:  # never close the descriptor under a write-back
                extra.append(back)
            if after is not None:
                after.cancel()
                extra.append(cast("_Pending", after))
            await _settle([t for _o, _n, t in inflight] + extra)
        if written != size:
            raise _changed(remote, f"it ended after {pos} of the listed {size} bytes")
        digest = h.hexdigest()
        # The whole file in one read (most reports), its bytes in hand: a file that is no zip
        # package is judged from them (a look at its first and last bytes), not read again.
        sniffed = sniffed_bytes(data) if have == 0 and len(data) == size else None
        try:
            if sync_dir is None:  # one hop to a thread for all the blocking file-system work
                # Waited for, also when cancelled meanwhile: the descriptor is closed (and the
                # part discarded, if its fsync failed) only after it.
                finishing = asyncio.ensure_future(asyncio.to_thread(
                    _finish, fd, part, local_dir, remote, digest, local_name, sync_dir, lost=lost))
                if await _outlasted([cast("_Pending", finishing)]):
                    final, status = _placed_though_cancelled(finishing, remote)
                else:
                    final, status = finishing.result()
            else:
                final, status = await _finished(fd, part, local_dir, remote, digest, local_name,
                                                sync_dir, lost)
        except OSError as exc:
            raise (lost_err(exc) if lost[0] else local_err(exc)) from None
        placed = True
        if hold_placed is not None and status != SAME:  # the part's inode is the final file now
            try:
                kept = os.dup(fd)  # the same open file: its lock stays until both are closed
            except OSError as exc:  # out of descriptors: others then just do not wait for it
                log.warning("could not keep %r locked until it is recorded: %s", remote.name, exc)
            else:
                hold_placed(final, kept)
    except SftpError:
        failed = back_failed()  # a write-back that failed while the download stopped otherwise
        if failed is not None:
            raise lost_err(failed) from None
        raise
    finally:
        if back_failed() is not None:
            lost[0] = True
        if fd >= 0 and not placed and lost[0]:
            _discard(fd, work, remote)
        elif fd >= 0 and not placed and not recorded and pos > have:
            try:  # stopped early: what arrived can be resumed next time
                parts.write_record(work, remote)
            except OSError:
                pass
        closed: concurrent.futures.Future[None] | None = None
        if writer is not None:
            if fd >= 0:
                closed = writer.submit(os.close, fd)  # after any write still queued
            writer.shutdown(wait=False)
        elif fd >= 0:
            os.close(fd)
        _background.add(asyncio.ensure_future(_close_quietly(f)))  # no wait: saves a round trip
        if closed is not None:  # the part is unlocked when the download ends
            if await _outlasted([asyncio.wrap_future(closed)]) and not placed:
                raise asyncio.CancelledError
    # Debug only: the caller logs what it did with the file (the sync: one line per file).
    log.debug("downloaded %r: %d bytes, %s (resumed from %d)", remote.name, size, status, have)
    return DownloadResult(name=remote.ident, size=size, sha256=digest, path=final, status=status,
                          resumed_from=have, transferred=received, sniffed=sniffed)
