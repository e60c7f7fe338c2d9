"""Pilot tests: the Remote list keeps its place when a new listing really moves its rows.

The list is filled again in one pass whenever rows come, go or change order; the cursor must
stay on its file, that many rows below the top of the view as before, while new files sort
in above it, sub-folders appear above the files, or a filter narrows the list; when the file
itself is gone (or filtered out) the row that takes its place gets the cursor, not the top of
the list. The real demo SFTP server on 127.0.0.1 is changed between two listings (files
copied in, moved away, folders made) and the app lists it again with ``r``, as a user would;
each change is undone after the test, so the module's server stays as generated.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    _pinned_clock,
    demo_app,
    demo_remote,
    home,
    press_until,
    profile_for,
    server_loop,
    settled,
    wait_for,
)

# 80x24, and wide (Name and Age columns) with a view of 25 rows: the demo's 66 files still
# fill well over two views, so the list can scroll on past the cursor's place.
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 30), id="120x30")]
DAILY = "Loans Per Patron From 3 Days Ago"


class ServerFolder:
    """The demo server's report folder, changed by a test and put back afterwards."""

    def __init__(self, folder: Path, aside: Path) -> None:
        self.folder = folder
        self.aside = aside
        self._added: list[Path] = []
        self._moved: list[str] = []

    def copy_in(self, names: list[str]) -> None:
        """New files on the server (copies of one of its workbooks, under these names)."""
        like = next(p for p in sorted(self.folder.iterdir()) if p.name.startswith(DAILY))
        for name in names:
            target = self.folder / name
            assert not target.exists(), name
            shutil.copyfile(like, target)
            self._added.append(target)

    def write(self, name: str, text: str) -> None:
        """A file that is no workbook."""
        (self.folder / name).write_text(text)
        self._added.append(self.folder / name)

    def make_folders(self, names: list[str]) -> None:
        for name in names:
            (self.folder / name).mkdir()
            self._added.append(self.folder / name)

    def take_away(self, name: str) -> None:
        """The server deleted this file (it is kept aside and put back after the test)."""
        (self.folder / name).rename(self.aside / name)
        self._moved.append(name)

    def restore(self) -> None:
        for path in reversed(self._added):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        for name in self._moved:
            (self.aside / name).rename(self.folder / name)


@pytest.fixture
def server_folder(demo_remote, tmp_path) -> Iterator[ServerFolder]:
    aside = tmp_path / "aside"
    aside.mkdir()
    folder = ServerFolder(demo_remote.root / demo_remote.remote_dir, aside)
    try:
        yield folder
    finally:
        folder.restore()


async def _remote(pilot):
    """The Remote screen after the first listing: (screen, table)."""
    app = pilot.app
    await wait_for(pilot, lambda: settled(app))
    await pilot.press("2")
    await pilot.pause()
    remote = app.screen
    assert type(remote).__name__ == "RemoteScreen"
    return remote, remote.query_one("DataTable")


async def _list_again(pilot, remote, shown: set[str] | None = None) -> None:
    """``r``: the server is listed again; wait until the screen has the new snapshot (and,
    when given, until exactly these keys are what its rows and other entries are)."""
    app = pilot.app
    version = app.snapshot.version
    await press_until(pilot, "r", lambda: app.snapshot.version > version)
    await wait_for(pilot, lambda: app.snapshot.version > version and settled(app))
    await pilot.pause()
    if shown is not None:
        await wait_for(pilot, lambda: set(remote.rows) | set(remote.others) == shown, 10)


def _place(remote, table) -> tuple[str, int]:
    """The file under the cursor and how many rows below the top of the view it is shown."""
    return remote.shown[table.cursor_row], table.cursor_row - round(table.scroll_y)


def _visible_rows(table) -> int:
    return table.scrollable_content_region.height - (table.header_height if table.show_header else 0)


