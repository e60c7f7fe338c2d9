"""Shared helpers of the TUI tests (no tests here): a real demo SFTP server in its own thread.

The embedded demo server (``tui.demo.server``) runs on 127.0.0.1 in a background event
loop, so both Pilot tests (pytest-asyncio's loop) and snapshot tests (``snap_compare`` runs
the app with ``app.run()``, its own loop) talk to it over real TCP. The scenario is generated
once per test process with the clock pinned and each module serves its own copy of it; every
test gets its own ledger and download folder (a profile copy), so tests never share state.
Pilot's keys wait once for the idle app, not twice (``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

FIXED_NOW = "2026-10-15T14:00:00+00:00"


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` waits for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(drain(), 10)
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(autouse=True)
def _pinned_clock(monkeypatch):
    """Every TUI test runs at the same moment (after conftest cleared the variable)."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", FIXED_NOW)
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")


@pytest.fixture(scope="module")
def server_loop():
    loop = LoopThread()
    yield loop
    loop.stop()


# Made once per test process and only ever copied: a home after one full sync of the demo
# folder. The demo folder itself is the session's (``demo_once``, ``tests/demo_cache.py``).
_TEMPLATES: dict[str, Any] = {}


async def _serve_copy(demo_once: Any, root: Path) -> Any:
    """A demo server on a fresh copy of the demo generated at FIXED_NOW, as if it had generated
    it there (a folder that already holds the reports is served as it is)."""
    from datetime import datetime

    from tui.demo.server import start_demo_server

    now = datetime.fromisoformat(FIXED_NOW)
    scenario = await asyncio.to_thread(demo_once.generate, root / "root", now)
    # writable like the demo of `report-keeper --demo`: the connection test uploads a probe
    server = await start_demo_server(dir=root / "root", now=now, keys_dir=root / "keys", writable=True)
    server.scenario = scenario
    return server


@pytest.fixture(scope="module")
def demo_remote(server_loop, tmp_path_factory, demo_once):
    """A running demo server with the demo scenario (generated at FIXED_NOW), its own copy."""
    server = server_loop.run(_serve_copy(demo_once, tmp_path_factory.mktemp("demo-server")))
    yield server
    server_loop.run(server.close())


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh HOME, so local folders show as ``~/reports`` (stable in snapshots)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def profile_for(server: Any, home: Path, **changes: Any) -> Any:
    """The demo server's profile with this test's own ledger and download folder."""
    return replace(
        server.profile,
        local_dir=home / "reports",
        ledger=home / ".ledger.sqlite3",
        **changes,
    )


def demo_app(profile: Any, **kw: Any) -> Any:
    """The real app on ``profile`` with its own ledger (the way ``report-keeper --demo`` runs)."""
    from tui.app import create_app
    from tui.core.ledger import Ledger

    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    return create_app(profile, ledger=ledger, demo=True, **kw)


def known_hosts_for_port(server: Any, port: int, path: Path) -> Path:
    """A known_hosts trusting the demo host key on another port (a proxy in front of it)."""
    line = server.known_hosts_path.read_text().strip()
    key = line.split(" ", 1)[1]
    path.write_text(f"[127.0.0.1]:{port} {key}\n")
    path.chmod(0o600)
    return path


async def holds_settled(pilot: Any, condition: Callable[[], bool], step: float) -> bool:
    """Let the app run ``step`` seconds; then whether ``condition()`` holds once the screen has
    processed what it had pending, as right after ``pilot.pause(step)``.

    ``pilot.pause`` sends a message to every widget of the screen and waits until each has
    handled it: ~12 ms of CPU with 70 widgets (~0.6 ms for a plain sleep of the same length, the
    app's loop running meanwhile all the same), so a wait that paused 20-50 times a second spent
    a third of a core or more doing it, and more the longer a loaded machine made it last. Here
    the app runs for ``step`` by a plain sleep and only a condition that holds is asked again
    after a pause: what the caller sees on return is what it saw after a pause before."""
    await asyncio.sleep(step)
    if not condition():
        return False
    await pilot.pause(0)
    return condition()


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 60.0, step: float = 0.05) -> None:
    """Let the app run until ``condition()`` holds; fail with a clear message otherwise."""
    loops = int(timeout / step)
    if condition():
        return
    for _ in range(loops):
        if await holds_settled(pilot, condition, step):
            return
    app = pilot.app
    state = {
        "connection": (app.connection.state, app.connection.message),
        "snapshot": app.snapshot.version,
        "workers": [(w.group, w.name, w.state.name) for w in app.workers],
        "board": app.board.counts(),
        "screen": type(app.screen).__name__,
    }
    raise AssertionError(f"condition not reached within {timeout:g} s: {state}")


