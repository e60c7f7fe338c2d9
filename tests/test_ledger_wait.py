"""Processes sharing one profile: a write that meets another process's lock on the ledger never
stops the event loop, in real processes holding a real lock.

- ``sync`` (a real process, the real sshd behind a slowing proxy): another program takes the
  ledger's write lock after the first records and holds it until more files have landed. The
  sync's records wait for it (it waits long here, so nothing is refused), and meanwhile the
  downloads of the other files go on: the holder lets go because files landed, not because
  its bound ran out. Afterwards every file is recorded, none is refused.
- ``sync`` killed (SIGKILL) while its records wait for that lock: the files landed meanwhile
  were noted as they waited, so the next sync records them without fetching them again.
- Inside one process: a write waiting for another process's lock holds no lock of the
  ledger's own, so another thread's read answers at once; the wait is told to a watcher once
  it is long enough to be news, and its end too.
- The app (Pilot, the demo server): a scheduled sync's batch holds the ledger while the user
  downloads. The screen stays live (a key switches the screen, the Queue's rows move on), the
  header and a toast say that another process holds the ledger, and once it lets go every
  file is recorded.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures_sshd import TcpProxy
from tests.test_sync_ledger_locked import LAUNCH, NOW, Run, served, sha, workbooks  # noqa: F401 - fixtures
from tui.core import ledger as ledger_mod
from tui.core.ledger import Ledger
from tui.sftp import unrecorded

ROOT = Path(__file__).resolve().parent.parent

#: Another program holding the ledger's write lock: once ``argv[2]`` downloads are committed it
#: takes the lock and says "locked"; it lets go once ``argv[3]`` more files have landed in the
#: folder ``argv[4]`` ("landed"), or after ``argv[5]`` seconds at most ("bound": the downloads
#: stood still under the lock), or when a line arrives on stdin ("told").
HOLDER = r"""
import os, select, sqlite3, sys, time
path, after = sys.argv[1], int(sys.argv[2])
more, folder, bound = int(sys.argv[3]), sys.argv[4], float(sys.argv[5])


def landed():
    try:
        return len([n for n in os.listdir(folder) if not n.startswith(".")])
    except FileNotFoundError:
        return 0


while not os.path.exists(path):  # connecting first would make an empty file there
    time.sleep(0.005)
conn = sqlite3.connect(path, isolation_level=None, timeout=0)
while after:
    try:
        if conn.execute("SELECT count(*) FROM downloads").fetchone()[0] >= after:
            break
    except sqlite3.OperationalError:  # not created yet
        pass
    time.sleep(0.005)
while True:
    try:
        conn.execute("BEGIN EXCLUSIVE")
        break
    except sqlite3.OperationalError:
        time.sleep(0.0005)
wanted = landed() + more
print("locked", flush=True)
end = time.monotonic() + bound
why = "bound"
while time.monotonic() < end:
    if more and landed() >= wanted:
        why = "landed"
        break
    if select.select([sys.stdin], [], [], 0.005)[0]:
        why = "told"
        break
