"""What every screen of the app shares: a typed ``app`` and its palette commands.

A screen reaches the app through :attr:`AppScreen.app`, typed as the
:class:`tui.app.ReportKeeperApp`, never by probing it: it reads the app's state (``profile``,
``snapshot``, ``board``, ``connection``) and asks the app for changes (``queue_downloads``,
``cancel_one``, ``verify_local_reports`` and the app's actions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from tui.app import ReportKeeperApp

#: (title, action, help): an action of the screen offered in the command palette.
PaletteCommand = tuple[str, str, str]


class AppScreen(Screen[None]):
    """A screen of Report Keeper."""

    PALETTE_COMMANDS: ClassVar[tuple[PaletteCommand, ...]] = ()

    @property
    def app(self) -> ReportKeeperApp:  # type: ignore[override]  # narrower: the one app it runs in
        return cast("ReportKeeperApp", super().app)
