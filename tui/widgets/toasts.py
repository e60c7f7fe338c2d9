"""Toasts shown from more than one place."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import App
from textual.widget import Widget

from tui.core.model import VerifyResult
from tui.state import empty_reports_text


def empty_reports(where: App[None] | Widget, results: Sequence[VerifyResult]) -> None:
    """The warning for reports newly found empty on an open day (after downloads, and on the
    Verify screen): that day's loans are anonymized within days. Names are never markup."""
    if results:
        where.notify(empty_reports_text(results), title="Empty report", severity="warning",
                     timeout=10, markup=False)