async def _to_the_middle(pilot, remote, table) -> tuple[str, int]:
    """A page down and six rows further: the list scrolled, the cursor inside the view
    (neither edge) and the view well before the end of the list (where the list could not
    scroll further, a drift would not show)."""
    visible = _visible_rows(table)
    await pilot.press("pagedown", *["down"] * 6)
    await pilot.pause()
    name, offset = _place(remote, table)
    assert 0 < offset < visible - 1, (offset, visible)
    assert 5 <= table.scroll_y <= table.max_scroll_y - 5, (table.scroll_y, table.max_scroll_y)
    assert name in remote.rows
    return name, offset


def _newer_names(remote, name: str, count: int) -> list[str]:
    """``count`` file names of the daily report delivered after ``name`` (so newest first
    puts them above it), at noon of days it has files of, none of them on the server yet."""
    days = sorted({r.delivered_at.date() for r in remote.rows.values()
                   if r.report == DAILY and r.delivered_at > remote.rows[name].delivered_at})
    assert len(days) >= count
    return [f"{DAILY}_{day:%Y%m%d}_120000.xlsx" for day in days[:count]]


@pytest.mark.parametrize("size", SIZES)
async def test_new_files_above_the_cursor_keep_it_on_its_file_where_it_was(
        demo_remote, home, server_folder, size):
    app = demo_app(profile_for(demo_remote, home))
    async with app.run_test(size=size) as pilot:
        remote, table = await _remote(pilot)
        name, offset = await _to_the_middle(pilot, remote, table)
        row = table.cursor_row
        added = _newer_names(remote, name, 5)
        server_folder.copy_in(added)
        await _list_again(pilot, remote, set(remote.rows) | set(added))
        # the rows really moved: five more above the cursor's file
        assert remote.shown.index(name) == row + 5
        assert all(remote.shown.index(new) < row + 5 for new in added)
        assert table.row_count == len(remote.shown)
        assert _place(remote, table) == (name, offset)
        # and the list moves on from there, as it would have before
        await pilot.press("down")
        assert remote.shown[table.cursor_row] == remote.shown[row + 6]


@pytest.mark.parametrize("size", SIZES)
async def test_the_cursors_file_gone_from_the_server_gives_its_place_to_the_next(
        demo_remote, home, server_folder, size):
    """The server deleted the file under the cursor: the file that moves up into its row gets
    the cursor, at the same place in the view (not the top of the list); the last file gone,
    the one above it."""
    app = demo_app(profile_for(demo_remote, home))
    async with app.run_test(size=size) as pilot:
        remote, table = await _remote(pilot)
        name, offset = await _to_the_middle(pilot, remote, table)
        row = table.cursor_row
        below = remote.shown[row + 1]
        before = set(remote.rows)
        server_folder.take_away(name)
        await _list_again(pilot, remote, before - {name})
        assert name not in remote.shown
        assert remote.shown.index(below) == row
        assert _place(remote, table) == (below, offset)

        # The last file of the list gone while the cursor is on it: the one above it.
        await pilot.press("ctrl+end")
        await pilot.pause()
        assert table.cursor_row == len(remote.shown) - 1
        last, above = remote.shown[-1], remote.shown[-2]
        last_offset = _place(remote, table)[1]
        server_folder.take_away(last)
        await _list_again(pilot, remote, before - {name, last})
        assert remote.shown[-1] == above
        # the list one row shorter, its end still at the bottom of the view: the file above
        # moves down into the place of the one gone
        assert _place(remote, table) == (above, last_offset)


