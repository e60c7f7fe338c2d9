"""Batched ledger writes: few commits per run, and a run killed between two commits loses nothing.

A sync records each file once it is complete, fsync'ed and in place, inside one open
transaction that is committed every ``COMMIT_SECONDS`` and at the end (``Ledger.batched``).
These tests kill real ``sync`` processes (SIGKILL: no clean-up runs) against the real sshd and
check what the next run finds and says.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.daily_config import write_plain_config
from tui.core.ledger import Ledger, LedgerError
from tui.core.model import RemoteFile, VerifyResult

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"
N_FILES = 40


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ the ledger's batches


def test_a_batch_is_committed_at_its_end_and_each_write_stays_whole(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        with led.batched(every=3600):
            led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
            assert [d.name for d in led.downloads()] == ["a.xlsx"]  # this connection sees it
            assert other.downloads() == []  # not committed yet

            def boom(_f: RemoteFile) -> tuple[str, datetime]:
                raise RuntimeError("classification failed")

            f = RemoteFile("b.xlsx", 1, datetime(2026, 6, 1, tzinfo=UTC))
            with pytest.raises(RuntimeError):
                led.record_listing(None, boom, [f])
            led.record_download("c.xlsx", size=1, sha256="1" * 64, local_path=tmp_path / "c.xlsx")
        # the failed write left nothing; the others are committed together at the end
        assert [d.name for d in other.downloads()] == ["a.xlsx", "c.xlsx"]


def test_a_refused_one_statement_write_leaves_the_batch_as_it_was(tmp_path):
    """A verification's record is one statement, written without a savepoint of its own:
    refused, SQLite undoes that statement alone and the batch goes on with what it held."""
    path = tmp_path / "ledger.sqlite3"
    ok = VerifyResult(path=str(tmp_path / "a.xlsx"), name="a.xlsx", report="Loans", delivered_at=None,
                      status="ok", rows=1, header_row=1, message="1 row")
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        with led.batched(every=3600):
            assert led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
            assert not led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
            led.record_verification(ok, sha256="0" * 64, context="c")
            with pytest.raises(sqlite3.IntegrityError):
                led.record_verification(replace(ok, message=None), sha256="1" * 64, context="c")
            led.record_download("c.xlsx", size=1, sha256="1" * 64, local_path=tmp_path / "c.xlsx")
            assert led.cached_verification("1" * 64, "c") is None
        assert [d.name for d in other.downloads()] == ["a.xlsx", "c.xlsx"]
        assert other.cached_verification("0" * 64, "c") == ok
        assert other.cached_verification("1" * 64, "c") is None
        assert other.last_listing() is None
        assert led.integrity_ok()


def test_a_download_record_in_a_batch_is_its_two_statements_and_no_savepoint(tmp_path):
    """A file's download record clears its partial record and inserts the download: two
    statements, each of which may stand alone (the partial went with the placing), so no
    savepoint around them (two statements more per file). Refused, the partial is gone and
    the batch holds what it held; outside a batch both are one transaction."""
    path = tmp_path / "ledger.sqlite3"
    part = tmp_path / "a.part"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        led.record_partial("a.xlsx", size=1, mtime=None, part_path=part, bytes_done=1)
        led.record_partial("b.xlsx", size=1, mtime=None, part_path=part, bytes_done=1)
        run: list[str] = []
        with led.batched(every=3600):
            led.record_download("warm.xlsx", size=1, sha256="9" * 64, local_path=tmp_path / "w.xlsx")
            led._conn.set_trace_callback(run.append)
            assert led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
            led._conn.set_trace_callback(None)
            with pytest.raises(sqlite3.IntegrityError):  # a NOT NULL column refused
                led.record_download("b.xlsx", size=1, sha256=None, local_path=tmp_path / "b.xlsx")  # type: ignore[arg-type]
            assert led.partials() == {}
        assert [s.split()[0] for s in run] == ["DELETE", "INSERT"]
        assert [d.name for d in other.downloads()] == ["warm.xlsx", "a.xlsx"]
        assert other.partials() == {}
        assert led.integrity_ok()


def test_a_batch_commits_on_its_own_while_it_is_open(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        with led.batched(every=0.05):
            led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
            deadline = time.monotonic() + 30  # a generous bound for a busy machine, not a timing
            while not other.downloads() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert [d.name for d in other.downloads()] == ["a.xlsx"]


def test_views_of_other_profiles_share_the_connection_and_the_batch(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        view = led.for_profile("q")
        with led.batched(every=3600):
            view.record_download("q.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "q.xlsx")
            led.record_download("p.xlsx", size=1, sha256="1" * 64, local_path=tmp_path / "p.xlsx")
            assert other.downloads() == [] and other.downloads(profile="q") == []
        assert [d.name for d in other.downloads()] == ["p.xlsx"]
        assert [d.name for d in other.downloads(profile="q")] == ["q.xlsx"]


def test_unbatched_steps_are_committed_one_by_one_inside_a_batch(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        view = led.for_profile("q")
        with led.batched(every=3600), view.batched(every=3600):
            led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
            with view.unbatched():  # what the batch held is committed first
                assert [d.name for d in other.downloads()] == ["a.xlsx"]
                view.record_download("q.xlsx", size=1, sha256="1" * 64, local_path=tmp_path / "q.xlsx")
                assert [d.name for d in other.downloads(profile="q")] == ["q.xlsx"]  # at once
            led.record_download("b.xlsx", size=1, sha256="2" * 64, local_path=tmp_path / "b.xlsx")
            assert [d.name for d in other.downloads()] == ["a.xlsx"]  # batched again
        # the last of the two blocks to end commits
        assert [d.name for d in other.downloads()] == ["a.xlsx", "b.xlsx"]


def test_the_batch_lives_while_any_view_uses_it(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        view = led.for_profile("q")
        outer = led.batched(every=3600)
        outer.__enter__()
        with view.batched(every=3600):
            view.record_download("q.xlsx", size=1, sha256="1" * 64, local_path=tmp_path / "q.xlsx")
        assert other.downloads(profile="q") == []  # the first block is still open
        outer.__exit__(None, None, None)
        assert [d.name for d in other.downloads(profile="q")] == ["q.xlsx"]


def _steps_seen_by(other: Ledger):
    """A log of steps and a maker of steps: each step logs its name and the downloads ``other``
    (another connection to the ledger) sees when it runs."""
    seen: list[tuple[str, list[str]]] = []

    def step(name: str) -> Callable[[], None]:
        return lambda: seen.append((name, [d.name for d in other.downloads()]))
    return seen, step


def test_steps_before_a_commit_run_first_once_each_and_at_once_outside_a_batch(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        # what the other connection sees when a step runs: the record not committed yet
        seen, step = _steps_seen_by(other)

        with led.batched(every=3600):
            led.before_commit("folder", step("folder"))
            led.before_commit("folder", step("again"))  # the same key: once per commit
            led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
            assert seen == []  # nothing committed, nothing run yet
            with led.unbatched():  # committing the batch runs the steps first
                assert seen == [("folder", [])]
                led.before_commit("now", step("now"))  # no batch meanwhile: at once
                assert seen[-1] == ("now", ["a.xlsx"])
            led.before_commit("folder", step("second"))
            led.record_download("b.xlsx", size=1, sha256="1" * 64, local_path=tmp_path / "b.xlsx")
        assert seen == [("folder", []), ("now", ["a.xlsx"]), ("second", ["a.xlsx"])]
        assert [d.name for d in other.downloads()] == ["a.xlsx", "b.xlsx"]


def test_a_failed_step_keeps_the_records_that_rely_on_it_out(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        def fail() -> None:
            raise OSError(5, "Input/output error")

        with pytest.raises(LedgerError), led.batched(every=3600):
            led.before_commit("folder", fail)
            led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
        assert other.downloads() == []
        assert led.integrity_ok()


def test_steps_after_a_commit_run_once_it_is_over_and_at_once_without_records_waiting(tmp_path):
    """What must last until a record is on the disk (a placed file's lock) is let go by a step
    run after the commit that holds the record: not before, and also when that commit fails."""
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        # what the other connection sees when a step runs: the record committed
        seen, step = _steps_seen_by(other)

        with led.batched(every=3600):
            led.after_commit(step("nothing waiting"))  # no record written yet: at once
            assert seen == [("nothing waiting", [])]
            led.record_download("a.xlsx", size=1, sha256="0" * 64, local_path=tmp_path / "a.xlsx")
            led.after_commit(step("a"))
            assert seen == [("nothing waiting", [])]  # its record is not committed yet
            with led.unbatched():
                assert seen[-1] == ("a", ["a.xlsx"])
            led.record_download("b.xlsx", size=1, sha256="1" * 64, local_path=tmp_path / "b.xlsx")
            led.after_commit(step("b"))
        assert seen[-1] == ("b", ["a.xlsx", "b.xlsx"]) and len(seen) == 3

        def fail() -> None:
            raise OSError(5, "Input/output error")

        with pytest.raises(LedgerError), led.batched(every=3600):
            led.before_commit("folder", fail)
            led.record_download("c.xlsx", size=1, sha256="2" * 64, local_path=tmp_path / "c.xlsx")
            led.after_commit(step("c"))
        assert seen[-1] == ("c", ["a.xlsx", "b.xlsx"])  # run all the same, the record lost


def test_a_write_is_made_at_once_only_where_it_cannot_wait(tmp_path):
    """``write_at_once`` (what lets the event loop record a landed file itself) runs the write
    only inside a batch whose transaction is begun (no wait for another process's lock) and
    while no other thread holds the ledger; otherwise it runs nothing and says so."""
    path = tmp_path / "ledger.sqlite3"
    ran: list[str] = []

    def write(name: str) -> Callable[[], bool]:
        def call() -> bool:
            ran.append(name)
            return led.record_download(name, size=1, sha256=name.ljust(64, "0"), local_path=tmp_path / name)
        return call

    with Ledger.open(path, profile="p") as led, Ledger.open(path, profile="p") as other:
        assert led.write_at_once(write("a")) == (False, None)  # no batch: its own commit, may wait
        with led.batched(every=3600):
            assert led.write_at_once(write("b")) == (False, None)  # the transaction is not begun
            led.record_download("c", size=1, sha256="c" * 64, local_path=tmp_path / "c")
            assert led.write_at_once(write("d")) == (True, True)
            held, release = threading.Event(), threading.Event()

            def hold() -> None:  # another thread in the ledger (a commit, the app's snapshot)
                with led._lock:
                    held.set()
                    release.wait(60)

            holder = threading.Thread(target=hold)
            holder.start()
            try:
                assert held.wait(60)
                assert led.write_at_once(write("e")) == (False, None)
                assert led.read_at_once(led.downloads) == (False, None)
            finally:
                release.set()
                holder.join()
            assert led.read_at_once(lambda: [d.name for d in led.downloads()]) == (True, ["c", "d"])
            with led.unbatched():  # each write its own transaction meanwhile
                assert led.write_at_once(write("f")) == (False, None)
        assert ran == ["d"]
        assert [d.name for d in other.downloads()] == ["c", "d"]


async def test_records_handed_to_the_writer_are_never_overtaken_by_one_made_at_once(tmp_path, monkeypatch):
    """The first write of a batch goes to the writer thread (it may wait for another process's
    lock); a write asked for while it is there must wait its turn, even though, once the
    transaction is begun, it could be made at once on the event loop."""
    from tui.sftp.sync import SyncService

    path = tmp_path / "ledger.sqlite3"
    order: list[str] = []
    first_in, go_on = threading.Event(), threading.Event()
    with Ledger.open(path, profile="p") as led:
        service = SyncService.__new__(SyncService)  # only its writer is used here
        service.ledger = led
        service._writer = None
        service._writes = []
        service._writes_lock = threading.Lock()
        service._draining = False

        def first() -> None:
            first_in.set()
            go_on.wait(60)  # a slow first write: another process's lock held a while
            led.record_download("1", size=1, sha256="1" * 64, local_path=tmp_path / "1")
            order.append("1")

        def later(name: str) -> Callable[[], None]:
            def call() -> None:
                led.record_download(name, size=1, sha256=name * 64, local_path=tmp_path / name)
                order.append(name)
            return call

        with led.batched(every=3600):
            one = service._in_writer(first)
            assert await asyncio.to_thread(first_in.wait, 60)
            two, three = service._in_writer(later("2")), service._in_writer(later("3"))
            go_on.set()
            await asyncio.wait_for(asyncio.gather(one, two, three), 60)
            assert order == ["1", "2", "3"]
            four = service._in_writer(later("4"))  # the thread is idle: made at once, here
            assert four.done() and order == ["1", "2", "3", "4"]
        assert [d.name for d in led.downloads()] == ["1", "2", "3", "4"]
        service._writer.shutdown(wait=True)


# ------------------------------------------------------------------ killed syncs


@pytest.fixture
def served(sshd):
    """N_FILES files on the real sshd in a folder of their own; yields (remote name, path)."""
    sub = Path(tempfile.mkdtemp(prefix="batch-", dir=sshd.root))
    os.chmod(sub, 0o755)
    block = os.urandom(64 * 1024)
    for k in range(N_FILES):
        (sub / f"Loans_{k:03d}_20260601_070000.xlsx").write_bytes(block[k:] + block[:k])
    yield sub.name, sub
    shutil.rmtree(sub, ignore_errors=True)


def run_sync(cfg: Path) -> dict:
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
    out = subprocess.run([sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--json"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert out.returncode in (0, 1, 2), out.stderr[-2000:]
    return json.loads(out.stdout)


#: A sync that kills itself (SIGKILL) once ``kill_after`` files are verified; ``commit`` is the
#: batch interval (3600: nothing of the run is committed before the kill).
KILLER = """
import asyncio, os, signal, sys
from tui.core.config import load_config
from tui.core.ledger import Ledger, LedgerError
from tui.sftp import sync as sync_mod

cfg, kill_after, commit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sync_mod.COMMIT_SECONDS = commit
profile = load_config(cfg).profile("main")

async def main():
    led = Ledger.open(profile.ledger_path, profile=profile.name)
    service = sync_mod.SyncService(profile, led)
    seen = 0
    def on_event(event):
        nonlocal seen
        if isinstance(event, sync_mod.Verified):
            seen += 1
            if seen == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    await service.sync(on_event=on_event)

asyncio.run(main())
"""


def kill_mid_sync(tmp_path: Path, cfg: Path, kill_after: int, commit: float) -> None:
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(script), str(cfg), str(kill_after), str(commit)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]


def check_consistent(tmp_path: Path, server: Path) -> list[str]:
    """Every download the ledger holds is on disk, complete and identical; the names placed."""
    local = tmp_path / "local"
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="main") as led:
        assert led.integrity_ok()
        for d in led.downloads():
            assert sha(Path(d.local_path)) == d.sha256 == sha(server / d.name)
    placed = sorted(p.name for p in local.iterdir() if p.is_file()) if local.exists() else []
    for name in placed:
        assert sha(local / name) == sha(server / name), name  # nothing partial has a final name
    return placed


def check_resync(tmp_path: Path, cfg: Path, server: Path, placed: list[str], verified: set[str]) -> None:
    names = sorted(p.name for p in server.iterdir())
    doc = run_sync(cfg)
    assert doc["failed"] == [] and doc["error"] is None
    downloaded = sorted(d["name"] for d in doc["downloaded"])
    skipped = sorted(doc["skipped"])
    # Each file counted once: fetched now, or held already (recorded, or found in place).
    assert sorted(downloaded + skipped) == names
    assert set(placed) <= set(skipped)  # bytes already in place are not counted as fetched now
    assert not set(downloaded) & set(placed)
    # The copies whose verification the ledger did not know yet are verified now.
    assert sorted(f["name"] for f in doc["files"]) == sorted(set(names) - verified)
    local = tmp_path / "local"
    assert sorted(p.name for p in local.iterdir() if p.is_file()) == names  # no "(changed" copies
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="main") as led:
        rows = [d.name for d in led.downloads()]
        assert sorted(rows) == names  # one download row per file
        assert all(d.verification is not None for d in led.deliveries())
    again = run_sync(cfg)
    assert again["downloaded"] == [] and sorted(again["skipped"]) == names and again["files"] == []


@pytest.mark.sshd
def test_a_sync_killed_between_commits_loses_nothing_and_the_next_counts_honestly(sshd, served, tmp_path):
    remote, server = served
    cfg = write_plain_config(tmp_path, sshd, remote)
    kill_mid_sync(tmp_path, cfg, kill_after=N_FILES // 2, commit=3600)
    placed = check_consistent(tmp_path, server)
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="main") as led:
        assert led.downloads() == []  # killed before the run's first commit
    assert len(placed) >= N_FILES // 2  # what was verified is in place
    check_resync(tmp_path, cfg, server, placed, verified=set())


@pytest.mark.sshd
def test_a_sync_killed_after_some_commits_loses_nothing(sshd, served, tmp_path):
    remote, server = served
    cfg = write_plain_config(tmp_path, sshd, remote)
    # Commits every 10 ms: the kill comes after several of them.
    kill_mid_sync(tmp_path, cfg, kill_after=N_FILES - 5, commit=0.01)
    placed = check_consistent(tmp_path, server)
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="main") as led:
        recorded = {d.name for d in led.downloads()}
        verified = {d.name for d in led.deliveries() if d.verification is not None}
    assert recorded  # some commits happened before the kill
    assert recorded <= set(placed)  # never a record of a file that is not in place
    check_resync(tmp_path, cfg, server, [n for n in placed if n not in recorded], verified)
