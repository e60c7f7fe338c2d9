"""Help (``?``): every key binding, read from the bindings themselves so it cannot drift."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from tui.state import SCREENS

_KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "space": "space",
    "escape": "esc",
    "enter": "enter",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "ctrl+p": "ctrl+p",
}

_SCREEN_TITLES = {str(s.name): f"{s.key} {s.label}" for s in SCREENS}


def _key_label(binding: Binding) -> str:
    if binding.key_display:
        return binding.key_display
    keys = [k.strip() for k in binding.key.split(",")]
    return "/".join(_KEY_NAMES.get(k, k) for k in keys)


def _bindings(items: Iterable[BindingType]) -> list[tuple[str, str]]:
    out = []
    seen = set()
    for item in items:
        binding = item if isinstance(item, Binding) else Binding(*item)
        if not binding.description:
            continue
        label = _key_label(binding)
        if (label, binding.description) in seen:
            continue
        seen.add((label, binding.description))
        out.append((label, binding.description))
    return out


def help_sections(app: App[object]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(key, description)]) for the app and every screen of the app.

    A screen's section also lists the keys of the widgets named in its ``HELP_WIDGETS``
    (the heatmap's arrows belong to the calendar widget, not to the screen)."""
    sections = [("Everywhere", _bindings(app.BINDINGS) + [("ctrl+p", "Command palette: every action")])]
    for mode, screen_cls in app.MODES.items():
        if isinstance(screen_cls, type) and issubclass(screen_cls, Screen):
            widget_bindings = [b for w in getattr(screen_cls, "HELP_WIDGETS", ()) for b in w.BINDINGS]
            rows = _bindings([*screen_cls.BINDINGS, *widget_bindings])
            if rows:
                sections.append((_SCREEN_TITLES.get(mode, mode), rows))
    return sections


class HelpScreen(ModalScreen[None]):
    """Every binding of the app, grouped by screen."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 78; max-width: 100%; height: 100%; max-height: 100%;
        border: thick $accent; background: $surface;
    }
    HelpScreen #help-title { height: auto; padding: 0 1; text-style: bold; background: $boost; }
    HelpScreen VerticalScroll { height: 1fr; padding: 0 1; }
    HelpScreen #help-foot { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close"),
        Binding("down,j", "scroll(1)", "Down", show=False),
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("pagedown,space", "scroll(10)", "Page down", show=False),
        Binding("pageup", "scroll(-10)", "Page up", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        #: (first line, lines) of the section of the screen the help was opened on
        self._current: tuple[int, int] | None = None

    def compose(self) -> ComposeResult:
        text = Text()
        mode = getattr(self.app, "current_mode", None)
        current = _SCREEN_TITLES.get(mode) if isinstance(mode, str) else None
        line = 0
        for i, (title, rows) in enumerate(help_sections(self.app)):
            if i:
                text.append("\n")
                line += 1
            if title == current:
                self._current = (line, len(rows) + 1)
            line += len(rows) + 1
            text.append(f"{title}\n", style="bold underline")
            for key, description in rows:
                text.append(f"  {key:<12}", style="bold cyan")
                text.append(f"{description}\n")
        with Vertical():
            # Which config file this is: two configs (or one named by REPORT_KEEPER_CONFIG)
            # look alike on every screen. On the title's line, so the keys keep their room
            # (a long path wraps). Text, never markup: the path is the user's.
            config = getattr(self.app, "config_shown", "")
            yield Static(Text(f"Keys · {config}" if config else "Report Keeper — keys"), id="help-title")
            with VerticalScroll(id="help-body"):
                yield Static(text)
            yield Static("↑/↓ scroll · esc, ? or q: close", id="help-foot")

    def on_mount(self) -> None:
        self.call_after_refresh(self._show_current)

    def _show_current(self) -> None:
        """Scroll the current screen's keys into view (the top shows the keys of every screen;
        those of the Heatmap would be pages down)."""
        if self._current is None:
            return
        first, lines = self._current
        body = self.query_one(VerticalScroll)
        height = body.scrollable_content_region.height
        if first + lines > height:
            body.scroll_to(y=first, animate=False, immediate=True)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, lines: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=lines, animate=False)
