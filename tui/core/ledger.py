"""The ledger: an embedded SQLite record of everything the product has seen and done.

History outlives the server's 60-day retention: every remote file ever listed, every
download (size, sha256, local path, time), every verification result, every refused
name. The schedule evaluation and the TUI read it through :meth:`Ledger.deliveries`.

Durability: WAL journal, ``synchronous=FULL``, and every write is one ``BEGIN
IMMEDIATE … COMMIT`` transaction, so a crash at any point leaves the file consistent
and the next run picks up where this one stopped (a download is recorded only once its
file is complete under the final name; a part file is recorded separately as partial).
Inside :meth:`Ledger.batched` (a sync run) each write is a savepoint of one open transaction
(a write of one statement needs none: SQLite undoes a refused statement by itself) that a
timer commits every ``BATCH_SECONDS`` and at the end: one disk flush for many records.
A write that finds another process holding the file's write lock waits for it (up to
``BUSY_TIMEOUT``) without holding this ledger's own lock, so the other threads go on reading.

The schema is versioned from day one: ``meta.schema_version`` plus the ``MIGRATIONS``
list; a ledger written by a newer release is refused with a clear message rather than
misread.

Stored times are UTC ISO 8601 strings with microseconds, so they sort as text.
Cell values never reach the ledger: only counts, column names, statuses, and per verification
the rows' fingerprint (a hash) and the date column's days with their counts
(docs/CONTENT_CHECKS.md).

Public API (``profile`` defaults to the one the ledger was opened for)::

    led = Ledger.open(path | None, profile="default")     # None: default_path(profile)
    with led.batched(): ...                               # many writes, few commits
    led.for_profile(name) -> Ledger                       # same connection, another profile
    led.record_listing(profile, report_of, listing, when, refused=(), *, rolling=(), tz=UTC)
        -> ListingChange                                   # rolling: names kept as versions
    led.rolling_history() -> (names kept as versions, {other name: its copies' mtimes})
    led.record_download(name, size=, sha256=, local_path=, mtime=, when=) -> bool (recorded now)
    led.reconcile_local(local_dir=None) -> LocalCheck   # every held copy still on disk?
    led.holds(name, size, mtime) -> bool                 # this server copy is held (on disk)
    led.copies_in(folder) -> int                         # copies held inside a folder (not purged)
    led.record_partial(name, size=, mtime=, part_path=, bytes_done=) / clear_partial(name)
    led.record_verification(verify_result, sha256=, context=verification_context(report, at))
    led.cached_verification(sha256, context, path=, name=) -> VerifyResult | None
    led.deliveries(report=None) -> list[model.Delivery]     # everything ever seen
    led.local_state(name) / local_states() -> "new" | "downloaded" | "changed" | "partial"
                                               | "missing-locally" | "purged"
    led.downloads(name=None), partials(), refused(current=False), lost(), last_listing()
    led.mark_purging(copies) / mark_purged(copies, links=) / clear_purging(copies)   # local retention
    led.exports() -> list[ExportRecord]; led.export_key_ids() -> set[str]   # the recorded exports
    led.watch_waits(watcher) -> stop   # told while writes wait for another process's lock
    lock_holder(path) -> str | None     # that process, in words (Linux)

Errors are :class:`LedgerError` (``str()`` says what to do); a failed write changes nothing.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import stat as statmod
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import NotRequired, TypedDict, TypeVar

from tui.core import clock, isolation
from tui.core.config import ReportConfig, default_ledger_path
from tui.core.content import CONTENT_VERSION, DateCoverage
from tui.core.durable import fsync_dir
from tui.core.model import Delivery, EntryKind, LocalState, OtherEntry, RemoteFile, VerifyResult
from tui.core.names import collision_key, distinct_local_name, escape_name, fit_name, version_name
from tui.core.status import VerifyStatus

log = logging.getLogger("report_keeper.ledger")

_T = TypeVar("_T")

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE remote_files (
        id INTEGER PRIMARY KEY,
        profile TEXT NOT NULL,
        name TEXT NOT NULL,
        report TEXT NOT NULL,
        delivered_at TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        gone_at TEXT,
        changed_at TEXT,
        UNIQUE (profile, name)
    );
    CREATE INDEX remote_files_report ON remote_files (profile, report, delivered_at);
    CREATE TABLE listings (
        id INTEGER PRIMARY KEY,
        profile TEXT NOT NULL,
        at TEXT NOT NULL,
        files INTEGER NOT NULL,
        refused INTEGER NOT NULL
    );
    CREATE INDEX listings_profile ON listings (profile, at);
    CREATE TABLE downloads (
        id INTEGER PRIMARY KEY,
        profile TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime TEXT,
        sha256 TEXT NOT NULL,
        local_path TEXT NOT NULL,
        downloaded_at TEXT NOT NULL
    );
    CREATE INDEX downloads_name ON downloads (profile, name, id);
    CREATE INDEX downloads_sha ON downloads (sha256);
    CREATE TABLE partials (
        profile TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime TEXT,
        part_path TEXT NOT NULL,
        bytes_done INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (profile, name)
    );
    CREATE TABLE verifications (
        id INTEGER PRIMARY KEY,
        sha256 TEXT,
        context TEXT NOT NULL DEFAULT '',
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        report TEXT,
        delivered_at TEXT,
        status TEXT NOT NULL,
        rows INTEGER,
        header_row INTEGER,
        columns TEXT NOT NULL,
        message TEXT NOT NULL,
        sheet TEXT,
        missing_columns TEXT NOT NULL,
        verified_at TEXT NOT NULL
    );
    CREATE INDEX verifications_sha ON verifications (sha256, context, id);
    CREATE INDEX verifications_path ON verifications (path, id);
    CREATE TABLE refused (
        profile TEXT NOT NULL,
        name TEXT NOT NULL,
        reason TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (profile, name)
    );
    """,
    # Held copies found missing on disk (or with another size); the connection test's probe
    # files, which older releases could record as deliveries, are not reports.
    """
    ALTER TABLE downloads ADD COLUMN missing_since TEXT;
    DELETE FROM remote_files WHERE name GLOB '.report-keeper-probe-*';
    DELETE FROM downloads WHERE name GLOB '.report-keeper-probe-*';
    DELETE FROM partials WHERE name GLOB '.report-keeper-probe-*';
    DELETE FROM refused WHERE name GLOB '.report-keeper-probe-*';
    DELETE FROM verifications WHERE name GLOB '.report-keeper-probe-*'
    """,
    # Alerts: what each channel (email, webhook) has been told, so that the app, cron's sync
    # and check share one memory and nothing is sent twice. A row is written only after a
    # successful send; ``state`` is 'open' (told as a problem) or 'closed' (told it ended).
    """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        profile TEXT NOT NULL,
        channel TEXT NOT NULL,
        report TEXT NOT NULL,
        kind TEXT NOT NULL,
        first_day TEXT,
        last_day TEXT,
        file TEXT,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        sent_at TEXT NOT NULL,
        reminded_for TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX alerts_channel ON alerts (profile, channel)
    """,
    # Older releases could take a data row of a sheet without a recognisable header for its
    # header and record its cells as column names: forget every column list recorded before
    # this version (statuses and counts stay; held files are verified again on their next
    # run, since the verification cache version changed too).
    """
    UPDATE verifications SET columns = '[]'
    """,
    # Content checks: what the rows hold without holding them. The rows' fingerprint (a hash),
    # the date column's name and its days (counts per day, no cell), and which release of the
    # content checks computed them (NULL: recorded before them; sync verifies such copies again).
    """
    ALTER TABLE verifications ADD COLUMN fingerprint TEXT;
    ALTER TABLE verifications ADD COLUMN date_column TEXT;
    ALTER TABLE verifications ADD COLUMN dates TEXT;
    ALTER TABLE verifications ADD COLUMN content_version INTEGER
    """,
    # Exports: what each export wrote and which source files (by sha256) it read, so a
    # retention policy can tell which local copies the study already holds. ``role`` is
    # 'rows' (its rows are in the export), 'empty' (counted as covered, no rows) or
    # 'superseded' (another delivery of the same run day was exported instead).
    """
    CREATE TABLE exports (
        id INTEGER PRIMARY KEY,
        profile TEXT NOT NULL,
        at TEXT NOT NULL,
        out TEXT NOT NULL,
        format TEXT NOT NULL,
        reports TEXT NOT NULL,
        since TEXT,
        until TEXT,
        pseudonymized INTEGER NOT NULL,
        pseudonymized_columns TEXT NOT NULL,
        key_id TEXT,
        rows INTEGER NOT NULL,
        files INTEGER NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX exports_profile ON exports (profile, at);
    CREATE TABLE export_sources (
        export_id INTEGER NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
        sha256 TEXT NOT NULL,
        name TEXT NOT NULL,
        report TEXT NOT NULL,
        run_day TEXT NOT NULL,
        role TEXT NOT NULL,
        rows INTEGER,
        PRIMARY KEY (export_id, sha256, name)
    );
    CREATE INDEX export_sources_sha ON export_sources (sha256)
    """,
    # Local retention (docs/RETENTION.md): a held copy the policy deletes keeps its record.
    # ``purge_started``: the purge decided to delete it (set before the file is touched);
    # ``purged_at``: the file is gone. A copy with either is never missing, lost or fetched
    # again; a purge interrupted in between is finished (or undone) by the next one.
    """
    ALTER TABLE downloads ADD COLUMN purge_started TEXT;
    ALTER TABLE downloads ADD COLUMN purged_at TEXT
    """,
    # Rolling reports: one fixed server name that every delivery replaces. Each version a
    # listing saw is a row of its own, named as its local copy (``NAME (YYYY-MM-DD HHMM).ext``);
    # ``rolling_of`` holds the server's name (NULL: an ordinary file).
    """
    ALTER TABLE remote_files ADD COLUMN rolling_of TEXT;
    CREATE INDEX remote_files_rolling ON remote_files (profile, rolling_of)
    """,
    # Folders and local names (docs/DOMAIN.md, "What is a report, folders, local names"). Each file
    # carries the server folder it was listed in, the server's exact name and the name its
    # local copies get (NULL: assigned at the next listing; a file already downloaded keeps
    # the name it was written under). ``name`` stays the file's identity: the server's name,
    # or ``folder/name`` when the profile watches several folders. Entries of a watched folder
    # that are not reports (subfolders, links, files that are no workbook) are kept apart in
    # ``remote_others``; files of the last kind recorded as deliveries by older releases are
    # forgotten (they were never reports, and their absence must not read as lost).
    """
    ALTER TABLE remote_files ADD COLUMN folder TEXT NOT NULL DEFAULT '';
    ALTER TABLE remote_files ADD COLUMN server_name TEXT;
    ALTER TABLE remote_files ADD COLUMN local_name TEXT;
    CREATE INDEX remote_files_folder ON remote_files (profile, folder);
    CREATE TABLE remote_others (
        profile TEXT NOT NULL,
        folder TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (profile, folder, name)
    );
    DELETE FROM remote_files WHERE lower(name) NOT LIKE '%.xlsx' AND lower(name) NOT LIKE '%.xlsm'
        AND lower(name) NOT LIKE '%.xls';
    DELETE FROM downloads WHERE lower(name) NOT LIKE '%.xlsx' AND lower(name) NOT LIKE '%.xlsm'
        AND lower(name) NOT LIKE '%.xls';
    DELETE FROM partials WHERE lower(name) NOT LIKE '%.xlsx' AND lower(name) NOT LIKE '%.xlsm'
        AND lower(name) NOT LIKE '%.xls'
    """,
    # Alerts: when a told connection alert was first found clear (it ends only once it has
    # stayed clear for a whole day; docs/ALERTS.md).
    """
    ALTER TABLE alerts ADD COLUMN clear_since TEXT
    """,
    # Local retention: a purged copy whose file had other names (hard links: a backup's
    # snapshot, a ``cp -l``) lost only its own name, and its bytes stayed on disk under the
    # others. ``purge_links``: how many other names it had when the purge deleted its own
    # (0 or NULL: its data went with it); ``purge_inode``: its inode, to find them by.
    """
    ALTER TABLE downloads ADD COLUMN purge_links INTEGER;
    ALTER TABLE downloads ADD COLUMN purge_inode INTEGER
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class LedgerError(Exception):
    """The ledger cannot be opened or written; ``str()`` says what to do.

    A failed write also has its parts: ``failure`` (what failed: the file and the cause) and
    ``advice`` (what to do), for callers that say what it means for their own step."""

    def __init__(self, message: str, *, failure: str | None = None, advice: str | None = None) -> None:
        super().__init__(message)
        self.failure = failure or message
        self.advice = advice


#: What a ledger call may raise: a ``LedgerError`` (written for people), an sqlite3 error of a
#: damaged or locked file, or a ``ValueError`` for a stored value that cannot be read back.
LEDGER_ERRORS: tuple[type[Exception], ...] = (LedgerError, sqlite3.Error, ValueError)


#: How long a temporary ledger left by a run that made one (``.NAME.new-PID-RANDOM``) must
#: have been untouched before a later run may remove it (besides its process being gone and
#: nothing holding it; :func:`_remove_leftovers`).
LEFTOVER_AGE = 300.0

_EMPTY_ADVICE = ("restore it from a backup, or move it aside and run again to start a new "
                 "ledger")


def _refuse_without_ledger(conn: sqlite3.Connection, path: str | Path) -> None:
    """Raise :class:`LedgerError` unless the opened file holds a ledger (a schema version).
    A new ledger is never opened here without one (:meth:`Ledger._create`), so a file without
    it is a ledger lost (truncated, overwritten) or another program's database, not a new one.
    An unreadable file raises ``sqlite3.DatabaseError``."""
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    row = (conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
           if "meta" in tables else None)
    if row is None:
        found = f"{len(tables)} table{'s' if len(tables) != 1 else ''} of another program" if tables \
            else "no table at all"
        raise LedgerError(
            f"the ledger {path} is an SQLite database that holds no ledger (no schema version, "
            f"{found}): its history is not in it; {_EMPTY_ADVICE}")


_NOT_A_FILE_ADVICE = ("a ledger is an SQLite file; move it aside and run again to start a new ledger, "
                      "or set `ledger` in the profile to the ledger's file")

_KINDS = ((statmod.S_ISFIFO, "a FIFO (named pipe)"), (statmod.S_ISCHR, "a character device"),
          (statmod.S_ISBLK, "a block device"), (statmod.S_ISDIR, "a directory"),
          (statmod.S_ISSOCK, "a socket"))


def _refuse_unless_regular(path: Path, shown: str | Path) -> os.stat_result:
    """``path``'s ``stat``, or :class:`LedgerError` unless ``path`` (which exists as a name) is
    a regular file or a link to one, saying what it is instead. Decided by ``stat`` alone: the
    file is not opened (opening a FIFO to read it blocks until something writes to it)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if not path.is_symlink():
            raise  # gone meanwhile: the caller's "cannot open"
        raise LedgerError(
            f"the ledger {shown} is a symbolic link to {os.readlink(path)}, which does not exist "
            "(a folder not mounted, a file moved?): make the link point at the ledger, or "
            "remove the link and run again to start a new ledger, or set `ledger` in the "
            "profile to the ledger's file") from None
    if statmod.S_ISREG(info.st_mode):
        return info
    what = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
    if path.is_symlink():
        what += f" ({os.path.realpath(path)})"
    raise LedgerError(f"the ledger {shown} is {what}, not a regular file: {_NOT_A_FILE_ADVICE}")


