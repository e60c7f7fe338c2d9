"""The export's per-file cache: each report file's typed table, read once.

A workbook is parsed only in a worker process (``tui.core.export_read``, job ``"table"``),
which writes its table as an Arrow IPC stream into this folder. The parent reads that stream
(one file's table at a time), names its columns, drops blank rows, settles the types and
keeps the result as ``<sha256>-r<version>-h<header row>.parquet``. An export then only scans
these files, so exporting again after one new day reads one workbook, not the other 364.
An entry is a content's table: it stands for a held copy only once the copy's bytes hash to
that content still (:meth:`TableCache.held`), so an edited copy is excluded whether or not its
table was cached.

Types, settled here once per file (the worker reports what fastexcel found):

- numbers that are all whole (and within 2**53) become integers (``Int64``): counts stay
  counts; any fraction keeps the column as floating point;
- date cells whose values all fall on midnight become dates, others stay date-times
  (microseconds, no time zone: a cell holds the wall-clock time Excel shows);
- text, booleans and durations stay as they are; a column of several kinds was already read
  as text by the worker; a column with no value at all is ``Null``.

With the table, an entry keeps (in the parquet file's key-value metadata) how many number cells
of each column the worker found of 2**53 or more: values that may already be rounded in the
workbook, which the export reports for its identifier columns. Counts and header names only.

The folder: ``<ledger's folder>/<ledger's file name>-export-cache/`` (0700, files 0600; a
name that makes no plain folder name is shortened with a hash, :func:`cache_name`; the folder
of an earlier release, named after the stem, is adopted: :func:`adopt_legacy`). It holds
the reports' data as the workbooks do, raw values included also for pseudonymized exports
(pseudonyms are computed when an export is written, so one cache serves every key), and is
local temporary storage like the reports themselves. It is safe to delete at any time: the
next export reads the workbooks again. Entries of files no longer held are removed by
:func:`TableCache.prune` (every export calls it).

A ledger moved elsewhere (the profile's ``ledger`` changed to its new place) gets a new cache
beside it; the old one would stay behind, a copy of patron data nobody looks after. Every
export notes the ledger its cache serves (:func:`forget_moved`, in report-keeper's state
folder) and removes the cache of a ledger noted earlier that is no longer where it was
(:func:`remove_cache`: only entries of ours, never through a link).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import polars as pl

from tui.core import isolation
from tui.core.config import APP_NAME
from tui.core.export_read import TABLE_READER_VERSION
from tui.core.validate import Unreadable, failure_message, open_regular, said_for_export

log = logging.getLogger("report_keeper.export_cache")

#: Bump when the parent's settling of types changes (part of the cache key with the reader's).
SETTLE_VERSION = "1"
CACHE_VERSION = f"{TABLE_READER_VERSION}.{SETTLE_VERSION}"
#: Left-over temporary files (a run killed mid-write) are removed once this old.
STALE_SECONDS = 3600.0
_EXACT_INT = 2**53

#: The parquet metadata key of the counts of number cells of 2**53 or more, per column name.
IMPRECISE_KEY = "report_keeper.imprecise_numbers"

#: The column types a cached table may hold (anything else is kept as text).
ALLOWED = (pl.String, pl.Int64, pl.Float64, pl.Boolean, pl.Date, pl.Datetime, pl.Duration, pl.Null)


#: Why a held copy whose bytes are no longer the downloaded ones is not exported.
MODIFIED_MESSAGE = (
    "The local copy's content is no longer what was downloaded (its sha256 differs from the "
    "ledger's); it was not exported. Put the downloaded file back, or run 'report-keeper sync' "
    "to verify it again."
)


class CacheError(Exception):
    """The cache folder cannot be used; ``str()`` says what to do."""


@dataclass(frozen=True)
class CachedTable:
    """One file's table in the cache."""

    path: Path
    sha256: str
    rows: int
    schema: tuple[tuple[str, pl.DataType], ...]  # column name and type, in the file's order
    #: Columns with number cells of 2**53 or more (perhaps rounded in the workbook), and how many.
    imprecise: tuple[tuple[str, int], ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.schema)


