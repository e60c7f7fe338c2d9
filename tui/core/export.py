"""Export: the kept reports as one analysable table (parquet or csv), with honest coverage.

What goes in, and under which run day, comes from the health evaluation
(:func:`tui.core.health.evaluate`), the one home of those rules: each ``RunDay`` of a report
names its deliveries, whether its covered (loan) day is closed, and its status. For each run
day whose covered day is in the range:

- the candidates are the day's deliveries held locally and recorded in the ledger: every
  downloaded copy still on disk with its recorded size, including the older copy of a file the
  server changed (``NAME (changed ...).xlsx`` is a newer copy of the same delivery);
- the newest candidate that verified ``ok`` wins (newest by delivery time, then by the server
  copy's time); the others are *superseded*. Its rows are read through the table cache
  (``tui.core.export_cache``: a workbook is parsed only in a limited worker process, once per
  content); a file whose table cannot be read gives way to the next ``ok`` candidate;
- a day's coverage is ``included`` (a file's rows are in the table), ``empty`` (the newest
  delivery has no data rows on an open day: a gap), ``closed`` (the covered day is a configured
  closed day and no rows came: an empty delivery or none), ``missing`` (no delivery held:
  none arrived, or it was never downloaded) or ``excluded`` (the files that came could not be
  used: unreadable, wrong schema, modified locally, or the same bytes as another day's file;
  or ``purged``: the local retention policy deleted the copy, and the export that included it
  is named; an empty day's purged file still counts as empty or closed, it had no rows);
- a content (sha256) is included once: the same loans never twice.

The table: ``report``, ``run_day``, ``covered_day``, ``delivered_at`` (UTC), ``source_file``,
``source_sha256``, then the reports' own columns by header name, the union over all included
files (a day without a column has nulls there; every change is listed in ``column_drift``).
A column present with different types on different days gets a common type: integers and
floats give floats, dates and date-times give date-times, anything else text. Identifier
columns are always text; with a pseudonym key their values are replaced by pseudonyms
(``tui.core.pseudonym``) while the table is written, so no raw identifier reaches the file.

Written lazily and streamed (polars scans of the cached files, ``sink_parquet``/``sink_csv``),
so memory does not grow with the number of files; into a private folder beside the target,
then linked to its name (never over an existing file unless ``force``), mode 0600. Each
export is recorded in the ledger with the sha256 of every source it used.

Public API: ``run_export(profile, ledger, request, ...) -> ExportResult`` (blocking; the app
runs it in a thread). The request and its errors are in :mod:`tui.core.export_request`:
``ExportError`` is a usage or configuration problem (exit 3) whose ``str()`` is one line
saying what to do.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from tui.core import clock, content, isolation, model
from tui.core import status as st
from tui.core.durable import fsync_dir
from tui.core.export_cache import CachedTable, CacheError, ReadFailure, TableCache, forget_moved, open_cache
from tui.core.export_read import positional
from tui.core.export_request import (
    Cancelled,
    ExportError,
    ExportRequest,
    NotRecorded,
    output_format,
    parse_day,
    report_names,
)
from tui.core.health import STALE, evaluate
from tui.core.local_reports import LocalReport, verify_local
from tui.core.model import JSONObject, VerifyResult
from tui.core.names import escape_name
from tui.core.pseudonym import (
    PSEUDONYM_RULE,
    PseudonymKey,
    PseudonymKeyError,
    default_key_path,
    earlier_key_path,
    identifier_columns,
    load_key,
    repeated_name,
)
from tui.core.validate import normalize_column

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from tui.core.config import Profile
    from tui.core.health import HealthReport
    from tui.core.ledger import Download, ExportSource, Ledger

log = logging.getLogger("report_keeper.export")

FIXED_COLUMNS = ("report", "run_day", "covered_day", "delivered_at", "source_file", "source_sha256")
#: A report column named like one of the fixed columns is renamed with this suffix.
RENAMED_SUFFIX = " (from the file)"

INCLUDED = "included"
EMPTY = "empty"
CLOSED = "closed"
MISSING = "missing"
EXCLUDED = "excluded"
CATEGORIES = (INCLUDED, EMPTY, CLOSED, MISSING, EXCLUDED)

PURGED = "purged"  # an excluded file's status: the retention policy deleted the local copy
#: Why a delivery is not held (``not_held``'s ``reason``): never downloaded, or its copy is gone.
NOT_DOWNLOADED = "not-downloaded"
MISSING_LOCALLY = "missing-locally"
_OK_LIKE = (st.OK, st.CHANGED)  # "changed" describes the server copy; its content verified ok
_EMPTY_LIKE = (st.EMPTY, st.EMPTY_CLOSED)

Progress = Callable[[int, int, str], None]


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class HeldCopy:
    """One local copy of a delivery, as the ledger recorded it and the disk still holds it."""

    report: str
    name: str  # the server's name of the delivery
    path: Path
    sha256: str
    delivered_at: datetime
    order: tuple[datetime, datetime, datetime, str]  # oldest first: delivery, server copy, download
    verification: str | None  # as the run sees it: wrong-day judged against its covered day
    rows: int | None
    header_row: int | None
    fingerprint: str | None = None  # of its data rows (the same rows: the same loans)
    exported_in: str | None = None  # a purged copy: the latest export that included its content

    @property
    def file(self) -> str:
        """The local copy's name; with several folders watched, after its server folder
        (``folder/local name``), as the delivery's ``name`` is ``folder/name`` then."""
        folder, slash, _server_name = self.name.rpartition("/")
        return f"{folder}{slash}{self.path.name}"


@dataclass
class Day:
    """One run day of one report in the range, and what the export made of it."""

    report: str
    run_day: date
    covered_day: date
    closed: bool
    run_status: str
    copies: list[HeldCopy] = field(default_factory=list)  # oldest first
    not_held: list[str] = field(default_factory=list)  # deliveries without a local copy
    #: Those of them downloaded once whose copy is gone from the disk or changed size since.
    gone_locally: list[str] = field(default_factory=list)
    category: str = MISSING
    winner: HeldCopy | None = None
    table: CachedTable | None = None
    failures: dict[Path, ReadFailure] = field(default_factory=dict)
    duplicate_of: Day | None = None  # its winner held the same rows as that day's
    content: tuple[model.ProblemKind, ...] = ()  # the evaluation's content findings for the run (few-rows, ...)
    purged: list[HeldCopy] = field(default_factory=list)  # copies the retention policy deleted
    #: The copy that would win (the newest that verified ok) was purged: the day's rows are in
    #: the export that included it, not in this one (an older held copy never stands in).
    purged_winner: HeldCopy | None = None

    @property
    def only_purged(self) -> bool:
        """Excluded only because the retention policy deleted its copies: a gap of this file,
        not a bad file (its rows are in the export that included them, when there was one)."""
        return self.category == EXCLUDED and (self.purged_winner is not None
                                              or (not self.copies and bool(self.purged)))


@dataclass(frozen=True)
class NoRunFile:
    """A held copy whose delivery is in no run (``clock.possible_delivery`` of now: dated more
    than a day ahead, or of unknown date): it has no run day and no covered day, so it is in
    no day of the export, and is named rather than left out silently."""

    report: str
    name: str
    dated: datetime  # what its name (or the server's clock) says: no run day is made of it
    reason: str  # DATED_AHEAD or UNKNOWN_DATE

    def to_json(self) -> JSONObject:
        return {"file": escape_name(self.name), "report": self.report, "dated": self.dated.isoformat(),
                "reason": self.reason}


DATED_AHEAD = "dated-ahead"
UNKNOWN_DATE = "unknown-date"


@dataclass(frozen=True)
class ColumnDrift:
    """A report's columns changed from one included day to the next."""

    day: date  # the covered day of the later file
    report: str
    file: str  # that file's name, escaped
    added: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def reordered(self) -> bool:
        """The same columns in another order."""
        return not self.added and not self.missing

    def to_json(self) -> JSONObject:
        return {"day": self.day.isoformat(), "added": list(self.added), "missing": list(self.missing),
                "reordered": self.reordered, "report": self.report, "file": self.file}


@dataclass(frozen=True)
class MergedColumn:
    """Header spellings that differ only in case or spacing (``Loan Date``, ``loan date``,
    ``Loan Date `` with a trailing or non-breaking space), exported as one column."""

    column: str  # its name in the table: the first tidy spelling (renamed if named like a fixed column)
    spellings: tuple[str, ...]  # every spelling merged into it, in order of first appearance

    def to_json(self) -> JSONObject:
        return {"column": self.column, "spellings": list(self.spellings)}


