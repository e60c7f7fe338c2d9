"""``report-keeper schedule``: the generated units checked by systemd itself, and installing /
uninstalling them (or the crontab line) twice over.

``systemctl`` and ``crontab`` are the operating system's tools, not ours, and a test cannot
enable a real user timer here (no user service manager runs in the test machine); so for
install/uninstall they are replaced by small recorders on PATH that log every call and keep a
crontab in a file. The units themselves are checked by the real ``systemd-analyze verify``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tui.cli import main

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _config(tmp_path: Path) -> Path:
    folder = tmp_path / "my configs 100%"  # a space and a percent sign: both need quoting
    folder.mkdir()
    cfg = folder / "config.toml"
    cfg.write_text(f"""
[profile.library]
host = "127.0.0.1"
timezone = "America/Chicago"
ledger = "{tmp_path / 'ledger.sqlite3'}"
[[profile.library.report]]
name = "Loans Per Patron From 3 Days Ago"
schedule = "daily"
at = "07:00"
grace = "2h"
[[profile.library.report]]
name = "Weekly Circulation Summary"
schedule = "weekly:MON"
at = "08:30"
grace = "45m"
""")
    return cfg


def _print(cfg: Path, capsys) -> str:
    assert main(["schedule", "--config", str(cfg), "--profile", "library"]) == 0
    return capsys.readouterr().out


def _units(text: str) -> dict[str, str]:
    out, name, lines = {}, None, []
    for line in text.splitlines():
        if line.startswith("# ~/.config/systemd/user/"):
            name, lines = line.rsplit("/", 1)[1], []
            out[name] = lines
        elif line.startswith("# Or one crontab line"):
            name = None
        elif name:
            lines.append(line)
    return {k: "\n".join(v).strip() + "\n" for k, v in out.items()}


def test_printed_units_and_crontab_line(tmp_path, capsys):
    cfg = _config(tmp_path)
    text = _print(cfg, capsys)
    units = _units(text)
    [service] = [n for n in units if n.endswith(".service")]
    [timer] = [n for n in units if n.endswith(".timer")]
    assert service.startswith("report-keeper-library-") and timer == service.replace(".service", ".timer")
    # latest due: Weekly at 08:30 + 45m = 09:15, + 10 min margin = 09:25
    assert "OnCalendar=*-*-* 09:25:00 America/Chicago" in units[timer]
    assert "Persistent=true" in units[timer]
    assert "'Weekly Circulation Summary' at 08:30 + grace 0h45" in text
    execs = [l for l in units[service].splitlines() if l.startswith("ExecStart=")]
    assert [shlex.split(l.split("=", 1)[1])[-5:] for l in execs] == [
        [sub, "--config", str(cfg).replace("%", "%%"), "--profile", "library"] for sub in ("sync", "check")]
    assert "SuccessExitStatus=1 2" in units[service]
    [cron] = [l for l in text.splitlines() if " * * * " in l and not l.startswith("#")]
    minute, hour = cron.split()[:2]
    assert (int(hour), int(minute)) != (0, 0) and "\\%" in cron
    command = cron.split(" * * * ", 1)[1].replace("\\%", "%")
    words = shlex.split(command)
    assert words[words.index("for"):words.index("do") + 1] == ["for", "s", "in", "sync", "check;", "do"]
    i = words.index("$s")
    assert words[i:i + 5] == ["$s", "--config", str(cfg), "--profile", "library"]
    assert words[i + 5:i + 8] == [">/dev/null;", "done", "#"]  # the marker is a shell comment


def _systemd_verify(tmp_path: Path, units: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real ``systemd-analyze verify`` on ``units`` written to a folder of their own
    (system mode: --user needs a running user manager, which the test machine does not have;
    the unit syntax is the same)."""
    assert SYSTEMD_ANALYZE is not None
    folder = tmp_path / "units"
    folder.mkdir()
    for name, text in units.items():
        (folder / name).write_text(text)
    return subprocess.run([SYSTEMD_ANALYZE, "verify", *sorted(str(p) for p in folder.iterdir())],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_accepts_the_generated_units(tmp_path, capsys):
    cfg = _config(tmp_path)
    units = _units(_print(cfg, capsys))
    res = _systemd_verify(tmp_path, units)
    assert res.returncode == 0, res.stderr
    assert "ignoring" not in res.stderr.lower(), res.stderr
    # and the calendar expression means what we say
    [timer] = [t for n, t in units.items() if n.endswith(".timer")]
    cal = next(l.split("=", 1)[1] for l in timer.splitlines() if l.startswith("OnCalendar="))
    res = subprocess.run([SYSTEMD_ANALYZE, "calendar", cal], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "09:25:00 America/Chicago" in res.stdout, res.stdout + res.stderr


# The recorders are sh scripts: the install and uninstall tests call them a few hundred times,
# and a Python interpreter's start-up (tens of milliseconds each, far more on a loaded machine)
# was most of those tests' time. TOOL_FAILS names one call (as logged) that fails.
_RECORDER = """#!/bin/sh
IFS=' '
name=${{0##*/}}
call="$name $*"
printf '%s\\n' "$call" >> {log}
if [ -n "${{TOOL_FAILS-}}" ] && [ "$TOOL_FAILS" = "$call" ]; then
    echo 'Failed: Access denied' >&2
    exit 1
fi
if [ "$name" = systemctl ]; then
    if [ "$#" -eq 2 ] && [ "$1" = --user ] && [ "$2" = show-environment ]; then
        {systemd} || exit 1
        # the manager's environment: the caller's, unless the test names another
        if [ -n "${{MANAGER_HOME+set}}" ]; then v=$MANAGER_HOME; else v=${{HOME-}}; fi
        if [ -n "$v" ]; then printf 'HOME=%s\\n' "$v"; fi
        if [ -n "${{MANAGER_XDG_CONFIG_HOME+set}}" ]; then v=$MANAGER_XDG_CONFIG_HOME; else v=${{XDG_CONFIG_HOME-}}; fi
        if [ -n "$v" ]; then printf 'XDG_CONFIG_HOME=%s\\n' "$v"; fi
        # never the caller's agent: only what the test names
        if [ -n "${{MANAGER_SSH_AUTH_SOCK-}}" ]; then printf 'SSH_AUTH_SOCK=%s\\n' "$MANAGER_SSH_AUTH_SOCK"; fi
    fi
    exit 0
fi
if [ "$#" -eq 1 ] && [ "$1" = -l ]; then
    if [ ! -e {crontab} ]; then
        echo 'no crontab for tester' >&2
        exit 1
    fi
    exec cat {crontab}
elif [ "$#" -eq 1 ] && [ "$1" = - ]; then
    exec cat > {crontab}
fi
exit 0
"""


def _recorder(log: Path, crontab: Path, *, systemd: bool) -> str:
    """The text of a recorder (``systemctl`` or ``crontab``, by the name it is called by)."""
    return _RECORDER.format(log=shlex.quote(str(log)), crontab=shlex.quote(str(crontab)),
                            systemd="true" if systemd else "false")


def _tools(tmp_path: Path, monkeypatch, *, systemd: bool, login_key: bool = True) -> tuple[Path, Path]:
    """The recorders on PATH; with ``login_key`` a HOME whose ~/.ssh holds a key without
    passphrase (what a nightly run logs in with: ``schedule --install`` warns without one)."""
    if login_key:
        import asyncssh

        home = tmp_path / "login-home"
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        key = home / ".ssh" / "id_ed25519"
        key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))
        key.chmod(0o600)
        monkeypatch.setenv("HOME", str(home))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, tab = tmp_path / "calls.log", tmp_path / "crontab.txt"
    for name in ("systemctl", "crontab"):
        p = bin_dir / name
        p.write_text(_recorder(log, tab, systemd=systemd))
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return log, tab


