"""Hostile clocks, calendars and server times: what the product's promise of time must survive.

Daylight-saving changes, day boundaries, dates that do not exist and server times that cannot
be true, each through the real pieces (the embedded SFTP server, the health evaluation).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, date, datetime, time, timedelta

import asyncssh
import pytest

from tests import scenario as sc
from tests.test_hostile_folder import REPORT, good_reports, profile_for, put, sync
from tui.core import clock
from tui.core import heatmap as hm
from tui.core.health import evaluate, evaluate_report
from tui.core.ledger import Ledger
from tui.core.model import Audience
from tui.core.names import parse_name


def _timeless(attrs: asyncssh.SFTPAttrs) -> asyncssh.SFTPAttrs:
    attrs.atime = attrs.mtime = None
    for extra in ("atime_ns", "mtime_ns"):
        if hasattr(attrs, extra):
            setattr(attrs, extra, None)
    return attrs


class _TimelessSFTP(asyncssh.SFTPServer):
    """A server that sends no modification times (SFTP makes them optional)."""

    async def scandir(self, path):
        async for entry in super().scandir(path):
            _timeless(entry.attrs)
            yield entry

    def stat(self, path):
        return _timeless(asyncssh.SFTPAttrs.from_local(os.stat(self.map_path(path))))

    def lstat(self, path):
        return _timeless(asyncssh.SFTPAttrs.from_local(os.lstat(self.map_path(path))))

    def fstat(self, file_obj):
        return _timeless(asyncssh.SFTPAttrs.from_local(os.fstat(file_obj.fileno())))


async def test_a_server_that_sends_no_modification_times_is_synced_once(make_embedded_sftp, tmp_path,
                                                                       monkeypatch):
    """SFTP makes a file's times optional. Without one, a listing dates each file when it was
    listed: every later sync took every held file for a changed server copy. The copy the
    ledger knows keeps the time it was first seen while its size stays; another size is a new
    copy, fetched beside the old one."""
    info = await make_embedded_sftp(sftp_factory=_TimelessSFTP)
    good = good_reports(info, tmp_path)
    stampless = "Weekly summary.xlsx"
    put(info, stampless, next(iter(good.values())))
    profile = profile_for(info, tmp_path)
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-10T14:00:00+00:00")
    first = await sync(profile)
    assert sorted(d["name"] for d in first.downloaded) == sorted([*good, stampless])
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-11T15:00:00+00:00")
    second = await sync(profile)
    assert second.downloaded == [] and second.changed == [], second.to_json()
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        history = {d.name: d for d in led.deliveries()}
        assert not [name for name, d in history.items() if d.changed or d.local_state != "downloaded"]
        # No time in its name: it was delivered when first seen, and stays so.
        assert history[stampless].delivered_at == datetime(2026, 6, 10, 14, tzinfo=UTC)
    put(info, stampless, b"another copy, another size")
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-12T15:00:00+00:00")
    third = await sync(profile)
    assert third.changed == [stampless], third.to_json()


# ------------------------------------------------------------------ deliveries dated ahead of now


def _copy_of(template, when: datetime, **changes):
    """A delivery like ``template`` (a ``Delivery`` of the scenario), named and dated ``when``."""
    return dataclasses.replace(template, name=sc.file_name(template.report, when.astimezone(sc.TZ)),
                               delivered_at=when.astimezone(UTC), mtime=when.astimezone(UTC), **changes)


@pytest.mark.parametrize("ahead", [timedelta(days=36), timedelta(days=1), timedelta(days=365 * 70)])
def test_a_delivery_dated_after_now_does_not_stand_in_for_todays_run(ahead):
    """A file whose name (or the server's clock) dates it after now, past the next run's
    window, belongs to a later run. It used to be joined to today's run: before the deadline
    today's run was "late" ("arrived Fri 07:00, 35 days after the deadline"), and after it the
    run was not missing, hiding a critical problem."""
    history = sc.deliveries(now=sc.NOW)
    template = next(d for d in history if d.report == sc.DAILY and d.verification == "ok")
    future = _copy_of(template, sc.local(sc.TODAY, 7, 0) + ahead, downloaded_at=None, local_path=None,
                      sha256=None, verification=None, rows=None, on_server=True)
    for now, status in ((sc.NOW, "pending"), (sc.NOW + timedelta(hours=1, seconds=1), "missing")):
        daily = evaluate(sc.profile(), [*history, future], now=now).report(sc.DAILY)
        today = daily.run(sc.TODAY)
        assert (today.status, today.files) == (status, ()), now
        assert not [p for p in daily.problems if p.kind == "late" and p.day == sc.TODAY]
        missing = [p for p in daily.problems if p.kind == "missing" and p.day == sc.TODAY]
        assert [p.severity for p in missing] == (["critical"] if status == "missing" else [])
        assert future.name not in {f for r in daily.runs for f in r.files}


def test_an_early_delivery_for_a_run_just_after_midnight_is_that_runs():
    """A run at 00:30 is on time from 23:30 the evening before: a delivery then is the coming
    run's, shown in it, not a second delivery of today's run."""
    report = dataclasses.replace(sc.profile().report_for(sc.DAILY), at=time(0, 30))
    history = [_copy_of(next(d for d in sc.deliveries() if d.report == sc.DAILY and d.verification == "ok"),
                        sc.local(sc.TODAY - timedelta(days=n), 0, 35)) for n in (2, 1, 0)]
    early = _copy_of(history[0], sc.local(sc.TODAY, 23, 40))
    health = evaluate_report(report, [*history, early], tz=sc.TZ, now=sc.local(sc.TODAY, 23, 45))
    tomorrow = sc.TODAY + timedelta(days=1)
    assert health.run(sc.TODAY).files == (history[-1].name,)
    assert (health.run(tomorrow).status, health.run(tomorrow).files) == ("on-time", (early.name,))
    assert report.run_day_of(early.delivered_at, report.timing(sc.TZ, [d.delivered_at for d in history])) == tomorrow


async def test_a_file_dated_ahead_has_no_covered_day_for_sync_or_the_verify_screen(embedded_sftp, tmp_path,
                                                                                  monkeypatch):
    """A file dated more than a day ahead (``clock.dated_ahead``) is in no run: ``check`` names
    its bad date. ``sync`` and the Verify screen still placed it in the run of its date and
    judged its rows against that run's covered day: a file named five weeks ahead whose rows
    are of an ordinary loan day was wrong-day, critical (re-run it in Alma before a rescue-by
    date weeks away). In no run it has no covered day, and its day is not judged, as for any
    file without one."""
    from tests.xlsx_factory import write_report
    from tui.core.local_reports import find_local_reports, verify_local
    from tui.core.validate import validate_file

    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-10T14:00:00+00:00")
    good = good_reports(embedded_sftp, tmp_path)  # 8..10 June, each of its covered day
    profile = profile_for(embedded_sftp, tmp_path)
    name = f"{REPORT}_20260715_070012.xlsx"
    src = write_report(tmp_path / "src" / name, n_rows=5, day=date(2026, 6, 7), seed=7)
    put(embedded_sftp, name, src.read_bytes(), mtime=datetime(2026, 6, 10, 12, 30, tzinfo=UTC).timestamp())
    assert clock.dated_ahead(parse_name(name).delivered_at, clock.now())
    result = await sync(profile)
    verdicts = {f.name: f for f in result.files}
    assert sorted(verdicts) == sorted([*good, name])
    assert (verdicts[name].status, verdicts[name].covered_day) == ("ok", None), verdicts[name].message
    assert {verdicts[n].status for n in good} == {"ok"}
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        daily = evaluate(profile, led.deliveries()).report(REPORT)
        # The Verify screen's path, without the cache sync filled: the file is read again.
        outcomes = {o.result.name: o.result for o in verify_local(find_local_reports(profile.local_dir, profile, led))}
    assert [p.kind for p in daily.problems if p.file == name] == ["bad-date"]
    assert (outcomes[name].status, outcomes[name].covered_day) == ("ok", None), outcomes[name].message
    assert {outcomes[n].status for n in good} == {"ok"}
    # ``verify`` on the file alone: the configured schedule, the same rule.
    alone = validate_file(src, profile.report_for(REPORT), parse_name(name).delivered_at)
    assert (alone.status, alone.covered_day) == ("ok", None), alone.message



@pytest.mark.parametrize("state", [
    {"extra": {"local_state": "changed"}},  # held; the server's copy changed, the new one not yet
    {"changed": True},  # held; both copies kept side by side
    {"extra": {"local_state": "missing-locally"}},  # held, gone from the disk, still on the server
    {"downloaded_at": None, "local_path": None, "sha256": None, "verification": None, "rows": None,
     "on_server": False},  # never downloaded and gone: lost
])
def test_the_file_problems_of_a_file_dated_ahead_name_no_run_day_or_delete_on_date(state, monkeypatch):
    """A file dated more than a day ahead is in no run (bad-date), but its file problems were
    still told in the run of its date, with dates from it: a ``changed`` file dated Saturday
    (today Thursday) was a problem of Saturday's run, shown on that day of the heatmap's
    calendar, with "run sync before" a delete-on date the name invented (the server deletes a
    file ``retention_days`` after it truly arrived, which a wrong date does not tell). In no run,
    they are told as for a file of unknown date: no run day, rescue-by or delete-on."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    history = sc.deliveries(now=sc.NOW)
    template = next(d for d in history if d.report == sc.DAILY and d.verification == "ok" and d.on_server)
    saturday = sc.TODAY + timedelta(days=2)
    ahead = _copy_of(template, sc.local(saturday, 7, 5), **state)
    assert clock.dated_ahead(ahead.delivered_at, sc.NOW)
    daily = evaluate(sc.profile(), [*history, ahead], now=sc.NOW).report(sc.DAILY)
    mine = [p for p in daily.problems if p.file == ahead.name]
    kinds = sorted(p.kind for p in mine)
    assert len(kinds) == 2 and "bad-date" in kinds and "near-deletion" not in kinds, mine
    assert [(p.day, p.rescue_by, p.delete_on) for p in mine] == [(None, None, None)] * 2, mine
    for p in mine:
        for audience in Audience:
            assert f"{saturday + timedelta(days=60):%-d %b}" not in (p.step(audience) or ""), p
    # The heatmap's calendar: Saturday is to come, with nothing delivered and no reason told.
    grid = hm.build_grid(daily.runs, today=sc.TODAY)
    cell = grid.cell(saturday)
    assert cell is not None and cell.kind == hm.NONE
    detail = hm.day_detail(cell, problems=daily.problems, tz=sc.TZ, today=sc.TODAY)
    assert (detail.reasons, detail.files) == ((), ())


# ------------------------------------------------------------------ dates in names that do not exist


MTIME = datetime(2026, 12, 9, 13, 5, tzinfo=UTC)  # Wed 9 Dec 07:05 in Chicago


@pytest.mark.parametrize("stamp", [
    "20260230_070000",  # 30 February
    "20270229_070000",  # 29 February of a common year
    "20261209_240000",  # 24:00
    "20161231_235960",  # a leap second
    "2026-02-30_07-00-00",
    "99991231_235959",  # a real date no clock here shows
    "00010101_0000",
])
def test_a_stamp_naming_no_usable_moment_is_still_no_part_of_the_report_name(stamp):
    """A name's timestamp that names no moment (or none the product accepts) was taken for part
    of the report's name: each such file a report of its own with one delivery, whose
    inferred daily schedule then found a critical "missing" run every day, for ever, while
    the real report's run went missing. The mtime dates it instead; the report is the name."""
    profile = sc.profile()
    name = f"{sc.DAILY}_{stamp}.xlsx"
    report, parsed = profile.classify(name, MTIME)
    assert (report.name, parsed.base, parsed.delivered_at, parsed.source) == (sc.DAILY, sc.DAILY, MTIME, "mtime")

    history = sc.deliveries(now=sc.NOW)
    template = next(d for d in history if d.report == sc.DAILY and d.verification == "ok")
    run = sc.TODAY - timedelta(days=1)
    history = [d for d in history if not (d.report == sc.DAILY and d.delivered_at.astimezone(sc.TZ).date() == run)]
    odd = dataclasses.replace(template, name=name, report=report.name, delivered_at=parsed.delivered_at,
                              mtime=MTIME)
    health = evaluate(profile, [*history, odd], now=sc.NOW + timedelta(days=5))
    assert [r.name for r in health.reports] == [sc.DAILY, sc.WEEKLY]
    assert health.report(sc.DAILY).run(run).files == (name,)


@pytest.mark.parametrize("name", ["Inventory_12345678_1234.xlsx", "Shelf 2026 13 45_9999.xlsx"])
def test_digits_that_are_no_timestamp_stay_in_the_name(name):
    assert parse_name(name, mtime=MTIME, tz=sc.TZ).base == name[:-5]


# ------------------------------------------------------------------ the unattended run's clock


@pytest.mark.parametrize(("installed", "system"), [
    ("2026-07-01T12:00:00Z", "UTC"), ("2026-01-15T12:00:00Z", "UTC"),
    ("2026-03-20T12:00:00Z", "Europe/Berlin"),  # Chicago on summer time, Berlin not yet
    ("2026-07-01T12:00:00Z", "Asia/Kolkata"), ("2026-07-01T12:00:00Z", "Australia/Lord_Howe"),
])
def test_a_crontab_line_never_runs_check_before_the_reports_are_due(installed, system, monkeypatch, tmp_path):
    """cron has no time zone: the line is on the machine's clock. It was converted for the day
    of installing, so a line written in July for a library on Chicago time ran at 08:25 CST
    all winter, before the 09:15 deadline it was meant to follow: check saw the day's run
    pending, and a missing delivery was told a day later. Every day of the year the run now
    comes at or after the planned time in the library's zone."""
    from zoneinfo import ZoneInfo

    from tui.core import unattended as un

    monkeypatch.setenv("REPORT_KEEPER_NOW", installed)
    plan = un.SchedulePlan(profile="library", config=tmp_path / "c.toml", name="report-keeper-library",
                           at=time(9, 25), tz=sc.TZ, command=("report-keeper",), env_file=tmp_path / "s.env",
                           reason="test")
    machine = ZoneInfo(system)
    cron = un.cron_time(plan, machine)
    first = datetime.fromisoformat(installed).date()
    for n in range(0, 366):
        day = first + timedelta(days=n)
        due = datetime.combine(day, plan.at, tzinfo=sc.TZ)
        machine_day = due.astimezone(machine).date()
        runs = [datetime.combine(machine_day + timedelta(days=k), cron, tzinfo=machine) for k in (-1, 0, 1)]
        after = min(r for r in runs if r >= due)
        # At or after the due time, and within the hours the zones' difference moves over a
        # year (Lord Howe: 1.5 h), not a day later.
        assert after - due <= timedelta(hours=1, minutes=30), (day, cron)


# ------------------------------------------------------------------ a day the zone skipped


@pytest.mark.parametrize(("zone", "first", "last"), [
    ("Pacific/Apia", date(2011, 12, 20), date(2012, 1, 10)),  # 29 Dec 2011 was followed by 31 Dec
    ("Pacific/Fakaofo", date(2011, 12, 20), date(2012, 1, 10)),
    ("Pacific/Kwajalein", date(1993, 8, 15), date(1993, 8, 30)),  # 20 Aug 1993 by 22 Aug
])
def test_a_day_the_zone_skipped_has_no_run_and_is_not_missing(zone, first, last):
    """Crossing the date line, a zone skips a whole day. A daily report delivered every day
    there was "missing" (critical while it could be re-run) on the day no one lived."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    report = dataclasses.replace(sc.profile().report_for(sc.DAILY), at=time(7, 0))
    template = next(d for d in sc.deliveries() if d.report == sc.DAILY and d.verification == "ok")
    history, skipped = [], []
    day = first
    while day <= last:
        when = datetime.combine(day, time(7, 5), tzinfo=tz)
        if when.astimezone(UTC).astimezone(tz).date() == day:
            history.append(dataclasses.replace(template, name=f"R_{day:%Y%m%d}_070500.xlsx",
                                               delivered_at=when.astimezone(UTC)))
        else:
            skipped.append(day)
        day += timedelta(days=1)
    assert len(skipped) == 1
    timing = report.timing(tz, [d.delivered_at for d in history])
    assert skipped[0] not in timing.run_days(first, last)
    if first.year >= clock.EARLIEST_DELIVERY.year:  # 1993's deliveries are of no possible date now
        health = evaluate_report(report, history, tz=tz, now=datetime.combine(last, time(12), tzinfo=tz))
        assert {r.status for r in health.runs} == {"on-time"}
        assert health.run(skipped[0]) is None and not health.problems
    # Early in the morning after it, before that day's window, a delivery is the run before.
    after = skipped[0] + timedelta(days=1)
    assert timing.run_day_of(datetime.combine(after, time(5, 0), tzinfo=tz)) == skipped[0] - timedelta(days=1)


# ------------------------------------------------------------------ a machine without a zone database


@pytest.mark.parametrize("zone_line", ['timezone = "America/Chicago"\n', ""])
def test_a_machine_without_a_time_zone_database_still_knows_the_zones(zone_line, tmp_path):
    """zoneinfo reads the operating system's zone files; a slim container or Windows has none.
    There the library's zone was "unknown time zone 'America/Chicago'" (exit 3, and the
    advice to use exactly that name), and a profile without one crashed ("this is a bug"):
    the machine's zone falls back to UTC, which was not found either. The tzdata package
    carries the zones for such a machine."""
    import subprocess
    import sys

    empty = tmp_path / "no-zoneinfo"
    empty.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[profile.default]\nhost = "127.0.0.1"\nlocal_dir = "{tmp_path / "local"}"\n'
                      f'ledger = "{tmp_path / "ledger.sqlite3"}"\n{zone_line}')
    env = {k: v for k, v in os.environ.items() if k != "TZ"}
    env.update(PYTHONTZPATH=str(empty), REPORT_KEEPER_NOW="2026-12-10T14:00:00Z")
    run = subprocess.run([sys.executable, "-m", "tui", "check", "--offline", "--json", "--config", str(config)],
                         capture_output=True, text=True, env=env, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert run.returncode in (0, 1, 2), run.stderr
    assert "time zone" not in run.stderr and "bug" not in run.stderr, run.stderr


# ------------------------------------------------------------------ the edges of a window, across a change


def test_the_on_time_window_is_closed_at_both_ends_to_the_second_across_the_autumn_change():
    """07:00 + 2 h in Chicago, around Sun 1 Nov 2026 (CDT -> CST at 02:00): a delivery exactly
    at the deadline is on time, one second later late; exactly one hour before ``at`` it is the
    run's, one second earlier it is the run before's (late, a second file there). "Now"
    exactly at a deadline leaves the run pending, one second later missing."""
    report = dataclasses.replace(sc.profile().report_for(sc.DAILY), at=time(7, 0), grace=timedelta(hours=2))
    template = next(d for d in sc.deliveries() if d.report == sc.DAILY and d.verification == "ok")
    at = {
        date(2026, 10, 30): (7, 0, 0),
        date(2026, 10, 31): (9, 0, 0),  # CDT, the deadline to the second
        date(2026, 11, 1): (6, 0, 0),  # CST: the window opens, to the second
        date(2026, 11, 2): (9, 0, 1),  # a second late
        date(2026, 11, 3): (5, 59, 59),  # a second before the window: the 2 Nov run's
    }
    history = [_copy_of(template, sc.local(day, *hms)) for day, hms in at.items()]
    deadline = datetime(2026, 11, 3, 9, 0, tzinfo=sc.TZ)
    for now, third in ((deadline, "pending"), (deadline + timedelta(seconds=1), "missing")):
        health = evaluate_report(report, history, tz=sc.TZ, now=now)
        got = {r.day: (r.status, len(r.files)) for r in health.runs}
        assert got == {
            date(2026, 10, 30): ("on-time", 1), date(2026, 10, 31): ("on-time", 1),
            date(2026, 11, 1): ("on-time", 1), date(2026, 11, 2): ("late", 2),
            date(2026, 11, 3): (third, 0),
        }, now


def test_every_n_days_is_anchored_on_the_first_deliverys_run_not_its_calendar_day():
    """"every 2 days" at 23:00 (grace 2 h) whose first delivery came at 01:15, late for the run
    of the day before, was anchored on the day it arrived: the schedule ran a day off, every
    later on-time delivery was "late" and the last run "missing"."""
    report = dataclasses.replace(sc.profile().report_for(sc.DAILY), schedule="every 2 days", at=time(23, 0))
    template = next(d for d in sc.deliveries() if d.report == sc.DAILY and d.verification == "ok")
    moments = [sc.local(date(2026, 11, 3), 1, 15)]  # the run of Mon 2 Nov, late
    moments += [sc.local(date(2026, 11, 2) + timedelta(days=2 * k), 23, 5) for k in range(1, 8)]
    history = [_copy_of(template, m) for m in moments]
    health = evaluate_report(report, history, tz=sc.TZ, now=sc.local(date(2026, 11, 18), 12, 0))
    assert str(health.schedule) == "every 2 days from 2026-11-02"
    assert [(r.day, r.status) for r in health.runs] == [
        (date(2026, 11, 2), "late"), *((date(2026, 11, 2) + timedelta(days=2 * k), "on-time") for k in range(1, 8)),
        (date(2026, 11, 18), "pending")]
    # Not configured: the inference anchors it the same way (it found "daily", half the runs
    # missing, when the late first delivery put the cadence a day off).
    unset = dataclasses.replace(report, schedule=None, at=None)
    inferred = evaluate_report(unset, history, tz=sc.TZ, now=sc.local(date(2026, 11, 18), 12, 0))
    assert str(inferred.schedule) == "every 2 days from 2026-11-02" and inferred.confidence > 0.6
    assert not [r for r in inferred.runs if r.status == "missing"]
    # Early for a run just after midnight: anchored on that run's day too; and a first
    # delivery long before its run's window is still that run's.
    early = dataclasses.replace(report, at=time(0, 30))
    assert early.timing(sc.TZ, [sc.local(date(2026, 11, 2), 23, 50)]).schedule.anchor == date(2026, 11, 3)
    morning = dataclasses.replace(report, at=time(7, 0))
    assert morning.timing(sc.TZ, [sc.local(date(2026, 11, 2), 5, 30)]).schedule.anchor == date(2026, 11, 2)


# ------------------------------------------------------------------ a library east of UTC, over a change


async def test_a_library_ahead_of_utc_keeps_its_own_days_through_sync_and_check(embedded_sftp, tmp_path,
                                                                                 monkeypatch):
    """Adelaide (+9:30, +10:30 from Sun 4 Oct 2026 at 02:00), a daily report at 04:00: every
    delivery's UTC date is the day before its local one. Each is its local day's run, on time,
    and its rows are of the covered loan day (no wrong-day), through the real server, the
    ledger and the evaluation."""
    from zoneinfo import ZoneInfo

    from tests.xlsx_factory import write_report

    tz = ZoneInfo("Australia/Adelaide")
    profile = profile_for(embedded_sftp, tmp_path, timezone=tz)
    daily = dataclasses.replace(profile.report_for(REPORT), at=time(4, 0), closed_days=())
    profile = dataclasses.replace(profile, reports=(daily,))
    days = [date(2026, 10, 1) + timedelta(days=n) for n in range(8)]
    (tmp_path / "src").mkdir()
    for n, day in enumerate(days):
        when = datetime.combine(day, time(4, 5, 30), tzinfo=tz)
        assert when.astimezone(UTC).date() == day - timedelta(days=1)
        name = f"{REPORT}_{day:%Y%m%d}_040530.xlsx"
        src = write_report(tmp_path / "src" / name, n_rows=6, day=daily.covered_day(day), seed=n)
        put(embedded_sftp, name, src.read_bytes(), mtime=when.timestamp())
    monkeypatch.setenv("REPORT_KEEPER_NOW", datetime.combine(days[-1], time(12), tzinfo=tz).isoformat())
    result = await sync(profile)
    assert len(result.downloaded) == len(days) and {f.status for f in result.files} == {"ok"}, result.to_json()
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        health = evaluate(profile, led.deliveries())
    report = health.report(REPORT)
    assert [(r.day, r.status, r.verification) for r in report.runs] == [(d, "on-time", "ok") for d in days]
    assert not report.problems and health.status == "ok"


# ------------------------------------------------------------------ time zone names from the config


HOSTILE_ZONES = ["", " ", "Europe", "America/", "a" * 5000, "a/" * 3000, "zone1970.tab", "tzdata.zi",
                 "__init__.py", "zones", "iso3166.tab", "../../etc/passwd", "/etc/localtime"]


@pytest.mark.parametrize("zone", HOSTILE_ZONES, ids=lambda z: repr(z[:20]))
def test_a_zone_name_that_names_no_zone_is_one_config_error(zone, monkeypatch):
    """zoneinfo opens a file named by the zone (the system's zone folder, then the tzdata
    package): a folder ('Europe') or a name too long for a file name raised IsADirectoryError
    or OSError, not the 'unknown time zone' every other wrong name gets; the config loader let
    it through as a crash. The same names in TZ (the machine's zone) fall back to UTC, and
    init's question refuses them."""
    import tomllib

    from tui.core import setup
    from tui.core.config import ConfigError, parse_config, system_timezone

    text = f'[profile.default]\nhost = "h"\ntimezone = "{zone}"\n'
    with pytest.raises(ConfigError, match="unknown time zone") as err:
        parse_config(tomllib.loads(text)).profile("default")
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not a time zone"):
        setup.check_zone(zone)
    if zone.strip():
        monkeypatch.setenv("TZ", zone)
        assert system_timezone() is not None


def test_a_delivery_more_than_a_day_ahead_is_bad_date_for_health_and_timing_alike():
    """A weekly report's next run is days away: a file dated two days ahead of now lay before
    the next run's window, so the health evaluation joined it to this week's run as one of its
    files, while the schedule placement (``ReportConfig.timing``) left it out as no delivery at
    all (more than ``clock.FUTURE_SLACK`` ahead). One rule decides both: it is dated in the
    future, a bad-date warning, and in no run."""
    history = sc.deliveries(now=sc.NOW)
    template = next(d for d in history if d.report == sc.WEEKLY and d.verification == "ok")
    ahead = sc.local(sc.TODAY + timedelta(days=2), 10, 0)  # Sat 12 Dec; the next run is Mon 14 Dec
    assert ahead > sc.NOW + clock.FUTURE_SLACK
    future = _copy_of(template, ahead, downloaded_at=None, local_path=None, sha256=None,
                      verification=None, rows=None, on_server=True)
    assert not clock.possible_delivery(ahead, now=sc.NOW)
    assert clock.possible_delivery(sc.NOW + clock.FUTURE_SLACK, now=sc.NOW)
    weekly = evaluate(sc.profile(), [*history, future], now=sc.NOW).report(sc.WEEKLY)
    alone = evaluate(sc.profile(), history, now=sc.NOW).report(sc.WEEKLY)
    assert future.name not in {f for r in weekly.runs for f in r.files}
    assert weekly.runs == alone.runs
    bad = [p for p in weekly.problems if p.file == future.name]
    assert [p.kind for p in bad] == ["bad-date"] and "in the future" in bad[0].message, bad
    assert weekly.last_delivery is not None and weekly.last_delivery.name != future.name
    # The schedule is placed from the same history with the file or without it.
    report = sc.profile().report_for(sc.WEEKLY)
    times = [d.delivered_at for d in history if d.report == sc.WEEKLY]
    assert report.timing(sc.TZ, [*times, future.delivered_at], now=sc.NOW) == report.timing(sc.TZ, times, now=sc.NOW)


@pytest.mark.parametrize("zone", ["Pacific/Apia", "Pacific/Kiritimati", "Pacific/Kwajalein", "Australia/Lord_Howe",
                                  "America/St_Johns", "UTC"])
@pytest.mark.parametrize("schedule", ["daily", "every 2 days from 2011-12-30", "weekly:FRI,SAT", "monthly:last"])
def test_the_run_days_over_years_are_the_days_the_zone_had(zone, schedule):
    """The run days of a long span (a check over decades) are found in one pass that converts
    each midnight once: the same days as asking ``on_the_clock`` of each one."""
    from zoneinfo import ZoneInfo

    from tui.core.schedule import Timing, parse_schedule

    timing = Timing(parse_schedule(schedule), time(0, 30), timedelta(hours=2), ZoneInfo(zone))
    first, last = date(1992, 1, 1), date(2013, 12, 31)
    expected = [d for d in timing.schedule.run_days(first, last) if timing.on_the_clock(d)]
    assert timing.run_days(first, last) == expected
    if zone in ("Pacific/Apia", "Pacific/Kwajalein") and schedule == "daily":
        assert len(expected) == (last - first).days  # the one day it skipped
