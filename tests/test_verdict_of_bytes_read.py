"""A verdict carries the hash of the bytes it is of (docs/ARCHITECTURE.md, "Verification"):
a file written to between the look that tells what it is and the read that hashes it (a copy
still being written while it is verified) never gets the verdict of what it was before with
the hash of what it is now, which the ledger would keep for that content. And a large zip
the reader cannot open again through its descriptor is never judged damaged."""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.xlsx_factory import write_report
from tui.core import export_read, validate

LIMIT = 1 << 20


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workbook(tmp_path_factory) -> Path:
    return write_report(tmp_path_factory.mktemp("wb") / "report.xlsx", n_rows=40)


@pytest.fixture(scope="module")
def padded(tmp_path_factory, workbook) -> Path:
    """A report padded past the lowered limit with a stored media part."""
    path = tmp_path_factory.mktemp("large") / "padded.xlsx"
    shutil.copy(workbook, path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as z:
        z.writestr("xl/media/image1.bin", os.urandom(3 * LIMIT))
    return path


def _written_after_the_look(monkeypatch, path: Path, content: bytes) -> None:
    """The file is written (in place, whole) right after ``sniff`` first looks at it."""
    real = validate.sniff
    done: list[bool] = []

    def sniff_then_write(fh):
        kind = real(fh)
        if not done:
            done.append(True)
            with open(path, "r+b") as f:
                f.write(content)
        return kind

    monkeypatch.setattr(validate, "sniff", sniff_then_write)


@pytest.mark.parametrize("before", [b"", b"partial,csv,text\n"])
def test_a_small_file_written_while_judged_here_keeps_no_verdict_of_its_earlier_bytes(
        tmp_path, monkeypatch, workbook, before):
    """Empty (or text) when looked at, the whole workbook when read: no "empty"/"text"
    verdict with the workbook's hash (the ledger would keep it for that workbook)."""
    path = tmp_path / "arriving.xlsx"
    path.write_bytes(before)
    _written_after_the_look(monkeypatch, path, workbook.read_bytes())
    reply = validate._judged_here(path)
    if reply is not None:
        verdict = reply["result"]
        assert verdict.get("sha256") != _sha(workbook), verdict


def test_a_larger_file_written_while_a_worker_reads_it_keeps_no_verdict_of_its_earlier_bytes(
        tmp_path, monkeypatch, workbook):
    """The worker's way (a file over JUDGED_HERE_BYTES that is no zip when looked at)."""
    path = tmp_path / "arriving.xlsx"
    text = b"a,b,c\n" * (validate.JUDGED_HERE_BYTES // 4)
    path.write_bytes(text)
    data = workbook.read_bytes()
    _written_after_the_look(monkeypatch, path, data)
    verdict = validate.worker_verify(str(path), {})
    assert verdict["status"] == "unreadable"
    # Neither hash is a verdict of "text": the file was neither when it was hashed.
    assert verdict.get("sha256") is None, verdict
    assert verdict["reason"] == "changed"


@pytest.fixture()
def lowered(monkeypatch):
    monkeypatch.setattr(validate, "READ_WHOLE_BYTES", LIMIT, raising=False)


@pytest.fixture()
def no_reopen(monkeypatch, tmp_path):
    """A descriptor folder that is there but opens no descriptor (a sandbox that hides them,
    a security module refusing the reopen)."""
    empty = tmp_path / "fd"
    empty.mkdir()
    monkeypatch.setattr(validate, "FD_FOLDER", str(empty), raising=False)


def test_a_large_workbook_whose_descriptor_cannot_be_reopened_is_read_as_before(
        padded, lowered, no_reopen, tmp_path):
    """Its verdict and table are those of the file read whole, not "damaged"."""
    verdict = validate.worker_verify(str(padded), {})
    assert verdict["status"] == "ok", verdict
    assert verdict["sha256"] == _sha(padded)
    table = export_read.worker_table(str(padded), str(tmp_path / "t.arrows"), 4)
    assert table["ok"], table


def test_a_large_workbook_the_reader_cannot_open_is_given_no_verdict_of_its_content(
        padded, lowered, monkeypatch, tmp_path):
    """The descriptor opens when looked at, and no longer when the reader opens it: the
    refusal says so and carries no hash (the ledger keeps no verdict for these bytes)."""
    real = validate.precheck_zip
    empty = tmp_path / "fd"
    empty.mkdir()

    def precheck_then_hide(p, fh):
        names = real(p, fh)
        monkeypatch.setattr(validate, "FD_FOLDER", str(empty), raising=False)
        return names

    monkeypatch.setattr(validate, "precheck_zip", precheck_then_hide)
    verdict = validate.worker_verify(str(padded), {})
    assert verdict["status"] == "unreadable"
    assert "sha256" not in verdict, verdict
    assert verdict["reason"] == "reopen"
    monkeypatch.setattr(validate, "FD_FOLDER", "/proc/self/fd", raising=False)
    table = export_read.worker_table(str(padded), str(tmp_path / "t.arrows"), 4)
    assert table["ok"] is False and table["reason"] == "reopen", table


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_a_workbook_at_the_streaming_limit_gets_one_verdict(padded, monkeypatch, tmp_path, delta):
    """One byte either side of READ_WHOLE_BYTES: read whole or streamed, the same verdict
    and table (the two ways meet at the limit with nothing lost or refused)."""
    size = padded.stat().st_size
    monkeypatch.setattr(validate, "READ_WHOLE_BYTES", size + delta, raising=False)
    streamed: list[Path] = []
    real = validate.LargeZip.__init__

    def init(self, path, fh, read):
        streamed.append(path)
        real(self, path, fh, read)

    monkeypatch.setattr(validate.LargeZip, "__init__", init)
    verdict = validate.worker_verify(str(padded), {})
    table = export_read.worker_table(str(padded), str(tmp_path / "t.arrows"), 4)
    assert verdict["status"] == "ok" and verdict["sha256"] == _sha(padded), verdict
    assert table["ok"], table
    assert len(streamed) == (2 if size > size + delta else 0)  # streamed only past the limit


def test_a_large_workbook_renamed_over_while_it_is_read_gets_the_verdict_of_the_file_hashed(
        padded, lowered, monkeypatch, tmp_path):
    """Another workbook (other rows) renamed over the path between the zip checks and the
    reader's open: the reader reads the file that was hashed and checked (its descriptor),
    so the verdict, its rows and its hash are that file's, and the table too."""
    path = tmp_path / "report.xlsx"
    shutil.copy(padded, path)
    other = tmp_path / "other.xlsx"
    write_report(other, n_rows=7)
    with zipfile.ZipFile(other, "a", compression=zipfile.ZIP_STORED) as z:
        z.writestr("xl/media/image1.bin", os.urandom(2 * LIMIT))
    others = tmp_path / "others"
    others.mkdir()
    real = validate.precheck_zip

    def precheck_then_replace(p, fh):
        names = real(p, fh)
        replacement = others / f"{len(list(others.iterdir()))}.xlsx"
        shutil.copy(other, replacement)
        os.replace(replacement, path)
        return names

    expected = validate.worker_verify(str(padded), {})
    expected_table = export_read.worker_table(str(padded), str(tmp_path / "a.arrows"), 4)
    monkeypatch.setattr(validate, "precheck_zip", precheck_then_replace)
    verdict = validate.worker_verify(str(path), {})
    assert verdict == expected and verdict["rows"] == 40, verdict
    assert _sha(path) == _sha(other)  # the path holds the other workbook now
    shutil.copy(padded, path)
    table = export_read.worker_table(str(path), str(tmp_path / "b.arrows"), 4)
    assert table == expected_table
    assert (tmp_path / "a.arrows").read_bytes() == (tmp_path / "b.arrows").read_bytes()


def test_a_large_workbook_the_disk_fails_to_read_again_is_given_no_verdict_of_its_content(
        padded, lowered, monkeypatch):
    """Hashed once, then the disk fails (an I/O error) when the file is read again to be sure
    it is unchanged: that says nothing of its content, so no hash goes with the verdict (an
    "unreadable" under a good workbook's hash would stay with it in the ledger)."""
    import errno

    real = validate._streamed_sha256
    calls: list[int] = []

    def failing_the_second_time(fh):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fh)

    monkeypatch.setattr(validate, "_streamed_sha256", failing_the_second_time)
    verdict = validate.worker_verify(str(padded), {})
    assert len(calls) == 2
    assert verdict["status"] == "unreadable" and "sha256" not in verdict, verdict
    assert verdict["reason"] == "os-error" and os.strerror(errno.EIO) in verdict["message"]


def test_a_large_workbook_rewritten_as_text_before_it_is_hashed_is_called_changed(
        padded, lowered, monkeypatch, tmp_path):
    """A zip when first looked at, text by the time it is hashed (a copy written over while it
    was verified): the refusal says the file changed while it was checked, not that it is a
    damaged zip (which sent the librarian to download a sound report again), and carries no
    hash (the verdict is of neither content)."""
    path = tmp_path / "arriving.xlsx"
    shutil.copy(padded, path)
    text = b"a,b,c\n" * (2 * LIMIT // 6)
    real = validate.reopens
    done: list[bool] = []

    def reopens_then_rewrite(fh):
        if not done:
            done.append(True)
            with open(path, "r+b") as f:
                f.write(text)
                f.truncate()
        return real(fh)

    monkeypatch.setattr(validate, "reopens", reopens_then_rewrite)
    verdict = validate.worker_verify(str(path), {})
    assert done and path.read_bytes() == text  # the rewrite happened, after the look, before the hash
    assert verdict["status"] == "unreadable", verdict
    assert verdict["reason"] == "changed" and "changed while it was being checked" in verdict["message"], verdict
    assert "sha256" not in verdict, verdict
