"""The demo scenario and the embedded demo SFTP server (and its CLI), for real."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest

from tui.core.status import EMPTY, EMPTY_CLOSED, OK, UNREADABLE
from tui.core.validate import validate_file
from tui.demo import data as demo_data
from tui.demo.server import start_demo_server
from tui.sftp.client import ConnectOptions, connect
from tui.sftp.errors import AuthFailed

NOW = "2026-06-10T14:00:00+00:00"  # 09:00 in Chicago: today's 07:00 run has arrived
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)


@pytest.fixture
def scenario(tmp_path, pinned):
    return demo_data.generate(tmp_path / "server")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scenario_has_every_case(scenario):
    s = scenario
    assert s.today.isoformat() == "2026-06-10"
    daily = [f for f in s.files if f.report == demo_data.DAILY]
    weekly = [f for f in s.files if f.report == demo_data.WEEKLY]
    on_disk = sorted(p.name for p in s.directory.iterdir())
    assert on_disk == sorted(f.name for f in s.files)
    # ~70 days of history; the 60-day retention deleted the oldest, the oldest left is 57 days.
    assert len(s.expired_days) == demo_data.HISTORY_DAYS - demo_data.OLDEST_AGE - 1
    assert s.oldest_day == s.today - timedelta(days=57)
    assert min(f.run_day for f in s.files) == s.oldest_day
    oldest = s.near_deletion
    delete_on = oldest.delivered_at + timedelta(days=60)
    assert timedelta(days=0) < delete_on - s.now < timedelta(days=14)
    # One file per open run day, except the missing day and the duplicate day.
    run_days = [f.run_day for f in daily]
    assert s.missing_day not in run_days
    assert run_days.count(s.duplicate_day) == 2
    assert len(set(run_days)) == 57  # 58 days (57 days ago .. today) minus the missing one
    # Rescue is still possible for the missing day: (R - 3) + 7 is after today.
    assert s.missing_day - timedelta(days=3) + timedelta(days=7) > s.today
    late = s.file_of(demo_data.LATE)
    assert late.run_day == s.late_day and late.delivered_at.hour >= 9 + 1
    assert s.closed_day == s.holiday_run_day - timedelta(days=3)
    assert {f.kind for f in s.files} >= {"ok", "late", "empty", "empty-closed", "corrupt", "duplicate"}
    # The weekly report runs on Mondays.
    assert weekly and all(f.run_day.weekday() == 0 for f in weekly)
    # File mtimes are the delivery times.
    for f in s.files:
        assert (s.directory / f.name).stat().st_mtime == f.delivered_at.timestamp()


def test_names_parse_to_report_and_delivery_time(scenario, tmp_path):
    profile = demo_data.demo_config(local_dir=tmp_path / "local")
    for f in scenario.files:
        mtime = datetime.fromtimestamp((scenario.directory / f.name).stat().st_mtime, UTC)
        report, parsed = profile.classify(f.name, mtime)
        assert report.name == f.report and report.configured
        assert parsed.source == "name"
        assert parsed.delivered_at == f.delivered_at


def test_validator_sees_each_case(scenario, tmp_path):
    profile = demo_data.demo_config(local_dir=tmp_path / "local")
    expected = {"ok": OK, "late": OK, "duplicate": OK, "empty": EMPTY,
                "empty-closed": EMPTY_CLOSED, "corrupt": UNREADABLE}
    for f in scenario.files:
        report = profile.report_for(f.report)
        result = validate_file(scenario.directory / f.name, report, f.delivered_at)
        assert result.status == expected[f.kind], (f.name, result.message)
        if f.kind in ("ok", "late", "duplicate"):
            assert result.rows == f.rows and result.header_row == 3
            assert f.report != demo_data.DAILY or set(result.columns) >= set(demo_data.DAILY_COLUMNS)


def test_generated_data_is_synthetic_and_keeps_leading_zeros(scenario):
    import openpyxl

    f = next(f for f in scenario.files if f.kind == "ok" and f.report == demo_data.DAILY)
    wb = openpyxl.load_workbook(scenario.directory / f.name, read_only=True)
    rows = list(wb.active.iter_rows(values_only=True))
    assert rows[0][0] == demo_data.DAILY and rows[2] == demo_data.DAILY_COLUMNS
    for row in rows[3:]:
        assert isinstance(row[0], str) and re.fullmatch(r"\d{8}", row[0])  # ids, not names
        assert re.fullmatch(r"3\d{13}", row[3])  # barcodes
    assert any(r[0].startswith("0") for r in rows[3:])


def test_generation_is_deterministic_and_respects_the_clock(tmp_path, pinned, monkeypatch):
    a = demo_data.generate(tmp_path / "a")
    b = demo_data.generate(tmp_path / "b")
    assert [f.name for f in a.files] == [f.name for f in b.files]
    for f in a.files:
        assert sha(a.directory / f.name) == sha(b.directory / f.name)
    # At 06:00 in Chicago today's run has not happened yet.
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-10T11:00:00+00:00")
    early = demo_data.generate(tmp_path / "early")
    assert max(f.run_day for f in early.files) == early.today - timedelta(days=1)


def test_the_tests_demo_cache_gives_what_a_fresh_generation_writes(tmp_path, pinned, demo_once):
    """The suite writes the demo once per ``now`` and copies it (``tests/demo_cache.py``, for
    the CLI tests at the clock's time and the TUI tests at FIXED_NOW): a copy holds the same
    files with the same bytes and times as a fresh generation, and its scenario is the fresh
    one but for the folder."""
    from tests.test_tui_fixtures import FIXED_NOW

    def tree(root: Path) -> dict[str, tuple[str, int]]:
        return {str(p.relative_to(root)): (sha(p), p.stat().st_mtime_ns)
                for p in root.rglob("*") if p.is_file()}

    for i, now in enumerate((None, datetime.fromisoformat(FIXED_NOW))):
        demo_once.template(now)  # the cache made before the fresh one, as in a test session
        fresh = demo_data.generate(tmp_path / f"fresh{i}", now)
        copied = demo_once.generate(tmp_path / f"copied{i}", now)
        assert copied.folder == tmp_path / f"copied{i}"
        assert copied == replace(fresh, folder=copied.folder)
        assert len(fresh.files) > 10 and tree(copied.folder) == tree(fresh.folder)


async def test_demo_server_serves_the_scenario_chrooted(tmp_path, pinned):
    server = await start_demo_server(local_dir=tmp_path / "local")
    keys = server.client_key_path.parent
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        assert keys.stat().st_mode & 0o777 == 0o700
        assert server.client_key_path.stat().st_mode & 0o777 == 0o600
        assert server.host_key_fingerprint.startswith("SHA256:")
        profile = server.profile
        assert profile.port == server.port and profile.remote_dir == demo_data.DEMO_REMOTE_DIR
        # The known_hosts file trusts exactly this server: the strict policy connects.
        conn = await connect(ConnectOptions.from_profile(profile), host_key_policy="reject")
        try:
            assert conn.host_key.fingerprint == server.host_key_fingerprint
            listing = await conn.listdir(profile.remote_dir)
            assert [f.name for f in listing.files] == sorted(f.name for f in server.scenario.files)
            top = await conn.listdir("/")
            assert [n for n, _kind in top.others] == ["upload"]
            # Climbing out of the chroot lands on its root again.
            escaped = await conn.listdir("../../../..")
            assert [n for n, _kind in escaped.others] == ["upload"]
            first = server.scenario.files[0]
            data = await conn.download_bytes(f"{profile.remote_dir}/{first.name}")
            assert data == (server.root / profile.remote_dir / first.name).read_bytes()
        finally:
            await conn.close()
        # Another key is refused.
        other = tmp_path / "other_key"
        other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
        other.chmod(0o600)
        opts = ConnectOptions.from_profile(profile)
        with pytest.raises(AuthFailed):
            await connect(ConnectOptions(**{**opts.__dict__, "key": other, "use_agent": False}))
    finally:
        await server.close()
    assert not keys.exists() and not server.root.exists()


async def test_demo_server_serves_an_existing_folder_untouched(tmp_path, pinned):
    scenario = demo_data.generate(tmp_path / "served")
    extra = scenario.directory / "Hand Made_20260601_070000.xlsx"
    extra.write_bytes(b"not generated")
    server = await start_demo_server(tmp_path / "served")
    try:
        assert server.scenario is None  # nothing was generated
        conn = await connect(ConnectOptions.from_profile(server.profile))
        names = [f.name for f in (await conn.listdir(server.remote_dir)).files]
        await conn.close()
        assert extra.name in names and len(names) == len(scenario.files) + 1
    finally:
        await server.close()
    assert extra.exists()  # a folder given with --dir is kept


def _start_cli_server(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, dict[str, str]]:
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "demo-server", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    info: dict[str, str] = {}
    lines = []
    for line in proc.stdout:
        lines.append(line)
        m = re.match(r"\s+([a-z_ ]+):\s+(.*)$", line)
        if m:
            info[m[1].strip()] = m[2].strip()
        if line.startswith("  sftp "):
            info["sftp"] = line.strip()
        if line.startswith("Press Ctrl-C"):
            break
    else:
        proc.wait()
        raise AssertionError("demo-server ended early: " + "".join(lines) + proc.stderr.read())
    return proc, info


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _err = proc.communicate(timeout=20)
    return out


async def test_demo_server_cli_prints_how_to_connect(tmp_path):
    proc, info = _start_cli_server(tmp_path)
    try:
        assert info["host"] == "127.0.0.1" and info["user"] == "demo"
        port = int(info["port"])
        key = Path(info["key"])
        known_hosts = Path(info["known_hosts"])
        assert re.fullmatch(r"ssh-ed25519 SHA256:[A-Za-z0-9+/]{43}", info["host key"])
        assert info["sftp"] == (
            f"sftp -i {key} -P {port} -o UserKnownHostsFile={known_hosts} "
            f"-o IdentitiesOnly=yes demo@127.0.0.1"
        )
        # Any client can follow the printed instructions: asyncssh with strict host keys...
        async with asyncssh.connect(
            "127.0.0.1", port, username="demo", client_keys=[str(key)],
            known_hosts=str(known_hosts), agent_path=None, config=[],
        ) as conn:
            assert conn.get_server_host_key().get_fingerprint("sha256") == info["host key"].split()[1]
            async with conn.start_sftp_client() as sftp:
                names = await sftp.listdir(demo_data.DEMO_REMOTE_DIR)
        assert sum(n.endswith(".xlsx") for n in names) > 50
        # ... and OpenSSH's sftp, exactly as printed.
        if shutil.which("sftp"):
            cmd = info["sftp"].replace("sftp ", "sftp -b - -o BatchMode=yes ", 1)
            done = subprocess.run(
                cmd.split(" ")[:-1] + ["demo@127.0.0.1"], input=f"ls {demo_data.DEMO_REMOTE_DIR}\n",
                capture_output=True, text=True, timeout=30,
            )
            assert done.returncode == 0, done.stderr
            assert "Loans Per Patron From 3 Days Ago_20260610_" in done.stdout
        assert Path(info["config"]).is_file()
    finally:
        out = _stop(proc)
    assert proc.returncode == 0
    assert "Demo server stopped." in out
    assert not key.exists()  # the throwaway keys are gone


def test_demo_server_cli_bad_port_is_a_usage_error():
    done = subprocess.run(
        [sys.executable, "-m", "tui", "demo-server", "--port", "70000"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert done.returncode == 3
    assert "--port 70000 is not a port number" in done.stderr


def test_the_demo_history_holds_every_case_but_not_the_newest_or_the_oldest(scenario):
    synced = {f.name for f in scenario.already_synced}
    kinds = {f.kind for f in scenario.already_synced}
    assert kinds >= {"ok", "late", "empty", "empty-closed", "corrupt", "duplicate"}
    assert scenario.near_deletion.name not in synced  # still to rescue: near deletion
    newest = max(scenario.files, key=lambda f: f.delivered_at)
    assert newest.name not in synced  # still new: something to download in the demo


async def test_seed_history_is_a_real_previous_sync(tmp_path, pinned):
    from tui.core.health import evaluate
    from tui.core.ledger import Ledger
    from tui.demo.seed import seed_history

    server = await start_demo_server(local_dir=tmp_path / "local")
    try:
        result = await seed_history(server)
        wanted = {f.name for f in server.scenario.already_synced}
        assert {d["name"] for d in result.downloaded} == wanted and not result.failed
        on_disk = {p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith(".")}
        assert on_disk == wanted
        ledger = Ledger.open(server.profile.ledger_path, profile=server.profile.name)
        try:
            states = ledger.local_states()
            deliveries = ledger.deliveries()
        finally:
            ledger.close()
        assert {n for n, s in states.items() if s == "downloaded"} == wanted
        assert {n for n, s in states.items() if s == "new"} == {f.name for f in server.scenario.files} - wanted
        # The health evaluation now sees the corrupt and the empty reports of the history.
        kinds = {p.kind for p in evaluate(server.profile, deliveries).problems}
        assert {"unreadable", "empty", "missing", "late", "near-deletion"} <= kinds
    finally:
        await server.close()


def test_demo_local_dir_that_cannot_hold_the_downloads_is_a_usage_error(tmp_path):
    """--demo --local-dir naming a file opened the app anyway, and every download then failed
    with "Could not create the local folder ... Check local_dir in the profile" (the demo has
    no profile). It is refused before anything starts, naming --local-dir (exit 3)."""
    a_file = tmp_path / "reports.txt"
    a_file.write_text("not a folder")
    done = subprocess.run(
        [sys.executable, "-m", "tui", "--demo", "--local-dir", str(a_file)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr == (f"report-keeper: --local-dir: {a_file} exists but is not a folder; "
                           "name a folder you can write to\n"), done.stderr
    assert a_file.read_text() == "not a folder"
