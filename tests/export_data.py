"""Two weeks of a daily report, as real workbooks and a real ledger, for the export tests.

Written by both writers (xlsxwriter on even days, openpyxl on odd ones) and recorded in the
ledger as nightly ``sync`` runs would have: listings, downloads, real verification. Every
case the export must handle is in it, one per run day (run day → covered day = run day - 3):

====== ===========================================================================
run    what happened
====== ===========================================================================
03-01  ok
03-02  ok
03-03  ok, and a manual re-run at 10:30 (ok, other rows): the re-run wins
03-04  ok; the server's copy changed on 03-06 and the changed copy was downloaded
       beside it as ``NAME (changed ...).xlsx``: the changed copy wins
03-05  ok
03-06  ok, a column "Due Date" added (date cells at midnight: dates)
03-07  ok, with "Due Date"
03-08  "No Results" on a closed covered day (03-05): closed
03-09  truncated workbook: unreadable, excluded
03-10  ok, "Title" and "Item Barcode" swapped (reordered), with "Due Date"
03-11  no delivery: missing
03-12  a header and no rows on an open day: empty
03-13  delivered, never downloaded: missing (not held)
03-14  ok, "Renewals" added holding numbers and "n/a" (text), and a numeric identifier
03-15  pending at NOW (08:00; due by 09:00): not expected yet
====== ===========================================================================

Every file's first row is the same patron (``ALWAYS_ID``): their pseudonym must be the same
in every row. All data is synthetic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests import xlsx_factory as xf

TZ = ZoneInfo("America/Chicago")
REPORT = "Loans Per Patron From 3 Days Ago"
FIRST = date(2026, 3, 1)
LAST = date(2026, 3, 14)
NOW = datetime(2026, 3, 15, 8, 0, tzinfo=TZ)
NOW_ISO = NOW.isoformat()
LAG = 3
CLOSED_DAY = date(2026, 3, 5)
ALWAYS_ID = "000123456"
NUMERIC_ID = 987654321  # a number in an identifier column: exported as its text

BASE = list(xf.LOANS_COLUMNS)
WITH_DUE = BASE + ["Due Date"]
REORDERED = ["Primary Identifier", "User Group", "Loan Date", "Title", "Item Barcode",
             "Loans (Not In House)", "Due Date"]
WITH_RENEWALS = WITH_DUE + ["Renewals"]


def covered(run_day: date) -> date:
    return run_day - timedelta(days=LAG)


@dataclass
class Delivery:
    run_day: date
    at: datetime
    kind: str = "ok"  # ok | closed | unreadable | empty
    columns: list[str] = field(default_factory=lambda: list(BASE))
    rows: list[list[Any]] = field(default_factory=list)
    downloaded: bool = True
    engine: str = "xlsxwriter"
    changed: Delivery | None = None  # the server's copy after a change (downloaded beside)
    changed_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{REPORT}_{self.at:%Y%m%d_%H%M%S}.xlsx"


def _rows(run_day: date, n: int, seed: int, columns: list[str]) -> list[list[Any]]:
    base = xf.loan_rows(n, day=covered(run_day), seed=seed)
    base[0][0] = ALWAYS_ID
    out = []
    for r in base:
        row = dict(zip(BASE, r))
        row["Due Date"] = datetime.combine(covered(run_day) + timedelta(days=28), time(0, 0))
        row["Renewals"] = None
        out.append([row[c] for c in columns])
    return out


def plan() -> list[Delivery]:
    out: list[Delivery] = []
    day = FIRST
    while day <= LAST:
        engine = xf.ENGINES[day.day % 2]
        at = datetime.combine(day, time(7, 5, 11), tzinfo=TZ)
        n = 5 + day.day
        d = Delivery(day, at, engine=engine)
        if day.day in (6, 7):
            d.columns = list(WITH_DUE)
        if day.day == 10:
            d.columns = list(REORDERED)
        if day.day == 14:
            d.columns = list(WITH_RENEWALS)
        if day.day == 8:
            d.kind = "closed"
        elif day.day == 9:
            d.kind = "unreadable"
        elif day.day == 11:
            day += timedelta(days=1)
            continue
        elif day.day == 12:
            d.kind = "empty"
        elif day.day == 13:
            d.downloaded = False
        d.rows = _rows(day, n, seed=day.day, columns=d.columns) if d.kind == "ok" else []
        if day.day == 14:
            renew = d.columns.index("Renewals")
            for j, row in enumerate(d.rows):
                row[renew] = "n/a" if j == 1 else j
            d.rows[2][0] = NUMERIC_ID
        if day.day == 4:
            d.changed = Delivery(day, at, engine=engine, rows=_rows(day, n + 3, seed=400, columns=BASE))
            d.changed_at = datetime.combine(date(2026, 3, 6), time(10, 0), tzinfo=TZ)
        out.append(d)
        if day.day == 3:
            rerun = Delivery(day, datetime.combine(day, time(10, 30), tzinfo=TZ), engine=xf.ENGINES[1 - day.day % 2])
            rerun.rows = _rows(day, n + 2, seed=300, columns=BASE)
            out.append(rerun)
        day += timedelta(days=1)
    return out


def write_workbook(path: Path, d: Delivery) -> Path:
    if d.kind == "unreadable":
        return xf.write_truncated(path)
    if d.kind == "closed":
        return xf.write_report(path, [], columns=d.columns, engine=d.engine, message="No Results")
    return xf.write_report(path, d.rows, columns=d.columns, engine=d.engine, title=REPORT)


CONFIG = """\
[profile.default]
host = "127.0.0.1"
port = 9
username = "alma"
remote_dir = "reports"
local_dir = "local"
ledger = "ledger.sqlite3"
timezone = "America/Chicago"

