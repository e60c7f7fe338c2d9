"""The footer: the current screen's keys, as many as fit the terminal's width, whole.

Textual's footer shows every binding and lets the row run off the right edge, so at 80
columns it ends in ``?▏`` or ``q Q▏``. This one leaves out whole keys instead, from the end
of the list (a screen lists its keys most useful first; the app's ``q Quit`` comes last), and
always keeps ``? Help``, which lists every key. The command palette's ``^p palette`` is shown
only when everything else fits beside it (``?`` names it too).
"""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

#: Actions that are never left out.
KEPT_ACTIONS = frozenset({"help", "app.help"})
#: The command palette's key: "^p palette" with its separator and padding.
PALETTE_WIDTH = 14


def key_width(key_display: str, description: str) -> int:
    """Cells one key takes in the footer: `` key description `` (Textual's paddings)."""
    return cell_len(key_display) + 2 + (cell_len(description) + 1 if description else 0)


def fit_keys(keys: list[tuple[str, str, str]], width: int) -> tuple[list[int], bool]:
    """Which of ``keys`` (action, key display, description) fit ``width`` cells, and whether
    the palette key fits beside them: indexes kept, in order."""
    kept = list(range(len(keys)))
    used = sum(key_width(d, t) for _a, d, t in keys)
    for i in reversed(range(len(keys))):
        if used <= width:
            break
        if keys[i][0] in KEPT_ACTIONS:
            continue
        kept.remove(i)
        used -= key_width(keys[i][1], keys[i][2])
    return kept, used + PALETTE_WIDTH <= width


class FitFooter(Footer):
    """A footer that never cuts a key: the keys that do not fit are left to ``?`` help."""

    def __init__(self) -> None:
        super().__init__(show_command_palette=True)
        self._fitted_width = 0

    def _width(self) -> int:
        return self.size.width or self.app.size.width

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        bindings: list[tuple[Binding, bool, str]] = []
        actions: set[str] = set()
        for _node, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in actions:
                actions.add(binding.action)
                bindings.append((binding, enabled, tooltip))
        keys = [(b.action, self.app.get_key_display(b), b.description) for b, _e, _t in bindings]
        width = self._width()
        self._fitted_width = width
        kept, palette = fit_keys(keys, width)
        for i in kept:
            binding, enabled, tooltip = bindings[i]
            yield FooterKey(binding.key, keys[i][1], binding.description, binding.action,
                            disabled=not enabled, tooltip=tooltip).data_bind(compact=Footer.compact)
        if palette and self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            found = active.get(self.app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _node, binding, enabled, tooltip = found
                yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                                binding.action, classes="-command-palette", disabled=not enabled,
                                tooltip=binding.tooltip or binding.description)

    def on_resize(self, event: events.Resize) -> None:
        if self._bindings_ready and event.size.width != self._fitted_width:
            self.call_after_refresh(self.recompose)
