"""The demo scenario: generated Alma-shaped reports, relative to now (README "Quick start").

About 70 days of the daily report "Loans Per Patron From 3 Days Ago" (07:00 in the library's
time zone); the 60-day server retention has already deleted the older ones, so the folder
starts with a file a few days from deletion. Also in the folder: a missing day whose data
can still be rescued, a late delivery, a zero-row report on an open day, a zero-row report
on a holiday (a configured closed day), a corrupt file, a duplicate delivery (a manual
re-run), and a second, weekly report.

Every date is relative to :func:`tui.core.clock.now` (``REPORT_KEEPER_NOW``), so a pinned
clock gives the same files byte for byte. Generated data holds no real people: patron ids
are synthetic numbers with leading zeros, barcodes and call numbers are made up.

Public API:

- ``generate(folder, now=None) -> DemoScenario`` writes the ``.xlsx`` files (mtimes set to
  the delivery times) under ``folder / DEMO_REMOTE_DIR`` and describes which day is which.
- ``demo_config(...) -> Profile`` the profile (time zone, reports, closed days) for them.
- ``generated_closed_day(folder)`` the holiday of a folder generated earlier (a restart).
"""

from __future__ import annotations

import logging
import os
import random
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from tui.core import clock
from tui.core.config import DayRange, Profile, ReportConfig

if TYPE_CHECKING:
    from xlsxwriter.format import Format
    from xlsxwriter.worksheet import Worksheet

log = logging.getLogger("report_keeper.demo.data")

DEMO_TZ = "America/Chicago"
DEMO_REMOTE_DIR = "upload/ALMA/Daily_Report"
DAILY = "Loans Per Patron From 3 Days Ago"
WEEKLY = "Weekly Loans By User Group"
DAILY_COLUMNS = (
    "Primary Identifier", "User Group", "Loan Date", "Item Barcode", "Library Name",
    "Permanent Call Number", "Loans (not In House)",
)
WEEKLY_COLUMNS = ("Library Name", "User Group", "Loans (not In House)")
HISTORY_DAYS = 70  # the scenario's span; older files are gone from the server already
RETENTION_DAYS = 60
OLDEST_AGE = 57  # the oldest file still in the folder: 3 days from deletion

# Days ago (run day = today - N) of each case.
MISSING_AGO = 2  # rescue-by (run - 3 + 7) is still ahead: re-run it in Alma
LATE_AGO = 5
EMPTY_OPEN_AGO = 8
CORRUPT_AGO = 15
HOLIDAY_AGO = 20  # the run covering a closed day (the holiday is HOLIDAY_AGO + 3 days ago)
DUPLICATE_AGO = 30
# The demo opens as after weeks of use: a previous sync fetched the runs of SYNCED_FROM_AGO to
# SYNCED_UNTIL_AGO days ago, so their verification shows at once (empty, holiday, corrupt...).
# Older files (never fetched, some near deletion) and the newest ones are new.
SYNCED_FROM_AGO = 42
SYNCED_UNTIL_AGO = 4

# Kinds of demo files.
OK = "ok"
LATE = "late"
EMPTY = "empty"
EMPTY_CLOSED = "empty-closed"
CORRUPT = "corrupt"
DUPLICATE = "duplicate"

_LIBRARIES = ("Main Library", "Science Library", "Music Library", "Law Library")
_GROUPS = ("Undergraduate", "Graduate", "Faculty", "Staff", "Community Borrower")
_CLASSES = ("QA", "QC", "PS", "PR", "HF", "BF", "ML", "KF", "TK", "RC", "E", "F", "N", "Z")


@dataclass(frozen=True)
class DemoFile:
    name: str
    report: str
    run_day: date  # the scheduled run day (local)
    delivered_at: datetime  # aware, local time zone
    kind: str  # ok | late | empty | empty-closed | corrupt | duplicate
    rows: int | None  # data rows (None for the corrupt file)
    size: int = 0


