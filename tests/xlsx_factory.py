"""Real workbooks of Alma Analytics shape, and the bad inputs a report folder can hold.

Used by the validator and CLI tests, and reusable by the demo data and check tests. Every file
is written for real (xlsxwriter or openpyxl, or raw bytes for the bad inputs); nothing is mocked.
All data is synthetic: identifiers are generated digits, titles are "Synthetic Title N".

Main API::

    write_report(path, rows=None, *, n_rows=5, engine="xlsxwriter", header_row=3,
                 columns=LOANS_COLUMNS, title=TITLE, merge_title=True, subtitle=None,
                 message=None, trailing_blank_rows=0, sheet_name="Loans", day=..., seed=0) -> Path
    loan_rows(n, *, day=..., seed=0) -> list[list]     # Python values for LOANS_COLUMNS
    write_message_only(path, message="No Results", *, engine=...) -> Path
    write_empty_first_sheet(path, *, engine=..., second_sheet_rows=0) -> Path
    daily_names(base, first_day, days, at=time(7, 0)) -> [(file name, day)]
    BAD_INPUTS: {kind: writer(path) -> Path}   # corrupt-zip, truncated, xls-renamed,
                                               # csv-renamed, encrypted, no-sheets, zip-bomb
    write_zip_bomb(path, uncompressed_mib=2048) -> Path
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path

ENGINES = ("xlsxwriter", "openpyxl")
#: xlsxwriter assembles the package in memory instead of one temporary file per part (the same
#: parts, a third of the time per workbook; the demo's workbooks are written so too)
_IN_MEMORY = {"in_memory": True}

TITLE = "Loans Per Patron From 3 Days Ago"
LOANS_COLUMNS = (
    "Primary Identifier",
    "User Group",
    "Loan Date",
    "Item Barcode",
    "Title",
    "Loans (Not In House)",
)
USER_GROUPS = ("Undergraduate", "Graduate", "Faculty", "Staff", "Community Borrower")


def loan_rows(n: int, *, day: date = date(2026, 11, 23), seed: int = 0) -> list[list]:
    """``n`` synthetic loan rows for :data:`LOANS_COLUMNS`.

    Identifiers are text with leading zeros (``"000123456"``), the loan date a datetime on
    ``day``, the count an int. Deterministic for a given seed.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            [
                f"{rng.randrange(0, 10**7):09d}",
                USER_GROUPS[rng.randrange(len(USER_GROUPS))],
                datetime.combine(day, time(8 + i % 12, (i * 7) % 60)),
                f"0{rng.randrange(10**10, 10**11)}",
                f"Synthetic Title {rng.randrange(1, 5000)}",
                1 + rng.randrange(4),
            ]
        )
    return rows


def write_report(
    path: str | Path,
    rows: Sequence[Sequence] | None = None,
    *,
    n_rows: int = 5,
    columns: Sequence[str] = LOANS_COLUMNS,
    engine: str = "xlsxwriter",
    header_row: int = 3,
    title: str = TITLE,
    merge_title: bool = True,
    subtitle: str | None = None,
    message: str | None = None,
    trailing_blank_rows: int = 0,
    sheet_name: str = "Loans",
    day: date = date(2026, 11, 23),
    seed: int = 0,
) -> Path:
    """Write an Alma-shaped report and return its path.

    ``header_row`` is 1-based as Excel shows it: 1 means no title rows; 3 (Alma's common shape)
    puts ``title`` on row 1 (merged across the table's width when ``merge_title``) and
    ``subtitle`` (if any) on row 2. ``rows`` defaults to ``loan_rows(n_rows)``; pass ``[]`` for
    a result with no data rows. ``message`` writes one message cell (e.g. "No Results") in the
    first row below the header. ``trailing_blank_rows`` adds formatted but empty (and
    whitespace-only) rows after the data, as Excel leaves behind after deleting rows.
    """
    if rows is None:
        rows = loan_rows(n_rows, day=day, seed=seed)
    grid: dict[tuple[int, int], object] = {}
    top = header_row - 1  # 0-based header row
    if top >= 1 and title:
        grid[(0, 0)] = title
    if top >= 2 and subtitle:
        grid[(1, 0)] = subtitle
    for c, name in enumerate(columns):
        grid[(top, c)] = name
    for r, row in enumerate(rows, start=top + 1):
        for c, value in enumerate(row):
            if value is not None:
                grid[(r, c)] = value
    next_row = top + 1 + len(rows)
    if message is not None:
        grid[(next_row, 0)] = message
        next_row += 1
    merge = (0, 0, 0, max(len(columns) - 1, 1)) if (top >= 1 and title and merge_title) else None
    blanks = list(range(next_row, next_row + trailing_blank_rows))
    return _write(path, engine, sheet_name, grid, merge=merge, blank_rows=blanks, width=len(columns))


