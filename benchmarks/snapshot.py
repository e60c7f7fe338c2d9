"""Benchmark: how long the app's snapshot rebuild holds the ledger on a year-long ledger.

    .venv/bin/python benchmarks/snapshot.py [--runs 7] [--baseline REF] [--keep DIR]

The app builds its view-model (``tui.state.build_snapshot``) in a thread worker, at most once
every few seconds while files land. The build goes through the same :class:`Ledger` as the
sync running on the app's event loop, and that ledger guards its one SQLite connection with
one lock: while the build holds the lock, every ``record_download``/``cached_verification``
of the sync (and so the event loop: the screens and the transfers) waits.

Generates a year of three daily reports (3 x 365 small real .xlsx files, written as
tests/xlsx_factory.py writes them, generated data only) into ``local/``, and records them in
a ledger as a year of daily syncs would: one listing a day (the server keeps 14 days, older
files are gone from it), each file downloaded and verified (row fingerprint and date coverage
as the content checks record them). Then, in one process per source tree:

1. times ``build_snapshot`` (wall and this process's CPU, median of ``runs``);
2. wraps the ledger's lock (in this benchmark only) to record each time it is held during a
   build: the longest single hold, by the ledger method that held it, and the total;
3. runs builds in a thread while the main thread does what the sync does per file, inside an
   open batch as the sync does: ``record_download`` of a held copy (already recorded: a read
   and a savepoint) and ``cached_verification``, back to back; prints how long each call
   took (max, p95) and how long it waited for the lock, against the same calls with no build
   running (the rest of the difference is the interpreter lock: the build's Python work).

``--baseline REF`` measures ``git archive REF`` of this repository in the same run, with
this checkout's virtualenv, on a ledger of its own built from the same files. Each tree's
snapshot is summarised (rows, states, problems) and the two must agree: a faster wrong
snapshot cannot pass.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from datetime import time as dtime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The three daily reports of the year: base name, delivery time.
REPORTS = (("Loans Per Patron From 3 Days Ago", "07:00"), ("Returns Yesterday", "07:30"),
           ("New Patrons This Week", "08:00"))
END = date(2026, 12, 1)  # the files are of the ``days`` days before this one
DAYS = 365
SERVER_KEEPS_DAYS = 14
NOW = "2026-12-01T10:00:00-06:00"  # END, the morning after the last delivery
ROWS = 20


def generate(local: Path, days: int) -> None:
    """The year's files (written once; ``--keep`` reuses them)."""
    sys.path.insert(0, str(ROOT))
    from tests.xlsx_factory import ENGINES, daily_names, loan_rows, write_report

    local.mkdir(parents=True, exist_ok=True, mode=0o700)
    for r, (base, at) in enumerate(REPORTS):
        hh, mm = (int(x) for x in at.split(":"))
        for i, (name, day) in enumerate(daily_names(base, END - timedelta(days=days), days, at=dtime(hh, mm, 4))):
            path = local / name
            if not path.exists():
                write_report(path, loan_rows(ROWS, day=day - timedelta(days=3), seed=r * 1000 + i),
                             engine=ENGINES[0])


def config_text(folder: Path) -> str:
    reports = "".join(
        f'\n[[profile.default.report]]\nname = "{base}"\nschedule = "daily"\nat = "{at}"\nlag_days = 3\n'
        for base, at in REPORTS)
    return (f'[profile.default]\nhost = "127.0.0.1"\nport = 9\nusername = "alma"\n'
            f'local_dir = "{folder / "local"}"\nledger = "{folder / "ledger.sqlite3"}"\n'
            f'timezone = "America/Chicago"\n{reports}')


# ---------------------------------------------------------------------------------------------
# The child: runs with one source tree first on sys.path (``--child TREE FOLDER``)


