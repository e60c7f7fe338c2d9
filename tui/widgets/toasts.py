"""Toasts: how many, where, how long; and those shown from more than one place.

Over SSH at 80x24 a stack of toasts hides the rows just acted on. So: at most ``MAX_SHOWN`` at
a time (a new one pushes out the oldest), a toast on the same subject as one shown replaces it
(``Downloads finished: …`` once, with the latest figures), they sit over the title bar and the
navigation line at the top right (``CSS``), one line of padding less, and go after
``TIMEOUT`` seconds unless the caller asks for longer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.app import App
from textual.notifications import Notification
from textual.widget import Widget

from tui.core.model import VerifyResult
from tui.state import empty_reports_text

#: Toasts shown at once.
MAX_SHOWN = 2
#: Seconds a toast stays unless its caller says otherwise.
TIMEOUT = 4.0

CSS = """
ToastRack { dock: top; align: right top; margin-bottom: 0; }
Toast { padding: 0 1; margin-top: 0; max-width: 60%; }
"""


def subject(message: str, title: str = "") -> str:
    """What a toast is about: its title, else its message up to the first colon
    (``Downloads finished``, ``Connection test``), else the whole message."""
    if title:
        return title
    head, colon, _rest = message.partition(":")
    return head if colon else message


def crowded(shown: Iterable[Notification], message: str, title: str = "") -> list[Notification]:
    """The toasts to take away before showing a new one: those on its subject, then the
    oldest, so that at most ``MAX_SHOWN`` remain with it."""
    about = subject(message, title)
    going = [n for n in shown if subject(n.message, n.title) == about]
    staying = sorted((n for n in shown if n not in going), key=lambda n: n.raised_at)
    excess = len(staying) + 1 - MAX_SHOWN
    return going + (staying[:excess] if excess > 0 else [])


def empty_reports(where: App[None] | Widget, results: Sequence[VerifyResult]) -> None:
    """The warning for reports newly found empty on an open day (after downloads, and on the
    Verify screen): that day's loans are anonymized within days. Names are never markup."""
    if results:
        where.notify(empty_reports_text(results), title="Empty report", severity="warning",
                     timeout=10, markup=False)
