"""The report validator (docs/DOMAIN.md, "Validator statuses"): is a delivered workbook a
sound report?

``validate_file`` never raises for bad input: every problem becomes a ``VerifyResult`` whose
status is one of ``ok``, ``empty``, ``empty-closed``, ``schema``, ``unreadable`` or
``wrong-day`` and whose message says what is wrong and what to do. Every result with data rows
also carries the rows' fingerprint and the date column's coverage (``tui.core.content``,
docs/CONTENT_CHECKS.md): measured in the worker, judged here against the covered day. Cell
values never reach logs, messages or the ledger: they hold patron data. Only column names
(header cells that look like names) and configured names are ever repeated; a sheet without
a recognised header has its columns named by position ("column 1", ...).

The workbook is never parsed in the calling process. ``validate_file``, ``validate_many`` and
``preview_rows`` hand the file to a worker process of :mod:`tui.core.isolation` (address-space
and time limits); a worker that dies on a file marks only that file unreadable. What runs in
the worker (``worker_verify``, ``worker_preview``):

1. The file must be a regular file (a named pipe or a device is never opened for reading).
   The first bytes decide the container. A CFB/OLE2 container is an encrypted workbook or a
   legacy ``.xls``; text is a CSV/HTML renamed to ``.xlsx``; a zip directory at the end makes
   a zip even after other bytes (the reader finds a zip that way too).
2. A zip is checked before the reader sees it, cheaply: every XML part is inflated once,
   streaming and discarding, to measure its real size (the zip directory's sizes are not
   trusted); a part that inflates far beyond any report, or at a bomb-like ratio, is refused.
   Worksheets are scanned on the way for cell references beyond Excel's grid (row 1,048,576,
   column XFD), and very long shared strings are checked for how often they are repeated.
   Nothing structural is demanded beyond what the reader itself needs: when the reader fails,
   the package's parts only choose the message ("a Word document", "a zip archive", ...).
3. fastexcel reads the first sheet with every cell as a string (``header_row=None``,
   ``dtypes="string"``), so identifiers keep their leading zeros and nothing is guessed. Its
   Arrow data is read through nanoarrow (validity bitmaps and a few rows), not polars: the
   worker stays small and starts fast.
4. The header row is the first row holding all ``expected_columns`` (case and spacing are
   ignored), else the first row with at least two non-empty text cells that look like column
   names rather than values; title rows (merged or not) above it are skipped. Data rows are
   the non-blank rows below it, so trailing blank or whitespace-only rows never count. A
   result whose rows hold only one message cell each ("No Results") counts as empty.

docs/WORKBOOK_ISOLATION.md explains the limits and why each check is where it is.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import resource
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypedDict, TypeVar

from tui.core import content, isolation
from tui.core import status as st
from tui.core.sizes import byte_size

#: A worker's answer for one file: status, message and counts (never a cell value).
Verdict = dict[str, object]
#: One row of the sheet as strings (None: an empty cell).
_Row = tuple[str | None, ...]

if TYPE_CHECKING:  # the workers import this module: they never need the config's (nor the model's) modules
    import fastexcel

    from tui.core.config import ReportConfig
    from tui.core.model import VerifyResult

log = logging.getLogger("report_keeper.validate")

# Zip bomb limits. The directory's declared sizes are checked first (cheap, refuses honest
# bombs at once); then the real sizes are measured while inflating. A 100,000-row Alma report
# inflates to a few tens of MiB at a ratio of 10-20; Excel's own maximum sheet stays below
# these for any report a library would schedule.
MAX_ENTRY_BYTES = 1 << 30  # 1 GiB uncompressed size of one part
MAX_TOTAL_BYTES = 2 << 30  # 2 GiB for the whole package
MAX_RATIO = 200  # uncompressed/compressed of one part ...
RATIO_MIN_BYTES = 64 << 20  # ... checked for parts above 64 MiB (tiny parts compress well)
INFLATE_CHUNK = 1 << 20  # inflate at most this much at a time (nothing is kept)
# Deflate cannot expand data more than 1032 times: a part of at most this many compressed
# bytes stays below RATIO_MIN_BYTES however it was made, so only parts that are scanned anyway
# (worksheets, shared strings) or larger ones are inflated by the pre-check.
SMALL_PART = RATIO_MIN_BYTES // 1032

EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384  # column XFD
LONG_SHARED_STRING = 16 << 10  # only shared strings longer than this are worth counting copies of

HEADER_SCAN_ROWS = 40  # title rows are a handful; the header is searched in the first rows
MESSAGE_MAX_ROWS = 3  # a "message only" result: at most this many one-cell rows
COLUMN_NAME_MAX = 100  # a longer header cell is text, not a column name

CFB_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")

_NUMBER = re.compile(r"^[+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$")
_SPACES = re.compile(r"\s+")

# Cell references the reader would place beyond Excel's grid: 3+ column letters (AAA is 703,
# so only then can XFD be passed) or 7+ row digits (1,000,000 and up). Rare in real sheets, so
# the scan costs one regex pass per worksheet.
_FAR_REF = re.compile(rb'r=["\']([A-Za-z]{3,}|[A-Za-z]{0,2}(?=\d{7}))([0-9]*)["\']')
_DIMENSION = re.compile(rb'<(?:[\w.-]+:)?dimension\b[^>]*?\bref\s*=\s*["\']([^"\']{0,200})["\']')
_SI_START = re.compile(rb"<(?:[\w.-]+:)?si[\s>/]")
_SHARED_CELL = re.compile(
    rb'<(?:[\w.-]+:)?c\b[^>]{0,512}?\bt\s*=\s*["\']s["\'][^>]{0,512}>\s*<(?:[\w.-]+:)?v>\s*(\d{1,12})\s*<'
)
_REF = re.compile(r"^([A-Za-z]*)([0-9]*)$")


class Unreadable(Exception):
    """Internal: the file is not a readable report; ``str()`` is the user-facing message,
    ``reason`` a short code for the log."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0])


# --------------------------------------------------------------------------- public API


def validate_file(
    path: str | Path,
    report: ReportConfig | None = None,
    delivered_at: datetime | None = None,
    *,
    run_day: date | None = None,
    name: str | None = None,
    report_name: str | None = None,
    pool: isolation.WorkerPool | None = None,
    cancel: Callable[[], bool] | None = None,
    judge_day: bool = True,
) -> VerifyResult:
    """Verify one local report file in a worker process. Never raises for bad input.

    ``report`` is the report's settings (``expected_columns``, ``min_rows``, ``closed_days``,
    ``date_column`` ...) or None for the defaults (min_rows 1, any header, no closed days).
    ``delivered_at`` (aware) places the file in its run, whose covered day decides
    ``closed_days`` and the day the rows should describe: the run is ``run_day`` when the
    caller knows it from the report's history, else ``report.placed_run_day(delivered_at)``:
    a delivery in no run (of unknown date, or dated ahead) has no covered day, so its rows'
    day is measured but not judged, and no closed day excuses an empty file.
    ``judge_day=False`` when ``delivered_at`` is only a local copy's modification time (a
    file named without a timestamp): the covered day is then a guess, so the rows' day is
    measured but never judged ``wrong-day``. ``name`` defaults to the file name,
    ``report_name`` to ``report.name``. ``pool`` defaults to the process's shared pool.
    Raises ``isolation.PoolClosed`` only when the pool was closed (the program is exiting) or
    ``cancel()`` turned true while the file was read (``isolation.Cancelled``): there is no
    result to record then.
    """
    job = _Job.of(path, report, delivered_at, run_day, name, report_name)
    pool = pool or isolation.shared_pool()
    try:
        reply = _judged_here(job.path)
        fields = _checked_fields(reply if reply is not None else pool.call("verify", job.args, cancel=cancel))
    except isolation.PoolClosed:
        raise
    except (isolation.WorkerFailed, OSError) as exc:
        fields = _failed_fields(exc, pool, job.name)
    return job.verdict(fields, judge_day)