@dataclass(frozen=True)
class ImpreciseFile:
    """An included file's number cells of 2**53 or more in one identifier column."""

    day: date  # the covered day
    report: str
    file: str  # escaped
    cells: int

    def to_json(self) -> JSONObject:
        return {"day": self.day.isoformat(), "report": self.report, "file": self.file, "cells": self.cells}


@dataclass(frozen=True)
class ImpreciseIdentifiers:
    """An identifier column (one that is pseudonymized) holding number cells of 2**53 or more:
    a number cell is a double, exact only up to 2**53, so such a value may already be rounded
    in the workbook and two identifiers may have become one value (and one pseudonym). Counts
    and files only, never a value. Text cells keep every digit and are not counted."""

    column: str  # its name in the table
    files: tuple[ImpreciseFile, ...]

    @property
    def cells(self) -> int:
        return sum(f.cells for f in self.files)

    def to_json(self) -> JSONObject:
        return {"column": self.column, "cells": self.cells, "files": [f.to_json() for f in self.files]}


@dataclass(frozen=True)
class RenamedColumn:
    """A report column named like one of the table's leading columns (``report``,
    ``Report``, ``Delivered_At ``: the same once case and spacing are ignored), kept under a
    name of its own: two columns whose names differ only in case would be one column to
    tools that ignore case, and the export merges such spellings everywhere else."""

    column: str  # its name in the table (``Report (from the file)``)
    spellings: tuple[str, ...]  # the header spellings exported under it, in order of first appearance
    leading_column: str  # the leading column it is named like

    def to_json(self) -> JSONObject:
        return {"column": self.column, "spellings": list(self.spellings), "leading_column": self.leading_column}


@dataclass(frozen=True)
class ColumnsKeptApart:
    """Header spellings that differ only in case or spacing but are separate columns of one
    file: two columns, so none of the spellings is merged with another."""

    columns: tuple[str, ...]  # their names in the table, in order of first appearance
    report: str  # the first file that holds several of them
    day: date  # its covered day
    file: str  # escaped
    files: int  # how many included files hold several of them

    def to_json(self) -> JSONObject:
        return {"columns": list(self.columns), "report": self.report, "day": self.day.isoformat(),
                "file": self.file, "files": self.files}


@dataclass(frozen=True)
class IdentifierGap:
    """An included file without an identifier column that other files of its report have: if
    its header was renamed, the identifiers sit in a column nothing marks as one."""

    day: date  # the covered day
    report: str
    file: str  # escaped
    columns: tuple[str, ...]  # the identifier columns it lacks

    def to_json(self) -> JSONObject:
        return {"day": self.day.isoformat(), "report": self.report, "file": self.file,
                "columns": list(self.columns)}


