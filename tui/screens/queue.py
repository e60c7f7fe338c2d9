"""Queue screen (key ``3``): the downloads of this session.

One row per file with its state (queued, running, retrying, done, failed, cancelled), a
progress bar, bytes, rate and ETA; the reason of a failure or retry shows under the table for
the file under the cursor. An overall bar sums every file. ``c`` cancels the file under the
cursor, ``x`` cancels everything (the app asks first), ``f`` retries the failed files, ``p``
pauses and resumes (while paused the rows say so; the summary starts with it and counts the
started files as paused, never as running; the header of every screen shows it).

The screen redraws from the app's :class:`tui.state.TransferBoard` on each
(replaceable) ``QueueChanged`` message, touching only the rows whose job changed.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Header, ProgressBar, Static
from textual.widgets.data_table import CellDoesNotExist

from tui.core.model import CANCELLED, DONE, FAILED, QUEUED, RETRYING, RUNNING, SKIPPED
from tui.core.names import escape_name, parse_name
from tui.messages import QueueChanged
from tui.screens.base import AppScreen
from tui.state import JobView, ScreenName
from tui.widgets.footer import FitFooter
from tui.widgets.formatting import (
    bar_text,
    fit_parts,
    home_relative,
    human_eta,
    human_rate,
    human_size,
    mono,
    plural,
    report_file_text,
    size_of,
    verify_cell,
)
from tui.widgets.hanging import HangingText, update_static
from tui.widgets.navbar import NavBar
from tui.widgets.table import FastTable

STATE_STYLE = {
    QUEUED: ("… queued", "cyan"),
    RUNNING: ("↓ running", "bold cyan"),
    RETRYING: ("↻ retrying", "bold yellow"),
    DONE: ("✓ done", "green"),
    FAILED: ("✗ failed", "bold red"),
    CANCELLED: ("- cancelled", "dim"),
    SKIPPED: ("↷ skipped", "dim"),  # left to another Report Keeper process: no error
}
PAUSED = ("‖ paused", "bold yellow")  # a job not ended while the queue is paused
WIDE = 110


def _bytes_text(job: JobView) -> str:
    """``9.7 kB`` when done, else ``4.1/9.7 kB`` (``0 B/9.7 kB`` across units), sizes written
    as everywhere else in the app."""
    if job.state == DONE:
        return human_size(job.size)
    return size_of(job.bytes_done, job.size)


_ENDED = {
    DONE: "This file is downloaded already: nothing to cancel.",
    FAILED: "This file's download failed: nothing to cancel (f retries the failed files).",
    CANCELLED: "This file is cancelled already (f queues it again).",
    SKIPPED: "This file is left to another Report Keeper process that fetches it: nothing to cancel.",
}


class QueueScreen(AppScreen):
    """Downloads: per-file progress, an overall bar, cancel, retry, pause."""

    DEFAULT_CSS = """
    QueueScreen #queue-summary { height: 1; padding: 0 1; background: $boost; }
    QueueScreen #queue-overall { height: 1; padding: 0 1; }
    QueueScreen #queue-overall Bar { width: 1fr; }
    QueueScreen DataTable { height: 1fr; scrollbar-size-vertical: 1; }
    QueueScreen #queue-detail { height: auto; max-height: 4; padding: 0 1; background: $boost; }
    QueueScreen #queue-empty { height: auto; padding: 1 2; color: $text-muted; }
    """
    BINDINGS = [
        Binding("c", "cancel_one", "Cancel", id="queue.cancel"),
        Binding("x", "app.cancel_all", "Cancel all", id="queue.cancel_all"),
        Binding("f", "app.retry_failed", "Retry failed", id="queue.retry"),
        Binding("p", "app.toggle_pause", "Pause/resume", id="queue.pause"),
    ]
    PALETTE_COMMANDS = (
        ("Queue: cancel the file under the cursor", "cancel_one", "c"),
    )

    def __init__(self) -> None:
        super().__init__()
        self._drawn: dict[str, int] = {}  # name -> job version drawn
        self._wide: bool | None = None
        self._bar_waits = False  # the overall bar waits for the first layout
        self._last_summary = 0.0
        self._detail_of: tuple[str | None, int] | None = None  # the file and version the detail shows

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar(ScreenName.QUEUE)
        yield Static("", id="queue-summary")
        yield ProgressBar(total=1, show_eta=False, id="queue-overall")
        yield FastTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="queue-empty")
        yield HangingText(id="queue-detail")
        yield FitFooter()

    def on_mount(self) -> None:
        self._setup_columns()
        self._redraw()

    def on_screen_resume(self) -> None:
        self._redraw()
        self.query_one(DataTable).focus()

    def on_queue_changed(self, message: QueueChanged) -> None:
        self._redraw()

    def on_resize(self) -> None:
        wide = self.size.width >= WIDE
        if self._wide is not None and wide != self._wide:
            self._setup_columns()
            self._redraw()

    def _name_width(self) -> int:
        """What the name gets: below ``WIDE`` the per-file Rate goes (the summary says the
        overall rate), so the report's first words and the timestamp both fit."""
        width = self.size.width or self.app.size.width or 80
        fixed = 11 + 8 + 13 + 5
        columns = 5
        if self._wide:
            fixed += 8 + 10
            columns += 2
        return max(14, width - fixed - 2 * columns - 3)

    def _setup_columns(self) -> None:
        table = self.query_one(DataTable)
        self._wide = (self.size.width or self.app.size.width or 80) >= WIDE
        table.clear(columns=True)
        table.add_column("State", key="state", width=11)
        table.add_column("Name", key="name", width=self._name_width())
        table.add_column("Progress", key="bar", width=8)
        table.add_column("Bytes", key="bytes", width=13)
        if self._wide:
            table.add_column("Rate", key="rate", width=8)
        table.add_column("ETA", key="eta", width=5)
        if self._wide:
            table.add_column("Check", key="check", width=10)
        self._drawn = {}

    def _cells(self, job: JobView) -> list[Text]:
        label, style = STATE_STYLE[job.state]
        if job.state == RETRYING and job.attempt:
            label = f"↻ retry {job.attempt}"
        paused = self.app.board.paused and job.state.active
        if paused:  # the figures would be frozen: say why they do not move
            label, style = PAUSED
        moving = job.state == RUNNING and not paused
        cells: list[Text] = [
            Text(label, style=style),
            report_file_text(job.name, parse_name(job.name).base, self._name_width()),
            bar_text(job.bytes_done if job.state != DONE else job.size, job.size, 8),
            Text(_bytes_text(job), justify="right"),
        ]
        if self._wide:
            cells.append(Text(human_rate(job.rate) if moving else "", justify="right"))
        cells.append(Text(human_eta(job.eta) if moving else "", justify="right"))
        if self._wide:
            cells.append(verify_cell(job.verification) if job.state == DONE else Text(""))
        return cells

    def _redraw(self) -> None:
        board = self.app.board
        table = self.query_one(FastTable)
        keys = ("state", "name", "bar", "bytes", "rate", "eta", "check") if self._wide else (
            "state", "name", "bar", "bytes", "eta")
        new_rows = []
        for job in board.ordered():
            drawn = self._drawn.get(job.name)
            if drawn == job.version:
                continue
            cells = self._cells(job)
            if drawn is None:
                new_rows.append((job.name, cells))
            else:
                for key, cell in zip(keys, cells, strict=False):
                    table.update_cell(job.name, key, cell)
            self._drawn[job.name] = job.version
        if new_rows:
            table.add_keyed_rows(new_rows)
        self._update_summary()
        self._update_detail()
        empty = self.query_one("#queue-empty", Static)
        if board.jobs:
            empty.display = False
        else:
            empty.display = True
            empty.update(Text("Nothing queued. On the Remote screen (2) press a to select every new "
                              "file, then d to download."))

    def _update_summary(self) -> None:
        board = self.app.board
        counts = board.counts()
        done_bytes, total_bytes = board.totals()
        # Whole parts, the least needed left out first when the line is too long: never a
        # label without its value ("· ETA"); paused comes first and always stays.
        parts: list[tuple[Text | str, int]] = []
        if board.paused:
            parts.append((Text("‖ PAUSED", style="bold reverse yellow"), 0))
        parts.append((Text(plural(len(board.jobs), "file"), style="bold"), 0))
        if board.paused:  # nothing runs or retries until p: those files are counted as their rows say
            held = counts[RUNNING] + counts[RETRYING]
            counts[RUNNING] = counts[RETRYING] = 0
            if held:
                label, style = PAUSED
                parts.append((Text(f"{held:,} {label.split(' ', 1)[1]}", style=style), 0))
        for state in (RUNNING, RETRYING, QUEUED, DONE, SKIPPED, FAILED, CANCELLED):
            if counts.get(state):
                label, style = STATE_STYLE[state]
                parts.append((Text(f"{counts[state]:,} {label.split(' ', 1)[1]}", style=style),
                              0 if state in (RUNNING, FAILED) else 1))
        if total_bytes:
            parts.append((f"{human_size(done_bytes)} of {human_size(total_bytes)}", 2))
        rate = 0.0 if board.paused else board.rate()
        if rate:
            parts.append((human_rate(rate), 3))
            parts.append((f"ETA {human_eta((total_bytes - done_bytes) / rate)}", 1))
        width = (self.size.width or self.app.size.width or 80) - 2
        # one line, always: no layout of the screen for each figure
        update_static(self.query_one("#queue-summary", Static), mono(fit_parts(parts, width), self.app.no_color),
                      layout=False)
        self._update_bar(done_bytes, total_bytes, bool(counts.get(DONE)))

    def _update_bar(self, done_bytes: int, total_bytes: int, any_done: bool) -> None:
        """The overall bar (done of total bytes). Textual's bar rounds a new value to its cells as
        wide as it is then: set before the screen's first layout (no width yet), the value
        kept its fraction and drew another end than the same value set later. So it waits
        for the layout."""
        bar = self.query_one(ProgressBar)
        if not bar.size.width:
            if not self._bar_waits:
                self._bar_waits = True
                self.call_after_refresh(self._bar_laid_out)
            return
        if total_bytes:
            bar.update(total=total_bytes, progress=done_bytes)
        else:  # full only when something was done, not when everything was cancelled
            bar.update(total=1, progress=1 if any_done and not self.app.board.active else 0)

    def _bar_laid_out(self) -> None:
        self._bar_waits = False
        if self.query_one(ProgressBar).size.width:
            board = self.app.board
            self._update_bar(*board.totals(), bool(board.counts().get(DONE)))

    def _cursor_name(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key
        except CellDoesNotExist:  # the cursor is on no row
            return None
        return key.value

    def _update_detail(self) -> None:
        detail = self.query_one("#queue-detail", HangingText)
        name = self._cursor_name()
        job = self.app.board.jobs.get(name) if name else None
        if job is None or not (job.reason or job.state == DONE):
            detail.display = False
            self._detail_of = None
            return
        # Every redraw asks (each figure of any file): the line is set again only when the
        # cursor's file changed, since setting it lays the screen out again.
        if self._detail_of == (name, job.version):
            detail.display = True
            return
        self._detail_of = (name, job.version)
        # Wrapped lines start under the first word after the label, not at the left edge.
        text = Text()
        if job.state == DONE:
            lead = Text("✓ ", style="green")
            text.append(home_relative(job.path) if job.path else escape_name(job.name))
            if job.beside_older_copy:
                text.append("  (the server copy changed: kept beside the older one)", style="yellow")
            if job.reason:  # what downloading a held copy again found
                text.append("\n")
                text.append(escape_name(job.reason))
        else:
            label, style = STATE_STYLE[job.state]
            lead = Text(f"{label}: ", style=style)
            text.append(escape_name(job.reason))
        detail.set_lines([(mono(lead, self.app.no_color), mono(text, self.app.no_color))])
        detail.display = True

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._update_detail()

    def action_cancel_one(self) -> None:
        name = self._cursor_name()
        job = self.app.board.jobs.get(name) if name is not None else None
        if name is None or job is None:
            self.notify("Nothing to cancel: no download is queued or running.")
            return
        if not job.state.active:  # said here: the key must never do nothing
            self.notify(_ENDED.get(job.state, "This file's download has ended: nothing to cancel."))
            return
        if self.app.cancel_one(name):
            self.notify("Cancelled; its part file is kept, a later download resumes it.")
