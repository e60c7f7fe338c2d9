"""`report-keeper verify`: in-process through tui.cli.main, and once as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.xlsx_factory import BAD_INPUTS, write_report
from tui.cli import main

BASE = "Loans Per Patron From 3 Days Ago"
FILE_KEYS = {"path", "name", "report", "delivered_at", "status", "rows", "header_row", "columns", "message"}


@pytest.fixture(autouse=True)
def _utc_and_wide(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")  # names without a config are read in the machine's zone
    monkeypatch.setenv("COLUMNS", "200")  # rich: no wrapping in the human output


def name(day: int, hms: str = "070012") -> str:
    return f"{BASE}_202611{day:02d}_{hms}.xlsx"


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main(["verify", "--json", *map(str, argv)])
    out = capsys.readouterr().out
    return code, json.loads(out)  # exactly one JSON document


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "reports"
    d.mkdir()
    # written out of order: the output is sorted by delivery time; the rows describe the day
    # each run covers (the default lag_days is 3)
    write_report(d / name(26), n_rows=5, day=date(2026, 11, 23))
    write_report(d / name(24), n_rows=8, engine="openpyxl", day=date(2026, 11, 21))
    write_report(d / name(25, "071500"), [])
    return d


def test_folder_json_shape_sorted_and_exit_code(capsys, folder):
    code, doc = run_json(capsys, folder)
    assert code == 1
    assert doc["status"] == "warning"
    files = doc["files"]
    assert [f["name"] for f in files] == [name(24), name(25, "071500"), name(26)]
    assert [f["status"] for f in files] == ["ok", "empty", "ok"]
    assert [f["rows"] for f in files] == [8, 0, 5]
    for f in files:
        assert FILE_KEYS <= set(f)
        assert f["report"] == BASE
        assert f["header_row"] == 3
        assert Path(f["path"]).parent == folder
    assert files[0]["delivered_at"] == "2026-11-24T07:00:12+00:00"
    assert files[1]["delivered_at"] == "2026-11-25T07:15:00+00:00"
    # the default report settings apply: lag 3 days, so the empty run covers the 22nd
    assert "2026-11-22" in files[1]["message"]


def test_all_ok_is_exit_0(capsys, tmp_path):
    write_report(tmp_path / name(1), n_rows=2, day=date(2026, 10, 29))
    code, doc = run_json(capsys, tmp_path / name(1))
    assert (code, doc["status"]) == (0, "ok")


def test_bad_files_are_critical_and_do_not_stop_the_rest(capsys, folder):
    for kind, writer in BAD_INPUTS.items():
        writer(folder / f"{kind}.xlsx")
    code, doc = run_json(capsys, folder, folder / "does-not-exist.xlsx")
    assert code == 2 and doc["status"] == "critical"
    by_name = {f["name"]: f for f in doc["files"]}
    assert len(by_name) == 3 + len(BAD_INPUTS) + 1
    for kind in BAD_INPUTS:
        assert by_name[f"{kind}.xlsx"]["status"] == "unreadable", kind
    missing = by_name["does-not-exist.xlsx"]
    assert missing["status"] == "unreadable" and "does not exist" in missing["message"]
    assert by_name[name(26)]["status"] == "ok"
    # undated files (no timestamp in the name) sort after dated ones only by their mtime
    assert doc["files"][-1]["name"] == "does-not-exist.xlsx"


@pytest.mark.parametrize(
    "setup",
    ["empty", "only-other-files"],
)
def test_folder_with_no_reports_is_exit_3(capsys, tmp_path, setup):
    d = tmp_path / "d"
    d.mkdir()
    if setup == "only-other-files":
        (d / "notes.txt").write_text("x")
        (d / "~$lock.xlsx").write_bytes(b"\0" * 165)
        (d / ".hidden.xlsx").write_bytes(b"")
        (d / "partial.xlsx.part").write_bytes(b"PK")
        (d / "old.xls").write_bytes(b"")
        (d / "sub").mkdir()
        write_report(d / "sub" / name(1))
    code = main(["verify", "--json", str(d)])
    captured = capsys.readouterr()
    assert code == 3
    # one document all the same (what a cron job parses), saying what the stderr line says
    doc = json.loads(captured.out)
    assert doc == {"status": "critical", "files": [], "error": doc["error"], "error_kind": "usage"}
    assert captured.err == f"report-keeper: {doc['error']}\n"
    assert "no reports in the folder" in captured.err and str(d) in captured.err


def test_folder_scan_rules_and_explicit_files(capsys, tmp_path):
    write_report(tmp_path / "upper.XLSX", n_rows=1)
    write_report(tmp_path / "macro.xlsm", n_rows=1)
    BAD_INPUTS["xls-renamed"](tmp_path / "legacy.xls")
    code, doc = run_json(capsys, tmp_path)
    assert sorted(f["name"] for f in doc["files"]) == ["macro.xlsm", "upper.XLSX"]
    assert code == 0
    # named explicitly, any extension is verified; the same file twice counts once
    code, doc = run_json(capsys, tmp_path / "legacy.xls", tmp_path / "macro.xlsm", tmp_path / "macro.xlsm")
    assert [f["name"] for f in doc["files"]].count("macro.xlsm") == 1
    assert code == 2
    legacy = next(f for f in doc["files"] if f["name"] == "legacy.xls")
    assert legacy["status"] == "unreadable" and ".xls" in legacy["message"]


def test_undated_name_falls_back_to_mtime(capsys, tmp_path):
    p = write_report(tmp_path / "Loans export.xlsx", n_rows=2)
    when = datetime(2026, 10, 1, 7, 3, 0, tzinfo=UTC).timestamp()
    os.utime(p, (when, when))
    _, doc = run_json(capsys, p)
    f = doc["files"][0]
    assert f["report"] == "Loans export"
    assert f["delivered_at"] == "2026-10-01T07:03:00+00:00"


CONFIG = """
[profile.default]
host = "127.0.0.1"
username = "abcftp"
remote_dir = "upload/ALMA/Daily_Report"
timezone = "America/Chicago"