@dataclass
class ExportResult:
    """What an export did (``to_json()`` is the command's JSON document)."""

    out: Path
    format: str
    reports: tuple[str, ...]
    since: date | None
    until: date | None
    days: list[Day]
    rows: int
    files: int
    columns: tuple[str, ...]
    pseudonymized_columns: tuple[str, ...] | None  # None: not pseudonymized
    identifier_columns: tuple[str, ...]
    missing_identifier_columns: tuple[str, ...]
    column_drift: list[ColumnDrift]
    key: PseudonymKey | None
    read: int  # workbooks parsed by this export (the others came from the cache)
    cached: int
    seconds: float
    export_id: int | None = None
    before_history: int = 0  # missing days before the ledger's first delivery of a report
    #: Pseudonymized because they are named by position: nothing tells what they hold.
    unnamed_pseudonymized: tuple[str, ...] = ()
    identifier_gaps: list[IdentifierGap] = field(default_factory=list)
    merged_columns: list[MergedColumn] = field(default_factory=list)
    columns_kept_apart: list[ColumnsKeptApart] = field(default_factory=list)
    renamed_columns: list[RenamedColumn] = field(default_factory=list)
    imprecise_identifiers: list[ImpreciseIdentifiers] = field(default_factory=list)
    in_no_run: list[NoRunFile] = field(default_factory=list)  # held, but in no run: not exported

    # -- coverage
    def of(self, category: str) -> list[Day]:
        return [d for d in self.days if d.category == category]

    @property
    def exit_code(self) -> st.Exit:
        excluded = self.of(EXCLUDED)
        if any(not d.only_purged for d in excluded):
            return st.Exit.CRITICAL
        if self.of(MISSING) or self.of(EMPTY) or excluded:
            return st.Exit.WARNING
        return st.Exit.OK

    @property
    def status(self) -> str:
        return st.overall_name(self.exit_code)

    def few_rows(self) -> list[Day]:
        """Included days whose rows the evaluation found far fewer than usual (content checks),
        or whose file holds fewer rows than ``min_rows`` (verified empty for it)."""
        return [d for d in self.of(INCLUDED) if model.ProblemKind.FEW_ROWS in d.content
                or (d.winner is not None and d.winner.verification in _EMPTY_LIKE)]

    def excluded(self) -> list[JSONObject]:
        out: list[JSONObject] = []
        for d in self.of(EXCLUDED):
            for copy, status, message in _excluded_files(d):
                out.append({"day": d.covered_day.isoformat(), "file": escape_name(copy.file),
                            "status": status, "report": d.report, "run_day": d.run_day.isoformat(),
                            "message": message,
                            **({"exported_in": copy.exported_in} if status == PURGED else {})})
        return out

    def superseded(self) -> list[JSONObject]:
        out: list[JSONObject] = []
        for d in self.days:
            by = d.winner or d.purged_winner or (d.copies[-1] if d.category in (EMPTY, CLOSED) and d.copies else None)
            if by is None:
                continue
            for c in d.copies:
                if c is by:
                    continue
                failure = d.failures.get(c.path)
                out.append({"file": escape_name(c.file), "by": escape_name(by.file), "report": d.report,
                            "day": d.covered_day.isoformat(), "run_day": d.run_day.isoformat(),
                            "status": failure.status if failure else (c.verification or "unverified")})
        return out

    def to_json(self) -> JSONObject:
        days: JSONObject = {c: sorted({d.covered_day.isoformat() for d in self.of(c)})
                                for c in (INCLUDED, EMPTY, CLOSED, MISSING)}
        days[EXCLUDED] = self.excluded()
        by_report: JSONObject = {}
        for name in self.reports:
            mine = [d for d in self.days if d.report == name]
            by_report[name] = {c: [d.covered_day.isoformat() for d in mine if d.category == c] for c in CATEGORIES}
        return {
            "status": self.status,
            "out": str(self.out),
            "format": self.format,
            "rows": self.rows,
            "files": self.files,
            "reports": list(self.reports),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "columns": list(self.columns),
            "pseudonymized_columns": list(self.pseudonymized_columns or ()),
            "pseudonymized": self.pseudonymized_columns is not None,
            "identifier_columns": list(self.identifier_columns),
            "identifier_columns_not_found": list(self.missing_identifier_columns),
            "identifier_columns_absent": [g.to_json() for g in self.identifier_gaps],
            "imprecise_identifiers": [i.to_json() for i in self.imprecise_identifiers],
            "key_file": str(self.key.path) if self.key else None,
            "key_id": self.key.key_id if self.key else None,
            "key_created": bool(self.key and self.key.created),
            "key_moved_from": str(self.key.moved_from) if self.key and self.key.moved_from else None,
            "pseudonym_rule": PSEUDONYM_RULE if self.pseudonymized_columns is not None else None,
            "days": days,
            "days_by_report": by_report,
            "superseded": self.superseded(),
            "column_drift": [c.to_json() for c in self.column_drift],
            "merged_columns": [m.to_json() for m in self.merged_columns],
            "columns_not_merged": [k.to_json() for k in self.columns_kept_apart],
            "renamed_columns": [r.to_json() for r in self.renamed_columns],
            "not_held": [{"day": d.covered_day.isoformat(), "file": escape_name(n), "report": d.report,
                          "reason": MISSING_LOCALLY if n in d.gone_locally else NOT_DOWNLOADED}
                         for d in self.days for n in d.not_held],
            "few_rows": [{"day": d.covered_day.isoformat(), "file": escape_name(d.winner.file), "report": d.report}
                         for d in self.few_rows() if d.winner is not None],
            "in_no_run": [f.to_json() for f in self.in_no_run],
            "files_read": self.read,
            "files_from_cache": self.cached,
            "seconds": round(self.seconds, 3),
            "export_id": self.export_id,
        }

    # -- words for people
    def coverage_line(self) -> str:
        counts = {c: len(self.of(c)) for c in CATEGORIES}
        words = [f"{counts[INCLUDED]} included"]
        if counts[EMPTY]:
            words.append(f"{counts[EMPTY]} empty on an open day")
        if counts[CLOSED]:
            words.append(f"{counts[CLOSED]} closed")
        if counts[MISSING]:
            words.append(f"{counts[MISSING]} missing")
        if counts[EXCLUDED]:
            words.append(f"{counts[EXCLUDED]} excluded")
        span = ""
        covered = [d.covered_day for d in self.days]
        if covered:
            span = f" {min(covered).isoformat()} .. {max(covered).isoformat()}"
        reports = len({d.report for d in self.days})
        if reports > 1:  # the counts are of (report, day) pairs: more than the range has days
            span += f" of {reports} reports, counted per report"
        return f"Covered days{span}: " + ", ".join(words)

    def summary_lines(self, limit: int = 8) -> list[str]:
        what = ", ".join(repr(escape_name(r)) for r in self.reports)
        lines = [
            f"{self.status.upper()}: exported {self.rows:,} rows from {self.files} "
            f"file{'s' if self.files != 1 else ''} of {what} to {escape_name(str(self.out))} "
            f"({self.format}, mode 0600)",
            self.coverage_line(),
        ]

        def days(category: str, label: str) -> None:
            items = self.of(category)
            if not items:
                return
            shown = [f"{d.covered_day.isoformat()}" + (f" ({escape_name(d.report)})" if len(self.reports) > 1 else "")
                     for d in items[:limit]]
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            lines.append(f"  {label}: " + ", ".join(shown) + more)

        days(MISSING, "missing (no delivery held: a gap in the data)")
        missing = self.of(MISSING)
        if any(n not in d.gone_locally for d in missing for n in d.not_held):
            lines.append("    some were delivered but never downloaded: run 'report-keeper sync' first")
        if any(d.gone_locally for d in missing):
            lines.append("    some were downloaded, but the local copy is gone or changed size since: "
                         "run 'report-keeper sync' to fetch them again while the server keeps them")
        if self.before_history:
            lines.append(f"    {self.before_history} of them lie before the ledger's first delivery")
        for f in self.in_no_run[:limit]:
            why = ("dated more than a day ahead" if f.reason == DATED_AHEAD
                   else "dated before 2000 or after 2099, an impossible date")
            lines.append(f"  not exported: {escape_name(f.name)} is {why} ({f.dated.isoformat()}), so it "
                         "belongs to no run day: the server's clock or the name is wrong")
        if len(self.in_no_run) > limit:
            lines.append(f"  ... and {len(self.in_no_run) - limit} more files in no run, not exported (see --json)")
        days(EMPTY, "empty on an open day (no rows: a gap to note)")
        few = self.few_rows()
        if few:
            shown = ", ".join(d.covered_day.isoformat() for d in few[:limit])
            more = f" and {len(few) - limit} more" if len(few) > limit else ""
            lines.append(f"  included with far fewer rows than usual (perhaps partial): {shown}{more}")
        excluded = self.excluded()
        for e in excluded[:limit]:
            # Each value escaped on its own (a line break in one cannot start a line).
            lines.append(f"  excluded {e['day']}: {escape_name(str(e['file']))} "
                         f"({escape_name(str(e['status']))}): {escape_name(str(e['message']))}")
        if len(excluded) > limit:
            lines.append(f"  ... and {len(excluded) - limit} more excluded files (see --json)")
        superseded = self.superseded()
        if superseded:
            n = len(superseded)
            lines.append(f"Superseded: {n} other {'delivery' if n == 1 else 'deliveries'} of a run day "
                         "(a re-run or a changed copy; the newest one that verified ok counts)")
        for drift in self.column_drift[:limit]:
            parts = []
            if drift.added:
                parts.append("added " + ", ".join(repr(c) for c in drift.added))
            if drift.missing:
                parts.append("without " + ", ".join(repr(c) for c in drift.missing))
            if drift.reordered:
                parts.append("columns reordered")
            lines.append(f"Column drift {drift.day.isoformat()}: " + "; ".join(parts)
                         + " (kept by name, nulls where absent)")
        if len(self.column_drift) > limit:
            lines.append(f"... and {len(self.column_drift) - limit} more column changes (see --json)")
        for merged in self.merged_columns[:limit]:
            others = ", ".join(repr(c) for c in merged.spellings if c != merged.column)
            lines.append(f"Merged column {merged.column!r} (also {others}): its header's spelling "
                         "differs only in case or spacing between files")
        if len(self.merged_columns) > limit:
            lines.append(f"... and {len(self.merged_columns) - limit} more merged columns (see --json)")
        for renamed in self.renamed_columns[:limit]:
            spelled = ", ".join(repr(c) for c in renamed.spellings)
            lines.append(f"Renamed {spelled} to {renamed.column!r}: the table's own leading column "
                         f"{renamed.leading_column!r} has that name (case and spacing aside)")
        if len(self.renamed_columns) > limit:
            lines.append(f"... and {len(self.renamed_columns) - limit} more renamed columns (see --json)")
        for apart in self.columns_kept_apart[:limit]:
            names = [repr(c) for c in apart.columns]
            more = f" and {apart.files - 1} more files" if apart.files > 1 else ""
            lines.append(f"Not merged: {', '.join(names[:-1])} and {names[-1]} differ only in case or "
                         f"spacing, but {escape_name(apart.file)} ({apart.day.isoformat()}){more} holds "
                         "them as separate columns: kept as separate columns")
        if self.pseudonymized_columns is not None:
            cols = ", ".join(repr(c) for c in self.pseudonymized_columns) or "none found"
            lines.append(f"Pseudonymized: {cols} (key {self.key.key_id if self.key else '?'}: "
                         f"{escape_name(str(self.key.path)) if self.key else '?'})")
            lines.append(f"Pseudonym rule: {PSEUDONYM_RULE} (exports of the same key and rule can be joined)")
            if self.unnamed_pseudonymized:
                lines.append("  " + ", ".join(repr(c) for c in self.unnamed_pseudonymized)
                             + " had no header name to tell what they hold (a blank header cell, or one "
                             "that reads like a value): pseudonymized too, so no identifier is left raw")
            for gap in self.identifier_gaps[:limit]:
                lines.append(f"  {gap.day.isoformat()}: {escape_name(gap.file)} has no "
                             + ", ".join(repr(c) for c in gap.columns)
                             + " column: if its header was renamed (see the column drift), its "
                             "identifiers are NOT pseudonymized; name the column in identifier_columns")
            if len(self.identifier_gaps) > limit:
                lines.append(f"  ... and {len(self.identifier_gaps) - limit} more files without an "
                             "identifier column (see --json)")
            if self.key is not None and self.key.created:
                lines.append("  A new pseudonym key was created: back it up (see README, Pseudonyms); "
                             "without it later exports cannot be joined with this one.")
            if self.key is not None and self.key.moved_from is not None:
                lines.append(f"  The profile's pseudonym key was moved from {escape_name(str(self.key.moved_from))} "
                             f"to {escape_name(str(self.key.path))}, a file name no other profile can have: "
                             "the pseudonyms stay the same; back it up under its new name.")
        elif self.identifier_columns:
            verb = "holds" if len(self.identifier_columns) == 1 else "hold"
            lines.append("Not pseudonymized: " + ", ".join(repr(c) for c in self.identifier_columns)
                         + f" {verb} raw identifiers (use --pseudonymize before sharing)")
        for imprecise in self.imprecise_identifiers[:limit]:
            n, files = imprecise.cells, len(imprecise.files)
            first = imprecise.files[0]
            lines.append(
                f"Identifier column {imprecise.column!r}: {n} number cell{'s' if n != 1 else ''} of 2**53 or more "
                f"in {files} file{'s' if files != 1 else ''} (first {escape_name(first.file)}, "
                f"{first.day.isoformat()}): Excel keeps a number as a double, so such an identifier may "
                "already be rounded and two of them may have become one value"
                + (" and one pseudonym" if self.pseudonymized_columns is not None else "")
                + "; ask for the report with identifiers as text (see --json)")
        if len(self.imprecise_identifiers) > limit:
            lines.append(f"... and {len(self.imprecise_identifiers) - limit} more identifier columns with "
                         "such numbers (see --json)")
        if self.missing_identifier_columns:
            lines.append("identifier_columns not found in any file: "
                         + ", ".join(repr(c) for c in self.missing_identifier_columns))
        lines.append(f"Read {self.read} workbook{'s' if self.read != 1 else ''}, {self.cached} from the "
                     f"cache, in {self.seconds:.1f} s.")
        return lines

    def toast(self) -> str:
        """The app's notification: where the file is and the coverage in one breath."""
        text = f"{self.rows:,} rows → {self.out}\n{self.coverage_line()}"
        if self.pseudonymized_columns is not None and self.identifier_gaps:
            n = len(self.identifier_gaps)
            text += (f"\n{n} file{'s' if n != 1 else ''} without an identifier column: if its header "
                     "was renamed, its identifiers are NOT pseudonymized (name it in identifier_columns)")
        if self.imprecise_identifiers:
            n = sum(i.cells for i in self.imprecise_identifiers)
            text += (f"\n{n} identifier cell{'s' if n != 1 else ''} hold{'' if n != 1 else 's'} a number of "
                     "2**53 or more: perhaps rounded in the workbook, two identifiers as one (see the JSON)")
        if self.in_no_run:
            n = len(self.in_no_run)
            text += (f"\n{n} held file{'s' if n != 1 else ''} in no run (dated ahead or of an impossible "
                     "date): not exported (the export's JSON lists them)")
        return text


