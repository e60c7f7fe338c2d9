"""The app while another process (cron's ``sync`` or ``purge``) holds the ledger's write lock:
the real app (Pilot) downloads from the demo server behind a slowing proxy while a real
process holds the lock. The screen stays live: a key switches the screen and the Queue's rows
move on while the lock is held; the header and a toast say that another process holds the
ledger, naming it; once it lets go every file is recorded and the header says nothing more."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from tests.test_ledger_wait import hold
from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    _pinned_clock,
    demo_remote,
    home,
    press_until,
    server_loop,
    settled,
    wait_for,
)
from tests.test_tui_live import slow  # noqa: F401 - fixture: (proxy, app) behind a slowing proxy
from tui.core.model import JobState
from tui.screens.queue import QueueScreen


def done(app) -> int:
    return sum(j.state == JobState.DONE for j in app.board.ordered())


async def test_the_app_stays_live_and_says_who_holds_the_ledger_while_another_process_does(slow):
    proxy, app = slow
    ledger = Path(app.profile.ledger_path)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        # The 8 weekly reports (46 kB) are enough. A crawling link until the Queue is up (at
        # full speed they could all land before the wait is even noticed), then a fast one:
        # files go on landing while the lock is held.
        proxy.delay, proxy.rate = 0.05, 2500  # the 8 take about 19 s at this rate
        holder = await asyncio.to_thread(hold, ledger)
        try:
            assert (await asyncio.to_thread(holder.stdout.readline)).strip() == "locked"
            await pilot.press("2", "slash", *"Weekly", "enter", "a")
            wanted = set(app.screen.selected)
            assert len(wanted) == 8 and all(n.startswith("Weekly") for n in wanted), wanted
            await press_until(pilot, "d", lambda: set(app.board.jobs) == wanted)
            await wait_for(pilot, lambda: app.ledger_wait is not None, 90)
            proxy.rate = 200  # all but stopped until the Queue is up: files are left to land
            assert app.ledger_wait.startswith(f"process {holder.pid} ("), app.ledger_wait
            assert "waiting for the ledger" in app.sub_title

            def toast() -> bool:
                return any(n.message.startswith(f"Another process (process {holder.pid} (")
                           and "Downloads go on meanwhile" in n.message for n in app._notifications)
            await wait_for(pilot, toast, 30)  # the toast is a message of its own
            # Keys work while the lock is held: the Queue screen comes up, its rows move on.
            await press_until(pilot, "3", lambda: isinstance(app.screen, QueueScreen))
            before = done(app)
            assert app.board.active and before < len(app.board.ordered()) - 2, app.board.counts()
            proxy.rate = None
            await wait_for(pilot, lambda: done(app) >= before + 2 or not app.board.active, 90)
            assert done(app) >= before + 2, app.board.counts()
            assert holder.poll() is None and app.ledger_wait is not None  # still held meanwhile
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert (await asyncio.to_thread(holder.stdout.readline)).strip() == "told"
        finally:
            if holder.poll() is None:
                holder.kill()
            await asyncio.to_thread(holder.wait)
        proxy.delay = 0.0
        await wait_for(pilot, lambda: not app.board.active and settled(app), 120)
        await wait_for(pilot, lambda: app.ledger_wait is None)
        assert "waiting for the ledger" not in app.sub_title
        jobs = app.board.ordered()
        assert jobs and all(j.state == JobState.DONE for j in jobs), app.board.counts()
    db = sqlite3.connect(ledger)
    try:
        rows = {n for n, in db.execute("SELECT name FROM downloads")}
    finally:
        db.close()
    assert rows == {j.name for j in jobs}  # every file recorded once the lock was let go