def build_ledger(folder: Path) -> None:
    """Record the year as daily syncs would have: listing, downloads, verifications."""
    import hashlib
    from datetime import datetime

    from tui.core.config import load_config
    from tui.core.content import DateCoverage
    from tui.core.ledger import Ledger, verification_context
    from tui.core.model import RemoteFile, VerifyResult
    from tui.core.status import VerifyStatus

    profile = load_config(folder / "config.toml").profile()
    tz = profile.timezone
    local = folder / "local"
    by_day: dict[date, list[RemoteFile]] = {}
    for path in sorted(local.iterdir()):
        report, parsed = profile.classify(path.name)
        at = parsed.delivered_at
        assert at is not None, path.name
        by_day.setdefault(at.astimezone(tz).date(), []).append(RemoteFile(path.name, path.stat().st_size, at))

    def report_of(f: RemoteFile) -> tuple[str, datetime]:
        report, parsed = profile.classify(f.name, f.mtime)
        return report.name, parsed.delivered_at or f.mtime

    ledger = Ledger.open(profile.ledger_path)
    try:
        days = sorted(by_day)
        for n, day in enumerate(days):
            when = datetime.combine(day, datetime.min.time(), tzinfo=tz) + timedelta(hours=9)
            listing = [f for d in days[max(0, n - SERVER_KEEPS_DAYS + 1):n + 1] for f in by_day[d]]
            with ledger.batched():
                ledger.record_listing(None, report_of, listing, when=when, tz=tz)
                for f in by_day[day]:
                    path = local / f.name
                    data = path.read_bytes()
                    sha = hashlib.sha256(data).hexdigest()
                    ledger.record_download(f.name, size=f.size, sha256=sha, local_path=str(path),
                                           mtime=f.mtime, when=when)
                    report, _ = profile.classify(f.name, f.mtime)
                    covered = report.covered_day(report.run_day_of(f.mtime))
                    result = VerifyResult(
                        path=str(path), name=f.name, report=report.name, delivered_at=f.mtime,
                        status=VerifyStatus.OK, rows=ROWS, header_row=3,
                        columns=("Primary Identifier", "User Group", "Loan Date", "Item Barcode", "Title",
                                 "Loans (Not In House)"),
                        sheet="Loans", fingerprint=hashlib.sha256(b"rows" + data).hexdigest(),
                        date_column="Loan Date",
                        dates=DateCoverage("Loan Date", ROWS, 0, covered, covered, ((covered, ROWS),), 1),
                        covered_day=covered)
                    ledger.record_verification(result, sha256=sha, when=when,
                                               context=verification_context(report, f.mtime))
    finally:
        ledger.close()


class TimedLock:
    """Wraps the ledger's RLock: records each outermost hold (thread, seconds, the ledger
    method that took it) and each outermost acquisition's wait. Benchmark only."""

    def __init__(self, inner: object) -> None:
        import threading

        self._inner = inner
        self._local = threading.local()
        self.holds: list[tuple[int, float, str]] = []
        self.waits: list[tuple[int, float]] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        import threading

        t0 = time.perf_counter()
        ok = self._inner.acquire(blocking, timeout)  # type: ignore[attr-defined]
        t1 = time.perf_counter()
        if ok:
            depth = getattr(self._local, "depth", 0)
            if depth == 0:
                self._local.start = t1
                self._local.site = _ledger_caller()
                self.waits.append((threading.get_ident(), t1 - t0))
            self._local.depth = depth + 1
        return ok

    def release(self) -> None:
        import threading

        self._local.depth -= 1
        if self._local.depth == 0:
            self.holds.append((threading.get_ident(), time.perf_counter() - self._local.start, self._local.site))
        self._inner.release()  # type: ignore[attr-defined]

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _ledger_caller() -> str:
    """The outermost public Ledger method on the stack (what took the lock)."""
    frame = sys._getframe(2)
    found = "?"
    while frame is not None:
        code = frame.f_code
        if code.co_filename.endswith(os.path.join("tui", "core", "ledger.py")):
            if not code.co_name.startswith("_"):
                found = code.co_name
        elif "contextlib" not in code.co_filename and found != "?":
            break
        frame = frame.f_back  # type: ignore[assignment]
    return found


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def summary(snapshot: object) -> dict:
    """What the snapshot says, to compare trees (rows, states, verdicts, problems; paths by
    file name, as each tree has a folder of its own)."""
    import hashlib
    from collections import Counter

    rows = snapshot.rows  # type: ignore[attr-defined]
    health = snapshot.health  # type: ignore[attr-defined]
    shown = [(r.name, r.report, r.delivered_at.isoformat(), r.size, r.delete_on.isoformat(), r.days_left,
              str(r.state), str(r.verification), r.message, Path(r.local_path or "").name) for r in rows]
    return {
        "rows": len(rows),
        "states": dict(sorted(Counter(str(r.state) for r in rows).items())),
        "verifications": dict(sorted(Counter(str(r.verification) for r in rows).items())),
        "row_digest": hashlib.sha256(repr(shown).encode()).hexdigest()[:16],
        "problems": (dict(sorted(Counter(f"{p.severity} {p.kind}" for p in health.problems).items()))
                     if health is not None else None),
        "local_files": snapshot.local_files,  # type: ignore[attr-defined]
        "error": snapshot.error,  # type: ignore[attr-defined]
    }


