"""Health screen (key ``1``): the ``check`` summary, live.

An overall banner; each report's last delivery, rows and on-time streak; the problems by
urgency with their rescue-by and delete-on dates and next step; the connection test as Alma
shows it (upload ok, download ok, delete ok); the local folder's size. ``r`` lists the server
again and re-evaluates, ``t`` runs the connection test.

Everything shown comes from the app's snapshot (``tui.core.health.HealthReport``, evaluated in
a thread) and its connection info; texts that may hold server-supplied names are plain
``Text`` after ``escape_name``, never markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, tzinfo

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Header, Static

from tui.core import clock
from tui.core.config import Profile
from tui.core.health import HealthReport, held_state
from tui.core.model import Audience, ConnTestResult, JobState, ProblemKind, StepOutcome, WriteTest
from tui.core.names import escape_name
from tui.core.problem_list import Member, ProblemGroup, member_label, tell
from tui.core.status import Severity
from tui.messages import ConnectionChanged, DataRefreshed, QueueChanged
from tui.screens.base import AppScreen
from tui.state import ConnectionInfo, ConnectionState, DataSnapshot, ScreenName
from tui.widgets.footer import FitFooter
from tui.widgets.formatting import (
    fit_parts,
    fit_words,
    home_relative,
    human_age,
    human_size,
    local_time,
    mono,
    name_text,
    plural,
    report_file_text,
    severity_text,
    short_day,
)
from tui.widgets.hanging import HangingText, Line, update_static
from tui.widgets.navbar import NavBar

_STEP_STYLE = {StepOutcome.OK: "green", StepOutcome.DENIED: "yellow", StepOutcome.FAILED: "bold red",
               StepOutcome.MISMATCH: "bold red", StepOutcome.SKIPPED: "dim"}
_REPORT_GLYPH = {Severity.OK: ("✓", "green"), Severity.WARNING: ("!", "yellow"),
                 Severity.CRITICAL: ("✗", "bold red")}


def banner_text(health: HealthReport | None, connection: ConnectionInfo | None,
                error: str = "") -> tuple[str, Text]:
    """(css class, text) of the overall banner."""
    if health is None:
        if error:
            return "critical", Text(f"✗ {error}")
        return "", Text("… evaluating the ledger", style="italic")
    problems = health.problems
    critical = sum(1 for p in problems if p.severity == Severity.CRITICAL)
    warnings = sum(1 for p in problems if p.severity == Severity.WARNING)
    empty = sum(1 for p in problems if p.kind == ProblemKind.EMPTY)
    status = health.status
    if status == Severity.OK:
        text = Text("✓ ALL WELL · every report arrived and holds data")
    else:
        glyph = "✗" if status == Severity.CRITICAL else "!"
        text = Text(f"{glyph} {status.upper()}")
        parts = []
        if critical:
            parts.append(f"{critical} critical")
        if warnings:  # an empty report is one of the warnings, named, not counted again
            parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}"
                         + (f" ({empty} an empty report)" if empty == 1 else
                            f" ({empty} empty reports)" if empty else ""))
        text.append(" · " + ", ".join(parts))
    if connection is not None and connection.state == ConnectionState.FAILED:
        text.append(" · no connection")
    return status, text


def reports_lines(health: HealthReport | None, tz: tzinfo, now: datetime) -> list[Line]:
    """The reports, two lines each (the name and schedule; the last delivery); a line too long
    for the screen goes on under its own first word."""
    lines: list[Line] = [("", Text("Reports", style="bold underline"))]
    if health is None or not health.reports:
        lines.append(("  ", Text("No report seen yet: list the server with r.", style="dim")))
        return lines
    for report in health.reports:
        glyph, style = _REPORT_GLYPH[report.status]
        head = Text()
        head.append(escape_name(report.name), style="bold")
        schedule = report.schedule.describe() if report.schedule_known else "schedule unknown"
        rolling = (", rolling (inferred)" if report.rolling_inferred else ", rolling") if report.rolling else ""
        inferred = ", inferred" if report.inferred and report.schedule_known else ""
        head.append(f"  ({schedule}{inferred}{rolling})", style="dim")
        lines.append((Text(f"  {glyph} ", style=style), head))
        text = Text("last: ")
        last = report.last_delivery
        if last is None:
            text.append("never delivered", style="yellow")
        else:
            text.append(local_time(last.delivered_at, tz, with_year=True))
            age = now - last.delivered_at
            # a time ahead of now: the name's clock is not the profile's time zone
            text.append(f" ({human_age(age)} ago)" if age.total_seconds() >= 0 else f" (in {human_age(-age)})",
                        style="dim")
            rows = last.rows
            if rows is None:
                found = last.downloaded and last.verification is not None
                text.append(f" · {held_state(last)}", style="bold red" if found else "dim")
            else:
                text.append(f" · {rows:,} rows", style="yellow" if rows == 0 else "")
        text.append(f" · on time {report.on_time_streak} in a row",
                    style="green" if report.on_time_streak else "yellow")
        lines.append(("    ", text))
    return lines


def reports_text(health: HealthReport | None, tz: tzinfo, now: datetime) -> Text:
    """:func:`reports_lines` unwrapped, one per line."""
    text = Text()
    for lead, body in reports_lines(health, tz, now):
        text.append_text(lead if isinstance(lead, Text) else Text(lead))
        text.append_text(body)
        text.append("\n")
    return text


#: Kinds whose message states their delete-on date already: no second label beside it.
_DATE_IN_MESSAGE = (ProblemKind.NEAR_DELETION, ProblemKind.MISSING_LOCALLY)
#: Room a group's member line gives the name when the screen's width is unknown.
_NAME_ROOM = 40


def _date_label(label: str, days: int) -> Text:
    """``member_label``'s text, coloured by the days left."""
    style = "bold red" if days <= 3 else ("yellow" if days <= 14 else "dim")
    return Text(label, style=style)


