"""The report validator against real workbooks written by xlsxwriter and openpyxl."""

from __future__ import annotations

import logging
import zipfile
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.xlsx_factory import (
    BAD_INPUTS,
    ENGINES,
    LOANS_COLUMNS,
    loan_rows,
    write_empty_first_sheet,
    write_message_only,
    write_report,
    write_zip_bomb,
)
from tui.core import status as st
from tui.core.config import DayRange, ReportConfig
from tui.core.validate import (
    column_letter,
    identifier_like,
    normalize_column,
    preview_rows,
    validate_file,
    validate_many,
)

REPORT = "Loans Per Patron From 3 Days Ago"
DELIVERED = datetime(2026, 11, 26, 7, 0, 12, tzinfo=UTC)  # covers 2026-11-23


def report(**kw) -> ReportConfig:
    return replace(ReportConfig(name=REPORT), **kw)


# ------------------------------------------------------------------ shapes that are fine


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("header_row", [1, 3])
def test_header_found_below_title_rows(tmp_path, engine, header_row):
    path = write_report(tmp_path / "r.xlsx", n_rows=7, engine=engine, header_row=header_row)
    result = validate_file(path)
    assert result.status == st.OK
    assert result.rows == 7
    assert result.header_row == header_row
    assert result.columns == LOANS_COLUMNS
    assert result.sheet == "Loans"
    assert result.name == "r.xlsx"


@pytest.mark.parametrize("engine", ENGINES)
def test_unmerged_title_and_subtitle_rows_are_skipped(tmp_path, engine):
    path = write_report(
        tmp_path / "r.xlsx", n_rows=4, engine=engine, merge_title=False, header_row=4,
        subtitle="Loan Date is equal to 3 days ago",
    )
    result = validate_file(path)
    assert (result.status, result.header_row, result.rows) == (st.OK, 4, 4)


@pytest.mark.parametrize("engine", ENGINES)
def test_trailing_blank_and_whitespace_rows_are_not_data(tmp_path, engine):
    path = write_report(tmp_path / "r.xlsx", n_rows=3, engine=engine, trailing_blank_rows=6)
    result = validate_file(path)
    assert (result.status, result.rows) == (st.OK, 3)


def test_expected_columns_matched_ignoring_case_and_spacing(tmp_path):
    path = write_report(tmp_path / "r.xlsx", n_rows=2)
    cfg = report(expected_columns=("primary  identifier", "LOANS (NOT IN HOUSE)"))
    result = validate_file(path, cfg, DELIVERED)
    assert result.status == st.OK
    assert result.report == REPORT
    assert result.delivered_at == DELIVERED
    assert result.to_json()["delivered_at"] == "2026-11-26T07:00:12+00:00"


def test_expected_columns_pick_the_header_over_a_two_cell_subtitle(tmp_path):
    path = write_report(tmp_path / "r.xlsx", n_rows=2, header_row=4, merge_title=False)
    # A two-text-cell row above the header would win the generic rule; the expected columns
    # identify the real header.
    import openpyxl

    wb = openpyxl.load_workbook(path)
    wb.active["A2"], wb.active["B2"] = "Filter", "Loan Date is 3 days ago"
    wb.save(path)
    assert validate_file(path).header_row == 2
    assert validate_file(path, report(expected_columns=("Title", "User Group"))).header_row == 4


# ------------------------------------------------------------------ identifiers, dates, numbers


@pytest.mark.parametrize("engine", ENGINES)
def test_identifiers_keep_leading_zeros_and_dates_numbers_read_as_text(tmp_path, engine):
    rows = loan_rows(3, day=date(2026, 11, 23), seed=4)
    rows[0][0] = "000123"
    path = write_report(tmp_path / "r.xlsx", rows, engine=engine)
    columns, preview = preview_rows(path, 3, n=10)
    assert columns == list(LOANS_COLUMNS)
    assert len(preview) == 3
    first = preview[0]
    assert first[0] == "000123"
    assert first[3] == rows[0][3] and first[3].startswith("0")
    assert first[2].startswith("2026-11-23")
    assert first[5] == str(rows[0][5])  # a whole number, not "2.0"


