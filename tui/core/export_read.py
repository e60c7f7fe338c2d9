"""Reading a report's table with its cell types, inside a workbook worker process.

``export`` needs every data row with its cells' own types, not just the counts verification
needs. This runs in a worker of :mod:`tui.core.isolation` (job ``"table"``), with the same
limits and the same cheap checks before the reader as verification (regular file, zip
pre-checks); whatever a workbook does, only that file is lost. What it does:

1. The file's bytes are read once, hashed (sha256) and parsed from that same copy, so the hash
   it reports is the hash of exactly what was read, even if the file changes meanwhile.
2. The header row (1-based, as verification found it) is read as text, so each column's name
   is the header cell's exact text. A blank header cell, or one that reads like a value (an
   e-mail address, an identifier), is named by position, ``column N``, as verification does;
   a repeated name gets `` (2)``, `` (3)``. Without a header row every column is named by
   position.
3. The rows below it are read with the types fastexcel finds over *all* rows. fastexcel's
   default "coerce" would turn a text cell in a column of numbers into a null: here every
   column is first tried in strict mode, and a column holding cells of several kinds
   (numbers and text, say) is read as text instead, so no cell is lost.
4. Each column's number cells of 2**53 or more (in absolute value) are counted: such a number
   may already be rounded in the workbook (a number cell is a double). In a column read as
   text a number cell reads like a text cell of the same digits, so its cells are told apart
   by a read of that column as booleans, which gives a value for a number (or boolean) cell and
   none for a text cell; text keeps every digit and is never counted.
5. The table is written as an Arrow IPC stream (nanoarrow, no polars in a worker) to the path
   the parent named, created exclusively with mode 0600. Only the hash, the column names and
   counts go back over the pipe.

The parent turns that stream into the cached per-file table (``tui.core.export_cache``).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from tui.core import validate

if TYPE_CHECKING:  # the reader is loaded in worker processes only (and the model never)
    from fastexcel import DTypeMap, ExcelReader, ExcelSheet

    from tui.core.model import JSONObject

#: Bump when what a cached table holds for the same bytes changes (it is part of the cache key).
TABLE_READER_VERSION = "2"
#: Every integer up to this is exact in a double; beyond, a number cell may hold a rounded value.
EXACT_LIMIT = 2.0**53


def worker_table(path: str, out: str, header_row: int | None) -> JSONObject:
    """Read ``path``'s first sheet below ``header_row`` into an Arrow IPC stream at ``out``.

    Returns ``{"ok": True, "sha256", "names", "rows", "width", "dtypes", "imprecise"}``
    (``imprecise``: per column, how many number cells are 2**53 or more), or
    ``{"ok": False, "status": "unreadable", "message", "reason"}`` for a file that cannot be
    read (never a cell value)."""
    try:
        return _read_table(Path(path), out, header_row)
    except validate.Unreadable as exc:
        return {"ok": False, "status": "unreadable", "message": str(exc), "reason": exc.reason}
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the rest
        # The exception text may quote cell contents: only its type is passed on.
        return {
            "ok": False, "status": "unreadable", "reason": type(exc).__name__,
            "message": f"The workbook's table could not be read ({type(exc).__name__}).",
        }


def _read_table(path: Path, out: str, header_row: int | None) -> JSONObject:
    import fastexcel  # noqa: PLC0415 - the reader is loaded in worker processes only

    with validate.open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > validate.READ_WHOLE_BYTES and validate.reopens(fh):
            if (kind := validate.sniff(fh)) != "zip":
                raise validate.Unreadable(kind, "not-xlsx")
            fh.seek(0)
            with validate.LargeZip(path, fh, None) as large:
                return large.checked(_table_of(large.reader(), large.names, large.sha256, out, header_row))
        data = fh.read()
    sha256 = hashlib.sha256(data).hexdigest()
    buf = io.BytesIO(data)
    kind = validate.sniff(buf)
    if kind != "zip":
        raise validate.Unreadable(kind, "not-xlsx")
    names = validate.precheck_zip(path, buf)
    try:
        reader = fastexcel.read_excel(data)
        del data
    except fastexcel.FastExcelError as exc:
        raise validate.Unreadable(validate.reader_failed_message(exc, names), "reader") from None
    return _table_of(reader, names, sha256, out, header_row)


def _table_of(reader: ExcelReader, names: set[str], sha256: str, out: str, header_row: int | None) -> JSONObject:
    """The first sheet of an opened workbook below ``header_row``, written to ``out``."""
    import fastexcel  # noqa: PLC0415 - the reader is loaded in worker processes only
    import nanoarrow  # noqa: PLC0415 - the reader is loaded in worker processes only
    import nanoarrow.ipc  # noqa: PLC0415 - the reader is loaded in worker processes only

    top = header_row if header_row is not None and header_row >= 1 else 0
    try:
        if not reader.sheet_names:
            raise validate.Unreadable("The workbook has no sheets.", "no-sheets")
        # The whole sheet as text: the header's exact cells, and how many cells of each
        # column below it hold something (a typed column must not hold fewer).
        grid = validate.Grid(reader.load_sheet(
            0, header_row=None, dtypes="string", skip_rows=0, whitespace_as_null=True,
        ))
        header_cells = list(grid.row(top - 1)) if 1 <= top <= grid.height else []
        filled = [grid.count_filled(c, top) for c in range(grid.width)]
        del grid
        common = _LoadOptions(
            header_row=top - 1 if top else None,
            schema_sample_rows=None,  # every row decides a column's type, not the first 1,000
            whitespace_as_null=True,  # as verification: whitespace-only cells are blank
        )
        if not top:
            common["skip_rows"] = 0
        sheet, mixed = _load_typed(reader, common, filled)
        imprecise = _imprecise_numbers(reader, common, sheet, mixed)
    except fastexcel.FastExcelError as exc:
        raise validate.Unreadable(validate.reader_failed_message(exc, names), "reader") from None
    array = nanoarrow.c_array(sheet)
    width = int(array.n_children)
    dtypes = [str(c.dtype) for c in sheet.selected_columns]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as target:
        with nanoarrow.ipc.StreamWriter.from_writable(target) as writer:
            writer.write_stream(array)
    return {
        "ok": True,
        "sha256": sha256,
        "names": column_names(header_cells if top else None, width),
        "rows": int(array.length),
        "width": width,
        "dtypes": dtypes,
        "imprecise": imprecise,
    }


class _LoadOptions(TypedDict, total=False):
    """The options of every ``load_sheet`` of the table (besides the columns' types)."""

    header_row: int | None
    schema_sample_rows: int | None
    whitespace_as_null: bool
    skip_rows: int


def _load_typed(reader: ExcelReader, common: _LoadOptions, filled: list[int]) -> tuple[ExcelSheet, list[int]]:
    """The sheet with a type per column, and the columns read as text for holding cells of
    several kinds. A column whose cells are of several kinds (numbers and text, numbers and
    booleans) is read as text; so is one where the typed read would leave a cell empty that
    holds text (fastexcel takes "n/a", "NA", "#N/A" in a column of numbers for nulls): no cell
    is lost. A column the strict read itself finds text holds text cells only."""
    import fastexcel  # noqa: PLC0415 - the reader is loaded in worker processes only
    import nanoarrow  # noqa: PLC0415 - the reader is loaded in worker processes only

    text: DTypeMap = {}
    try:
        sheet = reader.load_sheet(0, dtype_coercion="strict", **common)
    except fastexcel.UnsupportedColumnTypeCombinationError:
        # Which columns mix kinds: each column alone, strictly (a load costs milliseconds).
        probe = reader.load_sheet(0, n_rows=1, **common)
        for i in range(len(probe.available_columns())):
            try:
                reader.load_sheet(0, dtype_coercion="strict", use_columns=[i], **common)
            except fastexcel.UnsupportedColumnTypeCombinationError:
                text[i] = "string"
        sheet = reader.load_sheet(0, dtype_coercion="strict", dtypes=text, **common)
    typed = nanoarrow.c_array(sheet)
    lost: DTypeMap = {}
    for i in range(int(typed.n_children)):
        child = typed.child(i)
        if i < len(filled) and int(child.length) - int(child.null_count) < filled[i] and i not in text:
            lost[i] = "string"
    if not lost:
        return sheet, sorted(i for i in text if isinstance(i, int))
    mixed = sorted(i for i in text | lost if isinstance(i, int))
    return reader.load_sheet(0, dtype_coercion="strict", dtypes=text | lost, **common), mixed


def _imprecise_numbers(reader: ExcelReader, common: _LoadOptions, sheet: ExcelSheet, mixed: list[int]) -> list[int]:
    """How many number cells of each column of ``sheet`` are 2**53 or more in absolute value
    (counts only: no value leaves this function). A column read as numbers holds number cells
    only; a column the strict read found text holds none. In a column read as text for mixing
    kinds (``mixed``), the cells whose float reading is that large are counted only where a
    read as booleans gives them a value: number cells do, text cells never (a text cell of
    digits is exact). The extra reads take those columns alone (most files have none), and the
    boolean read only those with a candidate."""
    import nanoarrow  # noqa: PLC0415 - the reader is loaded in worker processes only

    typed = nanoarrow.c_array(sheet)
    counts = [0] * int(typed.n_children)
    text: list[int] = []
    for i, col in enumerate(sheet.selected_columns):
        if col.dtype in ("float", "int"):
            if _may_be_large(memoryview(typed.child(i).view().buffer(1))):
                counts[i] = sum(1 for v in nanoarrow.Array(typed.child(i)).to_pylist() if _large(v))
        elif col.dtype == "string" and i in mixed:
            text.append(i)
    if text:
        import fastexcel  # noqa: PLC0415 - the reader is loaded in worker processes only

        try:
            _count_mixed(reader, common, text, counts)
        except (fastexcel.FastExcelError, ValueError):
            # Only a note on identifiers: the table read fine and is exported all the same;
            # the columns read as numbers are counted, the mixed ones could not be.
            pass
    return counts


def _count_mixed(reader: ExcelReader, common: _LoadOptions, text: list[int], counts: list[int]) -> None:
    """Into ``counts``: the number cells of 2**53 or more in the ``text`` columns (read as text
    for mixing kinds; see :func:`_imprecise_numbers`)."""
    import nanoarrow  # noqa: PLC0415 - the reader is loaded in worker processes only

    floats = reader.load_sheet(0, dtypes={i: "float" for i in text}, use_columns=text, **common)
    array = nanoarrow.c_array(floats)
    found: dict[int, list[bool]] = {}
    for j, col in enumerate(floats.selected_columns):
        child = array.child(j)
        if _may_be_large(memoryview(child.view().buffer(1))):
            found[col.index] = [_large(v) for v in nanoarrow.Array(child).to_pylist()]
    if not found:
        return
    kinds = reader.load_sheet(0, dtypes={i: "boolean" for i in found}, use_columns=sorted(found), **common)
    kind_array = nanoarrow.c_array(kinds)
    for j, col in enumerate(kinds.selected_columns):
        is_number = [v is not None for v in nanoarrow.Array(kind_array.child(j)).to_pylist()]
        large = found[col.index]
        if len(is_number) != len(large):
            raise ValueError("the column reads disagree on the number of rows")
        counts[col.index] = sum(1 for big, number in zip(large, is_number, strict=True) if big and number)


def _large(value: float | None) -> bool:
    """A finite number of 2**53 or more in absolute value: one that may hold a rounded
    identifier (NaN and infinity, which a hostile workbook can hold, round nothing)."""
    return value is not None and math.isfinite(value) and abs(value) >= EXACT_LIMIT


def _may_be_large(values: memoryview) -> bool:
    """Whether a numeric column's values buffer holds a value of 2**53 or more (or NaN), nulls'
    slots included: one pass over the raw values; a false alarm only costs the exact count."""
    return any(not abs(v) < EXACT_LIMIT for v in values)


#: The names :func:`column_names` gives by position (with `` (2)`` when such a name repeats).
_POSITIONAL = re.compile(r"column [1-9][0-9]*(?: \([0-9]+\))?")


def positional(name: str) -> bool:
    """A name given by position: the header cell was blank or read like a value (or there
    was no header row), so the name says nothing of what the column holds. A header that
    reads ``column 3`` itself counts too (nothing tells them apart)."""
    return _POSITIONAL.fullmatch(name) is not None


def column_names(header_cells: list[str | None] | None, width: int) -> list[str]:
    """The export's name for each of ``width`` columns (see the module's docstring). A
    repeat's `` (N)`` is undone by :func:`tui.core.pseudonym.repeated_name` (kept there, in a
    module without the reader): change the two together."""
    names: list[str] = []
    seen: set[str] = set()
    for i in range(width):
        cell = header_cells[i] if header_cells is not None and i < len(header_cells) else None
        if cell is None or not cell.strip() or validate.value_like(cell.strip()):
            name = f"column {i + 1}"
        else:
            name = cell
        if name in seen:
            n = 2
            while f"{name} ({n})" in seen:
                n += 1
            name = f"{name} ({n})"
        seen.add(name)
        names.append(name)
    return names