async def validate_file_async(
    path: str | Path,
    report: ReportConfig | None = None,
    delivered_at: datetime | None = None,
    *,
    run_day: date | None = None,
    name: str | None = None,
    report_name: str | None = None,
    pool: isolation.WorkerPool | None = None,
    judge_day: bool = True,
    sniffed: tuple[str, str] | None = None,
) -> VerifyResult:
    """:func:`validate_file` for asyncio code: the event loop reads the worker's reply, no
    thread waits on it. Cancelling the awaiting task stops the worker (as ``cancel`` does).

    ``sniffed``: ``(message, sha256)`` of the file's whole bytes as they were hashed when they
    arrived (a download), which :func:`sniffed_bytes` found to be no zip package: the verdict
    is the one :func:`_judged_here` would give reading those bytes again, made without
    reading the file again, for the bytes that ``sha256`` names."""
    job = _Job.of(path, report, delivered_at, run_day, name, report_name)
    pool = pool or isolation.shared_pool()
    try:
        reply = _not_zip_reply(*sniffed) if sniffed is not None else _judged_here(job.path)
        fields = _checked_fields(reply if reply is not None else await pool.acall("verify", job.args))
    except isolation.PoolClosed:
        raise
    except (isolation.WorkerFailed, OSError) as exc:
        fields = _failed_fields(exc, pool, job.name)
    return job.verdict(fields, judge_day)


#: A file up to this size that is no zip package at all is judged in the calling process
#: (``_judged_here``); a larger one is read by a worker, off the caller's thread.
JUDGED_HERE_BYTES = 1 << 20


def _judged_here(path: Path) -> isolation.Reply | None:
    """A worker's reply for a small regular file that is no zip package (random bytes, text,
    HTML, an old .xls), made here from its first bytes: the verdict is the unreadable message
    ``sniff`` gives, as the worker's, and the hash of the bytes read, as the worker's. No
    workbook is parsed (only its first and last bytes are looked at, and an OLE2 container's
    are searched for three stream names), so a worker's round trip, and perhaps its start,
    is not worth it. None for anything else (a zip package, a larger file, one that cannot
    be opened or read): a worker judges it, as ever."""
    try:
        fh = open_regular(path)
    except Unreadable:
        return None
    try:
        with fh:
            if os.fstat(fh.fileno()).st_size > JUDGED_HERE_BYTES:
                return None
            if sniff(fh) == "zip":
                return None
            fh.seek(0)
            data = fh.read(JUDGED_HERE_BYTES + 1)
    except OSError:
        return None
    # Judged from the bytes read and hashed, not from the first look (the file may have been
    # written to in between: empty when looked at, a workbook when read).
    kind = sniffed_bytes(data)
    if kind is None:  # a zip package by now, or grown past the size: a worker reads it
        return None
    return _not_zip_reply(kind, hashlib.sha256(data).hexdigest())


def _not_zip_reply(kind: str, sha256: str) -> isolation.Reply:
    """The worker's reply for bytes that are no zip package: ``kind``, what :func:`sniff` said."""
    verdict = {"status": st.UNREADABLE, "message": kind, "reason": "not-xlsx", "sha256": sha256}
    return {"ok": True, "result": verdict}


def sniffed_bytes(data: bytes) -> str | None:
    """What the whole bytes of a small file are when they are no zip package: the unreadable
    message :func:`sniff` gives for them (what :func:`_judged_here` finds reading the file);
    None for a zip package or more than ``JUDGED_HERE_BYTES`` (a worker judges those). For
    bytes in hand (a download's): nothing is read again."""
    if len(data) > JUDGED_HERE_BYTES:
        return None
    kind = sniff(io.BytesIO(data))
    return None if kind == "zip" else kind


@dataclass(frozen=True)
class _Job:
    """One file to verify: what the worker is asked, and what its verdict is judged by."""

    path: Path
    name: str
    report_name: str | None
    report: ReportConfig | None
    delivered_at: datetime | None
    run: date | None
    covered: date | None
    args: dict[str, object]

    @classmethod
    def of(cls, path: str | Path, report: ReportConfig | None, delivered_at: datetime | None,
           run_day: date | None, name: str | None, report_name: str | None) -> _Job:
        p = Path(path)
        run: date | None = None
        if report is not None and delivered_at is not None:
            run = run_day or report.placed_run_day(delivered_at)
        return cls(
            path=p, name=name if name is not None else p.name,
            report_name=report_name if report_name is not None else (report.name if report is not None else None),
            report=report, delivered_at=delivered_at, run=run,
            covered=report.covered_day(run) if report is not None and run is not None else None,
            args={"path": os.fsdecode(p), "rules": _rules(report, run)},
        )

    def verdict(self, fields: _Fields, judge_day: bool) -> VerifyResult:
        # (Workers import this module and never make a result: they start without the model.)
        from tui.core.model import VerifyResult  # noqa: PLC0415 - a worker's start-up time

        report, run, covered, name = self.report, self.run, self.covered, self.name
        status, message, dates = fields.status, fields.message, fields.dates
        described = content.wrong_day(dates, covered) if judge_day else None
        if status == st.OK and report is not None and dates is not None and run is not None \
                and described is not None:
            status, message = st.WRONG_DAY, _wrong_day_message(report, dates, described, run)
        result = VerifyResult(
            path=str(self.path), name=name, report=self.report_name, delivered_at=self.delivered_at,
            status=status, message=message, rows=fields.rows,
            header_row=fields.header_row, columns=fields.columns, sheet=fields.sheet,
            missing_columns=fields.missing_columns, fingerprint=fields.fingerprint,
            date_column=dates.column if dates else None, dates=dates, covered_day=covered,
            read_sha256=fields.sha256,
        )
        log.debug("verified %s: %s rows=%s", name, result.status, result.rows)
        if result.status == st.UNREADABLE and fields.reason:
            log.warning("%s is unreadable (%s)", name, fields.reason)
        return result


def _failed_fields(exc: isolation.WorkerFailed | OSError, pool: isolation.WorkerPool, name: str) -> _Fields:
    """The verdict when the worker gave no reply: it died or ran out of time, or none could
    be started (process or memory limits of the host)."""
    if isinstance(exc, isolation.WorkerFailed):
        return _Fields(st.UNREADABLE, failure_message(exc.failure, pool))
    log.error("cannot start a workbook worker for %s: %s", name, exc.strerror or type(exc).__name__)
    return _Fields(
        st.UNREADABLE,
        "The workbook was not read: no worker process could be started to read "
        f"it ({exc.strerror or type(exc).__name__}). Free some memory or processes and verify again.",
    )


class VerifyOptions(TypedDict, total=False):
    """The optional arguments of :func:`validate_file` a :func:`validate_many` item may give."""

    name: str
    report_name: str
    run_day: date
    judge_day: bool


def validate_many(
    items: Iterable[tuple[str | Path, ReportConfig | None, datetime | None, VerifyOptions]],
    *,
    max_workers: int | None = None,
    pool: isolation.WorkerPool | None = None,
) -> list[VerifyResult]:
    """Verify many files; the results come back in the order of ``items``.

    Each item is ``(path, report_or_None, delivered_at, extra_kwargs)``. The files are read by
    the pool's worker processes, as many at a time as it has workers (``max_workers`` caps
    the number of files in flight). A file that kills its worker is marked unreadable; the
    others go on.
    """
    work = list(items)
    pool = pool or isolation.shared_pool()
    threads = min(len(work), pool.size if not max_workers or max_workers < 1 else max_workers)
    if threads <= 1:
        return [validate_file(p, r, d, pool=pool, **kw) for p, r, d, kw in work]
    pool.prestart(threads)
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - workers import this module, never this

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify") as ex:
        return list(ex.map(lambda it: validate_file(it[0], it[1], it[2], pool=pool, **it[3]), work))


