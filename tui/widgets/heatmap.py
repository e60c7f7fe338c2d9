"""The calendar heatmap widget: weeks as columns, weekdays as rows, a legend, a day cursor.

Renders a :class:`tui.core.heatmap.Grid` two terminal cells per day (glyph + space), so a
half year fits in 60 columns. When the history is wider than the widget, the weeks around the
cursor are shown (the newest weeks at first) and ``‹``/``›`` mark hidden weeks.

Keys: left/right move a week, up/down a day, home/end the first/last day, pageup/pagedown
four weeks. Every change of the selected day posts :class:`HeatmapWidget.DaySelected`.
"""

from __future__ import annotations

from datetime import date, timedelta

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from tui.core import heatmap as hm

LABEL_WIDTH = 5  # "2026 " on the month line, "Mon ‹" on the day rows
CELL_WIDTH = 2


class HeatmapWidget(Widget, can_focus=True):
    """A calendar heatmap of one report's run days."""

    DEFAULT_CSS = """
    HeatmapWidget {
        height: auto;
        width: 1fr;
        padding: 0 1;
    }
    HeatmapWidget:focus {
        background: $boost;
    }
    """

    BINDINGS = [
        Binding("left", "move(-7)", "Week ◂", show=False),
        Binding("right", "move(7)", "Week ▸", show=False),
        Binding("up", "move(-1)", "Day ▴", show=False),
        Binding("down", "move(1)", "Day ▾", show=False),
        Binding("pageup", "move(-28)", "4 weeks ◂", show=False),
        Binding("pagedown", "move(28)", "4 weeks ▸", show=False),
        Binding("home", "first", "First day", show=False),
        Binding("end", "last", "Last day", show=False),
    ]

    class DaySelected(Message):
        """The cursor moved to another day."""

        def __init__(self, heatmap: HeatmapWidget, day: date, cell: hm.Cell | None) -> None:
            super().__init__()
            self.heatmap = heatmap
            self.day = day
            self.cell = cell

        @property
        def control(self) -> HeatmapWidget:
            return self.heatmap

    selected: reactive[date | None] = reactive(None, init=False)

    def __init__(
        self,
        grid: hm.Grid | None = None,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.grid: hm.Grid | None = grid
        self._first_col: int | None = None  # first visible week; None: show the newest
        if grid is not None:
            self.set_reactive(HeatmapWidget.selected, grid.last_day)

    # ------------------------------------------------------------------ data
    def set_grid(self, grid: hm.Grid, select: date | None = None) -> None:
        """Show ``grid``; keep the selected day when it is still inside, else ``select`` or
        the last day."""
        self.grid = grid
        wanted = select or self.selected or grid.last_day
        self._first_col = None
        day = grid.clamp(wanted)
        if select is None:  # a new grid (another report): land on one of its run days
            day = _run_day_near(grid, day)
        if day == self.selected:
            self._post_selected()
        self.selected = day
        self.refresh(layout=True)

    @property
    def selected_cell(self) -> hm.Cell | None:
        if self.grid is None or self.selected is None:
            return None
        return self.grid.cell(self.selected)

    # ------------------------------------------------------------------ keys
    def action_move(self, days: int) -> None:
        if self.grid is None or self.selected is None:
            return
        self.selected = self.grid.clamp(self.selected + timedelta(days=days))

    def action_first(self) -> None:
        if self.grid is not None:
            self.selected = self.grid.first_day

    def action_last(self) -> None:
        if self.grid is not None:
            self.selected = self.grid.last_day

    def watch_selected(self, old: date | None, new: date | None) -> None:
        self._post_selected()
        self.refresh()

    def _post_selected(self) -> None:
        if self.selected is not None:
            self.post_message(self.DaySelected(self, self.selected, self.selected_cell))

    # ------------------------------------------------------------------ layout
    def visible_weeks(self, width: int | None = None) -> int:
        width = self.content_size.width if width is None else width
        return max(1, (width - LABEL_WIDTH - 1) // CELL_WIDTH)

    def _window(self) -> tuple[int, int]:
        """(first, count) of the visible week columns, the cursor always inside."""
        grid = self.grid
        assert grid is not None
        count = min(grid.columns, self.visible_weeks())
        first = self._first_col
        if first is None:
            first = grid.columns - count
        if self.selected is not None:
            col = grid.position(self.selected)[0]
            if col < first:
                first = col
            elif col >= first + count:
                first = col - count + 1
        first = max(0, min(first, grid.columns - count))
        self._first_col = first
        return first, count

    def get_content_height(self, container, viewport, width: int) -> int:
        return 8 + len(self._legend_lines(width))

    # ------------------------------------------------------------------ drawing
    def render(self) -> Text:
        if self.grid is None:
            return Text("No run days to show yet.", style="italic")
        grid = self.grid
        first, count = self._window()
        out = Text(no_wrap=True, overflow="crop")
        out.append_text(self._month_line(first, count))
        selected = self.selected
        no_color = self.app.no_color
        for row in range(7):
            out.append("\n")
            label = hm.WEEKDAY_NAMES[row]
            out.append(f"{label:<{LABEL_WIDTH - 1}}", style="dim")
            out.append("‹" if first > 0 and row == 3 else " ", style="bold")
            for col in range(first, first + count):
                cell = grid.cell_at(col, row)
                style = _cell_style(cell, no_color)
                text = hm.glyph(cell) + " "
                if cell.day == selected:
                    style = style + Style(reverse=True, bold=True)
                    text = hm.glyph(cell) + "◂" if cell.kind != hm.NONE else "▸◂"
                out.append(text, style=style)
            if first + count < grid.columns and row == 3:
                out.append("›", style="bold")
        for line in self._legend_lines(self.content_size.width or 80):
            out.append("\n")
            out.append_text(line)
        return out

    def _month_line(self, first: int, count: int) -> Text:
        """The year of the first visible week in the label column, then a label over the week
        holding each month's 1st: ``Nov``; a January shows its year (``Jan 2027`` or ``2027``)."""
        grid = self.grid
        assert grid is not None
        width = LABEL_WIDTH + count * CELL_WIDTH
        chars = [" "] * width
        start_day = max(grid.day_at(first, 0), grid.first_day)
        for i, ch in enumerate(str(start_day.year)[:LABEL_WIDTH]):
            chars[i] = ch
        labels = [m for m in grid.months if first <= m.col < first + count]
        if len(labels) > 1 and labels[0].col == first and labels[1].col <= first + 1:
            labels.pop(0)  # a partial month squeezed against the next one
        if not labels or labels[0].col > first + 1:
            # The partial month at the left edge, when there is room before the next label.
            labels.insert(0, hm.MonthLabel(first, start_day.year, start_day.month, False))
        last_end = LABEL_WIDTH - 1
        for i, m in enumerate(labels):
            x = LABEL_WIDTH + (m.col - first) * CELL_WIDTH
            if x < last_end + 1:
                continue
            limit = width
            if i + 1 < len(labels):
                limit = LABEL_WIDTH + (labels[i + 1].col - first) * CELL_WIDTH - 1
            options = [m.short_text]
            if m.month == 1:
                options = [f"{m.short_text} {m.year}", str(m.year), m.short_text]
            # The label may run into the column right of the grid (the "›" marker's); one that
            # does not fit whole is left out rather than cut ("De").
            room = max(width, self.content_size.width if self.is_attached else width)
            fitting = [t for t in options if x + len(t) <= limit] or [t for t in options if x + len(t) <= room]
            if not fitting:
                continue
            text = fitting[0]
            if x + len(text) > len(chars):
                chars.extend([" "] * (x + len(text) - len(chars)))
            for j, ch in enumerate(text):
                chars[x + j] = ch
            last_end = x + len(text)
        return Text("".join(chars).rstrip(), style="bold")

    def _legend_lines(self, width: int) -> list[Text]:
        width = max(20, width)
        lines: list[Text] = []
        no_color = self.app.no_color if self.is_attached else False
        line = Text()
        shown = {c.kind for c in self.grid.cells} if self.grid is not None else ()
        for glyph, color, label in hm.legend(shown):
            piece = Text()
            style = Style(color=color, bold=True)
            piece.append(glyph, style=Style(bold=True) if no_color else style)
            piece.append(f" {label}")
            if line.cell_len and line.cell_len + 2 + piece.cell_len > width:
                lines.append(line)
                line = Text()
            if line.cell_len:
                line.append("  ")
            line.append_text(piece)
        if line.cell_len:
            lines.append(line)
        return lines


def _run_day_near(grid: hm.Grid, day: date) -> date:
    """``day`` when the report runs then, else its nearest earlier run day (else later):
    never a 'not a run day' cell when a run day exists."""
    def runs(d: date) -> bool:
        cell = grid.cell(d)
        return cell is not None and cell.kind not in (hm.NONE, hm.NOT_EXPECTED)

    if runs(day):
        return day
    for offset in range(1, (grid.last_day - grid.first_day).days + 1):
        for d in (day - timedelta(days=offset), day + timedelta(days=offset)):
            if grid.first_day <= d <= grid.last_day and runs(d):
                return d
    return day


def _cell_style(cell: hm.Cell, no_color: bool = False) -> Style:
    """The cell's colour; with NO_COLOR only weight (Textual's monochrome filter would turn
    red into a near-invisible dark grey), so the glyphs carry the meaning at full contrast."""
    if cell.kind == hm.NONE:
        return Style()
    bold = cell.kind != hm.OK and hm.STYLES[cell.kind].bold
    if no_color:
        return Style(bold=bold, dim=cell.kind == hm.NOT_EXPECTED)
    return Style(color=hm.color(cell), bold=bold)
