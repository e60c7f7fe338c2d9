"""The sync service and ``report-keeper sync`` against real SFTP servers.

The embedded demo server (asyncssh) and a real OpenSSH sshd serve the demo scenario; every
download is checked byte for byte against the server's file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncssh
import pytest

from tests.locks import flock_held_elsewhere
from tui.core import status as st
from tui.core.ledger import Ledger
from tui.demo import data as demo_data
from tui.demo.server import profile_toml, start_demo_server
from tui.sftp.parts import open_part, part_path, work_dir, write_record
from tui.sftp.queue import Done, Queued, Running, TransferQueue
from tui.sftp.sync import Listed, Recorded, SyncService, Verified

NOW = "2026-06-10T14:00:00+00:00"
ROOT = Path(__file__).resolve().parent.parent


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)


@pytest.fixture
async def demo(tmp_path, pinned, demo_generated_once):
    server = await start_demo_server(
        tmp_path / "server", local_dir=tmp_path / "local", ledger=tmp_path / "ledger.sqlite3"
    )
    yield server
    await server.close()


@pytest.fixture
def ledger(tmp_path):
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="demo") as led:
        yield led


def assert_identical(result, server_dir: Path, local_dir: Path) -> None:
    for d in result.downloaded:
        local = Path(d["path"])
        assert local.parent == local_dir
        assert local.stat().st_mode & 0o777 == 0o600
        assert d["sha256"] == sha(local) == sha(server_dir / d["name"])


async def test_sync_downloads_exactly_what_is_new_then_nothing(demo, ledger):
    scenario = demo.scenario
    server_dir = demo.root / demo.remote_dir
    local = Path(demo.profile.local_dir)
    events = []
    held_when_recorded = []

    def on_event(event):
        events.append(event)
        if isinstance(event, Recorded):  # the ledger says so from this moment on
            held_when_recorded.append(event.name in {d.name for d in ledger.downloads()})

    async with SyncService(demo.profile, ledger) as service:
        result = await service.sync(on_event=on_event)
        assert result.error is None and result.failed == []
        assert sorted(d["name"] for d in result.downloaded) == sorted(f.name for f in scenario.files)
        assert result.skipped == []
        assert_identical(result, server_dir, local)
        assert local.stat().st_mode & 0o777 == 0o700
        assert not [p for p in local.iterdir() if p.name.endswith(".part")]
        assert list(work_dir(local).iterdir()) == []  # no part file, no record left
        # Every file verified; the scenario's cases come out as the validator's statuses.
        by_name = {v.name: v for v in result.files}
        assert len(by_name) == len(scenario.files)
        assert by_name[scenario.file_of("corrupt").name].status == st.UNREADABLE
        assert by_name[scenario.file_of("empty").name].status == st.EMPTY
        assert by_name[scenario.file_of("empty-closed").name].status == st.EMPTY_CLOSED
        assert by_name[scenario.file_of("late").name].status == st.OK
        assert result.status == st.Exit.CRITICAL  # the corrupt file
        assert isinstance(events[0], Listed) and events[0].wanted == len(scenario.files)
        assert sum(isinstance(e, Done) for e in events) == len(scenario.files)
        assert sum(isinstance(e, Verified) for e in events) == len(scenario.files)
        # each landed file: Done, then Recorded once the ledger holds it, then Verified
        order = [(type(e).__name__, e.name) for e in events if isinstance(e, Done | Recorded | Verified)]
        for f in scenario.files:
            assert [kind for kind, name in order if name == f.name] == ["Done", "Recorded", "Verified"]
        assert held_when_recorded == [True] * len(scenario.files)
        # The JSON document's shape (docs/JSON.md).
        doc = json.loads(json.dumps(result.to_json()))
        assert doc["status"] == "critical"
        assert set(doc) >= {"status", "downloaded", "skipped", "failed", "refused", "files"}
        assert set(doc["downloaded"][0]) >= {"name", "size", "sha256", "path"}
        assert set(doc["files"][0]) >= {"path", "name", "report", "delivered_at", "status", "rows",
                                        "header_row", "columns", "message"}
        # The ledger holds it all.
        deliveries = {d.name: d for d in ledger.deliveries()}
        assert len(deliveries) == len(scenario.files)
        assert all(d.downloaded and d.sha256 and d.verification for d in deliveries.values())
        assert deliveries[scenario.file_of("corrupt").name].verification == st.UNREADABLE
        late = deliveries[scenario.file_of("late").name]
        assert late.delivered_at == scenario.file_of("late").delivered_at
        assert late.report == demo_data.DAILY

        # Second run: nothing new, nothing downloaded, the local files untouched.
        before = {p.name: p.stat().st_mtime_ns for p in local.iterdir()}
        again = await service.sync()
        assert again.downloaded == [] and again.failed == [] and again.files == []
        assert sorted(again.skipped) == sorted(f.name for f in scenario.files)
        assert again.status == st.Exit.OK
        assert {p.name: p.stat().st_mtime_ns for p in local.iterdir()} == before

        # A new delivery arrives: exactly that one is fetched.
        new_name = demo_data.file_name(demo_data.DAILY, scenario.now + timedelta(hours=3))
        (server_dir / new_name).write_bytes((server_dir / scenario.files[-1].name).read_bytes())
        third = await service.sync()
        assert [d["name"] for d in third.downloaded] == [new_name]
        assert_identical(third, server_dir, local)
        # Same bytes as a file verified before, same report settings except the day: not cached
        # across days (closed days depend on it), but the listing now shows it downloaded.
        listing = await service.list_remote()
        assert {e.local_state for e in listing.entries} == {"downloaded"}


async def test_listing_is_annotated_for_the_remote_screen(demo, ledger):
    scenario = demo.scenario
    async with SyncService(demo.profile, ledger) as service:
        listing = await service.list_remote()
        assert len(listing.entries) == len(scenario.files)
        assert {e.local_state for e in listing.entries} == {"new"}
        oldest = min(listing.entries, key=lambda e: e.delivered_at)
        assert oldest.name == scenario.near_deletion.name
        assert oldest.delete_on == oldest.delivered_at + timedelta(days=60)
        assert 0 < oldest.days_left() < 14
        assert oldest.report == demo_data.DAILY and oldest.delivered_source == "name"
        one = scenario.file_of("late").name
        result = await service.download([one, "no such file.xlsx"])
        assert [d["name"] for d in result.downloaded] == [one]
        assert result.failed[0]["name"] == "no such file.xlsx"
        assert "not in the latest listing" in result.failed[0]["error"]
        listing = await service.list_remote()
        late = listing.entry(one)
        assert late.local_state == "downloaded" and late.verification == st.OK and late.rows
        assert len(listing.wanted) == len(scenario.files) - 1


async def test_changed_server_file_is_fetched_beside_the_old_one(demo, ledger):
    scenario = demo.scenario
    server_dir = demo.root / demo.remote_dir
    local = Path(demo.profile.local_dir)
    async with SyncService(demo.profile, ledger) as service:
        await service.sync()
        target = scenario.files[-3]
        old_sha = sha(local / target.name)
        # Alma (or someone) replaces the file on the server with other content.
        donor = next(f for f in scenario.files if f.kind == "ok" and f.name != target.name
                     and f.report == target.report)
        path = server_dir / target.name
        path.write_bytes((server_dir / donor.name).read_bytes())
        ts = target.delivered_at.timestamp() + 3600
        os.utime(path, (ts, ts))
        listing = await service.list_remote()
        assert listing.entry(target.name).local_state == "changed"
        result = await service.sync()
        assert [d["name"] for d in result.downloaded] == [target.name]
        assert result.changed == [target.name]
        new_path = Path(result.downloaded[0]["path"])
        assert new_path != local / target.name and "(changed " in new_path.name
        assert sha(local / target.name) == old_sha  # never overwritten
        assert sha(new_path) == sha(path)
        verdict = result.files[0]
        assert verdict.status == st.CHANGED and new_path.name in verdict.message
        assert result.status == st.Exit.WARNING
        d = next(d for d in ledger.deliveries() if d.name == target.name)
        assert d.changed and d.extra["downloads"] == 2 and d.local_path == str(new_path)
        assert ledger.local_state(target.name) == "downloaded"
        assert (await service.sync()).downloaded == []


async def test_file_gone_before_download_is_lost_and_critical(demo, ledger):
    scenario = demo.scenario
    server_dir = demo.root / demo.remote_dir
    async with SyncService(demo.profile, ledger) as service:
        await service.list_remote()
        victim = scenario.files[0].name
        (server_dir / victim).unlink()  # the 60-day retention strikes before anyone downloads
        result = await service.sync()
        assert result.lost == [victim]
        assert result.status == st.Exit.CRITICAL
        assert victim not in [d["name"] for d in result.downloaded]
        assert [d.name for d in ledger.lost()] == [victim]


async def test_interrupted_sync_resumes_from_part_files_and_ledger_stays_consistent(demo, ledger):
    server_dir = demo.root / demo.remote_dir
    local = Path(demo.profile.local_dir)
    big_name = "Full Loan History_20260610_080000.xlsx"
    big = server_dir / big_name
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    async with SyncService(demo.profile, ledger) as service:
        task = None

        def on_event(event):
            if (isinstance(event, Running) and event.name == big_name
                    and 0 < event.bytes < event.total):
                task.cancel()  # Ctrl-C in the middle of the big file

        task = asyncio.ensure_future(service.sync(on_event=on_event))
        with pytest.raises(asyncio.CancelledError):
            await task
        work = work_dir(local)
        parts = [p for p in work.iterdir() if p.name.endswith(".part")]
        big_part = part_path(local, next(e.remote for e in service.last_listing.entries
                                                  if e.name == big_name))
        assert big_part in parts and 0 < big_part.stat().st_size < big.stat().st_size
        assert not (local / big_name).exists()  # nothing partial under the final name
        # The ledger is consistent: every recorded download is complete and identical.
        assert ledger.integrity_ok()
        for d in ledger.deliveries():
            if d.downloaded:
                assert sha(d.local_path) == d.sha256 == sha(server_dir / d.name)
        assert ledger.local_state(big_name) == "partial"
        assert (await service.list_remote()).entry(big_name).local_state == "partial"

        result = await service.sync()
        assert result.failed == []
        done = {d["name"]: d for d in result.downloaded}
        assert done[big_name]["resumed_from"] > 0  # resumed, not restarted
        assert sha(local / big_name) == sha(big)
        assert not [p for p in work.iterdir() if p.name.endswith(".part")]
        every = {d.name for d in ledger.deliveries() if d.downloaded}
        assert every == {p.name for p in server_dir.iterdir()}
        assert ledger.partials() == {}


async def test_a_sync_cancelled_again_while_it_stops_still_records_its_part_files(
        demo, ledger, held_writes):
    """Cancelled in the middle of a big file, and cancelled again while it stops (the app's
    cancel key, then quitting), a sync still ends with the ledger naming the part file as a
    partial download of exactly the bytes it holds. The big file's writer thread is held
    meanwhile, as a loaded machine holds it: the sync used to read the part before its last
    block had landed (the ledger said "new" beside a part file), and a second cancel skipped
    recording the partial downloads altogether."""
    server_dir = demo.root / demo.remote_dir
    local = Path(demo.profile.local_dir)
    big_name = "Full Loan History_20260610_080000.xlsx"
    (server_dir / big_name).write_bytes(os.urandom(12 * 1024 * 1024))
    async with SyncService(demo.profile, ledger) as service:
        queues: list[TransferQueue] = []
        task = None

        def on_event(event):
            if (isinstance(event, Running) and event.name == big_name
                    and 0 < event.bytes < event.total):
                task.cancel()  # in the middle of the big file, its first block still held

        def stopping() -> bool:  # the sync has closed its queue: the big file's job is cancelled
            jobs = [j for q in queues for j in q.jobs.values() if j.name == big_name]
            return bool(jobs) and jobs[0].cancel_requested

        task = asyncio.ensure_future(service.sync(on_event=on_event, on_queue=queues.append))
        for _ in range(3000):
            if stopping() or task.done():
                break
            await asyncio.sleep(0.01)
        assert stopping() and not task.done(), "the sync ended while a block was still being written"
        task.cancel()  # again, while it stops
        await asyncio.sleep(0.1)
        held_writes.release()
        with pytest.raises(asyncio.CancelledError):
            await task
        big_part = part_path(local, service.last_listing.entry(big_name).remote)
        assert big_part.stat().st_size > 0
        assert ledger.local_state(big_name) == "partial"
        assert ledger.partials()[big_name]["bytes_done"] == big_part.stat().st_size
        assert (await service.list_remote()).entry(big_name).local_state == "partial"


async def test_verification_is_served_from_the_cache(demo, ledger):
    async with SyncService(demo.profile, ledger) as service:
        await service.sync()
        d = next(d for d in ledger.deliveries() if d.verification == st.OK)
        report = demo.profile.report_for(d.report)
        verdict, cached = await service.verify_file(Path(d.local_path), report, d.delivered_at,
                                                    sha256=d.sha256, name=d.name)
        assert cached and verdict.status == st.OK and verdict.rows == d.rows
        # Other settings (a closed day) are another cache entry.
        other = replace(report, min_rows=10**6)
        verdict, cached = await service.verify_file(Path(d.local_path), other, d.delivered_at,
                                                    sha256=d.sha256, name=d.name)
        assert not cached


async def test_connection_failure_is_a_critical_result(tmp_path, pinned, ledger):
    from tests.fixtures_sshd import free_port

    profile = demo_data.demo_config(port=free_port(), local_dir=tmp_path / "local",
                                    known_hosts=tmp_path / "kh", key=None)
    async with SyncService(profile, ledger) as service:
        result = await service.sync()
    assert result.status == st.Exit.CRITICAL and result.error_kind == "connection"
    assert "refused the connection" in result.error
    assert ledger.deliveries() == [] and ledger.last_listing() is None


async def test_unknown_host_key_is_refused_unless_accepted(demo, ledger):
    demo.known_hosts_path.write_text("")
    async with SyncService(demo.profile, ledger) as service:
        result = await service.sync()
    assert result.status == st.Exit.CRITICAL and result.error_kind == "host-key-unknown"
    assert demo.host_key_fingerprint in result.error
    async with SyncService(demo.profile, ledger, host_key_policy="remember") as service:
        result = await service.sync()
    assert result.error is None and result.downloaded
    assert f"[127.0.0.1]:{demo.port} ssh-ed25519" in demo.known_hosts_path.read_text()


@pytest.mark.sshd
async def test_sync_against_real_openssh(sshd, tmp_path, pinned, demo_generated_once):
    """The same sync against OpenSSH's sshd (internal-sftp)."""
    import tempfile

    sub = Path(tempfile.mkdtemp(prefix="sync-", dir=sshd.root))
    os.chmod(sub, 0o755)
    scenario = demo_data.generate(sub)
    profile = demo_data.demo_config(
        host=sshd.host, port=sshd.port, username=sshd.username, key=sshd.key,
        known_hosts=sshd.known_hosts, local_dir=tmp_path / "local",
    )
    profile = replace(profile, remote_dir=f"{sub.name}/{demo_data.DEMO_REMOTE_DIR}",
                      ssh_config=sshd.ssh_config)
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="demo") as led:
        async with SyncService(profile, led) as service:
            first = await service.sync()
            assert first.error is None and first.failed == []
            assert sorted(d["name"] for d in first.downloaded) == sorted(f.name for f in scenario.files)
            assert_identical(first, scenario.directory, Path(profile.local_dir))
            second = await service.sync()
            assert second.downloaded == [] and len(second.skipped) == len(scenario.files)
            assert second.status == st.Exit.OK


