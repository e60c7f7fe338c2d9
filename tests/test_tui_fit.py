"""The app at 80x24 over SSH: nothing cut in the middle of a word, wrapped text indented
under its first word, like problems grouped on Health with advice for the app's keys, NO_COLOR
criticals drawn by weight, few short toasts that hide nothing.

Pilot tests against the real demo SFTP server on 127.0.0.1 (``tests/test_tui_fixtures``); the
screen is read as the terminal would show it (the compositor's lines).
"""

from __future__ import annotations

import re
import shutil

import pytest
from textual.widgets import Footer

from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    _pinned_clock,
    demo_app,
    demo_remote,
    download,
    home,
    profile_for,
    server_loop,
    settled,
    show,
    until_fitted,
    wait_for,
)
from tui.core.model import JobState
from tui.widgets.footer import fit_keys, key_width

_app = demo_app


def screen_lines(app) -> list[str]:
    """What the terminal shows, line by line (every layer: toasts too)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


async def _settle(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: settled(app) and not app.board.active)
    await until_fitted(pilot)  # debounced column fitting


WORD = re.compile(r"[A-Za-z]{2,}")


def words(lines: list[str]) -> set[str]:
    return set(WORD.findall("\n".join(lines)))


# -- the footer ---------------------------------------------------------------------------------


def test_fit_keys_leaves_out_whole_keys_from_the_end_but_keeps_help():
    keys = [("a", "a", "All new"), ("d", "d", "Download"), ("help", "?", "Help"), ("quit", "q", "Quit")]
    widths = [key_width(d, t) for _a, d, t in keys]
    assert fit_keys(keys, sum(widths) + 14) == ([0, 1, 2, 3], True)
    assert fit_keys(keys, sum(widths)) == ([0, 1, 2, 3], False)
    assert fit_keys(keys, sum(widths) - 1) == ([0, 1, 2], False)  # q Quit goes first
    assert fit_keys(keys, widths[2]) == ([2], False)  # ? Help stays, whatever the width


async def test_every_footer_fits_80_columns_and_keeps_help(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        for key in "12345":
            await pilot.press(key)
            await until_fitted(pilot)
            footer = app.screen.query_one(Footer)
            last = screen_lines(app)[-1]
            assert "? Help" in last, (key, last)
            # every key shown whole: the last one ends before the edge (no "?▏" / "q Q▏")
            right = max(k.region.right for k in footer.children)
            assert right <= footer.region.right, (key, last)
            if "^p palette" not in last:
                assert not last.rstrip().endswith("▏"), (key, last)


# -- no word cut at 80 columns ------------------------------------------------------------------


async def cut_words(pilot, *, wide=(200, 60)) -> set[str]:
    """Words on the screen at its current size that the same screen at ``wide`` never shows
    whole: a word cut by the edge of a column or of the terminal (``Del``, ``row``, ``De``)."""
    app = pilot.app
    size = app.size
    narrow = words(screen_lines(app))
    await pilot.resize_terminal(*wide)
    await until_fitted(pilot)
    whole = words(screen_lines(app))
    await pilot.resize_terminal(size.width, size.height)
    await until_fitted(pilot)
    return narrow - whole


async def test_remote_at_80_columns_cuts_no_word(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("2")
        await until_fitted(pilot)
        lines = screen_lines(app)
        assert "Deletes" in lines[3]  # the column header, not "Del"
        assert await cut_words(pilot) == set()
        await pilot.press("s", "s")  # deletes soonest: near-deletion files on top
        await until_fitted(pilot)
        assert await cut_words(pilot) == set()


async def test_remote_filter_matches_the_time_as_shown(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("2", "slash", *"10-12", "enter")
        await until_fitted(pilot)
        remote = app.screen
        assert remote.shown and all("20261012" in name for name in remote.shown)
        await pilot.press("slash", "ctrl+u", *"1012", "enter")
        await until_fitted(pilot)
        assert remote.shown and all("20261012" in name for name in remote.shown)


async def test_remote_marks_new_files_the_server_deletes_soon(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("2", "s", "s")
        await until_fitted(pilot)
        lines = screen_lines(app)
        soon = [line for line in lines[4:-1] if re.search(r"\b[0-3]d\b", line)]
        later = [line for line in lines[4:-1] if re.search(r"\b(1[5-9]|[2-9]\d)d\b", line)]
        assert soon and all("‼ new" in line for line in soon), soon
        assert later and all("● new" in line for line in later), later


# -- the fitting helpers ------------------------------------------------------------------------


def test_fit_words_cuts_between_words_only():
    from tui.widgets.formatting import fit_words

    assert fit_words("Loans Per Patron From 3 Days Ago", 18) == "Loans Per Patron…"
    assert fit_words("Loans Per Patron From 3 Days Ago", 16) == "Loans Per…"
    assert fit_words("Short", 18) == "Short"
    assert fit_words("Supercalifragilistic", 6) == "Super…"  # one word longer than the room


def test_fit_parts_leaves_out_whole_parts_by_rank():
    from tui.widgets.formatting import fit_parts

    parts = [("66 files", 0), ("3 running", 0), ("1.2 MB/s", 2), ("ETA 4 min", 1)]
    assert fit_parts(parts, 80).plain == "66 files · 3 running · 1.2 MB/s · ETA 4 min"
    assert fit_parts(parts, 36).plain == "66 files · 3 running · ETA 4 min"
    assert fit_parts(parts, 25).plain == "66 files · 3 running"  # never "· ETA" alone


def test_mono_draws_red_bold_reversed_and_yellow_bold():
    from rich.text import Text

    from tui.widgets.formatting import mono

    text = Text()
    text.append("✗ critical", style="bold red")
    text.append(" ! warning", style="bold yellow")
    out = mono(text)
    crit, warn = out.spans[0].style, out.spans[1].style
    assert crit.bold and crit.reverse and crit.color is None
    assert warn.bold and not warn.reverse and warn.color is None
    assert mono(text, no_color=False) is text


# -- Health: grouped, advice for the app, wrapped lines indented -------------------------------


def _problems_section(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Problems ("))
    end = next(i for i, line in enumerate(lines) if line.strip() == "Connection")
    return [line for line in lines[start + 1:end] if line.strip()]


async def test_health_groups_like_problems_and_names_keys(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        near = [p for p in app.snapshot.health.problems if p.kind == "near-deletion"]
        assert len(near) >= 3
        await pilot.resize_terminal(80, 120)  # the whole body at 80 columns
        await until_fitted(pilot)
        section = _problems_section(screen_lines(app))
        text = "\n".join(section)
        assert text.count("near-deletion") == 1  # one group, not one block per file
        assert f"{len(near)} × near-deletion" in text
        assert "Press d on Health (1) or Remote (2) before" in text
        assert "report-keeper" not in text and "in the TUI" not in text
        member_lines = [line for line in section if "deleted " in line and ".xlsx" in line]
        assert len(member_lines) == len(near)  # one line each
        # the date is said once per file, not twice
        assert not any(line.count("Oct") > 2 for line in member_lines)


async def test_wrapped_lines_start_under_their_first_word(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.resize_terminal(80, 120)
        await until_fitted(pilot)
        section = _problems_section(screen_lines(app))
        for before, line in zip(section, section[1:], strict=False):
            body = line[1:]  # the body's padding
            indent = len(body) - len(body.lstrip())
            assert indent >= 2, line  # nothing starts again at the left edge
            if before.lstrip().startswith("→") and not line.lstrip().startswith(("✗", "!", "→")):
                # a wrapped next step continues under its first word, after the arrow
                assert indent == before[1:].index("→") + 2, (before, line)


# -- NO_COLOR: criticals by weight ---------------------------------------------------------------


def _styles_of(app, needle: str):
    """The styles the terminal draws ``needle`` with, wherever it is on the screen."""
    found = []
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            if needle in segment.text and segment.style is not None:
                found.append(segment.style)
    return found


async def test_no_color_health_draws_criticals_bold_reversed_warnings_bold(demo_remote, home, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # read when the app is created
    app = _app(profile_for(demo_remote, home))
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        critical = _styles_of(app, "✗ missing")
        warning = _styles_of(app, "! ")
        assert critical and all(s.bold and s.reverse for s in critical), critical
        assert warning and all(s.bold and not s.reverse for s in warning), warning
        banner = _styles_of(app, "CRITICAL")
        assert banner and all(s.bold and s.reverse for s in banner), banner


# -- snapshots at 80x24, colour and NO_COLOR ------------------------------------------------------

#: Report names as long as Alma lets an analysis be called, delivered with the usual timestamp.
LONG_REPORTS = (
    "Circulation Desk Loans And Returns By Patron Group And Owning Library",
    "Interlibrary Loan Requests Awaiting Pickup At Branch Libraries",
)


@pytest.fixture(scope="module")
def long_names_remote(server_loop, tmp_path_factory):
    """A demo server whose folder also holds reports with very long names."""
    from datetime import datetime

    from tests.test_tui_fixtures import FIXED_NOW
    from tui.demo.server import start_demo_server

    root = tmp_path_factory.mktemp("long-names")
    server = server_loop.run(start_demo_server(dir=root / "root", now=datetime.fromisoformat(FIXED_NOW),
                                               keys_dir=root / "keys", writable=True))
    folder = server.root / server.remote_dir
    sample = sorted(folder.glob("*.xlsx"))[-1]
    for report in LONG_REPORTS:
        for stamp in ("20261013_063012", "20261014_063008", "20261015_063041"):
            shutil.copyfile(sample, folder / f"{report}_{stamp}.xlsx")
    yield server
    server_loop.run(server.close())


def _no_color(monkeypatch, no_color: bool) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")  # read when the app is created
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)


COLOURS = [pytest.param(False, id="colour"), pytest.param(True, id="no_color")]


async def _snap_settle(pilot) -> None:
    await _settle(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


@pytest.mark.parametrize("no_color", COLOURS)
def test_snapshot_health_many_problems_80x24(snap_compare, demo_remote, home, monkeypatch, no_color):
    _no_color(monkeypatch, no_color)
    app = _app(profile_for(demo_remote, home))
    assert app.no_color == no_color

    async def run_before(pilot):
        await _snap_settle(pilot)
        await pilot.press(*["down"] * 6)  # the problems: the critical one, then the group
        await until_fitted(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("no_color", COLOURS)
def test_snapshot_remote_long_names_80x24(snap_compare, long_names_remote, home, monkeypatch, no_color):
    _no_color(monkeypatch, no_color)
    app = _app(profile_for(long_names_remote, home))

    async def run_before(pilot):
        await _snap_settle(pilot)
        await pilot.press("2")  # newest first: the long names' deliveries on top
        await until_fitted(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_remote_long_names_cut_no_word(long_names_remote, home):
    app = _app(profile_for(long_names_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("2")
        await until_fitted(pilot)
        shown = "\n".join(screen_lines(app))
        assert "Circulation Desk Loans…" in shown or "Circulation Desk…" in shown
        assert await cut_words(pilot) == set()


async def test_health_at_80_columns_cuts_no_word(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        for _ in range(2):  # the top, then the problems
            assert await cut_words(pilot) == set()
            await pilot.press("pagedown")
            await until_fitted(pilot)


async def test_verify_and_queue_at_80_columns_cut_no_word(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("2", "a")
        await download(pilot)
        await _settle(pilot)
        await pilot.press("3")
        await until_fitted(pilot)
        assert await cut_words(pilot) == set()
        await show(pilot, "4")
        await wait_for(pilot, lambda: len(app.screen.outcomes) > 0)
        await until_fitted(pilot)
        lines = screen_lines(app)
        assert any("no data rows" in line for line in lines)  # the empty report's reason
        assert not any(re.search(r"\bdata row\s*$", line.rstrip(" ▁▂▃▄▅▆▇█")) for line in lines)
        assert await cut_words(pilot) == set()


def test_sizes_in_progress_are_written_as_everywhere_else():
    from tui.widgets.formatting import human_size, size_of

    assert human_size(9_700) == "9.7 kB"
    assert size_of(0, 9_700) == "0 B/9.7 kB"
    assert size_of(4_100, 9_700) == "4.1/9.7 kB"
    assert size_of(512_000, 1_200_000) == "512 kB/1.2 MB"


async def test_queue_detail_line_wraps_under_its_first_word(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("2", "a")
        await download(pilot, "3")
        await _settle(pilot)
        job = app.board.jobs[app.screen._cursor_name()]
        job.state = JobState.FAILED  # as a failed transfer leaves it, with a long reason
        job.reason = ("the server closed the connection while the file was being read; the part "
                      "file is kept and a later download resumes it")
        job.version += 1
        app._post_queue_changed()
        await until_fitted(pilot)
        lines = screen_lines(app)
        start = next(i for i, line in enumerate(lines) if "the server closed" in line)
        first, second = lines[start], lines[start + 1]
        assert second.strip() and not second.startswith(" ✓") and not second.startswith(" c ")
        assert len(second) - len(second.lstrip()) == first.index("the server"), (first, second)


# -- toasts ---------------------------------------------------------------------------------------


def _toasts(app):
    from textual.widgets._toast import Toast

    return list(app.screen.query(Toast))


async def test_toasts_are_few_replace_their_subject_and_hide_no_row(demo_remote, home):
    app = _app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        app.notify("Downloads finished: 8 done, 0 failed.")
        app.notify("Downloads finished: 16 done, 0 failed.")  # the next batch: same subject
        await until_fitted(pilot)
        shown = _toasts(app)
        assert [str(t._notification.message) for t in shown] == ["Downloads finished: 16 done, 0 failed."]
        for i in range(4):
            app.notify(f"toast number {i}")
        await until_fitted(pilot)
        shown = _toasts(app)
        assert len(shown) == 2  # not four deep
        assert [t._notification.message for t in shown] == ["toast number 2", "toast number 3"]
        # at the top right, over the title bar and the navigation line, not over the screen's rows
        assert all(t.region.bottom <= 4 and t.region.x >= 30 for t in shown), [t.region for t in shown]
        await pilot.press("question_mark")  # the help window stays readable below them
        await until_fitted(pilot)
        assert all(t.region.bottom <= 4 for t in _toasts(app))


async def test_one_file_queued_says_one_file(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await _settle(pilot)
        app.clear_notifications()
        await pilot.press("2", "space", "d")
        await until_fitted(pilot)
        messages = [n.message for n in app._notifications]
        assert "1 file queued: 3 shows the queue." in messages, messages
        assert not any("1 files" in m for m in messages)


# -- details windows: wrapped values under their first word ------------------------------------


async def test_file_details_wrap_values_under_their_column(long_names_remote, home):
    app = _app(profile_for(long_names_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("2", "down", "enter")  # a long-named file
        await until_fitted(pilot)
        assert app.screen.__class__.__name__ == "FileDetailsModal"
        lines = screen_lines(app)
        start = next(i for i, line in enumerate(lines) if "Name" in line and "Circulation" in line)
        column = lines[start].index("Circulation")
        following = lines[start + 1]
        assert following[column:].strip() and not following[:column].strip("│┃█▌▐ "), following


async def test_heatmap_day_panel_wraps_under_its_first_word(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("5")
        await until_fitted(pilot)
        lines = screen_lines(app)
        top = next(i for i, line in enumerate(lines) if line.startswith("─") or line.startswith(" ─")
                   or set(line.strip()) == {"─"})
        panel = [line for line in lines[top + 1:-1] if line.strip()]
        assert len(panel) >= 3
        labels = ("File ", "Why ", "Next ")
        for line in panel[1:]:
            body = line[1:]
            if not body.startswith(labels):
                assert body.startswith("  "), line  # a continuation, indented


async def test_heatmap_lands_on_a_run_day_and_cuts_no_month(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("5", "right_square_bracket")  # the weekly report: Mondays only
        await until_fitted(pilot)
        widget = app.screen.query_one("HeatmapWidget")
        assert app.screen.report.name.startswith("Weekly")
        cell = widget.selected_cell
        assert cell is not None and cell.kind not in ("none", "not-expected"), cell
        assert widget.selected.weekday() == 0
        assert await cut_words(pilot) == set()


def test_month_label_at_the_right_edge_is_whole_or_left_out():
    from datetime import date

    from tui.core import heatmap as hm
    from tui.widgets.heatmap import HeatmapWidget

    # A history whose last visible week holds 1 Dec: "Dec" gets two cells at the right edge.
    for today in (date(2026, 12, 1), date(2026, 12, 3), date(2026, 12, 6)):
        runs = []
        grid = hm.build_grid(runs, today=today, since=date(2026, 8, 3))
        assert grid.columns > 10
        widget = HeatmapWidget(grid)
        for count in range(1, grid.columns + 1):
            line = widget._month_line(grid.columns - count, count).plain
            for word in line.split():
                assert word in {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                "Nov", "Dec"} or word.isdigit(), (today, count, line)


def test_short_report_names_tell_reports_apart_in_whole_words():
    from tui.widgets.formatting import short_report_names

    names = ["Loans Per Patron From 3 Days Ago", "Loans Per Patron From 7 Days Ago", "Weekly Loans By User Group"]
    short = short_report_names(names, 18)
    assert short["Weekly Loans By User Group"] == "Weekly Loans By…"
    assert short["Loans Per Patron From 3 Days Ago"] == "Loans…3 Days Ago"
    assert short["Loans Per Patron From 7 Days Ago"] == "Loans…7 Days Ago"
    assert len(set(short.values())) == 3
    assert short_report_names(["Loans Per Patron From 3 Days Ago"], 18) == {
        "Loans Per Patron From 3 Days Ago": "Loans Per Patron…"}


def test_health_status_line_leaves_out_whole_parts():
    from tui.core.model import ConnTestResult, StepOutcome, WriteTest
    from tui.screens.health import status_line
    from tui.state import ConnectionInfo, ConnectionState, DataSnapshot

    test = ConnTestResult(ok=True, message="read-only", write_test=WriteTest.READ_ONLY,
                          upload=StepOutcome.DENIED, download=StepOutcome.SKIPPED, delete=StepOutcome.SKIPPED)
    info = ConnectionInfo(state=ConnectionState.CONNECTED, test=test)
    snapshot = DataSnapshot(local_files=1, local_size=9_700)
    wide = status_line(info, snapshot, 200).plain
    assert wide == ("● connected · test: upload denied, download skipped, delete skipped · "
                    "local: 1 file, 9.7 kB")
    narrow = status_line(info, snapshot, 78).plain
    assert narrow == "● connected · test: upload denied, download skipped, delete skipped"
    assert status_line(info, snapshot, 40).plain == "● connected"


async def test_queue_summary_at_80_columns_never_ends_in_a_bare_label(demo_remote, home):
    app = _app(profile_for(demo_remote, home))
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(pilot)
        await pilot.press("2", "a")
        await download(pilot, "3")
        await _settle(pilot)
        # As a busy queue looks: some running fast, some queued, some failed, paused.
        states = (JobState.RUNNING, JobState.QUEUED, JobState.FAILED, JobState.DONE)
        for i, job in enumerate(app.board.jobs.values()):
            job.state = states[i % 4]
            job.bytes_done, job.rate = job.size // 3, 21_000_000.0
            job.reason = "the server closed the connection" if job.state == JobState.FAILED else ""
            job.version += 1
        app.board.set_paused(True)
        app._post_queue_changed()
        await until_fitted(pilot)
        summary = screen_lines(app)[2].strip()
        assert summary.startswith("‖ PAUSED"), summary  # first, never left out
        # nothing runs while paused: the started files are counted as the rows say them
        held = app.board.counts()[JobState.RUNNING]
        assert held and f"{held} paused" in summary and "failed" in summary, summary
        assert "running" not in summary, summary
        assert not re.search(r"(ETA|·)$", summary), summary  # every label keeps its value
        assert await cut_words(pilot) == set()


async def test_toasts_show_a_servers_words_as_they_are(demo_remote, home):
    """Toasts repeat what a server said (its error replies) and file names: text in square
    brackets is shown as typed, never read as markup, and a stray closing tag cannot stop
    the app."""
    app = _app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        app.notify("Listing failed: [bold red]gone[/] and [/link]", severity="error")
        app.screen.notify("Download stopped: [reverse]x[/reverse]")
        await until_fitted(pilot)
        shown = [str(t.render()) for t in _toasts(app)]
        assert any("[bold red]gone[/] and [/link]" in s for s in shown), shown
        assert any("[reverse]x[/reverse]" in s for s in shown), shown
        assert app.is_running
