"""Local names and folders: the rules of docs/DOMAIN.md ("Folders", "Local file names") one by
one, the config's ``remote_dirs``, and the ledger that keeps server and local names side by side
(its migration from the release before folders included)."""

from __future__ import annotations

import sqlite3
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tui.core.config import ConfigError, load_config
from tui.core.ledger import MIGRATIONS, Ledger
from tui.core.model import EntryKind, RemoteFile
from tui.core.names import (
    collision_key,
    distinct_local_name,
    folder_refusal,
    is_report_name,
    local_folder_parts,
    normalize_folder,
    portable_name,
    refusal_reason,
)

T0 = datetime(2026, 6, 8, 12, 0, tzinfo=UTC)


# ------------------------------------------------------------------ portable names


@pytest.mark.parametrize(("server", "local"), [
    ("Loans 2026-06-08T07:00:12.xlsx", "Loans 2026-06-08T07_00_12.xlsx"),
    ('a*b?c"d<e>f|g.xlsx', "a_b_c_d_e_f_g.xlsx"),
    ("Loans.", "Loans_"),
    ("Loans. . ", "Loans____"),
    ("CON", "CON_"),
    ("nul.xlsx", "nul_.xlsx"),
    ("Com1.report.xlsx", "Com1_.report.xlsx"),
    ("LPT\u00b9.xlsx", "LPT\u00b9_.xlsx"),
    ("CONIN$.xlsx", "CONIN$_.xlsx"),
    ("AUX .xlsx", "AUX _.xlsx"),
    # Not device names: kept as they are.
    ("CONSOLE.xlsx", "CONSOLE.xlsx"),
    ("Auxiliary loans.xlsx", "Auxiliary loans.xlsx"),
    ("COM10.xlsx", "COM10.xlsx"),
    ("Café Loans.xlsx", "Café Loans.xlsx"),
    (" leading space.xlsx", " leading space.xlsx"),
])
def test_portable_names(server, local):
    assert portable_name(server) == local
    assert refusal_reason(local) is None


def test_a_portable_name_stays_within_255_bytes():
    name = "é" * 126 + ":" + ".xlsx"  # 258 bytes once ':' is '_' (1 byte): fits
    assert len(portable_name(name).encode()) <= 255
    long = "ü" * 130 + ".xlsx"  # 265 bytes: already too long as a server name (refused there)
    assert refusal_reason(long) is not None


def test_collision_keys_fold_case_and_normalization():
    nfc = unicodedata.normalize("NFC", "Café.xlsx")
    nfd = unicodedata.normalize("NFD", "Café.xlsx")
    assert nfc != nfd and collision_key(nfc) == collision_key(nfd)
    assert collision_key("LOANS.XLSX") == collision_key("loans.xlsx")
    assert collision_key("Straße.xlsx") == collision_key("STRASSE.xlsx")  # stricter than a disk: safe
    assert collision_key("a.xlsx") != collision_key("b.xlsx")


def test_distinct_local_names_number_the_later_file():
    taken: set[str] = set()
    names = []
    for server in ("Loans.xlsx", "LOANS.xlsx", "loans.xlsx", "Loans?.xlsx", "Loans_.xlsx"):
        local = distinct_local_name(server, taken)
        taken.add(collision_key(local))
        names.append(local)
    assert names == ["Loans.xlsx", "LOANS (2).xlsx", "loans (3).xlsx", "Loans_.xlsx", "Loans_ (2).xlsx"]


@pytest.mark.parametrize(("name", "report"), [
    ("Loans_20260608_070012.xlsx", True), ("LOANS.XLSX", True), ("macro.xlsm", True),
    ("old.xls", True), ("readme.txt", False), ("Loans.csv", False), ("Loans.pdf", False),
    ("Loans.xlsx.part", False), ("Loans", False),
])
def test_what_is_a_report(name, report):
    assert is_report_name(name) is report


# ------------------------------------------------------------------ folders


@pytest.mark.parametrize(("folder", "normal", "local"), [
    ("upload/ALMA", "upload/ALMA", ("upload", "ALMA")),
    ("./upload//ALMA/", "upload/ALMA", ("upload", "ALMA")),
    ("/srv/upload/ALMA", "/srv/upload/ALMA", ("srv", "upload", "ALMA")),
    (".", ".", ()),
    ("/", "/", ()),
    ("upload/A:B", "upload/A:B", ("upload", "A_B")),
])
def test_folders_normalized_and_their_local_folders(folder, normal, local):
    assert folder_refusal(folder) is None
    assert normalize_folder(folder) == normal
    assert local_folder_parts(folder) == local