@dataclass(frozen=True)
class DemoScenario:
    """Which day is which in the generated folder (dates are local run days)."""

    folder: Path  # the server root (the demo server's chroot)
    remote_dir: str  # relative to folder
    now: datetime
    tz: ZoneInfo
    today: date
    files: tuple[DemoFile, ...]
    missing_day: date
    late_day: date
    empty_day: date  # zero rows on an open day
    holiday_run_day: date  # zero rows, the covered loan day is closed
    closed_day: date  # the holiday (a covered loan day)
    corrupt_day: date
    duplicate_day: date
    oldest_day: date  # the oldest file still on the server, a few days from deletion
    expired_days: tuple[date, ...] = field(default=())  # run days already deleted by retention

    @property
    def directory(self) -> Path:
        return self.folder / self.remote_dir

    def file_of(self, kind: str) -> DemoFile:
        return next(f for f in self.files if f.kind == kind)

    def files_on(self, day: date, report: str = DAILY) -> list[DemoFile]:
        return [f for f in self.files if f.run_day == day and f.report == report]

    @property
    def already_synced(self) -> tuple[DemoFile, ...]:
        """The files a previous sync fetched (see ``SYNCED_FROM_AGO``)."""
        first = self.today - timedelta(days=SYNCED_FROM_AGO)
        last = self.today - timedelta(days=SYNCED_UNTIL_AGO)
        return tuple(f for f in self.files if first <= f.run_day <= last)

    @property
    def near_deletion(self) -> DemoFile:
        return min((f for f in self.files), key=lambda f: f.delivered_at)


def file_name(report: str, delivered_at: datetime) -> str:
    """Alma's name with "Add Timestamp": ``<report>_<YYYYMMDD>_<HHMMSS>.xlsx`` (local time)."""
    return f"{report}_{delivered_at.strftime('%Y%m%d_%H%M%S')}.xlsx"


def _closed_day(generated_on: date) -> date:
    """The holiday of the reports generated on ``generated_on``."""
    return generated_on - timedelta(days=HOLIDAY_AGO + 3)


def generate(folder: str | Path, now: datetime | None = None) -> DemoScenario:
    """Write the demo reports under ``folder/DEMO_REMOTE_DIR``; return what is where."""
    tz = ZoneInfo(DEMO_TZ)
    now = (now or clock.now()).astimezone(tz)
    today = now.date()
    root = Path(folder)
    target = root / DEMO_REMOTE_DIR
    target.mkdir(parents=True, exist_ok=True)

    def ago(n: int) -> date:
        return today - timedelta(days=n)

    closed_day = _closed_day(today)
    files: list[DemoFile] = []
    expired: list[date] = []

    for n in range(HISTORY_DAYS - 1, -1, -1):
        run_day = ago(n)
        rng = random.Random(f"daily-{run_day.isoformat()}")
        if n > OLDEST_AGE:
            expired.append(run_day)
            continue
        if n == MISSING_AGO:
            continue
        kind, at = OK, time(7, 0, rng.randint(5, 59))
        if n == LATE_AGO:
            kind, at = LATE, time(11, 42, 17)
        elif n == EMPTY_OPEN_AGO:
            kind = EMPTY
        elif n == HOLIDAY_AGO:
            kind = EMPTY_CLOSED
        elif n == CORRUPT_AGO:
            kind = CORRUPT
        delivered = datetime.combine(run_day, at, tzinfo=tz)
        if delivered > now:
            continue  # today's run has not happened yet
        files.append(_write_daily(target, run_day, delivered, kind, rng))
        if n == DUPLICATE_AGO:
            again = datetime.combine(run_day, time(14, 10, 3), tzinfo=tz)
            files.append(_write_daily(target, run_day, again, DUPLICATE, rng))

    for n in range(OLDEST_AGE, -1, -1):
        run_day = ago(n)
        if run_day.weekday() != 0:  # Mondays at 06:30
            continue
        delivered = datetime.combine(run_day, time(6, 30, 12), tzinfo=tz)
        if delivered > now:
            continue
        files.append(_write_weekly(target, run_day, delivered))

    files.sort(key=lambda f: f.delivered_at)
    log.info("demo: %d report files written to %s", len(files), target)
    return DemoScenario(
        folder=root,
        remote_dir=DEMO_REMOTE_DIR,
        now=now,
        tz=tz,
        today=today,
        files=tuple(files),
        missing_day=ago(MISSING_AGO),
        late_day=ago(LATE_AGO),
        empty_day=ago(EMPTY_OPEN_AGO),
        holiday_run_day=ago(HOLIDAY_AGO),
        closed_day=closed_day,
        corrupt_day=ago(CORRUPT_AGO),
        duplicate_day=ago(DUPLICATE_AGO),
        oldest_day=ago(OLDEST_AGE),
        expired_days=tuple(expired),
    )


