"""Health of the reports: schedule, verification and deadlines over the delivery history.

Pure data, no I/O: the input is a list of ``model.Delivery`` (the ledger's history), the
profile (time zone, report settings), the time "now" and optionally the current server listing
and the connection test; the output is a ``HealthReport`` that the ``check`` command prints and
the TUI's health screen and heatmap render.

Rules (docs/DOMAIN.md), for every expected run day R of a report:

- a delivery belongs to the latest run whose on-time window had opened when it arrived
  (window: R at-1h .. R at+grace, in the profile's zone; matched by an as-of join, one binary search per delivery);
- **on-time**: its first delivery is inside the window; **late**: after it (before the next
  run's window); **missing**: none and the deadline has passed; **pending**: none yet and the
  deadline has not passed; more than one delivery: all kept and listed (``RunDay.files``);
- ``covered_day`` = R - lag_days; ``rescue_by`` = covered_day + anonymize_days (a manual re-run in
  Alma works *before* that date); ``delete_on`` = delivery date + retention_days.

Problems, and how long they are reported (so that an old, unfixable event does not keep cron
alerting for ever, while nothing actionable is hidden; the runs themselves keep all history):

- a configured report with a schedule but no delivery yet is expected over the last
  ``NO_HISTORY_DAYS`` days; one with neither schedule nor history expects nothing yet;
- missing: critical while it can still be rescued (today < rescue_by), then a warning for runs
  within the last ``retention_days``; a missing run whose covered day is closed is a warning;
- empty (no rows on an open covered day): warning, within ``retention_days``;
- late: warning, for runs within the last ``LATE_DAYS`` days;
- schema, unreadable: critical, within ``retention_days``;
- near-deletion: warning, a file on the server, not downloaded, within ``NEAR_DELETION_DAYS``
  days of its delete-on date;
- lost: critical, for ever: seen on the server, never downloaded, gone from the server; and
  critical while a downloaded copy is missing from the disk and the server's is gone too;
- missing-locally: warning, a downloaded copy is missing from the disk (or has another size)
  while the server still has the file (``sync`` fetches it again);
- changed: warning while the server's changed copy is not held yet, then for ``CHANGED_DAYS``
  days after the change was seen (both copies are kept; the ledger remembers it for ever);
- connection: critical when the connection test failed, warning when the account is read-only;
- content (what the rows hold, from the ledger's fingerprints, date coverage and row counts;
  docs/CONTENT_CHECKS.md), within ``retention_days``: wrong-day critical while rescuable, then
  a warning; stale and few-rows warnings;
- waiting-for-export: warning, one per report, while local copies are past
  ``local_retention_days`` but kept because no export has included them yet
  (``keep_until_exported``; docs/RETENTION.md). A copy the retention policy purged is neither
  missing-locally nor lost: its run keeps its status and verification (``RunDay.purged``).

Problems are ordered by urgency: connection failures first, then critical before warning, and
within a severity the soonest action date (rescue-by, delete-on) first.

Public API: ``evaluate(profile, deliveries, *, now=None, connection=None) -> HealthReport``;
``evaluate_report(report, deliveries, *, tz, now) -> ReportHealth``; ``ConnectionStatus``; ``fmt_day(date, today)``.
"""

from __future__ import annotations

import functools
import logging
import statistics
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import NamedTuple

from tui.core import clock, content, model
from tui.core import status as st
from tui.core.config import Profile, ReportConfig
from tui.core.model import (
    ConnTestResult,
    Delivery,
    JSONObject,
    LocalState,
    Problem,
    ProblemKind,
    RunDay,
    StepOutcome,
    WriteTest,
)
from tui.core.names import escape_name
from tui.core.schedule import Schedule, Timing
from tui.core.status import Severity, VerifyStatus

log = logging.getLogger("report_keeper.health")

NEAR_DELETION_DAYS = 14
LATE_DAYS = 7
#: A changed server copy, once both copies are held, is shown for this many days.
CHANGED_DAYS = 14
NO_HISTORY_DAYS = 7  # a report with no delivery at all is evaluated over the last week
#: A report whose schedule cannot be inferred with confidence is a warning for this many days
#: after its latest delivery (then it is shown, not reported).
UNKNOWN_SCHEDULE_DAYS = 7
#: How the app fetches the files the server still has and the disk does not (d on Health, and
#: on Remote with nothing selected, queues every one of them).
FETCH_KEYS = "Press d on Health (1) or Remote (2)"
DEFAULT_AT = time(7, 0)

WARNING = Severity.WARNING
CRITICAL = Severity.CRITICAL

#: Local copies past local_retention_days that no export has included (docs/RETENTION.md).
WAITING_FOR_EXPORT = ProblemKind.WAITING_FOR_EXPORT

# Content problems (what a delivery's rows hold; docs/CONTENT_CHECKS.md).
WRONG_DAY = ProblemKind.WRONG_DAY
STALE = ProblemKind.STALE
FEW_ROWS = ProblemKind.FEW_ROWS
#: The order they are shown in: the cause first (a stale file repeats an earlier day's rows,
#: so it is usually wrong-day too).
CONTENT_KINDS = (STALE, WRONG_DAY, FEW_ROWS)
#: A delivery whose rows equal those of one of the previous this many runs is stale.
STALE_RUNS = 7
#: Few rows: compared with the median of the last this many runs of the same weekday ...
FEW_ROWS_HISTORY = 8
#: ... once at least this many such runs with data exist.
FEW_ROWS_MIN_HISTORY = 4
#: Validator statuses of a file whose rows count (for stale and few-rows).
_DATA_STATUSES = (st.OK, st.CHANGED, st.WRONG_DAY)
#: Problems whose next step is a re-run before their rescue-by date.
RESCUE_KINDS = (ProblemKind.MISSING, ProblemKind.EMPTY, ProblemKind.UNREADABLE, *CONTENT_KINDS)
_SEVERITY_CODE = {WARNING: st.Exit.WARNING, CRITICAL: st.Exit.CRITICAL}