def _excluded_files(d: Day) -> list[tuple[HeldCopy, str, str]]:
    out = []
    purged = d.purged_winner or (d.purged[-1] if not d.copies and d.purged else None)
    if purged is not None:
        where = (f"its rows are in the export {escape_name(purged.exported_in)}" if purged.exported_in
                 else "no recorded export holds its rows")
        out.append((purged, PURGED, "the local retention policy deleted its local copy "
                    f"(local_retention_days); {where}"))
        return out
    for c in reversed(d.copies):
        failure = d.failures.get(c.path)
        if failure is not None:
            out.append((c, failure.status, failure.message))
        elif c.verification not in (*_OK_LIKE, *_EMPTY_LIKE):
            status = c.verification or "unverified"
            out.append((c, status, _EXCLUDED_WHY.get(status, "verification found it " + status)
                        + ": 'report-keeper verify' and 'report-keeper check' say more"))
    return out


_EXCLUDED_WHY = {
    st.UNREADABLE: "verification found it unreadable",
    st.SCHEMA: "verification found it without the expected columns",
    st.WRONG_DAY: "its rows describe loans of another day than the one its run covers",
    "unverified": "it could not be verified",
}


# ----------------------------------------------------------------------------- running


def run_export(
    profile: Profile, ledger: Ledger, request: ExportRequest, *, progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None, pool: isolation.WorkerPool | None = None,
    now: datetime | None = None,
) -> ExportResult:
    """Export the profile's held reports as ``request`` says. Raises ``ExportError`` for usage
    and configuration problems (nothing written) and ``Cancelled`` when ``cancelled()``."""
    started = time.perf_counter()
    fmt = request.format
    if request.since and request.until and request.since > request.until:
        raise ExportError(f"--since {request.since} is after --until {request.until}; "
                          "give the first covered day first")
    out = _check_out(request.out, force=request.force)
    key = None
    if request.pseudonymize:
        try:
            key = load_key(request.key_file, profile.name, profile.config_profiles, ledger.export_key_ids)
        except PseudonymKeyError as exc:
            raise ExportError(str(exc)) from None
    pool = pool or isolation.shared_pool()
    try:
        cache = open_cache(Path(profile.ledger_path), pool)
    except CacheError as exc:
        raise ExportError(str(exc)) from None
    _refuse_own_folder(out, cache.folder, profile, request.key_file)
    forget_moved(Path(profile.ledger_path))  # the cache of a ledger moved away goes


    now = now or clock.now()
    ledger.reconcile_local(profile.local_dir)
    deliveries = ledger.deliveries()
    health = evaluate(profile, deliveries, now=now)
    reports = _select_reports(health, request.reports, profile)
    days, before = _plan(profile, ledger, health, reports, deliveries, request.since, request.until)
    _verify_unverified(profile, ledger, days, pool, cancelled)
    read_before = cache.built
    stale = _stale_files(health)
    try:
        _resolve(days, cache, progress, cancelled)
        # A winner whose rows turn out to be another day's (the same content as a day before
        # it, or found stale) gives way to the next ok copy of its day, as a wrong-day copy
        # never wins; each round rules out at least one copy, so this ends.
        while again := _categorize(days, stale):
            _resolve(again, cache, progress, cancelled)
    except CacheError as exc:
        raise ExportError(str(exc)) from None
    included = [d for d in days if d.category == INCLUDED]

    columns, drift, targets, renames, merged, apart, renamed = _union(included)
    idents, missing_idents, gaps = _identifiers(profile, reports, included, renames)
    # A column named by position has no header to tell what it holds (the identifier column
    # of a day whose header cell was blank, say): under a key it is pseudonymized too, so no
    # raw identifier can reach the file through it.
    unnamed = tuple(c for c in columns if key is not None and c not in idents and positional(c))
    imprecise = _imprecise(included, columns, renames, idents | set(unnamed))
    if cancelled is not None and cancelled():
        raise Cancelled("the export was cancelled; nothing was written")
    if progress is not None:
        progress(len(included), len(included), "writing")
    _write(out, fmt, included, columns, targets, renames, idents | set(unnamed), key, force=request.force)
    rows = sum(d.table.rows for d in included if d.table is not None)
    result = ExportResult(
        out=out, format=fmt, reports=tuple(reports), since=request.since, until=request.until,
        days=days, rows=rows, files=len(included), columns=(*FIXED_COLUMNS, *columns),
        pseudonymized_columns=tuple(c for c in columns if c in idents or c in unnamed) if key else None,
        identifier_columns=tuple(c for c in columns if c in idents),
        missing_identifier_columns=tuple(missing_idents), column_drift=drift, key=key,
        read=cache.built - read_before, cached=cache.hits, seconds=0.0, before_history=before,
        unnamed_pseudonymized=unnamed, identifier_gaps=gaps, merged_columns=merged, columns_kept_apart=apart,
        renamed_columns=renamed, imprecise_identifiers=imprecise,
        in_no_run=_in_no_run(reports, deliveries, now),
    )
    result.export_id = _record(ledger, result)
    keep = {c.sha256 for d in days for c in d.copies}
    try:
        keep |= ledger.download_sha256s(other_profiles=True)
        cache.prune(keep)
    except Exception as exc:  # noqa: BLE001 - a cache left over is harmless, the export is done
        log.warning("export cache not pruned: %s", type(exc).__name__)
    result.seconds = time.perf_counter() - started
    log.info("export: %d rows from %d files to %s (%s), %d read, %d cached, %.2f s",
             rows, len(included), out.name, result.status, result.read, result.cached, result.seconds)
    return result


