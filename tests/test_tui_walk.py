"""What a librarian meets walking the demo at 80x24 with the keyboard only (Pilot, real demo
server on 127.0.0.1): every key gives feedback, the help shows the keys of the screen it was
opened on, and the demo says nothing about a config file it does not have."""

from __future__ import annotations

from pathlib import Path

from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    _pinned_clock,
    demo_app,
    demo_remote,
    download,
    home,
    profile_for,
    server_loop,
    settled,
    until_fitted,
    wait_for,
)
from tui.core.model import DONE


def _toasts(app) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


async def test_the_demo_verifies_without_a_config_warning(demo_remote, home):
    """The demo's profile has no config file: verifying (4, v) and exporting must not warn
    that "the config was not read again"."""
    app = demo_app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("v")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.__class__.__name__ == "VerifyScreen"
        assert not [t for t in _toasts(app) if "config" in t.lower()], _toasts(app)


async def test_cancel_on_a_finished_file_says_why_nothing_happens(demo_remote, home):
    app = demo_app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        await pilot.press("2", "space")
        await download(pilot, "3")
        await wait_for(pilot, lambda: not app.board.active and settled(app))
        assert [j.state for j in app.board.jobs.values()] == [DONE]
        app.clear_notifications()
        await pilot.press("c")
        await pilot.pause()
        toasts = _toasts(app)
        assert any("downloaded already" in t for t in toasts), toasts


async def test_cancel_on_an_empty_queue_says_so(demo_remote, home):
    app = demo_app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3", "c")
        await pilot.pause()
        assert any("Nothing to cancel" in t for t in _toasts(app)), _toasts(app)


async def test_the_sort_order_stays_on_the_remote_status_line_with_a_filter(demo_remote, home):
    """At 80 columns a filter fills the status line: pressing s must still show the new order
    (the rows of a filter can look the same in two orders)."""
    app = demo_app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        await pilot.press("2", "slash", *"Weekly", "enter")
        await until_fitted(pilot)
        remote = app.screen
        status = remote.query_one("#remote-status", Static)
        assert "filter 'Weekly'" in str(status.render())
        for label in ("oldest first", "deletes soonest", "name"):
            await pilot.press("s")
            await pilot.pause()
            line = str(status.render())
            assert f"sort: {label}" in line, line
            assert len(line) <= 78, line


async def test_help_on_the_heatmap_shows_its_keys(demo_remote, home):
    """? on the Heatmap: its section (with the arrows and the four-week jumps) is in view, not
    two pages down under the other screens' keys."""
    from tui.screens.help import help_sections

    app = demo_app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        heatmap_rows = dict(help_sections(app))["5 Heatmap"]
        keys = {key for key, _description in heatmap_rows}
        for key in ("left", "right", "up", "down", "pageup", "pagedown", "[", "]", "home", "end"):
            assert key in keys, (key, heatmap_rows)
        await pilot.press("5")
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        body = app.screen.query_one(VerticalScroll)
        text = str(body.query_one(Static).render()).splitlines()
        title = text.index("5 Heatmap")
        assert body.scroll_y <= title < body.scroll_y + body.scrollable_content_region.height
        await pilot.press("escape")
        # opened on Health, the help starts at the top as before
        await pilot.press("1", "question_mark")
        await pilot.pause()
        assert app.screen.query_one(VerticalScroll).scroll_y == 0
        assert isinstance(app.screen.query_one(VerticalScroll), VerticalScroll)
        assert not app.screen.query(DataTable)


async def test_the_sort_order_stays_on_the_verify_status_line_with_a_filter(tmp_path, monkeypatch):
    from tests.test_tui_heatmap import NOW, build_demo
    from tests.test_tui_verify import VerifyApp, settle

    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    scenario = build_demo(tmp_path, verify=False)
    try:
        app = VerifyApp(scenario)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("slash", *"Weekly", "enter")
            await settle(pilot)
            status = app.screen.query_one("#verify-status", Static)
            assert "filter: Weekly" in str(status.render())
            for label in ("worst first", "by name"):
                await pilot.press("s")
                await settle(pilot)
                line = str(status.render())
                assert label in line, line
    finally:
        scenario.ledger.close()


