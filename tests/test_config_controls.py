"""Control and format characters in the config: refused where the file is read.

Every string of the config (a value, a list item, a profile's or another table's name) later
reaches a terminal, a log, a systemd unit or crontab line, or an e-mail. An escape sequence, a
line break or a direction override in one of them is refused at load time with the key that
holds it and what to do (exit 3 for the commands); ordinary letters of any script are kept.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.test_hostile_errors import rk
from tests.test_unattended import _tools
from tui.cli import main
from tui.core.config import ConfigError, load_config

BASE = """\
[profile.default]
host = "127.0.0.1"
ledger = "{ledger}"
"""

#: Characters no config value may hold: C0 controls (ESC, BEL, tab, line breaks), DEL, C1
#: controls (NEL, CSI), direction marks and overrides, the Unicode line separators.
REFUSED = ["\x1b", "\x07", "\t", "\n", "\r", "\x7f", "\x85", "\x9b", "\u200e", "\u202a",
           "\u202e", "\u2066", "\u2069", "\u061c", "\ufeff", "\u2028", "\u2029"]


def toml(value: str) -> str:
    """``value`` as a TOML basic string (json's escapes are TOML's)."""
    return json.dumps(value)


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE.format(ledger=tmp_path / "ledger.sqlite3") + text, encoding="utf-8")
    return path


def refused(path: Path) -> ConfigError:
    """The error of the file, or of its profile once picked (a profile's own error stops only
    that profile)."""
    with pytest.raises(ConfigError) as err:
        load_config(path).profile()
    return err.value


def _cases(ch: str) -> list[tuple[str, str]]:
    """(TOML added to the base profile, the key the error must name) for one character."""
    v = toml(f"a{ch}b")
    return [
        (f"username = {v}", "profile.default.username"),
        (f"remote_dir = {v}", "profile.default.remote_dir"),
        (f'remote_dirs = ["one", {v}]', "profile.default.remote_dirs[1]"),
        (f"local_dir = {toml(f'/tmp/x{ch}y')}", "profile.default.local_dir"),
        (f"key = {toml(f'/tmp/k{ch}')}", "profile.default.key"),
        (f"known_hosts = {toml(f'/tmp/k{ch}')}", "profile.default.known_hosts"),
        (f"ssh_config = {toml(f'/tmp/c{ch}')}", "profile.default.ssh_config"),
        (f"timezone = {toml(f'Europe/Berlin{ch}')}", "profile.default.timezone"),
        (f"[[profile.default.report]]\nname = {v}", "profile.default.report[0].name"),
        (f'[[profile.default.report]]\nname = "R"\nexpected_columns = ["Loans", {v}]',
         "profile.default.report[0].expected_columns[1]"),
        (f'[[profile.default.report]]\nname = "R"\nidentifier_columns = [{v}]',
         "profile.default.report[0].identifier_columns[0]"),
        (f'[[profile.default.report]]\nname = "R"\ndate_column = {v}',
         "profile.default.report[0].date_column"),
        (f'[[profile.default.report]]\nname = "R"\npattern = {toml(f"(?P<name>.+){ch}(?P<ts>.+)")}',
         "profile.default.report[0].pattern"),
        (f"[profile.default.defaults]\nschedule = {toml(f'daily{ch}')}", "profile.default.defaults.schedule"),
        (f"[profile.default.notify]\nemail_to = [{toml(f'a{ch}@example.edu')}]\nsmtp_host = \"h\"",
         "profile.default.notify.email_to"),
    ]


@pytest.mark.parametrize("ch", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
def test_every_string_of_the_config_refuses_control_and_format_characters(tmp_path, ch):
    for text, key in _cases(ch):
        err = refused(config(tmp_path, text + "\n"))
        assert err.key == key, (text, str(err))
        message = str(err)
        if "U+" not in message:  # the setting's own check spoke first
            assert "control character" in message or "not a schedule" in message \
                or "unknown time zone" in message, message
        assert "\n" not in message and ch not in message and len(message) < 600, message


def test_a_profile_or_table_name_holding_a_control_character_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[profile."lib\\nExecStart=/bin/sh"]\nhost = "h"\n')
    err = refused(path)
    assert err.key == 'profile."lib\\u000aExecStart=/bin/sh"', str(err)
    assert "profile name" in err.reason and "U+000A" in err.reason and "rename" in err.reason
    # a name anywhere: a misspelt key with an escape in it is named escaped, not obeyed
    err = refused(config(tmp_path, '"a\\u001b[2Jb" = 1\n'))
    assert err.key == 'profile.default."a\\u001b[2Jb"' and "\x1b" not in str(err)


def test_ordinary_letters_of_every_script_are_kept(tmp_path):
    local = tmp_path / "Ausleihen Zürich 東京 é"
    path = tmp_path / "c.toml"
    path.write_text(f"""\
