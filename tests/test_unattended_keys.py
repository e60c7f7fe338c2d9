"""``schedule --install`` and the keys a nightly run can use. cron and a user timer start
without ``SSH_AUTH_SOCK`` and without a terminal: a key file protected by a passphrase, or a
profile without a key file that logs in through ssh-agent, fails to log in every night. The
install says so (exit 1, a warning naming the key and what to do) and still installs.

The key files are real, written by the test: encrypted by OpenSSH's own ssh-keygen where it is
installed and as PKCS#8 by asyncssh, unencrypted by asyncssh. The passphrase is never asked
for (stdin is not a terminal here; a question would hang or fail).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import asyncssh
import pytest

from tests.test_unattended import _tools
from tui.cli import main

SSH_KEYGEN = shutil.which("ssh-keygen")


def _encrypted(path: Path, how: str) -> Path:
    if how == "ssh-keygen":
        if SSH_KEYGEN is None:
            pytest.skip("ssh-keygen is not installed here")
        subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "correct horse", "-f", str(path), "-C", "t"],
                       check=True, timeout=60)
    else:
        key = asyncssh.generate_private_key("ssh-ed25519")
        path.write_bytes(key.export_private_key("pkcs8-pem", passphrase="correct horse"))
        path.chmod(0o600)
    return path


def _plain(path: Path) -> Path:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key("openssh"))
    path.chmod(0o600)
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key("openssh"))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    # the librarian's shell has an agent (forwarded over SSH); the nightly run will not
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    return home


def _config(tmp_path: Path, profiles: dict[str, Path | None]) -> Path:
    cfg = tmp_path / "config.toml"
    text = ""
    for name, key in profiles.items():
        text += (f'[profile.{name}]\nhost = "127.0.0.1"\ntimezone = "UTC"\n'
                 f'ledger = {str(tmp_path / f"{name}.sqlite3")!r}\n')
        if key is not None:
            text += f"key = {str(key)!r}\n"
    cfg.write_text(text)
    return cfg


@pytest.mark.parametrize("how", ["ssh-keygen", "pkcs8"])
def test_a_key_file_with_a_passphrase_is_warned_about(tmp_path, monkeypatch, capsys, home, how):
    key = _encrypted(home / ".ssh" / "id_library", how)
    cfg = _config(tmp_path, {"library": key})
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False, login_key=False)
    code = main(["schedule", "--config", str(cfg), "--profile", "library", "--install"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert str(key) in err and "passphrase" in err and "init --new-key" in err, err
    assert "report-keeper-schedule" in tab.read_text()  # installed all the same


def test_a_key_file_without_a_passphrase_is_fine(tmp_path, monkeypatch, capsys, home):
    cfg = _config(tmp_path, {"library": _plain(home / ".ssh" / "id_library")})
    _tools(tmp_path, monkeypatch, systemd=False, login_key=False)
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_no_key_file_and_only_an_agent_is_warned_about(tmp_path, monkeypatch, capsys, home):
    cfg = _config(tmp_path, {"library": None})
    _tools(tmp_path, monkeypatch, systemd=False, login_key=False)
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 1
    err = capsys.readouterr().err
    assert "ssh-agent" in err and "init --new-key" in err, err
    # a default key of ~/.ssh without passphrase is what the nightly run logs in with
    _plain(home / ".ssh" / "id_ed25519")
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_only_default_keys_with_a_passphrase_are_named(tmp_path, monkeypatch, capsys, home):
    key = _encrypted(home / ".ssh" / "id_ed25519", "pkcs8")
    cfg = _config(tmp_path, {"library": None})
    _tools(tmp_path, monkeypatch, systemd=False, login_key=False)
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 1
    err = capsys.readouterr().err
    assert str(key) in err and "passphrase" in err, err


def test_all_profiles_names_each_profile_once(tmp_path, monkeypatch, capsys, home):
    locked = _encrypted(home / ".ssh" / "id_shared", "pkcs8")
    cfg = _config(tmp_path, {"north": locked, "south": locked, "east": _plain(home / ".ssh" / "id_east")})
    _tools(tmp_path, monkeypatch, systemd=False, login_key=False)
    assert main(["schedule", "--config", str(cfg), "--all-profiles", "--install"]) == 1
    err = capsys.readouterr().err
    assert err.count(str(locked)) == 1 and "'north'" in err and "'south'" in err and "'east'" not in err, err


@pytest.mark.parametrize(("fmt", "encrypted"), [
    ("openssh", True), ("pkcs8-pem", True), ("pkcs1-pem", True), ("openssh", False), ("pkcs8-der", False)])
def test_a_key_needing_a_passphrase_is_told_apart_from_one_that_is_no_key(tmp_path, fmt, encrypted):
    """One helper, for the nightly-run warning and for the login: asyncssh raises the same
    KeyImportError for an encrypted key read without a passphrase and for a file that is no
    key; only the first asks for a passphrase."""
    from tui.sftp.client import needs_passphrase

    key = asyncssh.generate_private_key("ssh-rsa" if fmt == "pkcs1-pem" else "ssh-ed25519")
    path = tmp_path / "key"
    path.write_bytes(key.export_private_key(fmt, passphrase="correct horse" if encrypted else None))
    garbage = tmp_path / "garbage"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot base64 at all\n-----END OPENSSH PRIVATE KEY-----\n")

    def failure(p: Path) -> Exception | None:
        try:
            asyncssh.read_private_key(str(p))
        except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            return exc
        return None

    found = failure(path)
    assert (found is not None and needs_passphrase(found)) == encrypted, found
    assert not needs_passphrase(failure(garbage) or AssertionError("read"))
    assert not needs_passphrase(OSError(13, "Permission denied", str(tmp_path / "passphrase.key")))


@pytest.fixture
def manager_agent(tmp_path):
    """A listening unix socket where an agent would be (short path: a socket's name is at
    most 107 bytes)."""
    import socket
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="agent-", dir="/tmp"))
    path = folder / "agent.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    yield path
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def test_a_timer_under_a_user_manager_with_an_agent_is_not_warned_about(tmp_path, monkeypatch, capsys, home,
                                                                        manager_agent):
    """Some desktops start the user manager with SSH_AUTH_SOCK: its timers reach the agent,
    and 'the nightly run has no ssh-agent' was wrong there (exit 1 for a timer that works)."""
    from tests.test_unattended import _calls

    cfg = _config(tmp_path, {"library": None})
    log, _tab = _tools(tmp_path, monkeypatch, systemd=True, login_key=False)
    monkeypatch.setenv("MANAGER_SSH_AUTH_SOCK", str(manager_agent))
    code = main(["schedule", "--config", str(cfg), "--profile", "library", "--install"])
    err = capsys.readouterr().err
    assert code == 0 and "warning" not in err, err
    assert "systemctl --user show-environment" in _calls(log, "systemctl")


@pytest.mark.parametrize("where", ["gone", "file", "relative", "cron"])
def test_an_agent_the_nightly_run_cannot_reach_is_still_warned_about(tmp_path, monkeypatch, capsys, home,
                                                                     manager_agent, where):
    """The manager's SSH_AUTH_SOCK counts only where a timer runs and the socket is there: a
    socket gone (the session that started the agent ended), a plain file, a relative name,
    or cron (which never has the manager's environment) still get the warning."""
    cfg = _config(tmp_path, {"library": None})
    _log, tab = _tools(tmp_path, monkeypatch, systemd=where != "cron", login_key=False)
    sock = {"gone": str(tmp_path / "gone.sock"), "file": str(cfg), "relative": "agent.sock",
            "cron": str(manager_agent)}[where]
    monkeypatch.chdir(manager_agent.parent)  # the relative name exists from here
    monkeypatch.setenv("MANAGER_SSH_AUTH_SOCK", sock)
    code = main(["schedule", "--config", str(cfg), "--profile", "library", "--install"])
    err = capsys.readouterr().err
    assert code == 1 and "ssh-agent" in err, err
    if where == "cron":
        assert "report-keeper-schedule" in tab.read_text()


def test_a_key_file_with_a_passphrase_is_warned_about_even_with_the_managers_agent(
        tmp_path, monkeypatch, capsys, home, manager_agent):
    """A profile that names its key file reads that file itself (the agent is never asked for
    it): without a terminal to type the passphrase its nightly run fails, agent or not."""
    key = _encrypted(home / ".ssh" / "id_library", "pkcs8")
    cfg = _config(tmp_path, {"library": key})
    _tools(tmp_path, monkeypatch, systemd=True, login_key=False)
    monkeypatch.setenv("MANAGER_SSH_AUTH_SOCK", str(manager_agent))
    assert main(["schedule", "--config", str(cfg), "--profile", "library", "--install"]) == 1
    err = capsys.readouterr().err
    assert str(key) in err and "passphrase" in err, err