def test_preview_limits_rows_and_skips_blank_ones(tmp_path):
    path = write_report(tmp_path / "r.xlsx", n_rows=30, trailing_blank_rows=3)
    columns, preview = preview_rows(path, 3, n=5)
    assert len(columns) == 6 and len(preview) == 5
    letters, top = preview_rows(path, None, n=2)
    assert letters == ["A", "B", "C", "D", "E", "F"]
    assert top[0][0] == "Loans Per Patron From 3 Days Ago"


def test_preview_of_unreadable_file_is_empty(tmp_path):
    bad = BAD_INPUTS["truncated"](tmp_path / "t.xlsx")
    assert preview_rows(bad, 3) == ([], [])
    bomb = write_zip_bomb(tmp_path / "b.xlsx", uncompressed_mib=1100)
    assert preview_rows(bomb, 1) == ([], [])


@pytest.mark.parametrize(
    "name, values, expected",
    [
        ("Primary Identifier", [], True),
        ("Item Barcode", ["x"], True),
        ("Patron Name", [], True),
        ("UserID", [], True),
        ("PatronId", [], True),
        ("Amount Paid", ["1.50", "2"], False),
        ("E-mail", [], True),
        ("User Group", ["Faculty", "Staff"], False),
        ("User Name", [], True),
        ("Loans (Not In House)", ["1", "2", "3"], False),
        ("Title", ["Synthetic Title 1", "Synthetic Title 2"], False),
        ("Loan Date", ["2026-11-23 08:00:00"], False),
        ("Code", ["000123", "004567", "010101", "7", "000001"], True),
        ("Code", ["1234567", "2345678"], True),
        ("Reference", ["someone@example.org"], True),
        ("Count", ["1", "12", "123", "5", "0"], False),
        ("Anything", [None, "  "], False),
    ],
)
def test_identifier_like(name, values, expected):
    assert identifier_like(name, values) is expected


