"""The validator's pre-checks are never stricter than the reader.

Real xlsx packages in the shapes other writers (and zip tools) give them: without docProps,
without [Content_Types].xml, stored instead of deflated, streamed with data descriptors, in
zip64, with a comment, with bytes before the zip. Each is opened with calamine (fastexcel)
in the test; whatever calamine reads must be verified, never called unreadable or "a zip
archive saved with an .xlsx name".
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import fastexcel
import pytest

from tests.hostile_workbooks import package, sheet, table_rows
from tui.core import status as st
from tui.core.validate import validate_file


class _Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors, as streaming zippers do."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def _entries(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def _rezip(path: Path, out: Path, *, compression: int = zipfile.ZIP_DEFLATED, zip64: bool = False,
           comment: bytes = b"") -> Path:
    with zipfile.ZipFile(out, "w", compression) as zf:
        for name, data in _entries(path):
            with zf.open(zipfile.ZipInfo(name), "w", force_zip64=zip64) as fh:
                fh.write(data)
        zf.comment = comment
    return out


def _streamed(path: Path, out: Path) -> Path:
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in _entries(path):
            zf.writestr(name, data)
    out.write_bytes(bytes(stream.data))
    return out


def _prefixed(path: Path, out: Path) -> Path:
    out.write_bytes(b"\0" * 64 + path.read_bytes())
    return out


def _base(folder: Path, **kw) -> Path:
    return package(folder / f"base-{len(kw)}-{'-'.join(sorted(kw))}.xlsx", sheet(table_rows()), **kw)


VARIANTS: dict[str, Callable[[Path], Path]] = {
    "no-docprops": lambda d: _base(d),
    "no-content-types": lambda d: _base(d, content_types=False),
    "stored": lambda d: _rezip(_base(d), d / "stored.xlsx", compression=zipfile.ZIP_STORED),
    "zip64": lambda d: _rezip(_base(d), d / "zip64.xlsx", zip64=True),
    "comment": lambda d: _rezip(_base(d), d / "comment.xlsx", comment=b"made by a zip tool"),
    "data-descriptors": lambda d: _streamed(_base(d), d / "streamed.xlsx"),
    "bytes-before-the-zip": lambda d: _prefixed(_base(d), d / "prefixed.xlsx"),
    "workbook-elsewhere": lambda d: package(d / "elsewhere.xlsx", sheet(table_rows()), base="book/"),
}


def _calamine_rows(path: Path) -> int | None:
    try:
        reader = fastexcel.read_excel(str(path))
        return reader.load_sheet(0, header_row=None).height
    except Exception:  # noqa: BLE001 - whatever calamine refuses is out of this test's rule
        return None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_what_calamine_opens_is_verified(tmp_path, variant):
    path = VARIANTS[variant](tmp_path)
    rows = _calamine_rows(path)
    assert rows == 4, f"calamine should read the {variant} package (header + 3 rows)"
    result = validate_file(path)
    assert result.status == st.OK, (variant, result.message)
    assert result.rows == 3 and "zip archive" not in result.message
