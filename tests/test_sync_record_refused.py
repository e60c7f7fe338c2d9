"""A download's record is two statements without a savepoint of its own (docs/ARCHITECTURE.md):
the partial record is cleared first, then the download inserted. When the insert alone is
refused (SQLite undoes that statement only, the run's transaction goes on and commits), the
placed file is known as neither partial nor downloaded. The refusal here is SQLite's own (a
trigger that aborts the insert, as a constraint would), against the embedded SFTP server."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tui.core.ledger import Ledger
from tui.demo.server import start_demo_server
from tui.sftp import unrecorded
from tui.sftp.sync import SyncService

NOW = "2026-06-10T14:00:00+00:00"


@pytest.fixture
async def demo(tmp_path, monkeypatch, demo_generated_once):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    server = await start_demo_server(
        tmp_path / "server", local_dir=tmp_path / "local", ledger=tmp_path / "ledger.sqlite3"
    )
    yield server
    await server.close()


def _refuse_downloads(path: Path, on: bool) -> None:
    with sqlite3.connect(path) as conn:
        if on:
            conn.execute("CREATE TRIGGER refuse_downloads BEFORE INSERT ON downloads"
                         " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        else:
            conn.execute("DROP TRIGGER refuse_downloads")
    conn.close()


@pytest.mark.parametrize("noted", [True, False], ids=["noted", "note-lost"])
async def test_a_download_whose_insert_alone_is_refused_is_recorded_by_the_next_sync_not_fetched_again(
        demo, tmp_path, noted):
    """``note-lost``: the run's note of its unrecorded files is gone too (killed before it
    was written): the files in place are found the same as the server's, and recorded."""
    ledger_path = tmp_path / "ledger.sqlite3"
    server_dir = demo.root / demo.remote_dir
    local = Path(demo.profile.local_dir)
    names = sorted(f.name for f in demo.scenario.files)
    with Ledger.open(ledger_path, profile="demo"):
        pass  # made, with its tables
    _refuse_downloads(ledger_path, on=True)
    with Ledger.open(ledger_path, profile="demo") as ledger:
        async with SyncService(demo.profile, ledger) as service:
            first = await service.sync()
        assert first.downloaded == []
        assert sorted(f["name"] for f in first.failed) == names
        assert all("not recorded" in f["error"] for f in first.failed)
        assert ledger.downloads() == []
    placed = {p.name: p.stat().st_ino for p in local.iterdir() if p.is_file()}
    assert sorted(placed) == names  # complete, in place

    note = unrecorded.note_path(local)
    assert note.exists()
    if not noted:
        note.unlink()
    _refuse_downloads(ledger_path, on=False)
    with Ledger.open(ledger_path, profile="demo") as ledger:
        async with SyncService(demo.profile, ledger) as service:
            second = await service.sync()
        assert second.failed == [] and second.downloaded == []
        assert sorted(second.skipped) == names
        held = {d.name: d for d in ledger.downloads()}
        assert sorted(held) == names
        for name in names:
            assert held[name].sha256 == hashlib.sha256((server_dir / name).read_bytes()).hexdigest()
        assert {d.name: d.local_state for d in ledger.deliveries()} == dict.fromkeys(names, "downloaded")
    # The same files, not fetched again beside themselves.
    assert {p.name: p.stat().st_ino for p in local.iterdir() if p.is_file()} == placed