[[profile.default.report]]
name = "{report}"
schedule = "daily"
at = "07:00"
grace = "2h"
lag_days = 3
closed_days = ["{closed}"]
{extra}
"""


@dataclass
class Env:
    root: Path
    deliveries: list[Delivery]
    local: Path
    config: Path
    ledger_path: Path
    paths: dict[str, Path] = field(default_factory=dict)  # local file of each download
    shas: dict[str, str] = field(default_factory=dict)  # by local file name
    content: dict[str, bytes] = field(default_factory=dict)  # first server copy, by name
    changed: dict[str, bytes] = field(default_factory=dict)  # the server copy after a change

    def profile(self) -> Any:
        from tui.core.config import load_config

        return load_config(self.config).profile()

    def ledger(self) -> Any:
        from tui.core.ledger import Ledger

        return Ledger.open(self.ledger_path)

    def delivery(self, run_day: date, index: int = 0) -> Delivery:
        return [d for d in self.deliveries if d.run_day == run_day][index]

    def sync(self, ledger: Any, day: date) -> None:
        """The nightly sync of ``day`` (23:00): list, download what arrived, verify."""
        replay_day(self, ledger, self.profile(), day)


#: Each delivery's workbook as written the first time in this process (``plan`` is the same
#: every time): the other builds copy it instead of writing it again (half with openpyxl)
_ARCHIVED: dict[str, bytes] = {}


def _archived(path: Path, d: Delivery) -> bytes:
    data = _ARCHIVED.get(path.name)
    if data is None:
        data = _ARCHIVED[path.name] = write_workbook(path, d).read_bytes()
    else:
        path.write_bytes(data)
    return data


def build(root: Path, *, extra_config: str = "", until: date = LAST) -> Env:
    """Write the workbooks and replay the nightly syncs into a real ledger (up to ``until``)."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "archive"
    archive.mkdir(exist_ok=True)
    local = root / "local"
    local.mkdir(mode=0o700, exist_ok=True)
    config = root / "config.toml"
    config.write_text(CONFIG.format(report=REPORT, closed=CLOSED_DAY.isoformat(), extra=extra_config))
    env = Env(root, plan(), local, config, root / "ledger.sqlite3")
    for d in env.deliveries:
        env.content[d.name] = _archived(archive / d.name, d)
        if d.changed is not None:
            env.changed[d.name] = _archived(archive / ("changed-" + d.name), d.changed)
    profile = env.profile()
    ledger = env.ledger()
    try:
        day = FIRST
        while day <= until:
            replay_day(env, ledger, profile, day)
            day += timedelta(days=1)
    finally:
        ledger.close()
    return env


