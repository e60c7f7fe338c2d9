"""The report validator (SPEC "Excel reports"): is a delivered workbook a sound report?

``validate_file`` never raises for bad input: every problem becomes a ``VerifyResult`` whose
status is one of ``ok``, ``empty``, ``empty-closed``, ``schema`` or ``unreadable`` and whose
message says what is wrong and what to do. Cell values never reach logs or messages: they hold
patron data. Only column names (header cells) and configured names are ever repeated.

How a file is read:

1. The first bytes decide the container. A zip (xlsx) has its directory inspected with
   ``zipfile`` *before* anything is inflated: an entry whose declared size is absurd, or whose
   compression ratio is bomb-like, is refused. A CFB/OLE2 container is either an encrypted
   (password-protected) workbook or a legacy ``.xls``; text is a CSV/HTML renamed to ``.xlsx``.
2. fastexcel reads the first sheet with every cell as a string (``header_row=None``,
   ``dtypes="string"``), so identifiers keep their leading zeros and nothing is guessed.
3. The header row is the first row holding all ``expected_columns`` (case and spacing are
   ignored), else the first row with at least two non-empty text cells; title rows (merged
   or not) above it are skipped. Data rows are the non-blank rows below it, so trailing blank
   or whitespace-only rows never count. A result whose rows hold only one message cell each
   ("No Results") counts as empty.
"""

from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence

from tui.core import status as st
from tui.core.model import VerifyResult

log = logging.getLogger("report_keeper.validate")

# Zip bomb limits, checked on the zip directory before anything is inflated. A 100,000-row
# Alma report inflates to a few tens of MiB at a ratio of 10-20; Excel's own maximum sheet
# (1,048,576 rows) stays below these for any report a library would schedule.
MAX_ENTRY_BYTES = 1 << 30  # 1 GiB declared uncompressed size of one entry
MAX_TOTAL_BYTES = 2 << 30  # 2 GiB for the whole package
MAX_RATIO = 200  # uncompressed/compressed of one entry ...
RATIO_MIN_BYTES = 64 << 20  # ... checked for entries above 64 MiB (tiny entries compress well)

HEADER_SCAN_ROWS = 40  # title rows are a handful; the header is searched in the first rows
MESSAGE_MAX_ROWS = 3  # a "message only" result: at most this many one-cell rows

CFB_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")

_NUMBER = re.compile(r"^[+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_SPACES = re.compile(r"\s+")


class _Unreadable(Exception):
    """Internal: the file is not a readable report; ``str()`` is the user-facing message."""


@dataclass(frozen=True)
class _Sheet:
    name: str
    frame: Any  # polars.DataFrame, every column Utf8, rows as in the sheet (0-based)
    sheet_count: int = 1


# --------------------------------------------------------------------------- public API


def validate_file(
    path: str | Path,
    report: Any = None,
    delivered_at: datetime | None = None,
    *,
    name: str | None = None,
    report_name: str | None = None,
) -> VerifyResult:
    """Verify one local report file. Never raises for bad input.

    ``report`` is a ``tui.core.config.ReportConfig`` (``expected_columns``, ``min_rows``,
    ``lag_days``, ``anonymize_days``, ``is_closed(day)``) or None for the defaults (min_rows 1,
    any header, no closed days). ``delivered_at`` (aware) decides the covered day for
    ``closed_days``. ``name`` defaults to the file name, ``report_name`` to ``report.name``.
    """
    p = Path(path)
    name = name if name is not None else p.name
    rname = report_name if report_name is not None else getattr(report, "name", None)

    def result(status: str, message: str, **kw: Any) -> VerifyResult:
        log.debug("verified %s: %s rows=%s", name, status, kw.get("rows"))
        return VerifyResult(
            path=str(p), name=name, report=rname, delivered_at=delivered_at,
            status=status, message=message,
            rows=kw.pop("rows", None), header_row=kw.pop("header_row", None), **kw,
        )

    try:
        sheet = _read_first_sheet(p)
        return _classify(sheet, report, delivered_at, result)
    except _Unreadable as exc:
        return result(st.UNREADABLE, str(exc))
    except MemoryError:
        return result(
            st.UNREADABLE,
            "The workbook is too large to read in memory. Open it in Excel to check it, "
            "or ask for a smaller report.",
        )
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the rest
        # The exception text may quote cell contents: log only its type.
        log.warning("unexpected %s while verifying %s", type(exc).__name__, name)
        return result(
            st.UNREADABLE,
            f"The workbook could not be read ({type(exc).__name__}). Open it in Excel to "
            "check it; if Excel cannot open it either, download it again or re-run the report.",
        )


def validate_many(
    items: Iterable[tuple[str | Path, Any, datetime | None, dict[str, Any]]],
    *,
    max_workers: int | None = None,
) -> list[VerifyResult]:
    """Verify many files; the results come back in the order of ``items``.

    Each item is ``(path, report_or_None, delivered_at, extra_kwargs)``. ``max_workers`` > 1
    uses a thread pool. The default is 1: fastexcel 0.21 holds the GIL while parsing, so on
    the benchmark (365 small reports, 2 CPUs) threads measured no faster than a plain loop.
    """
    work = list(items)
    if max_workers is None or max_workers <= 1 or len(work) <= 1:
        return [validate_file(p, r, d, **kw) for p, r, d, kw in work]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="verify") as pool:
        return list(pool.map(lambda it: validate_file(it[0], it[1], it[2], **it[3]), work))


