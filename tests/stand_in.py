"""A stand-in for ``ReportKeeperApp`` that shows one screen on a real profile and ledger.

It holds the state screens read (``profile``, ``ledger``, ``snapshot``) and answers what they
ask of the app (``verify_local_reports``, ``export_report_names``, ``export_reports``) the
way the app does, without a server, the listing or the other screens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.app import App
from textual.screen import Screen

from tui.core.config import Profile
from tui.core.export import ExportResult, run_export
from tui.core.export_request import ExportRequest, report_names
from tui.core.health import HealthReport
from tui.core.ledger import Ledger
from tui.core.local_reports import VerifyOutcome
from tui.messages import ReportsVerified
from tui.state import DataSnapshot, verify_local_reports


class StandInApp(App[None]):
    """``screen()`` on mount; ``health`` is the snapshot's health evaluation."""

    def __init__(self, profile: Profile, ledger: Ledger, screen: Callable[[], Screen[None]],
                 *, health: HealthReport | None = None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.profile = profile
        self.ledger = ledger
        self.snapshot = DataSnapshot(health=health)
        self._screen = screen
        self.empty_found: list[str] = []

    def on_mount(self) -> None:
        self.push_screen(self._screen())

    def verify_local_reports(self, **kw: Callable[..., object] | None) -> list[VerifyOutcome]:
        return verify_local_reports(self.profile, self.ledger, **kw)  # type: ignore[arg-type]

    def on_reports_verified(self, message: ReportsVerified) -> None:
        self.empty_found.extend(r.name for r in message.empty)

    def export_report_names(self) -> list[str]:
        return report_names(self.profile, self.ledger)

    async def export_reports(self, request: ExportRequest, *, progress: Callable[[int, int, str], None],
                             cancelled: Callable[[], bool]) -> ExportResult:
        return await asyncio.to_thread(run_export, self.profile, self.ledger, request,
                                       progress=progress, cancelled=cancelled)
