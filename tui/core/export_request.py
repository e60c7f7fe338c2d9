"""What an export is asked for, and how it can be refused: the part of the export that the
command's options and the app's form need, without the table machinery (polars) behind it.

:class:`ExportRequest` is the request; :class:`ExportError` a usage or configuration problem
whose ``str()`` is one line saying what to do (nothing was written);
:func:`output_format` and :func:`parse_day` read the form's or the options' words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from tui.core.names import escape_name

if TYPE_CHECKING:
    from tui.core.config import Profile
    from tui.core.ledger import Ledger

#: The output formats by file name extension.
FORMATS = {".parquet": "parquet", ".csv": "csv"}


class ExportError(Exception):
    """A usage or configuration problem: nothing was written. ``str()`` is one line."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export (the command's options; the app's modal fills the same)."""

    out: Path
    reports: tuple[str, ...] = ()  # empty: every report of the profile
    since: date | None = None  # covered days, inclusive
    until: date | None = None
    pseudonymize: bool = False
    key_file: Path | None = None  # None: the profile's own key (created on first use)
    force: bool = False  # replace an existing file

    @property
    def format(self) -> str:
        return output_format(self.out)


def output_format(out: str | os.PathLike[str]) -> str:
    """``parquet`` or ``csv`` from the file name's extension; ``ExportError`` otherwise."""
    if "\0" in os.fspath(out):  # no file system takes it (a paste can carry one)
        raise ExportError(f"the file name '{escape_name(str(out))}' holds a NUL character; type the name again")
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(
            f"cannot tell the format of {escape_name(str(out))!r}: name the output file "
            "FILE.parquet (for analysis tools) or FILE.csv (for spreadsheets)"
        )
    return FORMATS[suffix]


def parse_day(text: str, option: str = "--since") -> date:
    """A ``YYYY-MM-DD`` day for ``--since``/``--until``; ``ExportError`` says what is wrong."""
    try:
        return date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ExportError(
            f"{option} {escape_name(str(text))!r} is not a day; write it as YYYY-MM-DD, e.g. 2026-09-01"
        ) from None


def report_names(profile: Profile, ledger: Ledger) -> list[str]:
    """The reports an export can name: configured ones first, then every other in the ledger."""
    names = [r.name for r in profile.reports]
    names.extend(n for n in ledger.reports() if n not in names)
    return names


class Cancelled(ExportError):
    """The export was cancelled; nothing was written."""


class NotRecorded(ExportError):
    """The file was written, but the ledger could not record the export (exit 2).
    ``result`` is what was written (``ExportResult``), so the command can still say it."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result
