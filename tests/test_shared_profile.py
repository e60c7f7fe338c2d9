"""Several report-keeper processes sharing one profile (one ledger file, one local folder), in
real processes against the real sshd: the app open while cron's ``sync`` and ``check`` run, a
slow ``sync`` still running when the next one starts, a run stopped (Ctrl-Z, SIGSTOP) in the
middle of a batch of records.

- Two ``sync`` of the same profile at once through a slowed connection: every file is fetched
  and counted once between them (``downloaded`` in one document, ``skipped`` in the other),
  recorded once, no part file is left, and the ledger passes its integrity check.
- ``sync`` killed (SIGKILL) while a part file is being written: nothing partial under a final
  name, nothing recorded that is not true, and the next ``sync`` resumes the part.
- A ``purge`` run by hand (or a person's ``rm``) while ``sync`` verifies held copies: a copy
  deleted before it was read is no unreadable report, and no verdict is recorded for its bytes.
- A ledger whose write lock another process holds (a stopped sync keeps its batch's
  transaction open): the commands that only read it (``check --offline``, ``purge
  --dry-run``) still answer from what is committed instead of waiting for the lock and failing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.fixtures_sshd import TcpProxy
from tests.xlsx_factory import write_report
from tui.core.ledger import Ledger
from tui.demo import data as demo_data
from tui.sftp.download import RECORD_FROM

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"
N_FILES = 6
ROWS = 2000  # about 90 KB a workbook

#: The CLI with the ledger's lock wait set by the test (the product's 30 s, shortened so a
#: test that waits in vain fails in seconds).
LAUNCH = ("import sys; from tui.core import ledger; ledger.BUSY_TIMEOUT = float(sys.argv[1]); "
          "from tui.sftp import sync; sync.COMMIT_SECONDS = float(sys.argv[2]) or sync.COMMIT_SECONDS; "
          "from tui.cli import main; sys.exit(main(sys.argv[3:]))")


def sha(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workbooks(tmp_path_factory):
    """The served workbooks, written once for the module (every test is served the same bytes)."""
    made = tmp_path_factory.mktemp("shared-workbooks")
    for n in range(N_FILES):
        day = date(2026, 5, 20) + timedelta(days=n)
        write_report(made / f"{demo_data.DAILY}_{day:%Y%m%d}_070012.xlsx", n_rows=ROWS,
                     day=day - timedelta(days=3), seed=n)
    return made


@pytest.fixture
def served(sshd, workbooks):
    """N_FILES small real workbooks (each verifies ok) in a folder of their own on the sshd."""
    base = Path(tempfile.mkdtemp(prefix="shared-", dir=sshd.root))
    os.chmod(base, 0o755)
    for made in sorted(workbooks.iterdir()):
        shutil.copy(made, base / made.name)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def write_config(tmp_path: Path, sshd, base: Path, port: int) -> Path:
    known_hosts = tmp_path / "known_hosts"  # the proxy's port, the sshd's key
    known_hosts.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{port} "))
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"[profile.main]\n"
        f'host = "127.0.0.1"\nport = {port}\nusername = "{sshd.username}"\nkey = "{sshd.key}"\n'
        f'known_hosts = "{known_hosts}"\nssh_config = "{sshd.ssh_config}"\n'
        f'remote_dir = "{base.name}"\nlocal_dir = "{tmp_path / "local"}"\n'
        f'ledger = "{tmp_path / "ledger.sqlite3"}"\ntimezone = "UTC"\nconcurrency = 2\n')
    return cfg


def env_for(tmp_path: Path, now: str = NOW) -> dict[str, str]:
    return {**os.environ, "REPORT_KEEPER_NOW": now, "XDG_STATE_HOME": str(tmp_path / "state"),
            "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config")}


async def run_cli(tmp_path: Path, *argv: str, busy: float = 30.0, now: str = NOW,
                  commit: float = 0.0) -> tuple[int, str, str]:
    """The CLI in a process of its own; ``commit``: how often its sync commits its records
    (0: the product's own interval)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCH, str(busy), str(commit), *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env_for(tmp_path, now),
        cwd=ROOT, stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    return proc.returncode, out.decode(), err.decode()


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def part_files(tmp_path: Path) -> list[Path]:
    work = tmp_path / "local" / ".report-keeper" / "parts"
    return sorted(work.iterdir()) if work.is_dir() else []


@pytest.mark.sshd
async def test_two_syncs_of_one_profile_at_once_fetch_and_count_each_file_once(sshd, served, tmp_path):
    names = sorted(p.name for p in served.iterdir())
    # Slowed: each file takes a good part of a second, so the two runs really overlap.
    async with TcpProxy(sshd.port, rate=400_000) as proxy:
        cfg = write_config(tmp_path, sshd, served, proxy.port)
        argv = ("sync", "--config", str(cfg), "--json")
        (c1, o1, e1), (c2, o2, e2) = await asyncio.gather(run_cli(tmp_path, *argv), run_cli(tmp_path, *argv))
    for code, out, err in ((c1, o1, e1), (c2, o2, e2)):
        assert "Traceback" not in err, err[-3000:]
        doc = json.loads(out)
        assert code == 0 and doc["error"] is None and doc["failed"] == [], (code, out, err[-3000:])
        # Each run accounts for every file: fetched by it, or left to / found from the other.
        assert sorted([d["name"] for d in doc["downloaded"]] + doc["skipped"]) == names, doc
    d1 = {d["name"] for d in json.loads(o1)["downloaded"]}
    d2 = {d["name"] for d in json.loads(o2)["downloaded"]}
    assert not d1 & d2 and d1 | d2 == set(names)  # each file fetched (and counted) once
    local = tmp_path / "local"
    assert sorted(p.name for p in local.iterdir() if p.is_file()) == names  # no "(changed" copies
    for n in names:
        assert sha(local / n) == sha(served / n)
    assert [p for p in part_files(tmp_path) if p.suffix == ".part"] == []
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="main") as led:
        assert led.integrity_ok()
        rows = [d.name for d in led.downloads()]
        assert sorted(rows) == names  # one download row per file
        assert all(d.verification is not None for d in led.deliveries())


