"""The embedded demo SFTP server (SPEC "Demo"): asyncssh on 127.0.0.1, chrooted, throwaway keys.

``await start_demo_server()`` generates the demo reports (``tui.core.demo_data``) in a
temporary folder, makes a throwaway host key and a throwaway user key (files 0600 in a 0700
folder), writes a known_hosts file that trusts exactly that host key, and serves the folder
over SFTP on an ephemeral port of 127.0.0.1. Only the generated user key logs in, only as
``demo``, only to SFTP (no shell, no exec, no port forwarding), and every path is confined
to the folder (asyncssh's SFTP chroot).

``DemoServer.profile`` is a ready :class:`tui.core.config.Profile` pointing at it, with its
own empty ssh config file so a developer's ``~/.ssh/config`` cannot redirect the demo, its
own ledger path and a download folder (``local_dir`` or a temporary one).
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from tui.core import demo_data
from tui.core.config import Profile

log = logging.getLogger("report_keeper.sftp.demo_server")

HOST = "127.0.0.1"
DEMO_USER = "demo"


class _DemoSSHServer(asyncssh.SSHServer):
    """Public-key login for one user and one key; nothing else."""

    def __init__(self, user: str, key: asyncssh.SSHKey) -> None:
        self._user = user
        self._key = key

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        log.info("demo server: connection from %s", peer[0] if peer else "?")

    def begin_auth(self, username: str) -> bool:
        return True  # authentication is always required

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = username == self._user and key.public_data == self._key.public_data
        if not ok:
            log.info("demo server: refused public key login for user %r", username)
        return ok


@dataclass
class DemoServer:
    """A running demo server; ``await close()`` stops it and removes its temporary files."""

    host: str
    port: int
    user: str
    root: Path  # the chroot: the server's "/"
    remote_dir: str  # relative to root
    client_key_path: Path
    known_hosts_path: Path
    ssh_config_path: Path
    host_key_fingerprint: str  # "SHA256:..."
    host_key_type: str
    profile: Profile
    scenario: demo_data.DemoScenario | None  # None when an existing folder was served
    _acceptor: Any = field(repr=False, default=None)
    _cleanup: list[Path] = field(repr=False, default_factory=list)

    @property
    def sftp_command(self) -> str:
        """An OpenSSH ``sftp`` command line that connects to this server."""
        return (
            f"sftp -i {self.client_key_path} -P {self.port} "
            f"-o UserKnownHostsFile={self.known_hosts_path} -o IdentitiesOnly=yes "
            f"{self.user}@{self.host}"
        )

    def write_config(self, path: str | Path | None = None) -> Path:
        """A TOML config file with this server as ``[profile.demo]`` (for the headless commands).

        Default location: ``config.toml`` beside the throwaway keys.
        """
        target = Path(path) if path is not None else self.client_key_path.parent / "config.toml"
        _write_secret(target, profile_toml(self.profile).encode("utf-8"))
        return target

    async def close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            try:
                await asyncio.wait_for(self._acceptor.wait_closed(), 5)
            except (asyncio.TimeoutError, OSError):
                pass
            self._acceptor = None
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)
        self._cleanup = []
        log.info("demo server on port %d stopped", self.port)

    async def __aenter__(self) -> "DemoServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _q(value: Any) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(str(value), ensure_ascii=False)


def profile_toml(profile: Profile) -> str:
    """``profile`` as TOML that ``tui.core.config.load_config`` reads back."""
    lines = [
        f"[profile.{profile.name}]",
        f"host = {_q(profile.host)}",
        f"port = {int(profile.port or 22)}",
        f"username = {_q(profile.username)}",
    ]
    if profile.key:
        lines.append(f"key = {_q(profile.key)}")
    lines += [
        f"known_hosts = {_q(profile.known_hosts)}",
        f"remote_dir = {_q(profile.remote_dir)}",
        f"local_dir = {_q(profile.local_dir)}",
        f"timezone = {_q(getattr(profile.timezone, 'key', 'UTC'))}",
    ]
    if profile.ssh_config:
        lines.append(f"ssh_config = {_q(profile.ssh_config)}")
    if profile.ledger:
        lines.append(f"ledger = {_q(profile.ledger)}")
    for r in profile.reports:
        lines += [
            "",
            f"[[profile.{profile.name}.report]]",
            f"name = {_q(r.name)}",
            f"schedule = {_q(r.schedule or 'daily')}",
            f"at = {_q(r.at.strftime('%H:%M') if r.at else '07:00')}",
            f"grace = {_q(f'{int(r.grace.total_seconds() // 60)}m')}",
            f"lag_days = {r.lag_days}",
            f"anonymize_days = {r.anonymize_days}",
            f"retention_days = {r.retention_days}",
            f"min_rows = {r.min_rows}",
            "expected_columns = [" + ", ".join(_q(c) for c in r.expected_columns) + "]",
            "closed_days = [" + ", ".join(_q(str(d)) for d in r.closed_days) + "]",
        ]
    return "\n".join(lines) + "\n"


def _private_dir(prefix: str) -> Path:
    """A temporary 0700 folder, removed at exit even if nobody calls ``close()``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))  # mkdtemp makes it 0700
    path.chmod(0o700)
    atexit.register(shutil.rmtree, path, True)
    return path


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    path.chmod(0o600)


