"""The schedule model: parsing, run days, windows across DST changes, inference from history."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests import scenario as sc
from tui.core.schedule import (
    Schedule,
    Timing,
    infer_schedule,
    parse_at,
    parse_duration,
    parse_schedule,
)

CHICAGO = ZoneInfo("America/Chicago")
UTC = UTC


@pytest.mark.parametrize(
    "text, expected",
    [
        ("daily", Schedule("daily")),
        ("  Daily ", Schedule("daily")),
        ("every day", Schedule("daily")),
        ("every 1 day", Schedule("daily")),
        ("every 2 days", Schedule("every", interval=2)),
        ("every 3 days from 2026-06-01", Schedule("every", interval=3, anchor=date(2026, 6, 1))),
        ("weekly:MON,THU", Schedule("weekly", weekdays=(0, 3))),
        ("weekly: thu , mon", Schedule("weekly", weekdays=(0, 3))),
        ("weekly:Friday", Schedule("weekly", weekdays=(4,))),
        ("monthly:1", Schedule("monthly", monthdays=(1,))),
        ("monthly:15,1", Schedule("monthly", monthdays=(1, 15))),
        ("monthly:last", Schedule("monthly", monthdays=(32,))),
    ],
)
def test_parse_schedule_accepts(text, expected):
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("hourly", "is not a schedule"),
        ("weekly", "names no days"),
        ("weekly:", "names no days"),
        ("weekly:MON,XYZ", "'XYZ' is not a day of the week"),
        ("monthly:0", "'0' is not a day of the month"),
        ("monthly:32", "'32' is not a day of the month"),
        ("monthly:", "names no day of the month"),
        ("every 0 days", "out of range"),
        ("every days", "lacks the number"),
        ("every 2 days from tomorrow", "'tomorrow' after 'from' is not a date"),
    ],
)
def test_parse_schedule_refuses_with_a_reason(text, reason):
    with pytest.raises(ValueError) as err:
        parse_schedule(text)
    assert reason in str(err.value)


def test_schedule_text_round_trips():
    for text in ("daily", "every 3 days from 2026-06-01", "weekly:MON,THU", "monthly:1,15,last"):
        assert str(parse_schedule(text)) == text
        assert parse_schedule(str(parse_schedule(text))) == parse_schedule(text)
    assert parse_schedule("weekly:MON,THU").describe() == "every Mon and Thu"
    assert parse_schedule("monthly:1").describe() == "on day 1 of each month"


def test_parse_at_and_duration():
    assert parse_at("07:00") == time(7, 0)
    assert parse_at("7:05:30") == time(7, 5, 30)
    for bad in ("24:00", "7", "07:60", "seven"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_at(bad)
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("90m") == timedelta(minutes=90)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("two hours")


def test_run_days_of_each_kind():
    june = (date(2026, 6, 1), date(2026, 6, 30))
    assert len(parse_schedule("daily").run_days(*june)) == 30
    weekly = parse_schedule("weekly:MON,THU").run_days(*june)
    assert weekly[:4] == [date(2026, 6, 1), date(2026, 6, 4), date(2026, 6, 8), date(2026, 6, 11)]
    assert all(d.weekday() in (0, 3) for d in weekly) and len(weekly) == 9
    every = parse_schedule("every 3 days from 2026-05-30").run_days(*june)
    assert every[:3] == [date(2026, 6, 2), date(2026, 6, 5), date(2026, 6, 8)]
    assert parse_schedule("monthly:1").run_days(date(2026, 1, 1), date(2026, 12, 31)) == [
        date(2026, m, 1) for m in range(1, 13)
    ]
    # Day 31 falls back to the last day of shorter months; "last" is always the last day.
    assert parse_schedule("monthly:31").run_days(date(2026, 2, 1), date(2026, 4, 30)) == [
        date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)
    ]
    assert parse_schedule("monthly:last").run_days(date(2028, 2, 1), date(2028, 2, 29)) == [date(2028, 2, 29)]
    assert parse_schedule("daily").run_days(date(2026, 6, 2), date(2026, 6, 1)) == []


def test_every_n_days_is_anchored_on_the_first_delivery():
    s = parse_schedule("every 2 days").anchored(date(2026, 6, 3))
    assert s.run_days(date(2026, 6, 2), date(2026, 6, 8)) == [date(2026, 6, 3), date(2026, 6, 5), date(2026, 6, 7)]
    fixed = parse_schedule("every 2 days from 2026-06-02")
    assert fixed.anchored(date(2026, 6, 3)) == fixed  # an explicit anchor wins


def test_next_and_previous_run():
    s = parse_schedule("weekly:MON,THU")
    assert s.next_run(date(2026, 6, 1)) == date(2026, 6, 4)
    assert s.previous_run(date(2026, 6, 4)) == date(2026, 6, 1)
    assert parse_schedule("monthly:31").next_run(date(2026, 1, 31)) == date(2026, 2, 28)


def test_window_follows_local_time_across_the_autumn_dst_change():
    t = Timing(parse_schedule("daily"), time(7, 0), timedelta(hours=2), CHICAGO)
    # Sat 31 Oct 2026 is CDT (UTC-5); Sun 1 Nov the clocks went back at 02:00 to CST (UTC-6).
    assert t.window(date(2026, 10, 31)) == (
        datetime(2026, 10, 31, 11, 0, tzinfo=UTC), datetime(2026, 10, 31, 14, 0, tzinfo=UTC))
    assert t.window(date(2026, 11, 1)) == (
        datetime(2026, 11, 1, 12, 0, tzinfo=UTC), datetime(2026, 11, 1, 15, 0, tzinfo=UTC))
    assert t.run_at(date(2026, 11, 1)).hour == 7


def test_window_across_the_spring_dst_change_and_a_run_in_the_skipped_hour():
    t = Timing(parse_schedule("daily"), time(7, 0), timedelta(hours=2), CHICAGO)
    # Sun 8 Mar 2026: 02:00 CST jumps to 03:00 CDT.
    assert t.window(date(2026, 3, 7))[1] == datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    assert t.window(date(2026, 3, 8))[1] == datetime(2026, 3, 8, 14, 0, tzinfo=UTC)
    # A run "at 02:30" on that day does not exist locally; it is taken as 03:30 CDT (08:30 UTC),
    # and the window is measured in real time: one hour before, grace after.
    night = Timing(parse_schedule("daily"), time(2, 30), timedelta(hours=1), CHICAGO)
    start, deadline = night.window(date(2026, 3, 8))
    assert deadline - start == timedelta(hours=2)
    assert start == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def test_run_day_of_a_delivery():
    t = Timing(parse_schedule("weekly:MON,THU"), time(6, 0), timedelta(hours=1), CHICAGO)
    mon = date(2026, 12, 7)
    assert t.run_day_of(datetime(2026, 12, 7, 6, 5, tzinfo=CHICAGO)) == mon
    assert t.run_day_of(datetime(2026, 12, 7, 5, 0, tzinfo=CHICAGO)) == mon  # 1 h early: on time
    assert t.run_day_of(datetime(2026, 12, 9, 23, 0, tzinfo=CHICAGO)) == mon  # late, before Thu
    assert t.run_day_of(datetime(2026, 12, 7, 4, 59, tzinfo=CHICAGO)) == date(2026, 12, 3)
    # A run at 00:30: its window opens at 23:30 the day before.
    late_night = Timing(parse_schedule("daily"), time(0, 30), timedelta(hours=1), CHICAGO)
    assert late_night.run_day_of(datetime(2026, 12, 6, 23, 45, tzinfo=CHICAGO)) == mon


def test_infer_weekly_schedule_from_the_scenario_history():
    weekly = [d for d in sc.deliveries() if d.report == sc.WEEKLY]
    guess = infer_schedule(weekly, CHICAGO)
    assert guess.schedule == parse_schedule("weekly:MON,THU")
    assert guess.schedule.inferred
    assert guess.at == time(6, 0)
    assert 0.85 <= guess.confidence < 1.0  # one missing day, one late delivery


def test_infer_daily_every_n_and_monthly():
    start = datetime(2026, 3, 1, 7, 4, tzinfo=CHICAGO)
    daily = [start + timedelta(days=i) for i in range(40) if i != 10]
    g = infer_schedule(daily, CHICAGO)
    assert (g.schedule, g.at) == (Schedule("daily"), time(7, 0))  # across the DST change of 8 Mar
    assert g.confidence == pytest.approx(39 / 40, abs=0.01)

    every3 = [start + timedelta(days=3 * i) for i in range(15)]
    g = infer_schedule(every3, CHICAGO)
    assert g.schedule == Schedule("every", interval=3, anchor=date(2026, 3, 1))
    assert g.confidence == 1.0

    monthly = [datetime(2026, m, 1, 5, 50, tzinfo=CHICAGO) for m in range(1, 9)]
    g = infer_schedule(monthly, CHICAGO)
    assert (g.schedule, g.at) == (Schedule("monthly", monthdays=(1,)), time(5, 45))


def test_infer_with_little_history():
    assert infer_schedule([], CHICAGO).confidence == 0.0
    one = infer_schedule([datetime(2026, 3, 2, 9, 20, tzinfo=CHICAGO)], CHICAGO)
    assert one.schedule == Schedule("daily") and one.at == time(9, 15) and one.confidence < 0.5


def _day_by_day(schedule: Schedule, start: date, end: date) -> list[date]:
    """What run days are by definition: every day of the span the schedule occurs on."""
    days = (date.fromordinal(n) for n in range(start.toordinal(), end.toordinal() + 1))
    return [day for day in days if schedule.occurs_on(day)]


@pytest.mark.parametrize("text", ["daily", "every 3 days from 2026-06-02", "weekly:MON,THU", "weekly:SUN",
                                  "weekly:MON,TUE,WED,THU,FRI,SAT,SUN", "monthly:1", "monthly:31",
                                  "monthly:1,15,last", "monthly:29,30,31,last"])
def test_run_days_are_the_days_the_schedule_occurs_on_at_any_span(text):
    schedule = parse_schedule(text)
    spans = [(date(2026, 1, 1), date(2026, 12, 31)), (date(2024, 2, 28), date(2024, 3, 2)),
             (date(2026, 12, 10), date(2099, 12, 31)), (date(2026, 5, 5), date(2026, 5, 5)),
             (date(2026, 5, 6), date(2026, 5, 5)), (date(1, 1, 1), date(1, 3, 1)),
             (date(9999, 10, 1), date(9999, 12, 31))]
    for start, end in spans:
        assert schedule.run_days(start, end) == _day_by_day(schedule, start, end), (text, start, end)


@pytest.mark.parametrize("text", ["weekly:MON,THU", "monthly:1,15"])
def test_run_days_over_decades_look_at_the_runs_not_at_every_day(text, monkeypatch):
    """A check with the clock at 2099 asked a weekly or monthly schedule about every day
    since its first delivery (26,000 days for ~7,600 or ~1,750 runs): the days are found
    from the week's and the month's own days."""
    schedule = parse_schedule(text)
    expected = _day_by_day(schedule, date(2026, 12, 10), date(2099, 12, 31))
    asked = []
    real = Schedule.occurs_on
    monkeypatch.setattr(Schedule, "occurs_on", lambda self, day: asked.append(day) or real(self, day))
    assert schedule.run_days(date(2026, 12, 10), date(2099, 12, 31)) == expected
    assert len(asked) <= 2 * len(expected), len(asked)