# ------------------------------------------------------------------ the CLI


@pytest.fixture
def cli_server(tmp_path):
    """``report-keeper demo-server`` in a subprocess; yields its config file."""
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "demo-server", "--dir", str(tmp_path / "served")],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    config = None
    for line in proc.stdout:
        m = re.match(r"\s+config:\s+(.*)$", line)
        if m:
            config = Path(m[1].strip())
        if line.startswith("Press Ctrl-C"):
            break
    assert config is not None, "demo-server did not print its config"
    yield config, tmp_path / "served" / demo_data.DEMO_REMOTE_DIR
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
    return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_sync_cli_json_and_exit_codes(cli_server, tmp_path):
    config, served = cli_server
    done = run_cli("sync", "--config", str(config), "--profile", "demo", "--json")
    assert done.returncode == 2, done.stderr  # the corrupt file is critical
    doc = json.loads(done.stdout)  # exactly one JSON document on stdout
    assert doc["status"] == "critical"
    assert len(doc["downloaded"]) == len(list(served.iterdir()))
    assert {f["status"] for f in doc["files"]} == {"ok", "empty", "empty-closed", "unreadable"}
    assert "Status: CRITICAL" in done.stderr  # human output went elsewhere
    again = run_cli("sync", "--config", str(config), "--profile", "demo")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 downloaded" in again.stdout and "Status: OK" in again.stdout