async def press_until(pilot: Any, key: str, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Press ``key`` and let the app run until ``done()``, the key's effect, holds.

    For keys pressed while downloads run: ``pilot.press`` then waits for the process to be
    idle, and this process (which runs the demo server and any proxy too) is never idle
    while files move, so every key waited out that wait's one-second limit twice. The
    effect must not hold before the key (else the wait would prove nothing)."""
    from textual import events

    assert not done(), f"what {key!r} should do holds before it is pressed"
    pilot.app.post_message(events.Key(key, key if len(key) == 1 else None))
    await wait_for(pilot, done, timeout, 0.02)


async def download(pilot: Any, *then: str) -> None:
    """``d`` (what is selected is queued), then screen keys (``"1"`` to ``"5"``) while the files
    move. Each key waits for its own effect, the board changed or the screen shown, not for an
    idle app (:func:`press_until`)."""
    from tui.state import SCREENS

    app = pilot.app
    version = app.board.version
    await press_until(pilot, "d", lambda: app.board.version > version)
    modes = {screen.key: screen.name.value for screen in SCREENS}
    for key in then:
        await press_until(pilot, key, lambda mode=modes[key]: app.current_mode == mode)


async def show(pilot: Any, key: str) -> None:
    """A screen's key (``"1"`` to ``"5"``), waiting until that screen is shown, not for an idle
    app: Verify starts reading its list at once (:func:`press_until`)."""
    from tui.state import SCREENS

    mode = next(screen.name.value for screen in SCREENS if screen.key == key)
    await press_until(pilot, key, lambda: pilot.app.current_mode == mode)


def _pending(timer: Any) -> bool:
    return timer is not None and timer._task is not None and not timer._task.done()


def debouncing(app: Any) -> bool:
    """A Remote screen has a refit (after a resize) or a filter still waiting on its timer."""
    from tui.screens.remote import RemoteScreen

    return any(isinstance(screen, RemoteScreen) and (_pending(screen._resize_timer) or _pending(screen._filter_timer))
               for stack in app._screen_stacks.values() for screen in stack)


async def until_fitted(pilot: Any) -> None:
    """After a key or a resize: the app has handled it, the Remote screen's debounced refit and
    filter have run, and the screen drawn after them is the one shown. The Remote screen shown
    then has its name column fitted to its width (a screen in the background is fitted when
    it is shown again)."""
    from tui.screens.remote import RemoteScreen

    await pilot.pause()
    await wait_for(pilot, lambda: not debouncing(pilot.app), 10, 0.02)
    await pilot.pause()
    screen = pilot.app.screen
    if isinstance(screen, RemoteScreen) and screen._wide is not None:
        assert screen._fitted_width == screen._name_width_for(screen.size.width), (
            f"the name column is {screen._fitted_width} wide at {screen.size.width} columns")


def settled(app: Any) -> bool:
    """The listing has come back and the snapshot after it is on screen."""
    busy = any(w.group in ("listing", "snapshot", "download", "conntest") and not w.is_finished
               for w in app.workers)
    return not busy and app.connection.state in ("connected", "failed") and app.snapshot.version > 1


@pytest.fixture(scope="module")
def synced(demo_remote, server_loop, tmp_path_factory, demo_once):
    """A home folder after one full sync (downloads, ledger, verifications) of the untouched
    demo folder, made once per process (against a server of its own, so what a module's
    earlier tests did to its server is not in it); tests copy it (:func:`copy_home`)."""
    if "synced" not in _TEMPLATES:
        from tui.core.ledger import Ledger
        from tui.sftp.sync import SyncService

        base = tmp_path_factory.mktemp("synced")

        async def sync() -> None:
            server = await _serve_copy(demo_once, tmp_path_factory.mktemp("sync-server"))
            profile = profile_for(server, base)
            ledger = Ledger.open(profile.ledger_path, profile=profile.name)
            try:
                async with SyncService(profile, ledger) as service:
                    result = await service.sync()
                assert not result.failed and result.retention is None  # the demo keeps every copy
            finally:
                ledger.close()
                await server.close()

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("REPORT_KEEPER_NOW", FIXED_NOW)
            server_loop.run(sync(), 120)
        _TEMPLATES["synced"] = base
    return _TEMPLATES["synced"]


def copy_home(template: Path, home: Path) -> None:
    """The synced home, as if it had always been here: the ledger's paths point into it."""
    shutil.copytree(template, home, dirs_exist_ok=True)
    with sqlite3.connect(home / ".ledger.sqlite3") as db:
        db.execute("UPDATE downloads SET local_path = replace(local_path, ?, ?)",
                   (str(template), str(home)))
