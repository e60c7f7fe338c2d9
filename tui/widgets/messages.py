"""Messages the app posts to its screens (results of workers come back as messages).

``QueueChanged`` and ``ConnectionChanged`` replace an earlier message of the same kind still
waiting in the queue (latest wins), so a flood of transfer events costs one redraw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from textual.message import Message


@dataclass(frozen=True)
class RemoteRow:
    """One file of the server folder as the Remote screen shows it."""

    name: str  # untrusted: always shown escaped
    report: str
    delivered_at: datetime | None
    size: int
    delete_on: Any  # date | None
    days_left: int | None
    state: str  # new | downloaded | changed | partial
    verification: str | None
    message: str = ""
    local_path: str | None = None
    age_seconds: float = 0.0


@dataclass(frozen=True)
class DataSnapshot:
    """Everything the screens render, computed off the UI thread from the ledger."""

    rows: tuple[RemoteRow, ...] = ()
    health: Any = None  # tui.core.health.HealthReport | None
    local_size: int = 0
    local_files: int = 0
    listed_at: datetime | None = None
    refused: tuple[tuple[str, str], ...] = ()  # (name, reason)
    error: str = ""  # why the health evaluation failed (never a traceback)
    version: int = 0


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


@dataclass
class ConnectionInfo:
    """What the header and the health screen say about the server connection."""

    state: str = "idle"  # idle | connecting | connected | failed
    message: str = ""
    test: Any = None  # tui.sftp.conntest.ConnTestResult | None
    testing: bool = False
    tested_at: datetime | None = None
    listing_error: str = ""
    extra: dict = field(default_factory=dict)
