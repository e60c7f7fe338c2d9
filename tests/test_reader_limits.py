"""The workbook reader's limits as profile settings (``reader_memory_mib``, ``reader_seconds``).

A genuine report can need more than the default 1 GiB of address space to read. The limits are
profile keys, applied wherever a profile's workbooks are read (sync, export, the app, verify),
and a verdict reached under raised limits is cached apart from one under the defaults, so
raising the limit makes the next verification read the file again.

Real workbooks (xlsxwriter), real worker processes, the real sshd, the real app (Pilot).
Figures measured for the loans workbook of tests/xlsx_factory.py (Linux, Python 3.11,
fastexcel 0.21): 60,000 rows (2.5 MB) cannot be verified under 64 MiB (40,000 rows can) and
verify at 128 MiB; the export's table read of them needs more than 96 MiB.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shlex
import shutil
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.daily_config import server_folder, write_daily_config
from tests.xlsx_factory import write_report
from tui.core import isolation
from tui.core import status as st
from tui.core.config import ConfigError, load_config
from tui.core.ledger import Ledger, verification_context

TZ = ZoneInfo("America/Chicago")
REPORT = "Loans big"
DAY = date(2026, 11, 23)  # the file's run: delivered 07:00 on Mon 23 Nov
NOW = datetime.combine(DAY, time(10, 0), tzinfo=TZ).isoformat()
BIG_ROWS = 60_000  # fails under 64 MiB, reads under 128 MiB (measured; see the module's text)
LOW, HIGH = 64, 256


@pytest.fixture(scope="module")
def big(tmp_path_factory, worker_id) -> Path:
    """A genuine loans report of 60,000 rows, written once for the whole run: its writing
    costs ~6-8 s of CPU, and with ``-n 2`` both workers ran tests of this module and each
    wrote its own. Under xdist the first worker to get here writes it in the run's shared
    temporary folder (under a lock) and the other reads that one; the tests only read it
    (copied where a test needs it elsewhere)."""
    def write(path: Path) -> Path:
        return write_report(path, n_rows=BIG_ROWS, day=DAY - timedelta(days=3))

    if worker_id == "master":  # no xdist: this process is the whole run
        return write(tmp_path_factory.mktemp("big") / "big.xlsx")
    shared = tmp_path_factory.getbasetemp().parent  # the run's folder, every worker's parent
    path = shared / f"reader-limits-big-{BIG_ROWS}.xlsx"
    with open(shared / "reader-limits-big.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed, whatever happens
        if not path.exists():
            part = write(shared / f".reader-limits-big-{os.getpid()}.xlsx")
            part.rename(path)
    return path


def _profile_toml(extra: str) -> str:
    return f'[profile.p]\nhost = "h"\nlocal_dir = "/tmp/rk-local"\nledger = "/tmp/rk.sqlite3"\n{extra}\n'


# ------------------------------------------------------------------ config


def test_defaults_and_values_are_read(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(_profile_toml(""))
    p = load_config(cfg).profile("p")
    assert (p.reader_memory_mib, p.reader_seconds) == (1024, 120.0)
    cfg.write_text(_profile_toml("reader_memory_mib = 4096\nreader_seconds = 600"))
    p = load_config(cfg).profile("p")
    assert (p.reader_memory_mib, p.reader_seconds) == (4096, 600.0)
    cfg.write_text(_profile_toml("reader_memory_mib = 64\nreader_seconds = 1"))  # the lowest allowed
    assert (load_config(cfg).profile("p").reader_memory_mib, load_config(cfg).profile("p").reader_seconds) == (64, 1.0)


def test_the_config_defaults_are_the_readers_own():
    from tui.core import config

    assert config.DEFAULT_READER_MEMORY_MIB << 20 == isolation.DEFAULT_MEMORY_BYTES
    assert config.DEFAULT_READER_SECONDS == isolation.DEFAULT_TIME_LIMIT
    assert config.READER_MEMORY_MIB_RANGE[0] << 20 == isolation.MIN_MEMORY_BYTES


@pytest.mark.parametrize("line", [
    "reader_memory_mib = 63", "reader_memory_mib = 1048577", "reader_memory_mib = 0",
    "reader_memory_mib = -1", 'reader_memory_mib = "2048"', "reader_memory_mib = 1.5",
    "reader_memory_mib = true",
    "reader_seconds = 0", "reader_seconds = 0.5", "reader_seconds = 86401", "reader_seconds = nan",
    "reader_seconds = inf", "reader_seconds = -5", 'reader_seconds = "60"', "reader_seconds = false",
])
def test_bad_values_are_config_errors_naming_the_key(tmp_path, line):
    cfg = tmp_path / "c.toml"
    cfg.write_text(_profile_toml(line))
    with pytest.raises(ConfigError) as err:  # when the profile is picked: it stops only itself
        load_config(cfg).profile("p")
    key = line.split(" =")[0]
    assert f"profile.p.{key}" in str(err.value)


# ------------------------------------------------------------------ the cache key


def test_the_cache_key_changes_only_for_limits_other_than_the_defaults():
    from tui.core.config import ReportConfig

    report = ReportConfig(name="r")
    at = datetime(2026, 11, 23, 7, tzinfo=TZ)
    plain = verification_context(report, at)
    assert verification_context(report, at, memory_limit=isolation.DEFAULT_MEMORY_BYTES,
                                 time_limit=isolation.DEFAULT_TIME_LIMIT) == plain
    raised = verification_context(report, at, memory_limit=4 << 30, time_limit=isolation.DEFAULT_TIME_LIMIT)
    slower = verification_context(report, at, memory_limit=isolation.DEFAULT_MEMORY_BYTES, time_limit=600)
    assert len({plain, raised, slower}) == 3


# ------------------------------------------------------------------ the messages


def test_the_memory_message_names_the_key_and_the_way_out(big):
    from tui.core.validate import validate_file

    pool = isolation.WorkerPool(1, memory_limit=LOW << 20)
    try:
        result = validate_file(big, pool=pool)
    finally:
        pool.close()
    assert result.status == st.UNREADABLE
    msg = result.message
    assert "needs more memory than allowed to read (64.0 MiB)" in msg
    assert "it may be damaged or hostile" in msg
    assert "raise reader_memory_mib in the profile (now 64)" in msg
    assert "v on the Verify screen" in msg


def test_the_time_message_names_the_key_and_the_way_out():
    from tui.core.validate import failure_message

    pool = isolation.WorkerPool(1, time_limit=30)
    msg = failure_message(isolation.Failure(isolation.TIME, "no reply", 30.0), pool)
    pool.close()
    assert "took longer than 30 s" in msg and "it may be damaged or hostile" in msg
    assert "raise reader_seconds in the profile (now 30)" in msg and "v on the Verify screen" in msg


# ------------------------------------------------------------------ verify


def test_verify_uses_the_profiles_limits_unless_its_flags_are_given(big, tmp_path, capsys):
    from tui.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(_profile_toml(f"reader_memory_mib = {LOW}"))
    assert main(["verify", "--config", str(cfg), "--json", str(big)]) == 2
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    assert entry["status"] == "unreadable" and "reader_memory_mib in the profile (now 64)" in entry["message"]
    # a headless command names the command that reads the file again, not a key of the app
    again = (f"verify it again (the next report-keeper sync does, and records the result; to see it "
             f"now: report-keeper verify --config {cfg} {big})")
    assert again in entry["message"] and "Verify screen" not in entry["message"]
    assert main(["verify", "--config", str(cfg), str(big)]) == 2
    human = " ".join(capsys.readouterr().out.split())  # the table wraps long lines
    assert "report-keeper verify --config" in human and "Verify screen" not in human
    # the flag wins over the profile
    assert main(["verify", "--config", str(cfg), "--json", "--max-memory", str(HIGH), str(big)]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["rows"] == BIG_ROWS
    # and the defaults are back for whatever runs next in this process
    pool = isolation.shared_pool()
    assert (pool.memory_limit, pool.time_limit) == (isolation.DEFAULT_MEMORY_BYTES, isolation.DEFAULT_TIME_LIMIT)


def test_verify_honours_the_profiles_time_limit(tmp_path, capsys):
    """A legal sheet of Excel's widest rows takes the reader seconds (2.5 s measured for 30
    of them): over reader_seconds = 1 it is stopped, and the message names the key."""
    from tests.hostile_workbooks import inline_row, package, sheet
    from tui.cli import main

    wide = package(tmp_path / "wide.xlsx", sheet("".join(inline_row(r, [str(r)] * 16384) for r in range(1, 31))))
    cfg = tmp_path / "c.toml"
    cfg.write_text(_profile_toml("reader_seconds = 1"))
    assert main(["verify", "--config", str(cfg), "--json", str(wide)]) == 2
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    assert entry["status"] == "unreadable"
    assert "took longer than 1 s" in entry["message"]
    assert "raise reader_seconds in the profile (now 1)" in entry["message"]
    assert f"; to see it now: report-keeper verify --config {cfg} {wide})" in entry["message"]
    cfg.write_text(_profile_toml("reader_seconds = 60"))
    assert main(["verify", "--config", str(cfg), "--json", str(wide)]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["rows"] == 30


# ------------------------------------------------------------------ sync, the app, check, export


def _set_limit(cfg: Path, mib: int) -> None:
    text = cfg.read_text()
    lines = [line for line in text.splitlines() if not line.startswith("reader_memory_mib")]
    at = lines.index("[profile.default]") + 1
    lines.insert(at, f"reader_memory_mib = {mib}")
    cfg.write_text("\n".join(lines) + "\n")


def _cli(capsys, monkeypatch, *args: str) -> tuple[int, dict]:
    from tui.cli import main

    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    assert code != 3, out
    return code, json.loads(out)


def _kinds(check_doc: dict) -> list[str]:
    return [p["kind"] for r in check_doc["reports"] for p in r["problems"]]


def _serve_big(sshd, server_dir: Path, big: Path, tmp_path: Path) -> tuple[str, Path]:
    """The big report on the server as the day's delivery, and a daily config reading under
    the low limit: (its name, the config)."""
    name = f"{REPORT}_{DAY:%Y%m%d}_070000.xlsx"
    shutil.copy(big, server_dir / name)
    stamp = datetime.combine(DAY, time(7, 0), tzinfo=TZ).timestamp()
    os.utime(server_dir / name, (stamp, stamp))
    cfg = write_daily_config(tmp_path, sshd, server_dir.name, REPORT)
    _set_limit(cfg, LOW)
    return name, cfg


@pytest.fixture
def server_dir(sshd):
    with server_folder(sshd.root, "limits-") as sub:
        yield sub


@pytest.mark.sshd
def test_a_genuine_report_over_the_limit_until_the_profile_raises_it(
        sshd, server_dir, big, tmp_path, capsys, monkeypatch):
    name, cfg = _serve_big(sshd, server_dir, big, tmp_path)

    # sync under 64 MiB: the file is downloaded and unreadable, the message names the key
    code, doc = _cli(capsys, monkeypatch, "sync", "--config", str(cfg))
    assert code == 2 and [d["name"] for d in doc["downloaded"]] == [name], doc
    (entry,) = doc["files"]
    assert entry["status"] == "unreadable"
    assert "needs more memory than allowed to read (64.0 MiB)" in entry["message"]
    assert "raise reader_memory_mib in the profile (now 64)" in entry["message"]
    again = shlex.join(["report-keeper", "verify", "--config", str(cfg), "--profile", "default", entry["path"]])
    assert " " in entry["path"] and f"; to see it now: {again})" \
        in entry["message"] and "Verify screen" not in entry["message"]
    code, doc = _cli(capsys, monkeypatch, "check", "--config", str(cfg), "--offline")
    assert "unreadable" in _kinds(doc)
    pool = isolation.shared_pool()  # sync gave the defaults back when it ended
    assert pool.memory_limit == isolation.DEFAULT_MEMORY_BYTES

    # sync again under the same limit: the cached verdict stands, nothing is read again
    code, doc = _cli(capsys, monkeypatch, "sync", "--config", str(cfg))
    assert doc["downloaded"] == []

    # The profile raises the limit; the Verify screen of the app reads the file again under it.
    _set_limit(cfg, HIGH)
    profile = load_config(cfg).profile("default")
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    outcomes = asyncio.run(_verify_in_the_app(profile))
    assert outcomes[name].status == st.OK and outcomes[name].rows == BIG_ROWS
    # the app gave the defaults back when it ended
    assert isolation.shared_pool().memory_limit == isolation.DEFAULT_MEMORY_BYTES

    code, doc = _cli(capsys, monkeypatch, "check", "--config", str(cfg), "--offline")
    assert "unreadable" not in _kinds(doc), doc
    run = next(r for rep in doc["reports"] for r in rep["runs"] if r["day"] == DAY.isoformat())
    assert run["verification"] == "ok"
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="default") as ledger:
        assert {v.status for v in ledger.verifications_of({_sha(server_dir / name)}).values()} == {"ok"}

    # export honours the limit too: its table read needs more than 64 MiB ...
    _set_limit(cfg, LOW)
    out = tmp_path / "loans.csv"
    code, doc = _cli(capsys, monkeypatch, "export", "--config", str(cfg), "--out", str(out))
    assert doc["rows"] == 0, doc
    (excluded,) = doc["days"]["excluded"]
    assert "raise reader_memory_mib in the profile (now 64)" in excluded["message"], excluded
    # the way out is the export run again: verifying reads less than the export's table read
    assert "and run the export again, or ask for a smaller report" in excluded["message"], excluded
    assert "verify" not in excluded["message"].lower(), excluded
    # ... and reads the report under the raised one
    _set_limit(cfg, HIGH)
    code, doc = _cli(capsys, monkeypatch, "export", "--config", str(cfg), "--out", str(out), "--force")
    assert doc["rows"] == BIG_ROWS and doc["days"]["excluded"] == [], doc
    assert isolation.shared_pool().memory_limit == isolation.DEFAULT_MEMORY_BYTES


@pytest.mark.sshd
def test_the_next_sync_reads_a_report_again_once_the_profile_raises_the_limit(
        sshd, server_dir, big, tmp_path, capsys, monkeypatch):
    """What the headless message promises: raise the key, and the next sync (the cron job)
    reads the report again and records it, so check drops the problem without the app. With
    the limits unchanged, the cached verdict stands and nothing is read or reported again."""
    name, cfg = _serve_big(sshd, server_dir, big, tmp_path)
    code, doc = _cli(capsys, monkeypatch, "sync", "--config", str(cfg))
    (entry,) = doc["files"]
    assert entry["status"] == "unreadable" and "the next report-keeper sync" in entry["message"], entry

    code, doc = _cli(capsys, monkeypatch, "sync", "--config", str(cfg))  # the same limit
    assert doc["downloaded"] == [] and doc["files"] == [], doc  # not read, not news again
    code, doc = _cli(capsys, monkeypatch, "check", "--config", str(cfg), "--offline")
    assert "unreadable" in _kinds(doc)

    _set_limit(cfg, HIGH)
    code, doc = _cli(capsys, monkeypatch, "sync", "--config", str(cfg))
    assert doc["downloaded"] == [], doc  # nothing fetched again: the held copy is read again
    (entry,) = doc["files"]
    assert entry["status"] == "ok" and entry["rows"] == BIG_ROWS, entry
    code, doc = _cli(capsys, monkeypatch, "check", "--config", str(cfg), "--offline")
    assert "unreadable" not in _kinds(doc), doc
    code, doc = _cli(capsys, monkeypatch, "sync", "--config", str(cfg))
    assert doc["files"] == [], doc  # read once


async def _verify_in_the_app(profile) -> dict:
    """The app on the Verify screen (4), then v: the results it shows, by file name."""
    from tui.app import create_app

    app = create_app(profile, auto_connect=False)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            assert isolation.shared_pool().memory_limit == profile.reader_memory_mib << 20
            await pilot.press("4")
            await _settle(pilot)
            await pilot.press("v")
            await _settle(pilot)
            return {o.result.name: o.result for o in app.screen.outcomes}
    finally:
        app.ledger.close()


async def _settle(pilot) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ several profiles


def test_all_profiles_use_the_largest_limits(tmp_path):
    from tui.core.isolation import reader_limits

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        _profile_toml("reader_memory_mib = 2048\nreader_seconds = 60")
        + '[profile.q]\nhost = "h"\nlocal_dir = "/tmp/rk-local-q"\nledger = "/tmp/rk-q.sqlite3"\n'
        "reader_memory_mib = 512\nreader_seconds = 300\n"
    )
    config = load_config(cfg)
    assert reader_limits(list(config.profiles.values())) == (2048 << 20, 300.0)
    assert reader_limits([config.profile("q")]) == (512 << 20, 300.0)


def _two_profiles(tmp: Path, sshd, remote_dir: str, limits: tuple[int, int]) -> Path:
    """Two profiles of the same folder, each with its own local folder, ledger and limit."""
    tmp.mkdir()
    cfg = write_daily_config(tmp, sshd, remote_dir, REPORT)
    _set_limit(cfg, limits[0])
    text = cfg.read_text()
    second = text[text.index("[profile.default]"):].replace("profile.default", "profile.second")
    second = second.replace(str(tmp / "local"), str(tmp / "local2"))
    second = second.replace(str(tmp / "ledger.sqlite3"), str(tmp / "ledger2.sqlite3"))
    second = second.replace(f"reader_memory_mib = {limits[0]}", f"reader_memory_mib = {limits[1]}")
    cfg.write_text(text + "\n" + second)
    return cfg


@pytest.mark.sshd
def test_sync_all_profiles_reads_with_the_largest_limit(sshd, server_dir, big, tmp_path, capsys, monkeypatch):
    """One pool reads for every profile: with both at 64 MiB the report is unreadable in both;
    with one at 256 MiB it is read under that for both."""
    name = f"{REPORT}_{DAY:%Y%m%d}_070000.xlsx"
    shutil.copy(big, server_dir / name)
    stamp = datetime.combine(DAY, time(7, 0), tzinfo=TZ).timestamp()
    os.utime(server_dir / name, (stamp, stamp))

    for limits, status in (((LOW, LOW), "unreadable"), ((LOW, HIGH), "ok")):
        cfg = _two_profiles(tmp_path / f"{limits[0]}-{limits[1]}", sshd, server_dir.name, limits)
        code, doc = _cli(capsys, monkeypatch, "sync", "--config", str(cfg), "--all-profiles")
        for profile in ("default", "second"):
            (entry,) = doc["profiles"][profile]["files"]
            assert entry["status"] == status, (limits, profile, entry)
        assert isolation.shared_pool().memory_limit == isolation.DEFAULT_MEMORY_BYTES


# ------------------------------------------------------------------ the app re-reads the limits


def _app_profile_toml(tmp: Path, extra: str) -> str:
    return (f'[profile.default]\nhost = "127.0.0.1"\nlocal_dir = "{tmp / "local"}"\n'
            f'ledger = "{tmp / "ledger.sqlite3"}"\ntimezone = "America/Chicago"\n{extra}\n')


def _toasts(app) -> list[str]:
    return [n.message for n in app._notifications]


def test_v_applies_the_limits_the_config_says_now(big, tmp_path, monkeypatch):
    """The librarian raises reader_memory_mib in the config while the app runs, as the
    unreadable message says, and presses v: the file is read again under the new limit. A
    config broken meanwhile is said in a toast and the limits stay as they were."""
    from tui.app import create_app

    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    (tmp_path / "local").mkdir()
    name = f"{REPORT}_{DAY:%Y%m%d}_070000.xlsx"
    shutil.copy(big, tmp_path / "local" / name)
    cfg = tmp_path / "config.toml"
    cfg.write_text(_app_profile_toml(tmp_path, f"reader_memory_mib = {LOW}"))
    app = create_app(load_config(cfg).profile("default"), auto_connect=False)
    workers: set[int] = set()  # the readers' processes, under the old limits and the new

    async def run() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("4")
            await _settle(pilot)
            (first,) = app.screen.outcomes
            assert first.result.status == st.UNREADABLE
            assert "raise reader_memory_mib in the profile (now 64)" in first.result.message
            workers.update(isolation.shared_pool().worker_pids())

            cfg.write_text(_app_profile_toml(tmp_path, f"reader_memory_mib = {HIGH}\nreader_seconds = 300"))
            await pilot.press("v")
            await _settle(pilot)
            (again,) = app.screen.outcomes
            assert again.result.status == st.OK and again.result.rows == BIG_ROWS and not again.cached
            pool = isolation.shared_pool()
            assert (pool.memory_limit, pool.time_limit) == (HIGH << 20, 300.0)
            assert (app.profile.reader_memory_mib, app.profile.reader_seconds) == (HIGH, 300.0)
            workers.update(pool.worker_pids())
            assert any("256 MiB" in t and "300 s" in t for t in _toasts(app)), _toasts(app)

            for broken in ("reader_memory_mib = 63", "reader_memory_mib = [", None):
                app.clear_notifications()
                if broken is None:
                    cfg.unlink()
                else:
                    cfg.write_text(_app_profile_toml(tmp_path, broken))
                await pilot.press("v")
                await _settle(pilot)
                (kept,) = app.screen.outcomes
                assert kept.result.status == st.OK and kept.cached, broken
                pool = isolation.shared_pool()
                assert (pool.memory_limit, pool.time_limit) == (HIGH << 20, 300.0), broken
                # the limits kept, said once (beside v's own summary of what it checked)
                (toast,) = [t for t in _toasts(app) if "checked:" not in t]
                assert str(cfg) in toast and "256 MiB" in toast and "300 s" in toast, toast
                if broken is not None:
                    assert "reader_memory_mib" in toast or "TOML" in toast, toast

    try:
        asyncio.run(run())
    finally:
        app.ledger.close()
    assert isolation.shared_pool().memory_limit == isolation.DEFAULT_MEMORY_BYTES
    assert workers
    for pid in workers:  # no reader outlives the app (stopped and reaped: not even a zombie)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _shared_pool_started() -> tuple[isolation.WorkerPool, list[int]]:
    """The shared pool with one reader started, and the readers' pids."""
    pool = isolation.shared_pool()
    pool.prestart(1)
    return pool, pool.worker_pids()


