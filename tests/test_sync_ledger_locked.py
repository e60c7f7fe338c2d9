"""``sync`` when its ledger cannot be written mid-run, in real processes against the real sshd.

Two real ways a ledger stops taking records while files download:

- another program takes the ledger's write lock (``BEGIN EXCLUSIVE``) and holds it longer
  than the sync waits for it. The sync runs with a short lock wait (the module's
  ``BUSY_TIMEOUT``, set by the test's launcher only) so the test does not wait the product's
  30 s per write;
- the disk stops taking the ledger's journal: the sync's file-size limit is lowered to the
  journal's size mid-run (``prlimit``), so every later commit fails as on a full disk, taking
  the records it held with it.

A proxy delays every packet so the downloads take a few seconds and the failure comes in the
middle of them. The promise: a file is reported ``downloaded`` only once its record is on the
disk; the others are ``failed`` with a message naming the ledger and what to do, on disk,
complete; the next sync records them (``skipped``) without fetching their bytes again (the
proxy counts them), and calls none lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.fixtures_sshd import TcpProxy
from tests.xlsx_factory import write_report
from tui.core.ledger import Ledger
from tui.demo import data as demo_data

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"
N_FILES = 10  # per server folder
ROWS = 500  # about 28 KB a workbook: several times a sync's own traffic without files (~5 KB a connection)
BUSY = 0.3  # the sync's lock wait in these tests (seconds)
#: The profiles of a run: one, or two sharing the ledger file (``sync --all-profiles``).
MODES = {"one": {"main": "a"}, "all": {"alpha": "a", "beta": "b"}}

pytestmark = pytest.mark.sshd

#: The CLI with a short lock wait: what a lock held for minutes does to a real sync, in seconds.
LAUNCH = ("import sys; from tui.core import ledger; ledger.BUSY_TIMEOUT = float(sys.argv[1]); "
          "from tui.cli import main; sys.exit(main(sys.argv[2:]))")

#: Another program holding the ledger's write lock: once the sync has committed ``argv[2]``
#: downloads, it takes the lock (as soon as the sync's open batch has committed), says "locked",
#: and holds it until a line arrives on stdin (or, given ``argv[3]``, until that many more files
#: have landed in the folder ``argv[4]``, or it holds ``argv[5]`` files: the downloads went on
#: under the lock).
HOLDER = r"""
import sqlite3, sys, time
path, after = sys.argv[1], int(sys.argv[2])
import os
more = int(sys.argv[3]) if len(sys.argv) > 3 else None


def landed():
    return len([n for n in os.listdir(sys.argv[4]) if not n.startswith(".")])


while not os.path.exists(path):  # connecting first would make an empty file there
    time.sleep(0.005)
conn = sqlite3.connect(path, isolation_level=None, timeout=0)
while True:
    try:
        if conn.execute("SELECT count(*) FROM downloads").fetchone()[0] >= after:
            break
    except sqlite3.OperationalError:  # not created yet
        pass
    time.sleep(0.005)
while True:  # the moment between two of the sync's batches (its busy wait would sleep past it)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        break
    except sqlite3.OperationalError:
        time.sleep(0.0005)
print("locked", flush=True)
if more is None:
    sys.stdin.readline()
else:
    wanted = min(landed() + more, int(sys.argv[5]))
    while landed() < wanted:
        time.sleep(0.005)
    if len(sys.argv) > 6:  # and until the sync has given up on a record (its log says so)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with open(sys.argv[6], encoding="utf-8", errors="replace") as f:
                    if "could not record the download" in f.read():
                        break
            except OSError:
                pass
            time.sleep(0.01)