def test_helpers():
    assert [column_letter(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]
    assert normalize_column("  Loans  (Not In\tHouse) ") == "loans (not in house)"


# ------------------------------------------------------------------ empty results


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_data_rows_is_empty_on_an_open_day(tmp_path, engine):
    path = write_report(tmp_path / "r.xlsx", [], engine=engine)
    result = validate_file(path, report(), DELIVERED)
    assert result.status == st.EMPTY
    assert (result.rows, result.header_row) == (0, 3)
    assert "No data rows" in result.message
    assert "2026-11-23" in result.message  # the covered loan day
    assert "2026-11-30" in result.message  # rescue-by: covered + anonymize_days
    assert "re-run" in result.message


@pytest.mark.parametrize("engine", ENGINES)
def test_message_cell_below_header_counts_as_empty(tmp_path, engine):
    path = write_report(tmp_path / "r.xlsx", [], message="No Results", engine=engine)
    result = validate_file(path)
    assert (result.status, result.rows, result.header_row) == (st.EMPTY, 0, 3)
    assert "only a message" in result.message


@pytest.mark.parametrize("engine", ENGINES)
def test_title_and_message_without_table_counts_as_empty(tmp_path, engine):
    path = write_message_only(tmp_path / "r.xlsx", "No results were found", engine=engine)
    result = validate_file(path)
    assert (result.status, result.rows, result.header_row) == (st.EMPTY, 0, None)


def test_a_one_row_report_with_data_is_not_a_message(tmp_path):
    path = write_report(tmp_path / "r.xlsx", loan_rows(1))
    assert (validate_file(path).status, validate_file(path).rows) == (st.OK, 1)


def test_closed_day_makes_empty_expected(tmp_path):
    path = write_report(tmp_path / "r.xlsx", [])
    closed = report(closed_days=(DayRange(date(2026, 11, 20), date(2026, 11, 23)),))
    result = validate_file(path, closed, DELIVERED)
    assert result.status == st.EMPTY_CLOSED
    assert "closed day" in result.message
    # The day after the closure: empty is a warning again.
    later = DELIVERED.replace(day=27)
    assert validate_file(path, closed, later).status == st.EMPTY
    # Without a delivery time the covered day is unknown: never assumed closed.
    assert validate_file(path, closed, None).status == st.EMPTY


def test_closed_day_does_not_hide_a_wrong_schema(tmp_path):
    path = write_report(tmp_path / "r.xlsx", [], columns=("Patron", "Count"))
    cfg = report(
        expected_columns=("Primary Identifier",),
        closed_days=(DayRange(date(2026, 11, 23), date(2026, 11, 23)),),
    )
    assert validate_file(path, cfg, DELIVERED).status == st.SCHEMA


def test_fewer_rows_than_min_rows(tmp_path):
    path = write_report(tmp_path / "r.xlsx", n_rows=3)
    result = validate_file(path, report(min_rows=10), DELIVERED)
    assert (result.status, result.rows) == (st.EMPTY, 3)
    assert "at least 10" in result.message
    assert validate_file(path, report(min_rows=3), DELIVERED).status == st.OK
    assert validate_file(write_report(tmp_path / "z.xlsx", []), report(min_rows=0)).status == st.EMPTY


# ------------------------------------------------------------------ schema


def test_missing_expected_columns_is_schema(tmp_path):
    cols = ("Primary Identifier", "Group", "Loan Date", "Item Barcode", "Title", "Loans")
    path = write_report(tmp_path / "r.xlsx", n_rows=4, columns=cols)
    cfg = report(expected_columns=("Primary Identifier", "User Group", "Loans (Not In House)"))
    result = validate_file(path, cfg, DELIVERED)
    assert result.status == st.SCHEMA
    assert result.missing_columns == ("User Group", "Loans (Not In House)")
    assert result.header_row == 3 and result.rows == 4
    assert "'User Group'" in result.message and "'Loans (Not In House)'" in result.message
    assert "expected_columns" in result.message
    assert result.to_json()["missing_columns"] == ["User Group", "Loans (Not In House)"]


def test_no_header_at_all_with_expected_columns_is_schema(tmp_path):
    rows = [[str(i), f"x{i}"] for i in range(1, 9)]
    path = write_report(tmp_path / "r.xlsx", rows, columns=("1", "2"), header_row=1)
    result = validate_file(path, report(expected_columns=("Primary Identifier",)))
    assert result.status == st.SCHEMA
    assert result.missing_columns == ("Primary Identifier",)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kind, phrase",
    [
        ("corrupt-zip", "damaged"),
        ("truncated", "incomplete"),
        ("xls-renamed", "97-2003 (.xls)"),
        ("csv-renamed", "CSV"),
        ("encrypted", "password-protected"),
        ("no-sheets", "no sheets"),
        ("zip-bomb", "zip bomb"),
    ],
)
def test_bad_inputs_are_unreadable_with_a_clear_message(tmp_path, kind, phrase):
    path = BAD_INPUTS[kind](tmp_path / f"{kind}.xlsx")
    result = validate_file(path)
    assert result.status == st.UNREADABLE
    assert phrase in result.message
    assert result.rows is None and result.header_row is None
    assert st.severity(result.status) == st.Exit.CRITICAL
    # every message says what to do
    assert any(w in result.message for w in ("again", "Re-run", "re-run", "save it", "Excel", "Delete", "Ask", "ask"))


def test_zip_bomb_by_ratio_is_refused_before_reading(tmp_path):
    # 128 MiB of spaces in 128 KiB: below the absolute limit, refused for its ratio.
    path = write_zip_bomb(tmp_path / "b.xlsx", uncompressed_mib=128)
    with zipfile.ZipFile(path) as zf:
        assert max(i.file_size for i in zf.infolist()) == 128 << 20
    result = validate_file(path)
    assert result.status == st.UNREADABLE
    assert "was not opened" in result.message


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_first_sheet(tmp_path, engine):
    path = write_empty_first_sheet(tmp_path / "e.xlsx", engine=engine)
    result = validate_file(path)
    assert (result.status, result.rows, result.header_row) == (st.EMPTY, 0, None)
    assert "blank" in result.message
    other = write_empty_first_sheet(tmp_path / "o.xlsx", engine=engine, second_sheet_rows=4)
    result = validate_file(other)
    assert result.status == st.EMPTY
    assert "2 sheets" in result.message