# ---------------------------------------------------------------- a write lock held for long

#: Another process holding the ledger's write lock, as a sync stopped (Ctrl-Z, SIGSTOP) in
#: the middle of a batch of records holds its open transaction.
HOLDER = ("import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
          "c.execute('BEGIN IMMEDIATE'); c.execute(\"UPDATE meta SET value = value WHERE key = "
          "'schema_version'\"); print('locked', flush=True); sys.stdin.readline()")


@pytest.fixture
def held_ledger(tmp_path, monkeypatch):
    """A profile with a short history (retention data) whose ledger another process holds."""
    from tests import retention_data as rd

    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h")
    with env.ledger() as ledger:
        env.export(ledger, rd.OLD)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(env.ledger_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield env
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("command", [["check", "--offline", "--json"], ["purge", "--dry-run", "--json"]],
                         ids=["check-offline", "purge-dry-run"])
async def test_a_command_that_only_reads_the_ledger_answers_while_another_holds_its_lock(
        held_ledger, tmp_path, command):
    from tests import retention_data as rd

    env = held_ledger
    # A lock wait far longer than the command's own work: waiting for the lock at all fails the
    # test (the command gives up after it and says the ledger was locked).
    code, out, err = await run_cli(tmp_path, *command, "--config", str(env.config), busy=20,
                                    now=rd.NOW_ISO)
    assert "Traceback" not in err, err
    doc = json.loads(out)
    assert doc.get("error_kind") != "ledger" and code == 0, (code, out, err)
    if command[0] == "check":  # the whole history, as committed: every run on time
        report = doc["reports"][0]
        assert report["problems"] == [] and len(report["runs"]) >= 10, report
    else:
        assert doc["dry_run"] is True and len(doc["purged"]) == 10  # what it would purge


# ---------------------------------------------------------------- purge beside a sync


async def test_a_purge_by_hand_while_sync_verifies_held_copies_records_no_false_verdict(tmp_path, monkeypatch):
    """After an upgrade, ``sync`` reads every held copy once more (for the content checks), which
    can take minutes; a ``purge`` run by hand meanwhile deletes old copies the sync
    was about to read. Their bytes were never read: the sync must not call them unreadable (a
    critical result and alert for copies deleted on purpose), nor record that verdict for their
    content in the ledger, where ``check`` and the cache would find it."""
    from tests import retention_data as rd
    from tui.sftp import sync as sync_mod

    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    conn = sqlite3.connect(env.ledger_path)
    with conn:  # verified by a release before the content checks: the next sync reads each again
        conn.execute("UPDATE verifications SET content_version = NULL")
    conn.close()

    # The seam: the sync's verifications wait until the purge by hand is over.
    real = sync_mod.verify_cached_async
    asked, go = asyncio.Event(), asyncio.Event()

    async def verify_after_the_purge(*args, **kwargs):
        asked.set()
        await go.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(sync_mod, "verify_cached_async", verify_after_the_purge)
    ledger = env.ledger()
    result = sync_mod.SyncResult()
    task = asyncio.ensure_future(sync_mod.SyncService(env.profile(), ledger)._verify_unverified(result, None))
    try:
        await asyncio.wait_for(asked.wait(), 60)
        code, out, err = await run_cli(tmp_path, "purge", "--json", "--config", str(env.config), now=rd.NOW_ISO)
        doc = json.loads(out)
        assert code == 0 and [p["name"] for p in doc["purged"]] == [rd.name(i) for i in rd.OLD], err
        go.set()
        await asyncio.wait_for(task, 120)
    finally:
        go.set()
        if not task.done():
            task.cancel()
        ledger.close()
    assert result.files == []  # facts brought up to date are no news of this run
    conn = sqlite3.connect(env.ledger_path)
    try:
        statuses = {s for s, in conn.execute("SELECT status FROM verifications")}
    finally:
        conn.close()
    assert statuses == {"ok"}, statuses  # no verdict on bytes never read
    code, out, err = await run_cli(tmp_path, "check", "--offline", "--json", "--config", str(env.config),
                                   now=rd.NOW_ISO)
    report = json.loads(out)["reports"][0]
    assert code == 0 and report["problems"] == [], report["problems"]


async def test_a_never_verified_copy_deleted_while_sync_verifies_it_is_not_called_unreadable(tmp_path, monkeypatch):
    """A run killed before it verified leaves held copies the next sync verifies; one deleted
    meanwhile (``rm`` by a person, another tool) was never read: it is no unreadable report of
    this run (critical, and alerted); the next listing finds it missing."""
    from tests import retention_data as rd
    from tui.sftp import sync as sync_mod

    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h", days=4)
    conn = sqlite3.connect(env.ledger_path)
    with conn:  # as a run killed before it recorded any verification left it
        conn.execute("DELETE FROM verifications")
    conn.close()
    real = sync_mod.verify_cached_async
    asked, go = asyncio.Event(), asyncio.Event()

    async def verify_when_told(*args, **kwargs):
        asked.set()
        await go.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(sync_mod, "verify_cached_async", verify_when_told)
    ledger = env.ledger()
    result = sync_mod.SyncResult()
    task = asyncio.ensure_future(sync_mod.SyncService(env.profile(), ledger)._verify_unverified(result, None))
    try:
        await asyncio.wait_for(asked.wait(), 60)
        gone = await asyncio.create_subprocess_exec("rm", str(env.path(0)))  # another process deletes it
        assert await gone.wait() == 0
        go.set()
        await asyncio.wait_for(task, 120)
        assert {v.name: v.status for v in result.files} == {rd.name(i): "ok" for i in range(1, 4)}
        fresh = sqlite3.connect(env.ledger_path)
        try:
            statuses = {s for s, in fresh.execute("SELECT status FROM verifications")}
        finally:
            fresh.close()
        assert statuses == {"ok"}  # no verdict on the bytes never read
    finally:
        go.set()
        if not task.done():
            task.cancel()
        ledger.close()


# ---------------------------------------------------------------- kill -9 mid-transfer

BIG = 3 * 1024 * 1024


@pytest.fixture
def served_big(sshd):
    """One big file (the oldest: fetched first) and three small ones, random bytes."""
    base = Path(tempfile.mkdtemp(prefix="killed-", dir=sshd.root))
    os.chmod(base, 0o755)
    (base / "Full Loan History_20260601_060000.xlsx").write_bytes(os.urandom(BIG))
    for n in range(3):
        (base / f"Loans_{n:02d}_20260601_07{n:02d}00.xlsx").write_bytes(os.urandom(64 * 1024))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.sshd
async def test_a_sync_killed_while_a_part_file_is_written_loses_nothing_and_the_next_resumes(
        sshd, served_big, tmp_path):
    names = sorted(p.name for p in served_big.iterdir())
    big = "Full Loan History_20260601_060000.xlsx"
    async with TcpProxy(sshd.port, rate=300_000) as proxy:
        cfg = write_config(tmp_path, sshd, served_big, proxy.port)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--json",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env_for(tmp_path),
            cwd=ROOT, stdin=asyncio.subprocess.DEVNULL)
        try:
            # The seam: the big file's part holds more than a part's record is written from
            # (a smaller part costs at most that much again, by design). A bound, not a timing.
            for _ in range(12_000):
                sizes = [p.stat().st_size for p in part_files(tmp_path) if p.suffix == ".part"]
                if any(s > RECORD_FROM + 64 * 1024 for s in sizes) or proc.returncode is not None:
                    break
                await asyncio.sleep(0.01)
            assert proc.returncode is None, "the sync ended before its part file was seen"
            proc.kill()
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert not (tmp_path / "local" / big).exists()  # nothing partial under a final name
        with Ledger.open(tmp_path / "ledger.sqlite3", profile="main") as led:
            assert led.integrity_ok()
            for d in led.downloads():  # nothing recorded that is not true
                assert sha(d.local_path) == d.sha256 == sha(served_big / d.name)
        proxy.rate = None
        code, out, err = await run_cli(tmp_path, "sync", "--config", str(cfg), "--json")
    assert "Traceback" not in err, err[-3000:]
    doc = json.loads(out)
    assert code == 2 and doc["error"] is None and doc["failed"] == [], err[-3000:]  # random bytes: unreadable
    assert sorted([d["name"] for d in doc["downloaded"]] + doc["skipped"]) == names
    resumed = {d["name"]: d["resumed_from"] for d in doc["downloaded"]}
    assert resumed[big] > 0  # the part file was resumed, not fetched again from its start
    local = tmp_path / "local"
    assert sorted(p.name for p in local.iterdir() if p.is_file()) == names
    for n in names:
        assert sha(local / n) == sha(served_big / n)
    assert [p for p in part_files(tmp_path) if p.suffix == ".part"] == []
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="main") as led:
        assert led.integrity_ok() and sorted(d.name for d in led.downloads()) == names
        assert not led.partials()