@pytest.mark.parametrize(("folder", "why"), [
    ("upload/../../etc", "'..'"),
    ("..", "'..'"),
    ("upload/.report-keeper", "reserved"),
    ("upload/.Report-Keeper-x", "reserved"),
    ("upload/\x1b[31m", "control character"),
    ("upload/\u202eevil", "control character"),
    ("  ", "empty"),
])
def test_folders_that_could_leave_local_dir_or_reach_our_files_are_refused(folder, why):
    reason = folder_refusal(folder)
    assert reason is not None and why in reason


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[profile.a]\nhost = "127.0.0.1"\nlocal_dir = "{tmp_path / "local"}"\n{body}\n')
    return path


def test_remote_dirs_in_the_config(tmp_path):
    profile = load_config(_config(tmp_path, 'remote_dirs = ["upload/ALMA/Daily_Report", "upload/ALMA"]')).profile("a")
    assert profile.folders == ("upload/ALMA/Daily_Report", "upload/ALMA")
    assert profile.remote_dir == "upload/ALMA/Daily_Report" and profile.several_folders
    assert profile.local_dir_of("upload/ALMA") == tmp_path / "local" / "upload" / "ALMA"
    assert profile.folder_key("upload/ALMA/") == "upload/ALMA"
    # remote_dir beside remote_dirs is one folder more, listed first.
    both = load_config(_config(tmp_path, 'remote_dir = "in"\nremote_dirs = ["out"]')).profile("a")
    assert both.folders == ("in", "out")
    # One folder: the old behaviour, copies straight into local_dir, identity without folder.
    one = load_config(_config(tmp_path, 'remote_dir = "upload/./ALMA/"')).profile("a")
    assert not one.several_folders and one.folder_key("upload/ALMA") == ""
    assert one.local_dir_of(one.folders[0]) == tmp_path / "local"


@pytest.mark.parametrize(("body", "key", "why"), [
    ('remote_dirs = []', "remote_dirs", "empty"),
    ('remote_dirs = ["a", 3]', "remote_dirs[1]", "expected a string"),
    ('remote_dirs = ["a", "../b"]', "remote_dirs[1]", "'..'"),
    ('remote_dirs = ["a", "a/"]', "remote_dirs[1]", "again"),
    ('remote_dirs = ["Daily", "daily"]', "remote_dirs[1]", "one local folder"),
    ('remote_dirs = ["a:b", "a_b"]', "remote_dirs[1]", "one local folder"),
    ('remote_dirs = [".", "/"]', "remote_dirs[1]", "one local folder"),
    ('remote_dirs = ["x/.report-keeper"]', "remote_dirs[0]", "reserved"),
    ('remote_dir = "../x"\nremote_dirs = ["y"]', "remote_dir", "'..'"),
    # remote_dir alone (one folder) is refused for the same reasons as each of remote_dirs
    ('remote_dir = "../x"', "remote_dir", "'..'"),
    ('remote_dir = "upload/../ALMA"', "remote_dir", "'..'"),
    ('remote_dir = ".."', "remote_dir", "'..'"),
    ('remote_dir = "upload/\\u202eslx.kcatta"', "remote_dir", "U+202E"),
    ('remote_dir = "upload/\\u0085ALMA"', "remote_dir", "U+0085"),
    ('remote_dir = "upload/\\u0009ALMA"', "remote_dir", "control character"),
    ('remote_dir = "x/.report-keeper"', "remote_dir", "reserved"),
    ('remote_dir = "x/.Report-Keeper-parts"', "remote_dir", "reserved"),
    ('remote_dir = "   "', "remote_dir", "empty"),
    (f'remote_dir = "upload/{"é" * 128}"', "remote_dir", "longer than 255 bytes"),
])
def test_bad_remote_dirs_name_the_key(tmp_path, body, key, why):
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, body)).profile()  # its own error: raised when it is picked
    assert err.value.key == f"profile.a.{key}" and why in err.value.reason


# ------------------------------------------------------------------ the ledger


def _f(name: str, minutes: int = 0, folder: str = "") -> RemoteFile:
    return RemoteFile(name, 100, T0 + timedelta(minutes=minutes), folder=folder)