def preview_rows(
    path: str | Path, header_row: int | None, n: int = 10
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Column names and the first ``n`` non-blank data rows below ``header_row`` (1-based).

    For the TUI's detail pane (which masks identifier-like columns with ``identifier_like``).
    With ``header_row`` None the columns are Excel letters and rows start at the top. Cells are
    strings, ``""`` for empty ones. An unreadable file gives ``([], [])``.
    """
    try:
        limit = (header_row or 0) + max(n, 0) * 4 + HEADER_SCAN_ROWS
        sheet = _read_first_sheet(Path(path), n_rows=limit)
    except Exception as exc:  # noqa: BLE001 - preview is best effort, the status says why
        log.debug("no preview for %s: %s", Path(path).name, type(exc).__name__)
        return [], []
    frame = sheet.frame
    if frame.width == 0:
        return [], []
    rows = frame.rows()
    if header_row is not None and 1 <= header_row <= len(rows):
        header = [_clean(c) or "" for c in rows[header_row - 1]]
        body = rows[header_row:]
    else:
        header = [column_letter(i) for i in range(frame.width)]
        body = rows
    width = len(header)
    while width > 1 and not header[width - 1] and all(
        _clean(r[width - 1]) is None for r in body[: n * 4]
    ):
        width -= 1
    header = header[:width]
    out: list[tuple[str, ...]] = []
    for row in body:
        cells = tuple((_clean(c) or "") for c in row[:width])
        if any(cells):
            out.append(cells)
            if len(out) >= n:
                break
    return header, out


_ID_NAME = re.compile(
    r"(identifier|barcode|patron|borrower|\buser\s*(name|id)\b|e-?mail|card|\bid\b|\bids\b|"
    r"\bssn\b|\bphone\b|\bname\b|first\s*name|last\s*name|address)",
    re.I,
)
_CAMEL_ID = re.compile(r"[a-z](?:ID|Id)\b")  # PatronID, UserId (but not "Paid")
_ID_VALUE = re.compile(r"^(?:0\d{2,}|[A-Za-z]{0,4}-?\d{6,}[A-Za-z]?|[^@\s]+@[^@\s]+\.[^@\s]+)$")


def identifier_like(column_name: str | None, values: Sequence[str | None] = ()) -> bool:
    """Whether a column looks like it identifies people or items, so a display should mask it.

    True when the column's name says so (identifier, barcode, patron, user, e-mail, card, id,
    name ...), or when most of its non-empty values look like identifiers: digit strings with a
    leading zero, long digit codes (6+ digits, optionally with a short letter prefix) or e-mail
    addresses. Errs on the side of masking.
    """
    if column_name:
        spaced = column_name.replace("_", " ")
        if _ID_NAME.search(spaced) or _CAMEL_ID.search(spaced):
            return True
    seen = [v.strip() for v in values if v is not None and str(v).strip()]
    if not seen:
        return False
    hits = sum(1 for v in seen if _ID_VALUE.match(v))
    return hits * 5 >= len(seen) * 4  # at least 80 %


def column_letter(index: int) -> str:
    """Excel column letter of a 0-based index (0 → A, 26 → AA)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def normalize_column(name: str | None) -> str:
    """Column name as compared with ``expected_columns``: case and spacing ignored."""
    return _SPACES.sub(" ", str(name or "")).strip().casefold()


