"""A text of labelled lines whose wrapped lines start under their first word, wrapped at the
widget's own width whenever it is drawn (a scroll bar appearing, a resize).

Its ``render()`` is a plain ``Text`` (what the terminal shows, readable back as a string).

:func:`update_static` changes a ``Static``'s content only when it draws differently: screens
put their whole text again on every refresh of the data, and each update with a layout lays
out and draws the whole screen again, though nearly all of them change nothing.
"""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Size
from textual.visual import VisualType
from textual.widgets import Static

from tui.widgets.formatting import hang_text

#: One line: its lead (a label, a glyph, spaces) and its body, wrapped under the body's first word.
Line = tuple[Text | str, Text]


def same_text(old: object, new: object) -> bool:
    """Whether ``new`` draws as ``old`` does: equal strings, or two ``Text`` with the same
    characters, spans and the attributes ``Text.__eq__`` leaves out (its style, justify,
    overflow, wrapping, end). The same ``Text`` object is never taken as unchanged (it may have
    been changed in place since)."""
    if isinstance(old, str) and isinstance(new, str):
        return old == new
    if isinstance(old, Text) and isinstance(new, Text) and old is not new:
        return (old == new and old.style == new.style and old.justify == new.justify
                and old.overflow == new.overflow and old.no_wrap == new.no_wrap and old.end == new.end
                and old.tab_size == new.tab_size)
    return False


def update_static(widget: Static, content: VisualType, *, layout: bool = True) -> None:
    """``widget.update(content, layout=layout)`` unless the widget shows that content already."""
    if not same_text(widget.content, content):
        widget.update(content, layout=layout)


class HangingText(Static):
    """Lines of (lead, body), each body's wrapped lines under its first word."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes)
        self._lines: list[Line] = []

    def set_lines(self, lines: list[Line]) -> None:
        if len(lines) == len(self._lines) and all(
                same_text(lead, old_lead) and same_text(body, old_body)
                for (lead, body), (old_lead, old_body) in zip(lines, self._lines, strict=True)):
            return  # the same lines: nothing to lay out or draw again
        self._lines = list(lines)
        self.refresh(layout=True)

    def text_at(self, width: int) -> Text:
        return Text("\n").join(hang_text(lead, body, width) for lead, body in self._lines)

    def render(self) -> Text:
        return self.text_at(self.content_size.width or 80)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.text_at(width).plain.split("\n")) if self._lines else 0
