"""``report-keeper init`` end to end against the real OpenSSH sshd: unattended with flags,
with a new key the server does not accept yet (the config is written, pending noted), and
through a pseudo-terminal with typed answers (new key pair, host key confirmation, folder
picker, report proposals). Each run has its own HOME, so ~/.ssh is the test's."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pexpect
import pytest

from tests.xlsx_factory import write_report
from tui.core import setup as su
from tui.core.config import load_config
from tui.core.model import RemoteFile

TZ = ZoneInfo("America/Chicago")
REPORT = "Loans Per Patron From 3 Days Ago"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK",)}
    env.update(HOME=str(home), REPORT_KEEPER_NOW="2026-11-26T16:00:00+00:00", TERM="dumb",
               COLUMNS="100")
    return env


@pytest.fixture
def site(sshd, tmp_path):
    """A report folder on the real sshd with a week of daily deliveries and a sub-folder."""
    sub = Path(tempfile.mkdtemp(prefix="init-", dir=sshd.root))
    folder = sub / "upload" / "ALMA"
    (sub / "upload" / "other").mkdir(parents=True)
    folder.mkdir(parents=True)
    for i in range(7):
        day = date(2026, 11, 20) + timedelta(days=i)
        at = datetime.combine(day, time(7, 3), tzinfo=TZ)
        path = folder / f"{REPORT}_{at:%Y%m%d_%H%M%S}.xlsx"
        write_report(path, n_rows=3, day=day, seed=i)
        os.utime(path, (at.timestamp(), at.timestamp()))
    (folder / "readme.txt").write_text("not a report")
    for p in [sub, *sub.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    yield sub, home
    shutil.rmtree(sub, ignore_errors=True)


def _init(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui", "init", *args], env=_env(home),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.sshd
def test_unattended_init_with_flags(sshd, site, tmp_path):
    sub, home = site
    cfg = tmp_path / "conf" / "config.toml"
    res = _init(home, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(sshd.port),
                "--username", sshd.username, "--key", str(sshd.key), "--remote-dir", f"{sub.name}/upload/ALMA",
                "--local-dir", str(tmp_path / "reports"), "--timezone", "America/Chicago", "--yes",
                "--accept-new-host-key")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Upload ok, download ok, delete ok" in res.stdout
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert not [p for p in cfg.parent.iterdir() if p.name != "config.toml"]  # no temp file left
    prof = load_config(cfg).profile()
    assert (prof.host, prof.port, prof.username, prof.key) == ("127.0.0.1", sshd.port, sshd.username, sshd.key)
    assert prof.remote_dir == f"{sub.name}/upload/ALMA" and str(prof.timezone) == "America/Chicago"
    [report] = prof.reports
    assert (report.name, report.schedule, report.at) == (REPORT, "daily", time(7, 0))
    assert (home / ".ssh" / "known_hosts").read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    # the profile works: check lists the folder and finds every report on time
    env = _env(home)
    res = subprocess.run([sys.executable, "-m", "tui", "check", "--config", str(cfg), "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    doc = json.loads(res.stdout)
    assert doc["connection"]["write_test"] == "ok"
    [loans] = [r for r in doc["reports"] if r["name"] == REPORT]
    assert loans["problems"] == [] and loans["schedule"] == "daily"

    # an existing config is never overwritten without --force
    before = cfg.read_text()
    res = _init(home, "--config", str(cfg), "--host", "other.example.org", "--yes")
    assert res.returncode == 3 and "exists; run again with --force" in res.stderr
    assert cfg.read_text() == before
    # with --force: a backup is kept and other profiles survive
    cfg.write_text(before + '\n[profile.second]\nhost = "files.example.org"  # kept\n')
    res = _init(home, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(sshd.port),
                "--username", sshd.username, "--key", str(sshd.key), "--remote-dir", f"{sub.name}/upload",
                "--timezone", "America/Chicago", "--yes", "--force")
    assert res.returncode == 0, res.stdout + res.stderr
    [backup] = [p for p in cfg.parent.iterdir() if ".bak-" in p.name]
    assert "# kept" in backup.read_text() and stat.S_IMODE(backup.stat().st_mode) == 0o600
    cfg_all = load_config(cfg)
    assert set(cfg_all.profiles) == {"default", "second"} and "# kept" in cfg.read_text()
    assert cfg_all.profile("default").remote_dir == f"{sub.name}/upload"


@pytest.mark.sshd
def test_unattended_init_with_a_new_key_not_yet_accepted(sshd, site, tmp_path):
    sub, home = site
    cfg = tmp_path / "config.toml"
    args = ["--config", str(cfg), "--host", "127.0.0.1", "--port", str(sshd.port), "--username",
            sshd.username, "--new-key", "--remote-dir", f"{sub.name}/upload/ALMA", "--timezone",
            "America/Chicago", "--yes", "--accept-new-host-key"]
    res = _init(home, *args)
    assert res.returncode == 1, res.stdout + res.stderr
    key = home / ".ssh" / "id_ed25519_report_keeper"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = key.with_suffix(".pub").read_text().strip()
    assert "Send this line to your SFTP server's administrator" in res.stdout
    assert public in res.stdout and public.startswith("ssh-ed25519 ")
    assert "does not accept the new key yet" in res.stdout
    text = cfg.read_text()
    assert "# PENDING: the server does not accept the new key yet" in text
    prof = load_config(cfg).profile()
    assert prof.key == key and prof.remote_dir == f"{sub.name}/upload/ALMA" and prof.reports == ()

    # the administrator adds the key; the written profile now works as it is
    auth_file = next(Path(sshd.root).parent.glob("authorized_keys"))
    with auth_file.open("a") as f:
        f.write(public + "\n")
    res = subprocess.run([sys.executable, "-m", "tui", "check", "--config", str(cfg), "--json"],
                         env=_env(home), capture_output=True, text=True, timeout=120)
    assert json.loads(res.stdout)["connection"]["write_test"] == "ok", res.stderr
    # a second --new-key never overwrites the first key
    res = _init(home, *args, "--force")
    assert res.returncode == 1, res.stdout + res.stderr  # the second new key is not accepted yet
    assert (home / ".ssh" / "id_ed25519_report_keeper_2").is_file()
    assert key.with_suffix(".pub").read_text().strip() == public


@pytest.mark.sshd
def test_interactive_init_through_a_terminal(sshd, site, tmp_path):
    sub, home = site
    cfg = tmp_path / "config.toml"
    child = pexpect.spawn(sys.executable, ["-m", "tui", "init", "--config", str(cfg)],
                          env=_env(home), encoding="utf-8", timeout=60, dimensions=(40, 120))
    try:
        child.expect(r"SFTP server .*: ")
        child.sendline("bad host/with path")
        child.expect("is not a host name")
        child.sendline("127.0.0.1")
        child.expect(r"Port \[22\]: ")
        child.sendline(str(sshd.port))
        child.expect(r"User name on the server \[.*\]: ")
        child.sendline(sshd.username)
        child.expect(r"n\) create a new ed25519 key pair")
        child.expect(r"Choice \[n\]: ")
        child.sendline("")
        child.expect(r"administrator.*\r\n\r\n(ssh-ed25519 \S+ \S+)\r\n")
        public = child.match.group(1)
        auth_file = next(Path(sshd.root).parent.glob("authorized_keys"))
        with auth_file.open("a") as f:  # what the administrator does
            f.write(public + "\n")
        child.expect("Press Enter once the administrator has added it")
        child.sendline("")
        child.expect(r"(SHA256:\S+)\r\n")
        assert child.match.group(1) == sshd.host_key.get_fingerprint("sha256")
        child.expect(r"Is it the same\? \(yes records it\) \[y/N\]: ")
        child.sendline("y")
        child.expect("Connected.")
        child.expect("Enter to choose this folder: ")
        child.sendline(f"{sub.name}/upload")  # a path
        child.expect(r"(\d+)\) ALMA/")
        number = child.match.group(1).strip()
        child.expect("Enter to choose this folder: ")
        child.sendline("99")
        child.expect("there is no folder 99 here")
        child.expect("Enter to choose this folder: ")
        child.sendline(number)  # a number
        child.expect(r"ALMA: 0 folder\(s\), 8 file\(s\), 7 Excel report\(s\)")
        child.expect("Enter to choose this folder: ")
        child.sendline("")
        child.expect(r"Local folder for the downloaded reports \[.*\]: ")
        child.sendline("~/.ssh")  # SSH's own folder: refused where it is typed, asked again
        child.expect("known_hosts")
        child.expect(r"Local folder for the downloaded reports \[.*\]: ")
        child.sendline(str(tmp_path / "reports"))
        child.expect(r"Time zone of the library \[.*\]: ")
        child.sendline("Mars/Olympus")
        child.expect("is not a time zone")
        child.sendline("America/Chicago")
        child.expect(f"'{REPORT}': every day at 07:00 \\(fits 100% of its 7 files\\)")
        child.expect(r"Keep this schedule\? y / e\(dit\) / s\(kip\) \[y\]: ")
        child.sendline("e")
        child.expect(r"Schedule .*\[daily\]: ")
        child.sendline("")
        child.expect(r"Time it runs \(HH:MM\) \[07:00\]: ")
        child.sendline("07:15")
        child.expect(r"Late after \(grace\) \[2h\]: ")
        child.sendline("90m")
        child.expect("Upload ok, download ok, delete ok")
        child.expect("Wrote ")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    prof = load_config(cfg).profile()
    assert prof.remote_dir == f"{sub.name}/upload/ALMA" and prof.key == home / ".ssh" / "id_ed25519_report_keeper"
    [report] = prof.reports
    assert (report.name, report.schedule, report.at, report.grace) == (REPORT, "daily", time(7, 15), timedelta(minutes=90))
    assert sshd.host_key.export_public_key().split()[1].decode() in (home / ".ssh" / "known_hosts").read_text()


def test_a_local_folder_the_config_refuses_is_a_usage_error_not_a_bug(tmp_path):
    """--local-dir ~/.ssh passed every question's own check and was refused only when the
    config was written: "unexpected error ... this is a bug", exit 2. It is a usage error now
    (exit 3, naming local_dir and why), and nothing is written."""
    from tests.fixtures_sshd import free_port

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    res = _init(home, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(free_port()),
                "--username", "librarian", "--new-key", "--local-dir", str(home / ".ssh"),
                "--timezone", "UTC", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "--local-dir" in res.stderr and "known_hosts" in res.stderr, res.stderr
    assert "bug" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not cfg.exists()


def test_a_config_path_that_is_a_folder_is_named_so(tmp_path):
    """--config naming a folder: '--force replaces the profile in it' was the advice, which
    --force then refused too ('is not a file')."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    res = _init(home, "--config", str(tmp_path), "--host", "127.0.0.1", "--yes")
    assert res.returncode == 3 and "is not a file" in res.stderr and "--force" not in res.stderr, res.stderr


