"""A yes/no question before something that cannot be undone or that the user may not expect:
cancelling running downloads, quitting while they run, resuming a paused queue.

:class:`ConfirmModal` dismisses with ``True`` (``y`` or its button) or ``False`` (``n``,
``escape`` or its button). The safe answer has the focus, so ``enter`` never destroys. A
question about the downloads (``body_of``) follows them while it is open: they go on meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.messages import QueueChanged


class ConfirmModal(ModalScreen[bool]):
    """``title``, ``body`` (plain text or a ``Text``; never markup), and two answers."""

    DEFAULT_CSS = """
    ConfirmModal { align: center middle; }
    ConfirmModal > Vertical {
        width: 64; max-width: 100%; height: auto; max-height: 100%;
        border: thick $warning; background: $surface; padding: 0 1;
    }
    ConfirmModal .title { text-style: bold; height: auto; margin-bottom: 1; }
    ConfirmModal .body { height: auto; }
    ConfirmModal Horizontal { height: auto; margin-top: 1; }
    ConfirmModal Button { margin-right: 1; min-width: 10; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, body: str | Text, *, yes: str, no: str,
                 safe_is_yes: bool = False, body_of: Callable[[], str | Text] | None = None) -> None:
        """``body_of``: the body as it is now, asked again whenever the download queue changes
        (a question about the downloads, which go on while it is open)."""
        super().__init__()
        self.title_text = title
        self.body = body if isinstance(body, Text) else Text(body)
        self.body_of = body_of
        self.yes = yes
        self.no = no
        self.safe_is_yes = safe_is_yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            yield Static(self.body, classes="body")
            with Horizontal():
                yield Button(Text(f"{self.yes} (y)"), id="yes",
                             variant="primary" if self.safe_is_yes else "error")
                yield Button(Text(f"{self.no} (n)"), id="no",
                             variant="default" if self.safe_is_yes else "primary")

    def on_mount(self) -> None:
        self.query_one("#yes" if self.safe_is_yes else "#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_queue_changed(self, message: QueueChanged) -> None:
        if self.body_of is not None:
            body = self.body_of()
            self.body = body if isinstance(body, Text) else Text(body)
            self.query_one(".body", Static).update(self.body)