def _check_out(out: Path, *, force: bool) -> Path:
    target = Path(os.path.abspath(Path(out).expanduser()))
    output_format(target)
    parent = target.parent
    if not parent.is_dir():
        raise ExportError(f"the folder {escape_name(str(parent))} does not exist; "
                          "create it or name another output file")
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise ExportError(f"cannot use {escape_name(str(target))} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ExportError(f"{escape_name(str(target))} is a folder; name a file such as export.parquet inside it")
    if not force:
        raise ExportError(f"{escape_name(str(target))} already exists; "
                          "pass --force to replace it, or name another file")
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISLNK(info.st_mode):
        raise ExportError(f"{escape_name(str(target))} is not a regular file; name another output file")
    return target


def _refuse_own_folder(out: Path, cache_folder: Path, profile: Profile, key_file: Path | None) -> None:
    """The output may not land in the export cache or replace the ledger or a pseudonym key
    (the one named, or the profile's own whether or not this export pseudonymizes: losing it
    would part every later export's pseudonyms from the earlier ones')."""
    resolved = Path(os.path.realpath(out))
    cache = Path(os.path.realpath(cache_folder))
    if resolved.is_relative_to(cache):
        raise ExportError(f"{escape_name(str(out))} lies in the export cache; name a file elsewhere")
    if resolved == Path(os.path.realpath(Path(profile.ledger_path))):
        raise ExportError(f"{escape_name(str(out))} is the ledger; name another file")
    keys = [default_key_path(profile.name), earlier_key_path(profile.name)]
    keys += [Path(key_file).expanduser()] if key_file is not None else []
    if any(resolved == Path(os.path.realpath(k)) for k in keys):
        raise ExportError(f"{escape_name(str(out))} is the pseudonym key; name another output file "
                          "(the key must be kept for the pseudonyms to stay the same)")


def _select_reports(health: HealthReport, wanted: Sequence[str], profile: Profile) -> list[str]:
    names = [r.name for r in health.reports]
    if not names:
        raise ExportError(
            f"nothing to export: the ledger of profile {escape_name(profile.name)!r} holds no "
            "delivery and no report is configured; run 'report-keeper sync' first"
        )
    if not wanted:
        return names
    chosen = []
    for w in wanted:
        match = [n for n in names if n == w] or [n for n in names if n.casefold().strip() == w.casefold().strip()]
        if not match:
            known = "; ".join(repr(escape_name(n)) for n in names)
            raise ExportError(f"no report named {escape_name(w)!r} in profile {escape_name(profile.name)!r} "
                              f"(reports: {known})")
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def _plan(profile: Profile, ledger: Ledger, health: HealthReport, reports: list[str], deliveries: list[model.Delivery],
          since: date | None, until: date | None) -> tuple[list[Day], int]:
    """Every run day in the range and the copies held for it (from the health evaluation)."""
    by_name = {d.name: d for d in deliveries}
    downloads: dict[str, list[Download]] = {}
    for dl in ledger.downloads():
        downloads.setdefault(dl.name, []).append(dl)
    copies_of: dict[str, list[tuple[Download, model.Delivery]]] = {}  # name -> copies
    purged_of: dict[str, list[tuple[Download, model.Delivery]]] = {}  # deleted by the retention policy
    shas: set[str] = set()
    for name, recorded in downloads.items():
        delivery = by_name.get(name)
        if delivery is None:
            continue
        seen: dict[str, Download] = {}
        for dl in recorded:  # oldest first; a path downloaded again keeps its latest record
            seen[dl.local_path] = dl
        latest = recorded[-1]
        held = []
        for path, dl in seen.items():
            if dl.purged:
                purged_of.setdefault(name, []).append((dl, delivery))
                shas.add(dl.sha256)
                continue
            if dl is latest and delivery.extra.get("missing_locally"):
                continue
            if not _on_disk(path, dl.size):
                continue
            held.append((dl, delivery))
            shas.add(dl.sha256)
        copies_of[name] = held
    verified = ledger.verifications_of(shas)
    rows_in, covered_in = _exported_in(ledger) if purged_of else ({}, {})

    days: list[Day] = []
    before = 0
    for rh in health.reports:
        if rh.name not in reports:
            continue
        cfg = profile.report_for(rh.name)
        runs = list(rh.runs)
        if since is not None and runs:
            first_run = runs[0].day
            lag = timedelta(days=cfg.lag_days)
            if since < cfg.covered_day(first_run):
                for run_day in rh.schedule.run_days(since + lag, first_run - timedelta(days=1)):
                    covered = cfg.covered_day(run_day)
                    if until is not None and covered > until:
                        continue
                    days.append(Day(rh.name, run_day, covered, cfg.is_closed(covered), model.MISSING))
                    before += 1
        for run in runs:
            covered = cfg.covered_day(run.day)
            if (since is not None and covered < since) or (until is not None and covered > until):
                continue
            if run.status == model.PENDING:
                continue  # not due yet: neither covered nor a gap
            day = Day(rh.name, run.day, covered, bool(run.closed), run.status,
                      content=run.content)
            for name in run.files:
                held = copies_of.get(name, [])
                gone = purged_of.get(name, [])
                if not held and not gone:
                    day.not_held.append(name)
                    if name in downloads:
                        day.gone_locally.append(name)
                for dl, delivery in gone:
                    v = verified.get(dl.sha256)
                    day.purged.append(HeldCopy(
                        report=rh.name, name=name, path=Path(dl.local_path), sha256=dl.sha256,
                        delivered_at=delivery.delivered_at,
                        order=(delivery.delivered_at, dl.mtime or dl.downloaded_at, dl.downloaded_at, dl.local_path),
                        verification=_as_run_sees(v, covered), rows=v.rows if v else None,
                        header_row=v.header_row if v else None, fingerprint=v.fingerprint if v else None,
                        # A copy with rows is in an export only where that export took its rows.
                        exported_in=(rows_in if v is not None and v.rows else covered_in).get(dl.sha256),
                    ))
                for dl, delivery in held:
                    v = verified.get(dl.sha256)
                    day.copies.append(HeldCopy(
                        report=rh.name, name=name, path=Path(dl.local_path), sha256=dl.sha256,
                        delivered_at=delivery.delivered_at,
                        order=(delivery.delivered_at, dl.mtime or dl.downloaded_at, dl.downloaded_at, dl.local_path),
                        verification=_as_run_sees(v, covered), rows=v.rows if v else None,
                        header_row=v.header_row if v else None, fingerprint=v.fingerprint if v else None,
                    ))
            day.copies.sort(key=lambda c: c.order)
            day.purged.sort(key=lambda c: c.order)
            days.append(day)
    order = {name: i for i, name in enumerate(reports)}
    days.sort(key=lambda d: (order[d.report], d.covered_day, d.run_day))
    return days, before


def _in_no_run(reports: list[str], deliveries: list[model.Delivery], now: datetime) -> list[NoRunFile]:
    """The held copies (as the ledger knows them after ``reconcile_local``) of the chosen
    reports whose delivery is in no run by the evaluation's rule."""
    held = (model.LocalState.DOWNLOADED, model.LocalState.CHANGED)
    out = []
    for d in deliveries:
        if d.report not in reports or not d.downloaded or d.local_state not in held:
            continue
        if clock.possible_delivery(d.delivered_at, now):
            continue
        reason = DATED_AHEAD if clock.possible_delivery(d.delivered_at) else UNKNOWN_DATE
        out.append(NoRunFile(d.report, d.name, d.delivered_at, reason))
    order = {name: i for i, name in enumerate(reports)}
    out.sort(key=lambda f: (order[f.report], f.dated, f.name))
    return out


def _exported_in(ledger: Ledger) -> tuple[dict[str, str], dict[str, str]]:
    """sha256 -> the output file of the latest export that included its rows; and of the
    latest that included it at all (its rows, or as an empty day's file)."""
    rows: dict[str, str] = {}
    out: dict[str, str] = {}
    for export in ledger.exports():  # oldest first: later exports win
        for source in export["sources"]:
            if source["role"] in ("rows", "empty"):
                out[source["sha256"]] = export["out"]
            if source["role"] == "rows":
                rows[source["sha256"]] = export["out"]
    return rows, out


def _as_run_sees(v: VerifyResult | None, covered: date) -> str | None:
    """A copy's status for its run: rows that describe another loan day than the run's covered
    day are ``wrong-day`` (the content checks' rule, as the health evaluation applies it), also
    in a file verified empty for holding fewer rows than ``min_rows``."""
    if v is None:
        return None
    judged = v.status in (st.OK, st.WRONG_DAY) or (v.status in _EMPTY_LIKE and bool(v.rows))
    if judged and v.dates is not None:
        if content.wrong_day(v.dates, covered) is not None:
            return st.WRONG_DAY
        return st.OK if v.status == st.WRONG_DAY else v.status
    return v.status


def _has_rows(c: HeldCopy) -> bool:
    """A copy whose rows can be exported: verified ok, or verified empty only because it holds
    fewer data rows than ``min_rows`` (a threshold for monitoring: its rows are still loans)."""
    return c.verification in _OK_LIKE or (c.verification in _EMPTY_LIKE and bool(c.rows))


def _on_disk(path: str, size: int) -> bool:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def _verify_unverified(profile: Profile, ledger: Ledger, days: list[Day], pool: isolation.WorkerPool,
                       cancelled: Callable[[], bool] | None) -> None:
    """Copies whose verification was never recorded are verified now (and recorded)."""
    todo = {c.path: (d, c) for d in days for c in d.copies if c.verification is None}
    if not todo:
        return
    items = [LocalReport(c.path, c.path.name, profile.report_for(c.report), c.report, c.delivered_at)
             for _, c in todo.values()]
    for outcome in verify_local(items, ledger, pool=pool, cancelled=cancelled):
        d, c = todo[Path(outcome.result.path)]
        if outcome.sha256 != c.sha256:
            continue  # the bytes changed: the table read reports it as modified
        fresh = HeldCopy(c.report, c.name, c.path, c.sha256, c.delivered_at, c.order,
                         _as_run_sees(outcome.result, d.covered_day), outcome.result.rows,
                         outcome.result.header_row, outcome.result.fingerprint)
        d.copies[d.copies.index(c)] = fresh


def _resolve(days: list[Day], cache: TableCache, progress: Progress | None,
             cancelled: Callable[[], bool] | None) -> None:
    """Find each day's winner: the newest ok copy whose table can be read (cache or worker)
    and that no failure ruled out yet, as many files at a time as the pool has workers."""
    tried: dict[int, int] = {id(d): 0 for d in days}
    candidates: dict[int, list[HeldCopy]] = {}
    for d in days:
        # Newest first; a purged copy ends the list: an older copy never stands in for it.
        ok: list[HeldCopy] = []
        purged = {id(c) for c in d.purged}
        for c in sorted([*d.copies, *d.purged], key=lambda c: c.order, reverse=True):
            if id(c) in purged:
                if _has_rows(c):
                    d.purged_winner = c
                    break
                continue
            if _has_rows(c) and c.path not in d.failures:  # not read, or given up by an earlier pass
                ok.append(c)
        candidates[id(d)] = ok
    done = 0
    total = sum(1 for d in days if candidates[id(d)])
    pool_size = cache.pool.size if cache.pool is not None else 1
    while True:
        wave: list[tuple[Day, HeldCopy]] = []
        for d in days:
            if d.winner is not None:
                continue
            ok = candidates[id(d)]
            if tried[id(d)] < len(ok):
                wave.append((d, ok[tried[id(d)]]))
                tried[id(d)] += 1
        if not wave:
            return

        def read(item: tuple[Day, HeldCopy]) -> CachedTable | ReadFailure | None:
            _, c = item
            if cancelled is not None and cancelled():
                return None
            cached = cache.held(c.path, c.sha256, c.header_row)  # the copy's bytes checked first
            if cached is not None:
                return cached
            try:
                return cache.build(c.path, c.sha256, c.header_row, cancel=cancelled)
            except isolation.PoolClosed:  # cancelled, or the program is closing
                return None

        with ThreadPoolExecutor(max_workers=max(1, min(pool_size, len(wave))),
                                thread_name_prefix="export-read") as ex:
            for (d, c), got in zip(wave, ex.map(read, wave), strict=True):
                if got is None:
                    raise Cancelled("the export was cancelled; nothing was written")
                if isinstance(got, ReadFailure):
                    d.failures[c.path] = got
                    log.warning("export: %s not read (%s)", escape_name(c.file), got.status)
                else:
                    d.winner, d.table = c, got
                done += 1
                if progress is not None:
                    progress(min(done, total), max(total, done), c.file)
        if cancelled is not None and cancelled():
            raise Cancelled("the export was cancelled; nothing was written")


def _stale_files(health: HealthReport) -> set[str]:
    """Files the evaluation found repeating an earlier delivery's rows (content checks)."""
    return {p.file for r in health.reports for p in r.problems if p.kind == STALE and p.file}


def _categorize(days: list[Day], stale: set[str]) -> list[Day]:
    """Each day's category, in order (the first day with a content keeps it). Returns the
    days whose winner was ruled out here (its rows are another day's): their next ok copy,
    if any, is to be read and the days categorized again."""
    used: dict[str, Day] = {}  # sha256 and row fingerprint of each winner so far
    again: list[Day] = []
    for d in days:
        if d.winner is not None:
            keys = [k for k in (d.winner.sha256, d.winner.fingerprint) if k]
            first = next((used[k] for k in keys if k in used), None)
            if first is not None:  # the same rows as another day's file: never the same loans twice
                theirs = first.winner
                same_bytes = theirs is not None and theirs.sha256 == d.winner.sha256
                d.failures[d.winner.path] = ReadFailure(
                    "duplicate" if same_bytes else "stale",
                    f"{'the same file' if same_bytes else 'the same rows'} as "
                    f"{escape_name(theirs.file) if theirs else '?'}, exported for covered day "
                    f"{first.covered_day.isoformat()}: Alma sent an earlier result again")
                d.duplicate_of, d.winner, d.table = first, None, None
                d.category = EXCLUDED
                again.append(d)
                continue
            only = len({c.name for c in d.copies}) == 1
            if d.winner.name in stale or (STALE in d.content and only):
                # The evaluation found it repeating an earlier day's rows (that day may lie
                # outside the range): its rows are not the loans of this day.
                d.failures[d.winner.path] = ReadFailure(
                    "stale", "its rows repeat an earlier delivery's (the content checks found the "
                    "same rows): Alma sent an earlier result again")
                d.winner, d.table = None, None
                d.category = EXCLUDED
                again.append(d)
                continue
            used.update((k, d) for k in keys)
            d.category = INCLUDED
            continue
        if d.purged_winner is not None:
            d.category = EXCLUDED  # its rows went into an earlier export; the file is gone
            continue
        if d.copies:
            latest = d.copies[-1]
            if latest.verification in _EMPTY_LIKE and latest.path not in d.failures:
                d.category = CLOSED if d.closed else EMPTY
            else:
                d.category = EXCLUDED
            continue
        if d.purged:
            # Deleted by the retention policy: a day whose file had no rows is covered as
            # before (nothing to read); rows that are no longer here cannot be exported again.
            if d.purged[-1].verification in _EMPTY_LIKE:
                d.category = CLOSED if d.closed else EMPTY
            else:
                d.category = EXCLUDED
            continue
        d.category = CLOSED if d.closed else MISSING
    return again


def _union(included: list[Day]) -> tuple[list[str], list[ColumnDrift], dict[str, pl.DataType], dict[str, str],
                                          list[MergedColumn], list[ColumnsKeptApart], list[RenamedColumn]]:
    """The reports' columns in order of first appearance, the drift between consecutive days
    of a report, a common type per column, each file column's name in the table where it is
    not its own (a spelling merged into another, a name like a fixed column's), the spellings
    merged and kept apart, and the columns renamed for being named like a fixed column."""
    order: list[str] = []
    kinds: dict[str, set[pl.DataType]] = {}
    spelling, merged, apart = _merge_spellings(included)
    raw = list(dict.fromkeys(name for d in included if d.table is not None for name in d.table.columns))
    fixed = _renames(list(dict.fromkeys(spelling.get(name, name) for name in raw)))
    renames = {name: fixed.get(spelling.get(name, name), spelling.get(name, name)) for name in raw}
    renamed = [RenamedColumn(final, tuple(n for n in raw if renames[n] == final), _fixed_like(name))
               for name, final in fixed.items()]
    renames = {name: final for name, final in renames.items() if final != name}
    # Name them as the table does (a merged column named like a fixed one is renamed too).
    merged = [replace(m, column=fixed.get(m.column, m.column)) for m in merged]
    apart = [replace(k, columns=tuple(fixed.get(c, c) for c in k.columns)) for k in apart]
    drift: list[ColumnDrift] = []
    previous: dict[str, tuple[str, ...]] = {}
    for d in included:
        assert d.table is not None and d.winner is not None
        cols = []
        for name, dtype in d.table.schema:
            final = renames.get(name, name)
            cols.append(final)
            if final not in kinds:
                order.append(final)
                kinds[final] = set()
            if dtype != pl.Null:
                kinds[final].add(dtype)
        prev = previous.get(d.report)
        here = tuple(cols)
        if prev is not None and prev != here:
            drift.append(ColumnDrift(d.covered_day, d.report, escape_name(d.winner.file),
                                     added=tuple(c for c in here if c not in prev),
                                     missing=tuple(c for c in prev if c not in here)))
        previous[d.report] = here
    targets = {name: _common_type(kinds[name]) for name in order}
    return order, drift, targets, renames, merged, apart, renamed


_SPACES = re.compile(r"\s+")


def _merge_spellings(included: list[Day]) -> tuple[dict[str, str], list[MergedColumn], list[ColumnsKeptApart]]:
    """Header spellings that are one column: the same name once whitespace is trimmed and
    collapsed (a non-breaking space is whitespace) and case is folded, as verification compares
    names with ``expected_columns``. Each spelling maps to the group's first tidy spelling (no
    space around it, single ordinary spaces inside; else the first spelling), in the order the
    columns first appear. A group of which one file holds two spellings is never merged: they
    are two columns there. Names given by position (``column N``) are never merged."""
    groups: dict[str, list[str]] = {}  # folded name -> spellings, in order of first appearance
    kept_apart: dict[str, tuple[Day, int]] = {}  # folded name -> first file holding several, how many
    for d in included:
        assert d.table is not None
        here: dict[str, int] = {}
        for name in d.table.columns:
            if positional(name):
                continue
            key = normalize_column(name)
            spellings = groups.setdefault(key, [])
            if name not in spellings:
                spellings.append(name)
            here[key] = here.get(key, 0) + 1
        for key, count in here.items():
            if count > 1:
                first, files = kept_apart.get(key, (d, 0))
                kept_apart[key] = (first, files + 1)
    mapping: dict[str, str] = {}
    merged: list[MergedColumn] = []
    apart: list[ColumnsKeptApart] = []
    for key, spellings in groups.items():
        if len(spellings) < 2:
            continue
        if key in kept_apart:
            d, files = kept_apart[key]
            assert d.winner is not None
            apart.append(ColumnsKeptApart(tuple(spellings), d.report, d.covered_day, escape_name(d.winner.file),
                                          files))
            continue
        shown = next((n for n in spellings if _SPACES.sub(" ", n).strip() == n), spellings[0])
        mapping.update({n: shown for n in spellings if n != shown})
        merged.append(MergedColumn(shown, tuple(spellings)))
    return mapping, merged, apart


_FIXED_FOLDED = {normalize_column(name): name for name in FIXED_COLUMNS}


def _fixed_like(name: str) -> str:
    """The fixed column ``name`` is named like (case and spacing ignored)."""
    return _FIXED_FOLDED[normalize_column(name)]


def _renames(names: Sequence[str]) -> dict[str, str]:
    """A new name for each report column named like a fixed column once case and spacing are
    ignored (``report``, ``Report``, ``Delivered_At ``): ``NAME (from the file)``, or, when a
    file has a column of that name too, ``NAME (from the file) (2)``... (never a name some
    file uses, nor one differing from it only in case or spacing: two columns under one name
    would lose one of them, and names that differ only in case are one name to many tools).
    ``names`` in order of first appearance, so the numbering is the same in every run."""
    renames: dict[str, str] = {}
    taken = {normalize_column(n) for n in names} | set(_FIXED_FOLDED)
    for name in names:
        if normalize_column(name) not in _FIXED_FOLDED:
            continue
        final, n = name + RENAMED_SUFFIX, 2
        while normalize_column(final) in taken:
            final, n = f"{name}{RENAMED_SUFFIX} ({n})", n + 1
        renames[name] = final
        taken.add(normalize_column(final))
    return renames


def _common_type(kinds: set[pl.DataType]) -> pl.DataType:
    if not kinds:
        return pl.String()
    if len(kinds) == 1:
        return next(iter(kinds))
    if all(k in (pl.Int64, pl.Float64) for k in kinds):
        return pl.Float64()
    if all(k == pl.Date or isinstance(k, pl.Datetime) for k in kinds):
        return pl.Datetime("us")
    return pl.String()


def _identifiers(profile: Profile, reports: list[str], included: list[Day], renames: dict[str, str]
                 ) -> tuple[set[str], list[str], list[IdentifierGap]]:
    """Identifier columns (final names), configured ones found in no file, and the included
    files that lack an identifier column other files of their report have."""
    found: set[str] = set()
    missing: list[str] = []
    gaps: list[IdentifierGap] = []
    for name in reports:
        cfg = profile.report_for(name)
        mine = [d for d in included if d.report == name and d.table is not None]
        cols: list[str] = []
        for d in mine:
            assert d.table is not None
            cols.extend(c for c in d.table.columns if c not in cols)
        configured = tuple(cfg.identifier_columns or ())
        hits = identifier_columns(cols, configured)
        found.update(renames.get(c, c) for c in hits)
        if configured and cols:
            have = {normalize_column(c) for c in cols}
            missing.extend(c for c in configured if normalize_column(c) not in have and c not in missing)
        # "Primary Identifier " is the same one; so is a repeat in one header row ("Primary
        # Identifier (2)"): a file with the column once is not one without it.
        wanted = {normalize_column(repeated_name(h)): repeated_name(h) for h in hits}
        for d in mine:
            assert d.table is not None and d.winner is not None
            here = {normalize_column(c) for c in d.table.columns}
            lacking = tuple(h for n, h in wanted.items() if n not in here)
            if lacking:
                gaps.append(IdentifierGap(d.covered_day, d.report, escape_name(d.winner.file), lacking))
    return found, missing, gaps


def _imprecise(included: list[Day], columns: list[str], renames: dict[str, str],
               counted: set[str]) -> list[ImpreciseIdentifiers]:
    """The identifier columns (``counted``, final names) with number cells of 2**53 or more,
    in the table's column order, and the files holding them (from the cached counts)."""
    found: dict[str, list[ImpreciseFile]] = {}
    for d in included:
        assert d.table is not None and d.winner is not None
        per_column: dict[str, int] = {}
        for name, n in d.table.imprecise:
            final = renames.get(name, name)
            if final in counted:
                per_column[final] = per_column.get(final, 0) + n
        for final, n in per_column.items():
            found.setdefault(final, []).append(ImpreciseFile(d.covered_day, d.report, escape_name(d.winner.file), n))
    return [ImpreciseIdentifiers(c, tuple(found[c])) for c in columns if c in found]


def _write(out: Path, fmt: str, included: list[Day], columns: list[str], targets: dict[str, pl.DataType],
           renames: dict[str, str], idents: set[str], key: PseudonymKey | None, *, force: bool) -> None:
    """Stream the table into a private folder beside ``out``, then put it in place (0600)."""
    plan = _plan_frame(included, columns, targets, renames, idents, key)
    if fmt == "csv":
        plan = _defuse_formulas(plan)
    try:
        work = Path(_mkdtemp(out.parent))
    except OSError as exc:
        raise ExportError(f"cannot write in {escape_name(str(out.parent))} ({exc.strerror or exc}); "
                          "check the folder's permissions and free space") from None
    part = work / ("export." + fmt)
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with _Sink(fd, "wb") as fh:
            try:
                if fmt == "parquet":
                    plan.sink_parquet(fh, compression="zstd")
                else:
                    plan.sink_csv(fh)
            except pl.exceptions.PolarsError:
                if fh.error is None:
                    raise  # not the disk's refusal: a bug, reported as one
                raise fh.error from None
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(part, 0o600)
        _place(part, out, force=force)
        fsync_dir(out.parent)
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise ExportError(f"{escape_name(str(out))} appeared while the export ran; nothing was "
                              "replaced. Pass --force to replace it, or name another file") from None
        raise ExportError(f"cannot write {escape_name(str(out))} ({exc.strerror or exc}); "
                          "check the folder's permissions and free space") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Sink(io.FileIO):
    """The output file, remembering the operating system's error of a failed write: polars
    turns it into an error of its own (a full disk as "parquet: ... Invalid thrift: transport
    error"), which would read as a bug instead of saying what happened."""

    error: OSError | None = None

    def write(self, data: ReadableBuffer, /) -> int:
        try:
            return super().write(data)
        except OSError as exc:
            self.error = exc
            raise


#: What a spreadsheet takes for the start of a formula when it opens a csv file.
FORMULA_START = r"^[=+\-@\t\r]"


def _defuse_formulas(plan: pl.LazyFrame) -> pl.LazyFrame:
    """Text cells of a csv that a spreadsheet would run as formulas (``=HYPERLINK(...)`` in a
    title a patron typed, a server file name starting with ``=``) get a leading ``'``, so they
    are shown as text. Parquet keeps every cell exactly. The header line is cells too (the
    workbooks' header cells): such a column name gets the same ``'``."""
    schema = plan.collect_schema()
    text = [name for name, dtype in schema.items() if dtype == pl.String]
    plan = plan.with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_START)).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in text
    )
    names = set(schema.names())
    renames: dict[str, str] = {}
    for name in schema.names():
        if re.match(FORMULA_START, name):
            shown = "'" + name
            while shown in names:
                shown = "'" + shown
            names.add(shown)
            renames[name] = shown
    return plan.rename(renames) if renames else plan


