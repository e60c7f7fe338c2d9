"""Pilot tests: the app's snapshot follows files as they land, not only when a batch ends.

Health's local count, its reports and the heatmap show the files of a long batch (or of one
the user paused in the Queue screen) once they are placed and verified; the snapshot is built
again at most about once a second however many files land; a reload that lands while the user
moves through the Remote or the Verify list leaves the cursor on the same file and the list
where it was. Real demo SFTP server on 127.0.0.1 behind a proxy that slows the link, real
.xlsx files, the app at 80x24.
"""

from __future__ import annotations

import time

import pytest

from tests.fixtures_sshd import TcpProxy
from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    FIXED_NOW,
    _pinned_clock,
    copy_home,
    demo_app,
    demo_remote,
    download,
    home,
    known_hosts_for_port,
    press_until,
    profile_for,
    server_loop,
    settled,
    show,
    synced,
    wait_for,
)
from tui.app import LIVE_REFRESH_SECONDS
from tui.core import heatmap as hm
from tui.core.model import JobState


@pytest.fixture
def slow(demo_remote, home, tmp_path, server_loop):
    """The app against the demo server behind a proxy whose delay the test sets (the link's
    speed): (proxy, app). The proxy stops afterwards."""
    proxy = TcpProxy(demo_remote.port, delay=0.001)
    server_loop.run(proxy.start())
    known = known_hosts_for_port(demo_remote, proxy.port, tmp_path / "known_hosts")
    try:
        yield proxy, demo_app(profile_for(demo_remote, home, port=proxy.port, known_hosts=known))
    finally:
        server_loop.run(proxy.stop())


def _text(widget) -> str:
    return " ".join(str(widget.render()).split())


def _done(app) -> list[str]:
    return [j.name for j in app.board.ordered() if j.state == JobState.DONE]


def _verified(app) -> list[str]:
    return [j.name for j in app.board.ordered() if j.state == JobState.DONE and j.verification]


def _snapshot_has_landed(app) -> bool:
    """The snapshot counts every file the board says is placed, and knows the verdict of
    every one the board says is verified."""
    done = _done(app)
    rows = {r.name: r for r in app.snapshot.rows}
    return (app.snapshot.local_files == len(done)
            and all(rows[n].state == "downloaded" for n in done)
            and all(rows[n].verification is not None for n in _verified(app)))


async def _cancel_and_settle(pilot, app, proxy) -> None:
    proxy.delay = 0.0
    if app.board.active:
        await pilot.press("3", "x", "y")
    await wait_for(pilot, lambda: not app.board.active and settled(app), 60)


async def test_health_and_heatmap_follow_a_long_batch_and_a_paused_one(slow):
    proxy, app = slow
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        assert app.snapshot.local_files == 0
        before = app.snapshot.health
        proxy.delay = 0.2  # a slow link: the whole batch takes far longer than the test looks
        await pilot.press("2", "a")
        await download(pilot, "1")
        total = len(app.board.jobs)
        assert total > 20

        # Running: what landed is counted while the batch goes on.
        await wait_for(pilot, lambda: len(_verified(app)) >= 2, 60)
        await wait_for(pilot, lambda: _snapshot_has_landed(app) and app.snapshot.local_files >= 2, 15)
        assert app.board.active, "the batch ended before the test could look"

        # Paused in the Queue screen: the batch never ends, Health still catches up.
        await pilot.press("3", "p", "1")
        assert app.board.paused and app.board.active
        await wait_for(pilot, lambda: _snapshot_has_landed(app), 15)
        landed = len(_done(app))
        assert 2 <= landed < total
        assert app.board.active  # nothing of this came from the end of the batch
        health = app.screen
        assert f"{landed} files" in _text(health.query_one("#health-local"))
        assert f"local: {landed} files" in _text(health.query_one("#health-status"))

        # The heatmap: a landed and verified file's day is no longer "unverified".
        name = next(n for n in _verified(app) if app.board.jobs[n].verification == "ok")
        report = next(r for r in app.snapshot.health.reports if any(name in run.files for run in r.runs))
        run = next(run for run in report.runs if name in run.files)
        old = next(r for r in before.reports if r.name == report.name)
        assert hm.cell_kind(next(x for x in old.runs if x.day == run.day)) == hm.UNVERIFIED
        await pilot.press("5")
        heat = app.screen
        while heat.report.name != report.name:
            await pilot.press("right_square_bracket")
        assert heat.grid.cell(run.day).kind == hm.cell_kind(run) != hm.UNVERIFIED
        assert app.board.paused and app.board.active
        await _cancel_and_settle(pilot, app, proxy)


