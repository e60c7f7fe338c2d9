"""One log file, several processes writing to it (the app and a scheduled ``sync``; the
processes of one ``sync --all-profiles`` run), each with a rotating handler of its own.

A plain rotating handler rotates whenever the file *it* writes to is full; after another
process rotated the log, that file is the full first backup, so each process rotated once more
in turn: the backups shifted several times over and the older history dropped early. The log
is rotated once when it fills, whoever fills it; the other processes go on in the new file.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from tests.test_sync_processes import PROFILES, _sshd_config, _sync, served  # noqa: F401 - fixture
from tui.core import logs


def _log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state" / "report-keeper" / "log"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _history(d: Path, fill: int) -> dict[str, bytes]:
    """A log of ``fill`` bytes and three backups, each line naming the file it was written as."""
    files = {}
    for suffix in ("", ".1", ".2", ".3"):
        name = "report-keeper.log" + suffix
        line = f"2026-06-0{len(suffix) + 1} 07:00:00,000 [1] INFO report_keeper: old line of {name}\n".encode()
        size = fill if suffix == "" else 1000
        files[name] = (line * (size // len(line) + 1))[:size]
        (d / name).write_bytes(files[name])
    return files


def _pids(text: str) -> set[str]:
    return set(re.findall(r"^\S+ \S+ \[(\d+)\] ", text, re.M)) - {"1"}


def _record(text: str) -> logs.logging.LogRecord:
    return logs.logging.LogRecord("report_keeper", logs.logging.INFO, __file__, 1, text, None, None)


def test_the_log_is_rotated_once_when_it_fills_whichever_process_writes_next(tmp_path):
    d = _log_dir(tmp_path)
    old = _history(d, logs.MAX_BYTES - 5)  # the next line of anyone fills it
    path = d / "report-keeper.log"
    # Two processes' handlers, both opened on the log as it was (as the app and a sync are).
    app, sync = (logs.SharedRotatingHandler(path, maxBytes=logs.MAX_BYTES, backupCount=logs.BACKUPS,
                                            encoding="utf-8") for _ in range(2))
    try:
        sync.emit(_record("the sync's line"))  # fills it: rotated, then written
        app.emit(_record("the app's line"))  # its file is the full backup now: the new log it is
        sync.emit(_record("the sync's second line"))
        app.emit(_record("the app's second line"))
    finally:
        app.close()
        sync.close()
    assert (d / "report-keeper.log.1").read_bytes() == old["report-keeper.log"]
    assert (d / "report-keeper.log.2").read_bytes() == old["report-keeper.log.1"]
    assert (d / "report-keeper.log.3").read_bytes() == old["report-keeper.log.2"]
    assert not (d / "report-keeper.log.4").exists()
    assert path.read_text().splitlines() == ["the sync's line", "the app's line", "the sync's second line",
                                             "the app's second line"]


def test_a_log_whose_file_is_gone_is_made_again_not_rotated(tmp_path):
    d = _log_dir(tmp_path)
    old = _history(d, logs.MAX_BYTES - 40)
    path = d / "report-keeper.log"
    handler = logs.SharedRotatingHandler(path, maxBytes=logs.MAX_BYTES, backupCount=logs.BACKUPS,
                                         encoding="utf-8")
    try:
        path.unlink()  # someone cleared the log folder's current file
        handler.emit(_record("after"))
    finally:
        handler.close()
    assert path.read_text() == "after\n"
    assert (d / "report-keeper.log.1").read_bytes() == old["report-keeper.log.1"]


@pytest.mark.sshd
def test_a_run_over_processes_filling_the_log_rotates_it_once(sshd, served, tmp_path):
    d = _log_dir(tmp_path)
    old = _history(d, logs.MAX_BYTES - 40)  # the first line of any process fills it
    cfg = _sshd_config(tmp_path, sshd, served, PROFILES)
    done = _sync(tmp_path, cfg, "--processes", "2")
    assert done.returncode == 1 and json.loads(done.stdout)["status"] == "warning", done.stderr
    assert (d / "report-keeper.log.1").read_bytes() == old["report-keeper.log"]
    assert (d / "report-keeper.log.2").read_bytes() == old["report-keeper.log.1"]
    assert (d / "report-keeper.log.3").read_bytes() == old["report-keeper.log.2"]
    run = (d / "report-keeper.log").read_text()
    assert "old line" not in run
    assert len(_pids(run)) == 3, run  # both processes of the run and the run's own
    assert "sync --all-profiles: 4 profiles in 2 processes" in run
    assert run.count("sync --all-profiles finished") == 3


def test_a_log_folder_removed_under_the_app_costs_no_error_output(tmp_path, capsys):
    # The app runs for days; someone clears its log folder. Writing on to the file it has is
    # all that can be done: never a "Logging error" traceback on the terminal for each record.
    d = _log_dir(tmp_path)
    path = d / "report-keeper.log"
    handler = logs.SharedRotatingHandler(path, maxBytes=logs.MAX_BYTES, backupCount=logs.BACKUPS,
                                         encoding="utf-8")
    try:
        handler.emit(_record("before"))
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
        handler.emit(_record("after"))
        handler.emit(_record("x" * logs.MAX_BYTES))  # its file full now: nothing to rotate either
        handler.emit(_record("last"))
    finally:
        handler.close()
    assert "Logging error" not in capsys.readouterr().err
    assert not d.exists()


def test_a_log_made_by_a_rotation_is_private_too(tmp_path):
    d = _log_dir(tmp_path)
    _history(d, logs.MAX_BYTES - 5)
    path = d / "report-keeper.log"
    old = os.umask(0o022)  # a usual umask: files made as 0644
    try:
        handler = logs.SharedRotatingHandler(path, maxBytes=logs.MAX_BYTES, backupCount=logs.BACKUPS,
                                             encoding="utf-8")
        try:
            handler.emit(_record("fills it: rotated, then written to a new file"))
        finally:
            handler.close()
    finally:
        os.umask(old)
    assert path.read_text() == "fills it: rotated, then written to a new file\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_log_that_is_a_symlink_is_not_written_through(tmp_path):
    # Server-chosen names end up in the log: appended through a planted link they would land
    # in whatever file it names (an authorized_keys, a shell profile).
    d = _log_dir(tmp_path)
    target = tmp_path / "elsewhere"
    target.write_text("kept\n")
    (d / "report-keeper.log").symlink_to(target)
    with pytest.raises(OSError):
        logs.SharedRotatingHandler(d / "report-keeper.log", maxBytes=logs.MAX_BYTES,
                                   backupCount=logs.BACKUPS, encoding="utf-8")
    assert target.read_text() == "kept\n"
    assert (d / "report-keeper.log").is_symlink()


def test_a_record_of_characters_beyond_ascii_is_measured_in_the_bytes_written(tmp_path):
    # A name that is not ASCII takes more bytes than characters: a log measured in characters
    # grew past its limit before it was rotated.
    d = _log_dir(tmp_path)
    path = d / "report-keeper.log"
    line = "Ausleihe_Übersicht_ÄÖÜ_ß_" * 4
    step = len(line.encode()) + 1  # bytes a record adds (with its newline)
    assert step > len(line) + 1
    # A limit a whole number of records long: a count of characters lets the last record in
    # (its characters still fit), and that record ends exactly on the limit.
    limit = step * 83
    handler = logs.SharedRotatingHandler(path, maxBytes=limit, backupCount=2, encoding="utf-8")
    handler.setFormatter(logs.logging.Formatter("%(message)s"))
    try:
        for _ in range(200):
            handler.emit(_record(line))
    finally:
        handler.close()
    files = [path, *(path.with_name(f"{path.name}.{n}") for n in (1, 2))]
    assert all(f.exists() for f in files)
    assert max(f.stat().st_size for f in files) < limit
