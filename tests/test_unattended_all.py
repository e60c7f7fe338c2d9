"""``report-keeper schedule --all-profiles``: one timer (or one crontab line) running ``sync
--all-profiles`` and ``check --all-profiles`` for a whole config, as a consortium office with a
profile per member library needs; and never beside a profile's own timer or line, which would
run that profile twice a night.

The OS tools are the recorders of ``test_unattended`` (a crontab in a file, systemctl logging
its calls); the units are checked by the real ``systemd-analyze verify``; the crontab line is
run by ``sh -c`` in cron's minimal environment.
"""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from tests.test_unattended import (
    _STUB,
    SYSTEMD_ANALYZE,
    _calls,
    _cron_command,
    _set_systemd,
    _systemd_verify,
    _tools,
    _units,
)
from tui.cli import main


def _consortium(tmp_path, n: int = 90, folder_name: str = "consortium") -> tuple:
    """A config with ``n`` member libraries (the last one in another zone, due latest on the
    office's clock), and a stub program recording how it is run."""
    import sys


    folder = tmp_path / folder_name
    folder.mkdir()
    lines = []
    for i in range(n):
        zone = "America/New_York" if i == n - 1 else "America/Chicago"
        at = "08:30" if i == n - 1 else "07:00"
        lines.append(f"""
[profile.member{i:02d}]
host = "127.0.0.1"
remote_dir = "upload/member{i:02d}"
timezone = "{zone}"
ledger = {str(tmp_path / f'ledger{i:02d}.sqlite3')!r}
local_dir = {str(tmp_path / 'reports' / f'member{i:02d}')!r}
[[profile.member{i:02d}.report]]
name = "Loans Per Patron From 3 Days Ago"
schedule = "daily"
at = "{at}"
grace = "2h"
""")
    cfg = folder / "config.toml"
    cfg.write_text("".join(lines))
    (folder / "secrets.env").write_text("RK_SMTP_PASSWORD='s3 cr$et'\n")
    (folder / "secrets.env").chmod(0o600)  # the password: the user's alone
    record = tmp_path / "record.jsonl"
    stub = folder / "report-keeper"
    stub.write_text(_STUB.format(python=sys.executable, record=str(record)))
    stub.chmod(0o700)
    return cfg, stub, record


@pytest.fixture
def stubbed(monkeypatch):
    from tui.core import unattended as un

    def use(stub) -> None:
        monkeypatch.setattr(un, "program", lambda: (str(stub),))
    return use


def _run_line(line: str, home) -> subprocess.CompletedProcess[str]:
    command, stdin = _cron_command(line)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/sh", "LOGNAME": "tester"}
    return subprocess.run(["/bin/sh", "-c", command], input=stdin or "", env=env, cwd=home,
                          capture_output=True, text=True, timeout=60)


def test_one_timer_runs_every_profile_after_the_latest_is_due(tmp_path, capsys, stubbed):
    """Ninety members: one service running sync and check with --all-profiles, one timer at
    the latest member's due time (08:30 New York + 2h + 10 min is 09:40 Chicago), no --profile."""
    cfg, stub, _record = _consortium(tmp_path)
    stubbed(stub)
    assert main(["schedule", "--config", str(cfg), "--all-profiles"]) == 0
    out = capsys.readouterr().out
    units = _units(out)
    assert len(units) == 2 and all(n.startswith("report-keeper.all-profiles") for n in units), units
    [service] = [t for n, t in units.items() if n.endswith(".service")]
    [timer] = [t for n, t in units.items() if n.endswith(".timer")]
    execs = [shlex.split(l.split("=", 1)[1]) for l in service.splitlines() if l.startswith("ExecStart=")]
    assert [e[1:] for e in execs] == [[sub, "--config", str(cfg), "--all-profiles"] for sub in ("sync", "check")]
    # sync's exit 3 (one member's broken profile) must not keep the night's check from the
    # others: systemd goes on past a "-" line; check's own exit still decides the run's result.
    assert [e[0].startswith("-") for e in execs] == [True, False], execs
    assert "OnCalendar=*-*-* 09:40:00 America/Chicago" in timer, timer
    assert "member89" in timer  # the reason names the member that decided the time
    [line] = [l for l in out.splitlines() if " * * * " in l and not l.startswith("#")]
    assert "--all-profiles" in line and "--profile" not in line.replace("--all-profiles", "")
    if SYSTEMD_ANALYZE:
        res = _systemd_verify(tmp_path, units)
        assert res.returncode == 0 and "ignoring" not in res.stderr.lower(), res.stderr


