"""How a list of problems is told: like problems grouped, advice for where it is read.

Sixteen files near deletion are one thing to do, not sixteen: problems of one kind and
severity, from ``GROUP_FROM`` on, become one ``ProblemGroup`` with one message and one next
step, its members told one line each (``member_line``). The Health screen and ``check`` both
tell the evaluation this way; each asks for the advice of its audience (``Audience.APP``
names keys, ``Audience.SHELL`` commands).

Public API: ``tell(health) -> list[Problem | ProblemGroup]`` (most urgent first, a group where
its most urgent member was); ``ProblemGroup``; ``Member``; ``member_date(problem, today)`` and
``member_label(problem, today)`` (the date as shown beside the problem).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from tui.core.health import FETCH_KEYS, NEAR_DELETION_DAYS, RESCUE_KINDS, HealthReport, fmt_day
from tui.core.model import Audience, Problem, ProblemKind
from tui.core.status import Severity

#: From this many problems of one kind and severity on, they are told as one group.
GROUP_FROM = 3

#: What a group of each kind is, after its count (``5 runs with no delivery``).
_WHAT = {
    ProblemKind.MISSING: "runs with no delivery",
    ProblemKind.LATE: "deliveries arrived late",
    ProblemKind.EMPTY: "files have no data rows on an open day",
    ProblemKind.SCHEMA: "files do not have the expected columns",
    ProblemKind.UNREADABLE: "files are not readable Excel files",
    ProblemKind.LOST: "files are lost: gone from the server, no copy here",
    ProblemKind.CHANGED: "files changed on the server after they were downloaded",
    ProblemKind.CONNECTION: "connection problems",
    ProblemKind.WRONG_DAY: "files hold the rows of another day",
    ProblemKind.STALE: "files repeat an earlier delivery's rows",
    ProblemKind.FEW_ROWS: "files have far fewer rows than usual",
    ProblemKind.SCHEDULE_UNKNOWN: "reports have no schedule configured and too few deliveries to tell one",
    ProblemKind.BAD_DATE: "files are dated in the future or at an impossible time: in no run",
}


@dataclass(frozen=True)
class Member:
    """One problem of a group and the report it belongs to."""

    problem: Problem
    report: str


@dataclass(frozen=True)
class ProblemGroup:
    """Like problems told once: ``message`` and the next step for each audience."""

    kind: ProblemKind
    severity: Severity
    members: tuple[Member, ...]
    message: str
    next_step: str
    app_step: str

    def step(self, audience: Audience) -> str:
        return self.app_step if audience == Audience.APP else self.next_step


def member_date(problem: Problem, today: date) -> tuple[str, int] | None:
    """The date that matters for one problem, as a label, and the days left until it:
    ``("rescue by Sat 17 Oct", 2)`` or ``("deleted Sun 18 Oct", 3)``; negative once passed. A
    re-run is possible only *before* the rescue-by day, so on that day it has passed."""
    if problem.rescue_by is not None and (problem.kind in RESCUE_KINDS or problem.kind == ProblemKind.LOST):
        left = (problem.rescue_by - today).days
        return f"rescue by {fmt_day(problem.rescue_by, today)}", left if left > 0 else -1
    if problem.delete_on is not None:
        return f"deleted {fmt_day(problem.delete_on, today)}", (problem.delete_on - today).days
    return None


def member_label(problem: Problem, today: date) -> tuple[str, int] | None:
    """``member_date`` as it is shown beside a problem, with its days left: ``("rescue by Sat
    17 Oct (2d)", 2)``; ``"(passed)"`` once the day has passed."""
    dated = member_date(problem, today)
    if dated is None:
        return None
    what, days = dated
    return (f"{what} ({days}d)" if days >= 0 else f"{what} (passed)"), days


def tell(health: HealthReport) -> list[Problem | ProblemGroup]:
    """The evaluation's problems, most urgent first, like ones grouped (see the module)."""
    today = health.now.date()
    report_of: dict[int, str] = {}
    for r in health.reports:
        for p in r.problems:
            report_of[id(p)] = r.name
    problems = health.problems
    by_key: dict[tuple[ProblemKind, Severity], list[Problem]] = {}
    for p in problems:
        by_key.setdefault((p.kind, p.severity), []).append(p)
    out: list[Problem | ProblemGroup] = []
    done: set[tuple[ProblemKind, Severity]] = set()
    for p in problems:
        key = (p.kind, p.severity)
        same = by_key[key]
        if len(same) < GROUP_FROM or p.kind == ProblemKind.CONNECTION:
            out.append(p)
        elif key not in done:
            done.add(key)
            members = tuple(Member(q, report_of.get(id(q), "")) for q in same)
            out.append(_group(p.kind, p.severity, members, today))
    return out


def _group(kind: ProblemKind, severity: Severity, members: tuple[Member, ...], today: date) -> ProblemGroup:
    n = len(members)
    problems = [m.problem for m in members]
    deletes = sorted(p.delete_on for p in problems if p.delete_on is not None)
    first = fmt_day(deletes[0], today) if deletes else ""
    if kind == ProblemKind.NEAR_DELETION and first:
        return ProblemGroup(
            kind, severity, members,
            message=f"{n} files are not downloaded and leave the server within {NEAR_DELETION_DAYS} "
            f"days, the first on {first}",
            next_step=f"Run 'report-keeper sync' before {first}: it downloads them all",
            app_step=f"{FETCH_KEYS} before {first}: it downloads them all",
        )
    if kind == ProblemKind.MISSING_LOCALLY and first:
        return ProblemGroup(
            kind, severity, members,
            message=f"{n} downloaded files are missing from the local folder (moved, deleted or "
            f"damaged); the server still has them, the first until {first}",
            next_step=f"Run 'report-keeper sync' before {first}: it fetches them again",
            app_step=f"{FETCH_KEYS} before {first}: it fetches them again",
        )
    message = f"{n} {_WHAT.get(kind, f'{kind} problems')}"
    return ProblemGroup(kind, severity, members, message=message,
                        next_step=_common_step(problems, Audience.SHELL, today),
                        app_step=_common_step(problems, Audience.APP, today))


def _common_step(problems: Sequence[Problem], audience: Audience, today: date) -> str:
    """The members' step when they all share it; else what they have in common."""
    steps = {p.step(audience) for p in problems}
    if len(steps) == 1:
        return steps.pop()
    if all((p.kind in RESCUE_KINDS or p.kind == ProblemKind.LOST) and p.rescue_by is not None
           for p in problems):  # a closed day's run has nothing to rescue: no rescue-by
        if all(p.rescue_by is not None and today >= p.rescue_by for p in problems):
            # Each one alone says it is too late (its loans are anonymized): so does the group.
            return ("Too late to re-run: the loans of each were anonymized on its rescue-by date "
                    "(beside it); note the gaps in your records")
        return ("Re-run each in Alma Analytics before its rescue-by date (beside it); past that "
                "date, note the gap in your records")
    if audience == Audience.APP:
        return "Each one's next step is on its day in the Heatmap (5)"
    return "'report-keeper check --json' gives each one's next step"


__all__ = ["GROUP_FROM", "Member", "ProblemGroup", "member_date", "member_label", "tell"]
