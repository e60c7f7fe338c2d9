"""Pilot tests: the app never shows a comforting state that is false, and its keys do what
the screens say. Real demo SFTP server on 127.0.0.1, real .xlsx files, the app at 80x24.

- a held copy moved out of local_dir is "missing locally" on every screen;
- a successful listing clears a failed connection, a failed one is never hidden by an old
  successful test;
- a paused queue is visible everywhere, its rows and its summary say "paused" (never
  "running"), queueing onto it says so;
- destructive keys ask while transfers run; toasts count the batch and give reasons;
- "download it again" really fetches and says what it found;
- the palette offers the actions of the screen under it; the keys the screens advertise work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_sshd import TcpProxy, free_port
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
    until_fitted,
    wait_for,
)
from tui.core import heatmap as hm
from tui.core.model import Audience

_app = demo_app


def _text(widget) -> str:
    # Health's sections are wrapped to their width: compare words, not line breaks.
    return " ".join(str(widget.render()).split())


# ------------------------------------------------------------------ 1: the disk


async def _check_missing_everywhere(pilot, app, name: str) -> None:
    row = next(r for r in app.snapshot.rows if r.name == name)
    assert row.state == "missing-locally"
    await pilot.press("2")
    remote = app.screen
    cell = str(remote.query_one("DataTable").get_cell(name, "local"))
    assert "downloaded" not in cell and "missing" in cell, cell
    assert "missing here" in _text(remote.query_one("#remote-status"))
    await pilot.press("a")
    assert name in remote.selected
    assert not [n for n in app._notifications if "downloaded already" in n.message]
    await pilot.press("escape")

    await pilot.press("1")
    problems = [p for p in app.snapshot.health.problems if p.file == name]
    assert [p.kind for p in problems] == ["missing-locally"]
    # d on Health fetches it (the test of the keys shows); the shell's step names sync instead
    assert "Press d on Health" in problems[0].step(Audience.APP)
    assert "report-keeper sync" in problems[0].next_step
    assert "is no longer at" in _text(app.screen.query_one("#health-problems"))

    await pilot.press("5")
    heat = app.screen
    report = next(r for r in app.snapshot.health.reports if any(name in run.files for run in r.runs))
    run = next(run for run in report.runs if name in run.files)
    while heat.report.name != report.name:
        await pilot.press("right_square_bracket")
    heat.query_one("HeatmapWidget").selected = run.day
    await pilot.pause()
    cell = heat.grid.cell(run.day)
    assert cell.kind == hm.MISSING_LOCALLY
    detail = _text(heat.query_one("#heatmap-day"))
    assert "Delivered and verified" not in detail
    assert "not on this disk" in detail


async def test_a_report_moved_out_of_local_dir_is_missing_locally_on_every_screen(
        demo_remote, synced, home):
    copy_home(synced, home)
    name = demo_remote.scenario.file_of("ok").name
    (home / "reports" / name).rename(home / "moved-away.xlsx")
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        await _check_missing_everywhere(pilot, app, name)
        # d downloads it again; then every screen says so
        await pilot.press("2")
        app.screen.selected = {name}
        await download(pilot)
        await wait_for(pilot, lambda: not app.board.active and settled(app), 60)
        await wait_for(pilot, lambda: next(r for r in app.snapshot.rows if r.name == name).state
                       == "downloaded")
        assert (home / "reports" / name).read_bytes() == (home / "moved-away.xlsx").read_bytes()


async def test_without_a_listing_the_screens_still_check_the_disk(demo_remote, synced, home):
    copy_home(synced, home)
    name = demo_remote.scenario.file_of("ok").name
    app = _app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.snapshot.version >= 1)
        assert next(r for r in app.snapshot.rows if r.name == name).state == "downloaded"
        (home / "reports" / name).unlink()  # deleted while the app runs, no server around
        version = app.snapshot.version
        app.load_snapshot()
        await wait_for(pilot, lambda: app.snapshot.version > version)
        await _check_missing_everywhere(pilot, app, name)


# ------------------------------------------------------------------ 2: the connection


async def _cut(proxy: TcpProxy) -> None:
    """Drop every connection through the proxy (on the server's loop)."""
    for writer in list(proxy._writers):
        writer.transport.abort()


async def test_a_successful_listing_clears_a_failed_connection_and_a_failed_one_shows(
        demo_remote, home, tmp_path, server_loop):
    proxy = TcpProxy(free_port())  # nothing listens behind it: the server is down
    server_loop.run(proxy.start())
    try:
        known = known_hosts_for_port(demo_remote, proxy.port, tmp_path / "known_hosts")
        app = _app(profile_for(demo_remote, home, port=proxy.port, known_hosts=known))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: settled(app))
            await press_until(pilot, "t", lambda: app.connection.testing or app.connection.test is not None)
            await wait_for(pilot, lambda: app.connection.test is not None and settled(app)
                           and not app.connection.testing)
            conn = [p for p in app.snapshot.health.problems if p.kind == "connection"]
            assert conn and conn[0].severity == "critical"
            assert "press r" in conn[0].step(Audience.APP)  # the key that clears it

            proxy.target = ("127.0.0.1", demo_remote.port)  # the server is back
            version = app.snapshot.version
            await press_until(pilot, "r", lambda: app.snapshot.version > version)
            await wait_for(pilot, lambda: settled(app) and app.snapshot.version > version)
            assert app.connection.state == "connected"
            assert not [p for p in app.snapshot.health.problems if p.kind == "connection"]
            assert "Connection failed" not in _text(app.screen.query_one("#health-problems"))
            assert "before the last listing, which worked" in _text(app.screen.query_one("#health-connection"))

            await pilot.press("t")
            await wait_for(pilot, lambda: app.connection.test is not None and app.connection.test.ok
                           and settled(app) and not app.connection.testing)
            proxy.target = ("127.0.0.1", free_port())  # down again: an old good test hides nothing
            server_loop.run(_cut(proxy))
            version = app.snapshot.version
            await press_until(pilot, "r", lambda: app.snapshot.version > version)
            await wait_for(pilot, lambda: settled(app) and app.snapshot.version > version)
            assert app.connection.state == "failed"
            conn = [p for p in app.snapshot.health.problems if p.kind == "connection"]
            assert conn and conn[0].severity == "critical"
    finally:
        server_loop.run(proxy.stop())


