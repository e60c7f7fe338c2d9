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

    def __init__(self) -> None:
        super().__init__()
        # Textual marks a new screen as having seen no CSS update, so the first time a mode is
        # shown it parses every stylesheet again and restyles the screen shown, twice. This
        # screen is styled as it mounts, with the CSS of now: it has seen the app's updates so
        # far (a later theme change still refreshes it when it is shown).
        self._css_update_count = self.app._css_update_count

    @property
    def app(self) -> ReportKeeperApp:  # type: ignore[override]  # narrower: the one app it runs in
        return cast("ReportKeeperApp", super().app)
