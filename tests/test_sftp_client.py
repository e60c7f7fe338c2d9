"""The SFTP client against real servers: the embedded asyncssh one and OpenSSH sshd."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import pytest

from tests.fixtures_sshd import ServerInfo
from tui.sftp.client import ConnectOptions, HostKeyInfo, connect
from tui.sftp.errors import (
    AuthFailed,
    ConnectFailed,
    ConnectTimeout,
    HostKeyChanged,
    HostKeyUnknown,
    PermissionDenied,
    RemoteFileGone,
)


def _files(info: ServerInfo, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (info.root / name).write_bytes(data)


async def test_listing_regular_files_with_size_and_mtime(sftp_server: ServerInfo):
    _files(sftp_server, {"b_20260601_070000.xlsx": b"x" * 1234, "a.xlsx": b""})
    os.utime(sftp_server.root / "a.xlsx", (1_780_000_000, 1_780_000_000))
    (sftp_server.root / "archive").mkdir()
    async with await connect(sftp_server.options()) as conn:
        listing = await conn.listdir(sftp_server.remote_dir)
    assert [f.name for f in listing.files] == ["a.xlsx", "b_20260601_070000.xlsx"]
    assert listing.files[1].size == 1234
    assert listing.files[0].mtime == datetime.fromtimestamp(1_780_000_000, UTC)
    assert listing.files[0].mtime.tzinfo is not None
    assert listing.others == [("archive", "folder")]
    assert listing.refused == []


async def test_listing_refuses_unsafe_names(sftp_server: ServerInfo):
    _files(sftp_server, {"ok.xlsx": b"1", "esc\x1b[31mred.xlsx": b"2", "back\\slash.xlsx": b"3"})
    with open(os.path.join(os.fsencode(sftp_server.root), b"bad\xff.xlsx"), "wb") as f:
        f.write(b"4")  # not valid UTF-8
    async with await connect(sftp_server.options()) as conn:
        listing = await conn.listdir(sftp_server.remote_dir)
    assert [f.name for f in listing.files] == ["ok.xlsx"]
    reasons = dict(listing.refused)
    assert "control character" in reasons["esc\x1b[31mred.xlsx"]
    assert "separator" in reasons["back\\slash.xlsx"]
    assert "UTF-8" in reasons["bad\\xff.xlsx"]  # shown escaped, never as undecodable text


async def test_unknown_host_key_rejected_headless(sftp_server: ServerInfo, tmp_path: Path):
    kh = tmp_path / "fresh_known_hosts"
    with pytest.raises(HostKeyUnknown) as err:
        await connect(sftp_server.options(known_hosts=kh))
    e = err.value
    assert e.fingerprint == sftp_server.host_key.get_fingerprint("sha256")
    assert e.key_type == "ssh-ed25519" and e.port == sftp_server.port
    assert "--accept-new-host-key" in str(e) and e.fingerprint in str(e)
    assert not e.transient
    assert not kh.exists()


async def test_unknown_host_key_remembered_then_silent(sftp_server: ServerInfo, tmp_path: Path):
    kh = tmp_path / "ssh" / "known_hosts"
    async with await connect(sftp_server.options(known_hosts=kh), host_key_policy="remember") as conn:
        assert conn.host_key.fingerprint == sftp_server.host_key.get_fingerprint("sha256")
    text = kh.read_text()
    assert text.startswith(f"[127.0.0.1]:{sftp_server.port} ssh-ed25519 ")
    assert kh.stat().st_mode & 0o777 == 0o600
    asked = []

    async def policy(info: HostKeyInfo) -> str:
        asked.append(info)
        return "reject"

    async with await connect(sftp_server.options(known_hosts=kh), host_key_policy=policy) as conn:
        await conn.listdir(sftp_server.remote_dir)
    assert asked == []  # the second connection did not ask
    assert kh.read_text() == text


async def test_unknown_host_key_accepted_once_by_callback(sftp_server: ServerInfo, tmp_path: Path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    asked: list[HostKeyInfo] = []

    async def policy(info: HostKeyInfo) -> str:
        asked.append(info)
        return "once"

    async with await connect(sftp_server.options(known_hosts=kh), host_key_policy=policy) as conn:
        await conn.listdir(sftp_server.remote_dir)
    assert len(asked) == 1
    assert asked[0].fingerprint.startswith("SHA256:")
    assert asked[0].host == "127.0.0.1" and asked[0].port == sftp_server.port
    assert kh.read_text() == ""  # "once" records nothing
    with pytest.raises(HostKeyUnknown):
        await connect(sftp_server.options(known_hosts=kh))


async def test_changed_host_key_refused_whatever_the_policy(sftp_server: ServerInfo, tmp_path: Path):
    other = asyncssh.generate_private_key("ssh-ed25519")
    kh = tmp_path / "known_hosts"
    kh.write_bytes(f"[127.0.0.1]:{sftp_server.port} ".encode() + other.export_public_key())
    asked = []

    async def policy(info):
        asked.append(info)
        return "remember"

    with pytest.raises(HostKeyChanged) as err:
        await connect(sftp_server.options(known_hosts=kh), host_key_policy=policy)
    assert asked == []
    assert "CHANGED" in str(err.value)
    assert err.value.fingerprint == sftp_server.host_key.get_fingerprint("sha256")
    assert err.value.expected == (other.get_fingerprint("sha256"),)
    assert not err.value.transient
    assert kh.read_bytes().count(b"\n") == 1  # nothing appended


async def test_wrong_key_is_auth_failure(sftp_server: ServerInfo, tmp_path: Path):
    stranger = tmp_path / "id_stranger"
    stranger.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    with pytest.raises(AuthFailed) as err:
        await connect(sftp_server.options(key=stranger))
    assert not err.value.transient
    assert "refused the login" in str(err.value)


def _locked_by_ssh_keygen(ssh_keys, tmp_path: Path, passphrase: str) -> Path:
    """A copy of the test user's key that the real ``ssh-keygen`` protected with
    ``passphrase``, in its own format (the one most users' keys are in)."""
    import shutil
    import subprocess

    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.skip("OpenSSH ssh-keygen is not installed (make test installs openssh-client)")
    locked = tmp_path / "id_locked"
    shutil.copy(ssh_keys.private, locked)
    locked.chmod(0o600)
    subprocess.run([keygen, "-q", "-p", "-N", passphrase, "-f", str(locked)], check=True,
                   capture_output=True, stdin=subprocess.DEVNULL)
    return locked


@pytest.mark.parametrize("kind", ["pkcs8", "ssh-keygen"])
async def test_encrypted_key_with_passphrase_callback(sftp_server: ServerInfo, ssh_keys, tmp_path: Path, kind):
    """A key file protected by a passphrase: PKCS#8, and the key most users have,
    ``ssh-keygen``'s own format, whose passphrase goes through bcrypt's key derivation. The
    right passphrase opens it; a wrong one is said to be wrong; with nobody to ask, it says so."""
    if kind == "pkcs8":
        locked = tmp_path / "id_locked"
        locked.write_bytes(ssh_keys.key.export_private_key("pkcs8-pem", passphrase="sesame"))
    else:
        locked = _locked_by_ssh_keygen(ssh_keys, tmp_path, "sesame")
        assert b"BEGIN OPENSSH PRIVATE KEY" in locked.read_bytes()
    typed = []

    async def ask(path: Path) -> str:
        typed.append(path)
        return "wrong" if len(typed) == 1 else "sesame"

    async with await connect(sftp_server.options(key=locked), passphrase_cb=ask) as conn:
        await conn.listdir(sftp_server.remote_dir)
    assert typed == [locked, locked]

    async def always_wrong(path: Path) -> str:
        return "wrong"

    with pytest.raises(AuthFailed, match="wrong three times"):
        await connect(sftp_server.options(key=locked), passphrase_cb=always_wrong)
    with pytest.raises(AuthFailed, match="passphrase"):
        await connect(sftp_server.options(key=locked))


def test_without_bcrypt_a_key_of_ssh_keygen_is_not_called_a_wrong_passphrase(ssh_keys, tmp_path: Path):
    """Should bcrypt be missing after all (a broken install), the right passphrase is not
    blamed three times: the message names what is missing."""
    import subprocess
    import sys

    locked = _locked_by_ssh_keygen(ssh_keys, tmp_path, "sesame")
    code = (
        "import sys; sys.modules['bcrypt'] = None\n"  # as if the package were not installed
        "import asyncio\nfrom pathlib import Path\n"
        "from tui.sftp.client import ConnectOptions, _load_key\nfrom tui.sftp.errors import AuthFailed\n"
        "asked = []\n"
        "async def ask(path):\n    asked.append(path)\n    return 'sesame'\n"
        f"opts = ConnectOptions(host='127.0.0.1', key=Path({str(locked)!r}))\n"
        "try:\n    asyncio.run(_load_key(opts, ask))\nexcept AuthFailed as exc:\n    print(len(asked), exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.startswith("1 "), out
    assert "bcrypt" in out.stdout and "wrong" not in out.stdout


async def test_ssh_config_host_alias(sftp_server: ServerInfo, tmp_path: Path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host reports-alias\n  HostName 127.0.0.1\n  Port {sftp_server.port}\n"
        f"  User {sftp_server.username}\n  IdentityFile {sftp_server.key}\n"
    )
    opts = ConnectOptions(host="reports-alias", known_hosts=sftp_server.known_hosts, ssh_config=cfg,
                          use_agent=False, connect_timeout=10)
    async with await connect(opts) as conn:
        listing = await conn.listdir(sftp_server.remote_dir)
    assert listing.refused == []


async def test_nothing_listening_is_transient_connect_failure(tmp_path: Path):
    from tests.fixtures_sshd import free_port

    port = free_port()
    (tmp_path / "none").write_text("")
    with pytest.raises(ConnectFailed) as err:
        await connect(ConnectOptions(host="127.0.0.1", port=port, known_hosts=tmp_path / "kh",
                                     ssh_config=tmp_path / "none", use_agent=False))
    assert err.value.transient
    assert str(port) in str(err.value) and "refused the connection" in str(err.value)


async def test_probe_helpers_upload_download_remove(sftp_server: ServerInfo):
    async with await connect(sftp_server.options()) as conn:
        path = conn.join(sftp_server.remote_dir, ".report-keeper-probe")
        await conn.upload_bytes(path, b"probe 123")
        assert (sftp_server.root / ".report-keeper-probe").read_bytes() == b"probe 123"
        assert await conn.download_bytes(path) == b"probe 123"
        await conn.remove(path)
        assert not (sftp_server.root / ".report-keeper-probe").exists()
        with pytest.raises(RemoteFileGone):
            await conn.download_bytes(path)
        with pytest.raises((PermissionDenied, RemoteFileGone)):
            await conn.upload_bytes(conn.join(sftp_server.remote_dir, "no/such/dir/x"), b"1")


def test_from_profile_reads_connection_fields(tmp_path: Path):
    from tui.core.config import Profile

    profile = Profile(name="default", host="files.example.org", port=2222, username="abcftp",
                      key=tmp_path / "id", known_hosts=tmp_path / "kh", connect_timeout=7.0,
                      ssh_config=tmp_path / "cfg")
    opts = ConnectOptions.from_profile(profile)
    assert (opts.host, opts.port, opts.username) == ("files.example.org", 2222, "abcftp")
    assert opts.key == tmp_path / "id" and opts.known_hosts == tmp_path / "kh"
    assert opts.connect_timeout == 7.0 and opts.ssh_config == tmp_path / "cfg"


async def test_silent_server_times_out(tmp_path: Path):
    held = []

    async def hold(reader, writer):  # accepts, never speaks SSH
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "none").write_text("")
    try:
        with pytest.raises(ConnectTimeout) as err:
            await connect(ConnectOptions(host="127.0.0.1", port=port, known_hosts=tmp_path / "kh",
                                         ssh_config=tmp_path / "none", use_agent=False,
                                         connect_timeout=0.3, login_timeout=0.3))
        assert err.value.transient and "did not" in str(err.value)
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_missing_ssh_config_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConnectFailed) as err:
        await connect(ConnectOptions(host="127.0.0.1", port=1, ssh_config=tmp_path / "nope"))
    assert "does not exist" in str(err.value) and not err.value.transient


