"""Benchmark: `report-keeper check --offline` over 11 years of daily deliveries.

    .venv/bin/python benchmarks/check_history.py [--years 11] [--runs 5] [--baseline DIR]
                                                  [--ahead-years N]

Builds a ledger holding ``years`` of one daily report (one delivery a day, listed, downloaded
and verified; every verification with a row fingerprint and date coverage, as the content
checks record them, including a stale repeat, a wrong-day file and a few-rows day near the end),
then times, as whole processes (interpreter start-up included), best of ``runs``:

    report-keeper check --offline --json        (this tree)
    report-keeper check --offline               (the human output)
    the same commands of the tree in --baseline (e.g. a checkout of an earlier release, made
                                                 with: git archive main | tar -x -C DIR)

``--ahead-years N`` moves the clock N years past the last delivery: the report has stopped,
and the evaluation walks N years of missing runs (each one a run and, within its
``retention_days``, a problem), the JSON document lists them all.

Each tree builds its own ledger (an older release refuses a newer ledger), in a subprocess with
that tree first on PYTHONPATH. It also times the health evaluation alone (``evaluate`` over the
ledger's deliveries, in process, best of ``runs``) for each tree. Figures are printed as one
JSON document on stdout (human lines on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BUILD = r"""
import hashlib, json, sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo
from tui.core.ledger import Ledger, verification_context
from tui.core.model import RemoteFile, VerifyResult
try:
    from tui.core.content import DateCoverage
except ImportError:  # a release without the content checks
    DateCoverage = None

folder, years = Path(sys.argv[1]), int(sys.argv[2])
tz = ZoneInfo("America/Chicago")
now = datetime(2026, 12, 11, 10, 0, tzinfo=tz)
first = now.date() - timedelta(days=365 * years)
(folder / "local").mkdir(parents=True, exist_ok=True)
(folder / "config.toml").write_text(f'''
[profile.default]
host = "127.0.0.1"
remote_dir = "reports"
local_dir = "{folder / 'local'}"
ledger = "{folder / 'ledger.sqlite3'}"
timezone = "America/Chicago"

[[profile.default.report]]
name = "Loans"
schedule = "daily"
at = "07:00"
''')
led = Ledger.open(folder / "ledger.sqlite3")
files, downloads, results = [], [], []
day, i = first, 0
while day <= now.date():
    at = datetime.combine(day, time(7, 4), tzinfo=tz)
    name = f"Loans_{at:%Y%m%d_%H%M%S}.xlsx"
    covered = day - timedelta(days=3)
    rows = (15 if covered.weekday() == 6 else 30 if covered.weekday() == 5 else 100 + i % 20)
    loan_day = covered
    fp = hashlib.sha256(name.encode()).hexdigest()
    if day == now.date() - timedelta(days=2):
        fp = results[-1][1]["fingerprint"]  # a stale repeat
    if day == now.date() - timedelta(days=1):
        loan_day = covered - timedelta(days=1)  # wrong day
    if day == now.date():
        rows = 8  # few rows
    sha = hashlib.sha256(b"x" + name.encode()).hexdigest()
    with open(folder / "local" / name, "wb") as fh:  # the held copy (check looks at its size only)
        fh.truncate(10_000)
    files.append(RemoteFile(name, 10_000, at.astimezone(timezone.utc)))
    downloads.append({"name": name, "size": 10_000, "sha256": sha, "local_path": str(folder / "local" / name),
                      "mtime": at, "when": at + timedelta(minutes=30)})
    extra = {}
    if DateCoverage is not None:
        extra = {"fingerprint": fp, "date_column": "Loan Date",
                 "dates": DateCoverage("Loan Date", rows, 0, loan_day, loan_day, ((loan_day, rows),), 1)}
    results.append((VerifyResult(path=str(folder / "local" / name), name=name, report="Loans",
                                 delivered_at=at, status="ok", rows=rows, header_row=3, **extra),
                    {"sha": sha, "fingerprint": fp}))
    day += timedelta(days=1)
    i += 1
