"""``report-keeper check`` through the real command, against a real OpenSSH sshd, online and
``--offline``, on the known scenario; and the connection test against real servers."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC
from pathlib import Path

import asyncssh
import pytest

from tests import scenario as sc
from tui.cli import main
from tui.core.ledger import Ledger
from tui.sftp.client import connect
from tui.sftp.conntest import PROBE_PREFIX, connect_and_test, probe_connection

# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def scenario_files(tmp_path_factory):
    """Every delivery of the scenario as a real workbook (written once per module)."""
    return sc.write_files(tmp_path_factory.mktemp("alma-output"))


def _expected():
    return [e.to_json() | {"report": e.report} for e in sc.EXPECTED_PROBLEMS]


def _got(doc):
    keys = ("severity", "kind", "day", "file", "rescue_by", "delete_on")
    return [
        {k: p[k] for k in keys} | {"report": r["name"]}
        for r in doc["reports"] for p in r["problems"]
    ]


def _sorted(items):
    return sorted(items, key=lambda d: json.dumps(d, sort_keys=True))


class Env:
    def __init__(self, tmp: Path, server_dir: Path, remote_dir: str, server, files):
        self.tmp = tmp
        self.server_dir = server_dir
        self.local_dir = tmp / "local"
        self.ledger_path = tmp / "ledger.sqlite3"
        self.config = tmp / "config.toml"
        self.known_hosts = tmp / "known_hosts"
        if server is not None:
            shutil.copy(server.known_hosts, self.known_hosts)
        else:
            self.known_hosts.write_text("")
        (tmp / "ssh_config").write_text("")
        self.config.write_text(sc.config_toml(
            host="127.0.0.1", port=server.port if server else 9, username=server.username if server else "nobody",
            key=str(server.key) if server else None, known_hosts=str(self.known_hosts),
            remote_dir=remote_dir, local_dir=str(self.local_dir), ledger=str(self.ledger_path),
            ssh_config=str(tmp / "ssh_config"),
        ))
        self.files = files

    def seed(self, until=sc.NOW):
        with Ledger.open(self.ledger_path) as ledger:
            sc.seed_ledger(ledger, self.files, self.local_dir, until=until)

    def run(self, capsys, *args):
        code = main(["check", "--config", str(self.config), *args])
        out = capsys.readouterr()
        return code, out.out, out.err


@pytest.fixture
def env(sshd, tmp_path, scenario_files, monkeypatch):
    """The scenario on the real sshd: server folder filled as of NOW, ledger up to 9 Dec 23:00."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    server_dir = Path(tempfile.mkdtemp(prefix="check-", dir=sshd.root))
    sc.fill_server_dir(server_dir, scenario_files)
    e = Env(tmp_path, server_dir, server_dir.name, sshd, scenario_files)
    yield e
    shutil.rmtree(server_dir, ignore_errors=True)


# ------------------------------------------------------------------------------ check