# --------------------------------------------------------------------------- reading


def _read_first_sheet(path: Path, n_rows: int | None = None) -> _Sheet:
    kind = _sniff(path)
    if kind != "zip":
        raise _Unreadable(kind)
    _check_zip(path)
    import fastexcel  # lazy: keeps `import tui.core.validate` cheap

    try:
        reader = fastexcel.read_excel(str(path))
        names = reader.sheet_names
    except fastexcel.FastExcelError as exc:
        raise _Unreadable(_damaged_message(exc)) from None
    if not names:
        raise _Unreadable(
            "The workbook has no sheets, so there is no report in it. Re-run the report in "
            "Alma (or ask whoever made the file for a proper export)."
        )
    try:
        sheet = reader.load_sheet(
            0,
            header_row=None,
            dtypes="string",
            skip_rows=0,  # keep leading blank rows so row numbers match Excel's
            whitespace_as_null=True,
            n_rows=n_rows,
        )
        frame = sheet.to_polars()
    except fastexcel.FastExcelError as exc:
        raise _Unreadable(_damaged_message(exc)) from None
    return _Sheet(name=names[0], frame=frame, sheet_count=len(names))


def _sniff(path: Path) -> str:
    """``"zip"`` or the unreadable message for what the file really is."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except FileNotFoundError:
        return "The file does not exist. Check the path (it may have been moved or deleted)."
    except IsADirectoryError:
        return "This is a folder, not a report file."
    except PermissionError:
        return "The file cannot be read: permission denied. Fix its permissions or run as its owner."
    except OSError as exc:
        return f"The file cannot be read ({exc.strerror or type(exc).__name__}). Check the disk and path."
    if not head:
        return (
            "The file is empty (0 bytes): the delivery or download was cut off. Download it "
            "again; if the server copy is empty too, re-run the report in Alma."
        )
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if head.startswith(CFB_MAGIC):
        return _cfb_message(path)
    if b"\0" not in head:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if text.startswith((b"<!doctype html", b"<html", b"<table")):
            return (
                "This is an HTML page saved with an .xlsx name, not an Excel workbook. In the "
                "Alma schedule choose the Excel format (not HTML), or open it in a browser."
            )
        if text.startswith(b"<?xml") or text.startswith(b"<"):
            return (
                "This is an XML file saved with an .xlsx name (perhaps 'XML Spreadsheet 2003'), "
                "not an xlsx workbook. Open it in Excel and save it as .xlsx, or set the Alma "
                "schedule's format to Excel."
            )
        if b"," in head or b"\t" in head or b";" in head or b"\n" in head:
            return (
                "This is a text (CSV) file saved with an .xlsx name, not an Excel workbook. In "
                "the Alma schedule set the format to Excel, or open it as CSV."
            )
    return (
        "This is not an Excel workbook (.xlsx): its content is neither a zip package nor a "
        "known spreadsheet format. Download it again; if that does not help, re-run the report."
    )


def _cfb_message(path: Path) -> str:
    """A CFB (OLE2) container: an encrypted workbook, a legacy .xls, or something else."""
    names = _cfb_stream_markers(path)
    if "EncryptedPackage" in names:
        return (
            "The workbook is password-protected (encrypted), so it cannot be checked. Remove "
            "the password (Excel: File > Info > Protect Workbook) or ask the sender for an "
            "unprotected copy."
        )
    if "Workbook" in names or "Book" in names:
        return (
            "This is an old Excel 97-2003 (.xls) workbook saved with an .xlsx name. Open it in "
            "Excel and save it as .xlsx, or set the Alma schedule's format to Excel (xlsx)."
        )
    return (
        "This is an OLE2/CFB document (an old Office format, not an Excel .xlsx workbook). "
        "Check that the right file was delivered; re-run the report in Alma if needed."
    )


_CFB_MARKERS = ("EncryptedPackage", "Workbook", "Book")


def _cfb_stream_markers(path: Path) -> set[str]:
    """Which known stream names occur in the CFB directory (UTF-16LE) of the file."""
    needles = {m: m.encode("utf-16-le") + b"\0\0" for m in _CFB_MARKERS}
    found: set[str] = set()
    tail = b""
    try:
        with path.open("rb") as fh:
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                window = tail + chunk
                for marker, needle in needles.items():
                    # directory names start on a 128-byte boundary; require the name to be whole
                    idx = window.find(needle)
                    while idx != -1:
                        if (fh.tell() - len(window) + idx) % 128 == 0:
                            found.add(marker)
                            break
                        idx = window.find(needle, idx + 1)
                tail = window[-64:]
    except OSError:
        pass
    return found


def _check_zip(path: Path) -> None:
    """Refuse damaged zips, encrypted entries and zip bombs before anything is inflated."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        raise _Unreadable(
            "The file is damaged or incomplete: its zip directory is missing (usually a "
            "download or delivery that was cut off). Download it again; if the server copy "
            "is damaged too, re-run the report in Alma."
        ) from None
    except (OSError, EOFError, ValueError, NotImplementedError):
        raise _Unreadable(
            "The file is damaged: its zip container cannot be read. Download it again; if "
            "the server copy is damaged too, re-run the report in Alma."
        ) from None
    names = {i.filename for i in infos}
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise _Unreadable(
                "The workbook's zip entries are encrypted, so it cannot be checked. Ask for an "
                "unprotected copy."
            )
        size, packed = info.file_size, max(info.compress_size, 1)
        total += size
        if size > MAX_ENTRY_BYTES or total > MAX_TOTAL_BYTES or (
            size > RATIO_MIN_BYTES and size / packed > MAX_RATIO
        ):
            log.warning("refused zip bomb %s (entry of %d bytes, ratio %.0f)", path.name, size, size / packed)
            raise _Unreadable(
                f"Refused: the workbook would inflate to {_human_bytes(size)} from "
                f"{_human_bytes(info.compress_size)} (a 'zip bomb'), far more than any report. "
                "It was not opened. Delete it and check where it came from."
            )
    if "xl/workbook.xml" not in names and "xl/workbook.bin" not in names:
        if "word/document.xml" in names:
            what = "a Word document"
        elif "mimetype" in names or "content.xml" in names:
            what = "an OpenDocument file"
        else:
            what = "a zip archive"
        raise _Unreadable(
            f"This is {what} saved with an .xlsx name, not an Excel workbook. Check that the "
            "right file was delivered; set the Alma schedule's format to Excel."
        )