def preview_rows(
    path: str | Path, header_row: int | None, n: int = 10, *, pool: isolation.WorkerPool | None = None
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Column names and the first ``n`` non-blank data rows below ``header_row`` (1-based).

    For the TUI's detail pane (which masks identifier-like columns with ``identifier_like``).
    With ``header_row`` None the columns are Excel letters and rows start at the top. Cells are
    strings, ``""`` for empty ones, at most ``PREVIEW_MAX_COLUMNS`` wide and
    ``PREVIEW_MAX_CHARS`` long. Read in a worker process; an unreadable file gives ``([], [])``.
    """
    pool = pool or isolation.shared_pool()
    try:
        reply = pool.call("preview", {"path": os.fsdecode(Path(path)), "header_row": header_row, "n": int(n)})
    except isolation.PoolClosed:
        return [], []
    except isolation.WorkerFailed as exc:
        log.debug("no preview for %s: %s", Path(path).name, exc.failure.kind)
        return [], []
    except OSError:
        return [], []
    result = reply.get("result") if reply.get("ok") else None
    if not isinstance(result, dict):
        return [], []
    header = [str(c) for c in result.get("header") or []]
    rows = [tuple(str(c) for c in row) for row in result.get("rows") or []]
    return header, rows


PREVIEW_MAX_COLUMNS = 256
PREVIEW_MAX_CHARS = 500


class _RulesJSON(TypedDict):
    expected: list[str]
    min_rows: int
    covered: str | None
    closed: bool
    rescue_by: str | None
    date_column: str | None


def _rules(report: ReportConfig | None, run_day: date | None) -> _RulesJSON:
    """What the classification needs from the report's settings, as plain data for a worker.
    The dates come from the report's model: the covered day of the delivery's run, whether it
    is closed, and its rescue-by day."""
    if report is None:
        return _RulesJSON(expected=[], min_rows=1, covered=None, closed=False, rescue_by=None,
                          date_column=None)
    covered = report.covered_day(run_day) if run_day is not None else None
    rescue_by = report.rescue_by(run_day) if run_day is not None else None
    return _RulesJSON(
        expected=[str(c) for c in report.expected_columns],
        min_rows=report.min_rows,
        covered=covered.isoformat() if covered is not None else None,
        closed=covered is not None and report.is_closed(covered),
        rescue_by=rescue_by.isoformat() if rescue_by is not None else None,
        date_column=report.date_column,
    )


@dataclass(frozen=True)
class _Fields:
    """A worker's verdict, checked."""

    status: st.VerifyStatus
    message: str
    rows: int | None = None
    header_row: int | None = None
    columns: tuple[str, ...] = ()
    sheet: str | None = None
    missing_columns: tuple[str, ...] = ()
    reason: str | None = None
    fingerprint: str | None = None
    dates: content.DateCoverage | None = None
    sha256: str | None = None  # of the bytes the worker read (None: it read none)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(c) for c in value) if isinstance(value, list) else ()


def _wrong_day_message(report: ReportConfig, dates: content.DateCoverage, described: date,
                       run_day: date) -> str:
    from tui.core.names import escape_name  # noqa: PLC0415 - a worker's start-up time (it never says this)

    top = dates.days[0][1] if dates.days else 0
    covered = report.covered_day(run_day)
    return (
        f"The rows describe {described:%a} {described.isoformat()}: {top} of the {dates.values} "
        f"dates in '{escape_name(dates.column)}' fall on that day, but the report covers "
        f"{covered:%a} {covered.isoformat()}. Open the analysis in Alma Analytics and check its "
        f"date filter; re-run it for loans of {covered.isoformat()} before "
        f"{report.rescue_by(run_day).isoformat()} (when that day's loans are anonymized)."
    )


#: Statuses a worker may report (wrong-day is decided here, from the coverage it measured).
_WORKER_STATUSES = (st.OK, st.EMPTY, st.EMPTY_CLOSED, st.SCHEMA, st.UNREADABLE)


def _checked_fields(reply: Mapping[str, object]) -> _Fields:
    """The worker's reply as result fields, types checked (a worker is not trusted blindly)."""
    result = reply.get("result") if reply.get("ok") else None
    if not isinstance(result, dict) or result.get("status") not in _WORKER_STATUSES:
        kind = reply.get("type") or reply.get("kind") or "no result"
        log.warning("workbook worker gave no usable result (%s)", kind)
        return _Fields(
            st.UNREADABLE,
            f"The workbook could not be read ({kind}). Open it in Excel to check it; if "
            "Excel cannot open it either, download it again or re-run the report.",
        )
    sheet, reason = result.get("sheet"), result.get("reason")
    return _Fields(
        status=st.VerifyStatus(result["status"]),
        message=str(result.get("message") or ""),
        rows=_count(result.get("rows")),
        header_row=_count(result.get("header_row")),
        columns=_names(result.get("columns")),
        sheet=str(sheet) if sheet is not None else None,
        missing_columns=_names(result.get("missing_columns")),
        reason=str(reason) if reason else None,
        fingerprint=content.valid_fingerprint(result.get("fingerprint")),
        dates=content.DateCoverage.from_stored(result.get("date_column"), result.get("dates")),
        sha256=_sha256_of(result.get("sha256")),
    )


def _sha256_of(value: object) -> str | None:
    return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) else None


def failure_message(failure: isolation.Failure, pool: isolation.WorkerPool) -> str:
    """What a worker's death means for the file, and the way out when the report is genuine:
    the profile key that raises the limit (and the ``verify`` flag), then verify again."""
    if failure.kind == isolation.MEMORY:
        return (
            "The workbook needs more memory than allowed to read "
            f"({_human_bytes(pool.memory_limit)}); it may be damaged or hostile. It was not "
            "read further and nothing else was affected. Open it in Excel to check it. "
            + memory_way_out(pool.memory_limit)
        )
    if failure.kind == isolation.TIME:
        seconds = failure.seconds or pool.time_limit
        return (
            f"Reading the workbook took longer than {seconds:g} s, so it was stopped; it may be "
            "damaged or hostile. Open it in Excel to check it. If the report is genuine, raise "
            f"reader_seconds in the profile (now {seconds:g}) and verify it again "
            f"{_verify_again(_SECONDS_FLAG)}, or ask for a smaller report."
        )
    return (
        "The workbook reader crashed on this file; it may be damaged or hostile. It was not "
        "read further and nothing else was affected. Download it again; if that does not "
        "help, open it in Excel to check it."
    )


def memory_way_out(limit: int) -> str:
    """The sentence that says how to read a genuine report past the memory limit (bytes)."""
    return (
        f"If the report is genuine, raise reader_memory_mib in the profile (now {limit >> 20}) "
        f"and verify it again {_verify_again(_MEMORY_FLAG)}, or ask for a smaller report."
    )


#: The flags of ``verify`` that read a file under another limit than the profile's.
_MEMORY_FLAG, _SECONDS_FLAG = "--max-memory MIB", "--max-seconds S"
#: What reads a held copy again under raised limits without the app: ``sync`` reads every
#: unreadable copy again whose recorded verdict was reached under other limits.
_NEXT_SYNC = "the next report-keeper sync does, and records the result"


def _verify_again(flag: str) -> str:
    """How to verify a file again, in the app's words: messages are built and recorded with
    them (the Verify screen shows recorded verdicts); ``said_for_shell`` gives a command's."""
    return f"(v on the Verify screen, or verify {flag})"


def said_for_shell(message: str, command: str) -> str:
    """A verification message as a headless command shows it: ``command`` (the command line
    that verifies the file again) in place of the app's key. Verdicts recorded by any release
    hold the app's words, so it applies to those too."""
    for flag in (_MEMORY_FLAG, _SECONDS_FLAG):
        message = message.replace(_verify_again(flag), f"({_NEXT_SYNC}; to see it now: {command})")
    return message



def said_for_export(message: str) -> str:
    """A reader-limit message as an export gives it: the way out is to run the export again
    once the limit is raised (verifying a file reads less of it than the export's table read
    does, so a verdict of ok does not bring its rows back)."""
    for flag in (_MEMORY_FLAG, _SECONDS_FLAG):
        message = message.replace(f"verify it again {_verify_again(flag)}", "run the export again")
    return message


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


# --------------------------------------------------------------------------- in the worker


def warm_up() -> None:
    """Import the reader (a worker calls this at start, before any job)."""
    import fastexcel  # noqa: F401, PLC0415 - the reader is loaded in worker processes only
    import nanoarrow  # noqa: F401, PLC0415 - the reader is loaded in worker processes only


def worker_verify(path: str, rules: Mapping[str, object]) -> Verdict:
    """Read and classify one file; plain fields only (never a cell value). ``sha256`` is the
    hash of the bytes the verdict is of (read once, hashed and parsed from that same copy),
    absent when the file could not be read at all."""
    read: list[str] = []
    verdict: Verdict
    try:
        sheet = _read_first_sheet(Path(path), read=read)
        verdict = _classify(sheet, _Rules.from_json(rules))
    except Unreadable as exc:
        verdict = {"status": st.UNREADABLE, "message": str(exc), "reason": exc.reason}
    except MemoryError:
        raise
    except OSError as exc:
        # The disk, not the content (a large file is read again after its hash): a verdict of
        # no known content, so no hash goes with it.
        read.clear()
        verdict = {"status": st.UNREADABLE, "reason": "os-error",
                   "message": f"The file cannot be read ({exc.strerror or type(exc).__name__}). "
                   "Check the disk and path, then verify it again."}
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop the rest
        # The exception text may quote cell contents: only its type is passed on.
        verdict = {
            "status": st.UNREADABLE,
            "reason": type(exc).__name__,
            "message": f"The workbook could not be read ({type(exc).__name__}). Open it in Excel to "
            "check it; if Excel cannot open it either, download it again or re-run the report.",
        }
    if read:
        verdict["sha256"] = read[0]
    return verdict


