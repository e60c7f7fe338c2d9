"""A known delivery history for the schedule, health and ``check`` tests.

About 70 days (Thu 1 Oct .. Thu 10 Dec 2026, "now" = Thu 10 Dec 2026 08:00 America/Chicago) of
two reports on different schedules:

- ``DAILY`` "Loans Per Patron From 3 Days Ago": configured ``daily`` at 07:00, grace 2h,
  lag 3 days, anonymized after 7, server retention 60 days;
- ``WEEKLY`` "Weekly Circulation Summary": Mon and Thu at about 06:05, grace 1h, lag 1 day, with
  NO schedule configured, so it is inferred from history (``weekly:MON,THU`` at 06:00).

Every problem kind, a daylight-saving change (Sun 1 Nov 2026, CDT -> CST) and a holiday
(Thanksgiving, Thu 26 - Fri 27 Nov, a configured closed range) are in it; ``EXPECTED_PROBLEMS``
and ``expected_run_statuses()`` say exactly what the evaluation must find.

``Scenario`` can also make it real: ``write_files(archive_dir)`` writes every delivery as a real
.xlsx (xlsx_factory), ``server_dir`` gets the files still on the server at "now" with their
mtimes, and ``seed_ledger(ledger)`` replays the history into the ledger (one listing and the
downloads per day, the server's 60-day deletion, a file changed on the server after download),
as daily ``sync`` runs would have recorded it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tui.core.model import Delivery, RemoteFile, VerifyResult

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 12, 10, 8, 0, tzinfo=TZ)
NOW_ISO = NOW.isoformat()  # for REPORT_KEEPER_NOW
TODAY = NOW.date()
FIRST = date(2026, 10, 1)

DAILY = "Loans Per Patron From 3 Days Ago"
WEEKLY = "Weekly Circulation Summary"
RETENTION = 60
LOANS_COLUMNS = (
    "Primary Identifier", "User Group", "Loan Date", "Item Barcode", "Title", "Loans (Not In House)",
)  # tests.xlsx_factory.LOANS_COLUMNS

D = date  # short alias for the tables below


def local(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=TZ)


def file_name(report: str, at: datetime) -> str:
    return f"{report}_{at:%Y%m%d_%H%M%S}.xlsx"


@dataclass
class Planned:
    """One delivery as it happened, and its state at NOW."""

    report: str
    run_day: date  # the run it belongs to
    delivered_at: datetime  # local, whole seconds
    verification: str = "ok"  # validator status of the downloaded copy
    rows: int = 12
    downloaded: bool = True
    changed_on: date | None = None  # the server's copy replaced on this day (after download)

    @property
    def name(self) -> str:
        return file_name(self.report, self.delivered_at)

    @property
    def delete_on(self) -> date:
        return self.delivered_at.date() + timedelta(days=RETENTION)

    def on_server_at(self, day: date) -> bool:
        """The server deletes a file at the start of its delete-on day."""
        return self.delivered_at.date() <= day < self.delete_on


def _plan() -> list[Planned]:
    out: list[Planned] = []
    # -- the daily report ------------------------------------------------------------------
    special_daily = {
        D(2026, 10, 5): dict(downloaded=False),  # lost: never downloaded, deleted on 4 Dec
        D(2026, 10, 20): dict(at=(12, 0, 0)),  # late, long ago: no problem any more
        D(2026, 10, 24): dict(downloaded=False),  # near deletion: deleted on 23 Dec
        D(2026, 10, 31): dict(at=(6, 5, 0)),  # CDT: 11:05 UTC, inside 06:00-09:00 CDT
        D(2026, 11, 1): dict(at=(6, 10, 0)),  # DST ends this morning
        D(2026, 11, 2): dict(at=(8, 50, 0)),  # CST: 14:50 UTC, before 09:00 CST (15:00 UTC)
        D(2026, 11, 3): dict(changed_on=D(2026, 11, 5)),  # changed on the server
        D(2026, 11, 10): None,  # missing, too late to re-run (warning)
        D(2026, 11, 20): dict(verification="schema"),
        D(2026, 11, 29): dict(verification="empty-closed", rows=0),  # covers Thanksgiving
        D(2026, 11, 30): dict(verification="empty-closed", rows=0),  # covers the day after
        D(2026, 12, 4): dict(verification="unreadable", rows=None),  # re-run too late (8 Dec)
        D(2026, 12, 7): None,  # missing, rescue by 11 Dec (critical)
        D(2026, 12, 8): dict(at=(11, 30, 0)),  # late
        D(2026, 12, 9): dict(verification="empty", rows=0),  # empty on an open day
        D(2026, 12, 10): None,  # pending at 08:00 (deadline 09:00)
    }
    day = FIRST
    while day <= TODAY:
        spec = special_daily.get(day, {})
        if spec is not None:
            hh, mm, ss = spec.pop("at", (7, 3 + day.day % 7, 11))
            out.append(Planned(DAILY, day, local(day, hh, mm, ss), **spec))
        if day == D(2026, 11, 15):  # a duplicate delivery: both kept
            out.append(Planned(DAILY, day, local(day, 7, 41, 2)))
        day += timedelta(days=1)
    # -- the weekly report (Mon, Thu) --------------------------------------------------------
    day = FIRST
    while day <= TODAY:
        if day.weekday() in (0, 3):
            if day == D(2026, 11, 23):
                pass  # missing, too late to re-run (warning)
            elif day == D(2026, 12, 7):
                out.append(Planned(WEEKLY, day, local(day, 9, 15, 0), rows=40))  # late
            elif day == TODAY:
                out.append(Planned(WEEKLY, day, local(day, 6, 5, 0), rows=40, downloaded=False))
            else:
                out.append(Planned(WEEKLY, day, local(day, 6, 5, 30), rows=40))
        day += timedelta(days=1)
    return out


PLAN = _plan()


def planned(report: str, run_day: date) -> list[Planned]:
    return [p for p in PLAN if p.report == report and p.run_day == run_day]


def name_of(report: str, run_day: date, index: int = 0) -> str:
    return planned(report, run_day)[index].name


# -- what the evaluation must find -----------------------------------------------------------

MISSING = {DAILY: {D(2026, 11, 10), D(2026, 12, 7)}, WEEKLY: {D(2026, 11, 23)}}
LATE = {DAILY: {D(2026, 10, 20), D(2026, 12, 8)}, WEEKLY: {D(2026, 12, 7)}}
PENDING = {DAILY: {D(2026, 12, 10)}, WEEKLY: set()}


def expected_run_statuses(report: str) -> dict[date, str]:
    """Every expected run day of ``report`` and its status at NOW."""
    days = []
    day = FIRST
    while day <= TODAY:
        if report == DAILY or day.weekday() in (0, 3):
            days.append(day)
        day += timedelta(days=1)
    out = {}
    for d in days:
        if d in MISSING[report]:
            out[d] = "missing"
        elif d in LATE[report]:
            out[d] = "late"
        elif d in PENDING[report]:
            out[d] = "pending"
        else:
            out[d] = "on-time"
    return out


@dataclass(frozen=True)
class ExpectedProblem:
    report: str
    kind: str
    severity: str
    day: date
    file: str | None
    rescue_by: date | None
    delete_on: date | None

    def to_json(self) -> dict:
        def iso(v: date | None) -> str | None:
            return v.isoformat() if v else None

        return {"severity": self.severity, "kind": self.kind, "day": iso(self.day), "file": self.file,
                "rescue_by": iso(self.rescue_by), "delete_on": iso(self.delete_on)}


def _p(report, kind, severity, day, *, file_of=None, rescue_by=None, delete_on=None):
    return ExpectedProblem(report, kind, severity, day, file_of, rescue_by, delete_on)


def _expected() -> list[ExpectedProblem]:
    n = name_of
    return [
        _p(DAILY, "missing", "critical", D(2026, 12, 7), rescue_by=D(2026, 12, 11)),
        _p(DAILY, "unreadable", "critical", D(2026, 12, 4), file_of=n(DAILY, D(2026, 12, 4)),
           rescue_by=D(2026, 12, 8), delete_on=D(2027, 2, 2)),
        _p(DAILY, "schema", "critical", D(2026, 11, 20), file_of=n(DAILY, D(2026, 11, 20)),
           delete_on=D(2027, 1, 19)),
        _p(DAILY, "lost", "critical", D(2026, 10, 5), file_of=n(DAILY, D(2026, 10, 5)),
           rescue_by=D(2026, 10, 9), delete_on=D(2026, 12, 4)),  # the re-run's date, as its step says
        _p(DAILY, "empty", "warning", D(2026, 12, 9), file_of=n(DAILY, D(2026, 12, 9)),
           rescue_by=D(2026, 12, 13), delete_on=D(2027, 2, 7)),
        _p(DAILY, "near-deletion", "warning", D(2026, 10, 24), file_of=n(DAILY, D(2026, 10, 24)),
           delete_on=D(2026, 12, 23)),
        _p(DAILY, "missing", "warning", D(2026, 11, 10), rescue_by=D(2026, 11, 14)),
        _p(DAILY, "late", "warning", D(2026, 12, 8), file_of=n(DAILY, D(2026, 12, 8)),
           delete_on=D(2027, 2, 6)),
        _p(DAILY, "changed", "warning", D(2026, 11, 3), file_of=n(DAILY, D(2026, 11, 3)),
           delete_on=D(2027, 1, 2)),
        _p(WEEKLY, "missing", "warning", D(2026, 11, 23), rescue_by=D(2026, 11, 29)),
        _p(WEEKLY, "late", "warning", D(2026, 12, 7), file_of=n(WEEKLY, D(2026, 12, 7)),
           delete_on=D(2027, 2, 5)),
    ]


EXPECTED_PROBLEMS = _expected()
EXPECTED_EXIT = 2


# -- configuration ---------------------------------------------------------------------------


def config_toml(*, host: str = "127.0.0.1", port: int = 22, username: str = "alma",
                key: str | None = None, known_hosts: str | None = None, remote_dir: str = "reports",
                local_dir: str = "local", ledger: str = "ledger.sqlite3",
                ssh_config: str | None = None) -> str:
    lines = [
        "[profile.default]",
        f'host = "{host}"',
        f"port = {port}",
        f'username = "{username}"',
    ]
    if key:
        lines.append(f'key = "{key}"')
    if known_hosts:
        lines.append(f'known_hosts = "{known_hosts}"')
    if ssh_config:
        lines.append(f'ssh_config = "{ssh_config}"')
    lines += [
        f'remote_dir = "{remote_dir}"',
        f'local_dir = "{local_dir}"',
        f'ledger = "{ledger}"',
        'timezone = "America/Chicago"',
        "",
        "[[profile.default.report]]",
        f'name = "{DAILY}"',
        'schedule = "daily"',
        'at = "07:00"',
        'grace = "2h"',
        "lag_days = 3",
        "anonymize_days = 7",
        f"retention_days = {RETENTION}",
        'closed_days = ["2026-11-26..2026-11-27"]',
        "expected_columns = [" + ", ".join(f'"{c}"' for c in LOANS_COLUMNS) + "]",
        "",
        "[[profile.default.report]]",
        f'name = "{WEEKLY}"',
        'grace = "1h"',
        "lag_days = 1",
        "anonymize_days = 7",
        f"retention_days = {RETENTION}",
        'closed_days = ["2026-11-26..2026-11-27"]',
        "",
    ]
    return "\n".join(lines)


def profile(**kwargs):
    """The scenario's ``config.Profile`` (parsed from ``config_toml``)."""
    import tomllib

    from tui.core.config import parse_config

    return parse_config(tomllib.loads(config_toml(**kwargs))).profile("default")


