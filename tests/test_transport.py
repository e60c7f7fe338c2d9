"""How the SSH transport is set up (``tui.sftp.transport``): what goes on the wire per request,
and asyncssh's own debug logging still there when it is turned on."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from asyncssh.connection import SSHConnection

from tests.fixtures_sshd import ServerInfo, UserKeys, _known_hosts_line
from tui.sftp import transport


def _count_client_packets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many encrypted packets each client connection has written (one write each)."""
    sent = [0]
    write = SSHConnection._send

    def counted(self: SSHConnection, data: bytes) -> None:
        if self.is_client():
            sent[0] += 1
        write(self, data)

    monkeypatch.setattr(SSHConnection, "_send", counted)
    return sent


async def _requests_per_packet(host: str, port: int, key: Path, known_hosts: Path, username: str,
                               sent: list[int], **options: Any) -> tuple[float, str]:
    async with asyncssh.connect(host, port=port, username=username, client_keys=[str(key)],
                                known_hosts=str(known_hosts), config=None, agent_path=None,
                                **options) as conn:
        async with conn.start_sftp_client() as sftp:
            await sftp.stat(".")
            before = sent[0]
            for _ in range(20):
                await sftp.stat(".")
            return (sent[0] - before) / 20, str(conn.get_extra_info("send_cipher"))


async def test_an_sftp_request_goes_out_as_one_packet(sftp_server: ServerInfo, monkeypatch):
    """No empty SSH_MSG_IGNORE before each packet: with the ciphers this client offers it
    protects nothing, and it doubled every request's packets, system calls and the server's
    work."""
    sent = _count_client_packets(monkeypatch)
    per_request, cipher = await _requests_per_packet(
        sftp_server.host, sftp_server.port, sftp_server.key, sftp_server.known_hosts,
        sftp_server.username, sent, encryption_algs=transport.cipher_list(),
        window=transport.WINDOW, max_pktsize=transport.MAX_PKTSIZE)
    assert cipher in transport.cipher_list()
    assert per_request == 1


async def test_a_cbc_cipher_still_gets_its_ignore_packets(tmp_path, ssh_keys: UserKeys, monkeypatch):
    """CBC chains its IV from the last block sent: there the ignore packet before each packet
    is a countermeasure (RFC 4251 9.3.1), and it stays."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    root = tmp_path / "root"
    root.mkdir()
    server = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=str(ssh_keys.public),
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
        encryption_algs=["aes128-cbc"], allow_scp=False)
    try:
        port = server.sockets[0].getsockname()[1]
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_bytes(_known_hosts_line("127.0.0.1", port, host_key))
        sent = _count_client_packets(monkeypatch)
        per_request, cipher = await _requests_per_packet(
            "127.0.0.1", port, ssh_keys.private, known_hosts, pwd.getpwuid(os.getuid()).pw_name, sent,
            encryption_algs=["aes128-cbc"])
    finally:
        server.close()
        await server.wait_closed()
    assert cipher == "aes128-cbc"
    assert per_request == 2


async def test_asyncssh_debug_logging_still_logs_when_turned_on(sftp_server: ServerInfo, monkeypatch):
    """Its messages are only built when a logger takes them; turned on, they are all there."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("asyncssh")
    handler = Keep(logging.DEBUG)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    asyncssh.set_debug_level(3)
    try:
        sent = [0]
        await _requests_per_packet(sftp_server.host, sftp_server.port, sftp_server.key,
                                   sftp_server.known_hosts, sftp_server.username, sent,
                                   encryption_algs=transport.cipher_list())
    finally:
        asyncssh.set_debug_level(1)
        logger.setLevel(old_level)
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert any("Sent MSG_KEXINIT" in m for m in messages)  # a packet's debug line (level 3)
    assert any("Starting SFTP client" in m for m in messages)  # an SFTP debug line
    assert any(r.levelno == logging.INFO and "Auth for user" in r.getMessage() for r in records)
    records.clear()
    logger.addHandler(handler)
    try:  # off again (the default): nothing reaches a handler below INFO
        await _requests_per_packet(sftp_server.host, sftp_server.port, sftp_server.key,
                                   sftp_server.known_hosts, sftp_server.username, [0])
    finally:
        logger.removeHandler(handler)
    assert all(r.levelno >= logging.INFO for r in records)


async def _connect(server: ServerInfo, **options: Any) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(server.host, port=server.port, username=server.username,
                                  client_keys=[str(server.key)], known_hosts=str(server.known_hosts),
                                  config=None, agent_path=None, **options)


async def test_an_incoming_packet_arms_no_keepalive_timer(sftp_server: ServerInfo, monkeypatch):
    """asyncssh cancelled its keepalive timer and armed a new one on every read from the
    socket (about two per file downloaded); the silence is now measured from the last packet
    when the one timer fires."""
    armed = [0]
    async with await _connect(sftp_server, keepalive_interval=30) as conn:
        loop = asyncio.get_running_loop()
        call_later, call_at = loop.call_later, loop.call_at

        def counted(real: Any) -> Any:
            def arm(delay: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
                if getattr(callback, "__func__", None) is SSHConnection._keepalive_timer_callback:
                    armed[0] += 1
                return real(delay, callback, *args, **kwargs)
            return arm

        monkeypatch.setattr(loop, "call_later", counted(call_later))
        monkeypatch.setattr(loop, "call_at", counted(call_at))
        async with conn.start_sftp_client() as sftp:
            for _ in range(20):
                await sftp.stat(".")
    assert armed[0] <= 1


async def test_a_keepalive_still_goes_out_after_the_silence_since_the_last_packet(
        sftp_server: ServerInfo, monkeypatch):
    """Not before ``keepalive_interval`` has passed since the last packet arrived, and then
    it does (the server answers it: the count starts again)."""
    sent: list[float] = []
    asked = SSHConnection._make_keepalive_request

    async def counted(self: SSHConnection) -> None:
        sent.append(asyncio.get_running_loop().time())
        await asked(self)

    monkeypatch.setattr(SSHConnection, "_make_keepalive_request", counted)
    async with await _connect(sftp_server, keepalive_interval=0.3) as conn:
        async with conn.start_sftp_client() as sftp:
            last = 0.0
            for _ in range(3):
                last = asyncio.get_running_loop().time()  # its answer arrives after this
                await sftp.stat(".")
            deadline = last + 30
            while not sent and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert sent, "no keepalive went out"
            assert sent[0] >= last + 0.3  # never before the silence
            while len(sent) < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert len(sent) >= 2 and not conn.is_closed()
            await sftp.stat(".")  # answered: the connection lives on
