"""The sync service: list the server, download what is new, verify it, record it all.

Used by ``report-keeper sync`` and by the TUI (no Textual here). One service talks to one
profile's server through one connection (re-opened when it breaks) and writes everything
it learns into the :class:`tui.core.ledger.Ledger`.

Public API::

    service = SyncService(profile, ledger, connect_factory=None,
                          host_key_policy="reject", passphrase_cb=None)
    listing = await service.list_remote()            # RemoteListing: entries, refused, ...
    result = await service.download(names=None, on_event=cb, on_queue=hook)  # None: all new
    result = await service.download([name])           # a held copy: fetched again (result.again)
    result = await service.sync(on_event=cb)          # list + download + verify + record
    await service.close()                             # also: async with service: ...

``list_remote`` raises :class:`tui.sftp.errors.SftpError` when the server cannot be
listed; ``sync`` turns that into a critical :class:`SyncResult` instead (``result.error``).
``on_event`` receives the transfer queue's events (``tui.sftp.queue.Queued``,
``Running``, ``Retrying``, ``Done``, ``Failed``, ``Cancelled``) and this module's
:class:`Listed` and :class:`Verified`. Cancelling the task that runs ``download``/``sync``
stops the transfers, keeps their part files (the next run resumes them) and records them
as partial in the ledger, with the bytes each holds (a stopped file with no part left has no
partial record); cancelled again while it does that, it still finishes it; a file already in
place when the cancel came is recorded as downloaded (docs/ARCHITECTURE.md, "A stopped
download is settled").

Each completed download is recorded in the ledger as soon as it is in place (complete,
fsync'ed, under its final name), before it is verified, by the service's one writer thread
(in the order the files landed): a record waiting for another process's lock on the ledger
holds up neither the other downloads nor the app's screen; its folder is fsync'ed before the
commit that holds the record (once per folder and commit, ``Ledger.before_commit``). A run's records are committed
together every ``COMMIT_SECONDS`` and at its end (``Ledger.batched``): a process killed in
between leaves files in place that the ledger does not know yet, and the next ``sync`` finds
their bytes already in place, records them then and lists them under ``skipped``; nothing
fetched is lost, and no file is recorded before its bytes are on disk. A ledger that fails
mid-run (a full disk, a lock held too long) does not stop the downloads; none is reported
downloaded unless its record is on the disk (:meth:`SyncService.settle`). Verification runs
in threads (``asyncio.to_thread``) and is served from the ledger's cache when the same
bytes were verified before under the same report settings; a held copy whose verification
was never recorded (the process died in between) is verified by the next ``sync``.

Every listing also checks the disk (:meth:`tui.core.ledger.Ledger.reconcile_local`): a held
copy that is gone or has another size is ``missing-locally``; ``sync`` fetches it again while
the server still has it (``refetched``) and reports it ``lost`` once the server has not.

Two processes syncing the same folder (the app and cron) never both count a file: the one
that puts it in place lists it under ``downloaded``, the other under ``skipped``.

When the profile sets a local retention (``local_retention_days``), ``sync`` ends with the
purge of ``tui.core.retention`` (``result.retention``): copies past their age are deleted
(only exported content under ``keep_until_exported``). A purged file is never fetched again:
it is not ``wanted``, and a purged name asked for explicitly is ``skipped``.

Naming a file whose current server copy is held downloads it again (the app's "download it
again" for a damaged report): the held copy is never overwritten, and the server's bytes are
compared with it (:class:`FetchedAgain` in ``result.again``): ``identical`` (a damaged report
is damaged on the server too), ``different`` (placed beside the old copy under the
changed-copy name, recorded as the held copy and verified), or ``fetched`` (the held copy was
gone from the disk after all). The disk is checked again before named files are fetched, so a
copy moved away since the listing is fetched as missing, not compared.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import resource
import stat as statmod
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import cached_property, partial
from pathlib import Path
from typing import TypedDict, TypeVar

from tui.core import clock, isolation, retention
from tui.core import status as st
from tui.core.config import Profile, ReportConfig
from tui.core.durable import fsync_dir
from tui.core.ledger import BATCH_SECONDS, LEDGER_ERRORS, Ledger, LedgerError, ListingChange
from tui.core.local_folder import stand_in_refusal
from tui.core.local_reports import verify_cached_async
from tui.core.model import (
    Delivery,
    EntryKind,
    JobState,
    JSONObject,
    LocalState,
    OtherEntry,
    RemoteFile,
    VerifyResult,
)
from tui.core.names import escape_name, is_report_name, normalize_folder
from tui.core.schedule import Timing, replaced_on_schedule
from tui.sftp import parts, unrecorded
from tui.sftp.client import (
    ConnectOptions,
    HostKeyPolicy,
    Listing,
    PassphraseCallback,
    SftpConnection,
    connect,
)
from tui.sftp.download import Placed, local_name_of, same_copy
from tui.sftp.errors import FileBusy, LocalWriteFailed, SftpError
from tui.sftp.queue import Done, Job, TransferEvent, TransferQueue

log = logging.getLogger("report_keeper.sftp.sync")

_T = TypeVar("_T")

VERIFY_AT_ONCE = 2  # the validator is CPU-bound: no more at a time than a small machine's cores
#: A run's ledger records are committed this often (and at its end): one disk flush for many
#: files instead of several per file (``Ledger.batched``).
COMMIT_SECONDS = BATCH_SECONDS
#: The longest a download waits for the record of a file another process has just placed (its
#: batch commits every ``BATCH_SECONDS``, later on a loaded machine or a slow disk, and a
#: commit may wait up to the ledger's 30 s for its lock). It waits only while the placing
#: process holds the file locked, which it does until its record is committed: a file left
#: unrecorded by a killed run costs no wait; past this bound the placer is taken for stuck
#: (stopped) and the file is fetched again (the same bytes are then found in place).
PLACED_WAIT = 60.0
#: The most landed files a run keeps locked until their records are committed (one descriptor
#: each); fewer under a low descriptor limit (:func:`held_at_most`).
HELD_AT_MOST = 256


# ------------------------------------------------------------------------ records


@dataclass(frozen=True)
class RemoteEntry:
    """One file of the server folder as the latest listing found it, with what the ledger
    knows of it: what ``download`` fetches (``wanted``) and how it verifies it."""

    remote: RemoteFile
    report: str
    delivered_at: datetime  # aware, profile time zone
    delivered_source: str  # "name" | "pattern" | "mtime"
    run_day: date | None  # the run it is in (ReportConfig.placed_run_day); None: in no run
    delete_on: datetime  # when the server deletes it (ReportConfig.delete_at)
    local_state: LocalState  # purged: deleted by the local retention policy, never fetched again
    verification: st.VerifyStatus | None = None  # of the latest local copy
    rows: int | None = None
    local_path: str | None = None
    changed: bool = False  # the server copy changed after a download (kept as history)
    message: str = ""
    #: A rolling report's version (one name each delivery replaces): the ledger's and the
    #: local copy's name of this copy, ``NAME (YYYY-MM-DD HHMM).ext``; None: an ordinary file.
    version: str | None = None
    folder: str = "."  # the server folder it is in (normalized)

    @property
    def name(self) -> str:
        """Its identity: the server's name, or ``folder/name`` when several folders are
        watched (``RemoteFile.ident``)."""
        return self.remote.ident

    @property
    def server_name(self) -> str:
        return self.remote.name

    @property
    def key(self) -> str:
        """Its name in the ledger: the version's, else its identity (``RemoteFile.ident``)."""
        return self.version or self.remote.ident

    @property
    def size(self) -> int:
        return self.remote.size

    @property
    def mtime(self) -> datetime:
        return self.remote.mtime

    def days_left(self, now: datetime | None = None) -> float:
        """Days until the server deletes it (negative: overdue)."""
        return (self.delete_on - (now or clock.now())).total_seconds() / 86400

    @property
    def wanted(self) -> bool:
        """Not held locally in its current server version (or its copy went missing)."""
        return self.local_state in (LocalState.NEW, LocalState.PARTIAL, LocalState.CHANGED,
                                    LocalState.MISSING_LOCALLY)


@dataclass(frozen=True)
class RemoteListing:
    remote_dir: str
    listed_at: datetime
    entries: list[RemoteEntry]
    refused: list[tuple[str, str]]  # (untrusted name, reason)
    others: list[tuple[str, str]] = field(default_factory=list)  # (name, kind): folders...
    gone: tuple[str, ...] = ()  # names missing since the previous listing
    #: Every entry of the watched folders that is not a report (subfolders, links, files that
    #: are no workbook): shown, never downloaded, never a problem.
    ignored: tuple[OtherEntry, ...] = ()
    folders: tuple[str, ...] = ()  # the folders listed
    #: Gone from the server with no copy here: newly gone and never downloaded, plus every
    #: held copy missing from the disk whose server file is gone.
    lost: tuple[str, ...] = ()
    #: Held copies not on the disk (or with another size): ``(name, recorded path)``.
    missing_locally: tuple[tuple[str, str], ...] = ()

    #: Versions of rolling reports replaced on the server before anything downloaded them
    #: (also in ``lost``).
    lost_versions: tuple[LostVersion, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, RemoteEntry]:
        by_name = {e.version: e for e in self.entries if e.version is not None}
        by_name.update((e.name, e) for e in self.entries)
        return by_name

    def entry(self, name: str) -> RemoteEntry | None:
        return self._by_name.get(name)

    @property
    def wanted(self) -> list[RemoteEntry]:
        return [e for e in self.entries if e.wanted]


@dataclass(frozen=True)
class Listed:
    """Event: a listing arrived."""

    files: int
    wanted: int
    refused: int
    name: str = ""
    job_id: int = 0


@dataclass(frozen=True)
class Recorded:
    """Event: a landed file's record is in the ledger (written after its ``Done``, by the
    writer thread): what the ledger says from now on includes it."""

    name: str
    job_id: int = 0


@dataclass(frozen=True)
class Verified:
    """Event: one downloaded file was verified (``cached``: served from the ledger)."""

    name: str
    result: VerifyResult
    cached: bool = False
    job_id: int = 0


