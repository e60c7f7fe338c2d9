"""The retention purge against what people and programs do in the local folder: folders
swapped for links (before the purge and while it checks a file), a file replaced while it is
checked, Excel's lock files, copies renamed or moved by hand. The purge deletes only the exact
downloaded copy, in the folder it looked at, never through a link: whatever the user put
anywhere stays.

Real workbooks and a real ledger (``tests/retention_data.py``); ``purge`` through the real
command where the output matters."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests import retention_data as rd
from tui.cli import main
from tui.core import retention

DELETE_ALL = "local_retention_days = 30\nkeep_until_exported = false"


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)


def _purge(env, capsys) -> tuple[int, dict]:
    code = main(["purge", "--json", "--config", str(env.config)])
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, json.loads(out.out)


def _into_sub_folder(env, i: int, sub: str = "a") -> Path:
    """Move run ``i``'s copy into ``local_dir/<sub>`` and record it there (as a profile with
    several server folders keeps its copies)."""
    folder = env.local / sub
    folder.mkdir(exist_ok=True, mode=0o700)
    moved = folder / rd.name(i)
    env.path(i).rename(moved)
    with env.ledger() as ledger:
        size = moved.stat().st_size
        ledger.record_download(rd.name(i), size=size, sha256=env.shas[rd.name(i)], local_path=str(moved),
                               when=rd.NOW - rd.timedelta(days=35))
    return moved


def test_a_sub_folder_replaced_by_a_link_is_never_deleted_through(tmp_path, pinned, capsys):
    """The librarian moved a sub-folder of local_dir to the archive and left a link in its
    place: the archive holds the same bytes, but it is the library's archive, not our copy."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    _into_sub_folder(env, 0)
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(str(env.local / "a"), str(archive / "a"))
    (env.local / "a").symlink_to(archive / "a")
    code, doc = _purge(env, capsys)
    assert (archive / "a" / rd.name(0)).exists(), "the purge deleted a file through a link"
    assert code == 1 and [e["name"] for e in doc["errors"]] == [rd.name(0)]
    assert "link" in doc["errors"][0]["error"]
    assert doc["errors"][0]["path"] == str(env.local / "a" / rd.name(0))
    # (Run 0's first path, moved by hand, is recorded purged: there is nothing left there.)
    assert {p["name"] for p in doc["purged"]} == {rd.name(i) for i in rd.OLD}
    assert str(env.local / "a" / rd.name(0)) not in {p["path"] for p in doc["purged"]}
    with env.ledger() as ledger:  # held again, not purged: the next purge tries again
        assert ledger.local_state(rd.name(0)) != "purged"


def test_local_dir_swapped_for_a_link_while_a_file_is_checked(tmp_path, pinned, monkeypatch):
    """Between the check of a copy and its deletion the local folder is moved away and a link
    put in its place, to a folder holding the same bytes (the library's backup): the purge
    deletes in the folder it checked, never in the backup."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    backup = tmp_path / "backup"
    shutil.copytree(env.local, backup)
    moved = tmp_path / "moved"
    real = retention._sha256
    swapped = []

    def hashing(*args):
        digest = real(*args)
        if not swapped:
            env.local.rename(moved)
            env.local.symlink_to(backup)
            swapped.append(True)
        return digest

    monkeypatch.setattr(retention, "_sha256", hashing)
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
    assert swapped
    assert {p.name for p in backup.iterdir()} == {rd.name(i) for i in range(rd.DAYS)}, \
        "the purge deleted the backup's files through the link"
    assert {p.name for p in moved.iterdir()} == {rd.name(i) for i in range(10, rd.DAYS)}
    assert [c.name for c in result.purged] == [rd.name(i) for i in rd.OLD] and not result.errors


def test_a_file_replaced_while_it_is_checked_is_left_alone(tmp_path, pinned, monkeypatch):
    """Excel saving over a copy (it writes a new file and renames it into place) just after the
    purge hashed the old one: the new workbook, same name and size, is the user's: kept."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    target = env.path(0)
    data = target.read_bytes()
    theirs = data[:-1] + (b"y" if data[-1:] != b"y" else b"z")
    real = retention._sha256
    done = []

    def hashing(*args):
        digest = real(*args)
        if not done:
            staged = env.local / "~$staged.tmp"
            staged.write_bytes(theirs)
            os.replace(staged, target)
            done.append(True)
        return digest

    monkeypatch.setattr(retention, "_sha256", hashing)
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
        assert target.exists() and target.read_bytes() == theirs, "the user's new workbook was deleted"
        assert [c.name for c, _why in result.errors] == [rd.name(0)]
        assert "replaced while it was being checked" in result.errors[0][1]
        assert ledger.local_state(rd.name(0)) != "purged"
    assert [c.name for c in result.purged] == [rd.name(i) for i in range(1, 10)]