async def test_the_export_form_stops_saying_no_days_once_days_are_typed(tmp_path_factory, monkeypatch):
    from tests import export_data as ed
    from tests.test_tui_export import HOME, ExportApp, message_of, open_modal

    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    monkeypatch.setenv("HOME", HOME)
    app = ExportApp(ed.build(tmp_path_factory.mktemp("walk-export")))
    async with app.run_test(size=(80, 24)) as pilot:
        modal = await open_modal(pilot)
        assert "No days given" in message_of(modal)
        modal.query_one("#export-since").focus()
        await pilot.press(*"2026-02-26")
        await pilot.pause()
        assert "No days given" not in message_of(modal), message_of(modal)
        assert "from 2026-02-26" in message_of(modal)
        modal.query_one("#export-until").focus()
        await pilot.press(*"2026-03-04")
        await pilot.pause()
        assert "2026-02-26 to 2026-03-04" in message_of(modal), message_of(modal)
        await pilot.press(*["backspace"] * 10)
        modal.query_one("#export-since").focus()
        await pilot.press(*["backspace"] * 10)
        await pilot.pause()
        assert "No days given" in message_of(modal)


async def test_v_on_verify_says_what_it_did_when_nothing_changed(tmp_path, monkeypatch):
    """v on Verify ("verify every local report again") took every result from the ledger's
    cache when no file had changed: the list stayed as it was and nothing said v had run.
    It says how many files were checked and how many were read again."""
    from tests.test_tui_heatmap import NOW, build_demo
    from tests.test_tui_verify import VerifyApp, settle

    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    scenario = build_demo(tmp_path, verify=False)
    try:
        app = VerifyApp(scenario)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            total = len(app.screen.outcomes)
            assert total > 10
            # showing the screen verifies on its own: no toast about it
            assert not [t for t in _toasts(app) if "checked" in t], _toasts(app)
            app.clear_notifications()
            await pilot.press("v")
            await settle(pilot)
            said = [t for t in _toasts(app) if "checked" in t]
            assert said == [f": {total} local reports checked: none has changed since its last "
                            "verification (the list shows those results)."], _toasts(app)
            # one file changed on the disk: it is read again, and said so
            app.clear_notifications()
            changed = Path(app.screen.outcomes[0].result.path)
            changed.write_bytes(changed.read_bytes() + b"\0")
            await pilot.press("v")
            await settle(pilot)
            said = [t for t in _toasts(app) if "checked" in t]
            assert said == [f": {total} local reports checked: 1 read again (changed or new), "
                            f"{total - 1} unchanged since their last verification."], _toasts(app)
    finally:
        scenario.ledger.close()


async def test_the_palette_offers_the_apps_help_not_textuals_keys_panel(demo_remote, home):
    """ctrl+p offered Textual's own "Keys" panel beside the app's Help: at 80 columns it took
    a third of the screen with Textual's descriptions of the keys, and escape did not close
    it (only the palette again). The palette's help is the app's (?), which escape closes."""
    app = demo_app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Keys" not in titles, titles
        assert "Theme" in titles  # the others stay
        from tests.test_tui_truth import _palette

        found = await _palette(pilot, "keys")
        assert "Keys" not in found, found
        await pilot.press("escape")
        await pilot.pause()
        found = await _palette(pilot, "help")
        assert "Help" in found, found



async def test_remote_says_its_list_is_the_last_one_when_the_server_cannot_be_listed(demo_remote, home):
    """With the server unreachable, Remote's status line still said "66 on server · 0 new",
    a claim about a server nobody could see (the list is the last listing, from the ledger).
    It says the server is not listed now and that the figures are the last listing's."""
    from dataclasses import replace

    from tests.fixtures_sshd import free_port

    profile = profile_for(demo_remote, home)
    app = demo_app(profile)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        listed = len(app.snapshot.rows)
    assert listed > 10
    app = demo_app(replace(profile, port=free_port()))  # nothing listens there
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        assert app.connection.state == "failed"
        await pilot.press("2")
        await until_fitted(pilot)
        line = str(app.screen.query_one("#remote-status", Static).render())
        assert line.startswith(f"✗ not listed (1 says why) · last listing: {listed} on server"), line


async def test_escape_dismisses_the_toasts_when_it_has_nothing_else_to_close(demo_remote, home):
    """Toasts went only by a mouse click or their time: the export's stays 20 s over the top
    right of the screen (the calendar, the first rows). With nothing else to close, escape
    dismisses them, on every screen; where escape closes something, it does that first."""
    app = demo_app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        for key in ("1", "2", "3", "4", "5"):
            await pilot.press(key)
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            app.notify("a message", timeout=60)
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
            assert not _toasts(app), (key, _toasts(app))
        # Remote with a selection: escape clears it and leaves the toast
        await pilot.press("2", "space")
        await until_fitted(pilot)
        app.notify("a message", timeout=60)
        await pilot.press("escape")
        await pilot.pause()
        assert not app.screen.selected and _toasts(app) == [": a message"]
        await pilot.press("escape")
        await pilot.pause()
        assert not _toasts(app)
