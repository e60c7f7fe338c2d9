"""The schedule heatmap as data: run days to a calendar grid (no Textual here).

The grid has one column per week (Monday first) and one row per weekday (row 0 = Monday,
row 6 = Sunday), like a contributions calendar. It spans the report's whole history in the
ledger (from its first run day to today), not only the server's 60 days.

Every day is one :class:`Cell` whose ``kind`` says what happened:

=============== ==========================================================================
kind            meaning
=============== ==========================================================================
ok              delivered and verified with data; ``shade`` 1..4 by row count (quartiles)
unverified      delivered on time, not downloaded or not verified yet
late            delivered after the deadline (and the file itself is fine or unverified)
empty           no data rows although the covered loan day was open
empty-closed    no data rows, the covered loan day is a configured closed day (fine)
missing         nothing delivered and the deadline has passed
missing-locally downloaded once, but the copy is gone from the disk (moved or deleted)
broken          unreadable file or wrong columns (validator ``unreadable`` / ``schema``)
stale           its rows are exactly those of one of the previous 7 runs
wrong-day       its rows describe another loan day than the one the run covers
few-rows        far fewer rows than the same weekday usually has
pending         expected today, the deadline has not passed yet
not-expected    not a run day of the report's schedule
none            outside the history, or in the future
=============== ==========================================================================

Each kind has its own glyph *and* colour (:data:`STYLES`), so the picture reads on a
16-colour terminal and with ``NO_COLOR``. Colours are ANSI names.

Dates only: the caller decides "today" in the library's time zone (:func:`today_in`), so
daylight-saving changes cannot shift a cell. Cell values never appear here: only counts.

Public API: ``build_grid(runs, *, today, since=None) -> Grid``; ``cell_kind(run)``;
``shade_thresholds(rows)``; ``shade_of(rows, thresholds)``; ``STYLES``; ``glyph(cell)``;
``day_detail(cell, *, problems=(), tz=None) -> DayDetail``; ``today_in(tz)``.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from tui.core import clock, model
from tui.core import status as st
from tui.core.model import Audience, Problem, RunDay

# Cell kinds.
OK = "ok"
UNVERIFIED = "unverified"
LATE = "late"
EMPTY = "empty"
EMPTY_CLOSED = "empty-closed"
MISSING = "missing"
BROKEN = "broken"
PENDING = "pending"
NOT_EXPECTED = "not-expected"
NONE = "none"
WRONG_DAY = "wrong-day"
STALE = "stale"
FEW_ROWS = "few-rows"
MISSING_LOCALLY = "missing-locally"

KINDS = (OK, UNVERIFIED, LATE, EMPTY, EMPTY_CLOSED, MISSING, BROKEN, PENDING, NOT_EXPECTED, NONE,
         WRONG_DAY, STALE, FEW_ROWS, MISSING_LOCALLY)
#: Content kinds of a run (``RunDay.content``) as cell kinds, the cause first: a stale file
#: repeats an earlier day's rows, so it is usually wrong-day too.
_CONTENT = (STALE, WRONG_DAY, FEW_ROWS)

WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class KindStyle:
    glyph: str  # one terminal cell wide
    color: str  # ANSI colour name (16-colour safe)
    label: str  # legend text
    bold: bool = False


# Shades of ok, lightest (fewest rows) to fullest.
OK_SHADES = ("░", "▒", "▓", "█")
OK_COLORS = ("green", "green", "bright_green", "bright_green")

STYLES: dict[str, KindStyle] = {
    OK: KindStyle("█", "bright_green", "ok (shade: rows)"),
    UNVERIFIED: KindStyle("+", "cyan", "not verified"),
    LATE: KindStyle("»", "yellow", "late", bold=True),
    EMPTY: KindStyle("○", "bright_yellow", "empty", bold=True),
    EMPTY_CLOSED: KindStyle("⌂", "blue", "closed"),
    MISSING: KindStyle("×", "bright_red", "missing", bold=True),
    BROKEN: KindStyle("!", "magenta", "unreadable/schema", bold=True),
    WRONG_DAY: KindStyle("↔", "red", "wrong day", bold=True),
    STALE: KindStyle("≡", "bright_magenta", "stale (repeat)", bold=True),
    FEW_ROWS: KindStyle("▁", "bright_yellow", "few rows", bold=True),
    MISSING_LOCALLY: KindStyle("?", "bright_red", "copy gone", bold=True),
    PENDING: KindStyle("…", "white", "pending"),
    NOT_EXPECTED: KindStyle("·", "bright_black", "not a run day"),
    NONE: KindStyle(" ", "default", "no data"),
}

# What a kind means, in one sentence for the detail panel.
MEANING: dict[str, str] = {
    OK: "Delivered and verified: it holds data.",
    UNVERIFIED: "Delivered; not downloaded or not verified yet.",
    LATE: "Delivered after the deadline.",
    EMPTY: "The report has no data rows, but the day it covers was an open day.",
    EMPTY_CLOSED: "No data rows; the day it covers is a configured closed day, so that is fine.",
    MISSING: "Nothing was delivered for this run.",
    BROKEN: "The delivered file is unreadable or does not have the expected columns.",
    WRONG_DAY: "Its rows describe another loan day than the one this run covers.",
    STALE: "Its rows are exactly those of an earlier delivery: an old result sent again.",
    FEW_ROWS: "Far fewer rows than this weekday usually has: a partial result?",
    MISSING_LOCALLY: "Downloaded once, but the copy is not on this disk any more (moved or deleted).",
    PENDING: "Expected today; its deadline has not passed yet.",
    NOT_EXPECTED: "Not a run day of this report's schedule.",
    NONE: "No history for this day.",
}


@dataclass(frozen=True)
class Cell:
    day: date
    col: int  # week column, 0 = the first week of the grid
    row: int  # 0 = Monday .. 6 = Sunday
    kind: str
    shade: int = 0  # 1..4 for kind ok (row-count quartile), else 0
    run: RunDay | None = None


@dataclass(frozen=True)
class MonthLabel:
    col: int
    year: int
    month: int
    with_year: bool

    @property
    def short_text(self) -> str:
        return calendar.month_abbr[self.month]

    @property
    def text(self) -> str:
        """``Nov``, or ``Jan 2027`` for the first label and every January."""
        return f"{self.short_text} {self.year}" if self.with_year else self.short_text


@dataclass(frozen=True)
class Grid:
    """Weeks as columns (Monday first), weekdays as rows."""

    origin: date  # the Monday of column 0
    first_day: date  # the first day of the history (earlier cells of week 0 are ``none``)
    last_day: date  # the last day that can hold data (today, or a later run day)
    columns: int
    cells: tuple[Cell, ...]  # column-major: index = col * 7 + row
    months: tuple[MonthLabel, ...]
    thresholds: tuple[int, ...]  # row-count quartile limits used for the ok shades

    def position(self, day: date) -> tuple[int, int]:
        """(column, row) of ``day``; may lie outside the grid."""
        return (day - self.origin).days // 7, day.weekday()

    def day_at(self, col: int, row: int) -> date:
        return self.origin + timedelta(days=col * 7 + row)

    def cell_at(self, col: int, row: int) -> Cell:
        return self.cells[col * 7 + row]

    def cell(self, day: date) -> Cell | None:
        col, row = self.position(day)
        if 0 <= col < self.columns:
            return self.cell_at(col, row)
        return None

    def clamp(self, day: date) -> date:
        """``day`` moved into the selectable range (first_day .. last_day)."""
        return min(max(day, self.first_day), self.last_day)

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in KINDS}
        for c in self.cells:
            out[c.kind] += 1
        return out


def today_in(tz: tzinfo) -> date:
    """Today's date in the library's time zone (honours ``REPORT_KEEPER_NOW``)."""
    return clock.now(tz).date()


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def cell_kind(run: RunDay) -> str:
    """The kind of an expected run day (worst news first)."""
    if run.status == model.MISSING:
        return MISSING
    if run.status == model.PENDING:
        return PENDING
    if run.not_held:  # whatever it held, it is not here now
        return MISSING_LOCALLY
    v = run.verification
    if v in (st.UNREADABLE, st.SCHEMA):
        return BROKEN
    if v in (st.EMPTY, st.EMPTY_CLOSED):
        return EMPTY_CLOSED if (v == st.EMPTY_CLOSED or run.closed) else EMPTY
    for kind in _CONTENT:
        if kind in run.content:
            return kind
    if run.status == model.LATE:
        return LATE
    if v is None:
        return UNVERIFIED
    return OK  # ok, or changed (the file we hold was verified; the detail says it changed)


def shade_thresholds(rows: Iterable[int]) -> tuple[int, ...]:
    """Quartile limits (nearest rank) of the row counts of ok days; ``()`` when none."""
    values = sorted(r for r in rows if r is not None)
    if not values:
        return ()
    n = len(values)
    return tuple(values[min(n - 1, max(0, -(-n * q // 4) - 1))] for q in (1, 2, 3))


def shade_of(rows: int | None, thresholds: Sequence[int]) -> int:
    """1 (fewest rows) .. 4 (most). All-equal counts get the full shade."""
    if rows is None or not thresholds:
        return 4
    if thresholds[0] == thresholds[-1]:
        return 4 if rows >= thresholds[-1] else 1
    return bisect_left(list(thresholds), rows) + 1


def build_grid(runs: Iterable[RunDay], *, today: date, since: date | None = None) -> Grid:
    """The calendar grid of a report's run days, from its first run (or ``since``) to today.

    ``runs`` are the expected run days (health evaluation); a day in range without a run is
    ``not-expected``, a day after ``today`` (or before the history) is ``none``.
    """
    by_day: dict[date, RunDay] = {}
    for run in runs:
        by_day[run.day] = run
    first = min(by_day) if by_day else today
    if since is not None:
        first = min(first, since)
    last = max([today, *by_day])
    origin = monday_of(first)
    columns = (monday_of(last) - origin).days // 7 + 1

    kinds = {day: cell_kind(run) for day, run in by_day.items()}
    thresholds = shade_thresholds(
        run.rows for day, run in by_day.items() if kinds[day] == OK and run.rows is not None
    )
    cells: list[Cell] = []
    for col in range(columns):
        for row in range(7):
            day = origin + timedelta(days=col * 7 + row)
            found = by_day.get(day)
            if found is not None:
                kind = kinds[day]
                shade = shade_of(found.rows, thresholds) if kind == OK else 0
                cells.append(Cell(day, col, row, kind, shade, found))
            elif first <= day <= today:
                cells.append(Cell(day, col, row, NOT_EXPECTED))
            else:
                cells.append(Cell(day, col, row, NONE))
    return Grid(origin, first, last, columns, tuple(cells), _month_labels(origin, columns, first), thresholds)


def _month_labels(origin: date, columns: int, first: date) -> tuple[MonthLabel, ...]:
    """A label over the column holding each month's 1st (and over column 0)."""
    labels: list[MonthLabel] = []
    start = max(origin, first)
    labels.append(MonthLabel(0, start.year, start.month, True))
    for col in range(columns):
        monday = origin + timedelta(days=col * 7)
        for offset in range(7):
            day = monday + timedelta(days=offset)
            if day.day == 1 and day > start:
                if labels and labels[-1].col == col:
                    labels.pop()
                labels.append(MonthLabel(col, day.year, day.month, day.month == 1))
    return tuple(labels)


