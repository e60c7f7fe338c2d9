"""Content checks: row fingerprints and date coverage measured in the worker, stored in the
ledger, judged by the health evaluation (stale, wrong-day, few-rows). Real workbooks from both
writers; the multi-day history is ``tests/content_scenario.py``."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests import content_scenario as cs
from tests import xlsx_factory as xf
from tui.cli import main
from tui.core import content, isolation
from tui.core import status as st
from tui.core.config import ConfigError, ReportConfig, parse_config
from tui.core.health import evaluate
from tui.core.ledger import Ledger, verification_context
from tui.core.model import Delivery, RemoteFile
from tui.core.validate import validate_file

TZ = ZoneInfo("America/Chicago")
D = date


def at(day: date, hh: int = 7, mm: int = 4) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=TZ)


DAILY = ReportConfig(name="Loans", schedule="daily", at=time(7, 0), lag_days=3)


# ------------------------------------------------------------------ the fingerprint


def test_fingerprint_ignores_writer_title_metadata_and_blank_formatting(tmp_path):
    """The same rows from xlsxwriter and openpyxl, under other titles, another header row,
    other document timestamps and formatted blank rows below: other bytes, one fingerprint."""
    rows = xf.loan_rows(40, day=D(2026, 11, 20), seed=5)
    a = xf.write_report(tmp_path / "a.xlsx", rows, engine="xlsxwriter", title="Loans", subtitle="Run 07:03")
    b = xf.write_report(tmp_path / "b.xlsx", rows, engine="openpyxl", title="Loans (re-sent)",
                        subtitle="Run 07:09 on another day", trailing_blank_rows=4)
    c = xf.write_report(tmp_path / "c.xlsx", rows, engine="openpyxl", header_row=1, title="")
    assert len({hashlib.sha256(p.read_bytes()).digest() for p in (a, b, c)}) == 3
    results = [validate_file(p, DAILY, at(D(2026, 11, 23))) for p in (a, b, c)]
    assert [r.status for r in results] == ["ok"] * 3
    assert len({r.fingerprint for r in results}) == 1
    assert content.valid_fingerprint(results[0].fingerprint)

    # Numbers as int or float, dates as date or datetime at midnight: the values, not the XML.
    plain = [[r[0], r[1], datetime.combine(r[2].date(), time()), r[3], r[4], r[5]] for r in rows]
    as_floats = [[*r[:2], r[2].date(), *r[3:5], float(r[5])] for r in plain]
    d1 = xf.write_report(tmp_path / "d1.xlsx", plain, engine="xlsxwriter")
    d2 = xf.write_report(tmp_path / "d2.xlsx", as_floats, engine="openpyxl")
    assert validate_file(d1).fingerprint == validate_file(d2).fingerprint

    # One cell, or the order of two rows, makes another fingerprint.
    changed = [list(r) for r in rows]
    changed[17][4] = "Synthetic Title 99999"
    swapped = [rows[1], rows[0], *rows[2:]]
    others = {validate_file(xf.write_report(tmp_path / f"{n}.xlsx", r)).fingerprint
              for n, r in (("changed", changed), ("swapped", swapped))}
    assert len(others | {results[0].fingerprint}) == 3


def test_no_fingerprint_without_data_rows(tmp_path):
    empty = validate_file(xf.write_report(tmp_path / "e.xlsx", [], message="No Results"), DAILY, at(D(2026, 11, 23)))
    assert (empty.status, empty.rows, empty.fingerprint, empty.dates) == ("empty", 0, None, None)


# ------------------------------------------------------------------ date coverage


def _rows_on(days: dict[date, int], seed: int = 0) -> list[list]:
    out = []
    for i, (day, n) in enumerate(days.items()):
        out += xf.loan_rows(n, day=day, seed=seed + i)
    return out


def test_coverage_is_days_and_counts_only_and_no_cell_leaves_the_worker(tmp_path):
    rows = _rows_on({D(2026, 11, 20): 50, D(2026, 11, 19): 30, D(2026, 11, 21): 5})
    rows += [[r[0], r[1], "see notes", *r[3:]] for r in xf.loan_rows(2, seed=9)]
    path = xf.write_report(tmp_path / "r.xlsx", rows, engine="openpyxl")
    result = validate_file(path, DAILY, at(D(2026, 11, 23)))
    assert result.status == "ok" and result.date_column == "Loan Date"
    cov = result.dates
    assert (cov.values, cov.not_dates, cov.distinct) == (85, 2, 3)
    assert (cov.first, cov.last) == (D(2026, 11, 19), D(2026, 11, 21))
    assert cov.days == ((D(2026, 11, 20), 50), (D(2026, 11, 19), 30), (D(2026, 11, 21), 5))
    assert cov.describes() == D(2026, 11, 20)
    doc = result.to_json()
    assert doc["dates"]["describes"] == "2026-11-20" and doc["covered_day"] == "2026-11-20"

    # What the worker sends back holds no identifier, barcode, title, time or text cell.
    reply = isolation.shared_pool().call("verify", {"path": str(path), "rules": {"date_column": None}})
    sent = json.dumps(reply)
    for row in rows:
        for cell in (row[0], row[3], row[4], str(row[2])[11:16] if not isinstance(row[2], str) else row[2]):
            assert str(cell) not in sent
    assert set(reply["result"]) <= {"status", "message", "rows", "header_row", "columns", "sheet",
                                    "fingerprint", "date_column", "dates", "sha256"}
    assert reply["result"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # of the bytes read


def test_date_column_is_guessed_configured_or_switched_off(tmp_path):
    columns = ("Primary Identifier", "Date Note", "Loan Date", "Return Time", "Title", "Loans (Not In House)")
    rows = [[r[0], "as agreed", r[2], time(9, 30), r[4], r[5]] for r in xf.loan_rows(12, day=D(2026, 11, 20))]
    path = xf.write_report(tmp_path / "r.xlsx", rows, columns=columns, engine="openpyxl")
    guessed = validate_file(path, DAILY, at(D(2026, 11, 23)))
    assert guessed.date_column == "Loan Date" and guessed.dates.values == 12  # "Date Note" holds text

    times = validate_file(path, replace(DAILY, date_column="return time"), at(D(2026, 11, 23)))
    assert times.status == "ok" and times.date_column == "Return Time"
    assert (times.dates.values, times.dates.not_dates) == (0, 12)  # time-only cells are no dates
    assert "holds no dates" in times.message

    off = validate_file(path, replace(DAILY, date_column=""), at(D(2026, 11, 24)))
    assert (off.status, off.date_column, off.dates) == ("ok", None, None)

    gone = validate_file(path, replace(DAILY, date_column="Return Date"), at(D(2026, 11, 23)))
    assert gone.status == "schema" and gone.missing_columns == ("Return Date",)
    assert "date_column" in gone.message and "Return Date" in gone.message


def test_wrong_day_is_a_validator_status_when_the_file_has_a_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    base = "Loans Per Patron From 3 Days Ago"
    folder = tmp_path / "reports"
    folder.mkdir()
    # Delivered on the 24th: covers the 21st; the rows are of the 20th (one day off).
    xf.write_report(folder / f"{base}_20261124_070500.xlsx", _rows_on({D(2026, 11, 20): 20}))
    xf.write_report(folder / f"{base}_20261125_070500.xlsx", _rows_on({D(2026, 11, 22): 20}))
    code = main(["verify", "--json", str(folder)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and doc["status"] == "critical"
    wrong, right = doc["files"]
    assert (wrong["status"], right["status"]) == ("wrong-day", "ok")
    assert "describe Fri 2026-11-20" in wrong["message"] and "covers Sat 2026-11-21" in wrong["message"]
    assert "before 2026-11-28" in wrong["message"]

    # Named without a timestamp, a copy's mtime says nothing about its run: no verdict.
    copy = folder / "copied by hand.xlsx"
    copy.write_bytes((folder / f"{base}_20261124_070500.xlsx").read_bytes())
    code = main(["verify", "--json", str(copy)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["files"][0]["status"] == "ok"
    assert doc["files"][0]["dates"]["describes"] == "2026-11-20"


def test_the_schedule_decides_the_run_of_a_delivery_before_midnight(tmp_path):
    """A report due at 00:30 that arrives at 23:50 belongs to the next day's run."""
    report = ReportConfig(name="Night", schedule="daily", at=time(0, 30), lag_days=1)
    path = xf.write_report(tmp_path / "n.xlsx", _rows_on({D(2026, 11, 23): 9}))
    early = validate_file(path, report, datetime(2026, 11, 23, 23, 50, tzinfo=TZ))
    assert early.status == "ok" and early.covered_day == D(2026, 11, 23)
    assert validate_file(path, replace(report, schedule=None, at=None),
                         datetime(2026, 11, 23, 23, 50, tzinfo=TZ)).status == "wrong-day"