class LostVersion(TypedDict):
    """A rolling report's version replaced on the server before it was downloaded (``sync``
    JSON ``lost_versions``): what was missed, by the server's mtime and size."""

    name: str
    server_name: str
    mtime: str
    size: int


class DownloadedFile(TypedDict):
    """One file this run placed (``sync`` JSON ``downloaded``, which leaves ``status`` out)."""

    name: str
    size: int
    sha256: str
    path: str
    resumed_from: int
    changed: bool  # fetched beside an older copy of the same name
    status: Placed
    refetched: bool  # fetched again: the held copy had gone missing
    version: str | None  # a rolling report's version: its name (the local copy's)
    folder: str  # the server folder it came from
    mtime: datetime  # the server's modification time of the copy fetched (for its record)


class AgainOutcome(StrEnum):
    """What downloading a held copy again found (:class:`FetchedAgain`)."""

    IDENTICAL = "identical"  # the server's bytes equal the held copy's: nothing new placed
    DIFFERENT = "different"  # other bytes: placed beside the held copy, now the held copy
    FETCHED = "fetched"  # the held copy was not on the disk: placed (under its name if free)


@dataclass(frozen=True)
class FetchedAgain:
    """One held copy downloaded again on request, and what the comparison found."""

    name: str
    outcome: AgainOutcome
    path: str  # where the server's copy now is (the held copy's path when identical)
    previous: str | None  # the held copy it was compared with (None: none was recorded)
    verification: VerifyResult | None = None  # of the server's copy (from the cache if identical)


class MissingCopy(TypedDict):
    """A held copy not on the disk (``sync`` JSON ``missing_locally``)."""

    name: str
    path: str
    on_server: bool


@dataclass(frozen=True)
class Unrecorded:
    """A file placed (complete, on disk) whose record the ledger refused."""

    placed: DownloadedFile
    downloaded: bool  # counts as downloaded once recorded (else skipped: placed by another)
    failure: dict[str, str]  # its entry in ``SyncResult.failed``