def test_the_limits_in_use_set_again_keep_the_readers(tmp_path):
    """Setting the limits the shared pool already has (a command ending under the defaults,
    the next one starting under them in the same process) keeps the pool and its workers: no
    reader stopped and another started for nothing (nor for a new time limit alone: see
    below). Other limits (memory or size) replace it and stop its workers. A job running when ``configure()`` is called without
    ``let_jobs_finish`` (the app quitting, a command interrupted) is stopped as before."""
    import threading

    from tests.test_hostile_workbooks import gone, hang

    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    isolation.configure()
    try:
        pool, pids = _shared_pool_started()
        assert len(pids) == 1
        for same in ({}, {"let_jobs_finish": True},
                     {"memory_limit": isolation.DEFAULT_MEMORY_BYTES, "time_limit": isolation.DEFAULT_TIME_LIMIT,
                      "size": isolation.default_size()}):
            isolation.configure(**same)
            assert isolation.shared_pool() is pool and not pool.closed, same
            assert pool.worker_pids() == pids and not any(gone(pid) for pid in pids), same
        for other in ({"memory_limit": 512 << 20}, {"size": pool.size + 1}):
            isolation.configure(**other)
            new = isolation.shared_pool()
            assert new is not pool and pool.closed, other
            assert all(gone(pid) for pid in pids), other
            pool, pids = _shared_pool_started()
            isolation.configure(**other)  # the same again: kept
            assert isolation.shared_pool() is pool and pool.worker_pids() == pids, other
            isolation.configure()
            assert isolation.shared_pool() is not pool and all(gone(pid) for pid in pids), other
            pool, pids = _shared_pool_started()

        isolation.configure(size=1)
        pool = isolation.shared_pool()
        stuck = hang(pool)  # a job under way, its worker frozen
        ended: list[BaseException] = []

        def job() -> None:
            try:
                pool.call("verify", {"path": str(good), "rules": {"date_column": None}})
            except isolation.PoolClosed as exc:
                ended.append(exc)

        running = threading.Thread(target=job, daemon=True)
        running.start()
        for _ in range(6000):  # until its worker has the job
            if pool.busy_pids():
                break
            running.join(0.01)
        assert pool.busy_pids() == [stuck]
        isolation.configure(size=1)  # the same limits, without let_jobs_finish
        running.join(60)
        assert not running.is_alive() and len(ended) == 1
        assert pool.closed and isolation.shared_pool() is not pool
        for _ in range(6000):
            if gone(stuck):
                break
            running.join(0.01)
        assert gone(stuck)
    finally:
        isolation.configure()


