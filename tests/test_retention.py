"""Local retention: fifty days of daily reports on the real OpenSSH sshd with
``local_retention_days = 30``, synced, exported and purged through the real commands.

The history (run day i = 1 Mar 2026 + i, delivered 07:05 Chicago, covering i - 3 days):

- the first sync at day 34 downloads days 0..34; the server's copy of day 5 then changes and
  the next sync downloads it beside the first (``NAME (changed ...).xlsx``);
- two exports: covered days of runs 0..8 and 10..24 (run 9 is never exported);
- the last sync at day 49 downloads days 35..49 and purges: copies delivered more than 30 days
  before 08:00 on day 49 are runs 0..19; of those, exactly the exported contents go. Day 9
  (never exported) and day 5's first copy (an export chose the changed copy instead) stay and
  are reported as waiting for export.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests import xlsx_factory as xf
from tui.cli import main
from tui.core.export_cache import cache_dir
from tui.core.ledger import Ledger
from tui.core.model import RemoteFile
from tui.sftp import parts as transfer

REPORT = "Loans Per Patron From 3 Days Ago"
TZ = ZoneInfo("America/Chicago")
FIRST = date(2026, 3, 1)
DAYS = 50
RETAIN = 30
CHANGED = 5  # the server's copy of this run changes after its download
NEVER = 9  # never exported
PART = 3  # a part file is left for this delivery (a broken download of a later copy)


def delivered(i: int) -> datetime:
    return datetime.combine(FIRST + timedelta(days=i), time(7, 5, 11), tzinfo=TZ)


def name(i: int) -> str:
    return f"{REPORT}_{delivered(i):%Y%m%d_%H%M%S}.xlsx"


def covered(i: int) -> date:
    return FIRST + timedelta(days=i - 3)


def morning(i: int, hour: int = 8) -> str:
    return datetime.combine(FIRST + timedelta(days=i), time(hour, 0), tzinfo=TZ).isoformat()


CONFIG = """\
[profile.default]
host = "127.0.0.1"
port = {port}
username = "{user}"
key = "{key}"
known_hosts = "{known_hosts}"
ssh_config = "{ssh_config}"
remote_dir = "{remote}"
local_dir = "{local}"
ledger = "{ledger}"
timezone = "America/Chicago"
local_retention_days = {retain}

