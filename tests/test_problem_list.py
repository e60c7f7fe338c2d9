"""Problems told as a person reads them: like ones grouped, advice for the app or the shell.

The scenario's history with nothing downloaded yet and everything still on the server: a
dozen files near deletion, which Health and ``check`` tell as one thing to do.
"""

from __future__ import annotations

import dataclasses

from tests import scenario as sc
from tui.commands.check import render
from tui.core.health import evaluate
from tui.core.model import Audience, ProblemKind
from tui.core.problem_list import GROUP_FROM, ProblemGroup, tell


def _nothing_downloaded():
    deliveries = [dataclasses.replace(d, downloaded_at=None, local_path=None, on_server=True, extra={})
                  for d in sc.deliveries()]
    return evaluate(sc.profile(), deliveries, now=sc.NOW)


def test_many_files_near_deletion_are_one_group_with_one_step():
    health = _nothing_downloaded()
    near = [p for p in health.problems if p.kind == ProblemKind.NEAR_DELETION]
    assert len(near) >= GROUP_FROM
    entries = tell(health)
    groups = [e for e in entries if isinstance(e, ProblemGroup) and e.kind == ProblemKind.NEAR_DELETION]
    assert len(groups) == 1
    (group,) = groups
    assert [m.problem for m in group.members] == near  # all of them, most urgent first
    assert {m.report for m in group.members} <= {sc.DAILY, sc.WEEKLY}
    assert group.message.startswith(f"{len(near)} files are not downloaded and leave the server")
    # every problem is told once: as itself or inside its group
    told = [p for e in entries for p in ([m.problem for m in e.members] if isinstance(e, ProblemGroup) else [e])]
    assert sorted(map(repr, told)) == sorted(map(repr, health.problems))


def test_advice_names_keys_in_the_app_and_commands_in_the_shell():
    health = _nothing_downloaded()
    (group,) = [e for e in tell(health) if isinstance(e, ProblemGroup) and e.kind == ProblemKind.NEAR_DELETION]
    app, shell = group.step(Audience.APP), group.step(Audience.SHELL)
    assert app.startswith("Press d on Health (1) or Remote (2) before") and "report-keeper" not in app
    assert shell.startswith("Run 'report-keeper sync' before") and "press" not in shell.casefold()
    for p in health.problems:
        assert "in the TUI" not in p.next_step and "(r in the app)" not in p.next_step, p
        assert "in the app" not in p.step(Audience.APP), p
        if p.kind == ProblemKind.NEAR_DELETION:
            assert "report-keeper" not in p.step(Audience.APP)
            assert "press" not in p.step(Audience.SHELL).casefold()


def test_check_prints_the_group_once_then_one_line_per_file():
    health = _nothing_downloaded()
    (group,) = [e for e in tell(health) if isinstance(e, ProblemGroup) and e.kind == ProblemKind.NEAR_DELETION]
    out = render(health, sc.profile(), width=100, max_lines=200)
    assert out.count("near-deletion x") == 1
    assert "-> " + group.step(Audience.SHELL) in out
    assert "Press a" not in out
    member_lines = [line for line in out.splitlines() if line.startswith("        ") and ".xlsx" in line]
    assert len(member_lines) == len(group.members)
    assert all("deleted " in line for line in member_lines)
    # one screenful still: the tail says what was left out
    short = render(health, sc.profile(), width=100)
    assert len(short.splitlines()) <= 24
    assert "... and " in short


def test_a_group_whose_steps_differ_points_where_each_step_is_said():
    from datetime import date

    from tui.core.model import Problem
    from tui.core.problem_list import _group
    from tui.core.status import Severity

    problems = tuple(Problem(severity=Severity.WARNING, kind=ProblemKind.CHANGED, message=f"m{i}",
                             next_step=f"step {i}", day=date(2026, 12, i + 1)) for i in range(3))
    from tui.core.problem_list import Member

    group = _group(ProblemKind.CHANGED, Severity.WARNING, tuple(Member(p, "R") for p in problems),
                   date(2026, 12, 10))
    assert group.message == "3 files changed on the server after they were downloaded"
    assert group.step(Audience.APP) == "Each one's next step is on its day in the Heatmap (5)"
    assert "check --json" in group.step(Audience.SHELL)


# -- runs with no delivery, told as a group ------------------------------------------------------


def _missing(*runs):
    """The scenario with the deliveries of ``runs`` ((report, run day)) never made."""
    from datetime import date

    gone = {sc.name_of(report, date(*day)) for report, day in runs}
    return evaluate(sc.profile(), [d for d in sc.deliveries() if d.name not in gone], now=sc.NOW)