# Worst first: which verification status describes a run with several files.
_VERIFICATION_RANK = {
    st.UNREADABLE: 7,
    st.SCHEMA: 6,
    st.WRONG_DAY: 5,
    st.EMPTY: 4,
    st.CHANGED: 3,
    st.EMPTY_CLOSED: 2,
    st.OK: 1,
}


def held_state(delivery: Delivery) -> str:
    """What is held of a delivery, in words, beside its time (Health, ``check``): its rows, or
    what its verification found when it has none (``unreadable``), or why there is none yet."""
    if delivery.rows is not None:
        return f"{delivery.rows:,} rows"
    if not delivery.downloaded:
        return "not downloaded yet"
    if delivery.verification is not None:
        return str(delivery.verification)
    return "not verified yet"


def fmt_day(day: date, today: date | None = None) -> str:
    """``Tue 2 Jun``; the year is added when ``day`` is more than 180 days from ``today``."""
    text = f"{_DAY_ABBR[day.weekday()]} {day.day} {_MONTH_ABBR[day.month - 1]}"
    if today is not None and abs((day - today).days) > 180:
        text += f" {day.year}"
    return text


#: strftime's ``%a`` and ``%b`` names, asked once: :func:`fmt_day` names every day of years of
#: missing runs several times, and each strftime call costs microseconds.
_DAY_ABBR = tuple(f"{date(2001, 1, 1 + i):%a}" for i in range(7))  # 1 January 2001: a Monday
_MONTH_ABBR = tuple(f"{date(2001, m, 1):%b}" for m in range(1, 13))


