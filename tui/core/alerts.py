"""Alerts: which problems to tell a person about, when, and in what words (no network here).

The health evaluation (``tui.core.health``) lists every problem of every expected run day. A
person wants fewer, better messages: "'Loans…' has delivered nothing since Sat 28 Nov" once,
not once per missing day and once per cron run. So problems are grouped into *alerts*, each
about one condition (``docs/ALERTS.md`` explains the choices):

- run problems (missing, late, empty, schema, unreadable, wrong-day, stale, few-rows) of one
  report: consecutive run days with the same kind form one alert (a report that stops is one
  alert however long it lasts);
  it is *current* while it reaches the report's latest decided run (not pending), and it
  ends when a later run is fine (the report delivers again, the next file is readable...);
- file problems (near-deletion, lost, changed): one alert per report, kind and file;
- the connection: one alert per severity (failed, or read-only), so a change is news.

Each channel (e-mail, webhook) remembers in the ledger what it has told (``alerts`` table),
written only after a successful send, so a failed send is tried again on the next run. For
each channel :func:`plan` compares the current alerts with that memory:

- new: a current alert the channel was never told about (or that became critical);
  also a past, non-current critical one never told (a gap found after the fact, while its
  data can still be rescued);
- reminder: a told, current alert whose earliest open rescue-by date is two days ahead (so
  the last day to re-run, the day before rescue-by, is tomorrow), once; a run that missed
  that day reminds on the last day itself;
- resolved: a told alert that is no longer current (or no longer reported at all).

A message goes out when any of the three is non-empty. Identity: ``(report, kind, days)``
for run alerts, matched by overlapping run days (so a streak that grows or is split by a
late file stays the same alert); ``(report, kind, file)`` for file alerts; ``("", connection,
severity)`` for the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo

from tui.core import model
from tui.core.health import CRITICAL, WARNING, HealthReport, fmt_day, urgency_key
from tui.core.ledger import AlertRow
from tui.core.model import JSONObject, Problem, ProblemKind
from tui.core.names import escape_name
from tui.core.status import Severity

log = logging.getLogger("report_keeper.alerts")

RUN_KINDS = (ProblemKind.MISSING, ProblemKind.LATE, ProblemKind.EMPTY, ProblemKind.SCHEMA,
             ProblemKind.UNREADABLE, ProblemKind.WRONG_DAY, ProblemKind.STALE, ProblemKind.FEW_ROWS)
#: How a run problem's kind reads in a subject ("wrong columns in 'Loans…' Tue 2 Dec") and once
#: it ended ("'Loans…' is fine again after wrong columns Tue 2 Dec").
_WHAT = {ProblemKind.SCHEMA: "wrong columns in", ProblemKind.UNREADABLE: "unreadable",
         ProblemKind.WRONG_DAY: "rows of the wrong day in", ProblemKind.STALE: "repeated old rows in",
         ProblemKind.FEW_ROWS: "too few rows in"}
_WHAT_ENDED = {ProblemKind.SCHEMA: "wrong columns", ProblemKind.UNREADABLE: "unreadable files",
               ProblemKind.WRONG_DAY: "rows of the wrong day", ProblemKind.STALE: "repeated old rows",
               ProblemKind.FEW_ROWS: "too few rows"}
OPEN = "open"
CLOSED = "closed"

EMAIL = "email"
WEBHOOK = "webhook"

#: How a run judged the connection: not at all (``check --offline``), only whether the login
#: works (``sync``: a working sync says nothing about write permission), or fully (``check``).
SCOPE_NONE = "none"
SCOPE_LOGIN = "login"
SCOPE_FULL = "full"

#: Lines of a message body given to one alert's days before "... and N more".
MAX_DAYS_LISTED = 8
#: A reminder is due once the earliest rescue-by is at most this many days ahead: the last day
#: to re-run (the day before rescue-by) is then tomorrow.
REMIND_DAYS = 2
#: A told connection alert ends once the connection has worked in every run for this long:
#: a whole daily cycle (less a few hours for a timer that runs a little earlier). A sync that
#: fails and a check that works every morning would otherwise send an alert and a "resolved"
#: every day.
CLEAR_FOR = timedelta(hours=20)
SUBJECT_NAME_MAX = 60
#: The memory of a channel (an address of ``email_to``, the webhook) that no run has had
#: configured for this long is forgotten: added again, it is a new recipient. Shorter, and a
#: second config sharing the ledger and profile name (one with e-mail, one with a webhook),
#: or a run that loaded the config before an address was added, would drop a memory that is
#: still in use; longer, and an address re-added keeps stale rows longer (docs/ALERTS.md).
FORGET_AFTER = timedelta(days=7)
#: A run that has a channel configured marks its rows (``updated_at``) when their latest mark
#: is at least this old (most runs rewrite them anyway; this keeps the extra writes rare).
MARK_EVERY = timedelta(days=1)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _short(name: str, limit: int = SUBJECT_NAME_MAX) -> str:
    name = escape_name(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


@dataclass(frozen=True)
class Alert:
    """One condition worth telling a person about (see the module docstring)."""

    report: str  # "" for the connection
    kind: ProblemKind
    severity: Severity
    problems: tuple[Problem, ...]
    first_day: date | None = None
    last_day: date | None = None
    file: str | None = None  # file alerts: the file; connection: its severity
    current: bool = True
    rescue_by: date | None = None  # the earliest rescue-by still ahead
    delete_on: date | None = None  # the earliest delete-on among its problems
    latest_ok: date | None = None  # run alerts that ended: the run that was fine again
    #: A connection alert that ended: from the run that first told it to the first run of the
    #: whole day it has worked since (None: not known, e.g. a damaged memory).
    outage_from: datetime | None = None
    outage_until: datetime | None = None

    @property
    def outage(self) -> timedelta | None:
        """How long an ended connection alert lasted, when both ends are known."""
        if self.outage_from is None or self.outage_until is None or self.outage_until <= self.outage_from:
            return None
        return self.outage_until - self.outage_from

    @property
    def days(self) -> list[date]:
        return sorted({p.day for p in self.problems if p.day is not None})

    @property
    def files(self) -> list[str]:
        return sorted({p.file for p in self.problems if p.file})

    def matches(self, row: AlertRow) -> bool:
        if row["report"] != self.report or row["kind"] != self.kind:
            return False
        if self.kind in RUN_KINDS:
            first, last = _day(row["first_day"]), _day(row["last_day"])
            if first is None or last is None or self.first_day is None or self.last_day is None:
                return False
            return first <= self.last_day and self.first_day <= last
        return row["file"] == self.file

    def row(self, *, state: str, sent_at: str, reminded_for: date | None = None,
            row_id: int | None = None) -> AlertRow:
        return {
            "id": row_id, "report": self.report, "kind": self.kind, "first_day": _iso(self.first_day),
            "last_day": _iso(self.last_day), "file": self.file, "severity": self.severity,
            "state": state, "sent_at": sent_at, "reminded_for": _iso(reminded_for),
        }

    # -- words -------------------------------------------------------------------------------
    def headline(self, today: date, *, ended: bool = False) -> str:
        """``missing 'Loans…' Sat 28 Nov — last day to re-run: Tue 1 Dec``: the subject's core.

        ``ended``: how it reads once over (``'Loans…' delivers again after missing …``)."""
        name = f"'{_short(self.report)}'"
        if ended:
            return self._ended(today, name)
        if self.kind in RUN_KINDS:
            days = self.days
            when = fmt_day(days[0], today) if days else ""
            if len(days) > 1:
                when = f"since {when} ({len(days)} runs)" if self.current else f"{when} to {fmt_day(days[-1], today)}"
            what = _WHAT.get(self.kind, str(self.kind))
            text = f"{what} {name} {when}".rstrip()
        elif self.kind == ProblemKind.NEAR_DELETION:
            text = f"'{_short(self.file or '')}' not downloaded yet"
        elif self.kind == ProblemKind.LOST:
            text = f"lost '{_short(self.file or '')}' (gone from the server, never downloaded)"
        elif self.kind == ProblemKind.CHANGED:
            text = f"changed on the server: '{_short(self.file or '')}'"
        elif self.kind == ProblemKind.WAITING_FOR_EXPORT:
            text = f"local copies of {name} past their retention wait for an export"
        elif self.kind == ProblemKind.SCHEDULE_UNKNOWN:
            text = f"new report {name}: schedule unknown"
        elif self.kind == ProblemKind.BAD_DATE:
            text = f"'{_short(self.file or '')}' has a date no run can take"
        elif self.kind == ProblemKind.CONNECTION:
            text = ("connection failed" if self.severity == CRITICAL
                    else "connection: account is read-only or the test failed")
        else:
            text = f"{self.kind} {name}"
        if self.rescue_by is not None:
            text += f" — last day to re-run: {last_day_text(self.rescue_by, today)}"
        elif self.kind == ProblemKind.NEAR_DELETION and self.delete_on is not None:
            text += f" — the server deletes it on {fmt_day(self.delete_on, today)}"
        return text

    def _ended(self, today: date, name: str) -> str:
        days = self.days or [d for d in (self.first_day, self.last_day) if d is not None]
        span = ""
        if days:
            span = fmt_day(days[0], today)
            if days[-1] != days[0]:
                span += f" to {fmt_day(days[-1], today)}"
        if self.kind == ProblemKind.MISSING:
            return f"{name} delivers again after missing {span}".rstrip()
        if self.kind in RUN_KINDS:
            what = _WHAT_ENDED.get(self.kind, str(self.kind))
            return f"{name} is fine again after {what} {span}".rstrip()
        if self.kind == ProblemKind.CONNECTION:
            text = "the connection works again" if self.severity == CRITICAL else "the connection test passes again"
            outage = self.outage
            return text + (f" after {duration_text(outage)}" if outage is not None else "")
        if self.kind == ProblemKind.NEAR_DELETION:
            return f"'{_short(self.file or '')}' is downloaded (or no longer near deletion)"
        if self.kind == ProblemKind.WAITING_FOR_EXPORT:
            return f"no local copy of {name} waits for an export any more"
        if self.kind == ProblemKind.SCHEDULE_UNKNOWN:
            return f"{name}: no longer warned about its unknown schedule"
        return f"{self.kind} '{_short(self.file or self.report)}' is no longer reported"

    def to_json(self, *, resolved: bool = False) -> JSONObject:
        first = self.problems[0] if self.problems else None
        return {
            "report": self.report or None,
            "kind": self.kind,
            "severity": self.severity,
            "day": _iso(self.first_day),
            "last_day": _iso(self.last_day),
            "days": [d.isoformat() for d in self.days],
            "file": self.file if self.kind != ProblemKind.CONNECTION else None,
            "files": self.files,
            "rescue_by": _iso(self.rescue_by),
            "last_day_to_rerun": _iso(self.rescue_by - timedelta(days=1)) if self.rescue_by else None,
            "delete_on": _iso(self.delete_on),
            "current": self.current and not resolved,
            "message": first.message if first else "",
            "next_step": first.next_step if first else "",
            "problems": [p.to_json() for p in self.problems],
            "outage_from": model.iso(self.outage_from) if self.outage_from else None,
            "outage_until": model.iso(self.outage_until) if self.outage_until else None,
            "outage_seconds": int(outage.total_seconds()) if (outage := self.outage) is not None else None,
        }


def _from_row(row: AlertRow) -> Alert:
    """A told alert that no current problem matches any more (for the "resolved" list)."""
    connection = row["kind"] == ProblemKind.CONNECTION
    return Alert(
        report=row["report"], kind=ProblemKind(row["kind"]), severity=Severity(row["severity"]), problems=(),
        first_day=_day(row["first_day"]), last_day=_day(row["last_day"]),
        file=row["file"], current=False,
        outage_from=_moment(row["sent_at"]) if connection else None,
        outage_until=_moment(row.get("clear_since")) if connection else None,
    )


def _moment(text: str | None) -> datetime | None:
    """A stored time (ISO 8601), aware (UTC when it says no zone); None when it is none."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def is_alert_channel(channel: str) -> bool:
    """A channel this release keeps a memory for: ``email``, ``email:<address>``, ``webhook``
    (another name, a newer release's, is left alone)."""
    return channel in (EMAIL, WEBHOOK) or channel.startswith(f"{EMAIL}:")


