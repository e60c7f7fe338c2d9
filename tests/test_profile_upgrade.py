"""An upgrade never stops a working cron job when the right answer is unambiguous.

Releases before this one named a profile's default ledger and downloads folder after its raw
name (``ledger-Main Library.sqlite3``, ``reports/Main Library``); this one writes ``%XX`` for
the characters other than letters, digits, ``-``, ``_`` and ``.``. A profile whose earlier
ledger (or folder) is its own beyond doubt (inside the data folder, the kind expected, no other
profile's now or then, and nothing at the new name) goes on with it where it is, nothing moved,
and says so: a warning in the log, in ``check``'s output and in the JSON documents, with the
line that makes it explicit. Every other case keeps the refusal (exit 3) that names both paths.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.daily_config import server_folder, write_profiles_config
from tests.xlsx_factory import write_report
from tui.cli import main
from tui.core.config import ConfigError, default_data_dir, load_config
from tui.core.ledger import Ledger
from tui.core.logs import log_dir
from tui.core.names import profile_file_part

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("America/Chicago")
REPORT = "Loans"
NAME = "Main Library"


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # json's escapes are TOML's


def _data() -> Path:
    return default_data_dir()


def _old_ledger(name: str = NAME) -> Path:
    return _data() / f"ledger-{name}.sqlite3"


def _new_ledger(name: str = NAME) -> Path:
    return _data() / f"ledger-{profile_file_part(name)}.sqlite3"


def _old_folder(name: str = NAME) -> Path:
    return _data() / "reports" / name


def _new_folder(name: str = NAME) -> Path:
    return _data() / "reports" / profile_file_part(name)


def _config_file(tmp: Path, names: list[str], extra: dict[str, str] | None = None,
                 file: str = "config.toml") -> Path:
    return write_profiles_config(tmp, names, extra, file, common='timezone = "UTC"\n')


def _real_ledger(path: Path, name: str = NAME) -> Path:
    """A ledger of this release's schema with one download in its history."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Ledger.open(path, profile=name):
        pass
    return path


def _filled_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Loans_20260301_070000.xlsx").write_bytes(b"PK")
    return folder


# ------------------------------------------------------------------ the unambiguous cases


def test_an_earlier_ledger_that_is_the_profiles_own_is_used_where_it_is(tmp_path, caplog):
    old = _real_ledger(_old_ledger())
    before = old.read_bytes()
    profile = load_config(_config_file(tmp_path, [NAME, "other"])).profile(NAME)
    assert profile.problem is None
    assert profile.ledger_path == old
    assert profile.local_dir == _new_folder()  # no earlier folder: the new name, as always
    [note] = profile.earlier_paths
    assert note.setting == "ledger" and note.path == old and note.new_path == _new_ledger()
    assert note.config_line == f"ledger = {_toml(str(old))}"
    assert note.config_line in note.message and str(_new_ledger()) in note.message
    assert "\n" not in note.message
    # nothing moved, nothing made under the new name
    assert old.read_bytes() == before and not _new_ledger().exists()


def test_an_earlier_folder_that_is_the_profiles_own_is_used_where_it_is(tmp_path):
    old = _filled_folder(_old_folder())
    _new_folder().mkdir(parents=True)  # an empty folder at the new name holds nothing
    profile = load_config(_config_file(tmp_path, [NAME])).profile(NAME)
    assert profile.local_dir == old and profile.ledger_path == _new_ledger()
    [note] = profile.earlier_paths
    assert note.setting == "local_dir" and note.config_line == f"local_dir = {_toml(str(old))}"
    assert sorted(p.name for p in old.iterdir()) == ["Loans_20260301_070000.xlsx"]


def test_both_earlier_paths_are_used_and_each_is_said(tmp_path):
    _real_ledger(_old_ledger())
    _filled_folder(_old_folder())
    profile = load_config(_config_file(tmp_path, [NAME])).profile(NAME)
    assert (profile.ledger_path, profile.local_dir) == (_old_ledger(), _old_folder())
    assert [n.setting for n in profile.earlier_paths] == ["ledger", "local_dir"]


def test_an_explicit_setting_or_a_new_name_in_use_says_nothing(tmp_path):
    _real_ledger(_old_ledger())
    _real_ledger(_new_ledger())  # moved (copied) already: the new name is used, as before
    profile = load_config(_config_file(tmp_path, [NAME])).profile(NAME)
    assert profile.ledger_path == _new_ledger() and profile.earlier_paths == ()
    _new_ledger().unlink()
    line = f"ledger = {_toml(str(_old_ledger()))}"
    profile = load_config(_config_file(tmp_path, [NAME], {NAME: line}, file="kept.toml")).profile(NAME)
    assert profile.ledger_path == _old_ledger() and profile.earlier_paths == ()


# ------------------------------------------------------------------ the ambiguous cases stay refused


def _refused(tmp_path: Path, names: list[str], name: str, *paths: Path,
             extra: dict[str, str] | None = None, file: str = "config.toml") -> str:
    config = load_config(_config_file(tmp_path, names, extra, file=file))
    with pytest.raises(ConfigError) as info:
        config.profile(name)
    message = str(info.value)
    for path in paths:
        assert str(path) in message, message
    assert len(message.splitlines()) == 1
    return message