[[profile.default.report]]
name = "{base}"
expected_columns = {columns}
closed_days = ["2026-11-22"]
min_rows = 1

[[profile.default.report]]
name = "Weekly Fines"
pattern = '^fines-(?P<ts>\\d{{8}}_\\d{{6}})(?P<name>)\\.xlsx$'
"""


def write_config(path: Path, columns: str = '["Primary Identifier", "Title"]') -> Path:
    path.write_text(CONFIG.format(base=BASE, columns=columns))
    return path


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_expected_columns_and_closed_days(capsys, folder, tmp_path, where):
    cfg = write_config(tmp_path / "c.toml")
    argv = ["--config", str(cfg), "verify", "--json", str(folder)]
    if where == "after":
        argv = ["verify", "--json", "--config", str(cfg), str(folder)]
    code = main(argv)
    doc = json.loads(capsys.readouterr().out)
    # the empty report of the 25th covers the 22nd, a closed day
    assert [f["status"] for f in doc["files"]] == ["ok", "empty-closed", "ok"]
    assert code == 0
    assert doc["files"][0]["delivered_at"] == "2026-11-24T07:00:12-06:00"  # profile time zone

    schema_cfg = write_config(tmp_path / "s.toml", '["Primary Identifier", "Patron Barcode"]')
    code, doc = run_json(capsys, "--config", schema_cfg, folder)
    assert code == 2
    assert {f["status"] for f in doc["files"]} == {"schema"}
    assert doc["files"][0]["missing_columns"] == ["Patron Barcode"]


def test_config_pattern_names_the_report(capsys, tmp_path):
    cfg = write_config(tmp_path / "c.toml")
    p = write_report(tmp_path / "fines-20261123_081500.xlsx", n_rows=3)
    code, doc = run_json(capsys, "--config", cfg, p)
    f = doc["files"][0]
    assert (f["report"], f["delivered_at"]) == ("Weekly Fines", "2026-11-23T08:15:00-06:00")


def test_default_config_is_used_when_present_and_optional_when_absent(capsys, folder):
    from tui.core.config import default_config_path

    path = default_config_path()
    assert not path.exists()  # conftest points the config dir at a fresh temporary folder
    code, _ = run_json(capsys, folder)
    assert code == 1
    path.parent.mkdir(parents=True)
    write_config(path)
    code, doc = run_json(capsys, folder)
    assert code == 0 and doc["files"][1]["status"] == "empty-closed"


@pytest.mark.parametrize(
    "content, argv_extra, expect",
    [
        ('[profile.default]\nhost = "h"\nbogus = 1\n', [], "bogus"),
        ("not toml [", [], "TOML"),
        (None, [], "does not exist"),
        ('[profile.default]\nhost = "h"\n', ["--profile", "nope"], "no such profile"),
    ],
)
def test_bad_explicit_config_is_exit_3(capsys, folder, tmp_path, content, argv_extra, expect):
    cfg = tmp_path / "bad.toml"
    if content is not None:
        cfg.write_text(content)
    code = main(["verify", "--json", "--config", str(cfg), *argv_extra, str(folder)])
    captured = capsys.readouterr()
    assert code == 3
    doc = json.loads(captured.out)
    assert doc == {"status": "critical", "files": [], "error": doc["error"], "error_kind": "config"}
    assert captured.err == f"report-keeper: {doc['error']}\n"
    assert expect in captured.err and "bad.toml" in captured.err


def test_profile_without_any_config_is_exit_3(capsys, folder):
    code = main(["verify", "--profile", "library", str(folder)])
    assert code == 3
    assert "--config" in capsys.readouterr().err


def test_human_output_is_a_table_sorted_by_delivery(capsys, folder):
    write_report(folder / "[bold red]odd name.xlsx", n_rows=1)
    BAD_INPUTS["truncated"](folder / name(23))
    code = main(["verify", str(folder)])
    out = capsys.readouterr().out
    assert code == 2
    assert "Delivered" in out and "Status" in out
    order = [out.index(n) for n in (name(23), name(24), name(25, "071500"), name(26))]
    assert order == sorted(order)
    assert "[bold red]odd name.xlsx" in out  # shown literally, never as markup
    flat = " ".join(out.split())
    assert "(unreadable): The file is damaged or incomplete" in flat
    assert "Download it again" in flat
    assert "5 files: 3 ok, 1 empty, 1 unreadable. Overall: critical." in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_verify_help_documents_the_choices(capsys):
    assert main(["verify", "--help"]) == 0
    out = capsys.readouterr().out
    assert "does not exist" in out and "exit 3" in out and "*.xlsm" in out


def test_usage_error_is_exit_3(capsys):
    assert main(["verify"]) == 3
    assert main(["verify", "--jobs", "x", "a.xlsx"]) == 3


def test_whole_process_json(tmp_path, folder):
    """The installed console script, as cron or a monitoring plugin runs it."""
    script = Path(sys.executable).parent / "report-keeper"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "tui"]
    env = dict(os.environ, TZ="UTC")
    proc = subprocess.run([*cmd, "verify", "--json", str(folder)], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "warning"
    assert [f["status"] for f in doc["files"]] == ["ok", "empty", "ok"]
    # the verify path starts without the TUI toolkit
    probe = (
        "import sys; from tui.cli import main; "
        f"main(['verify', '--json', {str(folder)!r}]); "
        "sys.stderr.write('textual' in sys.modules and 'TEXTUAL' or 'clean')"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert proc.stderr.strip().endswith("clean"), proc.stderr


# A copy's modification time is untrusted too: a file system with 64-bit times (tmpfs, btrfs)
# keeps one no clock shows, past the year 9999 or before year 1, which Python's dates cannot hold.
FAR_TIMES = [2**40, -(2**40), 253402300799]  # year 36812, year -32873, 9999-12-31 23:59:59 UTC


@pytest.fixture
def far_folder():
    """A folder on a file system that keeps such times (tmpfs); skipped where there is none."""
    import shutil
    import tempfile

    base = Path("/dev/shm")
    if not (base.is_dir() and os.access(base, os.W_OK)):
        pytest.skip("no writable tmpfs at /dev/shm to keep a file time past the year 9999")
    d = Path(tempfile.mkdtemp(prefix="rk-far-times-", dir=base))
    probe = d / "probe"
    probe.write_bytes(b"")
    os.utime(probe, (2**40, 2**40))
    kept = probe.stat().st_mtime == 2**40
    probe.unlink()
    try:
        if not kept:
            pytest.skip("the tmpfs here does not keep a file time past the year 9999")
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("seconds", FAR_TIMES)
def test_a_copy_whose_modification_time_no_clock_shows_is_verified(capsys, far_folder, seconds, tmp_path):
    p = write_report(far_folder / "Loans export.xlsx", n_rows=2)
    os.utime(p, (seconds, seconds))
    code, doc = run_json(capsys, p)
    (f,) = doc["files"]
    assert code == 0 and f["status"] == "ok" and f["report"] == "Loans export"
    # the nearest end of the times an SFTP server can give a file
    assert f["delivered_at"] == ("1970-01-01T00:00:00+00:00" if seconds < 0 else "2106-02-07T06:28:15+00:00")
    # with a profile whose zone is ahead of UTC (converting 9999-12-31 there overflows)
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profile.default]\nhost = "127.0.0.1"\nremote_dir = "."\ntimezone = "Pacific/Kiritimati"\n')
    code, doc = run_json(capsys, "--config", cfg, p)
    assert code == 0 and doc["files"][0]["status"] == "ok"


@pytest.mark.parametrize("seconds", FAR_TIMES)
def test_the_verify_list_takes_a_copy_whose_modification_time_no_clock_shows(far_folder, seconds, tmp_path):
    from tui.core.config import load_config
    from tui.core.local_reports import find_local_reports

    p = write_report(far_folder / "Loans export.xlsx", n_rows=2)
    os.utime(p, (seconds, seconds))
    cfg = tmp_path / "config.toml"
    cfg.write_text('[profile.default]\nhost = "127.0.0.1"\nremote_dir = "."\ntimezone = "Pacific/Kiritimati"\n')
    for profile in (None, load_config(cfg).profile()):
        (found,) = find_local_reports(far_folder, profile)
        assert found.name == "Loans export.xlsx" and found.report_name == "Loans export"
        assert found.delivered_at.astimezone(UTC).year == (1970 if seconds < 0 else 2106)