conn.execute("ROLLBACK")
conn.close()
print("released", flush=True)
"""


def sha(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workbooks(tmp_path_factory):
    """The served workbooks, written once for the module (every test is served the same bytes;
    writing them is a good part of a second each)."""
    made = tmp_path_factory.mktemp("locked-workbooks")
    for k, folder in enumerate(("a", "b")):
        sub = made / folder
        sub.mkdir()
        for n in range(N_FILES):
            day = date(2026, 5, 20) + timedelta(days=n)
            write_report(sub / f"{demo_data.DAILY}_{day:%Y%m%d}_070012.xlsx", n_rows=ROWS,
                         day=day - timedelta(days=3), seed=10 * k + n)
    return made


@pytest.fixture
def served(sshd, workbooks):
    """Two folders of N_FILES small real workbooks each (each verifies ok) on the sshd."""
    base = Path(tempfile.mkdtemp(prefix="locked-", dir=sshd.root))
    os.chmod(base, 0o755)
    for folder in ("a", "b"):
        shutil.copytree(workbooks / folder, base / folder, copy_function=shutil.copy)
        os.chmod(base / folder, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


class Run:
    """One test's config, its profiles and what their runs left."""

    def __init__(self, tmp_path: Path, sshd, base: Path, port: int, mode: str) -> None:
        self.tmp, self.base, self.mode = tmp_path, base, mode
        self.profiles = MODES[mode]
        self.ledger = tmp_path / "ledger.sqlite3"
        known_hosts = tmp_path / "known_hosts"  # the proxy's port, the sshd's key
        known_hosts.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{port} "))
        self.cfg = tmp_path / "config.toml"
        self.cfg.write_text("".join(
            f"[profile.{name}]\n"
            f'host = "127.0.0.1"\nport = {port}\nusername = "{sshd.username}"\nkey = "{sshd.key}"\n'
            f'known_hosts = "{known_hosts}"\nssh_config = "{sshd.ssh_config}"\n'
            f'remote_dir = "{base.name}/{folder}"\nlocal_dir = "{tmp_path / "local" / name}"\n'
            f'ledger = "{self.ledger}"\ntimezone = "UTC"\nconcurrency = 1\n\n'
            for name, folder in self.profiles.items()))

    def argv(self) -> list[str]:
        return ["sync", "--config", str(self.cfg), "--json",
                *(["--all-profiles"] if self.mode == "all" else [])]

    def names(self, profile: str) -> list[str]:
        return sorted(p.name for p in (self.base / self.profiles[profile]).iterdir())

    def documents(self, out: str) -> tuple[str, dict[str, dict]]:
        """(overall status, each profile's document) of exactly one JSON document."""
        doc = json.loads(out)
        if self.mode == "all":
            assert list(doc["profiles"]) == list(self.profiles)
            return doc["status"], doc["profiles"]
        return doc["status"], {"main": doc}

    def recorded(self, profile: str) -> dict[str, str]:
        """What the ledger file holds (a connection of its own: only what was committed)."""
        conn = sqlite3.connect(self.ledger)
        try:
            return dict(conn.execute("SELECT name, sha256 FROM downloads WHERE profile = ?", (profile,)))
        finally:
            conn.close()

    async def sync(self, busy: float = BUSY) -> tuple[int, str, str]:
        env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LAUNCH, str(busy), *self.argv(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        return proc.returncode, out.decode(), err.decode()

    def check_failed_run(self, code: int, out: str, err: str, words: tuple[str, ...]) -> None:
        """The run said what happened (``words`` in each message) and claimed nothing lost."""
        assert "Traceback" not in err, err[-3000:]
        status, docs = self.documents(out)
        assert code == 2 and status == "critical", err[-3000:]
        kept_somewhere = False
        for name, one in docs.items():
            names, kept = self.names(name), self.recorded(name)
            kept_somewhere |= 0 < len(kept)
            downloaded = {d["name"] for d in one["downloaded"]}
            failed = {f["name"]: f["error"] for f in one["failed"]}
            assert downloaded <= set(kept)  # nothing reported downloaded that the ledger lost
            assert not downloaded & set(failed)
            assert downloaded | set(failed) == set(names)  # each file said, once
            for error in [*failed.values(), *([one["error"]] if failed else [])]:
                assert str(self.ledger) in error and all(w in error for w in words), error
            if failed:
                assert one["status"] == "critical" and one["error_kind"] == "ledger"
            local = self.tmp / "local" / name
            for n in names:  # every file is on disk, complete
                assert sha(local / n) == sha(self.base / self.profiles[name] / n)
        assert kept_somewhere and "LEDGER: " in err  # the failure came mid-sync; said in one line

    async def check_next_run_recovers(self, proxy: TcpProxy) -> None:
        """The ledger takes records again: the next sync records the copies in place without
        fetching their bytes again (less traffic than the smallest file). The proxy only counts
        now: no delay (what it would slow down is the very traffic that must not happen)."""
        proxy.delay = 0.0
        before = proxy.bytes_down
        code, out, err = await self.sync()
        fetched = proxy.bytes_down - before
        smallest = min(p.stat().st_size for p in self.base.rglob("*.xlsx"))
        assert fetched < smallest, (fetched, smallest)
        assert "Traceback" not in err
        status, docs = self.documents(out)
        assert code == 0 and status == "ok", err[-3000:]
        for name, one in docs.items():
            names = self.names(name)
            assert one["error"] is None and one["failed"] == []
            assert one["downloaded"] == [] and sorted(one["skipped"]) == names  # nothing fetched as new
            assert one["lost"] == [] and one["missing_locally"] == []
            folder = self.base / self.profiles[name]
            assert self.recorded(name) == {n: sha(folder / n) for n in names}
            local = self.tmp / "local" / name
            assert sorted(p.name for p in local.iterdir() if p.is_file()) == names  # one copy each
        with Ledger.open(self.ledger) as led:
            assert led.integrity_ok()


async def start_holder(ledger: Path, after: int, until: tuple[int, Path] | None = None,
                       refused_in: Path | None = None) -> asyncio.subprocess.Process:
    """``until``: (more, folder) to release the lock once that many more files have landed in
    the folder (or all of a run's); ``refused_in``: and once that log says a record was refused."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(ledger), str(after),
        *([str(until[0]), str(until[1]), str(N_FILES)] if until is not None else []),
        *([str(refused_in)] if until is not None and refused_in is not None else []),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def locked_then_fast(holder: asyncio.subprocess.Process, proxy: TcpProxy) -> bytes:
    """The holder's first line; once it holds the lock the failure has come mid-sync, so the
    proxy's delay is dropped for the rest of the downloads (read per chunk, so at once)."""
    line = await holder.stdout.readline()
    if line.strip() == b"locked":
        proxy.delay = 0.0
    return line


async def release(holder: asyncio.subprocess.Process, locked: asyncio.Future | None = None) -> None:
    """``locked``: the holder's first line already being read (``locked_then_fast``)."""
    first = locked if locked is not None else holder.stdout.readline()
    assert (await asyncio.wait_for(first, 60)).strip() == b"locked"
    holder.stdin.write(b"go\n")
    await holder.stdin.drain()
    assert (await asyncio.wait_for(holder.stdout.readline(), 60)).strip() == b"released"
    await holder.wait()


@pytest.mark.parametrize("mode", ["one", "all"])
async def test_a_ledger_locked_until_the_sync_ends_is_reported_and_the_next_sync_recovers(
        sshd, served, tmp_path, mode):
    # The holder must catch a moment between two of the sync's batches before the run ends:
    # files landing further apart leave it longer ones (under a loaded CI run it once missed
    # every one at 30 ms, the sync finishing unhindered).
    async with TcpProxy(sshd.port, delay=0.06) as proxy:
        run = Run(tmp_path, sshd, served, proxy.port, mode)
        holder = await start_holder(run.ledger, after=2)
        locked = asyncio.ensure_future(locked_then_fast(holder, proxy))
        try:
            code, out, err = await run.sync()
        finally:
            await release(holder, locked)
        run.check_failed_run(code, out, err, ("locked", "let it finish or close it"))
        await run.check_next_run_recovers(proxy)


@pytest.mark.parametrize("mode", ["one", "all"])
async def test_a_commit_that_fails_mid_sync_takes_no_download_with_it(sshd, served, tmp_path, mode):
    async with TcpProxy(sshd.port, delay=0.03) as proxy:
        run = Run(tmp_path, sshd, served, proxy.port, mode)
        env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
        # The journal must already be larger than any workbook, so that the size limit below
        # refuses the ledger's commits and not the downloads: a new ledger's journal is small
        # (its schema is in the file), so it is made so here, and stays so (no checkpoint).
        Ledger.open(run.ledger).close()
        conn = sqlite3.connect(run.ledger, timeout=60)  # open until the end: no checkpoint meanwhile
        biggest = max(f.stat().st_size for f in served.rglob("*.xlsx"))
        conn.execute("CREATE TABLE padding (b BLOB)")
        conn.execute("INSERT INTO padding VALUES (zeroblob(?))", (biggest + 65536,))
        conn.commit()
        conn.execute("DROP TABLE padding")
        conn.commit()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tui", *run.argv(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
        reading = asyncio.ensure_future(proc.communicate())
        wal = run.ledger.with_name(run.ledger.name + "-wal")
        try:
            while not reading.done():
                try:
                    if conn.execute("SELECT count(*) FROM downloads").fetchone()[0] >= 2:
                        break
                except sqlite3.OperationalError:  # not created yet
                    pass
                await asyncio.sleep(0.005)
            assert not reading.done(), "the sync ended before its journal could be limited"
            # From now on the journal cannot grow: each commit fails, as on a full disk.
            _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (wal.stat().st_size, hard))
            proxy.delay = 0.0  # the failure has come mid-sync: the rest may download at full speed
            out, err = await asyncio.wait_for(reading, 300)
        finally:
            conn.close()
        run.check_failed_run(proc.returncode, out.decode(), err.decode(), ("disk",))
        await run.check_next_run_recovers(proxy)


