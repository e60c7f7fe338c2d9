"""Varied workbooks whose worker verdicts are pinned in tests/verify_verdicts.json.

The verdict of each file (status, message, counts, header row, columns, fingerprint, date
column and days) was recorded once from the workbook worker; ``test_verify_verdicts`` asks a
worker again and requires the very same fields, so a faster pre-check or reader path cannot
change what a delivery is judged. All data is synthetic.

    write_corpus(folder) -> {name: (Path, rules)}
    record(folder, out)   # write the verdicts file again (only when a verdict is meant to change)
"""

from __future__ import annotations

import json
import random
import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

from tests.hostile_workbooks import MAIN, inline_row, package, sheet
from tests.xlsx_factory import (
    loan_rows,
    write_empty_first_sheet,
    write_message_only,
    write_report,
)

VERDICTS = Path(__file__).with_name("verify_verdicts.json")

Rules = dict[str, object]


def loans_7000(path: Path) -> Path:
    """A large delivery (benchmarks/sync_process.py's real workbooks): 7,000 rows of made-up
    loans, numbers, date cells, unique codes."""
    import xlsxwriter

    rng = random.Random(14)
    book = xlsxwriter.Workbook(str(path), {"in_memory": True})
    ws = book.add_worksheet("Loans")
    dates = book.add_format({"num_format": "yyyy-mm-dd"})
    for col, title in enumerate(("Loan Id", "Loan Date", "Item Barcode", "User Group", "Loans")):
        ws.write(0, col, title)
    for row in range(1, 7001):
        ws.write_number(row, 0, 1_000_000 + row)
        ws.write_datetime(row, 1, datetime(2026, 5, 29) + timedelta(minutes=rng.randrange(1440)), dates)
        ws.write_string(row, 2, f"39{rng.randrange(10**10):010d}")
        ws.write_string(row, 3, rng.choice(("Undergraduate", "Graduate", "Faculty", "Staff")))
        ws.write_number(row, 4, rng.randrange(1, 9))
    book.close()
    return path


def _mixed(path: Path) -> Path:
    """Blanks inside rows and columns, floats, booleans, whitespace cells, long and unique
    texts, dates of several days, a blank row inside the table."""
    import xlsxwriter

    rng = random.Random(3)
    book = xlsxwriter.Workbook(str(path), {"in_memory": True})
    ws = book.add_worksheet("Mixed")
    day = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    ws.write(0, 0, "Report title")
    for col, title in enumerate(("Id", "Return Date", "Amount", "Flag", "Note", "Due date")):
        ws.write(2, col, title)
    for row in range(3, 1503):
        if row == 700:
            continue
        if rng.random() > 0.1:
            ws.write_string(row, 0, f"{rng.randrange(10**8):08d}")
        if rng.random() > 0.2:
            ws.write_datetime(row, 1, datetime(2026, 3, 1 + rng.randrange(5), rng.randrange(24)), day)
        ws.write_number(row, 2, rng.random() * 1000)
        if row % 3:
            ws.write_boolean(row, 3, bool(row % 2))
        ws.write_string(row, 4, "  " if row % 17 == 0 else "note " + "x" * rng.randrange(300))
        if row % 5:
            ws.write_datetime(row, 5, datetime(2026, 4, 1) + timedelta(days=row % 40), day)
    book.close()
    return path


def _many_strings(path: Path) -> Path:
    """Shared strings over 1 MiB (several inflate chunks), with namespace-prefixed tags, one
    string of 20 KiB referenced a few times and another just under 16 KiB."""
    strings = [f"<x:si><x:t>Title {i} {'y' * (i % 50)}</x:t></x:si>" for i in range(40_000)]
    strings[5] = f"<x:si><x:t>{'L' * 20_000}</x:t></x:si>"
    strings[39_000] = f"<x:si><x:r><x:t>{'M' * 16_000}</x:t></x:r></x:si>"
    sst = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><x:sst xmlns:x="{MAIN}" '
        f'count="{len(strings)}" uniqueCount="{len(strings)}">{"".join(strings)}</x:sst>'
    ).encode()
    rows = ['<row r="1"><c r="A1" t="inlineStr"><is><t>Title</t></is></c>'
            '<c r="B1" t="inlineStr"><is><t>Copies</t></is></c></row>']
    for r in range(2, 3002):
        idx = 5 if r % 500 == 0 else 39_000 if r % 700 == 0 else (r * 13) % 40_000
        rows.append(f'<row r="{r}"><c r="A{r}" t="s"><v>{idx}</v></c><c r="B{r}"><v>{r % 7}</v></c></row>')
    return package(path, sheet("".join(rows), dimension="A1:B3001"), sst=sst)