def test_new_limits_let_the_reads_under_way_finish(big):
    """The app's new limits must not cost a read already under way (a download's verification,
    an export): the old pool's busy worker finishes its job, then stops; the next read is
    under the new limits."""
    import time as time_module
    from concurrent.futures import ThreadPoolExecutor

    from tui.core.validate import validate_file

    isolation.configure(memory_limit=HIGH << 20)
    try:
        old = isolation.shared_pool()
        with ThreadPoolExecutor(1) as ex:
            running = ex.submit(validate_file, big, pool=old)
            for _ in range(1000):  # until its worker has the job
                if old.busy_pids() or running.done():
                    break
                time_module.sleep(0.01)
            assert old.busy_pids(), "the read did not start"
            isolation.configure(memory_limit=LOW << 20, let_jobs_finish=True)
            assert isolation.shared_pool().memory_limit == LOW << 20
            result = running.result(timeout=120)
        assert result.status == st.OK and result.rows == BIG_ROWS  # read to the end, under 256 MiB
        assert old.worker_pids() == [] and not old.closed  # its worker stopped after the job
        assert validate_file(big).status == st.UNREADABLE  # the next read: under 64 MiB
    finally:
        isolation.configure()
    assert old.closed  # the defaults back: the retired pool is closed with the shared one