def test_check_online_then_offline_names_exactly_the_expected_problems(env, capsys):
    # The ledger knows the history up to last night's sync; today's listing comes from the server.
    env.seed(until=sc.local(sc.D(2026, 12, 9), 23, 0))
    before = sorted(p.name for p in env.local_dir.iterdir())
    with Ledger.open(env.ledger_path) as ledger:
        assert sc.name_of(sc.WEEKLY, sc.TODAY) not in {d.name for d in ledger.deliveries()}

    code, out, err = env.run(capsys, "--json")
    doc = json.loads(out)  # exactly one JSON document on stdout
    assert code == sc.EXPECTED_EXIT == 2 and doc["status"] == "critical"
    assert _sorted(_got(doc)) == _sorted(_expected())
    assert doc["connection"]["ok"] is True and doc["connection"]["write_test"] == "ok"
    assert doc["connection"]["steps"] == {"upload": "ok", "download": "ok", "delete": "ok"}
    runs = {r["name"]: {x["day"]: x["status"] for x in r["runs"]} for r in doc["reports"]}
    for name in (sc.DAILY, sc.WEEKLY):
        assert runs[name] == {d.isoformat(): s for d, s in sc.expected_run_statuses(name).items()}
    weekly = next(r for r in doc["reports"] if r["name"] == sc.WEEKLY)
    assert weekly["inferred"] is True and weekly["schedule"] == "weekly:MON,THU"

    # The listing was recorded (today's weekly file is known now), nothing was downloaded,
    # and the probe file was removed from the server.
    with Ledger.open(env.ledger_path) as ledger:
        known = {d.name: d for d in ledger.deliveries()}
    assert sc.name_of(sc.WEEKLY, sc.TODAY) in known and not known[sc.name_of(sc.WEEKLY, sc.TODAY)].downloaded
    oct11 = sc.name_of(sc.DAILY, sc.D(2026, 10, 11))
    assert not known[oct11].on_server  # deleted by the server's retention since last night
    assert sorted(p.name for p in env.local_dir.iterdir()) == before
    assert not [p for p in env.server_dir.iterdir() if p.name.startswith(PROBE_PREFIX)]

    # --offline: the ledger alone gives the same verdict.
    code, out, err = env.run(capsys, "--offline", "--json")
    doc = json.loads(out)
    assert code == 2
    assert _sorted(_got(doc)) == _sorted(_expected())
    assert doc["connection"]["write_test"] == "skipped" and doc["connection"]["ok"] is None


