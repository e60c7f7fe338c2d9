"""Heatmap screen (key ``5``): a report's whole history as a calendar, the selected day beside it.

The data is the schedule evaluation (``tui.core.health.HealthReport``): one ``ReportHealth`` per
report with its run days and problems, from the app's snapshot (``snapshot.health``, and each
``DataRefreshed`` message). Below the calendar (beside it on terminals of 110 columns and
more) the panel shows the selected day: status, why (the day's problems), files, rows,
rescue-by and delete-on. ``[`` and ``]`` switch report.

File names come from the server: they are shown as plain ``Text`` after
``names.escape_name``, never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, tzinfo

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.widgets import Header, Static

from tui.core import heatmap as hm
from tui.core.health import HealthReport, ReportHealth
from tui.core.names import escape_name
from tui.messages import DataRefreshed
from tui.screens.base import AppScreen
from tui.state import ScreenName
from tui.widgets.footer import FitFooter
from tui.widgets.hanging import HangingText, Line
from tui.widgets.heatmap import HeatmapWidget
from tui.widgets.navbar import NavBar

_KIND_STYLE = {k: f"bold {s.color}" for k, s in hm.STYLES.items()}


class HeatmapScreen(AppScreen):
    """Calendar heatmap of every report; ``[``/``]`` switch report."""

    DEFAULT_CSS = """
    HeatmapScreen {
        layout: vertical;
    }
    HeatmapScreen #heatmap-title {
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    HeatmapScreen #heatmap-body {
        layout: vertical;
        height: 1fr;
    }
    HeatmapScreen #heatmap-detail {
        height: 1fr;
        padding: 0 1;
        border-top: solid $primary-muted;
    }
    /* From WIDE columns on, the selected day sits beside the calendar. */
    HeatmapScreen #heatmap-body.wide {
        layout: horizontal;
    }
    HeatmapScreen #heatmap-body.wide HeatmapWidget {
        width: 3fr;
    }
    HeatmapScreen #heatmap-body.wide #heatmap-detail {
        width: 2fr;
        border-top: none;
        border-left: solid $primary-muted;
    }
    """

    WIDE = 110

    BINDINGS = [
        Binding("left_square_bracket", "switch_report(-1)", "Prev report", key_display="["),
        Binding("right_square_bracket", "switch_report(1)", "Next report", key_display="]"),
        Binding("home", "first_day", "First day", show=False),
        Binding("end", "last_day", "Last day", show=False),
        # tab moves between the calendar and the day's details (which then scroll with the
        # arrows); the footer says where it goes (check_action shows one of the two).
        Binding("tab", "focus_detail", "Scroll details", id="heatmap.focus_detail"),
        Binding("tab,escape", "focus_calendar", "Back to calendar", id="heatmap.focus_calendar"),
    ]
    HELP_WIDGETS = (HeatmapWidget,)  # the help lists the calendar's keys (arrows, pages)
    PALETTE_COMMANDS = (
        ("Heatmap: previous report", "switch_report(-1)", "["),
        ("Heatmap: next report", "switch_report(1)", "]"),
        ("Heatmap: first day of the history", "first_day", "home"),
        ("Heatmap: today", "last_day", "end"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._health: HealthReport | None = None
        self._index = 0
        self._wanted_report: str | None = None
        self._grid: hm.Grid | None = None
        self._selected: date | None = None

    # ------------------------------------------------------------------ compose
    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar(ScreenName.HEATMAP)
        yield Static(id="heatmap-title")
        with Container(id="heatmap-body"):
            yield HeatmapWidget(id="heatmap")
            with VerticalScroll(id="heatmap-detail"):
                yield HangingText(id="heatmap-day")
        yield FitFooter()

    def on_resize(self) -> None:
        self.query_one("#heatmap-body").set_class(self.size.width >= self.WIDE, "wide")

    def on_mount(self) -> None:
        self.query_one("#heatmap-body").set_class(self.app.size.width >= self.WIDE, "wide")
        self.query_one(HeatmapWidget).focus()
        self._health = self.app.snapshot.health
        self._show()

    def on_screen_resume(self) -> None:
        health = self.app.snapshot.health
        if health is not None and health is not self._health:
            self.set_health(health)

    # ------------------------------------------------------------------ data
    @property
    def tz(self) -> tzinfo:
        return self.app.profile.timezone

    @property
    def reports(self) -> Sequence[ReportHealth]:
        return self._health.reports if self._health is not None else ()

    @property
    def report(self) -> ReportHealth | None:
        reports = self.reports
        return reports[self._index] if reports else None

    @property
    def grid(self) -> hm.Grid | None:
        return self._grid

    def set_health(self, health: HealthReport) -> None:
        """New evaluation: keep the report (by name) and the selected day."""
        current = self.report
        self._health = health
        if current is not None:
            self._wanted_report = current.name
        if self.is_mounted:
            self._show()

    def on_data_refreshed(self, message: DataRefreshed) -> None:
        health = message.snapshot.health
        if health is not None:
            self.set_health(health)

    def action_switch_report(self, step: int) -> None:
        reports = self.reports
        if len(reports) < 2:
            self.notify("There is only one report.", timeout=2)
            return
        self._index = (self._index + step) % len(reports)
        self._selected = None
        self._show()

    # Asked for every binding each time the footer or a key looks at them, also before the
    # day's details are mounted: no query of the DOM.
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in ("focus_detail", "focus_calendar"):
            return True
        focused = self.focused
        detail_focused = focused is not None and focused.id == "heatmap-detail"
        return detail_focused if action == "focus_calendar" else not detail_focused

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()  # the footer's tab says where it goes now

    def action_focus_detail(self) -> None:
        self.query_one("#heatmap-detail").focus()

    def action_focus_calendar(self) -> None:
        self.query_one(HeatmapWidget).focus()

    def action_first_day(self) -> None:
        self.query_one(HeatmapWidget).action_first()

    def action_last_day(self) -> None:
        self.query_one(HeatmapWidget).action_last()

    def _show(self) -> None:
        reports = self.reports
        if self._wanted_report is not None:
            for i, r in enumerate(reports):
                if r.name == self._wanted_report:
                    self._index = i
            self._wanted_report = None
        self._index = min(self._index, max(0, len(reports) - 1))
        title = self.query_one("#heatmap-title", Static)
        widget = self.query_one(HeatmapWidget)
        report = self.report
        if report is None:
            title.update(Text("Heatmap: no reports yet", style="bold"))
            self.query_one("#heatmap-day", HangingText).set_lines([("", Text(
                "No deliveries are recorded yet. Refresh the server listing (r) or run "
                "'report-keeper sync'; every report then gets its calendar here."))])
            return
        today = hm.today_in(self.tz)
        self._grid = hm.build_grid(report.runs, today=today)
        title.update(self._title_text(report))
        widget.set_grid(self._grid, select=self._selected)

    def _title_text(self, report: ReportHealth) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(escape_name(report.name), style="bold")
        n = len(self.reports)
        if n > 1:
            text.append(f" ({self._index + 1}/{n})", style="dim")
        if not report.schedule_known:
            text.append(" · schedule unknown")
        else:
            text.append(f" · {report.schedule.describe()} at {report.at:%H:%M}")
        if report.inferred and report.schedule_known:
            text.append(" (inferred)", style="dim")
        if self._grid is not None:
            first = self._grid.first_day
            text.append(f" · since {first.day} {first:%b} {first.year}", style="dim")
        return text

    # ------------------------------------------------------------------ the selected day
    def on_heatmap_widget_day_selected(self, message: HeatmapWidget.DaySelected) -> None:
        self._selected = message.day
        self.query_one("#heatmap-day", HangingText).set_lines(self.detail_lines(message.cell))

    def detail_lines(self, cell: hm.Cell | None) -> list[Line]:
        """The selected day: what it is, its facts, files, reasons and next steps; wrapped
        lines start under the first word after their label, not at the left edge."""
        if cell is None or self.report is None or self._grid is None:
            return []
        detail = hm.day_detail(
            cell,
            problems=self.report.problems,
            tz=self.tz,
            today=hm.today_in(self.tz),
            thresholds=self._grid.thresholds,
        )
        style = _KIND_STYLE.get(detail.kind, "bold")
        title = Text()
        title.append(detail.title, style="bold")
        title.append("  ")
        title.append(detail.meaning, style="italic")
        lines: list[Line] = [(Text(hm.glyph(cell) + " ", style=style), title)]
        if detail.facts:
            facts = Text()
            for i, (label, fact) in enumerate(detail.facts):
                if i:
                    facts.append(" · ", style="dim")
                facts.append(f"{label} ", style="bold")
                facts.append(fact)
            lines.append(("  ", facts))
        for name in detail.files:
            file = Text(escape_name(name))
            if name in detail.purged:
                file.append(" (purged)", style="dim")
            lines.append((Text("File ", style="bold"), file))
        lines += [(Text("Why ", style="bold"), Text(escape_name(r))) for r in detail.reasons]
        lines += [(Text("Next ", style="bold"), Text(escape_name(step))) for step in detail.steps]
        return lines
