"""How connections fail: a silent server within the configured timeout, and a server whose
only host key is of a type known_hosts does not hold for it (a host-key problem, never retried)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import pytest

from tests import scenario as sc
from tests.fixtures_sshd import SSHD, ServerInfo, start_embedded_sftp, start_sshd
from tui.sftp.client import ConnectOptions, connect
from tui.sftp.errors import ConnectTimeout, HostKeyChanged, HostKeyMismatch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def silent_server():
    """A TCP listener on 127.0.0.1 that never accepts and never speaks (the kernel completes
    the handshake from the backlog, as for a hung SSH daemon)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


async def test_a_silent_server_times_out_after_the_configured_connect_timeout(silent_server, tmp_path):
    from tui.core.config import Profile

    (tmp_path / "none").write_text("")
    # a silent server has nothing to answer in time: any timeout proves the same, and a short
    # one is a short test
    profile = Profile(name="default", host="127.0.0.1", port=silent_server, username="x",
                      known_hosts=tmp_path / "kh", connect_timeout=0.5, ssh_config=tmp_path / "none")
    opts = ConnectOptions.from_profile(profile)
    started = time.monotonic()
    with pytest.raises(ConnectTimeout) as err:
        await connect(opts)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 10
    text = str(err.value)
    assert "within 0.5 s" in text and "30 s" not in text
    assert "accepted the connection" in text and "SSH" in text  # what happened: no SSH greeting
    assert "connect_timeout" in text and err.value.transient


def _rk(args: list[str], home: Path, env: dict[str, str] | None = None, timeout: float = 60):
    full = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_KEEPER_")}
    full.update({"XDG_CONFIG_HOME": str(home / "c"), "XDG_DATA_HOME": str(home / "d"),
                 "XDG_STATE_HOME": str(home / "s"), "XDG_CACHE_HOME": str(home / "x"),
                 "HOME": str(home), "PYTHONPATH": str(ROOT)})
    full.update(env or {})
    started = time.monotonic()
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "tui", *args], env=full, cwd=str(ROOT),
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode(), time.monotonic() - started