def glyph(cell: Cell) -> str:
    if cell.kind == OK:
        return OK_SHADES[max(1, min(4, cell.shade)) - 1]
    return STYLES[cell.kind].glyph


def color(cell: Cell) -> str:
    if cell.kind == OK:
        return OK_COLORS[max(1, min(4, cell.shade)) - 1]
    return STYLES[cell.kind].color


# --------------------------------------------------------------------------- the detail panel


@dataclass(frozen=True)
class DayDetail:
    """What the panel beside the heatmap says about one day. No cell values, only facts."""

    title: str  # "Tue 24 Nov 2026 · missing"
    kind: str
    meaning: str
    facts: tuple[tuple[str, str], ...] = ()  # (label, value): files, rows, delivered, ...
    reasons: tuple[str, ...] = ()  # the problems of that day (message)
    steps: tuple[str, ...] = ()  # what to do (the app's step), deduplicated
    files: tuple[str, ...] = field(default=())
    purged: tuple[str, ...] = ()  # of ``files``: those whose local copy the retention policy deleted


def _fmt_day(day: date | None) -> str:
    return f"{day:%a} {day.day} {day:%b} {day.year}" if day else "—"


def day_detail(
    cell: Cell,
    *,
    problems: Iterable[Problem] = (),
    tz: tzinfo | None = None,
    today: date | None = None,
    thresholds: Sequence[int] = (),
) -> DayDetail:
    """Files, rows, status, why, rescue-by and delete-on of one day.

    ``problems``: the report's problems; those of this day are the reasons.
    """
    kind_label = STYLES[cell.kind].label if cell.kind != OK else "ok"
    title = f"{_fmt_day(cell.day)} · {kind_label}"
    run = cell.run
    facts: list[tuple[str, str]] = []
    if run is not None:
        facts.append(("Run", run.status))
        if run.files:
            if len(run.files) > 1:
                facts.append(("Files", f"{len(run.files)} (duplicate delivery)"))
        if run.delivered_at is not None:
            when = run.delivered_at.astimezone(tz) if tz else run.delivered_at
            facts.append(("Delivered", f"{when:%a} {when.day} {when:%b} {when:%H:%M}"))
        if run.verification is not None:
            facts.append(("Verified", run.verification))
        if run.rows is not None:
            rows = f"{run.rows:,}"
            if cell.kind == OK and thresholds:
                rows += f" (shade {cell.shade} of 4)"
            facts.append(("Rows", rows))
        if run.covered_day is not None:
            covered = _fmt_day(run.covered_day) + (" (closed day)" if run.closed else "")
            facts.append(("Covers loans of", covered))
        if run.rescue_by is not None and cell.kind in (MISSING, EMPTY, BROKEN, PENDING, *_CONTENT):
            left = ""
            if today is not None:
                n = (run.rescue_by - today).days
                left = (f" (in {n} days)" if n > 1 else " (tomorrow)" if n == 1
                        else " (today)" if n == 0 else " (passed)")
            facts.append(("Rescue by", _fmt_day(run.rescue_by) + left))
        if run.purged:
            # The ledger keeps what it knew of them: the day stays delivered and verified.
            everything = len(run.purged) == len(run.files)
            facts.append(("Local copy", "purged (local retention; the ledger keeps its record)" if everything
                          else f"{len(run.purged)} of {len(run.files)} purged (local retention)"))
        if run.delete_on is not None:
            left = ""
            if today is not None:
                n = (run.delete_on - today).days
                left = f" (in {n} days)" if n > 0 else (" (today)" if n == 0 else " (deleted from the server)")
            facts.append(("Delete on", _fmt_day(run.delete_on) + left))
    reasons: list[str] = []
    steps: list[str] = []
    for p in problems:
        if p.day == cell.day:
            reasons.append(f"{p.severity}: {p.message}")
            step = p.step(Audience.APP)  # the heatmap is read in the app: its keys
            if step and step not in steps:
                steps.append(step)
    return DayDetail(
        title=title,
        kind=cell.kind,
        meaning=MEANING[cell.kind],
        facts=tuple(facts),
        reasons=tuple(reasons),
        steps=tuple(steps),
        files=tuple(run.files) if run is not None else (),
        purged=tuple(run.purged) if run is not None else (),
    )


def kind_of_day(grid: Grid, day: date) -> str:
    cell = grid.cell(day)
    return cell.kind if cell is not None else NONE


def legend(shown: Iterable[str] = ()) -> list[tuple[str, str, str]]:
    """(glyph, colour, label) for every kind shown in the legend, ok's shades first.

    ``shown``: the kinds on the grid; a rare kind (a copy gone from the disk) is listed only
    when a cell has it."""
    rare = [k for k in (MISSING_LOCALLY,) if k in shown]
    items = [("".join(OK_SHADES), "bright_green", "ok (rows: few→many)")]
    for kind in (LATE, EMPTY, EMPTY_CLOSED, MISSING, *rare, BROKEN, STALE, WRONG_DAY, FEW_ROWS,
                 UNVERIFIED, PENDING, NOT_EXPECTED):
        s = STYLES[kind]
        items.append((s.glyph, s.color, s.label))
    return items


def run_day_at(moment: datetime, tz: tzinfo) -> date:
    """The calendar day (the cell) of an aware instant in the library's zone. Not a delivery's
    run day: a delivery after midnight may belong to the day before (``Timing.run_day_of``)."""
    return moment.astimezone(tz).date()