[profile."bibliothèque 図書館"]
host = "127.0.0.1"
username = "bibliothécaire"
remote_dir = "upload/Prêts 2026"
local_dir = "{local}"
ledger = "{tmp_path / 'ledger é.sqlite3'}"
[[profile."bibliothèque 図書館".report]]
name = "Prêts par lecteur 東京"
expected_columns = ["Numéro d'usager", "Prêts"]
[[profile."bibliothèque 図書館".report]]
name = "گزارش\u200cها 👩\u200d💻"
""", encoding="utf-8")
    profile = load_config(path).profile()
    assert profile.name == "bibliothèque 図書館" and profile.local_dir == local
    assert [r.name for r in profile.reports] == ["Prêts par lecteur 東京", "گزارش\u200cها 👩\u200d💻"]
    assert profile.remote_dir == "upload/Prêts 2026"


def test_check_exits_3_naming_the_key_and_writes_nothing_raw(tmp_path):
    """The real command in its own process: a local_dir that would set the terminal's title."""
    home = tmp_path / "home"
    path = config(tmp_path, 'local_dir = "/tmp/x\\u001b]0;pwned\\u0007"\n')
    run = rk("check", "--offline", "--config", str(path), home=home)
    assert run.code == 3, run
    assert run.out == ""
    [line] = run.err.splitlines()
    assert line.startswith("report-keeper: ") and "profile.default.local_dir" in line
    assert "U+001B" in line and "remove" in line
    assert "\x1b" not in run.err and "\x07" not in run.err
    assert not Path("/tmp/x\x1b]0;pwned\x07").exists()


def test_check_exits_3_for_a_profile_name_holding_a_line_break(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[profile."lib\\nStatus: OK"]\nhost = "h"\n')
    assert main(["check", "--offline", "--config", str(path)]) == 3
    out = capsys.readouterr()
    assert out.out == ""
    [line] = out.err.splitlines()
    assert 'profile."lib\\u000aStatus: OK"' in line and "profile name" in line


@pytest.mark.parametrize("text", [
    '[profile."lib\\nExecStart=/bin/sh -c evil"]\nhost = "h"\nledger = "{ledger}"\n',
    '[profile.library]\nhost = "h"\nledger = "{ledger}"\n[[profile.library.report]]\n'
    'name = "Loans\\n[Service]\\nExecStart=/bin/sh -c evil"\nat = "07:00"\n',
    '[profile.library]\nhost = "h"\nledger = "{ledger}"\nlocal_dir = "/tmp/a\\n* * * * * evil"\n',
])
@pytest.mark.parametrize("systemd", [True, False])
def test_schedule_writes_no_unit_or_crontab_line_from_a_broken_value(tmp_path, monkeypatch, capsys, text, systemd):
    log, tab = _tools(tmp_path, monkeypatch, systemd=systemd)
    path = tmp_path / "c.toml"
    path.write_text(text.format(ledger=tmp_path / "l.sqlite3"))
    for extra in ([], ["--install"]):
        assert main(["schedule", "--config", str(path), *extra]) == 3
        out = capsys.readouterr()
        assert out.out == ""  # no unit printed either
        [line] = out.err.splitlines()
        assert "U+000A" in line and "evil" in line
    assert not (tmp_path / "xdg" / "systemd").exists()
    assert not tab.exists()
    assert not log.exists() or log.read_text() == ""  # neither systemctl nor crontab was run


def test_schedule_escapes_a_report_name_from_the_ledger(tmp_path, monkeypatch, capsys):
    """The timer's comment names the report that decided its time, and report names also come
    from the server's file names (recorded in the ledger): one holding a line break cannot add
    a line to the unit file or the printed units."""
    from tui.core.ledger import Ledger
    from tui.core.model import RemoteFile

    _tools(tmp_path, monkeypatch, systemd=True)
    path = tmp_path / "c.toml"
    ledger_path = tmp_path / "l.sqlite3"
    path.write_text(f'[profile.library]\nhost = "h"\ntimezone = "UTC"\nledger = "{ledger_path}"\n')
    hostile = "Loans\n[Service]\nExecStartPre=/bin/sh -c evil\n#"
    when = datetime(2026, 3, 2, 23, 5, tzinfo=UTC)
    # delivered daily for a week: a schedule the history tells (one delivery would tell none)
    days = [when - timedelta(days=n) for n in range(7)]
    with Ledger.open(ledger_path, profile="library") as ledger:
        ledger.record_listing(None, lambda f: (hostile, f.mtime),
                              [RemoteFile(f"{hostile} {d:%Y%m%d}.xlsx", 10, d) for d in days], when=when)
    assert main(["schedule", "--config", str(path)]) == 0
    printed = capsys.readouterr().out
    assert not any(line.startswith("ExecStartPre") for line in printed.splitlines()), printed
    assert "\\u000a[Service]\\u000aExecStartPre" in printed
    assert main(["schedule", "--config", str(path), "--install"]) == 0
    [timer] = (tmp_path / "xdg" / "systemd" / "user").glob("*.timer")
    [service] = (tmp_path / "xdg" / "systemd" / "user").glob("*.service")
    timer_lines = timer.read_text().splitlines()
    assert not any(line.startswith(("ExecStartPre", "[Service]")) for line in timer_lines), timer_lines
    assert "\\u000a[Service]\\u000aExecStartPre" in timer.read_text()
    assert "ExecStartPre" not in service.read_text()
