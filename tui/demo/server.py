"""The embedded demo SFTP server: asyncssh on 127.0.0.1, confined to one folder.

``await start_demo_server()`` generates the demo reports (:mod:`tui.demo.data`) in a
temporary folder (or serves ``dir``), makes a host key and a user key (files 0600 in a 0700
folder: throwaway ones in a temporary folder, or kept in ``keys_dir`` and reused on the next
start, so the host key of a served folder stays the same), writes a known_hosts file that
trusts exactly that host key, and serves the folder over SFTP on 127.0.0.1. Only the user key
logs in, only as ``demo``, only to SFTP (no shell, no exec, no port forwarding).

Confinement (:class:`ConfinedSFTPServer`): every path is resolved inside the served folder
(``..`` cannot climb above its top), and the server never follows a symbolic link: a path
with a link anywhere in it is refused, links are never created (``symlink``), never moved or
removed, and hard links are never created (``link``, ``hardlink@openssh.com``). Since no client
can make or move a link, a check of a path stays true while it is used. Files with several
hard links are not opened (one of the names may lie outside). A server started with
``writable=False`` refuses every change (writes, uploads, renames, removals, new folders,
attribute changes).

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
import stat
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncssh
from asyncssh.constants import (
    ACE4_APPEND_DATA,
    ACE4_WRITE_ATTRIBUTES,
    ACE4_WRITE_DATA,
    FXF_ACCESS_DISPOSITION,
    FXF_APPEND_DATA,
    FXF_OPEN_EXISTING,
)

from tui.core import clock
from tui.core.config import Profile
from tui.demo import data as demo_data

log = logging.getLogger("report_keeper.demo.server")

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


class ConfinedSFTPServer(asyncssh.SFTPServer):
    """An SFTP server confined to ``root``: no path leaves it, no link is followed or made;
    read-only unless ``writable``."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path, writable: bool) -> None:
        super().__init__(chan, chroot=os.fsencode(root))
        self._root = os.fsencode(os.path.realpath(root))
        self._writable = writable

    # -- checks ---------------------------------------------------------------------------
    def _refuse(self, why: str) -> asyncssh.SFTPPermissionDenied:
        log.info("demo server: refused a request (%s)", why)
        return asyncssh.SFTPPermissionDenied(why)

    def _change(self) -> None:
        if not self._writable:
            raise self._refuse("the demo server is read-only (start it with --writable to allow changes)")

    def _confine(self, path: bytes, *, last_may_be_link: bool = False) -> bytes:
        """The local path of a client path: inside the served folder, no link on the way."""
        local = super().map_path(path)  # the chroot: normalised, ".." stops at the top
        local = local.rstrip(b"/")  # "/" maps to the root with a trailing slash
        root = self._root
        if local != root and not local.startswith(root + b"/"):
            raise self._refuse("outside the served folder")
        parts = [p for p in local[len(root):].split(b"/") if p]
        current = root
        for i, part in enumerate(parts):
            current += b"/" + part
            try:
                mode = os.lstat(current).st_mode
            except OSError:
                break  # the rest does not exist (yet): nothing to follow
            if stat.S_ISLNK(mode) and not (last_may_be_link and i == len(parts) - 1):
                raise self._refuse("symbolic links are not followed by the demo server")
        return local

    def map_path(self, path: bytes) -> bytes:
        return self._confine(path)

    def _single_link(self, local: bytes, *, opening: bool = False) -> None:
        try:
            info = os.lstat(local)
        except OSError:
            return
        if opening and not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            # a pipe or a device would block the server or read for ever
            raise self._refuse("only regular files are served")
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            raise self._refuse("a file with several hard links is not served (another of its "
                               "names may lie outside the served folder)")

    # -- reads ----------------------------------------------------------------------------
    def lstat(self, path: bytes):
        return os.lstat(self._confine(path, last_may_be_link=True))

    def readlink(self, path: bytes) -> bytes:
        raise self._refuse("symbolic links are not followed by the demo server")

    # -- opening --------------------------------------------------------------------------
    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs):
        writes = asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
        if pflags & writes:
            self._change()
        self._single_link(self.map_path(path), opening=True)
        return super().open(path, pflags, attrs)

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs):
        if (desired_access & (ACE4_WRITE_DATA | ACE4_APPEND_DATA | ACE4_WRITE_ATTRIBUTES)
                or flags & FXF_APPEND_DATA or flags & FXF_ACCESS_DISPOSITION != FXF_OPEN_EXISTING):
            self._change()
        self._single_link(self.map_path(path), opening=True)
        return super().open56(path, desired_access, flags, attrs)

    # -- changes --------------------------------------------------------------------------
    def _settable(self, path: bytes) -> None:
        self._change()
        local = self.map_path(path)
        if local == self._root:
            raise self._refuse("the served folder's own attributes cannot be changed")
        self._single_link(local)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs):
        self._settable(path)
        return super().setstat(path, attrs)

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs):
        self._settable(path)
        return super().lsetstat(path, attrs)

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs):
        self._change()
        return super().fsetstat(file_obj, attrs)

    def remove(self, path: bytes):
        self._change()
        return super().remove(path)

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs):
        self._change()
        return super().mkdir(path, attrs)

    def rmdir(self, path: bytes):
        self._change()
        if self.map_path(path) == self._root:
            raise self._refuse("the served folder itself cannot be removed")
        return super().rmdir(path)

    def rename(self, oldpath: bytes, newpath: bytes):
        self._change()
        if self.map_path(oldpath) == self._root:
            raise self._refuse("the served folder itself cannot be moved")
        return super().rename(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes):
        self._change()
        if self._root in (self.map_path(oldpath), self.map_path(newpath)):
            raise self._refuse("the served folder itself cannot be moved or replaced")
        return super().posix_rename(oldpath, newpath)

    def symlink(self, oldpath: bytes, newpath: bytes):
        raise self._refuse("the demo server does not create links")

    def link(self, oldpath: bytes, newpath: bytes):
        raise self._refuse("the demo server does not create links")


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
    writable: bool
    scenario: demo_data.DemoScenario | None  # None when an existing folder was served
    _acceptor: asyncssh.SSHAcceptor | None = field(repr=False, default=None)
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
            except (TimeoutError, OSError):
                pass
            self._acceptor = None
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)
        self._cleanup = []
        log.info("demo server on port %d stopped", self.port)

    async def __aenter__(self) -> DemoServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _q(value: object) -> str:
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
        f"remote_dir = {_q(profile.remote_dir)}"
        if not profile.remote_dirs else
        "remote_dirs = [" + ", ".join(_q(f) for f in profile.remote_dirs) + "]",
        f"local_dir = {_q(profile.local_dir)}",
        f"timezone = {_q(profile.timezone.key if isinstance(profile.timezone, ZoneInfo) else 'UTC')}",
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


