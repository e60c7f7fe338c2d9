"""A zip package too large to hold in memory whole (over ``validate.READ_WHOLE_BYTES``) is
hashed as it streams by, checked from the file and read by the reader from the very file
opened (docs/ARCHITECTURE.md); the limit is lowered here so that small files take that way."""

from __future__ import annotations

import hashlib
import os
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from tests.xlsx_factory import write_report
from tui.core import export_read, validate

LIMIT = 1 << 20


@pytest.fixture(scope="module")
def workbooks(tmp_path_factory) -> dict[str, Path]:
    """A report padded past the limit with a stored media part, and a zip-looking file of
    8 MiB that is no zip."""
    folder = tmp_path_factory.mktemp("large")
    small = write_report(folder / "small.xlsx", n_rows=40)
    padded = folder / "padded.xlsx"
    shutil.copy(small, padded)
    with zipfile.ZipFile(padded, "a", compression=zipfile.ZIP_STORED) as z:
        z.writestr("xl/media/image1.bin", os.urandom(3 * LIMIT))
    garbage = folder / "garbage.xlsx"
    garbage.write_bytes(b"PK\x03\x04" + os.urandom(8 * LIMIT))
    return {"padded": padded, "garbage": garbage}


@pytest.fixture()
def lowered(monkeypatch):
    monkeypatch.setattr(validate, "READ_WHOLE_BYTES", LIMIT, raising=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_large_zip_looking_file_is_not_held_in_memory_whole(workbooks, lowered):
    """8 MiB after a zip's first bytes, no zip directory: refused as before, its hash the
    file's, and never more than a few MiB of it held at once (the whole file before)."""
    read: list[str] = []
    tracemalloc.start()
    try:
        with pytest.raises(validate.Unreadable) as caught:
            validate._read_first_sheet(workbooks["garbage"], read=read)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "zip-directory"
    assert read == [_sha(workbooks["garbage"])]
    assert peak < 4 * LIMIT, peak


def test_a_large_workbook_gets_the_same_verdict_and_table_as_one_read_whole(workbooks, monkeypatch, tmp_path):
    rules: dict[str, object] = {}
    whole = validate.worker_verify(str(workbooks["padded"]), rules)
    table_whole = export_read.worker_table(str(workbooks["padded"]), str(tmp_path / "a.arrows"), 4)
    monkeypatch.setattr(validate, "READ_WHOLE_BYTES", LIMIT, raising=False)
    opened: list[object] = []
    real = validate.open_regular
    monkeypatch.setattr(validate, "open_regular", lambda p: opened.append(p) or real(p))
    streamed = validate.worker_verify(str(workbooks["padded"]), rules)
    table_streamed = export_read.worker_table(str(workbooks["padded"]), str(tmp_path / "b.arrows"), 4)
    assert whole["status"] == "ok" and streamed == whole
    assert whole["sha256"] == _sha(workbooks["padded"])
    assert table_whole["ok"] and table_streamed == table_whole
    assert (tmp_path / "a.arrows").read_bytes() == (tmp_path / "b.arrows").read_bytes()
    assert len(opened) == 2


@pytest.mark.parametrize("where", ["media", "directory"])
def test_a_large_file_written_to_while_it_is_read_gets_no_verdict_of_a_content(workbooks, lowered, tmp_path,
                                                                                 monkeypatch, where):
    """Bytes written into the file between its hash and its parse (in a part the reader never
    reads, or in the zip directory it needs): the verdict is of no known content (no hash),
    and the table is refused."""
    path = tmp_path / "changing.xlsx"
    shutil.copy(workbooks["padded"], path)
    real = validate.precheck_zip

    def precheck_then_write(p, fh):
        names = real(p, fh)
        with open(path, "r+b") as f:  # the same file, written in place
            f.seek(-2 * LIMIT if where == "media" else -60, os.SEEK_END)
            f.write(b"\xff" * 10)
        return names

    monkeypatch.setattr(validate, "precheck_zip", precheck_then_write)
    verdict = validate.worker_verify(str(path), {})
    assert verdict["status"] == "unreadable" and "sha256" not in verdict
    assert verdict.get("reason") == "changed"
    shutil.copy(workbooks["padded"], path)
    table = export_read.worker_table(str(path), str(tmp_path / "c.arrows"), 4)
    assert table["ok"] is False and table["reason"] == "changed"
