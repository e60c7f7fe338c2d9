"""The export modal through Pilot: ``e`` on the Verify screen, the form, the progress, the
toast, the file and the ledger's record; bad input in the form; and an 80x24 snapshot."""

from __future__ import annotations

import os
import stat

import polars as pl
import pytest
from textual.binding import Binding
from textual.widgets import Checkbox, Input, Select

from tests import export_data as ed
from tests.stand_in import StandInApp
from tests.test_tui_fixtures import holds_settled
from tui.messages import ExportProgress
from tui.screens.export import ExportModal
from tui.screens.verify import VerifyScreen

HOME = "/home/librarian"  # never created: the default file goes there (no Documents folder)


class ExportApp(StandInApp):
    """The Verify screen (where ``e`` opens the export form) on the export scenario."""

    def __init__(self, env) -> None:
        super().__init__(env.profile(), env.ledger(), VerifyScreen)
        self.env = env

    async def on_unmount(self) -> None:
        self.ledger.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return ed.build(tmp_path_factory.mktemp("tui-export"))


@pytest.fixture
def env(built, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    monkeypatch.setenv("HOME", HOME)
    return built


async def settle(pilot) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        for screen in pilot.app.screen_stack:
            for worker in list(screen.workers):
                await worker.wait()
        await pilot.pause()


async def until(pilot, condition, timeout: float = 30.0) -> None:
    """Let the app run until ``condition()`` holds (workers finish in their own time)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await holds_settled(pilot, condition, 0.05)
    await settle(pilot)


def message_of(modal) -> str:
    return str(modal.query_one("#export-message").render())


async def open_modal(pilot) -> ExportModal:
    await settle(pilot)
    for n in list(pilot.app._notifications):
        pilot.app._unnotify(n)
    await pilot.press("e")
    await settle(pilot)
    modal = pilot.app.screen
    assert isinstance(modal, ExportModal)
    return modal


async def test_e_opens_the_form_and_the_export_runs_in_a_worker(env, tmp_path):
    app = ExportApp(env)
    progress: list[tuple[int, int]] = []

    def hook(message) -> None:
        if isinstance(message, ExportProgress):
            progress.append((message.done, message.total))

    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        modal = await open_modal(pilot)
        # The reports come from the config and the ledger; the default file from the profile.
        select = modal.query_one("#export-report", Select)
        assert [str(o[0]) for o in select._options][:2] == ["All reports", ed.REPORT]
        assert modal.query_one("#export-out", Input).value == f"{HOME}/report-keeper-default-2026-03-15.parquet"
        assert modal.query_one("#export-pseudonymize", Checkbox).value is True  # safe by default

        # Type the range, choose the report and csv with the keyboard, name the file.
        await pilot.click("#export-since")
        await pilot.press(*"2026-02-26")
        await pilot.click("#export-until")
        await pilot.press(*"2026-03-04")
        modal.query_one("#export-report", Select).focus()
        await pilot.press("enter", "down", "enter")
        modal.query_one("#export-format", Select).focus()
        await pilot.press("enter", "down", "enter")
        await pilot.pause()
        out_box = modal.query_one("#export-out", Input)
        assert out_box.value.endswith("-2026-03-15.csv")  # the format changed the extension
        target = tmp_path / "loans.csv"
        out_box.value = str(target)
        await pilot.click("#export-run")
        await until(pilot, lambda: not isinstance(app.screen, ExportModal))  # closed when done

        toasts = [n for n in app._notifications if n.title == "Export written"]
        assert len(toasts) == 1
        text = toasts[0].message
        assert str(target) in text and "Covered days 2026-02-26 .. 2026-03-04: 7 included" in text
        assert toasts[0].severity == "information"
    assert progress and progress[-1][0] == progress[-1][1]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    df = pl.read_csv(target, infer_schema=False)
    assert df["report"].unique().to_list() == [ed.REPORT]
    assert df["Primary Identifier"].str.len_chars().unique().to_list() == [16]  # pseudonymized
    assert ed.ALWAYS_ID not in target.read_text()
    ledger = env.ledger()
    try:
        record = ledger.exports()[-1]
    finally:
        ledger.close()
    assert record["out"] == str(target) and record["pseudonymized"] is True
    assert record["since"] == "2026-02-26" and record["until"] == "2026-03-04"
    assert record["reports"] == [ed.REPORT]


async def test_bad_input_is_one_line_in_the_form_and_nothing_is_written(env, tmp_path):
    app = ExportApp(env)
    async with app.run_test(size=(80, 24)) as pilot:
        # Opened the way the command palette's entry does it (the app's entry, on any screen;
        # tests/test_tui_truth.py runs it on the real app).
        from tui.app import ReportKeeperApp

        assert "export" in [a for _, a, _h in ReportKeeperApp.PALETTE_COMMANDS]
        assert "e" in [b.key for b in VerifyScreen.BINDINGS if isinstance(b, Binding) and b.action == "export"]
        await settle(pilot)
        await app.run_action("export", app.screen)
        await until(pilot, lambda: isinstance(app.screen, ExportModal))
        modal = app.screen
        modal.query_one("#export-out", Input).value = str(tmp_path / "x.parquet")
        modal.query_one("#export-since", Input).value = "2026-02-30"
        modal.query_one("#export-run").focus()
        await pilot.press("enter")
        await until(pilot, lambda: "is not a day" in message_of(modal))
        assert "YYYY-MM-DD" in message_of(modal)
        assert isinstance(app.screen, ExportModal)
        modal.query_one("#export-since", Input).value = ""
        (tmp_path / "x.parquet").write_text("keep")
        button = modal.query_one("#export-run")
        await until(pilot, lambda: not button.has_class("-active"))  # a button ignores a press while it looks pressed
        await pilot.press("enter")
        await until(pilot, lambda: "already exists" in message_of(modal))
        assert not modal.query_one("#export-run").disabled  # the form can be used again
        assert (tmp_path / "x.parquet").read_text() == "keep"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ExportModal)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet"]


async def test_enter_in_a_field_runs_the_export(env, tmp_path):
    """Typed into a field, Enter runs the export, as in any form: the keyboard need not go
    back to the Export button."""
    app = ExportApp(env)
    async with app.run_test(size=(80, 24)) as pilot:
        modal = await open_modal(pilot)
        target = tmp_path / "by-enter.parquet"
        box = modal.query_one("#export-out", Input)
        box.focus()
        box.value = str(target)
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, ExportModal))
        assert any(n.title == "Export written" for n in app._notifications)
    assert target.is_file()


def test_snapshot_export_modal_80x24(snap_compare, built, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    monkeypatch.setenv("HOME", HOME)
    assert snap_compare(ExportApp(built), terminal_size=(80, 24), run_before=open_modal)


async def test_the_format_shown_follows_the_file_typed(env, tmp_path):
    """The file's extension decides the format (as on the command line). Choosing a format
    changed the extension, but typing a file ending in .csv left 'Parquet' shown above it,
    so the form said one format and wrote the other."""
    app = ExportApp(env)
    async with app.run_test(size=(80, 24)) as pilot:
        modal = await open_modal(pilot)
        out_box = modal.query_one("#export-out", Input)
        fmt = modal.query_one("#export-format", Select)
        assert fmt.value == ".parquet"
        out_box.focus()
        # Short names, typed key by key (a long path typed so took 12 s of the suite): only
        # the extension decides the format.
        await pilot.press("ctrl+u", *"loans.csv")
        await pilot.pause()
        assert fmt.value == ".csv"
        assert out_box.value == "loans.csv"  # what was typed stays as typed
        await pilot.press("backspace", "backspace", "backspace", *"parquet")
        await pilot.pause()
        assert fmt.value == ".parquet"
        await pilot.press("ctrl+u", *"loans.xlsx")  # no format: the choice stays
        await pilot.pause()
        assert fmt.value == ".parquet" and out_box.value.endswith("loans.xlsx")
