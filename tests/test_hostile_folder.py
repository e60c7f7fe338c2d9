"""Hostile server folders: names and files that try to stop, crash or corrupt a sync.

Every case runs against both the embedded asyncssh server and OpenSSH's sshd (``sftp_server``)
with real workbooks. Each checks the same things: the process survives, the JSON says the
right thing, every other file of the folder arrives intact, the ledger stays consistent.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncssh
import pytest

from tests.fixtures_sshd import ServerInfo
from tests.xlsx_factory import write_report
from tui.core import status as st
from tui.core.ledger import Ledger
from tui.demo import data as demo_data
from tui.demo.server import profile_toml
from tui.sftp.client import connect
from tui.sftp.conntest import PROBE_PREFIX, connect_and_test, probe_bytes, probe_connection
from tui.sftp.parts import part_name
from tui.sftp.sync import SyncService

NOW = "2026-06-10T14:00:00+00:00"
ROOT = Path(__file__).resolve().parent.parent
REPORT = demo_data.DAILY


def sha(data: bytes | Path) -> str:
    if isinstance(data, Path):
        data = data.read_bytes()
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def pinned(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)


def put(info: ServerInfo, name: str | bytes, data: bytes, mtime: float | None = None) -> Path:
    """A file in the served folder under exactly these name bytes."""
    raw = name if isinstance(name, bytes) else name.encode("utf-8")
    path = os.path.join(os.fsencode(info.root), raw)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return Path(os.fsdecode(path))


def good_reports(info: ServerInfo, tmp_path: Path, days: int = 3) -> dict[str, bytes]:
    """``days`` real daily reports on the server: {name: bytes}."""
    out = {}
    (tmp_path / "src").mkdir(exist_ok=True)
    for n in range(days):
        day = date(2026, 6, 8 + n)
        name = f"{REPORT}_{day:%Y%m%d}_070012.xlsx"
        src = write_report(tmp_path / "src" / name, n_rows=5, day=day - timedelta(days=3), seed=n)
        data = src.read_bytes()
        put(info, name, data, mtime=datetime(2026, 6, 8 + n, 12, 0, 12, tzinfo=UTC).timestamp())
        out[name] = data
    return out


def profile_for(info: ServerInfo, tmp_path: Path, **changes):
    profile = demo_data.demo_config(
        host=info.host, port=info.port, username=info.username, key=info.key,
        known_hosts=info.known_hosts, local_dir=tmp_path / "local", ledger=tmp_path / "ledger.sqlite3",
    )
    return replace(profile, remote_dir=info.remote_dir, ssh_config=info.ssh_config, **changes)


async def sync(profile, **kw):
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        async with SyncService(profile, led) as service:
            result = await service.sync(**kw)
        assert led.integrity_ok()
    return result


def run_cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW, **(env or {})}
    return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)


async def arun_cli(*args: str) -> subprocess.CompletedProcess:
    """``run_cli`` from an async test: the embedded server shares this event loop."""
    import asyncio

    return await asyncio.to_thread(run_cli, *args)


def write_config(profile, path: Path) -> Path:
    path.write_text(profile_toml(profile))
    return path


def assert_all_held(profile, good: dict[str, bytes]) -> None:
    local = Path(profile.local_dir)
    for name, data in good.items():
        assert sha(local / name) == sha(data), name


# ------------------------------------------------------------------ names as bytes


async def test_a_name_that_is_not_utf8_is_refused_escaped_and_the_rest_syncs(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path)
    put(sftp_server, b"Caf\xe9_20260610_070000.xlsx", good[next(iter(good))])
    put(sftp_server, b"\xff\xfe.xlsx", b"x")
    profile = profile_for(sftp_server, tmp_path)
    result = await sync(profile)
    assert result.error is None and result.failed == []
    assert sorted(d["name"] for d in result.downloaded) == sorted(good)
    refused = {r["name"]: r["reason"] for r in result.refused}
    assert set(refused) == {"Caf\\xe9_20260610_070000.xlsx", "\\xff\\xfe.xlsx"}
    assert "not valid UTF-8" in refused["Caf\\xe9_20260610_070000.xlsx"]
    assert result.status == st.Exit.WARNING
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")  # no surrogate anywhere
    assert_all_held(profile, good)
    assert sorted(os.listdir(profile.local_dir)) == sorted([*good, ".report-keeper"])
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        assert sorted(r.name for r in led.refused()) == sorted(refused)
        assert {d.name for d in led.deliveries()} == set(good)
        assert led.integrity_ok()
    # Every later run is the same, not a traceback.
    again = await sync(profile)
    assert again.downloaded == [] and len(again.refused) == 2 and again.status == st.Exit.WARNING


@pytest.mark.sshd
def test_sync_and_check_cli_report_a_latin1_name_escaped(sshd, tmp_path):
    import tempfile

    sub = Path(tempfile.mkdtemp(prefix="latin1-", dir=sshd.root))
    os.chmod(sub, 0o755)
    info = replace(sshd, root=sub, remote_dir=sub.name)
    good = good_reports(info, tmp_path)
    put(info, b"Caf\xe9.xlsx", b"latin-1 uploader")
    config = write_config(profile_for(info, tmp_path), tmp_path / "config.toml")
    done = run_cli("sync", "--config", str(config), "--profile", "demo", "--json")
    assert "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    assert done.returncode == 1, done.stderr
    assert doc["refused"] == [{"name": "Caf\\xe9.xlsx", "reason": doc["refused"][0]["reason"]}]
    assert sorted(d["name"] for d in doc["downloaded"]) == sorted(good)
    human = run_cli("sync", "--config", str(config), "--profile", "demo")
    assert "Caf\\xe9.xlsx" in human.stdout and human.returncode == 1
    check = run_cli("check", "--config", str(config), "--profile", "demo", "--json")
    assert "Traceback" not in check.stderr
    cdoc = json.loads(check.stdout)
    assert [r["name"] for r in cdoc["refused"]] == ["Caf\\xe9.xlsx"]
    assert cdoc["connection"]["ok"] is True
    sub_files = sorted(os.listdir(os.fsencode(sub)))
    assert b"Caf\xe9.xlsx" in sub_files  # nothing on the server was touched


async def test_control_characters_and_bidi_overrides_are_refused_escaped(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path)
    hostile = {
        "bell\x07_20260610_070000.xlsx": "bell\\u0007_20260610_070000.xlsx",
        "esc\x1b[31mred_20260610_070000.xlsx": "esc\\u001b[31mred_20260610_070000.xlsx",
        "\u202eslx.kcatta_20260610_070000.xlsx": "\\u202eslx.kcatta_20260610_070000.xlsx",
        "tab\there.xlsx": "tab\\u0009here.xlsx",
        "new\nline.xlsx": "new\\u000aline.xlsx",
        "[bold red]markup[reset].xlsx": None,  # a legal name: kept verbatim, never rendered as markup
    }
    for name in hostile:
        put(sftp_server, name, b"hostile")
    profile = profile_for(sftp_server, tmp_path)
    result = await sync(profile)
    refused = {r["name"] for r in result.refused}
    assert refused == {v for v in hostile.values() if v}
    assert "[bold red]markup[reset].xlsx" in [d["name"] for d in result.downloaded]
    assert_all_held(profile, good)
    local = set(os.listdir(profile.local_dir))
    assert local == set(good) | {"[bold red]markup[reset].xlsx", ".report-keeper"}
    import io

    from tui.commands.sync import _summary

    out = io.StringIO()
    _summary(result, profile, out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text


# ------------------------------------------------------------------ reserved names


async def test_a_server_file_named_like_a_part_file_cannot_corrupt_another_report(sftp_server, tmp_path):
    """The old part-file scheme ``.NAME.SIZE-MTIME.part``, as a server file of its own."""
    good = good_reports(sftp_server, tmp_path)
    victim = sorted(good)[-1]
    vpath = sftp_server.root / victim
    st_ = vpath.stat()
    impostor = f".{victim}.{st_.st_size}-{int(st_.st_mtime)}.part"
    # Its content is the beginning of another file: as a "resumed" prefix it would corrupt the victim.
    put(sftp_server, impostor, os.urandom(st_.st_size // 2), mtime=st_.st_mtime - 86400)
    # Files named like this release's part file of the victim and its record, too.
    victim_remote = next(f for f in await _list(sftp_server) if f.name == victim)
    forged = part_name(victim_remote)
    put(sftp_server, forged, os.urandom(1000))
    put(sftp_server, forged[:-len(".part")] + ".json",
        json.dumps({"name": victim, "size": st_.st_size, "mtime": victim_remote.mtime.isoformat()}).encode())
    profile = profile_for(sftp_server, tmp_path)
    impostors = {impostor, forged, forged[:-len(".part")] + ".json"}
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        async with SyncService(profile, led) as service:
            # None of them is a workbook: listed as not reports, never fetched, never a problem.
            first = await service.download([impostor])
            assert first.downloaded == [] and [f["name"] for f in first.failed] == [impostor]
            second = await service.sync()
            assert second.failed == [] and second.status == st.Exit.OK
            assert victim in [d["name"] for d in second.downloaded]
            assert {o.name for o in second.ignored} == impostors
            # A second run (stale-part cleanup included) leaves everything alone.
            third = await service.sync()
            assert third.downloaded == [] and third.failed == []
        assert led.integrity_ok()
        held = {d.name: d for d in led.deliveries()}
        assert held[victim].sha256 == sha(good[victim])
        assert not impostors & set(held)
    local = Path(profile.local_dir)
    assert_all_held(profile, good)
    assert not impostors & set(os.listdir(local))


async def test_a_working_folder_that_is_a_symlink_is_never_written_through(embedded_sftp, tmp_path):
    good = good_reports(embedded_sftp, tmp_path, days=1)
    profile = profile_for(embedded_sftp, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Path(profile.local_dir).mkdir(mode=0o700)
    (Path(profile.local_dir) / ".report-keeper").symlink_to(elsewhere)
    result = await sync(profile)
    assert [f["name"] for f in result.failed] == sorted(good)
    assert "not report-keeper's private working folder" in result.failed[0]["error"]
    assert list(elsewhere.iterdir()) == [] and result.status == st.Exit.CRITICAL


@pytest.mark.parametrize("name", [".report-keeper", ".Report-Keeper", ".report-keeper-parts",
                                  ".REPORT-KEEPER.xlsx"])
async def test_names_of_the_private_working_folder_are_refused(sftp_server, tmp_path, name):
    good = good_reports(sftp_server, tmp_path, days=2)
    put(sftp_server, name, b"not ours")
    profile = profile_for(sftp_server, tmp_path)
    result = await sync(profile)
    assert [r["name"] for r in result.refused] == [name]
    assert "reserved for report-keeper's own working files" in result.refused[0]["reason"]
    assert result.failed == [] and sorted(d["name"] for d in result.downloaded) == sorted(good)
    work = Path(profile.local_dir) / ".report-keeper"
    assert work.is_dir() and not work.is_symlink() and work.stat().st_mode & 0o777 == 0o700
    assert_all_held(profile, good)


async def test_server_names_like_the_ledger_and_its_sidecars_change_nothing(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=2)
    profile = profile_for(sftp_server, tmp_path)
    await sync(profile)
    ledger_name = Path(profile.ledger_path).name
    garbage = os.urandom(4096)
    for suffix in ("", "-journal", "-wal", "-shm"):
        put(sftp_server, ledger_name + suffix, garbage)
    result = await sync(profile)
    # No workbook names: listed as not reports, never fetched (and the ledger lies outside
    # local_dir anyway).
    sidecars = {ledger_name + s for s in ("", "-journal", "-wal", "-shm")}
    assert result.failed == [] and result.downloaded == [] and result.status == st.Exit.OK
    assert {o.name for o in result.ignored} == sidecars
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        assert led.integrity_ok()
        assert {d.name for d in led.deliveries() if d.downloaded} == set(good)
    assert_all_held(profile, good)
    assert not sidecars & set(os.listdir(profile.local_dir))


def test_a_ledger_inside_local_dir_is_a_configuration_error(tmp_path):
    from tui.core.config import ConfigError, load_config

    config = tmp_path / "config.toml"
    config.write_text(
        "[profile.default]\nhost = 'files.example.org'\nlocal_dir = 'reports'\n"
        "ledger = 'reports/ledger.sqlite3'\n")
    with pytest.raises(ConfigError) as err:
        load_config(config).profile()  # its own error: raised when it is picked
    assert err.value.key == "profile.default.ledger"
    assert "inside local_dir" in err.value.reason
    done = run_cli("sync", "--config", str(config), "--json")
    assert done.returncode == 3 and json.loads(done.stdout)["error_kind"] == "config"
    assert "profile.default.ledger" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("check", "--config", str(config), "--offline", "--json")
    assert done.returncode == 3 and json.loads(done.stdout)["error_kind"] == "config"
    done = run_cli("check", "--config", str(config), "--offline")
    assert done.returncode == 3 and done.stdout == ""


@pytest.mark.parametrize("local_dir", ["{data}", "{data}/../report-keeper", "{ssh}", "{keys}", "{log}"])
def test_local_dir_may_not_be_a_folder_of_the_products_own_files(tmp_path, local_dir, monkeypatch):
    from tui.core.config import ConfigError, default_data_dir, load_config

    keys = tmp_path / "keys"
    keys.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ssh = Path("~/.ssh").expanduser()
    from tui.core.logs import log_dir

    value = local_dir.format(data=default_data_dir(), ssh=ssh, keys=keys, log=log_dir())
    config = tmp_path / "config.toml"
    config.write_text(
        f"[profile.default]\nhost = 'files.example.org'\nlocal_dir = '{value}'\n"
        f"known_hosts = '{keys}/known_hosts'\n")
    with pytest.raises(ConfigError) as err:
        load_config(config).profile()  # its own error: raised when it is picked
    assert err.value.key in ("profile.default.local_dir",)


class CountingSFTP(asyncssh.SFTPServer):
    """The embedded server, counting every folder listing a client asks for."""

    listed: list[bytes] = []

    def scandir(self, path):
        CountingSFTP.listed.append(path)
        return super().scandir(path)


async def test_check_lists_the_server_folder_once(make_embedded_sftp, tmp_path):
    """One ``check`` run reads the folder once: the connection test's look for leftover
    probes uses the listing ``check`` has just taken (a second listing of a folder of 50,000
    entries costs seconds); the leftover is still removed and a recent probe left alone."""
    CountingSFTP.listed = []
    info = await make_embedded_sftp(sftp_factory=CountingSFTP)
    good_reports(info, tmp_path, days=2)
    leftover = f"{PROBE_PREFIX}0123abcd.txt"
    recent = f"{PROBE_PREFIX}89abcdef.txt"
    put(info, leftover, probe_bytes(), mtime=datetime(2026, 6, 1, tzinfo=UTC).timestamp())
    put(info, recent, probe_bytes())
    config = write_config(profile_for(info, tmp_path), tmp_path / "config.toml")
    done = await arun_cli("check", "--config", str(config), "--profile", "demo", "--json")
    doc = json.loads(done.stdout)
    assert doc["connection"]["ok"] is True and doc["connection"]["write_test"] == "ok", doc["connection"]
    assert len(CountingSFTP.listed) == 1, CountingSFTP.listed
    left = sorted(n for n in os.listdir(info.root) if n.startswith(PROBE_PREFIX))
    assert left == [recent]


async def test_connect_and_test_lists_the_server_folder_once(make_embedded_sftp, tmp_path):
    """The setup's connection test reads the folder once: the look for leftover probes uses
    the listing taken right after connecting; the leftover is still removed, a recent probe
    left alone."""
    CountingSFTP.listed = []
    info = await make_embedded_sftp(sftp_factory=CountingSFTP)
    leftover = f"{PROBE_PREFIX}0123abcd.txt"
    recent = f"{PROBE_PREFIX}89abcdef.txt"
    put(info, leftover, probe_bytes(), mtime=datetime(2026, 6, 1, tzinfo=UTC).timestamp())
    put(info, recent, probe_bytes())
    result = await connect_and_test(info.options(), info.remote_dir)
    assert result.ok and result.write_test == "ok", result
    assert len(CountingSFTP.listed) == 1, CountingSFTP.listed
    left = sorted(n for n in os.listdir(info.root) if n.startswith(PROBE_PREFIX))
    assert left == [recent]


# ------------------------------------------------------------------ the connection test's probe


async def test_probe_files_are_never_reports_and_old_leftovers_are_cleaned(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=2)
    old = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    leftover = f"{PROBE_PREFIX}0123abcd.txt"
    recent = f"{PROBE_PREFIX}89abcdef.txt"  # a test running right now in another process
    foreign = f"{PROBE_PREFIX}deadbeef.txt"  # not written by us: never deleted
    put(sftp_server, leftover, probe_bytes(), mtime=old)
    put(sftp_server, recent, probe_bytes())
    put(sftp_server, foreign, b"someone else's file", mtime=old)
    profile = profile_for(sftp_server, tmp_path)
    result = await sync(profile)
    names = {d["name"] for d in result.downloaded} | set(result.skipped)
    assert names == set(good) and result.refused == [] and result.lost == []
    assert not [n for n in os.listdir(profile.local_dir) if "probe" in n]
    async with await connect(sftp_server.options()) as conn:
        test = await probe_connection(conn, sftp_server.remote_dir)
    assert test.ok and test.write_test == "ok"
    left = sorted(n for n in os.listdir(sftp_server.root) if n.startswith(PROBE_PREFIX))
    assert left == sorted([recent, foreign])
    # Once the probes are gone, nothing is "lost" and check shows no phantom report.
    for n in left:
        (sftp_server.root / n).unlink()
    again = await sync(profile)
    assert again.lost == [] and again.status == st.Exit.OK
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        assert not [d for d in led.deliveries() if d.name.startswith(PROBE_PREFIX)]
        from tui.core.health import evaluate

        health = evaluate(profile, led.deliveries())
        assert not [r for r in health.reports if r.name.startswith(".report-keeper")]


# ------------------------------------------------------------------ names fit


async def test_255_byte_names_and_their_changed_copies_fit(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=1)
    data = next(iter(good.values()))
    # 250 bytes with two-byte characters, so shortening must respect character boundaries.
    long_name = "Ü" * 60 + "L" * 109 + "_20260610_070000.xlsx"
    assert len(long_name.encode()) == 250
    full = "F" * 250 + ".xlsx"
    assert len(full.encode()) == 255
    put(sftp_server, long_name, data, mtime=1_781_000_000)
    put(sftp_server, full, b"255 bytes", mtime=1_781_000_000)
    profile = profile_for(sftp_server, tmp_path)
    first = await sync(profile)
    assert first.failed == [] and {long_name, full} <= {d["name"] for d in first.downloaded}
    # Both change on the server: the changed copies' names must still fit.
    put(sftp_server, long_name, b"another version", mtime=1_781_003_600)
    put(sftp_server, full, b"255 bytes, changed", mtime=1_781_003_600)
    second = await sync(profile)
    assert second.failed == [], second.failed
    changed = {d["name"]: Path(d["path"]) for d in second.downloaded}
    assert set(changed) == {long_name, full}
    for name, path in changed.items():
        assert len(path.name.encode()) <= 255
        assert "(changed 2026-06-09T1113Z)" in path.name and path.name.endswith(".xlsx")
        assert path.parent == Path(profile.local_dir) and path.read_bytes() == (
            sftp_server.root / name).read_bytes()
    assert changed[long_name].name != changed[full].name
    assert (Path(profile.local_dir) / full).read_bytes() == b"255 bytes"  # never overwritten


def test_fit_name_shortens_the_base_keeps_stamp_extension_and_uniqueness():
    from tui.core.names import fit_name

    a = "é" * 130 + "a.xlsx"
    b = "é" * 130 + "b.xlsx"
    fa, fb = fit_name(a, " (changed 2026-06-01T0800Z)"), fit_name(b, " (changed 2026-06-01T0800Z)")
    for f in (fa, fb):
        assert len(f.encode()) <= 255 and f.endswith(" (changed 2026-06-01T0800Z).xlsx")
        f.encode("utf-8")  # whole characters only
    assert fa != fb
    assert fit_name("short.xlsx", " (changed X)") == "short (changed X).xlsx"
    assert fit_name("noext", " 2") == "noext 2"


# ------------------------------------------------------------------ the ledger matches the disk


async def test_a_copy_deleted_by_hand_is_fetched_again_or_reported_lost(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=3)
    names = sorted(good)
    profile = profile_for(sftp_server, tmp_path)
    await sync(profile)
    local = Path(profile.local_dir)
    (local / names[0]).unlink()  # deleted by hand; still on the server
    (local / names[1]).unlink()  # deleted by hand, and the server deletes it too
    (sftp_server.root / names[1]).unlink()
    (local / names[2]).write_bytes(b"truncated")  # damaged: wrong size
    result = await sync(profile)
    doc = result.to_json()
    assert sorted(doc["refetched"]) == sorted([names[0], names[2]])
    refetched = {d["name"]: d for d in doc["downloaded"]}
    assert refetched[names[0]]["refetched"] is True
    assert sha(local / names[0]) == sha(good[names[0]])
    assert sha(Path(refetched[names[2]]["path"])) == sha(good[names[2]])
    assert (local / names[2]).read_bytes() == b"truncated"  # never overwritten
    assert doc["lost"] == [names[1]]
    assert result.status == st.Exit.CRITICAL
    assert {m["name"] for m in doc["missing_locally"]} == set(names)
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        states = {d.name: d.extra["local_state"] for d in led.deliveries()}
        assert states[names[0]] == "downloaded" and states[names[2]] == "downloaded"
        assert states[names[1]] == "missing-locally"
        assert [d.name for d in led.lost()] == [names[1]]
    # check, online and offline, names it as lost.
    config = write_config(profile, tmp_path / "config.toml")
    for extra in ([], ["--offline"]):
        done = await arun_cli("check", "--config", str(config), "--profile", "demo", "--json", *extra)
        cdoc = json.loads(done.stdout)
        lost = [p for r in cdoc["reports"] for p in r["problems"] if p["kind"] == "lost"]
        assert [p["file"] for p in lost] == [names[1]], (extra, lost)
        assert lost[0]["severity"] == "critical" and done.returncode == 2
    # Putting the file back ends it.
    (local / names[1]).write_bytes(good[names[1]])
    done = await arun_cli("check", "--config", str(config), "--profile", "demo", "--json", "--offline")
    cdoc = json.loads(done.stdout)
    assert not [p for r in cdoc["reports"] for p in r["problems"] if p["kind"] == "lost"]


async def test_offline_check_notices_a_missing_copy_whose_server_file_is_gone(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=2)
    names = sorted(good)
    profile = profile_for(sftp_server, tmp_path)
    await sync(profile)
    (sftp_server.root / names[0]).unlink()
    await sync(profile)  # the server's deletion is recorded; the copy is still here
    (Path(profile.local_dir) / names[0]).unlink()
    config = write_config(profile, tmp_path / "config.toml")
    done = await arun_cli("check", "--config", str(config), "--profile", "demo", "--json", "--offline")
    cdoc = json.loads(done.stdout)
    lost = [p for r in cdoc["reports"] for p in r["problems"] if p["kind"] == "lost"]
    assert [p["file"] for p in lost] == [names[0]] and done.returncode == 2


async def test_a_copy_downloaded_but_never_verified_is_verified_by_the_next_sync(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=2)
    names = sorted(good)
    profile = profile_for(sftp_server, tmp_path)
    local = Path(profile.local_dir)
    # The state a process killed between download and verification leaves behind.
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        async with SyncService(profile, led) as service:
            await service.list_remote()
        local.mkdir(mode=0o700, exist_ok=True)
        (local / names[0]).write_bytes(good[names[0]])
        listing = {f.name: f for f in (await _list(sftp_server))}
        led.record_download(names[0], size=len(good[names[0]]), sha256=sha(good[names[0]]),
                            local_path=local / names[0], mtime=listing[names[0]].mtime)
        assert next(d for d in led.deliveries() if d.name == names[0]).verification is None
    result = await sync(profile)
    assert [d["name"] for d in result.downloaded] == [names[1]]
    assert sorted(f.name for f in result.files) == names
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        assert {d.name: d.verification for d in led.deliveries()} == {n: "ok" for n in names}


async def _list(info: ServerInfo):
    async with await connect(info.options()) as conn:
        return (await conn.listdir(info.remote_dir)).files


# ------------------------------------------------------------------ a missing remote_dir


async def test_a_missing_remote_dir_is_a_connection_error_not_lost_files(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=2)
    profile = profile_for(sftp_server, tmp_path)
    await sync(profile)
    gone = replace(profile, remote_dir=f"{sftp_server.remote_dir}/no such folder")
    result = await sync(gone)
    assert result.error_kind == "connection" and result.status == st.Exit.CRITICAL
    assert "no such folder" in result.error and "does not exist on the server" in result.error
    assert "lost" not in result.error and result.lost == []
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        assert all(d.on_server for d in led.deliveries()) and len(led.deliveries()) == len(good)
    config = write_config(gone, tmp_path / "config.toml")
    done = await arun_cli("check", "--config", str(config), "--profile", "demo", "--json")
    cdoc = json.loads(done.stdout)
    assert cdoc["connection"]["ok"] is False and "does not exist" in cdoc["connection"]["message"]
    assert done.returncode == 2
    assert not [p for r in cdoc["reports"] for p in r["problems"] if p["kind"] == "lost"]


# ------------------------------------------------------------------ part files of older releases


async def test_old_part_files_resume_only_when_the_ledger_proves_them_ours(sftp_server, tmp_path):
    ours = "Big One_20260610_070000.xlsx"
    stranger = "Big Two_20260610_070000.xlsx"
    data = {ours: os.urandom(600_000), stranger: os.urandom(600_000)}
    for name, body in data.items():
        put(sftp_server, name, body, mtime=1_781_000_000)
    profile = profile_for(sftp_server, tmp_path)
    local = Path(profile.local_dir)
    local.mkdir(mode=0o700)
    files = {f.name: f for f in await _list(sftp_server)}
    legacy = {n: local / f".{n}.{len(data[n])}-1781000000.part" for n in data}
    legacy[ours].write_bytes(data[ours][:200_000])  # an interrupted download of ours
    legacy[stranger].write_bytes(os.urandom(200_000))  # same pattern, not recorded as ours
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        led.record_partial(ours, size=len(data[ours]), mtime=files[ours].mtime,
                           part_path=legacy[ours], bytes_done=200_000)
    result = await sync(profile)
    done = {d["name"]: d for d in result.downloaded}
    assert done[ours]["resumed_from"] == 200_000 and done[stranger]["resumed_from"] == 0
    for name, body in data.items():
        assert sha(local / name) == sha(body)
    assert not legacy[ours].exists()
    assert legacy[stranger].read_bytes() != data[stranger][:200_000]  # left alone, untouched
    assert legacy[stranger].stat().st_size == 200_000


def test_ledgers_that_recorded_a_probe_file_stop_showing_it(tmp_path):
    import sqlite3

    from tui.core.ledger import MIGRATIONS

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "INSERT INTO remote_files (profile, name, report, delivered_at, size, mtime, first_seen,"
        " last_seen, gone_at) VALUES ('demo', '.report-keeper-probe-0a1b2c3d.txt',"
        " '.report-keeper-probe-0a1b2c3d', '2026-06-01T07:00:00.000000+00:00', 150, NULL,"
        " '2026-06-01T07:00:00.000000+00:00', '2026-06-01T07:00:00.000000+00:00',"
        " '2026-06-02T07:00:00.000000+00:00');"
        "INSERT INTO remote_files (profile, name, report, delivered_at, size, mtime, first_seen,"
        " last_seen) VALUES ('demo', 'R_20260601_070000.xlsx', 'R',"
        " '2026-06-01T07:00:00.000000+00:00', 150, NULL, '2026-06-01T07:00:00.000000+00:00',"
        " '2026-06-01T07:00:00.000000+00:00');"
    )
    conn.commit()
    conn.close()
    with Ledger.open(path, profile="demo") as led:
        assert [d.name for d in led.deliveries()] == ["R_20260601_070000.xlsx"]
        assert led.lost() == [] and led.reports() == ["R"]
        assert led.integrity_ok()


# ------------------------------------------------------------------ honest counts


@pytest.mark.sshd
def test_two_syncs_at_once_count_each_file_once(sshd, tmp_path, demo_generated_once):
    """Two real ``report-keeper sync --json`` processes on one local_dir and one ledger."""
    import tempfile

    sub = Path(tempfile.mkdtemp(prefix="twice-", dir=sshd.root))
    os.chmod(sub, 0o755)
    scenario = demo_data.generate(sub, datetime.fromisoformat(NOW))
    info = replace(sshd, root=sub / demo_data.DEMO_REMOTE_DIR,
                   remote_dir=f"{sub.name}/{demo_data.DEMO_REMOTE_DIR}")
    config = write_config(profile_for(info, tmp_path), tmp_path / "config.toml")
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
    cmd = [sys.executable, "-m", "tui", "sync", "--config", str(config), "--profile", "demo", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=ROOT) for _ in range(2)]
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert "Traceback" not in err, err
        assert out, (proc.returncode, err)
        docs.append(json.loads(out))
    every = {f.name for f in scenario.files}
    fetched = [{d["name"] for d in doc["downloaded"]} for doc in docs]
    assert not fetched[0] & fetched[1], "a file was counted as downloaded by both processes"
    assert fetched[0] | fetched[1] == every
    assert sum(len(f) for f in fetched) == len(every)
    for doc, mine in zip(docs, fetched):
        assert doc["failed"] == []
        assert mine | set(doc["skipped"]) == every
        assert not mine & set(doc["skipped"])
    local = tmp_path / "local"
    for f in scenario.files:
        assert sha(local / f.name) == sha(info.root / f.name)
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="demo") as led:
        assert led.integrity_ok()
        assert {d.name for d in led.deliveries() if d.downloaded} == every
        assert all(d.extra["downloads"] == 1 for d in led.deliveries())


# ------------------------------------------------------------------ the Remote screen


async def test_the_remote_screen_shows_refused_names_escaped(embedded_sftp, tmp_path, monkeypatch):
    from tests.test_tui_fixtures import settled, wait_for
    from tui.app import create_app

    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    good = good_reports(embedded_sftp, tmp_path, days=2)
    put(embedded_sftp, b"Caf\xe9 [b]x[i]_20260610_070000.xlsx", b"latin-1")
    profile = profile_for(embedded_sftp, tmp_path)
    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    app = create_app(profile, ledger=ledger)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: settled(app))
        assert app.connection.state == "connected"
        assert {r.name for r in app.snapshot.rows} == set(good)
        await pilot.press("2")
        status = str(app.screen.query_one("#remote-status").render())
        assert "1 unsafe name" in status and "Caf\\xe9 [b]x[i]_20260610_070000.xlsx" in status


# ------------------------------------------------------------------ impossible modification times


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "America/Chicago"])
async def test_a_server_mtime_at_the_end_of_time_is_one_line_not_a_traceback(sftp_server, tmp_path, tz):
    """A server may report any mtime SFTP can carry: the last second of its 32-bit field
    (2106-02-07), or the epoch, in any time zone. The files are still listed and kept, dates
    derived from them never overflow, and ``check`` evaluates the rest of the folder."""
    good = good_reports(sftp_server, tmp_path)
    data = next(iter(good.values()))
    put(sftp_server, f"{REPORT}.xlsx", data, mtime=2**32 - 1)  # no stamp: the mtime dates it
    put(sftp_server, f"{REPORT}_20260610_080000.xlsx", data, mtime=2**32 - 1)
    put(sftp_server, "Other report.xlsx", data, mtime=0)
    profile = profile_for(sftp_server, tmp_path, timezone=tz)
    config = write_config(profile, tmp_path / "c.toml")
    for command in ("sync", "check"):
        out = await arun_cli(command, "--json", "--config", str(config))
        assert "Traceback" not in out.stderr, out.stderr
        assert out.returncode in (0, 1, 2), out.stderr
        document = json.loads(out.stdout)
        assert document["status"] in ("ok", "warning", "critical"), document
    assert_all_held(profile, good)


# ------------------------------------------------------------------ a server's own words


HOSTILE_REASON = "\x1b]0;owned\x07\x1b[2J[bold red]gone[/] " + "x" * 20_000


class _ShoutingSFTP(__import__("asyncssh").SFTPServer):
    """Answers every listing with an error whose text tries to drive the terminal."""

    async def scandir(self, path):
        import asyncssh

        raise asyncssh.SFTPFailure(HOSTILE_REASON)
        yield  # an async generator, like the method it replaces


async def test_a_servers_error_text_cannot_drive_the_terminal_or_flood_the_output(make_embedded_sftp, tmp_path):
    """A server chooses the text of its error replies. ``sync`` and ``check`` show it (so a
    person learns what the server said) but escaped and cut short: no escape sequence reaches
    the terminal, and 20 kB of it do not become 20 kB of output."""
    info = await make_embedded_sftp(sftp_factory=_ShoutingSFTP)
    config = write_config(profile_for(info, tmp_path), tmp_path / "c.toml")
    for args in (("sync",), ("sync", "--json"), ("check",), ("check", "--json")):
        out = await arun_cli(*args, "--config", str(config))
        assert out.returncode == 2, out.stderr
        both = out.stdout + out.stderr
        assert "\x1b" not in both and "\x07" not in both, args
        assert "owned" in both, args  # what the server said is still told, escaped
        assert "x" * 1000 not in both, args
        if "--json" in args:
            json.loads(out.stdout)
