"""A text of labelled lines whose wrapped lines start under their first word, wrapped at the
widget's own width whenever it is drawn (a scroll bar appearing, a resize).

Its ``render()`` is a plain ``Text`` (what the terminal shows, readable back as a string).
"""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Size
from textual.widgets import Static

from tui.widgets.formatting import hang_text

#: One line: its lead (a label, a glyph, spaces) and its body, wrapped under the body's first word.
Line = tuple[Text | str, Text]


class HangingText(Static):
    """Lines of (lead, body), each body's wrapped lines under its first word."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self._lines: list[Line] = []

    def set_lines(self, lines: list[Line]) -> None:
        self._lines = list(lines)
        self.refresh(layout=True)

    def text_at(self, width: int) -> Text:
        return Text("\n").join(hang_text(lead, body, width) for lead, body in self._lines)

    def render(self) -> Text:
        return self.text_at(self.content_size.width or 80)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.text_at(width).plain.split("\n")) if self._lines else 0