def test_what_people_leave_in_the_folder_is_never_touched(tmp_path, pinned, capsys):
    """Excel's lock file of an open copy, a copy saved under another name, a copy moved into a
    sub-folder of the user's, a different workbook under a purged copy's name, a FIFO and a
    folder in place of copies: the purge deletes only the downloaded copies still in place."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    lock = env.local / f"~${rd.name(0)}"
    lock.write_bytes(b"\x0blibrarian" + b"\0" * 150)
    os.chmod(lock, 0o600)
    renamed = env.local / "Loans for the study.xlsx"
    shutil.copyfile(env.path(1), renamed)  # same bytes, another name
    mine = env.local / "mine"
    mine.mkdir()
    shutil.copyfile(env.path(2), mine / rd.name(2))  # same bytes, same name, a folder of the user's
    env.path(3).unlink()
    os.mkfifo(env.path(3))
    env.path(4).unlink()
    env.path(4).mkdir()
    (env.path(4) / "inside.txt").write_text("keep")
    code, doc = _purge(env, capsys)
    assert code == 1
    assert {e["name"] for e in doc["errors"]} == {rd.name(3), rd.name(4)}
    assert all("no longer a regular file" in e["error"] for e in doc["errors"])
    assert lock.exists() and renamed.exists() and (mine / rd.name(2)).exists()
    assert env.path(3).exists() and (env.path(4) / "inside.txt").read_text() == "keep"
    assert not env.path(0).exists() and not env.path(1).exists() and not env.path(2).exists()


def test_a_copy_renamed_by_hand_is_not_reported_as_deleted(tmp_path, pinned, capsys):
    """The librarian saved a copy under another name (a move: its place is empty). The purge has
    nothing to delete there: it records the copy purged (never fetched again) but must not say
    it deleted it, because the patron data is still in the folder under the other name."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    renamed = env.local / "Loans for the study.xlsx"
    env.path(0).rename(renamed)
    code, doc = _purge(env, capsys)
    assert renamed.exists() and code == 0
    entry = {p["name"]: p for p in doc["purged"]}[rd.name(0)]
    assert entry["already_gone"] is True, entry
    assert all(not p["already_gone"] for p in doc["purged"] if p["name"] != rd.name(0))
    with env.ledger() as ledger:
        assert ledger.local_state(rd.name(0)) == "purged"
    # The human output counts and names it apart.
    env2 = rd.build(tmp_path / "h2", profile_extra=DELETE_ALL)
    env2.path(0).rename(env2.local / "Loans for the study.xlsx")
    assert main(["purge", "--config", str(env2.config)]) == 0
    out = capsys.readouterr().out
    assert "Purged: 9 local copies past local_retention_days deleted" in out, out
    assert f"  NOT FOUND    {rd.name(0)}" in out, out
    assert not [line for line in out.splitlines() if line.startswith("  PURGED") and rd.name(0) in line]


# ----------------------------------------------------------------------------- the clock


