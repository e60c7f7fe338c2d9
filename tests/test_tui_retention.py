"""Purged local copies in the app, against the real demo server: the Remote screen shows them
as purged and never queues them, the Verify screen lists them with their last result, the
heatmap's day panel marks the day; SVG snapshots at 80x24.

The home folder is synced once (every demo file downloaded and verified), then the demo
profile gets ``local_retention_days = 30`` (``keep_until_exported = false``: the demo has no
export) and ``report-keeper purge``'s core runs at the pinned clock.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    FIXED_NOW,
    _pinned_clock,
    copy_home,
    demo_remote,
    home,
    profile_for,
    server_loop,
    settled,
    show,
    synced,
    until_fitted,
    wait_for,
)
from tui.app import create_app
from tui.core.ledger import Ledger

SIZE = (80, 24)


def with_retention(profile):
    """The demo profile with a 30-day local retention on every report."""
    keep = dict(local_retention_days=30, keep_until_exported=False)
    return replace(profile, defaults=replace(profile.defaults, **keep),
                   reports=tuple(replace(r, **keep) for r in profile.reports))


@pytest.fixture(scope="module")
def purged_home(demo_remote, synced, tmp_path_factory):
    """A home after one full sync (the demo's own policy: nothing purged in it) and a purge of
    copies older than 30 days, made once."""
    from tui.core import retention

    base = tmp_path_factory.mktemp("purged")
    copy_home(synced, base)
    profile = with_retention(profile_for(demo_remote, base))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPORT_KEEPER_NOW", FIXED_NOW)
        with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
            result = retention.purge(profile, ledger)
    assert len(result.purged) > 20 and not result.errors and not result.waiting
    return base, {c.name for c in result.purged}


def _app(demo_remote, home_dir: Path, **kw):
    profile = with_retention(profile_for(demo_remote, home_dir))
    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    return create_app(profile, ledger=ledger, demo=True, **kw)


def _copy(template: Path, home_dir: Path) -> None:
    shutil.copytree(template, home_dir, dirs_exist_ok=True)


async def _settle(pilot, timeout: float = 60) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: settled(app) and not app.board.active, timeout)
    await pilot.pause()


async def _finish(pilot):
    await until_fitted(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


async def test_remote_never_queues_a_purged_file(demo_remote, purged_home, home):
    template, purged = purged_home
    _copy(template, home)
    app = _app(demo_remote, home)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot)
        await pilot.press("2")
        await pilot.pause()
        screen = app.screen
        states = {n: r.state for n, r in screen.rows.items()}
        assert {n for n, s in states.items() if s == "purged"} == {n for n in purged if n in states}
        # a: nothing purged is selected (nothing is new at all here).
        await pilot.press("a")
        assert not screen.selected
        # space on a purged row, then d: not queued, and the user is told why.
        screen.action_cycle_sort()  # oldest first: purged rows on top
        await pilot.pause()
        first = screen.shown[0]
        assert states[first] == "purged"
        await pilot.press("space", "d")
        await pilot.pause()
        assert first not in app.board.jobs and not screen.selected
        assert any("not downloaded again" in str(n.message) for n in app._notifications)
        # The app refuses too (a palette command or a stale selection cannot queue it).
        assert app.queue_downloads([first]) == 0 and first not in app.board.jobs


async def _verify_shown(pilot, app):
    """The Verify screen, once its list is read."""
    await show(pilot, "4")
    screen = app.screen
    await wait_for(pilot, lambda: screen.outcomes and not any(
        w.group == "verify" and not w.is_finished for w in screen.workers), 120)
    return screen


async def test_verify_lists_purged_copies_with_their_last_result(demo_remote, purged_home, home):
    template, purged = purged_home
    _copy(template, home)
    app = _app(demo_remote, home, auto_connect=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _verify_shown(pilot, app)
        gone = [o for o in screen.outcomes if o.purged_at is not None]
        assert {Path(o.result.path).name for o in gone} == purged
        assert all(o.result.status in ("ok", "empty", "empty-closed", "unreadable", "schema") for o in gone)
        assert all(o.result.rows is not None or o.result.status == "unreadable" for o in gone)
        summary = str(screen.query_one("#verify-status").render())
        assert f"(+{len(purged)} purged)" in summary
        # Its details say the copy is gone; no preview is read.
        index = screen._shown.index(gone[0])
        screen.query_one("DataTable").move_cursor(row=index)
        await pilot.press("enter")
        await pilot.pause()
        assert screen._detail is gone[0] and screen._preview is None  # nothing read
        console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
        console.print(screen.detail_renderable(gone[0]))
        detail = console.export_text()
        assert "local copy purged" in detail and "retention policy deleted the local copy" in detail


async def test_a_purged_copy_still_on_disk_under_another_name_says_so(demo_remote, purged_home, home):
    """A copy whose file had other names (hard links: a backup's snapshot) when the purge
    deleted it from the folder: the Verify list and its details, and the Remote screen's
    details, say what the purge said: its data is still on disk, and how to find it."""
    from tui.screens.modals import FileDetailsModal

    template, purged = purged_home
    _copy(template, home)
    profile = with_retention(profile_for(demo_remote, home))
    linked = sorted(purged)[-1]
    with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
        path = ledger.downloads(linked)[-1].local_path
    with sqlite3.connect(profile.ledger_path) as db:  # as the purge records it
        db.execute("UPDATE downloads SET purge_links = 2, purge_inode = 4242 WHERE name = ?", (linked,))
    app = _app(demo_remote, home, auto_connect=False)
    async with app.run_test(size=(200, 40)) as pilot:
        screen = await _verify_shown(pilot, app)
        (outcome,) = [o for o in screen.outcomes if o.result.path == path]
        others = [o for o in screen.outcomes if o.purged_at is not None and o is not outcome]
        assert outcome.purge_links == 2 and all(o.purge_links == 0 for o in others)
        reason = str(screen.query_one("DataTable").get_row(f"purged:{path}")[-1])
        assert "still on disk" in reason, reason
        console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
        console.print(screen.detail_renderable(outcome))
        detail = " ".join(console.export_text().split())
        assert "2 other names" in detail and "-xdev -inum 4242" in detail, detail
        assert "cannot be known" in detail
        console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
        console.print(screen.detail_renderable(others[0]))
        assert "still on disk" not in console.export_text()

        await wait_for(pilot, lambda: any(r.name == linked for r in app.snapshot.rows), 60)
        row = next(r for r in app.snapshot.rows if r.name == linked)
        app.push_screen(FileDetailsModal(row, None, tz=profile.timezone))
        await pilot.pause()
        body = " ".join(" ".join(str(s.render()) for s in app.screen.query("Static")).split())
        assert "2 other names" in body and "-xdev -inum 4242" in body, body
        await pilot.press("escape")


def test_remote_shows_purged_files(snap_compare, demo_remote, purged_home, home):
    _copy(purged_home[0], home)
    app = _app(demo_remote, home)

    async def run_before(pilot):
        await _settle(pilot)
        # September: purged files (delivered more than 30 days before 15 Oct) and held ones.
        await pilot.press("2", "slash", *"_202609", "enter", "s")  # oldest first
        await _finish(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_heatmap_day_panel_marks_a_purged_day(snap_compare, demo_remote, purged_home, home):
    _copy(purged_home[0], home)
    app = _app(demo_remote, home)

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("5", "left", "left", "left", "left", "left", "left")  # six weeks back
        await _finish(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
