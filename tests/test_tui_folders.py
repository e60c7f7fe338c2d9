"""The Remote screen with several watched folders, a sub-folder and a file that is no report.

A real demo SFTP server (its report folder ``upload/ALMA/Daily_Report`` and the folder above
it, both watched) is listed by the app; the screen is checked through Pilot and as an SVG
snapshot (120x40).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    FIXED_NOW,
    _pinned_clock,
    download,
    home,
    server_loop,
    settled,
    until_fitted,
    wait_for,
)
from tui.app import create_app
from tui.core.ledger import Ledger
from tui.demo.data import DEMO_REMOTE_DIR

PARENT = DEMO_REMOTE_DIR.rsplit("/", 1)[0]


@pytest.fixture
def folders_remote(server_loop, tmp_path):
    """The demo server with more in it: a sub-folder and a readme beside the reports, and in
    the folder above, a file of the same name as one of the reports and one with a colon."""
    from tui.demo.server import start_demo_server

    root = tmp_path / "server"
    server = server_loop.run(start_demo_server(dir=root / "root", now=datetime.fromisoformat(FIXED_NOW),
                                               keys_dir=root / "keys"))
    reports = root / "root" / DEMO_REMOTE_DIR
    (reports / "archive").mkdir()
    (reports / "readme.txt").write_text("Daily loans reports.\n")
    first = sorted(reports.glob("*.xlsx"))[-1]
    shutil.copy2(first, reports.parent / first.name)
    shutil.copy2(first, reports.parent / "Weekly Loans 2026-10-12T06:30:00.xlsx")
    yield server
    server_loop.run(server.close())


def _app(server, home: Path):
    profile = replace(server.profile, local_dir=home / "reports", ledger=home / ".ledger.sqlite3",
                      remote_dirs=(DEMO_REMOTE_DIR, PARENT))
    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    return create_app(profile, ledger=ledger, demo=True)


async def _listed(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: settled(app) and app.snapshot.others and not app.board.active)
    await pilot.press("2")
    await until_fitted(pilot)
    app.clear_notifications()
    await pilot.pause()


async def test_folders_and_other_entries_on_the_remote_screen(folders_remote, home):
    app = _app(folders_remote, home)
    async with app.run_test(size=(120, 40)) as pilot:
        await _listed(pilot)
        screen = app.screen
        others = {(o.folder, o.name, o.kind) for o in app.snapshot.others}
        assert others == {(DEMO_REMOTE_DIR, "archive", "folder"),
                          (DEMO_REMOTE_DIR, "readme.txt", "not-a-report")}
        # The watched sub-folder is not an "other" entry of its parent.
        assert app.snapshot.folder_labels == {DEMO_REMOTE_DIR: "Daily_Report", PARENT: "ALMA"}
        assert screen.shown[:2] == [o.key for o in sorted(app.snapshot.others, key=lambda o: o.kind != "folder")]
        same = [r for r in app.snapshot.rows if r.server_name == app.snapshot.rows[-1].server_name]
        idents = {r.name for r in app.snapshot.rows}
        assert any(n.startswith(PARENT + "/") and not n.startswith(DEMO_REMOTE_DIR) for n in idents)
        assert len({r.folder for r in app.snapshot.rows}) == 2 and same
        # The first row is the sub-folder: it cannot be selected or downloaded.
        await pilot.press("home", "space")
        assert screen.selected == set()
        await pilot.press("a")
        assert screen.selected and all(n in screen.rows for n in screen.selected)
        assert len(screen.selected) == len(app.snapshot.rows)
        await pilot.press("escape")
        # Download the upper folder's files (one has the name of a file below) through the
        # app's queue: each lands in its folder's local folder, the namesake below stays new.
        upper = {r.name for r in app.snapshot.rows if r.folder == PARENT}
        namesake = next(r.name for r in app.snapshot.rows
                        if r.folder == DEMO_REMOTE_DIR and f"{PARENT}/{r.server_name}" in upper)
        screen.selected = set(upper)
        seen_on_board: set[str] = set()
        await download(pilot)
        await wait_for(pilot, lambda: (seen_on_board.update(app.board.jobs) or True)
                       and not app.board.active and settled(app)
                       and all(screen.rows[n].state == "downloaded" for n in upper), 120)
        assert seen_on_board == upper  # the board knows each file by its identity
        assert screen.rows[namesake].state == "new"
        local = home / "reports"
        for name in upper:
            row = screen.rows[name]
            assert Path(row.local_path) == local.joinpath(*row.folder.split("/")) / row.local_name
            assert Path(row.local_path).is_file()
        assert not (local / DEMO_REMOTE_DIR / "archive").exists()
        assert not (local / DEMO_REMOTE_DIR / "readme.txt").exists()


def test_remote_screen_with_two_folders_snapshot(snap_compare, folders_remote, home):
    app = _app(folders_remote, home)

    async def run_before(pilot):
        await _listed(pilot)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