async def test_a_lock_that_ends_mid_sync_costs_no_record(sshd, served, tmp_path):
    """The lock is held for a moment in the middle of the downloads: the records refused meanwhile
    are written once it is gone, and the run reports every file downloaded. The lock ends when
    three more files have landed under it and the sync has given up on a record (after BUSY;
    downloads go on meanwhile), however fast the machine: a fixed hold could outlast a fast run."""
    log = Path(os.environ["XDG_STATE_HOME"]) / "report-keeper" / "log" / "report-keeper.log"
    async with TcpProxy(sshd.port, delay=0.03) as proxy:
        run = Run(tmp_path, sshd, served, proxy.port, "one")
        local = tmp_path / "local" / "main"
        local.mkdir(parents=True, exist_ok=True)
        holder = await start_holder(run.ledger, after=2, until=(3, local), refused_in=log)
        code, out, err = await run.sync()
        assert (await asyncio.wait_for(holder.stdout.read(), 90)).split() == [b"locked", b"released"]
        await holder.wait()
    assert "Traceback" not in err
    assert "could not record the download" in log.read_text()  # the lock did refuse records
    _status, docs = run.documents(out)
    doc, names = docs["main"], run.names("main")
    assert code == 0 and doc["error"] is None and doc["failed"] == [], err
    assert sorted(d["name"] for d in doc["downloaded"]) == names
    assert run.recorded("main") == {n: sha(served / "a" / n) for n in names}


