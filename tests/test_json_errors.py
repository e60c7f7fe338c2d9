"""``--json`` prints exactly one JSON document, also when the command line or the config is
wrong: a cron job or a monitoring system that parses stdout always has something to parse.

Each case runs the real command (``tui.cli.main`` in this process, and a few as a process of
their own) and reads stdout whole with ``json.loads``: a second document, or none, fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.xlsx_factory import write_report
from tui import __version__
from tui.cli import main

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"

#: The top-level fields of each command's document (docs/JSON.md), an error's one included.
SHAPES: dict[str, set[str]] = {
    "verify": {"status", "files"},
    "sync": {"status", "downloaded", "skipped", "failed", "refused", "files", "lost", "lost_versions",
             "refetched", "missing_locally", "ignored", "folders", "error", "error_kind", "purged",
             "waiting_for_export", "purge_errors", "earlier_paths"},
    "check": {"status", "now", "connection", "reports", "refused", "ignored", "folders", "earlier_paths"},
    "export": {"status", "out", "format", "rows", "files", "reports", "since", "until", "columns",
               "pseudonymized_columns", "pseudonymized", "identifier_columns",
               "identifier_columns_not_found", "identifier_columns_absent", "key_file", "key_id",
               "key_created", "days",
               "days_by_report", "superseded", "column_drift", "merged_columns", "columns_not_merged",
               "not_held", "few_rows", "in_no_run", "files_read",
               "files_from_cache", "seconds", "export_id"},
    "purge": {"status", "dry_run", "policy", "purged", "waiting_for_export", "errors", "withdrawn",
              "parts_removed", "cache_entries_removed"},
    "notify": {"profile", "status", "channels"},
}
COMMANDS = list(SHAPES)
ALL_PROFILES = ["sync", "check"]


@pytest.fixture
def place(tmp_path):
    """A good config (one profile, ``library``), a bad one, a missing one, a folder with a report."""
    good = tmp_path / "good.toml"
    good.write_text(
        f'[profile.library]\nhost = "127.0.0.1"\nremote_dir = "upload"\n'
        f'local_dir = "{tmp_path / "local"}"\nledger = "{tmp_path / "ledger.sqlite3"}"\n'
        '[[profile.library.report]]\nname = "Loans"\nschedule = "daily"\nat = "07:00"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("not toml [\n")
    folder = tmp_path / "reports"
    folder.mkdir()
    write_report(folder / "Loans_20260609_070000.xlsx")
    return {"good": good, "bad": bad, "missing": tmp_path / "missing.toml", "folder": folder,
            "out": tmp_path / "out.parquet"}


def argv(command: str, place: dict[str, Path], *extra: str, json_flag: bool = True) -> list[str]:
    """The command's ordinary command line (what it needs besides the config), plus ``extra``."""
    words = {
        "verify": ["verify", str(place["folder"])],
        "sync": ["sync"],
        "check": ["check", "--offline"],
        "export": ["export", "--out", str(place["out"])],
        "purge": ["purge"],
        "notify": ["notify", "--test"],
    }[command]
    return [*words, *(["--json"] if json_flag else []), *extra]


def one_document(out: str, command: str | None, *, all_profiles: bool = False) -> dict:
    """stdout is exactly one JSON document of the command's usual shape, failed at the start."""
    doc = json.loads(out)  # raises on nothing, and on a second document ("Extra data")
    assert isinstance(doc, dict)
    assert doc["status"] == "critical"
    assert isinstance(doc["error"], str) and doc["error"] and "\n" not in doc["error"]
    if all_profiles:
        assert set(doc) == {"status", "profiles", "error", "error_kind"} and doc["profiles"] == {}
    else:
        assert command is not None
        assert SHAPES[command] | {"error", "error_kind"} <= set(doc), SHAPES[command] - set(doc)
        for key, value in doc.items():  # nothing was done: every list is empty
            if isinstance(value, list):
                assert value == [], key
    return doc


def run(capsys, words: list[str]) -> tuple[int, str, str]:
    code = main(words)
    got = capsys.readouterr()
    return code, got.out, got.err