def _far_column(path: Path) -> Path:
    """A three-letter column (ABC, inside Excel's grid: the pre-check looks at it twice) and
    7-digit numbers as values."""
    body = (
        inline_row(1, ("Name", "Value"))
        + '<row r="2"><c r="A2" t="inlineStr"><is><t>a</t></is></c><c r="B2"><v>1234567</v></c>'
        '<c r="ABC2" t="inlineStr"><is><t>far column</t></is></c></row>'
    )
    return package(path, sheet(body, dimension="A1:ABC2"))


def _far_row(path: Path) -> Path:
    """A seven-digit row (1,000,001, inside Excel's grid)."""
    body = (
        inline_row(1, ("Name", "Value"))
        + '<row r="1000001"><c r="A1000001" t="inlineStr"><is><t>far row</t></is></c></row>'
    )
    return package(path, sheet(body, dimension="A1:B1000001"))


def _stored(path: Path) -> Path:
    """A report whose parts are stored, not deflated."""
    src = write_report(path.with_suffix(".src.xlsx"), n_rows=20)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    src.unlink()
    return path


def write_corpus(folder: str | Path) -> dict[str, tuple[Path, Rules]]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = folder.joinpath
    strict: Rules = {"expected": ["Loan Id", "Item Barcode"], "date_column": "Loan Date",
                     "min_rows": 10, "covered": "2026-05-29"}
    cases: dict[str, tuple[Path, Rules]] = {}
    big = loans_7000(p("loans-7000.xlsx"))
    cases["loans-7000"] = (big, {})
    cases["loans-7000-rules"] = (big, strict)
    cases["loans-7000-missing"] = (big, {"expected": ["Patron"], "min_rows": 3})
    cases["loans-7000-no-date"] = (big, {"date_column": ""})
    cases["loans-7000-wrong-date"] = (big, {"date_column": "Due"})
    cases["demo-100"] = (write_report(p("demo-100.xlsx"), n_rows=100), {})
    cases["openpyxl-50"] = (write_report(p("openpyxl-50.xlsx"), n_rows=50, engine="openpyxl", header_row=1), {})
    cases["subtitle-blank-tail"] = (
        write_report(p("subtitle.xlsx"), n_rows=30, subtitle="Run 2026-11-23", trailing_blank_rows=4,
                     engine="openpyxl"), {"min_rows": 40})
    cases["no-rows"] = (write_report(p("no-rows.xlsx"), rows=[]),
                        {"covered": "2026-11-23", "rescue_by": "2026-11-30"})
    cases["no-results"] = (write_report(p("no-results.xlsx"), rows=[], message="No Results"), {})
    cases["message-only"] = (write_message_only(p("message-only.xlsx")), {"covered": "2026-11-23", "closed": True})
    cases["blank-first-sheet"] = (write_empty_first_sheet(p("blank-first.xlsx"), second_sheet_rows=5), {})
    cases["no-header"] = (write_report(p("no-header.xlsx"), rows=[[i, i * 2, i * 3] for i in range(60)],
                                       columns=(), header_row=1, title=""), {})
    cases["rows-other-day"] = (write_report(p("other-day.xlsx"), rows=loan_rows(40, day=date(2026, 11, 20))),
                               {"covered": "2026-11-23"})
    cases["mixed"] = (_mixed(p("mixed.xlsx")), {})
    cases["mixed-due"] = (p("mixed.xlsx"), {"date_column": "Due date"})
    cases["many-strings"] = (_many_strings(p("many-strings.xlsx")), {})
    cases["far-column"] = (_far_column(p("far-column.xlsx")), {})
    cases["far-row"] = (_far_row(p("far-row.xlsx")), {})
    cases["stored"] = (_stored(p("stored.xlsx")), {})
    return cases


def record(folder: str | Path, out: Path = VERDICTS) -> None:
    """Ask a worker for every verdict (of the corpus and the hostile cases) and write them."""
    from tests.test_verify_verdicts import verdicts_of  # a maintenance helper: imported when used

    out.write_text(json.dumps(verdicts_of(Path(folder)), indent=1, sort_keys=True) + "\n")
