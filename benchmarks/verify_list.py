"""TUI benchmark: filling the Verify list with thousands of local reports.

Run by ``benchmarks/tui.py`` (``--verify-files``, ``--runs``).

The app runs headless at 120x40 on the demo profile (nothing listed, nothing downloaded) and
shows the Verify screen; the screen is then given ``--files`` verification results (made up
here: names, delivery times, statuses, rows; no workbook is read) and its list is filled as
after a verification run (``VerifyScreen._fill``: filter, sort, cells, table insert, cursor).

Measured, median of ``--runs``:

1. **fill**: the ``_fill`` call alone (what blocks the app's loop);
2. **interactive**: from before ``_fill`` until the table holds every row and a key press
   (``down``) has moved its cursor (the next frame included);
3. the table's insert alone, the same cells both ways in the same run: Textual's
   ``DataTable.add_row`` once per row, against the project's ``FastTable.add_keyed_rows``
   (one pass), as a ratio.

Figures are printed as one JSON document on stdout (human lines on stderr).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NOW = "2026-10-15T14:00:00+00:00"


def log(message: str) -> None:
    sys.stderr.write(message + "\n")


def outcomes(files: int, folder: Path) -> list:
    """``files`` made-up results over the statuses a list shows (a few purged copies too)."""
    from tui.core import status as st
    from tui.core.local_reports import VerifyOutcome
    from tui.core.model import VerifyResult
    from tui.demo.data import DAILY

    statuses = [st.OK] * 8 + [st.EMPTY, st.SCHEMA, st.UNREADABLE, st.WRONG_DAY]
    start = datetime.fromisoformat(NOW).replace(hour=7)
    made = []
    for i in range(files):
        when = start - timedelta(hours=i)
        name = f"{DAILY}_{when:%Y%m%d_%H%M%S}.xlsx"
        status = statuses[i % len(statuses)]
        result = VerifyResult(path=str(folder / name), name=name, report=DAILY, delivered_at=when,
                              status=status, rows=None if status == st.UNREADABLE else 100 + i % 50,
                              header_row=1, message="" if status == st.OK else f"made up: {status}")
        made.append(VerifyOutcome(result=result, sha256=None, cached=True,
                                  purged_at=when + timedelta(days=90) if i % 97 == 0 else None))
    return made


async def fill_list(files: int, runs: int) -> dict:
    os.environ["REPORT_KEEPER_NOW"] = NOW  # the made-up deliveries are dated from it
    from textual.widgets import DataTable

    from tui.app import create_app
    from tui.core.ledger import Ledger
    from tui.demo.data import demo_config
    from tui.screens.verify import VerifyScreen

    folder = Path(tempfile.mkdtemp(prefix="rk-bench-verify-list-"))
    profile = demo_config(local_dir=folder / "reports", ledger=folder / "ledger.sqlite3")
    app = create_app(profile, ledger=Ledger.open(profile.ledger_path, profile=profile.name),
                     demo=True, auto_connect=False)
    made = outcomes(files, folder / "reports")
    fill, interactive, one_by_one, bulk = [], [], [], []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        screen = app.screen
        assert isinstance(screen, VerifyScreen)
        while any(w.group == "verify" and not w.is_finished for w in screen.workers):
            await pilot.pause(0.01)
        await pilot.pause()
        table = screen.query_one(DataTable)
        for _ in range(runs):
            table.move_cursor(row=0)
            await pilot.pause()
            screen.outcomes = list(made)
            t0 = time.perf_counter()
            screen._fill()
            fill.append(time.perf_counter() - t0)
            assert table.row_count == files
            before = table.cursor_row
            await pilot.press("down")
            while table.cursor_row == before:
                await asyncio.sleep(0.001)
            interactive.append(time.perf_counter() - t0)
            # The same cells both ways (the keys and cells the list was just filled with)
            rows = [(row.key.value, table.get_row(row.key)) for row in table.ordered_rows]
            table.clear()
            t0 = time.perf_counter()
            for key, cells in rows:
                DataTable.add_row(table, *cells, key=key)
            one_by_one.append(time.perf_counter() - t0)
            await pilot.pause()
            table.clear()
            t0 = time.perf_counter()
            table.add_keyed_rows(rows)
            bulk.append(time.perf_counter() - t0)
            await pilot.pause()
    result = {
        "files": files, "runs": runs,
        "fill_s": statistics.median(fill),
        "interactive_s": statistics.median(interactive),
        "insert_add_row_s": statistics.median(one_by_one),
        "insert_add_keyed_rows_s": statistics.median(bulk),
    }
    result["insert_ratio_add_row_over_bulk"] = result["insert_add_row_s"] / result["insert_add_keyed_rows_s"]
    log(f"{files} results: fill {result['fill_s'] * 1000:.1f} ms, interactive "
        f"{result['interactive_s'] * 1000:.1f} ms; the insert alone: add_row per row "
        f"{result['insert_add_row_s'] * 1000:.1f} ms, add_keyed_rows "
        f"{result['insert_add_keyed_rows_s'] * 1000:.1f} ms "
        f"({result['insert_ratio_add_row_over_bulk']:.1f}x)")
    return result