# ------------------------------------------------------------------ the note of unrecorded files


def test_a_note_is_trusted_only_for_the_noted_bytes_in_the_local_folder(tmp_path):
    """Everything in the working folder's note is checked before a file is recorded from it: a
    damaged or planted note is ignored (the file is then fetched again, nothing is lost)."""
    from datetime import UTC, datetime

    from tui.sftp import unrecorded
    from tui.sftp.sync import _noted_copy_holds

    local = tmp_path / "local"
    local.mkdir()
    report = local / "Loans_20260601_070000.xlsx"
    report.write_bytes(b"the bytes fetched")
    when = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
    good = unrecorded.Note(report.name, report.stat().st_size, when, sha(report), str(report))
    unrecorded.add(local, [good])
    assert unrecorded.read(local) == [good]
    assert oct(unrecorded.note_path(local).stat().st_mode & 0o777) == "0o600"
    assert _noted_copy_holds(local, good)

    outside = tmp_path / "elsewhere.xlsx"  # the same bytes outside the local folder
    outside.write_bytes(report.read_bytes())
    assert not _noted_copy_holds(local, unrecorded.Note(good.name, good.size, when, good.sha256, str(outside)))
    link = local / "link.xlsx"  # a link to them in the local folder
    link.symlink_to(outside)
    assert not _noted_copy_holds(local, unrecorded.Note(good.name, good.size, when, good.sha256, str(link)))
    report.write_bytes(b"the bytes changed")  # same size, other bytes
    assert not _noted_copy_holds(local, good)

    note = unrecorded.note_path(local)
    for damaged in (b"{not json", b'{"name": "x"}', b'[{"name": 1}]', b"\xff\xfe",
                    json.dumps([{**good.__dict__, "mtime": "2026-06-01T07:00:00"}]).encode()):  # naive time
        note.write_bytes(damaged)
        assert unrecorded.read(local) == []
    note.unlink()
    note.symlink_to(tmp_path / "planted.json")  # a link planted under its name is not followed
    (tmp_path / "planted.json").write_text(json.dumps([{**good.__dict__, "mtime": when.isoformat()}]))
    assert unrecorded.read(local) == []
    note.unlink()
    unrecorded.add(local, [good])
    unrecorded.remove(local, [good])
    assert not note.exists()


