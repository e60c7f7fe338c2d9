"""The app's messages: results of workers come back as messages (docs/ARCHITECTURE.md).

From the app to the screens: :class:`DataRefreshed` (a new snapshot), :class:`QueueChanged`
and :class:`ConnectionChanged` (read the board or the connection again). To the app from the
ledger's waiting thread: :class:`LedgerWaiting`. Each replaces an
earlier message of its kind still waiting in the queue (latest wins), so a flood of transfer
events costs one redraw.

Within the Verify screen: :class:`VerifyProgress`, :class:`VerifyFinished` and
:class:`PreviewLoaded` carry its thread workers' results; within the export form,
:class:`ExportProgress`. From the Verify screen to the app:
:class:`ReportsVerified` (new verifications were recorded: health and the Remote screen
follow). From the first-run app to its screen: :class:`SetupChanged`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from tui.core.local_reports import VerifyOutcome
    from tui.core.model import VerifyResult
    from tui.state import DataSnapshot


class DataRefreshed(Message):
    """A new snapshot of the ledger (after a listing, a download or at start)."""

    def __init__(self, snapshot: DataSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DataRefreshed)


class QueueChanged(Message):
    """The transfer board changed (latest wins)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, QueueChanged)


class ConnectionChanged(Message):
    """The connection state or the connection test changed."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ConnectionChanged)


class LedgerWaiting(Message):
    """Writes to the ledger wait for another process's lock (``waiting``), or no longer do;
    ``holder``: that process in words ("" when it cannot be told). Posted from the waiting
    thread (``Ledger.watch_waits``)."""

    def __init__(self, waiting: bool, holder: str) -> None:
        super().__init__()
        self.waiting, self.holder = waiting, holder


class VerifyProgress(Message):
    """Progress of a verification run (a newer one replaces one still queued)."""

    def __init__(self, done: int, total: int, name: str) -> None:
        super().__init__()
        self.done, self.total, self.name = done, total, name

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, VerifyProgress)


class ExportProgress(Message):
    """Progress of the running export (a newer one replaces one still queued)."""

    def __init__(self, done: int, total: int, name: str) -> None:
        super().__init__()
        self.done, self.total, self.name = done, total, name

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExportProgress)


class VerifyFinished(Message):
    """A verification run ended (``cancelled``: stopped early; the outcomes so far)."""

    def __init__(self, outcomes: list[VerifyOutcome], seconds: float, cancelled: bool) -> None:
        super().__init__()
        self.outcomes, self.seconds, self.cancelled = outcomes, seconds, cancelled


class PreviewLoaded(Message):
    """The first rows of a report for the detail pane (shown, never logged)."""

    def __init__(self, path: str, header: list[str], rows: list[tuple[str, ...]]) -> None:
        super().__init__()
        self.path, self.header, self.rows = path, header, rows


class ReportsVerified(Message):
    """The Verify screen recorded new verifications (bubbles to the app).

    ``empty``: those newly found empty on an open day (the screen has shown their warning).
    """

    def __init__(self, empty: list[VerifyResult]) -> None:
        super().__init__()
        self.empty = empty


class SetupChanged(Message):
    """The first-run set-up's state changed (``tui.setup_state.SetupView``; latest wins)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SetupChanged)