@pytest.mark.parametrize("clock", ["2099-01-01T08:00:00-06:00", "later"])
def test_a_clock_far_ahead_deletes_nothing_and_says_so(tmp_path, monkeypatch, capsys, clock):
    """A REPORT_KEEPER_NOW left in a cron line (2099), or a system clock set months ahead: by
    that clock every copy is old, and with keep_until_exported = false the purge would empty
    the folder of copies the library means to keep, never downloaded again. Past the moment
    even the newest delivery the server ever stamped would be purged, the clock is not taken
    on its word: nothing is deleted, the output says why and what to do. Nothing is recorded."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    now = rd.NOW + rd.timedelta(days=60) if clock == "later" else clock
    monkeypatch.setenv("REPORT_KEEPER_NOW", now if isinstance(now, str) else now.isoformat())
    code, doc = _purge(env, capsys)
    assert env.files() == {rd.name(i) for i in range(rd.DAYS)}, "a clock far ahead emptied the folder"
    assert code == 1 and doc["status"] == "warning" and doc["purged"] == []
    assert "clock" in doc["refused"] and "newest delivery" in doc["refused"]
    with env.ledger() as ledger:
        assert all(dl.purge_started is None and dl.purged_at is None for dl in ledger.downloads())
    # The human output says it in one line; --trust-clock is the person's decision.
    assert main(["purge", "--config", str(env.config)]) == 1
    out = capsys.readouterr().out
    assert "Nothing was deleted" in out and "--trust-clock" in out, out
    assert main(["purge", "--trust-clock", "--json", "--config", str(env.config)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["purged"]) == rd.DAYS and doc["refused"] is None


def test_a_name_stamped_far_ahead_does_not_vouch_for_the_clock(tmp_path, monkeypatch, capsys):
    """The clock is judged by the newest delivery the server stamped; a stray file whose name
    claims 2099 while the server wrote it with today's time would vouch for any clock up to
    2099 and switch the guard off. A name stamped later than the server's own time for the
    file counts at the server's time."""
    from tui.core.ledger import Ledger
    from tui.core.model import RemoteFile
    from tui.core.names import parse_name

    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    stray = f"{rd.REPORT}_20990101_070000.xlsx"

    def report_of(f):
        parsed = parse_name(f.name, mtime=f.mtime, tz=rd.TZ)
        return parsed.base, parsed.delivered_at

    with Ledger.open(env.ledger_path) as ledger:
        listing = [RemoteFile(rd.name(i), (env.local / rd.name(i)).stat().st_size,
                              rd.delivered(i).astimezone(rd.UTC)) for i in range(rd.DAYS)]
        listing.append(RemoteFile(stray, 10, rd.NOW.astimezone(rd.UTC)))
        ledger.record_listing(None, report_of, listing, when=rd.NOW)
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2099-01-01T08:00:00-06:00")
    code, doc = _purge(env, capsys)
    assert env.files() == {rd.name(i) for i in range(rd.DAYS)}, "a stray name switched the guard off"
    assert code == 1 and doc["purged"] == [] and "clock" in (doc["refused"] or "")


def test_a_file_stamped_and_written_far_ahead_does_not_vouch_for_a_clock_set_there(tmp_path, monkeypatch,
                                                                                   capsys):
    """A file whose name and server modification time both say 2099 (a server clock set
    there, or a hostile upload that sets its time), listed while this machine's clock read
    the real time, vouched for a local clock later set ahead to 2099: every copy went. A
    delivery counts no later than when this machine first saw it listed (the ledger's
    ``first_seen``)."""
    from tui.core.ledger import Ledger
    from tui.core.model import RemoteFile
    from tui.core.names import parse_name

    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    ahead = rd.datetime(2099, 1, 1, 7, 0, tzinfo=rd.TZ)
    stray = f"{rd.REPORT}_{ahead:%Y%m%d_%H%M%S}.xlsx"

    def report_of(f):
        parsed = parse_name(f.name, mtime=f.mtime, tz=rd.TZ)
        return parsed.base, parsed.delivered_at

    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    with Ledger.open(env.ledger_path) as ledger:
        listing = [RemoteFile(rd.name(i), (env.local / rd.name(i)).stat().st_size,
                              rd.delivered(i).astimezone(rd.UTC)) for i in range(rd.DAYS)]
        listing.append(RemoteFile(stray, 10, ahead.astimezone(rd.UTC)))
        ledger.record_listing(None, report_of, listing)  # seen now, by this machine's clock
        seen = {d.name: d for d in ledger.deliveries()}[stray]
        assert (seen.delivered_at, seen.mtime, seen.first_seen) == (ahead, ahead, rd.NOW)
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2099-01-01T08:00:00-06:00")
    code, doc = _purge(env, capsys)
    assert env.files() == {rd.name(i) for i in range(rd.DAYS)}, "a file dated ahead switched the guard off"
    assert code == 1 and doc["purged"] == [] and "clock" in (doc["refused"] or "")
    # A clock within the retention of what was really seen purges as always.
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    code, doc = _purge(env, capsys)
    assert code == 0 and doc["refused"] is None and len(doc["purged"]) == len(rd.OLD)


