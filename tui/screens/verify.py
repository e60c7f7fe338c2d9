"""Verify screen (key ``4``): every local report with delivery time, rows, status and reason.

- The list: every ``.xlsx`` under the profile's ``local_dir`` (downloads and files put there by
  hand), newest delivery first; ``s`` cycles the sort, ``/`` filters by name.
- ``enter`` opens the detail pane: header row, the columns against the expected ones, the first
  10 rows with identifier-like columns masked (``m`` shows/hides them), the validator's
  message. ``escape`` closes it.
- ``v`` verifies everything again in a thread worker with a progress bar. Results are cached in
  the ledger by the file's sha256 (plus what the result depends on: the report's expected
  columns, min_rows and whether the covered day is closed), so unchanged files come back from
  the cache at once. The list is loaded the same way when the screen opens.
- Zero-row warnings: when a run verifies a file for the first time (not from the cache) and it
  is empty on an open day, a warning toast names it and the screen posts
  :class:`EmptyReportsFound` (it bubbles to the app: the health banner can count them).

Excel is only read in thread workers (``validate_file``, ``preview_rows``); results come back
as messages. File names are untrusted: always shown escaped, never as markup. Cell values are
shown on screen only (masked by default) and never logged.

Finding and verifying local reports is core work: ``tui.core.local_reports``.
"""

from __future__ import annotations

import logging
import time as _time
from datetime import tzinfo
from pathlib import Path
from typing import Any, Sequence

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from tui.core import status as st
from tui.core.local_reports import VerifyOutcome, empty_on_open_day, find_local_reports, verify_local
from tui.core.model import VerifyResult
from tui.core.names import escape_name
from tui.widgets.formatting import local_time, verify_cell
from tui.widgets.navbar import NavBar

log = logging.getLogger("report_keeper.screens.verify")

MASK = "••••••"
FILE_WIDTH = 28
TIMESTAMP_TAIL = 21  # "_20261128_070005.xlsx": the part of a name that tells files apart
PREVIEW_ROWS = 10


def short_name(name: str, width: int) -> Text:
    """An untrusted file name, escaped, shortened in the middle so its timestamp stays."""
    shown = escape_name(name)
    if len(shown) > width > 8:
        keep_end = min(TIMESTAMP_TAIL, width - 5)
        shown = shown[: width - 1 - keep_end] + "…" + shown[len(shown) - keep_end :]
    return Text(shown, no_wrap=True, overflow="ellipsis")


# --------------------------------------------------------------------------- messages


class VerifyProgress(Message):
    """Progress of a verification run (a newer one replaces one still queued)."""

    def __init__(self, done: int, total: int, name: str) -> None:
        super().__init__()
        self.done, self.total, self.name = done, total, name

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, VerifyProgress)


class VerifyFinished(Message):
    def __init__(self, outcomes: list[VerifyOutcome], seconds: float, cancelled: bool) -> None:
        super().__init__()
        self.outcomes, self.seconds, self.cancelled = outcomes, seconds, cancelled


class PreviewLoaded(Message):
    def __init__(self, path: str, header: list[str], rows: list[tuple[str, ...]]) -> None:
        super().__init__()
        self.path, self.header, self.rows = path, header, rows


class EmptyReportsFound(Message):
    """Newly verified reports with no data rows on an open day (bubbles to the app).

    ``results``: the ``VerifyResult`` of each; the app's health banner may count them.
    """

    def __init__(self, results: list[VerifyResult]) -> None:
        super().__init__()
        self.results = results


def zero_row_toast(app: Any, results: Sequence[VerifyResult]) -> None:
    """The warning toast for newly found empty reports (names escaped, no markup)."""
    if not results:
        return
    if len(results) == 1:
        r = results[0]
        text = f"{escape_name(r.name)} has no data rows, but the day it covers was an open day. " \
               "Open Verify (4) for what to do."
    else:
        text = f"{len(results)} new reports have no data rows on an open day. Open Verify (4) to see them."
    app.notify(text, title="Empty report", severity="warning", timeout=10, markup=False)