@pytest.fixture
def ssh_agent(tmp_path: Path, monkeypatch):
    """A real OpenSSH ssh-agent on a socket of the test's own, holding the test user's key."""
    import shutil
    import subprocess
    import time

    if not shutil.which("ssh-agent") or not shutil.which("ssh-add"):
        pytest.skip("OpenSSH's ssh-agent is not installed (make test installs openssh-client)")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        yield sock
    finally:
        agent.terminate()
        agent.wait(timeout=10)


async def test_ssh_agent_key_logs_in_without_a_key_file(sftp_server: ServerInfo, ssh_agent: Path,
                                                        tmp_path: Path, monkeypatch):
    import subprocess

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* keys to fall back on
    opts = ConnectOptions(host="127.0.0.1", port=sftp_server.port, username=sftp_server.username,
                          known_hosts=sftp_server.known_hosts, ssh_config=sftp_server.ssh_config,
                          connect_timeout=10)
    # Without the key in the agent there is nothing to log in with.
    with pytest.raises(AuthFailed):
        await connect(opts)
    subprocess.run(["ssh-add", str(sftp_server.key)], check=True, capture_output=True,
                   env={**os.environ, "SSH_AUTH_SOCK": str(ssh_agent)})
    async with await connect(opts) as conn:
        listing = await conn.listdir(sftp_server.remote_dir)
    assert listing.refused == []


async def test_init_lists_the_keys_ssh_agent_holds(sftp_server: ServerInfo, ssh_agent: Path):
    """What `init` offers from ssh-agent: each key's type and SHA256 fingerprint (the agent
    hands out key pairs, not keys: the fingerprint comes from their public data)."""
    import subprocess

    from tui.sftp.setup import agent_keys

    assert await agent_keys() == []
    subprocess.run(["ssh-add", str(sftp_server.key)], check=True, capture_output=True,
                   env={**os.environ, "SSH_AUTH_SOCK": str(ssh_agent)})
    key = asyncssh.read_private_key(str(sftp_server.key))
    [listed] = await agent_keys()
    assert (listed.algorithm, listed.fingerprint) == (key.get_algorithm(), key.get_fingerprint("sha256"))
