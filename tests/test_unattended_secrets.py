"""``schedule`` and the secrets file the nightly run reads: whoever can create or change
``secrets.env`` beside the config runs commands as the user every night (the crontab line
reads it with sh's ``.``; a unit's ``EnvironmentFile=`` may set ``LD_PRELOAD``). A real crontab
line run by a real ``sh``, with ``crontab``/``systemctl`` recorders on PATH (as in
``tests/test_unattended.py``)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.test_unattended import _cron_command, _hostile_setup, _tools
from tui.cli import main


def _shared_group() -> int:
    """A group that is not the user's own (another name than the user's, or other members)."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    for g in grp.getgrall():
        if g.gr_name != me and g.gr_gid != 0:
            return g.gr_gid
    pytest.skip("no other group on this machine")


def _schedule(cfg, *extra):
    return main(["schedule", "--config", str(cfg), "--profile", "library", *extra])


@pytest.mark.parametrize("what", ["folder-group", "folder-world-sticky", "file-world"])
def test_a_secrets_file_others_can_write_is_never_scheduled(tmp_path, monkeypatch, capsys, what):
    """A config in a folder the team can write to (a shared /srv/report-keeper, /tmp): another
    member who drops a secrets.env there ran their commands as the librarian at the next
    night's run. Now schedule refuses, in one line saying which and what to do, and installs
    nothing; the line it would have written runs another user's file indeed (pinned below)."""
    cfg, _stub, _record = _hostile_setup(tmp_path, monkeypatch, "shared configs")
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    folder, secrets = cfg.parent, cfg.parent / "secrets.env"
    if what == "folder-group":
        try:
            os.chown(folder, -1, _shared_group())
        except PermissionError:
            pytest.skip("this user may not give a folder to another group")
        folder.chmod(0o775)
    elif what == "folder-world-sticky":
        secrets.unlink()  # none yet: anyone may create it in a sticky world-writable folder
        folder.chmod(0o1777)
    else:
        secrets.chmod(0o666)
    for extra in ([], ["--install"]):
        assert _schedule(cfg, *extra) == 3
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "unexpected" not in err, err
        assert "other users" in err and "chmod go-w" in err, err
    assert not tab.exists()