# ------------------------------------------------------------------ 3 and 4: the queue


def _toasts(app) -> list[str]:
    return [n.message for n in app._notifications]


async def _slow_app(demo_remote, home, tmp_path, server_loop):
    proxy = TcpProxy(demo_remote.port, delay=0.001)
    server_loop.run(proxy.start())
    known = known_hosts_for_port(demo_remote, proxy.port, tmp_path / "known_hosts")
    app = _app(profile_for(demo_remote, home, port=proxy.port, known_hosts=known))
    return proxy, app


async def test_a_paused_queue_is_visible_everywhere_and_queueing_onto_it_offers_to_resume(
        demo_remote, home, tmp_path, server_loop):
    proxy, app = await _slow_app(demo_remote, home, tmp_path, server_loop)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: settled(app))
            # p on an empty queue does not pause for ever in silence
            await pilot.press("3", "p")
            assert not app.board.paused
            assert any("Nothing to pause" in t for t in _toasts(app))
            assert "PAUSED" not in app.sub_title

            proxy.delay = 0.3  # a slow link from here on
            await pilot.press("2")
            remote = app.screen
            remote.selected = set(remote.shown[:12])
            await download(pilot)
            await wait_for(pilot, lambda: app.board.counts()["running"] > 0)
            await press_until(pilot, "3", lambda: app.current_mode == "queue")
            await press_until(pilot, "p", lambda: app.board.paused)
            assert app.board.paused
            first = next(n for n in remote.shown[:12] if app.board.jobs[n].state == "running")
            # every screen says so: the header is on all of them, first so it is never cut
            assert app.sub_title.startswith("‖ PAUSED")
            for key in ("1", "2", "4", "5", "3"):
                await pilot.press(key)
                await pilot.pause()
                header = app.screen.query_one("HeaderTitle")
                assert "PAUSED" in _text(header), key
                if key == "1":  # Health's transfer summary: held, not downloading ("↓")
                    nav = app.screen.query_one("NavBar").summary
                    assert nav.startswith("‖ paused") and "↓" not in nav, nav
            queue = app.screen
            summary = _text(queue.query_one("#queue-summary"))
            assert summary.startswith("‖ PAUSED"), summary
            # the summary claims no download runs: the started ones are paused, as their rows say
            held = app.board.counts()["running"] + app.board.counts()["retrying"]
            assert f"{held} paused" in summary and "running" not in summary, summary
            table = queue.query_one("DataTable")
            assert "paused" in str(table.get_cell(first, "state"))
            # no frozen figures (at 80 columns the per-file rate column is left out; ETA stays)
            assert str(table.get_cell(first, "eta")).strip() == ""
            await pilot.press("2")
            assert "paused" in str(remote.query_one("DataTable").get_cell(first, "local"))

            # queueing onto a paused queue says so and offers to resume
            await pilot.press("a", "d")
            await pilot.pause()
            assert type(app.screen).__name__ == "ConfirmModal"
            assert "paused" in _text(app.screen.query_one(".body"))
            await pilot.press("n")
            assert app.board.paused
            assert any("wait in the paused queue" in t for t in _toasts(app))
            await pilot.press("3", "p")
            assert not app.board.paused and "PAUSED" not in app.sub_title
            # the rest are cancelled on the slow link: at full speed they would land and be
            # verified meanwhile, seconds of work for nothing
            await pilot.press("x", "y")
            await wait_for(pilot, lambda: not app.board.active and settled(app), 60)
    finally:
        server_loop.run(proxy.stop())


