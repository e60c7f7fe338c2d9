"""Remote screen (key ``2``): the server folder as a table.

Columns: selection, name (escaped, never markup), the server folder (only when the profile
watches several folders), delivered at (the library's local time),
size, age (wide terminals), days until the server deletes it (colour and glyph as the date
nears), local state (new, downloaded, changed, partial, purged; queued/running while in the
queue) and verification. Below ``WIDE`` columns the name column shows the report's name in
whole words (``Loans Per Patron…``): the rows of one report share all of their file name but
the timestamp, which the Delivered column shows; ``enter`` shows the full name. A new file
that the server deletes within two weeks is marked ``! new`` (``‼ new`` within three days).
``s`` cycles the sort, ``/`` filters by name or delivery time (``11-15`` as shown, ``1115``
as in the name), ``space`` toggles the selection, ``a`` selects every file not yet
downloaded, ``d`` downloads the selection (or all new files when nothing is selected),
``enter`` shows the details of a file. A purged file (its local copy deleted by the retention
policy) is never selected by ``a`` nor queued by ``d``.

Entries of the watched folders that are not reports (sub-folders as ``name/``, files that are
no workbook) come first, dimmed, labelled in the Local column; they cannot be selected or
downloaded.

The rows come from the app's snapshot (the ledger, read in a thread); the table is filled in
one pass with keys equal to the file names, so 10,000 files stay smooth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.timer import Timer
from textual.widgets import DataTable, Header, Input, Static
from textual.widgets.data_table import CellDoesNotExist

from tui.core import clock
from tui.core.health import NEAR_DELETION_DAYS
from tui.core.model import EntryKind, JobState, LocalState
from tui.core.names import escape_name
from tui.core.status import VerifyStatus
from tui.messages import DataRefreshed, QueueChanged
from tui.screens.base import AppScreen
from tui.screens.modals import FileDetailsModal
from tui.state import ConnectionState, OtherRow, RemoteRow, ScreenName
from tui.widgets.footer import FitFooter
from tui.widgets.formatting import (
    URGENT_DELETION_DAYS,
    deletion_cell,
    fit_parts,
    fit_words,
    human_age,
    human_size,
    local_time,
    mono,
    name_text,
    plural,
    report_file_text,
    short_report_names,
    state_cell,
    verify_cell,
)
from tui.widgets.hanging import update_static
from tui.widgets.navbar import NavBar
from tui.widgets.table import DetailsTable, FastTable, cached_text

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

WANTED_STATES = (LocalState.NEW, LocalState.PARTIAL, LocalState.CHANGED, LocalState.MISSING_LOCALLY)
#: Held, or deliberately not held: no deletion warning for these.
SAFE_STATES = (LocalState.DOWNLOADED, LocalState.PURGED)
FOLDER_WIDTH = 14  # the Folder column, shown when several folders are watched
_OTHER_LABEL = {EntryKind.FOLDER: "folder", EntryKind.NOT_A_REPORT: "not a report",
                EntryKind.LINK: "link", EntryKind.SPECIAL: "special"}
WIDE = 110  # from this terminal width on, the Age column and long labels are shown

_STATE_RANK = {LocalState.MISSING_LOCALLY: 0, LocalState.NEW: 1, LocalState.PARTIAL: 2,
               LocalState.CHANGED: 3, LocalState.DOWNLOADED: 4, LocalState.PURGED: 5}


def _delivered_key(r: RemoteRow) -> float:
    return r.delivered_at.timestamp() if r.delivered_at else 0.0


SORTS: tuple[tuple[str, Callable[[RemoteRow], SupportsRichComparison], bool], ...] = (
    ("newest first", _delivered_key, True),
    ("oldest first", _delivered_key, False),
    ("deletes soonest", lambda r: (r.days_left if r.days_left is not None else 10**6, r.name), False),
    ("name", lambda r: r.name.casefold(), False),
    ("largest first", lambda r: r.size, True),
    ("local state", lambda r: (_STATE_RANK.get(r.state, 9), -_delivered_key(r)), False),
)

_SHORT_VERIFY = {VerifyStatus.UNREADABLE: "✗ unread.", VerifyStatus.WRONG_DAY: "↔ wr. day"}


class RemoteScreen(AppScreen):
    """The server folder: what is there, what we have, what is about to be deleted."""

    DEFAULT_CSS = """
    RemoteScreen #remote-status { height: 1; padding: 0 1; background: $boost; }
    RemoteScreen DataTable { height: 1fr; scrollbar-size-vertical: 1; }
    RemoteScreen #remote-filter { dock: bottom; display: none; height: 3; }
    RemoteScreen #remote-filter.shown { display: block; }
    RemoteScreen #remote-empty { height: auto; padding: 1 2; display: none; }
    RemoteScreen #remote-empty.shown { display: block; }
    """

    BINDINGS = [
        Binding("space", "toggle_select", "Select", id="remote.select"),
        Binding("a", "select_new", "All new", id="remote.select_new"),
        Binding("d", "download", "Download", id="remote.download"),
        Binding("slash", "filter", "Filter", key_display="/", id="remote.filter"),
        Binding("s", "cycle_sort", "Sort", id="remote.sort"),
        Binding("enter", "details", "Details", id="remote.details"),
        Binding("r", "app.refresh", "Refresh", id="remote.refresh"),
        Binding("escape", "clear", "Clear", show=False, id="remote.clear"),
    ]
    PALETTE_COMMANDS = (
        ("Remote: select all new files", "select_new", "a"),
        ("Remote: download the selection (or all new)", "download", "d"),
        ("Remote: filter by name", "filter", "/"),
        ("Remote: next sort order", "cycle_sort", "s"),
        ("Remote: clear selection and filter", "clear", "escape"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, RemoteRow] = {}
        #: Entries that are not reports (sub-folders, other files): shown dimmed, first.
        self.others: dict[str, OtherRow] = {}
        self.shown: list[str] = []  # row keys in table order (file names, then the others' keys)
        self.selected: set[str] = set()
        self.sort_index = 0
        self.filter_text = ""
        self._snapshot_version = -1
        self._wide: bool | None = None
        self._queue_versions: dict[str, int] = {}
        self._filter_timer: Timer | None = None
        self._cell_cache: dict[tuple[object, ...], Text] = {}
        self._resize_timer: Timer | None = None
        self._short_names: dict[str, str] = {}  # report -> its name in the narrow Report column
        self._short_for = 0  # the column width they were made for (0: to be made)
        self._short_version = 0
        self._fitted_width: int | None = None
        self._folder_column = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavBar(ScreenName.REMOTE)
        yield Static("", id="remote-status")
        table = DetailsTable(id="remote-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="remote-empty")
        yield Input(placeholder="filter by name (enter: keep, escape: clear)", id="remote-filter")
        yield FitFooter()

    # -- data -------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self._setup_columns()
        self._take_snapshot()

    def on_screen_resume(self) -> None:
        self._take_snapshot()
        self._update_queue_cells()
        self.query_one(DataTable).focus()

    def on_data_refreshed(self, message: DataRefreshed) -> None:
        self._take_snapshot()

    def on_queue_changed(self, message: QueueChanged) -> None:
        self._update_queue_cells()

    def on_resize(self) -> None:
        """Fit the name column to the new width (debounced: 10,000 rows are redrawn)."""
        if self._resize_timer is not None:
            self._resize_timer.stop()

        def refit() -> None:
            if self._wide is None or self._fitted_width == self._name_width_for(self.size.width):
                return
            self._setup_columns()
            self._populate()

        self._resize_timer = self.set_timer(0.2, refit)

    def _take_snapshot(self) -> None:
        """A new snapshot (several a second at most, while files land): rows whose place in
        the list is unchanged are redrawn where they are; the list is filled again only when
        rows come, go or move, and then keeps the cursor's file where it was on screen."""
        snapshot = self.app.snapshot
        if snapshot.version == self._snapshot_version:
            return
        self._snapshot_version = snapshot.version
        old_rows, old_others = self.rows, self.others
        self.rows = {r.name: r for r in snapshot.rows}
        self.others = {o.key: o for o in snapshot.others}
        self.selected &= set(self.rows)
        same_reports = {r.report for r in old_rows.values()} == {r.report for r in self.rows.values()}
        if not same_reports:
            self._short_for = 0  # the reports changed: their short names are made again
        if self._folder_column != self._folders_shown():
            self._setup_columns()
        elif same_reports and self.others == old_others and self._redraw_in_place(old_rows):
            return
        self._populate()

    def _redraw_in_place(self, old_rows: dict[str, RemoteRow]) -> bool:
        """Redraw the changed rows where they are; False when the list's order changed."""
        shown = [o.key for o in self._ordered_others()] + [r.name for r in self._ordered()]
        if shown != self.shown:
            return False
        table = self.query_one(FastTable)
        columns = [column.key for column in table.ordered_columns]
        now_ts = clock.now().timestamp()
        width = self._name_width()
        for name in shown:
            row = self.rows.get(name)
            old = old_rows.get(name)
            if row is None or old is None:  # an entry that is not a report: unchanged
                continue
            # age_seconds follows the clock; the Age column is drawn from the delivery time
            if old == row or replace(old, age_seconds=row.age_seconds) == row:
                continue
            for column, cell in zip(columns, self._cells(row, now_ts, width), strict=True):
                table.update_cell(name, column, cell)
        self._update_status()
        self._update_empty()
        return True

    def _name_width(self) -> int:
        return self._name_width_for(self.size.width or self.app.size.width or 80)

    def _folders_shown(self) -> bool:
        """Several folders are watched: a Folder column tells their files apart."""
        return bool(self.app.snapshot.folder_labels)

    def _name_width_for(self, width: int) -> int:
        fixed = 1 + 11 + 6 + 7 + 12 + 9  # sel, delivered, size, deletes, local, check
        columns = 7
        if self._folders_shown():
            fixed += FOLDER_WIDTH
            columns += 1
        if width >= WIDE:
            fixed += 4 + 4  # age; longer verification labels
            columns += 1
        return max(16, width - fixed - 2 * columns - 3)

    def _setup_columns(self) -> None:
        table = self.query_one(DataTable)
        self._wide = (self.size.width or self.app.size.width or 80) >= WIDE
        table.clear(columns=True)
        self._fitted_width = self._name_width()
        table.add_column(" ", key="sel", width=1)
        table.add_column("Name" if self._wide else "Report", key="name", width=self._fitted_width)
        self._folder_column = self._folders_shown()
        if self._folder_column:
            table.add_column("Folder", key="folder", width=FOLDER_WIDTH)
        table.add_column("Delivered", key="delivered", width=11)
        table.add_column("Size", key="size", width=6)
        if self._wide:
            table.add_column("Age", key="age", width=4)
        table.add_column("Deletes", key="deletes", width=7)
        table.add_column("Local", key="local", width=12)
        table.add_column("Check", key="check", width=9 if not self._wide else 13)

    _SELECTED = Text("●", style="bold magenta")
    _UNSELECTED = Text(" ")

    def _sel_cell(self, name: str) -> Text:
        return self._SELECTED if name in self.selected else self._UNSELECTED

    def _local_cell(self, row: RemoteRow) -> Text:
        job = self.app.board.jobs.get(row.name)
        if job is not None and job.state.active:
            if self.app.board.paused:
                return Text("‖ paused", style="bold yellow")
            if job.state == JobState.RUNNING and job.size:
                pct = int(100 * job.bytes_done / job.size)
                return Text(f"↓ {pct:>3}%", style="bold cyan")
            return Text("… queued" if job.state == JobState.QUEUED else "↻ retrying", style="cyan")
        if job is not None and job.state == JobState.DONE and row.state != LocalState.DOWNLOADED:
            return Text("✓ downloaded", style="green")
        leaving = 0
        if row.state == LocalState.NEW and row.days_left is not None and row.days_left <= NEAR_DELETION_DAYS:
            leaving = 2 if row.days_left <= URGENT_DELETION_DAYS else 1
        key = ("state", row.state, leaving)
        cell = self._cell_cache.get(key)
        if cell is None:
            if leaving:  # not held, and the server deletes it soon: not just another new file
                cell = Text("‼ new" if leaving == 2 else "! new", style="bold red" if leaving == 2 else "bold yellow")
            else:
                cell = state_cell(row.state)
            # Without colour red would turn a faint grey (a missing copy, the one row to act
            # on, the faintest): mono() carries it by weight and reverse video instead.
            cell = self._cell_cache[key] = mono(cell, self.app.no_color)
        return cell

    def _check_cell(self, row: RemoteRow) -> Text:
        # A copy gone from the disk is verified nowhere: its old verdict would comfort falsely.
        status = row.verification if row.state != LocalState.MISSING_LOCALLY else None
        job = self.app.board.jobs.get(row.name)
        if job is not None and job.verification and job.version:
            status = job.verification
        key = ("check", status, self._wide)
        cell = self._cell_cache.get(key)
        if cell is None:
            cell = verify_cell(status)
            if not self._wide and status in _SHORT_VERIFY:
                cell = Text(_SHORT_VERIFY[status], style=cell.style)
            cell = self._cell_cache[key] = mono(cell, self.app.no_color)
        return cell

    def _cells(self, row: RemoteRow, now_ts: float, name_width: int) -> list[Text | str]:
        """The cells of one row; repeated values share one Text (10,000 rows stay cheap)."""
        tz = self.app.profile.timezone
        cache = self._cell_cache
        cells: list[Text | str] = [
            self._sel_cell(row.name),
            self._name_cell(row, name_width),
        ]
        labels = self.app.snapshot.folder_labels
        if labels:
            cells.append(cached_text(cache, escape_name(labels.get(row.folder, row.folder))))
        cells += [
            local_time(row.delivered_at, tz),
            cached_text(cache, human_size(row.size), justify="right"),
        ]
        if self._wide:
            age = now_ts - row.delivered_at.timestamp() if row.delivered_at else 0
            cells.append(cached_text(cache, human_age(timedelta(seconds=age)), justify="right"))
        safe = row.state in SAFE_STATES
        key = ("del", row.days_left, safe)
        cell = cache.get(key)
        if cell is None:
            cell = cache[key] = mono(deletion_cell(row.days_left, safe), self.app.no_color)
        cells.append(cell)
        cells.append(self._local_cell(row))
        cells.append(self._check_cell(row))
        return cells

    def _name_cell(self, row: RemoteRow, width: int) -> Text:
        """The file name on wide terminals; below, its report's name in whole words (the
        Delivered column tells a report's files apart)."""
        if self._wide:
            return report_file_text(row.server_name or row.name, row.report, width)
        if self._short_for != width:
            self._short_names = short_report_names((escape_name(r.report) for r in self.rows.values()), width)
            self._short_for = width
            self._short_version += 1
        key = ("report", row.report, width, self._short_version)
        cell = self._cell_cache.get(key)
        if cell is None:
            shown = escape_name(row.report)
            cell = self._cell_cache[key] = Text(self._short_names.get(shown) or fit_words(shown, width), no_wrap=True)
        return cell

    def _matches(self, row: RemoteRow, needle: str) -> bool:
        """The filter finds what the row shows: the name, the report, the delivery time as
        displayed (``11-15 07:00``) and as in the name (``1115``)."""
        if needle in row.name.casefold() or needle in row.report.casefold():
            return True
        return needle in local_time(row.delivered_at, self.app.profile.timezone, with_year=True)

    def _other_cells(self, other: OtherRow, name_width: int) -> list[Text | str]:
        """A dimmed row: a sub-folder (``name/``) or a file that is no report; no selection,
        no dates, nothing to download."""
        label = escape_name(other.name) + ("/" if other.kind == EntryKind.FOLDER else "")
        name = name_text(label, name_width)
        name.stylize("dim")
        cells: list[Text | str] = [self._UNSELECTED, name]
        labels = self.app.snapshot.folder_labels
        if labels:
            cells.append(Text(escape_name(labels.get(other.folder, other.folder)), style="dim"))
        cells += [Text(""), Text("")]
        if self._wide:
            cells.append(Text(""))
        cells.append(Text(""))
        cells.append(Text(_OTHER_LABEL[other.kind], style="dim italic"))
        cells.append(Text(""))
        return cells

    def _ordered_others(self) -> list[OtherRow]:
        others = sorted(self.others.values(), key=lambda o: (o.kind != EntryKind.FOLDER, o.folder,
                                                            o.name.casefold()))
        if self.filter_text:
            needle = self.filter_text.casefold()
            others = [o for o in others if needle in o.name.casefold()]
        return others

    def _ordered(self) -> list[RemoteRow]:
        _label, key, reverse = SORTS[self.sort_index]
        rows = list(self.rows.values())
        if self.filter_text:
            needle = self.filter_text.casefold()
            rows = [r for r in rows if self._matches(r, needle)]
        rows.sort(key=key, reverse=reverse)
        return rows

    def _populate(self, keep_cursor: bool = True) -> None:
        """Fill the table in one pass (keys = file names), keeping the cursor on its file."""
        table = self.query_one(FastTable)
        # The cursor's file, then the rows after it, then those before it (nearest first): if
        # the file is gone or filtered out, the next row still shown takes its place (the one
        # that moves up into it), and at the end of the list the one before it.
        candidates: list[str] = []
        offset = 0
        if keep_cursor and self.shown and 0 <= table.cursor_row < len(self.shown):
            at = table.cursor_row
            candidates = self.shown[at:] + self.shown[:at][::-1]
            offset = table.view_offset()
        ordered = self._ordered()
        others = self._ordered_others()
        table.clear()
        now_ts = clock.now().timestamp()
        width = self._name_width()
        # Sub-folders and other entries first, as a file manager shows folders.
        table.add_keyed_rows((o.key, self._other_cells(o, width)) for o in others)
        table.add_keyed_rows((row.name, self._cells(row, now_ts, width)) for row in ordered)
        self.shown = [o.key for o in others] + [r.name for r in ordered]
        self._queue_versions = {}
        if candidates:
            index = {key: i for i, key in enumerate(self.shown)}
            place = next((index[key] for key in candidates if key in index), None)
            if place is not None:
                table.keep_place(place, offset)
        self._update_status()
        self._update_empty()

    def _update_empty(self) -> None:
        empty = self.query_one("#remote-empty", Static)
        if self.rows or self.others:
            empty.remove_class("shown")
            return
        conn = self.app.connection
        if conn.state == ConnectionState.FAILED:
            text = Text("The server could not be listed.\n", style="bold red")
            text.append(conn.message, style="")
            text.append("\n\nPress r to try again, t to run the connection test.", style="dim")
        elif conn.state == ConnectionState.CONNECTING:
            text = Text("Listing the server folder…", style="italic")
        else:
            text = Text("No files known yet. Press r to list the server folder.", style="dim")
        empty.update(text)
        empty.add_class("shown")

    def _update_status(self) -> None:
        rows = self.rows.values()
        missing = sum(1 for r in rows if r.state == LocalState.MISSING_LOCALLY)
        new = sum(1 for r in rows if r.state in WANTED_STATES) - missing
        near = sum(1 for r in rows if r.state not in SAFE_STATES and r.days_left is not None
                   and r.days_left <= NEAR_DELETION_DAYS)
        purged = sum(1 for r in rows if r.state == LocalState.PURGED)
        # Whole parts, the least needed left out first when the line is too long.
        parts: list[tuple[Text | str, int]] = [(Text(f"{len(self.rows):,} on server", style="bold"), 0),
                                               (Text(f"{new:,} new", style="bold cyan" if new else ""), 0)]
        if self.app.connection.listing_error:  # the rows are the last listing's (the ledger's)
            unlisted = Text("✗ not listed (1 says why)", style="bold red")
            parts[:2] = ([(unlisted + Text(" · last listing: ") + parts[0][0], 0), parts[1]] if self.rows
                         else [(unlisted + Text(": nothing is known of the server yet"), 0)])
        if missing:
            parts.append((Text(f"{missing:,} missing here", style="bold red"), 0))
        if purged:
            parts.append((Text(f"{purged:,} purged", style="dim"), 2))
        if self.others:
            parts.append((Text(f"{len(self.others):,} not reports", style="dim"), 2))
        if near:
            parts.append((Text(f"{near:,} near deletion", style="bold yellow"), 1))
        if self.selected:
            parts.append((Text(f"{len(self.selected):,} selected", style="bold magenta"), 0))
        if self.filter_text:
            parts.append((Text(f"filter {escape_name(self.filter_text)!r}: {len(self.shown):,} shown",
                               style="italic"), 0))
        # An order chosen with s is always said (a filter's rows can look alike in two orders)
        parts.append((f"sort: {SORTS[self.sort_index][0]}", 0 if self.sort_index else 2))
        refused = self.app.snapshot.refused
        if refused:
            n = len(refused)
            parts.append((Text(f"{plural(n, 'unsafe name')} refused", style="bold red"), 0))
            shown = ", ".join(escape_name(name) for name, _reason in refused[:3])
            parts.append((Text(shown + (", …" if n > 3 else ""), style="red"), 3))  # Text: never markup
        width = (self.size.width or self.app.size.width or 80) - 2
        line = mono(fit_parts(parts, width), self.app.no_color)
        update_static(self.query_one("#remote-status", Static), line, layout=False)  # one line, always

    def _update_queue_cells(self) -> None:
        """Show queued/running/done in the Local column for files on the transfer board."""
        table = self.query_one(DataTable)
        board = self.app.board
        for name, job in board.jobs.items():
            if self._queue_versions.get(name) == job.version or name not in self.rows:
                continue
            self._queue_versions[name] = job.version
            try:
                table.update_cell(name, "local", self._local_cell(self.rows[name]))
                table.update_cell(name, "check", self._check_cell(self.rows[name]))
            except CellDoesNotExist:  # the row is filtered out right now
                continue

    # -- actions ----------------------------------------------------------------------------
    def _cursor_name(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.shown or not 0 <= table.cursor_row < len(self.shown):
            return None
        return self.shown[table.cursor_row]

    def _redraw_selection(self, names: Iterable[str]) -> None:
        table = self.query_one(DataTable)
        for name in names:
            try:
                table.update_cell(name, "sel", self._sel_cell(name))
            except CellDoesNotExist:  # not shown under the current filter
                continue
        self._update_status()

    def _not_a_report(self, key: str) -> bool:
        """Tell why an entry that is not a report cannot be selected or opened (True)."""
        other = self.others.get(key)
        if other is None:
            return False
        what = ("is a sub-folder" if other.kind == EntryKind.FOLDER else
                "is not an Excel workbook" if other.kind == EntryKind.NOT_A_REPORT else
                f"is a {other.kind}")
        self.notify(f"{escape_name(other.name)} {what}: not a report, so sync leaves it on the "
                    "server and never counts it as a problem.")
        return True

    def action_toggle_select(self) -> None:
        name = self._cursor_name()
        if name is None or self._not_a_report(name):
            return
        if name in self.selected:
            self.selected.discard(name)
        else:
            self.selected.add(name)
        self._redraw_selection([name])
        table = self.query_one(DataTable)
        if table.cursor_row < len(self.shown) - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)

    def action_select_new(self) -> None:
        """Select every file not held here (among those the filter shows): new, partial,
        changed on the server, or missing from the disk."""
        wanted = {n for n in self.shown if n in self.rows and self.rows[n].state in WANTED_STATES}
        if not wanted:
            unlisted = self.app.unlisted_text()
            self.notify(unlisted or "Every file shown is downloaded and on the disk.",
                        severity="warning" if unlisted else "information")
            return
        added = wanted - self.selected
        self.selected |= wanted
        self._redraw_selection(added)
        self.notify(f"{plural(len(wanted), 'file')} not held here selected: d downloads them.")

    def action_download(self) -> None:
        names = [n for n in self.shown if n in self.selected] or sorted(self.selected)
        purged = [n for n in names if n in self.rows and self.rows[n].state == LocalState.PURGED]
        if purged:
            # Deleted on purpose by the local retention policy: never fetched again.
            names = [n for n in names if n not in purged]
            self.selected -= set(purged)
            self._redraw_selection(purged)
            self.notify(f"{len(purged)} purged file{'s are' if len(purged) != 1 else ' is'} not downloaded "
                        "again: the local retention policy deleted the local copy on purpose.",
                        severity="warning")
            if not names:
                return
        if not names:
            names = [r.name for r in sorted(self.rows.values(), key=_delivered_key) if r.state in WANTED_STATES]
        if not names:
            unlisted = self.app.unlisted_text()
            self.notify(unlisted or "Every file is downloaded; space selects one to fetch again.",
                        severity="warning" if unlisted else "information")
            return
        added = self.app.queue_downloads(names)
        cleared = set(self.selected)
        self.selected.clear()
        self._redraw_selection(cleared)
        self._update_queue_cells()
        if not self.app.board.paused:  # else the app asks whether to resume
            self.notify(f"{plural(added, 'file')} queued: 3 shows the queue.")

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._populate(keep_cursor=False)
        self.query_one(DataTable).move_cursor(row=0, animate=False)

    def action_filter(self) -> None:
        box = self.query_one("#remote-filter", Input)
        box.add_class("shown")
        box.value = self.filter_text
        box.focus()

    def action_clear(self) -> None:
        box = self.query_one("#remote-filter", Input)
        if box.has_class("shown") or self.filter_text:
            box.remove_class("shown")
            box.value = ""
            if self.filter_text:
                self.filter_text = ""
                self._populate()
            self.query_one(DataTable).focus()
            return
        if self.selected:
            cleared = set(self.selected)
            self.selected.clear()
            self._redraw_selection(cleared)
            return
        self.app.clear_notifications()  # nothing else to close: the toasts

    @on(Input.Changed, "#remote-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        value = event.value

        def apply() -> None:
            if value != self.filter_text:
                self.filter_text = value
                self._populate()

        self._filter_timer = self.set_timer(0.15, apply)

    @on(Input.Submitted, "#remote-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        if event.value != self.filter_text:
            self.filter_text = event.value
            self._populate()
        box = self.query_one("#remote-filter", Input)
        box.remove_class("shown")
        self.query_one(DataTable).focus()

    def key_escape(self) -> None:
        """Escape inside the filter box clears it (the box would swallow the binding)."""
        if self.query_one("#remote-filter", Input).has_focus:
            self.action_clear()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_details()

    def action_details(self) -> None:
        name = self._cursor_name()
        if name is None or self._not_a_report(name):
            return
        self.app.push_screen(FileDetailsModal(self.rows[name], self.app.board.jobs.get(name),
                                              tz=self.app.profile.timezone,
                                              show_folder=self._folders_shown()))