def worker_preview(path: str, header_row: int | None, n: int) -> dict[str, list[str] | list[list[str]]]:
    """The detail pane's header and first rows (the only cells that leave a worker)."""
    n = max(0, min(int(n), 100))
    limit = (header_row or 0) + n * 4 + HEADER_SCAN_ROWS
    try:
        sheet = _read_first_sheet(Path(path), n_rows=limit)
    except Exception as exc:  # preview is best effort, the status says why
        if isinstance(exc, MemoryError):
            raise
        return {"header": [], "rows": []}
    grid = sheet.grid
    width = min(grid.width, PREVIEW_MAX_COLUMNS)
    if width == 0 or grid.height == 0:
        return {"header": [], "rows": []}
    if header_row is not None and 1 <= header_row <= grid.height:
        header = [_short(_clean(c)) for c in grid.row(header_row - 1, width)]
        first = header_row
    else:
        header = [column_letter(i) for i in range(width)]
        first = 0
    body_end = min(grid.height, first + n * 4)
    body = [grid.row(i, width) for i in range(first, body_end)]
    while width > 1 and not header[width - 1] and all(_clean(r[width - 1]) is None for r in body):
        width -= 1
    header = header[:width]
    out: list[list[str]] = []
    for row in body:
        cells = [_short(_clean(c)) for c in row[:width]]
        if any(cells):
            out.append(cells)
            if len(out) >= n:
                break
    return {"header": header, "rows": out}