def child(folder: Path, runs: int) -> dict:
    import statistics
    import threading

    from tui.core.config import load_config
    from tui.core.ledger import Ledger
    from tui.state import build_snapshot

    t0 = time.perf_counter()
    build_ledger(folder)
    built_s = time.perf_counter() - t0
    profile = load_config(folder / "config.toml").profile()
    ledger = Ledger.open(profile.ledger_path)
    lock = TimedLock(ledger._lock)
    ledger._lock = lock  # type: ignore[assignment]
    deliveries = len(ledger.deliveries())
    first = build_snapshot(profile, ledger)  # warm: imports, the page cache

    # 1 and 2: builds alone, their time and the lock's holds
    walls, cpus, longest, totals = [], [], [], []
    by_method: dict[str, float] = {}
    for _ in range(runs):
        lock.holds.clear()
        c0, w0 = time.process_time(), time.perf_counter()
        build_snapshot(profile, ledger)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        longest.append(max(h[1] for h in lock.holds))
        totals.append(sum(h[1] for h in lock.holds))
        for _tid, held, site in lock.holds:
            by_method[site] = max(by_method.get(site, 0.0), held)

    # 3: the sync's per-file calls on the main thread, with and without a build running
    held = next(d for d in ledger.deliveries() if d.sha256 and d.local_path)
    assert held.sha256 is not None and held.local_path is not None

    def probe(seconds: float, stop: threading.Event | None = None) -> tuple[list[float], list[float]]:
        me = threading.get_ident()
        calls: list[float] = []
        end = time.perf_counter() + seconds
        with ledger.batched():
            while (stop is None and time.perf_counter() < end) or (stop is not None and not stop.is_set()):
                t = time.perf_counter()
                ledger.record_download(held.name, size=held.size, sha256=held.sha256,  # type: ignore[arg-type]
                                       local_path=held.local_path, mtime=held.mtime)  # type: ignore[arg-type]
                calls.append(time.perf_counter() - t)
                t = time.perf_counter()
                ledger.cached_verification(held.sha256)  # type: ignore[arg-type]
                calls.append(time.perf_counter() - t)
                time.sleep(0.0005)  # an event loop does other work between files
        waits = [w for tid, w in lock.waits if tid == me]
        return calls, waits

    lock.waits.clear()
    idle_calls, idle_waits = probe(1.0)
    lock.waits.clear()
    stop = threading.Event()

    def builds() -> None:
        for _ in range(runs):
            build_snapshot(profile, ledger)
        stop.set()

    worker = threading.Thread(target=builds, name="snapshot")
    worker.start()
    busy_calls, busy_waits = probe(0, stop)
    worker.join()
    ledger.close()
    return {
        "deliveries": deliveries,
        "ledger_build_s": built_s,
        "build_wall_s": statistics.median(walls),
        "build_cpu_s": statistics.median(cpus),
        "longest_hold_s": statistics.median(longest),
        "longest_hold_max_s": max(longest),
        "total_hold_s": statistics.median(totals),
        "longest_hold_by_method_s": dict(sorted(by_method.items(), key=lambda kv: -kv[1])),
        "idle_call_max_s": max(idle_calls), "idle_call_p95_s": _pct(idle_calls, 0.95),
        "idle_lock_wait_max_s": max(idle_waits, default=0.0),
        "busy_call_max_s": max(busy_calls), "busy_call_p95_s": _pct(busy_calls, 0.95),
        "busy_lock_wait_max_s": max(busy_waits, default=0.0),
        "busy_lock_wait_p95_s": _pct(busy_waits, 0.95),
        "busy_calls": len(busy_calls),
        "snapshot": summary(first),
    }