# ---------------------------------------------------------------- two purges at once

#: A real purge that stops at its first deletion (its decision recorded) until a line arrives
#: on stdin, then prints the names it reports purged.
PAUSED_PURGE = r"""
import json, sys
from tui.core import retention
from tui.core.config import load_config
from tui.core.ledger import Ledger

real, waited = retention._delete, []

def paused(*args, **kwargs):
    if not waited:
        waited.append(1)
        print("deleting", flush=True)
        sys.stdin.readline()
    return real(*args, **kwargs)

retention._delete = paused
profile = load_config(sys.argv[1]).profile()
with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
    result = retention.purge(profile, ledger)
print(json.dumps([c.name for c in result.gone]), flush=True)
"""


async def test_two_purges_at_once_each_report_only_what_they_deleted(tmp_path, monkeypatch):
    """``purge`` by hand while cron's ``sync`` ends with its own purge (or two hands): one of
    them deletes each copy and says so; the other does not report the same copies as purged by
    it, nor as left by an interrupted purge."""
    from tests import retention_data as rd

    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    first = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PAUSED_PURGE, str(env.config), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env=env_for(tmp_path, rd.NOW_ISO), cwd=ROOT)
    try:
        assert (await asyncio.wait_for(first.stdout.readline(), 60)).strip() == b"deleting"
        second = asyncio.ensure_future(run_cli(tmp_path, "purge", "--json", "--config", str(env.config),
                                               now=rd.NOW_ISO))
        # It waits for the first (its log says so as it starts waiting), or has answered.
        log = tmp_path / "state" / "report-keeper" / "log" / "report-keeper.log"
        for _ in range(6000):  # a bound, not a timing
            if second.done() or "another process is purging the copies" in _text(log):
                break
            await asyncio.sleep(0.01)
        first.stdin.write(b"go\n")
        await first.stdin.drain()
        theirs = json.loads(await asyncio.wait_for(first.stdout.readline(), 60))
        await asyncio.wait_for(first.wait(), 60)
        code, out, err = await asyncio.wait_for(second, 60)
    finally:
        if first.returncode is None:
            first.kill()
        await first.wait()
    assert first.returncode == 0 and code == 0, (first.returncode, code, out)
    doc = json.loads(out)
    mine = [p["name"] for p in doc["purged"]]
    old = sorted(rd.name(i) for i in rd.OLD)
    assert sorted(theirs + mine) == old, (theirs, mine)  # each copy reported purged once
    assert not any(p["interrupted"] for p in doc["purged"])  # nobody was interrupted
    assert env.files() == {rd.name(i) for i in range(10, rd.DAYS)}
    with env.ledger() as ledger:
        assert sorted(dl.name for dl in ledger.downloads() if dl.purged_at is not None) == old
        assert ledger.integrity_ok()


