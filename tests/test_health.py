"""Health evaluation over the scenario history: every run day's status, every problem's dates."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from rich.text import Text

from tests import scenario as sc
from tui.core import model
from tui.core.health import ConnectionStatus, evaluate, evaluate_report, fmt_day
from tui.core.status import Exit

D = date


def _key(p, report):
    return (report, p.kind, p.severity, p.day, p.file, p.rescue_by, p.delete_on)


@pytest.fixture(scope="module")
def health():
    return evaluate(sc.profile(), sc.deliveries(), now=sc.NOW)


def test_every_run_day_has_the_expected_status(health):
    for name in (sc.DAILY, sc.WEEKLY):
        got = {r.day: r.status for r in health.report(name).runs}
        assert got == sc.expected_run_statuses(name), name
    assert len(health.report(sc.DAILY).runs) == 71  # Thu 1 Oct .. Thu 10 Dec


def test_problems_are_exactly_the_expected_ones(health):
    got = sorted(_key(p, r.name) for r in health.reports for p in r.problems)
    want = sorted((e.report, e.kind, e.severity, e.day, e.file, e.rescue_by, e.delete_on)
                  for e in sc.EXPECTED_PROBLEMS)
    assert got == want
    assert health.exit_code == Exit.CRITICAL == sc.EXPECTED_EXIT
    assert health.status == "critical"
    assert health.report(sc.DAILY).status == "critical"
    assert health.report(sc.WEEKLY).status == "warning"


def test_problems_are_ordered_by_urgency(health):
    problems = health.problems
    severities = [p.severity for p in problems]
    assert severities == sorted(severities, key=lambda s: s != "critical")
    # The one that can still be rescued comes first, then the other criticals.
    assert (problems[0].kind, problems[0].day) == ("missing", D(2026, 12, 7))
    assert problems[0].next_step == (
        "Re-run 'Loans Per Patron From 3 Days Ago' in Alma Analytics for loans of Fri 4 Dec "
        "before Fri 11 Dec"
    )
    # Among warnings: the open rescue (13 Dec) before the deletion date (23 Dec), then the rest.
    warnings = [(p.kind, p.day) for p in problems if p.severity == "warning"]
    assert warnings[:2] == [("empty", D(2026, 12, 9)), ("near-deletion", D(2026, 10, 24))]
    assert all(p.next_step for p in problems)


def test_run_details_duplicates_closed_days_and_dates(health):
    daily = health.report(sc.DAILY)
    dup = daily.run(D(2026, 11, 15))
    assert dup.status == "on-time" and len(dup.files) == 2
    assert dup.files == tuple(p.name for p in sc.planned(sc.DAILY, D(2026, 11, 15)))
    holiday = daily.run(D(2026, 11, 29))
    assert holiday.closed and holiday.covered_day == D(2026, 11, 26)
    assert holiday.verification == "empty-closed" and holiday.rows == 0
    assert daily.run(D(2026, 11, 26)).closed is False  # the run ON the holiday covers 23 Nov
    bad = daily.run(D(2026, 12, 4))
    assert (bad.verification, bad.rows) == ("unreadable", None)
    assert (bad.covered_day, bad.rescue_by, bad.delete_on) == (D(2026, 12, 1), D(2026, 12, 8), D(2027, 2, 2))
    missing = daily.run(D(2026, 12, 7))
    assert missing.files == () and missing.delivered_at is None and missing.delete_on is None
    assert daily.run(D(2026, 12, 10)).status == "pending"
    assert daily.last_delivery.name == sc.name_of(sc.DAILY, D(2026, 12, 9))
    assert daily.last_rows == 0
    assert daily.on_time_streak == 1  # 9 Dec on time after the late 8 Dec
    assert not daily.inferred and str(daily.schedule) == "daily"


def test_dst_change_runs_are_on_time(health):
    daily = health.report(sc.DAILY)
    for day in (D(2026, 10, 31), D(2026, 11, 1), D(2026, 11, 2)):
        run = daily.run(day)
        assert run.status == "on-time", day
        assert run.files == (sc.name_of(sc.DAILY, day),)


def test_unconfigured_schedule_is_inferred_and_said_so(health):
    weekly = health.report(sc.WEEKLY)
    assert weekly.inferred and str(weekly.schedule) == "weekly:MON,THU"
    assert weekly.at.strftime("%H:%M") == "06:00" and weekly.confidence > 0.85
    doc = weekly.to_json()
    assert doc["inferred"] is True and doc["schedule"] == "weekly:MON,THU"


def test_a_day_later_the_rescue_window_has_closed_and_pending_became_missing():
    later = sc.NOW + timedelta(days=1)  # Fri 11 Dec 08:00
    h = evaluate(sc.profile(), sc.deliveries(now=later), now=later)
    daily = h.report(sc.DAILY)
    assert daily.run(D(2026, 12, 10)).status == "missing"
    assert daily.run(D(2026, 12, 11)).status == "pending"
    by = {(p.kind, p.day): p for p in daily.problems}
    assert by[("missing", D(2026, 12, 7))].severity == "warning"  # rescue-by 11 Dec has come
    assert by[("missing", D(2026, 12, 7))].next_step.startswith("Too late to re-run")
    assert by[("missing", D(2026, 12, 10))].severity == "critical"
    assert by[("missing", D(2026, 12, 10))].rescue_by == D(2026, 12, 14)


def test_pending_turns_missing_when_the_deadline_passes():
    deliveries = sc.deliveries()
    at_deadline = datetime(2026, 12, 10, 9, 0, tzinfo=sc.TZ)
    after = at_deadline + timedelta(minutes=1)
    assert evaluate(sc.profile(), deliveries, now=at_deadline).report(sc.DAILY).run(D(2026, 12, 10)).status == "pending"
    assert evaluate(sc.profile(), deliveries, now=after).report(sc.DAILY).run(D(2026, 12, 10)).status == "missing"


def test_a_file_gone_from_the_server_before_it_was_held_is_lost():
    """As the ledger records a listing the file is missing from: no longer on the server."""
    near = sc.name_of(sc.DAILY, D(2026, 10, 24))
    deliveries = [dataclasses.replace(d, on_server=False, gone_at=sc.NOW) if d.name == near else d
                  for d in sc.deliveries()]
    before = {(p.kind, p.file) for p in evaluate(sc.profile(), sc.deliveries(), now=sc.NOW).report(sc.DAILY).problems}
    assert ("near-deletion", near) in before and ("lost", near) not in before
    h = evaluate(sc.profile(), deliveries, now=sc.NOW)
    kinds = {(p.kind, p.file) for p in h.report(sc.DAILY).problems}
    assert ("lost", near) in kinds and ("near-deletion", near) not in kinds


def test_lost_files_are_remembered_forever_and_old_gaps_fade():
    far = sc.NOW + timedelta(days=400)
    h = evaluate(sc.profile(), sc.deliveries(), now=far)
    daily = h.report(sc.DAILY)
    lost = [p for p in daily.problems if p.kind == "lost"]
    assert [p.file for p in lost] == [sc.name_of(sc.DAILY, D(2026, 10, 5))]
    assert not [p for p in daily.problems if p.kind in ("schema", "unreadable", "late", "empty")]
    assert daily.run(D(2026, 11, 10)).status == "missing"  # the runs keep the whole history


def test_exit_codes_for_warnings_only_and_all_well():
    clean = [d for d in sc.deliveries() if d.report == sc.WEEKLY]
    # Weekly alone: one late (warning) and one old missing (warning).
    assert evaluate(sc.profile(), clean, now=sc.NOW).report(sc.WEEKLY).exit == Exit.WARNING
    # A fresh run of on-time, verified daily deliveries: all well.
    start = D(2026, 12, 1)
    good = [
        model.Delivery(
            name=f"{sc.DAILY}_{day:%Y%m%d}_070500.xlsx", report=sc.DAILY,
            delivered_at=datetime(day.year, day.month, day.day, 7, 5, tzinfo=sc.TZ),
            size=1, mtime=None, first_seen=sc.NOW, last_seen=sc.NOW, on_server=True,
            downloaded_at=sc.NOW, verification="ok", rows=5,
        )
        for day in (start + timedelta(days=i) for i in range(10))
    ]
    h = evaluate(sc.profile(), good, now=sc.NOW)
    assert h.exit_code == Exit.OK and h.status == "ok" and h.problems == []
    assert h.report(sc.DAILY).on_time_streak == 10  # 1 Dec .. today (10 Dec, delivered 07:05)
    assert h.report(sc.WEEKLY).runs == ()  # no history, no schedule: nothing to expect... yet


def test_validator_empty_status_follows_the_covered_day():
    ds = sc.deliveries()
    # The validator saw the holiday file as "empty" (it may not know the covered day): fine.
    holiday = sc.name_of(sc.DAILY, D(2026, 11, 29))
    # An "empty-closed" verdict for a file covering an open day is still an empty report.
    open_day = sc.name_of(sc.DAILY, D(2026, 12, 2))
    ds = [dataclasses.replace(d, verification="empty", rows=0) if d.name == holiday else
          dataclasses.replace(d, verification="empty-closed", rows=0) if d.name == open_day else d
          for d in ds]
    h = evaluate(sc.profile(), ds, now=sc.NOW)
    empties = {p.file for p in h.report(sc.DAILY).problems if p.kind == "empty"}
    assert holiday not in empties and open_day in empties


def test_configured_report_without_history_expects_the_last_week():
    profile = sc.profile()
    daily_cfg = profile.report_for(sc.DAILY)
    r = evaluate_report(daily_cfg, [], tz=sc.TZ, now=sc.NOW)
    assert [x.status for x in r.runs] == ["missing"] * 7 + ["pending"]
    assert r.last_delivery is None and r.exit == Exit.CRITICAL


def test_a_missing_run_covering_a_closed_day_is_a_warning():
    profile = sc.profile()
    ds = [d for d in sc.deliveries() if not (d.report == sc.DAILY and d.name == sc.name_of(sc.DAILY, D(2026, 11, 30)))]
    h = evaluate(profile, ds, now=sc.NOW)
    p = [p for p in h.report(sc.DAILY).problems if p.day == D(2026, 11, 30)]
    assert [(x.kind, x.severity) for x in p] == [("missing", "warning")]
    assert "closed day" in p[0].message


def test_connection_problems_come_first_and_set_the_exit_code():
    ds = [d for d in sc.deliveries() if d.report == sc.WEEKLY]
    failed = evaluate(sc.profile(), ds, now=sc.NOW,
                      connection=ConnectionStatus(ok=False, message="refused", write_test="skipped"))
    assert failed.exit_code == Exit.CRITICAL
    assert (failed.problems[0].kind, failed.problems[0].severity) == ("connection", "critical")
    ro = evaluate(sc.profile(), [], now=sc.NOW,
                  connection=ConnectionStatus(ok=True, message="read only", write_test="read-only"))
    ro_conn = [p for p in ro.problems if p.kind == "connection"]
    assert [p.severity for p in ro_conn] == ["warning"]


def test_the_apps_advice_for_a_failed_connection_says_when_an_edited_config_counts():
    """The app reads the config when it starts, so r lists the server again with the host,
    port, user and key it started with: advice that only said "fix it, then press r" left a
    librarian who corrected the port in the config pressing r at the same refusal."""
    problem = ConnectionStatus(ok=False, message="refused", write_test="skipped").problem()
    assert problem is not None
    assert "press r" in problem.app_step
    assert "config" in problem.app_step and "start" in problem.app_step, problem.app_step
    assert "report-keeper check" in problem.next_step  # the shell's step: each run reads the config


def test_json_has_the_spec_shape(health):
    doc = json.loads(json.dumps(health.to_json()))
    assert set(doc) >= {"status", "connection", "reports"}
    assert doc["connection"] == {"ok": None, "message": doc["connection"]["message"],
                                 "write_test": "skipped", "steps": {}}
    rep = doc["reports"][0]
    assert set(rep) >= {"name", "status", "last_delivery", "runs", "problems"}
    assert set(rep["runs"][0]) >= {"day", "status", "files", "verification"}
    assert set(rep["problems"][0]) >= {"severity", "kind", "day", "file", "rescue_by", "delete_on", "message"}
    assert rep["last_delivery"] == datetime(2026, 12, 9, 7, 5, 11, tzinfo=sc.TZ).astimezone(UTC).isoformat()
    statuses = {r["status"] for r in doc["reports"] for r in r["runs"]}
    assert statuses == {"on-time", "late", "missing", "pending"}


def test_fmt_day():
    assert fmt_day(D(2026, 6, 2)) == "Tue 2 Jun"
    assert fmt_day(D(2026, 6, 2), D(2027, 6, 2)) == "Tue 2 Jun 2026"


def _changed_problems(local_state, changed_days_ago):
    """The changed file of the scenario, as the real ledger describes it."""
    deliveries = sc.deliveries()
    for d in deliveries:
        if d.changed:
            d.extra["local_state"] = local_state
            d.extra["changed_at"] = sc.NOW - timedelta(days=changed_days_ago)
    health = evaluate(sc.profile(), deliveries, now=sc.NOW)
    return [p for p in health.problems if p.kind == "changed"]


def test_a_changed_copy_not_yet_held_asks_for_a_sync():
    (problem,) = _changed_problems("changed", 30)
    assert "not held yet" in problem.message
    assert problem.next_step.startswith("Run 'report-keeper sync'")


def test_a_changed_copy_held_beside_the_old_one_warns_for_a_while_not_for_ever():
    (problem,) = _changed_problems("downloaded", 3)
    assert "side by side" in problem.next_step
    assert _changed_problems("downloaded", 30) == []


def test_a_last_delivery_that_is_unreadable_is_said_so_not_not_verified():
    """An unreadable last delivery has no rows: Health and check said "not verified (yet)" of
    it, which reads as "wait", while the file was verified and cannot be read. Each says what
    the verification found, and "not downloaded yet" where nothing is held to verify."""
    from tui.commands.check import render
    from tui.screens.health import reports_text

    history = sc.deliveries()
    last = max((d for d in history if d.report == sc.WEEKLY), key=lambda d: d.delivered_at)
    bad = dataclasses.replace(last, verification=model.VerifyStatus.UNREADABLE, rows=None,
                              downloaded_at=sc.NOW, local_path="/reports/" + last.name)
    held = [bad if d is last else d for d in history]
    health = evaluate(sc.profile(), held, now=sc.NOW)
    assert health.report(sc.WEEKLY).last_delivery.verification == "unreadable"
    screen = reports_text(health, sc.TZ, sc.NOW).plain
    shell = render(health, sc.profile(), width=200, max_lines=200)
    for text in (screen, shell):
        line = next(x for x in text.splitlines() if "unreadable" in x or "not verified" in x)
        assert "unreadable" in line and "not verified" not in line, line
    gone = dataclasses.replace(last, verification=None, rows=None, downloaded_at=None)
    health = evaluate(sc.profile(), [gone if d is last else d for d in history], now=sc.NOW)
    screen = reports_text(health, sc.TZ, sc.NOW).plain
    shell = render(health, sc.profile(), width=200, max_lines=200)
    assert "not downloaded yet" in screen and "not downloaded yet" in shell, screen


def test_a_last_delivery_stamped_later_than_now_is_not_0m_ago():
    """A file whose name carries a time later than now (the name's clock is another zone
    than the profile's: 13:00 at 09:30) was shown "(0m ago)" on Health: it says how far
    ahead it is instead, which points at the time zone."""
    from tui.screens.health import reports_text

    history = sc.deliveries()
    last = max((d for d in history if d.report == sc.WEEKLY), key=lambda d: d.delivered_at)
    ahead = dataclasses.replace(last, delivered_at=sc.NOW + timedelta(hours=3, minutes=30))
    health = evaluate(sc.profile(), [ahead if d is last else d for d in history], now=sc.NOW)
    line = next(x for x in reports_text(health, sc.TZ, sc.NOW).plain.splitlines()
                if "last:" in x and f"{ahead.delivered_at.astimezone(sc.TZ):%H:%M}" in x)
    assert "0m ago" not in line and "(in 3h)" in line, line


def test_a_report_line_too_long_for_the_screen_goes_on_under_its_first_word():
    """At 80 columns "last: … · on time 1 in a row" can be a few cells too long: its rest went
    to the screen's first column ("row" under the glyphs), unlike the problem lines. Each
    report line now goes on under its own first word, as drawn by the Health screen's
    widget."""
    from tui.screens.health import reports_lines
    from tui.widgets.formatting import hang_text

    health = evaluate(sc.profile(), sc.deliveries(), now=sc.NOW)
    lines = reports_lines(health, sc.TZ, sc.NOW)
    last_lines = [(lead, body) for lead, body in lines if body.plain.startswith("last: ")]
    assert last_lines
    for lead, body in last_lines:
        width = len(str(lead)) + body.cell_len - 4  # the last word cannot fit
        drawn = hang_text(lead, body, width).plain.splitlines()
        assert len(drawn) == 2, drawn
        assert drawn[0].startswith("    last: ") and drawn[1].startswith("    ") and drawn[1].strip(), drawn
    heads = [(lead, body) for lead, body in lines if isinstance(lead, Text)]
    for lead, body in heads:  # a name and schedule go on under the name
        drawn = hang_text(lead, body, lead.cell_len + body.cell_len - 3).plain.splitlines()
        assert all(line.startswith(" " * lead.cell_len) for line in drawn[1:]), drawn


@pytest.mark.parametrize("now", [datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC),
                                 datetime(2099, 12, 31, 11, 59, 59, tzinfo=UTC)])
def test_a_clock_far_ahead_gives_the_runs_and_problems_of_every_day_looked_at(now, monkeypatch):
    """A check with the clock pinned at 2099 evaluated the runs since 2026 slowly (weekly and
    monthly schedules asked about every day, every old missing run worked out its due time).
    Whatever makes it quicker, the result is what the schedule's definition gives: each day
    of the span looked at one by one."""
    from tui.core.schedule import Schedule

    profile = sc.profile()
    fast = evaluate(profile, sc.deliveries(), now=now).to_json()

    def day_by_day(self, start, end):
        days = (date.fromordinal(n) for n in range(start.toordinal(), end.toordinal() + 1))
        return [day for day in days if self.occurs_on(day)]

    monkeypatch.setattr(Schedule, "run_days", day_by_day)
    slow = evaluate(profile, sc.deliveries(), now=now).to_json()
    assert fast == slow
    assert len(fast["reports"][0]["runs"]) > 26_000  # every run since 2026 is in the result


def test_a_schedule_not_known_is_not_walked_day_by_day_to_a_clock_far_ahead(monkeypatch):
    """A report whose schedule the history cannot tell (two deliveries) keeps only the runs
    with files, yet the evaluation placed every run day of the guessed schedule from its
    first delivery to the clock: ~27,000 days at 2099 for two runs. Only the days near the
    deliveries and today are looked at now, with the same result as all of them."""
    import random
    from zoneinfo import ZoneInfo

    from tui.core import health
    from tui.core.config import ReportConfig
    from tui.core.schedule import Timing

    tz = ZoneInfo("America/Chicago")
    everything = [d for d in sc.deliveries() if d.report == sc.DAILY]
    rng = random.Random(7)
    histories = [everything[:2], everything[:1], everything[-2:], everything[::9],
                 *(rng.sample(everything, rng.randint(2, 6)) for _ in range(12))]
    clocks = [sc.NOW, datetime(2099, 12, 31, 23, 59, tzinfo=UTC), datetime(2026, 11, 20, 6, tzinfo=UTC),
              everything[0].delivered_at + timedelta(hours=1)]
    looked: list[int] = []
    real = Timing.run_days

    def counted(self, start, end):
        found = real(self, start, end)
        looked.append(len(found))
        return found

    def all_days(timing, first, today, moments):
        return real(timing, first, today)

    unknown = 0
    for history in histories:
        for now in clocks:
            report = ReportConfig(name=sc.DAILY)
            with monkeypatch.context() as m:
                m.setattr(Timing, "run_days", counted)
                looked.clear()
                fast = evaluate_report(report, history, tz=tz, now=now)
                days = sum(looked)
            with monkeypatch.context() as m:
                m.setattr(health, "_days_near", all_days)
                slow = evaluate_report(report, history, tz=tz, now=now)
            assert fast == slow, (history, now)
            if not fast.schedule_known:
                unknown += 1
                assert days <= 10 * (len(history) + 1), days
    assert unknown >= 20