def _config(tmp_path: Path, port: int, **extra: str) -> Path:
    (tmp_path / "ssh_config").write_text("")
    text = sc.config_toml(port=port, known_hosts=extra.pop("known_hosts", str(tmp_path / "kh")),
                          key=extra.pop("key", None), username=extra.pop("username", "alma"),
                          remote_dir=extra.pop("remote_dir", "."),
                          local_dir=str(tmp_path / "local"), ledger=str(tmp_path / "l.sqlite3"),
                          ssh_config=str(tmp_path / "ssh_config"))
    text = text.replace('timezone = "America/Chicago"',
                        'timezone = "America/Chicago"\n' + "".join(f"{k} = {v}\n" for k, v in extra.items()))
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_sync_says_the_configured_timeout_for_a_silent_server(silent_server, tmp_path, capsys):
    # a silent server has nothing to answer in time: a short timeout proves the same as a long one
    cfg = _config(tmp_path, silent_server, connect_timeout="0.5")
    home = tmp_path / "home"
    code, out, err, seconds = _rk(["sync", "--json", "--config", str(cfg)], home)
    assert code == 2 and "Traceback" not in err
    doc = json.loads(out)
    assert "within 0.5 s" in doc["error"] and "30 s" not in doc["error"]
    assert 0.4 <= seconds < 20  # about the configured time (process start-up included)
    # check says it too (in this process: the process itself is sync's part above)
    from tui.cli import main

    capsys.readouterr()
    code = main(["check", "--json", "--config", str(cfg)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and "within 0.5 s" in doc["connection"]["message"]


# ---------------------------------------------------------------------------- host key types


def _known_hosts_with(path: Path, port: int, key) -> None:
    path.write_bytes(f"[127.0.0.1]:{port} ".encode() + key.export_public_key())


def _assert_type_mismatch(err: HostKeyMismatch, server_key, recorded, kh: Path) -> None:
    text = str(err)
    assert isinstance(err, HostKeyChanged)  # every handler of a changed key applies
    assert not err.transient and "retried automatically" not in text
    assert server_key.get_algorithm() in text and server_key.get_fingerprint("sha256") in text
    assert recorded.get_algorithm() in text and recorded.get_fingerprint("sha256") in text
    assert str(kh) in text and "administrator" in text and "ssh-keygen -R" in text
    assert err.fingerprint == server_key.get_fingerprint("sha256")
    assert err.expected == (recorded.get_fingerprint("sha256"),)


async def test_a_host_key_of_another_type_is_a_host_key_problem_embedded(ssh_keys, tmp_path):
    info = await start_embedded_sftp(tmp_path / "srv", ssh_keys.public)
    await info.stop()
    server_key = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[server_key],
                                   authorized_client_keys=str(ssh_keys.public), sftp_factory=True)
    port = server.sockets[0].getsockname()[1]
    recorded = asyncssh.generate_private_key("ssh-ed25519")
    kh = tmp_path / "known_hosts"
    _known_hosts_with(kh, port, recorded)
    asked = []

    async def policy(key_info):
        asked.append(key_info)
        return "remember"

    opts = ConnectOptions(host="127.0.0.1", port=port, key=ssh_keys.private, known_hosts=kh,
                          ssh_config=info.ssh_config, use_agent=False, connect_timeout=10)
    try:
        with pytest.raises(HostKeyMismatch) as err:
            await connect(opts, host_key_policy=policy)
    finally:
        server.close()
        await server.wait_closed()
    _assert_type_mismatch(err.value, server_key, recorded, kh)
    assert asked == [] and kh.read_bytes().count(b"\n") == 1  # never accepted, nothing written


@pytest.fixture
def ecdsa_sshd(ssh_keys):
    if SSHD is None:
        pytest.skip("OpenSSH sshd is not installed (make test installs openssh-server)")
    workdir = Path(tempfile.mkdtemp(prefix="rk-sshd-ecdsa-"))
    info = start_sshd(workdir, ssh_keys.public, host_key_type="ecdsa-sha2-nistp256")
    yield info
    info.stop()
    shutil.rmtree(workdir, ignore_errors=True)


async def test_a_host_key_of_another_type_is_a_host_key_problem_sshd(ecdsa_sshd: ServerInfo, tmp_path):
    recorded = asyncssh.generate_private_key("ssh-ed25519")
    kh = tmp_path / "known_hosts"
    _known_hosts_with(kh, ecdsa_sshd.port, recorded)
    with pytest.raises(HostKeyMismatch) as err:
        await connect(ecdsa_sshd.options(known_hosts=kh), host_key_policy="remember")
    _assert_type_mismatch(err.value, ecdsa_sshd.host_key, recorded, kh)


def test_sync_reports_the_new_host_key_type_once_and_does_not_retry(ecdsa_sshd: ServerInfo, tmp_path):
    recorded = asyncssh.generate_private_key("ssh-ed25519")
    kh = tmp_path / "known_hosts"
    _known_hosts_with(kh, ecdsa_sshd.port, recorded)
    cfg = _config(tmp_path, ecdsa_sshd.port, known_hosts=str(kh), key=str(ecdsa_sshd.key),
                  username=ecdsa_sshd.username)
    code, out, err, _ = _rk(["sync", "--json", "--config", str(cfg), "--accept-new-host-key"],
                            tmp_path / "home")
    assert code == 2 and "Traceback" not in err
    doc = json.loads(out)
    assert "ecdsa-sha2-nistp256" in doc["error"] and "ssh-ed25519" in doc["error"]
    assert "retried" not in doc["error"] and doc["downloaded"] == []
    assert kh.read_bytes().count(b"\n") == 1


async def test_a_connection_cut_during_the_key_exchange_is_not_mistaken_for_a_new_key(ssh_keys, tmp_path):
    """The server has two key types, known_hosts holds one; the first handshake breaks off: a
    transient loss (retried), not a host-key warning about the type known_hosts lacks."""
    from tests.fixtures_sshd import TcpProxy
    from tui.sftp.errors import ConnectionLost

    known = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    other = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[other, known],
                                   authorized_client_keys=str(ssh_keys.public), sftp_factory=True)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "cfg").write_text("")
    try:
        async with TcpProxy(port, cut_after=60) as proxy:
            kh = tmp_path / "known_hosts"
            _known_hosts_with(kh, proxy.port, known)
            opts = ConnectOptions(host="127.0.0.1", port=proxy.port, key=ssh_keys.private,
                                  known_hosts=kh, ssh_config=tmp_path / "cfg", use_agent=False,
                                  connect_timeout=10)
            with pytest.raises(ConnectionLost) as err:
                await connect(opts)
            assert err.value.transient and proxy.cuts == 1
            async with await connect(opts) as conn:  # the next try works: nothing was wrong
                assert conn.host_key.fingerprint == known.get_fingerprint("sha256")
    finally:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------- Ctrl-C


@pytest.fixture
def answering_silent_server():
    """A TCP listener that accepts and then never speaks; ``accepted`` is set once a client
    is connected (so a test knows the command is waiting for the SSH greeting)."""
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    yield sock.getsockname()[1], accepted
    sock.close()
    for conn in held:
        conn.close()


#: Starts report-keeper with SIGINT ignored, as a shell script's background job (``cmd &``)
#: or any parent that ignores it starts it: the ignoring survives the exec.
IGNORING_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   "os.execv(sys.executable, [sys.executable, '-m', 'tui', *sys.argv[1:]])")