def _check_history_fits(now: datetime | None) -> None:
    """The generated reports reach ``HISTORY_DAYS`` back; their file times cannot precede 1970
    (SFTP times count from then)."""
    span = timedelta(days=demo_data.HISTORY_DAYS + 2)
    if (now or clock.now()) - span < clock.EARLIEST:
        first = (clock.EARLIEST + span).date().isoformat()
        raise OSError(errno.EINVAL, f"the demo's reports reach back {demo_data.HISTORY_DAYS} days, "
                      f"before 1970 (where file times start): pin REPORT_KEEPER_NOW to {first} or later")


def _needs_data(directory: Path) -> bool:
    return not directory.is_dir() or not any(directory.iterdir())


async def start_demo_server(
    dir: str | Path | None = None,  # the name of the --dir option
    port: int = 0,
    *,
    local_dir: str | Path | None = None,
    ledger: str | Path | None = None,
    keys_dir: str | Path | None = None,
    now: datetime | None = None,
    writable: bool = False,
) -> DemoServer:
    """Generate (if needed) and serve the demo folder on 127.0.0.1.

    ``dir``: the folder to serve (generated into when its report folder is missing or
    empty; a temporary folder removed on close when None). A folder generated earlier keeps
    its own holiday as the profile's closed day (``demo_data.generated_closed_day``). ``port=0``: an ephemeral
    port. ``local_dir``/``ledger``: where the profile downloads to and keeps its ledger
    (inside the keys folder when None). ``keys_dir``: where the keys go: a temporary 0700
    folder removed on close when None; a given folder keeps them, and the keys found there
    are used again (the same host key on every start). ``writable``: whether SFTP clients
    may change the served folder (the connection test uploads and deletes a probe).
    """
    cleanup: list[Path] = []
    try:
        return await _start(dir, port, local_dir, ledger, keys_dir, now, writable, cleanup)
    except BaseException:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise


def _key_pair(keys: Path, name: str, comment: str | None = None) -> asyncssh.SSHKey:
    """The key ``keys/name``: read when it is there (kept from an earlier start), else made."""
    path = keys / name
    if path.exists():
        try:
            return asyncssh.read_private_key(str(path))
        except (OSError, asyncssh.KeyImportError) as exc:
            raise OSError(errno.EINVAL, f"the demo key {path} cannot be read ({exc}); remove the "
                          f"folder {keys} to start with new keys") from None
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    _write_secret(path, key.export_private_key("openssh"))
    return key


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


async def _start(served: str | Path | None, port: int, local_dir: str | Path | None,
                 ledger: str | Path | None, keys_dir: str | Path | None, now: datetime | None,
                 writable: bool, cleanup: list[Path]) -> DemoServer:
    if served is None:
        root = _private_dir("report-keeper-demo-")
        cleanup.append(root)
    else:
        root = Path(served).expanduser().resolve()
        if root == Path(root.anchor):
            raise OSError(errno.EINVAL, f"{root} is the whole file system; serve a folder of reports")
        root.mkdir(parents=True, exist_ok=True)
    scenario = None
    if _needs_data(root / demo_data.DEMO_REMOTE_DIR):
        _check_history_fits(now)
        scenario = await asyncio.to_thread(demo_data.generate, root, now)
    if keys_dir is None:
        keys = _private_dir("report-keeper-demo-keys-")
        cleanup.append(keys)
    else:
        keys = Path(keys_dir).expanduser()
        if _inside(keys, root):
            raise OSError(errno.EINVAL, f"the keys folder {keys} lies inside the served folder "
                          f"{root}; SFTP clients could read the keys")
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys.chmod(0o700)

    host_key = _key_pair(keys, "demo_host_ed25519")
    user_key = _key_pair(keys, "demo_user_ed25519", comment="report-keeper demo user")
    client_key_path = keys / "demo_user_ed25519"
    _write_secret(keys / "demo_user_ed25519.pub", user_key.export_public_key("openssh"))
    ssh_config_path = keys / "ssh_config"
    _write_secret(ssh_config_path, b"# empty: the demo ignores ~/.ssh/config\n")

    def sftp_factory(chan):
        return ConfinedSFTPServer(chan, root, writable)

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
        closed_day=scenario.closed_day if scenario else demo_data.generated_closed_day(root),
        now=now,
    )
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
        writable=writable,
        scenario=scenario,
        _acceptor=acceptor,
        _cleanup=cleanup,
    )
    log.info("demo server listening on %s port %d, serving %s (%s)", HOST, bound, root,
             "writable" if writable else "read-only")
    return server
