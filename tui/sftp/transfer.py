"""Downloads: one file safely (:func:`download`), many at once (:class:`TransferQueue`).

Public API::

    result = await download(conn, remote_file, remote_dir, local_dir, progress=cb)
    # -> DownloadResult(name, size, sha256, path, status "new"|"same"|"changed", resumed_from, ...)

    async with TransferQueue(factory, concurrency=4, on_event=cb) as queue:   # or events=asyncio.Queue()
        job = queue.add(remote_file, remote_dir, local_dir)
        queue.cancel(job.id) / queue.cancel_all() / queue.pause() / queue.resume()
        jobs = await queue.join()            # every Job ends "done", "failed" or "cancelled"
    remove_stale_parts(local_dir, names)     # join() does this for the files it finished
    part_path(local_dir, remote) / part_progress(local_dir, remote)   # where a transfer stands
    fd, have = open_part(local_dir, remote)  # the locked part file, as download() opens it

``factory`` is ``async () -> SftpConnection`` (e.g. ``lambda: connect(opts, host_key_policy=...)``);
the queue opens one connection, shares it between its workers (SFTP multiplexes requests)
and reconnects through the factory when it breaks. Events (small frozen dataclasses, all
with ``job_id`` and ``name``): :class:`Queued`, :class:`Running` (bytes, total, rate; at most
one every ``progress_interval`` seconds per file, plus the final one), :class:`Retrying`
(attempt, reason, delay), :class:`Done` (sha256, path, status, resumed_from, transferred),
:class:`Failed` (reason, error), :class:`Cancelled`.

How a file is written (docs/ARCHITECTURE.md, "Local files"):
- into a part file in report-keeper's private working folder ``<local_dir>/.report-keeper/
  parts/`` (0700; its name is refused as a server name, and no download is ever written
  into it, so no server file can land on a part file). The part is named after a hash of
  the remote name, created with ``O_EXCL``/``O_NOFOLLOW`` and locked (``flock``) while it
  is written; beside it a small JSON record holds the remote name, size and mtime it
  belongs to (written once 1 MiB has arrived, or when the transfer stops early), and a
  part is resumed only when that record matches the server's copy;
- blocks are requested many at a time but written and hashed strictly in order, so a part
  file is always a valid prefix: after a broken connection (or a full disk, or a cancel)
  the next attempt resumes at offset = part size, hashing the prefix it already has;
- the reads ask for one byte past the listed size, so a file that grew (still being
  uploaded) or shrank since the listing is noticed without an extra round trip, and is
  fetched again from the start with its new size (a transient ``TransferFailed``);
- the size is checked against the server's, the part is fsync'ed, then linked to its final
  name with ``os.link`` (fails instead of overwriting) and removed; files 0600, folder 0700;
- files of 4 MB and more are written and hashed by a writer thread of their own, so the
  disk and the network overlap; memory stays bounded by the reads in flight (32 x 255 KB);
- a final name that already exists is never overwritten: identical content gives status
  ``same``; different content is written beside it as ``<stem> (changed <server mtime
  YYYY-MM-DDTHHMMZ>)<suffix>`` (then `` 2``, `` 3``... if needed) with status ``changed``,
  the stem shortened when needed so the name stays within 255 bytes;
- names refused by :func:`tui.core.names.refusal_reason` are never written;
- ``already_held(remote)`` (optional) is asked once the part is locked: True means another
  process has just finished this very copy, and the download stops with :class:`FileBusy`
  before reading a byte.

Errors are :mod:`tui.sftp.errors` classes. Transient ones (lost connection, timeouts,
generic server failures, a server file that changed mid-download) are retried with
exponential backoff; authentication and host-key failures are never retried, and stop the
whole queue. A full local disk fails the file with :class:`LocalDiskFull`; its part file
is kept for resuming once space is freed, and nothing partial ever has the final name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import hashlib
import json
import logging
import os
import stat as statmod
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import asyncssh

from tui.core.model import RemoteFile
from tui.core.names import WORK_DIR_NAME, fit_name, refusal_reason
from tui.sftp.client import SftpConnection
from tui.sftp.errors import (
    AuthFailed,
    Cancelled as CancelledError_,
    ConnectFailed,
    ConnectionLost,
    FileBusy,
    HostKeyChanged,
    HostKeyUnknown,
    LocalWriteFailed,
    SftpError,
    TransferFailed,
    translate,
)

log = logging.getLogger("report_keeper.sftp.transfer")

NEW = "new"
SAME = "same"
CHANGED = "changed"

#: Outstanding SFTP read requests per file (of ConnectOptions.block_size each).
MAX_REQUESTS = 32
#: Downloads from this size on write through a thread of their own.
THREADED_WRITES_FROM = 4 * 1024 * 1024
_HASH_CHUNK = 1024 * 1024
#: A part's record is written once this much is in it (or when the transfer stops before).
RECORD_FROM = 1024 * 1024


@dataclass(frozen=True)
class DownloadResult:
    name: str
    size: int
    sha256: str
    path: Path  # where the content now is (the existing file for status "same")
    status: str  # NEW | SAME | CHANGED
    resumed_from: int = 0  # bytes taken from an existing part file
    transferred: int = 0  # bytes received from the server in this call


#: Sub-folder of the private working folder that holds part files and their records.
PARTS_DIR = "parts"


def _part_id(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def part_name(remote: RemoteFile) -> str:
    """The part file of one remote file, inside :func:`work_dir` (one per remote name)."""
    return f"{_part_id(remote.name)}.part"


def _record_name(remote: RemoteFile) -> str:
    return f"{_part_id(remote.name)}.json"


def work_dir(local_dir: Path | str) -> Path:
    """``<local_dir>/.report-keeper/parts``: where part files live."""
    return Path(local_dir) / WORK_DIR_NAME / PARTS_DIR


def part_path(local_dir: Path | str, remote: RemoteFile) -> Path:
    return work_dir(local_dir) / part_name(remote)


def legacy_part_name(remote: RemoteFile) -> str:
    """Where older releases kept the part file: ``.<name>.<size>-<mtime>.part`` in local_dir.

    Such a name is also a legal server name, so a file found there is never trusted on its
    own: :func:`adopt_legacy_part` moves one in only when the caller has proven it ours.
    """
    ident = f"{remote.size}-{int(remote.mtime.timestamp())}"
    name = f".{remote.name}.{ident}.part"
    if len(name.encode("utf-8", "surrogateescape")) > 255:
        digest = hashlib.sha256(remote.name.encode("utf-8", "surrogateescape")).hexdigest()[:24]
        name = f".rk-{digest}.{ident}.part"
    return name


def _part_record(remote: RemoteFile) -> dict[str, Any]:
    from datetime import timezone

    return {"name": remote.name, "size": remote.size,
            "mtime": remote.mtime.astimezone(timezone.utc).isoformat()}


def _read_record(path: Path) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            value = json.loads(f.read(65536))
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def _write_record(work: Path, remote: RemoteFile) -> None:
    """Write the part's record beside it (only ever while holding the part's lock).

    The working folder is private (0700, ours), so the record is written in place; a
    symlink planted under its name is refused, never followed.
    """
    fd = os.open(work / _record_name(remote),
                 os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(_part_record(remote)).encode("utf-8"))
    finally:
        os.close(fd)


def _drop_record(work: Path, remote: RemoteFile) -> None:
    try:
        os.unlink(work / _record_name(remote))
    except OSError:
        pass


def ensure_work_dir(local_dir: Path | str) -> Path:
    """Create (0700) and check the private working folder; returns the parts folder.

    Each level must be a real folder of ours (never a symlink): anything else there is
    refused with :class:`LocalWriteFailed` rather than written through.
    """
    local_dir = Path(local_dir)
    ensure_private_dir(local_dir)
    for folder in (local_dir / WORK_DIR_NAME, work_dir(local_dir)):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise LocalWriteFailed(f"Could not create the working folder '{folder}': {exc.strerror or exc}.",
                                   "Check local_dir in the profile and the folder's permissions.") from None
        info = os.lstat(folder)
        if not statmod.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise LocalWriteFailed(
                f"'{folder}' is not report-keeper's private working folder (it is "
                f"{'a symbolic link' if statmod.S_ISLNK(info.st_mode) else 'not a folder of yours'}).",
                "Move it out of the way; report-keeper creates the folder itself.",
            )
        if info.st_mode & 0o777 != 0o700:
            os.chmod(folder, 0o700)
    return work_dir(local_dir)


def part_progress(local_dir: Path | str, remote: RemoteFile) -> int:
    """Bytes of this very server copy held in its part file (0: none, or another copy's)."""
    work = work_dir(local_dir)
    record = _read_record(work / _record_name(remote))
    if record != _part_record(remote):
        return 0
    try:
        info = os.lstat(work / part_name(remote))
    except OSError:
        return 0
    if not statmod.S_ISREG(info.st_mode) or info.st_size > remote.size:
        return 0
    return info.st_size


def _busy(remote: RemoteFile) -> FileBusy:
    return FileBusy(
        f"Another Report Keeper process is downloading '{remote.name}' right now "
        "(the app and a scheduled sync at the same time).",
        "It is left to that process; nothing is lost. Refresh later to see it arrive.",
    )


def open_part(local_dir: Path | str, remote: RemoteFile) -> tuple[int, int]:
    """Open and lock the part file of ``remote`` (creating the working folder): ``(fd, bytes)``.

    What :func:`download` does first; the caller owns (and must close) the descriptor, and
    holds the part's lock until then. Raises :class:`FileBusy` when another process has it.
    """
    return _open_part(ensure_work_dir(local_dir), remote)


def _open_part(work: Path, remote: RemoteFile) -> tuple[int, int]:
    """Open (or create) and lock the part file of ``remote``; ``(fd, bytes to resume from)``.

    Never follows a symlink, never writes into a file that is also linked elsewhere (a
    final name left by a run stopped between placing and cleaning up), and resumes only a
    part whose record names this very server copy; any other part is emptied first. The
    record itself is written by the download once it has something worth resuming
    (``RECORD_FROM`` bytes, or when it stops early), so small files cost no extra file.
    """
    path = work / part_name(remote)
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    for _attempt in range(4):
        created = True
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            created = False
            try:
                fd = os.open(path, flags)
            except FileNotFoundError:
                continue  # removed in between: create it
        try:
            try:  # one writer per part file: the app and a scheduled sync may overlap
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy(remote) from None
            info = os.fstat(fd)
            if not _still_there(path, info):
                # Between opening and locking, its writer finished: it placed this file under
                # its final name and removed the part. Never write into it; start again.
                os.close(fd)
                continue
            if not statmod.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise LocalWriteFailed(f"'{path}' is not a part file of report-keeper.",
                                       "Remove it; the download then starts afresh.")
            if info.st_nlink != 1:
                if info.st_nlink > 1:  # also a final file: only our own entry goes
                    os.unlink(path)
                os.close(fd)
                continue
            have = info.st_size
            if created:
                _drop_record(work, remote)  # a record left without its part describes nothing
            elif (_read_record(work / _record_name(remote)) != _part_record(remote)
                  or have > remote.size):
                os.ftruncate(fd, 0)  # another server copy's (or unproven) bytes: start afresh
                _drop_record(work, remote)
                have = 0
            return fd, have
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise
    raise LocalWriteFailed(f"Could not open a part file for '{remote.name}' in '{work}'.",
                           "Try again; if it persists, check the folder.")


def _still_there(path: Path, info: os.stat_result) -> bool:
    """``path`` still names the file ``info`` describes (checked after taking its lock)."""
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _discard_part(work: Path, remote: RemoteFile) -> None:
    """Remove the part and its record (called while holding the part's lock)."""
    try:
        os.unlink(work / part_name(remote))
    except OSError:
        pass
    _drop_record(work, remote)


def adopt_legacy_part(local_dir: Path | str, remote: RemoteFile) -> int:
    """Move an older release's part file of ``remote`` into the working folder.

    Only for a part the caller has proven to be ours (the ledger recorded it as this very
    copy's partial download, and no download was ever stored under that name). Returns the
    bytes adopted (0: nothing adopted; the file is then left exactly as it is).
    """
    local_dir = Path(local_dir)
    old = local_dir / legacy_part_name(remote)
    try:
        fd = os.open(old, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # an older release is writing it right now
        info = os.fstat(fd)
        if (not statmod.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.getuid()
                or info.st_size > remote.size or not _still_there(old, info)):
            return 0
        work = ensure_work_dir(local_dir)
        try:
            os.link(old, work / part_name(remote))
        except FileExistsError:
            return 0  # a newer part exists; the old one stays as it is
        _write_record(work, remote)
        os.unlink(old)
        log.info("adopted an older release's part file of %r (%d bytes)", remote.name, info.st_size)
        return info.st_size
    except OSError as exc:
        log.warning("could not adopt the old part file of %r: %s", remote.name, exc)
        return 0
    finally:
        os.close(fd)


def changed_name(name: str, remote: RemoteFile, n: int = 1) -> str:
    """The name a changed server copy is written under, beside the old one (<= 255 bytes)."""
    from datetime import timezone

    stamp = remote.mtime.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    extra = f" {n}" if n > 1 else ""
    return fit_name(name, f" (changed {stamp}){extra}")


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or tighten it to 0700."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (path.stat().st_mode & 0o777) != 0o700:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise LocalWriteFailed(f"Could not create the local folder '{path}': {exc.strerror or exc}.",
                               "Check local_dir in the profile and the folder's permissions.") from None


def _sha256_file(path: Path, limit: int | None = None) -> "hashlib._Hash":
    h = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            chunk = f.read(_HASH_CHUNK if remaining is None else min(_HASH_CHUNK, remaining))
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return h


def _sha256_fd(fd: int, limit: int) -> "hashlib._Hash":
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


def _write_and_hash(fd: int, h: "hashlib._Hash", data: bytes) -> int:
    """Append one block to the part file, then hash it (hashing releases the GIL)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    h.update(data)
    return len(data)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _place(part: Path, local_dir: Path, remote: RemoteFile, digest: str) -> tuple[Path, str]:
    """Give a complete part file its final name without overwriting anything."""
    def candidates():
        yield remote.name
        for n in range(1, 100):
            yield changed_name(remote.name, remote, n)

    for i, name in enumerate(candidates()):
        target = local_dir / name
        try:
            os.link(part, target)
        except FileExistsError:
            try:
                same = (target.stat().st_size == remote.size
                        and _sha256_file(target).hexdigest() == digest)
            except OSError:
                same = False
            if same:
                part.unlink()
                _drop_record(part.parent, remote)
                return target, SAME
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            # File systems without hard links: a rename, guarded by an existence check.
            if target.exists():
                continue
            os.rename(part, target)
            _drop_record(part.parent, remote)
            return target, (NEW if i == 0 else CHANGED)
        part.unlink()
        _drop_record(part.parent, remote)
        return target, (NEW if i == 0 else CHANGED)
    raise TransferFailed(f"Too many changed copies of '{remote.name}' in '{local_dir}'.",
                         "Move the old copies out of the folder and download again.")


def _finish(fd: int, part: Path, local_dir: Path, remote: RemoteFile, digest: str) -> tuple[Path, str]:
    """fsync, size check, placing under the final name, fsync of the folder (in a thread)."""
    os.fsync(fd)
    if os.fstat(fd).st_size != remote.size:
        raise TransferFailed(f"The part file of '{remote.name}' has the wrong size after writing.",
                             "It is downloaded again.", transient=True)
    final, status = _place(part, local_dir, remote, digest)
    os.chmod(final, 0o600)
    _fsync_dir(local_dir)
    return final, status


def remove_stale_parts(local_dir: Path | str, names: "set[str] | None" = None) -> int:
    """Remove part files (and records) of ``names`` (all when None) nobody is writing.

    Called for files just downloaded completely: a part still there belongs to another
    server copy of the same name. Only the private working folder is ever looked at, and
    only its own file names (``<hash>.part``/``.json``), so a downloaded report
    can never be taken for a part file; a part locked by another process is left alone.
    """
    work = work_dir(local_dir)
    try:
        entries = os.listdir(work)
    except OSError:
        return 0
    wanted = None if names is None else {_part_id(n) for n in names}
    removed = 0
    for n in entries:
        ident, dot, kind = n.partition(".")
        if len(ident) != 32 or kind not in ("part", "json"):
            continue
        if wanted is not None and ident not in wanted:
            continue
        path = work / n
        if kind != "part":
            if not (work / f"{ident}.part").exists():
                try:
                    os.unlink(path)
                except OSError:
                    pass
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            info = os.fstat(fd)
            if not statmod.S_ISREG(info.st_mode) or not _still_there(path, info):
                continue
            os.unlink(path)
            try:
                os.unlink(work / f"{ident}.json")
            except OSError:
                pass
            removed += 1
            log.info("removed a stale part file (%s)", ident)
        except OSError:  # locked by a running download, or already gone
            continue
        finally:
            os.close(fd)
    return removed


def _changed(remote: RemoteFile, how: str) -> TransferFailed:
    return TransferFailed(
        f"'{remote.name}' changed on the server during the download ({how}).",
        "It is downloaded again from the start.",
        transient=True,
    )


async def _close_quietly(f: Any) -> None:
    try:
        await f.close()
    except Exception:  # noqa: BLE001 - the handle dies with a broken connection anyway
        pass


_background: set[asyncio.Task] = set()


async def download(conn: SftpConnection, remote: RemoteFile, remote_dir: str, local_dir: Path | str, *,
                   progress: Callable[[int, int], Any] | None = None,
                   gate: asyncio.Event | None = None,
                   max_requests: int = MAX_REQUESTS,
                   already_held: Callable[[RemoteFile], bool] | None = None) -> DownloadResult:
    """Download one file into ``local_dir`` safely; see the module docstring.

    ``progress(bytes_done, total)`` is called after every written block; ``gate``, when
    given, is awaited between blocks (pause). Raises :class:`SftpError` subclasses only
    (and ``asyncio.CancelledError`` when cancelled; the part file is then kept).
    """
    local_dir = Path(local_dir)
    reason = refusal_reason(remote.name)
    if reason is not None:
        raise TransferFailed(f"The server-supplied name was refused: {reason}.",
                             "Nothing was written; ask the server's administrator to rename the file.")
    work = ensure_work_dir(local_dir)
    remote_path = SftpConnection.join(remote_dir, remote.name)

    counter = [0]
    try:
        return await _download(conn, remote, remote_path, local_dir, work, progress, gate,
                               max_requests, counter, already_held)
    except SftpError as exc:
        exc.received = counter[0]  # type: ignore[attr-defined]
        raise


async def _download(conn: SftpConnection, remote: RemoteFile, remote_path: str, local_dir: Path,
                    work: Path, progress: Callable[[int, int], Any] | None,
                    gate: asyncio.Event | None, max_requests: int, counter: list[int],
                    already_held: Callable[[RemoteFile], bool] | None) -> DownloadResult:
    size = remote.size
    part = work / part_name(remote)
    local_err = lambda exc: translate(exc, host=conn.host, port=conn.port, path=remote.name,  # noqa: E731
                                      local_path=str(local_dir / remote.name))
    remote_err = lambda exc: translate(exc, host=conn.host, port=conn.port, path=remote.name)  # noqa: E731
    # The remote file first: a file gone from the server leaves nothing behind locally.
    try:
        # block_size=0: every f.read() below is exactly one SFTP request (no hidden tasks);
        # this function does the pipelining itself.
        f = await conn.sftp.open(remote_path.encode("utf-8", "surrogateescape"), "rb", block_size=0)
    except (asyncssh.Error, OSError) as exc:
        raise remote_err(exc) from None
    fd = -1
    writer: concurrent.futures.ThreadPoolExecutor | None = None
    placed = recorded = False
    pos = have = 0
    try:
        try:
            fd, have = _open_part(work, remote)
            if already_held is not None and await asyncio.to_thread(already_held, remote):
                if have == 0:
                    _discard_part(work, remote)
                raise FileBusy(
                    f"'{remote.name}' was downloaded meanwhile by another Report Keeper process "
                    "(the app and a scheduled sync at the same time).",
                    "Nothing to do: it is held, and counted by the process that fetched it.",
                )
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
        inflight: deque[tuple[int, int, asyncio.Task]] = deque()
        next_off = pos
        # Big files are written and hashed by a writer thread of their own, overlapping disk
        # and network; its FIFO order also closes the descriptor only after the last write.
        if size - have >= THREADED_WRITES_FROM:
            writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rk-write")
        loop = asyncio.get_running_loop()
        writing: asyncio.Future | None = None
        reported = -1  # bytes last given to progress()

        async def flush() -> None:
            nonlocal writing, written
            if writing is not None:
                fut, writing = writing, None
                try:
                    written += await fut
                except OSError as exc:
                    raise local_err(exc) from None

        # The requests cover one byte past the listed size: getting it means the file grew
        # (still being written, or replaced) without a separate stat round trip.
        end = size + 1

        def fill() -> None:
            nonlocal next_off
            while next_off < end and len(inflight) < max_requests:
                n = min(block, end - next_off)
                inflight.append((next_off, n, asyncio.ensure_future(f.read(n, next_off))))
                next_off += n

        try:
            fill()
            # Many reads in flight; each is written and hashed in file order as it lands,
            # so the part file is always a valid prefix of the server's file.
            while inflight:
                _off, n, task = inflight[0]
                data = await task
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
                    rest = asyncio.ensure_future(f.read(n - len(data), pos))
                    inflight.appendleft((pos, n - len(data), rest))
                fill()
                if not recorded and pos >= RECORD_FROM:
                    try:
                        _write_record(work, remote)
                    except OSError as exc:
                        raise local_err(exc) from None
                    recorded = True
                if progress is not None:
                    progress(pos, size)  # received in order (the last block may be in the writer)
                    reported = pos
                if gate is not None and not gate.is_set():
                    await gate.wait()
            await flush()
            if progress is not None and written != reported:
                progress(written, size)
        except SftpError:
            raise
        except (asyncssh.Error, OSError) as exc:
            raise remote_err(exc) from None
        finally:
            for _off, _n, task in inflight:
                task.cancel()
            if inflight:
                await asyncio.gather(*(t for _o, _n, t in inflight), return_exceptions=True)
            if writing is not None:  # let the last write land before anyone reuses the part
                try:
                    await asyncio.shield(writing)
                except BaseException:  # noqa: BLE001 - its error is not the one to report
                    pass
        if written != size:
            raise _changed(remote, f"it ended after {pos} of the listed {size} bytes")
        digest = h.hexdigest()
        try:  # one hop to a thread for all the blocking file-system work
            final, status = await asyncio.to_thread(_finish, fd, part, local_dir, remote, digest)
        except OSError as exc:
            raise local_err(exc) from None
        placed = True
    finally:
        if fd >= 0 and not placed and not recorded and pos > have:
            try:  # stopped early: what arrived can be resumed next time
                _write_record(work, remote)
            except OSError:
                pass
        if writer is not None:
            if fd >= 0:
                writer.submit(os.close, fd)  # after any write still queued
            writer.shutdown(wait=False)
        elif fd >= 0:
            os.close(fd)
        task = asyncio.ensure_future(_close_quietly(f))  # closing needs no wait: saves a round trip
        _background.add(task)
        task.add_done_callback(_background.discard)
    log.info("downloaded %r: %d bytes, %s (resumed from %d)", remote.name, size, status, have)
    return DownloadResult(name=remote.name, size=size, sha256=digest, path=final, status=status,
                          resumed_from=have, transferred=received)


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class TransferEvent:
    job_id: int
    name: str


@dataclass(frozen=True)
class Queued(TransferEvent):
    size: int = 0


@dataclass(frozen=True)
class Running(TransferEvent):
    bytes: int = 0
    total: int = 0
    rate: float = 0.0  # bytes per second over the current attempt


@dataclass(frozen=True)
class Retrying(TransferEvent):
    attempt: int = 1  # the attempt that failed (1-based)
    reason: str = ""
    delay: float = 0.0


@dataclass(frozen=True)
class Done(TransferEvent):
    size: int = 0
    sha256: str = ""
    path: str = ""
    status: str = NEW  # NEW | SAME | CHANGED
    resumed_from: int = 0  # offset the last attempt started at
    transferred: int = 0  # bytes received from the server over all attempts
    attempts: int = 1


@dataclass(frozen=True)
class Failed(TransferEvent):
    reason: str = ""
    error: SftpError | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Cancelled(TransferEvent):
    pass


# ---------------------------------------------------------------- queue

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
_FATAL = (AuthFailed, HostKeyUnknown, HostKeyChanged)


@dataclass
class Job:
    id: int
    remote: RemoteFile
    remote_dir: str
    local_dir: Path
    state: str = QUEUED
    attempts: int = 0
    transferred: int = 0
    result: DownloadResult | None = None
    error: SftpError | None = None
    task: asyncio.Task | None = field(default=None, repr=False)
    cancel_requested: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: Asked before the first byte: True when another process has just fetched this copy.
    already_held: Callable[[RemoteFile], bool] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.remote.name


class TransferQueue:
    """Bounded-concurrency download queue with retries, resume, cancel and pause."""

    def __init__(self, connect: Callable[[], Awaitable[SftpConnection]], *, concurrency: int = 4,
                 on_event: Callable[[TransferEvent], Any] | None = None,
                 events: asyncio.Queue | None = None, max_attempts: int = 5,
                 backoff_base: float = 1.0, backoff_max: float = 30.0,
                 progress_interval: float = 0.1, connection: SftpConnection | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._factory = connect
        self.concurrency = concurrency
        self._on_event = on_event
        self._events = events
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.progress_interval = progress_interval
        self._conn: SftpConnection | None = connection
        self._owns_conn = connection is None
        self._conn_lock = asyncio.Lock()
        self._fatal: SftpError | None = None
        self._todo: asyncio.Queue[Job] = asyncio.Queue()
        self._gate = asyncio.Event()
        self._gate.set()
        self._workers: list[asyncio.Task] = []
        self.jobs: dict[int, Job] = {}
        self._next_id = 1
        self.connections_opened = 0

    # -- control
    def add(self, remote: RemoteFile, remote_dir: str, local_dir: Path | str, *,
            already_held: Callable[[RemoteFile], bool] | None = None) -> Job:
        """Queue one download; returns its :class:`Job` (``job.id`` for cancel).

        ``already_held(remote)``: see :func:`download` (the job then fails with FileBusy).
        """
        job = Job(self._next_id, remote, remote_dir, Path(local_dir), already_held=already_held)
        self._next_id += 1
        self.jobs[job.id] = job
        self._emit(Queued(job.id, remote.name, remote.size))
        self._todo.put_nowait(job)
        self._start_workers()
        return job

    def cancel(self, job_id: int) -> bool:
        """Cancel one job (queued or running). False if it already ended."""
        job = self.jobs.get(job_id)
        if job is None or job.state in (DONE, FAILED, CANCELLED):
            return False
        job.cancel_requested = True
        if job.task is not None and not job.task.done():
            job.task.cancel()
        elif job.state == QUEUED:
            self._finish_cancel(job)
        return True

    def cancel_all(self) -> None:
        for job_id in list(self.jobs):
            self.cancel(job_id)

    def pause(self) -> None:
        """Stop starting new files and hold running ones between blocks."""
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()

    @property
    def paused(self) -> bool:
        return not self._gate.is_set()

    async def join(self) -> list[Job]:
        """Wait until every job added so far has ended; returns them in order.

        Then removes part files of finished files left by older server copies.
        """
        for job in list(self.jobs.values()):
            await job.finished.wait()
        done: dict[Path, set[str]] = {}
        for job in self.jobs.values():
            if job.state == DONE:
                done.setdefault(job.local_dir, set()).add(job.name)
        for folder, names in done.items():
            await asyncio.to_thread(remove_stale_parts, folder, names)
        return list(self.jobs.values())

    async def close(self) -> None:
        """Cancel everything still running and close the connection the queue opened."""
        self.cancel_all()
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        if self._conn is not None and self._owns_conn:
            await self._conn.close()
        self._conn = None

    async def __aenter__(self) -> "TransferQueue":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals
    def _emit(self, event: TransferEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # noqa: BLE001 - a broken UI callback must not stop transfers
                log.exception("transfer event callback failed")
        if self._events is not None:
            self._events.put_nowait(event)

    def _start_workers(self) -> None:
        self._workers = [w for w in self._workers if not w.done()]
        while len(self._workers) < min(self.concurrency, self._todo.qsize() + len(self._workers)):
            self._workers.append(asyncio.ensure_future(self._worker()))

    def _finish_cancel(self, job: Job) -> None:
        job.state = CANCELLED
        job.error = CancelledError_(f"The download of '{job.name}' was cancelled.",
                                    "Its part file is kept; downloading it again resumes there.")
        self._emit(Cancelled(job.id, job.name))
        job.finished.set()

    async def _worker(self) -> None:
        while True:
            try:
                job = self._todo.get_nowait()
            except asyncio.QueueEmpty:
                return
            if job.state != QUEUED:
                continue
            await self._gate.wait()
            if job.cancel_requested:
                if job.state == QUEUED:
                    self._finish_cancel(job)
                continue
            job.state = RUNNING
            job.task = asyncio.ensure_future(self._run(job))
            try:
                await asyncio.wait([job.task])  # returns also when the job alone is cancelled
            except asyncio.CancelledError:  # the worker itself (queue closing)
                job.task.cancel()
                await asyncio.gather(job.task, return_exceptions=True)
                raise

    async def _connection(self) -> SftpConnection:
        async with self._conn_lock:
            if self._fatal is not None:
                raise self._fatal
            if self._conn is None or self._conn.closed:
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None
                try:
                    self._conn = await self._factory()
                    self._owns_conn = True
                    self.connections_opened += 1
                except SftpError as exc:
                    if isinstance(exc, _FATAL) or not exc.transient:
                        self._fatal = exc
                    raise
            return self._conn

    async def _drop(self, conn: SftpConnection) -> None:
        async with self._conn_lock:
            if self._conn is conn:
                self._conn = None
                await conn.close()

    async def _run(self, job: Job) -> None:
        started = time.monotonic()
        last = [float("-inf")]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= self.progress_interval or done >= total:
                last[0] = now
                elapsed = max(now - started, 1e-6)
                self._emit(Running(job.id, job.name, done, total, (done - resumed[0]) / elapsed))

        resumed = [0]
        try:
            while True:
                job.attempts += 1
                conn = None
                try:
                    conn = await self._connection()
                    resumed[0] = part_progress(job.local_dir, job.remote)
                    started = time.monotonic()
                    self._emit(Running(job.id, job.name, resumed[0], job.remote.size, 0.0))
                    result = await download(conn, job.remote, job.remote_dir, job.local_dir,
                                            progress=progress, gate=self._gate,
                                            already_held=job.already_held)
                except SftpError as exc:
                    received = getattr(exc, "received", 0)
                    job.transferred += received
                    fatal = isinstance(exc, _FATAL)
                    if fatal or not exc.transient or job.attempts >= self.max_attempts:
                        job.state = FAILED
                        job.error = exc
                        log.warning("download of %r failed: %s", job.name, exc.what)
                        self._emit(Failed(job.id, job.name, str(exc), exc))
                        return
                    if isinstance(exc, ConnectFailed) and conn is not None:
                        await self._drop(conn)
                    delay = 0.0 if (isinstance(exc, ConnectionLost) and job.attempts == 1) else min(
                        self.backoff_max, self.backoff_base * 2 ** (job.attempts - 1))
                    log.info("download of %r: attempt %d failed (%s); retrying in %.1f s",
                             job.name, job.attempts, exc.what, delay)
                    self._emit(Retrying(job.id, job.name, job.attempts, str(exc), delay))
                    await asyncio.sleep(delay)
                    await self._gate.wait()
                    if isinstance(exc, TransferFailed) and conn is not None and not conn.closed:
                        await self._refresh(job, conn)
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug must fail one file, not the queue
                    log.exception("unexpected error downloading %r", job.name)
                    err = TransferFailed(f"Unexpected error downloading '{job.name}': {type(exc).__name__}.",
                                         "Try again; if it persists, report it with the log file.")
                    job.state = FAILED
                    job.error = err
                    self._emit(Failed(job.id, job.name, str(err), err))
                    return
                job.transferred += result.transferred
                job.result = result
                job.state = DONE
                self._emit(Done(job.id, job.name, result.size, result.sha256, str(result.path),
                                result.status, result.resumed_from, job.transferred, job.attempts))
                return
        except asyncio.CancelledError:
            if not job.finished.is_set():
                self._finish_cancel(job)
            raise
        finally:
            job.finished.set()

    async def _refresh(self, job: Job, conn: SftpConnection) -> None:
        """After a server file changed mid-download, take its current size and mtime."""
        try:
            attrs = await conn.stat(SftpConnection.join(job.remote_dir, job.remote.name))
        except SftpError:
            return
        from datetime import datetime, timezone

        if attrs.size is not None and attrs.mtime is not None:
            job.remote = RemoteFile(job.remote.name, int(attrs.size),
                                    datetime.fromtimestamp(attrs.mtime, timezone.utc))