def test_sync_cli_config_error_exits_3(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("[profile.demo]\nhost = 'x'\nbogus = 1\n")
    done = run_cli("sync", "--config", str(bad), "--profile", "demo", "--json")
    assert done.returncode == 3
    doc = json.loads(done.stdout)  # one document, empty, saying why (a cron job parses it)
    assert doc["status"] == "critical" and doc["downloaded"] == [] and doc["error_kind"] == "config"
    assert "bogus" in doc["error"] and done.stderr == f"report-keeper: {doc['error']}\n"
    done = run_cli("sync", "--config", str(bad), "--profile", "demo")
    assert done.returncode == 3 and "bogus" in done.stderr and done.stdout == ""


def test_sync_cli_unknown_host_key_and_accept(tmp_path, cli_server):
    config, _served = cli_server
    text = config.read_text()
    kh = Path(re.search(r'known_hosts = "(.*)"', text)[1])
    kh.write_text("")
    done = run_cli("sync", "--config", str(config), "--profile", "demo", "--json")
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert "--accept-new-host-key" in doc["error"] and doc["downloaded"] == []
    ok = run_cli("sync", "--config", str(config), "--profile", "demo", "--json",
                 "--accept-new-host-key")
    assert json.loads(ok.stdout)["downloaded"] and ok.returncode == 2  # the corrupt file
    assert "ssh-ed25519" in kh.read_text()


def test_profile_toml_round_trips(tmp_path, pinned):
    from tui.core.config import load_config

    profile = demo_data.demo_config(port=2222, key=tmp_path / "k", known_hosts=tmp_path / "kh",
                                    local_dir=tmp_path / "local", ledger=tmp_path / "l.sqlite3")
    path = tmp_path / "c.toml"
    path.write_text(profile_toml(profile))
    loaded = load_config(path).profile("demo")
    assert (loaded.host, loaded.port, loaded.remote_dir, loaded.local_dir) == (
        profile.host, 2222, profile.remote_dir, profile.local_dir)
    assert loaded.timezone.key == "America/Chicago"
    assert [(r.name, r.schedule, r.at, r.grace, r.closed_days, r.expected_columns) for r in loaded.reports] == [
        (r.name, r.schedule, r.at, r.grace, r.closed_days, r.expected_columns) for r in profile.reports]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_sync_cli_ctrl_c_keeps_what_it_has_and_the_next_run_completes(cli_server, sig):
    """Ctrl-C, or SIGTERM (systemd stopping the unit, ``timeout`` in a cron line): the same
    orderly stop with its one JSON document."""
    config, served = cli_server
    big = served / "Full Loan History_20260610_080000.xlsx"
    big.write_bytes(os.urandom(64 * 1024 * 1024))
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "sync", "--config", str(config), "--profile", "demo", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    for line in proc.stderr:
        if line.startswith("Listed "):
            proc.send_signal(sig)  # as soon as the downloads start
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    doc = json.loads(out)
    assert doc["status"] == "critical" and doc["error"].startswith("Interrupted")
    assert big.name in [f["name"] for f in doc["failed"]]
    assert "Traceback" not in err
    for d in doc["downloaded"]:  # whatever was reported done is complete and identical
        assert sha(d["path"]) == d["sha256"] == sha(served / d["name"])
    again = run_cli("sync", "--config", str(config), "--profile", "demo", "--json")
    second = json.loads(again.stdout)
    assert second["failed"] == []
    names = {d["name"] for d in doc["downloaded"]} | {d["name"] for d in second["downloaded"]}
    assert names == {p.name for p in served.iterdir()}
    local = Path(re.search(r'local_dir = "(.*)"', config.read_text())[1])
    assert sha(local / big.name) == sha(big)


async def test_hostile_names_are_refused_reported_and_never_written(demo, ledger):
    server_dir = demo.root / demo.remote_dir
    hostile = ["bell\x07report_20260610_070000.xlsx", "back\\slash_20260610_070000.xlsx",
               "esc\x1b[31mred_20260610_070000.xlsx"]
    for name in hostile:
        (server_dir / name).write_bytes(b"x")
    async with SyncService(demo.profile, ledger) as service:
        result = await service.sync()
    refused = {r["name"]: r["reason"] for r in result.refused}
    assert set(refused) == {"bell\\u0007report_20260610_070000.xlsx",
                            "back\\slash_20260610_070000.xlsx",
                            "esc\\u001b[31mred_20260610_070000.xlsx"}
    assert "control character" in refused["bell\\u0007report_20260610_070000.xlsx"]
    local = Path(demo.profile.local_dir)
    # only the real reports (and report-keeper's private working folder)
    assert len([p for p in local.iterdir() if p.name != ".report-keeper"]) == len(demo.scenario.files)
    assert sorted(r.name for r in ledger.refused()) == sorted(hostile)
    # The human summary shows them escaped: no terminal escape sequence reaches the screen.
    import io

    from tui.commands.sync import _summary

    out = io.StringIO()
    _summary(result, demo.profile, out)
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "REFUSED      esc\\u001b[31mred_20260610_070000.xlsx" in out.getvalue()


async def test_connection_cut_mid_sync_reconnects_and_completes(demo, ledger):
    from tests.fixtures_sshd import TcpProxy

    server_dir = demo.root / demo.remote_dir
    big = server_dir / "Full Loan History_20260610_080000.xlsx"
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    async with TcpProxy(demo.port, cut_after=3 * 1024 * 1024) as proxy:
        kh = demo.known_hosts_path.read_text().replace(f"]:{demo.port} ", f"]:{proxy.port} ")
        demo.known_hosts_path.write_text(kh)
        profile = replace(demo.profile, port=proxy.port)
        async with SyncService(profile, ledger) as service:
            result = await service.sync()
            assert result.failed == [] and result.error is None
            assert proxy.cuts == 1 and proxy.connections >= 2
            assert sorted(d["name"] for d in result.downloaded) == sorted(
                p.name for p in server_dir.iterdir())
            assert_identical(result, server_dir, Path(profile.local_dir))
            # The service's own connection died with the cut; it reconnects by itself.
            again = await service.sync()
            assert again.downloaded == [] and again.error is None


async def test_on_queue_hands_the_transfer_queue_to_the_ui(demo, ledger):
    """The TUI pauses, resumes and cancels single files through the queue it is handed."""
    scenario = demo.scenario
    victim = scenario.files[5].name
    seen = {}

    def on_queue(queue):
        seen["queue"] = queue

    def on_event(event):
        if isinstance(event, Queued) and event.name == victim:
            seen["queue"].cancel(event.job_id)

    async with SyncService(demo.profile, ledger) as service:
        result = await service.sync(on_event=on_event, on_queue=on_queue)
        assert isinstance(seen["queue"], TransferQueue)
        assert [f["name"] for f in result.failed] == [victim]
        assert "resumes next time" in result.failed[0]["error"]
        assert len(result.downloaded) == len(scenario.files) - 1
        assert ledger.local_state(victim) == "new"
        retry = await service.download([victim])
        assert [d["name"] for d in retry.downloaded] == [victim] and retry.failed == []


async def test_a_file_another_process_is_fetching_is_skipped_not_failed(demo, ledger):
    """The app and a scheduled sync overlapping: the busy file is left to the other process."""
    scenario = demo.scenario
    busy = scenario.files[-1]
    local = Path(demo.profile.local_dir)
    async with SyncService(demo.profile, ledger) as service:
        listing = await service.list_remote()
        fd, _have = open_part(local, listing.entry(busy.name).remote)
        os.close(fd)
        part = part_path(local, listing.entry(busy.name).remote)
        with flock_held_elsewhere(part):
            result = await service.sync()
    assert busy.name in result.skipped
    assert busy.name not in {f["name"] for f in result.failed}
    assert len(result.downloaded) == len(scenario.files) - 1
    # Only the corrupt demo file makes this run critical, not the busy one.
    assert result.failed == []
    assert ledger.local_state(busy.name) == "new"


def _sync_on_a_terminal(cli_server, tmp_path, *args: str, columns: str | None = None) -> tuple[int, bytes, Path]:
    """``report-keeper sync`` on a terminal of its own (a pty), with the demo profile's key
    locked by a passphrase and no ssh-agent: waits for the passphrase question, answers it
    (``correct horse``) and reads everything until the command ends. Returns its exit code,
    all it wrote to the terminal, and the locked key's path."""
    import pty

    config, _served = cli_server
    text = config.read_text()
    plain = Path(re.search(r'key = "(.*)"', text)[1])
    locked = tmp_path / "locked_key"
    key = asyncssh.import_private_key(plain.read_bytes())
    locked.write_bytes(key.export_private_key("pkcs8-pem", passphrase="correct horse"))
    locked.chmod(0o600)
    mine = tmp_path / "config.toml"
    mine.write_text(text.replace(str(plain), str(locked)))
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW, "SSH_AUTH_SOCK": ""}
    if columns is not None:
        env["COLUMNS"] = columns
    pid, fd = pty.fork()
    if pid == 0:  # the child: report-keeper on a terminal of its own, as a librarian runs it
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "tui", "sync", "--config", str(mine),
                                   "--profile", "demo", *args], env)
    seen = b""
    try:
        while b"Passphrase for" not in seen:
            chunk = os.read(fd, 1024)
            assert chunk, f"no passphrase prompt; got {seen!r}"
            seen += chunk
        os.write(fd, b"correct horse\n")
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen, locked