def upkeep(memory: dict[str, list[AlertRow]], configured: Iterable[str],
           now: datetime) -> tuple[list[str], list[str]]:
    """Which channels' rows to mark as configured now, and which channels to forget.

    A run knows only the channels of the config it loaded: another config may share the
    ledger and profile name, and a long run may have loaded the config before an address was
    added. So a channel not configured here is forgotten only once no run has marked it for
    :data:`FORGET_AFTER`; a configured one is marked when its latest mark is
    :data:`MARK_EVERY` old. A mark that is damaged counts as long ago; one after ``now``
    (written while the clock was ahead) is marked again, as written now."""
    wanted = set(configured)
    mark: list[str] = []
    forget: list[str] = []
    for channel, rows in memory.items():
        if not is_alert_channel(channel):
            continue
        latest = max((m for r in rows if (m := _moment(r.get("updated_at"))) is not None), default=None)
        age = None if latest is None else now - latest
        if age is not None and age < timedelta(0):
            mark.append(channel)
        elif channel in wanted:
            if age is None or age >= MARK_EVERY:
                mark.append(channel)
        elif age is None or age > FORGET_AFTER:
            forget.append(channel)
    return mark, forget


def duration_text(span: timedelta) -> str:
    """``45 min``, ``29 h``, ``3 days 4 h``: how long something lasted, in round numbers."""
    minutes = max(1, round(span.total_seconds() / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours = round(minutes / 60)
    if hours < 48:
        return f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days" + (f" {hours} h" if hours else "")


def _parses(value: object, parse: Callable[[str], object]) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _valid_day(value: object) -> bool:
    return _parses(value, date.fromisoformat)


def _valid_moment(value: object) -> bool:
    return _parses(value, datetime.fromisoformat)


def sound_rows(channel: str, rows: list[AlertRow]) -> tuple[list[AlertRow], list[AlertRow], list[int]]:
    """The rows of a channel's memory as :func:`plan` can trust them.

    The ledger is a file on disk: a value in it may be damaged (a bad sector, a hand edit, a
    tool that wrote the wrong column). One such value raised in the middle of planning and
    the whole channel failed, so nobody was alerted of anything. Now a damaged value is
    treated as absent: a row whose identity (report, kind, severity, state, file, a run
    alert's days) is damaged is dropped, as if it had never been told (its alert is told
    again); a damaged reminder day, clear-since or sent time becomes unknown. Returns the
    rows to plan with, the repaired rows to write back and the ids of the rows to drop; each
    damaged row is logged (its id and the columns, never the value)."""
    good: list[AlertRow] = []
    repaired: list[AlertRow] = []
    drop: list[int] = []
    kinds = {str(k) for k in ProblemKind}
    severities = {str(v) for v in Severity}
    for row in rows:
        row_id = _id(row)
        kind = row["kind"]
        broken = [name for name, ok in (
            ("report", isinstance(row["report"], str)),
            ("kind", isinstance(kind, str) and kind in kinds),
            ("severity", isinstance(row["severity"], str) and row["severity"] in severities),
            ("state", row["state"] in (OPEN, CLOSED)),
            ("file", row["file"] is None or isinstance(row["file"], str)),
        ) if not ok]
        if not broken and kind == ProblemKind.CONNECTION and row["file"] != row["severity"]:
            broken.append("file")
        if not broken and kind in RUN_KINDS:  # its days are its identity
            broken += [name for name, value in (("first_day", row["first_day"]), ("last_day", row["last_day"]))
                       if not _valid_day(value)]
        if broken and all(_foreign(name, row) for name in broken):
            # A kind or severity this release does not know, in an otherwise sound row: most
            # likely a newer release's alert (one ledger used by two installs). Dropped, it
            # would be told again after every run of the newer one: left as it is, unplanned.
            log.warning("alerts: %s: a row of the ledger's alert memory (id %d; %s) holds a value "
                        "this release does not know (a newer release's, or damaged): left as it "
                        "is and not planned with", channel, row_id, ", ".join(broken))
            continue
        if broken:
            log.warning("alerts: %s: a damaged row of the ledger's alert memory (id %d; %s) is "
                        "treated as absent: its alert is told again", channel, row_id, ", ".join(broken))
            drop.append(row_id)
            continue
        clean: AlertRow = {**row}
        unknown = []
        if row["first_day"] is not None and not _valid_day(row["first_day"]):
            clean["first_day"] = None
            unknown.append("first_day")
        if row["last_day"] is not None and not _valid_day(row["last_day"]):
            clean["last_day"] = None
            unknown.append("last_day")
        if row["reminded_for"] is not None and not _valid_day(row["reminded_for"]):
            clean["reminded_for"] = None
            unknown.append("reminded_for")
        since = row.get("clear_since")
        if since is not None and not _valid_moment(since):
            clean["clear_since"] = None
            unknown.append("clear_since")
        if row["sent_at"] != "" and not _valid_moment(row["sent_at"]):
            clean["sent_at"] = ""  # unknown (the column holds no null)
            unknown.append("sent_at")
        if unknown:
            log.warning("alerts: %s: damaged values in a row of the ledger's alert memory (id %d; %s) "
                        "are treated as absent", channel, row_id, ", ".join(unknown))
            repaired.append(clean)
        good.append(clean)
    return good, repaired, drop


def _foreign(column: str, row: AlertRow) -> bool:
    """Whether ``column`` of ``row`` is a well-formed name this release does not know (a kind
    or severity a newer release may have added), not a damaged value."""
    value = row["kind"] if column == "kind" else row["severity"] if column == "severity" else None
    return isinstance(value, str) and value.isascii() and value.replace("-", "").isalnum() and len(value) <= 40


def _rescue(problems: Iterable[Problem], today: date) -> date | None:
    ahead = [p.rescue_by for p in problems if p.rescue_by is not None and p.rescue_by > today]
    return min(ahead) if ahead else None


def _delete_on(problems: Iterable[Problem]) -> date | None:
    days = [p.delete_on for p in problems if p.delete_on is not None]
    return min(days) if days else None


def _worst(problems: Iterable[Problem]) -> Severity:
    return CRITICAL if any(p.severity == CRITICAL for p in problems) else WARNING


def alerts_from(health: HealthReport, *, scope: str = SCOPE_FULL) -> list[Alert]:
    """The alerts of a health evaluation, most urgent first."""
    today = health.now.date()
    out: list[Alert] = []
    for r in health.reports:
        decided = [run.day for run in r.runs if run.status != model.PENDING]
        latest = decided[-1] if decided else None
        position = {run.day: i for i, run in enumerate(r.runs)}
        by_kind: dict[ProblemKind, dict[date, list[Problem]]] = {}
        per_file: dict[tuple[ProblemKind, str], list[Problem]] = {}
        for p in r.problems:
            if p.kind in RUN_KINDS and p.day is not None and p.day in position:
                by_kind.setdefault(p.kind, {}).setdefault(p.day, []).append(p)
            else:
                per_file.setdefault((p.kind, p.file or ""), []).append(p)
        for kind, days in by_kind.items():
            streaks: list[list[date]] = []
            for day in sorted(days):
                if streaks and position[day] == position[streaks[-1][-1]] + 1:
                    streaks[-1].append(day)
                else:
                    streaks.append([day])
            for streak in streaks:
                streak_problems = tuple(p for d in streak for p in days[d])
                current = streak[-1] == latest
                later_ok = None
                if not current:
                    later = [d for d in decided if d > streak[-1]]
                    later_ok = later[0] if later else None
                out.append(Alert(
                    report=r.name, kind=kind, severity=_worst(streak_problems), problems=streak_problems,
                    first_day=streak[0], last_day=streak[-1], current=current,
                    rescue_by=_rescue(streak_problems, today), delete_on=_delete_on(streak_problems),
                    latest_ok=later_ok,
                ))
        for (kind, file), problems in per_file.items():
            out.append(Alert(
                report=r.name, kind=kind, severity=_worst(problems), problems=tuple(problems),
                first_day=min((p.day for p in problems if p.day), default=None),
                last_day=max((p.day for p in problems if p.day), default=None),
                file=file or None, current=True, rescue_by=_rescue(problems, today),
                delete_on=_delete_on(problems),
            ))
    conn = health.connection.problem()
    if conn is not None and scope != SCOPE_NONE and not (scope == SCOPE_LOGIN and conn.severity != CRITICAL):
        out.append(Alert(report="", kind=ProblemKind.CONNECTION, severity=conn.severity, problems=(conn,),
                         file=conn.severity, current=True))
    key = urgency_key(today)
    return sorted(out, key=lambda a: min(key(q) for q in a.problems))


def _judged(row: AlertRow, scope: str) -> bool:
    """Whether this run can say that a told connection alert ended."""
    if row["kind"] != ProblemKind.CONNECTION:
        return True
    if scope == SCOPE_NONE:
        return False
    if scope == SCOPE_LOGIN:  # a sync that connected proves the login, not write permission
        return row["severity"] == CRITICAL
    return True


@dataclass
class Plan:
    """What one channel is to be told now, and how its memory changes once it was told."""

    channel: str
    today: date
    new: list[Alert] = field(default_factory=list)
    reminders: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    open: list[Alert] = field(default_factory=list)  # every current alert (told or not)
    save: list[AlertRow] = field(default_factory=list)  # after a successful send
    delete: list[int] = field(default_factory=list)  # after a successful send
    tidy_save: list[AlertRow] = field(default_factory=list)  # bookkeeping, no send needed
    tidy_delete: list[int] = field(default_factory=list)

    @property
    def should_send(self) -> bool:
        return bool(self.new or self.reminders or self.resolved)

    @property
    def message_kind(self) -> str:
        if self.new:
            return "alert"
        if self.reminders:
            return "reminder"
        return "resolved"


def plan(channel: str, alerts: list[Alert], rows: list[AlertRow], *, today: date,
         sent_at: str, scope: str = SCOPE_FULL) -> Plan:
    """Compare the current ``alerts`` with what ``channel`` was told (``rows``)."""
    p = Plan(channel=channel, today=today)
    rows, p.tidy_save, p.tidy_delete = sound_rows(channel, rows)
    # Rescue-by is the day the loans are anonymized: the last day to re-run is the day before.
    # Remind when that last day is tomorrow (or already today, if no run came the day before).
    soon = today + timedelta(days=REMIND_DAYS)
    owned, covered = _match(alerts, rows)
    used: set[int] = set()
    for i, a in enumerate(alerts):
        if i in covered:  # part of an alert told as one (a streak split by a late file)
            continue
        row = owned.get(i)
        if row is not None and a.kind in RUN_KINDS:
            a = _with_pieces(a, [alerts[j] for j, r in covered.items() if r == _id(row)], today)
        if a.current:
            p.open.append(a)
        if row is None or (row["state"] == CLOSED and a.current):
            if not (a.current or a.severity == CRITICAL):
                continue  # history: a past warning nobody needs to hear about now
            p.new.append(a)
            remind = a.rescue_by if (a.current and a.rescue_by is not None and a.rescue_by <= soon) else None
            p.save.append(a.row(state=OPEN if a.current else CLOSED, sent_at=sent_at,
                                reminded_for=remind, row_id=row["id"] if row else None))
            if row is not None:
                used.add(_id(row))
            continue
        used.add(_id(row))
        if row["state"] == CLOSED:  # told before; not current: keep the memory up to date
            p.tidy_save.append(a.row(state=CLOSED, sent_at=row["sent_at"],
                                     reminded_for=_day(row["reminded_for"]), row_id=row["id"]))
            continue
        if not a.current:
            p.resolved.append(a)
            p.save.append(a.row(state=CLOSED, sent_at=sent_at,
                                reminded_for=_day(row["reminded_for"]), row_id=row["id"]))
        elif a.severity == CRITICAL and row["severity"] != CRITICAL:
            p.new.append(a)  # it got worse: news
            p.save.append(a.row(state=OPEN, sent_at=sent_at, reminded_for=_day(row["reminded_for"]),
                                row_id=row["id"]))
        elif a.rescue_by is not None and a.rescue_by <= soon and row["reminded_for"] is None:
            p.reminders.append(a)
            p.save.append(a.row(state=OPEN, sent_at=row["sent_at"], reminded_for=a.rescue_by,
                                row_id=row["id"]))
        else:
            p.tidy_save.append(a.row(state=OPEN, sent_at=row["sent_at"],
                                     reminded_for=_day(row["reminded_for"]), row_id=row["id"]))
    failing = any(a.kind == ProblemKind.CONNECTION and a.severity == CRITICAL for a in alerts)
    for row in rows:
        if _id(row) in used or not _judged(row, scope):
            continue
        if row["state"] == OPEN and row["kind"] == ProblemKind.CONNECTION:
            if failing:  # read-only, and now failing: the failure says it all; it ends with it
                continue
            since = row.get("clear_since")
            if since is None or _elapsed(since, sent_at) < timedelta(0):
                # It works now: told ended once it has worked for a whole day. A time after
                # now (written while the clock was ahead) would hold that back until the clock
                # caught up with it: found clear now instead.
                p.tidy_save.append({**row, "clear_since": sent_at})
                continue
            if _elapsed(since, sent_at) < CLEAR_FOR:
                continue
        if row["state"] == OPEN:
            p.resolved.append(_from_row(row))
            p.delete.append(_id(row))
        else:
            p.tidy_delete.append(_id(row))  # its problems are no longer reported: forget it
    return p


def _elapsed(since: str, now: str) -> timedelta:
    start, end = _moment(since), _moment(now)
    if start is None or end is None:  # unknown: as if it had only just been found clear
        return timedelta(0)
    return end - start


def _match(alerts: list[Alert], rows: list[AlertRow]) -> tuple[dict[int, AlertRow], dict[int, int]]:
    """Which told row each alert is (by index), and which alerts are pieces of a row another
    alert owns.

    A run streak told as one alert can later be split in two by a late file (a delivery that
    shows up with an earlier timestamp): both pieces overlap its row. The current piece takes
    the row, else the latest one (so "delivers again after ..." names the end of the outage);
    the others are covered by it: neither news nor "resolved", their days go with its owner.
    """
    order = sorted(range(len(alerts)), key=lambda i: (
        not alerts[i].current, -(alerts[i].last_day or date.min).toordinal(), i))
    owned: dict[int, AlertRow] = {}
    covered: dict[int, int] = {}
    taken: set[int] = set()
    for i in order:
        a = alerts[i]
        row = next((r for r in rows if _id(r) not in taken and a.matches(r)), None)
        if row is not None:
            owned[i] = row
            taken.add(_id(row))
        elif a.kind in RUN_KINDS:
            told = next((r for r in rows if _id(r) in taken and a.matches(r)), None)
            if told is not None:
                covered[i] = _id(told)
    return owned, covered


def _with_pieces(a: Alert, pieces: list[Alert], today: date) -> Alert:
    """``a`` with the days of the pieces its row covers (one alert to a person)."""
    if not pieces:
        return a
    problems = tuple(sorted((*a.problems, *(q for piece in pieces for q in piece.problems)),
                            key=lambda q: q.day or date.min))
    firsts = [d for d in (a.first_day, *(piece.first_day for piece in pieces)) if d is not None]
    lasts = [d for d in (a.last_day, *(piece.last_day for piece in pieces)) if d is not None]
    return replace(a, problems=problems, first_day=min(firsts, default=None),
                   last_day=max(lasts, default=None), severity=_worst(problems),
                   rescue_by=_rescue(problems, today), delete_on=_delete_on(problems))


def _id(row: AlertRow) -> int:
    """A stored row's id (every row read from the ledger has one)."""
    row_id = row["id"]
    assert row_id is not None
    return row_id


# --------------------------------------------------------------------------------------------
# Words


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    document: JSONObject  # the webhook's JSON


def _subject(p: Plan, status: str) -> str:
    today = p.today
    if p.new:
        top = p.new[0]
        label = top.severity.upper()
        text = top.headline(today)
        others = len({id(a) for a in p.open} | {id(a) for a in p.new}) - 1
    elif p.reminders:
        top = p.reminders[0]
        label = f"REMINDER {top.severity.upper()}"
        text = top.headline(today)
        others = len(p.open) - 1
    else:
        top = p.resolved[0]
        text = top.headline(today, ended=True)
        others = len(p.resolved) - 1
        text += f" (+{others} more)" if others else ""
        if p.open:
            text += f"; {len(p.open)} still open"
        return f"[report-keeper] RESOLVED: {text}"
    return f"[report-keeper] {label}: {text}" + (f" (+{others} more)" if others > 0 else "")


def last_day_text(rescue_by: date, today: date) -> str:
    """``tomorrow, Tue 1 Dec``: the last day a re-run still has the loans, the day before
    rescue-by (the day they are anonymized). Every message names this day, never rescue-by
    alone: "rescue by Wed 2 Dec" reads as "on Wed 2 Dec at the latest", a day too late."""
    last = rescue_by - timedelta(days=1)
    when = {0: "today", 1: "tomorrow"}.get((last - today).days)
    return f"{when}, {fmt_day(last, today)}" if when else fmt_day(last, today)


def _last_day(a: Alert, today: date) -> str:
    return "soon" if a.rescue_by is None else last_day_text(a.rescue_by, today)


def _twice(local: datetime) -> bool:
    """Whether ``local``'s wall time happens twice (the hour the clocks go back)."""
    return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()


def _offset_text(local: datetime) -> str:
    """``UTC+02:00``: the offset ``local`` is on."""
    offset = local.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    hours, rest = divmod(abs(offset), timedelta(hours=1))
    return f"UTC{sign}{hours:02d}:{rest // timedelta(minutes=1):02d}"


def _moments_text(moments: list[datetime], today: date, tz: tzinfo) -> list[str]:
    """``Sun 25 Oct 02:30``: each moment on ``tz``'s clock. When the wall clock alone would not
    tell them (the moments lie on either side of a daylight-saving change, or one falls in the
    hour the clocks go back, which happens twice), each carries its zone: its abbreviation
    (``CEST``, ``CET``), or its offset (``UTC-03:00``) when the abbreviations are not names
    or do not tell the offsets apart."""
    local = [m.astimezone(tz) for m in moments]
    plain = [f"{fmt_day(t.date(), today)} {t:%H:%M}" for t in local]
    offsets = {t.utcoffset() for t in local}
    if len(offsets) == 1 and not any(_twice(t) for t in local):
        return plain
    names = [t.tzname() or "" for t in local]
    named = all(n.isalpha() for n in names) and len(set(names)) == len(offsets)
    return [f"{text} {name if named else _offset_text(t)}" for text, name, t in zip(plain, names, local, strict=True)]


def _outage_line(a: Alert, today: date, tz: tzinfo) -> str | None:
    """``The connection failed from Tue 1 Dec 02:10 until Wed 2 Dec 07:00 (29 h); ...``: how
    long an ended connection alert lasted (a person told "resolved" wants the outage's length).
    Across a daylight-saving change the times carry their zone (:func:`_moments_text`)."""
    until = a.outage_until
    if a.kind != ProblemKind.CONNECTION or until is None:
        return None
    what, since = (("The connection failed", "it has worked in every run since") if a.severity == CRITICAL
                   else ("The account was read-only or the connection test failed",
                         "the test has passed in every run since"))
    outage = a.outage
    if outage is None or a.outage_from is None:  # when it began is not known
        (until_text,) = _moments_text([until], today, tz)
        return f"{what} until {until_text}; {since}."
    from_text, until_text = _moments_text([a.outage_from, until], today, tz)
    return f"{what} from {from_text} until {until_text} ({duration_text(outage)}); {since}."


def _alert_lines(a: Alert, today: date, *, resolved: bool = False, tz: tzinfo = UTC) -> list[str]:
    lines = [f"* {a.severity.upper() if not resolved else 'ENDED'}: {a.headline(today, ended=resolved)}"]
    if resolved:
        outage = _outage_line(a, today, tz)
        if outage is not None:
            lines.append(f"  {outage}")
        elif a.kind == ProblemKind.MISSING and a.latest_ok is not None:
            lines.append(f"  '{escape_name(a.report)}' delivered again for {fmt_day(a.latest_ok, today)}.")
        elif a.latest_ok is not None:
            lines.append(f"  The run of {fmt_day(a.latest_ok, today)} is fine again.")
        elif not a.problems:
            lines.append("  No longer reported as a problem.")
        rescuable = [(q.day, q.rescue_by) for q in a.problems
                     if q.day is not None and q.rescue_by is not None and q.rescue_by > today]
        if rescuable:
            lines.append("  Still to re-run by hand in Alma if not done yet:")
            for day, rescue_by in rescuable[:MAX_DAYS_LISTED]:
                lines.append(f"    {fmt_day(day, today)}: last day to re-run: {last_day_text(rescue_by, today)}")
            if len(rescuable) > MAX_DAYS_LISTED:
                lines.append(f"    ... and {len(rescuable) - MAX_DAYS_LISTED} more")
        return lines
    shown = a.problems[:MAX_DAYS_LISTED]
    for q in shown:
        lines.append(f"  {escape_name(q.message)}")
        dates = []
        if q.rescue_by is not None and q.rescue_by > today:
            dates.append(f"last day to re-run: {last_day_text(q.rescue_by, today)} (the loans are "
                         f"anonymized on {fmt_day(q.rescue_by, today)})")
        elif q.rescue_by is not None:
            dates.append(f"too late to re-run since {fmt_day(q.rescue_by, today)}")
        if q.delete_on is not None:
            dates.append(f"the server deletes it on {fmt_day(q.delete_on, today)}")
        if q.file:
            dates.append(f"file: {escape_name(q.file)}")
        if dates:
            lines.append("    " + "; ".join(dates))
        if q.next_step:
            lines.append(f"    Next step: {escape_name(q.next_step)}")
    if len(a.problems) > len(shown):
        lines.append(f"  ... and {len(a.problems) - len(shown)} more days: see 'report-keeper check'")
    return lines


def compose(p: Plan, *, profile: str, status: str, where: str, now_text: str,
            kind: str | None = None, tz: tzinfo = UTC) -> Message:
    """The e-mail (subject and plain-text body) and the webhook document of a plan; times in
    the body are on ``tz``'s clock (the profile's).

    Only problem texts, dates, report and file names are used: never a cell value.
    """
    today = p.today
    subject = _subject(p, status)
    lines = [
        f"Report Keeper, profile '{escape_name(profile)}' ({where}), {now_text}.",
        f"Overall status: {status.upper()}.",
        "",
    ]
    told = {id(a) for a in p.new} | {id(a) for a in p.reminders}
    if p.new:
        lines.append("New:")
        for a in p.new:
            lines.extend(_alert_lines(a, today))
        lines.append("")
    if p.reminders:
        for a in p.reminders:
            anonymized = f" (the loans are anonymized on {fmt_day(a.rescue_by, today)})" if a.rescue_by else ""
            lines.append(f"Reminder: the last day to re-run is {_last_day(a, today)}{anonymized}:")
            lines.extend(_alert_lines(a, today))
        lines.append("")
    still = [a for a in p.open if id(a) not in told]
    if still:
        lines.append("Still open (told before):")
        for a in still:
            lines.append(f"* {a.severity.upper()}: {a.headline(today)}")
        lines.append("")
    if p.resolved:
        lines.append("Ended:")
        for a in p.resolved:
            lines.extend(_alert_lines(a, today, resolved=True, tz=tz))
        lines.append("")
    if not p.open:
        lines.append("Nothing is open any more.")
    lines.append("Details: run 'report-keeper check', or open the app's Health screen.")
    body = "\n".join(lines) + "\n"
    document: JSONObject = {
        "profile": profile,
        "status": status,
        "message": kind or p.message_kind,
        "subject": subject,
        "text": subject,
        "new": [a.to_json() for a in p.new],
        "reminders": [a.to_json() for a in p.reminders],
        "resolved": [a.to_json(resolved=True) for a in p.resolved],
        "open": [a.to_json() for a in p.open],
    }
    return Message(subject=subject, body=body, document=document)