def test_an_old_path_that_is_another_profiles_new_path_stays_refused(tmp_path, capsys):
    """'a%20b''s earlier ledger is 'a b''s ledger now: it is never taken for 'a%20b'."""
    theirs = _real_ledger(_old_ledger("a%20b"), "a%20b")
    assert theirs == _new_ledger("a b")
    message = _refused(tmp_path, ["a b", "a%20b"], "a%20b", theirs, _new_ledger("a%20b"))
    assert "'a b'" in message
    assert load_config(_config_file(tmp_path, ["a b", "a%20b"])).profile("a b").ledger_path == theirs
    cfg = tmp_path / "config.toml"
    assert main(["check", "--offline", "--json", "--config", str(cfg), "--profile", "a%20b"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["error_kind"] == "config" and doc["earlier_paths"] == []
    assert not _new_ledger("a%20b").exists()


def test_an_old_path_another_profile_names_in_its_settings_stays_refused(tmp_path):
    old = _real_ledger(_old_ledger())
    extra = {"other": f"ledger = {_toml(str(old))}"}
    _refused(tmp_path, [NAME, "other"], NAME, old, _new_ledger(), extra=extra)
    folder = _filled_folder(_old_folder())
    old.unlink()
    extra = {"other": f"local_dir = {_toml(str(folder.parent))}"}  # the folder is inside its downloads
    _refused(tmp_path, [NAME, "other"], NAME, folder, _new_folder(), extra=extra, file="inside.toml")


@pytest.mark.parametrize("name", ["a/b", "x/../y", "../x"])
def test_a_name_whose_old_path_left_its_folder_stays_refused(tmp_path, name):
    """A '/' made a sub-folder of the raw name ('ledger-a/b.sqlite3'), '..' reached another
    folder: what lies there is not this profile's beyond doubt."""
    old = Path(os.path.normpath(_data() / f"ledger-{name}.sqlite3"))
    _real_ledger(old, name)
    message = _refused(tmp_path, [name], name, old)
    assert "ledger = " in message
    old.unlink()
    folder = _filled_folder(Path(os.path.normpath(_data() / "reports" / name)))
    message = _refused(tmp_path, [name], name, folder, file="folder.toml")
    assert "local_dir = " in message


def test_a_name_two_dots_long_stays_refused(tmp_path):
    _real_ledger(_old_ledger(".."), "..")
    config = load_config(_config_file(tmp_path, [".."]))
    assert ".." in config.broken


def test_an_old_ledger_that_is_a_fifo_stays_refused_and_nothing_waits(tmp_path, capsys):
    old = _old_ledger()
    old.parent.mkdir(parents=True)
    os.mkfifo(old)
    _refused(tmp_path, [NAME], NAME, old, _new_ledger())
    cfg = tmp_path / "config.toml"
    assert main(["check", "--offline", "--json", "--config", str(cfg), "--profile", NAME]) == 3
    assert json.loads(capsys.readouterr().out)["error_kind"] == "config"
    assert not _new_ledger().exists()


def test_old_paths_that_are_links_out_of_the_data_folder_stay_refused(tmp_path):
    elsewhere = _real_ledger(tmp_path / "elsewhere" / "ledger.sqlite3")
    old = _old_ledger()
    old.parent.mkdir(parents=True)
    old.symlink_to(elsewhere)
    _refused(tmp_path, [NAME], NAME, old, _new_ledger())
    old.unlink()
    outside = _filled_folder(tmp_path / "archive")
    _old_folder().parent.mkdir(parents=True)
    _old_folder().symlink_to(outside, target_is_directory=True)
    _refused(tmp_path, [NAME], NAME, _old_folder(), _new_folder(), file="link.toml")
    assert not _new_folder().exists()


def test_an_old_ledger_that_is_a_folder_stays_refused(tmp_path):
    _old_ledger().mkdir(parents=True)
    _refused(tmp_path, [NAME], NAME, _old_ledger(), _new_ledger())


# ------------------------------------------------------------------ a cron job across the upgrade


def _cron_config(tmp: Path, server, remote_dir: str, *, earlier: bool) -> Path:
    """Profile 'Main Library' on the test server without ``ledger`` or ``local_dir`` (the
    defaults); ``earlier``: as an earlier release ran it, with its defaults written out."""
    kh = tmp / "known_hosts"
    if not kh.exists():
        shutil.copy(server.known_hosts, kh)
        (tmp / "ssh_config").write_text("")
    defaults = (f"ledger = {_toml(str(_old_ledger()))}\nlocal_dir = {_toml(str(_old_folder()))}\n"
                if earlier else "")
    cfg = tmp / ("earlier.toml" if earlier else "config.toml")
    cfg.write_text(f"""
[profile.{_toml(NAME)}]
host = "127.0.0.1"
port = {server.port}
username = "{server.username}"
key = "{server.key}"
known_hosts = "{kh}"
ssh_config = "{tmp / 'ssh_config'}"
remote_dir = "{remote_dir}"
timezone = "America/Chicago"
{defaults}
[[profile.{_toml(NAME)}.report]]
name = "{REPORT}"
schedule = "daily"
at = "07:00"
grace = "2h"
lag_days = 3
""")
    return cfg


def _deliver(folder: Path, day: int) -> None:
    at = datetime(2026, 11, day, 7, 5, tzinfo=TZ)
    path = folder / f"{REPORT}_{at:%Y%m%d_%H%M%S}.xlsx"
    write_report(path, n_rows=4, day=at.date().replace(day=day - 3), seed=day)
    os.utime(path, (at.timestamp(), at.timestamp()))


def _process(*words: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "tui", *words], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, stdin=subprocess.DEVNULL,
                          env={**os.environ, "REPORT_KEEPER_NOW": datetime(2026, 11, 26, 10, 0, tzinfo=TZ).isoformat()})
    return done.returncode, json.loads(done.stdout), done.stderr


def _downloads(ledger: Path) -> int:
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM downloads").fetchone()[0])


@pytest.mark.sshd
def test_the_cron_job_goes_on_with_its_history_after_the_upgrade(sshd, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPORT_KEEPER_NOW", datetime(2026, 11, 25, 10, 0, tzinfo=TZ).isoformat())
    with server_folder(sshd.root, "upgrade-") as sub:
        for day in (22, 23, 24, 25):
            _deliver(sub, day)
        # an earlier release's daily runs: the history under the raw name
        assert main(["sync", "--json", "--config", str(_cron_config(tmp_path, sshd, sub.name, earlier=True))]) == 0
        first = json.loads(capsys.readouterr().out)
        assert len(first["downloaded"]) == 4
        held = _downloads(_old_ledger())
        assert held == 4
        _deliver(sub, 26)
        # the upgrade: the same config, the defaults not written (as it always was)
        cfg = _cron_config(tmp_path, sshd, sub.name, earlier=False)
        code, doc, err = _process("sync", "--json", "--config", str(cfg))
        assert code == 0, err
        assert [d["name"] for d in doc["downloaded"]] == [f"{REPORT}_20261126_070500.xlsx"]
        assert doc["skipped"] == [] or all(s.startswith(REPORT) for s in doc["skipped"])
        assert not doc["lost"] and not doc["refetched"] and not doc["missing_locally"]
        assert [n["setting"] for n in doc["earlier_paths"]] == ["ledger", "local_dir"]
        assert _downloads(_old_ledger()) == held + 1
        assert (_old_folder() / f"{REPORT}_20261126_070500.xlsx").is_file()
        assert not _new_ledger().exists() and not _new_folder().exists()
        assert f"ledger = {_toml(str(_old_ledger()))}" in err  # said where cron mails it

        code, doc, err = _process("check", "--json", "--config", str(cfg))
        assert code == 0, (err, doc)
        assert doc["status"] == "ok" and doc["connection"]["ok"] is True
        notes = {n["setting"]: n for n in doc["earlier_paths"]}
        assert set(notes) == {"ledger", "local_dir"}
        assert notes["ledger"]["path"] == str(_old_ledger())
        assert notes["ledger"]["new_path"] == str(_new_ledger())
        assert notes["ledger"]["config_line"] == f"ledger = {_toml(str(_old_ledger()))}"
        assert notes["local_dir"]["config_line"] == f"local_dir = {_toml(str(_old_folder()))}"
        [report] = doc["reports"]
        assert report["last_file"] == f"{REPORT}_20261126_070500.xlsx"
        assert not _new_ledger().exists() and not _new_folder().exists()

        # the human output and the log say it too
        monkeypatch.setenv("REPORT_KEEPER_NOW", datetime(2026, 11, 26, 10, 0, tzinfo=TZ).isoformat())
        assert main(["check", "--offline", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert f"ledger = {_toml(str(_old_ledger()))}" in out and f"local_dir = {_toml(str(_old_folder()))}" in out
        log = (log_dir() / "report-keeper.log").read_text()
        assert str(_new_ledger()) in log and f"ledger = {_toml(str(_old_ledger()))}" in log

        # --all-profiles carries the same notes in each profile's document
        assert main(["check", "--offline", "--json", "--all-profiles", "--config", str(cfg)]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert [n["setting"] for n in doc["profiles"][NAME]["earlier_paths"]] == ["ledger", "local_dir"]
        assert not _new_ledger().exists() and not _new_folder().exists()


def test_the_app_says_in_a_toast_which_earlier_ledger_it_uses(tmp_path):
    """The librarian who starts the app (not cron) learns it too, without looking in the log."""
    import asyncio

    from tui.app import create_app

    old = _real_ledger(_old_ledger())
    profile = load_config(_config_file(tmp_path, [NAME])).profile(NAME)
    [note] = profile.earlier_paths
    app = create_app(profile, auto_connect=False)

    async def run() -> list[tuple[str, str]]:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            return [(str(n.severity), n.message) for n in app._notifications]

    toasts = asyncio.run(run())
    assert ("warning", note.message) in toasts, toasts
    assert old.exists() and not _new_ledger().exists()