def test_workers_started_for_a_pool_retired_meanwhile_stop(monkeypatch):
    """A sync starts its readers ahead (``prestart``) while the app takes new limits from the
    config: a worker that was starting when the pool was retired stops once started; it is
    not parked idle in a pool nobody asks any more, a process living as long as the app."""
    import threading

    pool = isolation.WorkerPool(1)
    spawning, go = threading.Event(), threading.Event()
    real_spawn = pool._spawn

    def spawn_when_told():  # the real worker, started once the pool is retired
        spawning.set()
        go.wait(60)
        return real_spawn()

    monkeypatch.setattr(pool, "_spawn", spawn_when_told)
    try:
        starter = threading.Thread(target=pool.prestart)
        starter.start()
        assert spawning.wait(60)
        pool.retire()
        go.set()
        starter.join(60)
        assert pool.started == 1
        assert pool.worker_pids() == []
    finally:
        go.set()
        pool.close()


def test_the_command_named_for_a_hostile_path_is_one_escaped_line_the_shell_reads_back(big, tmp_path, capsys):
    """A file whose name holds a line break, an escape sequence and quotes (a server may name
    a file so): the command a headless run names to verify it again is one printable line,
    and a shell given it reads back the very path."""
    import re
    import subprocess

    from tui.cli import main

    hostile = tmp_path / "it's\n\x1b[2J\x1b]0;owned\x07 \u202e.xlsx"
    shutil.copy(big, hostile)
    cfg = tmp_path / "c.toml"
    cfg.write_text(_profile_toml(f"reader_memory_mib = {LOW}"))
    assert main(["verify", "--config", str(cfg), "--json", str(hostile)]) == 2
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    message = entry["message"]
    assert entry["status"] == "unreadable" and "\n" not in message and message.isprintable(), message
    word = r"(?:\$'(?:[^'\\]|\\.)*'|'[^']*'|[^\s'(),;]+)"  # $'...', '...' or a bare word
    command = re.search(rf"report-keeper verify ({word}(?: {word})*)", message)
    assert command is not None, message
    words = command.group(1)
    said = subprocess.run(["bash", "-c", f"printf '%s\\0' {words}"], capture_output=True, check=True,
                          env={**os.environ, "LC_ALL": "C.UTF-8"}).stdout
    assert said.split(b"\0")[:-1] == [b"--config", os.fsencode(cfg), os.fsencode(hostile)]


