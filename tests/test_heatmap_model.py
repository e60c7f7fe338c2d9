"""The heatmap model: run days to calendar cells, across month/year ends, DST and leap day."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tui.core import heatmap as hm
from tui.core import model
from tui.core import status as st
from tui.core.model import Problem, RunDay

CHICAGO = ZoneInfo("America/Chicago")


def daily(first: date, last: date, **kw) -> list[RunDay]:
    out = []
    day = first
    while day <= last:
        out.append(RunDay(day=day, status=model.ON_TIME, verification=st.OK, rows=kw.get("rows", 50),
                          files=(f"r_{day:%Y%m%d}_070000.xlsx",)))
        day += timedelta(days=1)
    return out


def test_year_boundary_columns_rows_and_labels():
    # Mon 28 Dec 2026 .. Sun 3 Jan 2027 is one week: one column across the year end.
    runs = daily(date(2026, 12, 20), date(2027, 1, 10))
    grid = hm.build_grid(runs, today=date(2027, 1, 10))
    assert grid.origin == date(2026, 12, 14)  # the Monday of Sun 20 Dec
    assert grid.columns == 4
    assert grid.position(date(2026, 12, 31)) == (2, 3)  # Thursday
    assert grid.position(date(2027, 1, 1)) == (2, 4)  # Friday, same column
    assert grid.position(date(2027, 1, 3)) == (2, 6)  # Sunday, same column
    assert grid.position(date(2027, 1, 4)) == (3, 0)  # Monday: next column
    cell = grid.cell_at(2, 4)
    assert cell.day == date(2027, 1, 1) and cell.kind == hm.OK
    # Before the history (Mon 14 .. Sat 19 Dec) nothing is known.
    assert [grid.cell_at(0, r).kind for r in range(7)] == [hm.NONE] * 6 + [hm.OK]
    assert [(m.col, m.text) for m in grid.months] == [(0, "Dec 2026"), (2, "Jan 2027")]


def test_month_boundary_label_sits_on_the_week_holding_the_first():
    runs = daily(date(2026, 9, 20), date(2026, 11, 29))
    grid = hm.build_grid(runs, today=date(2026, 11, 29))
    labels = {m.text: m.col for m in grid.months}
    assert labels["Oct"] == grid.position(date(2026, 10, 1))[0]
    assert labels["Nov"] == grid.position(date(2026, 11, 1))[0]
    assert grid.position(date(2026, 10, 31)) == (grid.position(date(2026, 11, 1))[0], 5)
    assert grid.cell(date(2026, 10, 31)).day == date(2026, 10, 31)
    # Every day of the range is exactly one cell, in order.
    days = [c.day for c in grid.cells]
    assert days == [grid.origin + timedelta(days=i) for i in range(grid.columns * 7)]


def test_leap_day_is_a_tuesday_cell_and_march_follows():
    runs = daily(date(2028, 2, 20), date(2028, 3, 5))
    grid = hm.build_grid(runs, today=date(2028, 3, 5))
    col, row = grid.position(date(2028, 2, 29))
    assert row == 1  # Tuesday
    assert grid.cell_at(col, row).day == date(2028, 2, 29)
    assert grid.cell_at(col, row + 1).day == date(2028, 3, 1)
    assert grid.cell(date(2028, 2, 29)).kind == hm.OK
    assert any(m.text == "Mar" for m in grid.months)


@pytest.mark.parametrize(
    "instant, expected",
    [
        # Spring forward in Chicago: Sun 8 Mar 2026. 05:30 UTC is still Sat 23:30 CST.
        ("2026-03-08T05:30:00+00:00", date(2026, 3, 7)),
        ("2026-03-08T06:30:00+00:00", date(2026, 3, 8)),
        # Fall back: Sun 1 Nov 2026. 04:30 UTC is Sat 23:30 CDT; 05:30 UTC is Sun 00:30 CDT.
        ("2026-11-01T04:30:00+00:00", date(2026, 10, 31)),
        ("2026-11-01T05:30:00+00:00", date(2026, 11, 1)),
    ],
)
def test_today_follows_the_library_zone_across_dst(monkeypatch, instant, expected):
    monkeypatch.setenv("REPORT_KEEPER_NOW", instant)
    assert hm.today_in(CHICAGO) == expected


def test_dst_weeks_keep_seven_cells_and_deliveries_map_to_local_days():
    # Runs around both 2026 changes; a 07:00 local delivery on the change day is that day's cell.
    runs = daily(date(2026, 3, 1), date(2026, 3, 15)) + daily(date(2026, 10, 25), date(2026, 11, 8))
    grid = hm.build_grid(runs, today=date(2026, 11, 8))
    for change in (date(2026, 3, 8), date(2026, 11, 1)):
        cell = grid.cell(change)
        assert cell.day == change and cell.row == 6 and cell.kind == hm.OK
        moment = datetime.combine(change, time(7, 0), tzinfo=CHICAGO)
        assert hm.run_day_at(moment, CHICAGO) == change
        assert hm.run_day_at(moment.astimezone(ZoneInfo("UTC")), CHICAGO) == change
    # Between the two stretches: no run expected there (the list has none), not "missing".
    assert grid.cell(date(2026, 6, 1)).kind == hm.NOT_EXPECTED


def test_whole_history_not_only_sixty_days():
    runs = daily(date(2025, 11, 1), date(2026, 11, 29))
    grid = hm.build_grid(runs, today=date(2026, 11, 29))
    assert grid.first_day == date(2025, 11, 1)
    assert grid.columns == (hm.monday_of(date(2026, 11, 29)) - hm.monday_of(date(2025, 11, 1))).days // 7 + 1
    assert grid.counts()[hm.OK] == len(runs)


def run(day, status=model.ON_TIME, verification=st.OK, rows=10, closed=False):
    return RunDay(day=day, status=status, verification=verification, rows=rows, closed=closed,
                  files=() if status in (model.MISSING, model.PENDING) else ("f.xlsx",),
                  rescue_by=day + timedelta(days=4), covered_day=day - timedelta(days=3),
                  delete_on=day + timedelta(days=60))


@pytest.mark.parametrize(
    "kwargs, kind",
    [
        (dict(), hm.OK),
        (dict(status=model.LATE), hm.LATE),
        (dict(status=model.LATE, verification=st.EMPTY, rows=0), hm.EMPTY),
        (dict(verification=st.EMPTY, rows=0), hm.EMPTY),
        (dict(verification=st.EMPTY, rows=0, closed=True), hm.EMPTY_CLOSED),
        (dict(verification=st.EMPTY_CLOSED, rows=0), hm.EMPTY_CLOSED),
        (dict(status=model.MISSING, verification=None, rows=None), hm.MISSING),
        (dict(verification=st.UNREADABLE, rows=None), hm.BROKEN),
        (dict(verification=st.SCHEMA, rows=3), hm.BROKEN),
        (dict(status=model.LATE, verification=st.SCHEMA), hm.BROKEN),
        (dict(status=model.PENDING, verification=None, rows=None), hm.PENDING),
        (dict(verification=None, rows=None), hm.UNVERIFIED),
        (dict(verification=st.CHANGED), hm.OK),
    ],
)
def test_cell_kinds(kwargs, kind):
    assert hm.cell_kind(run(date(2026, 11, 2), **kwargs)) == kind


def test_every_kind_has_a_distinct_glyph_and_a_colour():
    glyphs = [hm.STYLES[k].glyph for k in hm.KINDS if k != hm.OK] + list(hm.OK_SHADES)
    assert len(glyphs) == len(set(glyphs))
    from rich.cells import cell_len

    assert all(cell_len(g) == 1 for g in glyphs)
    visible = [k for k in hm.KINDS if k != hm.NONE]
    assert all(hm.STYLES[k].color not in ("", "default") for k in visible)
    assert len({g for g, _c, _l in hm.legend()}) == len(hm.legend())


def test_shades_are_row_count_quartiles():
    rows = [10, 20, 30, 40, 50, 60, 70, 80]
    t = hm.shade_thresholds(rows)
    assert t == (20, 40, 60)
    assert [hm.shade_of(r, t) for r in rows] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert hm.shade_of(12, ()) == 4
    same = hm.shade_thresholds([7, 7, 7])
    assert hm.shade_of(7, same) == 4
    first = date(2026, 11, 2)
    runs = [run(first + timedelta(days=i), rows=r) for i, r in enumerate(rows)]
    grid = hm.build_grid(runs, today=first + timedelta(days=7))
    assert [grid.cell(r.day).shade for r in runs] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert [hm.glyph(grid.cell(r.day)) for r in runs][::2] == list(hm.OK_SHADES)


def test_future_and_not_expected_days():
    mondays = [date(2026, 11, 2) + timedelta(days=7 * i) for i in range(4)]
    runs = [run(d) for d in mondays]
    grid = hm.build_grid(runs, today=date(2026, 11, 25))  # a Wednesday
    assert grid.cell(date(2026, 11, 3)).kind == hm.NOT_EXPECTED
    assert grid.cell(date(2026, 11, 25)).kind == hm.NOT_EXPECTED
    assert grid.cell(date(2026, 11, 26)).kind == hm.NONE  # future
    assert grid.cell(date(2026, 11, 23)).kind == hm.OK
    assert grid.clamp(date(2026, 12, 31)) == date(2026, 11, 25)
    assert grid.clamp(date(2020, 1, 1)) == date(2026, 11, 2)
    assert grid.cell(date(2027, 1, 1)) is None


def test_day_detail_names_why_rescue_by_and_delete_on():
    day = date(2026, 11, 27)
    r = run(day, status=model.MISSING, verification=None, rows=None)
    grid = hm.build_grid([r], today=date(2026, 11, 29))
    problem = Problem(severity="critical", kind="missing", message="No delivery for Fri 27 Nov",
                      next_step="Re-run it in Alma before Tue 1 Dec", day=day, rescue_by=r.rescue_by)
    other = Problem(severity="warning", kind="late", message="other day", day=day - timedelta(days=1))
    detail = hm.day_detail(grid.cell(day), problems=[problem, other], today=date(2026, 11, 29))
    assert detail.kind == hm.MISSING
    assert detail.title.startswith("Fri 27 Nov 2026")
    facts = dict(detail.facts)
    assert facts["Rescue by"] == "Tue 1 Dec 2026 (in 2 days)"
    assert facts["Covers loans of"] == "Tue 24 Nov 2026"
    assert detail.reasons == ("critical: No delivery for Fri 27 Nov",)
    assert detail.steps == ("Re-run it in Alma before Tue 1 Dec",)
    ok = hm.day_detail(hm.build_grid([run(day)], today=day).cell(day), today=day)
    assert "Rescue by" not in dict(ok.facts)
    assert dict(ok.facts)["Delete on"] == "Tue 26 Jan 2027 (in 60 days)"