def _short(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= PREVIEW_MAX_CHARS else text[: PREVIEW_MAX_CHARS - 1] + "…"


@dataclass(frozen=True)
class _Rules:
    expected: tuple[str, ...] = ()
    min_rows: int = 1
    covered: date | None = None
    closed: bool = False
    rescue_by: date | None = None
    date_column: str | None = None  # None: guess it; "": none

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> _Rules:
        covered, rescue_by, expected = raw.get("covered"), raw.get("rescue_by"), raw.get("expected")
        min_rows, date_column = raw.get("min_rows", 1), raw.get("date_column")
        return cls(
            expected=tuple(str(c) for c in expected) if isinstance(expected, list) else (),
            min_rows=min_rows if isinstance(min_rows, int) else 1,
            covered=date.fromisoformat(covered) if isinstance(covered, str) and covered else None,
            closed=bool(raw.get("closed")),
            rescue_by=date.fromisoformat(rescue_by) if isinstance(rescue_by, str) and rescue_by else None,
            date_column=str(date_column) if date_column is not None else None,
        )


@dataclass(frozen=True)
class _Sheet:
    name: str
    grid: Grid
    sheet_count: int = 1


#: One column of the sheet: (validity bitmap, 0 all null | 1 strings, offset, offsets, data).
_Column = tuple[memoryview | None, int, int, memoryview | None, memoryview | None]


class Grid:
    """The first sheet as fastexcel's Arrow data (every column a string column), read through
    nanoarrow: validity bitmaps for the counting, strings only for the rows looked at."""

    def __init__(self, arrow_source: object) -> None:
        import nanoarrow  # noqa: PLC0415 - the reader is loaded in worker processes only

        self._array = nanoarrow.c_array(arrow_source)  # keeps the buffers alive
        view = self._array.view()
        self.height = int(view.length)
        self.width = int(view.n_children)
        base = int(view.offset)
        self._cols: list[_Column] = []
        for i in range(self.width):
            child = view.child(i)
            kind = child.storage_type
            start = base + int(child.offset)
            if kind == "null" or child.null_count == child.length:
                self._cols.append((None, 0, start, None, None))
                continue
            if kind not in ("string", "large_string"):
                raise Unreadable(
                    "The workbook could not be read (unexpected column data). Open it in Excel "
                    "to check it.", "arrow-" + str(kind),
                )
            validity = memoryview(child.buffer(0)) if child.null_count else None
            if validity is not None and validity.nbytes * 8 < start + self.height:
                validity = None  # no bitmap (Arrow allows leaving it out when nothing is null)
            self._cols.append((validity, 1, start, memoryview(child.buffer(1)), memoryview(child.buffer(2))))

    def _valid(self, col: _Column, i: int) -> bool:
        validity, kind, start, _, _ = col
        if kind == 0:
            return False
        if validity is None:
            return True
        j = start + i
        return bool(validity[j >> 3] >> (j & 7) & 1)

    def value(self, col_index: int, i: int) -> str | None:
        col = self._cols[col_index]
        if not self._valid(col, i):
            return None
        _, _, start, offsets, data = col
        assert offsets is not None and data is not None  # a string column (_valid)
        j = start + i
        return bytes(data[offsets[j] : offsets[j + 1]]).decode("utf-8", "replace")

    def row(self, i: int, width: int | None = None) -> tuple[str | None, ...]:
        return tuple(self.value(c, i) for c in range(min(self.width, width or self.width)))

    def filled(self, i: int) -> int:
        return sum(1 for col in self._cols if self._valid(col, i))

    def count_filled(self, column: int, first: int) -> int:
        """How many cells of ``column`` from row ``first`` (0-based) on hold something."""
        validity, kind, start, _, _ = self._cols[column]
        if kind == 0 or first >= self.height:
            return 0
        n = self.height - first
        if validity is None:
            return n
        bits = int.from_bytes(validity, "little") >> (start + first)
        return (bits & ((1 << n) - 1)).bit_count()

    def column_parts(self, index: int, first: int, stop: int) -> content.ColumnParts | None:
        """Column ``index`` in rows ``first..stop-1`` as buffers (no per-cell work): which
        rows hold a value, each value's byte length, the bytes. None: an all-empty column."""
        validity, kind, start, offsets, data = self._cols[index]
        n = stop - first
        if kind == 0 or n <= 0 or offsets is None or data is None:  # kind 0: no buffers
            return None
        j = start + first
        off = offsets[j : j + n + 1]
        full = (1 << n) - 1
        valid = full if validity is None else (int.from_bytes(validity, "little") >> j) & full
        return content.ColumnParts(valid, content.rebased(off), data[off[0] : off[n]])

    def nonblank_mask(self) -> int:
        """Bit i set when row i has a non-empty cell (whitespace-only cells were read as null)."""
        mask = 0
        full = (1 << self.height) - 1
        for validity, kind, start, _, _ in self._cols:
            if kind == 0:
                continue
            if validity is None:
                return full
            mask |= (int.from_bytes(validity, "little") >> start) & full
            if mask == full:
                break
        return mask


def _read_first_sheet(path: Path, n_rows: int | None = None, *, read: list[str] | None = None) -> _Sheet:
    """The first sheet. The file's bytes are read once and the checks and the reader work on
    that same copy: a file saved over meanwhile cannot pass the checks as one file and be
    parsed as another, nor be swapped for a named pipe after the regular-file check. The hash
    of what was read is appended to ``read`` (the caller's proof of which bytes it judged)."""
    with open_regular(path) as fh:
        kind = sniff(fh)
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_TOTAL_BYTES:  # never read (nor hashed): refused from its size alone
            if kind != "zip":
                raise Unreadable(kind, "not-xlsx")
            raise Unreadable(
                f"Refused: the file is {_human_bytes(size)}, more than any report (the whole "
                f"workbook may hold at most {_human_bytes(MAX_TOTAL_BYTES)}). It was not opened. "
                "Delete it and check where it came from; if it is a genuine report, ask for a "
                "smaller one.", "too-large")
        fh.seek(0)
        if kind == "zip" and size > READ_WHOLE_BYTES and reopens(fh):
            with LargeZip(path, fh, read) as large:
                return large.checked(_sheet_of(large.reader(), large.names, n_rows))
        data: bytes | None = None
        if kind == "zip":
            data = fh.read()
            digest = hashlib.sha256(data)
        else:  # hashed as it streams by: a large file of another kind is never held in memory
            digest = hashlib.file_digest(fh, "sha256")
            fh.seek(0)
            if sniff(fh) != kind:  # written to since it was looked at: the hash is of neither
                raise changed()
    if read is not None:
        read.append(digest.hexdigest())
    if data is None:
        raise Unreadable(kind, "not-xlsx")
    buf = io.BytesIO(data)
    kind = sniff(buf)  # of the bytes read (the file may have been written to meanwhile)
    if kind != "zip":
        raise Unreadable(kind, "not-xlsx")
    names = precheck_zip(path, buf)
    del buf
    import fastexcel  # noqa: PLC0415 - the reader is loaded in worker processes only

    try:
        reader = fastexcel.read_excel(data)
        del data  # the reader holds its own copy: ours goes before the sheet is parsed
    except fastexcel.FastExcelError as exc:
        raise Unreadable(reader_failed_message(exc, names), "reader") from None
    return _sheet_of(reader, names, n_rows)


def _sheet_of(reader: fastexcel.ExcelReader, names: set[str], n_rows: int | None) -> _Sheet:
    """The first sheet of an opened workbook, as text."""
    import fastexcel  # noqa: PLC0415 - the reader is loaded in worker processes only

    try:
        sheet_names = reader.sheet_names
    except fastexcel.FastExcelError as exc:
        raise Unreadable(reader_failed_message(exc, names), "reader") from None
    if not sheet_names:
        raise Unreadable(
            "The workbook has no sheets, so there is no report in it. Re-run the report in "
            "Alma (or ask whoever made the file for a proper export).", "no-sheets",
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
        grid = Grid(sheet)
    except fastexcel.FastExcelError as exc:
        raise Unreadable(reader_failed_message(exc, names), "reader") from None
    return _Sheet(name=sheet_names[0], grid=grid, sheet_count=len(sheet_names))


#: A zip package larger than this is not read into memory whole (:class:`LargeZip`): a real
#: report is a few MiB; a file of hundreds of MiB held whole (twice: ours and the reader's
#: copy) was bounded by the worker's memory limit alone.
READ_WHOLE_BYTES = 64 << 20
#: Where an open file can be opened again as itself (Linux).
FD_FOLDER = "/proc/self/fd"
_Result = TypeVar("_Result")


class LargeZip:
    """A zip package too large to hold in memory whole, in a worker: hashed as it streams by,
    its zip checked from the file, and opened by the reader as the very file the checks read
    (its descriptor, duplicated, through :data:`FD_FOLDER`; a file renamed over it meanwhile
    is not what is read). Bytes written into that file meanwhile are caught by hashing it
    again once read (:meth:`checked`): the file is then refused as changed, and the hash taken
    back from ``read`` (the verdict is of no known content). The reader reads only the parts
    it needs."""

    def __init__(self, path: Path, fh: io.BufferedReader, read: list[str] | None) -> None:
        self.path, self.fh, self.read = path, fh, read
        self.sha256 = _streamed_sha256(fh)
        if read is not None:
            read.append(self.sha256)
        fh.seek(0)
        self.names: set[str] = set()
        self._fd = -1

    def __enter__(self) -> LargeZip:
        if sniff(self.fh) != "zip":  # a zip when looked at, another kind when hashed
            self._forget()
            raise changed()
        self.fh.seek(0)
        try:
            self.names = precheck_zip(self.path, self.fh)
        except Unreadable:
            self._unchanged()
            raise
        self._fd = os.dup(self.fh.fileno())
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        if isinstance(exc, Unreadable) and exc.reason not in ("changed", "reopen"):
            self._unchanged()  # a refusal is of the content hashed only while it is that content

    def reader(self) -> fastexcel.ExcelReader:
        import fastexcel  # noqa: PLC0415 - the reader is loaded in worker processes only

        try:
            return fastexcel.read_excel(f"{FD_FOLDER}/{self._fd}")
        except fastexcel.FastExcelError as exc:
            if not _reopens(self._fd):  # the reader could not open it: nothing of its content
                self._forget()
                raise Unreadable(
                    f"The file could not be opened again through {FD_FOLDER} to be read, so no "
                    "verdict is given for it. Verify it again; if this repeats, check what "
                    "refuses the process access to its own open files.", "reopen") from None
            raise Unreadable(reader_failed_message(exc, self.names), "reader") from None

    def checked(self, result: _Result) -> _Result:
        """``result``, read from the file, once the file is seen to hold what was hashed still."""
        self._unchanged()
        return result

    def _unchanged(self) -> None:
        self.fh.seek(0)
        if _streamed_sha256(self.fh) != self.sha256:
            self._forget()
            raise changed()

    def _forget(self) -> None:
        """The hash taken back from ``read``: the verdict is of no known content."""
        if self.read is not None and self.sha256 in self.read:
            self.read.remove(self.sha256)


def changed() -> Unreadable:
    """The refusal of a file written to while it was being checked (given with no hash)."""
    return Unreadable("The file changed while it was being checked, so no verdict is given for "
                      "it. Verify it again once nothing writes to it.", "changed")


def reopens(fh: io.BufferedReader) -> bool:
    """Whether the open file opens again as itself through :data:`FD_FOLDER`, as
    :class:`LargeZip`'s reader opens it (not where there is no such folder, nor where it is
    there but refuses: a sandbox, a security module); if not, the file is read whole."""
    return _reopens(fh.fileno())


def _reopens(fd: int) -> bool:
    try:
        again = os.open(f"{FD_FOLDER}/{fd}", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        now, was = os.fstat(again), os.fstat(fd)
        return (now.st_dev, now.st_ino) == (was.st_dev, was.st_ino)
    finally:
        os.close(again)


def _streamed_sha256(fh: io.BufferedReader) -> str:
    return hashlib.file_digest(fh, "sha256").hexdigest()


def open_regular(path: Path) -> io.BufferedReader:
    """The file opened for reading, only if it is a regular file: a named pipe, a device or a
    socket is never read (opening a pipe without O_NONBLOCK would wait for a writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise Unreadable("The file does not exist. Check the path (it may have been moved or deleted).",
                          "missing") from None
    except IsADirectoryError:
        raise Unreadable("This is a folder, not a report file.", "folder") from None
    except PermissionError:
        raise Unreadable("The file cannot be read: permission denied. Fix its permissions or run as "
                          "its owner.", "permission") from None
    except OSError as exc:
        raise Unreadable(f"The file cannot be read ({exc.strerror or type(exc).__name__}). Check the "
                          "disk and path.", "os-error") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise Unreadable("This is a folder, not a report file.", "folder")
        if not stat.S_ISREG(mode):
            raise Unreadable(not_regular_message(mode), "not-regular")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def not_regular_message(mode: int) -> str:
    """The message for a path that is not a regular file (it is never opened for reading)."""
    if stat.S_ISFIFO(mode):
        what = "a named pipe (FIFO)"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        what = "a device"
    elif stat.S_ISSOCK(mode):
        what = "a socket"
    else:
        what = "a special file"
    return (
        f"This is not a regular file but {what} with a report's name, so it was not read. "
        "Remove it from the reports folder; it is not a delivery."
    )


def sniff(fh: BinaryIO) -> str:
    """``"zip"`` or the unreadable message for what the file really is."""
    try:
        head = fh.read(4096)
        fh.seek(0)
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
        return _cfb_message(fh)
    if _zip_directory_at_end(fh):
        # Bytes before the zip (a stub, a header some tool added): the reader finds the zip
        # by its directory at the end, so the pre-checks do too, and the zip checks follow.
        return "zip"
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


#: The zip's end-of-directory record: 22 bytes and a comment of at most 65,535 bytes.
_EOCD = b"PK\x05\x06"
_EOCD_SPAN = 22 + 0xFFFF


def _zip_directory_at_end(fh: BinaryIO) -> bool:
    """The file ends with a zip directory whose record is whole (a zip after other bytes)."""
    try:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - _EOCD_SPAN)
        fh.seek(start)
        tail = fh.read(_EOCD_SPAN)
        fh.seek(0)
    except OSError:
        return False
    at = tail.rfind(_EOCD)
    while at != -1:
        if len(tail) - at >= 22:
            comment = struct.unpack_from("<H", tail, at + 20)[0]
            if at + 22 + comment == len(tail):
                return True
        at = tail.rfind(_EOCD, 0, at)
    return False


def _cfb_message(fh: BinaryIO) -> str:
    """A CFB (OLE2) container: an encrypted workbook, a legacy .xls, or something else."""
    names = _cfb_stream_markers(fh)
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


def _cfb_stream_markers(fh: BinaryIO) -> set[str]:
    """Which known stream names occur in the CFB directory (UTF-16LE) of the file."""
    needles = {m: m.encode("utf-16-le") + b"\0\0" for m in _CFB_MARKERS}
    found: set[str] = set()
    tail = b""
    try:
        fh.seek(0)
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


# --------------------------------------------------------------------------- zip pre-checks


def precheck_zip(path: Path, fh: BinaryIO) -> set[str]:
    """Refuse damaged zips, encrypted parts and bombs before the reader inflates anything.

    Returns the package's part names (lower case, ``/`` separators) for the messages."""
    try:
        zf = zipfile.ZipFile(fh)
        infos = zf.infolist()
    except zipfile.BadZipFile:
        raise Unreadable(
            "The file is damaged or incomplete: its zip directory is missing (usually a "
            "download or delivery that was cut off). Download it again; if the server copy "
            "is damaged too, re-run the report in Alma.", "zip-directory",
        ) from None
    except (OSError, EOFError, ValueError, NotImplementedError, struct.error):
        raise Unreadable(
            "The file is damaged: its zip container cannot be read. Download it again; if "
            "the server copy is damaged too, re-run the report in Alma.", "zip-container",
        ) from None
    names = {i.filename.replace("\\", "/").lower() for i in infos}
    declared = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise Unreadable(
                "The workbook's zip entries are encrypted, so it cannot be checked. Ask for an "
                "unprotected copy.", "zip-encrypted",
            )
        declared += info.file_size
        _refuse_if_bomb(info, info.file_size, declared)
    # Real sizes, measured by inflating: shared strings first (their lengths are needed for
    # the sheets' scan), then every other XML part.
    parts = [i for i in infos if i.filename.lower().endswith((".xml", ".rels"))]
    parts.sort(key=lambda i: not i.filename.lower().endswith("sharedstrings.xml"))
    scan = _Scan(_memory_budget())
    total = 0
    strings: list[tuple[zipfile.ZipInfo, int]] = []  # shared-string parts, the total before each
    for info in parts:
        lower = info.filename.replace("\\", "/").lower()
        if lower.endswith("sharedstrings.xml"):
            mode = "sst"
        elif "sheet" in lower.rsplit("/", 1)[-1] and "calcchain" not in lower:
            mode = "sheet"
        elif info.compress_size <= SMALL_PART:
            total += info.file_size  # cannot inflate past the ratio check's floor: not worth a pass
            continue
        else:
            mode = None
        if mode == "sst" and scan.long_strings:
            mode = "sst-lengths"  # the lengths are being measured already
        before = total
        total = _inflate_part(fh, info, total, scan, mode)
        if mode == "sst":
            strings.append((info, before))
            if scan.long_strings:
                # A string longer than LONG_SHARED_STRING: the sheets' scan needs every
                # string's length, measured in a second pass over the shared strings read so
                # far (the first pass refused whatever it had to).
                for part, at in strings:
                    _inflate_part(fh, part, at, scan, "sst-lengths")
    return names


class _Scan:
    """What the pre-check learns while inflating: shared-string lengths, copies they would cost."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.long_strings = False  # a shared string longer than LONG_SHARED_STRING was seen
        self.si_lengths: list[int] = []  # each string's length (measured only when one is long)
        self.longest = 0
        self.copy_bytes = 0


def _memory_budget() -> int:
    """The worker's address-space limit (what the reader may use), or the default."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return soft if soft not in (resource.RLIM_INFINITY, -1) and soft > 0 else isolation.DEFAULT_MEMORY_BYTES


def _refuse_if_bomb(info: zipfile.ZipInfo, size: int, total: int, *, real: bool = False) -> None:
    packed = max(info.compress_size, 1)
    if size > MAX_ENTRY_BYTES or total > MAX_TOTAL_BYTES or (size > RATIO_MIN_BYTES and size / packed > MAX_RATIO):
        lie = ""
        if real and size > info.file_size:
            lie = f" although its zip directory says {_human_bytes(info.file_size)}"
        raise Unreadable(
            f"Refused: a part of the workbook inflates to {_human_bytes(size)} or more from "
            f"{_human_bytes(info.compress_size)}{lie} (a 'zip bomb'), far more than any report. "
            "It was not opened. Delete it and check where it came from.", "zip-bomb",
        )


def _inflate_part(fh: BinaryIO, info: zipfile.ZipInfo, total: int, scan: _Scan, mode: str | None) -> int:
    """Inflate one part, discarding the output, and return the package's running total.

    Stored parts are as large as they are; parts in a method other than deflate are left to
    the reader (their declared sizes were checked, and the worker's memory limit holds)."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return total + info.file_size
    try:
        fh.seek(info.header_offset)
        header = fh.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise Unreadable(_damaged("its zip container is inconsistent"), "zip-header")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
    except (OSError, ValueError, struct.error):
        raise Unreadable(_damaged("its zip container is inconsistent"), "zip-header") from None
    left = info.compress_size
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    size = 0
    state = _PartScan(scan, mode)
    while left > 0 or (inflater is not None and inflater.unconsumed_tail):
        if inflater is not None and inflater.unconsumed_tail:
            data = inflater.decompress(inflater.unconsumed_tail, INFLATE_CHUNK)
        else:
            raw = fh.read(min(left, 1 << 18))
            if not raw:
                break  # cut short: the reader says so
            left -= len(raw)
            if inflater is None:
                data = raw
            else:
                try:
                    data = inflater.decompress(raw, INFLATE_CHUNK)
                except zlib.error:
                    return total + size  # corrupt data: the reader reports it as damaged
        if not data:
            if inflater is not None and inflater.eof:
                break
            continue
        size += len(data)
        _refuse_if_bomb(info, size, total + size, real=True)
        state.feed(data)
        if inflater is not None and inflater.eof:
            break
    state.finish()
    return total + size


# Where ``_FAR_REF`` can match: the same start, found without its backtracking (two letters at
# most taken for good, then a third letter or seven digits), a third cheaper per ``r=`` of a
# sheet; each candidate is then matched with ``_FAR_REF`` itself.
_FAR_CANDIDATE = re.compile(rb'r=["\'][A-Za-z]{0,2}+(?:[A-Za-z]|[0-9]{7})')
_SI_NEXT = frozenset(b" \t\n\r\f\v>/")  # what follows ``<si`` in a string's start (``[\s>/]``)


class _PartScan:
    """Scanning of one part's inflated chunks. References are searched in each chunk plus the
    previous chunk's last bytes (a match seen twice only raises twice); shared-string cells are
    counted on whole cells only (the bytes after the last ``<c`` wait for the next chunk)."""

    OVERLAP = 64
    CARRY_MAX = 1 << 20

    def __init__(self, scan: _Scan, mode: str | None) -> None:
        self.scan, self.mode = scan, mode
        self.tail = b""
        self.seen = 0  # offset in the part of ``tail``'s first byte
        self.first = True
        self.last_si: int | None = None
        self.carry = b""
        self.scanning = False

    def feed(self, data: bytes) -> None:
        if self.mode is None:
            return
        window = self.tail + data
        if self.mode == "sheet":
            if self.first:
                m = _DIMENSION.search(window, 0, 65536)
                if m:
                    _check_reference(m.group(1).decode("latin-1"), "dimension")
            for c in _FAR_CANDIDATE.finditer(window):
                m = _FAR_REF.match(window, c.start())
                if m and m.start() and window[m.start() - 1] in b" \t\r\n":  # the attribute r, not xr
                    _check_reference((m.group(1) + m.group(2)).decode("latin-1"), "cell")
            if self.scan.longest > LONG_SHARED_STRING:
                self._count_copies(data)
        elif self.mode in ("sst", "sst-lengths"):
            if self.seen + len(window) <= LONG_SHARED_STRING and not self.scanning:
                # no string of a part this short can be long: wait until the part is longer
                self.tail = window
                return
            self.scanning = True
            if self.mode == "sst-lengths" or b":si" in window:
                self._each_string(window)
            elif not self.scan.long_strings:
                self._long_string_in(window)
        self.first = False
        keep = min(len(window), self.OVERLAP)
        self.seen += len(window) - keep
        self.tail = window[len(window) - keep :]

    def _each_string(self, window: bytes) -> None:
        """Every string's start (a Python step each): its length once the next one starts."""
        for m in _SI_START.finditer(window):
            pos = self.seen + m.start()
            if self.last_si is None or pos > self.last_si:
                if self.last_si is not None:
                    self._string(pos - self.last_si)
                self.last_si = pos

    def _long_string_in(self, window: bytes) -> None:
        """Whether a string is longer than LONG_SHARED_STRING, found without visiting each
        string: from a string's start, the last start within LONG_SHARED_STRING bytes is the
        next one to look from (every string between is shorter); none there, and the string
        is long. For a window without a namespace prefix on its tags (no ``:si``), where a
        start is ``<si`` followed by whitespace, ``>`` or ``/`` (as ``_SI_START`` finds it);
        a start in the window's last bytes is looked at again in the next window."""
        base, end = self.seen, len(window) - 4  # a start at ``end`` at most has its next byte here
        if self.last_si is None:
            at = window.find(b"<si")
            while at != -1 and at <= end and window[at + 3] not in _SI_NEXT:
                at = window.find(b"<si", at + 1)
            if at == -1 or at > end:
                return
            self.last_si = base + at
        while True:
            start = self.last_si - base
            reach = start + LONG_SHARED_STRING  # the next start must be at or before this
            stop = min(reach, end) + 3
            at = window.rfind(b"<si", max(start + 1, 0), stop)
            while at != -1 and window[at + 3] not in _SI_NEXT:
                at = window.rfind(b"<si", max(start + 1, 0), at + 2)
            if at != -1:
                self.last_si = base + at
                continue
            if reach <= end:
                self.scan.long_strings = True  # no start within reach: this string is long
            return

    def _string(self, length: int) -> None:
        if self.mode == "sst":
            self.scan.long_strings |= length > LONG_SHARED_STRING
            return
        self.scan.si_lengths.append(length)
        self.scan.longest = max(self.scan.longest, length)

    def _count_copies(self, data: bytes, final: bool = False) -> None:
        """Every reference to a shared string becomes its own copy in the reader's cells: add
        up the lengths referenced and refuse once they exceed what the worker may use."""
        buf = self.carry + data
        cut = len(buf) if final else buf.rfind(b"<c")
        if cut <= 0 and len(buf) <= self.CARRY_MAX:
            self.carry = buf
            return
        if cut <= 0:
            cut = len(buf)
        lengths = self.scan.si_lengths
        for m in _SHARED_CELL.finditer(buf, 0, cut):
            idx = int(m.group(1))
            if idx < len(lengths):
                self.scan.copy_bytes += lengths[idx]
        self.carry = buf[cut:]
        # the copies live twice at once: in calamine's cells and in the Arrow column built from them
        if 2 * self.scan.copy_bytes > self.scan.budget:
            raise Unreadable(
                "The workbook needs more memory than allowed to read "
                f"({_human_bytes(self.scan.budget)}): its cells repeat long shared texts, about "
                f"{_human_bytes(self.scan.copy_bytes)} of copies or more. It may be damaged or "
                "hostile and was not read. Open it in Excel to check it. "
                + memory_way_out(self.scan.budget), "shared-strings",
            )

    def finish(self) -> None:
        if self.mode in ("sst", "sst-lengths") and not self.scanning:
            return  # the whole part is shorter than a long string
        if self.mode in ("sst", "sst-lengths") and self.last_si is not None:
            end = self.seen + len(self.tail)
            if end > self.last_si:
                self._string(end - self.last_si)
        if self.mode == "sheet" and self.scan.longest > LONG_SHARED_STRING:
            self._count_copies(b"", final=True)


def _check_reference(ref: str, where: str) -> None:
    """Refuse a cell or range reference beyond Excel's grid (the reader would wrap it round
    or size its grid by it)."""
    for part in ref.split(":"):
        m = _REF.match(part.strip().replace("$", ""))
        if not m:
            continue  # not a plain reference: the reader judges it
        letters, digits = m.groups()
        col = 0
        for ch in letters.upper():
            col = col * 26 + ord(ch) - 64
            if col > EXCEL_MAX_COLUMNS:
                break
        row = int(digits[:12]) if digits else 0
        if col > EXCEL_MAX_COLUMNS or row > EXCEL_MAX_ROWS:
            shown = part if len(part) <= 24 else part[:21] + "..."
            what = "row" if row > EXCEL_MAX_ROWS else "column"
            limit = "row 1,048,576" if what == "row" else "column XFD (16,384)"
            source = "its size (<dimension>)" if where == "dimension" else "a cell or row"
            raise Unreadable(
                f"The workbook is damaged or hostile: {source} refers to {shown}, beyond Excel's "
                f"last {limit}. It was not read. Excel cannot open it as it is either; ask for "
                "the report again and check where the file came from.", f"beyond-grid-{what}",
            )


def _damaged(cause: str) -> str:
    return (
        f"The workbook is damaged: {cause}. Download it again; if the server copy is damaged "
        "too, re-run the report in Alma."
    )


def reader_failed_message(exc: Exception, names: set[str]) -> str:
    """Why the reader failed, from the package's parts and a few structural words of the
    reader's message (which may quote cell text, so it is never repeated)."""
    if not any(n.endswith("workbook.xml") or n.endswith("workbook.bin") for n in names):
        if "word/document.xml" in names:
            what = "a Word document"
        elif "ppt/presentation.xml" in names:
            what = "a PowerPoint presentation"
        elif "mimetype" in names or "content.xml" in names:
            what = "an OpenDocument file"
        else:
            what = "a zip archive"
        return (
            f"This is {what} saved with an .xlsx name, not an Excel workbook. Check that the "
            "right file was delivered; set the Alma schedule's format to Excel."
        )
    return _damaged_message(exc)


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
    return byte_size(n, ("bytes", "KiB", "MiB", "GiB", "TiB"))


# --------------------------------------------------------------------------- classifying


def _clean(cell: object) -> str | None:
    if cell is None:
        return None
    text = str(cell).strip()
    return text or None


def _is_text(cell: str | None) -> bool:
    return cell is not None and not _NUMBER.match(cell) and not _DATE.match(cell)


def value_like(cell: str | None) -> bool:
    """A header cell that reads like a value (an e-mail address, an identifier, a long text),
    not like a column's name: it is never repeated as a column name."""
    if cell is None:
        return False
    return len(cell) > COLUMN_NAME_MAX or "@" in cell or bool(_ID_VALUE.match(cell))


def _find_header(head: Iterable[_Row], expected: Sequence[str]) -> tuple[int | None, tuple[str, ...]]:
    """0-based header row index (or None) and the expected columns it lacks.

    Without expected columns, a row is a header when it has at least two text cells and
    most of its non-empty cells read like column names rather than values: a sheet without a
    header (data from the first row on) must not have its first row's cells taken as names."""
    wanted = [normalize_column(e) for e in expected]
    candidates: list[tuple[int, set[str]]] = []
    for i, row in enumerate(head):
        cells = [_clean(c) for c in row]
        texts = sum(1 for c in cells if _is_text(c))
        if not wanted:
            if texts >= 2 and _names_like(cells):
                return i, ()
            continue
        if not any(cells):
            continue
        present = {normalize_column(c) for c in cells if c is not None}
        if all(w in present for w in wanted):
            return i, ()
        if texts >= 2 and _names_like(cells):
            candidates.append((i, present))
    if not candidates:
        return None, tuple(expected)
    best_i, best_present = candidates[0]
    best_score = -1
    for i, present in candidates:
        score = sum(1 for w in wanted if w in present)
        if score > best_score:
            best_i, best_present, best_score = i, present, score
    missing = tuple(e for e, w in zip(expected, wanted, strict=True) if w not in best_present)
    return best_i, missing


def _names_like(cells: list[str | None]) -> bool:
    filled = [c for c in cells if c is not None]
    return sum(1 for c in filled if value_like(c)) * 2 < len(filled)


def positions(count: int) -> tuple[str, ...]:
    """Column names by position, for a sheet whose header row was not recognised."""
    return tuple(f"column {i}" for i in range(1, count + 1))


def _used_width(grid: Grid, rows: Iterable[int]) -> int:
    """The number of columns up to the last one holding a value in ``rows``."""
    width = 0
    for i in rows:
        row = grid.row(i)
        for c in range(len(row) - 1, width - 1, -1):
            if _clean(row[c]) is not None:
                width = c + 1
                break
    return width


def _classify(sheet: _Sheet, rules: _Rules) -> Verdict:
    grid = sheet.grid
    expected = list(rules.expected)
    if grid.width == 0 or grid.height == 0:
        return _empty(rules, sheet, None, (), _blank_sheet(sheet))
    nonblank = grid.nonblank_mask()
    total_nonblank = nonblank.bit_count()
    if total_nonblank == 0:
        return _empty(rules, sheet, None, (), _blank_sheet(sheet))
    head = (grid.row(i) for i in range(min(HEADER_SCAN_ROWS, grid.height)))  # read as needed
    header_idx, missing = _find_header(head, expected)

    if header_idx is None:
        rows_at = _bits(nonblank, MESSAGE_MAX_ROWS + 1)
        if total_nonblank <= MESSAGE_MAX_ROWS and all(grid.filled(i) == 1 for i in rows_at):
            return _empty(
                rules, sheet, None, (),
                "The report holds only a title or message (such as 'No Results'), no table.",
            )
        return _no_header(sheet, rules, nonblank, total_nonblank)

    header_cells = [_clean(c) for c in grid.row(header_idx)]
    while header_cells and header_cells[-1] is None:
        header_cells.pop()
    # A cell of the header row that reads like a value is named by its position instead.
    columns = tuple(
        f"column {i + 1}" if value_like(c) else (c or "") for i, c in enumerate(header_cells)
    )
    below = nonblank >> (header_idx + 1)
    rows = below.bit_count()
    header_row = header_idx + 1
    common = dict(header_row=header_row, columns=list(columns), sheet=sheet.name)

    if missing:
        found = len([c for c in columns if c])
        return _result(
            st.SCHEMA,
            f"Expected column{'s' if len(missing) > 1 else ''} missing: "
            + ", ".join(f"'{m}'" for m in missing)
            + f" (header on row {header_row}, {found} columns). The report's layout changed in "
            "Alma (a column renamed or removed): restore it in the Analytics report, or update "
            "expected_columns for this report in the config.",
            rows=rows, missing_columns=list(missing), **common,
        )

    wanted = rules.date_column
    if wanted and normalize_column(wanted) not in {normalize_column(c) for c in columns}:
        return _result(
            st.SCHEMA,
            f"The date column '{wanted}' (date_column) is not in the header on row {header_row}. "
            "The report's layout changed in Alma (a column renamed or removed): restore it in "
            "the Analytics report, or change date_column for this report in the config "
            '(date_column = "" switches the date check off).',
            rows=rows, missing_columns=[wanted], **common,
        )

    if 0 < rows <= MESSAGE_MAX_ROWS and len(columns) >= 2:
        data_idx = [header_idx + 1 + i for i in _bits(below, MESSAGE_MAX_ROWS)]
        if all(grid.filled(i) == 1 and _is_text(_first_value(grid.row(i))) for i in data_idx):
            return _empty(
                rules, sheet, header_row, columns,
                f"The report holds only a message (such as 'No Results') below the header on "
                f"row {header_row}, no data rows.",
            )

    if rows == 0:
        return _empty(rules, sheet, header_row, columns, f"No data rows below the header on row {header_row}.")
    first = header_idx + 1
    measured = _content_fields(grid, columns, first, first + below.bit_length(), rules)
    if rows < rules.min_rows:
        return _empty(
            rules, sheet, header_row, columns,
            f"Only {rows} data row{'s' if rows != 1 else ''} below the header on row "
            f"{header_row}; at least {rules.min_rows} expected (min_rows).",
            rows=rows, **measured,
        )
    text = f"{rows} data row{'s' if rows != 1 else ''} below the header on row {header_row}."
    dates = measured.get("dates")
    if wanted and isinstance(dates, dict) and dates.get("values") == 0:
        text += (
            f" The date column '{wanted}' holds no dates (as YYYY-MM-DD or date cells), so the "
            "day the rows describe was not checked."
        )
    return _result(st.OK, text, rows=rows, **common, **measured)


def _content_fields(grid: Grid, columns: Sequence[str], first: int, stop: int, rules: _Rules) -> Verdict:
    """The rows' fingerprint and the date column's coverage (``tui.core.content``): hashes,
    a column name and counts of days, never a cell value."""
    out: Verdict = {"fingerprint": content.fingerprint(grid, first, stop)}
    coverage = content.find_date_column(grid, columns, first, stop, rules.date_column, normalize_column)
    if coverage is not None:
        out["date_column"] = coverage.column
        out["dates"] = coverage.stored()
    return out


def _no_header(sheet: _Sheet, rules: _Rules, nonblank: int, rows: int) -> Verdict:
    """No row reads like a header: every non-blank row is data, columns are positions."""
    width = _used_width(sheet.grid, _bits(nonblank, HEADER_SCAN_ROWS))
    columns = positions(max(width, 1))
    what = (
        f"No header row was recognised (no row with two or more column names), so the "
        f"{len(columns)} column{'s' if len(columns) != 1 else ''} are named by position"
    )
    common = dict(header_row=None, columns=list(columns), sheet=sheet.name)
    if rules.expected:
        return _result(
            st.SCHEMA,
            f"Expected column{'s' if len(rules.expected) > 1 else ''} missing: "
            + ", ".join(f"'{m}'" for m in rules.expected)
            + f". {what}. The report's layout changed in Alma (its header row is gone or "
            "renamed): restore it in the Analytics report, or update expected_columns for this "
            "report in the config.",
            rows=rows, missing_columns=list(rules.expected), **common,
        )
    # Every non-blank row is data: the fingerprint covers them all (no date column without
    # a header).
    low = nonblank & -nonblank
    found = {"fingerprint": content.fingerprint(sheet.grid, low.bit_length() - 1, nonblank.bit_length())}
    if rows < rules.min_rows:
        return _empty(
            rules, sheet, None, columns,
            f"{what}; only {rows} non-blank row{'s' if rows != 1 else ''}, at least "
            f"{rules.min_rows} expected (min_rows).",
            rows=rows, **found,
        )
    return _result(st.OK, f"{rows} data row{'s' if rows != 1 else ''}. {what}.", rows=rows, **common, **found)


def _bits(mask: int, limit: int) -> list[int]:
    """Indexes of the first ``limit`` set bits of ``mask``."""
    out: list[int] = []
    while mask and len(out) < limit:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _result(status: st.VerifyStatus, message: str, **fields: object) -> Verdict:
    return {"status": status, "message": message, **fields}


def _blank_sheet(sheet: _Sheet) -> str:
    text = f"The first sheet ('{sheet.name}') is blank: no header and no data."
    if sheet.sheet_count > 1:
        text += (
            f" The workbook has {sheet.sheet_count} sheets and only the first is checked: if the "
            "report is on another sheet, move it first."
        )
    return text


def _first_value(row: _Row) -> str | None:
    for cell in row:
        value = _clean(cell)
        if value is not None:
            return value
    return None


def _empty(
    rules: _Rules, sheet: _Sheet, header_row: int | None, columns: Sequence[str], what: str, rows: int = 0,
    **found: object,
) -> Verdict:
    covered = rules.covered
    common = dict(rows=rows, header_row=header_row, columns=list(columns), sheet=sheet.name, **found)
    if covered is not None and rules.closed:
        return _result(
            st.EMPTY_CLOSED,
            f"{what} The report covers {covered.isoformat()}, a configured closed day, so "
            "this is expected.",
            **common,
        )
    if covered is not None and rules.rescue_by is not None:
        todo = (
            f"The report covers {covered.isoformat()}: if the library was open that day, check "
            f"the report in Alma and re-run it by hand before {rules.rescue_by.isoformat()} (when "
            "that day's loans are anonymized); if it was closed, add the day to closed_days in "
            "the config."
        )
    else:
        todo = (
            "If the library was open on the day it covers, check the report in Alma and re-run "
            "it by hand within a few days, before the loans are anonymized; if it was closed, "
            "add the day to closed_days in the config."
        )
    return _result(st.EMPTY, f"{what} {todo}", **common)