def _report_of(f: RemoteFile) -> tuple[str, datetime]:
    return "Loans", f.mtime


def test_the_ledger_keeps_server_and_local_names_side_by_side(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite3", profile="p") as led:
        files = [_f("Loans:1.xlsx", 1), _f("loans_1.xlsx", 2), _f("LOANS_1.xlsx", 3)]
        change = led.record_listing(None, _report_of, files, T0, folder="upload")
        assert dict(change.local_names) == {"Loans:1.xlsx": "Loans_1.xlsx",
                                            "loans_1.xlsx": "loans_1 (2).xlsx",
                                            "LOANS_1.xlsx": "LOANS_1 (3).xlsx"}
        rows = {d.server_name: (d.local_name, d.folder) for d in led.deliveries()}
        assert rows == {"Loans:1.xlsx": ("Loans_1.xlsx", "upload"),
                        "loans_1.xlsx": ("loans_1 (2).xlsx", "upload"),
                        "LOANS_1.xlsx": ("LOANS_1 (3).xlsx", "upload")}
        # Assigned once: a later listing (even after one file is gone and back) keeps them.
        led.record_listing(None, _report_of, files[1:], T0 + timedelta(hours=1), folder="upload")
        again = led.record_listing(None, _report_of, files, T0 + timedelta(hours=2), folder="upload")
        assert again.local_names == change.local_names


def test_folders_are_scoped_when_several_are_watched(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite3", profile="p") as led:
        a = [_f("Loans.xlsx", 1, "in/a"), _f("Other.xlsx", 2, "in/a")]
        b = [_f("Loans.xlsx", 1, "in/b")]
        led.record_listing(None, _report_of, a, T0, folder="in/a", scoped=True)
        change = led.record_listing(None, _report_of, b, T0, folder="in/b", scoped=True,
                                    others=[("old", EntryKind.FOLDER)])
        assert change.gone == () and change.new_others == ("old",)
        assert dict(change.local_names) == {"in/b/Loans.xlsx": "Loans.xlsx"}  # its own folder's names
        names = {d.name: d.on_server for d in led.deliveries()}
        assert names == {"in/a/Loans.xlsx": True, "in/a/Other.xlsx": True, "in/b/Loans.xlsx": True}
        # Listing one folder never marks the other's files gone.
        change = led.record_listing(None, _report_of, a[:1], T0 + timedelta(hours=1), folder="in/a",
                                    scoped=True)
        assert change.gone == ("in/a/Other.xlsx",)
        assert {d.name for d in led.deliveries() if d.on_server} == {"in/a/Loans.xlsx", "in/b/Loans.xlsx"}
        assert [(o.folder, o.name, o.kind) for o in led.others()] == [("in/b", "old", "folder")]
        # Seen again: not new any more; gone from the listing: gone from the table.
        again = led.record_listing(None, _report_of, b, T0 + timedelta(hours=1), folder="in/b",
                                   scoped=True, others=[("old", EntryKind.FOLDER)])
        assert again.new_others == ()
        led.record_listing(None, _report_of, b, T0 + timedelta(hours=2), folder="in/b", scoped=True)
        assert led.others() == []


def test_migration_from_the_release_before_folders(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    # the release before the one that added folders (later migrations may follow it)
    before = next(i for i, m in enumerate(MIGRATIONS) if "CREATE TABLE remote_others" in m)
    for migration in MIGRATIONS[:before]:
        conn.executescript(migration)
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(before),))
    t = T0.isoformat(timespec="microseconds")
    for name in ("Loans:1.xlsx", "Loans:2.xlsx", "readme.txt"):
        conn.execute("INSERT INTO remote_files (profile, name, report, delivered_at, size, mtime,"
                     " first_seen, last_seen) VALUES ('p', ?, 'Loans', ?, 100, ?, ?, ?)",
                     (name, t, t, t, t))
    for name in ("Loans:1.xlsx", "readme.txt"):  # held under the server's own name (a Linux disk)
        conn.execute("INSERT INTO downloads (profile, name, size, mtime, sha256, local_path,"
                     " downloaded_at) VALUES ('p', ?, 100, ?, 'x', ?, ?)", (name, t, f"/l/{name}", t))
    conn.commit()
    conn.close()
    with Ledger.open(path, profile="p") as led:
        assert led.schema_version() == len(MIGRATIONS)
        # The readme was never a report: forgotten, so it cannot turn lost or unreadable.
        assert {d.name for d in led.deliveries()} == {"Loans:1.xlsx", "Loans:2.xlsx"}
        assert [d.name for d in led.downloads()] == ["Loans:1.xlsx"]
        files = [RemoteFile("Loans:1.xlsx", 100, T0), RemoteFile("Loans:2.xlsx", 100, T0)]
        change = led.record_listing(None, _report_of, files, T0 + timedelta(hours=1), folder=".")
        # The held copy keeps the name it was written under; the other gets a portable one.
        assert dict(change.local_names) == {"Loans:1.xlsx": "Loans:1.xlsx", "Loans:2.xlsx": "Loans_2.xlsx"}
        assert change.gone == () and change.new == ()


def test_the_verify_list_finds_copies_under_local_names_and_folders(tmp_path):
    from tui.core.config import Profile
    from tui.core.local_reports import find_local_reports

    local = tmp_path / "local"
    profile = Profile(name="p", host="127.0.0.1", local_dir=local, remote_dirs=("in/a", "in/b"))
    files = {"in/a": RemoteFile("Loans 2026-06-08T07:00:12.xlsx", 100, T0, folder="in/a"),
             "in/b": RemoteFile("Loans 2026-06-08T07:00:12.xlsx", 100, T0, folder="in/b")}
    with Ledger.open(tmp_path / "l.sqlite3", profile="p") as led:
        for folder, f in files.items():
            delivered = T0 - timedelta(days=folder == "in/b")
            change = led.record_listing(None, lambda _f, at=delivered: ("Loans", at),
                                        [f], T0, folder=folder, scoped=True)
            path = profile.local_dir_of(folder) / change.local_names[f.ident]
            path.parent.mkdir(parents=True)
            path.write_bytes(b"x" * 100)
            led.record_download(f.ident, size=100, sha256="x", local_path=path, mtime=f.mtime)
        found = {str(r.path.relative_to(local)): r for r in find_local_reports(local, profile, led)}
    assert set(found) == {"in/a/Loans 2026-06-08T07_00_12.xlsx", "in/b/Loans 2026-06-08T07_00_12.xlsx"}
    # Each copy is its own delivery (from the ledger), not a guess from the local name.
    assert found["in/a/Loans 2026-06-08T07_00_12.xlsx"].delivered_at == T0
    assert found["in/b/Loans 2026-06-08T07_00_12.xlsx"].delivered_at == T0 - timedelta(days=1)


@pytest.mark.parametrize(("body", "key"), [
    ('remote_dirs = ["a", "b"]\n[[profile.a.report]]\nname = "Counts"\nrolling = true', "report[0].rolling"),
    ('remote_dirs = ["a", "b"]\n[profile.a.defaults]\nrolling = true', "defaults.rolling"),
])
def test_rolling_reports_with_several_folders_are_refused_not_ignored(tmp_path, body, key):
    """Rolling reports are recognised in a profile that watches one folder only; a config
    that asks for them with several is refused (it would be silently ignored, and every
    replacement would be a 'changed' warning), saying what to do instead."""
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, body)).profile()  # its own error: raised when it is picked
    assert err.value.key == f"profile.a.{key}"
    assert "one folder" in err.value.reason and "profile of its own" in err.value.reason
    # rolling = false (the inference switched off) is fine with several folders
    profile = load_config(_config(tmp_path, body.replace("true", "false"))).profile("a")
    assert profile.several_folders


def test_the_verify_list_holds_every_report_sync_downloads(tmp_path):
    """sync downloads .xlsx, .xlsm and .xls (the last to say the format is wrong): the Verify
    screen's list holds each of them, and nothing else."""
    from tests.xlsx_factory import write_report
    from tui.core.local_reports import find_local_reports

    write_report(tmp_path / "Loans_20260601_070000.xlsx")
    write_report(tmp_path / "Loans_20260602_070000.XLSM")
    (tmp_path / "Loans_20260603_070000.xls").write_bytes(b"\xd0\xcf\x11\xe0 old format")
    (tmp_path / "readme.txt").write_text("not a report")
    names = sorted(r.path.name for r in find_local_reports(tmp_path))
    assert names == ["Loans_20260601_070000.xlsx", "Loans_20260602_070000.XLSM", "Loans_20260603_070000.xls"]