async def test_a_purge_held_up_by_a_stopped_purge_says_so_and_deletes_nothing(tmp_path, monkeypatch):
    """The other purge never ends (stopped: Ctrl-Z, SIGSTOP): this one waits as long as for the
    ledger's lock, then says what holds it and deletes nothing."""
    from tests import retention_data as rd
    from tests.locks import flock_held_elsewhere

    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    lock = env.ledger_path.with_name(env.ledger_path.name + ".purge.lock")
    lock.touch(mode=0o600)
    before = env.files()
    with flock_held_elsewhere(lock):
        code, out, err = await run_cli(tmp_path, "purge", "--json", "--config", str(env.config), busy=0.2,
                                       now=rd.NOW_ISO)
    assert "Traceback" not in err, err
    doc = json.loads(out)
    assert code == 2 and doc["status"] == "critical" and doc["purged"] == [], (code, out)
    assert doc["error"].startswith("Another report-keeper process has been purging the copies of the ledger")
    assert "nothing was deleted" in doc["error"] and "disk" not in doc["error"], doc["error"]
    assert env.files() == before


# ---------------------------------------------------------------- placed, not yet recorded


@pytest.mark.sshd
@pytest.mark.parametrize(("commit", "rate"), [(0.0, 400_000), (30.0, 150_000)],
                         ids=["commits-as-usual", "commit-comes-late"])
