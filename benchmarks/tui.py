"""TUI benchmark: cold start to the first frame, 10,000 remote files to an interactive table, files landing.

    .venv/bin/python benchmarks/tui.py [--files 10000] [--verify-files 3000] [--land-files 300] [--runs 3]

1. **Cold start**: a fresh Python process imports the app, opens a ledger holding the demo
   history, and runs headless at 80x24; measured from just before the process is spawned to the
   first frame of the Health screen (and, separately, to the health evaluation shown).
   Target: first frame < 1.0 s.
2. **10,000 files**: the embedded demo SFTP server (127.0.0.1) serves a folder of 10,000 report
   files; the app shows the Remote screen and lists the server; measured from the moment the
   listing has arrived (``SyncService.list_remote`` returned) until the table holds every row
   and a key press (``down``) has moved its cursor. Target: < 1.5 s.
3. **The Verify list**: ``--verify-files`` verification results filling the Verify screen's
   list (``benchmarks/verify_list.py``, which says what it measures).
4. **Files landing**: ``--land-files`` files downloaded at 80x24 while the Remote list, then
   the Queue screen, is shown: the app's CPU time and what it drew (``benchmarks/landing.py``,
   which says what it measures).

Figures are printed as one JSON document on stdout (human lines on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NOW = "2026-10-15T14:00:00+00:00"

CHILD = r"""
import os, sys, time, asyncio
t_import = time.time()
from tui.app import create_app
from tui.core.ledger import Ledger
from tui.demo.data import demo_config
from pathlib import Path
folder = Path(sys.argv[1])
profile = demo_config(local_dir=folder / "reports", ledger=folder / "ledger.sqlite3")
app = create_app(profile, ledger=Ledger.open(folder / "ledger.sqlite3", profile=profile.name),
                 auto_connect=False)
marks = {}

async def auto_pilot(pilot):
    # The first frame: the Health screen mounted and one refresh done.
    while type(app.screen).__name__ != "HealthScreen":
        await asyncio.sleep(0.001)
    await pilot.pause()
    marks["first_frame"] = time.time()
    while app.snapshot.version < 1:
        await asyncio.sleep(0.001)
    await pilot.pause()
    marks["health_shown"] = time.time()
    app.exit()

app.run(headless=True, size=(80, 24), auto_pilot=auto_pilot)
print(t_import, marks["first_frame"], marks["health_shown"])
"""


def log(message: str) -> None:
    sys.stderr.write(message + "\n")


def prepare_ledger(folder: Path) -> None:
    """A ledger holding the demo history (listed and synced once), as after a day's use."""

    async def go() -> None:
        from tui.core.ledger import Ledger
        from tui.demo.server import start_demo_server
        from tui.sftp.sync import SyncService

        server = await start_demo_server(dir=folder / "server", local_dir=folder / "reports",
                                         ledger=folder / "ledger.sqlite3")
        try:
            ledger = Ledger.open(folder / "ledger.sqlite3", profile=server.profile.name)
            async with SyncService(server.profile, ledger) as service:
                await service.sync()
            ledger.close()
        finally:
            await server.close()

    asyncio.run(go())


def cold_start(runs: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="rk-bench-tui-"))
    prepare_ledger(folder)
    env = dict(os.environ, REPORT_KEEPER_NOW=NOW, TEXTUAL_ANIMATIONS="none")
    first, shown = [], []
    for i in range(runs):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", CHILD, str(folder)], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        _t_import, t_frame, t_health = map(float, out.stdout.split()[-3:])
        first.append(t_frame - t0)
        shown.append(t_health - t0)
        log(f"cold start run {i + 1}: first frame {first[-1]:.3f} s, health shown {shown[-1]:.3f} s")
    return {"first_frame_s": statistics.median(first), "health_shown_s": statistics.median(shown),
            "runs": runs, "target_first_frame_s": 1.0}


def make_folder(root: Path, files: int) -> Path:
    from tui.demo.data import DAILY, DEMO_REMOTE_DIR

    folder = root / DEMO_REMOTE_DIR
    folder.mkdir(parents=True)
    start = datetime(2026, 10, 15, 7, 0)
    payload = b"PK\x03\x04" + b"\0" * 2000  # not opened by the listing
    for i in range(files):
        when = start - timedelta(hours=i)
        name = f"{DAILY}_{when:%Y%m%d_%H%M%S}.xlsx"
        path = folder / name
        path.write_bytes(payload)
        ts = when.timestamp()
        os.utime(path, (ts, ts))
    return folder


async def big_listing(files: int) -> dict:
    from tui.app import create_app
    from tui.core.ledger import Ledger
    from tui.demo.server import start_demo_server
    from tui.sftp.sync import SyncService

    root = Path(tempfile.mkdtemp(prefix="rk-bench-10k-"))
    make_folder(root / "server", files)
    server = await start_demo_server(dir=root / "server", local_dir=root / "reports",
                                     ledger=root / "ledger.sqlite3")
    marks: dict[str, float] = {}

    class TimedService(SyncService):
        async def list_remote(self):  # the real listing, timed
            result = await super().list_remote()
            marks["listing_arrived"] = time.perf_counter()
            return result

    def factory(app):
        return TimedService(app.profile, app.ledger, host_key_policy=app.confirm_host_key,
                            passphrase_cb=app.ask_passphrase)

    try:
        profile = server.profile
        app = create_app(profile, ledger=Ledger.open(profile.ledger_path, profile=profile.name),
                         auto_connect=False, service_factory=factory)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("2")
            table = app.screen.query_one("DataTable")
            await pilot.press("r")
            while "listing_arrived" not in marks:
                await asyncio.sleep(0.005)
            while table.row_count < files:
                await asyncio.sleep(0.005)
            marks["rows_in"] = time.perf_counter()
            before = table.cursor_row
            await pilot.press("down")
            while table.cursor_row == before:
                await asyncio.sleep(0.001)
            marks["interactive"] = time.perf_counter()
            t0 = time.perf_counter()
            for _ in range(20):
                await pilot.press("pagedown")
            page = (time.perf_counter() - t0) / 20
            t0 = time.perf_counter()
            await pilot.press("s")
            sort = time.perf_counter() - t0
    finally:
        await server.close()
    interactive = marks["interactive"] - marks["listing_arrived"]
    log(f"{files} files: table filled {marks['rows_in'] - marks['listing_arrived']:.3f} s, "
        f"interactive {interactive:.3f} s after the listing arrived; page down {page * 1000:.0f} ms; "
        f"re-sort {sort:.3f} s")
    return {"files": files, "table_filled_s": marks["rows_in"] - marks["listing_arrived"],
            "interactive_s": interactive, "page_down_ms": page * 1000, "resort_s": sort,
            "target_interactive_s": 1.5}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--verify-files", type=int, default=3000)
    parser.add_argument("--land-files", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ["REPORT_KEEPER_NOW"] = NOW
    os.environ["TEXTUAL_ANIMATIONS"] = "none"
    from benchmarks.landing import land_files
    from benchmarks.verify_list import fill_list

    result = {"cold_start": cold_start(args.runs), "listing": asyncio.run(big_listing(args.files)),
              "verify_list": asyncio.run(fill_list(args.verify_files, args.runs)),
              "landing": asyncio.run(land_files(args.land_files, args.runs))}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