def test_sync_cli_asks_for_a_key_passphrase_on_a_terminal(cli_server, tmp_path):
    """An encrypted key, no ssh-agent: on a terminal ``sync`` asks (getpass) and gets in."""
    code, seen, locked = _sync_on_a_terminal(cli_server, tmp_path, "--json")
    assert str(locked).encode() in seen
    assert code == 2  # the corrupt demo file, not a login failure
    assert b"correct horse" not in seen.split(b"Passphrase for", 1)[1].split(b"\n", 1)[1]
    assert b'"downloaded"' in seen and b"refused the login" not in seen


def test_the_passphrase_question_is_not_wiped_by_the_progress_display(cli_server, tmp_path):
    """On a terminal, sync's progress display (rich) was started before the connection: it
    redrew its empty line (carriage return, erase line) ten times a second over the key's
    passphrase question, so the librarian saw a blank screen that took what they typed. The
    display starts once the server is listed; the question stands (and the cursor shows)
    until it is answered."""
    code, seen, _locked = _sync_on_a_terminal(cli_server, tmp_path, columns="120")
    assert code == 2, seen  # the corrupt demo file, not a login failure
    asked = seen.index(b"Passphrase for")
    until_answered = seen[:seen.index(b"\n", asked)]  # the question, up to the Enter after the answer
    assert b"\x1b[2K" not in until_answered and b"\x1b[?25l" not in until_answered, until_answered
    assert b"Listed " in seen[asked:]
    assert b"Status: CRITICAL" in seen