async def test_the_question_before_quitting_counts_what_is_left_as_it_shrinks(
        demo_remote, home, tmp_path, server_loop):
    """q while downloading asks, naming what is still to come; while the question is open the
    downloads go on, and the count it gives follows them (it kept the number of when it
    opened). x's question does the same."""
    proxy, app = await _slow_app(demo_remote, home, tmp_path, server_loop)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: settled(app))
            proxy.delay = 0.15
            await pilot.press("2")
            remote = app.screen
            remote.selected = set(remote.shown[:16])
            await download(pilot)
            await wait_for(pilot, lambda: app.board.counts()["running"] > 0)
            await pilot.press("3")  # x is the Queue screen's
            asked = []
            for key in ("q", "x"):
                # The link crawls while the question opens (a round trip takes seconds), so the
                # sixteen files outlast both questions however slowly this machine runs the app.
                proxy.delay = 2.0
                await pilot.press(key)
                await pilot.pause()
                modal = app.screen
                assert type(modal).__name__ == "ConfirmModal", key
                def says_left(modal=modal) -> bool:  # the question names the count of now
                    return f"{app.board.left()[0]} file" in _text(modal.query_one(".body"))

                await wait_for(pilot, says_left, 30)  # a file may land as the question opens
                before = app.board.left()[0]
                proxy.delay = 0.15  # the downloads go on while the question is open
                await wait_for(pilot, lambda before=before: app.board.left()[0] < before, 60)
                # Crawl again at once, so files are left for the next question however slowly
                # this machine draws the answer and the next key.
                proxy.delay = 2.0
                await wait_for(pilot, says_left, 30)
                body = _text(modal.query_one(".body"))
                assert f"{before} files" not in body, (key, body)
                await pilot.press("n")
                await pilot.pause()
                asked.append(key)
                if not app.board.active:
                    break
            assert asked == ["q", "x"]  # the downloads outlasted both questions
            proxy.delay = 0.0
            await wait_for(pilot, lambda: not app.board.active and settled(app), 60)
    finally:
        server_loop.run(proxy.stop())