# -- deliveries as the ledger would return them at NOW -----------------------------------------


def _utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


def deliveries(now: datetime = NOW) -> list[Delivery]:
    """The history as ``Ledger.deliveries()`` gives it at ``now`` (plain records, no files)."""
    today = now.astimezone(TZ).date()
    out = []
    for p in PLAN:
        if p.delivered_at > now:
            continue
        on_server = p.on_server_at(today)
        downloaded = p.downloaded and p.delivered_at.date() < today
        gone_at = None if on_server else _utc(local(p.delete_on, 0, 30))
        out.append(Delivery(
            name=p.name,
            report=p.report,
            delivered_at=_utc(p.delivered_at),
            size=10_000,
            mtime=_utc(p.delivered_at),
            first_seen=_utc(p.delivered_at) + timedelta(minutes=30),
            last_seen=_utc(now) if on_server else _utc(local(p.delete_on - timedelta(days=1), 23, 0)),
            on_server=on_server,
            gone_at=gone_at,
            downloaded_at=_utc(p.delivered_at) + timedelta(hours=1) if downloaded else None,
            local_path=f"/local/{p.name}" if downloaded else None,
            sha256=hashlib.sha256(p.name.encode()).hexdigest() if downloaded else None,
            verification=p.verification if downloaded else None,
            rows=p.rows if downloaded else None,
            changed=p.changed_on is not None and p.changed_on <= today,
        ))
    return out


