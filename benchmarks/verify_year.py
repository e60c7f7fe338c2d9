"""Benchmark: `report-keeper verify --json` against a plain openpyxl script.

    .venv/bin/python benchmarks/verify_year.py [--repeat 3] [--keep DIR]

Generates, into a temporary folder, a year of daily Alma-shaped reports (365 files of 50 rows,
header on row 3 under a merged title) and one report of 100,000 rows. Then times, in the same
run, whole processes (interpreter start-up included) of

    report-keeper verify --json DIR                 (fastexcel, in isolated worker processes)
    python benchmarks/openpyxl_verify.py DIR        (openpyxl read-only, same checks)

`verify` always reads workbooks in worker processes with memory and time limits (there is no
way to turn that off), so the figures include starting the workers and the pre-checks.

and prints each best-of-N wall time and the ratios. Targets: year <= 0.25x openpyxl's time,
100k-row file <= 0.15x. The two outputs are cross-checked (same row counts) so a fast wrong
answer cannot pass. Exit status 0 when both targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.xlsx_factory import LOANS_COLUMNS, TITLE, daily_names, loan_rows, write_report  # noqa: E402 - after sys.path names the repository

TARGET_YEAR = 0.25
TARGET_BIG = 0.15
BASE = "Loans Per Patron From 3 Days Ago"


def generate_year(folder: Path) -> None:
    for i, (name, day) in enumerate(daily_names(BASE, date(2025, 11, 29), 365)):
        write_report(folder / name, loan_rows(50, day=day - timedelta(days=3), seed=i))


def generate_big(folder: Path, n: int = 100_000) -> None:
    import xlsxwriter

    wb = xlsxwriter.Workbook(
        str(folder / f"{BASE}_20261129_070004.xlsx"), {"constant_memory": True}
    )
    ws = wb.add_worksheet("Loans")
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    ws.write_string(0, 0, TITLE)
    ws.write_row(2, 0, LOANS_COLUMNS)
    chunk = 5000
    for start in range(0, n, chunk):
        for j, row in enumerate(loan_rows(min(chunk, n - start), seed=start)):
            r = 3 + start + j
            ws.write_string(r, 0, row[0])
            ws.write_string(r, 1, row[1])
            ws.write_datetime(r, 2, row[2], date_fmt)
            ws.write_string(r, 3, row[3])
            ws.write_string(r, 4, row[4])
            ws.write_number(r, 5, row[5])
    wb.close()


def run_once(cmd: list[str]) -> tuple[float, float, dict]:
    """Wall time, CPU time (user+sys of the child) and the parsed JSON of one whole process."""
    env = dict(os.environ, REPORT_KEEPER_CONFIG=os.devnull + ".absent")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1, 2):
        sys.exit(f"{' '.join(cmd[:3])}... failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(proc.stdout)


def compare(ours_cmd: list[str], theirs_cmd: list[str], repeat: int):
    """Best-of-``repeat`` wall and CPU times of both commands, runs interleaved so that both
    see the same machine load."""
    best = {"ours": [float("inf"), float("inf")], "theirs": [float("inf"), float("inf")]}
    docs = {}
    for _ in range(repeat):
        for key, cmd in (("ours", ours_cmd), ("theirs", theirs_cmd)):
            wall, cpu, docs[key] = run_once(cmd)
            best[key][0] = min(best[key][0], wall)
            best[key][1] = min(best[key][1], cpu)
    return best["ours"], best["theirs"], docs["ours"], docs["theirs"]


def rows_by_name(doc: dict) -> dict[str, int | None]:
    return {f["name"]: f["rows"] for f in doc["files"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    ap.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it")
    args = ap.parse_args()

    venv_bin = Path(sys.executable).parent
    rk = shutil.which("report-keeper", path=str(venv_bin)) or shutil.which("report-keeper")
    if rk is None:
        sys.exit("report-keeper is not installed in this environment; run `make test` or pip install -e .")
    baseline = [sys.executable, str(ROOT / "benchmarks" / "openpyxl_verify.py")]

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rk-bench-"))
    year, big = tmp / "year", tmp / "big"
    try:
        for d in (year, big):
            d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if not any(year.iterdir()):
            generate_year(year)
        if not any(big.iterdir()):
            generate_big(big)
        print(f"generated test data in {time.perf_counter() - t0:.1f} s ({tmp})")

        results = {}
        for label, folder in (("year (365 x 50 rows)", year), ("one file, 100,000 rows", big)):
            ours, theirs, ours_doc, theirs_doc = compare(
                [rk, "verify", "--json", str(folder)], baseline + [str(folder)], args.repeat
            )
            if rows_by_name(ours_doc) != rows_by_name(theirs_doc):
                sys.exit(f"{label}: report-keeper and the openpyxl baseline disagree on row counts")
            results[label] = (ours, theirs)

        print(f"\n{'case':<24} {'report-keeper':>14} {'openpyxl':>10} {'ratio':>7} {'target':>7}   cpu ratio")
        ok = True
        for (label, (ours, theirs)), target in zip(results.items(), (TARGET_YEAR, TARGET_BIG), strict=True):
            ratio = ours[0] / theirs[0]
            ok &= ratio <= target
            mark = "ok" if ratio <= target else "MISSED"
            print(
                f"{label:<24} {ours[0]:>12.2f} s {theirs[0]:>8.2f} s {ratio:>7.3f} {target:>6.2f}  "
                f"{mark:<6} {ours[1] / theirs[1]:.3f} ({ours[1]:.2f} s / {theirs[1]:.2f} s)"
            )
        print(f"(wall: best of {args.repeat} interleaved whole-process runs; {os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.1f})")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
