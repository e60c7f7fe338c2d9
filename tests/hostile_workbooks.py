"""Hostile workbooks: small files that make an Excel reader allocate, loop, leak or hang.

Every case is written from raw XML parts into a real zip (or a real FIFO), in well under a
second and a few MiB of disk at most: the bombs are built from repeated, fully flushed deflate
blocks, so 1.2 GB of inflated XML costs about 1.2 MB on disk. All data is synthetic.

    CASES: {name: HostileCase}                 # writer(folder) -> Path, and what must happen
    write_all(folder) -> {name: Path}          # every case into one folder
    package(path, sheet_xml, ...) -> Path      # a minimal xlsx from raw parts
    HEADER, ROWS                               # the harmless table most cases wrap

A case's ``expect`` is the status the validator must give it, and ``says`` words its message
must contain (lower case), so a test can tell "refused for the right reason" from "failed
somehow".
"""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.xlsx_factory import crc32_repeated

NS = "http://schemas.openxmlformats.org"
MAIN = f"{NS}/spreadsheetml/2006/main"
REL = f"{NS}/officeDocument/2006/relationships"
PKG_REL = f"{NS}/package/2006/relationships"

HEADER = ("Primary Identifier", "User Group", "Loans")
ROWS = (("000000101", "Staff", "2"), ("000000102", "Faculty", "1"), ("000000103", "Graduate", "3"))
SECRET = "SYNTHETIC-LOCAL-SECRET-7f3a"  # the content of the file the XXE case points at


# --------------------------------------------------------------------------- building blocks


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _col(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def inline_row(r: int, values: Iterable[str], first_col: int = 0) -> str:
    cells = "".join(
        f'<c r="{_col(first_col + i)}{r}" t="inlineStr"><is><t>{_esc(v)}</t></is></c>'
        for i, v in enumerate(values)
    )
    return f'<row r="{r}">{cells}</row>'


def table_rows(start: int = 1) -> str:
    """The harmless table (header + 3 rows) as inline-string rows from row ``start``."""
    return "".join(inline_row(start + i, row) for i, row in enumerate((HEADER, *ROWS)))


def sheet(body: str, *, dimension: str | None = None, prolog: str = "") -> bytes:
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{prolog}'
        f'<worksheet xmlns="{MAIN}" xmlns:r="{REL}">{dim}<sheetData>{body}</sheetData></worksheet>'
    ).encode()


def shared_strings(strings: Iterable[str], prolog: str = "", raw: Iterable[str] = ()) -> bytes:
    items = [f"<si><t>{_esc(s)}</t></si>" for s in strings] + [f"<si><t>{r}</t></si>" for r in raw]
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{prolog}'
        f'<sst xmlns="{MAIN}" count="{len(items)}" uniqueCount="{len(items)}">{"".join(items)}</sst>'
    ).encode()


@dataclass
class RawEntry:
    """An already-deflated zip entry whose directory may say anything about its size."""

    body: bytes  # raw deflate stream
    crc: int
    declared_size: int


def package(
    path: str | Path,
    sheet_xml: bytes | RawEntry,
    *,
    sst: bytes | None = None,
    base: str = "xl/",
    docprops: bool = False,
    content_types: bool = True,
    extra: Iterable[tuple[str, bytes]] = (),
) -> Path:
    """A minimal xlsx package: package rels, workbook, its rels, one sheet, optional shared
    strings. ``base`` is where the workbook lives (the package rels point there)."""
    path = Path(path)
    wb_rels = [f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>']
    if sst is not None:
        wb_rels.append(f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>')
    parts: list[tuple[str, bytes]] = []
    if content_types:
        parts.append((
            "[Content_Types].xml",
            f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{NS}/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/{base}workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>'.encode(),
        ))
    parts += [
        ("_rels/.rels",
         f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG_REL}">'
         f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="{base}workbook.xml"/>'
         "</Relationships>".encode()),
        (f"{base}workbook.xml",
         f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{REL}">'
         '<sheets><sheet name="Loans" sheetId="1" r:id="rId1"/></sheets></workbook>'.encode()),
        (f"{base}_rels/workbook.xml.rels",
         f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG_REL}">'
         + "".join(wb_rels) + "</Relationships>"),
    ]
    parts = [(n, d.encode() if isinstance(d, str) else d) for n, d in parts]
    if sst is not None:
        parts.append((f"{base}sharedStrings.xml", sst))
    if docprops:
        parts.append(("docProps/app.xml", b'<?xml version="1.0"?><Properties/>'))
    parts += list(extra)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for name, data in parts:
            zf.writestr(name, data)
        target = f"{base}worksheets/sheet1.xml"
        if isinstance(sheet_xml, RawEntry):
            _write_raw_entry(zf, target, sheet_xml)
        else:
            zf.writestr(target, sheet_xml)
    return path