def _missing_group(health, severity):
    (group,) = [e for e in tell(health) if isinstance(e, ProblemGroup)
                and e.kind == ProblemKind.MISSING and e.severity == severity]
    return group


def _past_rescue():
    """Four runs with no delivery, of both reports, whose loans are all anonymized by now."""
    return _missing((sc.DAILY, (2026, 11, 12)), (sc.WEEKLY, (2026, 11, 5)))


def test_a_group_of_runs_all_past_rescue_says_it_is_too_late_as_one_run_does():
    health = _past_rescue()
    group = _missing_group(health, "warning")
    assert len(group.members) == 4 and {m.report for m in group.members} == {sc.DAILY, sc.WEEKLY}
    assert all(m.problem.rescue_by < sc.TODAY for m in group.members)
    # what each one says alone ...
    assert all(m.problem.next_step.startswith("Too late to re-run: the loans of ") for m in group.members)
    # ... the group says too: nothing is offered that can no longer be done
    for audience in Audience:
        step = group.step(audience)
        assert step.startswith("Too late to re-run"), step
        assert "anonymized" in step and "note the gap" in step, step
        assert "before its rescue-by date" not in step and "Re-run each" not in step, step
    for width in (80, 100):
        out = render(health, sc.profile(), width=width, max_lines=200)
        assert "-> " + group.step(Audience.SHELL) in out
        assert "Re-run each" not in out


def test_a_group_of_runs_that_can_still_be_rescued_says_to_re_run_each_in_time():
    health = _missing((sc.DAILY, (2026, 12, 8)), (sc.DAILY, (2026, 12, 9)))
    group = _missing_group(health, "critical")
    assert len(group.members) == 3 and all(m.problem.rescue_by > sc.TODAY for m in group.members)
    assert group.step(Audience.SHELL).startswith(
        "Re-run each in Alma Analytics before its rescue-by date (beside it)")


def _member_lines(out: str, group) -> list[str]:
    lines = [line for line in out.splitlines() if line.startswith("        ") and "rescue by " in line]
    assert len(lines) == len(group.members), out
    return lines


def test_check_lines_up_a_groups_runs_of_reports_with_names_of_different_lengths():
    health = _past_rescue()
    group = _missing_group(health, "warning")
    out = render(health, sc.profile(), width=100, max_lines=200)
    lines = _member_lines(out, group)
    assert {line.index(" · ") for line in lines} == {18}, lines  # the run days: "Thu 5 Nov" padded
    assert len({line.index("rescue by ") for line in lines}) == 1, lines  # the dates in one column
    assert all(sc.DAILY in line or sc.WEEKLY in line for line in lines)  # names whole
    # at 80 columns the padding never makes a line wrap that fitted without it
    narrow = _member_lines(render(health, sc.profile(), width=80, max_lines=200), group)
    for line in narrow:
        unpadded = "        " + " ".join(line.split())
        assert len(line) <= 80 or len(unpadded) > 80, line


def test_health_lines_up_a_groups_runs_of_reports_with_names_of_different_lengths():
    from tui.screens.health import problems_lines

    health = _past_rescue()
    width = 77  # Health's body at 80 columns
    lines = [lead.plain + body.plain for lead, body in problems_lines(health, sc.TODAY, width)]
    members = [line for line in lines if line.startswith("      ") and "rescue by " in line]
    assert len(members) == 4, lines
    assert len({line.index("rescue by ") for line in members}) == 1, members
    assert all(len(line) <= width for line in members), members
    assert any(sc.WEEKLY in line for line in members)  # the shorter name whole
    assert any("Loans Per Patron" in line and "…" in line for line in members)  # the longer cut


def test_a_group_of_lost_files_shows_the_rescue_by_date_its_advice_points_to():
    """Files gone from the server before anything downloaded them: each one's step is to re-run
    the report before its rescue-by date, so each member line shows that date, the one the
    group's "(beside it)" points to (not the server's delete day, which has passed)."""
    daily = sorted((d for d in sc.deliveries() if d.report == sc.DAILY and d.delivered_at.date() < sc.TODAY),
                   key=lambda d: d.delivered_at)[-3:]
    gone = {d.name for d in daily}
    deliveries = [dataclasses.replace(d, downloaded_at=None, local_path=None, on_server=False)
                  if d.name in gone else d for d in sc.deliveries()]
    health = evaluate(sc.profile(), deliveries, now=sc.NOW)
    (group,) = [e for e in tell(health) if isinstance(e, ProblemGroup) and e.kind == ProblemKind.LOST]
    members = {m.problem.file for m in group.members}
    assert gone < members  # with the scenario's own lost file of October
    assert all(m.problem.rescue_by is not None for m in group.members)
    assert all(m.problem.rescue_by >= sc.TODAY for m in group.members if m.problem.file in gone)
    assert group.step(Audience.SHELL).startswith("Re-run each in Alma Analytics before its rescue-by date")
    out = render(health, sc.profile(), width=100, max_lines=200)
    lines = [line for line in out.splitlines() if any(n in line for n in members) and line.startswith("        ")]
    assert len(lines) == len(members)
    assert all("rescue by " in line and "deleted " not in line for line in lines), lines


