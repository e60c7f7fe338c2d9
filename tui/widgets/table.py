"""A DataTable that takes thousands of rows in one call and redraws only the rows that change.

``DataTable.add_row`` does per-row work meant for small tables (it re-derives the column
order twice per row, fires the cursor reactive, and later measures every cell of every new
row). With fixed-width columns none of that is needed: :meth:`FastTable.add_keyed_rows`
inserts all rows in one pass, and :meth:`FastTable._update_dimensions` skips measuring when
every column has a fixed width (it only recomputes the virtual size). This keeps a 10,000-file
listing interactive in well under a second.

``DataTable.update_cell`` throws away every cell and line the table has drawn (its caches are
keyed by a count of changes), so one cell changed draws every visible row again at the next
frame: while files land, a progress figure a second redrew the whole list. The
:meth:`FastTable.update_cell` here forgets only the changed rows' drawings (once per frame,
however many cells changed) and repaints only those rows. DataTable also forgets them all on
every restyle (every widget of a screen shown again is restyled); this table only when the
styles it draws with changed.

It relies on DataTable internals of Textual 8 (``_row_locations``, ``_data``, ``rows``,
``_new_rows``, and the render caches ``_cell_render_cache``, ``_row_render_cache``,
``_line_cache``, ``_row_renderable_cache`` with their keys, ``_clear_caches`` and
``_get_styles_to_render_cell``); ``tests/test_tui_units.py`` checks what it draws against
``add_row``, ``DataTable.update_cell`` and a restyle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import DataTable
from textual.widgets._data_table import CellDoesNotExist, ColumnKey, DuplicateKey, Row, RowKey


class FastTable(DataTable[Text | str]):
    """DataTable with a bulk insert for keyed rows, no measuring of fixed-width columns, and
    cell updates that redraw only their rows."""

    #: Rows whose cells changed since the last frame: their drawings are forgotten then.
    _changed_rows: set[RowKey] | None = None
    #: The styles the cached drawings were made with (:meth:`_drawing_styles`).
    _drawn_with: tuple[object, ...] | None = None

    def update_cell(self, row_key: RowKey | str, column_key: ColumnKey | str, value: Text | str, *,
                    update_width: bool = False) -> None:
        """Change one cell; only its row is drawn again (see the module's docstring). Rows of
        other heights than one line, fixed rows or columns and a column fitted to its cells
        take DataTable's own way."""
        if update_width or self.fixed_rows or self.fixed_columns or self._total_row_height != len(self.rows):
            super().update_cell(row_key, column_key, value, update_width=update_width)
            return
        row_key = RowKey(row_key) if isinstance(row_key, str) else row_key
        column_key = ColumnKey(column_key) if isinstance(column_key, str) else column_key
        index = self._row_locations.get(row_key)
        if index is None or column_key not in self._column_locations:
            raise CellDoesNotExist(f"No cell exists for row_key={row_key!r}, column_key={column_key!r}.")
        self._data[row_key][column_key] = value
        if self._changed_rows is None:
            self._changed_rows = set()
        self._changed_rows.add(row_key)
        y = index + (self.header_height if self.show_header else 0)
        self._refresh_region(Region(0, y, max(self.size.width, self.virtual_size.width), 1))

    def _forget_changed_rows(self) -> None:
        """Drop the drawings of the rows changed since the last frame from every render cache."""
        keys, self._changed_rows = self._changed_rows or set(), None
        header = self.header_height if self.show_header else 0
        indexes = {index for key in keys if (index := self._row_locations.get(key)) is not None}
        lines = {index + header for index in indexes}
        # Cells and rows are cached under their row's key first, lines under their y first.
        _discard_where(self._cell_render_cache, keys)
        _discard_where(self._row_render_cache, keys)
        _discard_where(self._line_cache, lines)
        for index in indexes:
            self._row_renderable_cache.discard((self._update_count, index))

    def notify_style_update(self) -> None:
        """A restyle (every widget of a screen shown again, the table on each focus change):
        DataTable forgets every drawing here; this table only when the styles it draws with
        changed (:meth:`render_lines` compares them)."""
        Widget.notify_style_update(self)
        self._get_styles_to_render_cell.cache_clear()
        self.refresh()

    def _drawing_styles(self) -> tuple[object, ...]:
        """What the drawn cells, rows and lines depend on in the stylesheet."""
        return (self.rich_style, self.background_colors,
                *(self.get_component_rich_style(name) for name in sorted(self.COMPONENT_CLASSES)))

    def render_lines(self, crop: Region) -> list[Strip]:
        styles = self._drawing_styles()
        if styles != self._drawn_with:
            self._drawn_with = styles
            self._changed_rows = None
            self._clear_caches()
        elif self._changed_rows:
            self._forget_changed_rows()
        return super().render_lines(crop)

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


def _discard_where(cache: LRUCache[Any, Any], firsts: set[Any]) -> None:
    """Drop the entries of ``cache`` whose key (a tuple) starts with one of ``firsts``."""
    for key in [key for key in cache.keys() if key[0] in firsts]:
        cache.discard(key)


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