def _write_raw_entry(zf: zipfile.ZipFile, name: str, entry: RawEntry) -> None:
    """Append an already-deflated entry whose directory records ``entry.declared_size``."""
    info = zipfile.ZipInfo(name, date_time=(2026, 11, 26, 7, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.CRC = entry.crc
    info.compress_size = len(entry.body)
    info.file_size = entry.declared_size
    info.header_offset = zf.fp.tell()
    info.flag_bits = 0
    zip64 = entry.declared_size > zipfile.ZIP64_LIMIT or len(entry.body) > zipfile.ZIP64_LIMIT
    zf.fp.write(info.FileHeader(zip64))
    zf.fp.write(entry.body)
    zf.filelist.append(info)
    zf.NameToInfo[info.filename] = info
    zf.start_dir = zf.fp.tell()
    zf._didModify = True  # write the central directory on close


def inflating_sheet(filler_mib: int, *, declared_size: int | None = None, filler: bytes = b" ") -> RawEntry:
    """A worksheet whose XML holds ``filler_mib`` MiB of ``filler`` between the table rows.

    With spaces the XML stays well formed (whitespace between elements). The deflate stream
    repeats one fully flushed block, so it costs about 1 KiB per MiB.
    """
    head, tail = sheet(table_rows() + "@@").split(b"@@")
    chunk = filler * ((1 << 20) // len(filler))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    body = first + block + again * (filler_mib - 1) + comp.compress(tail) + comp.flush()
    crc = zlib.crc32(tail, crc32_repeated(chunk, filler_mib, zlib.crc32(head)))
    size = len(head) + len(chunk) * filler_mib + len(tail)
    return RawEntry(body, crc, size if declared_size is None else declared_size)


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class HostileCase:
    name: str
    write: Callable[[Path], Path]  # folder -> the file written into it
    expect: str  # the validator status
    says: tuple[str, ...] = ()  # words the message must hold (lower case)
    why: str = ""


def _p(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.xlsx"


def w_minimal(folder: Path) -> Path:
    """No docProps, no styles, no [Content_Types].xml: calamine opens it."""
    return package(_p(folder, "minimal-package"), sheet(table_rows()), content_types=False)


def w_workbook_elsewhere(folder: Path) -> Path:
    """The package rels point at a workbook outside ``xl/``: readers follow them."""
    return package(_p(folder, "workbook-elsewhere"), sheet(table_rows()), base="book/")


def w_row_beyond_limit(folder: Path) -> Path:
    body = table_rows() + '<row r="99999999999"><c r="A99999999999" t="inlineStr"><is><t>x</t></is></c></row>'
    return package(_p(folder, "row-beyond-limit"), sheet(body))


def w_row_attr_beyond_limit(folder: Path) -> Path:
    """Only the row element says 99999999999; its cell has no reference of its own."""
    body = table_rows() + '<row r="99999999999"><c t="inlineStr"><is><t>x</t></is></c></row>'
    return package(_p(folder, "row-attribute-beyond-limit"), sheet(body))


def w_column_beyond_limit(folder: Path) -> Path:
    body = table_rows() + '<row r="9"><c r="ZZZZ9" t="inlineStr"><is><t>x</t></is></c></row>'
    return package(_p(folder, "column-beyond-limit"), sheet(body))


def w_far_corner(folder: Path) -> Path:
    """One cell at A1 and one at XFD1048576: both within Excel's limits, 17 G cells apart."""
    body = table_rows() + '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>'
    return package(_p(folder, "far-corner"), sheet(body))


def w_far_corner_implicit(folder: Path) -> Path:
    """The same box without any cell reference: 16,384 empty-ish cells in one row, a row at
    1,048,576. Readers place cells without ``r`` one after the other."""
    wide = '<row r="5">' + '<c t="inlineStr"><is><t>x</t></is></c>' * 16384 + "</row>"
    body = table_rows() + wide + '<row r="1048576"><c t="inlineStr"><is><t>x</t></is></c></row>'
    return package(_p(folder, "far-corner-implicit"), sheet(body))


def w_huge_dimension(folder: Path) -> Path:
    """A ``<dimension>`` claiming the whole grid over a 4-row table (readers do not trust it)."""
    return package(_p(folder, "huge-dimension"), sheet(table_rows(), dimension="A1:XFD1048576"))


def w_dimension_beyond_limit(folder: Path) -> Path:
    return package(_p(folder, "dimension-beyond-limit"), sheet(table_rows(), dimension="A1:ZZZZ99999999999"))


def w_shared_string_bomb(folder: Path) -> Path:
    """One 1 MB shared string referenced by 2,000 cells: 2 GB once every cell holds a copy."""
    big = "L" * 1_000_000
    cells = "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>1</v></c></row>' for r in range(5, 2005))
    header = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>0</v></c></row>'
    return package(
        _p(folder, "shared-string-bomb"), sheet(header + cells), sst=shared_strings(["Loans Header", big])
    )


def w_shared_string_1000(folder: Path) -> Path:
    """The same 1 MB string referenced 1,000 times: 1 GB of copies, twice over (cells, Arrow)."""
    big = "L" * 1_000_000
    cells = "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>1</v></c></row>' for r in range(5, 1005))
    header = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>0</v></c></row>'
    return package(
        _p(folder, "shared-string-1000"), sheet(header + cells), sst=shared_strings(["Loans Header", big])
    )


def w_lying_entry(folder: Path) -> Path:
    """The sheet's directory entry says 1,000 bytes; it inflates to 1.2 GB."""
    return package(_p(folder, "lying-entry-size"), inflating_sheet(1200, declared_size=1000))


def w_declared_bomb(folder: Path) -> Path:
    """An honest directory: 3 GiB declared (and real) from about 3 MB."""
    return package(_p(folder, "declared-zip-bomb"), inflating_sheet(3072))


def w_text_bomb(folder: Path) -> Path:
    """One text node of 300 MiB (no markup inside): a reader buffers it whole."""
    head = sheet('<row r="1"><c r="A1" t="inlineStr"><is><t>@@').split(b"@@")[0]
    tail = b"</t></is></c></row></sheetData></worksheet>"
    chunk = b"A" * (1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    body += block * 300 + comp.compress(tail) + comp.flush()
    crc = zlib.crc32(tail, crc32_repeated(chunk, 300, zlib.crc32(head)))
    size = len(head) + (300 << 20) + len(tail)
    return package(_p(folder, "text-node-bomb"), RawEntry(body, crc, size))


_LAUGHS = (
    '<!DOCTYPE sst [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
)


def w_billion_laughs(folder: Path) -> Path:
    sst = shared_strings(["Loans Header"], prolog=_LAUGHS, raw=["&lol9;"])
    body = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>' + table_rows(2)
    return package(_p(folder, "billion-laughs"), sheet(body), sst=sst)


def w_billion_laughs_sheet(folder: Path) -> Path:
    prolog = _LAUGHS.replace("DOCTYPE sst", "DOCTYPE worksheet")
    body = table_rows() + '<row r="9"><c r="A9" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
    return package(_p(folder, "billion-laughs-sheet"), sheet(body, prolog=prolog))


def w_xxe(folder: Path) -> Path:
    """An external entity pointing at a local file (written next to the case) in a header
    cell: it must never be resolved, shown or logged."""
    secret = Path(folder) / "xxe-secret.txt"
    secret.write_text(SECRET)
    prolog = f'<!DOCTYPE sst [<!ENTITY xxe SYSTEM "file://{secret.resolve()}">]>'
    sst = shared_strings(["Primary Identifier"], prolog=prolog, raw=["&xxe;"])
    body = (
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
        + "".join(inline_row(2 + i, row[:2]) for i, row in enumerate(ROWS))
    )
    return package(_p(folder, "xxe-local-file"), sheet(body), sst=sst)


def w_deep_xml(folder: Path) -> Path:
    """200,000 nested elements inside a cell's rich text."""
    depth = 200_000
    deep = "<r>" * depth + "<t>x</t>" + "</r>" * depth
    body = table_rows() + f'<row r="9"><c r="A9" t="inlineStr"><is>{deep}</is></c></row>'
    return package(_p(folder, "deep-xml"), sheet(body))


def w_bad_sst_index(folder: Path) -> Path:
    """Shared-string indexes past the end, negative and not numbers."""
    body = table_rows() + (
        '<row r="9"><c r="A9" t="s"><v>4294967295</v></c><c r="B9" t="s"><v>-1</v></c>'
        '<c r="C9" t="s"><v>abc</v></c><c r="D9" t="s"><v>99999999999999999999</v></c></row>'
    )
    return package(_p(folder, "bad-shared-string-index"), sheet(body), sst=shared_strings(["only one"]))


def w_truncated_zip(folder: Path) -> Path:
    path = package(_p(folder, "truncated-zip"), sheet(table_rows() * 50))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def w_truncated_entry(folder: Path) -> Path:
    """Directory intact, the sheet's compressed data cut short (zeros in its place)."""
    path = package(_p(folder, "truncated-entry"), sheet(table_rows() * 200))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("xl/worksheets/sheet1.xml")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    half = info.compress_size // 2
    data[start + half : start + info.compress_size] = bytes(info.compress_size - half)
    path.write_bytes(bytes(data))
    return path


def w_many_entries(folder: Path) -> Path:
    """5,000 tiny extra entries next to a sound workbook: harmless, readable."""
    extra = [(f"customXml/item{i}.xml", b"<x/>") for i in range(5000)]
    return package(_p(folder, "many-entries"), sheet(table_rows()), extra=extra)


def w_rels_escape(folder: Path) -> Path:
    """The workbook's rels point the sheet outside the package (``../../etc/passwd``)."""
    path = _p(folder, "rels-escape")
    package(path, sheet(table_rows()))
    with zipfile.ZipFile(path) as zin:
        parts = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(
        b"worksheets/sheet1.xml", b"../../../../../etc/passwd"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in parts.items():
            zout.writestr(name, data)
    return path


def w_wide_header(folder: Path) -> Path:
    """16,384 header cells: the widest sheet Excel allows, readable."""
    header = inline_row(1, [f"Col {i}" for i in range(16384)])
    rows = "".join(inline_row(2 + i, row) for i, row in enumerate(ROWS))
    return package(_p(folder, "widest-header"), sheet(header + rows))


def w_fifo(folder: Path) -> Path:
    """A named pipe called .xlsx: opening it for reading would block for ever."""
    path = _p(folder, "named-pipe")
    os.mkfifo(path)
    return path


def w_device(folder: Path) -> Path:
    """A symlink called .xlsx to an endless device."""
    path = _p(folder, "device-link")
    path.symlink_to("/dev/zero")
    return path


CASES: dict[str, HostileCase] = {
    c.name: c
    for c in (
        HostileCase("minimal-package", w_minimal, "ok", why="no docProps: readers open it"),
        HostileCase("workbook-elsewhere", w_workbook_elsewhere, "ok", why="rels lead to book/"),
        HostileCase("row-beyond-limit", w_row_beyond_limit, "unreadable", ("row", "1,048,576")),
        HostileCase("row-attribute-beyond-limit", w_row_attr_beyond_limit, "unreadable", ("row", "1,048,576")),
        HostileCase("column-beyond-limit", w_column_beyond_limit, "unreadable", ("column", "xfd")),
        HostileCase("far-corner", w_far_corner, "unreadable", ("memory",)),
        HostileCase("far-corner-implicit", w_far_corner_implicit, "unreadable", ("memory",)),
        HostileCase("huge-dimension", w_huge_dimension, "ok", why="readers ignore <dimension>"),
        HostileCase("dimension-beyond-limit", w_dimension_beyond_limit, "unreadable", ("1,048,576",)),
        HostileCase("shared-string-bomb", w_shared_string_bomb, "unreadable", ("memory",)),
        HostileCase("shared-string-1000", w_shared_string_1000, "unreadable", ("memory",)),
        HostileCase("lying-entry-size", w_lying_entry, "unreadable", ("zip bomb",)),
        HostileCase("declared-zip-bomb", w_declared_bomb, "unreadable", ("zip bomb",)),
        HostileCase("text-node-bomb", w_text_bomb, "unreadable", ("zip bomb",)),
        HostileCase("billion-laughs", w_billion_laughs, "unreadable", ("damaged",)),
        HostileCase("billion-laughs-sheet", w_billion_laughs_sheet, "unreadable", ("damaged",)),
        HostileCase("xxe-local-file", w_xxe, "unreadable", ("damaged",)),
        HostileCase("deep-xml", w_deep_xml, "ok", why="nesting is skipped, the table is sound"),
        HostileCase("bad-shared-string-index", w_bad_sst_index, "unreadable", ("damaged",)),
        HostileCase("truncated-zip", w_truncated_zip, "unreadable", ("damaged",)),
        HostileCase("truncated-entry", w_truncated_entry, "unreadable", ("damaged",)),
        HostileCase("many-entries", w_many_entries, "ok", why="harmless extra parts"),
        HostileCase("rels-escape", w_rels_escape, "unreadable", ("damaged",)),
        HostileCase("widest-header", w_wide_header, "ok", why="16,384 columns is Excel's maximum"),
        HostileCase("named-pipe", w_fifo, "unreadable", ("not a regular file",)),
        HostileCase("device-link", w_device, "unreadable", ("not a regular file",)),
    )
}


def write_all(folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {name: case.write(folder) for name, case in CASES.items()}


def copy_all(written: dict[str, Path], folder: str | Path) -> dict[str, Path]:
    """The cases ``write_all`` wrote, in another folder as if written there: the files copied
    (the zip bombs are costly to write), the named pipe and the link made anew."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copies = {}
    for name, path in written.items():
        if path.is_symlink() or not path.is_file():
            copies[name] = CASES[name].write(folder)
        else:
            copies[name] = folder / path.name
            shutil.copyfile(path, copies[name])
    return copies
