"""Plain records shared by the core, the SFTP side, the CLI and the screens."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class VerifyResult:
    """One verified file (SPEC JSON "a verified file")."""

    path: str
    name: str
    report: str | None
    delivered_at: datetime | None
    status: str
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
    dates: Any = None  # tui.core.content.DateCoverage | None
    covered_day: date | None = None

    def to_json(self) -> dict[str, Any]:
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
        }


@dataclass(frozen=True)
class RemoteFile:
    """One entry of a server listing. ``name`` is untrusted server input."""

    name: str
    size: int
    mtime: datetime  # aware


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
    verification: str | None = None  # validator status of the local copy
    rows: int | None = None
    message: str = ""
    changed: bool = False  # server copy changed after download
    extra: dict[str, Any] = field(default_factory=dict)
    fingerprint: str | None = None  # of the verified copy's data rows (tui.core.content)
    coverage: Any = None  # tui.core.content.DateCoverage of its date column, or None

    @property
    def downloaded(self) -> bool:
        return self.downloaded_at is not None


# Run statuses (SPEC "Schedule and deadlines").
ON_TIME = "on-time"
LATE = "late"
MISSING = "missing"
PENDING = "pending"


@dataclass(frozen=True)
class RunDay:
    """One expected run day of a report, as the schedule evaluation sees it."""

    day: Any  # datetime.date, the run day in the profile's time zone
    status: str  # ON_TIME | LATE | MISSING | PENDING
    files: tuple[str, ...] = ()
    verification: str | None = None  # worst validator status of its files (None: not verified)
    rows: int | None = None  # data rows of its (first ok) file
    delivered_at: datetime | None = None  # first delivery of that run
    rescue_by: Any = None  # date: last day a manual re-run in Alma still has the data
    delete_on: Any = None  # date: the server deletes the (first) file on this day
    closed: bool = False  # the covered loan day is a configured closed day
    covered_day: Any = None  # date: the loan day the run covers (day - lag_days)
    content: tuple[str, ...] = ()  # content problems of its files: wrong-day, stale, few-rows


@dataclass(frozen=True)
class Problem:
    """Something a person has to act on (SPEC ``check`` JSON ``problems``)."""

    severity: str  # "warning" | "critical"
    kind: str  # missing late empty schema unreadable near-deletion lost changed connection
    #            missing-locally ...
    message: str
    next_step: str = ""
    day: Any = None  # date
    file: str | None = None
    rescue_by: Any = None  # date
    delete_on: Any = None  # date

    def to_json(self) -> dict[str, Any]:
        def d(v):
            return v.isoformat() if v is not None else None

        return {
            "severity": self.severity,
            "kind": self.kind,
            "day": d(self.day),
            "file": self.file,
            "rescue_by": d(self.rescue_by),
            "delete_on": d(self.delete_on),
            "message": self.message,
            "next_step": self.next_step,
        }