def test_a_hostile_note_is_ignored_never_a_crash(tmp_path):
    """A note nested deeper than the JSON parser's stack, or with a size that is a bool or
    negative, or a sha256 that is not one: read as no note (the files are fetched again)."""
    from datetime import UTC, datetime

    from tui.sftp import unrecorded

    local = tmp_path / "local"
    local.mkdir()
    report = local / "Loans_20260601_070000.xlsx"
    report.write_bytes(b"the bytes fetched")
    good = {"name": report.name, "size": report.stat().st_size, "sha256": sha(report), "path": str(report),
            "mtime": datetime(2026, 6, 1, 7, 0, tzinfo=UTC).isoformat()}
    unrecorded.add(local, [unrecorded.Note(good["name"], good["size"], datetime.fromisoformat(good["mtime"]),
                                          good["sha256"], good["path"])])
    note = unrecorded.note_path(local)
    for hostile in (b"[" * 200_000, json.dumps([{**good, "size": True}]).encode(),
                    json.dumps([{**good, "size": -1}]).encode(), json.dumps([{**good, "sha256": "zz"}]).encode()):
        note.write_bytes(hostile)
        assert unrecorded.read(local) == []
    note.write_bytes(json.dumps([good]).encode())
    assert len(unrecorded.read(local)) == 1


# ------------------------------------------------------------------ descriptors while records wait


MANY = 128  # files landing while the ledger is locked: a third more than the sync's descriptor limit
FD_LIMIT = 96  # the sync's RLIMIT_NOFILE: what a low ``ulimit -n`` gives it (Python, ssh, SQLite: ~20)


@pytest.fixture
def served_many(sshd):
    """``MANY`` small files named like reports (random bytes: each verifies as unreadable, the
    cheapest verification) in one folder on the sshd."""
    base = Path(tempfile.mkdtemp(prefix="many-", dir=sshd.root))
    folder = base / "m"
    folder.mkdir()
    block = os.urandom(2048)
    for n in range(MANY):
        (folder / f"{demo_data.DAILY}_{date(2026, 1, 1) + timedelta(days=n):%Y%m%d}_070012.xlsx"
         ).write_bytes(block[n:] + block[:n])
    for p in (base, folder):
        os.chmod(p, 0o755)
    yield folder
    shutil.rmtree(base, ignore_errors=True)


def _many_config(sshd, served_many: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """The local folder, ledger and config of a profile syncing ``served_many``."""
    local = tmp_path / "local"
    ledger = tmp_path / "ledger.sqlite3"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[profile.main]\n"
        f'host = "127.0.0.1"\nport = {sshd.port}\nusername = "{sshd.username}"\nkey = "{sshd.key}"\n'
        f'known_hosts = "{sshd.known_hosts}"\nssh_config = "{sshd.ssh_config}"\n'
        f'remote_dir = "{served_many.parent.name}/m"\nlocal_dir = "{local}"\n'
        f'ledger = "{ledger}"\ntimezone = "UTC"\nconcurrency = 4\n')
    return local, ledger, cfg