#: The temporary name of a ledger being made (:meth:`Ledger._create`), and SQLite's files
#: beside it, after the ``.NAME.new-`` that starts it: the process that made it (group 1),
#: the random part, and what SQLite adds. One pattern for every ledger (a pattern made for
#: each ledger's name was compiled again for each: a few ms of every new profile's start).
_LEFTOVER_TAIL = re.compile(r"([0-9]+)-[0-9a-f]{8}(-wal|-shm|-journal)?")


def _apply_migrations(conn: sqlite3.Connection, version: int) -> None:
    """The schema steps after ``version``, in the caller's transaction."""
    for number in range(version, SCHEMA_VERSION):
        if version:  # (a new ledger's steps are not news)
            log.info("ledger: migrating schema %d -> %d", number, number + 1)
        # executescript would COMMIT our transaction; run statement by statement.
        for statement in MIGRATIONS[number].split(";"):
            if statement.strip():
                conn.execute(statement)


#: This release's schema, made once per process in memory (:func:`_copy_schema`).
_schema: list[sqlite3.Connection] = []
_schema_lock = threading.Lock()


def _copy_schema(conn: sqlite3.Connection) -> None:
    """Give the empty database ``conn`` this release's schema and its version: a copy (SQLite's
    backup) of one made in memory by every schema step once per process. Running the steps
    for each new ledger (sixty statements, each table change parsing the schema again) cost
    two thirds of a new ledger's CPU, and ``sync --all-profiles`` makes one per profile."""
    with _schema_lock:
        if not _schema:
            made = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            made.execute("BEGIN")
            made.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            _apply_migrations(made, 0)
            made.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
            made.execute("COMMIT")
            _schema.append(made)
        _schema[0].backup(conn)


def _process_lives(pid: int) -> bool:
    """Whether ``pid`` is a live process on this machine (one of another user counts)."""
    if pid <= 0:
        return True  # no process of ours is named so: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False  # no process here has such a number
    except OSError:
        return True  # EPERM: it lives, under another user
    return True


