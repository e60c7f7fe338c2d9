"""What people and programs leave in the local folder, met by a real sync (both real servers):
a link, a named pipe or a folder where a copy is about to be placed. Nothing the user put
there (or elsewhere) is changed, and the downloaded copy is kept whole."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.test_hostile_folder import good_reports, pinned, profile_for, sha, sync  # noqa: F401 - fixture
from tui.core.ledger import Ledger


async def test_a_link_to_the_users_file_in_place_of_a_copy_is_never_changed(sftp_server, tmp_path):
    """The librarian moved a report to the shared archive (readable by colleagues, 0644) and
    left a link in its place; a sync that does not know the copy yet (a new ledger, an
    interrupted run) finds the link where the copy goes. The archive's file keeps its
    permissions, the link stays, and the sync keeps a copy of its own."""
    good = good_reports(sftp_server, tmp_path, days=2)
    first = sorted(good)[0]
    profile = profile_for(sftp_server, tmp_path)
    local = Path(profile.local_dir)
    local.mkdir(parents=True, mode=0o700)
    archive = tmp_path / "archive"
    archive.mkdir()
    shared = archive / first
    shared.write_bytes(good[first])
    os.chmod(shared, 0o644)
    (local / first).symlink_to(shared)
    result = await sync(profile)
    doc = result.to_json()
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o644, "the sync changed the archive's file permissions"
    assert (local / first).is_symlink() and shared.read_bytes() == good[first]
    # The copy the sync holds is a file of its own, not the link.
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        held = {d.name: d.local_path for d in led.deliveries()}
    assert not Path(held[first]).is_symlink() and sha(Path(held[first])) == sha(good[first])
    assert doc["failed"] == []


async def test_a_named_pipe_in_place_of_an_empty_copy_does_not_hang_the_sync(sftp_server, tmp_path):
    """A server file of 0 bytes, and a named pipe under its name here: the sync never opens the
    pipe to compare it (it would wait for a writer for ever)."""
    import asyncio

    good = good_reports(sftp_server, tmp_path, days=1)
    from tests.test_hostile_folder import put

    empty = "Empty Report_20260609_070012.xlsx"
    put(sftp_server, empty, b"")
    profile = profile_for(sftp_server, tmp_path)
    local = Path(profile.local_dir)
    local.mkdir(parents=True, mode=0o700)
    os.mkfifo(local / empty)
    result = await asyncio.wait_for(sync(profile), timeout=60)
    assert stat.S_ISFIFO(os.lstat(local / empty).st_mode)
    assert all(sha(local / n) == sha(d) for n, d in good.items())
    assert result.to_json() is not None


async def test_a_server_file_named_like_a_changed_copy_is_a_file_of_its_own(sftp_server, tmp_path):
    """The server's copy of a report changes (kept here beside the first as
    ``NAME (changed ...).xlsx``); later the server offers a new file under exactly that name.
    Both copies of the first report stay as they are, the new file arrives whole, under a name
    of its own, as a new file: nothing says the server changed it."""
    from datetime import UTC, datetime

    from tests.test_hostile_folder import put
    from tests.xlsx_factory import write_report
    from tui.sftp.download import changed_name

    good = good_reports(sftp_server, tmp_path, days=1)
    [first] = sorted(good)
    profile = profile_for(sftp_server, tmp_path)
    local = Path(profile.local_dir)
    await sync(profile)
    changed = write_report(tmp_path / "src" / "changed.xlsx", n_rows=7, seed=41).read_bytes()
    when = datetime(2026, 6, 9, 12, 0, 12, tzinfo=UTC)
    put(sftp_server, first, changed, mtime=when.timestamp())
    doc = (await sync(profile)).to_json()
    [copy] = doc["downloaded"]
    assert copy["changed"] and Path(copy["path"]).name != first
    changed_copy = Path(copy["path"])
    # The server now offers a new file named exactly like that changed copy.
    newcomer = changed_copy.name
    new_bytes = write_report(tmp_path / "src" / "new.xlsx", n_rows=3, seed=42).read_bytes()
    put(sftp_server, newcomer, new_bytes, mtime=when.timestamp() + 3600)
    doc = (await sync(profile)).to_json()
    [new] = doc["downloaded"]
    assert new["name"] == newcomer and sha(Path(new["path"])) == sha(new_bytes)
    assert sha(local / first) == sha(good[first]) and sha(changed_copy) == sha(changed)
    assert not new.get("changed"), f"a new server file was reported as changed: {new}"
    assert Path(new["path"]).name == newcomer[:-len(".xlsx")] + " (2).xlsx"
    assert changed_name(first, __import__("tui.core.model", fromlist=["RemoteFile"]).RemoteFile(
        first, 1, when)) == newcomer


def test_excels_lock_file_is_not_a_report_of_the_verify_list(tmp_path):
    """A librarian has a copy open in Excel: Excel keeps a hidden owner file ``~$NAME.xlsx``
    beside it (165 bytes, no workbook). The app's Verify list never shows it as an unreadable
    report (the ``verify`` command already skips it)."""
    from tests.xlsx_factory import write_report
    from tui.core.local_reports import find_local_reports

    real = write_report(tmp_path / "Loans_20260608_070012.xlsx", n_rows=3, seed=1)
    lock = tmp_path / "~$ans_20260608_070012.xlsx"
    lock.write_bytes(b"\x0blibrarian" + b"\0" * 155)
    assert [item.path for item in find_local_reports(tmp_path)] == [real]