led.record_listing(None, lambda f: ("Loans", f.mtime), files, when=now)
led.record_downloads(downloads)
for result, meta in results:
    led.record_verification(result, sha256=meta["sha"], when=now)
led.close()
print(json.dumps({"deliveries": len(files)}))
"""

EVALUATE = r"""
import json, sys, time
from pathlib import Path
from tui.core.config import load_config
from tui.core.health import evaluate
from tui.core.ledger import Ledger
folder, runs = Path(sys.argv[1]), int(sys.argv[2])
profile = load_config(folder / "config.toml").profile()
led = Ledger.open(profile.ledger_path)
best = read = None
for _ in range(runs):
    t0 = time.perf_counter()
    items = led.deliveries()
    t1 = time.perf_counter()
    health = evaluate(profile, items)
    t2 = time.perf_counter()
    best = min(best or 1e9, t2 - t1)
    read = min(read or 1e9, t1 - t0)
print(json.dumps({"evaluate_s": best, "ledger_read_s": read, "problems": len(health.problems)}))
"""


def env_for(tree: Path, now: str = "2026-12-11T10:00:00-06:00") -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env["REPORT_KEEPER_NOW"] = now
    return env


def measure(tree: Path, years: int, runs: int, ahead_years: int = 0) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="check-history-"))
    env = env_for(tree)
    # cwd: the folder, so that "-c" code imports the tree on PYTHONPATH, not the current one
    built = json.loads(subprocess.run([sys.executable, "-c", BUILD, str(folder), str(years)], env=env,
                                      capture_output=True, text=True, check=True, cwd=folder).stdout)
    env = env_for(tree, f"{2026 + ahead_years}-12-11T10:00:00-06:00")
    cmd = [sys.executable, "-m", "tui", "check", "--config", str(folder / "config.toml"), "--offline"]
    times, human_times = [], []
    doc = None
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, cwd=folder)
        times.append(time.perf_counter() - t0)
        doc = json.loads(proc.stdout)
        size = len(proc.stdout.encode())
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=folder)
        human_times.append(time.perf_counter() - t0)
    inner = json.loads(subprocess.run([sys.executable, "-c", EVALUATE, str(folder), str(runs)], env=env,
                                      capture_output=True, text=True, check=True, cwd=folder).stdout)
    from collections import Counter

    kinds = dict(sorted(Counter(p["kind"] for r in doc["reports"] for p in r["problems"]).items()))
    return {"tree": str(tree), "deliveries": built["deliveries"], "ahead_years": ahead_years,
            "runs": sum(len(r["runs"]) for r in doc["reports"]), "json_bytes": size,
            "check_process_s": min(times), "check_human_process_s": min(human_times),
            "evaluate_s": inner["evaluate_s"], "ledger_read_s": inner["ledger_read_s"], "kinds": kinds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--years", type=int, default=11)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another source tree to measure in the same run")
    ap.add_argument("--ahead-years", type=int, default=0,
                    help="the clock this many years past the last delivery (years of missing runs)")
    args = ap.parse_args()
    out = {"this": measure(ROOT, args.years, args.runs, args.ahead_years)}
    if args.baseline:
        out["baseline"] = measure(args.baseline.resolve(), args.years, args.runs, args.ahead_years)
        for key in ("check_process_s", "check_human_process_s", "evaluate_s"):
            out[f"{key}_ratio"] = out["this"][key] / out["baseline"][key]
    for name, m in out.items():
        if isinstance(m, dict):
            sys.stderr.write(f"{name}: {m['deliveries']} deliveries, {m['runs']} runs, check --offline "
                             f"--json {m['check_process_s']:.3f} s ({m['json_bytes']:,} bytes), human "
                             f"{m['check_human_process_s']:.3f} s, evaluate {m['evaluate_s']:.3f} s, "
                             f"ledger read {m['ledger_read_s']:.3f} s, problems {m['kinds']}\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