#: The private folder an export writes in, beside its target.
WORK_PREFIX = ".report-keeper-export-"
#: A private folder this old is left by an export that was killed (one takes seconds).
STALE_WORK_SECONDS = 3600.0


def _mkdtemp(parent: Path) -> str:
    _remove_stale_work(parent)
    return tempfile.mkdtemp(prefix=WORK_PREFIX, dir=parent)


def _remove_stale_work(parent: Path) -> None:
    """Remove the private folders that killed exports left beside their targets (a
    half-written table of patron data, hidden): only real folders of this user named like
    ours, untouched for an hour, holding nothing but what an export writes there (a folder of
    the user's that happens to carry the prefix is theirs); never through a link."""
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(WORK_PREFIX)]
    except OSError:
        return
    now = time.time()
    for e in entries:
        try:
            info = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if (not stat.S_ISDIR(info.st_mode) or now - info.st_mtime < STALE_WORK_SECONDS
                or (hasattr(os, "geteuid") and info.st_uid != os.geteuid())):
            continue
        if _remove_leftover(parent, e.name):
            log.info("export: removed %s, left by an export that did not finish", escape_name(e.name))


#: What an export writes in its private folder: the only entries a leftover may hold.
_WORK_FILES = frozenset({"export.parquet", "export.csv"})