async def test_destructive_keys_ask_and_toasts_count_the_batch_with_reasons(
        demo_remote, home, tmp_path, server_loop):
    proxy, app = await _slow_app(demo_remote, home, tmp_path, server_loop)
    folder = demo_remote.root / demo_remote.remote_dir
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: settled(app))
            await pilot.press("3", "x")
            assert any("Nothing to cancel" in t for t in _toasts(app))
            assert "Downloads cancelled" not in " ".join(_toasts(app))

            # a batch of one that fails: the toast gives the reason
            await pilot.press("2")
            remote = app.screen
            gone, ok = remote.shown[0], remote.shown[1]
            (folder / gone).rename(tmp_path / "hidden.xlsx")
            try:
                remote.selected = {gone, ok}
                await download(pilot)
                await wait_for(pilot, lambda: not app.board.active and settled(app), 60)
            finally:
                (tmp_path / "hidden.xlsx").rename(folder / gone)
            last = _toasts(app)[-1]
            assert "1 downloaded, 1 failed" in last, last
            assert gone in last and app.board.jobs[gone].reason in last

            # the next batch is counted alone; x asks first while transfers run
            app.clear_notifications()
            proxy.delay = 0.3
            await pilot.press("a")
            await download(pilot)
            await wait_for(pilot, lambda: app.board.counts()["running"] > 0)
            await pilot.press("3", "x")
            assert type(app.screen).__name__ == "ConfirmModal"
            assert "still to come" in _text(app.screen.query_one(".body"))
            await pilot.press("n")
            assert app.board.active and not app.board.counts()["cancelled"]
            # q asks too, and staying keeps downloading
            await pilot.press("q")
            assert type(app.screen).__name__ == "ConfirmModal"
            depth = len(app.screen_stack)
            await pilot.press("q")  # pressed again under the question: no second question
            assert len(app.screen_stack) == depth
            await pilot.press("n")
            assert app.is_running and app.board.active
            await pilot.press("x", "y")
            await wait_for(pilot, lambda: not app.board.active and settled(app), 60)
            toasts = [t for t in _toasts(app) if t.startswith("Downloads")]
            assert len(toasts) == 1, toasts
            assert "cancelled" in toasts[0] and "failed" not in toasts[0], toasts[0]
            done_here = app.board.counts()["done"] - 1  # the earlier batch is not counted again
            assert (f"{done_here} downloaded" in toasts[0]) if done_here else (
                "downloaded" not in toasts[0]), toasts[0]
            bar = app.screen.query_one("ProgressBar")
            assert bar.percentage is not None and bar.percentage < 1
    finally:
        server_loop.run(proxy.stop())


# ------------------------------------------------------------------ 5: download it again


async def test_download_it_again_fetches_compares_and_says_what_it_found(demo_remote, synced, home):
    copy_home(synced, home)
    corrupt = demo_remote.scenario.file_of("corrupt").name
    held = home / "reports" / corrupt
    before = held.read_bytes()
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        problem = next(p for p in app.snapshot.health.problems if p.file == corrupt)
        assert problem.kind == "unreadable"
        # the advice names what works: 'sync' skips a copy it holds
        assert "report-keeper sync" not in problem.next_step
        assert "d" in problem.next_step and "Remote" in problem.next_step
        await pilot.press("2")
        remote = app.screen
        table = remote.query_one("DataTable")
        table.move_cursor(row=remote.shown.index(corrupt), animate=False)
        await pilot.press("space")
        await download(pilot)
        await wait_for(pilot, lambda: not app.board.active and settled(app), 60)
        toast = [t for t in _toasts(app) if t.startswith("Downloads")][-1]
        assert "1 downloaded again" in toast and "identical" in toast and "damaged" in toast, toast
        assert "1 done" not in toast
        assert held.read_bytes() == before  # the old copy is untouched
        assert sorted(p.name for p in held.parent.iterdir() if corrupt[:-5] in p.name) == [corrupt]
        await pilot.press("3")
        queue = app.screen
        queue.query_one("DataTable").move_cursor(row=0, animate=False)
        await pilot.pause()
        assert "identical" in _text(queue.query_one("#queue-detail"))


