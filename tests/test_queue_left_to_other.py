"""A file another Report Keeper process is fetching (the app and a scheduled sync at once) is
left to it: ``sync`` lists it under ``skipped``, and the app's Queue shows it as skipped too,
with the reason in plain words, never as a failed download in red (it is no error, and f does
not retry it)."""

from __future__ import annotations

from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    _pinned_clock,
    demo_app,
    demo_remote,
    home,
    profile_for,
    server_loop,
    wait_for,
)
from tui.core.model import DONE, FAILED, SKIPPED
from tui.sftp.errors import FileBusy, RemoteFileGone
from tui.sftp.queue import Done, Failed, Queued
from tui.sftp.sync import SyncResult
from tui.state import TransferBoard, batch_text

BUSY = FileBusy("Another Report Keeper process is downloading 'a.xlsx' right now "
                "(the app and a scheduled sync at the same time).",
                "It is left to that process; nothing is lost. Refresh later to see it arrive.")


def board_with_one_left_to_the_other() -> TransferBoard:
    board = TransferBoard()
    for job_id, name in enumerate(("a.xlsx", "b.xlsx", "c.xlsx"), 1):
        board.apply(Queued(job_id, name, 100))
    board.apply(Failed(1, "a.xlsx", reason=str(BUSY), error=BUSY))
    board.apply(Done(2, "b.xlsx", size=100, sha256="ab", path="/x/b.xlsx"))
    gone = RemoteFileGone("'c.xlsx' is no longer on the server.", "Refresh the listing.")
    board.apply(Failed(3, "c.xlsx", reason=str(gone), error=gone))
    return board


def test_a_file_left_to_another_process_is_skipped_on_the_board_not_failed():
    board = board_with_one_left_to_the_other()
    job = board.jobs["a.xlsx"]
    assert job.state == SKIPPED and not job.state.active
    assert job.reason.startswith("Another Report Keeper process is downloading 'a.xlsx'")
    assert board.names_in(FAILED) == ["c.xlsx"]  # f retries the real failure only
    assert board.counts()[SKIPPED] == 1 and not board.active
    board.fail("a.xlsx", "failed at the end of the batch")  # an ended job stays as it ended
    assert job.state == SKIPPED
    result = SyncResult(skipped=["a.xlsx"], failed=[{"name": "c.xlsx", "error": "gone"}])
    text, severity = batch_text(board, ["a.xlsx", "b.xlsx"], result)
    assert text == "Downloads finished: 1 downloaded, 1 left to another process.", text
    assert severity == "information"


async def test_the_queue_screen_shows_a_file_left_to_another_process_as_skipped(demo_remote, home):
    app = demo_app(profile_for(demo_remote, home), auto_connect=False)
    async with app.run_test(size=(120, 30)) as pilot:
        app.board = board_with_one_left_to_the_other()
        await pilot.press("3")
        app._post_queue_changed()
        await pilot.pause()
        table = app.screen.query_one("DataTable")
        state = table.get_cell("a.xlsx", "state")
        assert state.plain == "↷ skipped" and "red" not in str(state.style), (state.plain, state.style)
        assert table.get_cell("c.xlsx", "state").plain == "✗ failed"
        table.move_cursor(row=table.get_row_index("a.xlsx"), animate=False)
        await pilot.pause()
        detail = app.screen.query_one("#queue-detail")
        said = " ".join(detail.text_at(400).plain.split())
        assert "skipped" in said and "It is left to that process; nothing is lost." in said, said
        assert "failed" not in said, said
        summary = str(app.screen.query_one("#queue-summary").render())  # its text, as shown
        assert "1 skipped" in summary and "1 failed" in summary, summary
        assert app.board.jobs["b.xlsx"].state == DONE
