"""Verify screen (key ``4``): every local report with delivery time, rows, status and reason.

- The list: every ``.xlsx`` under the profile's ``local_dir`` (downloads and files put there by
  hand), newest delivery first; ``s`` cycles the sort, ``/`` filters by name. Copies the local
  retention policy purged are listed too, with their last recorded result (marked purged;
  nothing is read, there is no preview).
- ``enter`` opens the detail pane: header row, the columns against the expected ones, the first
  10 rows with identifier-like columns masked (``m`` shows/hides them), the validator's
  message. ``escape`` closes it.
- ``v`` verifies everything again in a thread worker with a progress bar, through the app
  (:meth:`tui.app.ReportKeeperApp.verify_local_reports`), which records the results in the
  ledger's cache: unchanged files come back from the cache at once. The list is loaded the same
  way each time the screen is shown.
- Zero-row warnings: when a run verifies a file for the first time (not from the cache) and it
  is empty on an open day, a warning toast names it. New results are announced to the app with
  :class:`tui.messages.ReportsVerified` (health and the Remote screen follow).

Excel is only read in worker processes of the core (``tui.core.validate``); results come back
as messages. File names are untrusted: always shown escaped, never as markup. Cell values are
shown on screen only (masked by default) and never logged.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Header, Input, ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from tui.core import status as st
from tui.core.health import Problem, content_problems_by_file
from tui.core.local_reports import VerifyOutcome, empty_on_open_day
from tui.core.model import Audience, ProblemKind, VerifyResult
from tui.core.names import escape_name
from tui.core.validate import identifier_like, normalize_column, preview_rows
from tui.messages import DataRefreshed, PreviewLoaded, ReportsVerified, VerifyFinished, VerifyProgress
from tui.screens.base import AppScreen
from tui.screens.export import open_export
from tui.state import ScreenName
from tui.widgets import toasts
from tui.widgets.footer import FitFooter
from tui.widgets.formatting import fit_parts, fit_words, hang, local_time, plural, short_report_names, verify_cell
from tui.widgets.navbar import NavBar
from tui.widgets.table import DetailsTable

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

log = logging.getLogger("report_keeper.screens.verify")

MASK = "••••••"
FILE_WIDTH = 28
REPORT_WIDTH = 18  # below WIDE: the report's name, in whole words
WIDE = 110  # from this terminal width on, the File column shows the file's name
TIMESTAMP_TAIL = 21  # "_20261128_070005.xlsx": the part of a name that tells files apart
PREVIEW_ROWS = 10


def short_name(name: str, width: int) -> Text:
    """An untrusted file name, escaped, shortened in the middle so its timestamp stays."""
    shown = escape_name(name)
    if len(shown) > width > 8:
        keep_end = min(TIMESTAMP_TAIL, width - 5)
        shown = shown[: width - 1 - keep_end] + "…" + shown[len(shown) - keep_end :]
    return Text(shown, no_wrap=True, overflow="ellipsis")


#: What a status means in a few words, for a reason column too narrow for the whole message
#: (enter shows it whole).
_SHORT_REASON: dict[st.VerifyStatus | ProblemKind, str] = {
    st.EMPTY: "no data rows",
    st.EMPTY_CLOSED: "no rows: a closed day",
    st.SCHEMA: "columns missing",
    st.UNREADABLE: "damaged or not Excel",
    st.CHANGED: "server copy changed",
    st.WRONG_DAY: "rows of another day",
    ProblemKind.STALE: "repeats an earlier run",
    ProblemKind.FEW_ROWS: "fewer rows than usual",
}


# --------------------------------------------------------------------------- the screen

def _stamp(when: datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0


SORTS: tuple[tuple[str, Callable[[VerifyOutcome], SupportsRichComparison]], ...] = (
    ("newest first", lambda o: (-_stamp(o.result.delivered_at), o.result.name)),
    ("worst first", lambda o: (-int(st.severity(o.result.status)), -_stamp(o.result.delivered_at))),
    ("by name", lambda o: o.result.name.casefold()),
)


class VerifyScreen(AppScreen):
    """Verification of every local report."""

    DEFAULT_CSS = """
    VerifyScreen #verify-status { height: 1; padding: 0 1; }
    VerifyScreen #verify-progress-row { height: 1; padding: 0 1; display: none; }
    VerifyScreen #verify-progress-row.running { display: block; }
    VerifyScreen #verify-progress-label { width: auto; padding-right: 1; }
    VerifyScreen #verify-table { height: 1fr; min-height: 4; }
    VerifyScreen #verify-filter { display: none; }
    VerifyScreen #verify-filter.shown { display: block; }
    VerifyScreen #verify-detail { display: none; height: 2fr; border-top: solid $primary-muted; padding: 0 1; }
    VerifyScreen #verify-detail.shown { display: block; }
    """

    BINDINGS = [
        Binding("enter", "details", "Details", id="verify.details"),
        Binding("v", "verify", "Verify all", id="verify.run"),
        Binding("m", "toggle_mask", "Mask ids", id="verify.mask"),
        Binding("s", "cycle_sort", "Sort", id="verify.sort"),
        Binding("slash", "filter", "Filter", key_display="/", id="verify.filter"),
        Binding("e", "export", "Export", id="verify.export"),
        Binding("escape", "close", "Close", show=False, id="verify.close"),
        # tab moves between the list and the open details (which then scroll with the
        # arrows); the footer says where it goes (check_action shows one of the two).
        Binding("tab", "focus_detail", "Scroll details", id="verify.focus_detail"),
        Binding("tab", "focus_list", "Back to list", id="verify.focus_list"),
    ]
    PALETTE_COMMANDS = (
        ("Verify: verify every local report again", "verify", "v"),
        ("Verify: details of the selected report", "details", "enter"),
        ("Verify: show or mask identifier columns", "toggle_mask", "m"),
        ("Verify: next sort order", "cycle_sort", "s"),
        ("Verify: filter by name", "filter", "/"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[VerifyOutcome] = []
        self._shown: list[VerifyOutcome] = []
        self._sort = 0
        self._filter = ""
        self.masked = True
        self._detail: VerifyOutcome | None = None
        self._preview: tuple[list[str], list[tuple[str, ...]]] | None = None
        self.last_run_seconds: float | None = None
        self.last_run_cached = 0
        #: The run under way was asked for (v, the palette): its end is said in a toast.
        self._asked = False
        self._columns_for = 0
        #: The content problems the list was filled with (a new snapshot may not change them).
        self._content_shown: dict[str, list[Problem]] = {}
        self._file_width = FILE_WIDTH
        self._reason_width = 40

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar(ScreenName.VERIFY)
        yield Static("", id="verify-status")
        with Horizontal(id="verify-progress-row"):
            yield Static("", id="verify-progress-label")
            yield ProgressBar(id="verify-progress", show_eta=False)
        yield DetailsTable(id="verify-table", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="filter by name (enter: keep, escape: clear)", id="verify-filter")
        with VerticalScroll(id="verify-detail"):
            yield Static("", id="verify-detail-text")
        yield FitFooter()

    def on_mount(self) -> None:
        self._setup_columns()
        self.query_one(DataTable).focus()

    def _setup_columns(self) -> None:
        """Below ``WIDE`` columns the File column shows the report's name in whole words (the
        Delivered column tells its files apart; enter shows the full name) so that the reason
        has room; a reason longer than its column ends at a whole word."""
        width = self.size.width or self.app.size.width or 80
        self._columns_for = width
        wide = width >= WIDE
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_column("Status", key="status", width=12)  # "✗ unreadable"
        table.add_column("Delivered", key="delivered", width=11)
        table.add_column("Rows", key="rows", width=6)
        # wide: the file's name, as much of it as leaves the reason 40 cells
        self._file_width = max(FILE_WIDTH, min(64, width - 12 - 11 - 6 - 10 - 2 - 40)) if wide else REPORT_WIDTH
        table.add_column("File" if wide else "Report", key="file", width=self._file_width)
        # 5 columns of 1 cell padding on each side, and the scroll bar
        self._reason_width = max(12, width - 12 - 11 - 6 - self._file_width - 10 - 2)
        table.add_column("Reason", key="reason", width=self._reason_width)

    def on_resize(self) -> None:
        width = self.size.width
        if width and width != self._columns_for:
            self._setup_columns()
            if self.outcomes:
                self._fill()

    def on_screen_resume(self) -> None:
        """Each time the screen is shown: list and verify again (unchanged files come from the
        cache at once), so downloads made meanwhile appear."""
        if not any(w.group == "verify" and w.is_running for w in self.workers):
            self._verify()

    # ------------------------------------------------------------------ verification
    def action_verify(self) -> None:
        """v (and the palette): verify again, and say what that did when it ends (files
        unchanged since their last verification take its result at once, so the list may
        not change at all)."""
        self._asked = True
        self._verify()

    def _verify(self) -> None:
        row = self.query_one("#verify-progress-row")
        row.add_class("running")
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.query_one("#verify-progress-label", Static).update("Listing the local folder…")
        self._run()

    @work(thread=True, exclusive=True, group="verify", name="verify local reports")
    def _run(self) -> None:
        worker = get_current_worker()
        started = _time.perf_counter()
        def progress(done: int, total: int, name: str) -> None:
            self.post_message(VerifyProgress(done, total, name))

        outcomes = self.app.verify_local_reports(progress=progress, cancelled=lambda: worker.is_cancelled)
        self.post_message(VerifyFinished(outcomes, _time.perf_counter() - started, worker.is_cancelled))

    def on_verify_progress(self, message: VerifyProgress) -> None:
        bar = self.query_one(ProgressBar)
        bar.update(total=max(message.total, 1), progress=message.done)
        self.query_one("#verify-progress-label", Static).update(f"Verifying {message.done}/{message.total}")

    def on_verify_finished(self, message: VerifyFinished) -> None:
        self.query_one("#verify-progress-row").remove_class("running")
        self.outcomes = list(message.outcomes)
        self.last_run_seconds = message.seconds
        self.last_run_cached = sum(1 for o in self.outcomes if o.cached)
        self._fill()
        empty = empty_on_open_day(self.outcomes)
        toasts.empty_reports(self, empty)
        if any(not o.cached for o in self.outcomes):  # the ledger changed: the app follows
            self.post_message(ReportsVerified(empty))
        asked, self._asked = self._asked, False
        if message.cancelled:
            self.notify("Verification stopped; the list shows the files done so far.", timeout=4)
        elif asked and self.outcomes:
            total, cached = len(self.outcomes), self.last_run_cached
            checked = f"{plural(total, 'local report')} checked: "
            if cached == total:
                self.notify(checked + "none has changed since its last verification (the list shows "
                            "those results).")
            else:
                self.notify(checked + f"{total - cached:,} read again (changed or new)"
                            + (f", {cached:,} unchanged since their last verification." if cached else "."))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "verify" or event.state != WorkerState.ERROR:
            return
        event.stop()  # handled here: one sentence for the user, the traceback in the log
        log.error("verification run failed", exc_info=event.worker.error)
        self.query_one("#verify-progress-row").remove_class("running")
        self._status(
            Text(
                f"Verification stopped by an unexpected error ({type(event.worker.error).__name__}); "
                "the log file has the details. Press v to try again.",
                style="bold red",
            )
        )

    def on_data_refreshed(self, message: DataRefreshed) -> None:
        """A new health evaluation: the stale and few-rows verdicts may have changed. The
        snapshot is rebuilt about once a second while files land; the list is filled again
        only when what it shows changed."""
        if self.outcomes and self._content() != self._content_shown:
            self._fill()

    # ------------------------------------------------------------------ the list
    def _content(self) -> dict[str, list[Problem]]:
        """File name -> its content problems (wrong day, stale, few rows) from the health
        evaluation: stale and few rows need the history, which one file cannot tell."""
        return content_problems_by_file(self.app.snapshot.health)

    def _shown_status(self, o: VerifyOutcome,
                      content: dict[str, list[Problem]]) -> tuple[st.VerifyStatus | ProblemKind, list[Problem]]:
        """The status shown for a file and the content problems behind it (may be empty)."""
        problems = content.get(o.result.name) or []
        if problems and o.result.status in (st.OK, st.WRONG_DAY, st.CHANGED):
            return problems[0].kind, problems
        return o.result.status, []

    def _status_cell(self, status: st.VerifyStatus | ProblemKind | None) -> Text:
        """Glyph and colour; with NO_COLOR glyph and weight only (Textual's monochrome filter
        would turn red into a dark grey that is hard to read)."""
        cell = verify_cell(status)
        if self.app.no_color:
            bold = status in (st.EMPTY, st.SCHEMA, st.UNREADABLE, st.CHANGED, st.WRONG_DAY,
                              ProblemKind.STALE, ProblemKind.FEW_ROWS)
            return Text(cell.plain, style="bold" if bold else "")
        return cell

    def _status(self, text: Text) -> None:
        self.query_one("#verify-status", Static).update(text, layout=False)  # one line, always

    def _summary(self) -> Text:
        counts: dict[st.VerifyStatus | ProblemKind, int] = {}
        content = self._content()
        for o in self.outcomes:
            shown = self._shown_status(o, content)[0]
            counts[shown] = counts.get(shown, 0) + 1
        # Whole parts, the least needed left out first when the line is too long.
        purged = sum(1 for o in self.outcomes if o.purged_at is not None)
        parts: list[tuple[Text | str, int]] = [
            (Text(plural(len(self.outcomes) - purged, "local report"), style="bold"), 0)]
        if purged:
            parts.append((Text(f"(+{purged:,} purged)", style="dim"), 1))
        order: tuple[st.VerifyStatus | ProblemKind, ...] = (*st.VALIDATOR_STATUSES, ProblemKind.STALE,
                                                            ProblemKind.FEW_ROWS)
        for status in order:
            if counts.get(status):
                parts.append((self._status_cell(status) + Text(f" {counts[status]:,}"), 0))
        if self._filter:
            parts.append((Text(f"filter: {escape_name(self._filter)}", style="dim"), 0))
        # An order chosen with s is always said (a filter's rows can look alike in two orders)
        parts.append((Text(SORTS[self._sort][0], style="dim"), 0 if self._sort else 2))
        parts.append((Text("enter details", style="dim"), 3))
        width = (self.size.width or self.app.size.width or 80) - 2
        return fit_parts(parts, width, separator="  ")

    def _fill(self, keep_cursor: bool = True) -> None:
        table = self.query_one(DetailsTable)
        keep = self._current() if keep_cursor else None
        offset = table.view_offset()
        table.clear()
        needle = self._filter.casefold()
        shown = [o for o in self.outcomes if needle in o.result.name.casefold()]
        shown.sort(key=SORTS[self._sort][1])
        self._shown = shown
        content = self._content_shown = self._content()
        short = short_report_names((escape_name(o.result.report or o.result.name) for o in self.outcomes),
                                   self._file_width)
        # One bulk insert (the table's columns all have fixed widths): thousands of local
        # reports fill the list without the per-row work of DataTable.add_row.
        table.add_keyed_rows([self._row(o, content, short) for o in shown])
        if keep is not None:
            for i, o in enumerate(shown):
                if o.result.path == keep.result.path:
                    table.keep_place(i, offset)  # the same file, where it was on screen
                    break
        self._status(self._summary())
        if not shown:
            hint = "No .xlsx files found" if not self.outcomes else "No file matches the filter"
            then = ("Download reports (2, a, d) or press v to look again." if not self.outcomes
                    else "Press / to change it.")
            self._status(Text(f"{hint}. {then}", style="italic"))

    def _row(self, o: VerifyOutcome, content: dict[str, list[Problem]],
             short: dict[str, str]) -> tuple[str, tuple[Text | str, ...]]:
        """The list's key and cells for one file."""
        r = o.result
        status, problems = self._shown_status(o, content)
        reason = (problems[0].message if problems else r.message or "").split("\n", 1)[0]
        mark = ""
        if o.purged_at is not None:
            still = "; still on disk under other names" if o.purge_links else ""
            mark = f"⊘ purged {local_time(o.purged_at, self.app.profile.timezone)} (local retention{still})"
        cells = (
            self._status_cell(status),
            local_time(r.delivered_at, self.app.profile.timezone),
            Text(f"{r.rows:,}" if r.rows is not None else "—", justify="right"),
            (short_name(r.name, self._file_width) if self._file_width != REPORT_WIDTH
             else Text(short[escape_name(r.report or r.name)], no_wrap=True)),
            Text(self._reason_text(r, status, reason, mark), no_wrap=True),
        )
        return ("purged:" if o.purged_at is not None else "") + r.path, cells

    def _reason_text(self, r: VerifyResult, status: st.VerifyStatus | ProblemKind, reason: str,
                     mark: str = "") -> str:
        """The reason in its column: whole, else the status's short reason, else whole words.
        ``mark`` (a purged copy's) leads and is kept: only the reason after it is shortened."""
        shown = escape_name(reason)
        whole = f"{mark}; {shown}" if mark and shown else (mark or shown)
        if len(whole) <= self._reason_width:
            return whole
        short = _SHORT_REASON.get(status)
        if status == st.OK and r.rows is not None:
            short = plural(r.rows, "data row")
        rest = short or shown
        return fit_words(f"{mark}; {rest}" if mark and rest else (mark or rest), self._reason_width)

    def _current(self) -> VerifyOutcome | None:
        table = self.query_one(DataTable)
        if not self._shown or table.cursor_row is None or not 0 <= table.cursor_row < len(self._shown):
            return None
        return self._shown[table.cursor_row]

    def action_cycle_sort(self) -> None:
        # The new order from its top (as on Remote): "worst first" is there to show the bad
        # files, which keeping the cursor's file in its place would scroll out of view above.
        self._sort = (self._sort + 1) % len(SORTS)
        self._fill(keep_cursor=False)
        table = self.query_one(DetailsTable)
        table.scroll_to(y=0, animate=False, immediate=True)
        table.move_cursor(row=0, animate=False)

    def action_filter(self) -> None:
        box = self.query_one("#verify-filter", Input)
        box.add_class("shown")
        box.value = self._filter
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "verify-filter":
            self._filter = event.value
            self._fill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "verify-filter":
            if not event.value:
                event.input.remove_class("shown")
            self.query_one(DataTable).focus()

    def _in_detail(self) -> bool:
        focused = self.focused
        return focused is not None and any(node.id == "verify-detail" for node in focused.ancestors_with_self)

    # Asked for every binding each time the footer or a key looks at them: no query of the DOM.
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "focus_detail":
            return self._detail is not None and not self._in_detail()  # shown, not in it
        if action == "focus_list":
            return self._in_detail()
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()  # the footer's tab says where it goes now

    def action_focus_detail(self) -> None:
        self.query_one("#verify-detail").focus()

    def action_focus_list(self) -> None:
        self.query_one("#verify-table").focus()

    def action_close(self) -> None:
        box = self.query_one("#verify-filter", Input)
        if box.has_focus:
            box.value = ""
            box.remove_class("shown")
            self.query_one(DataTable).focus()
            return
        detail = self.query_one("#verify-detail")
        if detail.has_class("shown"):
            detail.remove_class("shown")
            self._detail = None
            self.query_one(DataTable).focus()
            self.refresh_bindings()  # no details: tab has nowhere to go
            return
        self.app.clear_notifications()  # nothing else to close: the toasts

    # ------------------------------------------------------------------ export
    def action_export(self) -> None:
        open_export(self.app, self.app.profile.name, self.app.profile.timezone)

    # ------------------------------------------------------------------ details
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self._detail is not None:
            self._open(self._current())

    def action_details(self) -> None:
        self._open(self._current())
        self.refresh_bindings()  # the footer now offers tab into the details

    def _open(self, outcome: VerifyOutcome | None) -> None:
        if outcome is None:
            return
        self._detail = outcome
        self._preview = None
        self.query_one("#verify-detail").add_class("shown")
        self._render_detail()
        r = outcome.result
        if r.status != st.UNREADABLE and outcome.purged_at is None:
            self._load_preview(r.path, r.header_row)

    @work(thread=True, exclusive=True, group="preview", name="preview rows")
    def _load_preview(self, path: str, header_row: int | None) -> None:
        header, rows = preview_rows(path, header_row, PREVIEW_ROWS)
        self.post_message(PreviewLoaded(path, header, rows))

    def on_preview_loaded(self, message: PreviewLoaded) -> None:
        if self._detail is not None and self._detail.result.path == message.path:
            self._preview = (message.header, message.rows)
            self._render_detail()

    def action_toggle_mask(self) -> None:
        self.masked = not self.masked
        if self._detail is not None:
            self._render_detail()
        self.notify("Identifier columns " + ("masked." if self.masked else "shown: mind who can see the screen."),
                    timeout=3)

    def _render_detail(self) -> None:
        outcome = self._detail
        if outcome is None:
            return
        self.query_one("#verify-detail-text", Static).update(self.detail_renderable(outcome))

    def detail_renderable(self, outcome: VerifyOutcome) -> RenderableType:
        r = outcome.result
        name = Text(escape_name(r.name), style="bold")
        head = Text()
        if r.rows is not None:
            head.append(f" · {r.rows:,} data rows")
        if r.header_row is not None:
            head.append(f" · header on row {r.header_row}")
        if r.sheet:
            head.append(" of sheet ")
            head.append(escape_name(r.sheet))
        if r.report:
            head.append(" · report ")
            head.append(escape_name(r.report))
        if r.delivered_at is not None:
            head.append(f" · delivered {local_time(r.delivered_at, self.app.profile.timezone, with_year=True)}")
        if outcome.purged_at is not None:
            head.append(" · local copy purged "
                        f"{local_time(outcome.purged_at, self.app.profile.timezone, with_year=True)}", style="bold")
        elif outcome.cached:
            head.append(" · from the cache", style="dim")
        # Wrapped lines start under the first word after their label, not at the left edge.
        columns = self._columns_text(r)
        label = Text("Columns: ", style="bold")
        parts: list[RenderableType] = [name, hang(self._status_cell(r.status), head),
                                       hang(label, columns[len(label):])]
        if r.message:  # may quote a sheet or column name from the file
            parts.append(hang(Text("Validator: ", style="bold"), Text(escape_name(r.message))))
        for problem in self._shown_status(outcome, self._content())[1]:
            lead = self._status_cell(problem.kind) + Text(f" ({problem.severity}): ", style="bold")
            parts.append(hang(lead, Text(escape_name(problem.message))))
            parts.append(hang(Text("Next: ", style="bold"), Text(escape_name(problem.step(Audience.APP)))))
        if outcome.purge_note:  # purged, but other names of its file still hold its data
            parts.append(hang(Text("Still on disk: ", style="bold"), Text(escape_name(outcome.purge_note))))
        if outcome.purged_at is not None:
            note = Text()
            note.append(f"First {PREVIEW_ROWS} rows", style="bold")
            note.append(": none (the local retention policy deleted the local copy; the ledger keeps "
                        "its verification, row count and fingerprint, never its cells)", style="italic")
            parts.append(note)
        else:
            parts.append(self._preview_renderable(r))
        return Group(*parts)

    def _expected(self, r: VerifyResult) -> tuple[str, ...]:
        if not r.report:
            return ()
        return self.app.profile.report_for(r.report).expected_columns

    def _columns_text(self, r: VerifyResult) -> Text:
        text = Text()
        text.append("Columns: ", style="bold")
        if not r.columns:
            text.append("none found", style="italic")
            return text
        norm = normalize_column
        expected = self._expected(r)
        found = {norm(c) for c in r.columns}
        missing = set(map(norm, r.missing_columns)) | {norm(c) for c in expected if norm(c) not in found}
        wanted = {norm(c) for c in expected}
        for i, col in enumerate(r.columns):
            if i:
                text.append("  ")
            if norm(col) in wanted:
                text.append("✓ ", style="bold green")
            text.append(escape_name(str(col)))
        for col in [*r.missing_columns, *[c for c in expected if norm(c) not in found and c not in r.missing_columns]]:
            text.append("  ")
            text.append(f"✗ {escape_name(str(col))} (missing)", style="bold red")
        if expected and not missing:
            text.append("  — all expected columns present", style="green")
        elif not expected:
            text.append("  — any header is accepted (no expected_columns)", style="dim")
        return text

    def _preview_renderable(self, r: VerifyResult) -> RenderableType:
        title = Text()
        title.append(f"First {PREVIEW_ROWS} rows", style="bold")
        if r.status == st.UNREADABLE:
            title.append(": none (the file cannot be read)", style="italic")
            return title
        if self._preview is None:
            title.append(": loading…", style="italic")
            return title
        header, rows = self._preview
        if not rows:
            title.append(": no data rows", style="italic")
            return title
        masked_cols = {
            i for i, col in enumerate(header) if identifier_like(col, [row[i] if i < len(row) else "" for row in rows])
        }
        if masked_cols:
            title.append(
                "  (identifier columns masked, m shows them)" if self.masked else "  (identifiers SHOWN, m masks them)",
                style="dim" if self.masked else "bold yellow",
            )
        table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", title=title, title_justify="left")
        for col in header:
            table.add_column(Text(escape_name(col or "")), no_wrap=True, overflow="ellipsis", max_width=22)
        for row in rows:
            cells = []
            for i in range(len(header)):
                value = row[i] if i < len(row) else ""
                if self.masked and i in masked_cols and value:
                    cells.append(Text(MASK, style="dim"))
                else:
                    cells.append(Text(escape_name(value)))
            table.add_row(*cells)
        return table