def write_message_only(
    path: str | Path, message: str = "No Results", *, engine: str = "xlsxwriter", title: str = TITLE
) -> Path:
    """An empty result as Analytics may export it: a title row and one message cell, no table."""
    grid = {(0, 0): title, (2, 0): message}
    return _write(path, engine, "Loans", grid, merge=(0, 0, 0, 3))


def write_empty_first_sheet(
    path: str | Path, *, engine: str = "xlsxwriter", second_sheet_rows: int = 0
) -> Path:
    """A workbook whose first sheet is blank; optionally a second sheet holding a report."""
    path = Path(path)
    if engine == "xlsxwriter":
        import xlsxwriter

        wb = xlsxwriter.Workbook(str(path), _IN_MEMORY)
        wb.add_worksheet("Sheet1")
        if second_sheet_rows:
            ws = wb.add_worksheet("Loans")
            _xlsxwriter_fill(wb, ws, _grid_for(second_sheet_rows))
        wb.close()
    else:
        import openpyxl

        wb = openpyxl.Workbook()
        wb.active.title = "Sheet1"
        if second_sheet_rows:
            ws = wb.create_sheet("Loans")
            _openpyxl_fill(ws, _grid_for(second_sheet_rows))
        wb.save(path)
    return path


def _grid_for(n: int) -> dict[tuple[int, int], object]:
    grid = {(0, c): name for c, name in enumerate(LOANS_COLUMNS)}
    for r, row in enumerate(loan_rows(n), start=1):
        for c, v in enumerate(row):
            grid[(r, c)] = v
    return grid


def _write(path, engine, sheet_name, grid, *, merge=None, blank_rows=(), width=1) -> Path:
    path = Path(path)
    if engine == "xlsxwriter":
        import xlsxwriter

        wb = xlsxwriter.Workbook(str(path), _IN_MEMORY)
        ws = wb.add_worksheet(sheet_name)
        _xlsxwriter_fill(wb, ws, grid, merge=merge, blank_rows=blank_rows, width=width)
        wb.close()
    elif engine == "openpyxl":
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = sheet_name
        _openpyxl_fill(ws, grid, merge=merge, blank_rows=blank_rows, width=width)
        wb.save(path)
    else:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    return path


def _xlsxwriter_fill(wb, ws, grid, *, merge=None, blank_rows=(), width=1) -> None:
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    bold = wb.add_format({"bold": True})
    if merge is not None:
        r0, c0, r1, c1 = merge
        ws.merge_range(r0, c0, r1, c1, grid.pop((r0, c0), ""), bold)
    for (r, c), value in sorted(grid.items()):
        if isinstance(value, datetime):
            ws.write_datetime(r, c, value, date_fmt)
        elif isinstance(value, str):
            ws.write_string(r, c, value)  # keeps "000123" as text
        else:
            ws.write(r, c, value)
    for r in blank_rows:
        for c in range(width):
            ws.write_blank(r, c, None, bold)
        ws.write_string(r, 0, "   ")  # whitespace-only cell


def _openpyxl_fill(ws, grid, *, merge=None, blank_rows=(), width=1) -> None:
    from openpyxl.styles import Font

    for (r, c), value in grid.items():
        cell = ws.cell(row=r + 1, column=c + 1, value=value)
        if isinstance(value, datetime):
            cell.number_format = "yyyy-mm-dd hh:mm"
        elif isinstance(value, str):
            cell.data_type = "s"
    if merge is not None:
        r0, c0, r1, c1 = merge
        ws.merge_cells(start_row=r0 + 1, start_column=c0 + 1, end_row=r1 + 1, end_column=c1 + 1)
        ws.cell(row=r0 + 1, column=c0 + 1).font = Font(bold=True)
    for r in blank_rows:
        for c in range(width):
            ws.cell(row=r + 1, column=c + 1).font = Font(bold=True)
        ws.cell(row=r + 1, column=1, value="   ")


# --------------------------------------------------------------------------- bad inputs


def write_corrupt_zip(path: str | Path) -> Path:
    """A valid report whose worksheet's compressed bytes were damaged (directory intact)."""
    path = Path(path)
    src = write_report(path.with_suffix(".tmp-src.xlsx"), n_rows=20)
    data = bytearray(src.read_bytes())
    src.unlink()
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("xl/worksheets/sheet1.xml")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    for i in range(start + 4, start + info.compress_size - 4):
        data[i] = (data[i] * 7 + 3) & 0xFF
    path.write_bytes(bytes(data))
    return path