def test_a_new_time_limit_alone_keeps_the_readers(tmp_path):
    """The time limit is given with each job (the worker's CPU limit is set per job, the wall
    time is watched by the caller), so a change of it alone keeps the pool and its workers,
    under the new limit from the next job on (and in the verification cache's key). With a job
    under way, and no ``let_jobs_finish``, the pool is stopped as for any other change."""
    from tests.test_hostile_workbooks import gone

    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    isolation.configure()
    try:
        pool, pids = _shared_pool_started()
        for seconds, let in ((60.0, False), (30.0, True), (isolation.DEFAULT_TIME_LIMIT, False)):
            isolation.configure(time_limit=seconds, let_jobs_finish=let)
            assert isolation.shared_pool() is pool and not pool.closed, seconds
            assert pool.time_limit == seconds and pool.limits[2] == seconds
            assert pool.worker_pids() == pids and not any(gone(pid) for pid in pids)
            reply = pool.call("verify", {"path": str(good), "rules": {"date_column": None}})
            assert reply["ok"] and pool.worker_pids() == pids
        isolation.configure(memory_limit=512 << 20)  # a worker's start-up limit: new workers
        assert isolation.shared_pool() is not pool and pool.closed
        assert all(gone(pid) for pid in pids)
    finally:
        isolation.configure()


def test_verify_starts_only_the_readers_there_is_work_for(tmp_path, monkeypatch):
    """``verify`` of one file starts one workbook reader, not the pool's whole size (each is
    an interpreter and the reader's import; ``export`` starts its readers ahead the same way).
    More files start more, up to ``--jobs``."""
    from tui.cli import main

    started: list[int] = []
    spawn = isolation.WorkerPool._spawn

    def counted(self):
        worker = spawn(self)
        started.append(worker.pid)
        return worker

    monkeypatch.setattr(isolation.WorkerPool, "_spawn", counted)
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    one = write_report(tmp_path / "one" / "Loans_20261126_070012.xlsx", n_rows=2)
    assert main(["verify", "--jobs", "3", "--json", str(one)]) == 0
    assert len(started) == 1
    started.clear()
    for k in range(3):
        write_report(tmp_path / "three" / f"Loans_2026112{k}_070012.xlsx", n_rows=2)
    main(["verify", "--jobs", "3", "--json", str(tmp_path / "three")])
    assert 1 <= len(started) <= 3
