"""Profile names in timer units, crontab markers and command lines.

A unit's name holds the profile's name made safe: systemd accepts only ASCII letters, digits
and ``:-_.\\`` in one (a profile named 'Bücherei' got a unit systemd would not load, so its
timer could never be enabled), and at most 255 characters. Names earlier releases gave units
and crontab lines are still found: installing never leaves a second nightly run beside one,
and uninstalling removes it. A profile whose name starts with ``-`` is passed as
``--profile=NAME`` (as ``--profile -x`` the nightly run stopped at a usage error).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
from pathlib import Path

import pytest

from tests.test_unattended import SYSTEMD_ANALYZE, _calls, _systemd_verify, _tools, _units
from tui.cli import build_parser, main
from tui.core import setup as su
from tui.core import unattended as un
from tui.core.config import default_config_path, default_data_dir, load_config


def _earlier_unit_name(profile: str, config: Path) -> str:
    """The unit name releases before ASCII-only unit names gave a profile."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in profile)
    name = f"report-keeper-{safe}"
    if safe != profile or config != default_config_path().expanduser().absolute():
        name += "-" + hashlib.sha256(f"{config}\0{profile}".encode()).hexdigest()[:8]
    return name


def _config(tmp_path: Path, *names: str) -> Path:
    cfg = tmp_path / "config.toml"
    text = ""
    for name in names:
        text += (f'[profile.{_q(name)}]\nhost = "127.0.0.1"\ntimezone = "UTC"\n'
                 f'ledger = {_q(str(tmp_path / "ledger.sqlite3"))}\n')
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _q(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


NAMES = ["library", "a_b", "a b", "a/b", "a.b", "-x", "Bücherei", "Bucherei", "Bucher_i", "図書館", "é", "e",
         "📚", "x" * 150, "x" * 300, "y" * 201, "%n", "a:b"]


@pytest.mark.parametrize("config", ["default", "other"])
def test_every_units_name_is_one_systemd_accepts_and_no_two_profiles_share_one(tmp_path, config):
    path = default_config_path().absolute() if config == "default" else tmp_path / "c.toml"
    names = [un.unit_name(n, path) for n in NAMES]
    assert len(set(names)) == len(NAMES)
    for name in names:
        assert re.fullmatch(r"report-keeper-[A-Za-z0-9_-]+", name), name
        assert len(f".{name}.service.tmp") <= 255, name


@pytest.mark.parametrize("config", ["default", "other"])
def test_a_units_name_earlier_releases_gave_an_ascii_name_is_kept(tmp_path, config):
    path = default_config_path().absolute() if config == "default" else tmp_path / "c.toml"
    for name in ["library", "a_b", "a b", "a/b", "a.b", "-x", "x" * 150, "%n", "a:b"]:
        assert un.unit_name(name, path) == _earlier_unit_name(name, path)
    assert un.unit_name("library", default_config_path().absolute()) == "report-keeper-library"


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_accepts_the_units_of_a_profile_named_in_another_script(tmp_path, capsys):
    cfg = _config(tmp_path, "Bücherei")
    assert main(["schedule", "--config", str(cfg), "--profile", "Bücherei"]) == 0
    units = _units(capsys.readouterr().out)
    assert len(units) == 2
    res = _systemd_verify(tmp_path, units)
    assert res.returncode == 0 and "invalid" not in res.stderr.lower(), res.stderr


def _earlier_plan(cfg: Path, name: str) -> un.SchedulePlan:
    plan = un.plan_schedule(load_config(cfg).profile(name), cfg)
    return dataclasses.replace(plan, name=_earlier_unit_name(name, plan.config))


def test_a_crontab_line_an_earlier_release_wrote_is_replaced_and_removed(tmp_path, monkeypatch, capsys):
    """An earlier release's line for 'Bücherei' carries the unit name it gave: an install next
    to it ran the sync twice a night, and --uninstall left it running."""
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    cfg = _config(tmp_path, "Bücherei")
    earlier = un.crontab_line(_earlier_plan(cfg, "Bücherei"))
    tab.write_text(f"0 3 * * * /usr/bin/backup\n{earlier}\n")
    args = ["schedule", "--config", str(cfg), "--profile", "Bücherei"]
    assert main([*args, "--install"]) == 0, capsys.readouterr().err
    lines = tab.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == "0 3 * * * /usr/bin/backup" and earlier not in lines
    assert un.unit_name("Bücherei", cfg.absolute()) in lines[1]
    assert "removed the crontab line" in capsys.readouterr().out
    tab.write_text(tab.read_text() + earlier + "\n")
    assert main([*args, "--uninstall"]) == 0
    assert tab.read_text() == "0 3 * * * /usr/bin/backup\n"


def test_the_units_an_earlier_release_wrote_are_found_and_removed(tmp_path, monkeypatch, capsys):
    log, _tab = _tools(tmp_path, monkeypatch, systemd=True)
    cfg = _config(tmp_path, "Bücherei", "branch")
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    unit_dir.mkdir(parents=True)

    def write_earlier() -> list[Path]:
        files = []
        for name, text in un.systemd_units(_earlier_plan(cfg, "Bücherei")).items():
            (unit_dir / name).write_text(text, encoding="utf-8")
            files.append(unit_dir / name)
        return files

    files = write_earlier()
    assert main(["schedule", "--config", str(cfg), "--profile", "Bücherei", "--install"]) == 0, \
        capsys.readouterr().err
    assert not any(f.exists() for f in files)
    new = un.unit_name("Bücherei", cfg.absolute())
    assert sorted(p.name for p in unit_dir.iterdir()) == [f"{new}.service", f"{new}.timer"]
    # systemd never loaded a unit of that name: it is not asked to disable it
    assert not any(files[1].name in c for c in _calls(log, "systemctl --user disable"))
    assert main(["schedule", "--config", str(cfg), "--profile", "Bücherei", "--uninstall"]) == 0
    assert list(unit_dir.iterdir()) == []
    # a profile removed from the config since: --all-profiles finds its earlier units
    files = write_earlier()
    _config(tmp_path, "branch")  # the same file, without 'Bücherei'
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0, capsys.readouterr().err
    assert not any(f.exists() for f in files)
    assert "'Bücherei'" in capsys.readouterr().out


def test_a_profile_named_like_an_option_is_passed_as_one_word(tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path, "-x")
    assert main(["schedule", "--config", str(cfg), "--profile=-x"]) == 0
    out = capsys.readouterr().out
    units = _units(out)
    [service] = [t for n, t in units.items() if n.endswith(".service")]
    execs = [line.removeprefix("ExecStart=") for line in service.splitlines() if line.startswith("ExecStart=")]
    assert len(execs) == 2
    for line in execs:
        words = shlex.split(line)
        assert words[-1] == "--profile=-x", words
        sub = words.index("sync") if "sync" in words else words.index("check")
        assert build_parser(words[sub:]).parse_args(words[sub:]).profile == "-x"
    cron = out.strip().splitlines()[-1]
    assert "--profile=-x" in cron
    # installed, then the profile removed from the config: still found as its own
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    assert main(["schedule", "--config", str(cfg), "--profile=-x", "--install"]) == 0, capsys.readouterr().err
    assert len(tab.read_text().splitlines()) == 1
    _config(tmp_path, "branch")  # the same file, without '-x'
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0
    assert tab.read_text() == ""


def test_the_commands_shown_for_a_profile_named_like_an_option_can_be_run(tmp_path):
    steps = su.next_steps(tmp_path / "c.toml", "-x", pending=True)
    commands = [shlex.split(s.split(" run: ", 1)[1]) for s in steps if " run: " in s]
    assert commands and all(words[-1] == "--profile=-x" for words in commands), commands
    for words in commands:
        assert build_parser(words[1:]).parse_args(words[1:]).profile == "-x"


def test_uninstalling_a_name_too_long_for_a_file_says_nothing_was_installed(tmp_path, monkeypatch, capsys):
    _tools(tmp_path, monkeypatch, systemd=True)
    (tmp_path / "xdg" / "systemd" / "user").mkdir(parents=True)
    cfg = _config(tmp_path, "library")
    code = main(["schedule", "--config", str(cfg), "--profile", "x" * 300, "--uninstall"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "nothing was installed" in out.out and "Traceback" not in out.err


def test_init_refuses_a_profile_name_that_cannot_name_a_folder_before_asking_anything(tmp_path, capsys):
    path = tmp_path / "config.toml"
    assert main(["init", "--config", str(path), "--profile", "..", "--yes", "--host", "127.0.0.1"]) == 3
    err = capsys.readouterr().err
    assert "--profile" in err and "'..'" in err, err
    assert not path.exists()
    assert su.default_local_dir("a/b") == default_data_dir() / "reports" / "a%2Fb"
    assert su.default_local_dir("library") == default_data_dir() / "reports" / "library"
