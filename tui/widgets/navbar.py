"""One line under the header: the five screens with their keys, the current one highlighted,
and a short transfer summary on the right."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.state import SCREENS, ScreenName


class NavBar(Static):
    """``1 Health  2 Remote  3 Queue  4 Verify  5 Heatmap`` with the current mode marked."""

    DEFAULT_CSS = """
    NavBar {
        height: 1;
        background: $panel;
        color: $text-muted;
    }
    """

    def __init__(self, current: ScreenName) -> None:
        super().__init__("")
        self.current = current
        self.summary = ""

    def on_mount(self) -> None:
        self.update(self._render_bar(), layout=False)

    def set_summary(self, summary: str) -> None:
        if summary != self.summary:
            self.summary = summary
            self.update(self._render_bar(), layout=False)  # one line, always: no layout

    def _render_bar(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for screen in SCREENS:
            if screen.name == self.current:
                text.append(f" {screen.key} {screen.label} ", style="bold reverse")
            else:
                text.append(f" {screen.key}", style="bold")
                text.append(f" {screen.label} ")
        if self.summary:
            text.append("  ")
            text.append(self.summary, style="italic")
        return text