def test_on_its_rescue_by_day_a_run_reads_passed_as_its_advice_says_too_late():
    """A run can be re-run only *before* its rescue-by day: on the day itself the member line
    says "(passed)", as the run's own step says "Too late", not "(0d)"."""
    from datetime import date, timedelta

    from tui.commands.check import _member_texts
    from tui.core.model import Problem
    from tui.core.problem_list import Member, member_date
    from tui.core.status import Severity

    today = date(2026, 12, 10)

    def missing(rescue_by: date) -> Problem:
        return Problem(severity=Severity.CRITICAL, kind=ProblemKind.MISSING, message="m", next_step="s",
                       day=rescue_by - timedelta(days=7), rescue_by=rescue_by)

    assert member_date(missing(today), today)[1] < 0
    assert member_date(missing(today + timedelta(days=1)), today)[1] == 1  # today is the last day
    lines = _member_texts([Member(missing(today), sc.DAILY), Member(missing(today + timedelta(days=2)), sc.DAILY)],
                          today, 100)
    assert "(passed)" in lines[0] and "(0d)" not in lines[0]
    assert "(2d)" in lines[1]
    # The Health screen shows each member's date with the same words (one label, coloured there).
    from tui.core.problem_list import member_label
    from tui.screens.health import _member_lines

    members = [Member(missing(today), sc.DAILY), Member(missing(today + timedelta(days=2)), sc.DAILY)]
    labels = [member_label(m.problem, today)[0] for m in members]
    assert labels[0].endswith("(passed)") and labels[1].endswith("(2d)")
    for line, screen_line, label in zip(lines, _member_lines(members, today, 100), labels, strict=True):
        assert line.endswith(label) and screen_line.plain.endswith(label)


def test_a_closed_day_in_a_group_is_not_told_to_re_run_or_note_a_gap():
    """A run with no delivery that covers a closed day has nothing to rescue: it carries no
    rescue-by, and a group it shares with runs past their rescue-by does not tell it to re-run
    nor to note a gap; the group points to each one's own step."""
    # 29 and 30 Nov cover Thanksgiving (closed); 12-14 Nov are open days past their rescue-by.
    health = _missing((sc.DAILY, (2026, 11, 29)), (sc.DAILY, (2026, 11, 30)), (sc.DAILY, (2026, 11, 12)),
                      (sc.DAILY, (2026, 11, 13)))
    closed = [p for p in health.problems if p.kind == ProblemKind.MISSING and "closed day" in p.message]
    assert len(closed) == 2 and all(p.rescue_by is None for p in closed)
    group = _missing_group(health, "warning")
    assert {m.problem.day for m in group.members} >= {p.day for p in closed}
    for audience in Audience:
        step = group.step(audience)
        assert "Re-run" not in step and "note the gap" not in step, step


def test_grouped_members_line_up_by_terminal_cells_also_with_wide_names():
    """``check`` pads a group's file names to one column: a CJK name takes two terminal cells
    a character, so the padding counts cells (as the Health screen does), not characters; the
    date column starts in the same cell on every line."""
    from datetime import date, timedelta

    from rich.cells import cell_len

    from tui.commands.check import _member_texts
    from tui.core.model import Problem
    from tui.core.problem_list import Member
    from tui.core.status import Severity

    today = date(2026, 12, 10)

    def missing(file: str, days: int) -> Member:
        return Member(Problem(severity=Severity.WARNING, kind=ProblemKind.NEAR_DELETION, message="m",
                              next_step="s", day=today - timedelta(days=days), file=file,
                              delete_on=today + timedelta(days=days)), sc.DAILY)

    lines = _member_texts([missing("貸出統計_20261201_070000.xlsx", 3),
                           missing("Loans_20261202_070000.xlsx", 4)], today, 100)
    starts = {cell_len(line[:line.rindex(" · ")]) for line in lines}
    assert len(starts) == 1, lines