def low_limit() -> None:
    """In the sync's process before it starts: a low ``ulimit -n``."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


async def test_files_landing_while_another_process_holds_the_ledger_never_run_out_of_descriptors(
        sshd, served_many, tmp_path):
    """Another process holds the ledger's write lock while a sync downloads more files than its
    ``ulimit -n`` allows descriptors: the sync keeps landed files locked only up to a bound (the
    lock tells other processes that the file's record is on its way), so no download fails with
    "Too many open files"; once the lock is gone every file is recorded and reported downloaded."""
    local, ledger, cfg = _many_config(sshd, served_many, tmp_path)

    def landed() -> int:
        try:
            return len([n for n in os.listdir(local) if not n.startswith(".")])
        except OSError:
            return 0

    env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCH, "60", "sync", "--config", str(cfg), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
        preexec_fn=low_limit)
    reading = asyncio.ensure_future(proc.communicate())
    conn = None
    try:
        while not reading.done():  # the first record committed: the ledger exists
            try:
                if conn is None and not ledger.exists():  # connecting would make it, empty
                    await asyncio.sleep(0.005)
                    continue
                conn = conn or sqlite3.connect(ledger, isolation_level=None, timeout=0)
                if conn.execute("SELECT count(*) FROM downloads").fetchone()[0] >= 1:
                    break
            except sqlite3.OperationalError:
                pass
            await asyncio.sleep(0.005)
        while not reading.done():  # between two of the sync's commits
            try:
                conn.execute("BEGIN EXCLUSIVE")
                break
            except sqlite3.OperationalError:
                await asyncio.sleep(0.0005)
        assert not reading.done(), "the sync ended before the ledger could be locked"
        # Held until every file has landed, or none has for a while (the downloads failed).
        seen, still = landed(), asyncio.get_running_loop().time()
        while not reading.done() and landed() < MANY:
            await asyncio.sleep(0.05)
            if landed() != seen:
                seen, still = landed(), asyncio.get_running_loop().time()
            elif asyncio.get_running_loop().time() - still > 5:
                break
        conn.execute("ROLLBACK")
        out, err = await asyncio.wait_for(reading, 300)
    finally:
        if conn is not None:
            conn.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Traceback" not in err.decode()
    assert "Too many open files" not in err.decode()
    doc = json.loads(out)
    assert doc["failed"] == [] and doc["error"] is None, doc["failed"][:3]
    names = sorted(p.name for p in served_many.iterdir())
    assert sorted(d["name"] for d in doc["downloaded"]) == names
    assert len(doc["files"]) == MANY  # each verified
    conn = sqlite3.connect(ledger)
    try:
        assert conn.execute("SELECT count(*) FROM downloads").fetchone()[0] == MANY
    finally:
        conn.close()


#: The CLI with commits only at the end of the run's batch: files land far faster than their
#: records are committed (a slow disk, a loaded machine, or simply small files on a fast link).
LAUNCH_LONG_BATCH = ("import sys; from tui.sftp import sync; sync.COMMIT_SECONDS = 3600.0; "
                     "from tui.cli import main; sys.exit(main(sys.argv[1:]))")


async def test_files_landing_faster_than_their_records_commit_never_run_out_of_descriptors(
        sshd, served_many, tmp_path):
    """Every landed file stays locked until the commit that holds its record; a record written
    but not committed yet still holds its file's descriptor. With commits rarer than files land,
    those descriptors count against the same bound as the files whose records wait: more files
    than ``ulimit -n`` allows land in one batch and none fails with "Too many open files"."""
    local, ledger, cfg = _many_config(sshd, served_many, tmp_path)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCH_LONG_BATCH, "sync", "--config", str(cfg), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "REPORT_KEEPER_NOW": NOW}, cwd=ROOT, preexec_fn=low_limit)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 300)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Traceback" not in err.decode()
    doc = json.loads(out)
    assert doc["failed"] == [] and doc["error"] is None, doc["failed"][:3]
    assert sorted(d["name"] for d in doc["downloaded"]) == sorted(p.name for p in served_many.iterdir())
    conn = sqlite3.connect(ledger)
    try:
        assert conn.execute("SELECT count(*) FROM downloads").fetchone()[0] == MANY
    finally:
        conn.close()


async def test_files_noted_while_a_write_of_the_note_runs_are_noted_together(tmp_path, monkeypatch):
    """While the ledger is locked each landed file is noted (the next sync records it from the
    note if this one is killed); the note is rewritten whole each time. Files asked for while a
    write runs go into the next one together: a few writes for many files, not a rewrite of a
    growing note (and two fsyncs) per file, and every file is in the note once they are done."""
    from datetime import UTC, datetime

    from tui.sftp import unrecorded
    from tui.sftp.sync import DownloadedFile, Placed, SyncService

    local = tmp_path / "local"
    local.mkdir()
    profile = demo_data.demo_config(host="127.0.0.1", port=22, username="u", key=tmp_path / "k",
                                    known_hosts=tmp_path / "kh", local_dir=local,
                                    ledger=tmp_path / "ledger.sqlite3")
    writes = []
    real_write = unrecorded._write

    def counted(folder, notes):
        writes.append(len(notes))
        real_write(folder, notes)

    monkeypatch.setattr(unrecorded, "_write", counted)
    placed = [DownloadedFile(name=f"R_{n:03d}.xlsx", size=1, sha256=f"{n:064x}", path=str(local / f"R_{n:03d}.xlsx"),
                             resumed_from=0, changed=False, status=Placed.NEW, refetched=False, version=None,
                             folder=".", mtime=datetime(2026, 6, 1, tzinfo=UTC)) for n in range(60)]
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        service = SyncService(profile, led)
        # as files land: one noting each, the next asked for before the last is written
        await asyncio.gather(*(service._note_serially([p]) for p in placed))
    assert sorted(n.name for n in unrecorded.read(local)) == [p["name"] for p in placed]
    assert len(writes) <= 3, writes
