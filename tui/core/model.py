"""Plain records and states shared by the core, the SFTP side, the CLI and the screens.

The states are ``StrEnum`` members (docs/DOMAIN.md): each equals its string, which is what the
JSON documents and the ledger hold. Their members are also importable by their short names.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TypeAlias, TypedDict

from tui.core.content import DateCoverage
from tui.core.names import normalize_folder
from tui.core.status import Severity, VerifyStatus

#: A value of the JSON documents the commands print (docs/JSON.md).
JSONValue: TypeAlias = "str | int | float | bool | None | Sequence[JSONValue] | Mapping[str, JSONValue]"
JSONObject: TypeAlias = dict[str, JSONValue]


def iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class RunStatus(StrEnum):
    """What happened on one expected run day of a report."""

    ON_TIME = "on-time"  # delivered inside the on-time window
    LATE = "late"  # delivered after the deadline, before the next run
    MISSING = "missing"  # nothing delivered and the deadline has passed
    PENDING = "pending"  # nothing yet, the deadline has not passed


ON_TIME = RunStatus.ON_TIME
LATE = RunStatus.LATE
MISSING = RunStatus.MISSING
PENDING = RunStatus.PENDING


class LocalState(StrEnum):
    """What is held locally of one server file."""

    NEW = "new"  # never downloaded
    DOWNLOADED = "downloaded"  # the server's current copy is held
    CHANGED = "changed"  # the server's copy changed after it was downloaded
    PARTIAL = "partial"  # a transfer stopped with a part file, nothing complete yet
    MISSING_LOCALLY = "missing-locally"  # downloaded, but gone from the disk (or resized)
    PURGED = "purged"  # deleted on purpose by the local retention policy; the record stays


class JobState(StrEnum):
    """Where one download of this session stands (the transfer queue and the Queue screen)."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Left to another Report Keeper process that is fetching it (``sync``'s ``skipped``).
    SKIPPED = "skipped"

    @property
    def active(self) -> bool:
        """Not ended yet."""
        return self in (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)


class ProblemKind(StrEnum):
    """What a problem is about (``check`` JSON ``problems[].kind``)."""

    MISSING = "missing"  # no delivery for a run whose deadline passed
    LATE = "late"  # delivered after the deadline
    EMPTY = "empty"  # no data rows on an open covered day
    SCHEMA = "schema"  # expected columns missing
    UNREADABLE = "unreadable"  # not a readable workbook
    NEAR_DELETION = "near-deletion"  # not downloaded, the server deletes it soon
    LOST = "lost"  # gone from the server with no copy here
    MISSING_LOCALLY = "missing-locally"  # the held copy is gone from the disk
    CHANGED = "changed"  # the server's copy changed after it was downloaded
    CONNECTION = "connection"  # the connection test failed or the account is read-only
    # What a delivery's rows hold (docs/CONTENT_CHECKS.md):
    WRONG_DAY = "wrong-day"  # the rows describe another day than the run covers
    STALE = "stale"  # the rows repeat an earlier delivery's
    FEW_ROWS = "few-rows"  # far fewer rows than the weekday's usual
    # Local retention (docs/RETENTION.md):
    WAITING_FOR_EXPORT = "waiting-for-export"  # copies past local_retention_days no export has taken
    # What the history cannot tell:
    SCHEDULE_UNKNOWN = "schedule-unknown"  # no schedule configured, and none inferred with confidence
    BAD_DATE = "bad-date"  # dated in the future or at an impossible time: in no run


class WriteTest(StrEnum):
    """The connection test's verdict on writing to the report folder."""

    OK = "ok"  # upload, download and delete of the probe all worked
    READ_ONLY = "read-only"  # the server refused the upload: downloads still work (a warning)
    FAILED = "failed"  # a step failed otherwise, or the copy read back differs
    SKIPPED = "skipped"  # not run (no connection, or --offline)


class StepOutcome(StrEnum):
    """One step of the connection test (upload, download, delete)."""

    OK = "ok"
    DENIED = "denied"  # permission denied (upload, delete)
    FAILED = "failed"
    MISMATCH = "mismatch"  # download: the copy read back differs
    SKIPPED = "skipped"