# --------------------------------------------------------------------------- the screen

SORTS = (
    ("newest first", lambda o: (-(o.result.delivered_at.timestamp() if o.result.delivered_at else 0), o.result.name)),
    ("worst first", lambda o: (-int(st.severity(o.result.status)) if o.result.status in st.VALIDATOR_STATUSES else 0,
                               -(o.result.delivered_at.timestamp() if o.result.delivered_at else 0))),
    ("by name", lambda o: o.result.name.casefold()),
)


class VerifyScreen(Screen):
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
    ]
    PALETTE_COMMANDS = (
        ("Verify: verify every local report again", "verify", "v"),
        ("Verify: details of the selected report", "details", "enter"),
        ("Verify: show or mask identifier columns", "toggle_mask", "m"),
        ("Verify: next sort order", "cycle_sort", "s"),
        ("Verify: filter by name", "filter", "/"),
        ("Export the kept reports as one table (parquet or csv)", "export", "e"),
    )

    def __init__(
        self,
        *,
        profile: Any = None,
        ledger: Any = None,
        local_dir: str | Path | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self._profile = profile
        self._ledger = ledger
        self._local_dir = Path(local_dir) if local_dir is not None else None
        self.outcomes: list[VerifyOutcome] = []
        self._shown: list[VerifyOutcome] = []
        self._sort = 0
        self._filter = ""
        self.masked = True
        self._detail: VerifyOutcome | None = None
        self._preview: tuple[list[str], list[tuple[str, ...]]] | None = None
        self.last_run_seconds: float | None = None
        self.last_run_cached = 0

    # ------------------------------------------------------------------ context
    @property
    def profile(self) -> Any:
        return self._profile if self._profile is not None else getattr(self.app, "profile", None)

    @property
    def ledger(self) -> Any:
        return self._ledger if self._ledger is not None else getattr(self.app, "ledger", None)

    @property
    def local_dir(self) -> Path | None:
        if self._local_dir is not None:
            return self._local_dir
        profile = self.profile
        return Path(profile.local_dir).expanduser() if profile is not None else None

    @property
    def tz(self) -> tzinfo | None:
        return getattr(self.profile, "timezone", None)

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar("verify")
        yield Static("", id="verify-status")
        with Horizontal(id="verify-progress-row"):
            yield Static("", id="verify-progress-label")
            yield ProgressBar(id="verify-progress", show_eta=False)
        yield DataTable(id="verify-table", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="filter by name (enter: keep, escape: clear)", id="verify-filter")
        with VerticalScroll(id="verify-detail"):
            yield Static("", id="verify-detail-text")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("Status", key="status", width=12)  # "✗ unreadable"
        table.add_column("Delivered", key="delivered", width=11)
        table.add_column("Rows", key="rows", width=6)
        table.add_column("File", key="file", width=FILE_WIDTH)
        table.add_column("Reason", key="reason")
        table.focus()

    def on_screen_resume(self) -> None:
        """Each time the screen is shown: list and verify again (unchanged files come from the
        cache at once), so downloads made meanwhile appear."""
        if not any(w.group == "verify" and w.is_running for w in self.workers):
            self.action_verify()

    # ------------------------------------------------------------------ verification
    def action_verify(self) -> None:
        folder = self.local_dir
        if folder is None:
            self._status(Text("No local folder is configured: set local_dir in the config.", style="bold yellow"))
            return
        row = self.query_one("#verify-progress-row")
        row.add_class("running")
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.query_one("#verify-progress-label", Static).update("Listing the local folder…")
        self._run(folder, self.profile, self.ledger)

    @work(thread=True, exclusive=True, group="verify", name="verify local reports")
    def _run(self, folder: Path, profile: Any, ledger: Any) -> None:
        worker = get_current_worker()
        started = _time.perf_counter()
        items = find_local_reports(folder, profile, ledger)
        self.post_message(VerifyProgress(0, len(items), ""))
        outcomes = verify_local(
            items,
            ledger,
            progress=lambda done, total, name: self.post_message(VerifyProgress(done, total, name)),
            cancelled=lambda: worker.is_cancelled,
        )
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
        fresh = [o for o in self.outcomes if not o.cached]
        empty = empty_on_open_day(self.outcomes)
        if empty:
            zero_row_toast(self.app, empty)
            self.post_message(EmptyReportsFound(empty))
        if fresh:
            reload = getattr(self.app, "load_snapshot", None)
            if callable(reload):  # the ledger changed: health and heatmap follow
                reload()
        if message.cancelled:
            self.notify("Verification stopped; the list shows the files done so far.", timeout=4)

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

    def on_data_refreshed(self, message: Any) -> None:
        """A new health evaluation: the stale and few-rows verdicts may have changed."""
        if self.outcomes:
            self._fill()

    # ------------------------------------------------------------------ the list
    def _content(self) -> dict[str, Any]:
        """File name -> its content problem (wrong day, stale, few rows) from the health
        evaluation: stale and few rows need the history, which one file cannot tell."""
        from tui.core.health import content_problems_by_file

        return content_problems_by_file(getattr(getattr(self.app, "snapshot", None), "health", None))

    def _shown_status(self, o: VerifyOutcome, content: dict[str, Any]) -> tuple[str, list]:
        """The status shown for a file and the content problems behind it (may be empty)."""
        problems = content.get(o.result.name) or []
        if problems and o.result.status in (st.OK, st.WRONG_DAY, st.CHANGED):
            return problems[0].kind, problems
        return o.result.status, []

    def _status_cell(self, status: str | None) -> Text:
        """Glyph and colour; with NO_COLOR glyph and weight only (Textual's monochrome filter
        would turn red into a dark grey that is hard to read)."""
        cell = verify_cell(status)
        if getattr(self.app, "no_color", False):
            bold = status in (st.EMPTY, st.SCHEMA, st.UNREADABLE, st.CHANGED, st.WRONG_DAY, "stale", "few-rows")
            return Text(cell.plain, style="bold" if bold else "")
        return cell

    def _status(self, text: Text) -> None:
        self.query_one("#verify-status", Static).update(text)

    def _summary(self) -> Text:
        counts: dict[str, int] = {}
        content = self._content()
        for o in self.outcomes:
            shown = self._shown_status(o, content)[0]
            counts[shown] = counts.get(shown, 0) + 1
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{len(self.outcomes)} local reports", style="bold")
        for status in (*st.VALIDATOR_STATUSES, "stale", "few-rows"):
            if counts.get(status):
                text.append("  ")
                text.append_text(self._status_cell(status))
                text.append(f" {counts[status]}")
        text.append(f"  · {SORTS[self._sort][0]}", style="dim")
        if self._filter:
            text.append("  · filter: ", style="dim")
            text.append(escape_name(self._filter), style="dim")
        text.append("  · enter details", style="dim")
        return text

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        keep = self._current()
        table.clear()
        needle = self._filter.casefold()
        shown = [o for o in self.outcomes if needle in o.result.name.casefold()]
        shown.sort(key=SORTS[self._sort][1])
        self._shown = shown
        content = self._content()
        for o in shown:
            r = o.result
            status, problems = self._shown_status(o, content)
            reason = (problems[0].message if problems else r.message or "").split("\n", 1)[0]
            table.add_row(
                self._status_cell(status),
                local_time(r.delivered_at, self.tz),
                Text(f"{r.rows:,}" if r.rows is not None else "—", justify="right"),
                short_name(r.name, FILE_WIDTH),
                Text(escape_name(reason), no_wrap=True, overflow="ellipsis"),
                key=r.path,
            )
        if keep is not None:
            for i, o in enumerate(shown):
                if o.result.path == keep.result.path:
                    table.move_cursor(row=i)
                    break
        self._status(self._summary())
        if not shown:
            hint = "No .xlsx files found" if not self.outcomes else "No file matches the filter"
            self._status(Text(f"{hint}. " + ("Download reports (2, a, d) or press v to look again." if not self.outcomes else "Press / to change it."), style="italic"))

    def _current(self) -> VerifyOutcome | None:
        table = self.query_one(DataTable)
        if not self._shown or table.cursor_row is None or not 0 <= table.cursor_row < len(self._shown):
            return None
        return self._shown[table.cursor_row]

    def action_cycle_sort(self) -> None:
        self._sort = (self._sort + 1) % len(SORTS)
        self._fill()

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

    # ------------------------------------------------------------------ export
    def action_export(self) -> None:
        from tui.core import clock
        from tui.screens.export import ExportModal, export_toast

        if self.profile is None or self.ledger is None:
            self.notify("Nothing to export: no profile is loaded.", severity="warning")
            return
        today = clock.now().astimezone(self.tz).date() if self.tz else clock.now().date()
        self.app.push_screen(ExportModal(self.profile, self.ledger, today=today),
                             callback=lambda result: export_toast(self.app, result) if result else None)

    # ------------------------------------------------------------------ details
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self._detail is not None:
            self._open(self._current())

    def action_details(self) -> None:
        self._open(self._current())

    def _open(self, outcome: VerifyOutcome | None) -> None:
        if outcome is None:
            return
        self._detail = outcome
        self._preview = None
        self.query_one("#verify-detail").add_class("shown")
        self._render_detail()
        r = outcome.result
        if r.status != st.UNREADABLE:
            self._load_preview(r.path, r.header_row)

    @work(thread=True, exclusive=True, group="preview", name="preview rows")
    def _load_preview(self, path: str, header_row: int | None) -> None:
        from tui.core.validate import preview_rows

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
        self.notify("Identifier columns " + ("masked." if self.masked else "shown: mind who can see the screen."), timeout=3)

    def _render_detail(self) -> None:
        outcome = self._detail
        if outcome is None:
            return
        self.query_one("#verify-detail-text", Static).update(self.detail_renderable(outcome))

    def detail_renderable(self, outcome: VerifyOutcome) -> Any:
        from rich.console import Group

        r = outcome.result
        head = Text()
        head.append(escape_name(r.name), style="bold")
        head.append("\n")
        head.append_text(self._status_cell(r.status))
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
            head.append(f" · delivered {local_time(r.delivered_at, self.tz, with_year=True)}")
        if outcome.cached:
            head.append(" · from the cache", style="dim")
        parts: list[Any] = [head, self._columns_text(r)]
        if r.message:
            msg = Text()
            msg.append("Validator: ", style="bold")
            msg.append(escape_name(r.message))  # may quote a sheet or column name from the file
            parts.append(msg)
        for problem in self._shown_status(outcome, self._content())[1]:
            msg = Text()
            msg.append_text(self._status_cell(problem.kind))
            msg.append(f" ({problem.severity}): ", style="bold")
            msg.append(escape_name(problem.message))
            msg.append("\nNext: ", style="bold")
            msg.append(escape_name(problem.next_step))
            parts.append(msg)
        parts.append(self._preview_renderable(r))
        return Group(*parts)

    def _expected(self, r: VerifyResult) -> tuple[str, ...]:
        profile = self.profile
        if profile is None or not r.report:
            return ()
        try:
            return tuple(profile.report_for(r.report).expected_columns)
        except Exception:  # noqa: BLE001 - the detail still shows the columns found
            return ()

    def _columns_text(self, r: VerifyResult) -> Text:
        text = Text()
        text.append("Columns: ", style="bold")
        if not r.columns:
            text.append("none found", style="italic")
            return text
        norm = lambda c: " ".join(str(c).split()).casefold()  # noqa: E731
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

    def _preview_renderable(self, r: VerifyResult) -> Any:
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
        from tui.core.validate import identifier_like

        masked_cols = {
            i for i, col in enumerate(header) if identifier_like(col, [row[i] if i < len(row) else "" for row in rows])
        }
        if masked_cols:
            title.append(
                "  (identifier columns masked, m shows them)" if self.masked else "  (identifiers SHOWN, m masks them)",
                style="dim" if self.masked else "bold yellow",
            )
        table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold", title=title, title_justify="left")
        for i, col in enumerate(header):
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