@dataclass
class SyncResult:
    """What one sync (or download) did; ``to_json()`` gives the ``sync`` JSON (docs/JSON.md)."""

    status: st.Exit = st.Exit.OK
    downloaded: list[DownloadedFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    files: list[VerifyResult] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # gone from the server, no copy here
    lost_versions: list[LostVersion] = field(default_factory=list)  # replaced before download
    changed: list[str] = field(default_factory=list)  # fetched beside an older copy
    refetched: list[str] = field(default_factory=list)  # fetched again: the copy went missing
    missing_locally: list[MissingCopy] = field(default_factory=list)
    again: list[FetchedAgain] = field(default_factory=list)  # held copies fetched again on request
    error: str | None = None  # the connection or listing failed
    error_kind: str | None = None
    listed: int = 0
    #: The local retention policy's purge at the end of the sync (None: no policy, or not run).
    retention: retention.PurgeResult | None = None
    purge_error: str | None = None  # the purge could not run (the ledger failed)
    #: Entries of the watched folders that are not reports (never a problem).
    ignored: list[OtherEntry] = field(default_factory=list)
    folders: tuple[str, ...] = ()  # the server folders watched
    #: Files placed whose record the ledger refused (each also in ``failed``), until
    #: :meth:`SyncService.settle` has recorded them after all.
    unrecorded: list[Unrecorded] = field(default_factory=list)
    #: Why :meth:`SyncService.settle` could not record them (it does not wait on it again).
    ledger_refusal: BaseException | None = None

    def finish(self) -> SyncResult:
        codes = [st.severity(f.status) for f in self.files]
        # A copy the purge could not delete, or whose data another name (a hard link) still holds.
        if self.refused or self.purge_error or (self.retention is not None
                                                and (self.retention.errors or self.retention.still_linked)):
            codes.append(st.Exit.WARNING)
        if self.failed or self.lost or self.error:
            codes.append(st.Exit.CRITICAL)
        self.status = st.worst(codes)
        return self

    def to_json(self) -> JSONObject:
        return {
            "status": st.overall_name(self.status),
            "downloaded": [
                {"name": d["name"], "size": d["size"], "sha256": d["sha256"], "path": d["path"],
                 "resumed_from": d["resumed_from"], "changed": d["changed"], "refetched": d["refetched"],
                 "version": d["version"], "folder": d["folder"], "local_name": Path(d["path"]).name}
                for d in self.downloaded
            ],
            "skipped": list(self.skipped),
            "failed": list(self.failed),
            "refused": list(self.refused),
            "files": [f.to_json() for f in self.files],
            "lost": list(self.lost),
            "lost_versions": [{"name": v["name"], "server_name": v["server_name"], "mtime": v["mtime"],
                               "size": v["size"]} for v in self.lost_versions],
            "refetched": list(self.refetched),
            "missing_locally": [{"name": m["name"], "path": m["path"], "on_server": m["on_server"]}
                                for m in self.missing_locally],
            "ignored": [{"name": escape_name(o.name), "folder": escape_name(o.folder), "kind": str(o.kind),
                         "new": o.new} for o in self.ignored],
            "folders": [escape_name(f) for f in self.folders],
            "error": self.error,
            "error_kind": self.error_kind,
            **self._retention_json(),
        }

    def _retention_json(self) -> JSONObject:
        """``purged`` and ``waiting_for_export`` (empty without a retention policy), and what
        could not be deleted (``purge_errors``)."""
        r = self.retention
        if r is None:
            return {"purged": [], "waiting_for_export": [],
                    "purge_errors": [{"error": self.purge_error}] if self.purge_error else []}
        doc = r.to_json()
        errors: list[JSONObject] = r.to_json_errors()
        if self.purge_error:
            errors.append({"error": self.purge_error})
        return {"purged": doc["purged"], "waiting_for_export": doc["waiting_for_export"],
                "purge_errors": errors, "retention_policy": doc["policy"]}


#: A file the sync had not started to download when it was interrupted (``failed``).
INTERRUPTED_BEFORE = "Interrupted before its download began; the next sync downloads it."

#: What ``on_event`` receives: the transfer queue's events, and this module's.
SyncEvent = TransferEvent | Listed | Recorded | Verified
EventCallback = Callable[[SyncEvent], object]
ConnectFactory = Callable[[], Awaitable[SftpConnection]]


class SyncService:
    """List, download, verify and record for one profile."""

    def __init__(
        self,
        profile: Profile,
        ledger: Ledger,
        connect_factory: ConnectFactory | None = None,
        host_key_policy: HostKeyPolicy = "reject",
        passphrase_cb: PassphraseCallback | None = None,
    ) -> None:
        self.profile = profile
        self.ledger = ledger
        self.host_key_policy = host_key_policy
        self.passphrase_cb = passphrase_cb
        self._opts = ConnectOptions.from_profile(profile)
        self._factory = connect_factory or self._connect
        self._conn: SftpConnection | None = None
        self._conn_lock = asyncio.Lock()
        self.last_listing: RemoteListing | None = None
        #: The connection test's own files (probes) each folder held at the last listing,
        #: by normalized folder: the connection test looks for its leftovers among them
        #: instead of listing the folder once more.
        self.listed_probes: dict[str, list[RemoteFile]] = {}
        #: The result being filled by the running download/sync (what an interrupted run did).
        self.current: SyncResult | None = None
        self._verify_sem = asyncio.Semaphore(VERIFY_AT_ONCE)
        #: Each report's timing from the ledger's history (the run day of a delivery).
        self._timings: dict[str, Timing] | None = None
        self._classified: dict[str, tuple[ReportConfig, datetime, str]] = {}
        #: The one thread that writes a run's download records (see :meth:`_in_writer`).
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        #: Writes asked for and not yet taken by the writer thread, each with its future; and
        #: whether the writer thread is on its way to take them (:meth:`_drain_writes`).
        self._writes: list[tuple[Callable[[], object], asyncio.Future[object]]] = []
        self._writes_lock = threading.Lock()
        self._draining = False
        #: Landed files noted while their records waited for another process's lock (see
        #: :meth:`_transfer`): forgotten once their records are on the disk.
        self._noted_waiting: list[DownloadedFile] = []
        self._note_lock = asyncio.Lock()
        #: Files to note not yet taken by a write of the note (see :meth:`_note_serially`).
        self._note_pending: list[DownloadedFile] = []

    async def _connect(self) -> SftpConnection:
        return await connect(self._opts, host_key_policy=self.host_key_policy,
                             passphrase_cb=self.passphrase_cb)

    @property
    def local_dir(self) -> Path:
        return Path(self.profile.local_dir).expanduser()

    @property
    def remote_dir(self) -> str:
        return self.profile.remote_dir

    # ------------------------------------------------------------ connection
    async def connection(self) -> SftpConnection:
        """The service's connection, opened (again) when needed. Raises SftpError."""
        async with self._conn_lock:
            if self._conn is None or self._conn.closed:
                self._conn = await self._factory()
            return self._conn

    async def close(self) -> None:
        async with self._conn_lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
        if self._writer is not None:  # its writes were awaited; a stray one ends on its own
            self._writer.shutdown(wait=False)
            self._writer = None

    def _in_writer(self, call: Callable[[], _T]) -> asyncio.Future[_T]:
        """Run ``call`` (ledger writes) in the service's one writer thread, after the calls
        asked for before it. A write may wait for another process's lock on the ledger (a
        scheduled sync's batch, a purge) for up to ``ledger.BUSY_TIMEOUT``: in this thread the
        event loop goes on meanwhile (the other downloads, the app's screen), and the records
        still reach the ledger in the order the files landed.

        Most writes of a batch need not wait: once its transaction is begun, nobody else can
        take the file's lock, and a write is a quick savepoint (or one statement). Such a write, with none asked
        before it still waiting for the thread, is made at once on the event loop
        (``Ledger.write_at_once``, which also refuses while another thread holds the ledger:
        a commit, the app's snapshot). The others (the first of each batch, which may wait for
        another process's lock, and those behind it) go to the thread; those asked while it is
        busy are taken together (:meth:`_drain_writes`): one hand-over to the thread and one
        back to the event loop for all of them. Each hand-over is a round of waking threads and
        passing the interpreter's lock back and forth: one per file cost a sixth of a
        many-profile run's CPU. Every call asked for is run, also when its future was cancelled
        meanwhile (what landed is recorded)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        with self._writes_lock:
            idle = not self._draining
        if idle:  # nothing asked before it still to write: made here if it need not wait
            try:
                done, value = self.ledger.write_at_once(call)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, as the thread would
                future.set_exception(exc)
                return future
            if done:
                future.set_result(value)  # type: ignore[arg-type]
                return future
        with self._writes_lock:
            self._writes.append((call, future))  # type: ignore[arg-type]
            start, self._draining = not self._draining, True
        if start:
            if self._writer is None:
                self._writer = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                                     thread_name_prefix="ledger-writes")
            try:
                self._writer.submit(self._drain_writes, loop)
            except BaseException:  # no thread to run them (the interpreter is shutting down)
                with self._writes_lock:
                    self._draining = False
                raise
        return future

    def _drain_writes(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the writer thread: run the writes asked for, in order, until none is left; their
        outcomes go back to the event loop together, once per round (the thread is marked idle
        before the last round's outcomes arrive: whoever awaited them may write at once)."""
        with self._writes_lock:
            calls, self._writes = self._writes, []
            self._draining = bool(calls)
        while calls:
            outcomes: list[tuple[asyncio.Future[object], bool, object]] = []
            for call, future in calls:
                try:
                    outcomes.append((future, True, call()))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, as an executor does
                    outcomes.append((future, False, exc))
            with self._writes_lock:
                calls, self._writes = self._writes, []
                self._draining = bool(calls)
            try:
                loop.call_soon_threadsafe(_settle_writes, outcomes)
            except RuntimeError:  # the loop is closed: nobody awaits them any more
                pass

    async def __aenter__(self) -> SyncService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ listing
    def _classify(self, f: RemoteFile) -> tuple[ReportConfig, datetime, str]:
        """Report, delivery time and its source, from the server's name."""
        report, parsed = self.profile.classify(f.name, f.mtime)
        delivered = parsed.delivered_at or f.mtime.astimezone(self.profile.timezone)
        return report, delivered, parsed.source

    async def list_remote(self) -> RemoteListing:
        """List every watched server folder, record it in the ledger, annotate every file."""
        conn = await self.connection()
        listings = [await conn.listdir(folder) for folder in self.profile.folders]
        self.listed_probes = {normalize_folder(x.remote_dir): list(x.probes) for x in listings}
        # Classifying and recording 10,000 names takes a few tenths of a second: off the loop.
        return await asyncio.to_thread(self._record_all, listings)

    def _record_all(self, listings: list[Listing]) -> RemoteListing:
        when = clock.now()
        watched = set(self.profile.folders)
        files: list[RemoteFile] = []
        refused: list[tuple[str, str]] = []
        others: list[tuple[str, str]] = []
        ignored: list[OtherEntry] = []
        gone: list[str] = []
        rolling: set[str] = set()
        clashes: list[str] = []
        for listing in listings:
            folder = normalize_folder(listing.remote_dir)
            key = self.profile.folder_key(folder)
            reports = [replace(f, folder=key) for f in listing.files if is_report_name(f.name)]
            reports = self._steady_times(reports)
            kinds: list[tuple[str, EntryKind]] = [(n, _entry_kind(k)) for n, k in listing.others]
            kinds += [(f.name, EntryKind.NOT_A_REPORT) for f in listing.files
                      if not is_report_name(f.name)]
            prefix = f"{key}/" if key else ""
            folder_refused = [(prefix + n, r) for n, r in listing.refused]
            change, folder_rolling = self._record_folder(folder, reports, folder_refused, kinds, when)
            rolling |= folder_rolling
            clashes += [n for n, _reason in change.refused]
            folder_refused += list(change.refused)
            new_others = set(change.new_others)
            for name, kind in kinds:
                if kind == EntryKind.FOLDER and normalize_folder(f"{folder}/{name}") in watched:
                    continue  # watched itself: its files are listed with it
                ignored.append(OtherEntry(folder, name, kind, new=name in new_others))
            files += [replace(f, local_name=change.local_names.get(f.ident, "")) for f in reports]
            refused += folder_refused
            others += [(prefix + n, str(k)) for n, k in kinds]
            gone += change.gone
        clashed = set(clashes)  # named as a rolling report's version: refused by the ledger
        files = [f for f in files if f.ident not in clashed]
        return self._annotate(files, when, refused, others, ignored, tuple(gone), rolling)

    def _steady_times(self, files: list[RemoteFile]) -> list[RemoteFile]:
        """Files the server sent no modification time for (``mtime_known`` False) carry the
        listing's time; a copy the ledger knows at the same size keeps the time recorded when
        it was first seen. Otherwise every listing would be a new copy: each held file
        ``changed``, a part file never resumed, and a rolling report's new version each sync."""
        if all(f.mtime_known for f in files):
            return files
        recorded: dict[str, tuple[datetime, int]] = {}  # server identity -> latest copy's time, size
        for ident, mtime, size in self.ledger.listed_copies():  # not deliveries(): read once, below
            if ident not in recorded or mtime > recorded[ident][0]:
                recorded[ident] = (mtime, size)
        out = []
        for f in files:
            known = recorded.get(f.ident)
            if not f.mtime_known and known is not None and known[1] == f.size:
                f = replace(f, mtime=known[0])
            out.append(f)
        return out

    def _record_folder(self, folder: str, files: list[RemoteFile], refused: list[tuple[str, str]],
                       others: list[tuple[str, EntryKind]], when: datetime,
                       ) -> tuple[ListingChange, set[str]]:
        """Record one folder's listing; ``(change, rolling server names)``. Rolling reports
        are recognised in a profile that watches one folder."""
        for f in files:
            self._classified[f.ident] = self._classify(f)
        rolling: set[str] = set()
        if not self.profile.several_folders:
            by_name = {f.name: self._classified[f.ident] for f in files}
            rolling = rolling_names(self.profile, self.ledger, files, by_name)
            for f in files:  # a version's delivery time is the server's mtime
                if f.name in rolling:
                    self._classified[f.ident] = (self._classified[f.ident][0],
                                                 f.mtime.astimezone(self.profile.timezone), "mtime")

        def report_of(f: RemoteFile) -> tuple[str, datetime]:
            report, delivered, _src = self._classified[f.ident]
            return report.name, delivered

        change = self.ledger.record_listing(
            None, report_of, files, when, refused=refused, rolling=rolling,
            tz=self.profile.timezone, folder=folder, scoped=self.profile.several_folders,
            others=others, first=folder == self.profile.folders[0],
        )
        return change, rolling

    def _annotate(self, files: list[RemoteFile], when: datetime, refused: list[tuple[str, str]],
                  others: list[tuple[str, str]], ignored: list[OtherEntry],
                  gone: tuple[str, ...], rolling: set[str]) -> RemoteListing:
        disk = self.ledger.reconcile_local(self.local_dir)
        history = {d.name: d for d in self.ledger.deliveries()}
        versions = {(d.extra.get("rolling_of"), d.mtime, d.size): d.name for d in history.values()
                    if d.on_server and d.extra.get("rolling_of")}
        self._timings = self.profile.timings(history.values())
        tz = self.profile.timezone
        on_disk: dict[str, set[str]] = {}
        entries = []
        for f in files:
            known = self._classified.pop(f.ident, None)
            report, delivered, source = known if known is not None else self._classify(f)
            folder = self._folder_of(f)
            local_dir = self.profile.local_dir_of(folder)
            if str(local_dir) not in on_disk:
                on_disk[str(local_dir)] = _part_files(local_dir)
            version = versions.get((f.name, f.mtime, f.size)) if f.name in rolling else None
            d = history.get(version or f.ident)
            state = d.local_state if d is not None else LocalState.NEW
            if (state in (LocalState.NEW, LocalState.CHANGED)
                    and parts.part_name(f) in on_disk[str(local_dir)]
                    and parts.part_progress(local_dir, f)):
                state = LocalState.PARTIAL
            entries.append(
                RemoteEntry(
                    remote=f,
                    report=report.name,
                    delivered_at=delivered,
                    delivered_source=source,
                    run_day=report.placed_run_day(delivered, self._timings.get(report.name)),
                    delete_on=report.delete_at(delivered, tz),
                    local_state=state,
                    verification=d.verification if d is not None else None,
                    rows=d.rows if d is not None else None,
                    local_path=d.local_path if d is not None else None,
                    changed=bool(d.changed) if d is not None else False,
                    message=d.message if d is not None else "",
                    version=version,
                    folder=folder,
                )
            )
        lost = [n for n in gone if history.get(n) is not None and history[n].extra["lost"]]
        listed = {f.ident for f in files}
        for name, _path in disk.missing:
            if name not in listed and name not in lost:
                lost.append(name)
        lost_versions = []
        for name in lost:
            d = history.get(name)
            server_name = d.extra.get("rolling_of") if d is not None else None
            if d is not None and server_name:
                log.warning("%s was replaced on the server before it was downloaded: lost",
                            escape_name(name))
                lost_versions.append(LostVersion(
                    name=escape_name(name), server_name=escape_name(server_name),
                    mtime=(d.mtime or d.delivered_at).astimezone(UTC).isoformat(), size=d.size))
            else:
                log.warning("%s is gone from the server and no copy is held here: lost",
                            escape_name(name))
        for name, path in disk.missing:
            log.warning("the copy of %s is missing from the disk (%s)", escape_name(name),
                        escape_name(path))
        for other in ignored:
            if other.new:
                log.info("%s in %s is %s: not a report, ignored", escape_name(other.name),
                         escape_name(other.folder), other.kind)
        result = RemoteListing(
            remote_dir=self.remote_dir,
            listed_at=when,
            entries=entries,
            refused=refused,
            others=others,
            gone=gone,
            lost=tuple(lost),
            missing_locally=disk.missing,
            ignored=tuple(ignored),
            folders=self.profile.folders,
            lost_versions=tuple(lost_versions),
        )
        self.last_listing = result
        return result

    def _folder_of(self, f: RemoteFile) -> str:
        """The server folder of a listed file (its key, or the one folder watched)."""
        return f.folder or self.profile.folders[0]

    # ------------------------------------------------------------ download
    async def download(
        self,
        names: Iterable[str] | None = None,
        on_event: EventCallback | None = None,
        *,
        listing: RemoteListing | None = None,
        on_queue: Callable[[TransferQueue], object] | None = None,
        stand_in_checked: bool = False,
    ) -> SyncResult:
        """Download ``names`` (None: every file not yet held), verify and record them.

        Uses the latest listing (listing first when there is none). Files already held in
        their current server version are ``skipped`` unless named explicitly; a named one is
        downloaded again and compared with the held copy (``result.again``; module docstring).
        ``on_queue(queue)`` receives the :class:`tui.sftp.queue.TransferQueue` before the
        first file starts (for pause, resume and per-file cancel from a UI).
        """
        result = SyncResult()
        self.current = result
        # Without a pause: a Ctrl-C from here on must find the targets (a look at one folder,
        # the ledger read only when it is empty).
        # (``stand_in_checked``: :meth:`sync` looked a moment ago, in a thread.)
        refusal = None if stand_in_checked else self._stand_in()
        if refusal is not None:
            result.error, result.error_kind = refusal, LocalWriteFailed.kind
            return result.finish()
        listing = listing or self.last_listing or await self.list_remote()
        again: set[str] = set()
        if names is None:
            targets = listing.wanted
            result.skipped = [e.name for e in listing.entries if not e.wanted]
        else:
            # The listing may be older than the disk: a held copy moved away meanwhile is
            # fetched as missing, not compared with a file that is not there.
            states = await asyncio.to_thread(self._local_states_now)
            targets = []
            for name in dict.fromkeys(names):
                entry = listing.entry(name)
                if entry is None:
                    result.failed.append({
                        "name": name,
                        "error": "It is not in the latest listing of the server folder. "
                                 "Refresh the listing; it may have been deleted.",
                    })
                    continue
                state = states.get(entry.key, entry.local_state)
                if state not in (LocalState.NEW, LocalState.PARTIAL) and state != entry.local_state:
                    entry = replace(entry, local_state=state)
                if entry.local_state == LocalState.PURGED:
                    # Deleted on purpose by the retention policy: never fetched again.
                    log.info("%s is purged (local retention): not downloaded again", escape_name(name))
                    result.skipped.append(name)
                    continue
                if entry.local_state == LocalState.DOWNLOADED:
                    again.add(entry.name)
                targets.append(entry)
        if targets and not self.profile.several_folders:
            self._adopt_legacy_parts(targets)  # quick: only partials the ledger recorded
        with self.ledger.batched(COMMIT_SECONDS):
            if targets and self._noted(targets):
                try:  # hashing the noted files takes a moment: off the loop
                    targets = await asyncio.to_thread(self._record_noted, targets, result, again)
                except asyncio.CancelledError:
                    result.failed.extend({"name": e.name, "error": INTERRUPTED_BEFORE} for e in targets)
                    raise
            await self._transfer(targets, result, on_event, on_queue, again)
        if self._noted_waiting and not self.ledger.batch_open:  # else settle() does it
            await asyncio.to_thread(self._forget_noted_waiting)
        return result.finish()

    def _stand_in(self) -> str | None:
        """Why nothing may be downloaded into ``local_dir`` now (the empty mount point of a
        share that is not mounted; ``tui.core.local_folder``), or None."""
        refusal = stand_in_refusal(self.local_dir, self.ledger)
        if refusal is None:
            return None
        log.error("nothing downloaded: %s", refusal)
        return f"Nothing was downloaded: {refusal}"

    def _local_states_now(self) -> dict[str, LocalState]:
        """Every known file's local state after checking the disk (empty if the ledger fails:
        the listing's states are used then)."""
        try:
            self.ledger.reconcile_local(self.local_dir)
            return self.ledger.local_states()
        except LEDGER_ERRORS:
            log.exception("could not check the held copies against the disk")
            return {}

    def _adopt_legacy_parts(self, targets: list[RemoteEntry]) -> None:
        """Resume part files older releases left in local_dir, where they prove to be ours.

        Their names (``.NAME.SIZE-MTIME.part``) are legal server names, so a file there is
        adopted only when the ledger recorded exactly that path as this very server copy's
        partial download and no download was ever stored under it; anything else stays
        where it is, untouched.
        """
        try:
            partials = {n: p for n, p in self.ledger.partials().items()
                        if Path(p["part_path"]).parent == self.local_dir}
            stored = {d.local_path for d in self.ledger.downloads()} if partials else set()
        except LEDGER_ERRORS:  # without proof nothing is adopted
            log.exception("could not read the ledger's partial downloads")
            return
        for entry in targets:
            p = partials.get(entry.name)
            if p is None:
                continue
            legacy = self.local_dir / parts.legacy_part_name(entry.remote)
            if (p["part_path"] != str(legacy) or p["size"] != entry.size
                    or p["mtime"] != entry.mtime or str(legacy) in stored):
                continue
            parts.adopt_legacy_part(self.local_dir, entry.remote)

    async def _transfer(self, targets: list[RemoteEntry], result: SyncResult,
                        on_event: EventCallback | None,
                        on_queue: Callable[[TransferQueue], object] | None = None,
                        again: set[str] | frozenset[str] = frozenset()) -> None:
        if not targets:
            return
        by_name = {e.name: e for e in targets}
        verifications: list[asyncio.Task[None]] = []
        #: Each landed file's record, written by the writer thread in the order they landed.
        records: list[asyncio.Future[bool]] = []
        #: Files placed by this run, still locked until their records are committed (a
        #: descriptor each, by final path): other processes wait for the record meanwhile.
        #: At most ``budget`` at once: while another process holds the ledger for long, files
        #: keep landing, and a descriptor each would run the process out of them.
        held: dict[str, int] = {}
        budget = held_at_most()
        #: Descriptors of files whose records are written but not committed yet: they close
        #: with the next commit, and until then count against the same budget (files land
        #: faster than a batch commits, and a long lock wait ends in a flood of records).
        committing = [0]
        counting = threading.Lock()

        def close_committed(fd: int) -> None:  # with the commit, in whichever thread commits
            _close_fd(fd)
            with counting:
                committing[0] -= 1

        def close_with_commit(fd: int) -> None:
            with counting:
                committing[0] += 1
            self.ledger.after_commit(partial(close_committed, fd))

        def hold_placed(final: Path, fd: int) -> None:
            _close_fd(held.pop(str(final), None))
            if len(held) + committing[0] >= budget:
                # Let go at once: another process that finds it meanwhile does not wait for
                # its record and fetches it again (then finds the same bytes in place).
                _close_fd(fd)
                if not unheld:
                    log.info("more than %d landed files wait for their records: the rest are "
                             "not kept locked meanwhile", budget)
                unheld.append(str(final))
                return
            held[str(final)] = fd
        unheld: list[str] = []

        def unlock(path: str) -> None:
            # In the writer thread, after the file's record was written (or refused): the lock
            # this run holds on the file goes with the commit that holds the record.
            fd = held.pop(path, None)
            if fd is not None:
                close_with_commit(fd)

        def release_rest() -> None:  # in the writer thread
            while held:
                close_with_commit(held.popitem()[1])
        #: Landed files and their records (those not done are not written yet), and the notes
        #: written meanwhile.
        unwritten: dict[str, tuple[asyncio.Future[bool], DownloadedFile]] = {}
        notings: list[asyncio.Future[None]] = []
        waiting = [False]  # the ledger's writes wait for another process's lock
        loop = asyncio.get_running_loop()

        def note(files: list[DownloadedFile]) -> None:
            # A run killed while its records wait (a lock held up to BUSY_TIMEOUT, files landing
            # meanwhile) would leave them unknown to the ledger: noted, the next sync records
            # them from the note instead of fetching them again (tui.sftp.unrecorded).
            if files:
                self._noted_waiting.extend(files)
                notings.append(asyncio.ensure_future(self._note_serially(files)))

        def wait_changed(now_waiting: bool) -> None:
            waiting[0] = now_waiting
            if now_waiting:
                note([placed for write, placed in unwritten.values() if not write.done()])

        def lock_wait(now_waiting: bool, _holder: str) -> None:  # in the waiting thread
            loop.call_soon_threadsafe(wait_changed, now_waiting)

        stop_watching = self.ledger.watch_waits(lock_wait)

        def emit(event: SyncEvent) -> None:
            _emit(on_event, event)

        #: Set once the transfers are over (or stop): a record written after that starts no
        #: verification.
        stopping = [False]
        #: Landed files whose record is not booked yet or whose verification is not over,
        #: and the future the last of them to end sets (one wake for the run, where a gather
        #: took a done-callback per file).
        outstanding = [0]
        all_verified: list[asyncio.Future[None]] = []

        def settled() -> None:
            outstanding[0] -= 1
            if not outstanding[0] and all_verified and not all_verified[0].done():
                all_verified[0].set_result(None)

        async def counted(work: Awaitable[None]) -> None:
            try:
                await work
            finally:
                settled()

        def start(work: Awaitable[None]) -> None:
            """Verify (a task counted in ``outstanding`` until it ends)."""
            verifications.append(asyncio.ensure_future(counted(work)))

        def verify_recorded(entry: RemoteEntry, event: Done, record: asyncio.Future[bool]) -> None:
            """Once a landed file's record is written (or refused), on the event loop: verify
            it when this process should (always for a file it placed, refused by the ledger
            too: the verification still tells what the file holds; for one found in place
            only if nobody had recorded it yet). Started from the record's own completion,
            not by a task that waits for it: a task step and a wake less per file. Counted in
            ``outstanding`` since the record was asked for: the count passes to the
            verification, or ends here."""
            if (stopping[0] or record.cancelled() or (
                    record.exception() is None and not record.result() and event.status == Placed.SAME)):
                settled()
                return
            start(self._verify(entry, event, result, emit))

        warmed = [False]

        def warm() -> None:
            """A workbook worker starts (in a thread) once the first file a worker must read
            has landed, or at once when a file will take several reads: a worker's start is
            an interpreter and the reader's import (~0.14 s of CPU), which a run whose files
            are no workbooks (judged from their bytes as they arrived, ``Done.sniffed``) never
            needs, and a small file lands within milliseconds. One: the pool adds the next
            once a verification waits behind another (``WorkerPool.acall``), so files read as
            fast as they land keep one worker."""
            if not warmed[0]:
                warmed[0] = True
                started = asyncio.ensure_future(asyncio.to_thread(isolation.shared_pool().prestart, 1))
                _background.add(started)
                started.add_done_callback(_background.discard)

        def on_transfer(event: TransferEvent) -> None:
            emit(event)
            if isinstance(event, Done):
                if event.sniffed is None:
                    warm()
                entry = by_name[event.name]
                job = queue.jobs.get(event.job_id)
                # The queue re-reads size and mtime when a file changed mid-download.
                remote = job.remote if job is not None else entry.remote
                outstanding[0] += 1
                if entry.name in again:
                    start(self._fetched_again(entry, remote, event, result, emit,
                                              partial(unlock, event.path)))
                else:
                    # One writer job: the record, then (written or refused) the file's lock
                    # is handed to the commit that holds it.
                    try:
                        record, placed = self._record_done(
                            entry, remote, event, result, then=partial(unlock, event.path),
                            emit=emit, recorded=partial(verify_recorded, entry, event))
                    except BaseException:
                        settled()  # nothing asked for: nothing to wait for
                        raise
                    records.append(record)
                    unwritten[entry.name] = (record, placed)
                    if waiting[0]:
                        note([placed])

        def already_held(remote: RemoteFile, *, wait: bool = True) -> bool | None:
            # Asked once the part file is locked: another process may have just fetched it.
            # Its record reaches the ledger with that process's next batch commit, and until
            # then it keeps the file it placed locked (``hold_placed``): a file of this size,
            # locked under the name this copy would get, is worth waiting for rather than
            # fetching all its bytes again. With ``wait`` False (asked on the event loop) it
            # answers only what it can tell at once (None: ask again, in a thread): the ledger
            # free now, and nothing under that name yet (the usual case: nobody else on it).
            entry = by_name[remote.ident]
            if not wait:
                try:
                    asked, held = self.ledger.read_at_once(
                        partial(self.ledger.holds, entry.key, remote.size, remote.mtime))
                    if not asked:
                        return None
                    if held:
                        return True
                    final = self.profile.local_dir_of(entry.folder) / (entry.version or local_name_of(remote))
                    # Nothing there: nobody is on the way to recording it (a record is
                    # written only once its file is in place).
                    return None if os.path.lexists(final) else False
                except LEDGER_ERRORS:  # when in doubt, download
                    return False
            try:
                if self.ledger.holds(entry.key, remote.size, remote.mtime):
                    return True
                final = self.profile.local_dir_of(entry.folder) / (entry.version or local_name_of(remote))
                deadline = time.monotonic() + PLACED_WAIT
                while _being_recorded(final, remote.size):
                    if time.monotonic() > deadline:
                        log.warning("%s was placed by another process that has not recorded it "
                                    "in %.0f s: it is fetched again", escape_name(entry.name), PLACED_WAIT)
                        return False
                    time.sleep(0.05)
                # Its lock went with the commit that holds its record (perhaps just now).
                if self.ledger.holds(entry.key, remote.size, remote.mtime):
                    log.info("%s was placed and recorded by another process meanwhile",
                             escape_name(entry.name))
                    return True
                return False  # nobody is on the way to recording it (a killed run's file)
            except LEDGER_ERRORS:  # when in doubt, download
                return False

        if any(e.remote.size >= self._opts.block_size for e in targets):
            # A file read in several blocks (a large report) may take a while to arrive: its
            # worker starts now, while it (and the connection) is on the way.
            warm()
        try:
            first = await self.connection()
        except SftpError as exc:
            for e in targets:
                result.failed.append({"name": e.name, "error": str(exc)})
            result.error, result.error_kind = str(exc), exc.kind
            return
        queue = TransferQueue(
            self._factory,
            concurrency=self.profile.concurrency,
            on_event=on_transfer,
            connection=first,
            sync_dir=self._sync_dir_before_commit,
            hold_placed=hold_placed,
        )
        if on_queue is not None:
            try:
                on_queue(queue)
            except Exception:  # a broken UI hook must not stop syncing
                log.exception("sync queue hook failed")
        try:
            for e in sorted(targets, key=lambda e: e.delivered_at):
                # Files not held at listing time: if another process fetches one meanwhile,
                # it is left to that process (a file asked for again is fetched again).
                queue.add(e.remote, e.folder, self.profile.local_dir_of(e.folder),
                          already_held=already_held if e.wanted else None, local_name=e.version)
            jobs = await queue.join()
            if outstanding[0]:  # records still to book, verifications still to end
                all_verified.append(loop.create_future())
                await all_verified[0]
            for task in verifications:  # the first error, as a gather raises it
                task.result()
        except asyncio.CancelledError:
            # The transfers stop, then their part files are recorded: also when this is cancelled
            # again meanwhile (the app's cancel, then quitting), which would otherwise leave part
            # files on the disk that the ledger does not call partial.
            closing = asyncio.ensure_future(queue.close())
            while True:
                try:
                    await asyncio.wait([closing])  # cancelled, it leaves the closing running
                    break
                except asyncio.CancelledError:
                    continue
            if not closing.cancelled() and closing.exception() is not None:
                log.error("stopping the transfers failed", exc_info=closing.exception())
            # What landed is recorded (those records may still wait for the ledger), then the
            # part files: in the writer, in that order; this waits for both, cancelled or not.
            partials = self._in_writer(partial(self._record_partials, queue, by_name))
            await _outlast(records, reraise=False)
            await _outlast([partials], reraise=False)
            for job in queue.jobs.values():
                if job.state != JobState.DONE:
                    started = parts.part_progress(job.local_dir, job.remote) > 0
                    result.failed.append({
                        "name": job.name,
                        "error": "Interrupted before it was complete; what arrived is kept in a "
                                 "part file and the next sync resumes from there." if started else
                                 INTERRUPTED_BEFORE,
                    })
            stopping[0] = True
            for task in verifications:
                task.cancel()
            raise
        finally:
            stopping[0] = True
            await _outlast(records)  # nothing ends (nor commits the batch) before its records
            # Placed and never recorded by this run (cancelled first): let go with the next
            # commit, in the writer, after every unlock asked for before (each one's record is
            # committed before its lock goes).
            await _outlast([self._in_writer(release_rest)])
            stop_watching()
            await _outlast(notings)
        await queue.close()
        if self._conn is first and first.closed:
            self._conn = None
        stopped: list[Job] = []
        for job in jobs:
            if job.state == JobState.FAILED and isinstance(job.error, FileBusy):
                # The app and a scheduled sync overlapped: the other one is fetching it.
                log.info("%s is being downloaded by another process: left to it", escape_name(job.name))
                result.skipped.append(job.name)
            elif job.state == JobState.FAILED:
                err = job.error
                result.failed.append({"name": job.name, "error": str(err) if err else "failed"})
                stopped.append(job)
            elif job.state == JobState.CANCELLED:
                result.failed.append({"name": job.name, "error": "cancelled; it resumes next time"})
                stopped.append(job)
        if stopped:  # their part files' records: written also when this is cancelled meanwhile
            await _outlast([self._in_writer(partial(self._record_partials_of, stopped, by_name))])
        result.files.sort(key=lambda v: (v.delivered_at is None, v.delivered_at, v.name))
        result.downloaded.sort(key=lambda d: d["name"])

    def _sync_dir_before_commit(self, folder: Path, *, wait: bool = True) -> bool:
        """A download was placed in ``folder``: the folder is fsync'ed before the ledger commits
        anything written from now on (its record is written after this), once per folder and
        commit instead of once per file. ``wait=False``: only if the ledger takes it at once
        (False: nothing done, ask again in a thread)."""
        return self.ledger.before_commit(f"fsync {folder}", partial(fsync_dir, folder), wait=wait)

    def _record_done(self, entry: RemoteEntry, remote: RemoteFile, event: Done,
                     result: SyncResult, *, then: Callable[[], object] | None = None,
                     emit: Callable[[SyncEvent], None] | None = None,
                     recorded: Callable[[asyncio.Future[bool]], object] | None = None,
                     ) -> tuple[asyncio.Future[bool], DownloadedFile]:
        """Record one finished download (in the writer thread, :meth:`_in_writer`); the future
        of the write (True when it recorded the file now) and what it records. Once it is
        written the file is booked in ``result`` (on the event loop, whatever awaits it or not).
        ``then()`` runs in the same writer job right after the write, whether it succeeded or not.
        ``emit``: told ``Recorded`` once the file is booked, if its record was written, and
        then ``recorded(write)`` (one callback for all: a file costs the event loop fewer),
        at once when the write was made at once (on the event loop: most of a batch's).

        A file placed by this run is ``downloaded``. ``same`` means those exact bytes were
        already in place under the name (another process put them there a moment ago): it is
        ``skipped`` here, and recorded and verified only if nobody had recorded it yet.
        """
        same = event.status == Placed.SAME
        changed = (event.status == Placed.CHANGED and entry.local_state != LocalState.MISSING_LOCALLY
                   and entry.version is None)
        refetched = entry.local_state == LocalState.MISSING_LOCALLY
        placed = DownloadedFile(
            name=entry.name, size=event.size, sha256=event.sha256, path=event.path,
            resumed_from=event.resumed_from, changed=changed, status=event.status,
            refetched=refetched, version=entry.version, folder=entry.folder, mtime=remote.mtime,
        )
        if not same:  # what was fetched, recorded or not
            if changed:
                result.changed.append(entry.name)
            if refetched:
                result.refetched.append(entry.name)
        record = partial(self.ledger.record_download, entry.key, size=event.size, sha256=event.sha256,
                         local_path=event.path, mtime=remote.mtime)
        write = self._in_writer(record if then is None else partial(_and_then, record, then))
        booking = (partial(_book, result, placed) if emit is None
                   else partial(_book_and_say, result, placed, emit, event, recorded))
        if write.done():
            booking(write)
        else:
            write.add_done_callback(booking)
        return write, placed

    async def _fetched_again(self, entry: RemoteEntry, remote: RemoteFile, event: Done,
                             result: SyncResult, emit: Callable[[SyncEvent], None],
                             unlock: Callable[[], None] | None = None) -> None:
        """A held copy was downloaded again on request: compare, record, verify, say what.
        ``unlock()`` (run in the writer, after the record) lets the placed file's lock go."""
        try:
            await self._record_again(entry, remote, event, result, emit)
        finally:
            if unlock is not None:
                self._in_writer(unlock)

    async def _record_again(self, entry: RemoteEntry, remote: RemoteFile, event: Done,
                            result: SyncResult, emit: Callable[[SyncEvent], None]) -> None:
        try:
            held = await asyncio.to_thread(self.ledger.downloads, entry.key)
        except LEDGER_ERRORS:
            log.exception("could not read the held copy of %s", escape_name(entry.name))
            held = []
        previous = held[-1].local_path if held else None
        if previous is not None and event.status == Placed.SAME and event.path == previous:
            outcome = AgainOutcome.IDENTICAL  # the placing compared the bytes already
        elif previous is not None and await asyncio.to_thread(
                partial(same_copy, Path(previous), event.size, event.sha256, follow_links=True)):
            # a link followed: a copy the user moved to an archive and left a link to
            outcome = AgainOutcome.IDENTICAL
        elif previous is not None and await asyncio.to_thread(os.path.exists, previous):
            outcome = AgainOutcome.DIFFERENT
        else:
            outcome = AgainOutcome.FETCHED
        placed = DownloadedFile(
            name=entry.name, size=event.size, sha256=event.sha256, path=event.path,
            resumed_from=event.resumed_from, changed=False, status=event.status,
            refetched=outcome == AgainOutcome.FETCHED, version=entry.version, folder=entry.folder,
            mtime=remote.mtime,
        )
        recorded = True
        if outcome != AgainOutcome.IDENTICAL or event.path != previous:
            # New bytes here, or the same bytes in a new place: this copy is the held one now.
            try:
                await asyncio.shield(self._in_writer(partial(
                    self.ledger.record_download, entry.key, size=event.size, sha256=event.sha256,
                    local_path=event.path, mtime=remote.mtime)))
            except LEDGER_ERRORS as exc:  # the file is safe on disk; say so
                _not_recorded(result, placed, exc, downloaded=outcome != AgainOutcome.IDENTICAL)
                recorded = False
        if outcome != AgainOutcome.IDENTICAL and recorded:
            result.downloaded.append(placed)
        report = self.profile.report_for(entry.report)
        verdict, cached = await self.verify_file(
            Path(event.path), report, entry.delivered_at, sha256=event.sha256, name=entry.key,
            run_day=entry.run_day, sniffed=event.sniffed,
        )
        verdict = replace(verdict, folder=entry.folder)
        if outcome != AgainOutcome.IDENTICAL:
            result.files.append(verdict)
        result.again.append(FetchedAgain(entry.name, outcome, event.path, previous, verdict))
        log.info("downloaded %s again: %s (%s)", escape_name(entry.name), outcome, verdict.status)
        emit(Verified(entry.name, verdict, cached))

    def _record_partials(self, queue: TransferQueue, by_name: dict[str, RemoteEntry]) -> None:
        self._record_partials_of([j for j in queue.jobs.values() if j.state != JobState.DONE], by_name)

    def _record_partials_of(self, jobs: Iterable[Job], by_name: dict[str, RemoteEntry]) -> None:
        for job in jobs:
            self._record_partial(job, by_name.get(job.name))

    def _record_partial(self, job: Job, entry: RemoteEntry | None = None) -> None:
        """The ledger says what the disk holds of a stopped download: its part's bytes, or,
        with no part of this copy left (gone, emptied, another copy's), no partial record."""
        part = parts.part_path(job.local_dir, job.remote)
        have = parts.part_progress(job.local_dir, job.remote)
        key = entry.key if entry is not None else job.name
        try:
            if have:
                self.ledger.record_partial(key, size=job.remote.size, mtime=job.remote.mtime,
                                           part_path=part, bytes_done=have)
            else:
                self.ledger.clear_partial(key)
        except LEDGER_ERRORS:  # the part file on disk is what resumes anyway
            log.exception("could not record the partial download of %s", escape_name(job.name))

    async def _verify(self, entry: RemoteEntry, event: Done, result: SyncResult,
                      emit: Callable[[SyncEvent], None]) -> None:
        report = self.profile.report_for(entry.report)
        verdict, cached = await self.verify_file(
            Path(event.path), report, entry.delivered_at, sha256=event.sha256, name=entry.key,
            run_day=entry.run_day, sniffed=event.sniffed,
        )
        if (event.status == Placed.CHANGED and verdict.status == st.OK
                and entry.local_state != LocalState.MISSING_LOCALLY and entry.version is None):
            verdict = replace(
                verdict,
                status=st.CHANGED,
                message=(
                    f"The server's copy changed after it was downloaded; the new copy is kept "
                    f"beside the old one as '{Path(event.path).name}'. {verdict.message}"
                ).strip(),
            )
        verdict = replace(verdict, folder=entry.folder)
        result.files.append(verdict)
        emit(Verified(entry.name, verdict, cached))

    async def verify_file(self, path: Path, report: ReportConfig, delivered_at: datetime | None, *,
                          sha256: str, name: str | None = None,
                          run_day: date | None = None,
                          sniffed: str | None = None) -> tuple[VerifyResult, bool]:
        """Verify one local file (from the ledger's cache when possible) and record it;
        ``(result, cached)``. ``run_day``: the delivery's run (default: from the report's
        history in the ledger). ``sniffed``: the download found its bytes no zip package
        (``Done.sniffed``): judged from that, not read again."""
        if run_day is None and delivered_at is not None:
            if self._timings is None:
                self._timings = self.profile.timings(await asyncio.to_thread(self.ledger.deliveries))
            run_day = report.placed_run_day(delivered_at, self._timings.get(report.name))
        # The workbook is read in a worker process of the shared pool (tui.core.isolation):
        # a file that kills its reader comes back unreadable and the sync goes on. The event
        # loop reads the worker's answer itself: no thread per file waits on it (each would
        # contend with the transfers for the interpreter). Cancelled, the worker is stopped.
        async with self._verify_sem:
            outcome = await verify_cached_async(
                path, report, delivered_at, ledger=self.ledger, sha256=sha256, run_day=run_day, name=name,
                writer=self._in_writer,  # with the run's other records, in its writer thread
                sniffed=sniffed,
            )
        return outcome.result, outcome.cached

    # ------------------------------------------------------------ sync
    async def sync(
        self,
        on_event: EventCallback | None = None,
        on_queue: Callable[[TransferQueue], object] | None = None,
    ) -> SyncResult:
        """List the server, download every file not yet held, verify, record.

        A ledger that fails meanwhile (a full disk, a lock held too long) does not stop the
        downloads: the files are safe on disk, and :meth:`settle` sees to it that none is
        reported downloaded unless its record is on the disk."""
        failed: SyncResult | None = None
        listing: RemoteListing | None = None
        result: SyncResult | None = None
        refusal = await asyncio.to_thread(self._stand_in)
        if refusal is not None:
            # Before the listing: it would mark every held copy missing, and the purge would
            # take them for deleted by hand.
            return SyncResult(error=refusal, error_kind=LocalWriteFailed.kind).finish()
        try:
            with self.ledger.batched(COMMIT_SECONDS):
                try:
                    listing = await self.list_remote()
                except SftpError as exc:
                    failed = SyncResult(error=str(exc), error_kind=exc.kind)
                else:
                    wanted = listing.wanted
                    self.current = SyncResult(listed=len(listing.entries))
                    _emit(on_event, Listed(len(listing.entries), len(wanted), len(listing.refused)))
                    result = await self.download(None, on_event, listing=listing, on_queue=on_queue,
                                                 stand_in_checked=True)
                    await self._verify_unverified(result, on_event)
        except LedgerError as exc:
            log.error("the ledger failed during the sync: %s", exc)
            if listing is not None and failed is None:
                # A commit failed: the records of its moments are lost (settle() sees to them).
                result = result or self.current or SyncResult()
                target = result
            else:  # the listing itself could not be recorded
                failed = target = failed or SyncResult()
            target.error, target.error_kind = ledger_problem(exc), "ledger"
        if failed is not None or listing is None or result is None:
            failed = failed or SyncResult()
            await self._purge(failed)  # the policy does not need the server
            return failed.finish()
        result.listed = len(listing.entries)
        result.ignored = list(listing.ignored)
        result.folders = listing.folders
        result.refused = [{"name": escape_name(n), "reason": r} for n, r in listing.refused]
        result.lost = [escape_name(n) for n in listing.lost]
        result.lost_versions = list(listing.lost_versions)
        listed = {e.name for e in listing.entries}
        result.missing_locally = [
            MissingCopy(name=escape_name(n), path=p, on_server=n in listed)
            for n, p in listing.missing_locally
        ]
        await self._purge(result)
        if not self.ledger.batch_open:  # else the caller settles once the batch has ended
            await asyncio.to_thread(self.settle, result)
        return result.finish()

    def settle(self, result: SyncResult, *, refused: BaseException | None = None) -> BaseException | None:
        """Make ``result`` tell only what the ledger file holds, once no batch is open.

        A download is reported ``downloaded`` only when its record is on the disk: a batch
        whose commit failed (a full disk) took records with it, and a write the ledger refused
        (a lock held too long) left a file in place without one. Those records are written
        again now, in one transaction; what still cannot be recorded is ``failed`` (the file
        stays on disk, complete, and is noted in the working folder: the next sync records it
        without fetching it again, :mod:`tui.sftp.unrecorded`) and the run's ``error`` says why.
        When every download is recorded after all, a ledger error of the run is cleared: no
        record that matters was lost (verifications are done again by the next sync).
        Call it again after a later batch end (``sync --all-profiles``): it is idempotent.

        ``refused``: the same ledger file refused another profile's records a moment ago (a
        lock still held): nothing is tried again (no second whole wait per profile). Returns
        why records could not be written, else None."""
        if self.ledger.batch_open:
            return None
        self._forget_noted_waiting()
        claimed = result.downloaded
        try:
            durable = self.ledger.durable_downloads(
                (d["version"] or d["name"], d["sha256"], d["path"]) for d in claimed)
        except LEDGER_ERRORS:
            log.exception("could not read back the downloads of this run")
            durable = set()
        lost = [d for d in claimed if (d["version"] or d["name"]) not in durable]
        todo = lost + [u.placed for u in result.unrecorded]
        if not todo:
            return None
        try:
            refused = refused or result.ledger_refusal
            if refused is not None:
                raise refused
            with self.ledger.batched(every=3600):  # one transaction, committed at its end
                for d in todo:
                    self.ledger.record_download(d["version"] or d["name"], size=d["size"], sha256=d["sha256"],
                                                local_path=d["path"], mtime=d["mtime"])
        except LEDGER_ERRORS as exc:
            log.error("%d downloads of this run could not be recorded: %s", len(todo), exc)
            result.ledger_refusal = exc
            gone = {id(d) for d in lost}
            result.downloaded = [d for d in claimed if id(d) not in gone]
            for d in lost:
                _not_recorded(result, d, exc, downloaded=True)
            self._note_unrecorded(result.unrecorded)
            n = len(result.unrecorded)
            if result.error is None or result.error_kind == "ledger":
                failure, advice = _ledger_parts(exc)
                result.error = (f"{n} downloaded file{'s are' if n != 1 else ' is'} on disk, complete, but "
                                f"not recorded: {failure}. {advice}, then run sync again: it records "
                                f"{'them' if n != 1 else 'it'}.")
                result.error_kind = "ledger"
            result.finish()
            return exc
        log.warning("recorded %d downloads again after the ledger had failed", len(todo))
        failures = {id(u.failure) for u in result.unrecorded}
        result.failed = [f for f in result.failed if id(f) not in failures]
        for u in result.unrecorded:
            if u.downloaded:
                result.downloaded.append(u.placed)
            else:
                result.skipped.append(u.placed["name"])
        result.unrecorded = []
        result.downloaded.sort(key=lambda d: d["name"])
        if result.error_kind == "ledger":  # every download is recorded: nothing that matters was lost
            result.error = result.error_kind = None
        result.finish()
        return None

    def _note_unrecorded(self, files: list[Unrecorded]) -> None:
        """Note the files placed but not recorded in their local folder's working folder, so the
        next sync records them instead of fetching them again (:mod:`tui.sftp.unrecorded`)."""
        self._note_placed([u.placed for u in files])

    async def _note_serially(self, files: list[DownloadedFile]) -> None:
        """:meth:`_note_placed` in a thread, one note at a time (each rewrites the note). Files
        asked for while a write runs are noted together by the next one: one rewrite of the
        note per write's time, not one per landed file (thousands of files landing while the
        ledger is locked made that a rewrite of a growing note, and its fsync, per file). This
        returns once a write holding ``files`` is over."""
        self._note_pending.extend(files)
        async with self._note_lock:
            todo, self._note_pending = self._note_pending, []
            if todo:  # else an earlier write took them, and it is over
                await asyncio.to_thread(self._note_placed, todo)

    def _forget_noted_waiting(self) -> None:
        """Forget the notes of files noted while their records waited, now that those records
        are on the disk (no batch open); a note whose record is not there stays for the next
        sync (or settle() notes it again)."""
        noted, self._noted_waiting = self._noted_waiting, []
        try:
            durable = self.ledger.durable_downloads(
                (d["version"] or d["name"], d["sha256"], d["path"]) for d in noted)
        except LEDGER_ERRORS:  # kept: a stale note is checked again before it is used
            log.exception("could not read back the downloads noted while the ledger waited")
            return
        by_folder: dict[Path, list[unrecorded.Note]] = {}
        for d in noted:
            if (d["version"] or d["name"]) in durable:
                by_folder.setdefault(self.profile.local_dir_of(d["folder"]), []).append(_note_of(d))
        for folder, notes in by_folder.items():
            unrecorded.remove(folder, notes)

    def _note_placed(self, files: list[DownloadedFile]) -> None:
        by_folder: dict[Path, list[unrecorded.Note]] = {}
        for d in files:
            by_folder.setdefault(self.profile.local_dir_of(d["folder"]), []).append(_note_of(d))
        for folder, notes in by_folder.items():
            try:
                unrecorded.add(folder, notes)
            except (OSError, SftpError) as exc:  # then the next sync fetches them again
                log.warning("could not note the unrecorded downloads in %s: %s", folder, exc)

    def _noted(self, targets: list[RemoteEntry]) -> bool:
        """Some target's local folder has a note of unrecorded files (one look per folder)."""
        return any(unrecorded.note_path(folder).exists()
                   for folder in {self.profile.local_dir_of(e.folder) for e in targets})

    def _record_noted(self, targets: list[RemoteEntry], result: SyncResult,
                      again: set[str]) -> list[RemoteEntry]:
        """Record the files an earlier run placed whose record the ledger could not keep (noted
        in the working folder), instead of fetching them again; returns the targets left.

        A note is used only for the very server copy it was written for (name, size, mtime)
        and only when the noted file, directly in the local folder and not a link, still holds
        the noted bytes (hashed again now). Such a file is ``skipped`` (it was downloaded
        before); its verification follows with the other held copies' (``_verify_unverified``)."""
        left: list[RemoteEntry] = []
        notes: dict[Path, dict[str, unrecorded.Note]] = {}
        used: dict[Path, list[unrecorded.Note]] = {}
        for e in targets:
            folder = self.profile.local_dir_of(e.folder)
            if folder not in notes:
                notes[folder] = {n.name: n for n in unrecorded.read(folder)}
            note = notes[folder].get(e.key)
            if (note is None or e.name in again or note.size != e.size or note.mtime != e.mtime
                    or not _noted_copy_holds(folder, note)):
                left.append(e)
                continue
            try:
                # Committed now, not in the open batch: the note is forgotten below, so the
                # record must be on the disk first.
                with self.ledger.unbatched():
                    self.ledger.record_download(e.key, size=note.size, sha256=note.sha256,
                                                local_path=note.path, mtime=note.mtime)
            except LEDGER_ERRORS as exc:  # still refused: fetched (and noted) again
                log.error("could not record %s from its note: %s", escape_name(e.name), exc)
                left.append(e)
                continue
            log.info("%s: recorded the copy an earlier run placed (its record had been lost)",
                     escape_name(e.name))
            result.skipped.append(e.name)
            used.setdefault(folder, []).append(note)
        for folder, done in used.items():
            unrecorded.remove(folder, done)
        return left

    async def _purge(self, result: SyncResult) -> None:
        """The local retention policy, once the sync's own work is recorded."""
        def purge() -> retention.PurgeResult:
            # Each of the purge's steps is committed before the next (a file is deleted only
            # once its record says so), also while other profiles' batches are open: for as
            # long as the thread runs, which a cancelled sync does not stop.
            with self.ledger.unbatched():
                return retention.purge(self.profile, self.ledger, remove_parts=parts.remove_stale_parts)

        running = asyncio.ensure_future(asyncio.to_thread(purge))
        try:
            await asyncio.wait([running])  # cancelled, it leaves ``running`` alone
        except asyncio.CancelledError:  # Ctrl-C: the purge ends its work; then say what it did
            await asyncio.wait([running])
            self._purged(result, running)
            raise
        self._purged(result, running)

    @staticmethod
    def _purged(result: SyncResult, running: asyncio.Future[retention.PurgeResult]) -> None:
        """What the purge did (or why it could not run) into ``result``."""
        exc = running.exception()
        if exc is not None:
            log.error("the retention purge failed: %s", type(exc).__name__, exc_info=exc)
            result.purge_error = (f"The local retention purge could not run ({exc}); the next sync "
                                  "tries again.")
        else:
            result.retention = running.result()
            if result.retention.refused:  # the clock is not trusted: a warning, said once
                result.purge_error = result.retention.refused
        r = result.retention
        if r is not None and not r.policy and not (r.finished or r.undone):
            result.retention = None  # no policy and nothing left to finish: nothing to report

    async def _verify_unverified(self, result: SyncResult, on_event: EventCallback | None) -> None:
        """Verify every held copy whose verification was never recorded (a run died first), or
        was recorded by a release without the content checks (no fingerprint, no dates yet):
        after an upgrade the first sync reads each held copy once more, so ``check`` can judge
        the history without reading workbooks itself."""
        done = {v.name for v in result.files}

        def candidates() -> list[Delivery]:
            # Only the few files that may need it are read whole (the listing read them all a
            # moment ago); the timings come from the listing's read unless there was none.
            names = self.ledger.to_verify() - done
            if self._timings is None:
                self._timings = self.profile.timings(self.ledger.deliveries())
            return self.ledger.deliveries(names=names) if names else []

        try:
            deliveries = await asyncio.to_thread(candidates)
        except LEDGER_ERRORS:  # the next run tries again
            log.exception("could not read the ledger for unverified copies")
            return
        todo: list[tuple[Delivery, str, str]] = []
        again: list[tuple[Delivery, str, str]] = []
        for d in deliveries:
            if d.downloaded and d.sha256 and d.local_path \
                    and not d.extra.get("missing_locally") and not d.extra.get("purged") \
                    and d.name not in done:
                if d.verification is None or not d.extra.get("content_checked"):
                    todo.append((d, d.local_path, d.sha256))
                elif d.verification == st.UNREADABLE:
                    again.append((d, d.local_path, d.sha256))
        await self._read_again(again, result, on_event)
        # Copies verified by an older release: only the stored facts are brought up to date
        # (not news for this run's output or exit code; check judges them from the ledger),
        # as many at a time as there are workbook workers.
        refresh = [(d, p, h) for d, p, h in todo if d.verification is not None]
        if refresh:
            await asyncio.gather(*(
                self.verify_file(Path(p), self.profile.report_for(d.report), d.delivered_at,
                                 sha256=h, name=d.name)
                for d, p, h in refresh
            ))
            log.info("verified %d held copies again for their row fingerprints and dates", len(refresh))
        for d, local_path, sha256 in todo:
            if d.verification is not None:
                continue
            log.info("verifying %s: its verification was never recorded", escape_name(d.name))
            verdict, cached = await self.verify_file(
                Path(local_path), self.profile.report_for(d.report), d.delivered_at,
                sha256=sha256, name=d.name,
            )
            if verdict.status == st.UNREADABLE and not await asyncio.to_thread(os.path.exists, local_path):
                # Deleted since the ledger was read (a purge by hand, a person): not a verdict on
                # the report; the next listing finds the copy purged or missing.
                continue
            verdict = replace(verdict, folder=d.folder or self.profile.folders[0])
            result.files.append(verdict)
            _emit(on_event, Verified(d.name, verdict, cached))
        if todo:
            result.files.sort(key=lambda v: (v.delivered_at is None, v.delivered_at, v.name))


    async def _read_again(self, copies: list[tuple[Delivery, str, str]], result: SyncResult,
                          on_event: EventCallback | None) -> None:
        """Held copies found unreadable: the verification cache answers for each, unless the
        verdict was reached under other settings than now, such as the reader limits raised in
        the profile after a genuine report was too big. Such a copy is read again, once, and
        its new verdict is this run's news (the unreadable message says the next sync does
        this); an unchanged verdict stays quiet."""
        if not copies:
            return
        outcomes = await asyncio.gather(*(
            self.verify_file(Path(p), self.profile.report_for(d.report), d.delivered_at, sha256=h, name=d.name)
            for d, p, h in copies
        ))
        for (d, p, _h), (verdict, cached) in zip(copies, outcomes, strict=True):
            if cached or (verdict.status == st.UNREADABLE and not os.path.exists(p)):
                continue  # the same verdict, or the copy was deleted meanwhile
            log.info("read %s again: %s", escape_name(d.name), verdict.status)
            verdict = replace(verdict, folder=d.folder or self.profile.folders[0])
            result.files.append(verdict)
            _emit(on_event, Verified(d.name, verdict, cached))
        result.files.sort(key=lambda v: (v.delivered_at is None, v.delivered_at, v.name))


def rolling_names(profile: Profile, ledger: Ledger, files: Iterable[RemoteFile],
                  classified: dict[str, tuple[ReportConfig, datetime, str]] | None = None) -> set[str]:
    """The server names of ``files`` that are rolling reports (docs/DOMAIN.md, "Rolling
    reports"), among the names without a timestamp: configured ``rolling = true``; else (not
    configured ``false``) already kept as versions, or replaced on a schedule's rhythm (the
    copies the ledger saw and this listing's: :func:`tui.core.schedule.replaced_on_schedule`)."""
    candidates: list[tuple[RemoteFile, ReportConfig]] = []
    for f in files:
        if classified is not None and f.name in classified:
            report, _delivered, source = classified[f.name]
        else:
            report, parsed = profile.classify(f.name, f.mtime)
            source = parsed.source
        if report.rolling is not False and source == "mtime":  # a timestamp names each delivery
            candidates.append((f, report))
    if not candidates:  # the usual folder: every name has a timestamp; no ledger read
        return set()
    known, copies = ledger.rolling_history()
    tz = profile.timezone
    out: set[str] = set()
    for f, report in candidates:
        if report.rolling or f.name in known:
            out.add(f.name)
        elif replaced_on_schedule(copies.get(f.name, set()) | {f.mtime}, tz):
            log.info("%s was replaced in place on a schedule: a rolling report from now on",
                     escape_name(f.name))
            out.add(f.name)
    return out


#: Fire-and-forget tasks, referenced until done (the loop keeps only weak references).
_background: set[asyncio.Future[None]] = set()


def _note_of(d: DownloadedFile) -> unrecorded.Note:
    return unrecorded.Note(d["version"] or d["name"], d["size"], d["mtime"], d["sha256"], d["path"])


def _book(result: SyncResult, placed: DownloadedFile, write: asyncio.Future[bool]) -> None:
    """A landed file's record is written (or refused): ``downloaded``, ``skipped`` or ``failed``
    in ``result`` (on the event loop, as the write ends)."""
    same = placed["status"] == Placed.SAME
    name = placed["name"]
    exc: BaseException | None = (LedgerError("the run stopped before it was recorded")
                                 if write.cancelled() else write.exception())
    if exc is not None:  # the file is safe on disk: failed until it is recorded
        if not isinstance(exc, LEDGER_ERRORS):
            log.error("recording %s failed", escape_name(name), exc_info=exc)
        _not_recorded(result, placed, exc, downloaded=not same)
        return
    if same:
        result.skipped.append(name)
        log.info("%s was already in place (%s)", escape_name(name),
                 "recorded now" if write.result() else "fetched by another process")
        return
    result.downloaded.append(placed)
    # One line per file (the download itself logs at debug level only).
    log.info("downloaded and recorded %s: %d bytes, %s (resumed from %d%s)", escape_name(name),
             placed["size"], placed["status"], placed["resumed_from"],
             ", fetched again" if placed["refetched"] else "")


def _settle_writes(outcomes: list[tuple[asyncio.Future[object], bool, object]]) -> None:
    """On the event loop: the outcomes of one round of the writer (:meth:`SyncService._drain_writes`)."""
    for future, ok, value in outcomes:
        if future.done():  # cancelled meanwhile (the call ran all the same)
            continue
        if ok:
            future.set_result(value)
        else:
            assert isinstance(value, BaseException)
            future.set_exception(value)


def _and_then(call: Callable[[], _T], then: Callable[[], object]) -> _T:
    """``call()``, then ``then()`` however it ended (its result or error is ``call``'s)."""
    try:
        return call()
    finally:
        then()


def _book_and_say(result: SyncResult, placed: DownloadedFile, emit: Callable[[SyncEvent], None],
                  event: Done, recorded: Callable[[asyncio.Future[bool]], object] | None,
                  write: asyncio.Future[bool]) -> None:
    """:func:`_book`, then :func:`_say_recorded`, then ``recorded(write)`` (one done-callback
    of the record's write)."""
    try:
        _book(result, placed, write)
    finally:
        try:
            _say_recorded(emit, event, write)
        finally:
            if recorded is not None:
                recorded(write)


def _say_recorded(emit: Callable[[SyncEvent], None], event: Done, write: asyncio.Future[bool]) -> None:
    """``Recorded`` once a landed file's record is written (not when it was refused)."""
    if not write.cancelled() and write.exception() is None:
        emit(Recorded(event.name, event.job_id))


async def _outlast(futures: Sequence[asyncio.Future[_T]], *, reraise: bool = True) -> None:
    """Wait until every one of ``futures`` (ledger writes in the writer thread) has ended, also
    when this is cancelled meanwhile (they are not: what landed is recorded); the cancellation
    is raised then, unless the caller is already handling one (``reraise=False``)."""
    cancelled = False
    while True:
        pending = [f for f in futures if not f.done()]
        if not pending:
            break
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled and reraise:
        raise asyncio.CancelledError


def _emit(on_event: EventCallback | None, event: SyncEvent) -> None:
    """Tell the caller (a progress display, the app); its failure never stops the sync."""
    if on_event is not None:
        try:
            on_event(event)
        except Exception:  # a broken UI callback must not stop syncing
            log.exception("sync event callback failed")


def ledger_problem(exc: BaseException) -> str:
    """A ledger error as one sentence for people (its text says what failed and what to do)."""
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, LedgerError):
        text = f"the ledger failed ({type(exc).__name__}: {text}); check the ledger file and its disk"
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _ledger_parts(exc: BaseException) -> tuple[str, str]:
    """(what failed, what to do) of a failed ledger write, each without a final full stop."""
    if isinstance(exc, LedgerError) and exc.advice:
        return exc.failure, exc.advice[0].upper() + exc.advice[1:]
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return (f"the ledger failed ({type(exc).__name__}: {text})",
            "Check the ledger file and its disk")