@dataclass(frozen=True)
class ConnTestResult:
    """The connection test, like Alma's "Test FTP" (``tui.sftp.conntest``). ``ok`` is False
    when the connection or the test failed."""

    ok: bool
    message: str
    write_test: WriteTest
    upload: StepOutcome = StepOutcome.SKIPPED
    download: StepOutcome = StepOutcome.SKIPPED
    delete: StepOutcome = StepOutcome.SKIPPED
    probe: str | None = None  # remote path of the probe file

    @property
    def steps(self) -> dict[str, StepOutcome]:
        return {"upload": self.upload, "download": self.download, "delete": self.delete}

    def to_json(self) -> JSONObject:
        return {"ok": self.ok, "message": self.message, "write_test": self.write_test,
                "steps": self.steps}


QUEUED = JobState.QUEUED
RUNNING = JobState.RUNNING
RETRYING = JobState.RETRYING
DONE = JobState.DONE
FAILED = JobState.FAILED
CANCELLED = JobState.CANCELLED
SKIPPED = JobState.SKIPPED


@dataclass(frozen=True)
class VerifyResult:
    """One verified file: the JSON "verified file" of verify and sync (docs/JSON.md)."""

    path: str
    name: str
    report: str | None
    delivered_at: datetime | None
    status: VerifyStatus
    rows: int | None
    header_row: int | None  # 1-based as Excel shows it
    columns: tuple[str, ...] = ()
    message: str = ""
    sheet: str | None = None
    missing_columns: tuple[str, ...] = ()
    # What the rows hold without holding them (tui.core.content): the rows' fingerprint, the
    # date column's coverage, and the loan day the file was expected to cover.
    fingerprint: str | None = None
    date_column: str | None = None
    dates: DateCoverage | None = None
    covered_day: date | None = None
    folder: str | None = None  # the server folder it was delivered to (None: not known here)
    # The sha256 of the bytes this verdict is of, as the worker read them (None: not read, or a
    # result from the ledger). Not part of the result's value: only the recorder compares it.
    read_sha256: str | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> JSONObject:
        return {
            "path": self.path,
            "name": self.name,
            "report": self.report,
            "delivered_at": iso(self.delivered_at),
            "status": self.status,
            "rows": self.rows,
            "header_row": self.header_row,
            "columns": list(self.columns),
            "message": self.message,
            "sheet": self.sheet,
            "missing_columns": list(self.missing_columns),
            "fingerprint": self.fingerprint,
            "date_column": self.date_column,
            "dates": self.dates.to_json() if self.dates is not None else None,
            "covered_day": self.covered_day.isoformat() if self.covered_day is not None else None,
            "folder": self.folder,
        }


@dataclass(frozen=True)
class RemoteFile:
    """One entry of a server listing. ``name`` is untrusted server input: the server's exact
    name. ``folder`` is the folder part of its identity (``Profile.folder_key``: empty when
    the profile watches one folder); ``local_name`` the name its copy gets (empty: not
    assigned yet, the ledger assigns it when it records the listing)."""

    name: str
    size: int
    mtime: datetime  # aware
    folder: str = ""
    local_name: str = ""
    #: False: the server sent no modification time (SFTP makes it optional) and ``mtime`` is
    #: when the file was listed; the sync then keeps the time the ledger recorded for this
    #: copy (``tui.sftp.sync``), so the same copy is not a new one at every listing.
    mtime_known: bool = field(default=True, compare=False)

    @property
    def ident(self) -> str:
        """The file's identity in the ledger, the queue and the screens: its name, or
        ``folder/name`` when several folders are watched (a server name never holds ``/``)."""
        return f"{self.folder}/{self.name}" if self.folder else self.name


class EntryKind(StrEnum):
    """What a listed entry that is not a report is (``sync --json`` ``ignored[].kind``)."""

    FOLDER = "folder"
    LINK = "link"
    SPECIAL = "special"  # a device, a socket, a pipe
    NOT_A_REPORT = "not-a-report"  # a regular file that is no workbook (readme.txt, a PDF)


@dataclass(frozen=True)
class OtherEntry:
    """An entry of a watched folder that is not a report: shown, never downloaded, never a
    problem. ``folder`` is the server folder it is in (normalized); ``name`` is untrusted."""

    folder: str
    name: str
    kind: EntryKind
    first_seen: datetime | None = None
    new: bool = False  # first seen by this listing

    def ignored_in(self, folders: Collection[str]) -> bool:
        """An entry of one of the watched ``folders`` that is not itself one of them (a
        watched sub-folder's files are listed with it, never ignored)."""
        if self.folder not in folders:
            return False
        return self.kind != EntryKind.FOLDER or normalize_folder(f"{self.folder}/{self.name}") not in folders