async def test_the_folder_is_fsynced_before_the_commit_that_records_its_downloads(demo, ledger,
                                                                                 monkeypatch):
    """One folder fsync per commit instead of one per file, and never after the commit: at every
    folder fsync, the other connection sees no record of a file placed since the previous one."""
    from tui.sftp import sync as sync_mod

    local = Path(demo.profile.local_dir)
    calls: list[tuple[set[str], set[str]]] = []  # (placed, committed) when the folder is fsynced
    real = sync_mod.fsync_dir

    with Ledger.open(ledger.path, profile="demo") as other:
        def observed(folder: Path) -> None:
            placed = {p.name for p in folder.iterdir() if p.is_file()}
            calls.append((placed, {d.name for d in other.downloads()}))
            real(folder)

        monkeypatch.setattr(sync_mod, "fsync_dir", observed)
        async with SyncService(demo.profile, ledger) as service:
            result = await service.sync()
        names = {f.name for f in demo.scenario.files}
        assert {d["name"] for d in result.downloaded} == names
        assert 1 <= len(calls) < len(names)
        assert calls[-1][0] == names  # the last fsync came after the last file was placed
        fsynced: set[str] = set()
        for placed, committed in calls:
            assert committed <= fsynced  # nothing committed whose folder entry was not durable
            fsynced = placed
        assert {d.name for d in other.downloads()} == names
        assert all(p.parent == local for p in (Path(d["path"]) for d in result.downloaded))