# ------------------------------------------------------------------ 12: the palette


async def _palette(pilot, query: str) -> list[str]:
    """The palette's commands for ``query`` once every provider has answered it."""
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "CommandPalette")
    palette = pilot.app.screen
    await pilot.press(*query)
    field = palette.query_one("CommandInput")
    options = palette.query_one("CommandList")

    def answered() -> bool:
        # One worker asks every provider in turn (each key cancels the last and starts one):
        # none left running once the whole query is in the field means the list is complete.
        return (field.value == query and options.option_count > 0
                and not any(w.node is palette and not w.is_finished for w in pilot.app.workers))

    await wait_for(pilot, answered, timeout=10)
    return [str(options.get_option_at_index(i).prompt).split("\n")[0]
            for i in range(options.option_count)]


async def test_the_palette_offers_the_actions_of_the_screen_under_it(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        await pilot.press("2")
        remote = app.screen
        found = await _palette(pilot, "sort")
        assert any("Remote: next sort order" in f for f in found), found
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is remote and remote.sort_index == 1  # it ran on the Remote screen

        await show(pilot, "4")
        await wait_for(pilot, lambda: not app.screen.workers or all(w.is_finished for w in app.screen.workers))
        for query, title in (("mask", "Verify: show or mask identifier columns"),
                             ("verify", "Verify: verify every local report again")):
            found = await _palette(pilot, query)
            assert any(title in f for f in found), (query, found)
            await pilot.press("escape")
            await pilot.pause()

        await pilot.press("5")
        found = await _palette(pilot, "next report")
        assert any("Heatmap: next report" in f for f in found), found
        await pilot.press("escape")
        await pilot.pause()

        found = await _palette(pilot, "quit")
        assert sum("Quit" in f for f in found) == 1, found
        await pilot.press("escape")
        await pilot.pause()
        found = await _palette(pilot, "screenshot")
        assert not any("Screenshot" in f for f in found), found


async def test_export_is_in_the_palette_on_every_screen_and_opens_its_form(demo_remote, home):
    """Exporting is a task of its own, not of the Verify screen: the palette offers it (once)
    wherever it is opened, and it opens the export form there."""
    from tui.screens.export import ExportModal

    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        for key in ("1", "5", "4"):
            await pilot.press(key)
            await pilot.pause()
            under = app.screen
            found = await _palette(pilot, "export")
            assert sum("Export the kept reports" in f for f in found) == 1, (key, found)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportModal))
            await pilot.press("escape")
            await wait_for(pilot, lambda under=under: app.screen is under)


# ------------------------------------------------------------------ 13: the keys the screens name


def _footer_key(screen, key: str) -> str | None:
    """The footer's description of ``key`` on ``screen`` (None: not in the footer)."""
    active = screen.active_bindings.get(key)
    if active is None or not active.binding.show or not active.enabled:
        return None
    return active.binding.description