# ------------------------------------------------------------------ untrusted replies


@pytest.mark.parametrize("raw", [
    None, [], {"values": -1, "not_dates": 0, "distinct": 0, "days": []},
    {"values": True, "not_dates": 0, "distinct": 0, "days": []},
    {"values": 3, "not_dates": 0, "distinct": 1, "days": [["2026-11-20", 4]]},  # more than values
    {"values": 9, "not_dates": 0, "distinct": 9, "days": [["2026-11-20", 1]] * 6},  # too many days
    {"values": 3, "not_dates": 0, "distinct": 1, "days": [["20261120", 3]]},
    {"values": 3, "not_dates": 0, "distinct": 1, "days": [["2026-11-20", "3"]]},
    {"values": 3, "not_dates": 0, "distinct": 1, "days": [["2026-11-20", 3]], "first": "yesterday"},
])
def test_a_malformed_coverage_from_a_worker_is_dropped(raw):
    assert content.DateCoverage.from_stored("Loan Date", raw) is None


def test_a_forged_worker_reply_cannot_set_a_status_or_smuggle_values():
    from tui.core.validate import _checked_fields

    forged = {"ok": True, "result": {"status": "wrong-day", "message": "x"}}
    assert _checked_fields(forged).status == "unreadable"
    fields = _checked_fields({"ok": True, "result": {
        "status": "ok", "message": "m", "rows": 1, "fingerprint": "alice@example.org",
        "date_column": "Loan Date", "dates": {"values": 1, "not_dates": 0, "distinct": 1,
                                              "days": [["2026-11-20", 1]], "patron": "0001234"}}})
    assert fields.fingerprint is None
    assert fields.dates.to_json()["days"] == [{"day": "2026-11-20", "rows": 1}]
    assert "0001234" not in json.dumps(fields.dates.to_json())
    assert content.valid_fingerprint("A" * 64) is None and content.valid_fingerprint("a" * 63) is None