def write_truncated(path: str | Path, keep: float = 0.6) -> Path:
    """A report cut short, as a broken transfer leaves it."""
    path = Path(path)
    src = write_report(path.with_suffix(".tmp-src.xlsx"), n_rows=50)
    data = src.read_bytes()
    src.unlink()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_csv_renamed(path: str | Path) -> Path:
    """A CSV export saved under an .xlsx name."""
    path = Path(path)
    lines = [",".join(f'"{c}"' for c in LOANS_COLUMNS)]
    for row in loan_rows(5):
        lines.append(",".join(f'"{v}"' for v in row))
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def write_xls_renamed(path: str | Path) -> Path:
    """An Excel 97-2003 (.xls, BIFF8 in a CFB container) workbook saved under an .xlsx name."""
    bof = struct.pack("<HHHHHHII", 0x0809, 16, 0x0600, 0x0005, 0x0DBB, 0x07CC, 0, 0x06)
    eof = struct.pack("<HH", 0x000A, 0)
    return _write_cfb(path, {"Workbook": bof + eof, "\x05SummaryInformation": b"\xfe\xff" + bytes(46)})


def write_encrypted(path: str | Path) -> Path:
    """A password-protected workbook: Excel wraps it in a CFB container (MS-OFFCRYPTO, agile)."""
    rng = random.Random(7)
    info = struct.pack("<HHI", 4, 4, 0x40) + (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
        b'<encryption xmlns="http://schemas.microsoft.com/office/2006/encryption">'
        b'<keyData saltSize="16" blockSize="16" keyBits="256" hashSize="64" '
        b'cipherAlgorithm="AES" cipherChaining="ChainingModeCBC" hashAlgorithm="SHA512" '
        b'saltValue="c3ludGhldGljc2FsdA=="/></encryption>'
    )
    payload = struct.pack("<Q", 6000) + bytes(rng.randrange(256) for _ in range(6016))
    return _write_cfb(
        path,
        {
            "EncryptionInfo": info,
            "EncryptedPackage": payload,
            "\x06DataSpaces": b"",
        },
    )


def write_no_sheets(path: str | Path) -> Path:
    """A well-formed xlsx package whose workbook lists no sheets."""
    path = Path(path)
    ns = "http://schemas.openxmlformats.org"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "[Content_Types].xml",
            f'<?xml version="1.0"?><Types xmlns="{ns}/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>',
        )
        zf.writestr(
            "_rels/.rels",
            f'<?xml version="1.0"?><Relationships xmlns="{ns}/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{ns}/officeDocument/2006/relationships/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        zf.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0"?><workbook xmlns="{ns}/spreadsheetml/2006/main" '
            f'xmlns:r="{ns}/officeDocument/2006/relationships"><sheets/></workbook>',
        )
        zf.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<?xml version="1.0"?><Relationships xmlns="{ns}/package/2006/relationships"/>',
        )
    return path


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _crc32_shift(crc: int, length: int) -> int:
    """``crc`` as if ``length`` zero bytes followed what it covers, less their own CRC (zlib's
    crc32_combine: the operator for one zero bit, squared up to ``length`` bytes)."""
    odd = [0xEDB88320] + [1 << n for n in range(31)]  # one zero bit
    even = [_gf2_times(odd, odd[n]) for n in range(32)]  # two
    odd = [_gf2_times(even, even[n]) for n in range(32)]  # four
    while length:
        even = [_gf2_times(odd, odd[n]) for n in range(32)]  # one byte, then 4, 16, ...
        if length & 1:
            crc = _gf2_times(even, crc)
        length >>= 1
        if not length:
            break
        odd = [_gf2_times(even, even[n]) for n in range(32)]
        if length & 1:
            crc = _gf2_times(odd, crc)
        length >>= 1
    return crc


def crc32_repeated(data: bytes, times: int, crc: int = 0) -> int:
    """``zlib.crc32(data * times, crc)`` without reading GiBs: the bombs' CRC in microseconds."""
    one = zlib.crc32(data)
    block, block_len = one, len(data)  # the CRC of data * 2**k, and its length
    whole, whole_len = 0, 0  # the CRC of the repeats taken so far, and their length
    while times:
        if times & 1:
            whole = _crc32_shift(whole, block_len) ^ block if whole_len else block
            whole_len += block_len
        times >>= 1
        if times:
            block = _crc32_shift(block, block_len) ^ block
            block_len *= 2
    if not whole_len:
        return crc
    return _crc32_shift(crc, whole_len) ^ whole if crc else whole