class DeliveryExtra(TypedDict, total=False):
    """What the ledger adds to a :class:`Delivery` (see ``Ledger.deliveries``)."""

    local_state: LocalState
    lost: bool  # gone from the server with no copy here
    missing_locally: bool  # the held copy is not on the disk with its recorded size
    missing_since: datetime | None
    changed_at: datetime | None  # when the server's copy was first seen changed
    rolling_of: str | None  # a version of a rolling report: the server's fixed name
    downloads: int  # how many times it was downloaded
    header_row: int | None  # of the latest verification
    columns: tuple[str, ...]  # of the latest verification
    content_checked: bool  # verified by a release that computes fingerprints and dates
    purged: bool  # the retention policy deleted (or is deleting) the latest copy
    purged_at: datetime | None
    #: Other names (hard links) the purged copy's file still had when purged (its data is still
    #: on disk under them; 0: none known), and its inode then (None with 0).
    purge_links: int
    purge_inode: int | None
    export_pending: bool  # the latest copy is held and no export has included or passed it over


@dataclass
class Delivery:
    """Everything the ledger knows about one remote file (one delivery of a report)."""

    name: str
    report: str
    delivered_at: datetime  # aware; from the file name, else the server mtime
    size: int
    mtime: datetime | None
    first_seen: datetime
    last_seen: datetime
    on_server: bool  # present in the latest successful listing
    gone_at: datetime | None = None  # first listing it was missing from
    downloaded_at: datetime | None = None
    local_path: str | None = None
    sha256: str | None = None
    verification: VerifyStatus | None = None  # validator status of the local copy
    rows: int | None = None
    message: str = ""
    changed: bool = False  # server copy changed after download
    extra: DeliveryExtra = field(default_factory=lambda: DeliveryExtra())
    fingerprint: str | None = None  # of the verified copy's data rows (tui.core.content)
    coverage: DateCoverage | None = None  # of its date column (tui.core.content)
    folder: str = ""  # the server folder it was listed in (normalized; "" before it was known)
    server_name: str = ""  # the server's exact name ("": the same as ``name``)
    local_name: str = ""  # the name its local copies get ("": not assigned yet)

    @property
    def downloaded(self) -> bool:
        return self.downloaded_at is not None

    @property
    def local_state(self) -> LocalState:
        """What is held locally of it (the ledger puts it in ``extra``)."""
        return LocalState(self.extra.get("local_state", LocalState.DOWNLOADED if self.downloaded
                                         else LocalState.NEW))


@dataclass(frozen=True)
class RunDay:
    """One expected run day of a report, as the schedule evaluation sees it (the dates come
    from ``ReportConfig``: docs/DOMAIN.md)."""

    day: date  # the run day in the profile's time zone
    status: RunStatus
    files: tuple[str, ...] = ()
    verification: VerifyStatus | None = None  # worst status of its files (None: not verified)
    rows: int | None = None  # data rows of its (first ok) file
    delivered_at: datetime | None = None  # first delivery of that run
    rescue_by: date | None = None  # a manual re-run in Alma works before this day
    delete_on: date | None = None  # the server deletes the (first) file on this day
    closed: bool = False  # the covered loan day is a configured closed day
    covered_day: date | None = None  # the loan day the run covers (day - lag_days)
    content: tuple[ProblemKind, ...] = ()  # content problems of its files: wrong-day, stale, few-rows
    purged: tuple[str, ...] = ()  # its files whose local copy the retention policy deleted
    not_held: tuple[str, ...] = ()  # its files downloaded once whose copy is gone from the disk


class Audience(StrEnum):
    """Where a problem's advice is shown: the app (keys) or the shell (``check``, alerts)."""

    APP = "app"
    SHELL = "shell"


@dataclass(frozen=True)
class Problem:
    """Something a person has to act on (``check`` JSON ``problems``, docs/JSON.md)."""

    severity: Severity  # warning | critical
    kind: ProblemKind
    message: str
    next_step: str = ""  # what to do, said for the shell ('report-keeper sync')
    day: date | None = None
    file: str | None = None
    rescue_by: date | None = None
    delete_on: date | None = None
    #: The same step said for the app (its keys), when it differs from ``next_step``.
    app_step: str = ""

    def step(self, audience: Audience) -> str:
        """The next step as said where it is shown: the app names keys, the shell commands."""
        return (self.app_step or self.next_step) if audience == Audience.APP else self.next_step

    def to_json(self) -> JSONObject:
        return {
            "severity": self.severity,
            "kind": self.kind,
            "day": iso(self.day),
            "file": self.file,
            "rescue_by": iso(self.rescue_by),
            "delete_on": iso(self.delete_on),
            "message": self.message,
            "next_step": self.next_step,
        }