@dataclass(frozen=True)
class ReadFailure:
    """Why a file's table could not be read (a message for people; never a cell value)."""

    status: str  # "unreadable" | "modified"
    message: str


#: What a cache folder's name ends with (after its ledger's file name).
CACHE_SUFFIX = "-export-cache"
#: The longest file name most file systems take, in bytes.
_NAME_MAX = 255


def cache_dir(ledger_path: Path) -> Path:
    """The cache folder of the ledger at ``ledger_path``: beside it, named after its whole file
    name (two ledgers of one stem in one folder, ``ledger.sqlite3`` and ``ledger.db``, have a
    folder each)."""
    return ledger_path.parent / cache_name(ledger_path.name)


def cache_name(ledger_name: str) -> str:
    """``<ledger's file name>-export-cache``; for a name that would not make a plain folder
    name (too long with the suffix, a control character, bytes that are not UTF-8) a readable
    part of it and 16 hex digits of its hash, so every ledger name has a folder of its own."""
    raw = os.fsencode(ledger_name)
    if (ledger_name.isprintable() and ledger_name not in ("", ".", "..")
            and len(raw) + len(CACHE_SUFFIX) <= _NAME_MAX):
        return ledger_name + CACHE_SUFFIX
    readable = "".join(c for c in ledger_name if c.isascii() and c.isprintable() and c != "/")[:64]
    return f"{readable or 'ledger'}-{hashlib.sha256(raw).hexdigest()[:16]}{CACHE_SUFFIX}"


def legacy_cache_dir(ledger_path: Path) -> Path | None:
    """Where releases before the folder was named after the whole file name kept this ledger's
    cache (``<stem>-export-cache``, shared by ledgers of one stem); None when that is the
    folder of today (a ledger name without a suffix)."""
    stem = ledger_path.stem
    if not stem:
        return None
    folder = ledger_path.parent / f"{stem}{CACHE_SUFFIX}"
    return None if folder == cache_dir(ledger_path) else folder


def open_cache(ledger_path: Path, pool: isolation.WorkerPool | None = None) -> TableCache:
    """The ledger's cache, opened (:meth:`TableCache.open`), after adopting the folder an
    earlier release kept it in (:func:`adopt_legacy`)."""
    adopt_legacy(ledger_path)
    return TableCache(cache_dir(ledger_path), pool).open()


