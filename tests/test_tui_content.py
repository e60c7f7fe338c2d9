"""Stale, wrong-day and few-rows in the app: the heatmap (cells, legend, detail, NO_COLOR, an SVG
snapshot) and the Verify screen, over the content scenario's real workbooks and ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from textual.app import App
from textual.widgets import DataTable, Static

from tests import content_scenario as cs
from tests.stand_in import StandInApp
from tests.test_tui_verify import text_of
from tui.core import heatmap as hm
from tui.core.config import Profile
from tui.core.health import HealthReport, evaluate
from tui.core.ledger import Ledger
from tui.screens.heatmap import HeatmapScreen
from tui.screens.verify import VerifyScreen
from tui.state import DataSnapshot
from tui.widgets.heatmap import HeatmapWidget


@dataclass
class Built:
    profile: Profile
    ledger: Ledger
    health: HealthReport


def build(tmp_path: Path) -> Built:
    files = cs.write_files(tmp_path / "alma")
    profile = cs.profile(local_dir=str(tmp_path / "local"), ledger=str(tmp_path / "ledger.sqlite3"))
    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    cs.seed_ledger(ledger, files, tmp_path / "local", profile_=profile)
    return Built(profile, ledger, evaluate(profile, ledger.deliveries(), now=cs.NOW))


@pytest.fixture
def built(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", cs.NOW_ISO)
    b = build(tmp_path)
    yield b
    b.ledger.close()


class HeatmapApp(App[None]):
    """The heatmap screen with the state it reads (the profile, the snapshot's health)."""

    def __init__(self, built: Built, **kw) -> None:
        super().__init__(**kw)
        self.built = built
        self.profile = built.profile
        self.snapshot = DataSnapshot(health=built.health)

    def on_mount(self) -> None:
        self.push_screen(HeatmapScreen())


async def test_heatmap_cells_legend_and_detail_name_each_content_problem(built):
    app = HeatmapApp(built)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        grid = app.screen.grid
        assert grid.cell(cs.STALE_DAY).kind == hm.STALE  # the cause first (it is wrong-day too)
        assert grid.cell(cs.WRONG_DAY).kind == hm.WRONG_DAY
        assert grid.cell(cs.FEW_DAY).kind == hm.FEW_ROWS
        assert grid.cell(cs.EARLY_LOW).kind == hm.OK  # too little history to judge
        # The runs covering the closed week (4 rows a day) are fine, and so are their weekdays after.
        holiday_runs = [cs.CLOSED[0] + timedelta(days=cs.LAG + i) for i in range(5)]
        assert {grid.cell(d).kind for d in holiday_runs} == {hm.OK}
        assert {grid.cell(d + timedelta(days=7)).kind for d in holiday_runs} == {hm.OK}
        glyphs = {hm.STYLES[k].glyph for k in hm.KINDS}
        assert len(glyphs) == len(hm.KINDS)  # one glyph per kind: readable without colour
        widget = app.screen.query_one(HeatmapWidget)
        text = widget.render().plain
        for words in ("≡ stale (repeat)", "↔ wrong day", "▁ few rows"):
            assert words in text
        await pilot.press("up")  # from today (few rows) to 10 Dec
        detail = " ".join(str(app.screen.query_one("#heatmap-day", Static).render()).split())  # unwrapped
        assert "Thu 10 Dec 2026 · wrong day" in detail and "Rescue by Mon 14 Dec 2026 (in 3 days)" in detail
        assert "describe loans of Sun 6 Dec" in detail and "check its date filter" in detail
        await pilot.press("up")
        detail = " ".join(str(app.screen.query_one("#heatmap-day", Static).render()).split())  # unwrapped
        assert "stale (repeat)" in detail and "holds exactly the same" in detail
        assert "critical: The rows of" in detail  # its wrong-day problem is listed too


async def test_heatmap_without_colour_keeps_the_glyphs(built, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = HeatmapApp(built)
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        widget = app.screen.query_one(HeatmapWidget)
        rendered = widget.render()
        assert not [s for s in rendered.spans if getattr(s.style, "color", None) is not None]
        rows = rendered.plain.splitlines()
        for day, glyph in ((cs.STALE_DAY, "≡"), (cs.WRONG_DAY, "↔")):
            assert glyph in rows[1 + day.weekday()]
        assert "▁◂" in rows[1 + cs.FEW_DAY.weekday()]  # today, under the cursor


def test_snapshot_heatmap_content_checks_120x40(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", cs.NOW_ISO)
    b = build(tmp_path)
    assert snap_compare(HeatmapApp(b), terminal_size=(120, 40), press=["up"])


async def test_verify_screen_shows_the_history_verdicts_beside_the_files(built):
    app = StandInApp(built.profile, built.ledger, VerifyScreen, health=built.health)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(DataTable)
        shown = {}
        for i, o in enumerate(screen._shown):
            shown[o.result.name] = str(table.get_row_at(i)[0])
        assert shown[cs.planned(cs.STALE_DAY).name] == "≡ stale"
        assert shown[cs.planned(cs.WRONG_DAY).name] == "↔ wrong day"
        assert shown[cs.planned(cs.FEW_DAY).name] == "▁ few rows"
        assert shown[cs.planned(cs.STALE_OF).name] == "✓ ok"
        summary = str(screen.query_one("#verify-status", Static).render())
        assert "≡ stale 1" in summary and "▁ few rows 1" in summary and "↔ wrong day 1" in summary
        index = next(i for i, o in enumerate(screen._shown) if o.result.name == cs.planned(cs.STALE_DAY).name)
        table.move_cursor(row=index)
        await pilot.press("enter")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        detail = text_of(screen.detail_renderable(screen._detail))
        assert "≡ stale (warning): " in detail and "↔ wrong day (critical): " in detail
        assert "Next: Open the analysis in Alma Analytics" in detail