def replay_day(env: Env, ledger: Any, profile: Any, day: date) -> None:
    """One nightly sync at 23:00 of ``day``: list, download what arrived, verify."""
    from tui.core.ledger import verification_context
    from tui.core.model import RemoteFile
    from tui.core.names import parse_name
    from tui.core.validate import validate_file
    from tui.sftp.download import changed_name

    when = datetime.combine(day, time(23, 0), tzinfo=TZ)

    def server_copy(d: Delivery) -> tuple[bytes, datetime]:
        if d.changed is not None and d.changed_at is not None and d.changed_at <= when:
            return env.changed[d.name], d.changed_at
        return env.content[d.name], d.at

    def report_of(f: Any) -> tuple[str, datetime]:
        parsed = parse_name(f.name, mtime=f.mtime, tz=TZ)
        return parsed.base, parsed.delivered_at

    listing = []
    for d in env.deliveries:
        if d.at <= when:
            data, mtime = server_copy(d)
            listing.append(RemoteFile(d.name, len(data), mtime.astimezone(UTC)))
    ledger.record_listing(None, report_of, listing, when=when)
    for d in env.deliveries:
        if not d.downloaded or d.at > when:
            continue
        data, mtime = server_copy(d)
        if d.at.date() == day:
            target = env.local / d.name
        elif d.changed is not None and d.changed_at is not None and d.changed_at.date() == day:
            remote = RemoteFile(d.name, len(data), mtime.astimezone(UTC))
            target = env.local / changed_name(d.name, remote)
        else:
            continue
        target.write_bytes(data)
        target.chmod(0o600)
        sha = hashlib.sha256(data).hexdigest()
        ledger.record_download(d.name, size=len(data), sha256=sha, local_path=str(target),
                               mtime=mtime.astimezone(UTC), when=when)
        report = profile.report_for(REPORT)
        result = validate_file(target, report, d.at)
        ledger.record_verification(result, sha256=sha, context=verification_context(report, d.at))
        env.paths[target.name] = target
        env.shas[target.name] = sha


def identifiers_in(env: Env) -> set[str]:
    """Every raw identifier the held workbooks contain (as the text a cell shows)."""
    out: set[str] = set()
    for d in env.deliveries:
        for rows in (d.rows, d.changed.rows if d.changed else []):
            for row in rows:
                out.add(str(row[0]))
    return out


def replace_copy(env: Any, ledger: Any, run_day: date, rows: Any = None, *, data: bytes | None = None,
                 columns: Any = None) -> Path:
    """Put other content in the held copy of ``run_day`` (a workbook of ``rows`` under
    ``columns``, default ``BASE``, or the bytes ``data``) and record it as a new download of
    that delivery, verified for real (as a sync would have left it)."""
    from tests import xlsx_factory as xf
    from tui.core.ledger import verification_context
    from tui.core.validate import validate_file

    d = env.delivery(run_day)
    path = env.paths[d.name]
    if data is None:
        xf.write_report(path, rows, columns=BASE if columns is None else columns, title=REPORT)
    else:
        path.write_bytes(data)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    ledger.record_download(d.name, size=len(data), sha256=sha, local_path=str(path), when=NOW)
    report = env.profile().report_for(REPORT)
    ledger.record_verification(validate_file(path, report, d.at), sha256=sha,
                               context=verification_context(report, d.at))
    return path
