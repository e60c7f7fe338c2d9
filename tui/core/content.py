"""What a report's rows hold, without keeping them: the row fingerprint and the date coverage.

A report can have rows and still be wrong: Alma re-sends yesterday's result (*stale*), its
date filter drifts to another day (*wrong day*), or a timed-out query returns a fraction of
the usual rows (*few rows*). Noticing that needs two facts about every verified file, both
computed in the workbook worker (``tui.core.isolation``) while it reads the file, and both
stored in the ledger so ``check --offline`` and the app judge from history without reading old
workbooks again:

- the **row fingerprint**: a SHA-256 of the data rows' cells in order (header and title rows
  excluded), over the values as the reader decodes them, so it does not depend on the xlsx
  package (writer, timestamps, document properties, styles, shared or inline strings);
- the **date coverage** of the report's date column (``date_column``, by default the first
  column whose header contains "date" and whose cells are dates): how many cells are dates,
  the first and last day, the few most frequent days with their counts and how many cells
  are not dates. Days only, never times and never any other cell.

Neither can be turned back into rows; docs/CONTENT_CHECKS.md says what they could still
reveal and how each judgement uses them. This module holds the worker-side computation
(:func:`fingerprint`, :func:`coverage_of`, :func:`find_date_column`), the stored summary
(:class:`DateCoverage`) and the one rule that needs only a file and its run:
:func:`wrong_day` (the history rules, *stale* and *few rows*, live in ``tui.core.health``).
Nothing here imports polars or Textual: the worker imports this module.
"""

from __future__ import annotations

import hashlib
import re
import struct
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import accumulate
from operator import itemgetter, sub
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the model imports this module
    from tui.core.model import JSONObject

#: How many of the most frequent days a coverage summary keeps.
TOP_DAYS = 5
#: A fingerprint is the hex SHA-256 of this prefix and the rows' canonical bytes.
FINGERPRINT_PREFIX = b"report-keeper rows 1\n"
#: Bumped when the fingerprint or the coverage is computed differently (the ledger re-verifies
#: held copies whose stored result is older or has none).
CONTENT_VERSION = 1
#: Excel's time-only cells read as days of 1899; no report's loans are that old.
EARLIEST_DAY = date(1900, 1, 1)
#: A date column's name as stored: at most this many characters (a header cell).
MAX_COLUMN_NAME = 100

_HEX64 = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(rb"(\d{4})-(\d{2})-(\d{2})")


@dataclass(frozen=True)
class DateCoverage:
    """The days the date column's cells fall on (no other cell, no time of day)."""

    column: str
    values: int  # cells holding a date
    not_dates: int  # non-empty cells that are not dates
    first: date | None = None
    last: date | None = None
    days: tuple[tuple[date, int], ...] = ()  # the most frequent days, most first (TOP_DAYS)
    distinct: int = 0  # how many different days

    def describes(self) -> date | None:
        """The day more than half of the dates fall on, if there is one (else None: the rows
        spread over several days, or the column holds no dates)."""
        if not self.days or self.values <= 0:
            return None
        day, n = self.days[0]
        return day if n * 2 > self.values else None

    def to_json(self) -> JSONObject:
        described = self.describes()
        return {
            "column": self.column,
            "values": self.values,
            "not_dates": self.not_dates,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "distinct": self.distinct,
            "days": [{"day": d.isoformat(), "rows": n} for d, n in self.days],
            "describes": described.isoformat() if described else None,
        }

    def stored(self) -> JSONObject:
        """The ledger's form (the column's name is stored in its own field)."""
        return {
            "values": self.values,
            "not_dates": self.not_dates,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "distinct": self.distinct,
            "days": [[d.isoformat(), n] for d, n in self.days],
        }

    @classmethod
    def from_stored(cls, column: object, raw: object) -> DateCoverage | None:
        """From a worker's reply or the ledger; None for anything malformed (a worker that
        read a hostile file is not trusted to send well-formed data). Read for every file of
        the history by ``check``: plain type tests, no generators."""
        try:
            if type(column) is not str or type(raw) is not dict:
                return None
            values, not_dates, distinct = raw["values"], raw["not_dates"], raw["distinct"]
            days_raw = raw["days"]
            if not (_count(values) and _count(not_dates) and _count(distinct)) or type(days_raw) is not list:
                return None
            if len(days_raw) > TOP_DAYS or len(days_raw) > distinct or (days_raw and not values):
                return None
            days = []
            total = 0
            for item in days_raw:
                if type(item) is not list or len(item) != 2:
                    return None
                text, n = item
                if type(text) is not str or len(text) != 10 or not _count(n):
                    return None
                days.append((date.fromisoformat(text), n))
                total += n
            if total > values:
                return None
            first, last = raw.get("first"), raw.get("last")
            return cls(
                column[:MAX_COLUMN_NAME], values, not_dates,
                _iso_day(first) if first is not None else None,
                _iso_day(last) if last is not None else None,
                tuple(days), distinct,
            )
        except (ValueError, TypeError, KeyError):
            return None


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value < 1 << 40