def _calls(log: Path, tool: str = "") -> list[str]:
    calls = log.read_text().splitlines() if log.exists() else []
    log.write_text("")
    return [c for c in calls if c.startswith(tool)]


def test_install_and_uninstall_the_systemd_timer_idempotently(tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path)
    log, _tab = _tools(tmp_path, monkeypatch, systemd=True)
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    assert main([*args, "--install"]) == 0
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    files = sorted(p.name for p in unit_dir.iterdir())
    assert len(files) == 2 and files[0].endswith(".service") and files[1].endswith(".timer")
    timer = files[1]
    assert _calls(log, "systemctl") == ["systemctl --user show-environment", "systemctl --user daemon-reload",
                                        f"systemctl --user enable --now {timer}"]
    assert (unit_dir / files[0]).read_text() == _units(_print(cfg, capsys))[files[0]]
    mtimes = [(unit_dir / f).stat().st_mtime_ns for f in files]
    assert main([*args, "--install"]) == 0  # again: nothing rewritten, no reload
    assert _calls(log, "systemctl") == ["systemctl --user show-environment",
                                        f"systemctl --user enable --now {timer}"]
    assert [(unit_dir / f).stat().st_mtime_ns for f in files] == mtimes
    assert main([*args, "--uninstall"]) == 0
    calls = _calls(log)
    assert f"systemctl --user disable --now {timer}" in calls and "systemctl --user daemon-reload" in calls
    assert list(unit_dir.iterdir()) == []
    assert main([*args, "--uninstall"]) == 0  # again: nothing to do
    assert "nothing was installed" in capsys.readouterr().out
    assert not any(c.startswith("systemctl --user disable") for c in _calls(log))


