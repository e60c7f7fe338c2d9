"""When a report is expected: the schedule model (docs/DOMAIN.md, "Schedule and deadlines").

A schedule says on which days a report runs; ``at`` and ``grace`` say when on that day, in the
profile's time zone (``zoneinfo``, so daylight-saving changes are handled: a report "at 07:00"
runs at 07:00 local time on both sides of a change).

Schedule texts (``parse_schedule``):

- ``daily``
- ``every N days`` (also ``every day``, ``every 2 days from 2026-06-01``); without ``from`` the
  first run day is anchored on the report's first delivery (``Schedule.anchored``), else on
  1970-01-01
- ``weekly:MON,THU`` (also ``weekly`` alone = ``weekly:MON``, and day names in full)
- ``monthly:1`` (also ``monthly:1,15``; a day past the month's end, e.g. 31, means the last day
  of shorter months; ``monthly:last``)

Public API:

- ``parse_schedule(text) -> Schedule``; ``parse_at(text) -> time``; ``parse_duration(text) ->
  timedelta`` — all raise ``ValueError`` whose message says what is wrong and what is accepted.
- ``Schedule.occurs_on(day)``, ``Schedule.run_days(start, end)``, ``Schedule.next_run(day)``,
  ``Schedule.previous_run(day)``.
- ``Timing(schedule, at, grace, tz)``: ``run_at(day)`` (aware, local), ``window(day)`` (UTC
  instants: on-time from at-1h to at+grace), ``deadline(day)``.
- ``infer_schedule(deliveries, tz) -> Inference`` (a tuple ``(schedule, at, confidence)``),
  from history: the most common cadence and time of day; ``trusted(guess, moments, tz)``:
  whether it is known well enough to expect its runs.
"""

from __future__ import annotations

import calendar
import itertools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import NamedTuple

from tui.core.model import Delivery

EARLY_TOLERANCE = timedelta(hours=1)  # a delivery up to 1 h before ``at`` is on time
EPOCH = date(1970, 1, 1)
ONE_DAY = timedelta(days=1)

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_FULL_WEEKDAYS = tuple(calendar.day_name[i].upper() for i in range(7))
LAST = 32  # monthly day "last" (any day past the month's end means its last day)

_SCHEDULE_HELP = (
    "use 'daily', 'every N days', 'weekly:MON,THU' or 'monthly:1' "
    "(several days: 'monthly:1,15'; 'monthly:last')"
)