def _member_lines(members: Sequence[Member], today: date, width: int) -> list[Text]:
    """A group's problems one line each, in columns: run day, file (or report), the date that
    matters. Names get what the longest date label leaves of ``width`` (shortened past that)
    and are padded to the longest shown, so the dates line up."""
    labels = [_date_label(*dated) if (dated := member_label(m.problem, today)) is not None else Text("")
              for m in members]
    room = max(8, width - 6 - 12 - 2 - max(label.cell_len for label in labels))
    names = []
    for m in members:
        p = m.problem
        if p.file:
            names.append(report_file_text(p.file, m.report, room) if m.report else name_text(p.file, room))
        else:
            names.append(Text(fit_words(escape_name(m.report), room)))
    name_width = max(name.cell_len for name in names)
    lines = []
    for m, name, label in zip(members, names, labels, strict=True):
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(short_day(m.problem.day) if m.problem.day is not None else "", style="bold")
        line.pad_right(12 - line.cell_len)
        line.append_text(name)
        if label.plain:
            line.pad_right(12 + name_width - line.cell_len)
            line.append("  ")
            line.append_text(label)
        lines.append(line)
    return lines


def problems_lines(health: HealthReport | None, today: date, width: int = 0,
                   no_color: bool = False) -> list[Line]:
    """The problems, most urgent first, like ones grouped (``tui.core.problem_list``), the
    advice said for the app's keys; each line's wrapped lines start under its first word."""
    width = width or _NAME_ROOM + 40
    problems = health.problems if health is not None else []
    lines: list[Line] = []

    def add(body: Text, lead: str = "") -> None:
        lines.append((mono(Text(lead, style="cyan" if "→" in lead else ""), no_color), mono(body, no_color)))

    add(Text(f"Problems ({len(problems)})" if problems else "Problems", style="bold underline"))
    if health is None:
        return lines
    if not problems:
        add(Text("✓ nothing to do", style="green"), "  ")
        return lines
    for entry in tell(health):
        if isinstance(entry, ProblemGroup):
            add(severity_text(entry.severity, f"{len(entry.members)} × {entry.kind}"), "  ")
            add(Text(escape_name(entry.message)), "    ")
            add(Text(escape_name(entry.step(Audience.APP)), style="italic"), "    → ")
            for line in _member_lines(entry.members, today, width):
                add(line, "      ")
            continue
        p = entry
        head = severity_text(p.severity, p.kind)
        if p.day is not None:
            head.append(f" {short_day(p.day)}", style="bold")
        dated = member_label(p, today) if p.kind not in _DATE_IN_MESSAGE else None
        if dated is not None:
            head.append(" · ")
            head.append_text(_date_label(*dated))
        add(head, "  ")
        add(Text(escape_name(p.message)), "    ")
        step = p.step(Audience.APP)
        if step:
            add(Text(escape_name(step), style="italic"), "    → ")
    return lines