def test_missing_path_folder_and_zero_byte_file(tmp_path):
    missing = validate_file(tmp_path / "nope.xlsx")
    assert missing.status == st.UNREADABLE and "does not exist" in missing.message
    folder = validate_file(tmp_path)
    assert folder.status == st.UNREADABLE and "folder" in folder.message
    zero = tmp_path / "zero.xlsx"
    zero.write_bytes(b"")
    result = validate_file(zero)
    assert result.status == st.UNREADABLE and "0 bytes" in result.message


def test_other_formats_named_xlsx(tmp_path):
    html = tmp_path / "h.xlsx"
    html.write_text("<html><body><table><tr><td>1</td></tr></table></body></html>")
    assert "HTML" in validate_file(html).message
    docx = tmp_path / "d.xlsx"
    with zipfile.ZipFile(docx, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<document/>")
    result = validate_file(docx)
    assert result.status == st.UNREADABLE and "Word document" in result.message
    binary = tmp_path / "b.xlsx"
    binary.write_bytes(bytes(range(256)) * 8)
    assert validate_file(binary).status == st.UNREADABLE


def test_damaged_files_never_raise(tmp_path):
    """Cut and bit-flipped copies of a real report: always a result, never a traceback."""
    good = write_report(tmp_path / "good.xlsx", n_rows=40).read_bytes()
    variants = [good[:n] for n in range(0, len(good), max(1, len(good) // 25))]
    for i in range(25):
        flipped = bytearray(good)
        at = (i * 7919) % len(flipped)
        for j in range(at, min(at + 16, len(flipped))):
            flipped[j] ^= 0xA5
        variants.append(bytes(flipped))
    statuses = set()
    for i, data in enumerate(variants):
        p = tmp_path / f"v{i}.xlsx"
        p.write_bytes(data)
        result = validate_file(p)
        assert result.status in st.VALIDATOR_STATUSES
        assert result.message
        statuses.add(result.status)
    assert st.UNREADABLE in statuses


def test_cell_values_never_reach_messages_or_logs(tmp_path, caplog):
    secret_id, secret_title = "000987654321", "Synthetic Secret Title"
    rows = loan_rows(3)
    rows[0][0], rows[1][4] = secret_id, secret_title
    cases = [
        (write_report(tmp_path / "ok.xlsx", rows), None),
        (write_report(tmp_path / "schema.xlsx", rows), report(expected_columns=("Nope",))),
        (write_report(tmp_path / "min.xlsx", rows), report(min_rows=50)),
        (write_report(tmp_path / "msg.xlsx", [], message=secret_title), None),
        (write_message_only(tmp_path / "only.xlsx", secret_title), None),
    ]
    # The product logger may not propagate (tui.core.logs): listen on it directly.
    product = logging.getLogger("report_keeper")
    product.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="report_keeper"):
            results = [validate_file(p, r, DELIVERED) for p, r in cases]
    finally:
        product.removeHandler(caplog.handler)
    text = " ".join(r.message for r in results) + caplog.text
    assert secret_id not in text and secret_title not in text
    assert "ok.xlsx" in caplog.text  # file names and statuses are logged


def test_validate_many_keeps_order_and_isolates_bad_files(tmp_path):
    items = []
    for i in range(6):
        p = write_report(tmp_path / f"r{i}.xlsx", n_rows=i + 1)
        items.append((p, None, None, {}))
    items.insert(2, (BAD_INPUTS["truncated"](tmp_path / "t.xlsx"), None, None, {}))
    results = validate_many(items, max_workers=3)
    assert [r.name for r in results] == [Path(p).name for p, *_ in items]
    assert [r.rows for r in results] == [1, 2, None, 3, 4, 5, 6]
    assert results[2].status == st.UNREADABLE
    assert validate_many([]) == []


def test_core_validate_does_not_import_textual():
    import subprocess
    import sys

    code = "import tui.core.validate, sys; assert 'textual' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