@pytest.mark.parametrize("folder_name", ["consortium", "it's $HOME 100% `x`", "pct\\%x"])
def test_the_crontab_line_replaces_the_members_own_lines_and_runs_all_of_them(
        tmp_path, monkeypatch, capsys, stubbed, folder_name):
    """Two members were scheduled one by one before: --all-profiles --install leaves one line
    (theirs removed, and said so), the user's own lines kept; the line runs sync and check
    over every profile, with the secrets file, in cron's environment. A member's own install
    is then refused (it would run twice a night), and --uninstall --all-profiles removes the
    one line."""
    cfg, stub, record = _consortium(tmp_path, folder_name=folder_name)
    stubbed(stub)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    own = "MAILTO=office@example.edu\n0 3 * * * /usr/bin/backup\n"
    tab.write_text(own)
    for member in ("member03", "member41"):
        assert main(["schedule", "--config", str(cfg), "--profile", member, "--install"]) == 0
    assert len(tab.read_text().splitlines()) == 4
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "member03" in out and "member41" in out and "removed" in out, out
    lines = tab.read_text().splitlines()
    assert lines[:2] == own.splitlines() and len(lines) == 3, lines
    assert len(_cron_command(lines[2])[0].split(" # report-keeper-schedule")[0]) <= 999
    home = tmp_path / "home"
    home.mkdir()
    res = _run_line(lines[2], home)
    assert res.returncode == 0, res.stderr
    runs = [json.loads(x) for x in record.read_text(encoding="utf-8").splitlines()]
    assert [r["argv"] for r in runs] == [[sub, "--config", str(cfg), "--all-profiles"] for sub in ("sync", "check")]
    assert all(r["secret"] == "s3 cr$et" for r in runs)
    # again: nothing changes
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 0
    assert tab.read_text().splitlines() == lines
    # a member's own line beside it would run that member twice a night
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--profile", "member03", "--install"]) == 2
    err = capsys.readouterr().err
    assert "--all-profiles" in err and "twice" in err and "member03" in err, err
    assert tab.read_text().splitlines() == lines
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0
    assert tab.read_text() == own
    # and then a member may have its own again
    assert main(["schedule", "--config", str(cfg), "--profile", "member03", "--install"]) == 0


def test_the_timer_replaces_the_members_own_timers_and_lines(tmp_path, monkeypatch, capsys, stubbed):
    cfg, stub, _record = _consortium(tmp_path, n=5)
    stubbed(stub)
    log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    tab.write_text("0 3 * * * /usr/bin/backup\n")
    assert main(["schedule", "--config", str(cfg), "--profile", "member04", "--install"]) == 0  # a line
    _set_systemd(tmp_path, True)
    for member in ("member00", "member01"):
        assert main(["schedule", "--config", str(cfg), "--profile", member, "--install"]) == 0  # timers
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    members = sorted(p.name for p in unit_dir.iterdir())
    assert len(members) == 4
    _calls(log)
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    files = sorted(p.name for p in unit_dir.iterdir())
    assert len(files) == 2 and all(f.startswith("report-keeper.all-profiles") for f in files), files
    calls = _calls(log)
    timer = next(f for f in files if f.endswith(".timer"))
    assert f"systemctl --user enable --now {timer}" in calls
    for name in members:
        if name.endswith(".timer"):
            assert f"systemctl --user disable --now {name}" in calls
    assert tab.read_text() == "0 3 * * * /usr/bin/backup\n"  # member04's line is gone too
    for member in ("member00", "member01", "member04"):
        assert member in out, out
    # a member's own timer is refused while the all-profiles timer runs it
    assert main(["schedule", "--config", str(cfg), "--profile", "member02", "--install"]) == 2
    assert "--uninstall --all-profiles" in capsys.readouterr().err
    assert sorted(p.name for p in unit_dir.iterdir()) == files