def _remove_leftover(parent: Path, name: str) -> bool:
    """Remove the folder ``parent/name`` if it holds only an export's table (regular files):
    opened without following a link, emptied and removed relative to its descriptor."""
    try:
        fd = os.open(os.path.join(parent, name), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        inside = os.listdir(fd)
        if not set(inside) <= _WORK_FILES:
            return False
        for entry in inside:
            if not stat.S_ISREG(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                return False
        for entry in inside:
            os.unlink(entry, dir_fd=fd)
        os.rmdir(os.path.join(parent, name))
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _place(part: Path, out: Path, *, force: bool) -> None:
    if force:
        os.replace(part, out)
        return
    try:
        os.link(part, out)  # fails if ``out`` exists: never over a file that appeared meanwhile
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(out):  # a file system without hard links: check, then rename
            raise FileExistsError(errno.EEXIST, "exists", str(out)) from None
        os.rename(part, out)
        return
    os.unlink(part)


def _plan_frame(included: list[Day], columns: list[str], targets: dict[str, pl.DataType],
                renames: dict[str, str], idents: set[str], key: PseudonymKey | None) -> pl.LazyFrame:
    """The lazy table: consecutive files with the same columns are scanned together and
    joined with their per-file values (report, days, source)."""
    prefix = f"__rk{secrets.token_hex(4)}_"
    fixed_types: dict[str, pl.DataType] = {
        "report": pl.String(), "run_day": pl.Date(), "covered_day": pl.Date(),
        "delivered_at": pl.Datetime("us", "UTC"), "source_file": pl.String(), "source_sha256": pl.String(),
    }
    out_types: dict[str, pl.DataType] = {
        **fixed_types, **{c: (pl.String() if c in idents else targets[c]) for c in columns}}
    if not included:
        return pl.DataFrame(schema=out_types).lazy()
    hasher = _pseudonymizer(key) if key is not None else None
    groups: list[list[tuple[Day, CachedTable, HeldCopy]]] = []
    for d in included:
        assert d.table is not None and d.winner is not None  # every included day has both
        if groups and groups[-1][0][1].schema == d.table.schema:
            groups[-1].append((d, d.table, d.winner))
        else:
            groups.append([(d, d.table, d.winner)])
    frames = []
    path_col = prefix + "path"
    for group in groups:
        paths = [str(table.path) for _, table, _ in group]
        meta = pl.DataFrame(
            {
                path_col: paths,
                prefix + "report": [d.report for d, _, _ in group],
                prefix + "run_day": [d.run_day for d, _, _ in group],
                prefix + "covered_day": [d.covered_day for d, _, _ in group],
                prefix + "delivered_at": [w.delivered_at.astimezone(UTC) for _, _, w in group],
                prefix + "source_file": [w.file for _, _, w in group],
                prefix + "source_sha256": [w.sha256 for _, _, w in group],
            },
            schema={path_col: pl.String, **{prefix + k: v for k, v in fixed_types.items()}},
        )
        present = {renames.get(n, n): n for n in group[0][1].columns}
        source_types = dict(group[0][1].schema)
        # The group's schema as the cache read it from each footer: the plan's schema is
        # settled without opening the files again (the write reads them, once).
        lf = pl.scan_parquet(paths, include_file_paths=path_col, schema=source_types).join(
            meta.lazy(), on=path_col, how="left", maintain_order="left"
        )
        exprs = [pl.col(prefix + k).alias(k) for k in FIXED_COLUMNS]
        for c in columns:
            target = out_types[c]
            if c in present:
                if target == pl.String and source_types[present[c]] == pl.Float64:
                    e = _number_text(pl.col(present[c]))
                else:
                    e = pl.col(present[c]).cast(target)
                if c in idents and hasher is not None:
                    e = e.map_batches(hasher, return_dtype=pl.String, is_elementwise=True)
            else:
                e = pl.lit(None, dtype=target)
            exprs.append(e.alias(c))
        frames.append(lf.select(exprs))
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def _number_text(x: pl.Expr) -> pl.Expr:
    """Numbers as text the way a text cell shows them: a whole number as its digits ('2', not
    '2.0'; '9123456789012346', not '9.123456789012346e15'), so one identifier reads (and is
    pseudonymized) the same whether its day's column was read as numbers or as text. A
    column stays floating point when any of its numbers has a fraction or lies beyond 2**53;
    its whole numbers must not change their text for that. A whole number is written as the
    exact digits of its double (what the reader gives a number cell in a column read as text),
    also beyond 2**63 ('10000000000000000000', not '1e+19'): through 128-bit integers, which
    hold every whole double below 2**127 (beyond, a double is an integer of up to 309 digits:
    Python's int gives them, for the rare cell that holds one)."""
    finite = x.is_finite()
    whole = finite & (x == x.floor()) & (x.abs() < 2.0**127)
    huge = finite & (x.abs() >= 2.0**127)
    return (pl.when(whole).then(x.cast(pl.Int128, strict=False).cast(pl.String))
            .when(huge).then(x.map_batches(_huge_digits, return_dtype=pl.String, is_elementwise=True))
            .otherwise(x.cast(pl.String)))


def _huge_digits(values: pl.Series) -> pl.Series:
    """The exact digits of each finite number of 2**127 and more (every such double is whole);
    null for the others. Python runs only when a batch holds such a number."""
    huge = (values.is_finite() & (values.abs() >= 2.0**127)).fill_null(False)
    if not huge.any():
        return pl.Series(values.name, [None] * len(values), dtype=pl.String)
    return pl.Series(values.name, [str(int(v)) if h else None for v, h in zip(values.to_list(), huge.to_list(),
                                                                               strict=True)], dtype=pl.String)


def _pseudonymizer(key: PseudonymKey) -> Callable[[pl.Series], pl.Series]:
    pseudonym = key.pseudonym

    def apply(values: pl.Series) -> pl.Series:
        return pl.Series(values.name, [None if v is None else pseudonym(v) for v in values.to_list()],
                         dtype=pl.String)

    return apply


def _record(ledger: Ledger, result: ExportResult) -> int | None:
    """The export and its sources in the ledger (for the retention policy)."""
    sources: list[ExportSource] = []
    for d in result.days:
        if d.category == INCLUDED and d.winner is not None:
            sources.append({"sha256": d.winner.sha256, "name": d.winner.file, "report": d.report,
                            "run_day": d.run_day.isoformat(), "role": "rows",
                            "rows": d.table.rows if d.table else None})
            by = d.winner
        elif d.category in (EMPTY, CLOSED) and d.copies:
            by = d.copies[-1]
            sources.append({"sha256": by.sha256, "name": by.file, "report": d.report,
                            "run_day": d.run_day.isoformat(), "role": "empty", "rows": 0})
        elif d.category == EXCLUDED:
            # Seen and left out (unreadable, wrong day, stale, ... or older than a purged copy
            # that won): the retention policy keeps such copies, but no longer waits for an
            # export to include them.
            role = "superseded" if d.purged_winner is not None else "excluded"
            for c in d.copies:
                sources.append({"sha256": c.sha256, "name": c.file, "report": d.report,
                                "run_day": d.run_day.isoformat(), "role": role, "rows": None})
            continue
        else:
            continue
        for c in d.copies:
            if c is not by:
                sources.append({"sha256": c.sha256, "name": c.file, "report": d.report,
                                "run_day": d.run_day.isoformat(), "role": "superseded", "rows": None})
    try:
        return ledger.record_export(
            out=str(result.out), format=result.format, reports=result.reports,
            since=result.since.isoformat() if result.since else None,
            until=result.until.isoformat() if result.until else None,
            pseudonymized_columns=result.pseudonymized_columns,
            key_id=result.key.key_id if result.key else None,
            rows=result.rows, files=result.files, status=result.status, sources=sources,
        )
    except Exception as exc:  # noqa: BLE001 - the file is written; say so, the caller decides
        log.error("export written but not recorded in the ledger: %s", type(exc).__name__)
        raise NotRecorded(
            f"the export {escape_name(str(result.out))} was written, but the ledger could not record "
            f"it ({exc}); a retention policy will not count its sources as exported until an "
            "export is recorded",
            result,
        ) from None


__all__ = [
    "CATEGORIES", "Cancelled", "ColumnDrift", "Day", "ExportError", "ExportRequest", "ExportResult", "FIXED_COLUMNS",
    "NotRecorded",
    "HeldCopy", "output_format", "parse_day", "report_names", "run_export",
]