def test_install_falls_back_to_a_crontab_line(tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path)
    log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    tab.write_text("MAILTO=someone@example.edu\n0 3 * * * /usr/bin/backup\n")
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    assert main([*args, "--install"]) == 0
    assert main([*args, "--install"]) == 0
    lines = tab.read_text().splitlines()
    assert lines[:2] == ["MAILTO=someone@example.edu", "0 3 * * * /usr/bin/backup"]
    assert len(lines) == 3 and "report-keeper-schedule" in lines[2]
    assert "already installed" in capsys.readouterr().out
    assert not (tmp_path / "xdg" / "systemd").exists()
    # another profile's line is its own
    other = cfg.parent / "other.toml"
    other.write_text(cfg.read_text())
    assert main(["schedule", "--config", str(other), "--profile", "library", "--install"]) == 0
    assert len(tab.read_text().splitlines()) == 4
    assert main([*args, "--uninstall"]) == 0
    lines = tab.read_text().splitlines()
    assert len(lines) == 3 and str(other).replace("%", "\\%") in lines[2]
    assert main([*args, "--uninstall"]) == 0
    assert len(tab.read_text().splitlines()) == 3


def test_a_refusing_systemctl_is_reported(tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path)
    _tools(tmp_path, monkeypatch, systemd=True)
    failing = tmp_path / "bin" / "systemctl"
    failing.write_text(f"#!{sys.executable}\nimport sys\nif 'show-environment' in sys.argv: sys.exit(0)\n"
                       "sys.stderr.write('Failed to enable unit: Access denied\\n'); sys.exit(1)\n")
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 2
    assert "Access denied" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Hostile paths: the installed line must run exactly our command with exactly that path.

# The program's stand-in records how it was run. -IS: no site-packages, no PYTHON* variables
# (it needs only the standard library): a third less start-up, run some 130 times here.
_STUB = """#!{python} -IS
import json, os, sys
with open({record!r}, "a", encoding="utf-8", errors="surrogateescape") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "secret": os.environ.get("RK_SMTP_PASSWORD"),
                        "stdin_tty": os.isatty(0),
                        "tz": os.environ.get("TZ"),
                        "xdg": {{k: v for k, v in os.environ.items() if k.startswith("XDG_")}}}}) + "\\n")
"""


def _cron_command(line: str) -> tuple[str, str | None]:
    """What Vixie cron (Debian's) runs of a crontab line: the five time fields dropped, ``\\%``
    read as ``%``, and an unescaped ``%`` ending the command (the rest is its stdin, every
    further ``%`` a line break). Only a backslash right before ``%`` is removed."""
    command = line.split(None, 5)[5]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif ch == "%":
            return "".join(out), command[i + 1:].replace("%", "\n")
        else:
            out.append(ch)
    return "".join(out), None


def _hostile_setup(tmp_path: Path, monkeypatch, folder_name: str) -> tuple[Path, Path, Path]:
    from tui.core import unattended as un

    folder = tmp_path / folder_name
    folder.mkdir()
    cfg = folder / "config.toml"
    cfg.write_text(f"""
[profile.library]
host = "127.0.0.1"
timezone = "America/Chicago"
ledger = {str(tmp_path / 'ledger.sqlite3')!r}
""")
    (folder / "secrets.env").write_text("RK_SMTP_PASSWORD='s3 cr$et'\n")
    (folder / "secrets.env").chmod(0o600)  # the password: the user's alone
    record = tmp_path / "record.jsonl"
    stub = folder / "report-keeper"
    stub.write_text(_STUB.format(python=sys.executable, record=str(record)))
    stub.chmod(0o700)
    monkeypatch.setattr(un, "program", lambda: (str(stub),))
    return cfg, stub, record