def test_members_timers_out_of_reach_stop_a_crontab_line_beside_them(tmp_path, monkeypatch, capsys, stubbed):
    """The members' timers installed from a login session; --all-profiles --install from a
    shell where systemctl --user cannot reach the manager: a crontab line would run the
    members beside their timers. Nothing changes, and the message says where to run it."""
    cfg, stub, _record = _consortium(tmp_path, n=3)
    stubbed(stub)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=True)
    assert main(["schedule", "--config", str(cfg), "--profile", "member01", "--install"]) == 0
    _set_systemd(tmp_path, False)
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 2
    err = capsys.readouterr().err
    assert "member01" in err and "login session" in err, err
    assert not tab.exists() or "report-keeper" not in tab.read_text()
    assert len(list((tmp_path / "xdg" / "systemd" / "user").iterdir())) == 2


def test_all_profiles_and_a_profile_are_a_usage_error(tmp_path, capsys):
    cfg, _stub, _record = _consortium(tmp_path, n=2)
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--profile", "member01"]) == 3
    assert "--all-profiles" in capsys.readouterr().err


def test_uninstalling_the_timer_beside_a_broken_profile_succeeds_and_says_nothing_of_it(
        tmp_path, monkeypatch, capsys, stubbed):
    """Removing the one timer needs no profile's settings: a member's typo made the removal
    exit 3 and warn that "the timer runs it as well", after the timer was gone."""
    cfg, stub, _record = _consortium(tmp_path, n=3)
    stubbed(stub)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 0, capsys.readouterr().err
    assert len(tab.read_text().splitlines()) == 1
    cfg.write_text(cfg.read_text().replace('[profile.member01]\n', '[profile.member01]\nconcurrency = "lots"\n'))
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0
    out, err = capsys.readouterr()
    assert "cannot run" not in err and "member01" not in err, err
    assert tab.read_text().strip() == ""


def test_a_members_timer_that_cannot_be_disabled_is_said_and_kept(tmp_path, monkeypatch, capsys, stubbed):
    """The all-profiles timer replaces a member's own timer: a disable that failed was not
    looked at, the member's files were deleted and "removed" said, while its timer could go on
    running the member a second time each night."""
    cfg, stub, _record = _consortium(tmp_path, n=3)
    stubbed(stub)
    log, _tab = _tools(tmp_path, monkeypatch, systemd=True)
    assert main(["schedule", "--config", str(cfg), "--profile", "member00", "--install"]) == 0
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    own = sorted(p.name for p in unit_dir.iterdir())
    own_timer = next(f for f in own if f.endswith(".timer"))
    monkeypatch.setenv("TOOL_FAILS", f"systemctl --user disable --now {own_timer}")
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 2
    out, err = capsys.readouterr()
    assert "could not be disabled" in err and "member00" in err and "twice" in err, err
    assert "Access denied" in err and f"systemctl --user disable --now {own_timer}" in err, err
    assert "removed" not in out, out
    assert set(own) <= {p.name for p in unit_dir.iterdir()}  # its files kept: it is still there


def test_uninstalling_the_timer_when_every_profile_is_broken_succeeds(tmp_path, monkeypatch, capsys, stubbed):
    """Every member's table holds a typo: --uninstall --all-profiles exited 3 (its plan wanted
    one profile's time zone), and the one timer of the config could not be removed."""
    cfg, stub, _record = _consortium(tmp_path, n=2)
    stubbed(stub)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=True)
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 0, capsys.readouterr().err
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    assert len(list(unit_dir.iterdir())) == 2
    cfg.write_text(cfg.read_text().replace("timezone =", 'concurrency = "lots"\ntimezone ='))
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0
    out, err = capsys.readouterr()
    assert "removed" in out and err == "", (out, err)
    assert list(unit_dir.iterdir()) == []


# ------------------------------------------------------------------ profiles removed from the config

GONE = "Branch X's 100% Library"  # a quoted TOML key: a space, a quote, a percent sign


def _with_gone(cfg) -> None:
    """A profile of a library that is to leave the consortium."""
    cfg.write_text(cfg.read_text() + f"""
[profile."{GONE}"]
host = "127.0.0.1"
timezone = "America/Chicago"
local_dir = {str(cfg.parent / 'gone-reports')!r}
""")