def test_a_clock_within_the_newest_deliverys_retention_purges_as_always(tmp_path, pinned, capsys):
    """The guard never stands in a normal run: deliveries arrive, the clock is a day past them."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    code, doc = _purge(env, capsys)
    assert code == 0 and doc["refused"] is None and len(doc["purged"]) == len(rd.OLD)


def test_sync_says_the_clock_was_not_trusted(tmp_path, monkeypatch):
    """The purge at the end of a cron sync with a stray REPORT_KEEPER_NOW: a warning, in
    purge_errors and one PURGE line of the human output; nothing deleted."""
    import asyncio
    import io

    from tui.commands.sync import _summary
    from tui.sftp.sync import SyncResult, SyncService

    monkeypatch.setenv("REPORT_KEEPER_NOW", "2099-01-01T08:00:00-06:00")
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    with env.ledger() as ledger:
        purged = retention.purge(env.profile(), ledger)
    loop = asyncio.new_event_loop()
    try:
        done = loop.create_future()
        done.set_result(purged)
        result = SyncResult()
        SyncService._purged(result, done)
    finally:
        loop.close()
    result.finish()
    assert result.status == 1 and env.files() == {rd.name(i) for i in range(rd.DAYS)}
    doc = result.to_json()
    assert doc["purged"] == [] and [e["error"] for e in doc["purge_errors"]] == [purged.refused]
    out = io.StringIO()
    _summary(result, env.profile(), out)
    assert out.getvalue().count("Nothing was deleted: the clock reads 2099-01-01") == 1, out.getvalue()


def test_a_local_folder_that_is_not_there_records_nothing(tmp_path, pinned, capsys):
    """local_dir is on a share that is not mounted when cron runs the purge: its copies are not
    gone, their folder is. Nothing may be recorded purged (once remounted, those copies would
    keep their patron data for ever, the ledger saying they were deleted); the purge says the
    folder is missing, and once it is back deletes as always."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    away = tmp_path / "share-not-mounted"
    env.local.rename(away)
    code, doc = _purge(env, capsys)
    assert code == 1 and doc["purged"] == [], doc["purged"][:1]
    assert {e["name"] for e in doc["errors"]} == {rd.name(i) for i in rd.OLD}
    assert all("folder" in e["error"] and "missing" in e["error"] for e in doc["errors"])
    with env.ledger() as ledger:
        assert all(dl.purge_started is None and dl.purged_at is None for dl in ledger.downloads())
    away.rename(env.local)
    code, doc = _purge(env, capsys)
    assert code == 0 and [p["name"] for p in doc["purged"]] == [rd.name(i) for i in rd.OLD]
    assert not any(p["already_gone"] for p in doc["purged"])
    assert env.files() == {rd.name(i) for i in range(10, rd.DAYS)}


# ----------------------------------------------------------------------------- other names


def _linked(env, tmp_path) -> tuple[Path, int]:
    """A backup tool's snapshot of the folder made of hard links (as rsnapshot or a ``cp -al``
    makes it), holding runs 0 (twice: two other names) and 1 (one)."""
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    os.link(env.path(0), snapshot / rd.name(0))
    os.link(env.path(0), snapshot / "Loans for the study.xlsx")
    os.link(env.path(1), snapshot / rd.name(1))
    return snapshot, env.path(0).stat().st_ino


