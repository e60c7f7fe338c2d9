"""``schedule`` and the secrets file the nightly run reads: whoever can create or change
``secrets.env`` beside the config runs commands as the user every night (the crontab line
reads it with sh's ``.``; a unit's ``EnvironmentFile=`` may set ``LD_PRELOAD``). A real crontab
line run by a real ``sh``, with ``crontab``/``systemctl`` recorders on PATH (as in
``tests/test_unattended.py``)."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess

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
    """The usual case stays as it was: a folder and file only the user can write (readable by
    others or not; writable by the user's own group, a umask of 002 with a group per user)
    are scheduled, and the line reads the file: what the refusal above guards."""
    cfg, _stub, record = _hostile_setup(tmp_path, monkeypatch, "configs")
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    me = pwd.getpwuid(os.geteuid())
    own = grp.getgrgid(me.pw_gid)
    private = own.gr_name == me.pw_name and set(own.gr_mem) <= {me.pw_name}
    cfg.parent.chmod(0o775 if private else 0o755)
    (cfg.parent / "secrets.env").write_text("RK_SMTP_PASSWORD='x'; touch \"$HOME/ran-from-secrets\"\n")
    (cfg.parent / "secrets.env").chmod(0o644)
    assert _schedule(cfg, "--install") == 0, capsys.readouterr().err
    [line] = tab.read_text(encoding="utf-8").splitlines()
    command, stdin = _cron_command(line)
    home = tmp_path / "cron-home"
    home.mkdir()
    subprocess.run(["/bin/sh", "-c", command], input=stdin or "", capture_output=True, text=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(home)}, timeout=60, check=True)
    assert (home / "ran-from-secrets").exists()  # whatever the file says runs, as the user