def generated_closed_day(folder: str | Path) -> date | None:
    """The holiday of the demo reports ``generate`` wrote earlier into ``folder``, or None.

    A served folder keeps its files while days pass, so the holiday is the files' own (the
    oldest daily report was written ``OLDEST_AGE`` days before the day of the generation),
    not one counted back from today. Told from the names only: nothing is opened.
    """
    pattern = re.compile(re.escape(DAILY) + r"_([0-9]{8})_[0-9]{6}\.xlsx")
    days = []
    try:
        names = os.listdir(Path(folder) / DEMO_REMOTE_DIR)
    except OSError:
        return None
    for name in names:
        found = pattern.fullmatch(name)
        if found:
            try:
                days.append(datetime.strptime(found[1], "%Y%m%d").date())
            except ValueError:
                continue
    if not days:
        return None
    return _closed_day(min(days) + timedelta(days=OLDEST_AGE))


def demo_reports(closed_day: date | None = None) -> tuple[ReportConfig, ...]:
    closed = (DayRange(closed_day, closed_day),) if closed_day else ()
    return (
        ReportConfig(
            name=DAILY, schedule="daily", at=time(7, 0), grace=timedelta(hours=2), lag_days=3,
            anonymize_days=7, retention_days=RETENTION_DAYS, min_rows=1,
            expected_columns=("Primary Identifier", "Item Barcode", "Loan Date"),
            closed_days=closed, configured=True,
        ),
        ReportConfig(
            name=WEEKLY, schedule="weekly:MON", at=time(6, 30), grace=timedelta(hours=2),
            lag_days=0, anonymize_days=7, retention_days=RETENTION_DAYS, min_rows=1,
            expected_columns=WEEKLY_COLUMNS, closed_days=closed, configured=True,
        ),
    )


def demo_config(
    *,
    host: str = "127.0.0.1",
    port: int = 22,
    username: str = "demo",
    key: str | Path | None = None,
    known_hosts: str | Path | None = None,
    local_dir: str | Path,
    ledger: str | Path | None = None,
    closed_day: date | None = None,
    now: datetime | None = None,
    name: str = "demo",
) -> Profile:
    """The demo profile: the demo reports, Chicago time, the holiday as a closed day.

    ``closed_day`` defaults to the scenario's holiday for ``now`` (the clock by default).
    """
    tz = ZoneInfo(DEMO_TZ)
    if closed_day is None:
        closed_day = _closed_day((now or clock.now()).astimezone(tz).date())
    profile = Profile(
        name=name,
        host=host,
        port=port,
        username=username,
        key=Path(key) if key else None,
        remote_dir=DEMO_REMOTE_DIR,
        local_dir=Path(local_dir),
        timezone=tz,
        concurrency=4,
        connect_timeout=10.0,
        ledger=Path(ledger) if ledger else None,
        reports=demo_reports(closed_day),
        source="demo",
    )
    return replace(profile, known_hosts=Path(known_hosts)) if known_hosts is not None else profile


# ------------------------------------------------------------------------------ writers


def _set_mtime(path: Path, when: datetime) -> None:
    ts = when.timestamp()
    os.utime(path, (ts, ts))


def _title_rows(ws: Worksheet, bold: Format, title: str, subtitle: str) -> None:
    ws.write(0, 0, title, bold)
    ws.write(1, 0, subtitle)


