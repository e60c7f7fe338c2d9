"""Where an interrupted download stands: report-keeper's private working folder and its part files.

Downloads land in ``local_dir`` under names the server chooses, so the product's own files
live where no server name can reach (docs/ARCHITECTURE.md, "Local files"): the working folder
``<local_dir>/.report-keeper/parts/`` (0700; its name is refused as a server name). A part is
named after a hash of the remote name (``<sha256[:32]>.part``), created with
``O_EXCL``/``O_NOFOLLOW`` and locked (``flock``) while it is written; beside it a small JSON
record holds the remote name, size and mtime it belongs to, and a part is resumed only when
that record matches the server's copy.

Public API::

    work = ensure_work_dir(local_dir)          # create and check the working folder
    part_path(local_dir, remote) / part_progress(local_dir, remote)   # where a transfer stands
    fd, have = open_part(local_dir, remote)    # the locked part file, as download() opens it
    remove_stale_parts(local_dir, names)       # parts of other server copies, nobody writing
    adopt_legacy_part(local_dir, remote)       # an older release's part, proven ours
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import stat as statmod
from datetime import UTC
from pathlib import Path

from tui.core.model import RemoteFile
from tui.core.names import WORK_DIR_NAME
from tui.sftp.errors import FileBusy, LocalWriteFailed

log = logging.getLogger("report_keeper.sftp.parts")


#: Sub-folder of the private working folder that holds part files and their records.
PARTS_DIR = "parts"


@functools.lru_cache(maxsize=4096)
def _part_id(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def part_name(remote: RemoteFile) -> str:
    """The part file of one remote file, inside :func:`work_dir` (one per remote name)."""
    return f"{_part_id(remote.name)}.part"


def _record_name(remote: RemoteFile) -> str:
    return f"{_part_id(remote.name)}.json"


@functools.lru_cache(maxsize=256)
def work_dir(local_dir: Path | str) -> Path:
    """``<local_dir>/.report-keeper/parts``: where part files live (the same few folders are
    asked for again and again: made once each)."""
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


def _part_record(remote: RemoteFile) -> dict[str, str | int]:
    return {"name": remote.name, "size": remote.size,
            "mtime": remote.mtime.astimezone(UTC).isoformat()}


def _read_record(path: Path) -> dict[str, object] | None:
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


def write_record(work: Path, remote: RemoteFile) -> None:
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


def drop_record(work: Path | str, remote: RemoteFile) -> None:
    try:
        os.unlink(os.path.join(work, _record_name(remote)))
    except OSError:
        pass


def ensure_work_dir(local_dir: Path | str) -> Path:
    """Create (0700) and check the private working folder; returns the parts folder.

    Each level must be a real folder of ours (never a symlink): anything else there is
    refused with :class:`LocalWriteFailed` rather than written through.
    """
    local_dir = Path(local_dir)
    if work_dir_ready(local_dir):  # every download asks: three stats when all is in order
        return work_dir(local_dir)
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


def work_dir_ready(local_dir: Path | str) -> bool:
    """``local_dir`` is a private folder (0700, ours; it may be reached through a link) and
    each level of the working folder in it a real folder of ours, 0700: nothing to create,
    refuse or tighten (what :func:`ensure_work_dir` does otherwise)."""
    uid = os.getuid()
    top = os.path.join(local_dir, WORK_DIR_NAME)
    try:
        for info in (os.stat(local_dir), os.lstat(top), os.lstat(os.path.join(top, PARTS_DIR))):
            if not statmod.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o777 != 0o700:
                return False
    except OSError:
        return False
    return True


def part_progress(local_dir: Path | str, remote: RemoteFile) -> int:
    """Bytes of this very server copy held in its part file (0: none, or another copy's)."""
    work = work_dir(local_dir)
    try:  # the part first: most files have none, and then there is no record to read
        info = os.lstat(os.path.join(work, part_name(remote)))
    except OSError:
        return 0
    record = _read_record(work / _record_name(remote))
    if record != _part_record(remote):
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
    return lock_part(ensure_work_dir(local_dir), remote)


def lock_part(work: Path, remote: RemoteFile) -> tuple[int, int]:
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
                drop_record(work, remote)  # a record left without its part describes nothing
            elif (_read_record(work / _record_name(remote)) != _part_record(remote)
                  or have > remote.size):
                os.ftruncate(fd, 0)  # another server copy's (or unproven) bytes: start afresh
                drop_record(work, remote)
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


def discard_part(work: Path, remote: RemoteFile) -> None:
    """Remove the part and its record (called while holding the part's lock)."""
    try:
        os.unlink(work / part_name(remote))
    except OSError:
        pass
    drop_record(work, remote)


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
        write_record(work, remote)
        os.unlink(old)
        log.info("adopted an older release's part file of %r (%d bytes)", remote.name, info.st_size)
        return info.st_size
    except OSError as exc:
        log.warning("could not adopt the old part file of %r: %s", remote.name, exc)
        return 0
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) or tighten it to 0700."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (path.stat().st_mode & 0o777) != 0o700:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise LocalWriteFailed(f"Could not create the local folder '{path}': {exc.strerror or exc}.",
                               "Check local_dir in the profile and the folder's permissions.") from None


def remove_stale_parts(local_dir: Path | str, names: set[str] | None = None) -> int:
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
