"""Shared fixtures: deterministic runs, no developer config, snapshots in snapshots/."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_ROOT = ROOT / "snapshots"


def pytest_collection_finish(session):
    """The cyclic garbage collector of a test process walks less.

    Once the tests are collected, every module they use is imported (Textual, asyncssh,
    polars, the product): a few hundred thousand objects that live as long as the process, and
    every full collection walked them all again. Frozen, they are left out. The apps, servers
    and documents the tests make allocate objects by the million; collecting the youngest
    generation every 10,000 allocations instead of every 700 makes about a tenth as many
    collections (measured on tests/test_tui_snapshots.py: 2224 collections, 3.5 s of its
    24 s of CPU before; 308, 1.3 s after). Nothing a test asserts depends on when garbage is
    collected, and a test that needs it collected calls ``gc.collect()``."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Never read the developer's config or write to their data dirs."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.delenv("REPORT_KEEPER_CONFIG", raising=False)
    monkeypatch.delenv("REPORT_KEEPER_NOW", raising=False)
    # A command run in a test sets up the product's log (a file in that test's state dir, and
    # no propagation to the root logger): undone after it, so a later test's records neither
    # land in another test's log nor miss pytest's caplog, whichever test ran first.
    product = logging.getLogger("report_keeper")
    saved = (list(product.handlers), product.propagate, product.level)
    yield
    for handler in product.handlers:
        if handler not in saved[0]:
            product.removeHandler(handler)
            handler.close()
    product.propagate, product.level = saved[1], saved[2]


@pytest.fixture(autouse=True)
def _toasts_outlast_a_loaded_machine(monkeypatch):
    """A toast lives a few seconds from when it is raised. On a loaded machine the steps a test
    takes after the action (waiting for a download, a redraw) can take longer than that, and
    the toast it then looks for is gone: the test failed for the machine's speed, not the app's
    words. In tests every toast lives ten minutes longer than the app asks (on the screen and in
    ``App._notifications`` alike); no test is about how long a toast stays."""
    from textual.notifications import Notification

    monkeypatch.setattr(Notification, "time_left",
                        property(lambda self: self.raised_at + self.timeout + 600 - time.time()))


async def _press_keys_waiting_idle_once(self, keys):
    """Textual's ``App._press_keys`` with one wait for an idle app per key instead of two.

    Textual waits for the process to be idle (at least one 20 ms look at its CPU time), then
    for animations, then for idle again. The tests run without animations (TEXTUAL_ANIMATIONS
    is "none"), so after a key that started no animation the second look only found the idle
    app the first one had found: 20 ms or more of every key pressed. A key still waits until
    the app is idle after it (and after its animations, when one runs), and ``Pilot.press``
    still waits for the screen's pending messages."""
    import unicodedata

    from textual import app as textual_app
    from textual import events

    driver = self._driver
    assert driver is not None
    for key in keys:
        if key.startswith("wait:"):
            _, wait_ms = key.split(":")
            await asyncio.sleep(float(wait_ms) / 1000)
            await self._animator.wait_until_complete()
            continue
        if len(key) == 1 and not key.isalnum():
            key = textual_app._character_to_key(key)
        original_key = textual_app.REPLACED_KEYS.get(key, key)
        char: str | None
        try:
            char = unicodedata.lookup(textual_app._get_unicode_name_from_key(original_key))
        except KeyError:
            char = key if len(key) == 1 else None
        key_event = events.Key(key, char)
        key_event.set_sender(self)
        driver.send_message(key_event)
        await textual_app.wait_for_idle(0)
        animator = self._animator
        if animator._animations or animator._scheduled:  # an animation ran: idle after it too
            await animator.wait_until_complete()
            await textual_app.wait_for_idle(0)


@pytest.fixture(autouse=True)
def _keys_wait_for_idle_once(monkeypatch):
    from textual.app import App

    monkeypatch.setattr(App, "_press_keys", _press_keys_waiting_idle_once)


# pytest-textual-snapshot keeps SVGs next to the tests by default (and its snap_compare fixture
# hard-codes its extension class); ours live in the top-level snapshots/<test module>/ folder.
import pytest_textual_snapshot  # noqa: E402 - after the fixtures above, as the plugin's docs do


def _snapshot_dirname(cls, *, test_location):
    return str(SNAPSHOT_ROOT / test_location.basename)


pytest_textual_snapshot.SVGImageExtension.dirname = classmethod(_snapshot_dirname)
from tests.demo_cache import demo_generated_once, demo_once  # noqa: E402, F401 - fixtures, for every test module
from tests.fixtures_sshd import *  # noqa: E402, F403 - its fixtures, for every test module
from tests.held_writes import held_writes  # noqa: E402, F401 - a fixture, for every test module