def _write_daily(folder: Path, run_day: date, delivered: datetime, kind: str, rng: random.Random) -> DemoFile:
    import xlsxwriter  # noqa: PLC0415 - only writing needs it; demo_config is used where start-up is timed

    name = file_name(DAILY, delivered)
    path = folder / name
    loan_day = demo_reports()[0].covered_day(run_day)
    if kind == CORRUPT:
        # A transfer cut short on Alma's side: the start of a zip archive, then nothing.
        blob = b"PK\x03\x04\x14\x00\x06\x00\x08\x00" + bytes(rng.getrandbits(8) for _ in range(4086))
        path.write_bytes(blob)
        _set_mtime(path, delivered)
        return DemoFile(name, DAILY, run_day, delivered, kind, None, len(blob))
    if kind in (EMPTY, EMPTY_CLOSED):
        rows = 0
    else:
        weekend = loan_day.weekday() >= 5
        rows = rng.randint(8, 30) if weekend else rng.randint(40, 140)
    wb = xlsxwriter.Workbook(str(path), {"in_memory": True})
    wb.set_properties({"title": DAILY, "author": "Alma Analytics", "created": delivered.replace(tzinfo=None)})
    ws = wb.add_worksheet("Sheet1")
    bold = wb.add_format({"bold": True})
    datefmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    _title_rows(ws, bold, DAILY, f"Loan Date is equal to {loan_day.isoformat()}")
    for c, col in enumerate(DAILY_COLUMNS):
        ws.write(2, c, col, bold)
    if rows == 0 and kind == EMPTY:
        # What Alma Analytics puts where there is no data.
        ws.write(3, 0, "No Results")
    for r in range(rows):
        patron = f"{rng.randint(1, 99999):08d}"  # synthetic ids, leading zeros kept as text
        ws.write_string(3 + r, 0, patron)
        ws.write_string(3 + r, 1, rng.choice(_GROUPS))
        ws.write_datetime(3 + r, 2, datetime.combine(loan_day, time()), datefmt)
        ws.write_string(3 + r, 3, f"3{rng.randint(10**12, 10**13 - 1)}")
        ws.write_string(3 + r, 4, rng.choice(_LIBRARIES))
        ws.write_string(
            3 + r, 5, f"{rng.choice(_CLASSES)}{rng.randint(1, 9999)} "
            f".{chr(65 + rng.randint(0, 25))}{rng.randint(1, 99)} {rng.randint(1950, 2026)}"
        )
        ws.write_number(3 + r, 6, rng.randint(1, 4))
    ws.set_column(0, len(DAILY_COLUMNS) - 1, 18)
    wb.close()
    _set_mtime(path, delivered)
    return DemoFile(name, DAILY, run_day, delivered, kind, rows, path.stat().st_size)


def _write_weekly(folder: Path, run_day: date, delivered: datetime) -> DemoFile:
    import xlsxwriter  # noqa: PLC0415 - see _write_daily

    rng = random.Random(f"weekly-{run_day.isoformat()}")
    name = file_name(WEEKLY, delivered)
    path = folder / name
    wb = xlsxwriter.Workbook(str(path), {"in_memory": True})
    wb.set_properties({"title": WEEKLY, "author": "Alma Analytics", "created": delivered.replace(tzinfo=None)})
    ws = wb.add_worksheet("Sheet1")
    bold = wb.add_format({"bold": True})
    first = run_day - timedelta(days=7)
    last = run_day - timedelta(days=1)
    _title_rows(ws, bold, WEEKLY, f"Loan Date between {first.isoformat()} and {last.isoformat()}")
    for c, col in enumerate(WEEKLY_COLUMNS):
        ws.write(2, c, col, bold)
    r = 3
    for lib in _LIBRARIES:
        for group in _GROUPS:
            ws.write_string(r, 0, lib)
            ws.write_string(r, 1, group)
            ws.write_number(r, 2, rng.randint(0, 400))
            r += 1
    wb.close()
    _set_mtime(path, delivered)
    return DemoFile(name, WEEKLY, run_day, delivered, OK, r - 3, path.stat().st_size)