def test_a_private_folder_is_scheduled_and_its_secrets_read(tmp_path, monkeypatch, capsys):
    """The usual case stays as it was: a folder only the user can write (readable by others or
    not; writable by the user's own group, a umask of 002 with a group per user) and a file
    only the user can read are scheduled, and the line reads the file: what the refusal above
    guards."""
    cfg, _stub, record = _hostile_setup(tmp_path, monkeypatch, "configs")
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    me = pwd.getpwuid(os.geteuid())
    own = grp.getgrgid(me.pw_gid)
    private = own.gr_name == me.pw_name and set(own.gr_mem) <= {me.pw_name}
    cfg.parent.chmod(0o775 if private else 0o755)
    (cfg.parent / "secrets.env").write_text("RK_SMTP_PASSWORD='x'; touch \"$HOME/ran-from-secrets\"\n")
    (cfg.parent / "secrets.env").chmod(0o600)
    assert _schedule(cfg, "--install") == 0, capsys.readouterr().err
    [line] = tab.read_text(encoding="utf-8").splitlines()
    command, stdin = _cron_command(line)
    home = tmp_path / "cron-home"
    home.mkdir()
    subprocess.run(["/bin/sh", "-c", command], input=stdin or "", capture_output=True, text=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(home)}, timeout=60, check=True)
    assert (home / "ran-from-secrets").exists()  # whatever the file says runs, as the user


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640])
def test_a_secrets_file_others_can_read_is_never_scheduled(tmp_path, monkeypatch, capsys, mode):
    """The SMTP password in a file every local user can read (a umask of 022 gives 0644) is
    the password of every local user: schedule refuses, as ssh refuses such a private key, in
    one line naming the file and the 'chmod 600' that fixes it (nothing is changed for the
    user: they may have reasons, and the file is theirs to mend). Read by the user's own group
    alone (a group per user) stays fine, as for writing."""
    cfg, _stub, _record = _hostile_setup(tmp_path, monkeypatch, "configs")
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    secrets = cfg.parent / "secrets.env"
    me = pwd.getpwuid(os.geteuid())
    own = grp.getgrgid(me.pw_gid)
    if mode == 0o640:
        os.chown(secrets, -1, _shared_group())  # a group with others in it (or another's group)
    for extra in ([], ["--install"]):
        secrets.chmod(mode)
        assert _schedule(cfg, *extra) == 3
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "unexpected" not in err, err
        assert "can be read by other users" in err and f"chmod 600 {secrets}" in err, err
        assert stat.S_IMODE(secrets.stat().st_mode) == mode  # refused, not changed behind the user's back
    assert not tab.exists()
    secrets.chmod(0o600)
    assert _schedule(cfg, "--install") == 0, capsys.readouterr().err
    assert tab.exists()
    if own.gr_name == me.pw_name and set(own.gr_mem) <= {me.pw_name}:
        os.chown(secrets, -1, me.pw_gid)
        secrets.chmod(0o640)
        assert _schedule(cfg) == 0, capsys.readouterr().err


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """``argv`` run as the user 'nobody' (the other user the folder checks are about)."""
    return subprocess.run(list(argv), user="nobody", capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"}, check=False)


@pytest.fixture()
def outside(tmp_path):
    """A folder under /tmp that 'nobody' can reach (pytest's own folders are private), removed
    after the test; the tests run as root, to act as another user."""
    if os.geteuid() != 0:
        pytest.skip("acting as another user needs root")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    base = Path(tempfile.mkdtemp(prefix="rk-folders-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("how", ["group-or-other-writable", "another-users"])
def test_a_folder_above_that_another_user_can_write_is_never_scheduled(outside, tmp_path, monkeypatch, capsys, how):
    """The config's own folder is the user's, but the one above it is another user's or open
    to writing (a team's /srv/shared): that user renames the config's folder away and puts
    their own, with their secrets.env, in its place; the nightly line runs it. Shown for real
    (as 'nobody'), then refused in one line naming that folder and what to do."""
    shared = outside / "shared"
    shared.mkdir()
    cfg, _stub, _record = _hostile_setup(outside, monkeypatch, "shared/configs")
    cfg.parent.chmod(0o755)
    (cfg.parent / "secrets.env").chmod(0o600)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    if how == "another-users":
        os.chown(shared, pwd.getpwnam("nobody").pw_uid, -1)
        shared.chmod(0o755)
    else:
        shared.chmod(0o777)
    # What the rule guards: the other user can move the config's folder away (then back).
    moved = _as_nobody("mv", str(cfg.parent), str(shared / "theirs"))
    assert moved.returncode == 0, moved.stderr
    assert _as_nobody("mv", str(shared / "theirs"), str(cfg.parent)).returncode == 0
    for extra in ([], ["--install"]):
        assert _schedule(cfg, *extra) == 3
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "unexpected" not in err, err
        assert f"the folder {shared}," in err, err
        assert ("belongs to another user" if how == "another-users" else "chmod go-w") in err, err
    assert not tab.exists()


def test_a_folder_of_ones_own_in_a_sticky_shared_folder_is_scheduled(outside, tmp_path, monkeypatch, capsys):
    """/tmp's way: a folder anyone may write, with the sticky bit. Another user can neither
    rename nor remove the user's own folder in it (shown for real, as 'nobody'), so a config
    in a folder of one's own there is scheduled."""
    shared = outside / "shared"
    shared.mkdir()
    cfg, _stub, _record = _hostile_setup(outside, monkeypatch, "shared/configs")
    cfg.parent.chmod(0o755)
    (cfg.parent / "secrets.env").chmod(0o600)
    shared.chmod(0o1777)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    moved = _as_nobody("mv", str(cfg.parent), str(shared / "theirs"))
    assert moved.returncode != 0 and cfg.parent.is_dir()  # the sticky bit stops the swap
    assert _as_nobody("mkdir", str(shared / "nobodys")).returncode == 0  # while anyone may add
    assert _schedule(cfg, "--install") == 0, capsys.readouterr().err
    assert tab.exists()


def test_the_folders_above_home_are_not_judged(tmp_path):
    """As ssh's StrictModes: the walk up ends at the user's home folder (what is above it is
    the system's, /home); outside home it goes on up to /."""
    from tui.core import unattended as un

    home = tmp_path / "open" / "home"
    folder = home / "reports"
    folder.mkdir(parents=True)
    (tmp_path / "open").chmod(0o777)
    assert un._replaceable_folder(folder, home=home) is None
    found = un._replaceable_folder(folder, home=tmp_path / "elsewhere")
    assert found is not None and f"the folder {tmp_path / 'open'}," in found
    assert un._replaceable_folder(home, home=home) is None  # the config in the home folder itself


def test_a_run_can_tell_the_secrets_are_open_to_others_without_failing(tmp_path, monkeypatch):
    """What schedule refuses, for a run of a schedule written earlier (or a file opened to
    others since): one line a run can show among its warnings, saying what to do before the
    next night; nothing when the file is the user's alone or there is none."""
    from tui.core import unattended as un

    cfg, _stub, _record = _hostile_setup(tmp_path, monkeypatch, "configs")
    cfg.parent.chmod(0o755)
    secrets = cfg.parent / "secrets.env"
    secrets.chmod(0o644)
    why = un.secrets_exposure(cfg)
    assert why is not None and f"chmod 600 {secrets}" in why and "before the next night's run" in why, why
    assert "\n" not in why
    secrets.chmod(0o664 if not _own_group_is_private() else 0o606)
    assert "chmod go-w" in (un.secrets_exposure(cfg) or "")
    secrets.chmod(0o600)
    assert un.secrets_exposure(cfg) is None
    secrets.unlink()
    assert un.secrets_exposure(cfg) is None
    assert un.secrets_exposure(str(cfg) + "\0") is None  # a path the system refuses: no crash


def _own_group_is_private() -> bool:
    me = pwd.getpwuid(os.geteuid())
    own = grp.getgrgid(me.pw_gid)
    return own.gr_name == me.pw_name and set(own.gr_mem) <= {me.pw_name}