@pytest.mark.parametrize("size", SIZES)
async def test_sort_and_filter_keep_the_cursor_valid_and_on_its_file_when_shown(
        demo_remote, home, server_folder, size):
    """``s`` shows the new order from its top, as before (the sort brings the files the
    user looks for first, e.g. the ones the server deletes soonest); in that order a refill
    keeps the place; a filter keeps the cursor on its file while it is shown, else on the
    next file it shows."""
    app = demo_app(profile_for(demo_remote, home))
    async with app.run_test(size=size) as pilot:
        remote, table = await _remote(pilot)
        # s shows the new order from its top (the cursor on its first row) ...
        await _to_the_middle(pilot, remote, table)
        await pilot.press("s", "s", "s")
        await pilot.pause()
        status = str(remote.query_one("#remote-status").render())
        assert "sort: name" in status, status
        assert remote.shown == sorted(remote.shown, key=str.casefold)
        assert table.cursor_row == 0 and table.scroll_y == 0
        # ... and in that order too, files coming in above the cursor leave it on its file.
        name, offset = await _to_the_middle(pilot, remote, table)
        row = table.cursor_row
        earlier = [f"{DAILY}_202601{day:02d}_120000.xlsx" for day in range(1, 4)]  # first by name
        server_folder.copy_in(earlier)
        await _list_again(pilot, remote, set(remote.rows) | set(earlier))
        assert remote.shown[:3] == earlier
        assert remote.shown.index(name) == row + 3
        assert _place(remote, table) == (name, offset)

        # A filter that still shows the file: the cursor stays on it.
        report = remote.rows[name].report
        assert report == DAILY
        await pilot.press("slash", *"Patron", "enter")
        await pilot.pause()
        assert remote.filter_text == "Patron"
        assert len(remote.shown) < len(remote.rows)  # the filter really took rows away
        assert _place(remote, table) == (name, offset), (remote.shown.index(name), len(remote.shown))

        # A filter that hides it but shows files before and after it: no error, the cursor on
        # the first file after it that the filter shows (not on the top of the list).
        day = remote.rows[name].delivered_at.day
        needle = f"{(day + 1) % 10}_"  # the files of the days ending in another digit
        await pilot.press("slash", "ctrl+u", *needle, "enter")
        await pilot.pause()
        assert remote.filter_text == needle
        assert name not in remote.shown
        assert 0 <= table.cursor_row < len(remote.shown) == table.row_count
        by_name = sorted(remote.rows, key=str.casefold)
        at = by_name.index(name)
        assert any(needle in n for n in by_name[:at]) and any(needle in n for n in by_name[at:])
        assert remote.shown[table.cursor_row] == next(n for n in by_name[at:] if needle in n)
        assert 0 <= table.cursor_row - table.scroll_y < _visible_rows(table)
        # Nothing matches: an empty list, no error; clearing the filter shows every file.
        await pilot.press("slash", "ctrl+u", *"zzz", "enter")
        await pilot.pause()
        assert remote.shown == [] and table.row_count == 0
        await pilot.press("escape")
        await pilot.pause()
        assert remote.filter_text == "" and len(remote.shown) == len(remote.rows)
        assert 0 <= table.cursor_row < len(remote.shown)


@pytest.mark.parametrize("size", SIZES)
async def test_sub_folders_appearing_above_the_files_leave_the_cursor_on_its_file(
        demo_remote, home, server_folder, size):
    app = demo_app(profile_for(demo_remote, home))
    async with app.run_test(size=size) as pilot:
        remote, table = await _remote(pilot)
        name, offset = await _to_the_middle(pilot, remote, table)
        row = table.cursor_row
        files = set(remote.rows)

        def others() -> list[str]:
            return sorted(o.name for o in remote.others.values())

        server_folder.make_folders(["archive", "2025"])
        await _list_again(pilot, remote)
        await wait_for(pilot, lambda: others() == ["2025", "archive"], 10)
        assert set(remote.rows) == files
        # shown first, above every file
        assert {remote.others[key].name for key in remote.shown[:2]} == {"2025", "archive"}
        assert remote.shown.index(name) == row + 2
        assert _place(remote, table) == (name, offset)

        # more of them, and a file that is no report: still on its file
        server_folder.make_folders(["old", "older"])
        server_folder.write("readme.txt", "Daily loans reports.\n")
        await _list_again(pilot, remote)
        await wait_for(pilot, lambda: len(others()) == 5, 10)
        assert others() == ["2025", "archive", "old", "older", "readme.txt"]
        assert remote.shown.index(name) == row + 5
        assert _place(remote, table) == (name, offset)
