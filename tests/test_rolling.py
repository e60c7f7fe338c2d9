"""Rolling reports: one fixed file name that every delivery replaces on the server.

Two weeks of a daily rolling report against the real OpenSSH sshd, each day a ``report-keeper
sync --json`` run at 10:00 Chicago time (``REPORT_KEEPER_NOW``; through the CLI's ``main`` in
this process, which is quicker than a process a day), with a day the report did not come and a
version the server replaced before anything downloaded it; then ``check`` and ``export`` as
separate processes, the Remote screen's rows, the heatmap and the Verify list. The inference of an unconfigured rolling
report and the config key are tested on their own below.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.daily_config import server_folder, write_daily_config
from tests.xlsx_factory import write_report
from tui.core.config import ConfigError, load_config
from tui.core.ledger import Ledger
from tui.core.model import RemoteFile

TZ = ZoneInfo("America/Chicago")
REPORT = "User loan counts at other I-Share libraries XXX"
SERVER_NAME = f"{REPORT}.xlsx"
FIRST = date(2026, 11, 16)  # Mon
DAYS = [FIRST + timedelta(days=i) for i in range(14)]  # Mon 16 .. Sun 29 Nov
MISSED = date(2026, 11, 20)  # the report did not come: yesterday's version stays
UNSEEN_SYNC = date(2026, 11, 24)  # only `check` listed the folder; next day's version replaced it
LATE = date(2026, 11, 27)  # replaced at 09:40, after the 09:00 deadline


def _config(tmp: Path, server, remote_dir: str, *, rolling: str = "rolling = true") -> Path:
    return write_daily_config(tmp, server, remote_dir, REPORT, report_extra=rolling)


def _fixed_report(path: Path, day: date) -> None:
    """A small loans workbook whose bytes are the same in every run (a snapshot shows its size)."""
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path))
    wb.set_properties({"created": datetime(2026, 1, 1)})
    ws = wb.add_worksheet("Loans")
    ws.write_row(2, 0, ["Primary Identifier", "User Group", "Loan Date", "Loans (Not In House)"])
    for i in range(3):
        ws.write_row(3 + i, 0, [f"ID{day.day:02d}{i}", "Undergraduate", (day - timedelta(days=3)).isoformat(), i + 1])
    wb.close()


def _replace(folder: Path, day: date, hhmm: tuple[int, int] = (7, 5), *, fixed: bool = False,
             name: str = SERVER_NAME) -> datetime:
    """The server replaces the report in place: new content, new mtime, same name."""
    at = datetime.combine(day, time(*hhmm), tzinfo=TZ)
    path = folder / name
    tmp = folder / ".upload.tmp"
    if fixed:
        _fixed_report(tmp, day)
    else:
        write_report(tmp, n_rows=4 + day.day % 3, day=day - timedelta(days=3), seed=day.toordinal())
    os.utime(tmp, (at.timestamp(), at.timestamp()))
    os.replace(tmp, path)
    return at


def _run_here(capsys, monkeypatch, command: str, cfg: Path, moment: datetime, *extra: str) -> tuple[int, dict]:
    """One ``report-keeper COMMAND --json`` run in this process (an interpreter started per
    command would only cost time)."""
    from tui.cli import main

    monkeypatch.setenv("REPORT_KEEPER_NOW", moment.isoformat())
    capsys.readouterr()
    code = main([command, "--config", str(cfg), "--json", *extra])
    out = capsys.readouterr().out
    assert code != 3, out
    return code, json.loads(out)


def _at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=TZ)


def _local_name(day: date, hhmm: str | None = None) -> str:
    hhmm = hhmm or ("0940" if day == LATE else "0705")
    return f"{REPORT} ({day.isoformat()} {hhmm}).xlsx"


@pytest.fixture
def server_dir(sshd):
    with server_folder(sshd.root, "rolling-") as sub:
        yield sub


@pytest.mark.sshd
def test_two_weeks_of_a_daily_rolling_report(sshd, server_dir, tmp_path, capsys, monkeypatch):
    cfg = _config(tmp_path, sshd, server_dir.name)
    local = tmp_path / "local"
    syncs: dict[date, tuple[int, dict]] = {}
    versions: dict[date, tuple[datetime, int]] = {}
    for day in DAYS:
        if day != MISSED:
            at = _replace(server_dir, day, (9, 40) if day == LATE else (7, 5))
            versions[day] = (at, (server_dir / SERVER_NAME).stat().st_size)
        if day == UNSEEN_SYNC:
            # cron's sync did not run that day; the morning check listed the folder
            code, doc = _run_here(capsys, monkeypatch, "check", cfg, _at(day, 8))
            continue
        syncs[day] = _run_here(capsys, monkeypatch, "sync", cfg, _at(day, 10))

    for day, (code, doc) in syncs.items():
        names = [d["name"] for d in doc["downloaded"]]
        assert doc["error"] is None, (day, doc)
        assert all(not d["changed"] for d in doc["downloaded"]), (day, doc)
        assert not any(f["status"] == "changed" for f in doc["files"]), (day, doc)
        if day == MISSED:
            # nothing new: yesterday's version is held already
            assert names == [] and doc["skipped"] == [SERVER_NAME] and code == 0, doc
            continue
        assert names == [SERVER_NAME], (day, doc)
        assert [Path(d["path"]).name for d in doc["downloaded"]] == [_local_name(day)]
        assert [d["version"] for d in doc["downloaded"]] == [_local_name(day)]
        assert [f["status"] for f in doc["files"]] == ["ok"], (day, doc)
        if day == UNSEEN_SYNC + timedelta(days=1):
            # the version listed yesterday was replaced before anything downloaded it: lost, once
            at, size = versions[UNSEEN_SYNC]
            assert code == 2 and doc["status"] == "critical", doc
            assert doc["lost"] == [_local_name(UNSEEN_SYNC)]
            assert doc["lost_versions"] == [{
                "name": _local_name(UNSEEN_SYNC), "server_name": SERVER_NAME,
                "mtime": at.astimezone(UTC).isoformat(), "size": size,
            }]
        else:
            assert code == 0 and doc["status"] == "ok" and doc["lost"] == [], (day, doc)
            assert doc["lost_versions"] == []

    # every version kept under its own name, nothing overwritten, no "changed" copies
    held = sorted(p.name for p in local.iterdir() if not p.name.startswith("."))
    expected_days = [d for d in DAYS if d not in (MISSED, UNSEEN_SYNC)]
    assert held == sorted(_local_name(d) for d in expected_days)
    for d in expected_days:
        assert (local / _local_name(d)).stat().st_size == versions[d][1]

    # check: the schedule is evaluated from the versions
    code, doc = _run_here(capsys, monkeypatch, "check", cfg, _at(DAYS[-1], 11), "--offline")
    (report,) = doc["reports"]
    assert report["name"] == REPORT and report["rolling"] is True and report["rolling_inferred"] is False
    runs = {r["day"]: r for r in report["runs"]}
    assert set(runs) == {d.isoformat() for d in DAYS}
    for d in DAYS:
        run = runs[d.isoformat()]
        if d == MISSED:
            assert run["status"] == "missing" and run["files"] == []
        elif d == LATE:
            assert run["status"] == "late" and run["files"] == [_local_name(d)]
        else:
            assert run["status"] == "on-time", run
            assert run["files"] == [_local_name(d)]
    kinds = [(p["kind"], p["day"]) for p in report["problems"]]
    assert ("missing", MISSED.isoformat()) in kinds
    assert ("lost", UNSEEN_SYNC.isoformat()) in kinds
    assert ("late", LATE.isoformat()) in kinds
    assert not any(k == "changed" for k, _ in kinds)
    (lost,) = [p for p in report["problems"] if p["kind"] == "lost"]
    assert lost["severity"] == "critical" and lost["file"] == _local_name(UNSEEN_SYNC)
    assert "replaced on the server" in lost["message"]
    assert f"{versions[UNSEEN_SYNC][1]:,} bytes" in lost["message"]
    assert code == 2

    # export: each version is its run day's delivery
    out = tmp_path / "study.csv"
    code, doc = _run_here(capsys, monkeypatch, "export", cfg, _at(DAYS[-1], 11), "--out", str(out))
    included = {date.fromisoformat(d) for d in doc["days"]["included"]}
    assert included == {d - timedelta(days=3) for d in expected_days}
    assert MISSED - timedelta(days=3) in {date.fromisoformat(d) for d in doc["days"]["missing"]}
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_day: dict[str, set[str]] = {}
    for row in rows:
        by_day.setdefault(row["run_day"], set()).add(row["source_file"])
    assert by_day == {d.isoformat(): {_local_name(d)} for d in expected_days}
    assert len(rows) == sum(4 + d.day % 3 for d in expected_days)

    # the Remote screen's rows: the version on the server now, downloaded and verified
    from tui.core.config import load_config as load
    from tui.state import build_snapshot

    profile = load(cfg).profile()
    with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
        snap = build_snapshot(profile, ledger)
    assert [(r.name, r.version, r.state, r.verification) for r in snap.rows] == [
        (SERVER_NAME, _local_name(DAYS[-1]), "downloaded", "ok")]

    # the heatmap: each version is its run day's delivery
    from tui.core.heatmap import build_grid, kind_of_day

    (health,) = snap.health.reports
    grid = build_grid(health.runs, today=DAYS[-1])
    kinds = {d: kind_of_day(grid, d) for d in DAYS}
    assert kinds == {d: "missing" if d == MISSED else "unverified" if d == UNSEEN_SYNC
                     else "late" if d == LATE else "ok" for d in DAYS}

    # the Verify screen's list: every local copy is its version's delivery
    from tui.core.local_reports import find_local_reports

    with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
        found = find_local_reports(local, profile, ledger)
    assert sorted((f.name, f.report_name, f.run_day) for f in found) == sorted(
        (_local_name(d), REPORT, d) for d in expected_days)


#: A rolling report whose server name holds characters a Windows/SMB share or an exFAT drive
#: refuses in a file name.
UNPORTABLE_REPORT = "Loans:daily?"
UNPORTABLE_NAME = f"{UNPORTABLE_REPORT}.xlsx"


def _portable_version(day: date) -> str:
    return f"Loans_daily_ ({day.isoformat()} 0705).xlsx"


@pytest.mark.sshd
def test_a_rolling_reports_versions_get_portable_local_names(sshd, server_dir, tmp_path, capsys, monkeypatch):
    """Each version of ``Loans:daily?.xlsx`` is kept as ``Loans_daily_ (DAY HHMM).xlsx``, as
    any other download is made portable; a version the previous release kept under the raw name
    (its ledger row and its copy) stays known as it is: held, not lost, not fetched again."""
    from tui.core.names import UNPORTABLE_CHARS, refusal_reason

    cfg = write_daily_config(tmp_path, sshd, server_dir.name, UNPORTABLE_REPORT, report_extra="rolling = true")
    local = tmp_path / "local"
    day1, day2 = DAYS[0], DAYS[1]
    _replace(server_dir, day1, name=UNPORTABLE_NAME)
    code, doc = _run_here(capsys, monkeypatch, "sync", cfg, _at(day1, 10))
    assert code == 0 and doc["error"] is None, doc
    (dl,) = doc["downloaded"]
    assert dl["name"] == UNPORTABLE_NAME
    assert Path(dl["path"]).name == dl["version"] == _portable_version(day1)
    assert not set(dl["version"]) & UNPORTABLE_CHARS and refusal_reason(dl["version"]) is None

    # The ledger and the disk as the previous release left them: the version under the raw name.
    old = f"{UNPORTABLE_REPORT} ({day1.isoformat()} 0705).xlsx"
    os.rename(local / _portable_version(day1), local / old)
    import sqlite3

    db = sqlite3.connect(tmp_path / "ledger.sqlite3")
    with db:
        db.execute("UPDATE remote_files SET name = ? WHERE name = ?", (old, _portable_version(day1)))
        db.execute("UPDATE downloads SET name = ?, local_path = ? WHERE name = ?",
                   (old, str(local / old), _portable_version(day1)))
        db.execute("UPDATE verifications SET name = ?, path = ? WHERE path = ?",
                   (old, str(local / old), str(local / _portable_version(day1))))
    db.close()
    code, doc = _run_here(capsys, monkeypatch, "sync", cfg, _at(day1, 12))
    assert code == 0 and doc["downloaded"] == [] and doc["skipped"] == [UNPORTABLE_NAME], doc
    assert doc["lost"] == [] and doc["missing_locally"] == [] and doc["refused"] == [], doc

    # The next version gets the portable name. A file of another report whose portable name
    # would be that version's arrives with it: it gets " (2)", the version keeps its name.
    _replace(server_dir, day2, name=UNPORTABLE_NAME)
    other = f"Loans:daily_ ({day2.isoformat()} 0705).xlsx"
    write_report(server_dir / other, n_rows=3, day=day2 - timedelta(days=3), seed=7)
    code, doc = _run_here(capsys, monkeypatch, "sync", cfg, _at(day2, 10))
    assert doc["error"] is None and doc["lost"] == [] and doc["refused"] == [], doc
    got = {d["name"]: (Path(d["path"]).name, d["version"]) for d in doc["downloaded"]}
    assert got == {UNPORTABLE_NAME: (_portable_version(day2), _portable_version(day2)),
                   other: (f"Loans_daily_ ({day2.isoformat()} 0705) (2).xlsx", None)}
    held = sorted(p.name for p in local.iterdir() if not p.name.startswith("."))
    assert held == sorted([old, _portable_version(day2), got[other][0]])

    # check: both versions are their run days' deliveries; nothing lost, missing or changed
    code, doc = _run_here(capsys, monkeypatch, "check", cfg, _at(day2, 11), "--offline")
    (report,) = [r for r in doc["reports"] if r["name"] == UNPORTABLE_REPORT]
    assert report["rolling"] is True
    assert [(r["day"], r["files"]) for r in report["runs"]] == [
        (day1.isoformat(), [old]), (day2.isoformat(), [_portable_version(day2)])]
    assert report["problems"] == [], report["problems"]

    # the Verify list knows both copies as their versions' deliveries
    from tui.core.local_reports import find_local_reports

    profile = load_config(cfg).profile()
    with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
        found = find_local_reports(local, profile, ledger)
    assert sorted((f.name, f.report_name, f.run_day) for f in found if f.report_name == UNPORTABLE_REPORT) == [
        (old, UNPORTABLE_REPORT, day1), (_portable_version(day2), UNPORTABLE_REPORT, day2)]


# ---------------------------------------------------------------------- in-process tests


def _profile_toml(tmp: Path, extra: str = "", report: str = "") -> Path:
    cfg = tmp / "config.toml"
    cfg.write_text(f"""