def write_zip_bomb(path: str | Path, uncompressed_mib: int = 2048) -> Path:
    """A structurally valid xlsx whose worksheet inflates to ``uncompressed_mib`` MiB.

    The deflate stream is built from one repeated fully-flushed block, so writing a 2 GiB bomb
    takes well under a second and a few MiB of disk.
    """
    path = Path(path)
    src = write_report(path.with_suffix(".tmp-src.xlsx"), n_rows=3)
    chunk = b" " * (1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    body = block + again * (uncompressed_mib - 1) + comp.flush()
    crc = crc32_repeated(chunk, uncompressed_mib)
    size = len(chunk) * uncompressed_mib
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", allowZip64=True) as zout:
        for info in zin.infolist():
            if info.filename == "xl/worksheets/sheet1.xml":
                continue
            zout.writestr(info, zin.read(info.filename), zipfile.ZIP_DEFLATED)
        bomb = zipfile.ZipInfo("xl/worksheets/sheet1.xml", date_time=(2026, 11, 26, 7, 0, 0))
        bomb.compress_type = zipfile.ZIP_DEFLATED
        _write_raw_entry(zout, bomb, body, crc, size)
    src.unlink()
    return path


def _write_raw_entry(zout: zipfile.ZipFile, info: zipfile.ZipInfo, body: bytes, crc: int, size: int):
    """Append an already-deflated entry (zipfile has no public API for that)."""
    info.CRC = crc
    info.compress_size = len(body)
    info.file_size = size
    info.header_offset = zout.fp.tell()
    info.flag_bits = 0
    zip64 = size > zipfile.ZIP64_LIMIT or len(body) > zipfile.ZIP64_LIMIT
    zout.fp.write(info.FileHeader(zip64))
    zout.fp.write(body)
    zout.filelist.append(info)
    zout.NameToInfo[info.filename] = info
    zout.start_dir = zout.fp.tell()
    zout._didModify = True  # write the central directory on close


def _write_cfb(path: str | Path, streams: dict[str, bytes]) -> Path:
    """A minimal Compound File Binary (OLE2) container, version 3, 512-byte sectors.

    Every stream is padded to at least 4096 bytes so it lives in regular sectors (no mini
    stream); the directory is one sector chain. Enough for format sniffers and olefile.
    """
    path = Path(path)
    SECT = 512
    FREE, END, FATSECT = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
    names = sorted(streams, key=lambda n: (len(n), n.upper()))
    datas = [streams[n].ljust(4096, b"\0") for n in names]
    n_entries = 1 + len(names)
    dir_sectors = -(-n_entries * 128 // SECT)
    data_sectors = [-(-len(d) // SECT) for d in datas]
    total = 1 + dir_sectors + sum(data_sectors)
    assert total <= SECT // 4, "too many sectors for one FAT sector"
    fat = [FREE] * (SECT // 4)
    fat[0] = FATSECT
    for i in range(dir_sectors):
        fat[1 + i] = 2 + i if i < dir_sectors - 1 else END
    starts, cur = [], 1 + dir_sectors
    for n in data_sectors:
        starts.append(cur)
        for i in range(n):
            fat[cur + i] = cur + i + 1 if i < n - 1 else END
        cur += n

    def entry(name, kind, start, size, child=FREE, right=FREE):
        raw = name.encode("utf-16-le") + b"\0\0"
        return (
            raw.ljust(64, b"\0")
            + struct.pack("<HBB", len(raw), kind, 1)
            + struct.pack("<III", FREE, right, child)
            + bytes(16 + 4 + 16)
            + struct.pack("<IQ", start, size)
        )

    assert len(entry("x", 2, 0, 0)) == 128
    directory = entry("Root Entry", 5, END, 0, child=1 if names else FREE)
    for i, (name, data) in enumerate(zip(names, datas)):
        right = i + 2 if i + 1 < len(names) else FREE
        directory += entry(name, 2, starts[i], len(data), right=right)
    directory = directory.ljust(dir_sectors * SECT, b"\0")
    header = (
        bytes.fromhex("D0CF11E0A1B11AE1")
        + bytes(16)
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + bytes(6)
        + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, END, 0, END, 0)
    )
    difat = struct.pack("<I", 0) + struct.pack("<I", FREE) * 108
    header = (header + difat).ljust(SECT, b"\0")
    body = b"".join(d.ljust(n * SECT, b"\0") for d, n in zip(datas, data_sectors))
    path.write_bytes(header + struct.pack(f"<{SECT // 4}I", *fat) + directory + body)
    return path


BAD_INPUTS: dict[str, Callable[[str | Path], Path]] = {
    "corrupt-zip": write_corrupt_zip,
    "truncated": write_truncated,
    "xls-renamed": write_xls_renamed,
    "csv-renamed": write_csv_renamed,
    "encrypted": write_encrypted,
    "no-sheets": write_no_sheets,
    "zip-bomb": write_zip_bomb,
}
"""Writers of files that are not readable reports; each takes a path and returns it."""


def daily_names(base: str, first: date, days: int, at: time = time(7, 0)) -> list[tuple[str, date]]:
    """File names Alma would give ``days`` consecutive daily deliveries: ``base_YYYYMMDD_HHMMSS``."""
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        out.append((f"{base}_{d:%Y%m%d}_{at:%H%M%S}.xlsx", d))
    return out
