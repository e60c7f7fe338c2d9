"""The app's own downloads and a scheduled ``sync`` of the same profile at once: the app open
on a librarian's screen (Pilot, the real app) while cron's ``sync`` runs as a real process, both
against the demo SFTP server behind a proxy that slows the link so they really overlap. Every
file is fetched once between them, recorded once, no part file is left, and the app's Queue
shows a file the other process had as skipped (as sync does), not failed."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.fixtures_sshd import TcpProxy
from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    FIXED_NOW,
    _pinned_clock,
    demo_app,
    demo_remote,
    home,
    known_hosts_for_port,
    profile_for,
    server_loop,
    settled,
    wait_for,
)
from tui.core.ledger import Ledger
from tui.core.model import JobState
from tui.demo.server import profile_toml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def slow(demo_remote, home, tmp_path, server_loop):
    proxy = TcpProxy(demo_remote.port, delay=0.001)
    server_loop.run(proxy.start())
    known = known_hosts_for_port(demo_remote, proxy.port, tmp_path / "known_hosts")
    try:
        yield proxy, demo_app(profile_for(demo_remote, home, port=proxy.port, known_hosts=known))
    finally:
        server_loop.run(proxy.stop())


async def test_a_scheduled_sync_beside_the_apps_downloads_fetches_and_counts_each_file_once(slow, tmp_path):
    proxy, app = slow
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        proxy.delay = 0.2  # a slow link: the app's batch is still running when cron's sync starts
        await pilot.press("2", "a", "d", "1")
        await wait_for(pilot, lambda: sum(j.state == JobState.DONE for j in app.board.ordered()) >= 2, 60)
        assert app.board.active, "the app's batch ended before the sync could start"
        cfg = tmp_path / "config.toml"
        cfg.write_text(profile_toml(app.profile))
        env = {**os.environ, "REPORT_KEEPER_NOW": FIXED_NOW, "XDG_STATE_HOME": str(tmp_path / "state")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--profile", app.profile.name, "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL)
        reading = asyncio.ensure_future(proc.communicate())
        await wait_for(pilot, reading.done, 240)
        proxy.delay = 0.0
        await wait_for(pilot, lambda: not app.board.active and settled(app), 120)
        jobs = {j.name: j for j in app.board.ordered()}
        app_done = {n for n, j in jobs.items() if j.state == JobState.DONE}
        app_failed = {n: j.reason for n, j in jobs.items() if j.state == JobState.FAILED}
        app_left = {n: j.reason for n, j in jobs.items() if j.state == JobState.SKIPPED}
    out, err = reading.result()
    assert b"Traceback" not in err, err.decode()[-3000:]
    doc = json.loads(out)
    assert doc["error"] is None and doc["failed"] == [], doc
    cli_done = {d["name"] for d in doc["downloaded"]}

    assert not app_done & cli_done, app_done & cli_done  # nothing fetched by both
    # The app's jobs the other process had are skipped, as sync says, not failed; they say so
    # (left to it, nothing lost).
    assert app_failed == {}, app_failed
    assert all("Another Report Keeper process" in r or "another Report Keeper process" in r
               for r in app_left.values()), app_left
    wanted = set(jobs)
    assert wanted <= app_done | cli_done | set(doc["skipped"])
    local = Path(app.profile.local_dir)
    assert not [p.name for p in local.iterdir() if "(changed" in p.name]
    assert not list((local / ".report-keeper" / "parts").glob("*.part"))
    with Ledger.open(app.profile.ledger_path, profile=app.profile.name) as led:
        assert led.integrity_ok()
    db = sqlite3.connect(app.profile.ledger_path)
    try:
        rows = [n for n, in db.execute("SELECT name FROM downloads")]
    finally:
        db.close()
    assert sorted(rows) == sorted(set(rows)) and set(rows) == app_done | cli_done  # recorded once
