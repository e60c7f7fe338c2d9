"""Benchmark: `report-keeper export` against the obvious pandas script, and its memory.

    .venv/bin/python benchmarks/export_year.py [--repeat 2] [--keep DIR]

Generates, into a temporary folder, a year of daily Alma-shaped reports (365 files of 1,000
rows, header on row 3 under a merged title, written alternately by xlsxwriter and openpyxl as
tests/xlsx_factory.py writes them), records them in a ledger as `sync` would (listing,
downloads, verification), then measures, in the same run:

1. cold export, whole processes side by side, runs interleaved, best of N:
       report-keeper export --out year.parquet        (the export cache deleted before each run)
       python benchmarks/pandas_export.py DIR out.parquet   (read_excel each file, concat, to_parquet)
   target: ours <= 0.2x pandas. The two tables are cross-checked (rows, identifiers).
2. re-export after one new day: the 366th file is delivered and recorded; the export must read
   that one workbook (its JSON says files_read = 1) and is timed;
3. peak resident memory of the export's own process (the workers are separate, limited
   processes and reported apart) for 90, 180 and 365 files (warm cache) and for the cold
   365-file run: target < 300 MB, flat in the number of files.

Exit status 0 when the targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.xlsx_factory import ENGINES, loan_rows, write_report  # noqa: E402

TARGET_RATIO = 0.2
TARGET_RSS = 300 * 2**20
BASE = "Loans Per Patron From 3 Days Ago"
TZ = ZoneInfo("America/Chicago")
FIRST = date(2025, 12, 1)
DAYS = 365
ROWS = 1000
NOW = datetime.combine(FIRST + timedelta(days=DAYS), dtime(8, 0), tzinfo=TZ)  # the next run is pending
CONFIG = f"""\
[profile.default]
host = "127.0.0.1"
port = 9
username = "alma"
local_dir = "local"
ledger = "ledger.sqlite3"
timezone = "America/Chicago"

[[profile.default.report]]
name = "{BASE}"
schedule = "daily"
at = "07:00"
lag_days = 3
"""

# Runs the export in this very process so that its own peak RSS (RUSAGE_SELF) and the peak of
# its workers (RUSAGE_CHILDREN) can be told apart; the same entry point as the command.
MEASURE = """\
import json, resource, sys
from tui.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}),
      file=sys.stderr)