def _damaged_message(exc: Exception) -> str:
    # fastexcel's message may quote cell text; only a few structural words are looked at.
    text = str(exc).lower()
    if "eocd" in text or "zip" in text and "invalid" in text:
        cause = "its zip container is incomplete"
    elif "deflate" in text or "crc" in text or "decompress" in text:
        cause = "compressed data inside it is corrupt"
    elif "xml" in text:
        cause = "the sheet's XML inside it is malformed"
    elif "password" in text or "encrypt" in text:
        return "The workbook is password-protected; ask for an unprotected copy."
    else:
        cause = "its content could not be parsed"
    return (
        f"The workbook is damaged: {cause}. Download it again; if the server copy is damaged "
        "too, re-run the report in Alma."
    )


def _human_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


# --------------------------------------------------------------------------- classifying


def _clean(cell: Any) -> str | None:
    if cell is None:
        return None
    text = str(cell).strip()
    return text or None


def _is_text(cell: str | None) -> bool:
    return cell is not None and not _NUMBER.match(cell) and not _DATE.match(cell)


def _find_header(
    head: list[tuple], expected: list[str]
) -> tuple[int | None, tuple[str, ...]]:
    """0-based header row index (or None) and the expected columns it lacks."""
    wanted = [normalize_column(e) for e in expected]
    candidates: list[tuple[int, set[str]]] = []
    for i, row in enumerate(head):
        cells = [_clean(c) for c in row]
        texts = sum(1 for c in cells if _is_text(c))
        if not wanted:
            if texts >= 2:
                return i, ()
            continue
        if not any(cells):
            continue
        present = {normalize_column(c) for c in cells if c is not None}
        if all(w in present for w in wanted):
            return i, ()
        if texts >= 2:
            candidates.append((i, present))
    if not candidates:
        return None, tuple(expected)
    best_i, best_present = candidates[0]
    if wanted:
        best_score = -1
        for i, present in candidates:
            score = sum(1 for w in wanted if w in present)
            if score > best_score:
                best_i, best_present, best_score = i, present, score
    missing = tuple(e for e, w in zip(expected, wanted) if w not in best_present)
    return best_i, missing