def _remove_leftovers(path: Path) -> None:
    """Remove the temporary ledgers (with their ``-wal``/``-shm``/``-journal``) that runs making
    the ledger ``path`` left beside it when killed midway, and only those provably abandoned:
    the process named in the name is not alive on this machine (a live one may be a reused
    number: its file waits for the next run), nothing has changed them for ``LEFTOVER_AGE``
    (a maker in another PID namespace or on another host takes its lock just after creating
    the file), they are plain files (a link is never followed, a FIFO never opened), and no
    process holds the lock every maker holds on its file while it writes it (tried without
    waiting, and held while removing). Anything that fails is left for a later run."""
    folder = path.parent
    prefix = f".{path.name}.new-"
    groups: dict[str, list[str]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if not name.startswith(prefix):
                    continue
                match = _LEFTOVER_TAIL.fullmatch(name, len(prefix))
                if match:  # grouped under the temporary file's own name
                    stem = name[:len(name) - len(match.group(2))] if match.group(2) else name
                    groups.setdefault(stem, []).append(name)
    except OSError:
        return
    now = time.time()
    for stem, members in sorted(groups.items()):
        pid = int(stem.rsplit("-", 2)[1])
        try:
            if _process_lives(pid):
                continue
            stats = {name: os.lstat(folder / name) for name in members}
            if not all(statmod.S_ISREG(info.st_mode) for info in stats.values()):
                continue
            if now - max(info.st_mtime for info in stats.values()) < LEFTOVER_AGE:
                continue
            _remove_unheld(folder, stem, members, stats.get(stem))
        except OSError as exc:
            log.debug("ledger: %s left in place (%s)", stem, exc)


def _remove_unheld(folder: Path, stem: str, members: list[str], info: os.stat_result | None) -> None:
    """Remove ``members`` unless a process holds ``stem``'s lock (see :func:`_remove_leftovers`)."""
    fd = None
    if info is not None:
        fd = os.open(folder / stem, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if fd is not None and info is not None:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino) or not statmod.S_ISREG(now.st_mode):
                return  # replaced since it was looked at
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a process is writing it now
        for name in sorted(members, key=lambda name: name == stem):  # the locked one last
            try:
                os.unlink(folder / name)
            except FileNotFoundError:
                pass
        log.info("ledger: removed %s, left by a run (process %s) stopped while it made the "
                 "ledger", stem, stem.rsplit("-", 2)[1])
    finally:
        if fd is not None:
            os.close(fd)


def default_path(profile: str = "default") -> Path:
    """``<user data dir>/report-keeper/ledger-<profile>.sqlite3``, as a profile without
    ``ledger`` has it (:func:`tui.core.config.default_ledger_path`); an empty name: ``default``'s."""
    return default_ledger_path(profile or "default")


class ExportSource(TypedDict):
    """One file an export read: its rows were exported (``role`` "rows"), it stood for an
    empty or closed day ("empty"), a better copy of its day won ("superseded"), or its day was
    excluded and it was left out ("excluded")."""

    sha256: str
    name: str
    report: str
    run_day: str
    role: str
    rows: int | None


class ExportRecord(TypedDict):
    """One recorded export (:meth:`Ledger.exports`)."""

    id: int
    at: datetime
    out: str
    format: str
    reports: list[str]
    since: str | None
    until: str | None
    pseudonymized: bool
    pseudonymized_columns: list[str]
    key_id: str | None
    rows: int
    files: int
    status: str
    sources: list[ExportSource]


#: Bump when the validator's behaviour changes, so cached results are not reused.
VERIFY_CACHE_VERSION = "3"  # 2: workbooks read in limited workers; columns by position without a header
#                             3: row fingerprints and date coverage; wrong-day; the scheduled run day


def verification_context(report: ReportConfig | None, delivered_at: datetime | None,
                         run_day: date | None = None, *, judge_day: bool = True,
                         memory_limit: int | None = None, time_limit: float | None = None) -> str:
    """What a verification result depends on besides the bytes: the cache key's other half.

    ``report`` is a ``ReportConfig`` (None: the defaults). The covered loan day, and whether
    it is closed, belong to the delivery's run: ``run_day`` when the caller knows it from the
    report's history, else ``report.placed_run_day(delivered_at)`` (none for a delivery in no
    run: no covered day). ``memory_limit`` (bytes) and
    ``time_limit`` (seconds) are the reader's limits the file is read under: they are part of
    the key only when they differ from the defaults, so a verdict reached under raised limits
    is never taken for one under the defaults (and back), while the keys of everyone who
    never changes them stay what they were.
    """
    covered: date | None = None
    closed = False
    if delivered_at is not None and report is not None:
        run = run_day or report.placed_run_day(delivered_at)
        covered = report.covered_day(run) if run is not None else None
        closed = covered is not None and report.is_closed(covered)
    key: dict[str, object] = {
        "v": VERIFY_CACHE_VERSION,
        "report": report.name if report is not None else None,
        "expected_columns": tuple(" ".join(c.split()).casefold()
                                  for c in (report.expected_columns if report is not None else ())),
        "min_rows": report.min_rows if report is not None else None,
        "anonymize_days": report.anonymize_days if report is not None else None,
        "covered": covered.isoformat() if covered else None,
        "closed": closed,
        "date_column": report.date_column if report is not None else None,
        "judge_day": judge_day,
    }
    if memory_limit is not None and memory_limit != isolation.DEFAULT_MEMORY_BYTES:
        key["memory_limit"] = int(memory_limit)
    if time_limit is not None and float(time_limit) != isolation.DEFAULT_TIME_LIMIT:
        key["time_limit"] = float(time_limit)
    return _context_digest(tuple(sorted(key.items())))


@functools.lru_cache(maxsize=4096)
def _context_digest(items: tuple[tuple[str, object], ...]) -> str:
    """The digest of a verification context's key (the same for every file of a report and
    run: a sync asks once per file). Tuples are written as JSON lists, as the lists were."""
    return hashlib.sha256(json.dumps(dict(items), sort_keys=True).encode()).hexdigest()[:32]


def _names_json(names: Sequence[str]) -> str:
    """A verification's column names as stored (a JSON list); none (every file that is no
    workbook) without the JSON encoder."""
    return json.dumps(list(names), ensure_ascii=False) if names else "[]"


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("the ledger stores aware datetimes only")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _at(value: str) -> datetime:
    """A time of a NOT NULL column."""
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class Download:
    """One completed download as recorded."""

    name: str
    size: int
    mtime: datetime | None
    sha256: str
    local_path: str
    downloaded_at: datetime
    missing_since: datetime | None = None  # noticed missing on disk (latest copy of a name)
    purge_started: datetime | None = None  # a purge decided to delete it (not finished yet)
    purged_at: datetime | None = None  # deleted by the local retention policy
    #: Other names (hard links) its file still had when the purge deleted this one: its data
    #: is still on disk under them (0: none, or none known).
    purge_links: int = 0
    purge_inode: int | None = None  # the file's inode then (with purge_links), to find them by

    @property
    def purged(self) -> bool:
        """Deleted, or being deleted, by the retention policy: never held again."""
        return self.purged_at is not None or self.purge_started is not None


class Partial(TypedDict):
    """A transfer that stopped with a part file (``Ledger.partials``)."""

    size: int
    mtime: datetime | None
    part_path: str
    bytes_done: int
    updated_at: datetime


class DownloadRow(TypedDict):
    """One row of :meth:`Ledger.record_downloads` (the arguments of ``record_download``)."""

    name: str
    size: int
    sha256: str
    local_path: str | Path
    mtime: NotRequired[datetime | None]
    when: NotRequired[datetime | None]


class AlertRow(TypedDict):
    """What one alert channel was told about one condition (``tui.core.alerts``); ``id`` None:
    not stored yet. Days and times are ISO 8601 text."""

    id: int | None
    report: str
    kind: str
    first_day: str | None
    last_day: str | None
    file: str | None
    severity: str
    state: str  # open | closed
    sent_at: str
    reminded_for: str | None
    clear_since: NotRequired[str | None]  # connection: first found clear (not yet told ended)
    #: When the row was last written or marked by a run that had its channel configured
    #: (read by :meth:`Ledger.alert_memory`; a save sets it).
    updated_at: NotRequired[str | None]


@dataclass(frozen=True)
class Refusal:
    name: str
    reason: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class ListingChange:
    """What one recorded listing changed: names new, gone, back and changed on the server."""

    new: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    back: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    #: ``(name, reason)``: listed files the ledger refused itself (a rolling version's name).
    refused: tuple[tuple[str, str], ...] = ()
    local_names: Mapping[str, str] = field(default_factory=dict)  # ident -> local name
    new_others: tuple[str, ...] = ()  # entries that are not reports, first seen now


@dataclass(frozen=True)
class LocalCheck:
    """What :meth:`Ledger.reconcile_local` found: held copies missing on disk, and changes."""

    missing: tuple[tuple[str, str], ...] = ()  # (name, recorded path): every copy missing now
    newly_missing: tuple[str, ...] = ()  # of those, noticed by this check
    back: tuple[str, ...] = ()  # found again where they belong
    relocated: tuple[tuple[str, str], ...] = ()  # (name, new path): found in the current local_dir


def _storable(name: str) -> str:
    """A name SQLite can store: undecodable bytes (surrogates) as ``\\xNN`` escapes."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


ReportOf = Callable[[RemoteFile], "tuple[str, datetime]"]

#: How long a write waits for another process's lock on the ledger before it fails (seconds).
BUSY_TIMEOUT = 30.0

#: How often :meth:`Ledger.batched` commits (seconds): records reach the disk at least this
#: often, and a killed process loses at most this much of them.
BATCH_SECONDS = 0.5

#: A write that has waited this long for another process's lock on the file says so (the log,
#: :meth:`Ledger.watch_waits`): shorter waits (another run's commit) are not news (seconds).
WAIT_NOTICE = 1.0


#: Told when writes start or stop waiting for another process's lock: ``(waiting, holder)``,
#: ``holder`` the other process as :func:`lock_holder` names it ("" when it cannot be told).
WaitWatcher = Callable[[bool, str], object]


class _Waits:
    """The writes of one connection waiting for another process's lock, and who is told."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a watcher may stop watching from its own call
        self.count = 0
        self.watchers: list[WaitWatcher] = []

    def changed(self, path: Path | None, delta: int) -> None:
        # The watchers are told with the lock held: two threads starting and ending waits at
        # once must not tell "waiting" and "done" in the wrong order (the app's header would
        # then say it waits when nothing does). A watcher only posts a message.
        with self._lock:
            before, self.count = self.count, self.count + delta
            if (before == 0) == (self.count == 0):
                return
            self._tell(path, self.count > 0)

    def _tell(self, path: Path | None, waiting: bool) -> None:
        holder = (lock_holder(path) or "") if waiting else ""
        if waiting:
            log.warning("ledger %s: another process%s holds its write lock; waiting for it (at most "
                        "%g s a write)", path, f", {holder}," if holder else "", BUSY_TIMEOUT)
        else:
            log.info("ledger %s: no write waits for another process's lock any more", path)
        for watcher in list(self.watchers):
            try:
                watcher(waiting, holder)
            except Exception:  # a broken watcher must not fail the write
                log.exception("ledger: a watcher of lock waits failed")


#: The byte of a WAL database's ``-shm`` file whose POSIX write lock is its write lock (SQLite's
#: unix VFS: the shared-memory locks start at byte 120, the writer's lock first).
_WAL_WRITE_LOCK_BYTE = 120


def lock_holder(path: Path | str | None) -> str | None:
    """Which other process holds the write lock of the ledger at ``path``, in words: ``process
    PID (its command line, shortened)``; None when none does or it cannot be told (no
    ``/proc/locks``: not Linux). Reads ``/proc``; never opens the ledger's files (closing any
    descriptor of a file drops every POSIX lock this process holds on it, SQLite's too)."""
    if path is None or str(path) == ":memory:":
        return None
    try:
        info = os.stat(f"{path}-shm")
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    file_id = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in lines:
        # "7: POSIX  ADVISORY  WRITE 4242 fe:00:2770463 120 120" (a waiting lock: "7: -> POSIX ...")
        words = line.split()
        if (len(words) >= 8 and words[1] == "POSIX" and words[3] == "WRITE" and words[5] == file_id
                and words[6] == str(_WAL_WRITE_LOCK_BYTE) and words[4] != str(os.getpid())):
            return f"process {words[4]}{_command_of(words[4])}"
    return None


def _command_of(pid: str) -> str:
    """`` (report-keeper sync --json)``: a process's command line, its program's folders left
    out, escaped and cut to 80 characters; "" when it cannot be read."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            raw = f.read(4096)
    except (OSError, ValueError):
        return ""
    words = [w.decode("utf-8", "surrogateescape") for w in raw.split(b"\0") if w]
    if not words:
        return ""
    # "python3 /usr/bin/report-keeper sync": an interpreter and its script by their names only
    words = [os.path.basename(w) if i < 2 and "/" in w else w for i, w in enumerate(words)]
    text = escape_name(" ".join(words))
    return f" ({text[:79]}…)" if len(text) > 80 else f" ({text})"


@dataclass
class _Batch:
    stop: threading.Event
    failed: LedgerError | None = None
    users: int = 0  # open batched() blocks
    suspended: int = 0  # open unbatched() blocks: writes commit one by one meanwhile
    #: A write of the batch waited the whole ``BUSY_TIMEOUT`` for another program's lock in
    #: vain: until one gets it again, the batch's writes try once and fail at once while the
    #: lock is held (a sync goes on downloading instead of standing still for the whole wait
    #: at every record; what they could not record is written again at its end, with the
    #: whole wait, by ``SyncService.settle``).
    locked_out: bool = False
    #: Run once each before the batch's transaction commits (:meth:`Ledger.before_commit`).
    before_commit: dict[str, Callable[[], object]] = field(default_factory=dict)
    #: Run once each when the batch's next commit is over (:meth:`Ledger.after_commit`).
    after_commit: list[Callable[[], object]] = field(default_factory=list)


class Ledger:
    """One SQLite ledger file. Thread-safe (one connection behind a lock)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None, profile: str) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self.profile = profile
        #: The open batch (see :meth:`batched`); shared with the views of :meth:`for_profile`.
        self._batch: list[_Batch | None] = [None]
        #: Writes waiting for another process's lock (see :meth:`watch_waits`); shared likewise.
        self._waits = _Waits()

    def for_profile(self, profile: str) -> Ledger:
        """A view of this ledger for another profile: the same connection, lock and batch (a
        process syncing several profiles that share one ledger file writes through one
        connection, so they never wait on each other's transactions). Closing the view closes
        the connection too: close only one of them."""
        view = Ledger(self._conn, self.path, profile)
        view._lock = self._lock
        view._batch = self._batch
        view._waits = self._waits
        return view

    def watch_waits(self, watcher: WaitWatcher) -> Callable[[], None]:
        """Have ``watcher(True, holder)`` called once a write has waited ``WAIT_NOTICE`` for
        another process's lock on the file (it goes on waiting, up to ``BUSY_TIMEOUT``; ``holder``:
        :func:`lock_holder`, or ""), and ``watcher(False, "")`` once no write waits any more.
        Called from the waiting thread (which may hold the ledger's lock): it must not wait
        itself. Returns the call that stops it."""
        with self._waits._lock:
            self._waits.watchers.append(watcher)

        def stop() -> None:
            with self._waits._lock:
                if watcher in self._waits.watchers:
                    self._waits.watchers.remove(watcher)
        return stop

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path | None = None, profile: str = "default") -> Ledger:
        """Open (creating and migrating as needed) the ledger at ``path``.

        ``path=None`` uses :func:`default_path` for ``profile``; ``":memory:"`` is allowed
        for throwaway use.
        """
        if path is None:
            path = default_path(profile)
        memory = str(path) == ":memory:"
        p = None if memory else Path(path).expanduser()
        if p is not None:
            try:
                p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise LedgerError(
                    f"cannot create the ledger folder {p.parent}: {exc.strerror or exc}; "
                    "check its permissions or pass another location"
                ) from exc
            try:
                if not os.path.lexists(p):
                    cls._create(p, profile)  # a file with its schema in place
                elif _refuse_unless_regular(p, path).st_size == 0:
                    raise LedgerError(
                        f"the ledger {path} is empty (0 bytes): its history is not in it; "
                        f"{_EMPTY_ADVICE}")
            except sqlite3.DatabaseError as exc:
                raise LedgerError(f"cannot create the ledger {path}: {exc}; check the folder's "
                                  "permissions and free disk space") from exc
            except OSError as exc:
                raise LedgerError(f"cannot open the ledger {path}: {exc.strerror or exc}; check "
                                  "the file and its folder permissions") from exc
        conn: sqlite3.Connection | None = None
        try:
            # An existing file only: the file is made above, and a ledger found missing now is
            # an error rather than an empty ledger made in its place.
            conn = sqlite3.connect(
                ":memory:" if memory or p is None else f"{p.absolute().as_uri()}?mode=rw",
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
                timeout=BUSY_TIMEOUT,
                uri=not memory,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if not memory:
                _refuse_without_ledger(conn, path)  # read before anything is written to it
            if not memory:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("ledger %s: journal mode is %s, not WAL", p, mode)
            conn.execute("PRAGMA synchronous = FULL")
            # Overwritten and deleted content is zeroed, not left in free pages.
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA foreign_keys = ON")
        except LedgerError:
            if conn is not None:
                conn.close()
            raise
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            raise LedgerError(
                f"cannot open the ledger {path}: {exc}; check the file and its folder permissions"
            ) from exc
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise LedgerError(
                f"the ledger {path} is not a readable SQLite database ({exc}); move it aside "
                "and run again to start a new one"
            ) from exc
        if p is not None:
            try:
                p.chmod(0o600)
            except OSError:
                pass
            _remove_leftovers(p)
        ledger = cls(conn, p, profile)
        try:
            ledger._migrate()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerError(
                f"the ledger {path} is not a readable SQLite database ({exc}); move it aside "
                "and run again to start a new one"
            ) from exc
        except LedgerError:
            conn.close()
            raise
        return ledger

    @classmethod
    def _create(cls, path: Path, profile: str) -> None:
        """Make a new ledger at ``path``, which does not exist: written and committed under a
        temporary name in the same folder, then linked into place. So a file at the ledger's
        name always holds a schema, and one that holds none was not made by a run that stopped
        midway (its temporary file is removed on the way out, or left under its own name by
        a killed process, for a later run's :func:`_remove_leftovers`). A ledger another process
        put in place meanwhile is kept. The temporary file is locked (``flock``) until it is
        gone: a file locked so is never taken for a leftover."""
        tmp = path.with_name(f".{path.name}.new-{os.getpid()}-{os.urandom(4).hex()}")
        fd = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without locks: the age bound alone protects it
                pass
            conn = sqlite3.connect(str(tmp), isolation_level=None, check_same_thread=False)
            try:
                # No flush of SQLite's own on the way: the whole file is fsync'ed below, before
                # it gets the ledger's name (nothing reads it under its temporary one).
                conn.execute("PRAGMA synchronous = OFF")
                _copy_schema(conn)
                conn.execute("PRAGMA journal_mode = WAL")  # kept in the file's header
                conn.execute("PRAGMA secure_delete = ON")
                cls(conn, tmp, profile)._migrate()  # a read: the copy is this release's schema
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)",
                             (_ts(clock.now()),))
            finally:
                conn.close()  # the last connection: its WAL is checkpointed into the file
            os.fsync(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                if not os.path.lexists(path):
                    os.replace(tmp, path)
            fsync_dir(path.parent)
            log.info("ledger: a new ledger, schema %d", SCHEMA_VERSION)
        finally:
            try:
                for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
                    try:
                        leftover.unlink()
                    except FileNotFoundError:
                        pass
            finally:
                if fd >= 0:
                    os.close(fd)  # only now: SQLite's connection is closed, and its lock goes with it

    def close(self) -> None:
        with self._lock:
            batch = self._batch[0]
            if batch is not None:  # what the batch holds is committed first
                self._batch[0] = None
                batch.stop.set()
                try:
                    self._commit_batch(batch)
                except LedgerError:
                    log.exception("ledger: the last batch could not be committed at close")
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def batched(self, every: float = BATCH_SECONDS) -> Iterator[None]:
        """Group the writes made meanwhile (by any thread) into few transactions.

        Each write still either happens whole or not at all (a savepoint inside the open
        transaction, or a single statement), and reads on this ledger see it at once; a timer thread commits the open
        transaction every ``every`` seconds, and the rest is committed when the block ends
        (normally, by an exception or by cancellation). What a process killed in between loses
        is at most the last ``every`` seconds of records, never a record of something that did
        not happen: callers record a download only once its file is complete, fsync'ed and in
        place, so a lost record means a file on disk that the next sync finds in place and
        records then. Blocks opened meanwhile (nested, or by other views of the connection)
        join the batch; the last one to end commits it. Raises :class:`LedgerError` at the end
        when a commit failed (the records since the last good commit are not in the ledger).
        """
        with self._lock:
            batch = self._batch[0]
            first = batch is None
            if batch is None:
                batch = self._batch[0] = _Batch(threading.Event())
            batch.users += 1
        ticker = None
        if first:
            ticker = threading.Thread(target=self._tick, args=(batch, every), daemon=True,
                                      name="ledger-commit")
            ticker.start()
        try:
            yield
        finally:
            with self._lock:
                batch.users -= 1
                last = batch.users == 0
                if last:
                    batch.stop.set()
                    if self._batch[0] is batch:
                        self._batch[0] = None
                        self._commit_batch(batch)
            if last and ticker is not None:
                ticker.join()
            if batch.failed is not None:
                raise batch.failed

    @contextmanager
    def unbatched(self) -> Iterator[None]:
        """Within an open batch, commit what it holds and make every write meanwhile its own
        transaction again: for steps that must be on disk before the next one happens (deleting
        a file after recording that it goes)."""
        with self._lock:
            batch = self._batch[0]
            if batch is not None:
                self._commit_batch(batch)
                batch.suspended += 1
        try:
            yield
        finally:
            if batch is not None:
                with self._lock:
                    batch.suspended -= 1

    def before_commit(self, key: str, step: Callable[[], object], *, wait: bool = True) -> bool:
        """Have ``step`` done before any record written from now on is committed: inside a
        batch, once (per ``key``) just before the batch's next commit; otherwise now. For what
        records rely on being on the disk first (a folder's new entries: one fsync per folder
        and commit instead of one per file). ``step`` runs with the ledger's lock held.

        ``wait=False`` (asked on an event loop): only if that is quick, a batch open and no
        other thread holding the ledger (a commit runs its steps and fsyncs with it held);
        False, and nothing done, otherwise (ask again where waiting holds up nothing)."""
        if not wait:
            if not self._lock.acquire(blocking=False):
                return False
            try:
                batch = self._batch[0]
                if batch is None or batch.suspended:
                    return False  # the step would run now: an fsync
                batch.before_commit.setdefault(key, step)
                return True
            finally:
                self._lock.release()
        with self._lock:
            batch = self._batch[0]
            if batch is not None and not batch.suspended:
                batch.before_commit.setdefault(key, step)
                return True
        step()
        return True

    def after_commit(self, step: Callable[[], object]) -> None:
        """Have ``step`` done once what was written until now is committed: inside a batch
        holding records not committed yet, just after its next commit (also when that commit
        fails: the step then runs all the same, the records being lost); otherwise now. For
        what must last until a record is on the disk (a lock that tells other processes the
        record is on its way). ``step`` runs with the ledger's lock held; it must not raise."""
        with self._lock:
            batch = self._batch[0]
            if batch is not None and self._conn.in_transaction:
                batch.after_commit.append(step)
                return
        step()

    def write_at_once(self, call: Callable[[], _T]) -> tuple[bool, _T | None]:
        """Run ``call`` (writes of this ledger) in the calling thread if it cannot wait: no
        other thread holds the ledger (its lock is free now) and the open batch's transaction
        is begun (so no write has to wait for another process's lock on the file); ``(True,
        its result)``. Otherwise ``(False, None)`` and ``call`` is not run: run it where a wait
        holds up nothing (a writer thread). What ``call`` raises is raised. Lets an event loop
        make the many quick writes of a batch itself instead of handing each to a thread."""
        if not self._lock.acquire(blocking=False):
            return False, None
        try:
            batch = self._batch[0]
            if (batch is None or batch.suspended or batch.failed is not None or batch.locked_out
                    or not self._conn.in_transaction):
                return False, None
            return True, call()
        finally:
            self._lock.release()

    def read_at_once(self, call: Callable[[], _T]) -> tuple[bool, _T | None]:
        """Run ``call`` (reads of this ledger) in the calling thread if no other thread holds
        the ledger now (a commit, a write waiting for another process's lock, the app's
        snapshot); ``(True, its result)``, else ``(False, None)`` without running it. Reads
        never wait for other processes (WAL), so an event loop may ask this itself."""
        if not self._lock.acquire(blocking=False):
            return False, None
        try:
            return True, call()
        finally:
            self._lock.release()

    @property
    def batch_open(self) -> bool:
        """A :meth:`batched` block is open (on this connection): what it wrote may not be on
        the disk yet."""
        return self._batch[0] is not None

    def _tick(self, batch: _Batch, every: float) -> None:
        while not batch.stop.wait(every):
            with self._lock:
                if self._batch[0] is not batch:
                    return
                try:
                    self._commit_batch(batch)
                except LedgerError as exc:
                    log.error("ledger: a batch of records could not be committed: %s", exc)
                    batch.failed = exc

    def _commit_batch(self, batch: _Batch | None) -> None:
        """Commit the open batch transaction, if any (the lock is held), after the batch's
        :meth:`before_commit` steps."""
        conn = self._conn
        steps = [] if batch is None else list(batch.before_commit.values())
        after = [] if batch is None else batch.after_commit
        if batch is not None:
            batch.before_commit.clear()
            batch.after_commit = []
        try:
            for step in steps:  # first what the records rely on
                step()
            if not conn.in_transaction:
                return
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise self._write_error(
                exc, "the records of the last moments were not kept (the files themselves are on "
                     "disk and the next sync records them)") from exc
        finally:
            for step in after:  # the commit is over, whichever way it went
                try:
                    step()
                except Exception:  # one step's failure must not skip the others
                    log.exception("ledger: a step after a commit failed")

    @contextmanager
    def _write(self, *, one_statement: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any exception. Inside :meth:`batched`, one
        savepoint of the batch's open transaction instead; ``one_statement`` (the block runs
        a single statement, which SQLite makes whole or undoes by itself, or statements each
        of which may stand without the others): no savepoint."""
        with self._lock:
            batch = self._begin_write()
            if batch is not None:
                with self._batched_write(batch, savepoint=not one_statement) as conn:
                    yield conn
                return
            conn = self._conn
            try:
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                else:
                    conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                # Disk full, read-only file system: nothing was written.
                raise self._write_error(exc, "nothing of this step was recorded", again=True) from exc

    def _begin_write(self) -> _Batch | None:
        """With the lock held: open this write's transaction, the open batch's (returned; open
        already, or begun now) or its own (None).

        Another process holding the file's write lock (a scheduled sync's batch, a purge) is
        waited for up to ``BUSY_TIMEOUT``, but not with this ledger's lock held: between tries the
        lock is let go, so this process's other threads (the app building its snapshot, a sync
        asking whether a file is held) read meanwhile instead of waiting behind this write. A
        batch that is ``locked_out`` tries once. A wait longer than ``WAIT_NOTICE`` is said (the
        log, and :meth:`watch_waits`)."""
        conn = self._conn
        started = time.monotonic()
        pause = 0.001
        noticed = False
        try:
            while True:
                batch = self._batch[0]
                if batch is not None and batch.suspended:
                    batch = None  # each write its own transaction meanwhile
                if batch is not None:
                    if batch.failed is not None:
                        raise batch.failed
                    if conn.in_transaction:
                        return batch
                error = self._try_begin()
                if error is None:
                    if batch is not None:
                        batch.locked_out = False
                    return batch
                waited = time.monotonic() - started
                if not _locked(error) or waited >= BUSY_TIMEOUT or (batch is not None and batch.locked_out):
                    if batch is not None and _locked(error):
                        batch.locked_out = True
                    raise self._write_error(error, "nothing of this step was recorded", again=True) from error
                self._lock.release()
                try:
                    if not noticed and waited >= WAIT_NOTICE:
                        noticed = True
                        self._waits.changed(self.path, +1)
                    time.sleep(min(pause, max(0.0, BUSY_TIMEOUT - waited)))
                finally:
                    self._lock.acquire()
                pause = min(pause * 2, 0.05)
        finally:
            if noticed:
                self._waits.changed(self.path, -1)

    def _try_begin(self) -> sqlite3.OperationalError | None:
        """``BEGIN IMMEDIATE`` without SQLite's own wait (the lock held); the error, if any."""
        conn = self._conn
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return exc
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        return None

    @contextmanager
    def _batched_write(self, batch: _Batch, *, savepoint: bool = True) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            if savepoint:
                conn.execute("SAVEPOINT one_write")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    if savepoint:
                        conn.execute("ROLLBACK TO one_write")
                        conn.execute("RELEASE one_write")
                else:  # SQLite rolled the whole batch back (a full disk, an I/O error)
                    batch.failed = LedgerError(
                        f"could not write the ledger {self.path or ':memory:'}; the records of "
                        "the last moments were not kept (the files themselves are on disk and "
                        "the next sync records them). Check free disk space and the file's "
                        "permissions")
                raise
            else:
                if savepoint:
                    conn.execute("RELEASE one_write")
        except sqlite3.OperationalError as exc:
            if _locked(exc):
                batch.locked_out = True
            raise self._write_error(exc, "nothing of this step was recorded", again=True) from exc

    def _write_error(self, exc: BaseException, lost: str, *, again: bool = False) -> LedgerError:
        """The :class:`LedgerError` of a write or commit that failed: what failed, what was not
        kept (``lost``) and what to do, by the cause."""
        failure = f"could not write the ledger {self.path or ':memory:'} ({exc})"
        advice = _write_advice(exc)
        return LedgerError(f"{failure}; {lost}. {advice}{', then run again' if again else ''}",
                           failure=failure, advice=advice)

    def _migrate(self) -> None:
        # A ledger already at this release's schema needs no write to be opened: a read (which
        # WAL lets through while another process holds the write lock, a sync stopped mid-batch
        # for instance) decides it, so the commands that only read are not held by that lock.
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:  # no meta table yet: a new ledger
            row = None
        if row is not None and int(row[0]) == SCHEMA_VERSION:
            return
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"the ledger {self.path} has schema version {version}, newer than this "
                    f"release understands ({SCHEMA_VERSION}); upgrade report-keeper"
                )
            if version == 0:
                log.info("ledger: a new ledger, schema %d", SCHEMA_VERSION)
            _apply_migrations(conn, version)
            if version != SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
                if version == 0:
                    conn.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)",
                        (_ts(clock.now()),),
                    )

    def schema_version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` passes."""
        with self._lock:
            return bool(self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def _p(self, profile: str | None) -> str:
        return profile if profile is not None else self.profile

    # ------------------------------------------------------------------ writes
    def record_listing(
        self,
        profile: str | None,
        report_of: ReportOf,
        listing: Iterable[RemoteFile],
        when: datetime | None = None,
        refused: Iterable[tuple[str, str]] = (),
        *,
        rolling: Iterable[str] = (),
        tz: tzinfo = UTC,
        folder: str = "",
        scoped: bool = False,
        others: Iterable[tuple[str, EntryKind]] = (),
        first: bool = True,
    ) -> ListingChange:
        """Record one *successful* listing of a remote folder.

        ``report_of(remote_file) -> (report base name, delivered_at)``. Files absent from
        this listing get ``gone_at`` (once); files back again lose it. A file whose size or
        mtime differs from its latest download gets ``changed_at`` (kept forever).
        ``refused``: ``(name, reason)`` pairs of names refused as unsafe.

        ``rolling``: server names of rolling reports (one fixed name each delivery replaces).
        Each of their copies (size, mtime) is a version, recorded as a row of its own under
        :func:`tui.core.names.version_name` (in ``tz``, made unique), delivered at its mtime;
        a version absent from the listing is gone like any file (lost if never downloaded).
        An ordinary history of such a name is turned into versions first (its downloads
        follow their copies; files on disk keep their names). A server file whose name is a
        version's row name is refused rather than mixed up with it. ``new``, ``gone`` and
        ``back`` name versions by their row names.

        ``folder`` is the server folder listed (normalized). ``scoped``: the profile watches
        several folders, so only this folder's files can be gone; otherwise every file of the
        profile belongs to the one folder. Files are keyed by ``RemoteFile.ident``. Each new
        file gets its local name here (:func:`tui.core.names.distinct_local_name`, unique in
        its folder up to letter case and Unicode normalization); ``others`` are the folder's
        entries that are not reports (``remote_others``).

        When a profile goes from one folder to several (or back), the files already known keep
        their history: their identities become ``folder/name`` (or the name again) here, the
        files of no folder yet (recorded before folders were) going to the ``first`` folder.
        """
        profile = self._p(profile)
        when_s = _ts(when or clock.now())
        files = list(listing)
        refused = list(refused)
        rolling = set(rolling)
        scope_sql, scope_args = (("AND folder = ?", [folder]) if scoped
                                 else ("AND instr(name, '/') = 0", []))
        with self._write() as conn:
            self._adopt(conn, profile, folder, scoped=scoped, first=first)
            if rolling:
                _to_versions(conn, profile, rolling & {f.name for f in files}, tz, when_s)
            existing = {
                row[0]: row[1:]
                for row in conn.execute(
                    "SELECT name, size, mtime, gone_at, changed_at, rolling_of, local_name,"
                    f" server_name, folder FROM remote_files WHERE profile = ? {scope_sql}",
                    (profile, *scope_args),
                )
            }
            version_of = {(old[4], old[1], old[0]): name for name, old in existing.items()
                          if old[4] is not None}  # (server name, mtime, size) -> row name
            taken = set(existing)
            last_dl = {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    "SELECT d.name, d.size, d.mtime FROM downloads d JOIN ("
                    " SELECT name, MAX(id) AS id FROM downloads WHERE profile = ? GROUP BY name"
                    ") m ON d.id = m.id",
                    (profile,),
                )
            }
            # Local names: those assigned stay; a file downloaded before names were assigned
            # keeps the name it was written under (a rolling version: its row's name); every
            # other file gets a distinct one. The names taken are folded only when a name is
            # to be given (most listings give none).
            local_names: dict[str, str] = {}
            legacy: list[str] = []
            for ident, old in existing.items():
                if old[5] is not None:
                    local_names[ident] = old[5]
                elif old[4] is not None:
                    local_names[ident] = ident
                elif ident in last_dl:
                    local_names[ident] = old[6] or ident.rpartition("/")[2]
                else:
                    legacy.append(ident)
            folded: list[set[str]] = []

            def names_taken() -> set[str]:
                if not folded:
                    keys = {collision_key(n) for n in local_names.values()}
                    # A copy kept under another name (a changed server copy's
                    # ``NAME (changed ...)``) is in the folder too: a new file never gets its
                    # name, or it would be placed beside it as a changed copy of its own.
                    keys.update(collision_key(Path(path).name) for name, path in conn.execute(
                        "SELECT DISTINCT name, local_path FROM downloads WHERE profile = ?", (profile,))
                        if name in existing)
                    folded.append(keys)
                return folded[0]

            assigned: list[tuple[str, str, str]] = []
            for ident in sorted(legacy):
                local_names[ident] = distinct_local_name(existing[ident][6] or ident.rpartition("/")[2],
                                                         names_taken())
                names_taken().add(collision_key(local_names[ident]))
            for ident, old in existing.items():
                if old[5] is None and old[4] is None:
                    assigned.append((local_names[ident], profile, ident))
            inserts, updates, changed_now = [], [], []
            moved: list[tuple[str, str, str, str]] = []  # folder or server name to record
            versions: list[tuple[str, str, str, str | None, int, str | None, str | None, str | None, str]] = []
            new, back, changed = [], [], []
            seen: set[str] = set()
            present: set[str] = set()  # row names this listing shows
            clashes: list[tuple[str, str]] = []
            # Rolling files first, so an ordinary file can never take a version's name; the
            # earlier delivery keeps the plain local name when two new ones collide.
            for f in sorted(files, key=lambda f: (f.name not in rolling, f.mtime, f.name)):
                ident = f.ident
                if ident in seen:
                    continue
                seen.add(ident)
                mtime_s = _ts(f.mtime)
                if f.name in rolling and not scoped:
                    row_name = version_of.get((f.name, mtime_s, f.size))
                    if row_name is None:
                        # the version's name is its copy's local name too: unique among them
                        row_name = _free_name(version_name(f.name, f.mtime, tz), taken, names_taken())
                        taken.add(row_name)
                        names_taken().add(collision_key(row_name))
                        versions.append((profile, row_name, report_of(f)[0], mtime_s, f.size, mtime_s,
                                         when_s, when_s, f.name))
                        new.append(row_name)
                    else:
                        if existing[row_name][2] is not None:
                            back.append(row_name)
                        updates.append((f.size, mtime_s, when_s, profile, row_name))
                    present.add(row_name)
                    continue
                old = existing.get(ident)
                owner = old[4] if old is not None else next(
                    (v[8] for v in versions if v[1] == ident), None)
                if owner is not None:
                    clashes.append((ident, f"the name is the one kept here for a version of the "
                                           f"rolling report '{owner}'; rename the file on the server"))
                    continue
                present.add(ident)
                if (f.name, mtime_s, f.size) in version_of:
                    # kept as a rolling report's version before (``rolling = false`` since):
                    # that version is still on the server, not gone
                    present.add(version_of[(f.name, mtime_s, f.size)])
                if old is None:
                    report, delivered_at = report_of(f)
                    local = distinct_local_name(f.name, names_taken())
                    names_taken().add(collision_key(local))
                    local_names[ident] = local
                    inserts.append(
                        (profile, ident, report, _ts(delivered_at), f.size, mtime_s, when_s, when_s,
                         folder, f.name, local)
                    )
                    new.append(ident)
                    continue
                gone_at, changed_at, server_name, old_folder = old[2], old[3], old[6], old[7]
                if gone_at is not None:
                    back.append(ident)
                updates.append((f.size, mtime_s, when_s, profile, ident))
                if server_name != f.name or old_folder != folder:
                    moved.append((folder, f.name, profile, ident))
                dl = last_dl.get(ident)
                if dl is not None and (dl[0] != f.size or dl[1] != mtime_s) and changed_at is None:
                    changed_now.append((when_s, profile, ident))
                    changed.append(ident)
            conn.executemany(
                "UPDATE remote_files SET local_name = ? WHERE profile = ? AND name = ?", assigned
            )
            conn.executemany(
                "INSERT INTO remote_files (profile, name, report, delivered_at, size, mtime,"
                " first_seen, last_seen, folder, server_name, local_name)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
            conn.executemany(
                "INSERT INTO remote_files (profile, name, report, delivered_at, size, mtime,"
                " first_seen, last_seen, rolling_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                versions,
            )
            conn.executemany(
                "UPDATE remote_files SET size = ?, mtime = ?, last_seen = ?, gone_at = NULL"
                " WHERE profile = ? AND name = ?",
                updates,
            )
            conn.executemany(
                "UPDATE remote_files SET folder = ?, server_name = ? WHERE profile = ? AND name = ?",
                moved,
            )
            conn.executemany(
                "UPDATE remote_files SET changed_at = ? WHERE profile = ? AND name = ?", changed_now
            )
            gone = [n for n, old in existing.items() if n not in present and old[2] is None]
            conn.executemany(
                "UPDATE remote_files SET gone_at = ? WHERE profile = ? AND name = ?",
                [(when_s, profile, n) for n in gone],
            )
            conn.executemany(
                "INSERT INTO refused (profile, name, reason, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (profile, name) DO UPDATE SET"
                " reason = excluded.reason, last_seen = excluded.last_seen",
                [(profile, _storable(n), r, when_s, when_s) for n, r in [*refused, *clashes]],
            )
            known_others = {
                row[0]: row[1] for row in conn.execute(
                    "SELECT name, first_seen FROM remote_others WHERE profile = ? AND folder = ?",
                    (profile, folder),
                )
            }
            conn.execute("DELETE FROM remote_others WHERE profile = ? AND folder = ?", (profile, folder))
            other_rows = {_storable(n): str(k) for n, k in others}
            conn.executemany(
                "INSERT INTO remote_others (profile, folder, name, kind, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(profile, folder, n, k, known_others.get(n, when_s), when_s)
                 for n, k in other_rows.items()],
            )
            conn.execute(
                "INSERT INTO listings (profile, at, files, refused) VALUES (?, ?, ?, ?)",
                (profile, when_s, len(seen) - len(clashes), len(refused) + len(clashes)),
            )
        log.info(
            "ledger: listing of %d files recorded (%d new, %d gone, %d changed, %d refused)",
            len(seen) - len(clashes), len(new), len(gone), len(changed), len(refused) + len(clashes),
        )
        return ListingChange(tuple(new), tuple(gone), tuple(back), tuple(changed), tuple(clashes),
                             local_names={n: local_names[n] for n in seen if n in local_names},
                             new_others=tuple(n for n in other_rows if n not in known_others))

    @staticmethod
    def _adopt(conn: sqlite3.Connection, profile: str, folder: str, *, scoped: bool, first: bool) -> None:
        """Give the files of ``folder`` known under the other identity scheme the current one
        (see :meth:`record_listing`), in the same transaction."""
        if scoped:
            rows = conn.execute(
                "SELECT name FROM remote_files WHERE profile = ? AND instr(name, '/') = 0"
                " AND (folder = ? OR (folder = '' AND ?))",
                (profile, folder, int(first)),
            ).fetchall()
            renames = [(r[0], f"{folder}/{r[0]}") for r in rows]
        else:
            rows = conn.execute(
                "SELECT name, server_name FROM remote_files WHERE profile = ? AND folder = ?"
                " AND instr(name, '/') > 0",
                (profile, folder),
            ).fetchall()
            renames = [(r[0], r[1]) for r in rows if r[1] and r[0] == f"{folder}/{r[1]}"]
        if not renames:
            return
        known = {r[0] for r in conn.execute("SELECT name FROM remote_files WHERE profile = ?", (profile,))}
        moved = 0
        for old, new in renames:
            if new in known:
                continue  # both identities exist: leave both as they are
            for table in ("remote_files", "downloads", "partials"):
                conn.execute(f"UPDATE {table} SET name = ? WHERE profile = ? AND name = ?",
                             (new, profile, old))
            conn.execute("UPDATE remote_files SET folder = ? WHERE profile = ? AND name = ?",
                         (folder, profile, new))
            moved += 1
        log.info("ledger: %d files of %s keyed %s", moved, folder,
                 "by folder and name" if scoped else "by name")

    def others(self, profile: str | None = None) -> list[OtherEntry]:
        """The entries of the watched folders that are not reports, as last listed."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT folder, name, kind, first_seen FROM remote_others WHERE profile = ?"
                " ORDER BY folder, name",
                (self._p(profile),),
            ).fetchall()
        out = []
        for folder, name, kind, first_seen in rows:
            try:
                entry_kind = EntryKind(kind)
            except ValueError:  # a word of a newer release
                entry_kind = EntryKind.SPECIAL
            out.append(OtherEntry(folder, name, entry_kind, _dt(first_seen)))
        return out

    def record_partial(
        self,
        name: str,
        *,
        size: int,
        mtime: datetime | None,
        part_path: str | Path,
        bytes_done: int,
        when: datetime | None = None,
        profile: str | None = None,
    ) -> None:
        """A transfer stopped (or is running) with ``bytes_done`` in ``part_path``."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO partials (profile, name, size, mtime, part_path, bytes_done, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (profile, name) DO UPDATE SET"
                " size = excluded.size, mtime = excluded.mtime, part_path = excluded.part_path,"
                " bytes_done = excluded.bytes_done, updated_at = excluded.updated_at",
                (self._p(profile), name, size, _ts(mtime), str(part_path), bytes_done,
                 _ts(when or clock.now())),
            )

    def clear_partial(self, name: str, *, profile: str | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                "DELETE FROM partials WHERE profile = ? AND name = ?", (self._p(profile), name)
            )

    def record_download(
        self,
        name: str,
        *,
        size: int,
        sha256: str,
        local_path: str | Path,
        mtime: datetime | None = None,
        when: datetime | None = None,
        profile: str | None = None,
    ) -> bool:
        """A complete file is in place under ``local_path``; clears its partial record.

        ``mtime`` is the server's modification time of the copy that was downloaded (it is
        how a later change on the server is detected). Returns False when exactly this copy
        (name, size, mtime, sha256, path) was already recorded and is on disk: two processes
        that both saw it arrive record it once.
        """
        profile = self._p(profile)
        # No savepoint of its own in a batch (two statements fewer per file): each statement
        # is whole or undone by SQLite itself, and the partial record goes first, since the
        # part it described is the placed file by now. Refused after that, the file is in
        # place and known as neither partial nor downloaded: what a run killed before its
        # commit leaves, which the next sync records (``same``). Outside a batch the two are
        # one transaction, as ever.
        with self._write(one_statement=True) as conn:
            conn.execute("DELETE FROM partials WHERE profile = ? AND name = ?", (profile, name))
            # Inserted unless exactly this copy is recorded and on disk.
            inserted = conn.execute(
                "INSERT INTO downloads (profile, name, size, mtime, sha256, local_path, downloaded_at)"
                " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (SELECT 1 FROM downloads"
                " WHERE profile = ?1 AND name = ?2 AND size = ?3 AND mtime IS ?4 AND sha256 = ?5"
                " AND local_path = ?6 AND missing_since IS NULL)",
                (profile, name, size, _ts(mtime), sha256, str(local_path), _ts(when or clock.now())),
            ).rowcount
        return inserted > 0

    def durable_downloads(self, rows: Iterable[tuple[str, str, str]], profile: str | None = None) -> set[str]:
        """Which of these downloads (``(name, sha256, local_path)``) the ledger file holds: the
        records committed to the disk. Only outside an open batch, whose records this
        connection would see before they are committed."""
        profile = self._p(profile)
        with self._lock:
            if self._conn.in_transaction:
                raise RuntimeError("a batch of records is open: its records are not on the disk yet")
            return {
                name for name, sha256, path in rows
                if self._conn.execute(
                    "SELECT 1 FROM downloads WHERE profile = ? AND name = ? AND sha256 = ?"
                    " AND local_path = ? LIMIT 1", (profile, name, sha256, str(path))).fetchone()
            }

    def copies_in(self, folder: str | Path, profile: str | None = None) -> int:
        """How many copies (distinct paths of downloads the retention policy has not purged)
        the ledger holds inside ``folder`` (an absolute path; a stored path is compared as
        ``os.path.abspath`` makes it). Counted by SQLite: only paths not already in that
        form (relative, or with ``.``, ``..`` or ``//`` in them) are looked at one by one."""
        base = os.path.abspath(folder)
        prefix = base.rstrip("/") + "/"
        with self._lock:
            plain, odd = self._conn.execute(
                f"SELECT COUNT(DISTINCT CASE WHEN NOT ({_IRREGULAR_PATH}) AND (local_path = ?2"
                "  OR substr(local_path, 1, ?3) = ?4) THEN local_path END),"
                f" json_group_array(DISTINCT CASE WHEN {_IRREGULAR_PATH} THEN local_path END)"
                " FROM downloads WHERE profile = ?1 AND purge_started IS NULL AND purged_at IS NULL",
                (self._p(profile), base, len(prefix), prefix),
            ).fetchone()
        irregular = {p for p in json.loads(odd) if isinstance(p, str)}
        return int(plain) + sum(1 for p in irregular if _path_inside(p, base))

    def holds(self, name: str, size: int, mtime: datetime | None, profile: str | None = None) -> bool:
        """The latest download of ``name`` is this server copy (size, mtime) and is on disk."""
        with self._lock:
            row = self._conn.execute(
                "SELECT size, mtime, missing_since, purge_started, purged_at FROM downloads"
                " WHERE profile = ? AND name = ? ORDER BY id DESC LIMIT 1",
                (self._p(profile), name),
            ).fetchone()
        return (row is not None and row[0] == size and row[1] == _ts(mtime) and row[2] is None
                and row[3] is None and row[4] is None)

    def reconcile_local(self, local_dir: str | Path | None = None, *,
                        when: datetime | None = None, profile: str | None = None) -> LocalCheck:
        """Check that every held copy (each file's latest download) is on disk with its size.

        A copy that is not is marked missing (``local_state`` "missing-locally") until it is
        back; one found under the same file name in ``local_dir`` (the folder was moved and
        the profile updated) has its path updated instead. Writes only when something changed.
        A copy the retention policy purged (or is purging) is gone on purpose: never missing.
        """
        profile = self._p(profile)
        with self._lock:
            rows = self._conn.execute(
                "SELECT d.id, d.name, d.size, d.local_path, d.missing_since FROM downloads d JOIN ("
                " SELECT name, MAX(id) AS id FROM downloads WHERE profile = ? GROUP BY name"
                ") m ON d.id = m.id WHERE d.purge_started IS NULL AND d.purged_at IS NULL",
                (profile,),
            ).fetchall()

        def present(path: str, size: int) -> bool:
            try:
                info = os.stat(path)
            except (OSError, ValueError):
                return False
            return statmod.S_ISREG(info.st_mode) and info.st_size == size

        base = Path(local_dir).expanduser() if local_dir is not None else None
        missing: list[tuple[str, str]] = []
        newly: list[str] = []
        back: list[str] = []
        relocated: list[tuple[str, str]] = []
        updates: list[tuple[str, tuple[object, ...]]] = []
        when_s = _ts(when or clock.now())
        for id_, name, size, path, missing_since in rows:
            if present(path, size):
                if missing_since is not None:
                    back.append(name)
                    updates.append(("UPDATE downloads SET missing_since = NULL WHERE id = ?", (id_,)))
                continue
            moved = base / Path(path).name if base is not None else None
            if moved is not None and str(moved) != path and present(str(moved), size):
                relocated.append((name, str(moved)))
                updates.append(("UPDATE downloads SET local_path = ?, missing_since = NULL WHERE id = ?",
                                (str(moved), id_)))
                continue
            missing.append((name, path))
            if missing_since is None:
                newly.append(name)
                updates.append(("UPDATE downloads SET missing_since = ? WHERE id = ?", (when_s, id_)))
        if updates:
            with self._write() as conn:
                for sql, args in updates:
                    conn.execute(sql, args)
        if newly or back or relocated:
            log.info("ledger: %d held copies missing on disk (%d newly), %d back, %d relocated",
                     len(missing), len(newly), len(back), len(relocated))
        return LocalCheck(tuple(missing), tuple(newly), tuple(back), tuple(relocated))

    def record_downloads(self, rows: Sequence[DownloadRow], profile: str | None = None) -> None:
        """Many :meth:`record_download` calls in one transaction (keys as its arguments)."""
        profile = self._p(profile)
        now_s = _ts(clock.now())
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO downloads (profile, name, size, mtime, sha256, local_path, downloaded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (profile, r["name"], r["size"], _ts(r.get("mtime")), r["sha256"],
                     str(r["local_path"]), _ts(r.get("when")) or now_s)
                    for r in rows
                ],
            )
            conn.executemany(
                "DELETE FROM partials WHERE profile = ? AND name = ?",
                [(profile, r["name"]) for r in rows],
            )

    def record_verification(
        self, result: VerifyResult, *, sha256: str | None = None, context: str = "",
        when: datetime | None = None,
    ) -> None:
        """Store a validator result; ``sha256``+``context`` make it reusable by the cache.

        ``context`` should capture whatever else the result depends on (the report's
        expected columns, min_rows, whether its day is closed); ``""`` when nothing.
        """
        dates = result.dates
        with self._write(one_statement=True) as conn:
            conn.execute(
                "INSERT INTO verifications (sha256, context, path, name, report, delivered_at,"
                " status, rows, header_row, columns, message, sheet, missing_columns, verified_at,"
                " fingerprint, date_column, dates, content_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sha256, context, result.path, result.name, result.report,
                    _ts(result.delivered_at), result.status, result.rows, result.header_row,
                    _names_json(result.columns), result.message,
                    result.sheet, _names_json(result.missing_columns),
                    _ts(when or clock.now()),
                    result.fingerprint, dates.column if dates is not None else None,
                    json.dumps(dates.stored()) if dates is not None else None,
                    CONTENT_VERSION,
                ),
            )

    # ------------------------------------------------------------------ reads
    def cached_verification(
        self, sha256: str, context: str = "", *, path: str | None = None,
        name: str | None = None,
    ) -> VerifyResult | None:
        """The latest result for this content (and context), or None. Results recorded
        before the current content checks (no fingerprint or dates yet) are not reused.

        ``path``/``name`` replace the stored ones so the result describes the file asked
        about (the same bytes may sit under another name).
        """
        with self._lock:
            row = self._conn.execute(
                "SELECT path, name, report, delivered_at, status, rows, header_row, columns,"
                " message, sheet, missing_columns, fingerprint, date_column, dates FROM verifications"
                " WHERE sha256 = ? AND context = ? AND content_version >= ?"
                " ORDER BY id DESC LIMIT 1",
                (sha256, context, CONTENT_VERSION),
            ).fetchone()
        result = _verify_from_row(row) if row is not None else None
        if result is not None and (path is not None or name is not None):
            result = replace(result, path=path or result.path, name=name or result.name)
        return result

    def downloads(self, name: str | None = None, profile: str | None = None) -> list[Download]:
        """Completed downloads, oldest first (of one remote name when given); purged copies too
        (``Download.purged``)."""
        sql = ("SELECT name, size, mtime, sha256, local_path, downloaded_at, missing_since,"
               " purge_started, purged_at, purge_links, purge_inode FROM downloads WHERE profile = ?")
        args: list[str] = [self._p(profile)]
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id", args).fetchall()
        return [Download(r[0], r[1], _dt(r[2]), r[3], r[4], _at(r[5]), _dt(r[6]), _dt(r[7]), _dt(r[8]),
                         r[9] or 0, r[10] if r[9] else None)
                for r in rows]

    # ------------------------------------------------------------------ local retention
    def mark_purging(self, copies: Iterable[tuple[str, str]], *, when: datetime | None = None,
                     profile: str | None = None) -> None:
        """The retention policy is about to delete these copies (``(name, local_path)``): from
        now on they are never missing, lost or fetched again, even if the process dies before
        :meth:`mark_purged` (the next purge finishes the job, or undoes it)."""
        self._purge_update("purge_started = ?", (_ts(when or clock.now()),), copies, profile,
                           "purge_started IS NULL AND purged_at IS NULL")

    def mark_purged(self, copies: Iterable[tuple[str, str]], *, when: datetime | None = None,
                    profile: str | None = None,
                    links: Mapping[tuple[str, str], tuple[int, int]] | None = None) -> None:
        """These copies' names are gone from the folder: purged for good (their records stay).
        ``links``: the copies whose file had other names (hard links) when its own was deleted,
        each with how many and its inode: their data is still on disk under those names."""
        at = _ts(when or clock.now())
        who = self._p(profile)
        found = links or {}
        rows = []
        for name, path in copies:
            others, inode = found.get((name, str(path)), (0, None))
            rows.append((at, at, others, inode if others else None, who, name, str(path)))
        if not rows:
            return
        with self._write() as conn:
            # Every record of that file (a copy fetched again at the same path has several).
            conn.executemany(
                "UPDATE downloads SET purged_at = ?, purge_started = COALESCE(purge_started, ?),"
                " purge_links = ?, purge_inode = ? WHERE profile = ? AND name = ? AND local_path = ?"
                " AND purged_at IS NULL",
                rows,
            )

    def clear_purging(self, copies: Iterable[tuple[str, str]], *, profile: str | None = None) -> None:
        """A started purge of these copies did not happen (the file could not be deleted, or the
        policy no longer allows it): they are held copies again."""
        self._purge_update("purge_started = NULL", (), copies, profile, "purged_at IS NULL")

    def _purge_update(self, assign: str, values: tuple[str | None, ...], copies: Iterable[tuple[str, str]],
                      profile: str | None, condition: str) -> None:
        who = self._p(profile)
        rows = [(*values, who, name, str(path)) for name, path in copies]
        if not rows:
            return
        with self._write() as conn:
            # Every record of that file (a copy fetched again at the same path has several).
            conn.executemany(
                f"UPDATE downloads SET {assign} WHERE profile = ? AND name = ? AND local_path = ?"
                f" AND {condition}",
                rows,
            )

    def held_sha256s(self) -> set[str]:
        """Contents some profile of this ledger still holds a copy of (not purged)."""
        with self._lock:
            return {
                r[0] for r in self._conn.execute(
                    "SELECT DISTINCT sha256 FROM downloads WHERE purge_started IS NULL AND purged_at IS NULL"
                )
            }

    def export_roles(self, profile: str | None = None) -> dict[str, set[str]]:
        """``{sha256: roles}``: how the profile's exports used each content (``rows``, ``empty``,
        ``superseded``, ``excluded``)."""
        out: dict[str, set[str]] = {}
        with self._lock:
            for sha, role in self._conn.execute(
                "SELECT DISTINCT s.sha256, s.role FROM export_sources s JOIN exports e ON e.id = s.export_id"
                " WHERE e.profile = ?",
                (self._p(profile),),
            ):
                out.setdefault(sha, set()).add(role)
        return out

    def partials(self, profile: str | None = None) -> dict[str, Partial]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, size, mtime, part_path, bytes_done, updated_at FROM partials"
                " WHERE profile = ?",
                (self._p(profile),),
            ).fetchall()
        return {
            r[0]: Partial(size=r[1], mtime=_dt(r[2]), part_path=r[3], bytes_done=r[4],
                          updated_at=_at(r[5]))
            for r in rows
        }

    def refused(self, profile: str | None = None, *, current: bool = False) -> list[Refusal]:
        """Names refused as unsafe, ever (``current=True``: in the latest listing only)."""
        profile = self._p(profile)
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, reason, first_seen, last_seen FROM refused WHERE profile = ?"
                " ORDER BY first_seen, name",
                (profile,),
            ).fetchall()
        out = [Refusal(r[0], r[1], _at(r[2]), _at(r[3])) for r in rows]
        if current:
            latest = self.last_listing(profile)
            out = [r for r in out if r.last_seen == latest]
        return out

    def last_listing(self, profile: str | None = None) -> datetime | None:
        """When the latest successful listing was recorded."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MAX(at) FROM listings WHERE profile = ?", (self._p(profile),)
            ).fetchone()
        return _dt(row[0]) if row else None

    def local_states(self, profile: str | None = None) -> dict[str, LocalState]:
        """The :class:`LocalState` of every known remote file, by name."""
        profile = self._p(profile)
        with self._lock:
            remote = self._conn.execute(
                "SELECT name, size, mtime FROM remote_files WHERE profile = ?", (profile,)
            ).fetchall()
            latest: dict[str, tuple[int | None, str | None, bool, bool]] = {
                d[0]: (d[1], d[2], d[3] is not None, d[4] is not None or d[5] is not None)
                for d in self._conn.execute(
                    "SELECT name, size, mtime, missing_since, purge_started, purged_at FROM downloads"
                    " WHERE profile = ? ORDER BY id", (profile,)
                )
            }
            partial = {
                r[0] for r in self._conn.execute("SELECT name FROM partials WHERE profile = ?", (profile,))
            }
        out = {}
        for name, size, mtime in remote:
            dsize, dmtime, missing, purged = latest.get(name, (None, None, False, False))
            out[name] = _state(size, mtime, dsize, dmtime, name in partial, missing, purged)
        return out

    def local_state(self, name: str, profile: str | None = None) -> LocalState:
        """Local state of one remote file: new, downloaded, changed, partial, missing-locally
        or purged.

        ``changed``: the server's current copy differs (size or mtime) from the latest
        download; ``partial``: a transfer stopped with a part file and nothing complete;
        ``purged``: the retention policy deleted the copy (it wins over everything: a purged
        file is never fetched again).
        """
        profile = self._p(profile)
        with self._lock:
            r = self._conn.execute(
                "SELECT size, mtime FROM remote_files WHERE profile = ? AND name = ?",
                (profile, name),
            ).fetchone()
            d = self._conn.execute(
                "SELECT size, mtime, missing_since, purge_started, purged_at FROM downloads"
                " WHERE profile = ? AND name = ? ORDER BY id DESC LIMIT 1",
                (profile, name),
            ).fetchone()
            p = self._conn.execute(
                "SELECT 1 FROM partials WHERE profile = ? AND name = ?", (profile, name)
            ).fetchone()
        purged = bool(d and (d[3] is not None or d[4] is not None))
        if r is None:
            if d is not None and purged:
                return LocalState.PURGED
            if d is not None:
                return LocalState.MISSING_LOCALLY if d[2] is not None else LocalState.DOWNLOADED
            return LocalState.PARTIAL if p else LocalState.NEW
        return _state(r[0], r[1], d[0] if d else None, d[1] if d else None, p is not None,
                      bool(d and d[2] is not None), purged)

    def deliveries(self, report: str | None = None, profile: str | None = None, *,
                   names: Collection[str] | None = None) -> list[Delivery]:
        """Every remote file ever seen (also long gone from the server), oldest first.

        Each carries its latest download and the latest verification of that download's
        content. ``extra`` holds ``local_state``, ``lost`` (gone, never downloaded),
        ``changed_at``, ``downloads`` (count), ``missing_locally``/``missing_since`` (the
        latest copy is not on disk, see :meth:`reconcile_local`), ``header_row``/``columns``,
        ``purged``/``purged_at`` (the retention policy deleted the latest copy),
        ``purge_links``/``purge_inode`` (the other names its file still had then, its inode) and
        ``export_pending`` (the latest copy is held and no export has included it or passed
        it over yet: what ``keep_until_exported`` waits for). ``names``: only these files (only
        their rows are read).
        """
        profile = self._p(profile)
        only = json.dumps(sorted(names)) if names is not None else None
        of_names = " AND name IN (SELECT value FROM json_each(?))" if only is not None else ""
        sql = (
            "SELECT name, report, delivered_at, size, mtime, first_seen, last_seen, gone_at,"
            " changed_at, rolling_of, folder, server_name, local_name FROM remote_files WHERE profile = ?"
        )
        args: list[str] = [profile]
        if report is not None:
            sql += " AND report = ?"
            args.append(report)
        picked: tuple[str, ...] = (only,) if only is not None else ()
        sql += of_names + " ORDER BY delivered_at, name"
        with self._lock:
            rows = self._conn.execute(sql, [*args, *picked]).fetchall()
            # Latest download per name and how many: one ordered pass (no correlated joins).
            latest: dict[str, tuple[int, str | None, str, str, str, str | None, str | None, str | None,
                                    int | None, int | None]] = {}
            count: dict[str, int] = {}
            for d in self._conn.execute(
                "SELECT name, size, mtime, sha256, local_path, downloaded_at, missing_since,"
                " purge_started, purged_at, purge_links, purge_inode FROM downloads WHERE profile = ?"
                + of_names + " ORDER BY id",
                (profile, *picked),
            ):
                latest[d[0]] = d[1:]
                count[d[0]] = count.get(d[0], 0) + 1
            # Contents an export of this profile has seen (included, or passed over).
            exported = {
                r[0] for r in self._conn.execute(
                    "SELECT DISTINCT s.sha256 FROM export_sources s JOIN exports e ON e.id = s.export_id"
                    " WHERE e.profile = ?",
                    (profile,),
                )
            }
            partial = {
                r[0] for r in self._conn.execute("SELECT name FROM partials WHERE profile = ?", (profile,))
            }
            # status, rows, message, header_row, columns, fingerprint, date_column, dates,
            # content_version
            verifs: dict[str, tuple[str, int | None, str, int | None, str, str | None, str | None,
                                    str | None, int | None]] = {}
            for v in self._conn.execute(
                "SELECT sha256, status, rows, message, header_row, columns, fingerprint,"
                " date_column, dates, content_version FROM verifications"
                " WHERE sha256 IS NOT NULL" + (
                    " AND sha256 IN (SELECT sha256 FROM downloads WHERE profile = ?" + of_names + ")"
                    if only is not None else "") + " ORDER BY id",
                (profile, *picked) if only is not None else (),
            ):
                verifs[v[0]] = v[1:]
        out = []
        for r in rows:
            (name, rep, delivered_at, size, mtime, first_seen, last_seen, gone_at, changed_at,
             rolling_of, folder, server_name, local_name) = r
            (dsize, dmtime, sha, local_path, downloaded_at, missing_since, purge_started,
             purged_at, purge_links, purge_inode) = latest.get(name, (None,) * 10)
            v = verifs.get(sha) if sha else None
            purged = purge_started is not None or purged_at is not None
            missing = missing_since is not None and not purged
            state = _state(size, mtime, dsize, dmtime, name in partial, missing, purged)
            out.append(
                Delivery(
                    name=name,
                    report=rep,
                    delivered_at=_at(delivered_at),
                    size=size,
                    mtime=_dt(mtime),
                    first_seen=_at(first_seen),
                    last_seen=_at(last_seen),
                    on_server=gone_at is None,
                    gone_at=_dt(gone_at),
                    downloaded_at=_dt(downloaded_at),
                    local_path=local_path,
                    sha256=sha,
                    verification=_status(v[0]) if v else None,
                    rows=v[1] if v else None,
                    message=v[2] if v else "",
                    changed=changed_at is not None,
                    extra={
                        "local_state": state,
                        # Gone from the server with no copy here: never downloaded, or the
                        # copy is missing from the disk (a purged copy was deleted on purpose).
                        "lost": gone_at is not None and not purged and (downloaded_at is None or missing),
                        "missing_locally": missing,
                        "missing_since": _dt(missing_since),
                        "changed_at": _dt(changed_at),
                        "rolling_of": rolling_of,
                        "downloads": count.get(name, 0),
                        "header_row": v[3] if v else None,
                        "columns": tuple(json.loads(v[4])) if v else (),
                        # verified by a release that computes fingerprints and dates
                        "content_checked": bool(v and v[8] is not None and v[8] >= CONTENT_VERSION),
                        "purged": purged,
                        "purged_at": _dt(purged_at or purge_started),
                        # other names (hard links) its file still had when purged, its inode
                        "purge_links": (purge_links or 0) if purged_at is not None else 0,
                        "purge_inode": purge_inode if purged_at is not None and purge_links else None,
                        "export_pending": bool(sha and not purged and not missing and sha not in exported),
                    },
                    fingerprint=v[5] if v else None,
                    coverage=_coverage(v[6], v[7]) if v else None,
                    folder=folder,
                    server_name=server_name or name,
                    local_name=local_name or "",
                )
            )
        return out

    def listed_copies(self, profile: str | None = None) -> list[tuple[str, datetime, int]]:
        """``(server identity, mtime, size)`` of every file listed with an mtime: its name, or
        for a rolling report's version the name it has on the server (what
        ``deliveries()`` gives as ``extra["rolling_of"] or name``, ``mtime``, ``size``)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT CASE WHEN rolling_of IS NULL OR rolling_of = '' THEN name ELSE rolling_of END,"
                " mtime, size FROM remote_files WHERE profile = ? AND mtime IS NOT NULL ORDER BY delivered_at, name",
                (self._p(profile),)).fetchall()
        return [(ident, _at(mtime), size) for ident, mtime, size in rows]

    def to_verify(self, profile: str | None = None) -> set[str]:
        """The files whose held copy (latest download, on disk, not purged) may need reading:
        its content has no verification recorded, or only one by a release before the content
        checks, or an unreadable one, or one of a status this release does not know. A few
        names in the usual ledger, found by SQLite (no row of the others is built); a superset
        of what a caller then picks from their :meth:`deliveries`."""
        known = json.dumps([v.value for v in VerifyStatus if v != VerifyStatus.UNREADABLE])
        with self._lock:
            return {r[0] for r in self._conn.execute(
                "SELECT d.name FROM downloads d JOIN ("
                " SELECT name, MAX(id) AS id FROM downloads WHERE profile = ? GROUP BY name"
                ") m ON d.id = m.id"
                " WHERE d.missing_since IS NULL AND d.purge_started IS NULL AND d.purged_at IS NULL"
                " AND d.sha256 != '' AND d.local_path != '' AND NOT EXISTS ("
                "  SELECT 1 FROM verifications v WHERE v.id = ("
                "   SELECT MAX(id) FROM verifications WHERE sha256 = d.sha256)"
                "  AND v.content_version >= ? AND v.status IN (SELECT value FROM json_each(?)))",
                (self._p(profile), CONTENT_VERSION, known))}

    def rolling_history(self, profile: str | None = None) -> tuple[set[str], dict[str, set[datetime]]]:
        """What decides whether a server name is a rolling report: the names already kept as
        versions, and for every other file the modification times of the copies seen (each
        download's and the one last listed)."""
        profile = self._p(profile)
        with self._lock:
            rolling = {r[0] for r in self._conn.execute(
                "SELECT DISTINCT rolling_of FROM remote_files WHERE profile = ? AND rolling_of IS NOT NULL",
                (profile,))}
            copies: dict[str, set[datetime]] = {}
            for name, mtime in self._conn.execute(
                    "SELECT name, mtime FROM remote_files WHERE profile = ? AND rolling_of IS NULL"
                    " AND mtime IS NOT NULL", (profile,)):
                copies[name] = {_at(mtime)}
            for name, mtime in self._conn.execute(
                    "SELECT name, mtime FROM downloads WHERE profile = ? AND mtime IS NOT NULL", (profile,)):
                if name in copies:
                    copies[name].add(_at(mtime))
        return rolling, copies

    def lost(self, profile: str | None = None) -> list[Delivery]:
        """Files gone from the server with no copy here: never downloaded (forever), or
        downloaded but missing from the disk (until the copy is back)."""
        return [d for d in self.deliveries(profile=profile) if d.extra["lost"]]

    # ------------------------------------------------------------------ alerts
    def alert_rows(self, channel: str, profile: str | None = None) -> list[AlertRow]:
        """What ``channel`` has been told (see ``tui.core.alerts``), oldest first."""
        return self.alert_memory(profile, channel=channel).get(channel, [])

    def save_alert_rows(self, channel: str, rows: Sequence[AlertRow],
                        delete_ids: Iterable[int] = (), profile: str | None = None) -> None:
        """After a successful send: upsert ``rows`` (by ``id``; no id: new) and drop ``delete_ids``."""
        profile = self._p(profile)
        now_s = _ts(clock.now())
        cols = ("report", "kind", "first_day", "last_day", "file", "severity", "state", "sent_at",
                "reminded_for", "clear_since")
        with self._write() as conn:
            for row in rows:
                values = [row["report"], row["kind"], row["first_day"], row["last_day"], row["file"],
                          row["severity"], row["state"], row["sent_at"], row["reminded_for"],
                          row.get("clear_since")]
                if row["id"] is None:
                    conn.execute(
                        f"INSERT INTO alerts (profile, channel, {', '.join(cols)}, updated_at)"
                        f" VALUES (?, ?, {', '.join('?' * len(cols))}, ?)",
                        [profile, channel, *values, now_s],
                    )
                else:
                    conn.execute(
                        f"UPDATE alerts SET {', '.join(c + ' = ?' for c in cols)}, updated_at = ?"
                        " WHERE id = ? AND profile = ? AND channel = ?",
                        [*values, now_s, row["id"], profile, channel],
                    )
            conn.executemany(
                "DELETE FROM alerts WHERE id = ? AND profile = ? AND channel = ?",
                [(i, profile, channel) for i in delete_ids],
            )

    def alert_memory(self, profile: str | None = None, *, channel: str | None = None) -> dict[str, list[AlertRow]]:
        """What every channel (or only ``channel``) has been told, each channel's rows oldest
        first, with ``updated_at``: in one read."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT channel, id, report, kind, first_day, last_day, file, severity, state, sent_at,"
                " reminded_for, clear_since, updated_at FROM alerts WHERE profile = ?"
                + (" AND channel = ?" if channel is not None else "") + " ORDER BY id",
                (self._p(profile), *((channel,) if channel is not None else ())),
            ).fetchall()
        out: dict[str, list[AlertRow]] = {}
        for r in rows:
            out.setdefault(r[0], []).append(AlertRow(
                id=r[1], report=r[2], kind=r[3], first_day=r[4], last_day=r[5], file=r[6], severity=r[7],
                state=r[8], sent_at=r[9], reminded_for=r[10], clear_since=r[11], updated_at=r[12]))
        return out

    def mark_alert_channels(self, channels: Iterable[str], profile: str | None = None) -> None:
        """Set ``updated_at`` of every row of ``channels`` to now: a run had them configured."""
        profile = self._p(profile)
        now_s = _ts(clock.now())
        with self._write() as conn:
            conn.executemany("UPDATE alerts SET updated_at = ? WHERE profile = ? AND channel = ?",
                             [(now_s, profile, c) for c in channels])

    def forget_alert_channels(self, channels: Iterable[str], profile: str | None = None) -> None:
        """Drop every row of ``channels``."""
        profile = self._p(profile)
        with self._write() as conn:
            conn.executemany("DELETE FROM alerts WHERE profile = ? AND channel = ?",
                             [(profile, c) for c in channels])

    def reports(self, profile: str | None = None) -> list[str]:
        with self._lock:
            return [
                r[0]
                for r in self._conn.execute(
                    "SELECT DISTINCT report FROM remote_files WHERE profile = ? ORDER BY report",
                    (self._p(profile),),
                )
            ]

    # ------------------------------------------------------------------ exports
    def verifications_of(self, sha256s: Iterable[str]) -> dict[str, VerifyResult]:
        """The latest verification of each content (whatever its context), by sha256."""
        wanted = set(sha256s)
        out: dict[str, VerifyResult] = {}
        with self._lock:
            for row in self._conn.execute(
                "SELECT sha256, path, name, report, delivered_at, status, rows, header_row, columns,"
                " message, sheet, missing_columns, fingerprint, date_column, dates FROM verifications"
                " WHERE sha256 IS NOT NULL ORDER BY id"
            ):
                result = _verify_from_row(row[1:]) if row[0] in wanted else None
                if result is not None:
                    out[row[0]] = result
        return out

    def record_export(
        self, *, out: str, format: str, reports: Sequence[str], since: str | None,
        until: str | None, pseudonymized_columns: Sequence[str] | None, key_id: str | None,
        rows: int, files: int, status: str, sources: Iterable[ExportSource],
        when: datetime | None = None, profile: str | None = None,
    ) -> int:
        """Record one written export and its sources (roles ``rows``, ``empty``, ``superseded``,
        ``excluded``: :class:`ExportSource`); ``pseudonymized_columns`` None: the export was not
        pseudonymized. Returns the export's id."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO exports (profile, at, out, format, reports, since, until, pseudonymized,"
                " pseudonymized_columns, key_id, rows, files, status)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._p(profile), _ts(when or clock.now()), out, format,
                 json.dumps(list(reports), ensure_ascii=False), since, until,
                 int(pseudonymized_columns is not None),
                 json.dumps(list(pseudonymized_columns or ()), ensure_ascii=False), key_id,
                 rows, files, status),
            )
            export_id = int(cur.lastrowid or 0)
            conn.executemany(
                "INSERT OR IGNORE INTO export_sources (export_id, sha256, name, report, run_day,"
                " role, rows) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(export_id, s["sha256"], s["name"], s["report"], s["run_day"], s["role"], s["rows"])
                 for s in sources],
            )
        return export_id

    def export_key_ids(self, profile: str | None = None) -> set[str]:
        """The ids of the pseudonym keys the profile's recorded exports used."""
        with self._lock:
            return {r[0] for r in self._conn.execute(
                "SELECT DISTINCT key_id FROM exports WHERE profile = ? AND key_id IS NOT NULL",
                (self._p(profile),),
            )}

    def exports(self, profile: str | None = None) -> list[ExportRecord]:
        """Every recorded export of the profile, oldest first, each with its ``sources``."""
        with self._lock:
            found = self._conn.execute(
                "SELECT id, at, out, format, reports, since, until, pseudonymized,"
                " pseudonymized_columns, key_id, rows, files, status FROM exports"
                " WHERE profile = ? ORDER BY id",
                (self._p(profile),),
            ).fetchall()
            sources: dict[int, list[ExportSource]] = {}
            for r in self._conn.execute(
                "SELECT s.export_id, s.sha256, s.name, s.report, s.run_day, s.role, s.rows"
                " FROM export_sources s JOIN exports e ON e.id = s.export_id WHERE e.profile = ?"
                " ORDER BY s.export_id, s.run_day, s.name",
                (self._p(profile),),
            ):
                sources.setdefault(r[0], []).append(ExportSource(
                    sha256=r[1], name=r[2], report=r[3], run_day=r[4], role=r[5], rows=r[6],
                ))
        return [
            ExportRecord(
                id=r[0], at=_at(r[1]), out=r[2], format=r[3], reports=json.loads(r[4]),
                since=r[5], until=r[6], pseudonymized=bool(r[7]),
                pseudonymized_columns=json.loads(r[8]), key_id=r[9], rows=r[10], files=r[11],
                status=r[12], sources=sources.get(r[0], []),
            )
            for r in found
        ]

    def exported_sha256s(self, profile: str | None = None, roles: Sequence[str] = ("rows", "empty")) -> set[str]:
        """Contents some export of the profile has included (by default: their rows, or as an
        empty day): what a retention policy may delete locally."""
        marks = ", ".join("?" * len(roles))
        with self._lock:
            return {
                r[0] for r in self._conn.execute(
                    "SELECT DISTINCT s.sha256 FROM export_sources s JOIN exports e ON e.id = s.export_id"
                    f" WHERE e.profile = ? AND s.role IN ({marks})",
                    (self._p(profile), *roles),
                )
            }

    def download_sha256s(self, *, other_profiles: bool = False, profile: str | None = None) -> set[str]:
        """Contents of every download recorded for the profile (or for every other profile),
        purged copies left out (their content is no longer held)."""
        op = "!=" if other_profiles else "="
        with self._lock:
            return {
                r[0] for r in self._conn.execute(
                    f"SELECT DISTINCT sha256 FROM downloads WHERE profile {op} ?"
                    " AND purge_started IS NULL AND purged_at IS NULL", (self._p(profile),)
                )
            }


#: A stored path that ``os.path.abspath`` would change (relative, or with ``.``, ``..``, ``//``
#: or a final ``/`` in it): compared by Python, not as text (:meth:`Ledger.copies_in`).
_IRREGULAR_PATH = ("substr(local_path, 1, 1) != '/' OR instr(local_path, '/.') > 0"
                   " OR instr(local_path, '//') > 0 OR substr(local_path, -1) = '/'")


def _path_inside(path: str, folder: str) -> bool:
    """``path`` (made absolute) is ``folder`` or inside it."""
    try:
        return os.path.commonpath([os.path.abspath(path), folder]) == folder
    except (ValueError, TypeError):  # different drives, a relative and an absolute path, or
        return False  # a damaged ledger value that is no path


def _locked(exc: BaseException) -> bool:
    """The write failed because another connection held the lock for the whole wait."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def _write_advice(exc: BaseException) -> str:
    """What to do about a failed write, by its cause (for people)."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    err = getattr(exc, "errno", None)
    if _locked(exc):
        return (f"Another program held the ledger locked for more than {BUSY_TIMEOUT:g} s (another "
                "report-keeper run, or a program that opened the file): let it finish or close it")
    if name.startswith("SQLITE_FULL") or err == errno.ENOSPC:
        return "Its disk is full: free space there"
    if name.startswith("SQLITE_READONLY") or err in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "The file or its folder cannot be written: fix their permissions"
    if name.startswith("SQLITE_IOERR") or isinstance(exc, OSError):
        return ("Writing to its disk failed (a full or failing disk, or a file size limit): free space "
                "there or check the disk")
    return "Check free disk space and the file's permissions"


def _free_name(name: str, taken: set[str], keys: set[str] | None = None) -> str:
    """``name``, or ``NAME 2.ext``, ``NAME 3.ext``... when a row already has it, or (``keys``:
    the :func:`tui.core.names.collision_key` of every local name in the folder) when a local
    copy has it up to letter case and Unicode normalization."""
    n = 1
    candidate = name
    while candidate in taken or (keys is not None and collision_key(candidate) in keys):
        n += 1
        candidate = fit_name(name, f" {n}")
    return candidate


def _to_versions(conn: sqlite3.Connection, profile: str, names: Iterable[str], tz: tzinfo,
                 when_s: str | None) -> None:
    """Turn the ordinary history of each server name in ``names`` into versions of a rolling
    report (inside the caller's transaction): one row per copy it had (each download's size
    and mtime, and the copy last listed), each download moved to its copy's row. Copies
    before the last listed one are gone; files on disk keep their paths."""
    for name in sorted(names):
        row = conn.execute(
            "SELECT report, delivered_at, size, mtime, first_seen, last_seen, gone_at FROM remote_files"
            " WHERE profile = ? AND name = ? AND rolling_of IS NULL",
            (profile, name),
        ).fetchone()
        if row is None:
            continue
        report, delivered_at, size, mtime, first_seen, last_seen, gone_at = row
        copies: dict[tuple[str, int], tuple[str, list[int]]] = {}  # (mtime, size) -> (seen, ids)
        for id_, dsize, dmtime, downloaded_at in conn.execute(
            "SELECT id, size, mtime, downloaded_at FROM downloads WHERE profile = ? AND name = ?"
            " ORDER BY id",
            (profile, name),
        ).fetchall():
            key = (dmtime or mtime or delivered_at, dsize)
            copies.setdefault(key, (downloaded_at, []))[1].append(id_)
        current = (mtime or delivered_at, size)
        copies.setdefault(current, (last_seen, []))
        conn.execute("DELETE FROM remote_files WHERE profile = ? AND name = ?", (profile, name))
        rows = conn.execute("SELECT name, local_name FROM remote_files WHERE profile = ?", (profile,)).fetchall()
        taken = {r[0] for r in rows}
        keys = {collision_key(n) for r in rows for n in r if n is not None}
        for (copy_mtime, copy_size), (seen_at, ids) in sorted(copies.items()):
            row_name = _free_name(version_name(name, _at(copy_mtime), tz), taken, keys)
            taken.add(row_name)
            keys.add(collision_key(row_name))
            is_current = (copy_mtime, copy_size) == current
            conn.execute(
                "INSERT INTO remote_files (profile, name, report, delivered_at, size, mtime, first_seen,"
                " last_seen, gone_at, rolling_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (profile, row_name, report, copy_mtime, copy_size, copy_mtime,
                 first_seen if seen_at < first_seen else seen_at,
                 last_seen if is_current else seen_at, gone_at if is_current else when_s, name),
            )
            conn.executemany("UPDATE downloads SET name = ? WHERE id = ?", [(row_name, i) for i in ids])
            if is_current:
                conn.execute("UPDATE partials SET name = ? WHERE profile = ? AND name = ?",
                             (row_name, profile, name))
        log.info("ledger: %d copies of a file replaced in place are now versions of a rolling report",
                 len(copies))


def _state(size: int, mtime: str | None, dsize: int | None, dmtime: str | None, partial: bool,
           missing: bool = False, purged: bool = False) -> LocalState:
    if purged:
        return LocalState.PURGED
    if dsize is None:
        return LocalState.PARTIAL if partial else LocalState.NEW
    if dsize != size or dmtime != mtime:
        return LocalState.PARTIAL if partial else LocalState.CHANGED
    return LocalState.MISSING_LOCALLY if missing else LocalState.DOWNLOADED


def _status(value: str) -> VerifyStatus | None:
    """A stored validator status (None for a word this release does not know)."""
    try:
        return VerifyStatus(value)
    except ValueError:
        return None


#: A verifications row as ``cached_verification`` selects it.
_VerifyRow = tuple[str, str, str | None, str | None, str, int | None, int | None, str, str, str | None, str,
                   str | None, str | None, str | None]


def _coverage(column: str | None, dates: str | None) -> DateCoverage | None:
    """The stored date coverage (None when absent or unreadable)."""
    if column is None or not dates:
        return None
    try:
        return DateCoverage.from_stored(column, json.loads(dates))
    except (ValueError, RecursionError):  # a damaged or edited ledger: no coverage, no verdict
        return None


def _verify_from_row(row: _VerifyRow) -> VerifyResult | None:
    (path, name, report, delivered_at, status, rows, header_row, columns, message, sheet,
     missing, fingerprint, date_column, dates) = row
    known = _status(status)
    if known is None:
        return None
    return VerifyResult(
        path=path,
        name=name,
        report=report,
        delivered_at=_dt(delivered_at),
        status=known,
        rows=rows,
        header_row=header_row,
        columns=tuple(json.loads(columns)),
        message=message,
        sheet=sheet,
        missing_columns=tuple(json.loads(missing)),
        fingerprint=fingerprint,
        date_column=date_column,
        dates=_coverage(date_column, dates),
    )
