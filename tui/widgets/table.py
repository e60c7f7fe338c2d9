"""A DataTable that takes thousands of rows in one call.

``DataTable.add_row`` does per-row work meant for small tables (it re-derives the column
order twice per row, fires the cursor reactive, and later measures every cell of every new
row). With fixed-width columns none of that is needed: :meth:`FastTable.add_keyed_rows`
inserts all rows in one pass, and :meth:`FastTable._update_dimensions` skips measuring when
every column has a fixed width (it only recomputes the virtual size). This keeps a 10,000-file
listing interactive in well under a second.

It relies on DataTable internals of Textual 8 (``_row_locations``, ``_data``, ``rows``,
``_new_rows``); ``tests/test_tui_units.py`` checks the result against ``add_row``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets._data_table import DuplicateKey, Row, RowKey


class FastTable(DataTable[Text | str]):
    """DataTable with a bulk insert for keyed rows and no measuring of fixed-width columns."""

    def add_keyed_rows(self, rows: Iterable[tuple[str, Sequence[Text | str]]]) -> int:
        """Append ``(key, cells)`` rows; returns how many were added."""
        column_keys = [column.key for column in self.ordered_columns]
        locations = self._row_locations
        data = self._data
        table_rows = self.rows
        new_rows = self._new_rows
        start = self.row_count
        index = start
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key in locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            if len(cells) > len(column_keys):
                raise ValueError("More values provided than there are columns.")
            locations[row_key] = index
            data[row_key] = dict(zip(column_keys, cells, strict=False))
            table_rows[row_key] = Row(row_key, 1, None, False)
            new_rows.add(row_key)
            index += 1
        added = index - start
        if not added:
            return 0
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if start == 0 and self.columns and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self._update_count += 1
        self.check_idle()
        return added

    def view_offset(self) -> int:
        """How many rows below the top of the view the cursor is (for :meth:`keep_place`)."""
        return self.cursor_row - round(self.scroll_y)

    def keep_place(self, row: int, offset: int) -> None:
        """After the rows were filled again: the cursor on ``row``, shown ``offset`` rows below
        the top of the view as before, so a refill leaves the list where the user was. The
        table's size is brought up to date first (it is otherwise at the next idle), and the
        scroll is set before the cursor moves, so no frame shows the list elsewhere."""
        if self._require_update_dimensions:
            self._require_update_dimensions = False
            new_rows = self._new_rows.copy()
            self._new_rows.clear()
            self._update_dimensions(new_rows)
        self.scroll_to(y=max(0, row - offset), animate=False, immediate=True)
        self.move_cursor(row=row, animate=False, scroll=False)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        columns = list(self.columns.values())
        fixed = columns and all(not column.auto_width for column in columns)
        if not fixed or self._labelled_row_exists:
            super()._update_dimensions(new_rows)
            return
        # Every column has a fixed width and rows are one line: nothing to measure.
        data_cells_width = sum(column.get_render_width(self) for column in columns)
        header_height = self.header_height if self.show_header else 0
        self.virtual_size = Size(
            data_cells_width + self._row_label_column_width,
            self._total_row_height + header_height,
        )


def cached_text(cache: dict, text: str, style: str = "", justify: str | None = None) -> Text:
    """One shared ``Text`` per distinct (text, style, justify): tables reuse them."""
    key = (text, style, justify)
    value = cache.get(key)
    if value is None:
        value = cache[key] = Text(text, style=style, justify=justify)  # type: ignore[arg-type]
    return value


class DetailsTable(FastTable):
    """A FastTable whose ``enter`` opens the details of the row under the cursor and says so
    in the footer: DataTable's own ``enter`` is hidden from the footer, and as the focused
    widget's binding it hides the screen's ``enter`` too."""

    BINDINGS = [Binding("enter", "select_cursor", "Details", id="table.details")]
