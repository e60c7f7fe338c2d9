"""The verify screen on the real demo files: real validator, real ledger cache, Pilot keys,
zero-row toasts, masked preview, SVG snapshots."""

from __future__ import annotations

import io
import shutil

import pytest
from rich.console import Console
from textual.widgets import DataTable

from tests import xlsx_factory
from tests.stand_in import StandInApp
from tests.test_tui_heatmap import NOW, Scenario, build_demo
from tui.core import status as st
from tui.core.local_reports import empty_on_open_day, find_local_reports, verify_local
from tui.demo import data as demo_data
from tui.screens.verify import VerifyScreen


class VerifyApp(StandInApp):
    """The Verify screen alone, on the demo scenario's profile and ledger."""

    def __init__(self, scenario: Scenario, **kw) -> None:
        super().__init__(scenario.profile, scenario.ledger, VerifyScreen, **kw)
        self.scenario = scenario


@pytest.fixture
def scenario(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    s = build_demo(tmp_path, verify=False)
    yield s
    s.ledger.close()


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def text_of(renderable, width: int = 400) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def statuses(screen) -> dict[str, str]:
    return {o.result.name: o.result.status for o in screen.outcomes}


async def test_lists_every_local_report_with_status_and_toasts_the_empty_one(scenario):
    demo = scenario.demo
    app = VerifyApp(scenario)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(DataTable)
        assert table.row_count == len(demo.files)
        got = statuses(screen)
        assert got[demo.file_of(demo_data.CORRUPT).name] == st.UNREADABLE
        assert got[demo.file_of(demo_data.EMPTY).name] == st.EMPTY
        assert got[demo.file_of(demo_data.EMPTY_CLOSED).name] == st.EMPTY_CLOSED
        assert sum(1 for s in got.values() if s == st.OK) == len(demo.files) - 3
        assert all(not o.cached for o in screen.outcomes)
        # The zero-row hook: one message naming the empty file on an open day, and a toast.
        assert app.empty_found == [demo.file_of(demo_data.EMPTY).name]
        assert any("no data rows" in n.message for n in app._notifications)
        rows = {o.result.name: o.result.rows for o in screen.outcomes}
        ok_file = next(f for f in demo.files if f.kind == demo_data.OK)
        assert rows[ok_file.name] == ok_file.rows
        # Newest first: the first row is today's delivery.
        assert screen._shown[0].result.name == max(demo.files, key=lambda f: f.delivered_at).name

        # v again: everything comes from the ledger cache, no new toast.
        await pilot.press("v")
        await settle(pilot)
        assert screen.last_run_cached == len(demo.files)
        assert app.empty_found == [demo.file_of(demo_data.EMPTY).name]

        # A file replaced by an empty one is verified afresh (its hash changed) and toasted.
        changed = scenario.local / ok_file.name
        xlsx_factory.write_report(changed, rows=[], columns=demo_data.DAILY_COLUMNS)
        await pilot.press("v")
        await settle(pilot)
        assert screen.last_run_cached == len(demo.files) - 1
        assert statuses(screen)[ok_file.name] == st.EMPTY
        assert app.empty_found[-1] == ok_file.name


async def test_detail_pane_masks_identifiers_until_m(scenario):
    demo = scenario.demo
    ok_file = next(f for f in demo.files if f.kind == demo_data.OK and f.report == demo_data.DAILY)
    app = VerifyApp(scenario)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("slash")
        await pilot.press(*ok_file.name[-21:-5])  # the timestamp part of the name
        await pilot.press("enter")
        assert len(screen._shown) == 1
        await pilot.press("enter")
        await settle(pilot)
        detail = screen.query_one("#verify-detail")
        assert detail.display
        outcome = screen._detail
        assert outcome.result.name == ok_file.name
        from tui.core.validate import preview_rows

        header, rows = preview_rows(scenario.local / ok_file.name, 3, 10)
        patron_ids = [r[header.index("Primary Identifier")] for r in rows]
        barcodes = [r[header.index("Item Barcode")] for r in rows]
        text = text_of(screen.detail_renderable(outcome))
        assert "header on row 3" in text and f"{ok_file.rows:,} data rows" in text
        assert "✓ Primary Identifier" in text and "all expected columns present" in text
        assert "identifier columns masked" in text
        assert any(g in text for g in ("Undergraduate", "Graduate", "Faculty", "Staff"))  # not masked
        assert not any(pid in text for pid in patron_ids + barcodes)
        await pilot.press("m")
        text = text_of(screen.detail_renderable(outcome))
        assert all(pid in text for pid in patron_ids)
        await pilot.press("m")
        text = text_of(screen.detail_renderable(outcome))
        assert not any(pid in text for pid in patron_ids)
        await pilot.press("escape")
        assert not detail.display


async def test_unreadable_detail_sort_and_filter(scenario):
    demo = scenario.demo
    app = VerifyApp(scenario)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        await pilot.press("s")  # worst first
        assert screen._shown[0].result.status == st.UNREADABLE
        await pilot.press("ctrl+home", "enter")
        await settle(pilot)
        text = text_of(screen.detail_renderable(screen._detail))
        assert demo.file_of(demo_data.CORRUPT).name in text
        assert "cannot be read" in text and "Validator:" in text
        await pilot.press("escape", "s")  # by name
        names = [o.result.name for o in screen._shown]
        assert names == sorted(names, key=str.casefold)
        await pilot.press("slash", *"Weekly", "enter")
        assert {o.result.report for o in screen._shown} == {demo_data.WEEKLY}
        await pilot.press("slash", "ctrl+a", "ctrl+k", "escape")
        assert len(screen._shown) == len(demo.files)


async def test_a_new_sort_shows_its_first_rows(scenario):
    """``s`` shows the new order from its top, the cursor on its first row, as on the Remote
    screen: "worst first" kept the cursor's file where it was on screen, so the bad files it
    put on top were scrolled out of view above the first row shown."""
    app = VerifyApp(scenario)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(DataTable)
        await pilot.press("down", "down", "down")
        await pilot.press("s")  # worst first
        await pilot.pause()
        assert screen._shown[0].result.status == st.UNREADABLE
        assert table.cursor_row == 0 and table.scroll_y == 0, (table.cursor_row, table.scroll_y)
        await pilot.press("s")  # by name
        await pilot.pause()
        assert table.cursor_row == 0 and table.scroll_y == 0, (table.cursor_row, table.scroll_y)


def test_cache_context_and_helpers_without_textual(scenario):
    profile = scenario.profile
    items = find_local_reports(scenario.local, profile, scenario.ledger)
    assert len(items) == len(scenario.demo.files)
    holiday = next(i for i in items if i.name == scenario.demo.file_of(demo_data.EMPTY_CLOSED).name)
    empty = next(i for i in items if i.name == scenario.demo.file_of(demo_data.EMPTY).name)
    # The cache key (the ledger's, shared with sync) tells a closed day from an open one.
    from tui.core.ledger import verification_context

    def key(report):
        return verification_context(report, holiday.delivered_at, holiday.run_day, judge_day=holiday.day_known)

    assert key(holiday.report) != key(holiday.report.__class__(name=holiday.report.name))
    assert holiday.delivered_at.tzinfo is not None and holiday.delivered_at.utcoffset().total_seconds() == -6 * 3600
    # Hidden and part files are not reports.
    (scenario.local / ".x.xlsx.part").write_bytes(b"partial")
    shutil.copyfile(scenario.local / empty.name, scenario.local / ".hidden.xlsx")
    assert len(find_local_reports(scenario.local, profile, scenario.ledger)) == len(items)
    first = verify_local([empty, holiday], scenario.ledger)
    assert [o.cached for o in first] == [False, False]
    assert [r.name for r in empty_on_open_day(first)] == [empty.name]
    again = verify_local([empty, holiday], scenario.ledger)
    assert [o.cached for o in again] == [True, True] and empty_on_open_day(again) == []
    assert [o.result.status for o in again] == [st.EMPTY, st.EMPTY_CLOSED]
    # Without a profile or ledger the defaults apply and nothing is cached.
    bare = verify_local(find_local_reports(scenario.local), None)
    assert all(not o.cached for o in bare) and len(bare) == len(items)


# ------------------------------------------------------------------------------ snapshots


def _snap_app(tmp_path, monkeypatch) -> VerifyApp:
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    return VerifyApp(build_demo(tmp_path, verify=False))


async def _ready(pilot) -> None:
    await settle(pilot)
    for n in list(pilot.app._notifications):  # toasts time out: keep the pictures stable
        pilot.app._unnotify(n)
    await pilot.pause()


async def _open_empty(pilot) -> None:
    await _ready(pilot)
    screen = pilot.app.screen
    target = screen.app.scenario.demo.file_of(demo_data.EMPTY).name
    index = next(i for i, o in enumerate(screen._shown) if o.result.name == target)
    screen.query_one(DataTable).move_cursor(row=index)
    await pilot.press("enter")
    await settle(pilot)


async def _open_ok(pilot) -> None:
    await _ready(pilot)
    await pilot.press("down", "enter")
    await settle(pilot)


def test_snapshot_verify_list_80x24(snap_compare, tmp_path, monkeypatch):
    assert snap_compare(_snap_app(tmp_path, monkeypatch), terminal_size=(80, 24), run_before=_ready)


def test_snapshot_verify_detail_masked_80x24(snap_compare, tmp_path, monkeypatch):
    assert snap_compare(_snap_app(tmp_path, monkeypatch), terminal_size=(80, 24), run_before=_open_ok)


def test_snapshot_verify_detail_empty_120x40(snap_compare, tmp_path, monkeypatch):
    assert snap_compare(_snap_app(tmp_path, monkeypatch), terminal_size=(120, 40), run_before=_open_empty)


def test_snapshot_verify_no_color(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = _snap_app(tmp_path, monkeypatch)
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), run_before=_open_ok)