def test_check_offline_needs_no_server_and_prints_one_screenful(tmp_path, scenario_files, capsys, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    monkeypatch.setenv("COLUMNS", "100")
    e = Env(tmp_path, tmp_path / "unused", "reports", None, scenario_files)
    e.seed()
    code, out, err = e.run(capsys, "--offline")
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith("CRITICAL: 4 critical, 7 warnings · 2 reports · Thu 10 Dec 08:00")
    assert lines[1].startswith("Connection: not tested (--offline)")
    assert "Loans Per Patron From 3 Days Ago · every day at 07:00 · last: Wed 9 Dec 07:05 (0 rows)" in lines[2]
    assert "every Mon and Thu at 06:00 (inferred)" in lines[3]
    assert lines[5].startswith(" CRIT missing Mon 7 Dec: No delivery of 'Loans Per Patron From 3 Days Ago'")
    assert lines[6] == ("      -> Re-run 'Loans Per Patron From 3 Days Ago' in Alma Analytics for loans "
                        "of Fri 4 Dec before Fri 11 Dec")
    assert sum(max(1, -(-len(line) // 100)) for line in lines) <= 24
    assert lines[-1].startswith(" ... and ") and "check --json" in lines[-1]
    assert "Traceback" not in out + err


def test_connection_failure_is_critical_and_keeps_the_ledger_verdict(tmp_path, scenario_files, capsys, monkeypatch):
    from tests.fixtures_sshd import free_port

    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    e = Env(tmp_path, tmp_path / "unused", "reports", None, scenario_files)
    e.config.write_text(e.config.read_text().replace("port = 9", f"port = {free_port()}"))
    e.seed()
    code, out, err = e.run(capsys, "--json")
    doc = json.loads(out)
    assert code == 2
    assert doc["connection"]["ok"] is False and doc["connection"]["write_test"] == "skipped"
    assert "refused the connection" in doc["connection"]["message"]
    kinds = [p["kind"] for r in doc["reports"] for p in r["problems"]]
    assert "lost" in kinds and "missing" in kinds  # the ledger's findings are still reported
    code, out, _ = e.run(capsys)
    assert "Connection: FAILED" in out and " CRIT connection: Connection failed" in out


def test_unknown_host_key_is_refused_unless_accepted(env, capsys):
    env.seed()
    env.known_hosts.write_text("")
    code, out, err = env.run(capsys, "--json")
    doc = json.loads(out)
    assert code == 2 and doc["connection"]["ok"] is False
    assert "--accept-new-host-key" in doc["connection"]["message"]
    code, out, err = env.run(capsys, "--json", "--accept-new-host-key")
    assert json.loads(out)["connection"]["write_test"] == "ok" and code == 2
    assert "ssh-ed25519" in env.known_hosts.read_text()


def test_usage_and_configuration_errors_exit_3(tmp_path, capsys, monkeypatch):
    assert main(["check", "--config", str(tmp_path / "nope.toml")]) == 3
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(sc.config_toml().replace('schedule = "daily"', 'schedule = "hourly"'))
    assert main(["check", "--config", str(bad), "--offline"]) == 3
    err = capsys.readouterr().err
    assert "schedule" in err and "'hourly' is not a schedule" in err and "Traceback" not in err
    good = tmp_path / "good.toml"
    good.write_text(sc.config_toml(ledger=str(tmp_path / "l.sqlite3")))
    monkeypatch.setenv("REPORT_KEEPER_NOW", "yesterday")
    assert main(["check", "--config", str(good), "--offline"]) == 3
    assert "REPORT_KEEPER_NOW" in capsys.readouterr().err


# ------------------------------------------------------------------------------ connection test


async def test_probe_passes_on_both_servers(sftp_server):
    conn = await connect(sftp_server.options(), host_key_policy="reject")
    try:
        result = await probe_connection(conn, sftp_server.remote_dir)
    finally:
        await conn.close()
    assert (result.ok, result.write_test) == (True, "ok")
    assert (result.upload, result.download, result.delete) == ("ok", "ok", "ok")
    assert list(sftp_server.root.iterdir()) == []  # the probe is gone


class ReadOnlySFTP(asyncssh.SFTPServer):
    def open(self, path, pflags, attrs):
        if pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_APPEND):
            raise asyncssh.SFTPPermissionDenied("read-only account")
        return super().open(path, pflags, attrs)

    def open56(self, path, desired_access, flags, attrs):
        if desired_access & (asyncssh.ACE4_WRITE_DATA | asyncssh.ACE4_APPEND_DATA):
            raise asyncssh.SFTPPermissionDenied("read-only account")
        return super().open56(path, desired_access, flags, attrs)


class NoDeleteSFTP(asyncssh.SFTPServer):
    def remove(self, path):
        raise asyncssh.SFTPPermissionDenied("no delete")


class GarblingSFTP(asyncssh.SFTPServer):
    def read(self, file_obj, offset, size):
        data = super().read(file_obj, offset, size)
        return data[::-1]


async def test_read_only_account_is_a_warning_not_a_failure(make_embedded_sftp):
    info = await make_embedded_sftp(sftp_factory=ReadOnlySFTP)
    result = await connect_and_test(info.options(), info.remote_dir)
    assert (result.ok, result.write_test) == (True, "read-only")
    assert (result.upload, result.download, result.delete) == ("denied", "skipped", "skipped")
    assert "read-only" in result.message
    assert list(info.root.iterdir()) == []


async def test_delete_refused_names_the_probe_left_behind(make_embedded_sftp):
    info = await make_embedded_sftp(sftp_factory=NoDeleteSFTP)
    result = await connect_and_test(info.options(), info.remote_dir)
    assert (result.ok, result.write_test) == (False, "failed")
    assert (result.upload, result.download, result.delete) == ("ok", "ok", "denied")
    left = [p.name for p in info.root.iterdir()]
    assert len(left) == 1 and left[0].startswith(PROBE_PREFIX) and left[0] in result.message


async def test_download_that_differs_fails_the_test(make_embedded_sftp):
    info = await make_embedded_sftp(sftp_factory=GarblingSFTP)
    result = await connect_and_test(info.options(), info.remote_dir)
    assert (result.ok, result.write_test, result.download, result.delete) == (False, "failed", "mismatch", "ok")
    assert "differs" in result.message
    assert list(info.root.iterdir()) == []


async def test_unreachable_server_is_reported_without_a_traceback(tmp_path):
    from tests.fixtures_sshd import free_port
    from tui.sftp.client import ConnectOptions

    (tmp_path / "cfg").write_text("")
    opts = ConnectOptions(host="127.0.0.1", port=free_port(), username="x", known_hosts=tmp_path / "kh",
                          ssh_config=tmp_path / "cfg", use_agent=False, connect_timeout=5)
    result = await connect_and_test(opts, ".")
    assert (result.ok, result.write_test) == (False, "skipped")
    assert "refused the connection" in result.message
    assert result.to_json()["steps"] == {"upload": "skipped", "download": "skipped", "delete": "skipped"}


def test_all_well_exits_0_with_a_short_human_report(tmp_path, capsys, monkeypatch):
    """A week of on-time, verified daily deliveries: exit 0 and "all well"."""
    import hashlib
    from datetime import timedelta

    from tests import xlsx_factory as xf
    from tui.core.model import RemoteFile
    from tui.core.validate import validate_file

    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    e = Env(tmp_path, tmp_path / "unused", "reports", None, None)
    first, daily, _weekly = e.config.read_text().split("[[profile.default.report]]")
    e.config.write_text(first + "[[profile.default.report]]" + daily)  # the daily report only
    profile_report = sc.profile().report_for(sc.DAILY)
    e.local_dir.mkdir()
    listing = []
    with Ledger.open(e.ledger_path) as ledger:
        for i in range(7):
            day = sc.TODAY - timedelta(days=6 - i)
            at = sc.local(day, 7, 5)
            path = xf.write_report(e.local_dir / sc.file_name(sc.DAILY, at), n_rows=3, seed=i,
                                   day=day - timedelta(days=3))  # the loans of the covered day
            data = path.read_bytes()
            f = RemoteFile(path.name, len(data), at.astimezone(UTC))
            listing.append(f)
            ledger.record_listing(None, lambda r: (sc.DAILY, r.mtime), listing, when=at + timedelta(minutes=30))
            sha = hashlib.sha256(data).hexdigest()
            ledger.record_download(path.name, size=len(data), sha256=sha, local_path=str(path),
                                   mtime=f.mtime, when=at + timedelta(minutes=31))
            ledger.record_verification(validate_file(path, profile_report, at), sha256=sha)
    code, out, err = e.run(capsys, "--offline")
    assert code == 0, out
    assert out.splitlines()[0].startswith("OK: all well · 1 report · Thu 10 Dec 08:00")
    assert "last: Thu 10 Dec 07:05 (3 rows) · on time 7 in a row" in out
    assert out.rstrip().endswith("No problems: every expected report arrived on time and verified.")


def test_a_ledger_that_refuses_a_write_still_gets_one_json_document(tmp_path, scenario_files, capsys,
                                                                    monkeypatch):
    """check writes to the ledger too (a held copy gone from the disk is marked missing); a
    ledger that refuses the write (here a trigger, as a full disk or a damaged file would)
    still ends in one document under --json, naming the ledger, exit 2."""
    import sqlite3

    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    e = Env(tmp_path, tmp_path / "unused", "reports", None, scenario_files)
    e.seed()
    held = sorted(p for p in e.local_dir.iterdir() if p.is_file())
    held[0].unlink()  # a copy deleted by hand: check marks it missing in the ledger
    with sqlite3.connect(e.ledger_path) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON downloads "
                     "BEGIN SELECT RAISE(ABORT, 'the disk refused the write'); END")
    code, out, err = e.run(capsys, "--offline", "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["status"] == "critical" and doc["error_kind"] == "ledger"
    assert str(e.ledger_path) in doc["error"] and "the disk refused the write" in doc["error"]
    assert doc["reports"] == [] and doc["connection"]["write_test"] == "skipped"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # The same document as the profile's entry under --all-profiles, the error on stderr.
    code, out, err = e.run(capsys, "--offline", "--json", "--all-profiles")
    assert code == 2
    every = json.loads(out)
    assert every["status"] == "critical" and every["profiles"] == {"default": doc}
    assert err.splitlines() == ["== default", f"report-keeper: {doc['error']}"]
