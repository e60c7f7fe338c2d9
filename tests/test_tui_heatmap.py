"""The heatmap screen against the real demo scenario: generated .xlsx files, a real ledger,
the real validator and the real schedule evaluation; Pilot navigation and SVG snapshots."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from textual.app import App

from tui.core import heatmap as hm
from tui.core.health import HealthReport, evaluate
from tui.core.ledger import Ledger
from tui.core.model import RemoteFile
from tui.core.validate import validate_file
from tui.demo import data as demo_data
from tui.screens.heatmap import HeatmapScreen
from tui.state import DataSnapshot
from tui.widgets.heatmap import HeatmapWidget

NOW = "2026-11-29T15:00:00+00:00"  # Sunday 09:00 in Chicago: today's run is on time already


@dataclass
class Scenario:
    demo: demo_data.DemoScenario
    profile: object
    ledger: Ledger
    local: Path
    health: HealthReport


def build_demo(tmp_path: Path, *, verify: bool = True, download_all: bool = True) -> Scenario:
    """The demo folder as `sync` would leave it: listed, downloaded, verified, in a ledger."""
    now = datetime.fromisoformat(NOW)
    demo = demo_data.generate(tmp_path / "server", now=now)
    local = tmp_path / "local"
    local.mkdir(mode=0o700)
    profile = demo_data.demo_config(local_dir=local, ledger=tmp_path / "ledger.sqlite3", now=now)
    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    listing = []
    for path in sorted(demo.directory.iterdir()):
        st_ = path.stat()
        listing.append(RemoteFile(path.name, st_.st_size, datetime.fromtimestamp(st_.st_mtime, UTC)))

    def report_of(f: RemoteFile):
        report, parsed = profile.classify(f.name, f.mtime)
        return report.name, parsed.delivered_at or f.mtime

    ledger.record_listing(None, report_of, listing, when=now)
    for f in listing:
        if not download_all and f.name.startswith(demo_data.WEEKLY):
            continue
        target = local / f.name
        shutil.copyfile(demo.directory / f.name, target)
        target.chmod(0o600)
        sha = hashlib.sha256(target.read_bytes()).hexdigest()
        ledger.record_download(f.name, size=f.size, sha256=sha, local_path=target, mtime=f.mtime, when=now)
        if verify:
            report, parsed = profile.classify(f.name, f.mtime)
            result = validate_file(target, report, parsed.delivered_at)
            ledger.record_verification(result, sha256=sha, when=now)
    health = evaluate(profile, ledger.deliveries(), now=now)
    return Scenario(demo, profile, ledger, local, health)


class HeatmapApp(App[None]):
    """A bare app that shows the heatmap screen with the state it reads (profile, snapshot)."""

    def __init__(self, scenario: Scenario, **kw) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        self.profile = scenario.profile
        self.snapshot = DataSnapshot(health=scenario.health)
        self.selected: list[date] = []

    def on_mount(self) -> None:
        self.push_screen(HeatmapScreen())


@pytest.fixture(autouse=True)
def _demo_written_once(demo_generated_once):
    """``demo_data.generate`` copies the session's generation at NOW (``tests/demo_cache.py``:
    the files, bytes and times a fresh one writes) instead of writing it for every test."""


@pytest.fixture
def scenario(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    s = build_demo(tmp_path)
    yield s
    s.ledger.close()


def screen_text(app) -> str:
    from textual.widgets import Static

    # the panel's text is wrapped to its width: compare words, not line breaks
    return " ".join(str(app.screen.query_one("#heatmap-day", Static).render()).split())


async def test_each_demo_case_is_its_own_cell_kind_and_says_why(scenario):
    demo = scenario.demo
    app = HeatmapApp(scenario)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        grid = screen.grid
        assert screen.report.name == demo_data.DAILY
        expected = {
            demo.missing_day: hm.MISSING,
            demo.late_day: hm.LATE,
            demo.empty_day: hm.EMPTY,
            demo.holiday_run_day: hm.EMPTY_CLOSED,
            demo.corrupt_day: hm.BROKEN,
            demo.today: hm.OK,
            demo.today - timedelta(days=1): hm.OK,
        }
        for day, kind in expected.items():
            assert grid.cell(day).kind == kind, day
        kinds = {c.kind for c in grid.cells}
        assert {hm.MISSING, hm.LATE, hm.EMPTY, hm.EMPTY_CLOSED, hm.BROKEN, hm.OK} <= kinds
        widget = screen.query_one(HeatmapWidget)
        assert widget.has_focus and widget.selected == demo.today
        # Walk onto each case with the arrow keys only and read why.
        reasons = {
            demo.missing_day: ["missing", "Rescue by", "Re-run"],
            demo.late_day: ["late", "after the deadline"],
            demo.empty_day: ["empty", "no data rows", "Rescue by"],
            demo.holiday_run_day: ["closed", "(closed day)"],
            demo.corrupt_day: ["unreadable", "not a readable Excel file"],
        }
        for day, words in sorted(reasons.items(), reverse=True):
            await goto(pilot, widget, day)
            assert widget.selected == day
            text = screen_text(app)
            for word in words:
                assert word in text, (day, word, text)
            assert "Delete on" in text or day == demo.missing_day


async def goto(pilot, widget: HeatmapWidget, day: date) -> None:
    """Arrow keys only: whole weeks left/right, then single days up/down."""
    while (widget.selected - day).days >= 7:
        await pilot.press("left")
    while (day - widget.selected).days >= 7:
        await pilot.press("right")
    while widget.selected > day:
        await pilot.press("up")
    while widget.selected < day:
        await pilot.press("down")
    await pilot.pause()


async def test_cursor_moves_by_week_and_day_posts_messages_and_stops_at_the_ends(scenario):
    app = HeatmapApp(scenario)
    seen: list[date] = []

    def hook(message):
        if isinstance(message, HeatmapWidget.DaySelected):
            seen.append(message.day)

    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        await pilot.pause()
        widget = app.screen.query_one(HeatmapWidget)
        today = scenario.demo.today
        await pilot.press("left")
        assert widget.selected == today - timedelta(days=7)
        await pilot.press("up", "up")
        assert widget.selected == today - timedelta(days=9)
        await pilot.press("right", "right")  # clamped at today
        assert widget.selected == today
        await pilot.press("down")
        assert widget.selected == today  # nothing after today
        await pilot.press("home")
        assert widget.selected == widget.grid.first_day
        await pilot.press("up")
        assert widget.selected == widget.grid.first_day
        await pilot.press("end")
        await pilot.pause()
        assert widget.selected == today
        assert today - timedelta(days=9) in seen and seen[-1] == today


async def test_brackets_switch_report_and_back(scenario):
    app = HeatmapApp(scenario)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert screen.report.name == demo_data.DAILY
        await pilot.press("right_square_bracket")
        assert screen.report.name == demo_data.WEEKLY
        grid = screen.grid
        monday = scenario.demo.today - timedelta(days=scenario.demo.today.weekday())
        assert grid.cell(monday).kind == hm.OK
        assert grid.cell(monday + timedelta(days=1)).kind == hm.NOT_EXPECTED
        assert "Weekly Loans" in str(screen.query_one("#heatmap-title").render())
        await pilot.press("left_square_bracket")
        assert screen.report.name == demo_data.DAILY


async def test_unverified_deliveries_and_no_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    s = build_demo(tmp_path, verify=False)
    try:
        app = HeatmapApp(s)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            grid = app.screen.grid
            # Without verification, only schedule facts are known.
            assert grid.cell(s.demo.empty_day).kind == hm.UNVERIFIED
            assert grid.cell(s.demo.late_day).kind == hm.LATE
            assert grid.cell(s.demo.missing_day).kind == hm.MISSING
            app.screen.set_health(HealthReport(now=s.health.now, reports=(), connection=s.health.connection))
            await pilot.pause()
            assert "no reports yet" in str(app.screen.query_one("#heatmap-title").render())
    finally:
        s.ledger.close()


# ------------------------------------------------------------------------------ snapshots


def _snap_app(tmp_path, monkeypatch) -> HeatmapApp:
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    s = build_demo(tmp_path)
    return HeatmapApp(s)


def test_snapshot_heatmap_80x24_on_the_missing_day(snap_compare, tmp_path, monkeypatch):
    app = _snap_app(tmp_path, monkeypatch)
    assert snap_compare(app, terminal_size=(80, 24), press=["up", "up"])


def test_snapshot_heatmap_120x40_on_the_corrupt_file(snap_compare, tmp_path, monkeypatch):
    app = _snap_app(tmp_path, monkeypatch)
    assert snap_compare(app, terminal_size=(120, 40), press=["left", "left", "up"])


def test_snapshot_heatmap_no_color(snap_compare, tmp_path, monkeypatch):
    # Textual reads NO_COLOR when the App is created (and removes it from the environment).
    monkeypatch.setenv("NO_COLOR", "1")
    app = _snap_app(tmp_path, monkeypatch)
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), press=["left", "up"])


async def test_a_year_of_history_scrolls_with_the_cursor(monkeypatch):
    """More weeks than fit in 80 columns: the newest show first, the cursor drags the window."""
    from zoneinfo import ZoneInfo

    from tui.core import model
    from tui.core.config import Profile
    from tui.core.health import ConnectionStatus, ReportHealth
    from tui.core.model import RunDay
    from tui.core.schedule import Schedule
    from tui.core.status import Exit

    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    today = date(2026, 11, 29)
    runs = tuple(
        RunDay(day=today - timedelta(days=n), status=model.ON_TIME, verification="ok", rows=10 + n % 50)
        for n in range(400, -1, -1)
    )
    report = ReportHealth(name="Long <b>history</b> [bold]x[/bold]", exit=Exit.OK, schedule=Schedule("daily"),
                          at=time(7, 0), grace=timedelta(hours=2), inferred=False, confidence=None,
                          runs=runs, problems=(), last_delivery=None, on_time_streak=len(runs))
    health = HealthReport(now=datetime.fromisoformat(NOW), reports=(report,),
                          connection=ConnectionStatus.skipped())

    class LongApp(App[None]):
        profile = Profile(name="long", host="127.0.0.1", timezone=ZoneInfo("America/Chicago"))
        snapshot = DataSnapshot(health=health)

        def on_mount(self) -> None:
            self.push_screen(HeatmapScreen())

    app = LongApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        widget = app.screen.query_one(HeatmapWidget)
        grid = widget.grid
        assert grid.columns > widget.visible_weeks() and grid.first_day == date(2025, 10, 25)
        text = widget.render().plain
        assert "‹" in text and "›" not in text and "Nov" in text
        await pilot.press("home")
        text = widget.render().plain
        assert widget.selected == grid.first_day
        months = text.splitlines()[0]
        assert "›" in text and "‹" not in text
        assert months.startswith("2025") and "Nov" in months and "2026" in months
        await pilot.press(*["right"] * 12)
        first, count = widget._window()
        assert first <= grid.position(widget.selected)[0] < first + count
        # The report name is shown as written, never read as markup.
        assert "Long <b>history</b> [bold]x[/bold]" in str(app.screen.query_one("#heatmap-title").render())