_HOSTILE = ["my configs 100%", "it's", 'say "hi"', "$HOME", "`touch pwned`", "$(touch pwned)",
            "a;touch pwned", "#x", "back\\slash", "pct\\%x", "end\\", "Bücherei", "*", "-dash",
            "%%", "a\\\\%b", "~user", "x > y", "tab\\t"]


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])  # a crontab's SHELL=/bin/bash runs it too
@pytest.mark.parametrize("folder_name", _HOSTILE)
def test_the_installed_crontab_line_runs_exactly_our_command(tmp_path, monkeypatch, capsys, folder_name, shell):
    import json

    cfg, _stub, record = _hostile_setup(tmp_path, monkeypatch, folder_name)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 0, \
        capsys.readouterr().err
    [line] = tab.read_text(encoding="utf-8").splitlines()
    command, stdin = _cron_command(line)
    home = tmp_path / "home"
    home.mkdir()
    # cron's environment: a minimal PATH, HOME, no TERM, no LANG, stdin not a terminal
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/sh", "LOGNAME": "tester"}
    res = subprocess.run([shell, "-c", command], input=stdin or "", env=env, cwd=home,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    runs = [json.loads(x) for x in record.read_text(encoding="utf-8").splitlines()]
    assert [r["argv"] for r in runs] == [[sub, "--config", str(cfg), "--profile", "library"]
                                        for sub in ("sync", "check")]
    assert all(r["secret"] == "s3 cr$et" and not r["stdin_tty"] for r in runs)
    assert not list(home.iterdir()) and not (tmp_path / "pwned").exists()


def _set_systemd(tmp_path: Path, available: bool) -> None:
    p = tmp_path / "bin" / "systemctl"
    p.write_text(_recorder(tmp_path / "calls.log", tmp_path / "crontab.txt", systemd=available))


def test_installing_with_the_other_scheduler_never_leaves_two_nightly_runs(tmp_path, monkeypatch, capsys):
    """Installed from an SSH session without a user manager (crontab line), then again from a
    desktop session (systemd timer): one nightly run, not two at once."""
    cfg = _config(tmp_path)
    log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    tab.write_text("0 3 * * * /usr/bin/backup\n")
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    assert main([*args, "--install"]) == 0
    assert len(tab.read_text().splitlines()) == 2
    _set_systemd(tmp_path, True)
    assert main([*args, "--install"]) == 0
    out = capsys.readouterr().out
    assert tab.read_text() == "0 3 * * * /usr/bin/backup\n", out
    assert "removed the crontab line" in out
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    assert len(list(unit_dir.iterdir())) == 2
    # and the other way: the timer is installed, systemctl cannot reach the manager now
    _set_systemd(tmp_path, False)
    _calls(log)
    assert main([*args, "--install"]) == 2
    err = capsys.readouterr().err
    assert "timer" in err and "systemctl --user" in err and "--uninstall" in err, err
    assert tab.read_text() == "0 3 * * * /usr/bin/backup\n"  # nothing half done
    assert len(list(unit_dir.iterdir())) == 2


def test_a_unit_file_that_is_not_ours_is_never_overwritten_or_removed(tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path)
    _tools(tmp_path, monkeypatch, systemd=True)
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    units = _units(_print(cfg, capsys))
    [service] = [n for n in units if n.endswith(".service")]
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    unit_dir.mkdir(parents=True)
    mine = "[Unit]\nDescription=my own hand-written unit\n[Service]\nExecStart=/usr/bin/true\n"
    (unit_dir / service).write_text(mine)
    assert main([*args, "--install"]) == 2
    err = capsys.readouterr().err
    assert service in err and "not written by report-keeper" in err, err
    assert (unit_dir / service).read_text() == mine
    assert sorted(p.name for p in unit_dir.iterdir()) == [service]  # nothing half done
    assert main([*args, "--uninstall"]) == 2
    assert "not written by report-keeper" in capsys.readouterr().err
    assert (unit_dir / service).read_text() == mine


def test_the_users_own_crontab_lines_are_kept_byte_for_byte(tmp_path, monkeypatch, capsys):
    """Comments in another encoding, characters Python alone takes for line breaks (form feed,
    NEL, U+2028, a carriage return), environment lines: install and uninstall change only our
    line. (The file keeps a final line break: Debian's crontab refuses a file without one.)"""
    cfg = _config(tmp_path)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    own = ("SHELL=/bin/bash\nMAILTO=someone@example.edu\n# Sauvegarde \xe0 3h (latin-1)\n"
           "# page\x0cbreak \xc2\x85 NEL \xe2\x80\xa8 line separator\n"
           "0 3 * * * /usr/bin/backup --label 'r\u00e9sum\u00e9'\r\n"
           "# report-keeper-schedule is a word I use too\n").encode("latin-1")
    tab.write_bytes(own)
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    assert main([*args, "--install"]) == 0, capsys.readouterr().err
    after = tab.read_bytes()
    assert after[:len(own)] == own and after.count(b"\n") == own.count(b"\n") + 1
    assert main([*args, "--install"]) == 0  # twice: no duplicate
    assert tab.read_bytes() == after
    assert main([*args, "--uninstall"]) == 0, capsys.readouterr().err
    assert tab.read_bytes() == own


_MEETING_CRONTAB = """#!{python}
import os, sys, time
from pathlib import Path

tab, reads, pids = Path({tab!r}), Path({reads!r}), Path({pids!r})
me = str(os.getppid())  # the install that runs this crontab


def others() -> set[str]:
    try:
        return set(pids.read_text().split()) - {{me}}
    except OSError:  # the test has not written them yet
        return set()


def another_read() -> bool:
    return bool(set(reads.read_text().split()) - {{me}})


def another_waits_for_a_lock() -> bool:
    waiting = others()
    with open("/proc/locks") as f:  # "N: -> FLOCK  ADVISORY  WRITE <pid> ...": a blocked request
        return any(w[1:2] == ["->"] and w[5:6] and w[5] in waiting for w in map(str.split, f))


if sys.argv[1:] == ["-l"]:
    # The read waits until the other install has read the crontab too (without a lock both
    # write back what they read, and one line is lost) or waits for a lock (it cannot read
    # until this one has written): a condition, not a time, so the two are surely at work at
    # once. The bound only keeps a broken test from hanging.
    with reads.open("a") as f:
        f.write(me + "\\n")
    stop = time.monotonic() + 60
    while not (another_read() or another_waits_for_a_lock()) and time.monotonic() < stop:
        time.sleep(0.01)
    if not tab.exists():
        sys.stderr.write("no crontab for tester\\n")
        sys.exit(1)
    sys.stdout.buffer.write(tab.read_bytes())
elif sys.argv[1:] == ["-"]:
    tab.write_bytes(sys.stdin.buffer.read())
"""


def test_two_installs_at_once_keep_both_lines(tmp_path, monkeypatch):
    """Two profiles installed at the same moment (a script looping over profiles in the
    background): each reads the crontab, adds its line and writes it back; the second write
    used to drop the first one's line."""
    cfg = _config(tmp_path)
    other = cfg.parent / "other.toml"
    other.write_text(cfg.read_text())
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    reads, pids = tmp_path / "crontab-reads", tmp_path / "installs"
    reads.write_text("")
    (tmp_path / "bin" / "crontab").write_text(_MEETING_CRONTAB.format(
        python=sys.executable, tab=str(tab), reads=str(reads), pids=str(pids)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    procs = [subprocess.Popen([sys.executable, "-m", "tui", "schedule", "--config", str(c), "--profile",
                               "library", "--install"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for c in (cfg, other)]
    pids.write_text(" ".join(str(p.pid) for p in procs))
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert len(reads.read_text().split()) == 2  # each read the crontab once
    lines = tab.read_text().splitlines()
    assert len(lines) == 2 and {line.rsplit("/", 1)[1] for line in lines} == {"config.toml", "other.toml"}


@pytest.mark.parametrize("folder_name", ["plain", "it's $HOME 100% `x`", "pct\\%x"])
def test_the_nightly_run_uses_the_folders_schedule_was_run_with(tmp_path, monkeypatch, capsys, folder_name):
    """With XDG_DATA_HOME set in the shell (a ledger and local folder by default under it),
    cron's environment has none: the nightly sync used another ledger and downloaded every
    report again into another folder, which the app never showed."""
    import json

    cfg, _stub, record = _hostile_setup(tmp_path, monkeypatch, folder_name)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    data, state = tmp_path / folder_name / "data", tmp_path / folder_name / "state"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 0, \
        capsys.readouterr().err
    [line] = tab.read_text(encoding="utf-8").splitlines()
    command, stdin = _cron_command(line)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh"}
    res = subprocess.run(["/bin/sh", "-c", command], input=stdin or "", env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    runs = [json.loads(x) for x in record.read_text(encoding="utf-8").splitlines()]
    assert [r["xdg"] for r in runs] == [{"XDG_DATA_HOME": str(data), "XDG_STATE_HOME": str(state)}] * 2
    # the timer's service says the same
    text = _print(cfg, capsys)
    [service] = [t for n, t in _units(text).items() if n.endswith(".service")]
    envs = [shlex.split(l.split("=", 1)[1]) for l in service.splitlines() if l.startswith("Environment=")]
    assert envs == [[f"XDG_DATA_HOME={data}".replace("%", "%%")], [f"XDG_STATE_HOME={state}".replace("%", "%%")]]
    if SYSTEMD_ANALYZE:
        res = _systemd_verify(tmp_path, _units(text))
        assert res.returncode == 0 and "ignoring" not in res.stderr.lower(), res.stderr


def _systemd_words(value: str) -> list[str]:
    """An ExecStart= value as systemd passes it on: quoted words, ``%%`` a ``%``, and ``$$`` a
    ``$`` in the arguments (the executable's name is not expanded). Only the escapes the
    generated units use (``\\\\``, ``\\"``) are read."""
    words = shlex.split(value)
    return [w.replace("%%", "%") if i == 0 else w.replace("%%", "%").replace("$$", "$")
            for i, w in enumerate(words)]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("folder_name", _HOSTILE)
def test_the_timer_runs_exactly_our_command(tmp_path, monkeypatch, capsys, folder_name):
    """The program itself in a hostile folder: systemd refuses an executable name holding a
    quote or a backslash (the whole unit), and reads ``$$`` in it as two dollars."""
    import json

    cfg, _stub, record = _hostile_setup(tmp_path, monkeypatch, folder_name)
    units = _units(_print(cfg, capsys))
    res = _systemd_verify(tmp_path, units)
    assert res.returncode == 0 and "ignoring" not in res.stderr.lower(), res.stderr
    [service] = [t for n, t in units.items() if n.endswith(".service")]
    for line in service.splitlines():
        if line.startswith("ExecStart="):
            subprocess.run(_systemd_words(line.split("=", 1)[1]), check=True, timeout=60, stdin=subprocess.DEVNULL,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    runs = [json.loads(x) for x in record.read_text(encoding="utf-8").splitlines()]
    assert [r["argv"] for r in runs] == [[sub, "--config", str(cfg), "--profile", "library"]
                                        for sub in ("sync", "check")]


def test_a_crontab_line_cron_would_cut_short_is_refused(tmp_path, monkeypatch, capsys):
    """Vixie cron (Debian's cron) keeps at most 999 characters of a command and drops the
    rest without a word: with a deep config folder the nightly 'check' lost its profile (or
    more), every night. Such a line is refused, nothing is written, and the printed line
    says so."""
    deep = tmp_path / "/".join(["Library Services Electronic Resources Alma Analytics"] * 9)
    deep.mkdir(parents=True)
    cfg = _config(tmp_path)
    cfg = cfg.rename(deep / "config.toml")
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    tab.write_text("0 3 * * * /usr/bin/backup\n")
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    assert main([*args, "--install"]) == 2
    err = capsys.readouterr().err
    assert "999" in err and "cron" in err, err
    assert tab.read_text() == "0 3 * * * /usr/bin/backup\n"
    assert main(args) == 0
    out = capsys.readouterr().out
    [line] = [l for l in out.splitlines() if " * * * " in l and not l.startswith("#")]
    assert len(_cron_command(line)[0].split(" # report-keeper-schedule")[0]) > 999
    assert "999" in out.split(line)[0].splitlines()[-1]  # the comment right above it says so


@pytest.mark.parametrize("raw", [b"lat\xe9", b"new\nline", b"esc\x1b[31m"])
def test_a_path_no_timer_can_hold_is_refused_in_one_line(tmp_path, monkeypatch, capsys, raw):
    """A folder name that is not UTF-8 (a Latin-1 name from an old share) crashed schedule
    ('unexpected error ... this is a bug', exit 2). Now exit 3 and one line saying why, as
    for a line break or an escape (which held)."""
    _tools(tmp_path, monkeypatch, systemd=False)
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/" + raw))
    folder.mkdir()
    cfg = folder / "config.toml"
    cfg.write_text(f'[profile.library]\nhost = "127.0.0.1"\ntimezone = "UTC"\nledger = {str(tmp_path / "l.sqlite3")!r}\n')
    for extra in ([], ["--install"]):
        assert main(["schedule", "--config", str(cfg), "--profile", "library", *extra]) == 3
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "unexpected" not in err, err
        assert "UTF-8" in err if b"\xe9" in raw else "control characters" in err
    assert not (tmp_path / "crontab.txt").exists()


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_a_percent_in_the_profile_name_is_not_a_specifier(tmp_path, capsys):
    """``Description=`` expands specifiers: a profile named 'Zweigstelle 50%Z' made systemd
    warn and drop the description at every load ('%n' would name the unit instead)."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profile."Zweigstelle 50%Z"]\nhost = "127.0.0.1"\ntimezone = "UTC"\n'
                   f'ledger = {str(tmp_path / "l.sqlite3")!r}\n')
    assert main(["schedule", "--config", str(cfg), "--profile", "Zweigstelle 50%Z"]) == 0
    units = _units(capsys.readouterr().out)
    for text in units.values():
        assert "Description=" in text and "'Zweigstelle 50%%Z'" in text
    res = _systemd_verify(tmp_path, units)
    assert res.returncode == 0 and "ignoring" not in res.stderr.lower(), res.stderr


def test_a_secrets_file_sh_cannot_read_does_not_stop_the_nightly_run(tmp_path, monkeypatch, capsys):
    """A password holding an apostrophe written as the README shows ('it's'): sh's '.' meets a
    syntax error and a non-interactive sh exits there, so neither sync nor check ran, every
    night (the timer's EnvironmentFile= reads it and runs). Now both run, without it."""
    import json

    cfg, _stub, record = _hostile_setup(tmp_path, monkeypatch, "configs")
    (cfg.parent / "secrets.env").write_text("RK_SMTP_PASSWORD='it's'\n")
    (cfg.parent / "secrets.env").chmod(0o600)  # the password: the user's alone
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 0
    [line] = tab.read_text(encoding="utf-8").splitlines()
    command, stdin = _cron_command(line)
    res = subprocess.run(["/bin/sh", "-c", command], input=stdin or "", capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=60)
    runs = [json.loads(x) for x in record.read_text(encoding="utf-8").splitlines()] if record.exists() else []
    assert [r["argv"][0] for r in runs] == ["sync", "check"], res.stderr
    assert "secrets.env" in res.stderr  # cron mails what sh said about the file


def test_uninstall_without_the_user_manager_changes_nothing_and_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    """The timer installed from a login session; --uninstall where systemctl --user cannot
    reach the manager (sudo -u, a shell without XDG_RUNTIME_DIR) deleted the unit files and
    said 'removed', while a lingering manager kept the timer loaded and running every night,
    and its timers.target.wants link was left dangling."""
    cfg = _config(tmp_path)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=True)
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    assert main([*args, "--install"]) == 0
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    before = sorted(p.name for p in unit_dir.iterdir())
    _set_systemd(tmp_path, False)
    capsys.readouterr()
    assert main([*args, "--uninstall"]) == 2
    err = capsys.readouterr().err
    assert "systemctl --user" in err and "login session" in err, err
    assert sorted(p.name for p in unit_dir.iterdir()) == before
    _set_systemd(tmp_path, True)
    assert main([*args, "--uninstall"]) == 0
    assert list(unit_dir.iterdir()) == []


def test_a_user_cron_refuses_still_gets_the_timer(tmp_path, monkeypatch, capsys):
    """cron.deny: 'crontab -l' fails. The timer needs no crontab, so its install succeeds (it
    looks for an older line of its own only where the crontab can be read)."""
    cfg = _config(tmp_path)
    _tools(tmp_path, monkeypatch, systemd=True)
    (tmp_path / "bin" / "crontab").write_text(
        f"#!{sys.executable}\nimport sys\nsys.stderr.write('You (tester) are not allowed to use this "
        "program (crontab)\\n')\nsys.exit(1)\n")
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 0, \
        capsys.readouterr().err
    assert "enabled" in capsys.readouterr().out


def test_the_crontab_time_is_on_crons_clock_not_the_shells_tz(tmp_path, monkeypatch, capsys):
    """cron runs lines on the machine's clock (/etc/localtime); a TZ set in the librarian's
    shell is not cron's. The line was converted to TZ: with TZ=Asia/Tokyo on a UTC machine,
    a run planned for 09:25 in Chicago was written for 00:25 and ran at 18:25 Chicago time,
    before the reports were due. And the run gets the same TZ, so a profile without a
    'timezone' uses at night the zone it uses by day."""
    import json
    from zoneinfo import ZoneInfo

    from tui.core import config as config_module
    from tui.core import unattended as un

    monkeypatch.delenv("TZ", raising=False)
    machine = config_module.system_timezone()
    other = "Asia/Tokyo" if un._tz_name(machine) not in ("Asia/Tokyo", "Japan") else "America/Lima"
    cfg, _stub, record = _hostile_setup(tmp_path, monkeypatch, "configs")
    with_zone = _config(tmp_path)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    assert main(["schedule", "--config", str(with_zone), "--profile", "library"]) == 0
    expected = capsys.readouterr().out
    monkeypatch.setenv("TZ", other)
    assert main(["schedule", "--config", str(with_zone), "--profile", "library"]) == 0
    out = capsys.readouterr().out
    [line] = [l for l in out.splitlines() if " * * * " in l and not l.startswith("#")]
    [want] = [l for l in expected.splitlines() if " * * * " in l and not l.startswith("#")]
    assert line.split()[:2] == want.split()[:2], (line[:20], want[:20], ZoneInfo(other))
    # the TZ goes with the run
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 0
    [line] = tab.read_text(encoding="utf-8").splitlines()
    command, stdin = _cron_command(line)
    subprocess.run(["/bin/sh", "-c", command], input=stdin or "", check=True, timeout=60,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    runs = [json.loads(x) for x in record.read_text(encoding="utf-8").splitlines()]
    assert [r["tz"] for r in runs] == [other, other]


@pytest.mark.parametrize("shell, ok", [("/usr/bin/fish", False), ("/bin/csh", False), ("/bin/bash", True),
                                       ('"/bin/sh"', True)])
def test_a_crontab_whose_shell_is_not_sh_gets_no_line_it_cannot_run(tmp_path, monkeypatch, capsys, shell, ok):
    """A crontab's SHELL= line applies to every line below it: under fish or csh the line's
    sh words ('set -a', '[ ... ] ||', 'for ... do') fail and nothing ran, every night."""
    cfg = _config(tmp_path)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    own = f"SHELL={shell}\n0 3 * * * backup\n"
    tab.write_text(own)
    code = main(["schedule", "--config", str(cfg), "--profile", "library", "--install"])
    if ok:
        assert code == 0 and len(tab.read_text().splitlines()) == 3
    else:
        assert code == 2 and tab.read_text() == own
        err = capsys.readouterr().err
        assert f"SHELL={shell}" in err and "/bin/sh" in err, err


def test_the_units_go_where_the_user_manager_looks_for_them(tmp_path, monkeypatch, capsys):
    """XDG_CONFIG_HOME set in the shell's profile is not the user manager's environment: the
    units were written under the shell's folder, where the manager never looks; 'enable --now'
    then failed with 'Unit ... not found', the files and the enable link left behind."""
    cfg = _config(tmp_path)
    _tools(tmp_path, monkeypatch, systemd=True)
    manager_home = tmp_path / "manager-home"
    monkeypatch.setenv("MANAGER_HOME", str(manager_home))
    monkeypatch.setenv("MANAGER_XDG_CONFIG_HOME", "")  # the manager has none: ~/.config
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    assert main([*args, "--install"]) == 0, capsys.readouterr().err
    assert len(list((manager_home / ".config" / "systemd" / "user").iterdir())) == 2
    assert not (tmp_path / "xdg" / "systemd").exists()
    assert main([*args, "--uninstall"]) == 0
    assert list((manager_home / ".config" / "systemd" / "user").iterdir()) == []


def _without_library(cfg: Path) -> None:
    """The config with profile 'library' deleted and another profile in its place."""
    cfg.write_text('[profile.branch]\nhost = "127.0.0.1"\ntimezone = "America/Chicago"\n')


def test_the_timer_of_a_profile_deleted_from_the_config_can_still_be_removed(tmp_path, monkeypatch, capsys):
    """A library removed from the config: its timer went on failing every night, and
    --uninstall --profile of it said 'no such profile' (exit 3). Removing needs only what is
    installed, found by the profile's name and the config's path."""
    cfg = _config(tmp_path)
    log, _tab = _tools(tmp_path, monkeypatch, systemd=True)
    args = ["schedule", "--config", str(cfg), "--profile", "library"]
    assert main([*args, "--install"]) == 0
    unit_dir = tmp_path / "xdg" / "systemd" / "user"
    [timer] = [p.name for p in unit_dir.iterdir() if p.name.endswith(".timer")]
    _without_library(cfg)
    _calls(log)
    capsys.readouterr()
    assert main([*args, "--uninstall"]) == 0, capsys.readouterr().err
    assert f"systemctl --user disable --now {timer}" in _calls(log)
    assert list(unit_dir.iterdir()) == []
    assert "removed" in capsys.readouterr().out
    assert main([*args, "--uninstall"]) == 0  # again: nothing left
    assert "nothing was installed for profile 'library'" in capsys.readouterr().out


def test_the_crontab_line_of_a_deleted_profile_or_config_can_still_be_removed(tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    tab.write_text("0 3 * * * /usr/bin/backup\n")
    other = cfg.parent / "other.toml"
    other.write_text(cfg.read_text())
    for config in (cfg, other):
        assert main(["schedule", "--config", str(config), "--profile", "library", "--install"]) == 0
    assert len(tab.read_text().splitlines()) == 3
    _without_library(cfg)
    other.unlink()  # the whole config file gone
    capsys.readouterr()
    for config in (cfg, other):
        assert main(["schedule", "--config", str(config), "--profile", "library", "--uninstall"]) == 0, \
            capsys.readouterr().err
        assert "removed the crontab line" in capsys.readouterr().out
    assert tab.read_text() == "0 3 * * * /usr/bin/backup\n"


@pytest.mark.parametrize("systemd", [True, False])
def test_one_install_reads_the_crontab_once(tmp_path, monkeypatch, capsys, systemd):
    """The look for the --all-profiles line beside a profile's own and the install each ran
    'crontab -l'."""
    cfg = _config(tmp_path)
    log, tab = _tools(tmp_path, monkeypatch, systemd=systemd)
    tab.write_text("0 3 * * * /usr/bin/backup\n")
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 0, \
        capsys.readouterr().err
    assert _calls(log, "crontab -l") == ["crontab -l"]
