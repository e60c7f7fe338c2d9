"""Textual CSS parsed once per process, not once per app.

Every ``App`` has its own ``Stylesheet``, whose cache of parsed rules (``_parse_cache``,
keyed by the CSS text and where it was read from) starts empty: each app parsed every
widget's default CSS and its own again, a twentieth of the CPU time of starting the app and
showing its five screens. :func:`share_parsed_css` gives a stylesheet a cache shared by the
whole process, keyed by the CSS variables as well (the theme's colours are substituted while
parsing). Rules, once parsed, are only read (the stylesheet keeps the same parsed rules for
every parse of an unchanged source), so sharing them is what one app already does.

It relies on Textual 8's ``Stylesheet._parse_cache`` (read and written with ``[]``, emptied
with ``clear()`` when the variables change) and ``Stylesheet._variables`` (without the latter,
each stylesheet keeps to its own entries, as before); ``tests/test_tui_units.py`` checks that
a second app parses nothing and draws the same.
"""

from __future__ import annotations

from typing import Any

from textual.cache import LRUCache
from textual.css.model import RuleSet
from textual.css.stylesheet import Stylesheet

#: Parsed rules of every stylesheet of this process: (variables, the stylesheet's own key).
_PARSED: LRUCache[tuple[Any, ...], list[RuleSet]] = LRUCache(4096)


class SharedParseCache(LRUCache[tuple[Any, ...], list[RuleSet]]):
    """A stylesheet's parse cache that reads and writes :data:`_PARSED` under its variables."""

    __slots__ = ["_stylesheet", "_variables", "_variables_key"]

    def __init__(self, stylesheet: Stylesheet) -> None:
        super().__init__(1)
        self._stylesheet = stylesheet
        self._variables: dict[str, str] | None = None
        self._variables_key: tuple[tuple[str, str], ...] = ()

    def _key(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        variables = getattr(self._stylesheet, "_variables", None)
        if not isinstance(variables, dict):  # a Textual without it: this stylesheet's own entries
            return (id(self._stylesheet), key)
        if variables != self._variables:
            self._variables = dict(variables)
            self._variables_key = tuple(sorted(variables.items()))
        return (self._variables_key, key)

    def __getitem__(self, key: tuple[Any, ...]) -> list[RuleSet]:
        return _PARSED[self._key(key)]

    def __setitem__(self, key: tuple[Any, ...], value: list[RuleSet]) -> None:
        _PARSED[self._key(key)] = value

    def set(self, key: tuple[Any, ...], value: list[RuleSet]) -> None:
        _PARSED[self._key(key)] = value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and self._key(key) in _PARSED

    def clear(self) -> None:
        """New variables: nothing to forget, the entries are under the variables they used."""


def share_parsed_css(stylesheet: Stylesheet) -> None:
    """Let ``stylesheet`` use (and add to) the rules this process has parsed already."""
    stylesheet._parse_cache = SharedParseCache(stylesheet)