def test_plain_progress_writes_the_listing_and_failures_at_once_and_batches_finished_files():
    """A person (or a test) watching a cron sync sees the listing when downloads start, not
    half a second later when the first batch of finished files is written."""
    import io

    from tui.commands.sync import _PlainProgress
    from tui.sftp.queue import Done, Failed
    from tui.sftp.sync import Listed

    out = io.StringIO()
    progress = _PlainProgress(out)
    progress.on_event(Listed(files=3, wanted=2, refused=0))
    assert out.getvalue() == "Listed 3 files: 2 to download.\n"
    progress.on_event(Done(job_id=1, name="a.xlsx", size=10))
    progress.on_event(Failed(job_id=2, name="b.xlsx", reason="the server closed the connection"))
    assert out.getvalue().endswith("FAILED      b.xlsx: the server closed the connection\n")


async def test_a_placed_file_stays_locked_until_its_record_is_committed(demo, ledger, monkeypatch):
    """Another process finding a file this run placed waits while it is locked: each lock is
    let go only once the file's record is committed (a second connection sees it), the last
    files' of a run included."""
    from tui.sftp import sync as sync_mod

    real_close, closed, early = sync_mod._close_fd, [], []
    other = Ledger.open(ledger.path, profile="demo")

    def close(fd):
        if fd is not None:  # the placed file's inode (the descriptor was the part file's)
            inode = os.fstat(fd).st_ino
            closed.append(inode)
            if inode not in {os.stat(d.local_path).st_ino for d in other.downloads()}:
                early.append(inode)
        real_close(fd)

    real_in_writer = SyncService._in_writer

    def in_writer(self, call):  # the writer is slow to let a lock go (a loaded machine)
        if getattr(call, "func", None) is not None and call.func.__name__ == "unlock":
            slow = call

            def call():
                time.sleep(0.05)
                slow()
        return real_in_writer(self, call)

    monkeypatch.setattr(sync_mod, "_close_fd", close)
    monkeypatch.setattr(SyncService, "_in_writer", in_writer)
    try:
        async with SyncService(demo.profile, ledger) as service:
            result = await service.sync()
    finally:
        other.close()
    assert len(closed) == len(result.downloaded) == len(demo.scenario.files)
    assert early == []