def test_stopping_halfway_writes_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "config.toml"
    child = pexpect.spawn(sys.executable, ["-m", "tui", "init", "--config", str(cfg)],
                          env=_env(home), encoding="utf-8", timeout=30)
    child.expect(r"SFTP server .*: ")
    child.sendline("files.example.org")
    child.expect(r"Port \[22\]: ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3 and "nothing was written" in child.before and not cfg.exists()


# ------------------------------------------------------------------------------ pieces


def test_proposals_and_a_written_config_round_trip(tmp_path):
    files = []
    for i in range(8):  # Mondays and Thursdays at 06:05
        day = date(2026, 11, 2) + timedelta(days=(i // 2) * 7 + (3 if i % 2 else 0))
        at = datetime.combine(day, time(6, 5), tzinfo=TZ)
        files.append(RemoteFile(f"Weekly Summary_{at:%Y%m%d_%H%M%S}.xlsx", 10, at))
    files.append(RemoteFile("Once_20261101_080000.xlsx", 10, datetime(2026, 11, 1, 14, tzinfo=TZ)))
    files.append(RemoteFile("notes.txt", 10, datetime(2026, 11, 1, 14, tzinfo=TZ)))
    weekly, once = su.propose_reports(files, TZ)
    assert (weekly.name, weekly.schedule, weekly.at, weekly.keep) == ("Weekly Summary", "weekly:MON,THU", time(6, 0), True)
    assert (once.name, once.keep) == ("Once", False)  # one file says little: left to inference
    answers = su.Answers(profile="lib \"main\"", host="127.0.0.1", port=2222, username="abc",
                         key=tmp_path / "k", remote_dir="up/ALMA \"x\"", local_dir=tmp_path / "r",
                         timezone="America/Chicago", reports=[weekly, once],
                         pending=["the server could not be reached:\nnewline"])
    text = su.render_config(answers)
    path = tmp_path / "config.toml"
    assert su.write_config(path, text) is None
    prof = load_config(path).profile('lib "main"')
    assert prof.remote_dir == 'up/ALMA "x"' and [r.name for r in prof.reports] == ["Weekly Summary"]
    assert "# PENDING: the server could not be reached: newline" in text
    assert "Found but not configured (tracked with an inferred schedule): Once" in text
    assert tomllib.loads(text)["profile"]['lib "main"']["report"][0]["schedule"] == "weekly:MON,THU"
    with pytest.raises(su.ConfigExists):
        su.write_config(path, text)


@pytest.mark.parametrize("check, bad", [
    (su.check_host, "sftp://files.example.org"), (su.check_host, "a b"), (su.check_host, "-oProxyCommand=x"),
    (su.check_port, "0"), (su.check_port, "ssh"), (su.check_username, "-l"), (su.check_username, "a b"),
    (su.check_zone, "Mars/Olympus"),
    # the config refuses these server folders: refused as typed, not once everything was asked
    (su.check_remote_dir, "../upload"), (su.check_remote_dir, "upload/.report-keeper"),
])
def test_answers_are_checked(check, bad):
    with pytest.raises(ValueError):
        check(bad)


def test_a_form_is_checked_field_by_field_with_inits_checks(tmp_path):
    """The first-run form: every unusable field named with init's own reason; blanks left to
    ~/.ssh/config as init leaves them; port 22 not written."""
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    answers, errors = su.answers_from_form("default", host="-oProxyCommand=x", port="70000",
                                           username="a b", local_dir=str(not_a_folder),
                                           timezone="Mars/Olympus")
    assert set(errors) == {"host", "port", "username", "local_dir", "timezone"}
    assert "not a port number" in errors["port"] and "not a folder" in errors["local_dir"]
    answers, errors = su.answers_from_form("default", host=" files.example.org ", port="22", username="",
                                           local_dir=str(tmp_path / "r"), timezone="America/Chicago")
    assert errors == {}
    assert (answers.host, answers.port, answers.username, answers.timezone) == (
        "files.example.org", None, None, "America/Chicago")
    answers, errors = su.answers_from_form("default", host="alias", port="", username="abc",
                                           local_dir=str(tmp_path), timezone="UTC")
    assert errors == {} and answers.port is None and answers.username == "abc"


@pytest.mark.sshd
def test_a_remote_dir_that_does_not_exist_is_named_as_a_folder(sshd, site, tmp_path):
    sub, home = site
    cfg = tmp_path / "config.toml"
    res = _init(home, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(sshd.port),
                "--username", sshd.username, "--key", str(sshd.key), "--remote-dir", f"{sub.name}/no/such",
                "--timezone", "America/Chicago", "--yes", "--accept-new-host-key")
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"The folder '{sub.name}/no/such' does not exist" in res.stderr
    assert "no longer on" not in res.stderr and not cfg.exists()
    # one missing part at the end gets past the server's realpath: the listing fails, and
    # it is still named as the folder typed, with what to check (not the sync's words)
    res = _init(home, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(sshd.port),
                "--username", sshd.username, "--key", str(sshd.key), "--remote-dir", f"{sub.name}/nosuch",
                "--timezone", "America/Chicago", "--yes", "--accept-new-host-key")
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"--remote-dir: The folder '{sub.name}/nosuch' does not exist" in res.stderr, res.stderr
    assert "Check the path" in res.stderr and "marked as gone" not in res.stderr, res.stderr
    assert not cfg.exists()


def test_the_next_steps_can_be_pasted_into_a_shell_whatever_the_config_path(tmp_path):
    """A config path or profile name with a space or a shell character is quoted in the
    commands shown; each command ends its line, so it can be copied as it stands."""
    import shlex

    path = tmp_path / "my reports; rm -rf x" / "config.toml"
    steps = su.next_steps(path, "main library", pending=True)
    commands = [shlex.split(s.split(" run: ", 1)[1]) for s in steps if " run: " in s]
    options = ["--config", str(path), "--profile", "main library"]
    assert commands == [["report-keeper", "check", *options], ["report-keeper", "sync", *options],
                        ["report-keeper", "schedule", "--install", *options]]
    assert steps[-1].startswith('For alerts, add a [profile."main library".notify] table')


@pytest.mark.parametrize("bad", [
    ["--timezone", "Mars/Phobos"],
    ["--local-dir", "~/.ssh"],  # each check passes; the profile as a whole would not load
    ["--remote-dir", "../../etc"],
    ["--port", "70000"],
])
def test_a_usage_error_after_the_key_question_makes_no_key(tmp_path, bad):
    """init --yes --new-key made the key pair first and then stopped at a later answer (exit
    3, nothing written): a key pair left behind for a config that was never written, and the
    next try made a second one (_2). Every answer is checked before the key is made."""
    from tests.fixtures_sshd import free_port

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    args = {"--host": "127.0.0.1", "--port": str(free_port()), "--username": "librarian", "--timezone": "UTC"}
    args.update(dict(zip(bad[::2], bad[1::2], strict=True)))
    res = _init(home, "--config", str(cfg), "--new-key", "--yes", *[w for kv in args.items() for w in kv])
    assert res.returncode == 3, res.stdout + res.stderr
    assert bad[0] in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert list((home / ".ssh").iterdir()) == [] and not cfg.exists()


# ------------------------------------------------------------------------------ other profiles

_OTHERS_BROKEN = """\
[profile.main]
host = "files.example.org"
username = "abcftp"
remote_dir = "upload"
timezone = "Mars/Phobos"

[profile."odd\\u001b[2Jname"]
host = "files.example.org"
username = "abcftp"
remote_dir = "upload"

[profile.good]
host = "files.example.org"
username = "abcftp"
remote_dir = "upload"

[profile.branch]
host = "files.example.org"
username = "abcftp"
remote_dir = "upload"
timezone = "Nowhere/Else"
"""


def _broken_notes(out: str) -> list[str]:
    return [line for line in out.splitlines() if "cannot run as they are" in line or line.startswith("  - '")]


def test_init_names_the_other_profiles_that_cannot_run_once_and_goes_on(tmp_path):
    """A librarian adding a second profile with init --force was never told that the file's
    first profile had an error: its night runs failed until someone read the log. init now
    names each other broken profile with its one-line error, once, before the questions,
    escaped (a hostile profile name cannot drive the terminal), not the profile it replaces,
    and goes on: the config is written (exit 1, the server is not reachable) and the broken
    profiles are left as they were."""
    from tests.fixtures_sshd import free_port

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    cfg.write_text(_OTHERS_BROKEN, encoding="utf-8")
    res = _init(home, "--config", str(cfg), "--force", "--profile", "branch", "--host", "127.0.0.1",
                "--port", str(free_port()), "--username", "librarian", "--new-key",
                "--timezone", "UTC", "--yes")
    assert res.returncode == 1, res.stdout + res.stderr
    notes = _broken_notes(res.stdout)
    assert len(notes) == 3, res.stdout
    assert notes[1] == "  - 'main': profile.main.timezone: " + notes[1].split("profile.main.timezone: ")[1]
    assert "Mars/Phobos" in notes[1]
    assert notes[2].startswith("  - 'odd\\u001b[2Jname': "), notes
    assert "\x1b" not in res.stdout + res.stderr
    assert "'good'" not in res.stdout and "'branch':" not in res.stdout and "Nowhere" not in res.stdout
    loaded = load_config(cfg)
    assert set(loaded.broken) == {"main", "odd\x1b[2Jname"}
    assert loaded.profile("branch").host == "127.0.0.1"


def test_interactive_init_names_the_broken_profiles_before_the_first_question(tmp_path):
    """Through a terminal the note comes before the first question, so a setup stopped
    halfway has told it too (and still writes nothing)."""
    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(_OTHERS_BROKEN, encoding="utf-8")
    child = pexpect.spawn(sys.executable, ["-m", "tui", "init", "--config", str(cfg), "--force",
                                           "--profile", "good"], env=_env(home), encoding="utf-8", timeout=30)
    child.expect(r"SFTP server .*: ")
    before = child.before
    assert before.index("Setting up profile") < before.index("cannot run as they are")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    notes = _broken_notes(before)
    assert len(notes) == 4 and [n.split("'")[1] for n in notes[1:]] == ["main", "odd\\u001b[2Jname", "branch"], before
    assert child.exitstatus == 3 and "cannot run" not in child.before
    assert cfg.read_text(encoding="utf-8") == _OTHERS_BROKEN


_KEPT_PROFILE = '[profile.main]\nhost = "files.example.org"\nusername = "abcftp"\nremote_dir = "."\n'
_FILE_LEVEL_ERRORS = {
    "unknown top-level key": "bogus = 1\n" + _KEPT_PROFILE,
    "bad defaults": '[defaults]\ngrace = "soon"\n\n' + _KEPT_PROFILE,
    "profile no table": "profile = 3\n",
}


@pytest.mark.parametrize("text", list(_FILE_LEVEL_ERRORS.values()), ids=list(_FILE_LEVEL_ERRORS))
def test_init_stops_before_asking_when_the_config_has_a_file_level_error(tmp_path, text):
    """A config that is TOML but wrong as a whole (an unknown top-level key, a bad
    [defaults] value, ``profile = 3``) was replaced whole by init --force after every
    question: every other profile lost. init now stops before the first step with the file's
    one-line error and what to do; no key is made, the file is left as it was."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    cfg.write_text(text, encoding="utf-8")
    res = _init(home, "--config", str(cfg), "--force", "--profile", "branch", "--host", "127.0.0.1",
                "--port", "1", "--username", "librarian", "--new-key", "--timezone", "UTC", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    [line] = res.stderr.splitlines()
    assert str(cfg) in line and "nothing was written" in line and "--config" in line, line
    assert "fix" in line, line
    assert res.stdout == "" and list((home / ".ssh").iterdir()) == []
    assert cfg.read_text(encoding="utf-8") == text
    assert [p.name for p in tmp_path.iterdir() if ".bak-" in p.name] == []


def test_interactive_init_stops_before_the_first_question_on_a_file_level_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "config.toml"
    text = _FILE_LEVEL_ERRORS["unknown top-level key"]
    cfg.write_text(text, encoding="utf-8")
    child = pexpect.spawn(sys.executable, ["-m", "tui", "init", "--config", str(cfg), "--force",
                                           "--profile", "branch"], env=_env(home), encoding="utf-8", timeout=30)
    index = child.expect([r"SFTP server .*: ", pexpect.EOF])
    out = child.before
    child.close(force=True)
    assert index == 1, out
    assert child.exitstatus == 3 and "bogus" in out and "nothing was written" in out, out
    assert cfg.read_text(encoding="utf-8") == text


def test_init_force_says_up_front_that_a_file_that_is_not_toml_is_replaced_whole(tmp_path):
    """A config that is not TOML cannot be merged into: --force replaces it as a whole (a
    backup is kept). That is said before the first question, with the backup's name; without
    --force init refuses as before."""
    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "config.toml"
    text = _KEPT_PROFILE + "[profile.other\nhost = \n"
    cfg.write_text(text, encoding="utf-8")
    res = _init(home, "--config", str(cfg), "--profile", "branch", "--host", "127.0.0.1", "--yes")
    assert res.returncode == 3 and "exists; run again with --force" in res.stderr, res.stderr
    child = pexpect.spawn(sys.executable, ["-m", "tui", "init", "--config", str(cfg), "--force",
                                           "--profile", "branch"], env=_env(home), encoding="utf-8", timeout=30)
    child.expect(r"SFTP server .*: ")
    before = child.before
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert "is not valid TOML" in before and "replaced as a whole" in before, before
    assert f"{cfg}.bak-" in before and "every profile in it" in before, before
    assert child.exitstatus == 3 and cfg.read_text(encoding="utf-8") == text


def test_saving_over_a_file_that_is_no_toml_replaces_it_whole_with_a_backup(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("this is [ not toml\n")
    answers = su.Answers(profile="b", host="b.example", username="u", local_dir=tmp_path / "b")
    saved = su.save_config(path, answers, force=True)
    assert saved.backup is not None and saved.backup.read_text() == "this is [ not toml\n"
    assert load_config(path).profile("b").host == "b.example"


# ------------------------------------------------------------------------------ bytes and size

# A config another tool saved as Latin-1: an 'é' (byte 0xE9) in a comment and in another
# profile's value. Decoded with replacement it is still TOML, so it could be merged into.
_LATIN1 = ("# Bibliothèque centrale\n" + _KEPT_PROFILE + 'local_dir = "/srv/rapports/é"\n').encode("latin-1")


def _over_the_limit() -> bytes:
    from tui.core.config import MAX_CONFIG_BYTES

    return ("# " + "x" * MAX_CONFIG_BYTES + "\n" + _KEPT_PROFILE).encode("utf-8")


_REFUSED_FILES = {"not utf-8": _LATIN1, "over the size limit": _over_the_limit()}


@pytest.mark.parametrize("raw", list(_REFUSED_FILES.values()), ids=list(_REFUSED_FILES))
def test_init_stops_before_asking_when_the_config_cannot_be_loaded_as_saved(tmp_path, raw):
    """A config that is not UTF-8 (but TOML once its bad bytes are replaced) or larger than the
    size limit: sync and check refuse to load it, yet init --force merged this profile into it
    after every question, the bad bytes of the other profiles and comments silently replaced
    by U+FFFD (or a file written that still does not load). init now stops before the first
    step with one line naming the file, the problem and what to do; no key is made, the file
    keeps its bytes, no backup."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(raw)
    res = _init(home, "--config", str(cfg), "--force", "--profile", "branch", "--host", "127.0.0.1",
                "--port", "1", "--username", "librarian", "--new-key", "--timezone", "UTC", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    [line] = res.stderr.splitlines()
    assert str(cfg) in line and "nothing was written" in line, line
    assert res.stdout == "" and list((home / ".ssh").iterdir()) == []
    assert cfg.read_bytes() == raw
    assert [p.name for p in tmp_path.iterdir() if ".bak-" in p.name] == []


def test_the_refusal_of_a_config_that_is_not_utf8_names_the_first_bad_byte(tmp_path):
    """The one line says where the first bad byte is (line and byte offset) and to save the
    file as UTF-8: the reader's 'is not UTF-8 text' left the librarian to hunt for it."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(_LATIN1)
    res = _init(home, "--config", str(cfg), "--force", "--profile", "branch", "--host", "127.0.0.1",
                "--port", "1", "--username", "librarian", "--timezone", "UTC", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    offset = next(i for i, byte in enumerate(_LATIN1) if byte >= 0x80)  # the è of the comment
    assert "is not UTF-8 text" in res.stderr and f"line 1 (byte offset {offset})" in res.stderr, res.stderr
    assert "save the file as UTF-8" in res.stderr, res.stderr


#: Files a profile is never merged into, by the write itself too (not only init's check before
#: its questions): wrong as a whole (merging fails; replacing the file whole would drop every
#: other profile in it), not UTF-8 (the merge read the bad bytes replaced and wrote that back)
#: or over the size limit.
_NEVER_MERGED = {**{k: v.encode() for k, v in _FILE_LEVEL_ERRORS.items()}, **_REFUSED_FILES}


@pytest.mark.parametrize("raw", list(_NEVER_MERGED.values()), ids=list(_NEVER_MERGED))
def test_saving_into_a_config_that_cannot_be_merged_raises_and_keeps_its_bytes(tmp_path, raw):
    """The file is left as it was, byte for byte, and no backup is made."""
    from tui.core.config import ConfigError

    path = tmp_path / "config.toml"
    path.write_bytes(raw)
    answers = su.Answers(profile="b", host="b.example", username="u", local_dir=tmp_path / "b")
    with pytest.raises(ConfigError):
        su.save_config(path, answers, force=True)
    assert path.read_bytes() == raw
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_saving_a_profile_that_takes_the_config_over_the_size_limit_raises(tmp_path):
    """A file just under the limit, with this profile merged in, would be over it: written, it
    would not load. Nothing is written."""
    from tui.core.config import MAX_CONFIG_BYTES, ConfigError

    path = tmp_path / "config.toml"
    head = _KEPT_PROFILE.encode("utf-8")
    raw = b"# " + b"x" * (MAX_CONFIG_BYTES - len(head) - 3) + b"\n" + head
    assert len(raw) == MAX_CONFIG_BYTES
    path.write_bytes(raw)
    assert load_config(path).profile("main").host == "files.example.org"  # at the limit: it loads
    answers = su.Answers(profile="b", host="b.example", username="u", local_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match=f"over the limit of {MAX_CONFIG_BYTES:,} bytes"):
        su.save_config(path, answers, force=True)
    assert path.read_bytes() == raw
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_a_config_that_is_not_utf8_and_no_toml_either_is_still_replaced_whole_with_a_backup(tmp_path):
    """A file that is no TOML even with its bad bytes replaced (say, a binary file named by
    mistake) is replaced whole as before: the backup keeps its bytes exactly."""
    path = tmp_path / "config.toml"
    raw = b"\x89PNG\r\n\x1a\n\x00\x00[not toml"
    path.write_bytes(raw)
    answers = su.Answers(profile="b", host="b.example", username="u", local_dir=tmp_path / "b")
    saved = su.save_config(path, answers, force=True)
    assert saved.backup is not None and saved.backup.read_bytes() == raw
    assert load_config(path).profile("b").host == "b.example"


def test_init_refuses_before_the_first_question_when_this_profile_would_take_the_config_over_the_limit(tmp_path):
    """A config just under the size limit loads, but with this profile merged in it would be
    over it: init made a new key pair and tried the server, then said 'nothing was written'
    at the save. It now stops before the first step, saying the size and the limit: no key is
    made, the file keeps its bytes, no backup."""
    from tui.core.config import MAX_CONFIG_BYTES

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    head = _KEPT_PROFILE.encode("utf-8")
    raw = b"# " + b"x" * (MAX_CONFIG_BYTES - len(head) - 3) + b"\n" + head
    cfg.write_bytes(raw)
    assert load_config(cfg).profile("main").host == "files.example.org"
    res = _init(home, "--config", str(cfg), "--force", "--profile", "branch", "--host", "127.0.0.1",
                "--port", "1", "--username", "librarian", "--new-key", "--timezone", "UTC", "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    [line] = res.stderr.splitlines()
    assert str(cfg) in line and "nothing was written" in line, line
    assert f"{MAX_CONFIG_BYTES:,} bytes" in line and "1024 KiB" in line, line
    size = int(line.split(" would be ")[1].split(" bytes")[0].replace(",", ""))
    assert size > MAX_CONFIG_BYTES
    assert res.stdout == "" and list((home / ".ssh").iterdir()) == []
    assert cfg.read_bytes() == raw
    assert [p.name for p in tmp_path.iterdir() if ".bak-" in p.name] == []


def test_init_refuses_a_config_the_profile_it_will_write_takes_over_the_limit(tmp_path):
    """The early size check measured the smallest profile there is (no folder, no time zone, no
    key), so a file with room for that but not for the profile init writes (its local folder,
    time zone and key always go in) passed it: init made a new key pair, tried the server,
    then said 'nothing was written' at the save. The check now measures the profile from what
    the options already say (and the defaults for the rest)."""
    from tui.core.config import MAX_CONFIG_BYTES

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    smallest = su.render_config(
        su.Answers(profile="branch", host="report-keeper.invalid", username="report-keeper"), "")
    head = _KEPT_PROFILE.encode("utf-8")
    room = len(smallest.encode("utf-8")) + 10  # the smallest profile fits, with 10 bytes to spare
    raw = b"# " + b"x" * (MAX_CONFIG_BYTES - room - len(head) - 3) + b"\n" + head
    cfg.write_bytes(raw)
    res = _init(home, "--config", str(cfg), "--force", "--profile", "branch", "--host", "127.0.0.1",
                "--port", "1", "--username", "librarian", "--new-key", "--timezone", "America/Chicago",
                "--local-dir", str(tmp_path / "reports of the branch library"), "--yes")
    assert res.returncode == 3, res.stdout + res.stderr
    [line] = res.stderr.splitlines()
    assert str(cfg) in line and "nothing was written" in line and "would be" in line, line
    assert res.stdout == "" and list((home / ".ssh").iterdir()) == []  # no key pair made
    assert cfg.read_bytes() == raw


def _full_config_home(tmp_path: Path, monkeypatch) -> Path:
    """A home with an empty ~/.ssh for init run in this process on a config near the size
    limit (no agent, the clock pinned)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-11-26T16:00:00+00:00")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def _add_branch(cfg: Path) -> list[str]:
    """init adding the profile ``branch`` (a new key, no questions) to ``cfg``."""
    return ["init", "--config", str(cfg), "--force", "--profile", "branch", "--host", "127.0.0.1",
            "--port", "1", "--username", "librarian", "--new-key", "--timezone", "UTC", "--yes"]


def test_init_refuses_a_config_over_the_limit_by_its_size_before_reading_it_for_the_merge(
        tmp_path, monkeypatch, capsys):
    """A config near the size limit (profiles and many lines of notes), to which init would add
    a new profile: its size and the profile's decide the refusal, so the file is not parsed
    again for the merge's dry run first (seconds of CPU for a file near 1 MiB)."""
    import tomlkit

    from tui.cli import main
    from tui.core.config import MAX_CONFIG_BYTES

    home = _full_config_home(tmp_path, monkeypatch)
    cfg = tmp_path / "config.toml"
    one = '[profile.p{}]\nhost = "h{}.example.org"\nusername = "u"\n'
    note = "# a note kept by the library's staff about this profile's server and its reports\n"
    text = "".join(one.format(i, i) + note * 20 for i in range(50))
    text += note * ((MAX_CONFIG_BYTES - 120 - len(text)) // len(note))
    cfg.write_text(text)
    parsed: list[int] = []
    real_parse = tomlkit.parse

    def parse(string, *a, **kw):  # what the merge's dry run reads the whole file with
        parsed.append(len(string))
        return real_parse(string, *a, **kw)

    monkeypatch.setattr(tomlkit, "parse", parse)
    code = main(_add_branch(cfg))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "nothing was written" in err and f"{MAX_CONFIG_BYTES:,} bytes" in err, err
    assert [n for n in parsed if n > 100_000] == []  # the big file was never parsed for the merge
    assert list((home / ".ssh").iterdir()) == []
    assert cfg.read_text() == text


def test_init_refuses_a_config_of_many_profiles_too_full_for_one_more_before_checking_each(
        tmp_path, monkeypatch, capsys):
    """A config of many small profiles filling the size limit, to which init would add one
    more: its size and the profile's decide, so init refuses before it reads every profile
    with every check (seconds of CPU for a file near 1 MiB: 17,500 profiles took ~30 s). The
    file's TOML is read (the new profile may be one it holds already, replaced then), not
    each profile's settings."""
    from tui.cli import main
    from tui.core import config
    from tui.core.config import MAX_CONFIG_BYTES

    home = _full_config_home(tmp_path, monkeypatch)
    cfg = tmp_path / "config.toml"
    one = '[profile.p{}]\nhost = "h{}.example.org"\nusername = "u"\n'
    text = ""
    i = 0
    while len(text) < MAX_CONFIG_BYTES - 100:
        text += one.format(i, i)
        i += 1
    cfg.write_text(text)
    read: list[str] = []
    real_profile = config._profile

    def profile(file, name, *a, **kw):
        read.append(name)
        return real_profile(file, name, *a, **kw)

    monkeypatch.setattr(config, "_profile", profile)
    code = main(_add_branch(cfg))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "nothing was written" in err and f"{MAX_CONFIG_BYTES:,} bytes" in err, err
    assert [n for n in read if n != "branch"] == []  # no profile of the file was read for it
    assert list((home / ".ssh").iterdir()) == []
    assert cfg.read_text() == text


def test_init_still_says_what_is_wrong_with_a_too_full_config_as_a_whole(tmp_path, monkeypatch, capsys):
    """The early refusal by size leaves a file wrong as a whole (an unknown top-level key) to
    be named as before: its own error is what to fix first."""
    from tui.cli import main
    from tui.core.config import MAX_CONFIG_BYTES

    _full_config_home(tmp_path, monkeypatch)
    cfg = tmp_path / "config.toml"
    text = "colour = 'blue'\n" + _KEPT_PROFILE
    text = "# " + "x" * (MAX_CONFIG_BYTES - 100 - len(text)) + "\n" + text
    cfg.write_text(text)
    code = main(_add_branch(cfg))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "colour" in err and "nothing was written" in err, err
    assert cfg.read_text() == text


def _counting_parses(monkeypatch) -> list[int]:
    """The sizes of the texts tomlkit parses from now on (what the merge reads a config with)."""
    import tomlkit

    parsed: list[int] = []
    real_parse = tomlkit.parse

    def parse(string, *a, **kw):
        parsed.append(len(string))
        return real_parse(string, *a, **kw)

    monkeypatch.setattr(tomlkit, "parse", parse)
    return parsed


def test_init_parses_a_full_config_holding_its_profile_once(tmp_path, monkeypatch, capsys):
    """A profile set up again in a config near the size limit: the dry run of the merge before
    the questions and the save each parsed the whole file with tomlkit (~4 s of CPU a MiB).
    Once now. (The limit is lowered so that a file of 150 kB is near it.)"""
    from tui.cli import main
    from tui.commands import init as init_cmd

    _full_config_home(tmp_path, monkeypatch)
    cfg = tmp_path / "config.toml"
    note = "# a note kept by the library's staff about this profile's server and its reports\n"
    text = '[profile.branch]\nhost = "old.example.org"\n' + note * 40
    i = 0
    while len(text) < 150_000:
        text += f'[profile.p{i}]\nhost = "h{i}.example.org"\nusername = "u"\n'
        i += 1
    cfg.write_text(text)
    limit = len(text) + 50  # the new table alone would not fit beside the file: the dry run tells
    monkeypatch.setattr(init_cmd, "MAX_CONFIG_BYTES", limit)
    monkeypatch.setattr(su, "MAX_CONFIG_BYTES", limit)
    parsed = _counting_parses(monkeypatch)
    code = main(_add_branch(cfg))
    err = capsys.readouterr().err
    assert code in (0, 1), err
    assert len([n for n in parsed if n > 100_000]) == 1
    written = load_config(cfg)
    assert written.profile("branch").host == "127.0.0.1" and f"p{i - 1}" in written.names


def test_init_parses_a_config_that_is_no_toml_once(tmp_path, monkeypatch, capsys):
    """A config that is no TOML (replaced whole, a backup kept): whether it is, and the save's
    merge, each parsed it (three times in all)."""
    from tui.cli import main

    _full_config_home(tmp_path, monkeypatch)
    cfg = tmp_path / "config.toml"
    text = "".join(f'[profile.p{i}]\nhost = "h{i}.example.org"\n' for i in range(4000)) + "this is not TOML\n"
    cfg.write_text(text)
    parsed = _counting_parses(monkeypatch)
    code = main(_add_branch(cfg))
    err = capsys.readouterr().err
    assert code in (0, 1), err
    assert len([n for n in parsed if n > 100_000]) == 1
    assert list(load_config(cfg).names) == ["branch"]


_RENDERED = {
    "plain": _KEPT_PROFILE + '[profile.branch]\nhost = "old"\n# its note\n',
    "first": '[profile.branch]\nhost = "old"\n# its note\n' + _KEPT_PROFILE,
    "absent": _KEPT_PROFILE,
    "no profiles": '[defaults]\ngrace = "3h"\n',
    "out of order": ('[profile.branch]\nhost = "old"\n' + _KEPT_PROFILE
                     + '[[profile.branch.report]]\nname = "loans"\nschedule = "daily"\nat = "06:00"\n'),
    "dotted": 'profile.branch.host = "old"\n' + _KEPT_PROFILE,
    "empty": "",
    "inline": 'profile = {branch = {host = "x"}}\n',
    "no table": "profile = 3\n",
    "no TOML": "[profile.branch\n",
}


@pytest.mark.parametrize("existing", list(_RENDERED.values()), ids=list(_RENDERED))
def test_renders_within_one_command_are_what_a_fresh_parse_renders(existing, monkeypatch):
    """``render_config`` within ``parsed_once`` reads a text once: each render, in any order,
    is the text a render of its own would give."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-11-26T16:00:00+00:00")
    a = su.Answers(profile="branch", host="a.example.org", username="x")
    b = su.Answers(profile="branch", host="b.example.org", port=2222, pending=["a note"],
                   reports=[su.ReportProposal("loans", 3, "daily", time(6))])
    c = su.Answers(profile="other", host="c.example.org")

    def fresh(answers):
        try:
            return su.render_config(answers, existing)
        except Exception as exc:  # noqa: BLE001 - compared below
            return type(exc), str(exc)

    want = [fresh(x) for x in (a, b, c, a, c, b)]
    with su.parsed_once():
        got = [fresh(x) for x in (a, b, c, a, c, b)]
    assert got == want


# ------------------------------------------------------------------ the check of what is written

_OTHER = '[profile.main]\nhost = "a.example"\nlocal_dir = "/srv/main"\nledger = "/srv/main.sqlite3"\n'
_CHECKED = {
    "fine": _OTHER + '[profile.new]\nhost = "b.example"\nlocal_dir = "/srv/new"\n',
    "defaults": '[defaults]\ngrace = "3h"\n' + _OTHER + '[profile.new]\nhost = "b"\nlocal_dir = "/srv/n"\n',
    "unknown key": _OTHER + '[profile.new]\nhost = "b"\ncolour = "red"\n',
    "another's folder": _OTHER + '[profile.new]\nhost = "b"\nlocal_dir = "/srv/main"\n',
    "inside another's folder": _OTHER + '[profile.new]\nhost = "b"\nlocal_dir = "/srv/main/x"\n',
    "another's ledger": _OTHER + '[profile.new]\nhost = "b"\nledger = "/srv/main.sqlite3"\n',
    "a control": _OTHER + '[profile.new]\nhost = "b\\u0007"\n',
    "a direction mark": _OTHER + '[profile.new]\nhost = "b"\nremote_dir = "x\\u202ey"\n',
    "bad report": _OTHER + '[profile.new]\nhost = "b"\n[[profile.new.report]]\nname = "R"\nschedule = "yearly"\n',
    "no table": _OTHER + "[profile]\nnew = 3\n",
    "top-level key": 'colour = 1\n' + _OTHER + '[profile.new]\nhost = "b"\n',
    "broken other": '[profile.main]\nhost = 3\n[profile.new]\nhost = "b"\n',
    "no such": _OTHER,
}


@pytest.mark.parametrize("text", list(_CHECKED.values()), ids=list(_CHECKED))
def test_the_written_profiles_check_reads_it_alone_with_the_same_outcome(tmp_path, text):
    """What ``render_config`` checks of the text it writes (``parse_profile``: the new profile
    read, the others only for the paths its checks compare with) is what the whole file's
    read says of that profile: the same profile, or the same error."""
    from tui.core.config import ConfigError, parse_config, parse_profile

    data = tomllib.loads(text)
    for file in (None, tmp_path / "config.toml"):
        try:
            want: object = parse_config(data, file).profile("new")
        except ConfigError as exc:
            want = ("error", str(exc), exc.key)
        try:
            got: object = parse_profile(data, "new", file)
        except ConfigError as exc:
            got = ("error", str(exc), exc.key)
        assert got == want


def test_ctrl_c_at_a_question_stops_at_once_and_writes_nothing(tmp_path):
    """Ctrl-C while init waits for an answer: the question was read in a worker thread, which
    the interpreter waited for at exit, so init hung until Enter was pressed and then said
    "nothing it did is lost" (exit 2). It stops at once, says nothing was written (exit 3)."""
    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "config.toml"
    child = pexpect.spawn(sys.executable, ["-m", "tui", "init", "--config", str(cfg)],
                          env=_env(home), encoding="utf-8", timeout=30)
    child.expect(r"SFTP server .*: ")
    child.sendline("files.example.org")
    child.expect(r"Port \[22\]: ")
    child.sendintr()
    child.expect("nothing was written")  # without a line typed: a hang fails here
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3, child.before
    assert "Traceback" not in child.before and not cfg.exists()


def test_ctrl_c_at_a_question_read_from_a_pipe_stops_cleanly(tmp_path):
    """The same with the answers coming through a pipe (a script feeding init): the line is
    not read through ``sys.stdin``'s buffer, whose lock the interpreter's exit would wait for
    ("Fatal Python error ... possibly due to daemon threads", exit 134)."""
    import signal

    home = tmp_path / "home"
    home.mkdir()
    cfg = tmp_path / "config.toml"
    proc = subprocess.Popen([sys.executable, "-m", "tui", "init", "--config", str(cfg)], env=_env(home),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        proc.stdin.write(b"files.example.org\n")
        proc.stdin.flush()
        seen = b""
        while b"Port [22]: " not in seen:
            chunk = proc.stdout.read1(4096)
            assert chunk, seen
            seen += chunk
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # the pipe stays open: a hang fails here
    finally:
        proc.kill()
    assert proc.returncode == 3, (seen + out, err)
    assert b"nothing was written" in err and b"Fatal" not in err and not cfg.exists(), err


def test_the_key_question_takes_the_path_of_a_key_file(tmp_path, monkeypatch):
    """A librarian given a key file (or keeping one without its .pub, which the list of
    ~/.ssh leaves out) typed its path at "Choice [n]" and was told "type one of n": only
    --key took a path. The path of an existing file is taken; one that does not exist is
    asked again, saying so."""
    import argparse
    import asyncio
    import io

    from tui.commands import init

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    given = tmp_path / "from the admin" / "alma_key"
    given.parent.mkdir()
    given.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    typed = iter([str(tmp_path / "nope" / "alma_key"), str(given)])
    out = io.StringIO()
    prompter = init.Prompter(True, out, read=lambda prompt: (out.write(prompt), next(typed))[1])
    args = argparse.Namespace(key=None, agent=False, new_key=False)
    answers = su.Answers(profile="default", host="h")
    assert asyncio.run(init._choose_key(args, prompter, answers)) is None
    assert answers.key == given
    text = out.getvalue()
    assert "path of a private key file" in text, text
    assert f"{tmp_path / 'nope' / 'alma_key'} does not exist" in text, text
    assert not list((home / ".ssh").iterdir())  # no key pair made


def test_stopping_after_a_new_key_was_made_says_the_key_is_kept(tmp_path):
    """Ctrl-C (or end of input) at "Press Enter once the administrator has added it": init
    said "nothing was written", but the new key pair was in ~/.ssh, its public line perhaps
    sent to the administrator already. It says the key is kept and that init offers it."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    cfg = tmp_path / "config.toml"
    child = pexpect.spawn(sys.executable, ["-m", "tui", "init", "--config", str(cfg)],
                          env=_env(home), encoding="utf-8", timeout=30, dimensions=(40, 200))
    child.expect(r"SFTP server .*: ")
    child.sendline("files.example.org")
    child.expect(r"Port \[22\]: ")
    child.sendline("")
    child.expect(r"User name on the server \[.*\]: ")
    child.sendline("librarian")
    child.expect(r"Choice \[n\]: ")
    child.sendline("")
    child.expect("Press Enter once the administrator has added it")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    key = home / ".ssh" / "id_ed25519_report_keeper"
    assert child.exitstatus == 3 and key.is_file() and not cfg.exists()
    said = " ".join(child.before.split())
    assert ("init: stopped before the end; no config was written; the new key pair "
            f"{key} is kept: run init again and choose it") in said, said