@pytest.mark.parametrize("started", ["", "ignoring-sigint"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("all_profiles", [False, True], ids=["one", "all"])
def test_ctrl_c_during_check_still_prints_one_json_document(answering_silent_server, tmp_path, all_profiles,
                                                            sig, started):
    """cron and monitoring read check's JSON: a Ctrl-C (or a SIGINT from a supervisor) while
    it waits for a server still ends in one document saying so, exit 2, no traceback. Also
    when started with SIGINT ignored (a script's background job): SIGTERM, systemd's and
    ``timeout``'s stop, must still stop it, and stops it the same way."""
    import signal
    import subprocess

    port, accepted = answering_silent_server
    cfg = _config(tmp_path, port, connect_timeout="60")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_KEEPER_")}
    env.update({"XDG_CONFIG_HOME": str(home / "c"), "XDG_DATA_HOME": str(home / "d"),
                "XDG_STATE_HOME": str(home / "s"), "HOME": str(home), "PYTHONPATH": str(ROOT)})
    args = ["check", "--json", "--config", str(cfg)] + (["--all-profiles"] if all_profiles else [])
    start = [sys.executable, "-c", IGNORING_SIGINT] if started else [sys.executable, "-m", "tui"]
    proc = subprocess.Popen([*start, *args], env=env, cwd=str(ROOT),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert accepted.wait(60), "check never connected"
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    assert b"Traceback" not in err and b"Interrupted" in err
    doc = json.loads(out)
    assert doc["status"] == "critical" and doc["error_kind"] == "interrupted"
    assert doc["error"].startswith("Interrupted")
    if all_profiles:  # its one profile had not ended: listed, as interrupted
        (one,) = doc["profiles"].values()
        assert one["error_kind"] == "interrupted" and one["reports"] == [] and "connection" in one
    else:
        assert doc["reports"] == [] and "connection" in doc


def _two_profiles(tmp_path: Path, sshd: ServerInfo, hang_port: int) -> Path:
    """``done`` on the real sshd (an empty folder of its own), then ``hang`` on a server that
    accepts and never speaks; each with its own ledger."""
    folder = Path(tempfile.mkdtemp(prefix="ctrlc-", dir=sshd.root))
    os.chmod(folder, 0o755)
    text = ""
    for name, port in (("done", sshd.port), ("hang", hang_port)):
        text += (f"[profile.{name}]\n"
                 f'host = "127.0.0.1"\nport = {port}\nusername = "{sshd.username}"\n'
                 f'key = "{sshd.key}"\nknown_hosts = "{sshd.known_hosts}"\nssh_config = "{sshd.ssh_config}"\n'
                 f'remote_dir = "{folder.name}"\nlocal_dir = "{tmp_path / "local" / name}"\n'
                 f'ledger = "{tmp_path / (name + ".sqlite3")}"\ntimezone = "UTC"\nconnect_timeout = 60\n\n')
    path = tmp_path / "two.toml"
    path.write_text(text)
    return path


@pytest.mark.sshd
@pytest.mark.parametrize("json_out", [True, False], ids=["json", "human"])
def test_ctrl_c_during_check_all_profiles_keeps_the_finished_profiles(
        sshd: ServerInfo, answering_silent_server, tmp_path, json_out):
    """Interrupted while one profile still waits for its server, ``check --all-profiles``
    still accounts for every profile: the finished one with its whole document, the unfinished
    one as interrupted; the worst exit code."""
    import signal
    import subprocess

    port, accepted = answering_silent_server
    cfg = _two_profiles(tmp_path, sshd, port)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_KEEPER_")}
    env.update({"XDG_CONFIG_HOME": str(home / "c"), "XDG_DATA_HOME": str(home / "d"),
                "XDG_STATE_HOME": str(home / "s"), "HOME": str(home), "PYTHONPATH": str(ROOT)})
    # One profile at a time, in the config's order: once the silent server has a client,
    # the sshd profile has ended.
    args = ["check", "--config", str(cfg), "--all-profiles", "--parallel", "1"] + (["--json"] if json_out else [])
    proc = subprocess.Popen([sys.executable, "-m", "tui", *args], env=env, cwd=str(ROOT),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert accepted.wait(60), "check never reached the second profile"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    assert b"Traceback" not in err and b"Interrupted" in err
    if not json_out:
        text = out.decode()
        assert "== done" in text and "Connection: ok, write test ok" in text
        assert "== hang" in text and "Interrupted" in text.split("== hang", 1)[1]
        assert "All 2 profiles: CRITICAL" in text
        return
    doc = json.loads(out)
    assert doc["status"] == "critical" and doc["error_kind"] == "interrupted"
    assert list(doc["profiles"]) == ["done", "hang"]
    done, hang = doc["profiles"]["done"], doc["profiles"]["hang"]
    assert done["connection"]["ok"] is True and done["connection"]["write_test"] == "ok"
    assert "error_kind" not in done and {"reports", "refused", "ignored", "folders", "notify"} <= set(done)
    assert hang["status"] == "critical" and hang["error_kind"] == "interrupted"
    assert hang["error"].startswith("Interrupted") and hang["reports"] == [] and "connection" in hang