def _drop(cfg, name: str) -> None:
    """The config without profile ``name`` (the library left)."""
    head, *blocks = cfg.read_text().split("\n[profile.")
    kept = [b for b in blocks if not b.startswith((f"{name}]", f'"{name}"]'))]
    assert len(kept) == len(blocks) - 1
    cfg.write_text("\n[profile.".join([head, *kept]))


@pytest.mark.parametrize("folder_name", ["consortium", "it's $HOME 100% `x`", "pct\\%x"])
def test_all_profiles_install_removes_the_own_lines_of_profiles_removed_from_the_config(
        tmp_path, monkeypatch, capsys, stubbed, folder_name):
    """Two libraries had their own crontab lines, then left the config: --all-profiles
    --install replaced the lines of the profiles still in the config and kept theirs, which
    failed every night ('no such profile'). Their lines go, each said; the same profile's line
    of another config and the user's own lines stay."""
    cfg, stub, _record = _consortium(tmp_path, n=3, folder_name=folder_name)
    _with_gone(cfg)
    stubbed(stub)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    own = "MAILTO=office@example.edu\n0 3 * * * /usr/bin/backup\n"
    tab.write_text(own)
    other = cfg.parent / "other.toml"
    other.write_text(cfg.read_text())
    for profile in ("member01", "member02", GONE):
        assert main(["schedule", "--config", str(cfg), "--profile", profile, "--install"]) == 0, \
            capsys.readouterr().err
    assert main(["schedule", "--config", str(other), "--profile", "member02", "--install"]) == 0
    [theirs] = tab.read_text().splitlines()[5:]
    _drop(cfg, "member02")
    _drop(cfg, GONE)
    capsys.readouterr()
    # the printed plan says what --install will remove
    assert main(["schedule", "--config", str(cfg), "--all-profiles"]) == 0
    out = capsys.readouterr().out
    assert "'member02'" in out and f"'{GONE}'" in out and "no longer in the config" in out, out
    assert len(tab.read_text().splitlines()) == 6  # printing changes nothing
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "no longer in the config" in line]
    assert len(said) == 2 and any("'member02'" in s for s in said) and any(f"'{GONE}'" in s for s in said), out
    assert all("removed the crontab line" in s for s in said), said
    lines = tab.read_text().splitlines()
    assert lines[:2] == own.splitlines() and theirs in lines and len(lines) == 4, lines
    assert "--all-profiles" in lines[3]
    # again: nothing left to remove
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 0
    assert "no longer in the config" not in capsys.readouterr().out
    assert tab.read_text().splitlines() == lines


def test_all_profiles_install_removes_the_own_timers_of_profiles_removed_from_the_config(
        tmp_path, monkeypatch, capsys, stubbed):
    """The same with systemd timers: the removed profile's timer is disabled and its files
    deleted; another config's timer of a profile of that name, and a hand-written unit that
    runs the removed profile, stay."""
    cfg, stub, _record = _consortium(tmp_path, n=3)
    _with_gone(cfg)
    stubbed(stub)
    log, _tab = _tools(tmp_path, monkeypatch, systemd=True)
    other = cfg.parent / "other.toml"
    other.write_text(cfg.read_text())
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    assert main(["schedule", "--config", str(other), "--profile", GONE, "--install"]) == 0
    theirs = {p.name: p.read_text() for p in unit_dir.iterdir()}
    assert main(["schedule", "--config", str(cfg), "--profile", GONE, "--install"]) == 0
    gone = sorted(p.name for p in unit_dir.iterdir() if p.name not in theirs)
    assert len(gone) == 2
    # a unit the user wrote by hand, by the name ours would have, for a profile that leaves
    # too: not ours, never touched
    from tui.core import unattended as un

    hand = unit_dir / f"{un.unit_name('member02', cfg.absolute())}.service"
    hand.write_text(f"[Service]\nExecStart={stub} sync --config {cfg} --profile member02\n")
    _drop(cfg, GONE)
    _drop(cfg, "member02")
    _calls(log)
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    calls = _calls(log)
    [gone_timer] = [g for g in gone if g.endswith(".timer")]
    assert f"systemctl --user disable --now {gone_timer}" in calls, calls
    said = [line for line in out.splitlines() if "no longer in the config" in line]
    assert len(said) == 2 and all(f"'{GONE}'" in s and "removed" in s for s in said), out
    files = {p.name for p in unit_dir.iterdir()}
    assert not files & set(gone), files
    assert {n: (unit_dir / n).read_text() for n in theirs} == theirs
    assert hand.name in files
    assert sum(f.startswith("report-keeper.all-profiles") for f in files) == 2


