"""Pilot tests of the whole TUI flow against real SFTP servers on 127.0.0.1.

The demo server (real asyncssh SFTP, real .xlsx files) runs in a background thread; the app
runs headless at 80x24 and is driven with keys only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import asyncssh

from tests.fixtures_sshd import TcpProxy
from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    _pinned_clock,
    demo_app,
    demo_remote,
    download,
    home,
    known_hosts_for_port,
    press_until,
    profile_for,
    server_loop,
    settled,
    wait_for,
)
from tui.core.model import CANCELLED, DONE

_app = demo_app


def _wanted(server) -> set[str]:
    root = server.root / server.remote_dir
    return {p.name for p in root.iterdir() if p.is_file()}


async def test_select_all_new_download_and_see_it_everywhere(demo_remote, home):
    profile = profile_for(demo_remote, home)
    app = _app(profile)
    on_server = _wanted(demo_remote)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        assert app.connection.state == "connected"
        assert app.screen.__class__.__name__ == "HealthScreen"
        assert {r.name for r in app.snapshot.rows} == on_server
        assert all(r.state == "new" for r in app.snapshot.rows)

        await pilot.press("2")
        remote = app.screen
        assert remote.__class__.__name__ == "RemoteScreen"
        table = remote.query_one("DataTable")
        assert table.row_count == len(on_server)
        await pilot.press("a")
        assert remote.selected == on_server
        await download(pilot)
        assert set(app.board.jobs) == on_server
        await press_until(pilot, "3", lambda: app.current_mode == "queue")
        assert app.screen.__class__.__name__ == "QueueScreen"
        await wait_for(pilot, lambda: not app.board.active and app.snapshot.version > 2 and settled(app), 60)

        # files on disk, byte-identical sizes, private modes
        local = Path(profile.local_dir)
        assert {p.name for p in local.iterdir() if not p.name.startswith(".")} == on_server
        for name in on_server:
            assert (local / name).stat().st_size == (demo_remote.root / demo_remote.remote_dir / name).stat().st_size
            assert (local / name).stat().st_mode & 0o077 == 0
        # the ledger knows
        assert set(app.ledger.local_states().values()) == {"downloaded"}
        # the queue shows every file done
        assert app.board.counts()[DONE] == len(on_server)
        queue_table = app.screen.query_one("DataTable")
        assert queue_table.row_count == len(on_server)
        # the remote screen shows them downloaded and verified (the corrupt one unreadable)
        await pilot.press("2")
        await pilot.pause()
        assert all(r.state == "downloaded" for r in app.snapshot.rows)
        statuses = {r.verification for r in app.snapshot.rows}
        assert "ok" in statuses and "unreadable" in statuses and None not in statuses
        corrupt = demo_remote.scenario.file_of("corrupt").name
        assert str(table.get_cell(corrupt, "local")) == "✓ downloaded"
        assert "unread" in str(table.get_cell(corrupt, "check"))
        # the empty report of an open day raised its own toast (the holiday's did not)
        empty = demo_remote.scenario.file_of("empty").name
        toasts = [n for n in app._notifications if n.title == "Empty report"]
        assert len(toasts) == 1 and empty in toasts[0].message
        # health: the near-deletion warning is gone once everything is downloaded
        await pilot.press("1")
        assert not [p for p in app.snapshot.health.problems if p.kind == "near-deletion"]
        assert app.snapshot.local_files == len(on_server)
        # keys 4 and 5 open the verification and heatmap screens of the same app
        await pilot.press("4")
        assert app.screen.__class__.__name__ == "VerifyScreen"
        await pilot.press("5")
        assert app.screen.__class__.__name__ == "HeatmapScreen"
        await pilot.press("1")
        assert app.screen.__class__.__name__ == "HealthScreen"


async def test_sort_filter_selection_and_details(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        await pilot.press("2")
        remote = app.screen
        table = remote.query_one("DataTable")
        newest = remote.shown[0]
        await pilot.press("s")  # oldest first
        assert remote.shown[0] != newest and remote.shown[-1] == newest
        await pilot.press("s")  # deletes soonest
        days = [remote.rows[n].days_left for n in remote.shown]
        assert days == sorted(days)
        await pilot.press("space")
        assert remote.selected == {remote.shown[0]}
        assert table.cursor_row == 1  # space moves on, so space space ... selects a run
        await pilot.press("escape")
        assert remote.selected == set()
        await pilot.press("slash", *"Weekly", "enter")
        assert remote.filter_text == "Weekly"
        assert remote.shown and all("Weekly" in n for n in remote.shown)
        assert table.row_count == len(remote.shown)
        await pilot.press("enter")
        assert app.screen.__class__.__name__ == "FileDetailsModal"
        await pilot.press("escape")
        assert app.screen is remote
        await pilot.press("escape")  # clears the filter
        assert remote.filter_text == "" and table.row_count == len(remote.rows)


async def test_auth_refused_is_shown_not_crashed(demo_remote, home, tmp_path):
    wrong = tmp_path / "wrong_key"
    wrong.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))
    wrong.chmod(0o600)
    app = _app(profile_for(demo_remote, home, key=wrong))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        assert app.connection.state == "failed"
        assert "refused the login" in app.connection.message
        assert "✗ connection failed" in app.sub_title
        health = app.snapshot.health
        assert health.status == "critical"
        assert any(p.kind == "connection" for p in health.problems)
        await pilot.press("2")
        empty = app.screen.query_one("#remote-empty")
        assert empty.display and "could not be listed" in str(empty.render())
        # d with nothing listed: nothing queued, no crash
        await pilot.press("d")
        assert not app.board.jobs


async def test_server_unreachable_then_refresh(demo_remote, home):
    from tests.fixtures_sshd import free_port

    dead = free_port()  # nothing listens there
    app = _app(profile_for(demo_remote, home, port=dead))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        assert app.connection.state == "failed"
        assert "refused the connection" in app.connection.message
        await pilot.press("r")
        await wait_for(pilot, lambda: settled(app) and app.snapshot.version >= 3)
        assert app.connection.state == "failed"


async def test_connection_cut_mid_transfer_resumes(demo_remote, home, tmp_path, server_loop):
    served = demo_remote.root / demo_remote.remote_dir
    proxy = TcpProxy(demo_remote.port, cut_after=40_000)
    server_loop.run(proxy.start())
    try:
        known = known_hosts_for_port(demo_remote, proxy.port, tmp_path / "known_hosts")
        app = _app(profile_for(demo_remote, home, port=proxy.port, known_hosts=known))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: settled(app))
            # The weekly reports (8 of them, 46 kB) are enough: the listing took about 18 kB of
            # the 40 kB, so the link is cut while their bytes flow (cuts == 1 below says so).
            await pilot.press("2", "slash", *"Weekly", "enter", "a")
            wanted = set(app.screen.selected)
            assert len(wanted) == 8 and all(n.startswith("Weekly") for n in wanted), wanted
            await press_until(pilot, "d", lambda: set(app.board.jobs) == wanted)
            await wait_for(pilot, lambda: not app.board.active and settled(app), 90)
            assert proxy.cuts == 1
            assert app.board.counts()[DONE] == len(wanted)
            local = Path(app.profile.local_dir)
            for name in wanted:
                assert (local / name).read_bytes() == (served / name).read_bytes(), name
            assert app.connection.state == "connected"
    finally:
        server_loop.run(proxy.stop())


async def test_keys_are_handled_while_a_slow_transfer_runs(demo_remote, home, tmp_path, server_loop):
    from tui.screens.confirm import ConfirmModal

    proxy = TcpProxy(demo_remote.port, delay=0.001)  # slowed once logged in (see below)
    server_loop.run(proxy.start())
    try:
        known = known_hosts_for_port(demo_remote, proxy.port, tmp_path / "known_hosts")
        app = _app(profile_for(demo_remote, home, port=proxy.port, known_hosts=known))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: settled(app))
            proxy.delay = 0.25  # every chunk now waits 0.25 s each way: a slow link
            await pilot.press("2", "a")
            await press_until(pilot, "d", lambda: app.board.counts()["running"] > 0)
            for key, screen in (("3", "QueueScreen"), ("1", "HealthScreen"), ("2", "RemoteScreen"),
                                ("question_mark", "HelpScreen"), ("escape", "RemoteScreen"),
                                ("3", "QueueScreen")):
                await press_until(pilot, key, lambda screen=screen: app.screen.__class__.__name__ == screen)
                assert app.board.active, "the transfer finished before the keys were tested"
            await press_until(pilot, "p", lambda: app.board.paused)
            assert app._transfer_control is not None and app._transfer_control.paused  # the real queue
            await press_until(pilot, "p", lambda: not app.board.paused)
            assert not app._transfer_control.paused
            # c cancels the file under the cursor, on the real queue
            queue_screen = app.screen
            running = next(n for n in queue_screen.query_one("DataTable").rows
                           if app.board.jobs[n.value].state in ("queued", "running"))
            table = queue_screen.query_one("DataTable")
            table.move_cursor(row=table.get_row_index(running), animate=False)
            await press_until(pilot, "c", lambda: app.board.jobs[running.value].state == CANCELLED)
            # cancel all (asked first): ends quickly, part files kept
            await press_until(pilot, "x", lambda: isinstance(app.screen, ConfirmModal))
            await press_until(pilot, "y", lambda: not isinstance(app.screen, ConfirmModal))
            await wait_for(pilot, lambda: not app.board.active and settled(app), 60)
            counts = app.board.counts()
            assert counts[CANCELLED] > 0, counts
            assert counts["failed"] == 0
            # retry brings the cancelled ones back to the queue
            await press_until(pilot, "f", lambda: app.board.counts()[CANCELLED] == 0)
            assert app.board.active
            await press_until(pilot, "x", lambda: isinstance(app.screen, ConfirmModal))
            await press_until(pilot, "y", lambda: not isinstance(app.screen, ConfirmModal))
    finally:
        server_loop.run(proxy.stop())


async def test_unknown_host_key_asks_and_remembers(demo_remote, home, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # known_hosts lies in the home folder
    known = tmp_path / "known_hosts"  # empty: the demo key is unknown
    known.write_text("")
    app = _app(profile_for(demo_remote, home, known_hosts=known))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "HostKeyModal"
                       and bool(app.screen.query(".body")))
        body = str(app.screen.query_one(".body").render())
        assert demo_remote.host_key_fingerprint in body
        # the file is named as the rest of the app names paths: from the home folder
        assert "adds it to ~/known_hosts." in body and str(tmp_path) not in body
        await pilot.press("m")
        await wait_for(pilot, lambda: settled(app))
        assert app.connection.state == "connected"
        assert f"[127.0.0.1]:{demo_remote.port}" in known.read_text()


async def test_host_key_rejected(demo_remote, home, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    app = _app(profile_for(demo_remote, home, known_hosts=known))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "HostKeyModal"
                       and bool(app.screen.query(".body")))
        await pilot.press("n")
        await wait_for(pilot, lambda: settled(app))
        assert app.connection.state == "failed"
        assert "not known yet" in app.connection.message
        assert known.read_text() == ""


async def test_connection_test_shows_alma_steps(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        await press_until(pilot, "t", lambda: app.connection.testing or app.connection.test is not None)
        await wait_for(pilot, lambda: app.connection.test is not None and settled(app))
        test = app.connection.test
        assert (test.upload, test.download, test.delete) == ("ok", "ok", "ok")
        text = str(app.screen.query_one("#health-connection").render())
        assert "upload ok, download ok, delete ok" in text


async def test_help_and_palette_cover_every_binding(demo_remote, home):
    from textual.command import CommandInput, CommandList

    from tui.screens.help import help_sections

    app = _app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        assert app.screen.__class__.__name__ == "HelpScreen"
        keys = {key for _title, rows in help_sections(app) for key, _d in rows}
        for key in ("1", "2", "3", "?", "q", "r", "t", "space", "a", "d", "/", "s", "enter",
                    "c", "x", "f", "p", "ctrl+p"):
            assert key in keys, key
        await pilot.press("escape")
        # the palette offers every app action
        from tui.app import ReportKeeperCommands

        provider = ReportKeeperCommands(app.screen)
        titles = [title for title, _cb, _h in provider._commands()]
        for needed in ("Go to Health", "Go to Remote", "Go to Queue", "Refresh", "Test connection",
                       "Download all new files", "Retry failed downloads", "Pause or resume downloads",
                       "Cancel all downloads", "Help", "Quit"):
            assert needed in titles
        await pilot.press("ctrl+p")
        assert app.screen.__class__.__name__ == "CommandPalette"
        palette = app.screen
        await pilot.press(*"Go to Remote")

        def offered() -> bool:  # the search for what was typed has come back, best match first
            found = palette.query_one(CommandList)
            return (palette.query_one(CommandInput).value == "Go to Remote" and found.highlighted is not None
                    and found.get_option_at_index(found.highlighted).hit.text == "Go to Remote")
        await wait_for(pilot, offered, 10, 0.02)
        await press_until(pilot, "enter", lambda: app.screen.__class__.__name__ == "RemoteScreen")


def test_config_error_is_one_line_and_exit_3(tmp_path, capsys):
    from tui.commands import tui_app

    bad = tmp_path / "config.toml"
    bad.write_text("[profile.default]\nhost = 'x'\nport = 'twenty-two'\n")
    code = tui_app.run(argparse.Namespace(config=str(bad), profile=None, demo=False, local_dir=None))
    assert code == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "port" in err and "Traceback" not in err


async def test_changed_host_key_is_refused_loudly(demo_remote, home, tmp_path):
    import asyncssh

    impostor = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "known_hosts"
    line = f"[127.0.0.1]:{demo_remote.port} {impostor.export_public_key('openssh').decode().strip()}\n"
    known.write_text(line)
    app = _app(profile_for(demo_remote, home, known_hosts=known))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "HostKeyChangedModal"
                       and bool(app.screen.query(".body")))
        body = str(app.screen.query_one(".body").render())
        assert impostor.get_fingerprint("sha256") in body  # what known_hosts records
        assert "CHANGED" in str(app.screen.query_one(".title").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: settled(app))
        assert app.screen.__class__.__name__ == "HealthScreen"
        assert app.connection.state == "failed" and "CHANGED" in app.connection.message
        assert known.read_text() == line  # never rewritten
        assert not any(Path(profile_for(demo_remote, home).local_dir).glob("*.xlsx"))


async def test_an_older_snapshot_never_replaces_a_newer_one(demo_remote, home):
    """A cancelled snapshot worker still finishes; its late result must be dropped."""
    from dataclasses import replace

    app = _app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.snapshot.version >= 1 and not app.workers)
        current = app.snapshot
        newer = replace(current, version=current.version + 2)
        older = replace(current, version=current.version + 1)
        app._apply_snapshot(newer)
        app._apply_snapshot(older)
        assert app.snapshot is newer


def test_a_dropped_ssh_session_closes_the_demo_cleanly(tmp_path):
    """SIGHUP (the SSH session is gone) ends the app like q: temporary folders are removed."""
    import os
    import pty
    import signal
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TMPDIR": str(tmp_path), "TERM": "xterm-256color",
           "REPORT_KEEPER_NOW": "2026-06-10T14:00:00+00:00"}
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(root)
        os.execve(sys.executable, [sys.executable, "-m", "tui", "--demo"], env)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"Health" not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
        assert b"Health" in seen, "the demo did not draw its first screen"
        assert any(p.name.startswith("report-keeper-demo") for p in tmp_path.iterdir())
        os.kill(pid, signal.SIGHUP)
        while True:  # drain the terminal so the app can finish writing
            try:
                if not os.read(fd, 65536):
                    break
            except OSError:
                break
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("report-keeper-demo")]


async def test_ctrl_c_says_how_to_quit_in_words(demo_remote, home):
    """ctrl+c (the reflex in a terminal) does not quit a Textual app: it says how. The app
    shows toasts as plain text, so Textual's own "Press [b]ctrl+q[/b]" came out with its
    markup as letters; and it named ctrl+q where the app's key, in its footer, is q."""
    app = _app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        [toast] = [n for n in app._notifications if "quit" in n.message.lower()]
        assert "[b]" not in toast.message and "[/b]" not in toast.message, toast.message
        assert "q" in toast.message.split() and app.is_running, toast.message


async def test_with_the_server_unlisted_d_and_t_say_why_nothing_happens(demo_remote, home):
    """The server could not be listed: d said "Nothing to download: every file on the server
    is held here" (nothing was known of the server at all), and t's toast said only
    "Connection test: skipped" for a test that failed to connect."""
    from tests.fixtures_sshd import free_port

    app = _app(profile_for(demo_remote, home, port=free_port()))  # nothing listens there
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        assert app.connection.state == "failed"

        def toasts() -> list[str]:
            return [n.message for n in app._notifications]

        for screen_key in ("1", "2"):
            app.clear_notifications()
            await pilot.press(screen_key, "d")
            await pilot.pause()
            [said] = toasts()
            assert "held here" not in said and "downloaded" not in said, said
            assert "could not be listed" in said and "r" in said.split(), said
        app.clear_notifications()
        await pilot.press("2", "a")
        await pilot.pause()
        assert "could not be listed" in toasts()[-1], toasts()
        app.clear_notifications()
        await pilot.press("t")
        await wait_for(pilot, lambda: not app.connection.testing and app._notifications)
        said = toasts()[-1]
        assert "refused the connection" in said, said
