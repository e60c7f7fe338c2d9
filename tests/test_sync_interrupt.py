"""``sync`` when things go wrong mid-run, in real processes against the real sshd.

- Ctrl-C (SIGINT to the process group, as a terminal sends it) during ``sync --all-profiles
  --json`` while downloads run, once or hammered, in one process or with the profiles shared
  out among two: exit 2, one JSON document naming every profile, nothing called downloaded
  that is not complete and recorded, no worker process or part-file lock left behind, and the
  next run completes everything.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures_sshd import threaded_proxy
from tui.core.ledger import Ledger

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"
#: One file per folder that takes many seconds through the slowed link (``SLOW``): mid-download
#: at Ctrl-C, whatever the machine's load.
BIG = 8 * 1024 * 1024
SMALL = 6  # and a few small ones (with concurrency 2, some are still queued then)
#: profile -> (server folder, ledger file): alpha and beta share one ledger file.
PROFILES = {"alpha": ("a", "shared.sqlite3"), "beta": ("b", "shared.sqlite3"),
            "gamma": ("c", "gamma.sqlite3")}

pytestmark = pytest.mark.sshd


def sha(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def served(sshd):
    """Three folders on the real sshd, each one big file and a few small ones; yields the base
    folder. Files start oldest first, two at a time: two small ones (placed in a moment), then
    the big one, which then holds the slowed link for seconds while the other small ones wait
    behind it. So a run is seen, for as long as it takes, with files placed and the big one
    arriving (and some still to come): the moment of a Ctrl-C the tests want."""
    base = Path(tempfile.mkdtemp(prefix="intr-", dir=sshd.root))
    os.chmod(base, 0o755)
    block = os.urandom(BIG)
    for k, (folder, _ledger) in enumerate(PROFILES.values()):
        d = base / folder
        d.mkdir()
        os.chmod(d, 0o755)
        (d / "Full Loan History_20260601_060000.xlsx").write_bytes(block[k:] + block[:k])
        for n in range(SMALL):
            hour = "05" if n < 2 else "07"  # two older than the big file, the rest newer
            (d / f"Loans_{n:02d}_20260601_{hour}{n:02d}00.xlsx").write_bytes(os.urandom(256 * 1024))
    yield base
    shutil.rmtree(base, ignore_errors=True)


def write_config(tmp_path: Path, sshd, base: Path, port: int | None = None) -> Path:
    """The profiles' config: through the sshd's own port, or through ``port`` (a proxy)."""
    port = sshd.port if port is None else port
    known_hosts = tmp_path / f"known_hosts-{port}"  # that port, the sshd's key
    known_hosts.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{port} "))
    text = ""
    for name, (folder, ledger) in PROFILES.items():
        text += (
            f"[profile.{name}]\n"
            f'host = "127.0.0.1"\nport = {port}\nusername = "{sshd.username}"\n'
            f'key = "{sshd.key}"\nknown_hosts = "{known_hosts}"\nssh_config = "{sshd.ssh_config}"\n'
            f'remote_dir = "{base.name}/{folder}"\nlocal_dir = "{tmp_path / "local" / name}"\n'
            f'ledger = "{tmp_path / ledger}"\ntimezone = "UTC"\nconcurrency = 2\n\n'
        )
    cfg = tmp_path / f"config-{port}.toml"
    cfg.write_text(text)
    return cfg


#: Bytes a second on each connection of the run that is interrupted: its big files take many
#: seconds, so it is seen mid-download (some files placed, others arriving) and a Ctrl-C lands
#: while they still arrive, however busy the machine. At full speed the whole run could be
#: over between two looks of a test process the machine did not schedule.
SLOW = 1_000_000


@pytest.fixture
def slowed(sshd):
    """A proxy that slows every connection to ``SLOW``, for the run that is interrupted (the
    next run goes to the sshd directly)."""
    with threaded_proxy(sshd.port, rate=SLOW) as proxy:
        yield proxy


def part_files(tmp_path: Path, profile: str) -> list[Path]:
    work = tmp_path / "local" / profile / ".report-keeper" / "parts"
    return sorted(work.glob("*.part")) if work.is_dir() else []


def downloading(tmp_path: Path, profile: str) -> bool:
    """Some bytes of a file have arrived in a part file of the profile."""
    for part in part_files(tmp_path, profile):
        try:
            if part.stat().st_size > 0:
                return True
        except FileNotFoundError:  # placed under its final name meanwhile
            pass
    return False


def placed(tmp_path: Path, profile: str) -> bool:
    """Some file of the profile is complete under its final name."""
    local = tmp_path / "local" / profile
    return local.is_dir() and any(p.is_file() for p in local.iterdir())


def start_sync(cfg: Path, marker: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW, "PYTHONUNBUFFERED": "1", "RK_TEST_RUN": marker}
    # A session of its own: Ctrl-C goes to the process group, as a terminal sends it.
    return subprocess.Popen(
        [sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles", "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        start_new_session=True,
    )


def complete(tmp_path: Path, base: Path, profile: str) -> bool:
    """Every file of the profile's server folder is placed under its name (none in a part)."""
    folder = PROFILES[profile][0]
    local = tmp_path / "local" / profile
    return not part_files(tmp_path, profile) and all((local / p.name).is_file() for p in (base / folder).iterdir())


