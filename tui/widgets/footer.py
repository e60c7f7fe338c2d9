"""The footer: the current screen's keys, as many as fit the terminal's width, whole.

Textual's footer shows every binding and lets the row run off the right edge, so at 80
columns it ends in ``?▏`` or ``q Q▏``. This one leaves out whole keys instead, from the end
of the list (a screen lists its keys most useful first; the app's ``q Quit`` comes last), and
always keeps ``? Help``, which lists every key. The command palette's ``^p palette`` is shown
only when everything else fits beside it (``?`` names it too).
"""

from __future__ import annotations

from typing import NamedTuple

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
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


class _Key(NamedTuple):
    """One key of the footer, as its ``FooterKey`` is made."""

    key: str
    display: str
    description: str
    action: str
    disabled: bool
    tooltip: str
    palette: bool  # the command palette's key


class FitFooter(Footer):
    """A footer that never cuts a key: the keys that do not fit are left to ``?`` help.

    Textual's footer builds its keys again (removes and mounts every one) each time the
    screen's bindings may have changed: every focus change, every screen shown, every
    ``refresh_bindings``, several times in one frame. This one builds them again only when
    what it would show differs from what it shows (the keys, their state, the width), once
    per frame at most; its keys never toggle the compact style (this footer is never
    compact), which restyled each key twice as it was mounted."""

    def __init__(self) -> None:
        super().__init__(show_command_palette=True)
        self._fitted_width = 0
        #: The keys shown (None: none built yet), as :meth:`_fitted` describes them.
        self._shown: tuple[_Key, ...] | None = None
        self._refit_pending = False

    def _width(self) -> int:
        return self.size.width or self.app.size.width

    def _fitted(self) -> tuple[_Key, ...]:
        """The keys this footer shows now: those that fit its width, whole."""
        active = self.screen.active_bindings
        bindings: list[tuple[Binding, bool, str]] = []
        actions: set[str] = set()
        for _node, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in actions:
                actions.add(binding.action)
                bindings.append((binding, enabled, tooltip))
        keys = [(b.action, self.app.get_key_display(b), b.description) for b, _e, _t in bindings]
        self._fitted_width = self._width()
        kept, palette = fit_keys(keys, self._fitted_width)
        shown = [_Key(bindings[i][0].key, keys[i][1], bindings[i][0].description, bindings[i][0].action,
                      not bindings[i][1], bindings[i][2], False) for i in kept]
        if palette and self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            found = active.get(self.app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _node, binding, enabled, _tooltip = found
                shown.append(_Key(binding.key, self.app.get_key_display(binding), binding.description,
                                  binding.action, not enabled, binding.tooltip or binding.description,
                                  True))
        return tuple(shown)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            self._shown = None
            return
        self._shown = self._fitted()
        for spec in self._shown:
            # Textual's keys start compact and are made not compact once mounted (two restyles
            # each); the palette's key stays compact, as in Textual's footer.
            key = FooterKey(spec.key, spec.display, spec.description, spec.action,
                            disabled=spec.disabled, tooltip=spec.tooltip,
                            classes="-command-palette -compact" if spec.palette else "")
            key.set_reactive(FooterKey.compact, spec.palette)
            yield key

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self._refit_later()

    def _refit_later(self) -> None:
        if not self._refit_pending:
            self._refit_pending = True
            self.call_after_refresh(self._refit)

    async def _refit(self) -> None:
        self._refit_pending = False
        if not self._bindings_ready or not self.is_attached:
            return
        if self._shown is None or self._fitted() != self._shown:
            await self.recompose()

    def on_resize(self, event: events.Resize) -> None:
        if self._bindings_ready and event.size.width != self._fitted_width:
            self._refit_later()