async def seed_history(server: "DemoServer") -> Any:
    """Download what a previous sync would hold (``DemoScenario.already_synced``) through the
    real sync service, so the demo opens with weeks of verified history and a few new files.
    Returns the ``SyncResult`` (None when the served folder was not generated by this server)."""
    from tui.core.ledger import Ledger
    from tui.sftp.sync import SyncService

    if server.scenario is None:
        return None
    profile = server.profile
    ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    try:
        async with SyncService(profile, ledger) as service:
            await service.list_remote()
            return await service.download([f.name for f in server.scenario.already_synced])
    finally:
        ledger.close()


def _needs_data(directory: Path) -> bool:
    return not directory.is_dir() or not any(directory.iterdir())


async def start_demo_server(
    dir: str | Path | None = None,  # noqa: A002 - mirrors the --dir option
    port: int = 0,
    *,
    local_dir: str | Path | None = None,
    ledger: str | Path | None = None,
    keys_dir: str | Path | None = None,
    now=None,
) -> DemoServer:
    """Generate (if needed) and serve the demo folder on 127.0.0.1.

    ``dir``: the folder to serve (generated into when its report folder is missing or
    empty; a temporary folder removed on close when None). ``port=0``: an ephemeral
    port. ``local_dir``/``ledger``: where the profile downloads to and keeps its ledger
    (a temporary folder when None). ``keys_dir``: where the throwaway keys go (a
    temporary 0700 folder when None).
    """
    cleanup: list[Path] = []
    try:
        return await _start(dir, port, local_dir, ledger, keys_dir, now, cleanup)
    except BaseException:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise


async def _start(dir, port, local_dir, ledger, keys_dir, now, cleanup: list[Path]) -> DemoServer:  # noqa: A002
    if dir is None:
        root = _private_dir("report-keeper-demo-")
        cleanup.append(root)
    else:
        root = Path(dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
    scenario = None
    if _needs_data(root / demo_data.DEMO_REMOTE_DIR):
        scenario = await asyncio.to_thread(demo_data.generate, root, now)
    if keys_dir is None:
        keys = _private_dir("report-keeper-demo-keys-")
        cleanup.append(keys)
    else:
        keys = Path(keys_dir).expanduser()
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys.chmod(0o700)

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    user_key = asyncssh.generate_private_key("ssh-ed25519", comment="report-keeper demo user")
    client_key_path = keys / "demo_user_ed25519"
    _write_secret(client_key_path, user_key.export_private_key("openssh"))
    _write_secret(keys / "demo_user_ed25519.pub", user_key.export_public_key("openssh"))
    ssh_config_path = keys / "ssh_config"
    _write_secret(ssh_config_path, b"# empty: the demo ignores ~/.ssh/config\n")

    def sftp_factory(chan):
        return asyncssh.SFTPServer(chan, chroot=str(root).encode())

    try:
        acceptor = await asyncssh.listen(
            HOST,
            port,
            server_host_keys=[host_key],
            server_factory=lambda: _DemoSSHServer(DEMO_USER, user_key),
            sftp_factory=sftp_factory,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            login_timeout=30,
            keepalive_interval=30,
        )
    except OSError as exc:
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else (
            exc.strerror or str(exc))
        raise OSError(
            exc.errno,
            f"cannot listen on {HOST} port {port}: {reason}; "
            "choose another --port or leave it out for a free one",
        ) from None
    bound = acceptor.sockets[0].getsockname()[1]

    known_hosts_path = keys / "known_hosts"
    line = f"[{HOST}]:{bound} ".encode() + host_key.export_public_key("openssh").split(b" ")[0]
    line += b" " + host_key.export_public_key("openssh").split(b" ")[1].strip() + b"\n"
    _write_secret(known_hosts_path, line)

    if local_dir is None:
        local_dir = keys / "downloads"
    if ledger is None:
        ledger = keys / "ledger-demo.sqlite3"
    profile = demo_data.demo_config(
        host=HOST,
        port=bound,
        username=DEMO_USER,
        key=client_key_path,
        known_hosts=known_hosts_path,
        local_dir=local_dir,
        ledger=ledger,
        closed_day=scenario.closed_day if scenario else None,
        now=now,
    )
    from dataclasses import replace

    profile = replace(profile, ssh_config=ssh_config_path)
    server = DemoServer(
        host=HOST,
        port=bound,
        user=DEMO_USER,
        root=root,
        remote_dir=demo_data.DEMO_REMOTE_DIR,
        client_key_path=client_key_path,
        known_hosts_path=known_hosts_path,
        ssh_config_path=ssh_config_path,
        host_key_fingerprint=host_key.get_fingerprint("sha256"),
        host_key_type=host_key.get_algorithm(),
        profile=profile,
        scenario=scenario,
        _acceptor=acceptor,
        _cleanup=cleanup,
    )
    log.info("demo server listening on %s port %d, serving %s", HOST, bound, root)
    return server