[profile.default]
host = "127.0.0.1"
username = "u"
remote_dir = "out"
local_dir = "{tmp / 'local'}"
ledger = "{tmp / 'ledger.sqlite3'}"
timezone = "America/Chicago"
{extra}
{report}
""")
    return cfg


def test_rolling_must_be_a_boolean(tmp_path):
    cfg = _profile_toml(tmp_path, report=f'[[profile.default.report]]\nname = "{REPORT}"\nrolling = "yes"\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg).profile()  # its own error: raised when it is picked
    assert "rolling" in str(err.value) and "true or false" in str(err.value)
    cfg = _profile_toml(tmp_path, report=f'[[profile.default.report]]\nname = "{REPORT}"\nrolling = false\n')
    assert load_config(cfg).profile().report_for(REPORT).rolling is False


def _record(ledger: Ledger, profile, mtime: datetime, size: int = 100, when: datetime | None = None):
    """One listing of the folder as the sync service records it (the same helper sync uses)."""
    from tui.sftp.sync import rolling_names

    f = RemoteFile(SERVER_NAME, size, mtime.astimezone(UTC))
    rolling = rolling_names(profile, ledger, [f])
    return ledger.record_listing(
        None, lambda r: (REPORT, r.mtime.astimezone(TZ)), [f], when or mtime + timedelta(hours=1),
        rolling=rolling, tz=TZ,
    ), rolling


def test_an_unconfigured_name_replaced_daily_is_inferred_rolling(tmp_path):
    profile = load_config(_profile_toml(tmp_path)).profile()
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        for i, day in enumerate(DAYS[:3]):
            at = _at(day, 7, 5)
            _change, versions = _record(ledger, profile, at, size=100 + i)
            if i < 2:
                # not yet: an ordinary file whose copy changed; it is downloaded beside the old one
                assert versions == set()
                ledger.record_download(SERVER_NAME, size=100 + i, sha256=f"{i:064x}",
                                       local_path=tmp_path / f"copy{i}.xlsx", mtime=at.astimezone(UTC))
        # the third copy, a day after the second: replaced twice at a daily rhythm
        assert versions == {SERVER_NAME}
        deliveries = ledger.deliveries()
        assert [(d.name, d.extra.get("rolling_of"), d.on_server, d.downloaded, d.changed)
                for d in deliveries] == [
            (_local_name(DAYS[0]), SERVER_NAME, False, True, False),
            (_local_name(DAYS[1]), SERVER_NAME, False, True, False),
            (_local_name(DAYS[2]), SERVER_NAME, True, False, False),
        ]
        # the copies already held keep their paths: nothing on disk is renamed
        assert [d.local_path for d in deliveries[:2]] == [str(tmp_path / "copy0.xlsx"),
                                                            str(tmp_path / "copy1.xlsx")]
        # ... and the Verify list still knows them as their versions' deliveries
        from tui.core.local_reports import find_local_reports

        for i in range(2):
            (tmp_path / f"copy{i}.xlsx").write_bytes(b"x" * (100 + i))
        found = find_local_reports(tmp_path, profile, ledger)
        assert [(f.name, f.report_name, f.run_day) for f in found] == [
            ("copy0.xlsx", REPORT, DAYS[0]), ("copy1.xlsx", REPORT, DAYS[1])]
        from tui.core.health import evaluate

        health = evaluate(profile, deliveries, now=_at(DAYS[2], 10))
        (rep,) = health.reports
        assert rep.rolling and rep.rolling_inferred
        assert rep.to_json()["rolling_inferred"] is True
        from tui.screens.health import reports_text

        assert "(every day, inferred, rolling (inferred))" in reports_text(health, TZ, _at(DAYS[2], 10)).plain
        assert not [p for p in rep.problems if p.kind == "changed"]


def test_copies_replaced_within_hours_are_not_inferred_rolling(tmp_path):
    profile = load_config(_profile_toml(tmp_path)).profile()
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        for i, hh in enumerate((7, 9, 13)):
            at = _at(FIRST, hh)
            _change, versions = _record(ledger, profile, at, size=100 + i)
            ledger.record_download(SERVER_NAME, size=100 + i, sha256=f"{i:064x}",
                                   local_path=tmp_path / f"copy{i}.xlsx", mtime=at.astimezone(UTC))
            assert versions == set()
        assert [d.name for d in ledger.deliveries()] == [SERVER_NAME]


def test_rolling_false_is_never_inferred(tmp_path):
    cfg = _profile_toml(tmp_path, report=f'[[profile.default.report]]\nname = "{REPORT}"\nrolling = false\n')
    profile = load_config(cfg).profile()
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        for i, day in enumerate(DAYS[:4]):
            at = _at(day, 7, 5)
            _change, versions = _record(ledger, profile, at, size=100 + i)
            ledger.record_download(SERVER_NAME, size=100 + i, sha256=f"{i:064x}",
                                   local_path=tmp_path / f"copy{i}.xlsx", mtime=at.astimezone(UTC))
            assert versions == set()


def test_a_server_file_named_like_a_version_is_refused_not_merged(tmp_path):
    cfg = _profile_toml(tmp_path, report=f'[[profile.default.report]]\nname = "{REPORT}"\nrolling = true\n')
    profile = load_config(cfg).profile()
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        at = _at(FIRST, 7, 5)
        _record(ledger, profile, at)
        # a hostile (or unlucky) file whose name is exactly the version's ledger name
        clash = RemoteFile(_local_name(FIRST), 5, at.astimezone(UTC))
        rolling = RemoteFile(SERVER_NAME, 100, at.astimezone(UTC))
        ledger.record_listing(None, lambda r: (REPORT, r.mtime), [rolling, clash], at + timedelta(hours=2),
                              rolling={SERVER_NAME}, tz=TZ)
        (d,) = ledger.deliveries()
        assert d.extra.get("rolling_of") == SERVER_NAME and d.size == 100
        assert [(r.name, "version" in r.reason) for r in ledger.refused()] == [(_local_name(FIRST), True)]


async def _remote_screen_day(profile, day: date) -> None:
    """One day in the app: list, download every new file from the Remote screen, look."""
    from tests.test_tui_fixtures import settled, wait_for
    from tui.app import create_app

    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    app = create_app(profile, ledger=ledger)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: settled(app))
            await pilot.press("2")
            remote = app.screen
            assert remote.__class__.__name__ == "RemoteScreen"
            # one row: the server's fixed name, new in this version
            assert [(r.name, r.version, r.state) for r in app.snapshot.rows] == [
                (SERVER_NAME, _local_name(day), "new")]
            await pilot.press("a", "d")
            await wait_for(pilot, lambda: not app.board.active and settled(app)
                           and app.snapshot.rows[0].state == "downloaded", 60)
            table = remote.query_one("DataTable")
            assert str(table.get_cell(SERVER_NAME, "local")) == "✓ downloaded"
            await pilot.press("enter")
            await pilot.pause()
            details = app.screen
            assert details.__class__.__name__ == "FileDetailsModal"
            body = "\n".join(str(s.render()) for s in details.query("Static"))
            assert "one file name, replaced by each delivery" in body
            # the details wrap a long value under its first word: compare words, not line breaks
            assert f"Version {_local_name(day)}" in " ".join(body.split())
            await pilot.press("escape")
    finally:
        ledger.close()


@pytest.mark.sshd
async def test_the_remote_screen_downloads_each_version_under_its_own_name(sshd, server_dir, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    profile = load_config(_config(tmp_path, sshd, server_dir.name)).profile()
    first, second = DAYS[0], DAYS[1]
    for day in (first, second):
        _replace(server_dir, day)
        monkeypatch.setenv("REPORT_KEEPER_NOW", _at(day, 10).isoformat())
        await _remote_screen_day(profile, day)
    held = sorted(p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith("."))
    assert held == [_local_name(first), _local_name(second)]


async def test_a_version_replaced_during_its_download_is_not_saved_under_its_name(sftp_server, tmp_path):
    from tests.test_transfer import _entries, _factory, _listing, _put
    from tui.sftp.queue import TransferQueue

    _put(sftp_server, SERVER_NAME, 100_000, seed=1)
    files = await _listing(sftp_server)
    old = files[SERVER_NAME]
    _put(sftp_server, SERVER_NAME, 150_000, seed=2)  # the next delivery replaced it meanwhile
    os.utime(sftp_server.path(SERVER_NAME), (old.mtime.timestamp() + 86400,) * 2)
    async with TransferQueue(_factory(sftp_server), backoff_base=0.01) as q:
        job = q.add(old, sftp_server.remote_dir, tmp_path / "out", local_name=_local_name(FIRST))
        await q.join()
    # the newer bytes are another version: never kept under this version's name
    assert job.state == "failed" and "replaced" in str(job.error)
    assert _entries(tmp_path / "out") == []


@pytest.mark.sshd
def test_an_unconfigured_rolling_report_is_inferred_on_the_third_version(sshd, server_dir, tmp_path, capsys,
                                                                        monkeypatch):
    cfg = _config(tmp_path, sshd, server_dir.name)
    text = cfg.read_text()
    cfg.write_text(text[:text.index("[[profile.default.report]]")])  # no report configured
    docs = []
    for day in DAYS[:3]:
        _replace(server_dir, day)
        docs.append(_run_here(capsys, monkeypatch, "sync", cfg, _at(day, 10)))
    (c1, d1), (c2, d2), (c3, d3) = docs
    assert [Path(d["path"]).name for d in d1["downloaded"]] == [SERVER_NAME]
    # the second copy: still an ordinary file whose server copy changed (kept beside it)
    assert [(d["changed"], d["version"]) for d in d2["downloaded"]] == [(True, None)] and c2 == 1
    # the third, a day later again: a rolling report from now on
    assert [(Path(d["path"]).name, d["changed"], d["version"]) for d in d3["downloaded"]] == [
        (_local_name(DAYS[2]), False, _local_name(DAYS[2]))]
    assert c3 == 0 and d3["status"] == "ok" and d3["lost"] == []
    code, doc = _run_here(capsys, monkeypatch, "check", cfg, _at(DAYS[2], 11), "--offline")
    (report,) = doc["reports"]
    assert report["rolling"] is True and report["rolling_inferred"] is True
    assert [r["files"] for r in report["runs"]] == [[_local_name(d)] for d in DAYS[:3]]
    assert [p["kind"] for p in report["problems"]] == [] and code == 0
    # nothing on disk was renamed or overwritten
    held = sorted(p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith("."))
    assert len(held) == 3 and SERVER_NAME in held and _local_name(DAYS[2]) in held


def test_a_version_name_never_overflows_on_a_hostile_mtime():
    from tui.core.names import version_name

    far = datetime.fromtimestamp(253402300799, UTC)  # 9999-12-31 23:59:59 UTC
    assert version_name(SERVER_NAME, far, ZoneInfo("Pacific/Kiritimati")) == f"{REPORT} (9999-12-31 2359).xlsx"
    assert version_name("x" * 300 + ".xlsx", _at(FIRST, 7, 5), TZ).encode().__len__() <= 255
    long_unportable = version_name("é?" * 100 + ".xlsx", _at(FIRST, 7, 5), TZ)
    assert len(long_unportable.encode()) <= 255 and "?" not in long_unportable
    assert long_unportable.endswith(f" ({FIRST.isoformat()} 0705).xlsx")


@pytest.fixture
def fixed_server_dir(sshd):
    """A server folder whose name is the same in every run (the Remote screen shows it)."""
    sub = sshd.root / "rolling-snapshot"
    shutil.rmtree(sub, ignore_errors=True)
    sub.mkdir(mode=0o755)
    yield sub
    shutil.rmtree(sub, ignore_errors=True)


@pytest.mark.sshd
def test_snapshot_remote_screen_with_a_rolling_report(snap_compare, sshd, fixed_server_dir, tmp_path,
                                                      monkeypatch):
    """Yesterday's version held, today's new on the server: one row under the server's name,
    its details naming the version."""
    import asyncio

    from tests.test_tui_fixtures import settled, until_fitted, wait_for
    from tui.app import create_app
    from tui.sftp.sync import SyncService

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    cfg = _config(tmp_path, sshd, fixed_server_dir.name)
    cfg.write_text(cfg.read_text().replace(f'local_dir = "{tmp_path / "local"}"', 'local_dir = "~/reports"'))
    profile = load_config(cfg).profile()
    _replace(fixed_server_dir, DAYS[0], fixed=True)
    monkeypatch.setenv("REPORT_KEEPER_NOW", _at(DAYS[0], 10).isoformat())

    async def sync() -> None:
        with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
            async with SyncService(profile, ledger) as service:
                assert not (await service.sync()).failed

    asyncio.run(sync())
    _replace(fixed_server_dir, DAYS[1], fixed=True)
    monkeypatch.setenv("REPORT_KEEPER_NOW", _at(DAYS[1], 10).isoformat())
    app = create_app(profile, ledger=Ledger.open(profile.ledger_path, profile=profile.name))

    async def run_before(pilot):
        await wait_for(pilot, lambda: settled(app))
        await pilot.press("2")
        await until_fitted(pilot)
        await pilot.press("enter")
        await until_fitted(pilot)
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)


def test_rolling_true_leaves_timestamped_names_alone(tmp_path):
    from tui.sftp.sync import rolling_names

    cfg = _profile_toml(tmp_path, report=f'[[profile.default.report]]\nname = "{REPORT}"\nrolling = true\n')
    profile = load_config(cfg).profile()
    at = _at(FIRST, 7, 5).astimezone(UTC)
    files = [RemoteFile(f"{REPORT}_20261116_070500.xlsx", 10, at), RemoteFile(SERVER_NAME, 10, at)]
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        assert rolling_names(profile, ledger, files) == {SERVER_NAME}


async def test_a_hostile_file_named_like_a_version_is_refused_by_sync(sftp_server, tmp_path, monkeypatch):
    """The server offers the rolling file and, beside it, a file named exactly as the version's
    local copy: it is refused, never downloaded over or recorded as the version."""
    from dataclasses import replace

    from tui.core.config import ReportConfig
    from tui.demo import data as demo_data
    from tui.sftp.sync import SyncService

    monkeypatch.setenv("REPORT_KEEPER_NOW", _at(FIRST, 10).isoformat())
    info = sftp_server
    profile = demo_data.demo_config(
        host=info.host, port=info.port, username=info.username, key=info.key,
        known_hosts=info.known_hosts, local_dir=tmp_path / "local", ledger=tmp_path / "ledger.sqlite3",
    )
    profile = replace(profile, remote_dir=info.remote_dir, ssh_config=info.ssh_config, timezone=TZ,
                      reports=(ReportConfig(name=REPORT, rolling=True, configured=True),))
    at = _replace(info.root, FIRST)
    genuine = (info.root / SERVER_NAME).read_bytes()
    impostor = info.root / _local_name(FIRST)
    impostor.write_bytes(b"not the report")
    os.utime(impostor, (at.timestamp() + 60,) * 2)

    async def sync():
        with Ledger.open(profile.ledger_path, profile=profile.name) as led:
            async with SyncService(profile, led) as service:
                result = await service.sync()
            return result, led.deliveries(), led.downloads()

    for _ in range(2):  # the first sync records the version; the second lists both again
        result, deliveries, downloads = await sync()
        assert [r["name"] for r in result.refused] == [_local_name(FIRST)]
        assert "version of the rolling report" in result.refused[0]["reason"]
        assert result.status == 1 and not result.failed
    assert (tmp_path / "local" / _local_name(FIRST)).read_bytes() == genuine
    assert [(d.name, d.extra.get("rolling_of"), d.size) for d in deliveries] == [
        (_local_name(FIRST), SERVER_NAME, len(genuine))]
    assert [(d.name, d.size) for d in downloads] == [(_local_name(FIRST), len(genuine))]


def test_turning_rolling_off_never_calls_the_current_version_lost(tmp_path):
    cfg = _profile_toml(tmp_path, report=f'[[profile.default.report]]\nname = "{REPORT}"\nrolling = true\n')
    profile = load_config(cfg).profile()
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        at = _at(FIRST, 7, 5)
        _record(ledger, profile, at)  # a version, not downloaded yet
        cfg.write_text(cfg.read_text().replace("rolling = true", "rolling = false"))
        profile = load_config(cfg).profile()
        change, rolling = _record(ledger, profile, at, when=at + timedelta(hours=3))
        assert rolling == set() and change.gone == ()
        assert ledger.lost() == []


async def test_a_held_version_downloaded_again_is_compared_not_duplicated(sftp_server, tmp_path, monkeypatch):
    from dataclasses import replace

    from tui.core.config import ReportConfig
    from tui.demo import data as demo_data
    from tui.sftp.sync import AgainOutcome, SyncService

    monkeypatch.setenv("REPORT_KEEPER_NOW", _at(FIRST, 10).isoformat())
    info = sftp_server
    profile = demo_data.demo_config(
        host=info.host, port=info.port, username=info.username, key=info.key,
        known_hosts=info.known_hosts, local_dir=tmp_path / "local", ledger=tmp_path / "ledger.sqlite3",
    )
    profile = replace(profile, remote_dir=info.remote_dir, ssh_config=info.ssh_config, timezone=TZ,
                      reports=(ReportConfig(name=REPORT, rolling=True, configured=True),))
    _replace(info.root, FIRST)
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        async with SyncService(profile, led) as service:
            first = await service.sync()
            assert [d["version"] for d in first.downloaded] == [_local_name(FIRST)]
            again = await service.download([SERVER_NAME])  # "download it again" from the app
        assert [(a.name, a.outcome) for a in again.again] == [(SERVER_NAME, AgainOutcome.IDENTICAL)]
        assert again.downloaded == [] and not again.failed
        assert [(d.name, d.local_state) for d in led.deliveries()] == [(_local_name(FIRST), "downloaded")]
    assert sorted(p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith(".")) == [
        _local_name(FIRST)]