@dataclass(frozen=True)
class Schedule:
    """On which days a report runs."""

    kind: str  # "daily" | "every" | "weekly" | "monthly"
    interval: int = 1  # kind "every": every N days
    weekdays: tuple[int, ...] = ()  # kind "weekly": 0 = Monday
    monthdays: tuple[int, ...] = ()  # kind "monthly": 1..31, LAST (32) = last day
    anchor: date | None = None  # kind "every": a run day (None: not yet anchored)
    inferred: bool = field(default=False, compare=False)

    # -- text -----------------------------------------------------------------------------
    def __str__(self) -> str:
        if self.kind == "daily":
            return "daily"
        if self.kind == "every":
            text = "every day" if self.interval == 1 else f"every {self.interval} days"
            return text + (f" from {self.anchor.isoformat()}" if self.anchor else "")
        if self.kind == "weekly":
            return "weekly:" + ",".join(WEEKDAYS[d] for d in self.weekdays)
        return "monthly:" + ",".join("last" if d == LAST else str(d) for d in self.monthdays)

    def describe(self) -> str:
        """Plain words for people: "every day", "every Mon and Thu", "on day 1 of each month"."""
        if self.kind == "daily" or (self.kind == "every" and self.interval == 1):
            return "every day"
        if self.kind == "every":
            return f"every {self.interval} days"
        if self.kind == "weekly":
            names = [calendar.day_abbr[d] for d in self.weekdays]
            return "every " + (" and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0])
        days = ["the last day" if d == LAST else f"day {d}" for d in self.monthdays]
        return "on " + " and ".join(days) + " of each month"

    # -- days -----------------------------------------------------------------------------
    def anchored(self, first_day: date) -> Schedule:
        """For "every N days" without an anchor: runs aligned on ``first_day``."""
        if self.kind == "every" and self.anchor is None:
            return replace(self, anchor=first_day)
        return self

    def occurs_on(self, day: date) -> bool:
        if self.kind == "daily":
            return True
        if self.kind == "every":
            return (day - (self.anchor or EPOCH)).days % self.interval == 0
        if self.kind == "weekly":
            return day.weekday() in self.weekdays
        last = calendar.monthrange(day.year, day.month)[1]
        for wanted in self.monthdays:
            target = min(wanted, last)
            if day.day == target:
                return True
        return False

    def run_days(self, start: date, end: date) -> list[date]:
        """Every run day from ``start`` to ``end``, both included: the days :meth:`occurs_on`
        says, found from the schedule's own days (a week's, a month's, every N-th), not by
        asking about each day of the span (decades of a weekly report are ~3.5 times as many
        days as runs). Counted in day ordinals, so a span up to the calendar's last day ends."""
        first, last = start.toordinal(), end.toordinal()
        if last < first:
            return []
        if self.kind == "every" and self.interval > 1:
            offset = (first - (self.anchor or EPOCH).toordinal()) % self.interval
            return [date.fromordinal(n) for n in range(first + (self.interval - offset) % self.interval,
                                                       last + 1, self.interval)]
        if self.kind == "weekly":
            wanted = sorted({w for w in self.weekdays if 0 <= w <= 6})
            monday = first - start.weekday()
            return [date.fromordinal(n) for week in range(monday, last + 1, 7) for w in wanted
                    if first <= (n := week + w) <= last]
        if self.kind == "monthly":
            days: list[date] = []
            year, month = start.year, start.month
            while (year, month) <= (end.year, end.month):
                month_end = calendar.monthrange(year, month)[1]
                for target in sorted({min(wanted, month_end) for wanted in self.monthdays if wanted >= 1}):
                    day = date(year, month, target)
                    if start <= day <= end:
                        days.append(day)
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            return days
        return [date.fromordinal(n) for n in range(first, last + 1)]  # daily, every day

    @property
    def max_gap(self) -> int:
        """The most days from one run day to the next."""
        return {"daily": 1, "every": self.interval, "weekly": 7, "monthly": 62}[self.kind]

    def next_run(self, day: date) -> date:
        """The first run day strictly after ``day``."""
        for n in range(1, self.max_gap + 1):
            candidate = day + timedelta(days=n)
            if self.occurs_on(candidate):
                return candidate
        raise AssertionError(f"schedule {self} has no run within {self.max_gap} days")

    def previous_run(self, day: date) -> date:
        """The last run day strictly before ``day``."""
        for n in range(1, self.max_gap + 1):
            candidate = day - timedelta(days=n)
            if self.occurs_on(candidate):
                return candidate
        raise AssertionError(f"schedule {self} has no run within {self.max_gap} days")


def _weekday(token: str) -> int:
    t = token.strip().upper()
    if t in WEEKDAYS:
        return WEEKDAYS.index(t)
    if t in _FULL_WEEKDAYS:
        return _FULL_WEEKDAYS.index(t)
    raise ValueError(f"{token.strip()!r} is not a day of the week; use MON, TUE, WED, THU, FRI, SAT or SUN")


def parse_schedule(text: object) -> Schedule:
    """A schedule from its config text; ``ValueError`` with a reason and the accepted forms."""
    if not isinstance(text, str):
        raise ValueError(f"a schedule must be text; {_SCHEDULE_HELP}")
    raw = " ".join(text.strip().split())
    low = raw.lower()
    if not low:
        raise ValueError(f"the schedule is empty; {_SCHEDULE_HELP}")
    if low == "daily":
        return Schedule("daily")
    m = re.fullmatch(r"every\s+(?:(\d+)\s+)?days?(?:\s+from\s+(\S+))?", low)
    if m:
        n = int(m.group(1) or 1)
        if n < 1 or n > 366:
            raise ValueError(f"'every {n} days' is out of range; N must be between 1 and 366")
        if m.group(1) is None and low.split()[1] == "days":
            raise ValueError(f"{raw!r} lacks the number of days; {_SCHEDULE_HELP}")
        anchor = None
        if m.group(2):
            try:
                anchor = date.fromisoformat(m.group(2))
            except ValueError:
                raise ValueError(
                    f"{m.group(2)!r} after 'from' is not a date; write it as YYYY-MM-DD"
                ) from None
        if n == 1:
            return Schedule("daily")
        return Schedule("every", interval=n, anchor=anchor)
    kind, sep, rest = raw.partition(":")
    kind = kind.strip().lower()
    if kind == "weekly":
        if not sep or not rest.strip():
            raise ValueError(f"{raw!r} names no days; write e.g. 'weekly:MON,THU'")
        days = sorted({_weekday(tok) for tok in rest.split(",") if tok.strip()} or {-1})
        if days == [-1]:
            raise ValueError(f"{raw!r} names no days; write e.g. 'weekly:MON,THU'")
        return Schedule("weekly", weekdays=tuple(days))
    if kind == "monthly":
        if not sep or not rest.strip():
            raise ValueError(f"{raw!r} names no day of the month; write e.g. 'monthly:1'")
        monthdays: set[int] = set()
        for tok in rest.split(","):
            tok = tok.strip()
            if not tok:
                continue
            if tok.lower() == "last":
                monthdays.add(LAST)
                continue
            if not tok.isdigit() or not 1 <= int(tok) <= 31:
                raise ValueError(
                    f"{tok!r} is not a day of the month; use 1 to 31 or 'last' (e.g. 'monthly:1')"
                )
            monthdays.add(int(tok))
        if not monthdays:
            raise ValueError(f"{raw!r} names no day of the month; write e.g. 'monthly:1'")
        return Schedule("monthly", monthdays=tuple(sorted(monthdays)))
    raise ValueError(f"{raw!r} is not a schedule; {_SCHEDULE_HELP}")


def parse_at(text: object) -> time:
    """``"07:00"`` → ``time(7, 0)``; ``ValueError`` with a reason."""
    if isinstance(text, time):
        return text
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", str(text))
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59 or int(m.group(3) or 0) > 59:
        raise ValueError(f"{text!r} is not a time of day; write it as HH:MM, e.g. '07:00'")
    return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def parse_duration(text: object) -> timedelta:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"`` → timedelta; ``ValueError`` with a reason."""
    if isinstance(text, timedelta):
        return text
    raw = str(text).strip().lower().replace(" ", "")
    m = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?(?:(\d+)s)?", raw)
    if not raw or not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration; write e.g. '2h', '90m' or '1h30m'")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=s)


@dataclass(frozen=True)
class Timing:
    """A schedule placed in time: run days at ``at`` local time, on time until ``at + grace``.

    ``inferred``/``confidence``: the schedule or ``at`` was guessed from the delivery history
    (:func:`infer_schedule`) rather than configured. ``ReportConfig.timing`` builds it.
    """

    schedule: Schedule
    at: time
    grace: timedelta
    tz: tzinfo
    inferred: bool = False
    confidence: float | None = None  # inferred timings only
    #: False: the schedule was inferred from too little or too irregular a history
    #: (:func:`trusted`); it places deliveries in runs, but no run of it is expected.
    known: bool = True

    def run_at(self, day: date) -> datetime:
        """The scheduled run, aware in the profile's zone (wall-clock ``at`` on ``day``)."""
        return datetime.combine(day, self.at, tzinfo=self.tz)

    def window(self, day: date) -> tuple[datetime, datetime]:
        """(earliest on-time, deadline) as UTC instants; arithmetic in absolute time."""
        run = self.run_at(day).astimezone(UTC)
        return run - EARLY_TOLERANCE, run + self.grace

    def deadline(self, day: date) -> datetime:
        return self.window(day)[1]

    def on_the_clock(self, day: date) -> bool:
        """Whether ``day`` happened in the zone: crossing the date line, a zone may skip a
        whole day (Samoa went from 29 to 31 December 2011), and a skipped day has no run."""
        return self._midnight(day + ONE_DAY) > self._midnight(day)

    def run_days(self, start: date, end: date) -> list[date]:
        """The schedule's run days from ``start`` to ``end`` (both included) that the zone had."""
        days = []
        after: tuple[date, datetime] | None = None  # the day after the previous one, its midnight
        for d in self.schedule.run_days(start, end):
            # Consecutive days share a midnight: a daily schedule converts each one once.
            begins = after[1] if after is not None and after[0] == d else self._midnight(d)
            after = (d + ONE_DAY, self._midnight(d + ONE_DAY))
            if after[1] > begins:  # as on_the_clock
                days.append(d)
        return days

    def _midnight(self, day: date) -> datetime:
        """The start of ``day`` in the zone, as a UTC instant."""
        return datetime.combine(day, time(0), tzinfo=self.tz).astimezone(UTC)

    def next_run(self, day: date) -> date:
        """The first run day after ``day`` that the zone has."""
        day = self.schedule.next_run(day)
        while not self.on_the_clock(day):
            day = self.schedule.next_run(day)
        return day

    def run_day_of(self, moment: datetime) -> date:
        """The run a delivery at ``moment`` belongs to: the latest run whose window had opened.

        A delivery after midnight that is late for yesterday's run belongs to yesterday's run
        (and covers that run's loan day), not to the calendar day it arrived on.
        """
        local = moment.astimezone(self.tz).date()
        for day in (local + timedelta(days=1), local):
            if self.schedule.occurs_on(day) and self.window(day)[0] <= moment:
                return day
        day = self.schedule.previous_run(local)
        while not self.on_the_clock(day):
            day = self.schedule.previous_run(day)
        return day


def nearest_run_day(moment: datetime, at: time, tz: tzinfo) -> date:
    """The day (in ``tz``) whose ``at`` is nearest to ``moment``: the run a delivery was made
    for when nothing else says (a delivery at 01:15 for a run at 23:00 is the day before's)."""
    local = moment.astimezone(tz).date()
    instant = moment.astimezone(UTC)
    return min((local - timedelta(days=1), local, local + timedelta(days=1)),
               key=lambda d: abs(datetime.combine(d, at, tzinfo=tz).astimezone(UTC) - instant))


#: An inferred schedule is trusted (its runs are expected, a missing one is a problem) only
#: when it explains at least this share of the history ...
TRUSTED_CONFIDENCE = 0.6
#: ... of deliveries on at least this many days: any two deliveries fit some schedule
#: perfectly, and one stray workbook must not become a report expected every day.
TRUSTED_DAYS = 3


class Inference(NamedTuple):
    schedule: Schedule
    at: time
    confidence: float  # 0..1: share of the history the inferred schedule explains


def _floor_quarter(t: time) -> time:
    return time(t.hour, t.minute - t.minute % 15)


def infer_schedule(deliveries: Iterable[Delivery | datetime], tz: tzinfo) -> Inference:
    """Most common cadence and time of day of a report's history.

    ``deliveries``: ``model.Delivery`` items or aware datetimes. The result's schedule has
    ``inferred=True``. With fewer than two deliveries the guess is "daily" with confidence 0
    (or 0.1 with one delivery, giving its time of day).
    """
    moments = sorted(
        (d if isinstance(d, datetime) else d.delivered_at).astimezone(tz) for d in deliveries
    )
    if not moments:
        return Inference(Schedule("daily", inferred=True), time(7, 0), 0.0)
    at = Counter(_floor_quarter(m.time()) for m in moments).most_common(1)[0][0]
    days = sorted({m.date() for m in moments})
    if len(days) < 2:
        return Inference(Schedule("daily", inferred=True), at, 0.1)
    first, last = days[0], days[-1]
    observed = set(days)

    def score(s: Schedule) -> float:
        expected = set(s.run_days(first, last))
        hit = len(expected & observed)
        return hit / max(len(expected), len(observed))

    candidates: list[Schedule] = [Schedule("daily", inferred=True)]
    gaps = Counter((b - a).days for a, b in itertools.pairwise(days))
    gap = gaps.most_common(1)[0][0]
    if 1 < gap < 7 or gap > 7 and gap < 28:
        # Anchored on the first delivery's run (a late one just after midnight is the day
        # before's), as a configured "every N days" is.
        anchor = nearest_run_day(moments[0], at, tz)
        candidates.append(Schedule("every", interval=gap, anchor=anchor, inferred=True))
    weekday_counts = Counter(d.weekday() for d in days)
    frequent = tuple(sorted(w for w, c in weekday_counts.items() if c >= 0.5 * max(weekday_counts.values())))
    if len(frequent) < 7:
        candidates.append(Schedule("weekly", weekdays=frequent, inferred=True))
    dom = Counter(d.day for d in days).most_common(1)[0][0]
    if gap >= 28:
        candidates.append(Schedule("monthly", monthdays=(dom,), inferred=True))
    # Best score; on ties prefer the simpler (earlier) candidate.
    best = max(candidates, key=lambda s: (round(score(s), 6), -candidates.index(s)))
    confidence = score(best)
    # Time of day: share of deliveries on time for the inferred ``at`` (default 2 h grace).
    timing = Timing(best, at, timedelta(hours=2), tz)
    on_time = sum(1 for m in moments if timing.window(m.date())[0] <= m <= timing.deadline(m.date()))
    confidence = round(confidence * (on_time / len(moments)), 3)
    return Inference(best, at, confidence)


#: A file name replaced in place is taken for a rolling report once this many copies were seen
#: (the first and two replacements), each on a day of its own ...
ROLLING_MIN_COPIES = 3
#: ... at a rhythm a schedule explains this well (the confidence of :func:`infer_schedule`).
ROLLING_MIN_CONFIDENCE = 0.6


def trusted(guess: Inference, moments: Iterable[datetime], tz: tzinfo) -> bool:
    """Whether an inferred schedule is known well enough to expect its runs (docs/DOMAIN.md,
    "The schedule and the run day"): a confidence of at least ``TRUSTED_CONFIDENCE`` over
    deliveries on at least ``TRUSTED_DAYS`` different days in ``tz``."""
    days = {m.astimezone(tz).date() for m in moments}
    return guess.confidence >= TRUSTED_CONFIDENCE and len(days) >= TRUSTED_DAYS


def replaced_on_schedule(moments: Iterable[datetime], tz: tzinfo) -> bool:
    """Whether the modification times of one file name's copies look like deliveries of a
    scheduled report replacing its file in place (docs/DOMAIN.md, "Rolling reports"): at
    least ``ROLLING_MIN_COPIES`` copies on as many different days, at a rhythm
    :func:`infer_schedule` explains with at least ``ROLLING_MIN_CONFIDENCE``. Copies replaced
    within hours (someone re-saving a file) are not."""
    local = sorted({m.astimezone(tz) for m in moments})
    if len({m.date() for m in local}) < ROLLING_MIN_COPIES:
        return False
    return infer_schedule(local, tz).confidence >= ROLLING_MIN_CONFIDENCE
