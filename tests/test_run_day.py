"""One rule for the run a delivery belongs to, asked for everywhere.

A report due at 07:00 that arrives after midnight belongs to the previous day's run (late), so
the loan day it covers is that run's covered day, not the calendar day of its arrival minus
``lag_days``. The health evaluation, the validator (``verify``, ``sync`` and the Verify screen)
and the ledger's verification cache must all agree: here the covered day is a configured closed
day, so an empty file is fine everywhere, not a warning in one place and fine in another.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.xlsx_factory import write_report
from tui.core import status as st
from tui.core.config import DayRange, Profile, ReportConfig
from tui.core.health import evaluate
from tui.core.ledger import Ledger, verification_context
from tui.core.local_reports import find_local_reports, verify_local
from tui.core.model import RemoteFile
from tui.core.validate import validate_file
from tui.sftp.sync import SyncService

TZ = ZoneInfo("America/Chicago")
NAME = "Loans Per Patron From 3 Days Ago"
RUN = date(2026, 11, 10)  # the run whose delivery arrives after midnight
COVERED = RUN - timedelta(days=3)  # 7 Nov: a closed day
LATE_AT = datetime.combine(RUN + timedelta(days=1), time(1, 10, 5), tzinfo=TZ)  # 01:10 next day
NOW = datetime.combine(RUN + timedelta(days=1), time(12, 0), tzinfo=TZ)


def _file(at: datetime) -> str:
    return f"{NAME}_{at:%Y%m%d_%H%M%S}.xlsx"


def _setting(tmp_path, report: ReportConfig, history: int = 5):
    local = tmp_path / "local"
    local.mkdir(mode=0o700)
    profile = Profile(name="p", host="127.0.0.1", local_dir=local, timezone=TZ,
                      ledger=tmp_path / "ledger.sqlite3", reports=(report,))
    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    # ``history`` on-time runs before it, the late one after midnight, then the next day's own run.
    times = [datetime.combine(RUN - timedelta(days=n), time(7, 0, 9), tzinfo=TZ) for n in range(history, 0, -1)]
    times += [LATE_AT, datetime.combine(RUN + timedelta(days=1), time(7, 0, 9), tzinfo=TZ)]
    listing = [RemoteFile(_file(at), 1000, at) for at in times]
    ledger.record_listing(None, lambda f: (NAME, f.mtime), listing, NOW)
    path = write_report(local / _file(LATE_AT), [])  # an empty report
    ledger.record_download(path.name, size=1000, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                           local_path=path, mtime=LATE_AT, when=NOW)
    return profile, ledger, path


@pytest.fixture
def setting(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW.isoformat())
    report = ReportConfig(
        name=NAME, schedule="daily", at=time(7, 0), grace=timedelta(hours=2), lag_days=3,
        closed_days=(DayRange(COVERED, COVERED),), configured=True,
    )
    profile, ledger, path = _setting(tmp_path, report)
    yield profile, report, ledger, path
    ledger.close()


def test_a_delivery_after_midnight_covers_its_runs_day_everywhere(setting):
    profile, report, ledger, path = setting
    # The health evaluation: the late delivery belongs to RUN, which covers a closed day.
    run = evaluate(profile, ledger.deliveries(), now=NOW).report(NAME).run(RUN)
    assert run.files == (path.name,) and run.status == "late"
    assert run.covered_day == COVERED and run.closed
    # The validator as `verify` calls it (the report's configured schedule decides the run).
    result = validate_file(path, report, LATE_AT)
    assert result.status == st.EMPTY_CLOSED, result.message
    assert COVERED.isoformat() in result.message
    # The Verify screen's path: the local folder with the ledger's history.
    [outcome] = verify_local(find_local_reports(profile.local_dir, profile, ledger), ledger)
    assert outcome.result.status == st.EMPTY_CLOSED
    # `sync`'s path (no connection needed to verify a local copy).
    service = SyncService(profile, ledger)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    verdict, _cached = asyncio_run(service.verify_file(path, report, LATE_AT, sha256=sha, name=path.name))
    assert verdict.status == st.EMPTY_CLOSED
    # The cache key depends on the run, not on the calendar day of the arrival.
    on_time = datetime.combine(RUN, time(7, 0, 9), tzinfo=TZ)
    assert verification_context(report, LATE_AT) == verification_context(report, on_time)


def test_an_inferred_schedule_places_a_delivery_after_midnight_in_its_run_everywhere(tmp_path, monkeypatch):
    """No schedule configured: the schedule is inferred from the report's history (daily at
    07:00), and the delivery at 01:10 still belongs to the previous day's run, in the health
    evaluation, the Verify screen's verification and sync's, which read the same history."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW.isoformat())
    report = ReportConfig(name=NAME, lag_days=3, closed_days=(DayRange(COVERED, COVERED),), configured=True)
    profile, ledger, path = _setting(tmp_path, report, history=21)  # three weeks: daily at 07:00
    try:
        run = evaluate(profile, ledger.deliveries(), now=NOW).report(NAME).run(RUN)
        assert run.files == (path.name,) and run.status == "late"
        assert run.covered_day == COVERED and run.closed
        [outcome] = verify_local(find_local_reports(profile.local_dir, profile, ledger), ledger)
        assert outcome.result.status == st.EMPTY_CLOSED, outcome.result.message
        path.touch()  # not from the cache: verified again from the file
        service = SyncService(profile, ledger)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        verdict, cached = asyncio_run(service.verify_file(path, report, LATE_AT, sha256=sha, name=path.name))
        assert verdict.status == st.EMPTY_CLOSED, verdict.message
    finally:
        ledger.close()


def asyncio_run(coro):
    import asyncio

    return asyncio.run(coro)
