"""Folders as they really are: subfolders and files that are no report in the watched folder,
several watched folders, and server names a librarian's disk cannot hold as they are.

Every case runs against OpenSSH's sshd with real workbooks, through ``report-keeper sync
--json``, ``check --json`` and ``export`` (the embedded server's listing of sub-folders is
checked in tests/test_sftp_client.py).
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.fixtures_sshd import ServerInfo
from tests.test_hostile_folder import arun_cli, sha, write_config
from tests.test_hostile_folder import profile_for as demo_profile_for
from tests.xlsx_factory import write_report
from tui.core.ledger import Ledger
from tui.core.names import collision_key
from tui.demo import data as demo_data

REPORT = demo_data.DAILY
#: Each case runs several report-keeper processes: on the real sshd only.
sshd_only = pytest.mark.parametrize("sftp_server", ["sshd"], indirect=True)


def profile_for(info: ServerInfo, tmp_path: Path, **changes):
    """The demo profile with its daily report only (the weekly one has no delivery here)."""
    profile = demo_profile_for(info, tmp_path, **changes)
    return replace(profile, reports=tuple(r for r in profile.reports if r.name == REPORT))


def put(info: ServerInfo, rel: str, data: bytes, mtime: datetime | None = None) -> Path:
    """A file at ``rel`` (``/``-separated, sub-folders created) in the served folder."""
    path = info.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def workbook(tmp_path: Path, day: date, seed: int = 0, rows: int = 5) -> bytes:
    src = tmp_path / "src" / f"{day}-{seed}-{rows}.xlsx"
    src.parent.mkdir(exist_ok=True)
    return write_report(src, n_rows=rows, day=day - timedelta(days=3), seed=seed).read_bytes()


def delivery(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, 0, 12, tzinfo=UTC)


def daily_name(day: date, base: str = REPORT) -> str:
    return f"{base}_{day:%Y%m%d}_070012.xlsx"


async def cli_json(*args: str) -> tuple[int, dict, str]:
    proc = await arun_cli(*args, "--json")
    return proc.returncode, json.loads(proc.stdout), proc.stderr


async def export_table(config: Path, tmp_path: Path, name: str) -> tuple[dict, pl.DataFrame]:
    out = tmp_path / f"{name}.csv"
    code, doc, err = await cli_json("export", "--config", str(config), "--out", str(out))
    assert code in (0, 1), err
    return doc, pl.read_csv(out, infer_schema_length=0)


# ------------------------------------------------------------------ subfolders, not reports


@sshd_only
async def test_subfolders_and_files_that_are_no_report_are_shown_not_fetched_never_a_problem(
        sftp_server, tmp_path):
    days = [date(2026, 6, 8), date(2026, 6, 9), date(2026, 6, 10)]
    good = {}
    for i, day in enumerate(days):
        good[daily_name(day)] = put(sftp_server, daily_name(day), workbook(tmp_path, day, i),
                                    delivery(day)).read_bytes()
    # A sub-folder holding a report of its own, an empty one, and files that are no workbook.
    put(sftp_server, f"archive/{daily_name(date(2026, 5, 1))}", workbook(tmp_path, date(2026, 5, 1)))
    (sftp_server.root / "empty").mkdir()
    put(sftp_server, "readme.txt", b"Reports land here daily.\n")
    put(sftp_server, "Loans.csv", b"a,b\n1,2\n")
    profile = profile_for(sftp_server, tmp_path)
    config = write_config(profile, tmp_path / "config.toml")

    code, doc, err = await cli_json("sync", "--config", str(config))
    assert code == 0, err
    assert doc["status"] == "ok"
    assert sorted(d["name"] for d in doc["downloaded"]) == sorted(good)
    assert doc["failed"] == [] and doc["refused"] == [] and doc["lost"] == []
    ignored = {o["name"]: o for o in doc["ignored"]}
    assert {n: o["kind"] for n, o in ignored.items()} == {
        "archive": "folder", "empty": "folder", "readme.txt": "not-a-report", "Loans.csv": "not-a-report"}
    assert all(o["new"] for o in ignored.values())
    assert {o["folder"] for o in ignored.values()} == {profile.folders[0]}
    # Said once, in one line, in the human output (never as a failure).
    assert err.count("not reports") == 1 and "archive" in err and "readme.txt" in err
    local = Path(profile.local_dir)
    assert sorted(p.name for p in local.iterdir()) == sorted([*good, ".report-keeper"])

    code, again, err = await cli_json("sync", "--config", str(config))
    assert code == 0 and again["downloaded"] == []
    assert not any(o["new"] for o in again["ignored"]) and len(again["ignored"]) == 4
    assert "not reports" not in err  # told once already

    code, check, err = await cli_json("check", "--config", str(config), "--offline")
    assert check["status"] == "ok", err
    names = {r["name"] for r in check["reports"]}
    assert names == {REPORT}  # no "readme", no "Loans", no "archive"
    assert all(p["kind"] not in ("unreadable", "lost") for r in check["reports"] for p in r["problems"])
    assert {o["name"]: o["kind"] for o in check["ignored"]} == {n: o["kind"] for n, o in ignored.items()}

    doc, table = await export_table(config, tmp_path, "subfolders")
    assert set(table["source_file"].to_list()) == set(good)
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        assert {d.name for d in led.deliveries()} == set(good)
        assert {(o.name, o.kind) for o in led.others()} == {
            ("archive", "folder"), ("empty", "folder"), ("readme.txt", "not-a-report"),
            ("Loans.csv", "not-a-report")}


# ------------------------------------------------------------------ several folders


@sshd_only
async def test_two_folders_same_name_are_two_files_each_in_its_own_local_folder(sftp_server, tmp_path):
    daily = f"{sftp_server.remote_dir}/Daily_Report"
    days = [date(2026, 6, 8), date(2026, 6, 9)]
    top, sub = {}, {}
    for i, day in enumerate(days):
        name = daily_name(day)
        top[name] = put(sftp_server, name, workbook(tmp_path, day, i, rows=5), delivery(day)).read_bytes()
        sub[name] = put(sftp_server, f"Daily_Report/{name}", workbook(tmp_path, day, 10 + i, rows=7),
                        delivery(day)).read_bytes()
    # A file only the sub-folder has, and a sub-folder of the sub-folder (ignored).
    only = daily_name(date(2026, 6, 10), "Weekly Loans")
    sub[only] = put(sftp_server, f"Daily_Report/{only}", workbook(tmp_path, date(2026, 6, 10), 20),
                    delivery(date(2026, 6, 10))).read_bytes()
    (sftp_server.root / "Daily_Report" / "old").mkdir()
    profile = replace(profile_for(sftp_server, tmp_path), remote_dirs=(daily, sftp_server.remote_dir))
    config = write_config(profile, tmp_path / "config.toml")
    top_key, sub_key = (f for f in reversed(profile.folders))
    assert sub_key.endswith("Daily_Report")

    code, doc, err = await cli_json("sync", "--config", str(config))
    assert code == 0, err
    assert doc["folders"] == [sub_key, top_key]
    by_name = {d["name"]: d for d in doc["downloaded"]}
    expected = {f"{top_key}/{n}" for n in top} | {f"{sub_key}/{n}" for n in sub}
    assert set(by_name) == expected
    local = Path(profile.local_dir)
    for name, data in top.items():
        d = by_name[f"{top_key}/{name}"]
        assert d["folder"] == top_key and not d["changed"]
        assert Path(d["path"]) == local.joinpath(*Path(top_key).parts) / name
        assert sha(Path(d["path"])) == sha(data)
    for name, data in sub.items():
        d = by_name[f"{sub_key}/{name}"]
        assert d["folder"] == sub_key and not d["changed"]
        assert Path(d["path"]) == local.joinpath(*Path(sub_key).parts) / name
        assert sha(Path(d["path"])) == sha(data)
    # The watched sub-folder is no "ignored" folder of its parent; its own sub-folder is.
    assert [(o["folder"], o["name"]) for o in doc["ignored"]] == [(sub_key, "old")]
    assert {f["folder"] for f in doc["files"]} == {top_key, sub_key}
    assert {f["status"] for f in doc["files"]} == {"ok"}
    assert doc["status"] == "ok"

    code, again, err = await cli_json("sync", "--config", str(config))
    assert code == 0 and again["downloaded"] == [] and sorted(again["skipped"]) == sorted(expected)

    code, check, err = await cli_json("check", "--config", str(config), "--offline")
    assert check["status"] in ("ok", "warning"), err
    assert not [p for r in check["reports"] for p in r["problems"] if p["kind"] in ("changed", "lost")]
    files = {f for r in check["reports"] for run in r["runs"] for f in run["files"]}
    assert files == expected
    assert [(o["folder"], o["name"]) for o in check["ignored"]] == [(sub_key, "old")]
    assert check["folders"] == [sub_key, top_key]
    assert all(p.get("folder") in (top_key, sub_key, None) for r in check["reports"] for p in r["problems"])

    doc, table = await export_table(config, tmp_path, "two-folders")
    assert set(table["source_file"].to_list()) <= expected
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        rows = {d.name: d for d in led.deliveries()}
        assert set(rows) == expected
        for ident, d in rows.items():
            assert ident == f"{d.folder}/{d.server_name}"
            assert d.local_name == d.server_name


# ------------------------------------------------------------------ names a disk cannot hold


@sshd_only
async def test_names_differing_in_case_or_normalization_get_distinct_local_names(sftp_server, tmp_path):
    nfc = unicodedata.normalize("NFC", "Café Loans_20260609_070012.xlsx")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    names = {
        "Loans_20260608_070012.xlsx": (date(2026, 6, 8), 0),
        "LOANS_20260608_070012.xlsx": (date(2026, 6, 8), 1),
        nfc: (date(2026, 6, 9), 2),
        nfd: (date(2026, 6, 9), 3),
    }
    data = {}
    for i, (name, (day, seed)) in enumerate(names.items()):
        data[name] = put(sftp_server, name, workbook(tmp_path, day, seed),
                         delivery(day) + timedelta(seconds=i)).read_bytes()
    profile = profile_for(sftp_server, tmp_path)
    config = write_config(profile, tmp_path / "config.toml")

    code, doc, err = await cli_json("sync", "--config", str(config))
    assert code == 0, err
    by_name = {d["name"]: d for d in doc["downloaded"]}
    assert set(by_name) == set(names)
    assert not any(d["changed"] for d in by_name.values())
    local_names = [d["local_name"] for d in by_name.values()]
    # Distinct on a case-folding, normalizing disk: no two local names fold to one.
    assert len({collision_key(n) for n in local_names}) == 4
    # The earlier of two colliding deliveries keeps the plain name.
    assert by_name["Loans_20260608_070012.xlsx"]["local_name"] == "Loans_20260608_070012.xlsx"
    assert by_name["LOANS_20260608_070012.xlsx"]["local_name"] == "LOANS_20260608_070012 (2).xlsx"
    assert by_name[nfc]["local_name"] == nfc
    assert by_name[nfd]["local_name"] == unicodedata.normalize("NFD", "Café Loans_20260609_070012 (2).xlsx")
    for name, d in by_name.items():
        assert sha(Path(d["path"])) == sha(data[name])
    assert {f["status"] for f in doc["files"]} == {"ok"} and doc["status"] == "ok"

    code, check, err = await cli_json("check", "--config", str(config), "--offline")
    assert not [p for r in check["reports"] for p in r["problems"] if p["kind"] == "changed"], err

    # The export names each row's source by its local copy (the file a librarian can open).
    doc, table = await export_table(config, tmp_path, "case")
    assert set(table["source_file"].to_list()) == {d["local_name"] for d in by_name.values()}
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        side = {d.server_name: d.local_name for d in led.deliveries()}
        assert side == {n: by_name[n]["local_name"] for n in names}


@sshd_only
async def test_names_with_characters_windows_refuses_are_written_portably(sftp_server, tmp_path):
    names = {
        "Loans 2026-06-08T07:00:12.xlsx": date(2026, 6, 8),
        "Who? 2026-06-09T07:00:12.xlsx": date(2026, 6, 9),
        # A real name equal to another's portable name, delivered later: it gets " (2)".
        "Who_ 2026-06-09T07_00_12.xlsx": date(2026, 6, 9),
        'Loans "a|b" <c>*_20260610_080000.xlsx': date(2026, 6, 10),
    }
    data = {n: put(sftp_server, n, workbook(tmp_path, d, i), delivery(d) + timedelta(minutes=i)).read_bytes()
            for i, (n, d) in enumerate(names.items())}
    profile = profile_for(sftp_server, tmp_path)
    config = write_config(profile, tmp_path / "config.toml")

    code, doc, err = await cli_json("sync", "--config", str(config))
    assert code == 0, err
    by_name = {d["name"]: d for d in doc["downloaded"]}
    assert set(by_name) == set(names)
    assert by_name["Loans 2026-06-08T07:00:12.xlsx"]["local_name"] == "Loans 2026-06-08T07_00_12.xlsx"
    assert by_name["Who? 2026-06-09T07:00:12.xlsx"]["local_name"] == "Who_ 2026-06-09T07_00_12.xlsx"
    assert by_name['Loans "a|b" <c>*_20260610_080000.xlsx']["local_name"] == \
        "Loans _a_b_ _c___20260610_080000.xlsx"
    assert by_name["Who_ 2026-06-09T07_00_12.xlsx"]["local_name"] == "Who_ 2026-06-09T07_00_12 (2).xlsx"
    assert not any(d["changed"] for d in by_name.values())
    for name, d in by_name.items():
        assert not set(d["local_name"]) & set(':*?"<>|'), name
        assert sha(Path(d["path"])) == sha(data[name])
    # The delivery time still comes from the server's name (07:00:12 in the name, not the mtime).
    files = {f["name"]: f for f in doc["files"]}
    assert files["Loans 2026-06-08T07:00:12.xlsx"]["delivered_at"].startswith("2026-06-08T07:00:12")
    assert doc["status"] == "ok"

    code, check, err = await cli_json("check", "--config", str(config), "--offline")
    runs = {f for r in check["reports"] for run in r["runs"] for f in run["files"]}
    assert set(names) <= runs, err

    doc, table = await export_table(config, tmp_path, "colons")
    assert set(table["source_file"].to_list()) == {d["local_name"] for d in by_name.values()}
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        assert {d.server_name: d.local_name for d in led.deliveries()} == {
            n: by_name[n]["local_name"] for n in names}


@sshd_only
async def test_from_one_folder_to_two_and_back_keeps_the_history(sftp_server, tmp_path):
    top = sftp_server.remote_dir
    sub = f"{top}/Daily_Report"
    days = [date(2026, 6, 8), date(2026, 6, 9)]
    for i, day in enumerate(days):
        put(sftp_server, daily_name(day), workbook(tmp_path, day, i), delivery(day))
    put(sftp_server, f"Daily_Report/{daily_name(days[0])}", workbook(tmp_path, days[0], 9),
        delivery(days[0]))
    one = profile_for(sftp_server, tmp_path)
    code, first, err = await cli_json("sync", "--config", str(write_config(one, tmp_path / "one.toml")))
    assert code == 0 and len(first["downloaded"]) == 2, err

    two = replace(one, remote_dirs=(top, sub))
    config_two = write_config(two, tmp_path / "two.toml")
    code, doc, err = await cli_json("sync", "--config", str(config_two))
    assert code == 0, err
    top_key = two.folders[0]
    # The files held already are the same files now keyed by folder: nothing fetched again,
    # nothing lost; only the new folder's file arrives, in its own local folder.
    assert sorted(doc["skipped"]) == sorted(f"{top_key}/{daily_name(d)}" for d in days)
    assert [d["name"] for d in doc["downloaded"]] == [f"{two.folders[1]}/{daily_name(days[0])}"]
    assert doc["lost"] == [] and doc["status"] == "ok"
    held = Path(doc["downloaded"][0]["path"])
    assert held.parent == Path(two.local_dir).joinpath(*Path(two.folders[1]).parts)

    code, back, err = await cli_json("sync", "--config", str(write_config(one, tmp_path / "one.toml")))
    assert code == 0 and back["downloaded"] == [] and back["lost"] == [], err
    assert sorted(back["skipped"]) == sorted(daily_name(d) for d in days)
    code, check, err = await cli_json("check", "--config", str(tmp_path / "one.toml"), "--offline")
    assert not [p for r in check["reports"] for p in r["problems"] if p["kind"] in ("lost", "changed")]
