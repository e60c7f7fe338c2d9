"""The app at 80x24 over SSH: nothing cut in the middle of a word, wrapped text indented
under its first word, like problems grouped on Health with advice for the app's keys, NO_COLOR
criticals drawn by weight, few short toasts that hide nothing.

Pilot tests against the real demo SFTP server on 127.0.0.1 (``tests/test_tui_fixtures``); the
screen is read as the terminal would show it (the compositor's lines).
"""

from __future__ import annotations

import re

from textual.widgets import Footer

from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    _pinned_clock,
    demo_remote,
    home,
    profile_for,
    server_loop,
    settled,
    wait_for,
)
from tui.app import create_app
from tui.core.ledger import Ledger
from tui.widgets.footer import fit_keys, key_width


def _app(profile, **kw):
    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    return create_app(profile, ledger=ledger, demo=True, **kw)


def screen_lines(app) -> list[str]:
    """What the terminal shows, line by line (every layer: toasts too)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


async def _settle(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: settled(app) and not app.board.active)
    await pilot.pause(0.3)  # debounced column fitting


WORD = re.compile(r"[A-Za-z]{2,}")


def words(lines: list[str]) -> set[str]:
    return set(WORD.findall("\n".join(lines)))


# -- the footer ---------------------------------------------------------------------------------


def test_fit_keys_leaves_out_whole_keys_from_the_end_but_keeps_help():
    keys = [("a", "a", "All new"), ("d", "d", "Download"), ("help", "?", "Help"), ("quit", "q", "Quit")]
    widths = [key_width(d, t) for _a, d, t in keys]
    assert fit_keys(keys, sum(widths) + 14) == ([0, 1, 2, 3], True)
    assert fit_keys(keys, sum(widths)) == ([0, 1, 2, 3], False)
    assert fit_keys(keys, sum(widths) - 1) == ([0, 1, 2], False)  # q Quit goes first
    assert fit_keys(keys, widths[2]) == ([2], False)  # ? Help stays, whatever the width


async def test_every_footer_fits_80_columns_and_keeps_help(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        for key in "12345":
            await pilot.press(key)
            await pilot.pause(0.3)
            footer = app.screen.query_one(Footer)
            last = screen_lines(app)[-1]
            assert "? Help" in last, (key, last)
            # every key shown whole: the last one ends before the edge (no "?▏" / "q Q▏")
            right = max(k.region.right for k in footer.children)
            assert right <= footer.region.right, (key, last)
            if "^p palette" not in last:
                assert not last.rstrip().endswith("▏"), (key, last)