# -- real files, a real server folder and a real ledger ------------------------------------------


@dataclass
class Files:
    """Real files of the scenario: ``content[name]`` the bytes first delivered, ``current``
    the server's copy now (differs for the changed file)."""

    archive: Path
    content: dict[str, bytes] = field(default_factory=dict)
    current: dict[str, bytes] = field(default_factory=dict)


def write_files(archive: Path) -> Files:
    """Write every delivery as a real workbook under ``archive`` (the bytes Alma produced)."""
    from tests import xlsx_factory as xf

    archive.mkdir(parents=True, exist_ok=True)
    files = Files(archive)
    for i, p in enumerate(PLAN):
        path = archive / p.name
        covered = p.run_day - timedelta(days=3 if p.report == DAILY else 1)
        subtitle = f"Loans of {covered.isoformat()}"
        if p.verification == "unreadable":
            xf.write_truncated(path)
        elif p.verification == "schema":
            xf.write_report(path, n_rows=p.rows, title=p.report, subtitle=subtitle, day=covered, seed=i,
                            columns=("Patron", "Group", "Date", "Barcode", "Title", "Count"))
        elif p.verification in ("empty", "empty-closed"):
            xf.write_report(path, [], title=p.report, subtitle=subtitle, message="No Results")
        else:
            xf.write_report(path, n_rows=p.rows, title=p.report, subtitle=subtitle, day=covered, seed=i)
        files.content[p.name] = path.read_bytes()
        files.current[p.name] = files.content[p.name]
        if p.changed_on is not None:
            changed = archive / f"changed-{p.name}"
            xf.write_report(changed, n_rows=p.rows + 3, title=p.report, subtitle=subtitle + " (re-run)",
                            day=covered, seed=i + 1000)
            files.current[p.name] = changed.read_bytes()
            changed.unlink()
    return files


