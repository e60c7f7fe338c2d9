"""The ledger: history, local states, verification cache, schema versioning, crash safety."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.core import ledger as ledger_mod
from tui.core.ledger import Ledger, LedgerError
from tui.core.model import RemoteFile, VerifyResult

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def report_of(f: RemoteFile):
    return f.name.split("_")[0], f.mtime


def files(n: int, start: int = 0, size: int = 1000) -> list[RemoteFile]:
    return [RemoteFile(f"Loans_{i:05d}.xlsx", size + i, T0 + timedelta(hours=i)) for i in range(start, start + n)]


@pytest.fixture
def led(tmp_path):
    with Ledger.open(tmp_path / "ledger.sqlite3") as led:
        yield led


def test_new_ledger_is_versioned_wal_and_private(tmp_path):
    path = tmp_path / "sub" / "ledger.sqlite3"
    led = Ledger.open(path)
    assert led.schema_version() == ledger_mod.SCHEMA_VERSION
    led.close()
    assert path.stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        ledger_mod.SCHEMA_VERSION
    )
    conn.close()


def test_default_path_is_in_user_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert ledger_mod.default_path("main") == tmp_path / "data" / "report-keeper" / "ledger-main.sqlite3"
    led = Ledger.open(None, profile="main")
    assert led.path == tmp_path / "data" / "report-keeper" / "ledger-main.sqlite3"
    assert led.path.exists()
    led.close()


def test_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "l.sqlite3"
    Ledger.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="newer than this release.*upgrade"):
        Ledger.open(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(LedgerError, match="not a readable SQLite database.*move it aside"):
        Ledger.open(path)
    assert path.read_bytes().startswith(b"this is not sqlite")  # nothing lost


def test_a_ledger_file_of_zero_bytes_is_refused_not_taken_as_new(tmp_path):
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"")
    with pytest.raises(LedgerError, match=r"is empty \(0 bytes\).*restore it from a backup.*move it aside"):
        Ledger.open(path)
    assert path.read_bytes() == b""
    assert [q.name for q in tmp_path.iterdir()] == ["l.sqlite3"]  # no -wal, no -shm, nothing new


def test_a_sqlite_file_without_a_ledger_in_it_is_refused(tmp_path):
    path = tmp_path / "l.sqlite3"
    sqlite3.connect(path).close()  # SQLite writes nothing for a bare connect: 0 bytes
    assert path.stat().st_size == 0
    with pytest.raises(LedgerError, match="is empty"):
        Ledger.open(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 1")  # a valid header, no table at all
    conn.close()
    assert path.stat().st_size > 0
    with pytest.raises(LedgerError, match="holds no ledger.*restore it from a backup.*move it aside"):
        Ledger.open(path)


@pytest.mark.parametrize(("make", "says"), [
    (os.mkfifo, r"is a FIFO \(named pipe\), not a regular file"),
    (lambda path: path.symlink_to("/dev/zero"), r"is a character device \(/dev/zero\), not a regular file"),
    (Path.mkdir, "is a directory, not a regular file"),
    (lambda path: path.symlink_to(path.with_name("gone.sqlite3")),
     "is a symbolic link to .*gone.sqlite3, which does not exist"),
], ids=["fifo", "dev-zero", "directory", "dangling-link"])
def test_a_ledger_path_that_is_no_regular_file_is_refused_saying_what_it_is(tmp_path, make, says):
    path = tmp_path / "l.sqlite3"
    make(path)
    before = (os.lstat(path).st_mode, os.path.realpath(path))
    with pytest.raises(LedgerError, match=f"the ledger {re.escape(str(path))} {says}.*set `ledger` in the profile"):
        Ledger.open(path)
    assert (os.lstat(path).st_mode, os.path.realpath(path)) == before
    assert [q.name for q in tmp_path.iterdir()] == ["l.sqlite3"]  # nothing made beside it


def test_a_first_run_that_stopped_before_its_schema_does_not_strand_the_next(tmp_path, monkeypatch):
    """The new ledger is written under another name and put in place only once its schema is
    committed: a first run killed before that leaves no file at the ledger's name, and the next
    run creates it."""
    path = tmp_path / "l.sqlite3"

    def killed(self):
        raise KeyboardInterrupt  # the process stops while the schema is being written

    monkeypatch.setattr(Ledger, "_migrate", killed)
    with pytest.raises(KeyboardInterrupt):
        Ledger.open(path)
    monkeypatch.undo()
    assert not path.exists()
    with Ledger.open(path) as led:
        assert led.schema_version() == ledger_mod.SCHEMA_VERSION
    with Ledger.open(path) as led:  # and it is a ledger from now on, opened as one
        assert led.schema_version() == ledger_mod.SCHEMA_VERSION
    assert sorted(q.name for q in tmp_path.iterdir() if not q.name.endswith(("-wal", "-shm"))) == ["l.sqlite3"]


STOPPED_MIDWAY = textwrap.dedent(
    """
    import sys, time
    from tui.core.ledger import Ledger

    def stopped(self):  # the process is stopped while it writes the new ledger's schema
        print("ready", flush=True)
        time.sleep(3600)

    Ledger._migrate = stopped
    Ledger.open(sys.argv[1])
    """
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(q.name for q in folder.iterdir() if ".new-" in q.name)


def _age(folder: Path, names: list[str], seconds: float) -> None:
    """Move the files' times back, as if they had been left there that long ago."""
    then = time.time() - seconds
    for name in names:
        os.utime(folder / name, (then, then), follow_symlinks=False)