async def test_a_file_the_other_sync_has_just_placed_is_not_fetched_again(sshd, served, tmp_path, monkeypatch,
                                                                         commit, rate):
    """Two syncs of one profile: the other one places a file a moment before this one claims it,
    and its record reaches the ledger with its batch's next commit (half a second later; much
    later on a loaded machine, a slow disk, a ledger another program holds locked: here only
    at the end of its run, seconds later). This one must not fetch the whole file again meanwhile
    (then find the same bytes in place): it waits for the record as long as the process that
    placed the file is still on its way to recording it, and leaves the file to that process."""
    from tui.core.config import load_config
    from tui.sftp import parts
    from tui.sftp import sync as sync_mod
    from tui.sftp.queue import Done

    target = sorted(p.name for p in served.iterdir())[0]  # the oldest: each run fetches it first
    async with TcpProxy(sshd.port, rate=rate) as proxy:
        cfg = write_config(tmp_path, sshd, served, proxy.port)
        local = tmp_path / "local"
        real_lock = parts.lock_part

        def lock_once_placed(work, remote):  # the seam: the other sync has placed the target
            if remote.name == target:
                for _ in range(6000):  # a bound, not a timing
                    if (local / target).exists():
                        break
                    time.sleep(0.01)
            return real_lock(work, remote)

        monkeypatch.setattr(parts, "lock_part", lock_once_placed)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
        profile = load_config(cfg).profile("main")
        events = []
        other = None
        with Ledger.open(profile.ledger_path, profile="main") as ledger:
            async with sync_mod.SyncService(profile, ledger) as service:
                listing = await service.list_remote()  # before the other sync holds anything
                assert target in {e.name for e in listing.wanted}
                other = asyncio.ensure_future(run_cli(tmp_path, "sync", "--config", str(cfg), "--json",
                                                      commit=commit))
                result = await service.download([target], on_event=events.append, listing=listing)
        code, out, err = await asyncio.wait_for(other, 120)
    assert "Traceback" not in err, err[-3000:]
    theirs = json.loads(out)
    assert code == 0 and target in {d["name"] for d in theirs["downloaded"]}, err[-3000:]
    fetched_again = [e for e in events if isinstance(e, Done) and e.name == target]
    assert fetched_again == [], fetched_again  # its bytes came over the link once
    assert target in result.skipped and result.failed == [] and result.downloaded == []
    assert sorted(p.name for p in local.iterdir() if p.is_file()) == sorted(p.name for p in served.iterdir())
