"""The local-side commands (verify, export, purge) against what can happen to the files they
read and write: a report saved over while it is verified, an export's target that is a link, a
named pipe, a folder or a name with a NUL, a user's folder named like an export's leftover,
links, hard links and edits in place of copies the purge would delete, names with line breaks
and escape sequences in the human output. Real workbooks, real worker processes, a real
ledger."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import date

import pytest

from tests import export_data as ed
from tests import retention_data as rd
from tests.xlsx_factory import loan_rows, write_report
from tui.cli import main
from tui.core import local_reports
from tui.core import status as st
from tui.core.export import run_export
from tui.core.export_request import ExportError, ExportRequest
from tui.core.ledger import Ledger
from tui.core.local_reports import find_local_reports, verify_local


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_report_changed_between_its_hash_and_its_reading_is_not_recorded_as_those_bytes(tmp_path,
                                                                                          monkeypatch):
    """The verification is cached in the ledger under the sha256 of the bytes. A copy saved
    over (by hand, by another program) after the file was hashed and before the worker read
    it: the verdict is of the new bytes and must never be recorded as the old bytes' (a good
    download would be unreadable for ever in the ledger, or a bad one ok)."""
    folder = tmp_path / "local"
    folder.mkdir()
    report = folder / "Loans_20260301_0700.xlsx"
    write_report(report, loan_rows(5, seed=1))
    good = _sha(report)
    broken = b"PK\x03\x04 saved over, half written"
    real = local_reports.file_sha256
    swapped = []

    def hashing(path, *args, **kwargs):
        digest = real(path, *args, **kwargs)
        if not swapped:  # saved over just after it was hashed
            report.write_bytes(broken)
            swapped.append(True)
        return digest

    monkeypatch.setattr(local_reports, "file_sha256", hashing)
    with Ledger.open(tmp_path / "l.sqlite3", profile="t") as ledger:
        [outcome] = verify_local(find_local_reports(folder), ledger)
        assert swapped
        assert outcome.result.status == st.UNREADABLE  # what was read
        recorded = ledger.verifications_of({good})
        assert good not in recorded, f"the good bytes were recorded as {recorded[good].status}"
        assert outcome.sha256 != good  # the outcome names the bytes its verdict is of


# ------------------------------------------------------------------ the export's target

@pytest.fixture
def now(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """Two days of reports held and verified (built once: each test copies it)."""
    return ed.build(tmp_path_factory.mktemp("held") / "env", until=date(2026, 3, 2))


def test_an_export_onto_a_link_never_writes_through_it(tmp_path, now, capsys, held):
    """The target is a link to another file (the user's, the ledger): without --force nothing
    is written; with --force the link itself is replaced, the file it pointed to keeps its bytes."""
    theirs = tmp_path / "theirs.parquet"
    theirs.write_bytes(b"the user's own table")
    link = tmp_path / "study.parquet"
    link.symlink_to(theirs)
    code = main(["export", "--config", str(held.config), "--out", str(link)])
    err = capsys.readouterr().err
    assert code == 3 and "already exists" in err
    assert link.is_symlink() and theirs.read_bytes() == b"the user's own table"
    code = main(["export", "--config", str(held.config), "--out", str(link), "--force"])
    err = capsys.readouterr().err
    assert code in (0, 1), err
    assert not link.is_symlink() and link.read_bytes()[:4] == b"PAR1"
    assert theirs.read_bytes() == b"the user's own table"
    dangling = tmp_path / "gone.csv"
    dangling.symlink_to(tmp_path / "nowhere" / "x.csv")
    code = main(["export", "--config", str(held.config), "--out", str(dangling)])
    assert code == 3 and "already exists" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
    to_ledger = tmp_path / "ledger.csv"
    to_ledger.symlink_to(held.ledger_path)
    before = held.ledger_path.read_bytes()
    code = main(["export", "--config", str(held.config), "--out", str(to_ledger), "--force"])
    err = capsys.readouterr().err
    assert code == 3 and "ledger" in err, err
    assert to_ledger.is_symlink() and held.ledger_path.read_bytes() == before


def test_an_export_onto_a_named_pipe_or_a_folder_neither_hangs_nor_writes(tmp_path, now, capsys, held):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    (folder / "keep").write_bytes(b"k")
    for target in (fifo, folder):
        for force in ((), ("--force",)):
            code = main(["export", "--config", str(held.config), "--out", str(target), *force])
            err = capsys.readouterr().err
            assert code == 3 and len(err.strip().splitlines()) == 1, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and (folder / "keep").read_bytes() == b"k"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.parquet", "pipe.csv"]


# ------------------------------------------------------------------ the purge's copies

DELETE_ALL = "local_retention_days = 30\nkeep_until_exported = false"


def test_the_purge_deletes_only_the_downloaded_bytes_never_a_link_or_an_edit(tmp_path, monkeypatch, capsys):
    """In place of old copies: a link to the user's archive holding the same bytes, a copy
    edited by hand to the same size, a hard link from the user's archive (the same file: its
    name in local_dir goes, the archive's name and bytes stay)."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    archive = tmp_path / "archive"
    archive.mkdir()
    linked = archive / rd.name(0)
    env.path(0).rename(linked)
    env.path(0).symlink_to(linked)
    edited = env.path(1).read_bytes()
    edited = edited[:-1] + (b"x" if edited[-1:] != b"x" else b"y")
    env.path(1).write_bytes(edited)
    hard = archive / ("hard-" + rd.name(2))
    os.link(env.path(2), hard)
    code = main(["purge", "--json", "--config", str(env.config)])
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert code == 1, out.err
    assert {e["name"] for e in doc["errors"]} == {rd.name(0), rd.name(1)}
    assert env.path(0).is_symlink() and linked.read_bytes() and env.path(1).read_bytes() == edited
    assert not env.path(2).exists() and hard.exists()
    assert {p["name"] for p in doc["purged"]} == {rd.name(i) for i in rd.OLD} - {rd.name(0), rd.name(1)}


# ------------------------------------------------------------------ names in the human output

FORGED = "\nStatus: OK \x1b[2J\x1b]0;owned\x07"


def _inert(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text
    assert not any(line.startswith("Status: OK ") for line in text.splitlines()), text


def test_verify_prints_a_file_name_with_a_line_break_and_escapes_on_its_own_line(tmp_path, capsys):
    folder = tmp_path / "local"
    folder.mkdir()
    write_report(folder / f"Loans{FORGED}_20260301_0700.xlsx", loan_rows(5, seed=1))
    (folder / f"bad{FORGED}.xlsx").write_bytes(b"not a workbook")
    code = main(["verify", str(folder)])
    out = capsys.readouterr()
    assert code == 2
    _inert(out.out + out.err)


def test_the_export_names_its_target_on_one_line(tmp_path, now, capsys, held):
    out = tmp_path / f"study{FORGED}.csv"
    code = main(["export", "--config", str(held.config), "--out", str(out)])
    got = capsys.readouterr()
    assert code in (0, 1), got.err
    assert out.exists()
    _inert(got.out + got.err)
    code = main(["export", "--config", str(held.config), "--out", str(out)])  # exists: refused
    got = capsys.readouterr()
    assert code == 3 and len(got.err.strip().splitlines()) == 1, got.err
    _inert(got.out + got.err)


def test_a_folder_of_the_users_named_like_an_exports_leftover_is_never_removed(tmp_path, now, held):
    """The next export removes the private folders killed exports left beside their target:
    only what an export leaves there (its half-written table), never a folder of the user's
    that happens to carry the prefix, with their files in it."""
    import time

    target = tmp_path / "study"
    target.mkdir()
    theirs = target / ".report-keeper-export-notes"
    theirs.mkdir(mode=0o700)
    (theirs / "interviews.txt").write_text("the user's notes")
    (theirs / "export.csv").write_text("an earlier table they kept")
    left = target / ".report-keeper-export-k1ll3d"  # a killed export's: its table only
    left.mkdir(mode=0o700)
    (left / "export.parquet").write_bytes(b"PAR1 half a table")
    hour_ago = time.time() - 3700
    for p in (theirs, left):
        os.utime(p, (hour_ago, hour_ago))
    code = main(["export", "--config", str(held.config), "--out", str(target / "x.parquet")])
    assert code in (0, 1)
    assert (theirs / "interviews.txt").read_text() == "the user's notes"
    assert (theirs / "export.csv").exists()
    assert not left.exists()


def test_a_report_saved_over_with_what_is_no_workbook_is_not_recorded_as_the_good_bytes(tmp_path,
                                                                                        monkeypatch):
    """As above, with bytes that are no zip at all (a text file saved under the report's name):
    the worker hashes what it sniffed, so the good content keeps no verdict of the junk."""
    folder = tmp_path / "local"
    folder.mkdir()
    report = folder / "Loans_20260301_0700.xlsx"
    write_report(report, loan_rows(5, seed=1))
    good = _sha(report)
    real = local_reports.file_sha256

    def hashing(path, *args, **kwargs):
        digest = real(path, *args, **kwargs)
        report.write_bytes(b"Title,Rows\nnot a workbook\n")
        return digest

    monkeypatch.setattr(local_reports, "file_sha256", hashing)
    with Ledger.open(tmp_path / "l.sqlite3", profile="t") as ledger:
        [outcome] = verify_local(find_local_reports(folder), ledger)
        assert outcome.result.status == st.UNREADABLE
        assert good not in ledger.verifications_of({good})
        assert outcome.sha256 == _sha(report)


def test_a_target_name_holding_a_nul_character_is_a_clear_refusal(tmp_path, now, held):
    """A file name pasted into the export form with a NUL character in it: one sentence, not
    an unexpected error (no file system takes such a name)."""
    ledger = held.ledger()
    try:
        with pytest.raises(ExportError, match="NUL"):
            run_export(held.profile(), ledger, ExportRequest(out=tmp_path / "lo\0ans.csv"))
    finally:
        ledger.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("start", [b"PK\x03\x04", b"junk"], ids=["zip", "other"])
def test_a_file_larger_than_any_report_is_refused_before_it_is_read(tmp_path, start):
    """A file of more than 2 GiB (sparse here: it costs no disk) is refused from its size
    alone, before the worker reads its bytes: a zip is never read whole into memory (it would
    end in the memory limit's advice to raise it), a file of another kind is not hashed."""
    from tui.core.validate import MAX_TOTAL_BYTES, validate_file

    path = tmp_path / "Loans_20260101_070000.xlsx"
    with open(path, "wb") as f:
        f.write(start)
        f.truncate(MAX_TOTAL_BYTES + 1)
    result = validate_file(path)
    assert result.status == st.UNREADABLE
    if start.startswith(b"PK"):
        assert "more than any report" in result.message, result.message
        assert "memory" not in result.message, result.message
    assert result.read_sha256 is None  # its bytes were not read