async def test_the_keys_the_screens_name_work_and_are_in_the_footer(demo_remote, synced, home):
    copy_home(synced, home)
    name = demo_remote.scenario.file_of("ok").name
    (home / "reports" / name).unlink()
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        # d on Health does what the advice says
        assert app.screen.__class__.__name__ == "HealthScreen"
        await download(pilot)
        assert name in app.board.jobs
        await wait_for(pilot, lambda: not app.board.active and settled(app), 60)
        assert (home / "reports" / name).exists()

        # enter (details) is in the footer of the lists
        await pilot.press("2")
        assert _footer_key(app.screen, "enter") == "Details"
        await pilot.press("enter")
        assert type(app.screen).__name__ == "FileDetailsModal"
        await pilot.press("escape")
        await show(pilot, "4")
        verify = app.screen
        await wait_for(pilot, lambda: verify._shown)
        assert _footer_key(verify, "enter") == "Details"
        assert _footer_key(verify, "tab") is None  # no details open: nothing to move to
        await pilot.press("enter")
        await pilot.pause()
        assert _footer_key(verify, "tab") == "Scroll details"
        footer = verify.query_one("Footer")
        assert any(getattr(k, "description", "") == "Scroll details" for k in footer.query("FooterKey"))
        await pilot.press("tab")
        await pilot.pause()
        assert verify.query_one("#verify-detail") in verify.focused.ancestors_with_self
        assert _footer_key(verify, "tab") == "Back to list"
        await pilot.press("tab")
        await pilot.pause()
        assert verify.focused is verify.query_one("#verify-table")

        # tab on the heatmap says where it goes, and comes back
        await pilot.press("5")
        heat = app.screen
        widget = heat.query_one("HeatmapWidget")
        assert heat.focused is widget
        assert _footer_key(heat, "tab") == "Scroll details"
        await pilot.press("tab")
        await pilot.pause()
        assert heat.focused is heat.query_one("#heatmap-detail")
        assert _footer_key(heat, "tab") == "Back to calendar"
        await pilot.press("tab")
        await pilot.pause()
        assert heat.focused is widget
        day = widget.selected
        await pilot.press("up")
        assert widget.selected != day  # the arrows move the day again


# ------------------------------------------------------------------ snapshots at 80x24


async def _settle(pilot, timeout: float = 60) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: settled(app) and not app.board.active, timeout)
    await pilot.pause()


async def _finish(pilot):
    """Let debounced timers (column fitting) fire, then drop the toasts."""
    await until_fitted(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


COLOURS = [pytest.param(False, id="colour"), pytest.param(True, id="no_color")]


@pytest.mark.parametrize("no_color", COLOURS)
def test_snapshot_remote_with_a_file_missing_locally_80x24(snap_compare, demo_remote, synced, home,
                                                          monkeypatch, no_color):
    if no_color:  # Textual reads NO_COLOR when the App is created
        monkeypatch.setenv("NO_COLOR", "1")
    copy_home(synced, home)
    name = demo_remote.scenario.file_of("ok").name
    (home / "reports" / name).unlink()
    app = _app(profile_for(demo_remote, home))

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("2", "slash", *name[-21:-14], "enter")  # its month: "_202608"
        await _finish(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("no_color", COLOURS)
def test_snapshot_paused_queue_80x24(snap_compare, demo_remote, home, monkeypatch, no_color):
    """A queue paused mid-transfer. The transfers are stood in for by their events (fixed
    figures), so the picture does not depend on the link's speed."""
    from tui.sftp.queue import Done, Queued, Running

    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    app = _app(profile_for(demo_remote, home))
    assert app.no_color == no_color

    async def run_before(pilot):
        await _settle(pilot)
        names = sorted(f.name for f in demo_remote.scenario.files if f.report.startswith("Weekly"))
        sizes = {r.name: r.size for r in app.snapshot.rows}
        for job_id, name in enumerate(names, 1):
            app.board.enqueue(name, sizes[name])
            app.board.apply(Queued(job_id, name, sizes[name]))
        app.board.apply(Done(1, names[0], size=sizes[names[0]], sha256="0" * 64,
                             path=str(Path(app.profile.local_dir) / names[0])))
        for job_id, name in ((2, names[1]), (3, names[2])):
            app.board.apply(Running(job_id, name, bytes=sizes[name] // 2, total=sizes[name],
                                    rate=21_000_000.0))
        app._set_paused(True)
        await pilot.press("3")
        await _finish(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