async def test_hundreds_of_files_landing_build_the_snapshot_about_once_a_second(slow):
    """Files landing as fast as the link allows: a build per interval, not per file (an upper
    bound on the builds, which a slower machine only loosens)."""
    proxy, app = slow
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        proxy.delay = 0.0
        first = app._snapshot_version
        started = time.monotonic()
        await pilot.press("2", "a")
        await download(pilot, "1")
        files = len(app.board.jobs)
        await wait_for(pilot, lambda: not app.board.active and settled(app), 90)
        seconds = time.monotonic() - started
        builds = app._snapshot_version - first
        assert _snapshot_has_landed(app) and app.snapshot.local_files == files
        # at most one per interval, the first at once, the batch's end, and one to spare
        assert builds <= 3 + seconds / LIVE_REFRESH_SECONDS, (builds, files, seconds)
        print(f"{files} files in {seconds:.1f} s: {builds} snapshot builds")


async def test_the_remote_list_keeps_its_place_while_the_snapshot_follows_a_batch(slow):
    proxy, app = slow
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        proxy.delay = 0.2
        await pilot.press("2")
        remote = app.screen
        table = remote.query_one("DataTable")
        await pilot.press("a")
        await download(pilot)
        await wait_for(pilot, lambda: len(_done(app)) >= 1, 60)
        # The rest crawl, and the cursor goes down 30 rows and up 6 without a key press each
        # (a press waits for an idle app, about 2 s while files land: on a loaded machine the
        # whole batch landed meanwhile, leaving no build to wait for).
        proxy.delay = 0.6
        table.move_cursor(row=table.cursor_row + 30)
        table.move_cursor(row=table.cursor_row - 6)
        await pilot.pause()
        assert table.scroll_y > 0
        name, scroll = remote.shown[table.cursor_row], table.scroll_y
        version = app.snapshot.version
        await wait_for(pilot, lambda: app.snapshot.version >= version + 2, 30)
        assert app.board.active
        await pilot.pause()
        assert remote.shown[table.cursor_row] == name
        assert table.scroll_y == scroll
        # the list took the new rows meanwhile (the snapshot is not ignored): its count of
        # the files not held here went down as they landed
        assert remote.rows == {r.name: r for r in app.snapshot.rows}
        held = sum(1 for r in remote.rows.values() if r.state == "downloaded")
        assert held >= 1
        status = _text(remote.query_one("#remote-status"))
        assert f"{len(remote.rows) - held} new" in status, status
        await _cancel_and_settle(pilot, app, proxy)


# ------------------------------------------------------------------ the Verify list


async def test_the_verify_list_keeps_its_cursor_and_scroll_when_the_list_refreshes(
        demo_remote, synced, home):
    copy_home(synced, home)
    app = demo_app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        await show(pilot, "4")
        screen = app.screen
        table = screen.query_one("DataTable")
        await wait_for(pilot, lambda: bool(screen.outcomes) and not any(
            w.group == "verify" and not w.is_finished for w in screen.workers))
        assert len(screen.outcomes) > 40
        await pilot.press(*["down"] * 30, *["up"] * 6)
        assert table.scroll_y > 0

        def place():
            return screen._shown[table.cursor_row].result.path, table.cursor_row, table.scroll_y

        where = place()
        # a new snapshot lands (a listing, a batch's files): the list stays where it was
        version = app.snapshot.version
        await press_until(pilot, "r", lambda: app.snapshot.version > version)
        await wait_for(pilot, lambda: app.snapshot.version > version and settled(app))
        await pilot.pause()
        assert place() == where
        # the list itself filled again (v verifies again, all from the cache): same place
        await pilot.press("v")
        await pilot.pause()
        await wait_for(pilot, lambda: not any(w.group == "verify" and not w.is_finished
                                              for w in screen.workers))
        await pilot.pause()
        assert place() == where