def _iso_day(text: object) -> date:
    if not isinstance(text, str) or len(text) != 10:
        raise ValueError("not a day")
    return date.fromisoformat(text)


def valid_fingerprint(value: object) -> str | None:
    """A fingerprint from untrusted input (a worker's reply), or None."""
    return value if isinstance(value, str) and _HEX64.fullmatch(value) else None


# --------------------------------------------------------------------------------- the rule


def wrong_day(coverage: DateCoverage | None, covered: date | None) -> date | None:
    """The day the rows describe, when it is not ``covered`` (else None).

    The rows describe a day when more than half of the date column's dates fall on it. Rows
    spread over several days (a weekly summary, a due-date column) describe none, so they are
    never judged wrong; neither is a column with no dates or a report whose covered day is
    unknown."""
    if coverage is None or covered is None:
        return None
    described = coverage.describes()
    return described if described is not None and described != covered else None


# ------------------------------------------------------------------------- in the worker


class ColumnSource(Protocol):
    """What the worker's sheet (``validate.Grid``) offers for this module."""

    width: int

    def column_parts(self, index: int, first: int, stop: int) -> ColumnParts | None: ...


@dataclass(frozen=True)
class ColumnParts:
    """One column's cells in rows ``first..stop-1``: which hold a value, where each value
    starts in ``data`` (Arrow offsets, rebased to 0: one more than there are rows; an empty
    cell is a zero-length value) and the values' UTF-8 bytes back to back."""

    valid: int  # bit i set: row first+i holds a value
    offsets: memoryview  # format "i" or "q", offsets[0] == 0
    data: memoryview

    @property
    def lengths(self) -> array[int]:
        return array("q", map(sub, self.offsets[1:], self.offsets[:-1]))


def rebased(offsets: memoryview) -> memoryview:
    """Arrow offsets minus their first value, without a Python loop: the lanes are read as one
    integer and a repeated copy of the first offset is subtracted (no lane borrows, since
    offsets never decrease)."""
    base = offsets[0]
    if base == 0:
        return offsets
    size = offsets.itemsize
    raw = offsets.cast("B")
    ones = int.from_bytes((b"\x01" + bytes(size - 1)) * len(offsets), sys.byteorder)
    value = int.from_bytes(raw, sys.byteorder) - base * ones
    # The offsets' own integer format (typeshed only types the literal formats).
    return memoryview(value.to_bytes(len(raw), sys.byteorder)).cast(offsets.format)  # type: ignore[call-overload,no-any-return]


def equal_lengths(offsets: memoryview, width: int) -> bool:
    """Whether Arrow offsets are exactly ``0, width, 2 * width, ...`` (every value ``width``
    bytes long), without a step per value: the first is 0, and the offsets from the second on,
    read as one unsigned integer, minus the offsets up to the last but one are ``width`` in
    every lane. A lane that differs by anything else cannot be made up by the lanes above it:
    that would take one to wrap round its range, which no lane of ``i * width`` (below the
    range, checked) is near."""
    n = len(offsets) - 1
    size = offsets.itemsize
    if n < 0 or offsets[0] != 0 or n * width >= 1 << (8 * size - 1):
        return False
    raw = offsets.cast("B")
    later = int.from_bytes(raw[size:], sys.byteorder)
    earlier = int.from_bytes(raw[: n * size], sys.byteorder)
    lanes = int.from_bytes((1).to_bytes(size, sys.byteorder) * n, sys.byteorder)
    return later - earlier == width * lanes