def adopt_legacy(ledger_path: Path) -> bool:
    """Rename the ledger's cache folder of an earlier release (:func:`legacy_cache_dir`) to
    its name of today, when that name is free: its entries are tables of contents, right for
    any ledger, and the export's prune drops what this ledger does not hold. When today's
    folder is there already (a real folder of this user's), the old one's entries are moved
    into it instead (:func:`_merge`), so that the prune of today's folder (the export's, the
    purge's) covers them too. Only a real folder of this user's that no export is using (an
    exclusive ``flock``, not waited for) is adopted, through its parent opened once; a link or
    anything else in its place, or in today's, is left as it is (never followed). True when
    the old folder is gone into today's. Never raises for the disk."""
    legacy = legacy_cache_dir(ledger_path)
    if legacy is None:
        return False
    target = cache_dir(ledger_path).name
    try:
        parent = os.open(legacy.parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        try:
            there: os.stat_result | None = os.stat(target, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            there = None
        except OSError:
            return False
        if there is not None and (not stat.S_ISDIR(there.st_mode)
                                  or (hasattr(os, "geteuid") and there.st_uid != os.geteuid())):
            return False  # something else in today's place: refused by the export, nothing moved into it
        try:
            fd = os.open(legacy.name, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS, dir_fd=parent)
        except OSError:  # absent, a link (ELOOP), a file (ENOTDIR), ...: nothing of ours to adopt
            return False
        try:
            info = os.fstat(fd)
            if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until the folder is closed
            except BlockingIOError:
                return False  # an export of an earlier release is using it: today's folder is new
            now = os.stat(legacy.name, dir_fd=parent, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                return False  # its name is another's now
            if there is not None:
                return _merge(parent, fd, legacy.name, target, there)
            # A folder renamed onto an empty folder made meanwhile replaces it (an export that
            # made it then writes into this one by name); never onto a file or a link.
            os.rename(legacy.name, target, src_dir_fd=parent, dst_dir_fd=parent)
        except OSError as exc:
            log.warning("export cache: the folder of an earlier release not adopted: %s",
                        exc.strerror or type(exc).__name__)
            return False
        finally:
            os.close(fd)
    finally:
        os.close(parent)
    log.info("export cache: the folder of an earlier release renamed to %s", target)
    return True


def _merge(parent: int, fd: int, name: str, target: str, there: os.stat_result) -> bool:
    """Move the entries of the old folder (``fd``, held alone, named ``name`` in ``parent``)
    into today's (``target``, the folder ``there`` describes, opened without following a
    link): an entry today's has already stays today's, a temporary file of a killed export of
    the old release goes; the old folder is removed once empty. What is not an entry of ours
    (another name, a link, a folder) stays in it, and it with them. True when it is gone."""
    into = os.open(target, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS, dir_fd=parent)
    try:
        now = os.fstat(into)
        if (now.st_dev, now.st_ino) != (there.st_dev, there.st_ino):
            return False  # its name is another's now
        for entry in os.listdir(fd):
            if not _OWN_NAME.fullmatch(entry):
                continue
            try:
                if not stat.S_ISREG(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                    continue
                try:
                    os.stat(entry, dir_fd=into, follow_symlinks=False)
                except FileNotFoundError:
                    if not entry.startswith(".tmp-"):
                        os.rename(entry, entry, src_dir_fd=fd, dst_dir_fd=into)
                        continue
                os.unlink(entry, dir_fd=fd)
            except OSError:
                continue
    finally:
        os.close(into)
    held = os.fstat(fd)
    now = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
        return False
    try:
        os.rmdir(name, dir_fd=parent)  # only an empty folder, never a link
    except OSError:
        log.warning("export cache: the folder of an earlier release holds what is not an entry of ours; "
                    "its entries moved to %s, the rest left as it is", _shown(target))
        return False
    log.info("export cache: the entries of an earlier release's folder moved to %s", _shown(target))
    return True


class TableCache:
    """The cache folder of one ledger; thread-safe (each file is its own entry)."""

    def __init__(self, folder: Path, pool: isolation.WorkerPool | None = None) -> None:
        self.folder = Path(folder)
        self.pool = pool
        self.built = 0  # tables read from workbooks by this instance (tests, the summary)
        self.hits = 0
        self._count = threading.Lock()  # the export reads several files at a time
        self._held: int | None = None

    def open(self) -> TableCache:
        """Create the folder (0700) or check it: a real folder of ours, not a link. The folder
        is held in use (a shared ``flock``) while this object lives: the removal of a moved
        ledger's cache (:func:`forget_moved`) leaves a folder in use alone."""
        try:
            for _ in range(3):  # a folder removed between its creation and its hold: again
                try:
                    self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                except FileExistsError:  # no folder in its place (a link, dangling or not; a file)
                    pass  # said below, as what it is
                info = os.lstat(self.folder)
                if (not stat.S_ISDIR(info.st_mode) or (hasattr(os, "geteuid") and info.st_uid != os.geteuid())
                        or self._hold(info)):
                    break  # what is no folder of ours is refused below
        except OSError as exc:
            raise CacheError(
                f"cannot create the export cache {self.folder} ({exc.strerror or exc}); check "
                "the permissions of the ledger's folder"
            ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise CacheError(f"the export cache {self.folder} is not a folder; move it aside and export again")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise CacheError(f"the export cache {self.folder} belongs to another user; move it aside and export again")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.folder, 0o700)
        return self

    def _hold(self, info: os.stat_result) -> bool:
        """Hold the folder ``info`` describes in use; False when its name is no longer that
        folder once held (removed meanwhile)."""
        if self._held is not None:
            return True
        try:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS)
        except FileNotFoundError:  # removed since it was made: made again
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits for a removal under way (it holds it alone)
            held = os.fstat(fd)
            now = os.lstat(self.folder)
        except FileNotFoundError:  # removed while this waited: made again
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        if (held.st_dev, held.st_ino) != (info.st_dev, info.st_ino) or (now.st_dev, now.st_ino) != (
                held.st_dev, held.st_ino):
            os.close(fd)
            return False
        self._held = fd
        weakref.finalize(self, os.close, fd)
        return True

    def entry(self, sha256: str, header_row: int | None) -> Path:
        return self.folder / f"{sha256}-r{CACHE_VERSION}-h{header_row or 0}.parquet"

    def get(self, sha256: str, header_row: int | None) -> CachedTable | None:
        path = self.entry(sha256, header_row)
        try:
            info = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            _unlink(path)
            return None
        try:
            footer = _footer(path)  # read once: the schema, the row count and the counts are in it
            schema = pl.read_parquet_schema(footer)
            rows = pl.scan_parquet(footer).select(pl.len()).collect().item()
            imprecise = _imprecise_of(pl.read_parquet_metadata(footer), list(schema))
        except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
            log.warning("export cache entry %s unusable (%s): read again", path.name, type(exc).__name__)
            _unlink(path)
            return None
        with self._count:
            self.hits += 1
        return CachedTable(path, sha256, int(rows), tuple(schema.items()), imprecise)

    def held(self, path: Path, sha256: str, header_row: int | None) -> CachedTable | ReadFailure | None:
        """The cached table of the copy at ``path``, which the ledger says holds ``sha256``;
        None when nothing is cached (``build`` reads it). An entry is the table of a content,
        not of a file: it is used only once the copy is seen to hold that content still (its
        bytes hashed; nothing is parsed here). A copy edited or replaced since it was
        downloaded gets the failure the worker would report for it."""
        if not os.path.lexists(self.entry(sha256, header_row)):
            return None
        failure = still_holds(path, sha256)
        if failure is not None:
            return failure
        return self.get(sha256, header_row)

    def build(
        self, path: Path, sha256: str, header_row: int | None, *,
        cancel: Callable[[], bool] | None = None,
    ) -> CachedTable | ReadFailure:
        """Read ``path`` in a worker and keep its table; ``sha256`` is what the ledger says the
        file holds (a file whose bytes differ is not read into the export)."""
        pool = self.pool or isolation.shared_pool()
        stream = self.folder / f".tmp-{secrets.token_hex(8)}.arrows"
        try:
            try:
                reply = pool.call(
                    "table",
                    {"path": os.fsdecode(path), "out": os.fsdecode(stream), "header_row": header_row},
                    cancel=cancel,
                )
            except isolation.PoolClosed:
                raise
            except isolation.WorkerFailed as exc:
                return ReadFailure("unreadable", said_for_export(failure_message(exc.failure, pool)))
            result = reply.get("result") if reply.get("ok") else None
            if not isinstance(result, dict):
                return ReadFailure("unreadable", "The workbook's table could not be read "
                                   f"({reply.get('type') or reply.get('kind') or 'no result'}).")
            if result.get("ok") is not True:
                return ReadFailure("unreadable",
                                   str(result.get("message") or "The workbook's table could not be read."))
            if result.get("sha256") != sha256:
                return ReadFailure("modified", MODIFIED_MESSAGE)
            names = result.get("names")
            rows = result.get("rows")
            imprecise = result.get("imprecise")
            if (not isinstance(names, list) or not all(isinstance(n, str) for n in names)
                    or len(set(names)) != len(names) or not isinstance(rows, int)
                    or not isinstance(imprecise, list) or len(imprecise) != len(names)
                    or not all(type(n) is int and n >= 0 for n in imprecise)):
                return ReadFailure("unreadable", "The workbook's table could not be read (unexpected reply).")
            counts = tuple((name, n) for name, n in zip(names, imprecise, strict=True) if n)
            return self._settle(stream, sha256, header_row, names, rows, counts)
        finally:
            _unlink(stream)

    def _settle(self, stream: Path, sha256: str, header_row: int | None, names: list[str],
                rows: int, imprecise: tuple[tuple[str, int], ...]) -> CachedTable | ReadFailure:
        try:
            df = pl.read_ipc_stream(stream)
        except (OSError, pl.exceptions.PolarsError, ValueError) as exc:
            log.warning("table stream of %s unreadable: %s", sha256[:12], type(exc).__name__)
            return ReadFailure("unreadable", "The workbook's table could not be read (damaged worker output).")
        if df.width != len(names) or df.height != rows:
            return ReadFailure("unreadable", "The workbook's table could not be read (unexpected worker output).")
        df.columns = names
        df = settle_types(df)
        target = self.entry(sha256, header_row)
        part = self.folder / f".tmp-{secrets.token_hex(8)}.parquet"
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                df.write_parquet(fh, compression="lz4", statistics=False,
                                 metadata={IMPRECISE_KEY: json.dumps(dict(imprecise))})
            os.replace(part, target)
        except OSError as exc:
            _unlink(part)
            raise CacheError(
                f"cannot write to the export cache {self.folder} ({exc.strerror or exc}); free "
                "some disk space or delete the folder"
            ) from None
        with self._count:
            self.built += 1
        return CachedTable(target, sha256, df.height, tuple(df.schema.items()), imprecise)

    def prune(self, keep: Iterable[str]) -> int:
        """Delete entries whose file is not in ``keep`` (sha256s) or of an older version, and
        temporary files left by a killed run. Returns how many files were removed."""
        wanted = set(keep)
        removed = 0
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return 0
        now = time.time()
        for e in entries:
            name = e.name
            try:
                if name.startswith(".tmp-"):
                    if now - e.stat(follow_symlinks=False).st_mtime > STALE_SECONDS:
                        _unlink(Path(e.path))
                        removed += 1
                    continue
                sha, _, rest = name.partition("-")
                if not name.endswith(".parquet"):
                    continue
                if sha not in wanted or not rest.startswith(f"r{CACHE_VERSION}-"):
                    _unlink(Path(e.path))
                    removed += 1
            except OSError:
                continue
        if removed:
            log.info("export cache: %d entries removed", removed)
        return removed


#: A parquet file begins and ends with these bytes; before the last ones, its footer's length.
PARQUET_MAGIC = b"PAR1"
#: The end of an entry read at once: its footer and the 8 bytes after it (a table of a few
#: hundred columns); a longer footer takes one more read.
FOOTER_READ = 64 * 1024


def _footer(path: Path) -> bytes:
    """The entry's footer as a parquet file of its own (the magic, the footer, its length and
    the magic again): what its schema, row count and key-value metadata are read from, by one
    open and one read of its end instead of a parse of the file per question. Its column
    chunks point past these bytes, so no data is ever read from it. ``ValueError`` for an end
    that is no parquet footer (the entry is read again)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        end = os.pread(fd, min(size, FOOTER_READ), max(0, size - FOOTER_READ))
        if len(end) < 12 or end[-4:] != PARQUET_MAGIC:
            raise ValueError("no parquet footer")
        length = int.from_bytes(end[-8:-4], "little")
        if length + 12 > size:
            raise ValueError("a footer longer than the file")
        if length + 8 > len(end):
            end = os.pread(fd, length + 8, size - length - 8)
            if len(end) != length + 8:
                raise ValueError("the file ended while its footer was read")
        return PARQUET_MAGIC + end[-(length + 8):]
    finally:
        os.close(fd)


#: The names of the files a cache folder holds: its entries and the temporary files of a write.
_OWN_NAME = re.compile(r"[0-9a-f]{64}-r[0-9A-Za-z.]+-h[0-9]+\.parquet|\.tmp-[0-9a-f]{16}\.(?:arrows|parquet)")


def noted_ledgers() -> Path:
    """Where each export notes the ledger its cache serves (one small file per ledger)."""
    return Path(platformdirs.user_state_dir(APP_NAME)) / "export-caches"


#: A note's name: the first 32 hex digits of the sha256 of its ledger's path (as bytes).
_NOTE_NAME = re.compile(r"[0-9a-f]{32}")
#: The most a note may hold: the longest path (4096 bytes), each byte written as six
#: characters (``\\u`` and four hex digits).
NOTE_MAX = 64 * 1024
_OPEN_FLAGS = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

#: What became of a cache folder asked to go (:func:`_remove_cache`).
REMOVED = "removed"  # it was there and is gone
ABSENT = "absent"  # nothing there (moved with its ledger, deleted, or on a disk not mounted)
IN_USE = "in-use"  # the folder is the cache of a ledger that is there (the same name's, or a link's)
BUSY = "busy"  # an export holds the folder open now (:meth:`TableCache.open`): later
KEPT = "kept"  # not ours (a link, another user's) or holding what is not ours: left as it is
UNREACHABLE = "unreachable"  # the folder cannot be looked at now (permissions, the disk): later


def _note_name(ledger: str) -> str:
    return hashlib.sha256(os.fsencode(ledger)).hexdigest()[:32]


def forget_moved(ledger_path: Path) -> list[Path]:
    """Note that ``ledger_path``'s cache is in use, and remove the caches of ledgers noted
    earlier that are gone from where they were (moved, the profile's ``ledger`` changed; or
    deleted): the folder of today's name and the one of an earlier release's
    (:func:`legacy_cache_dir`). A ledger still there keeps its cache (copied rather than
    moved, another profile's), and so does a folder that is also the cache of a ledger still
    there (another spelling of its path; an earlier release's folder, named after the stem,
    that another ledger of that stem may still adopt). A noted ledger whose cache is not there
    either keeps its note while the disk it was on may not be mounted (its cache goes once it
    is seen again without its ledger); the note goes once that disk is seen (the folder it
    was in, or the nearest folder above it, on the device the note recorded). Returns the
    cache folders that were removed. Never raises for the disk or for what a note holds: a
    note that cannot be kept or read leaves the cache as it was before notes existed."""
    removed: list[Path] = []
    try:
        here = os.path.abspath(ledger_path)
        notes = _open_notes()
    except (OSError, ValueError) as exc:
        log.warning("export cache: the ledgers' notes cannot be kept: %s",
                    getattr(exc, "strerror", None) or type(exc).__name__)
        return removed
    try:
        try:
            _note(notes, here)
            names = [n for n in os.listdir(notes) if _NOTE_NAME.fullmatch(n)]
        except (OSError, ValueError) as exc:
            log.warning("export cache: the ledgers' notes cannot be kept: %s",
                        getattr(exc, "strerror", None) or type(exc).__name__)
            return removed
        noted = {name: doc for name in names if (doc := _read_note_doc(notes, name)) is not None}
        live = {here}
        gone: list[tuple[str, str, int | None]] = []
        for name, (path, device) in noted.items():
            try:
                os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                if path != here:
                    gone.append((name, path, device))
            except OSError:
                continue  # cannot tell now (permissions, the disk): asked again next time
            else:
                live.add(path)
        spare = _identities(folder for path in live for folder in _cache_folders(Path(path)))
        for name, path, device in gone:
            outcomes = []
            for cache in _cache_folders(Path(path)):
                outcome = _remove_cache(cache, spare)
                outcomes.append(outcome)
                if outcome == REMOVED:
                    removed.append(cache)
                    log.info("export cache of a ledger no longer at %s removed", _shown(path))
                elif outcome == KEPT:
                    log.warning("export cache %s of a ledger no longer there holds what is not an entry of "
                                "ours, or is no folder of ours; left as it is", _shown(cache))
            if UNREACHABLE in outcomes or BUSY in outcomes:
                continue  # the note stays: asked again next time
            if all(o == ABSENT for o in outcomes) and not _disk_seen(path, device):
                continue  # the note stays: its cache may be seen again (a disk mounted later)
            try:
                os.unlink(name, dir_fd=notes)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove the note %s: %s", name, exc.strerror or exc)
    finally:
        os.close(notes)
    return removed


def _shown(path: str | Path) -> str:
    """A path for the log: bytes that are not UTF-8 escaped (the log file takes UTF-8 only)."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _cache_folders(ledger_path: Path) -> list[Path]:
    """The folders a ledger's cache may be in: today's and an earlier release's."""
    legacy = legacy_cache_dir(ledger_path)
    return [cache_dir(ledger_path)] + ([legacy] if legacy is not None else [])


def _folder_device(ledger: str) -> int | None:
    """The device of the folder a ledger is in (None when it cannot be seen)."""
    try:
        return os.stat(os.path.dirname(ledger)).st_dev
    except (OSError, ValueError):
        return None


def _disk_seen(ledger: str, device: int | None) -> bool:
    """Whether the disk a gone ledger's folder was on (``device``, noted with it) is mounted:
    its folder, or the nearest folder above it that is there, is on that device. Then its
    cache, which was beside it, is really not there. False when the note has no device (one
    written by an earlier release) or nothing can be seen."""
    if device is None:
        return False
    folder = os.path.dirname(ledger)
    while True:
        try:
            return os.stat(folder).st_dev == device
        except (FileNotFoundError, NotADirectoryError):
            above = os.path.dirname(folder)
            if above == folder:
                return False
            folder = above
        except (OSError, ValueError):
            return False


def _open_notes() -> int:
    """The notes folder, opened: a folder of this user's (0700), never through a link in its
    place (nothing written to, nor read from, a folder another may fill)."""
    folder = noted_ledgers()
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise PermissionError(errno.EPERM, "the notes folder belongs to another user")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_note_doc(notes: int, name: str) -> tuple[str, int | None] | None:
    """The ledger a note names, an absolute path (the one its name was made of), and the
    device its folder was on when noted (None in a note of an earlier release); None for
    anything else (a link, a pipe, another user's file, too long, not JSON, ...)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS, dir_fd=notes)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_size > NOTE_MAX
                or (hasattr(os, "geteuid") and info.st_uid != os.geteuid())):
            return None
        data = b""
        while len(data) <= NOTE_MAX and (chunk := os.read(fd, NOTE_MAX + 1 - len(data))):
            data += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > NOTE_MAX:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    path = doc.get("ledger") if isinstance(doc, dict) else None
    if not isinstance(path, str) or "\x00" in path or not os.path.isabs(path):
        return None
    device = doc.get("device")
    if type(device) is not int or device < 0:
        device = None
    try:
        return (path, device) if _note_name(path) == name else None
    except UnicodeError:  # a lone surrogate no file name is made of
        return None


def _note(notes: int, ledger: str) -> None:
    """The note of one ledger and the device of its folder, written whole (a temporary file
    renamed into place), in ASCII (a path of bytes that are not UTF-8 reads back); one that
    does not read back so is written again."""
    name = _note_name(ledger)
    device = _folder_device(ledger)
    if _read_note_doc(notes, name) == (ledger, device):
        return
    part = f".tmp-{secrets.token_hex(8)}"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600, dir_fd=notes)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(json.dumps({"ledger": ledger, "device": device}).encode("ascii"))
        os.replace(part, name, src_dir_fd=notes, dst_dir_fd=notes)
    finally:
        try:
            os.unlink(part, dir_fd=notes)
        except FileNotFoundError:
            pass


def _identities(folders: Iterable[Path]) -> frozenset[tuple[int, int]]:
    """The device and inode of each folder that is there (however its path is spelt)."""
    found = set()
    for folder in folders:
        try:
            info = os.stat(folder)
        except (OSError, ValueError):
            continue
        found.add((info.st_dev, info.st_ino))
    return frozenset(found)


def remove_cache(folder: Path) -> bool:
    """Remove a cache folder: the files of its own naming that are regular files, then the
    folder once empty. Whatever else is there (a link, a folder, a file of another name) is
    left, and so is the folder then; a link or anything not a folder of this user's in the
    folder's place is never followed. True when the folder is gone (or was not there)."""
    return _remove_cache(folder, frozenset()) in (REMOVED, ABSENT)


def _remove_cache(folder: Path, spare: frozenset[tuple[int, int]]) -> str:
    """:func:`remove_cache`, saying what became of the folder; a folder whose device and inode
    are in ``spare`` (the cache of a ledger still there) is left whole. The folder is opened
    once, without following a link, from its parent opened once: what is removed is in that
    folder, whatever its name comes to point at meanwhile."""
    if not folder.name:
        return KEPT
    try:
        parent = os.open(folder.parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return ABSENT
    except OSError:
        return UNREACHABLE
    try:
        try:
            fd = os.open(folder.name, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return ABSENT
        except (NotADirectoryError, OSError) as exc:  # a link (ELOOP), a file (ENOTDIR): not ours
            return UNREACHABLE if isinstance(exc, PermissionError) else KEPT
        try:
            info = os.fstat(fd)
            identity = (info.st_dev, info.st_ino)
            if identity in spare:
                return IN_USE
            if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
                return KEPT
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until the folder is closed
            except BlockingIOError:
                return BUSY
            for name in os.listdir(fd):
                if not _OWN_NAME.fullmatch(name):
                    continue
                try:
                    if stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                        os.unlink(name, dir_fd=fd)
                except OSError:
                    continue
            # Removed while still held: an export that opens the folder meanwhile waits for
            # the lock and then finds it gone (and makes it again), never keeps a folder
            # removed under it.
            try:
                now = os.stat(folder.name, dir_fd=parent, follow_symlinks=False)
                if (now.st_dev, now.st_ino) != identity:
                    return KEPT  # its name is another's now: that one is not emptied, nor removed
                os.rmdir(folder.name, dir_fd=parent)  # only an empty folder, never a link
            except FileNotFoundError:
                return REMOVED
            except OSError:
                return KEPT
            return REMOVED
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def still_holds(path: Path, sha256: str) -> ReadFailure | None:
    """None when the file at ``path`` holds the bytes whose hash is ``sha256``; else why not
    (``modified``, or ``unreadable`` for a file that is gone or not a regular file). Only
    hashes the bytes: a workbook is parsed in a worker, never here."""
    digest = hashlib.sha256()
    try:
        with open_regular(path) as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except Unreadable as exc:
        return ReadFailure("unreadable", str(exc))
    except OSError as exc:
        return ReadFailure("unreadable", f"The file cannot be read ({exc.strerror or type(exc).__name__}). "
                           "Check the disk and path.")
    return None if digest.hexdigest() == sha256 else ReadFailure("modified", MODIFIED_MESSAGE)


def _imprecise_of(metadata: dict[str, str], names: list[str]) -> tuple[tuple[str, int], ...]:
    """The counts an entry keeps; ``ValueError`` when they are missing or do not fit its
    columns (the entry is read again)."""
    raw = metadata.get(IMPRECISE_KEY)
    if raw is None:
        raise ValueError("no counts of large numbers")
    counts = json.loads(raw)
    if not isinstance(counts, dict) or not all(
            isinstance(k, str) and k in names and type(v) is int and v > 0 for k, v in counts.items()):
        raise ValueError("damaged counts of large numbers")
    return tuple((name, counts[name]) for name in names if name in counts)


def settle_types(df: pl.DataFrame) -> pl.DataFrame:
    """Blank rows dropped, whole numbers as integers, midnight date-times as dates."""
    if df.width == 0:
        return df
    df = df.filter(~pl.all_horizontal(pl.all().is_null()))
    casts = []
    for name, dtype in df.schema.items():
        col = df.get_column(name)
        values = col.drop_nulls()
        if dtype == pl.Float64:
            if values.len() and _whole(values):
                casts.append(pl.col(name).cast(pl.Int64))
        elif isinstance(dtype, pl.Datetime):
            as_us = values.cast(pl.Datetime("us"))
            if values.len() and (as_us.dt.truncate("1d") == as_us).all():
                casts.append(pl.col(name).cast(pl.Datetime("us")).cast(pl.Date))
            else:
                casts.append(pl.col(name).cast(pl.Datetime("us")))
        elif isinstance(dtype, pl.Duration):
            casts.append(pl.col(name).cast(pl.Duration("us")))
        elif dtype.base_type() not in ALLOWED:
            casts.append(pl.col(name).cast(pl.String))
    return df.with_columns(casts) if casts else df


def _whole(values: pl.Series) -> bool:
    if not values.is_finite().all():
        return False
    if values.abs().max() >= _EXACT_INT:  # type: ignore[operator]
        return False
    return bool((values == values.floor()).all())


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path.name, exc.strerror or exc)


__all__ = ["MODIFIED_MESSAGE", "CacheError", "CachedTable", "ReadFailure", "TableCache", "adopt_legacy", "cache_dir",
           "cache_name", "forget_moved", "legacy_cache_dir", "noted_ledgers", "open_cache", "remove_cache",
           "settle_types", "still_holds"]