def _mtime_of(p: Planned) -> datetime:
    if p.changed_on is not None:
        return _utc(local(p.changed_on, 10, 0))
    return _utc(p.delivered_at)


def fill_server_dir(server_dir: Path, files: Files, day: date = TODAY) -> list[str]:
    """Put the files still on the server on ``day`` into ``server_dir`` with their mtimes."""
    server_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for p in PLAN:
        if not p.on_server_at(day) or p.delivered_at > NOW:
            continue
        target = server_dir / p.name
        target.write_bytes(files.current[p.name])
        ts = _mtime_of(p).timestamp()
        os.utime(target, (ts, ts))
        names.append(p.name)
    return names


def _remote(p: Planned, files: Files, day: date) -> RemoteFile:
    if p.changed_on is not None and day >= p.changed_on:
        return RemoteFile(p.name, len(files.current[p.name]), _mtime_of(p))
    return RemoteFile(p.name, len(files.content[p.name]), _utc(p.delivered_at))


def seed_ledger(ledger, files: Files, local_dir: Path, *, until: datetime = NOW,
                profile_name: str | None = None, report_of=None, validate: bool = True) -> None:
    """Replay the history into ``ledger`` as daily sync runs at 23:00 would have recorded it.

    The last listing is taken at ``until`` (default NOW: the ledger is up to date for
    ``check --offline``; pass an earlier time to let the online ``check`` list the rest).
    Downloaded files are written to ``local_dir`` and verified with the real validator
    (``validate=False``: the planned status is recorded instead); a validator verdict that
    differs from the plan raises, so the scenario cannot drift silently.
    """
    from tui.core.names import parse_name
    from tui.core.validate import validate_file

    prof = profile()
    if report_of is None:
        def report_of(f: RemoteFile):
            parsed = parse_name(f.name, mtime=f.mtime, tz=TZ)
            return parsed.base, parsed.delivered_at

    local_dir.mkdir(parents=True, exist_ok=True)
    day = FIRST
    stop = until.astimezone(TZ)
    while True:
        when = local(day, 23, 0)
        nightly = when <= stop  # the nightly sync ran: it downloaded that day's deliveries
        when = min(when, stop)
        listing = [
            _remote(p, files, day)
            for p in PLAN
            if p.on_server_at(day) and p.delivered_at <= when
        ]
        ledger.record_listing(profile_name, report_of, listing, when=_utc(when))
        for p in PLAN:
            if not (nightly and p.downloaded and p.delivered_at.date() == day):
                continue
            data = files.content[p.name]
            target = local_dir / p.name
            target.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            ledger.record_download(
                p.name, size=len(data), sha256=sha, local_path=str(target),
                mtime=_utc(p.delivered_at), when=_utc(when), profile=profile_name,
            )
            if validate:
                result = validate_file(target, prof.report_for(p.report), p.delivered_at)
                if (result.status, result.rows) != (p.verification, p.rows):
                    raise AssertionError(
                        f"the validator says {result.status}/{result.rows} for {p.name}, "
                        f"the scenario planned {p.verification}/{p.rows}: {result.message}"
                    )
            else:
                result = VerifyResult(path=str(target), name=p.name, report=p.report,
                                      delivered_at=_utc(p.delivered_at), status=p.verification,
                                      rows=p.rows, header_row=None)
            ledger.record_verification(result, sha256=sha, when=_utc(when))
        if when >= stop:
            break
        day += timedelta(days=1)