"""


def name_of(day: date) -> str:
    return f"{BASE}_{day:%Y%m%d}_070500.xlsx"


def generate(archive: Path, days: int) -> None:
    for i in range(days):
        day = FIRST + timedelta(days=i)
        path = archive / name_of(day)
        if not path.exists():
            write_report(path, loan_rows(ROWS, day=day - timedelta(days=3), seed=i), engine=ENGINES[i % 2])


def record(base: Path, archive: Path, days: range, now: datetime) -> None:
    """Place the files in local_dir and record them as `sync` would: listing, download, verify."""
    from tui.core.config import load_config
    from tui.core.ledger import Ledger
    from tui.core.local_reports import find_local_reports, verify_local
    from tui.core.model import RemoteFile

    profile = load_config(base / "config.toml").profile()
    local = base / "local"
    local.mkdir(mode=0o700, exist_ok=True)
    ledger = Ledger.open(profile.ledger_path)
    try:
        listing = []
        for i in range(days.stop):
            day = FIRST + timedelta(days=i)
            at = datetime.combine(day, dtime(7, 5), tzinfo=TZ).astimezone(UTC)
            listing.append(RemoteFile(name_of(day), (archive / name_of(day)).stat().st_size, at))

        def report_of(f):
            report, parsed = profile.classify(f.name, f.mtime)
            return report.name, parsed.delivered_at or f.mtime

        ledger.record_listing(None, report_of, listing, when=now)
        for i in days:
            f = listing[i]
            target = local / f.name
            shutil.copyfile(archive / f.name, target)
            target.chmod(0o600)
            sha = hashlib.sha256(target.read_bytes()).hexdigest()
            ledger.record_download(f.name, size=f.size, sha256=sha, local_path=str(target), mtime=f.mtime, when=now)
        items = [it for it in find_local_reports(local, profile, ledger) if it.name in {listing[i].name for i in days}]
        bad = [o.result.name for o in verify_local(items, ledger) if o.result.status != "ok"]
        if bad:
            sys.exit(f"the generated reports should verify ok: {bad[:3]}")
    finally:
        ledger.close()


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd[:3])}... failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc


def compare(ours: str, theirs: str) -> int:
    """Print whether the two tables hold the same rows and identifiers (as JSON)."""
    import polars as pl

    a, b = pl.read_parquet(ours), pl.read_parquet(theirs)
    # pandas reads identifier text such as "000123456" as the number 123456 (the leading zeros
    # are lost); compared as numbers, the two tables must hold the same identifiers.
    same = a.height == b.height and a["Primary Identifier"].cast(pl.Int64).sort().equals(
        b["Primary Identifier"].cast(pl.Int64).sort(), check_names=False)
    print(json.dumps({"same": bool(same), "rows": a.height,
                      "zeros": int(a["Primary Identifier"].str.starts_with("0").sum()),
                      "pandas_type": str(b.schema["Primary Identifier"])}))
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        return compare(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2, help="best of N cold runs of each (default 2)")
    ap.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it (reused next time)")
    args = ap.parse_args()

    venv_bin = Path(sys.executable).parent
    rk = shutil.which("report-keeper", path=str(venv_bin)) or shutil.which("report-keeper")
    if rk is None:
        sys.exit("report-keeper is not installed in this environment; run `make bench`")
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        sys.exit("pandas and pyarrow are needed for the baseline: run `make bench` (the 'bench' extra)")

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rk-export-bench-"))
    archive, base = tmp / "archive", tmp / "home"
    try:
        archive.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        generate(archive, DAYS + 1)
        print(f"generated {DAYS + 1} workbooks of {ROWS:,} rows in {time.perf_counter() - t0:.1f} s ({tmp})")
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        (base / "config.toml").write_text(CONFIG)
        year = base / "year-only"  # what the pandas script reads: exactly the 365 files
        year.mkdir()
        for i in range(DAYS):
            os.link(archive / name_of(FIRST + timedelta(days=i)), year / name_of(FIRST + timedelta(days=i)))
        t0 = time.perf_counter()
        record(base, archive, range(DAYS), NOW)
        print(f"recorded and verified them in a ledger in {time.perf_counter() - t0:.1f} s")

        env = dict(os.environ, REPORT_KEEPER_NOW=NOW.isoformat(), XDG_DATA_HOME=str(base / "data"),
                   XDG_STATE_HOME=str(base / "state"))
        cache = base / "ledger.sqlite3-export-cache"
        ours_cmd = [rk, "export", "--config", str(base / "config.toml"), "--out", str(base / "ours.parquet"),
                    "--force", "--json"]
        theirs_cmd = [sys.executable, str(ROOT / "benchmarks" / "pandas_export.py"), str(year),
                      str(base / "theirs.parquet")]

        # 1. cold, side by side
        best = {"ours": float("inf"), "theirs": float("inf")}
        doc: dict = {}
        for _ in range(args.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            wall, proc = timed(ours_cmd, env)
            best["ours"] = min(best["ours"], wall)
            doc = json.loads(proc.stdout)
            wall, proc = timed(theirs_cmd, env)
            best["theirs"] = min(best["theirs"], wall)
        if doc["files_read"] != DAYS or doc["rows"] != DAYS * ROWS:
            sys.exit(f"the export read {doc['files_read']} files and wrote {doc['rows']} rows; "
                     f"expected {DAYS} and {DAYS * ROWS}")
        ratio = best["ours"] / best["theirs"]
        # The tables are compared in a process of their own: this one stays small, so the
        # processes it starts below do not inherit a large peak (Linux keeps a process's peak
        # resident size across exec, and a fork starts with the parent's).
        _, proc = timed([sys.executable, __file__, "--compare", str(base / "ours.parquet"),
                         str(base / "theirs.parquet")], env)
        compared = json.loads(proc.stdout)
        if not compared["same"]:
            sys.exit("report-keeper and the pandas script disagree on the table")

        # 3. memory: the cold run, then warm runs over 90, 180 and 365 files
        measure = [sys.executable, "-c", MEASURE, "export", "--config", str(base / "config.toml"),
                   "--out", str(base / "mem.parquet"), "--force", "--json"]
        memory = []
        shutil.rmtree(cache, ignore_errors=True)
        for label, extra in (("365 files, cold", []),
                             ("90 files, cached", ["--since", str(FIRST + timedelta(days=DAYS - 93))]),
                             ("180 files, cached", ["--since", str(FIRST + timedelta(days=DAYS - 183))]),
                             ("365 files, cached", [])):
            _, proc = timed(measure + extra, env)
            stats = json.loads(proc.stderr.strip().splitlines()[-1])
            files = json.loads(proc.stdout)["files"]
            memory.append((label, files, stats["self"], stats["workers"]))

        # 2. one new day
        record(base, archive, range(DAYS, DAYS + 1), NOW + timedelta(days=1))
        env_next = dict(env, REPORT_KEEPER_NOW=(NOW + timedelta(days=1)).isoformat())
        wall_new, proc = timed(ours_cmd, env_next)
        again = json.loads(proc.stdout)
        if again["files_read"] != 1 or again["files"] != DAYS + 1:
            sys.exit(f"after one new day the export read {again['files_read']} workbooks (expected 1)")

        print(f"\n{'cold export, 365 x 1,000 rows':<34} {'report-keeper':>14} {'pandas':>9} {'ratio':>7} {'target':>7}")
        ok_ratio = ratio <= TARGET_RATIO
        print(f"{'':<34} {best['ours']:>12.2f} s {best['theirs']:>7.2f} s {ratio:>7.3f} {TARGET_RATIO:>6.2f}  "
              f"{'ok' if ok_ratio else 'MISSED'}")
        print(f"(same {compared['rows']:,} rows; {compared['zeros']:,} identifiers keep their leading zeros "
              f"here, pandas made them {compared['pandas_type']})")
        print(f"re-export after one new day: {wall_new:.2f} s, {again['files_read']} workbook read, "
              f"{again['files_from_cache']} from the cache")
        print(f"\n{'peak resident memory':<34} {'export process':>15} {'largest worker':>15}")
        ok_rss = True
        for label, files, own, workers in memory:
            ok_rss &= own < TARGET_RSS
            print(f"{label:<34} {own / 2**20:>12.0f} MB {workers / 2**20:>12.0f} MB   ({files} files)")
        print(f"target: the export process < {TARGET_RSS // 2**20} MB, flat in the number of files: "
              f"{'ok' if ok_rss else 'MISSED'}")
        print(f"(wall: best of {args.repeat} interleaved whole-process runs; {os.cpu_count()} CPUs; "
              f"load average {os.getloadavg()[0]:.1f})")
        return 0 if ok_ratio and ok_rss else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