# ---------------------------------------------------------------------------------------------
# The parent


def measure(tree: Path, files: Path, folder: Path, runs: int) -> dict:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(files, folder / "local")  # each tree's ledger reconciles its own copies
    (folder / "config.toml").write_text(config_text(folder))
    env = {**os.environ, "PYTHONPATH": str(tree), "REPORT_KEEPER_NOW": NOW,
           "XDG_STATE_HOME": str(folder / "state"), "XDG_CONFIG_HOME": str(folder / "config")}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(tree), str(folder),
                           "--runs", str(runs)], env=env, capture_output=True, text=True, cwd=folder)
    if proc.returncode != 0:
        sys.exit(f"measuring {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def table(results: dict[str, dict]) -> None:
    ms = 1000.0
    rows = [
        ("deliveries in the ledger", "deliveries", None, "{:.0f}"),
        ("build_snapshot wall (median)", "build_wall_s", ms, "{:.1f} ms"),
        ("build_snapshot CPU (median)", "build_cpu_s", ms, "{:.1f} ms"),
        ("longest lock hold per build (median)", "longest_hold_s", ms, "{:.1f} ms"),
        ("longest lock hold (max over builds)", "longest_hold_max_s", ms, "{:.1f} ms"),
        ("total lock held per build (median)", "total_hold_s", ms, "{:.1f} ms"),
        ("sync call, no build: max", "idle_call_max_s", ms, "{:.2f} ms"),
        ("sync call, no build: p95", "idle_call_p95_s", ms, "{:.2f} ms"),
        ("sync call during builds: max", "busy_call_max_s", ms, "{:.2f} ms"),
        ("sync call during builds: p95", "busy_call_p95_s", ms, "{:.2f} ms"),
        ("  of it waiting for the lock: max", "busy_lock_wait_max_s", ms, "{:.2f} ms"),
        ("  of it waiting for the lock: p95", "busy_lock_wait_p95_s", ms, "{:.2f} ms"),
    ]
    names = list(results)
    print(f"\n{'':<40}" + "".join(f"{n:>16}" for n in names))
    for label, key, scale, fmt in rows:
        cells = []
        for n in names:
            v = results[n][key]
            cells.append(fmt.format(v * scale if scale else v))
        print(f"{label:<40}" + "".join(f"{c:>16}" for c in cells))
    for n in names:
        top = list(results[n]["longest_hold_by_method_s"].items())[:5]
        print(f"longest holds by ledger method ({n}): "
              + ", ".join(f"{m} {s * ms:.1f} ms" for m, s in top))
    print(f"({os.cpu_count()} CPUs; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="builds per measurement (median; default 7)")
    ap.add_argument("--days", type=int, default=DAYS)
    ap.add_argument("--baseline", metavar="REF", help="also measure this git commit of the repository")
    ap.add_argument("--keep", metavar="DIR", help="generate the files into DIR and keep them")
    ap.add_argument("--child", nargs=2, metavar=("TREE", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        tree, folder = (Path(p) for p in args.child)
        sys.path.insert(0, str(tree))
        print(json.dumps(child(folder, args.runs)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="rk-snapshot-"))
    files = Path(args.keep) if args.keep else work / "files"
    try:
        t0 = time.perf_counter()
        generate(files, args.days)
        print(f"{len(list(files.iterdir()))} report files in {time.perf_counter() - t0:.1f} s ({files})",
              file=sys.stderr)
        trees = {"this": ROOT}
        if args.baseline:
            base = work / "baseline"
            base.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
            trees[f"baseline {args.baseline}"] = base
        results = {label: measure(tree, files, work / f"run{i}", args.runs)
                   for i, (label, tree) in enumerate(trees.items())}
        table(results)
        snaps = {label: r["snapshot"] for label, r in results.items()}
        print("snapshot: " + json.dumps(next(iter(snaps.values()))))
        if len({json.dumps(s, sort_keys=True) for s in snaps.values()}) > 1:
            print("the trees' snapshots DIFFER: " + json.dumps(snaps))
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