def _d(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class ConnectionStatus:
    """The connection part of ``check`` (JSON ``connection``, docs/JSON.md)."""

    ok: bool | None  # None: not tested (--offline)
    message: str
    write_test: WriteTest
    steps: dict[str, StepOutcome] = field(default_factory=dict)  # upload/download/delete -> outcome

    @classmethod
    def skipped(cls, message: str = "not tested (--offline): the ledger alone was used") -> ConnectionStatus:
        return cls(ok=None, message=message, write_test=WriteTest.SKIPPED)

    @classmethod
    def from_result(cls, result: ConnTestResult) -> ConnectionStatus:
        """From the connection test (the steps it did not skip)."""
        steps = {k: v for k, v in result.steps.items() if v}
        return cls(ok=result.ok, message=result.message, write_test=result.write_test, steps=steps)

    def problem(self) -> Problem | None:
        if self.ok is False:
            return Problem(
                severity=CRITICAL,
                kind=ProblemKind.CONNECTION,
                message=f"Connection failed: {self.message}",
                next_step="Fix the connection (host, key, known_hosts, network), then run "
                "'report-keeper check' again",
                # The app reads the config when it starts: r connects as it started.
                app_step="Fix the connection (host, key, known_hosts, network), then press r to list "
                "the server again; a change to the config file counts once the app is started again",
            )
        if self.write_test == WriteTest.READ_ONLY:
            return Problem(
                severity=WARNING,
                kind=ProblemKind.CONNECTION,
                message=f"The account cannot write to the report folder (read-only): {self.message}",
                next_step="Downloads work; if Alma must deliver here, ask the server's administrator "
                "for write permission",
            )
        if self.write_test == WriteTest.FAILED and self.ok:
            return Problem(
                severity=WARNING,
                kind=ProblemKind.CONNECTION,
                message=f"The connection test's probe failed: {self.message}",
                next_step="Run 'report-keeper check' again (it runs the connection test); tell the "
                "server's administrator if it persists",
                app_step="Press t to run the connection test again; tell the server's administrator "
                "if it persists",
            )
        return None

    def to_json(self) -> JSONObject:
        return {"ok": self.ok, "message": self.message, "write_test": self.write_test, "steps": dict(self.steps)}


@dataclass(frozen=True)
class ReportHealth:
    """One report: its schedule, every expected run day and its problems."""

    name: str
    exit: st.Exit
    schedule: Schedule
    at: time
    grace: timedelta
    inferred: bool
    confidence: float | None  # inferred schedules only
    runs: tuple[RunDay, ...]
    problems: tuple[Problem, ...]
    last_delivery: Delivery | None
    on_time_streak: int
    covered_lag_days: int = 3
    #: One fixed file name each delivery replaces (its versions are the deliveries); inferred:
    #: not configured, found from the name's history (docs/DOMAIN.md, "Rolling reports").
    rolling: bool = False
    rolling_inferred: bool = False
    #: False: the schedule was inferred from too little or too irregular a history to expect
    #: runs (``Timing.known``); ``schedule_note`` then says so in words.
    schedule_known: bool = True
    schedule_note: str = ""

    @property
    def status(self) -> Severity:
        return st.overall_name(self.exit)

    @property
    def last_rows(self) -> int | None:
        return self.last_delivery.rows if self.last_delivery else None

    @property
    def schedule_text(self) -> str:
        """The schedule in plain words, or why there is none (``schedule_note``)."""
        return self.schedule.describe() if self.schedule_known else self.schedule_note

    def run(self, day: date) -> RunDay | None:
        for r in self.runs:
            if r.day == day:
                return r
        return None

    def to_json(self) -> JSONObject:
        last = self.last_delivery
        return {
            "name": self.name,
            "status": self.status,
            "last_delivery": model.iso(last.delivered_at) if last else None,
            "last_file": last.name if last else None,
            "last_rows": last.rows if last else None,
            "schedule": str(self.schedule),
            "schedule_text": self.schedule_text,
            "schedule_known": self.schedule_known,
            "at": self.at.strftime("%H:%M"),
            "grace_minutes": int(self.grace.total_seconds() // 60),
            "inferred": self.inferred,
            "confidence": self.confidence,
            "rolling": self.rolling,
            "rolling_inferred": self.rolling_inferred,
            "on_time_streak": self.on_time_streak,
            "runs": [_run_json(r) for r in self.runs],
            "problems": [p.to_json() for p in self.problems],
        }


def _run_json(r: RunDay) -> JSONObject:
    return {
        "day": r.day.isoformat(),
        "status": r.status,
        "files": list(r.files),
        "verification": r.verification,
        "rows": r.rows,
        "delivered_at": model.iso(r.delivered_at),
        "covered_day": _d(r.covered_day),
        "rescue_by": _d(r.rescue_by),
        "delete_on": _d(r.delete_on),
        "closed": r.closed,
        "duplicate": len(r.files) > 1,
        "content": list(r.content),
        "purged": list(r.purged),
    }


@dataclass(frozen=True)
class HealthReport:
    """Everything ``check`` says: per report health, the connection, the overall verdict."""

    now: datetime
    reports: tuple[ReportHealth, ...]
    connection: ConnectionStatus

    @property
    def problems(self) -> list[Problem]:
        """All problems, the connection's first, ordered by urgency (a new list each time)."""
        return list(self._by_urgency)

    @functools.cached_property
    def _by_urgency(self) -> tuple[Problem, ...]:
        """:attr:`problems`, sorted once: check and the Health screen ask several times, and
        years of missing runs are tens of thousands of problems."""
        items = [p for r in self.reports for p in r.problems]
        conn = self.connection.problem()
        if conn is not None:
            items.append(conn)
        return tuple(sorted(items, key=urgency_key(self.now.date())))

    @property
    def exit_code(self) -> st.Exit:
        codes = [r.exit for r in self.reports]
        conn = self.connection.problem()
        if conn is not None:
            codes.append(_SEVERITY_CODE[conn.severity])
        return st.worst(codes)

    @property
    def status(self) -> Severity:
        return st.overall_name(self.exit_code)

    def report(self, name: str) -> ReportHealth:
        for r in self.reports:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_json(self) -> JSONObject:
        return {
            "status": self.status,
            "now": self.now.isoformat(),
            "connection": self.connection.to_json(),
            "reports": [r.to_json() for r in self.reports],
        }


# --------------------------------------------------------------------------------------------
# Ordering


UrgencyKey = tuple[int, int, bool, date, int, str]


def urgency_key(today: date) -> Callable[[Problem], UrgencyKey]:
    """Sort key for problems: connection first, critical first, soonest open action date first."""

    def key(p: Problem) -> UrgencyKey:
        action = None
        if p.kind in RESCUE_KINDS and p.rescue_by is not None and p.rescue_by > today:
            action = p.rescue_by
        elif p.kind in (ProblemKind.NEAR_DELETION, ProblemKind.MISSING_LOCALLY):
            action = p.delete_on
        return (
            0 if p.kind == ProblemKind.CONNECTION else 1,
            0 if p.severity == CRITICAL else 1,
            action is None,
            action or date.max,
            -(p.day.toordinal() if p.day else 0),
            p.file or "",
        )

    return key


# --------------------------------------------------------------------------------------------
# Evaluation


def _worst_verification(statuses: Iterable[VerifyStatus | None]) -> VerifyStatus | None:
    known = [s for s in statuses if s is not None]
    return max(known, key=_VERIFICATION_RANK.__getitem__) if known else None


def evaluate_report(
    report: ReportConfig,
    deliveries: Iterable[Delivery],
    *,
    tz: tzinfo,
    now: datetime | None = None,
) -> ReportHealth:
    """Health of one report (``report``: a ``config.ReportConfig``) from its deliveries."""
    now = (now or clock.now()).astimezone(UTC)
    today = now.astimezone(tz).date()
    everything = sorted(deliveries, key=lambda d: d.delivered_at)
    # A delivery time no delivery can have (a stamp-less file whose modification time is 0, a
    # server clock past 2099, a ledger written before names were range-checked): its date is
    # unknown. It is named once (a bad-date problem) and belongs to no run: it would make the
    # schedule expect every day since 1970, or take the date arithmetic past year 9999.
    undated = [d for d in everything if not clock.possible_delivery(d.delivered_at)]
    history = [d for d in everything if clock.possible_delivery(d.delivered_at)]
    timing = report.timing(tz, (d.delivered_at for d in history), now=now)
    schedule = timing.schedule

    # Expected run days: from the run of the first delivery (the ledger knows nothing earlier)
    # to today, and a coming run whose on-time window has opened (a run at 00:30 is on time
    # from 23:30 the evening before).
    if history and timing.known:
        days = timing.run_days(report.run_day_of(history[0].delivered_at, timing), today)
    elif history:  # only runs with files are kept: the days around them, and the last ones
        days = _days_near(timing, report.run_day_of(history[0].delivered_at, timing), today,
                          [d.delivered_at for d in history])
    elif report.schedule is not None:  # configured, nothing seen yet: expect the last week
        days = timing.run_days(today - timedelta(days=NO_HISTORY_DAYS), today)
    else:  # no schedule and no history: nothing to infer from, nothing to expect yet
        days = []
    horizon: datetime | None = None  # the next run's window opens: later deliveries are its
    if days:
        coming = timing.next_run(days[-1])
        while timing.window(coming)[0] <= now:
            days.append(coming)
            coming = timing.next_run(coming)
        horizon = timing.window(coming)[0]

    # Each run's window, once: the as-of join below and the statuses read them.
    windows = [timing.window(day) for day in days]
    starts = [start for start, _deadline in windows]
    by_run: dict[date, list[Delivery]] = {}
    # A delivery dated at or after the horizon (a name or a server clock ahead of ours) belongs
    # to a run that is not expected yet: joined to today's run, it would make it "late" before
    # its deadline, and hide it missing after.
    # With no run expected at all (every delivery dated ahead), "ahead" is ahead of now. One
    # dated further ahead than a server clock can be off (``clock.dated_ahead``) is in no run
    # even before the next run's window opens (a weekly report's is days away): the schedule
    # inference (``ReportConfig.timing``) left it out by the same rule.
    def ahead(d: Delivery) -> bool:
        if clock.dated_ahead(d.delivered_at, now):
            return True
        return d.delivered_at >= horizon if horizon is not None else d.delivered_at > now

    placed = [d for d in history if not ahead(d)]
    future = [d for d in history if ahead(d)]
    if future:
        log.warning("%s: %d deliveries dated after the next run's window opens are in no run yet",
                    report.name, len(future))
    # Which run each delivery belongs to: the latest run whose window had opened when it
    # arrived (an as-of join: one binary search in the runs' window starts, which grow with
    # the run days). ``placed`` is in delivery order, so each run's files are too.
    for d in placed:
        i = bisect_right(starts, d.delivered_at) - 1
        if i >= 0:  # before the first run's window: in no run
            by_run.setdefault(days[i], []).append(d)

    runs: list[RunDay] = []
    problems: list[Problem] = []
    data_files: dict[date, list[Delivery]] = {}  # per run: its files with data rows
    for day, (_start, deadline) in zip(days, windows, strict=True):
        files = by_run.get(day, [])
        if not files and not timing.known:
            continue  # a schedule the history cannot tell expects no run
        covered = report.covered_day(day)
        closed = report.is_closed(covered)
        rescue_by = report.rescue_by(day)
        verification: VerifyStatus | None = None
        rows: int | None = None
        delete_on: date | None = None
        delivered_at: datetime | None = None
        if files:
            first = files[0]
            state = model.ON_TIME if first.delivered_at <= deadline else model.LATE
            statuses = [_file_status(d, closed, covered) for d in files]
            data_files[day] = [d for d, v in zip(files, statuses, strict=True) if d.rows and v in _DATA_STATUSES]
            verification = _worst_verification(statuses)
            ok_rows = [d.rows for d, v in zip(files, statuses, strict=True) if d.rows is not None and v == st.OK]
            any_rows = [d.rows for d in files if d.rows is not None]
            rows = ok_rows[0] if ok_rows else (any_rows[0] if any_rows else None)
            delete_on = report.delete_on(first.delivered_at, tz)
            delivered_at = first.delivered_at
        else:
            state = model.PENDING if now <= deadline else model.MISSING
        run = RunDay(
            day=day,
            status=state,
            files=tuple(d.name for d in files) if files else (),
            verification=verification,
            rows=rows,
            delivered_at=delivered_at,
            rescue_by=rescue_by,
            delete_on=delete_on,
            closed=closed,
            covered_day=covered,
            purged=tuple(d.name for d in files if d.extra.get("purged")) if files else (),
            not_held=tuple(d.name for d in files if d.local_state == LocalState.MISSING_LOCALLY) if files else (),
        )
        runs.append(run)
        problems.extend(_run_problems(report, run, files, today, timing, _RunDates(covered, rescue_by, deadline)))
    if not timing.known and placed:
        problems.extend(_unknown_schedule_problem(report, placed, today, tz))

    runs, found = _content_problems(report, runs, data_files, today)
    problems.extend(found)

    in_future = {id(d) for d in future}
    for d in history:
        if id(d) in in_future:
            problems.extend(_bad_date_problems(d, today, tz, future=True))
        problems.extend(_file_problems(report, d, now, tz, timing))
    for d in undated:
        problems.extend(_bad_date_problems(d, today, tz, future=False))
        problems.extend(_file_problems(report, d, now, tz, timing))
    problems.extend(_retention_problems(report, history, now, today, timing))

    problems.sort(key=urgency_key(today))
    rolling = report.rolling is True or (
        report.rolling is None and any(d.extra.get("rolling_of") for d in history))
    code = st.worst(_SEVERITY_CODE[p.severity] for p in problems)
    streak = 0
    for run in reversed(runs):
        if run.status == model.PENDING:
            continue
        if run.status != model.ON_TIME:
            break
        streak += 1
    return ReportHealth(
        name=report.name,
        exit=code,
        schedule=schedule,
        at=timing.at,
        grace=timing.grace,
        inferred=timing.inferred,
        confidence=timing.confidence,
        schedule_known=timing.known,
        schedule_note="" if timing.known else unknown_schedule_note(placed, today, tz),
        runs=tuple(runs),
        problems=tuple(problems),
        # The latest delivery that counts for a run: a file dated ahead (a wrong server clock,
        # a hostile name) is named as bad-date, but as the "last delivery" it would show a
        # report that stopped days ago as delivering "next year".
        last_delivery=placed[-1] if placed else None,
        on_time_streak=streak,
        covered_lag_days=report.lag_days,
        rolling=rolling,
        rolling_inferred=rolling and report.rolling is None,
    )


def _days_near(timing: Timing, first: date, today: date, moments: list[datetime]) -> list[date]:
    """The run days from ``first`` to ``today`` that a schedule not known (``Timing.known``
    False, whose runs without files are not kept) needs: those within its longest gap (and a
    margin for a day the zone skipped) of a delivery's local day, where the as-of join may
    place it, and of today, the last of which starts the next run's window. The join finds
    the same run for every delivery as among all the days (window starts grow with the day,
    and the latest run whose window had opened is never further than the gap from the
    delivery's day), and the statuses need no other day; a schedule inferred from two
    deliveries years before the clock no longer walks every day since."""
    margin = timing.schedule.max_gap + 2
    spans = sorted((max(first, day - timedelta(days=margin)), min(today, day + timedelta(days=2)))
                   for day in {m.astimezone(timing.tz).date() for m in moments} | {today})
    merged: list[list[date]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1] + timedelta(days=1):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [day for start, end in merged for day in timing.run_days(start, end)]


def _normalise(verification: VerifyStatus | None, closed: bool) -> VerifyStatus | None:
    """Empty is fine when the covered loan day is closed, and only then."""
    if verification in (st.EMPTY, st.EMPTY_CLOSED):
        return st.EMPTY_CLOSED if closed else st.EMPTY
    return verification


def _file_status(d: Delivery, closed: bool, covered: date) -> VerifyStatus | None:
    """A file's validator status as its run sees it: empty normalised by the closed-day rule,
    and ok/wrong-day decided against the run's covered day (the schedule's run day, which
    one file alone cannot always know)."""
    v = _normalise(d.verification, closed)
    if v in (st.OK, st.WRONG_DAY) and d.coverage is not None:
        return st.WRONG_DAY if content.wrong_day(d.coverage, covered) is not None else st.OK
    return v


def _rerun_step(name: str, covered: date, rescue_by: date, today: date) -> str:
    if today < rescue_by:
        return (
            f"Re-run '{name}' in Alma Analytics for loans of {fmt_day(covered, today)} "
            f"before {fmt_day(rescue_by, today)}"
        )
    return (
        f"Too late to re-run: the loans of {fmt_day(covered, today)} were anonymized on "
        f"{fmt_day(rescue_by, today)}; note the gap in your records"
    )


class _RunDates(NamedTuple):
    """A run's dates as the evaluation found them once: its covered day, rescue-by and the
    end of its on-time window (``Timing.deadline``)."""

    covered: date
    rescue_by: date
    deadline: datetime


def _run_problems(report: ReportConfig, run: RunDay, files: list[Delivery], today: date,
                  timing: Timing, dates: _RunDates) -> list[Problem]:
    name = report.name
    age = (today - run.day).days
    within_retention = age <= report.retention_days
    covered, rescue_by, deadline = dates
    rescuable = today < rescue_by
    out: list[Problem] = []
    if run.status == model.MISSING:
        if not within_retention and not rescuable:  # years of old runs with a clock far ahead
            return out
        local = deadline.astimezone(timing.tz)
        due = f"{local.hour:02d}:{local.minute:02d}"  # %H:%M
        if run.closed:
            if within_retention:
                out.append(Problem(  # no rescue-by: there are no loans to rescue
                    severity=WARNING, kind=ProblemKind.MISSING, day=run.day,
                    message=f"No delivery of '{name}' for {fmt_day(run.day, today)} (due by {due}); "
                    f"it covers {fmt_day(covered, today)}, a closed day",
                    next_step="Nothing to rescue (closed day); check that the schedule in Alma is still active",
                ))
        elif rescuable or within_retention:
            out.append(Problem(
                severity=CRITICAL if rescuable else WARNING, kind=ProblemKind.MISSING, day=run.day, rescue_by=rescue_by,
                message=f"No delivery of '{name}' for {fmt_day(run.day, today)} (due by {due}); "
                f"it covers loans of {fmt_day(covered, today)}",
                next_step=_rerun_step(name, covered, rescue_by, today),
            ))
        return out
    if run.status == model.LATE and age <= LATE_DAYS and timing.known:
        first = files[0]
        delay = first.delivered_at - deadline
        out.append(Problem(
            severity=WARNING, kind=ProblemKind.LATE, day=run.day, file=first.name, delete_on=run.delete_on,
            message=f"'{name}' for {fmt_day(run.day, today)} arrived "
            f"{first.delivered_at.astimezone(timing.tz):%a %H:%M}, {_human_delta(delay)} after the deadline",
            next_step="Nothing is lost; if it keeps happening, check the report's schedule in Alma "
            "or raise 'grace' in the config",
        ))
    if not within_retention:
        return out
    for d in files:
        v = _normalise(d.verification, run.closed)
        if v == st.EMPTY:
            out.append(Problem(
                severity=WARNING, kind=ProblemKind.EMPTY, day=run.day, file=d.name, rescue_by=rescue_by,
                delete_on=run.delete_on,
                message=f"'{d.name}' has no data rows, but {fmt_day(covered, today)} was an open day",
                next_step=_rerun_step(name, covered, rescue_by, today) if rescuable else
                "Too late to re-run; if the library was closed that day, add it to 'closed_days'",
            ))
        elif v == st.SCHEMA:
            out.append(Problem(
                severity=CRITICAL, kind=ProblemKind.SCHEMA, day=run.day, file=d.name, delete_on=run.delete_on,
                message=f"'{d.name}' does not have the expected columns",
                next_step="Open the file and compare its header with 'expected_columns'; fix the analysis "
                "in Alma Analytics, or update 'expected_columns' if the change is intended",
            ))
        elif v == st.UNREADABLE:
            out.append(Problem(
                severity=CRITICAL, kind=ProblemKind.UNREADABLE, day=run.day, file=d.name, rescue_by=rescue_by,
                delete_on=run.delete_on,
                message=f"'{d.name}' is not a readable Excel file",
                # 'sync' skips a copy it holds; the app fetches a named file again, keeps the
                # old copy and says whether the server's differs.
                next_step="Download it again in the app (Remote: space on it, then d); if the "
                "server's copy is the same: " + _lower_first(_rerun_step(name, covered, rescue_by, today)),
                app_step="Download it again (Remote (2): space on it, then d); if the server's copy "
                "is the same: " + _lower_first(_rerun_step(name, covered, rescue_by, today)),
            ))
    return out


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _content_problems(
    report: ReportConfig, runs: list[RunDay], data_files: dict[date, list[Delivery]], today: date
) -> tuple[list[RunDay], list[Problem]]:
    """Wrong day, stale and few rows: what the delivered rows hold, from the ledger's
    fingerprints, date coverage and row counts (one pass over the runs, oldest first).

    Every run gets the content kinds its files show (``RunDay.content``, for the heatmap);
    problems are reported for runs within ``retention_days``: wrong-day critical while the
    covered day can be rescued (then a warning), stale and few-rows warnings."""
    out_runs: list[RunDay] = []
    problems: list[Problem] = []
    seen: dict[str, tuple[int, Delivery, RunDay]] = {}  # fingerprint -> its latest run index
    usual: dict[int, deque[int]] = {}  # weekday of the covered day -> its last row counts
    share = report.min_share
    for i, run in enumerate(runs):
        with_data = data_files.get(run.day)
        if not with_data:
            out_runs.append(run)
            continue
        kinds: set[ProblemKind] = set()
        report_it = (today - run.day).days <= report.retention_days
        covered = report.covered_day(run.day)
        history = list(usual.get(covered.weekday(), ()))
        for d in with_data:
            found = [
                _wrong_day(report, run, d, today),
                None if run.closed else _stale(report, run, d, i, seen, today),
                None if run.closed else _few_rows(report, run, d, history, share, today),
            ]
            for p in found:
                if p is not None:
                    kinds.add(p.kind)
                    if report_it:
                        problems.append(p)
        for d in with_data:
            if d.fingerprint:
                seen[d.fingerprint] = (i, d, run)
        if not run.closed and run.rows:
            usual.setdefault(covered.weekday(), deque(maxlen=FEW_ROWS_HISTORY)).append(run.rows)
        if kinds:
            run = replace(run, content=tuple(k for k in CONTENT_KINDS if k in kinds))
        out_runs.append(run)
    return out_runs, problems


def _content_step(report: ReportConfig, run: RunDay, check: str, today: date) -> str:
    covered, rescue_by = report.covered_day(run.day), report.rescue_by(run.day)
    if today < rescue_by:
        return (f"Open the analysis in Alma Analytics and check {check}; then "
                + _lower_first(_rerun_step(report.name, covered, rescue_by, today)))
    return (f"Check {check} in Alma Analytics before the next run; "
            + _lower_first(_rerun_step(report.name, covered, rescue_by, today)))


def _wrong_day(report: ReportConfig, run: RunDay, d: Delivery, today: date) -> Problem | None:
    covered, rescue_by = report.covered_day(run.day), report.rescue_by(run.day)
    cov = d.coverage
    described = content.wrong_day(cov, covered)
    if described is None or cov is None:
        return None
    top = cov.days[0][1]
    rescuable = today < rescue_by
    message = (
        f"The rows of '{d.name}' describe loans of {fmt_day(described, today)} ({top} of "
        f"{cov.values} dates in '{escape_name(cov.column)}'), but the run of {fmt_day(run.day, today)} "
        f"covers {fmt_day(covered, today)}"
    )
    if run.closed:
        return Problem(
            severity=WARNING, kind=WRONG_DAY, day=run.day, file=d.name, delete_on=run.delete_on,
            message=message + " (a closed day)",
            next_step="Nothing to rescue (closed day); check the analysis's date filter in Alma "
            "Analytics before the next run",
        )
    return Problem(
        severity=CRITICAL if rescuable else WARNING, kind=WRONG_DAY, day=run.day, file=d.name,
        rescue_by=rescue_by, delete_on=run.delete_on, message=message,
        next_step=_content_step(report, run, "its date filter (the days-ago prompt, its time zone)", today),
    )


def _stale(report: ReportConfig, run: RunDay, d: Delivery, index: int,
           seen: dict[str, tuple[int, Delivery, RunDay]], today: date) -> Problem | None:
    if not d.fingerprint or d.fingerprint not in seen:
        return None
    j, other, other_run = seen[d.fingerprint]
    if j == index or index - j > STALE_RUNS:
        return None
    rows = f"{d.rows:,} row{'s' if d.rows != 1 else ''}"
    return Problem(
        severity=WARNING, kind=STALE, day=run.day, file=d.name, rescue_by=report.rescue_by(run.day),
        delete_on=run.delete_on,
        message=f"'{d.name}' holds exactly the same {rows} as '{other.name}' (the run of "
        f"{fmt_day(other_run.day, today)}): Alma sent an earlier result again instead of the "
        f"loans of {fmt_day(report.covered_day(run.day), today)}",
        next_step=_content_step(report, run, "why it repeats an old result (a cached result, "
                                "a date filter fixed to one day)", today),
    )


def _few_rows(report: ReportConfig, run: RunDay, d: Delivery, history: list[int], share: float,
              today: date) -> Problem | None:
    if share <= 0 or len(history) < FEW_ROWS_MIN_HISTORY or d.rows is None:
        return None
    median = statistics.median(history)
    if not d.rows < share * median:
        return None
    covered = report.covered_day(run.day)
    weekday = _WEEKDAYS[covered.weekday()]
    # "usually": the middle half of the comparable days (quartiles by nearest rank), so one
    # odd day among them does not stretch the range.
    ranked = sorted(history)
    n = len(ranked)
    low, high = ranked[-(-n // 4) - 1], ranked[-(-3 * n // 4) - 1]
    usual_text = f"{low:,}" if low == high else f"{low:,}–{high:,}"
    return Problem(
        severity=WARNING, kind=FEW_ROWS, day=run.day, file=d.name, rescue_by=report.rescue_by(run.day),
        delete_on=run.delete_on,
        message=f"'{d.name}' has {d.rows:,} row{'s' if d.rows != 1 else ''} for loans of "
        f"{fmt_day(covered, today)}; a {weekday} usually has {usual_text} (median "
        f"{median:,g} over the last {len(history)} {weekday}s, warned below {share:.0%})",
        next_step=_content_step(report, run, "whether it timed out or a filter narrowed it", today),
    )


class _Dates(NamedTuple):
    """A delivery's dates, when it has any: its run, the loan day covered, rescue-by, delete-on."""

    run_day: date
    covered: date
    rescue_by: date
    delete_on: date


def _file_problems(report: ReportConfig, d: Delivery, now: datetime, tz: tzinfo, timing: Timing) -> list[Problem]:
    """What is wrong with what is held of one delivery (lost, missing locally, near deletion,
    changed). A delivery in no run (``ReportConfig.placed_run_day`` is None: of unknown date,
    whose rescue-by and delete-on would be 1970's or past the calendar's end, or dated more
    than a day ahead of ``now``, whose dates the wrong clock or name would invent) is told
    without dates: lost, missing locally or changed, with no run day, rescue-by or delete-on
    (never near deletion, which is its delete-on date)."""
    today = now.astimezone(tz).date()
    out: list[Problem] = []
    where = d.local_path or "its place in local_dir"
    dates: _Dates | None = None
    rerun = f"If it was a delivery of '{report.name}' that you need, re-run it in Alma Analytics"
    run_day = report.placed_run_day(d.delivered_at, timing, now)
    if run_day is not None:
        dates = _Dates(run_day, report.covered_day(run_day), report.rescue_by(run_day),
                       report.delete_on(d.delivered_at, tz))
        rerun = _rerun_step(report.name, dates.covered, dates.rescue_by, today)
    day, rescue_by, delete_on = (dates.run_day, dates.rescue_by, dates.delete_on) if dates else (None, None, None)
    server_name = d.extra.get("rolling_of")
    if not d.downloaded and not d.on_server and server_name and dates is not None:
        mtime = (d.mtime or d.delivered_at).astimezone(tz)
        out.append(Problem(
            severity=CRITICAL, kind=ProblemKind.LOST, day=day, file=d.name, delete_on=delete_on,
            rescue_by=rescue_by,
            message=f"The version of '{server_name}' of {fmt_day(mtime.date(), today)} "
            f"{mtime:%H:%M} ({d.size:,} bytes) was replaced on the server by a newer one before "
            "it was downloaded",
            next_step=rerun + "; run 'report-keeper sync' after every delivery (e.g. from cron, soon "
            "after the report's time) so no version is replaced unseen",
        ))
    elif not d.downloaded and not d.on_server:
        out.append(Problem(
            severity=CRITICAL, kind=ProblemKind.LOST, day=day, file=d.name, delete_on=delete_on,
            rescue_by=rescue_by,
            message=f"'{d.name}' was never downloaded and is gone from the server",
            next_step=rerun + "; run 'report-keeper sync' daily (e.g. from cron) so it does not happen again",
        ))
    elif d.downloaded and d.local_state == LocalState.MISSING_LOCALLY:
        moved = f"The copy of '{d.name}' is no longer at '{where}' (moved, deleted or damaged)"
        if not d.on_server:
            back = f"Put the file back at '{where}' from a backup or wherever it was moved"
            out.append(Problem(
                # No rescue-by: its first step is to put the copy back, not to re-run the report
                # (so a group of lost files is told to re-run only when re-running is the step).
                severity=CRITICAL, kind=ProblemKind.LOST, day=day, file=d.name, delete_on=delete_on,
                message=f"{moved} and the server has deleted the file: no copy is left",
                next_step=f"{back}; if there is no copy, {_lower_first(rerun)}" if dates else back,
            ))
        else:
            until = f" until {fmt_day(dates.delete_on, today)}" if dates else ""
            before = f" before {fmt_day(dates.delete_on, today)}" if dates else ""
            out.append(Problem(
                severity=WARNING, kind=ProblemKind.MISSING_LOCALLY, day=day, file=d.name,
                delete_on=delete_on,
                message=f"{moved}; the server still has it{until}",
                next_step=f"Run 'report-keeper sync'{before}: it fetches the file again",
                app_step=f"{FETCH_KEYS}{before}: it fetches the file again",
            ))
    if dates is not None and not d.downloaded and d.on_server \
            and today >= dates.delete_on - timedelta(days=NEAR_DELETION_DAYS):
        left = (dates.delete_on - today).days
        when = "today" if left == 0 else (f"in {left} days" if left > 0 else f"{-left} days ago (overdue)")
        out.append(Problem(
            severity=WARNING, kind=ProblemKind.NEAR_DELETION, day=day, file=d.name, delete_on=delete_on,
            message=f"'{d.name}' is not downloaded yet and the server deletes it on "
            f"{fmt_day(dates.delete_on, today)} ({when})",
            next_step=f"Run 'report-keeper sync' before {fmt_day(dates.delete_on, today)}",
            app_step=f"{FETCH_KEYS} before {fmt_day(dates.delete_on, today)}",
        ))
    changed_at = d.extra.get("changed_at")
    if d.local_state == LocalState.CHANGED:
        # In no run (its date unknown or ahead), when the server deletes it cannot be told: fetch it now.
        by = f" before {fmt_day(dates.delete_on, today)}" if dates else " now (when the server deletes it is unknown)"
        out.append(Problem(
            severity=WARNING, kind=ProblemKind.CHANGED, day=day, file=d.name, delete_on=delete_on,
            message=f"The server's copy of '{d.name}' changed after it was downloaded; the new copy is not held yet",
            next_step=f"Run 'report-keeper sync'{by}: the new copy is kept beside the old one",
            app_step=f"{FETCH_KEYS}{by}: the new copy is kept beside the old one",
        ))
    elif (d.changed or d.verification == st.CHANGED) and (
        changed_at is None or (today - changed_at.astimezone(tz).date()).days <= CHANGED_DAYS
    ):
        out.append(Problem(
            severity=WARNING, kind=ProblemKind.CHANGED, day=day, file=d.name, delete_on=delete_on,
            message=f"The server's copy of '{d.name}' changed after it was downloaded",
            next_step="Both copies are kept side by side in the local folder; compare them and keep the right one",
        ))
    return out


def unknown_schedule_note(history: list[Delivery], today: date, tz: tzinfo) -> str:
    """``schedule unknown — seen once on Tue 8 Dec; set `schedule` ...``: what is shown for a
    report whose schedule the history cannot tell (``Timing.known`` is False)."""
    if not history:
        return "schedule unknown — nothing delivered yet; set `schedule` in the config to be warned when it stops"
    last = history[-1].delivered_at.astimezone(tz).date()
    seen = (f"seen once on {fmt_day(last, today)}" if len(history) == 1
            else f"seen {len(history)} times, last on {fmt_day(last, today)}")
    return f"schedule unknown — {seen}; set `schedule` in the config to be warned when it stops"


def _unknown_schedule_problem(report: ReportConfig, history: list[Delivery], today: date,
                              tz: tzinfo) -> list[Problem]:
    """One warning per report for ``UNKNOWN_SCHEDULE_DAYS`` days after its latest delivery:
    a report whose schedule cannot be inferred with confidence expects no run (a stray
    workbook or a one-off run would otherwise be missing every day, for ever), and a person
    should know it is watched only once a schedule is set."""
    last = history[-1].delivered_at.astimezone(tz).date()
    until = last + timedelta(days=UNKNOWN_SCHEDULE_DAYS)
    if today > until:
        return []
    return [Problem(
        severity=WARNING, kind=ProblemKind.SCHEDULE_UNKNOWN, file=None,
        message=f"'{report.name}': {unknown_schedule_note(history, today, tz)}",
        next_step=f"If Alma delivers '{report.name}' regularly, give it a [[report]] entry with "
        "its schedule in the config (e.g. schedule = \"daily\" and at = \"07:00\"): then a missing "
        f"run is critical; if it was a one-off, nothing needs doing (this warning ends after "
        f"{fmt_day(until, today)})",
    )]


def _bad_date_problems(d: Delivery, today: date, tz: tzinfo, *, future: bool) -> list[Problem]:
    """The warning for a delivery no run can take, named once: dated in the future (after the
    next run's window opens: reported until that time comes) or at a time no delivery can
    have (``clock.possible_delivery``: reported while the server has the file). Its file
    problems (:func:`_file_problems`) follow it."""
    name = d.name
    if future:
        when = d.delivered_at.astimezone(tz)
        return [Problem(
            severity=WARNING, kind=ProblemKind.BAD_DATE, file=name,
            message=f"'{name}' was delivered with a date in the future: dated "
            f"{fmt_day(when.date(), today)} {when:%H:%M}; the server's clock or the name is wrong, "
            "and it counts for no run",
            next_step="Ask the server's administrator to check the server's clock, or check the "
            "file name's timestamp in Alma's schedule; the file counts once its date has come",
        )]
    if not d.on_server:
        return []
    try:
        shown = f"{d.delivered_at.astimezone(tz):%a %-d %b %Y %H:%M}"
    except (OverflowError, ValueError):  # a ledger's time at the very end of the calendar
        shown = "an unknown time"
    return [Problem(
        severity=WARNING, kind=ProblemKind.BAD_DATE, file=name,
        message=f"'{name}' is dated {shown}, an impossible date for a delivery: the server's "
        "clock or the name is wrong, and it counts for no run",
        next_step="Ask the server's administrator to check the server's clock; the file is "
        "downloaded and kept like any other, and this warning ends once the server deletes it",
    )]

def _retention_problems(report: ReportConfig, history: list[Delivery], now: datetime, today: date,
                        timing: Timing) -> list[Problem]:
    """One warning per report while held copies are past ``local_retention_days`` and kept
    only because no export has included them (``keep_until_exported``): the study's data is
    safe, but patron data stays longer than the policy says, and a person should know."""
    if report.local_retention_days is None or not report.keeps_until_exported:
        return []
    waiting = []
    for d in history:
        due = report.purge_after(d.delivered_at, timing.tz)
        if d.extra.get("export_pending") and due is not None and now > due:
            waiting.append(d)
    if not waiting:
        return []
    first = timing.run_day_of(waiting[0].delivered_at)
    last = timing.run_day_of(waiting[-1].delivered_at)
    n = len(waiting)
    span = fmt_day(first, today) if first == last else f"{fmt_day(first, today)} .. {fmt_day(last, today)}"
    since, until = report.covered_day(first), report.covered_day(last)
    return [Problem(
        severity=WARNING, kind=WAITING_FOR_EXPORT, file=None,
        message=f"{n} local cop{'y' if n == 1 else 'ies'} of '{report.name}' (runs {span}) "
        f"{'is' if n == 1 else 'are'} older than local_retention_days ({report.local_retention_days} days) "
        "but no export has included them: kept (keep_until_exported), so patron data stays longer "
        "than the retention policy says; nothing is lost",
        next_step=f"Export them (report-keeper export --report '{report.name}' --since {since} --until "
        f"{until} --out FILE.parquet, or e on the Verify screen); the next sync or 'report-keeper purge' "
        "then deletes them",
    )]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _human_delta(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def content_problems_by_file(health: HealthReport | None) -> dict[str, list[Problem]]:
    """The content problems (stale, wrong-day, few-rows) of each file, by file name, in the
    order of ``CONTENT_KINDS``: what the Verify screen shows beside a file's status."""
    out: dict[str, list[Problem]] = {}
    for r in health.reports if health is not None else ():
        for p in r.problems:
            if p.kind in CONTENT_KINDS and p.file:
                out.setdefault(p.file, []).append(p)
    for items in out.values():
        items.sort(key=lambda p: CONTENT_KINDS.index(p.kind))
    return out


def report_names(profile: Profile, deliveries: Iterable[Delivery]) -> list[str]:
    """Configured reports first (config order), then every other report name in the history."""
    names = [r.name for r in profile.reports]
    for d in sorted(deliveries, key=lambda d: d.report):
        if d.report not in names:
            names.append(d.report)
    return names


def evaluate(
    profile: Profile,
    deliveries: Iterable[Delivery],
    *,
    now: datetime | None = None,
    connection: ConnectionStatus | None = None,
) -> HealthReport:
    """Health of every report of ``profile`` (``config.Profile``) from the delivery history.

    What is still on the server is ``Delivery.on_server`` as the ledger recorded it from the
    latest listing. ``connection``: the connection test (None: skipped).
    """
    tz = profile.timezone
    now = (now or clock.now()).astimezone(tz)  # local: HealthReport.now.date() is "today"
    items = list(deliveries)
    reports = []
    for name in report_names(profile, items):
        cfg = profile.report_for(name)
        mine = [d for d in items if d.report == name]
        reports.append(evaluate_report(cfg, mine, tz=tz, now=now))
    log.info("evaluated %d reports, %d deliveries", len(reports), len(items))
    return HealthReport(now=now, reports=tuple(reports), connection=connection or ConnectionStatus.skipped())