def _classify(sheet: _Sheet, report: Any, delivered_at: datetime | None, result) -> VerifyResult:
    frame = sheet.frame
    expected = [str(c) for c in (getattr(report, "expected_columns", None) or ())]
    min_rows = int(getattr(report, "min_rows", 1) or 0)
    if frame.width == 0 or frame.height == 0:
        return _empty(result, report, delivered_at, sheet, None, (), _blank_sheet(sheet))
    filled = _filled_counts(frame)
    head = frame.head(HEADER_SCAN_ROWS).rows()
    header_idx, missing = _find_header(head, expected)

    if header_idx is None:
        nonblank = [i for i, n in enumerate(filled[:HEADER_SCAN_ROWS]) if n]
        total_nonblank = sum(1 for n in filled if n)
        if total_nonblank == 0:
            return _empty(result, report, delivered_at, sheet, None, (), _blank_sheet(sheet))
        if total_nonblank <= MESSAGE_MAX_ROWS and all(filled[i] == 1 for i in nonblank):
            return _empty(
                result, report, delivered_at, sheet, None, (),
                "The report holds only a title or message (such as 'No Results'), no table.",
            )
        # No row with two text cells: a one-column list. Its first non-blank row is the header.
        header_idx = nonblank[0] if nonblank else next(i for i, n in enumerate(filled) if n)
        missing = tuple(
            e for e in expected
            if normalize_column(e) not in {normalize_column(c) for c in frame.row(header_idx)}
        )

    header_cells = [_clean(c) for c in frame.row(header_idx)]
    while header_cells and header_cells[-1] is None:
        header_cells.pop()
    columns = tuple(c or "" for c in header_cells)
    below = filled[header_idx + 1 :]
    rows = sum(1 for n in below if n)
    header_row = header_idx + 1
    common = dict(header_row=header_row, columns=columns, sheet=sheet.name)

    if missing:
        found = len([c for c in columns if c])
        return result(
            st.SCHEMA,
            f"Expected column{'s' if len(missing) > 1 else ''} missing: "
            + ", ".join(f"'{m}'" for m in missing)
            + f" (header on row {header_row}, {found} columns). The report's layout changed in "
            "Alma (a column renamed or removed): restore it in the Analytics report, or update "
            "expected_columns for this report in the config.",
            rows=rows, missing_columns=missing, **common,
        )

    if 0 < rows <= MESSAGE_MAX_ROWS and len(columns) >= 2:
        data_idx = [header_idx + 1 + i for i, n in enumerate(below) if n]
        if all(filled[i] == 1 and _is_text(_first_value(frame.row(i))) for i in data_idx):
            return _empty(
                result, report, delivered_at, sheet, header_row, columns,
                f"The report holds only a message (such as 'No Results') below the header on "
                f"row {header_row}, no data rows.",
            )

    if rows == 0:
        return _empty(
            result, report, delivered_at, sheet, header_row, columns,
            f"No data rows below the header on row {header_row}.",
        )
    if rows < min_rows:
        return _empty(
            result, report, delivered_at, sheet, header_row, columns,
            f"Only {rows} data row{'s' if rows != 1 else ''} below the header on row "
            f"{header_row}; at least {min_rows} expected (min_rows).",
            rows=rows,
        )
    return result(
        st.OK,
        f"{rows} data row{'s' if rows != 1 else ''} below the header on row {header_row}.",
        rows=rows, **common,
    )