_CONNECTION_LABEL = {
    ConnectionState.IDLE: ("○ not connected yet", "dim"),
    ConnectionState.CONNECTING: ("◌ connecting…", "italic"),
    ConnectionState.CONNECTED: ("● connected", "green"),
    ConnectionState.FAILED: ("✗ no connection", "bold red"),
}


def _append_steps(text: Text, test: ConnTestResult) -> None:
    """``upload ok, download ok, delete ok`` as Alma's Test FTP shows it, each step coloured."""
    for i, (step, outcome) in enumerate(test.steps.items()):
        if i:
            text.append(", ")
        text.append(f"{step} {outcome}", style=_STEP_STYLE[outcome])


def connection_lines(connection: ConnectionInfo, tz: tzinfo) -> list[Line]:
    """The Connection section: its state, the failure, the Alma-style test; a long message
    wraps under its own first word."""
    lines: list[Line] = [("", Text("Connection", style="bold underline"))]
    state = connection.state
    label, style = _CONNECTION_LABEL[state]
    lines.append(("  ", Text(label, style=style)))
    if connection.message and state == ConnectionState.FAILED:
        lines.append(("    ", Text(escape_name(connection.message))))
    test = connection.test
    text = Text()
    if connection.testing:
        text.append("running…", style="italic")
    elif test is None:
        text.append("not run yet · press t", style="dim")
    else:
        _append_steps(text, test)
        if connection.tested_at is not None:
            text.append(f" · at {local_time(connection.tested_at, tz)}", style="dim")
    lines.append(("  Test (upload, download, delete): ", text))
    if test is not None and not connection.testing and (test.write_test != WriteTest.OK or not test.ok):
        lines.append(("    ", Text(escape_name(test.message), style="yellow" if test.ok else "red")))
    if test is not None and not test.ok and state == ConnectionState.CONNECTED:  # a listing has worked since
        lines.append(("    ", Text("That was before the last listing, which worked; t tests again.", style="dim")))
    return lines


def status_line(connection: ConnectionInfo, snapshot: DataSnapshot, width: int = 78) -> Text:
    """One line under the banner: connection, the Alma-style test, the local folder; parts
    that do not fit ``width`` are left out whole (the sections below say them in full)."""
    label, style = _CONNECTION_LABEL[connection.state]
    test = connection.test
    tested = Text("test: ")
    if connection.testing:
        tested.append("running…", style="italic")
    elif test is None:
        tested.append("press t", style="dim")
    elif all(outcome == StepOutcome.OK for outcome in test.steps.values()):
        tested.append("upload, download, delete ok", style=_STEP_STYLE[StepOutcome.OK])
    else:
        _append_steps(tested, test)
    local = f"local: {plural(snapshot.local_files, 'file')}, {human_size(snapshot.local_size)}"
    return fit_parts([(Text(label, style=style), 0), (tested, 1), (local, 2)], width)


def local_text(profile: Profile, snapshot: DataSnapshot) -> Text:
    text = Text()
    text.append("Local folder\n", style="bold underline")
    text.append(f"  {home_relative(profile.local_dir)}", style="bold")
    text.append(f" · {snapshot.local_files} files, {human_size(snapshot.local_size)}\n")
    if snapshot.refused:
        text.append(f"  {len(snapshot.refused)} server names refused as unsafe (never written)\n",
                    style="bold red")
    return text


