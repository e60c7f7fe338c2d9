"""The baseline for benchmarks/verify_year.py: the same checks as `report-keeper verify --json`,
written the plain way with openpyxl (read-only mode, the fastest openpyxl offers).

    python benchmarks/openpyxl_verify.py PATH... > result.json

For each .xlsx (folders: their *.xlsx/*.xlsm files): open the first sheet, find the header row
(first row with at least two non-empty text cells in the first 40 rows), count the non-blank
rows below it, treat one-cell rows only as a message (empty), and print one JSON document with
status, rows and header_row per file. Unreadable files are caught and reported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import openpyxl


def _text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _filled(row) -> int:
    return sum(1 for v in row if v is not None and not (isinstance(v, str) and not v.strip()))


def verify(path: Path) -> dict:
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - baseline: any failure is "unreadable"
        return {"name": path.name, "status": "unreadable", "rows": None, "header_row": None,
                "message": type(exc).__name__}
    try:
        if not wb.sheetnames:
            return {"name": path.name, "status": "unreadable", "rows": None, "header_row": None, "message": "no sheets"}
        ws = wb.worksheets[0]
        header = None
        rows = 0
        one_cell_rows = 0
        for i, row in enumerate(ws.iter_rows(values_only=True)):
            if header is None:
                if i < 40 and sum(1 for v in row if _text(v)) >= 2:
                    header = i
                continue
            n = _filled(row)
            if n:
                rows += 1
                one_cell_rows += n == 1
        if header is None:
            return {"name": path.name, "status": "empty", "rows": 0, "header_row": None, "message": "no table"}
        if rows and rows <= 3 and one_cell_rows == rows:
            rows = 0
        status = "ok" if rows >= 1 else "empty"
        return {"name": path.name, "status": status, "rows": rows, "header_row": header + 1, "message": ""}
    except Exception as exc:  # noqa: BLE001 - baseline: any failure is "unreadable"
        return {"name": path.name, "status": "unreadable", "rows": None, "header_row": None,
                "message": type(exc).__name__}
    finally:
        wb.close()


def main(argv: list[str]) -> int:
    files: list[Path] = []
    for raw in argv:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(c for c in p.iterdir() if c.suffix.lower() in (".xlsx", ".xlsm")))
        else:
            files.append(p)
    results = [verify(p) for p in files]
    bad = any(r["status"] == "unreadable" for r in results)
    empty = any(r["status"] == "empty" for r in results)
    status = "critical" if bad else "warning" if empty else "ok"
    sys.stdout.write(json.dumps({"status": status, "files": results}) + "\n")
    return 2 if bad else 1 if empty else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