def _blank_sheet(sheet: _Sheet) -> str:
    text = f"The first sheet ('{sheet.name}') is blank: no header and no data."
    if sheet.sheet_count > 1:
        text += (
            f" The workbook has {sheet.sheet_count} sheets and only the first is checked: if the "
            "report is on another sheet, move it first."
        )
    return text


SMALL_FRAME_ROWS = 2000  # below this, counting cells in Python beats a polars query


def _filled_counts(frame) -> list[int]:
    """Non-empty cells per row (whitespace-only cells were read as null)."""
    if frame.height <= SMALL_FRAME_ROWS:
        return [len(row) - row.count(None) for row in frame.rows()]
    import polars as pl

    return frame.select(pl.sum_horizontal(pl.all().is_not_null()).alias("n"))["n"].to_list()


def _first_value(row: tuple) -> str | None:
    for cell in row:
        value = _clean(cell)
        if value is not None:
            return value
    return None


def _covered_day(report: Any, delivered_at: datetime | None) -> date | None:
    if delivered_at is None:
        return None
    return delivered_at.date() - timedelta(days=int(getattr(report, "lag_days", 0) or 0))


def _empty(
    result, report, delivered_at, sheet: _Sheet, header_row, columns, what: str, rows: int = 0
) -> VerifyResult:
    covered = _covered_day(report, delivered_at) if report is not None else None
    common = dict(rows=rows, header_row=header_row, columns=tuple(columns), sheet=sheet.name)
    if covered is not None and _is_closed(report, covered):
        return result(
            st.EMPTY_CLOSED,
            f"{what} The report covers {covered.isoformat()}, a configured closed day, so "
            "this is expected.",
            **common,
        )
    if covered is not None:
        anonymize = int(getattr(report, "anonymize_days", 7) or 7)
        rescue_by = covered + timedelta(days=anonymize)
        todo = (
            f"The report covers {covered.isoformat()}: if the library was open that day, check "
            f"the report in Alma and re-run it by hand before {rescue_by.isoformat()} (when "
            "that day's loans are anonymized); if it was closed, add the day to closed_days in "
            "the config."
        )
    else:
        todo = (
            "If the library was open on the day it covers, check the report in Alma and re-run "
            "it by hand within a few days, before the loans are anonymized; if it was closed, "
            "add the day to closed_days in the config."
        )
    return result(st.EMPTY, f"{what} {todo}", **common)


def _is_closed(report: Any, day: date) -> bool:
    check = getattr(report, "is_closed", None)
    if check is None:
        return False
    try:
        return bool(check(day))
    except Exception:  # noqa: BLE001 - a config quirk must not turn into a traceback
        log.warning("closed-day check failed for %s", day.isoformat())
        return False