def test_a_copy_with_another_hard_link_is_not_reported_as_gone(tmp_path, pinned, capsys):
    """A copy whose file has another name (a hard link: a ``cp -l``, a backup tool's snapshot)
    loses only its own name when the purge deletes it: its bytes, patron data, stay on disk
    under the other. The copy leaves the report folder as the policy says, but neither the dry
    run nor the purge says its data is gone: each lists it apart with the count of other names
    and where to look, the ledger records it, and the run is a warning (a person must act)."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    snapshot, inode = _linked(env, tmp_path)
    linked = {rd.name(0): 2, rd.name(1): 1}

    # --dry-run tells the same as the purge will (and changes nothing).
    code = main(["purge", "--dry-run", "--json", "--config", str(env.config)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["status"] == "warning", doc
    entries = {p["name"]: p for p in doc["purged"]}
    assert {n: p["other_links"] for n, p in entries.items() if p["other_links"]} == linked
    assert entries[rd.name(0)]["inode"] == inode and entries[rd.name(2)]["inode"] is None
    assert Path(entries[rd.name(0)]["mount_point"]).is_dir()
    assert env.path(0).exists() and env.path(1).exists()
    assert main(["purge", "--dry-run", "--config", str(env.config)]) == 1
    dry = capsys.readouterr().out
    assert "Still on disk: 2 local copies past local_retention_days would be deleted from the folder" in dry, dry
    assert "Purged: 8 local copies" in dry, dry

    code, doc = _purge(env, capsys)
    assert code == 1 and doc["status"] == "warning", doc
    entries = {p["name"]: p for p in doc["purged"]}
    assert {n: p["other_links"] for n, p in entries.items() if p["other_links"]} == linked
    assert all(not p["already_gone"] for p in entries.values())
    # Gone from the report folder, as the policy says; the other names keep the bytes.
    assert not env.path(0).exists() and not env.path(1).exists()
    assert (snapshot / rd.name(0)).exists() and (snapshot / rd.name(1)).exists()
    with env.ledger() as ledger:
        assert ledger.local_state(rd.name(0)) == "purged"  # never fetched again, never lost
        (dl,) = ledger.downloads(rd.name(0))
        assert dl.purged_at is not None and (dl.purge_links, dl.purge_inode) == (2, inode)
        (dl,) = ledger.downloads(rd.name(2))
        assert dl.purged_at is not None and (dl.purge_links, dl.purge_inode) == (0, None)


def test_the_human_purge_says_where_the_other_names_are_looked_for(tmp_path, pinned, capsys):
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    _snapshot, inode = _linked(env, tmp_path)
    assert main(["purge", "--config", str(env.config)]) == 1
    out = capsys.readouterr().out
    assert "Purged: 8 local copies past local_retention_days deleted" in out, out
    assert "Still on disk: 2 local copies past local_retention_days were deleted from the folder" in out, out
    assert "cannot be known" in out and "Status: WARNING" in out
    [line] = [line for line in out.splitlines() if line.startswith("  STILL ON DISK") and rd.name(0) in line]
    assert "2 other names" in line and f"-xdev -inum {inode}" in line, line
    assert not [line for line in out.splitlines() if line.startswith("  PURGED") and rd.name(0) in line]


def test_sync_warns_of_a_purged_copy_still_on_disk(tmp_path, pinned):
    from tui.sftp.sync import SyncResult

    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    _linked(env, tmp_path)
    with env.ledger() as ledger:
        result = SyncResult(retention=retention.purge(env.profile(), ledger, now=rd.NOW)).finish()
    assert result.status == 1
    assert {p["name"]: p["other_links"] for p in result.to_json()["purged"] if p["other_links"]} == {
        rd.name(0): 2, rd.name(1): 1}


def test_a_part_file_left_linked_to_its_copy_is_not_another_name(tmp_path, pinned):
    """A download killed between placing its file (a hard link of the part file) and removing
    the part file leaves the part as a second name of the copy. The purge removes the part
    files of the deliveries it purges before it deletes their copies, so that name is gone too
    and the copy is not reported as still on disk."""
    from tui.core.model import RemoteFile
    from tui.sftp import parts

    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    work = parts.work_dir(env.local)
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = work / parts.part_name(RemoteFile(rd.name(0), env.path(0).stat().st_size, None))
    os.link(env.path(0), part)
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW, remove_parts=parts.remove_stale_parts)
        assert not part.exists() and not env.path(0).exists()
        assert [c.name for c in result.purged if c.linked] == [] and result.exit_code == 0
        assert ledger.downloads(rd.name(0))[0].purge_links == 0