class HealthScreen(AppScreen):
    """What is wrong, what to do, by when."""

    DEFAULT_CSS = """
    HealthScreen #health-banner { height: auto; padding: 0 1; text-style: bold; background: $boost; }
    HealthScreen #health-banner.ok { background: $success 35%; }
    HealthScreen #health-banner.warning { background: $warning 35%; }
    HealthScreen #health-banner.critical { background: $error 45%; }
    HealthScreen #health-status { height: 1; padding: 0 1; }
    HealthScreen VerticalScroll { height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
    HealthScreen VerticalScroll > Static { margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("r", "app.refresh", "Refresh", id="health.refresh"),
        Binding("t", "app.test_connection", "Test connection", id="health.test"),
        # The problems' advice names d: it fetches every file not held here.
        Binding("d", "app.download_all_new", "Download new", id="health.download"),
        Binding("down,j", "scroll(1)", "Down", show=False),
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("pagedown", "scroll(10)", "Page down", show=False),
        Binding("pageup", "scroll(-10)", "Page up", show=False),
    ]

    _rendered_width = 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar(ScreenName.HEALTH)
        yield Static("", id="health-banner")
        yield Static("", id="health-status")
        with VerticalScroll(id="health-body"):
            yield HangingText(id="health-reports")
            yield HangingText(id="health-problems")
            yield HangingText(id="health-connection")
            yield Static("", id="health-local")
        yield FitFooter()

    def on_mount(self) -> None:
        self.render_all()

    def on_screen_resume(self) -> None:
        self.render_all()
        self._update_transfer_summary()  # the queue changed while another screen was shown

    def on_data_refreshed(self, message: DataRefreshed) -> None:
        self.render_all()

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        self.render_all()

    def on_queue_changed(self, message: QueueChanged) -> None:
        self._update_transfer_summary()

    def _update_transfer_summary(self) -> None:
        board = self.app.board
        if board.active:
            done = f"{board.counts()[JobState.DONE]}/{len(board.jobs)} downloaded"
            # "↓" would say files are coming in: a paused queue holds them
            self.query_one(NavBar).set_summary(f"‖ paused · {done}" if board.paused else f"↓ {done}")
        else:
            self.query_one(NavBar).set_summary("")

    def render_all(self) -> None:
        app = self.app
        snapshot = app.snapshot
        health = snapshot.health
        tz = app.profile.timezone
        now = clock.now()
        today = now.astimezone(tz).date()
        banner = self.query_one("#health-banner", Static)
        css, text = banner_text(health, app.connection, snapshot.error)
        banner.set_classes(css)
        if app.no_color and css == Severity.CRITICAL:  # no red band: the banner itself reversed
            text.stylize("bold reverse")
        update_static(banner, text)
        line = status_line(app.connection, snapshot, (self.size.width or 80) - 2)
        update_static(self.query_one("#health-status", Static), mono(line, app.no_color), layout=False)  # one line
        reports = reports_lines(health, tz, now)
        if app.no_color:
            reports = [(mono(lead) if isinstance(lead, Text) else lead, mono(body)) for lead, body in reports]
        self.query_one("#health-reports", HangingText).set_lines(reports)
        local = local_text(app.profile, snapshot)
        local.rstrip()  # the sections' margin is the only gap between them
        update_static(self.query_one("#health-local", Static), mono(local, app.no_color))
        lines = connection_lines(app.connection, tz)
        if app.no_color:
            lines = [(lead, mono(body)) for lead, body in lines]
        self.query_one("#health-connection", HangingText).set_lines(lines)
        width = self.size.width - 3  # the body's padding and scroll bar
        self._rendered_width = self.size.width
        self.query_one("#health-problems", HangingText).set_lines(problems_lines(health, today, width, app.no_color))

    def on_resize(self) -> None:
        if self.size.width != self._rendered_width:
            self.render_all()

    def action_scroll(self, lines: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=lines, animate=False)