def test_all_profiles_uninstall_removes_the_own_lines_of_profiles_removed_from_the_config(
        tmp_path, monkeypatch, capsys, stubbed):
    """--uninstall --all-profiles removes the one line of the config and the own lines of
    profiles no longer in it (they fail every night); a profile still in the config keeps its
    own line."""
    cfg, stub, _record = _consortium(tmp_path, n=3)
    _with_gone(cfg)
    stubbed(stub)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    for profile in ("member01", GONE):
        assert main(["schedule", "--config", str(cfg), "--profile", profile, "--install"]) == 0
    [member01, _gone] = tab.read_text().splitlines()
    _drop(cfg, GONE)
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"'{GONE}'" in out and "no longer in the config" in out, out
    assert tab.read_text().splitlines() == [member01]
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0
    assert "nothing was installed" in capsys.readouterr().out


def test_a_removed_profiles_timer_out_of_reach_is_said_and_kept(tmp_path, monkeypatch, capsys, stubbed):
    """The removed profile's timer was installed from a login session; --all-profiles
    --install from a shell where systemctl --user cannot reach the manager: the line is
    installed (that timer runs no profile of the config twice: its runs fail), the timer is
    kept, and stderr says where to remove it (exit 2)."""
    cfg, stub, _record = _consortium(tmp_path, n=2)
    _with_gone(cfg)
    stubbed(stub)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=True)
    assert main(["schedule", "--config", str(cfg), "--profile", GONE, "--install"]) == 0
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    files = sorted(p.name for p in unit_dir.iterdir())
    _drop(cfg, GONE)
    _set_systemd(tmp_path, False)
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 2
    out, err = capsys.readouterr()
    assert f"'{GONE}'" in err and "no longer in the config" in err and "login session" in err, err
    assert "installed the crontab line" in out, out
    [line] = tab.read_text().splitlines()
    assert "--all-profiles" in line
    assert sorted(p.name for p in unit_dir.iterdir()) == files


def test_all_profiles_uninstall_of_an_unreadable_or_deleted_config(tmp_path, monkeypatch, capsys, stubbed):
    """A config that is no TOML does not say which profiles it holds: no own line is taken for
    a removed profile's, and stderr says none was looked for. A config file that is gone holds
    no profile: every own line of its path goes (their runs fail every night)."""
    cfg, stub, _record = _consortium(tmp_path, n=2)
    stubbed(stub)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    tab.write_text("0 3 * * * /usr/bin/backup\n")
    for profile in ("member00", "member01"):
        assert main(["schedule", "--config", str(cfg), "--profile", profile, "--install"]) == 0
    lines = tab.read_text().splitlines()
    text = cfg.read_text()
    cfg.write_text(text + "\n[oops\n")
    capsys.readouterr()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0
    out, err = capsys.readouterr()
    assert "not looked for" in err and "nothing was installed" in out, (out, err)
    assert tab.read_text().splitlines() == lines
    cfg.unlink()
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--uninstall"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "'member00'" in out and "'member01'" in out and "no longer in the config" in out, out
    assert tab.read_text() == "0 3 * * * /usr/bin/backup\n"


def test_a_unit_file_that_is_a_named_pipe_or_endless_is_never_taken_for_ours(tmp_path):
    """Looking for the units a removed profile left, every ``report-keeper-*.service`` in the
    unit folder is read: a named pipe there must not hold ``schedule`` for ever (opening one
    waits for a writer), nor a file of one endless line be read whole."""
    import os
    import signal

    from tui.core import unattended as un

    fifo = tmp_path / "report-keeper-x.service"
    os.mkfifo(fifo)
    endless = tmp_path / "report-keeper-y.service"
    endless.write_bytes(b"x" * (8 << 20))

    class Hung(Exception):  # not an OSError: the code under test must not swallow it
        pass

    def hung(_signum, _frame):
        raise Hung("reading the unit file hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        assert not un._written_by_us(fifo)
        assert not un._written_by_us(endless)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