[[profile.default.report]]
name = "{report}"
schedule = "daily"
at = "07:00"
grace = "2h"
lag_days = 3
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Fifty real workbooks (both writers), and the changed copy of one of them."""
    folder = tmp_path_factory.mktemp("alma-output")
    for i in range(DAYS):
        rows = xf.loan_rows(4 + i % 4, day=covered(i), seed=i)
        xf.write_report(folder / name(i), rows, engine=xf.ENGINES[i % 2])
    xf.write_report(folder / ("changed-" + name(CHANGED)), xf.loan_rows(9, day=covered(CHANGED), seed=500))
    return folder


class History:
    def __init__(self, tmp: Path, server, archive: Path) -> None:
        self.tmp = tmp
        self.archive = archive
        self.server_dir = Path(tempfile.mkdtemp(prefix="retention-", dir=server.root))
        self.local = tmp / "local"
        self.ledger_path = tmp / "data" / "ledger.sqlite3"
        self.config = tmp / "config.toml"
        (tmp / "ssh_config").write_text("")
        self.config.write_text(CONFIG.format(
            port=server.port, user=server.username, key=server.key, known_hosts=server.known_hosts,
            ssh_config=tmp / "ssh_config", remote=self.server_dir.name, local=self.local,
            ledger=self.ledger_path, retain=RETAIN, report=REPORT))

    def deliver(self, days: range) -> None:
        for i in days:
            target = self.server_dir / name(i)
            shutil.copyfile(self.archive / name(i), target)
            stamp = delivered(i).timestamp()
            os.utime(target, (stamp, stamp))

    def change(self, i: int, when: datetime) -> None:
        target = self.server_dir / name(i)
        shutil.copyfile(self.archive / ("changed-" + name(i)), target)
        os.utime(target, (when.timestamp(), when.timestamp()))

    def run(self, capsys, *args: str) -> tuple[int, dict]:
        code = main([*args, "--config", str(self.config), "--json"])
        out = capsys.readouterr()
        assert "Traceback" not in out.err, out.err
        return code, json.loads(out.out)

    def local_files(self) -> set[str]:
        return {p.name for p in self.local.iterdir() if not p.name.startswith(".")}

    def ledger(self) -> Ledger:
        return Ledger.open(self.ledger_path)


@pytest.mark.sshd
def test_fifty_days_on_sshd_purge_exactly_the_old_exported_copies(sshd, tmp_path, archive, capsys, monkeypatch):
    h = History(tmp_path, sshd, archive)
    try:
        _fifty_days(h, capsys, monkeypatch)
    finally:
        shutil.rmtree(h.server_dir, ignore_errors=True)


async def _download_by_name(h: History, wanted: str):
    from tui.core.config import load_config
    from tui.sftp.sync import SyncService

    profile = load_config(h.config).profile()
    with Ledger.open(profile.ledger_path) as ledger:
        async with SyncService(profile, ledger) as service:
            return await service.download([wanted])


def _fifty_days(h: History, capsys, monkeypatch) -> None:
    # -- day 34: the first sync downloads 35 days; no export yet, so nothing may go.
    monkeypatch.setenv("REPORT_KEEPER_NOW", morning(34))
    h.deliver(range(0, 35))
    code, doc = h.run(capsys, "sync")
    assert code == 0 and doc["status"] == "ok", doc
    assert len(doc["downloaded"]) == 35 and doc["purged"] == []
    old = [name(i) for i in range(0, 5)]  # more than 30 days before 08:00 on day 34
    assert [w["name"] for w in doc["waiting_for_export"]] == old
    assert {w["reason"] for w in doc["waiting_for_export"]} == {"not-exported"}
    assert h.local_files() == {name(i) for i in range(35)}
    # check says the policy waits for an export: a warning, one per report; nothing is lost.
    code, doc = h.run(capsys, "check", "--offline")
    problems = doc["reports"][0]["problems"]
    assert code == 1 and [p["kind"] for p in problems] == ["waiting-for-export"]
    assert problems[0]["severity"] == "warning" and "5 local copies" in problems[0]["message"]

    # -- the server's copy of day 5 changes; the next sync keeps both copies.
    h.change(CHANGED, delivered(34) + timedelta(hours=2))
    monkeypatch.setenv("REPORT_KEEPER_NOW", morning(34, 11))
    code, doc = h.run(capsys, "sync")
    assert [d["name"] for d in doc["downloaded"]] == [name(CHANGED)] and doc["downloaded"][0]["changed"]
    changed_copy = Path(doc["downloaded"][0]["path"]).name
    assert changed_copy.startswith(name(CHANGED)[:-5] + " (changed ")

    # -- two exports: runs 0..8 and 10..24 (run 9 is never exported).
    a, b = h.tmp / "a.parquet", h.tmp / "b.parquet"
    code, doc = h.run(capsys, "export", "--out", str(a), "--until", covered(8).isoformat())
    assert doc["days"]["included"][-1] == covered(8).isoformat() and doc["days"]["excluded"] == []
    assert [(s["file"], s["by"]) for s in doc["superseded"]] == [(name(CHANGED), changed_copy)]
    code, doc = h.run(capsys, "export", "--out", str(b), "--since", covered(10).isoformat(),
                      "--until", covered(24).isoformat())
    assert len(doc["days"]["included"]) == 15
    with h.ledger() as ledger:
        shas = {Path(dl.local_path).name: dl.sha256 for dl in ledger.downloads()}
    cache = cache_dir(h.ledger_path)  # the last export keeps the tables of its own range
    cached = {p.name.split("-", 1)[0] for p in cache.iterdir() if p.suffix == ".parquet"}
    assert cached == {shas[name(i)] for i in range(10, 25)}

    # A part file of day 3's delivery (a broken download of a later server copy).
    remote = RemoteFile(name(PART), 1234, delivered(PART).astimezone(UTC) + timedelta(days=1))
    fd, _ = transfer.open_part(h.local, remote)
    os.write(fd, b"\0" * 100)
    os.close(fd)
    part = transfer.part_path(h.local, remote)
    with h.ledger() as ledger:
        ledger.record_partial(name(PART), size=1234, mtime=remote.mtime, part_path=part, bytes_done=100)

    # -- day 49: the last sync downloads days 35..49, then purges.
    monkeypatch.setenv("REPORT_KEEPER_NOW", morning(49))
    h.deliver(range(35, DAYS))
    code, doc = h.run(capsys, "sync")
    assert code == 0, doc  # waiting copies are check's warning, not sync's
    assert len(doc["downloaded"]) == 15 and doc["failed"] == [] and doc["lost"] == []
    exported_old = [i for i in range(0, 20) if i != NEVER]  # 0..19 are past 30 days
    purged_files = {p["file"] for p in doc["purged"]}
    assert purged_files == {name(i) for i in exported_old if i != CHANGED} | {changed_copy}
    assert all(not p["interrupted"] for p in doc["purged"])
    assert [(w["file"], w["reason"]) for w in doc["waiting_for_export"]] == [
        (name(CHANGED), "superseded"), (name(NEVER), "not-exported")]
    assert doc["purge_errors"] == []
    assert doc["retention_policy"] == {REPORT: {"local_retention_days": 30, "keep_until_exported": True}}
    kept = {name(CHANGED), name(NEVER)} | {name(i) for i in range(20, DAYS)}
    assert h.local_files() == kept
    # The part file went with its delivery; the export cache lost exactly the purged contents.
    assert not part.exists() and not part.with_suffix(".json").exists()
    cached_now = {p.name.split("-", 1)[0] for p in cache.iterdir() if p.suffix == ".parquet"}
    assert cached_now == cached - {shas[f] for f in purged_files}
    assert {shas[name(i)] for i in range(20, 25)} <= cached_now
    with h.ledger() as ledger:
        assert name(PART) not in ledger.partials()
        deliveries = {d.name: d for d in ledger.deliveries()}
        # The record stays: name, size, sha256, rows, verification, fingerprint, coverage.
        gone = deliveries[name(0)]
        assert gone.extra["local_state"] == "purged" and gone.extra["purged"]
        assert gone.sha256 == shas[name(0)] and gone.verification == "ok" and gone.rows == 4
        assert gone.fingerprint and gone.coverage is not None and gone.coverage.days[0][0] == covered(0)
        assert not gone.extra["lost"] and not gone.extra["missing_locally"]

    # -- check, online against the server, then offline: nothing lost or missing; every run is
    # on time and verified; the purged ones are marked.
    for args in ((), ("--offline",)):
        code, doc = h.run(capsys, "check", *args)
        report = doc["reports"][0]
        kinds = [p["kind"] for p in report["problems"]]
        assert kinds == ["waiting-for-export"], report["problems"]
        assert code == 1 and "1 local copy" in report["problems"][0]["message"]
        runs = {r["day"]: r for r in report["runs"]}
        for i in range(DAYS):
            run = runs[(FIRST + timedelta(days=i)).isoformat()]
            assert run["status"] == "on-time" and run["verification"] == "ok", run
            assert run["purged"] == ([name(i)] if i in exported_old else []), run
        if not args:
            assert doc["connection"]["ok"] is True

    # -- a second sync downloads nothing: purged files are never fetched again.
    before = {p.name: p.stat().st_mtime_ns for p in h.local.iterdir()}
    code, doc = h.run(capsys, "sync")
    assert code == 0 and doc["downloaded"] == [] and doc["failed"] == [] and doc["purged"] == []
    assert {name(i) for i in exported_old} <= set(doc["skipped"])
    assert {p.name: p.stat().st_mtime_ns for p in h.local.iterdir()} == before
    # Asked for by name (a script, a stale selection in the app): skipped, not fetched.
    result = asyncio.run(_download_by_name(h, name(0)))
    assert result.skipped == [name(0)] and result.downloaded == [] and result.failed == []
    assert not (h.local / name(0)).exists()

    # -- an export of everything: purged days are excluded as "purged", naming the export that
    # holds their rows (a warning, not a bad file); day 5's older copy never stands in.
    c = h.tmp / "c.parquet"
    code, doc = h.run(capsys, "export", "--out", str(c))
    assert code == 1 and doc["status"] == "warning", doc
    excluded = {e["day"]: e for e in doc["days"]["excluded"]}
    assert set(excluded) == {covered(i).isoformat() for i in exported_old}
    assert {e["status"] for e in excluded.values()} == {"purged"}
    assert excluded[covered(0).isoformat()]["exported_in"] == str(a)
    assert excluded[covered(12).isoformat()]["exported_in"] == str(b)
    assert excluded[covered(CHANGED).isoformat()]["file"] == changed_copy
    assert covered(NEVER).isoformat() in doc["days"]["included"]
    assert {"file": name(CHANGED), "by": changed_copy} in [
        {k: s[k] for k in ("file", "by")} for s in doc["superseded"]]

    # -- purge --dry-run: day 9 is exported now and would go; nothing is deleted or recorded.
    with h.ledger() as ledger:
        states_before = ledger.local_states()
    code, doc = h.run(capsys, "purge", "--dry-run")
    assert doc["dry_run"] is True and [p["file"] for p in doc["purged"]] == [name(NEVER)]
    assert [w["file"] for w in doc["waiting_for_export"]] == [name(CHANGED)]
    assert code == 1  # day 5's older copy still waits
    assert h.local_files() == kept
    with h.ledger() as ledger:
        assert ledger.local_states() == states_before
    # The real purge.
    code, doc = h.run(capsys, "purge")
    assert [p["file"] for p in doc["purged"]] == [name(NEVER)] and doc["errors"] == []
    assert h.local_files() == kept - {name(NEVER)}