conn.execute("ROLLBACK")
conn.close()
print(why, flush=True)
"""


def hold(ledger: Path, *, after: int = 0, more: int = 0, folder: Path | None = None,
         bound: float = 120.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(ledger), str(after), str(more), str(folder or ledger.parent),
         str(bound)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def lock_between_landings(proxy: TcpProxy, holder: subprocess.Popen[str], local: Path,
                                proc: asyncio.subprocess.Process) -> str:
    """The holder's "locked", taken while the downloads stand still: once two files have landed
    the proxy passes nothing more until the holder has the lock (its turn between two of the
    sync's commits is then certain: under load it came only after most files had landed), so
    the rest land under the lock, at full speed: the proxy's delay has done its part)."""
    def landed() -> int:
        return len([n for n in os.listdir(local) if not n.startswith(".")])

    while proc.returncode is None and landed() < 2:
        await asyncio.sleep(0.005)
    proxy.pause()
    try:
        return (await asyncio.to_thread(holder.stdout.readline)).strip()
    finally:
        proxy.delay = 0.0
        proxy.resume()


@pytest.mark.sshd
async def test_a_sync_whose_ledger_another_process_holds_goes_on_downloading_meanwhile(sshd, served, tmp_path):
    async with TcpProxy(sshd.port, delay=0.03) as proxy:
        run = Run(tmp_path, sshd, served, proxy.port, "one")
        local = tmp_path / "local" / "main"
        local.mkdir(parents=True, exist_ok=True)
        # The bound is far beyond what three files take; a sync whose loop stood still inside
        # SQLite reaches it (the run's lock wait is longer still, so its records wait).
        holder = await asyncio.to_thread(hold, run.ledger, after=2, more=3, folder=local, bound=60)
        try:
            env = {**os.environ, "REPORT_KEEPER_NOW": NOW, "XDG_STATE_HOME": str(tmp_path / "state")}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LAUNCH, "300", *run.argv(),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
            reading = asyncio.ensure_future(proc.communicate())
            locked = await lock_between_landings(proxy, holder, local, proc)
            out_b, err_b = await asyncio.wait_for(reading, 300)
            code, out, err = proc.returncode, out_b.decode(), err_b.decode()
            said = await asyncio.to_thread(holder.communicate)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
    assert [locked, *said[0].split()] == ["locked", "landed"], said  # files landed while it held the lock
    assert "Traceback" not in err, err[-3000:]
    _status, docs = run.documents(out)
    doc, names = docs["main"], run.names("main")
    assert code == 0 and doc["error"] is None and doc["failed"] == [], err[-3000:]
    assert sorted(d["name"] for d in doc["downloaded"]) == names
    assert run.recorded("main") == {n: sha(served / "a" / n) for n in names}
    log = (tmp_path / "state" / "report-keeper" / "log" / "report-keeper.log").read_text()
    assert "could not record" not in log  # nothing was refused (and recorded later): the records waited
    # What was noted while the records waited is forgotten once they are on the disk.
    assert unrecorded.read(local) == []


@pytest.mark.sshd
async def test_a_sync_killed_while_its_records_wait_for_the_lock_costs_no_second_fetch(sshd, served, tmp_path):
    """Files go on landing while their records wait for another process's lock: a run killed
    then (SIGKILL: the OOM killer, ``timeout -s KILL``) loses those records, but not the files:
    they were noted as they waited, and the next sync records them from the note (hashing
    them again) instead of fetching their bytes again."""
    async with TcpProxy(sshd.port, delay=0.03) as proxy:
        run = Run(tmp_path, sshd, served, proxy.port, "one")
        local = tmp_path / "local" / "main"
        local.mkdir(parents=True, exist_ok=True)
        holder = await asyncio.to_thread(hold, run.ledger, after=2)
        env = {**os.environ, "REPORT_KEEPER_NOW": NOW, "XDG_STATE_HOME": str(tmp_path / "state")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LAUNCH, "300", *run.argv(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
        try:
            assert await lock_between_landings(proxy, holder, local, proc) == "locked"
            for _ in range(6000):  # the seam: the note names files landed while their records wait
                if len(unrecorded.read(local)) >= 3:
                    break
                await asyncio.sleep(0.01)
            proc.kill()
            await proc.communicate()
            noted = {n.name: n for n in unrecorded.read(local)}
            assert len(noted) >= 3, noted
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert (await asyncio.to_thread(holder.stdout.readline)).strip() == "told"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if holder.poll() is None:
                holder.kill()
            await asyncio.to_thread(holder.wait)
        before = run.recorded("main")
        assert not set(noted) & set(before)  # their records went with the killed run
        for name, n in noted.items():  # each noted file is there, complete
            assert sha(local / name) == n.sha256 == sha(served / "a" / name)
        # The killed run's last read requests may still be on their way to the server, and
        # what it answers is counted as it passes: only once that connection has ended is all
        # of the killed run's traffic counted, none of it charged to the next sync (a bound
        # for a busy machine, not a timing).
        await asyncio.wait_for(proxy.idle(), 60)
        fetched_before = proxy.bytes_down
        code, out, err = await run.sync()
        fetched = proxy.bytes_down - fetched_before
    assert "Traceback" not in err, err[-3000:]
    _status, docs = run.documents(out)
    doc, names = docs["main"], run.names("main")
    assert code == 0 and doc["error"] is None and doc["failed"] == [], err[-3000:]
    assert set(noted) <= set(doc["skipped"]), doc  # recorded from the note: not fetched again
    assert not set(noted) & {d["name"] for d in doc["downloaded"]}
    left = [n for n in names if n not in before and n not in noted]  # fetched (or resumed) now
    assert fetched < sum((served / "a" / n).stat().st_size for n in left) + 65536, fetched
    assert run.recorded("main") == {n: sha(served / "a" / n) for n in names}
    assert unrecorded.read(local) == []


def test_a_write_waiting_for_another_process_holds_up_no_reader_and_is_told(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "WAIT_NOTICE", 0.0)  # any wait is news here
    path = tmp_path / "ledger.sqlite3"
    led = Ledger.open(path, profile="main")
    told: list[tuple[bool, str]] = []
    waiting = threading.Event()

    def watcher(now_waiting: bool, holder: str) -> None:
        told.append((now_waiting, holder))
        if now_waiting:
            waiting.set()

    stop = led.watch_waits(watcher)
    holder = hold(path)
    try:
        assert holder.stdout.readline().strip() == "locked"
        writing = threading.Thread(target=led.record_partial, args=("a.xlsx",),
                                   kwargs={"size": 10, "mtime": None, "part_path": "/x.part", "bytes_done": 5})
        writing.start()
        assert waiting.wait(60), "the write never said it waits"
        # The write waits for the other process; a read in this thread answers meanwhile.
        assert led.partials() == {} and writing.is_alive()
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "told"
        writing.join(60)
        assert not writing.is_alive()
    finally:
        holder.kill()
        holder.wait()
    # The other process is named: its id and its command line.
    assert [w for w, _ in told] == [True, False] and told[1][1] == "", told
    assert told[0][1].startswith(f"process {holder.pid} ({Path(sys.executable).name} -c "), told
    assert set(led.partials()) == {"a.xlsx"}
    stop()
    led.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM partials").fetchone()[0] == 1
    finally:
        conn.close()