class _LedgerHolder:
    """Another thread in the ledger (a commit, the app's snapshot build) for as long as the
    test says: ``take()`` returns once that thread holds the ledger's lock."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None

    def _hold(self) -> None:
        with self._ledger._lock:
            self._held.set()
            self._release.wait(60)

    def take(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._hold, daemon=True)
            self._thread.start()
            assert self._held.wait(60)

    def release(self) -> None:
        self._release.set()
        if self._thread is not None:
            self._thread.join(60)


@pytest.mark.parametrize("earlier", ["fresh", "resumed"])
async def test_a_sync_cancelled_once_its_file_is_placed_records_it_as_downloaded(demo, ledger, earlier):
    """Cancelled while a placed file's folder waits to be made durable (the ledger busy in
    another thread): the file is complete under its final name, so the ledger says downloaded,
    keeps no partial record of a part that is gone, and no part record is left behind."""
    victim = max(demo.scenario.files, key=lambda f: f.size)
    local = Path(demo.profile.local_dir)
    final = local / victim.name
    holder = _LedgerHolder(ledger)

    def on_event(event):
        if isinstance(event, Running) and event.name == victim.name and event.bytes >= event.total > 0:
            holder.take()  # the last block is written: placing comes next

    try:
        async with SyncService(demo.profile, ledger) as service:
            listing = await service.list_remote()
            remote = listing.entry(victim.name).remote
            if earlier == "resumed":  # what a run stopped halfway left: a part and its record
                data = (demo.root / demo.remote_dir / victim.name).read_bytes()
                fd, _have = open_part(local, remote)
                try:
                    os.write(fd, data[: len(data) // 2])
                finally:
                    os.close(fd)
                write_record(work_dir(local), remote)
                ledger.record_partial(victim.name, size=remote.size, mtime=remote.mtime,
                                      part_path=part_path(local, remote), bytes_done=len(data) // 2)
                assert ledger.local_state(victim.name) == "partial"
            task = asyncio.ensure_future(service.download([victim.name], on_event=on_event))
            deadline = time.monotonic() + 60
            while not final.exists():
                assert time.monotonic() < deadline and not task.done(), "the file was never placed"
                await asyncio.sleep(0.01)
            task.cancel()
            holder.release()
            with pytest.raises(asyncio.CancelledError):
                await task
    finally:
        holder.release()
    assert sha(final) == sha(demo.root / demo.remote_dir / victim.name)
    assert ledger.local_state(victim.name) == "downloaded"
    assert [d.local_path for d in ledger.downloads(victim.name)] == [str(final)]
    assert ledger.partials() == {}
    assert list(work_dir(local).iterdir()) == []  # neither a part nor a record of one


async def test_a_stopped_download_whose_part_is_gone_keeps_no_partial_record(demo, ledger):
    """The ledger called a file partial (a part left by an earlier run), and the part is gone
    (the working folder cleared by hand): once its download is stopped with no part on the
    disk, the ledger no longer calls it partial."""
    victim = demo.scenario.files[5]
    local = Path(demo.profile.local_dir)
    seen = {}

    def on_event(event):
        if isinstance(event, Queued) and event.name == victim.name:
            seen["queue"].cancel(event.job_id)

    async with SyncService(demo.profile, ledger) as service:
        remote = (await service.list_remote()).entry(victim.name).remote
        ledger.record_partial(victim.name, size=remote.size, mtime=remote.mtime,
                              part_path=part_path(local, remote), bytes_done=remote.size // 2)
        result = await service.download([victim.name], on_event=on_event,
                                        on_queue=lambda q: seen.setdefault("queue", q))
    assert [f["name"] for f in result.failed] == [victim.name]
    assert not part_path(local, remote).exists()
    assert ledger.partials() == {}
    assert ledger.local_state(victim.name) == "new"


async def test_a_download_that_is_no_workbook_is_judged_from_the_bytes_that_arrived(demo, ledger, monkeypatch):
    """A file that arrives whole in one read and is no zip package (random bytes, an HTML page,
    a CSV saved as .xlsx) is verified from the bytes the download hashed: the verdict a reader
    of the file gives, recorded for that sha256, without opening the file again. A workbook
    still goes to a worker, which reads the file."""
    from tui.core import validate

    server_dir = demo.root / demo.remote_dir
    strays = {
        "Stray_20260610_070000.xlsx": os.urandom(100 * 1024),
        "Page_20260610_070000.xlsx": b"<!DOCTYPE html><html><body>no report</body></html>",
        "Comma_20260610_070000.xlsx": b"a,b,c\n1,2,3\n",
    }
    for name, data in strays.items():
        (server_dir / name).write_bytes(data)
    expected = {name: validate._judged_here(server_dir / name) for name in strays}
    read_again: list[str] = []
    real = validate._judged_here

    def judged_here(path: Path):
        read_again.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(validate, "_judged_here", judged_here)
    async with SyncService(demo.profile, ledger) as service:
        result = await service.sync()
    verdicts = {v.name: v for v in result.files}
    for name, data in strays.items():
        verdict = verdicts[name]
        reply = expected[name]
        assert reply is not None
        assert verdict.status == st.UNREADABLE and verdict.message == reply["result"]["message"], name
        assert verdict.read_sha256 == reply["result"]["sha256"] == hashlib.sha256(data).hexdigest()
    held = {d.name: d for d in ledger.deliveries()}
    for name, data in strays.items():  # recorded as verified, for the bytes that arrived
        assert held[name].sha256 == hashlib.sha256(data).hexdigest()
        assert held[name].verification == st.UNREADABLE and held[name].message == verdicts[name].message
    assert not set(read_again) & set(strays)  # judged from what arrived, not read again
    assert {v.status for n, v in verdicts.items() if n not in strays} != {st.UNREADABLE}


async def test_a_run_of_files_that_are_no_workbooks_starts_no_workbook_reader(demo, ledger, monkeypatch):
    """Files judged from their bytes as they arrived need no workbook reader: none is started
    (its start is an interpreter and the reader's import). The first file a reader must read
    starts one, as a verification does."""
    from tui.core import isolation

    server_dir = demo.root / demo.remote_dir
    for old in server_dir.iterdir():
        old.unlink()
    for k in range(3):
        (server_dir / f"Stray{k}_20260610_070000.xlsx").write_bytes(os.urandom(20 * 1024))
    pool = isolation.WorkerPool(1)
    monkeypatch.setattr(isolation, "shared_pool", lambda: pool)
    try:
        async with SyncService(demo.profile, ledger) as service:
            result = await service.sync()
            assert len(result.downloaded) == 3 and {v.status for v in result.files} == {st.UNREADABLE}
            assert pool.started == 0 and pool.worker_pids() == []
            from tests.xlsx_factory import write_report

            write_report(server_dir / "Loans_20260610_070000.xlsx", n_rows=2)
            result = await service.sync()
        assert [v.status for v in result.files] != [st.UNREADABLE] and pool.started == 1
    finally:
        pool.close()


def test_an_interrupted_sync_says_in_one_line_which_files_it_had_not_begun(tmp_path):
    """Ctrl-C in a sync of 66 files: each of the 54 not begun was a "FAILED" line of its own
    (two screen lines each at 120 columns), so the line saying what the interruption kept
    scrolled out of sight. They are one line now, naming the first few; a file that failed
    otherwise keeps its own line, and --json still lists every one under "failed"."""
    import io

    from tui.commands.sync import INTERRUPTED, _summary
    from tui.core.config import load_config
    from tui.sftp.sync import INTERRUPTED_BEFORE, SyncResult

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profile.default]\nhost = "127.0.0.1"\nusername = "u"\nremote_dir = "r"\n'
                   f'local_dir = "{tmp_path / "local"}"\ntimezone = "UTC"\n')
    profile = load_config(cfg).profile()
    not_begun = [f"Report_202611{d:02d}_070000.xlsx" for d in range(1, 25)]
    result = SyncResult(error=INTERRUPTED, error_kind="interrupted", failed=[
        {"name": "Other_20261101_070000.xlsx", "error": "the server closed the connection"},
        *({"name": n, "error": INTERRUPTED_BEFORE} for n in not_begun)])
    out = io.StringIO()
    _summary(result, profile, out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Interrupted."), lines
    assert [line for line in lines if "Other_20261101" in line] == [
        "  FAILED       Other_20261101_070000.xlsx: the server closed the connection"]
    [grouped] = [line for line in lines if "Report_" in line]
    assert grouped.startswith("  NOT BEGUN    24 files") and "the next sync downloads them" in grouped, grouped
    assert not_begun[0] in grouped and not_begun[-1] not in grouped and "--json" in grouped, grouped
    assert len(lines) == 4 and lines[-1] == "Status: OK", lines
    assert len(result.to_json()["failed"]) == 25


def test_a_secrets_file_others_can_read_is_a_warning_of_the_run_not_a_failure(cli_server, tmp_path):
    """The nightly run's SMTP password lives in ``secrets.env`` beside the config; one that
    other users can read (or replace) is refused by ``schedule``, and a run finds it too: one
    warning line on the human side (stderr with ``--json``) and in the log, once per run (the
    parent of ``--all-profiles`` alone), the exit code and the JSON document as without it."""
    config, _served = cli_server
    folder = tmp_path / "cfg"
    folder.mkdir(mode=0o700)
    mine = folder / "config.toml"
    mine.write_text(config.read_text())
    secrets = folder / "secrets.env"
    secrets.write_text("RK_SMTP_PASSWORD='not a real one'\n")
    secrets.chmod(0o644)

    done = run_cli("sync", "--config", str(mine), "--profile", "demo", "--json")
    assert done.returncode == 2, done.stderr  # the corrupt demo file, as without the warning
    json.loads(done.stdout)  # still exactly one JSON document
    assert done.stderr.count("chmod 600") == 1 and str(secrets) in done.stderr, done.stderr
    assert "not a real one" not in done.stderr + done.stdout

    every = run_cli("sync", "--config", str(mine), "--all-profiles", "--json")
    assert set(json.loads(every.stdout)["profiles"]) == {"demo"}
    assert every.stderr.count("chmod 600") == 1, every.stderr

    secrets.chmod(0o600)
    quiet = run_cli("sync", "--config", str(mine), "--profile", "demo")
    assert "secrets.env" not in quiet.stdout + quiet.stderr, quiet.stdout + quiet.stderr