def test_what_a_run_killed_while_it_made_the_ledger_left_is_removed_by_a_later_run(tmp_path):
    """A first run killed midway leaves its temporary ledger (and its -wal/-shm) under a hidden
    name. While that run lives (and holds the file) it is never touched, however old; once it
    is dead, a later run removes what it left."""
    path = tmp_path / "l.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", STOPPED_MIDWAY, str(path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        left = _leftovers(tmp_path)
        assert left and all(name.startswith(f".l.sqlite3.new-{child.pid}-") for name in left)
        _age(tmp_path, left, 2 * ledger_mod.LEFTOVER_AGE)
        with Ledger.open(path) as led:  # another run meanwhile: the live one's file is kept
            assert led.schema_version() == ledger_mod.SCHEMA_VERSION
        assert _leftovers(tmp_path) == left
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert _leftovers(tmp_path) == left  # killed: nothing removed it on the way out
    with Ledger.open(path) as led:
        assert led.schema_version() == ledger_mod.SCHEMA_VERSION
    assert _leftovers(tmp_path) == []
    assert sorted(q.name for q in tmp_path.iterdir() if not q.name.endswith(("-wal", "-shm"))) == ["l.sqlite3"]


def _dead_pid() -> int:
    """A process number no process has: above the kernel's largest (a reaped child's number
    could be reused meanwhile on a busy machine)."""
    try:
        with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
            return int(f.read()) + 1
    except (OSError, ValueError):
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        return gone.pid


def test_a_leftover_is_removed_only_when_provably_abandoned(tmp_path):
    """Not removed: one whose process is not visible here but that some process holds locked
    (a run in another container writing it now), one just made (its maker may not have locked
    it yet), one of a live process, one that is not a plain file, one of another ledger.
    Removed: an old one of a dead process that nobody holds, and SQLite's file of one gone."""
    path = tmp_path / "l.sqlite3"
    Ledger.open(path).close()
    dead = _dead_pid()
    abandoned = [f".l.sqlite3.new-{dead}-0badf00d", f".l.sqlite3.new-{dead}-0badf00d-wal"]
    held = f".l.sqlite3.new-{dead}-1badf00d"
    fresh = f".l.sqlite3.new-{dead}-2badf00d"
    fifo = f".l.sqlite3.new-{dead}-3badf00d-wal"  # not what SQLite makes: not ours
    link = f".l.sqlite3.new-{dead}-4badf00d"
    other = f".other.sqlite3.new-{dead}-5badf00d"
    alive = f".l.sqlite3.new-{os.getpid()}-6badf00d"  # a number that lives may be reused: kept
    orphan = f".l.sqlite3.new-{dead}-7badf00d-shm"  # its file is gone: nothing else to wait for
    abandoned.append(orphan)
    for name in [*abandoned, held, fresh, other, alive]:
        (tmp_path / name).write_bytes(b"SQLite format 3\x00")
    os.mkfifo(tmp_path / fifo)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (tmp_path / link).symlink_to(precious)
    _age(tmp_path, [*abandoned, held, fifo, link, other, alive], 2 * ledger_mod.LEFTOVER_AGE)
    fd = os.open(tmp_path / held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with Ledger.open(path) as led:
            assert led.schema_version() == ledger_mod.SCHEMA_VERSION
    finally:
        os.close(fd)
    assert _leftovers(tmp_path) == sorted([held, fresh, fifo, link, other, alive])
    assert precious.read_text() == "keep me"


def test_listing_new_gone_back_and_history_outlives_server(led):
    change = led.record_listing(None, report_of, files(3), T0)
    assert change.new == ("Loans_00000.xlsx", "Loans_00001.xlsx", "Loans_00002.xlsx")
    change = led.record_listing(None, report_of, files(2, start=1), T0 + timedelta(days=1))
    assert change.gone == ("Loans_00000.xlsx",) and change.new == ()
    # A later listing still missing it does not move gone_at.
    led.record_listing(None, report_of, files(2, start=1), T0 + timedelta(days=2))
    d = {x.name: x for x in led.deliveries()}
    assert len(d) == 3
    gone = d["Loans_00000.xlsx"]
    assert not gone.on_server and gone.gone_at == T0 + timedelta(days=1)
    assert gone.extra["lost"] is True  # never downloaded
    assert [x.name for x in led.lost()] == ["Loans_00000.xlsx"]
    assert d["Loans_00001.xlsx"].first_seen == T0 and d["Loans_00001.xlsx"].last_seen == T0 + timedelta(days=2)
    assert d["Loans_00001.xlsx"].report == "Loans"
    # It comes back: no longer gone.
    change = led.record_listing(None, report_of, files(3), T0 + timedelta(days=3))
    assert change.back == ("Loans_00000.xlsx",)
    assert {x.name for x in led.deliveries() if x.on_server} == {f.name for f in files(3)}
    assert led.last_listing() == T0 + timedelta(days=3)


def test_downloaded_file_gone_from_server_is_not_lost(led):
    led.record_listing(None, report_of, files(2), T0)
    f = files(1)[0]
    led.record_download(f.name, size=f.size, sha256="a" * 64, local_path="/x/" + f.name, mtime=f.mtime, when=T0)
    led.record_listing(None, report_of, [], T0 + timedelta(days=61))
    lost = {d.name: d.extra["lost"] for d in led.deliveries()}
    assert lost == {"Loans_00000.xlsx": False, "Loans_00001.xlsx": True}


def test_local_states_and_changed_flag(led):
    fs = files(4)
    led.record_listing(None, report_of, fs, T0)
    assert set(led.local_states().values()) == {"new"}
    led.record_download(fs[0].name, size=fs[0].size, sha256="0" * 64, local_path="/l/0", mtime=fs[0].mtime)
    led.record_download(fs[1].name, size=fs[1].size, sha256="1" * 64, local_path="/l/1", mtime=fs[1].mtime)
    led.record_partial(fs[2].name, size=fs[2].size, mtime=fs[2].mtime, part_path="/l/.2.part", bytes_done=10)
    assert led.local_state(fs[0].name) == "downloaded"
    assert led.local_state(fs[2].name) == "partial"
    assert led.local_state(fs[3].name) == "new"
    assert led.partials()[fs[2].name]["bytes_done"] == 10
    # The server's copy of file 1 changes after the download.
    changed = RemoteFile(fs[1].name, fs[1].size + 7, fs[1].mtime + timedelta(minutes=5))
    change = led.record_listing(None, report_of, [fs[0], changed, fs[2], fs[3]], T0 + timedelta(hours=1))
    assert change.changed == (fs[1].name,)
    assert led.local_state(fs[1].name) == "changed"
    d = {x.name: x for x in led.deliveries()}
    assert d[fs[1].name].changed and d[fs[1].name].extra["local_state"] == "changed"
    assert not d[fs[0].name].changed
    # Fetched beside the old copy: downloaded again, the flag is kept as history.
    led.record_download(changed.name, size=changed.size, sha256="2" * 64, local_path="/l/1 (2)", mtime=changed.mtime)
    assert led.local_state(fs[1].name) == "downloaded"
    d = {x.name: x for x in led.deliveries()}
    assert d[fs[1].name].changed and d[fs[1].name].extra["downloads"] == 2
    assert d[fs[1].name].local_path == "/l/1 (2)"
    assert [x.local_path for x in led.downloads(fs[1].name)] == ["/l/1", "/l/1 (2)"]
    # A completed download clears the partial record.
    led.record_download(fs[2].name, size=fs[2].size, sha256="3" * 64, local_path="/l/2", mtime=fs[2].mtime)
    assert led.partials() == {} and led.local_state(fs[2].name) == "downloaded"


def test_verification_cache_and_deliveries_carry_results(led):
    fs = files(1)
    led.record_listing(None, report_of, fs, T0)
    sha = "f" * 64
    led.record_download(fs[0].name, size=fs[0].size, sha256=sha, local_path="/l/a.xlsx", mtime=fs[0].mtime)
    assert led.cached_verification(sha, "ctx") is None
    result = VerifyResult(
        path="/l/a.xlsx", name=fs[0].name, report="Loans", delivered_at=T0, status="ok", rows=42,
        header_row=3, columns=("Primary Identifier", "Loan Date"), message="42 rows", sheet="Sheet1",
    )
    led.record_verification(result, sha256=sha, context="ctx")
    cached = led.cached_verification(sha, "ctx")
    assert cached == result
    assert led.cached_verification(sha, "other context") is None
    moved = led.cached_verification(sha, "ctx", path="/elsewhere/b.xlsx", name="b.xlsx")
    assert moved.path == "/elsewhere/b.xlsx" and moved.name == "b.xlsx" and moved.rows == 42
    d = led.deliveries("Loans")[0]
    assert (d.verification, d.rows, d.sha256) == ("ok", 42, sha)
    assert d.extra["header_row"] == 3 and d.extra["columns"] == ("Primary Identifier", "Loan Date")
    assert led.deliveries("Other") == []


def test_refused_names_are_recorded_verbatim(led):
    hostile = [("..", "not a file name"), ("a\x00b.xlsx", "NUL"), ("x/../../etc", "separator")]
    led.record_listing(None, report_of, files(1), T0, refused=hostile)
    led.record_listing(None, report_of, files(1), T0 + timedelta(days=1), refused=hostile[:1])
    got = {r.name: r for r in led.refused()}
    assert set(got) == {"..", "a\x00b.xlsx", "x/../../etc"}
    assert got[".."].last_seen == T0 + timedelta(days=1) and got[".."].first_seen == T0
    assert [r.name for r in led.refused(current=True)] == [".."]


def test_profiles_are_kept_apart(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite3", profile="a") as led:
        led.record_listing("a", report_of, files(2), T0)
        led.record_listing("b", report_of, files(1, start=5), T0)
        assert len(led.deliveries()) == 2
        assert [d.name for d in led.deliveries(profile="b")] == ["Loans_00005.xlsx"]


def test_ten_thousand_files(led):
    many = files(10_000)
    led.record_listing(None, report_of, many, T0)
    led.record_downloads(
        [dict(name=f.name, size=f.size, sha256=f"{i:064x}", local_path=f"/l/{f.name}", mtime=f.mtime)
         for i, f in enumerate(many[:5000])]
    )
    change = led.record_listing(None, report_of, many[100:], T0 + timedelta(days=1))
    assert len(change.gone) == 100 and change.new == ()
    states = led.local_states()
    assert sum(1 for s in states.values() if s == "downloaded") == 5000
    delivered = led.deliveries()
    assert len(delivered) == 10_000
    assert sum(d.extra["lost"] for d in delivered) == 0  # the 100 gone ones were downloaded


def test_failed_write_rolls_back(led):
    led.record_listing(None, report_of, files(2), T0)

    def bad_report_of(f):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        led.record_listing(None, bad_report_of, files(3, start=10), T0 + timedelta(days=1))
    # Nothing of the failed listing is there: neither new files nor gone marks.
    assert [d.on_server for d in led.deliveries()] == [True, True]
    assert led.last_listing() == T0


CHILD = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta, timezone
    from tui.core.ledger import Ledger
    from tui.core.model import RemoteFile
    T0 = datetime(2026, 6, 1, tzinfo=timezone.utc)
    led = Ledger.open(sys.argv[1])
    start = len(led.deliveries())
    i = start
    while True:
        fs = [RemoteFile(f"R_{k:06d}.xlsx", 100 + k, T0 + timedelta(minutes=k)) for k in range(i + 1)]
        led.record_listing(None, lambda f: ("R", f.mtime), fs, T0 + timedelta(minutes=i))
        led.record_downloads([
            dict(name=fs[i].name, size=fs[i].size, sha256="%064x" % (i * 5 + j),
                 local_path="/l/%d/%d" % (i, j), mtime=fs[i].mtime)
            for j in range(5)
        ])
        i += 1
        if i - start == 30:
            print("ready", flush=True)
    """
)


def _check_consistent(path: Path, rounds: int) -> int:
    led = Ledger.open(path)
    try:
        assert led.integrity_ok()
        n_files = len(led.deliveries())
        with led._lock:
            n_listings = led._conn.execute("SELECT COUNT(*) FROM listings").fetchone()[0]
            per_name = dict(led._conn.execute("SELECT name, COUNT(*) FROM downloads GROUP BY name"))
        # Each listing adds exactly one file; each download batch is all or nothing; only a
        # file whose listing was the last transaction before a kill has no downloads.
        assert n_listings == n_files
        assert set(per_name.values()) <= {5}
        assert n_files - len(per_name) <= rounds
        return n_files
    finally:
        led.close()


def test_crash_at_any_point_leaves_it_consistent_and_resumable(tmp_path):
    path = tmp_path / "crash.sqlite3"
    previous = 0
    for _round in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout.readline().strip() == "ready"
        finally:
            child.send_signal(signal.SIGKILL)  # mid-write: it never stops writing
            child.wait()
        n = _check_consistent(path, _round + 1)
        assert n >= previous + 30  # the next run picked up where the last one stopped
        previous = n


def test_write_failure_is_a_ledger_error_with_advice(led):
    led.record_listing(None, report_of, files(1), T0)
    led._conn.execute("PRAGMA query_only = ON")  # as a read-only file system would behave
    with pytest.raises(LedgerError, match="could not write the ledger .*nothing of this step"):
        led.record_listing(None, report_of, files(3), T0 + timedelta(days=1))
    led._conn.execute("PRAGMA query_only = OFF")
    assert [d.name for d in led.deliveries()] == ["Loans_00000.xlsx"]
    led.record_listing(None, report_of, files(3), T0 + timedelta(days=1))  # usable again
    assert len(led.deliveries()) == 3


def test_column_names_recorded_by_older_releases_are_forgotten(tmp_path):
    """Older releases could record a data row's cells as the 'columns' of a sheet without a
    recognisable header: upgrading forgets every column list recorded before it (the files
    are verified again anyway), keeping statuses and counts."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(ledger_mod.MIGRATIONS[0])
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "INSERT INTO verifications (sha256, context, path, name, report, delivered_at, status,"
        " rows, header_row, columns, message, sheet, missing_columns, verified_at) VALUES"
        " ('ab', '', '/r/x.xlsx', 'x.xlsx', 'R', NULL, 'ok', 3, 1,"
        " '[\"alice@example.org\", \"Alice Example\"]', '3 data rows', 'Sheet1', '[]',"
        " '2026-06-01T07:00:00.000000+00:00');"
    )
    conn.commit()
    conn.close()
    with Ledger.open(path, profile="default") as led:
        assert led.integrity_ok()
    raw = sqlite3.connect(path).execute("SELECT status, rows, columns FROM verifications").fetchall()
    assert raw == [("ok", 3, "[]")]
    assert b"alice@example.org" not in path.read_bytes()


def _needs_reading(d) -> bool:
    """The sync's rule for a held copy to verify (again) after its downloads."""
    return bool(d.downloaded and d.sha256 and d.local_path and not d.extra["missing_locally"]
                and not d.extra["purged"]
                and (d.verification is None or not d.extra["content_checked"] or d.verification == "unreadable"))


def test_the_copies_to_verify_are_found_without_reading_every_delivery(led):
    """``to_verify`` names (a superset of) the held copies the sync reads again, and
    ``deliveries(names=...)`` gives those deliveries exactly as the full read does: the sync's
    last step no longer builds every delivery of the profile a second time."""
    fs = files(11)
    led.record_listing(None, report_of, fs, T0)
    sha = {f.name: f"{i:064x}" for i, f in enumerate(fs)}

    def download(i: int, digest: str | None = None) -> None:
        f = fs[i]
        led.record_download(f.name, size=f.size, sha256=digest or sha[f.name], local_path=f"/l/{f.name}",
                            mtime=f.mtime)

    def verify(i: int, status: str, digest: str | None = None) -> None:
        f = fs[i]
        led.record_verification(VerifyResult(path=f"/l/{f.name}", name=f.name, report="Loans", delivered_at=T0,
                                             status=status, rows=1, header_row=1, message=""),
                                sha256=digest or sha[f.name], context="ctx")

    for i in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10):
        download(i)
    verify(0, "ok")  # verified: nothing to do
    verify(2, "unreadable")  # read again
    verify(3, "ok")  # by a release before the content checks
    verify(4, "ok")  # a status this release does not know
    verify(6, "ok")
    verify(7, "ok")
    verify(8, "schema")
    download(8, "a" * 64)  # a newer copy, never verified
    verify(9, "ok", "b" * 64)
    download(9, "b" * 64)  # the newer copy is verified, the older was not
    verify(10, "empty")
    verify(10, "unreadable")  # the latest verdict counts
    conn = led._conn
    conn.execute("UPDATE verifications SET content_version = NULL WHERE sha256 = ?", (sha[fs[3].name],))
    conn.execute("UPDATE verifications SET status = 'from-the-future' WHERE sha256 = ?", (sha[fs[4].name],))
    conn.execute("UPDATE downloads SET missing_since = '2026-06-02T00:00:00.000000+00:00' WHERE name = ?",
                 (fs[6].name,))
    led.mark_purged([(fs[7].name, f"/l/{fs[7].name}")])
    everything = led.deliveries()
    wanted = {d.name for d in everything if _needs_reading(d)}
    assert wanted == {fs[i].name for i in (1, 2, 3, 4, 8, 10)}
    found = led.to_verify()
    assert wanted <= found
    picked = led.deliveries(names=found)
    assert picked == [d for d in everything if d.name in found]
    assert led.deliveries(names=set()) == []


def test_listed_copies_are_what_deliveries_say_of_each_server_copy(led):
    fs = files(5)
    led.record_listing(None, report_of, fs, T0)
    led.record_listing(None, report_of, [RemoteFile(fs[0].name, 7, T0 + timedelta(days=3))], T0 + timedelta(days=3))
    assert sorted(led.listed_copies()) == sorted(
        (d.extra.get("rolling_of") or d.name, d.mtime, d.size) for d in led.deliveries() if d.mtime is not None)


def test_a_new_ledger_has_the_schema_every_step_makes(tmp_path):
    """A new ledger's schema is copied from one made once per process: it is the one the
    schema steps make (tables, indexes, triggers, their SQL), with this release's version,
    its own creation time, in WAL mode; and a second new ledger is made the same way."""
    stepwise = sqlite3.connect(":memory:", isolation_level=None)
    Ledger(stepwise, None, "x")._migrate()
    query = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    expected = stepwise.execute(query).fetchall()
    for name in ("a.sqlite3", "b.sqlite3"):
        before = ledger_mod._ts(ledger_mod.clock.now())
        Ledger.open(tmp_path / name).close()
        made = sqlite3.connect(tmp_path / name)
        try:
            assert made.execute(query).fetchall() == expected
            meta = dict(made.execute("SELECT key, value FROM meta"))
            assert meta.keys() == {"schema_version", "created_at"}
            assert meta["schema_version"] == str(ledger_mod.SCHEMA_VERSION)
            assert meta["created_at"] >= before
            assert made.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert made.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert made.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            made.close()