def error_line(err: str) -> str:
    """The one stderr line of a failed start (an argparse error has its usage lines first)."""
    lines = err.strip().splitlines()
    assert lines, err
    return lines[-1]


# ------------------------------------------------------------------------ config errors


CONFIG_CASES = {
    "missing-config": (lambda p: ["--config", str(p["missing"])], "does not exist"),
    "invalid-toml": (lambda p: ["--config", str(p["bad"])], "not valid TOML"),
    "unknown-profile": (lambda p: ["--config", str(p["good"]), "--profile", "nope"], "nope"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
@pytest.mark.parametrize("command", COMMANDS)
def test_a_config_error_prints_one_config_document(capsys, place, command, case):
    extra, says = CONFIG_CASES[case]
    code, out, err = run(capsys, argv(command, place, *extra(place)))
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "config"
    assert says in doc["error"]
    # the stderr line is the same message, as it was before
    assert [line for line in err.splitlines() if line] == [f"report-keeper: {doc['error']}"]


@pytest.mark.parametrize("case", list(CONFIG_CASES))
@pytest.mark.parametrize("command", COMMANDS)
def test_without_json_a_config_error_leaves_stdout_empty(capsys, place, command, case):
    extra, says = CONFIG_CASES[case]
    code, out, err = run(capsys, argv(command, place, *extra(place), json_flag=False))
    assert code == 3 and out == ""
    [line] = [line for line in err.splitlines() if line]
    assert line.startswith("report-keeper: ") and says in line


@pytest.mark.parametrize("command", ALL_PROFILES)
def test_all_profiles_with_a_missing_config_prints_an_empty_profiles_document(capsys, place, command):
    code, out, err = run(capsys, argv(command, place, "--all-profiles", "--config", str(place["missing"])))
    assert code == 3, err
    doc = one_document(out, command, all_profiles=True)
    assert doc["error_kind"] == "config" and "does not exist" in doc["error"]
    assert error_line(err) == f"report-keeper: {doc['error']}"


@pytest.mark.parametrize("command", ALL_PROFILES)
@pytest.mark.parametrize(("extra", "option"), [(["--profile", "library"], "--profile"),
                                               (["--parallel", "0"], "--parallel")],
                         ids=["profile", "silly-parallel"])
def test_a_conflicting_or_silly_option_with_all_profiles_is_a_usage_document(capsys, place, command,
                                                                              extra, option):
    words = argv(command, place, "--config", str(place["good"]), "--all-profiles", *extra)
    code, out, err = run(capsys, words)
    assert code == 3, err
    doc = one_document(out, command, all_profiles=True)
    assert doc["error_kind"] == "usage" and option in doc["error"]
    assert error_line(err) == f"report-keeper: {doc['error']}"
    code, out, err = run(capsys, [w for w in words if w != "--json"])
    assert code == 3 and out == "" and option in err


@pytest.mark.parametrize("command", ["sync", "check", "export", "purge"])
def test_a_ledger_that_cannot_be_opened_prints_a_ledger_document(capsys, place, tmp_path, command):
    (tmp_path / "ledger.sqlite3").write_bytes(b"this is not an SQLite database, it only has its name" * 40)
    code, out, err = run(capsys, argv(command, place, "--config", str(place["good"])))
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "ledger" and "ledger.sqlite3" in doc["error"]
    assert error_line(err) == f"report-keeper: {doc['error']}"


def _other_sqlite(path: Path) -> None:
    import sqlite3
    with sqlite3.connect(path) as conn:  # a database, but not a ledger: no table of ours
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()


EMPTY_LEDGERS = {
    "zero-bytes": (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    "not-a-ledger": (_other_sqlite, "holds no ledger"),
}


@pytest.mark.parametrize("case", list(EMPTY_LEDGERS))
@pytest.mark.parametrize("command", ["sync", "check", "export", "purge"])
def test_a_ledger_file_that_holds_nothing_is_refused_not_taken_as_new(capsys, place, tmp_path,
                                                                      command, case):
    """A ledger file truncated to nothing (a restore gone wrong, ``> ledger.sqlite3``) is not a
    new ledger: the history would be gone without a word. Refused like an unreadable one, the
    file left as it was."""
    make, says = EMPTY_LEDGERS[case]
    path = tmp_path / "ledger.sqlite3"
    make(path)
    before = path.read_bytes()
    code, out, err = run(capsys, argv(command, place, "--config", str(place["good"])))
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "ledger" and str(path) in doc["error"] and says in doc["error"]
    assert "restore it from a backup" in doc["error"] and "move it aside" in doc["error"]
    assert error_line(err) == f"report-keeper: {doc['error']}"
    assert path.read_bytes() == before  # left as it was found
    assert sorted(q.name for q in tmp_path.iterdir() if q.name.startswith("ledger")) == ["ledger.sqlite3"]


#: A ledger path that names no regular file: how to make it, what the message calls it (a
#: folder is the config's error, "is a folder; point ledger at a file").
NOT_FILES = {
    "fifo": (lambda path: os.mkfifo(path), "is a FIFO (named pipe)"),
    "link-to-dev-zero": (lambda path: path.symlink_to("/dev/zero"), "is a character device (/dev/zero)"),
    "link-to-dev-null": (lambda path: path.symlink_to("/dev/null"), "is a character device (/dev/null)"),
}


@pytest.mark.parametrize("case", list(NOT_FILES))
@pytest.mark.parametrize("command", ["sync", "check", "export", "purge"])
def test_a_ledger_path_that_is_no_regular_file_is_refused_saying_what_it_is(capsys, place, tmp_path,
                                                                          command, case):
    """A FIFO, a device or a folder at the ledger's path is refused at once (a FIFO is never
    opened: reading one blocks until something writes to it), saying what it is and what to
    do, and is left as it was."""
    make, says = NOT_FILES[case]
    path = tmp_path / "ledger.sqlite3"
    make(path)
    before = (os.lstat(path).st_mode, os.path.realpath(path))
    code, out, err = run(capsys, argv(command, place, "--config", str(place["good"])))
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "ledger" and str(path) in doc["error"], doc["error"]
    assert f"{says}, not a regular file" in doc["error"] and "set `ledger` in the profile" in doc["error"], doc["error"]
    assert error_line(err) == f"report-keeper: {doc['error']}"
    assert (os.lstat(path).st_mode, os.path.realpath(path)) == before
    assert sorted(q.name for q in tmp_path.iterdir() if q.name.startswith("ledger")) == ["ledger.sqlite3"]


# ------------------------------------------------------------------------ usage errors


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_option_prints_one_usage_document(capsys, place, command):
    code, out, err = run(capsys, argv(command, place, "--config", str(place["good"]), "--bogus"))
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "usage"
    assert "unrecognized arguments: --bogus" in doc["error"]
    # argparse's own lines on stderr, as before: its usage, then its error line
    assert err.startswith("usage: ") and error_line(err) == f"report-keeper: error: {doc['error']}"


@pytest.mark.parametrize("command", COMMANDS)
def test_an_option_missing_its_value_prints_one_usage_document(capsys, place, command):
    code, out, err = run(capsys, argv(command, place, "--config"))
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "usage" and "--config" in doc["error"] and "expected one argument" in doc["error"]
    assert error_line(err) == f"report-keeper {command}: error: {doc['error']}"  # the subcommand's parser


@pytest.mark.parametrize(("command", "extra", "says"), [
    ("sync", ["--parallel", "many"], "invalid int value"),
    ("check", ["--parallel", "many"], "invalid int value"),
    ("verify", ["--jobs", "0"], "between 1 and 64"),
    ("verify", ["--max-seconds", "nan"], "positive number"),
])
def test_a_bad_option_value_prints_one_usage_document(capsys, place, command, extra, says):
    code, out, err = run(capsys, argv(command, place, *extra))
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "usage" and says in doc["error"]


@pytest.mark.parametrize("command", ALL_PROFILES)
def test_an_unknown_option_with_all_profiles_prints_an_empty_profiles_document(capsys, place, command):
    code, out, err = run(capsys, argv(command, place, "--all-profiles", "--bogus"))
    assert code == 3, err
    doc = one_document(out, command, all_profiles=True)
    assert doc["error_kind"] == "usage"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_pinned_clock_prints_one_usage_document(capsys, monkeypatch, place, command):
    monkeypatch.setenv("REPORT_KEEPER_NOW", "yesterday at noon")
    code, out, err = run(capsys, argv(command, place, "--config", str(place["good"])))
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "usage" and "REPORT_KEEPER_NOW" in doc["error"]
    assert error_line(err) == f"report-keeper: {doc['error']}"
    code, out, err = run(capsys, argv(command, place, "--config", str(place["good"]), json_flag=False))
    assert code == 3 and out == "" and "REPORT_KEEPER_NOW" in err


@pytest.mark.parametrize(("command", "extra", "says", "kind"), [
    ("verify", [], "no reports in the folder", "usage"),
    ("export", ["--since", "2026-13-01"], "--since", "usage"),
    ("export", ["--key-file", "k"], "--key-file is only used with --pseudonymize", "usage"),
    ("export", ["--report", "Nope"], "no report named 'Nope'", "usage"),
    ("notify", [], "no alert channel is configured", "config"),
])
def test_a_command_s_own_error_prints_one_document(capsys, place, tmp_path, command, extra, says, kind):
    words = argv(command, place, "--config", str(place["good"]), *extra)
    if command == "verify":
        empty = tmp_path / "empty"
        empty.mkdir()
        words[1] = str(empty)
    code, out, err = run(capsys, words)
    assert code == 3, err
    doc = one_document(out, command)
    assert says in doc["error"] and doc["error_kind"] == kind
    assert error_line(err) == f"report-keeper: {doc['error']}"


def test_an_option_s_hostile_name_stays_inert_in_the_document(capsys, place):
    code, out, err = run(capsys, argv("sync", place, "--\x1b]0;pwned\x07\u202e"))
    assert code == 3
    doc = one_document(out, "sync")
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "pwned" in doc["error"] and "\x1b" not in doc["error"]
    # argparse's own line on stderr quotes the option too: escaped there as well
    assert "pwned" in err and "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    assert "\\u001b" in err


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["plain", "json"])
def test_a_hostile_option_name_cannot_drive_the_terminal_from_argparse(place, json_flag):
    done = subprocess.run([sys.executable, "-m", "tui", "check", *json_flag, "--\x1b]0;pwned\x07"],
                          capture_output=True, env={**os.environ, "REPORT_KEEPER_NOW": NOW}, cwd=ROOT)
    assert done.returncode == 3
    assert b"pwned" in done.stderr and b"\x1b" not in done.stderr and b"\x07" not in done.stderr


# ------------------------------------------------------------------------ no document


@pytest.mark.parametrize("words", [
    ["sync", "--json", "--help"],
    ["check", "--json", "-h"],
    ["--version", "verify", "--json"],
])
def test_help_and_version_print_no_document(capsys, words):
    code, out, _err = run(capsys, words)
    assert code == 0
    assert out.startswith(("usage: ", f"report-keeper {__version__}"))
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_notify_without_test_is_a_usage_document(capsys):
    code, out, err = run(capsys, ["notify", "--json"])
    assert code == 3, err
    doc = one_document(out, "notify")
    assert doc["error_kind"] == "usage" and "--test" in doc["error"]


@pytest.mark.parametrize("words", [
    ["init", "--json"],  # init takes no --json: a usage error like any other
    ["schedule", "--json", "--bogus"],
    ["verify", "--bogus", "--", "--json"],  # after "--" it is a file's name, not the option
    ["--bogus", "sync"],
    ["sync", "--bogus"],
])
def test_a_usage_error_without_json_asked_prints_no_document(capsys, words):
    code, out, err = run(capsys, words)
    assert code == 3 and out == "", out
    assert "error:" in error_line(err)


# ------------------------------------------------------------------------ exactly one


def test_no_second_document_after_one_was_printed(capsys):
    import argparse

    from tui.commands import common

    args = argparse.Namespace(command="verify", json=True)
    common.new_run()
    common.print_json({"status": "ok", "files": []})
    assert common.fail_usage("something went wrong afterwards", args) == 3
    out = capsys.readouterr()
    assert json.loads(out.out) == {"status": "ok", "files": []}
    assert "something went wrong afterwards" in out.err
    common.new_run()


def test_each_run_in_one_process_prints_its_own_document(capsys, place):
    """A second ``main`` in the same process (tests, a program embedding it) still prints one."""
    for _ in range(2):
        code, out, _err = run(capsys, argv("check", place, "--config", str(place["missing"])))
        assert code == 3
        one_document(out, "check")


# ------------------------------------------------------------------------ shapes


def test_the_error_documents_keep_every_field_of_the_real_documents(place):
    """The empty fields of an error document are the real documents' fields (and types)."""
    from datetime import UTC, datetime
    from pathlib import Path as P

    from tui.commands.common import error_document
    from tui.core.export import ExportResult
    from tui.core.retention import PurgeResult
    from tui.sftp.sync import SyncResult

    export = ExportResult(out=P("x.parquet"), format="parquet", reports=(), since=None, until=None, days=[],
                          rows=0, files=0, columns=(), pseudonymized_columns=None, identifier_columns=(),
                          missing_identifier_columns=(), column_drift=[], key=None, read=0, cached=0,
                          seconds=0.0)
    real = {
        "sync": SyncResult().finish().to_json(),
        "purge": PurgeResult(dry_run=False, now=datetime(2026, 6, 10, tzinfo=UTC)).to_json(),
        "export": export.to_json(),
    }
    for command, document in real.items():
        empty = error_document(command, "it failed", "usage")
        assert set(document) <= set(empty), (command, set(document) - set(empty))
        for key, value in document.items():
            if value is not None and empty[key] is not None:
                assert type(empty[key]) is type(value) or key == "status", (command, key)


def test_the_check_error_document_keeps_every_field_of_a_real_check(capsys, monkeypatch, place):
    from tui.commands.common import error_document

    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    code, out, err = run(capsys, argv("check", place, "--config", str(place["good"])))
    assert code in (0, 1, 2), err
    real = json.loads(out)
    real.pop("notify")  # alerts are sent after an evaluation; a failed start sent none
    empty = error_document("check", "it failed", "config")
    assert set(real) <= set(empty), set(real) - set(empty)
    assert set(real["connection"]) <= set(empty["connection"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------ real processes


def rk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_KEEPER_")}
    full.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True,
                          env=full, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)


def test_as_a_process_an_unknown_option_prints_one_document(place):
    done = rk("sync", "--config", str(place["good"]), "--json", "--bogus")
    assert done.returncode == 3, done.stderr
    doc = one_document(done.stdout, "sync")
    assert doc["error_kind"] == "usage" and "--bogus" in doc["error"]
    assert "Traceback" not in done.stderr


def test_as_a_process_a_missing_config_prints_one_document(place):
    done = rk("check", "--offline", "--json", "--config", str(place["missing"]))
    assert done.returncode == 3, done.stderr
    doc = one_document(done.stdout, "check")
    assert doc["error_kind"] == "config"
    assert done.stderr == f"report-keeper: {doc['error']}\n"
    done = rk("check", "--offline", "--config", str(place["missing"]))
    assert done.returncode == 3 and done.stdout == ""


def test_as_a_process_a_bad_pinned_clock_prints_one_document(place):
    done = rk("verify", "--json", str(place["folder"]), env={"REPORT_KEEPER_NOW": "2026-02-30T09:00"})
    assert done.returncode == 3, done.stderr
    doc = one_document(done.stdout, "verify")
    assert doc["error_kind"] == "usage" and "REPORT_KEEPER_NOW" in doc["error"]