def _not_recorded(result: SyncResult, placed: DownloadedFile, exc: BaseException, *,
                  downloaded: bool) -> None:
    """``placed`` is on disk, complete, but the ledger refused its record: it is ``failed``
    (saying so, and what to do) until :meth:`SyncService.settle` records it after all."""
    log.error("could not record the download of %s: %s", escape_name(placed["name"]), exc)
    what, advice = _ledger_parts(exc)
    failure = {
        "name": placed["name"],
        "error": f"Downloaded to '{placed['path']}' (complete), but not recorded: {what}. {advice}; "
                 "the copy is kept and the next sync records it.",
    }
    result.failed.append(failure)
    result.unrecorded.append(Unrecorded(placed, downloaded, failure))


def _being_recorded(path: Path, size: int) -> bool:
    """A regular file of ``size`` bytes is under ``path`` and another process holds it locked:
    it placed the file and its record is on the way (``hold_placed``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not statmod.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return False
    finally:
        os.close(fd)


def held_at_most() -> int:
    """How many landed files a sync keeps locked (a descriptor each) while their records wait:
    a quarter of the process's descriptor limit (``ulimit -n``), at most ``HELD_AT_MOST``."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return HELD_AT_MOST
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return HELD_AT_MOST
    return max(1, min(HELD_AT_MOST, soft // 4))


def _close_fd(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _noted_copy_holds(folder: Path, note: unrecorded.Note) -> bool:
    """The noted file is a regular file directly in ``folder`` (not through a link) holding the
    noted bytes."""
    path = Path(note.path)
    return path.parent == folder and same_copy(path, note.size, note.sha256)


def _entry_kind(kind: str) -> EntryKind:
    """The listing's word for an entry that is not a regular file."""
    return {"folder": EntryKind.FOLDER, "link": EntryKind.LINK}.get(kind, EntryKind.SPECIAL)


def _part_files(local_dir: Path) -> set[str]:
    """Names of the part files in the private working folder (one listing)."""
    try:
        return {n for n in os.listdir(parts.work_dir(local_dir)) if n.endswith(".part")}
    except OSError:
        return set()