# ------------------------------------------------------------------ the scenario: health


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return cs.write_files(tmp_path_factory.mktemp("alma-output"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, files):
    base = tmp_path_factory.mktemp("content-ledger")
    with Ledger.open(base / "ledger.sqlite3") as ledger:
        cs.seed_ledger(ledger, files, base / "local")
        yield ledger.deliveries()


def _problems(health):
    return sorted(
        ({"kind": p.kind, "severity": p.severity, "day": p.day.isoformat(), "file": p.file,
          "rescue_by": p.rescue_by.isoformat() if p.rescue_by else None}
         for r in health.reports for p in r.problems),
        key=lambda d: json.dumps(d, sort_keys=True),
    )


def _expected():
    return sorted(cs.expected_problems(), key=lambda d: json.dumps(d, sort_keys=True))


def test_the_scenario_finds_stale_wrong_day_and_few_rows_and_nothing_else(seeded):
    """Both writers, other bytes for the repeat; no judgement for the holiday week, weekends,
    the week after the holiday, or the early Tuesday with too little history."""
    health = evaluate(cs.profile(), seeded, now=cs.NOW)
    assert _problems(health) == _expected()
    assert health.status == "critical"
    report = health.reports[0]
    kinds = {r.day: r.content for r in report.runs if r.content}
    assert kinds == {cs.STALE_DAY: ("stale", "wrong-day"), cs.WRONG_DAY: ("wrong-day",),
                     cs.FEW_DAY: ("few-rows",)}
    by = {(p.kind, p.day): p for p in report.problems}
    assert by["stale", cs.STALE_DAY].message == (
        f"'{cs.planned(cs.STALE_DAY).name}' holds exactly the same "
        f"{cs.planned(cs.STALE_OF).rows} rows as '{cs.planned(cs.STALE_OF).name}' (the run of "
        "Tue 8 Dec): Alma sent an earlier result again instead of the loans of Sun 6 Dec")
    wrong = by["wrong-day", cs.WRONG_DAY]
    assert wrong.message.startswith(f"The rows of '{cs.planned(cs.WRONG_DAY).name}' describe loans of Sun 6 Dec (")
    assert wrong.message.endswith("dates in 'Loan Date'), but the run of Thu 10 Dec covers Mon 7 Dec")
    assert wrong.next_step == (
        "Open the analysis in Alma Analytics and check its date filter (the days-ago prompt, its "
        "time zone); then re-run 'Loans Per Patron From 3 Days Ago' in Alma Analytics for loans of "
        "Mon 7 Dec before Mon 14 Dec")
    few = by["few-rows", cs.FEW_DAY]
    assert "has 35 rows for loans of Tue 8 Dec; a Tuesday usually has " in few.message
    assert "over the last 6 Tuesdays, warned below 40%" in few.message
    assert "re-run" in few.next_step and "before Tue 15 Dec" in few.next_step
    # The run's own status follows the run's covered day; the few-rows file itself is ok.
    assert report.run(cs.WRONG_DAY).verification == "wrong-day"
    assert report.run(cs.FEW_DAY).verification == "ok"
    # Wrong-day and the rest are rescue actions: soonest rescue-by first among criticals.
    first = health.problems[0]
    assert (first.kind, first.day) == ("wrong-day", cs.STALE_DAY)


def test_the_weekly_rhythm_and_the_closed_week_are_what_keeps_them_quiet(seeded):
    """The scenario's quiet days would be "few rows" if weekdays were not compared with their
    own kind, or if the holiday week were not configured as closed."""
    import statistics

    weekday_median = statistics.median(cs.usual_rows(D(2026, 11, 2) + timedelta(days=i)) for i in range(5))
    assert cs.usual_rows(D(2026, 11, 8)) < 0.4 * weekday_median  # a Sunday
    open_week = evaluate(cs.profile(closed=False), seeded, now=cs.NOW)
    few = {p.day for p in open_week.reports[0].problems if p.kind == "few-rows"}
    holiday_runs = {cs.CLOSED[0] + timedelta(days=cs.LAG + i) for i in range(5)}
    assert holiday_runs <= few


def test_the_default_share_keeps_a_third_and_catches_a_tenth(seeded):
    health = evaluate(cs.profile(min_share=0.2), seeded, now=cs.NOW)
    assert [p for p in health.reports[0].problems if p.kind == "few-rows"] == []
    eight = [replace(d, rows=8) if d.name == cs.planned(cs.FEW_DAY).name else d for d in seeded]
    health = evaluate(cs.profile(min_share=0.2), eight, now=cs.NOW)
    few = [p for p in health.reports[0].problems if p.kind == "few-rows"]
    assert len(few) == 1 and "has 8 rows for loans of Tue 8 Dec; a Tuesday usually has" in few[0].message
    assert evaluate(cs.profile(min_share=0.0), eight, now=cs.NOW).reports[0].run(cs.FEW_DAY).content == ()


def test_wrong_day_ages_like_a_missing_run(seeded):
    """Critical while the covered day can be re-run, a warning until retention, then history."""
    later = datetime(2026, 12, 13, 10, 0, tzinfo=TZ)  # rescue-by of the 9 Dec run: today
    health = evaluate(cs.profile(), seeded, now=later)
    got = {(p.kind, p.day): p for p in health.reports[0].problems if p.kind in ("wrong-day", "stale")}
    assert got["wrong-day", cs.STALE_DAY].severity == "warning"
    assert got["wrong-day", cs.STALE_DAY].next_step.startswith("Check its date filter")
    assert "Too late to re-run" not in got["wrong-day", cs.STALE_DAY].message
    assert "too late to re-run" in got["wrong-day", cs.STALE_DAY].next_step
    assert got["wrong-day", cs.WRONG_DAY].severity == "critical"  # rescue by 14 Dec: still today
    assert got["stale", cs.STALE_DAY].severity == "warning"
    gone = evaluate(cs.profile(), seeded, now=datetime(2027, 3, 1, 10, 0, tzinfo=TZ))
    report = gone.reports[0]
    assert not [p for p in report.problems if p.kind in ("wrong-day", "stale", "few-rows")]
    assert report.run(cs.WRONG_DAY).content == ("wrong-day",)  # the calendar still shows it


def _deliveries(rows_by_day: dict[date, int], *, verification: str = "ok", fingerprint=None) -> list[Delivery]:
    out = []
    for day, rows in rows_by_day.items():
        when = at(day).astimezone(UTC)
        out.append(Delivery(
            name=f"Loans_{day:%Y%m%d}_070400.xlsx", report="Loans", delivered_at=when, size=100,
            mtime=when, first_seen=when, last_seen=when, on_server=True, downloaded_at=when,
            local_path="/x", sha256=day.isoformat(), verification=verification if rows else "empty",
            rows=rows, fingerprint=(fingerprint or (lambda d: hashlib.sha256(d.isoformat().encode()).hexdigest()))(day)
            if rows else None,
        ))
    return out


def _profile(**report):
    import tomllib

    lines = ['[profile.default]', 'host = "h"', 'timezone = "America/Chicago"', '',
             '[[profile.default.report]]', 'name = "Loans"', 'schedule = "daily"', 'at = "07:00"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in report.items()]
    return parse_config(tomllib.loads("\n".join(lines))).profile()


def test_fewer_than_four_comparable_days_is_no_judgement():
    start = D(2026, 11, 2)
    rows = {start + timedelta(days=i): 100 for i in range(22)}  # three Mondays... of covered days
    last = max(rows)
    rows[last] = 1
    health = evaluate(_profile(), _deliveries(rows), now=at(last, 12))
    assert not [p for p in health.reports[0].problems if p.kind == "few-rows"]
    rows[last + timedelta(days=7)] = 1  # the fourth comparable day
    health = evaluate(_profile(), _deliveries(rows), now=at(last + timedelta(days=7), 12))
    assert [p.day for p in health.reports[0].problems if p.kind == "few-rows"] == [last + timedelta(days=7)]


def test_zero_row_files_and_closed_days_are_never_stale():
    days = {D(2026, 11, 2) + timedelta(days=i): 0 for i in range(5)}
    same = lambda d: "f" * 64  # noqa: E731 - every file the same rows
    health = evaluate(_profile(), _deliveries(days, fingerprint=same), now=at(D(2026, 11, 6), 12))
    assert {p.kind for p in health.reports[0].problems} == {"empty"}
    days = {D(2026, 11, 2) + timedelta(days=i): 40 for i in range(5)}
    health = evaluate(_profile(closed_days=["2026-10-30..2026-11-01"]), _deliveries(days, fingerprint=same),
                      now=at(D(2026, 11, 6), 12))
    stale = [p.day for p in health.reports[0].problems if p.kind == "stale"]
    assert stale == [D(2026, 11, 5), D(2026, 11, 6)]  # runs covering the open 2 and 3 Nov
    # A repeat from more than 7 runs back is not stale.
    days = {D(2026, 11, 2) + timedelta(days=i): 40 for i in range(9)}
    fps = {D(2026, 11, 2): "a" * 64, D(2026, 11, 10): "a" * 64}
    health = evaluate(_profile(), _deliveries(days, fingerprint=lambda d: fps.get(d, d.isoformat().ljust(64, "0"))),
                      now=at(D(2026, 11, 10), 12))
    assert not [p for p in health.reports[0].problems if p.kind == "stale"]


# ------------------------------------------------------------------ config


def test_config_keys_and_their_errors():
    import tomllib

    def report(extra: str):
        text = f'[profile.default]\nhost = "h"\n[[profile.default.report]]\nname = "R"\n{extra}\n'
        return parse_config(tomllib.loads(text)).profile().report_for("R")

    r = report('date_column = " Loan Date "\nmin_share = 0.35')
    assert (r.date_column, r.min_share) == ("Loan Date", 0.35)
    r = report("")
    assert (r.date_column, r.min_share) == (None, 0.2)
    for bad, words in [("min_share = 1.5", "between 0 and 1"), ('min_share = "x"', "a number"),
                       ("min_share = true", "a number"), ("min_share = nan", "between 0 and 1"),
                       ("date_column = 5", "column name"), ('date_column = "a\\u0007b"', "control")]:
        with pytest.raises(ConfigError) as info:
            report(bad)
        assert "profile.default" in str(info.value) and words in str(info.value), bad


# ------------------------------------------------------------------ the ledger


def test_the_ledger_keeps_fingerprints_and_days_and_the_cache_returns_them(tmp_path, files, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", cs.NOW_ISO)  # a file dated ahead of now is in no run
    p = cs.planned(cs.WRONG_DAY)
    path = tmp_path / p.name
    path.write_bytes(files[p.name])
    report = cs.profile().report_for(cs.REPORT)
    result = validate_file(path, report, p.delivered_at)
    assert result.status == "wrong-day"
    sha = hashlib.sha256(files[p.name]).hexdigest()
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        led.record_listing(None, lambda f: (cs.REPORT, f.mtime),
                           [RemoteFile(p.name, len(files[p.name]), p.delivered_at)])
        led.record_download(p.name, size=len(files[p.name]), sha256=sha, local_path=str(path))
        context = verification_context(report, p.delivered_at)
        led.record_verification(result, sha256=sha, context=context)
        cached = led.cached_verification(sha, context)
        assert (cached.fingerprint, cached.dates, cached.date_column) == (result.fingerprint, result.dates, "Loan Date")
        (d,) = led.deliveries()
        assert d.fingerprint == result.fingerprint and d.coverage == result.dates
        assert d.extra["content_checked"] is True
    raw = (tmp_path / "l.sqlite3").read_bytes()
    for row in xf.loan_rows(p.rows, day=p.loan_day, seed=p.seed):
        assert row[0].encode() not in raw and row[3].encode() not in raw  # ids, barcodes


def test_a_ledger_from_before_the_content_checks_is_migrated(tmp_path):
    from tui.core import ledger as ledger_mod

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for migration in ledger_mod.MIGRATIONS[:-1]:
        for statement in migration.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        f"INSERT INTO meta VALUES ('schema_version', '{len(ledger_mod.MIGRATIONS) - 1}');"
        "INSERT INTO remote_files (profile, name, report, delivered_at, size, first_seen, last_seen)"
        " VALUES ('default', 'x.xlsx', 'R', '2026-06-01T12:00:00.000000+00:00', 9,"
        " '2026-06-01T12:00:00.000000+00:00', '2026-06-01T12:00:00.000000+00:00');"
        "INSERT INTO downloads (profile, name, size, sha256, local_path, downloaded_at) VALUES"
        " ('default', 'x.xlsx', 9, 'ab', '/r/x.xlsx', '2026-06-01T12:00:00.000000+00:00');"
        "INSERT INTO verifications (sha256, context, path, name, report, delivered_at, status,"
        " rows, header_row, columns, message, sheet, missing_columns, verified_at) VALUES"
        " ('ab', '', '/r/x.xlsx', 'x.xlsx', 'R', NULL, 'ok', 3, 1, '[]', '3 data rows', 'S', '[]',"
        " '2026-06-01T07:00:00.000000+00:00');"
    )
    conn.commit()
    conn.close()
    with Ledger.open(path) as led:
        assert led.schema_version() == ledger_mod.SCHEMA_VERSION
        (d,) = led.deliveries()
        assert (d.verification, d.rows, d.fingerprint, d.coverage) == ("ok", 3, None, None)
        assert d.extra["content_checked"] is False


async def test_sync_verifies_copies_recorded_before_the_content_checks_once(tmp_path, monkeypatch):
    """After an upgrade the next sync reads each held copy again (not news: nothing in its
    output), so check can judge the history; the sync after that reads nothing."""
    from tui.demo import data as demo_data
    from tui.demo.server import start_demo_server
    from tui.sftp.sync import SyncService

    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-10T14:00:00+00:00")
    server = await start_demo_server(tmp_path / "server", local_dir=tmp_path / "local",
                                     ledger=tmp_path / "ledger.sqlite3")
    try:
        with Ledger.open(tmp_path / "ledger.sqlite3", profile="demo") as led:
            async with SyncService(server.profile, led) as service:
                await service.sync()
            ok = [d for d in led.deliveries() if d.verification == "ok"]
            assert ok and all(d.fingerprint and d.extra["content_checked"] for d in ok)
            daily = [d for d in ok if d.report == demo_data.DAILY]
            assert all(d.coverage.describes() == d.coverage.first for d in daily)
            before = {d.name: (d.fingerprint, d.coverage) for d in ok}
            with led._write() as conn:  # as an older release left them
                conn.execute("UPDATE verifications SET fingerprint = NULL, date_column = NULL,"
                             " dates = NULL, content_version = NULL")
            assert not any(d.fingerprint for d in led.deliveries())
            count = lambda: led._conn.execute("SELECT COUNT(*) FROM verifications").fetchone()[0]  # noqa: E731
            rows_before = count()
            async with SyncService(server.profile, led) as service:
                again = await service.sync()
            assert again.files == [] and again.status == st.Exit.OK
            held = [d for d in led.deliveries() if d.downloaded]
            assert count() == rows_before + len(held)
            assert {d.name: (d.fingerprint, d.coverage) for d in led.deliveries() if d.verification == "ok"} == before
            async with SyncService(server.profile, led) as service:
                await service.sync()
            assert count() == rows_before + len(held)
    finally:
        await server.close()


# ------------------------------------------------------------------ check --json, real sshd


def _check(capsys, config: Path, *args: str) -> tuple[int, dict]:
    code = main(["check", "--config", str(config), "--json", *args])
    return code, json.loads(capsys.readouterr().out)  # exactly one JSON document


def _check_problems(doc) -> list[dict]:
    keys = ("kind", "severity", "day", "file", "rescue_by")
    return sorted(({k: p[k] for k in keys} for r in doc["reports"] for p in r["problems"]),
                  key=lambda d: json.dumps(d, sort_keys=True))


@pytest.mark.sshd
def test_check_json_against_sshd_then_offline_without_reading_a_workbook(sshd, tmp_path, files, capsys,
                                                                        monkeypatch):
    import shutil
    import tempfile

    monkeypatch.setenv("REPORT_KEEPER_NOW", cs.NOW_ISO)
    server_dir = Path(tempfile.mkdtemp(prefix="content-", dir=sshd.root))
    try:
        cs.fill_server_dir(server_dir, files)
        known_hosts = tmp_path / "known_hosts"
        shutil.copy(sshd.known_hosts, known_hosts)
        (tmp_path / "ssh_config").write_text("")
        config = tmp_path / "config.toml"
        config.write_text(cs.config_toml(
            port=sshd.port, username=sshd.username, key=str(sshd.key), known_hosts=str(known_hosts),
            remote_dir=server_dir.name, local_dir=str(tmp_path / "local"),
            ledger=str(tmp_path / "ledger.sqlite3"), ssh_config=str(tmp_path / "ssh_config"),
        ))
        with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
            cs.seed_ledger(ledger, files, tmp_path / "local")

        code, doc = _check(capsys, config)
        assert code == 2 and doc["status"] == "critical"
        assert doc["connection"]["ok"] is True
        assert _check_problems(doc) == _expected()
        runs = {r["day"]: r for r in doc["reports"][0]["runs"]}
        assert runs[cs.STALE_DAY.isoformat()]["content"] == ["stale", "wrong-day"]
        assert runs[cs.STALE_DAY.isoformat()]["verification"] == "wrong-day"
        assert runs[cs.FEW_DAY.isoformat()]["content"] == ["few-rows"]
        assert all(r["status"] == "on-time" for r in runs.values())

        # --offline: the ledger alone, the same answer, and not one workbook read.
        isolation.shutdown()
        code, offline = _check(capsys, config, "--offline")
        assert isolation._SHARED is None  # no worker pool was even created
        assert code == 2 and _check_problems(offline) == _expected()
        assert offline["reports"][0]["runs"] == doc["reports"][0]["runs"]

        # The human output says it in words, most urgent first.
        monkeypatch.setenv("COLUMNS", "200")
        assert main(["check", "--config", str(config), "--offline"]) == 2
        out = capsys.readouterr().out
        assert "CRITICAL: 2 critical, 2 warnings" in out
        lines = [line for line in out.splitlines() if line.startswith((" CRIT", " WARN"))]
        assert [line.split(":")[0] for line in lines] == [
            " CRIT wrong-day Wed 9 Dec", " CRIT wrong-day Thu 10 Dec", " WARN stale Wed 9 Dec",
            " WARN few-rows Fri 11 Dec"]
        assert "a Tuesday usually has" in out and "check its date filter" in out
    finally:
        shutil.rmtree(server_dir, ignore_errors=True)


def test_alerts_group_content_problems_by_run_and_name_them(seeded):
    from tui.core.alerts import alerts_from

    health = evaluate(cs.profile(), seeded, now=cs.NOW)
    alerts = {a.kind: a for a in alerts_from(health)}
    assert set(alerts) == {"wrong-day", "stale", "few-rows"}
    wrong = alerts["wrong-day"]
    assert (wrong.first_day, wrong.last_day, wrong.severity) == (cs.STALE_DAY, cs.WRONG_DAY, "critical")
    assert wrong.headline(cs.TODAY) == ("rows of the wrong day in 'Loans Per Patron From 3 Days Ago' "
                                        "Wed 9 Dec to Thu 10 Dec — last day to re-run: tomorrow, Sat 12 Dec")
    assert alerts["few-rows"].current and alerts["few-rows"].headline(cs.TODAY).startswith("too few rows in")
    assert alerts["stale"].headline(cs.TODAY, ended=True).endswith("is fine again after repeated old rows Wed 9 Dec")


def test_a_hostile_date_header_is_shown_as_text_everywhere(tmp_path, capsys, monkeypatch):
    """The date column's name comes from the file: in messages it is plain text (no markup, no
    terminal escapes), in the ledger and the JSON a string like any column name."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("COLUMNS", "400")
    hostile = "Loan Date [bold red]x[/] \x1b[2J\x1b]0;pwned\x07"
    columns = (*xf.LOANS_COLUMNS[:2], hostile, *xf.LOANS_COLUMNS[3:])
    path = xf.write_report(tmp_path / "Loans_20261124_070500.xlsx", _rows_on({D(2026, 11, 20): 6}),
                           columns=columns)
    assert main(["verify", str(path)]) == 2
    out = capsys.readouterr().out
    assert "[bold red]x[/]" in out and "\x1b" not in out and "\x07" not in out
    assert main(["verify", "--json", str(path)]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["files"][0]["date_column"] == hostile and doc["files"][0]["status"] == "wrong-day"


def test_a_damaged_date_summary_in_the_ledger_is_ignored(tmp_path, files):
    p = cs.planned(cs.WRONG_DAY)
    path = tmp_path / p.name
    path.write_bytes(files[p.name])
    sha = hashlib.sha256(files[p.name]).hexdigest()
    with Ledger.open(tmp_path / "l.sqlite3") as led:
        led.record_listing(None, lambda f: (cs.REPORT, f.mtime),
                           [RemoteFile(p.name, len(files[p.name]), p.delivered_at)])
        led.record_download(p.name, size=len(files[p.name]), sha256=sha, local_path=str(path))
        led.record_verification(validate_file(path, cs.profile().report_for(cs.REPORT), p.delivered_at), sha256=sha)
        for damage in ("[" * 100_000, '{"values": "many"}', "not json"):
            with led._write() as conn:
                conn.execute("UPDATE verifications SET dates = ?", (damage,))
            (d,) = led.deliveries()
            assert d.coverage is None and d.fingerprint


def _cells(values: list[str | None]) -> content.ColumnParts:
    from array import array

    data = b"".join((v or "").encode() for v in values)
    offsets = array("i", [0])
    valid = 0
    for i, v in enumerate(values):
        offsets.append(offsets[-1] + len((v or "").encode()))
        valid |= (v is not None) << i
    return content.ColumnParts(valid, memoryview(offsets), memoryview(data))


@pytest.mark.parametrize("values", [
    ["2026-05-29 08:00:00"] * 50,
    ["2026-05-29 08:00:00"] * 49 + ["2026-05-29T08:00:00"],
    ["2026-05-29 08:00:00"] * 49 + ["2026-05-29X08:00:00"],
    ["2026-05-29 08:00:00"] * 49 + ["2026-05-30 08:00:00"],
    ["2026-05-29 08:00:00"] * 49 + ["3026-05-29 08:00:00"],
    ["1899-12-31 08:00:00"] * 20,
    ["2026-02-30 00:00:00"] * 20,
    ["2026-05-29"] * 30,
    ["2026-05-29"] * 29 + ["2026-05-2x"],
    ["abcdefghijklmnopq"] * 10,
    ["2026-05-29 08:00:00", None, "2026-05-29 09:00:00"],
])
def test_coverage_of_a_uniform_column_is_what_each_cell_gives(values):
    """The shortcut for a column whose cells all start with the same day gives what counting
    cell by cell gives."""
    got = content.coverage_of("Loan Date", _cells(values))
    per_day: dict = {}
    filled = 0
    for v in values:
        if v is None:
            continue
        filled += 1
        day = content._day_of(v.encode()[: 11 if len(v) > 10 else 10])
        if day is not None:
            per_day[day] = per_day.get(day, 0) + 1
    assert got.values == sum(per_day.values())
    assert got.not_dates == filled - got.values
    assert got.distinct == len(per_day)
    assert dict(got.days) == dict(sorted(per_day.items(), key=lambda kv: (-kv[1], kv[0]))[: content.TOP_DAYS])
    assert got.first == (min(per_day) if per_day else None) and got.last == (max(per_day) if per_day else None)


@pytest.mark.parametrize("seed", range(4))
def test_equal_lengths_is_offsets_compared_one_by_one(seed):
    """The check that every cell of a column is ``width`` bytes (the coverage's shortcut) says
    what comparing the offsets with ``0, width, 2 * width, ...`` one by one says, for offsets
    changed anywhere, by a little or to the ends of their range."""
    import random
    from array import array

    rng = random.Random(seed)
    for _ in range(3000):
        fmt = rng.choice("iq")
        n = rng.choice((0, 1, 2, 3, 7, 50, 300))
        width = rng.choice((10, 11, 19, 20))
        offsets = [i * width for i in range(n + 1)]
        top = 1 << (31 if fmt == "i" else 63)
        for _ in range(rng.choice((0, 1, 1, 2, 3)) if n else 0):
            j = rng.randrange(n + 1)
            changed = rng.choice((offsets[j] - 1, offsets[j] + 1, offsets[j] + width, -1, -width, top - 1,
                                  -top, top - width, offsets[j] + (1 << 32), rng.randrange(-top, top)))
            offsets[j] = max(-top, min(top - 1, changed))
        view = memoryview(array(fmt, offsets))
        expected = offsets == list(range(0, n * width + 1, width))
        assert content.equal_lengths(view, width) == expected, (fmt, width, offsets)