def fingerprint(grid: ColumnSource, first: int, stop: int) -> str | None:
    """The SHA-256 (hex) of the cells of rows ``first..stop-1``, or None for no rows.

    Column by column: whether each row holds a value, each value's length and the values'
    bytes, as the reader decodes them (numbers in one notation whatever the XML held, date
    cells as ``YYYY-MM-DD HH:MM:SS``). Columns empty in every one of these rows at the right
    edge are left out, so a writer that formats blank cells beyond the table does not change
    it. Blank rows inside the range count as blank rows."""
    n = stop - first
    if n <= 0:
        return None
    columns = [grid.column_parts(i, first, stop) for i in range(grid.width)]
    while columns and (columns[-1] is None or not columns[-1].valid):
        columns.pop()
    if not columns:
        return None
    h = hashlib.sha256(FINGERPRINT_PREFIX)
    h.update(n.to_bytes(8, "little"))
    h.update(len(columns).to_bytes(4, "little"))
    nbytes = (n + 7) // 8
    for parts in columns:
        if parts is None or not parts.valid:
            h.update(b"\0")
            continue
        h.update(b"\1")
        h.update(parts.valid.to_bytes(nbytes, "little"))
        offsets = parts.offsets
        h.update(offsets.itemsize.to_bytes(1, "little"))
        if sys.byteorder != "little":  # pragma: no cover - the same hash on any machine
            swapped = array(offsets.format, offsets)
            swapped.byteswap()
            offsets = memoryview(swapped)
        h.update(offsets.cast("B"))
        h.update(parts.data)
    return h.hexdigest()


def coverage_of(name: str, parts: ColumnParts | None) -> DateCoverage:
    """The days a column's cells fall on. A cell is a date when it starts with an ISO day
    (``YYYY-MM-DD``, alone or followed by a space or ``T`` and a time), as the reader writes
    every date cell; a day before 1900 (Excel's time-only cells) is not a date."""
    if parts is None or not parts.valid:
        return DateCoverage(name[:MAX_COLUMN_NAME], 0, 0)
    data = bytes(parts.data)
    offsets = parts.offsets
    rows = len(offsets) - 1
    width = len(data) // rows if rows and len(data) % rows == 0 else 0
    if width >= 10 and equal_lengths(offsets, width):
        # Every cell filled and equally long (date cells all read as "YYYY-MM-DD HH:MM:SS"):
        # the keys are cut in C, twice as fast as one slice per cell.
        key = min(width, 11)
        if all(_uniform(data[j::width], rows) for j in range(key)):
            # every cell starts with the same key (a report of one day): no count per cell
            keys: Counter[bytes] = Counter({data[:key]: rows})
        else:
            layout = f"{key}s{width - key}x" if width > key else f"{key}s"
            keys = Counter(map(itemgetter(0), struct.iter_unpack(layout, data)))
        filled = rows
    else:
        lengths = parts.lengths
        keys = Counter(
            data[s : s + (11 if n > 10 else 10)]
            for s, n in zip(accumulate(lengths, initial=0), lengths, strict=False)  # starts: one more
            if n >= 10
        )
        filled = parts.valid.bit_count()
    per_day: Counter[date] = Counter()
    for cut, count in keys.items():
        day = _day_of(cut)
        if day is not None:
            per_day[day] += count
    values = sum(per_day.values())
    top = tuple(sorted(per_day.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DAYS])
    return DateCoverage(
        column=name[:MAX_COLUMN_NAME],
        values=values,
        not_dates=filled - values,
        first=min(per_day) if per_day else None,
        last=max(per_day) if per_day else None,
        days=top,
        distinct=len(per_day),
    )


def _uniform(column: bytes, rows: int) -> bool:
    """Whether ``column`` (one byte of each of ``rows`` cells) is one byte repeated."""
    return column.count(column[:1]) == rows


def _day_of(key: bytes) -> date | None:
    if len(key) == 11 and key[10:] not in (b" ", b"T"):
        return None
    m = _DAY.fullmatch(key[:10])
    if m is None:
        return None
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None
    return day if day >= EARLIEST_DAY else None


def find_date_column(
    grid: ColumnSource, columns: Sequence[str], first: int, stop: int, wanted: str | None,
    normalize: Callable[[str], str],
) -> DateCoverage | None:
    """The coverage of the report's date column in rows ``first..stop-1``.

    ``wanted``: the configured ``date_column`` (matched like ``expected_columns``: case and
    spacing ignored); None: the first column whose name contains "date" and most of whose
    filled cells are dates; ``""``: no date column (None). A configured column is always
    measured (it may hold no dates); a guessed one only when its cells are dates."""
    if wanted == "" or stop <= first:
        return None
    if wanted is not None:
        target = normalize(wanted)
        for i, name in enumerate(columns):
            if normalize(name) == target:
                return coverage_of(name, grid.column_parts(i, first, stop))
        return None
    for i, name in enumerate(columns):
        if "date" not in name.casefold():
            continue
        cov = coverage_of(name, grid.column_parts(i, first, stop))
        if cov.values > 0 and cov.values > cov.not_dates:
            return cov
    return None