def wait_until_downloading(proc: subprocess.Popen, tmp_path: Path, profiles: list[str],
                           base: Path | None = None, or_done: tuple[str, ...] = ()) -> None:
    """Until each of ``profiles`` has placed some files and is downloading others; those in
    ``or_done`` (a process of their own, which nothing slows down) may have finished instead."""
    deadline = time.monotonic() + 120  # a generous bound for a busy machine, not a timing

    def ready(p: str) -> bool:
        if downloading(tmp_path, p) and placed(tmp_path, p):
            return True
        return p in or_done and base is not None and complete(tmp_path, base, p)

    # Some files placed already (a finished file is recorded while others still download).
    while not all(ready(p) for p in profiles):
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"the sync ended before its downloads were seen: {proc.returncode}\n{err[-3000:]}")
        time.sleep(0.005)


def processes_with(marker: str) -> list[str]:
    """Live processes started with ``marker`` in their environment (the sync's own children)."""
    found = []
    needle = f"RK_TEST_RUN={marker}".encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(f"{pid}: {cmdline}")
    return found


def assert_unlocked(tmp_path: Path) -> None:
    """Nothing holds a lock on a part file any more."""
    for name in PROFILES:
        for part in part_files(tmp_path, name):
            with open(part, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    pytest.fail(f"{part} is still locked")
                fcntl.flock(f, fcntl.LOCK_UN)


def run_sync_json(cfg: Path) -> tuple[int, dict, str]:
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
    done = subprocess.run([sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles",
                           "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    return done.returncode, json.loads(done.stdout), done.stderr


def check_interrupted(tmp_path: Path, base: Path, code: int, out: str, err: str) -> dict:
    """What an interrupted run printed and left: the promises of sync."""
    assert "Traceback" not in err, err[-3000:]
    assert code == 2, err[-3000:]
    doc = json.loads(out)  # exactly one JSON document
    assert doc["status"] == "critical" and list(doc["profiles"]) == list(PROFILES)
    for name, (folder, ledger) in PROFILES.items():
        one = doc["profiles"][name]
        served = {p.name for p in (base / folder).iterdir()}
        downloaded = {d["name"] for d in one["downloaded"]}
        with Ledger.open(tmp_path / ledger, profile=name) as led:
            recorded = {d.name: d for d in led.downloads()}
            assert led.integrity_ok()
        for d in one["downloaded"]:  # complete, identical and recorded
            assert sha(d["path"]) == d["sha256"] == sha(base / folder / d["name"]), d
            assert d["name"] in recorded and recorded[d["name"]].sha256 == d["sha256"], d
            assert recorded[d["name"]].local_path == d["path"]
        if one["error"] is not None:  # interrupted
            assert one["error"].startswith("Interrupted"), one["error"]
            assert one["status"] == "critical"
            failed = {f["name"] for f in one["failed"]}
            assert not failed & downloaded
            if one["failed"] or one["downloaded"] or one["skipped"]:  # it had listed the folder
                # every file is accounted for: done, or unfinished and said so
                assert downloaded | failed | set(one["skipped"]) == served, (name, one)
        else:  # it finished before the Ctrl-C
            assert one["failed"] == [] and downloaded == served
    assert "Interrupted" in err
    return doc


def check_next_run_completes(tmp_path: Path, base: Path, cfg: Path, first: dict) -> None:
    parts = {name: {p.name: p.stat().st_size for p in part_files(tmp_path, name)} for name in PROFILES}
    code, doc, err = run_sync_json(cfg)
    assert "Traceback" not in err
    assert code == 2 and doc["status"] == "critical"  # the random bytes are no workbooks
    resumed = 0
    for name, (folder, ledger) in PROFILES.items():
        one = doc["profiles"][name]
        served = {p.name for p in (base / folder).iterdir()}
        assert one["error"] is None and one["failed"] == [], (name, one)
        before = {d["name"] for d in first["profiles"][name]["downloaded"]}
        now = {d["name"] for d in one["downloaded"]}
        assert not before & now  # nothing fetched twice
        assert before | now | set(one["skipped"]) == served
        resumed += sum(1 for d in one["downloaded"] if d["resumed_from"] > 0)
        with Ledger.open(tmp_path / ledger, profile=name) as led:
            recorded = {d.name: d.sha256 for d in led.downloads()}
        assert recorded == {n: sha(base / folder / n) for n in served}
        local = tmp_path / "local" / name
        assert {p.name for p in local.iterdir() if p.is_file()} == served  # no "(changed" copies
        for n in served:
            assert sha(local / n) == sha(base / folder / n)
        assert part_files(tmp_path, name) == []  # every part file was finished
    had_parts = sum(1 for v in parts.values() for size in v.values() if size > 0)
    assert resumed >= min(had_parts, 1)  # partial downloads were kept and resumed


@pytest.mark.parametrize("processes", ["1", "2"], ids=["one-process", "two-processes"])
def test_ctrl_c_during_sync_all_profiles_keeps_its_promises(sshd, served, slowed, tmp_path, processes):
    cfg = write_config(tmp_path, sshd, served, slowed.port)
    marker = uuid.uuid4().hex
    proc = start_sync(cfg, marker, "--processes", processes)
    # In two processes gamma has one to itself: it may be through before alpha and beta are.
    wait_until_downloading(proc, tmp_path, list(PROFILES), served,
                           or_done=("gamma",) if processes == "2" else ())
    assert f"{proc.pid}:" in " ".join(processes_with(marker))  # the marker finds the sync itself
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    doc = check_interrupted(tmp_path, served, proc.returncode, out, err)
    interrupted = [n for n, one in doc["profiles"].items() if one["error"] is not None]
    assert interrupted and any(doc["profiles"][n]["failed"] for n in interrupted)
    assert processes_with(marker) == []  # no workbook worker outlives the sync
    assert_unlocked(tmp_path)
    check_next_run_completes(tmp_path, served, write_config(tmp_path, sshd, served), doc)


def test_sigterm_to_a_run_over_two_processes_stops_each_in_order(sshd, served, slowed, tmp_path):
    """SIGTERM to the command alone (``timeout`` in a cron line sends it to the process it
    started, not to a group): the run passes the stop on to each of its processes, and keeps
    every promise a Ctrl-C keeps."""
    cfg = write_config(tmp_path, sshd, served, slowed.port)
    marker = uuid.uuid4().hex
    proc = start_sync(cfg, marker, "--processes", "2")
    wait_until_downloading(proc, tmp_path, ["alpha", "beta"], served)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    doc = check_interrupted(tmp_path, served, proc.returncode, out, err)
    assert doc["profiles"]["alpha"]["error"].startswith("Interrupted")
    assert err.count("SIGTERM: stopping") == 1  # said once, by the run; its processes say nothing
    assert processes_with(marker) == []
    assert_unlocked(tmp_path)
    check_next_run_completes(tmp_path, served, write_config(tmp_path, sshd, served), doc)


@pytest.mark.parametrize(("processes", "running", "waiting"),
                         [("1", ["alpha", "beta"], "gamma"), ("2", ["alpha", "gamma"], "beta")],
                         ids=["one-process", "two-processes"])
def test_ctrl_c_hammered_still_gives_one_document_and_loses_nothing(sshd, served, slowed, tmp_path,
                                                                    processes, running, waiting):
    cfg = write_config(tmp_path, sshd, served, slowed.port)
    marker = uuid.uuid4().hex
    # Two profiles at a time, one has not started when the Ctrl-Cs come. In one process they
    # start in the config's order; in two, alpha and beta (one ledger file) share a process
    # with one of the two places, and gamma runs in the other.
    proc = start_sync(cfg, marker, "--parallel", "2", "--processes", processes)
    # gamma, in a process of its own, may be through before the Ctrl-Cs.
    wait_until_downloading(proc, tmp_path, running, served, or_done=("gamma",))
    for _ in range(5):  # a user hammering Ctrl-C
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    doc = check_interrupted(tmp_path, served, proc.returncode, out, err)
    later = doc["profiles"][waiting]
    assert later["error"].startswith("Interrupted") and later["downloaded"] == []
    assert processes_with(marker) == []
    assert_unlocked(tmp_path)
    check_next_run_completes(tmp_path, served, write_config(tmp_path, sshd, served), doc)


async def test_a_sync_cancelled_during_its_purge_records_each_deletion_before_it(tmp_path, monkeypatch):
    """Ctrl-C while the retention purge runs (in a thread it cannot stop): the purge goes on, and
    each copy it deletes is recorded on the disk first, although another profile sharing the
    ledger file still has its batch of records open."""
    import asyncio
    import threading

    from tests import retention_data as rd
    from tui.core import retention
    from tui.sftp.sync import SyncResult, SyncService

    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path, days=12)
    ledger = env.ledger()
    env.export(ledger, rd.OLD)  # exported: the old copies may go
    entered, go = threading.Event(), threading.Event()
    real_purge = retention.purge

    def purge_when_told(*args, **kwargs):  # the real purge, started once the sync is cancelled
        entered.set()
        go.wait(60)
        return real_purge(*args, **kwargs)

    monkeypatch.setattr(retention, "purge", purge_when_told)
    try:
        with ledger.for_profile("other").batched(every=3600):  # another profile, mid-sync
            result = SyncResult()
            task = asyncio.ensure_future(SyncService(env.profile(), ledger)._purge(result))
            assert await asyncio.to_thread(entered.wait, 60)
            task.cancel()
            go.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            deadline = time.monotonic() + 60  # a bound for a busy machine, not a timing
            while any(env.path(i).exists() for i in rd.OLD) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert not any(env.path(i).exists() for i in rd.OLD)  # the purge went on
            fresh = sqlite3.connect(env.ledger_path)  # what the file holds (a reader of its own)
            try:
                purging = {name for name, in fresh.execute(
                    "SELECT name FROM downloads WHERE purge_started IS NOT NULL OR purged_at IS NOT NULL")}
            finally:
                fresh.close()
            assert purging == {rd.name(i) for i in rd.OLD}
            assert result.retention is not None and len(result.retention.purged) == len(rd.OLD)
    finally:
        go.set()
        ledger.close()


@pytest.mark.parametrize("command", [["sync"], ["sync", "--all-profiles"], ["check"], ["check", "--all-profiles"]],
                         ids=["sync", "sync-all", "check", "check-all"])
def test_one_ctrl_c_at_a_key_passphrase_prompt_ends_the_command(tmp_path, command):
    """An encrypted key and no ssh-agent: on a terminal the command asks for the passphrase.
    One Ctrl-C there ends it (exit 2, its one interrupted document) without Enter or more
    signals, and the terminal echoes again."""
    import pexpect

    from tests.test_terminal_passphrase import spawn_with_locked_key

    child = spawn_with_locked_key(tmp_path, command)
    try:
        child.expect("Passphrase for")
        assert not child.getecho()  # the passphrase is not echoed while it is asked
        child.sendintr()
        child.expect(pexpect.EOF, timeout=15)  # one Ctrl-C, no Enter: the command ends
        echo = child.getecho()
        child.close()
    finally:
        child.close(force=True)
    text = child.before.decode(errors="replace")
    assert child.exitstatus == 2, text
    assert "Traceback" not in text
    doc = json.loads(text[text.index("{"):text.rindex("}") + 1])
    assert doc["status"] == "critical" and "Interrupted" in json.dumps(doc)
    assert echo  # the terminal echoes again

