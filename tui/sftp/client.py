"""The SFTP client: connecting with verified host keys, listing, small file helpers.

Public API::

    opts = ConnectOptions.from_profile(profile)          # or ConnectOptions(host=..., ...)
    conn = await connect(opts, host_key_policy=policy, passphrase_cb=None)
    listing = await conn.listdir(profile.remote_dir)     # Listing(files, refused, others)
    await conn.download_bytes(path) / upload_bytes(path, data) / remove(path) / stat(path)
    await conn.close()                                   # also: async with conn: ...

``host_key_policy`` decides about a host key that is not in known_hosts. It is either
one of the strings ``"reject"`` (headless default: raise :class:`HostKeyUnknown`),
``"remember"`` (headless ``--accept-new-host-key``: append it to known_hosts) and
``"once"`` (accept for this connection only), or an async callable
``async (HostKeyInfo) -> "once" | "remember" | "reject"`` (the TUI shows a modal).
A key that differs from the one recorded for the host is always refused with
:class:`HostKeyChanged`; no policy can override that.

Authentication: the profile's key file when set (its passphrase is asked from
``passphrase_cb(path)``, an async callable returning it or None; three tries), plus the
keys of ssh-agent; without a key file, ssh-agent and the ``IdentityFile`` entries of
``~/.ssh/config`` (else the default ``~/.ssh/id_*``). ``Host`` aliases of ``~/.ssh/config``
(or ``ConnectOptions.ssh_config``) resolve host, port and user. Authentication failures
are :class:`AuthFailed` and never retried. Ciphers prefer AES-GCM (fast with AES-NI).
Timeouts: ``connect_timeout`` bounds the whole connection set-up (TCP, SSH greeting, key
exchange, login) -> :class:`ConnectTimeout`, whose message says which step did not finish
and the configured number of seconds; ``login_timeout`` is asyncssh's own limit for the login
and never shorter than ``connect_timeout``. Keepalives every ``keepalive_interval`` s, the
connection is dropped after ``keepalive_count_max`` unanswered ones. Keepalives are answered
by the SSH server, not by its SFTP process: a stuck SFTP process (opening a named pipe, on a
hung disk) would keep every request waiting for ever. So a connection whose requests get no
answer at all for ``request_timeout`` s (``SftpConnection.answer``; any answer on the
connection counts, so a slow link that delivers is never cut) is closed with
:class:`ServerStalled` (a :class:`ConnectionLost`).

A server that offers only host key types known_hosts holds no key of for it fails the key
exchange; a second handshake that accepts any type (and never logs in) learns what it offers,
and :class:`HostKeyMismatch` (a :class:`HostKeyChanged`) names both sides. Never retried.

Remote names are untrusted bytes: the listing asks for them as bytes, refuses every name
that is not valid UTF-8 (kept only as a readable ``\\xNN`` escape, never as a file name) or
for which :func:`tui.core.names.refusal_reason` gives a reason, and sets the connection
test's own probe files aside (``Listing.probes``): they are never reports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat as statmod
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal, NoReturn, TypeVar, cast

import asyncssh
from asyncssh.public_key import get_default_certificate_algs, get_default_public_key_algs

from tui.core import clock
from tui.core.config import Profile
from tui.core.model import RemoteFile
from tui.core.names import decode_server_name, escape_name, is_probe_name
from tui.sftp.errors import (
    AuthFailed,
    ConnectFailed,
    ConnectTimeout,
    FolderNotFound,
    HostKeyChanged,
    HostKeyMismatch,
    HostKeyUnknown,
    ServerStalled,
    SftpError,
    given_up_todo,
    translate,
)
from tui.sftp.transport import MAX_PKTSIZE, WINDOW, cipher_list

log = logging.getLogger("report_keeper.sftp.client")

T = TypeVar("T")

Decision = Literal["once", "remember", "reject"]
HostKeyPolicy = str | Callable[["HostKeyInfo"], Awaitable[str]]
PassphraseCallback = Callable[[Path], Awaitable["str | None"]]


@dataclass(frozen=True)
class HostKeyInfo:
    """A server host key shown to the user for a decision."""

    host: str
    port: int
    key_type: str  # e.g. "ssh-ed25519"
    fingerprint: str  # "SHA256:..."
    known_hosts: Path | None
    key: asyncssh.SSHKey | None = field(repr=False, compare=False, default=None)


@dataclass(frozen=True)
class ConnectOptions:
    """Everything needed to open one SFTP connection."""

    host: str
    port: int | None = None  # None: from ~/.ssh/config, else 22
    username: str | None = None  # None: from ~/.ssh/config, else the local user
    key: Path | None = None
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    connect_timeout: float = 15.0  # the whole set-up: TCP, greeting, key exchange, login
    login_timeout: float = 30.0  # asyncssh's login limit (raised to connect_timeout if lower)
    keepalive_interval: float = 30.0
    keepalive_count_max: int = 3
    # Seconds the connection may answer nothing while requests wait (SftpConnection.answer).
    request_timeout: float = 120.0
    ssh_config: Path | None = None  # None: ~/.ssh/config when it exists
    use_agent: bool = True
    # SFTP read size: OpenSSH's maximum. Reads are pipelined, so larger blocks gain little,
    # and a broken connection loses at most the blocks in flight beyond the written prefix.
    block_size: int = 261120

    @classmethod
    def from_profile(cls, profile: Profile) -> ConnectOptions:
        """Options from a :class:`tui.core.config.Profile`."""
        timeout = profile.connect_timeout
        return cls(
            host=profile.host,
            port=profile.port,
            username=profile.username,
            key=Path(profile.key).expanduser() if profile.key else None,
            known_hosts=Path(profile.known_hosts).expanduser() if profile.known_hosts else None,
            connect_timeout=timeout,
            login_timeout=timeout,
            request_timeout=profile.request_timeout,
            ssh_config=Path(profile.ssh_config).expanduser() if profile.ssh_config else None,
        )

    @property
    def known_hosts_path(self) -> Path:
        return (self.known_hosts or Path("~/.ssh/known_hosts")).expanduser()

    @property
    def display_port(self) -> int:
        return self.port or 22


@dataclass(frozen=True)
class Listing:
    """One listing of a remote folder."""

    remote_dir: str
    files: list[RemoteFile]  # regular files with safe names, sorted by name
    refused: list[tuple[str, str]]  # (untrusted name, reason): never written locally
    others: list[tuple[str, str]] = field(default_factory=list)  # (name, kind): folders, links...
    probes: list[RemoteFile] = field(default_factory=list)  # the connection test's own files


class _KeyCatcher(asyncssh.SSHClient):
    """Records the host key the server presented; trusts only keys approved this session.
    Also keeps the connection object, so a timeout can tell how far the set-up got."""

    def __init__(self, approved: list[asyncssh.SSHKey]) -> None:
        self.approved = approved
        self.seen: tuple[str, str, int, asyncssh.SSHKey] | None = None
        self.conn: asyncssh.SSHClientConnection | None = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn

    def stage(self) -> str:
        """How far the set-up got: "tcp" (no connection), "greeting" (connected, the server
        never spoke SSH), "kex" (no verified host key yet) or "login"."""
        if self.conn is None:
            return "tcp"
        try:
            if self.conn.get_extra_info("server_version") is None:
                return "greeting"
            return "login" if self.conn.get_server_host_key() is not None else "kex"
        except Exception:  # noqa: BLE001 - a half-built connection object
            return "greeting"

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.seen = (host, addr, port, key)
        return any(key == k for k in self.approved)


def _key_info(host: str, port: int, key: asyncssh.SSHKey, known_hosts: Path | None) -> HostKeyInfo:
    return HostKeyInfo(
        host=host,
        port=port,
        key_type=key.get_algorithm(),
        fingerprint=key.get_fingerprint("sha256"),
        known_hosts=known_hosts,
        key=key,
    )


def _known_keys_for(path: Path, host: str, addr: str | None, port: int) -> list[asyncssh.SSHKey]:
    """Host keys recorded for this host in known_hosts (any key type)."""
    if not path.is_file():
        return []
    try:
        known = asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError) as exc:
        log.warning("cannot read known_hosts %s: %s", path, exc)
        return []
    trusted = known.match(host, addr or "", port if port != 22 else None)[0]
    unique: list[asyncssh.SSHKey] = []
    for key in trusted:  # a key can match by name and by address
        if not any(key == k for k in unique):
            unique.append(key)
    return unique


def remember_host_key(path: Path, host: str, port: int, key: asyncssh.SSHKey) -> None:
    """Append a host key to known_hosts (created 0600 in a 0700 folder when missing)."""
    path = path.expanduser()
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    pattern = host if port == 22 else f"[{host}]:{port}"
    line = pattern.encode() + b" " + key.export_public_key("openssh").split(b" ")[0] + b" "
    line += key.export_public_key("openssh").split(b" ")[1].strip() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        with open(path, "rb") as existing:
            data = existing.read()
        if data and not data.endswith(b"\n"):
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("recorded host key of %s port %d (%s) in %s", host, port,
             key.get_fingerprint("sha256"), path)


def needs_passphrase(exc: BaseException) -> bool:
    """Whether reading a private key file without a passphrase failed because the file is
    encrypted. asyncssh has no exception type of its own for that: an encrypted key (OpenSSH,
    PKCS#8 or legacy PEM) read without one raises ``KeyImportError`` saying a passphrase must
    be specified, the same type as a file that is no key at all; ``KeyEncryptionError`` is
    about the encryption of a key that is encrypted (an unknown cipher or kdf)."""
    if isinstance(exc, asyncssh.KeyEncryptionError):
        return True
    return isinstance(exc, asyncssh.KeyImportError) and "passphrase" in str(exc).lower()


async def _load_key(opts: ConnectOptions, passphrase_cb: PassphraseCallback | None) -> list[asyncssh.SSHKey] | None:
    """The profile's key file, decrypted via the passphrase callback when needed."""
    if opts.key is None:
        return None
    path = opts.key.expanduser()
    if not path.is_file():
        raise AuthFailed(f"The key file '{path}' does not exist.",
                         "Fix the 'key' setting of the profile or remove it to use ssh-agent.")
    try:
        return [asyncssh.read_private_key(str(path))]
    except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError, OSError) as exc:
        if not needs_passphrase(exc):
            raise AuthFailed(f"The key file '{path}' could not be read ({exc}).",
                             "Check that it is an OpenSSH private key readable by you.") from None
    if passphrase_cb is None:
        raise AuthFailed(f"The key file '{path}' is protected by a passphrase and none can be asked here.",
                         "Load the key into ssh-agent (ssh-add) or run the app interactively.")
    for _attempt in range(3):
        passphrase = await passphrase_cb(path)
        if passphrase is None:
            raise AuthFailed(f"No passphrase was given for '{path}'.", "Connect again and enter it.")
        try:
            return [asyncssh.read_private_key(str(path), passphrase)]
        except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError) as exc:
            if "bcrypt" in str(exc):  # the passphrase was never tried: not a wrong one
                raise AuthFailed(f"The key file '{path}' is protected in OpenSSH's own format, which "
                                 "needs the Python package bcrypt to open, and it is not installed.",
                                 "Reinstall report-keeper (it depends on bcrypt), or load the key "
                                 "into ssh-agent (ssh-add).") from None
            log.info("wrong passphrase for %s (%s)", path, exc)
    raise AuthFailed(f"The passphrase for '{path}' was wrong three times.", "Connect again and retype it.")


def _retrieved(fut: asyncio.Future[T]) -> None:
    if not fut.cancelled():
        fut.exception()


class _Waiter:
    """A task waiting in :meth:`SftpConnection.answer`: since when, and whether the stall
    watch has cancelled it (its cancellation is then turned into :class:`ServerStalled`)."""

    __slots__ = ("began", "stalled", "task")

    def __init__(self, task: asyncio.Task[object], began: float) -> None:
        self.task = task
        self.began = began
        self.stalled = False


class SftpConnection:
    """One SSH connection with one SFTP session; safe for many concurrent requests."""

    def __init__(self, conn: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient,
                 opts: ConnectOptions, host_key: HostKeyInfo | None) -> None:
        self.ssh = conn
        self.sftp = sftp
        self.opts = opts
        self.host_key = host_key
        self._closed = False
        self._answered = time.monotonic()  # when a request last got its answer
        # The requests waited for, oldest first, and the one timer that watches them all
        # (_watch_stall): a timer and a wait set up per request cost more than the request.
        self._waiting: dict[_Waiter, None] = {}
        self._watch: asyncio.TimerHandle | None = None

    async def answer(self, request: Awaitable[T], what: str, path: str | None = None, *,
                     detached: bool = False) -> T:
        """The result of one SFTP request, or :class:`ServerStalled` (the connection then
        closed) once the connection has answered nothing, to any request, for
        ``opts.request_timeout`` seconds since this wait began. Cancelled, the request is
        cancelled too.

        The request is awaited in the caller's task; the connection's one stall watch
        (:meth:`_watch_stall`) cancels a wait that has outlived the limit, and that
        cancellation, only that one, is raised here as :class:`ServerStalled`. A request
        whose cancellation itself waits for the server (a listing closes its folder) is
        ``detached``: it runs in a task of its own, left to end when the connection does."""
        if isinstance(request, asyncio.Future) and request.done():
            # answered already (a request sent right behind another, a stat behind the last
            # read): nothing to watch
            self._answered = time.monotonic()
            return cast("T", request.result())
        task = asyncio.current_task()
        assert task is not None
        fut: asyncio.Future[T] | None = None
        if detached:
            fut = asyncio.ensure_future(request)
            request = asyncio.shield(fut)
        elif isinstance(request, asyncio.Future):
            fut = request
        waiter = _Waiter(task, time.monotonic())
        self._waiting[waiter] = None
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(
                self.opts.request_timeout, self._watch_stall)
        try:
            result = await request
        except BaseException as exc:
            if fut is not None:
                # Given up on (stalled, or the wait cancelled), a request of its own task
                # may still end in an error (its connection closed under it): taken then,
                # never "exception was never retrieved".
                fut.cancel()
                if fut.done():
                    _retrieved(fut)
                else:
                    fut.add_done_callback(_retrieved)
            if not waiter.stalled:
                raise
            if task.uncancel() > 0:  # cancelled from outside as well: that it stays
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise asyncio.CancelledError from exc
            await self._stalled(what, path)
        finally:
            self._waiting.pop(waiter, None)
        self._answered = time.monotonic()
        return result

    def _watch_stall(self) -> None:
        """The connection's stall watch (a timer, re-armed only when it fires): every wait
        that has seen no answer on the connection for ``request_timeout`` seconds since it
        began is cancelled, marked stalled (:meth:`answer` raises :class:`ServerStalled`)."""
        self._watch = None
        limit = self.opts.request_timeout
        now = time.monotonic()
        while self._waiting:
            waiter = next(iter(self._waiting))  # the oldest: the first to outlive the limit
            due = max(waiter.began, self._answered) + limit
            if due > now:
                self._watch = asyncio.get_running_loop().call_later(due - now, self._watch_stall)
                return
            del self._waiting[waiter]
            if not waiter.task.done():
                waiter.stalled = True
                waiter.task.cancel()
                # Closing now, not once the waiter runs: a request that still waits for the
                # server as it is cancelled then fails instead of waiting on.
                self._shut()

    async def _stalled(self, what: str, path: str | None) -> NoReturn:
        seconds = f"{self.opts.request_timeout:g}"
        log.warning("the server answered nothing for %s s while %s %s; closing the connection",
                    seconds, what, escape_name(path or ""))
        await self._wait_closed()
        stalled = ServerStalled(
            f"The server {self.opts.host} port {self.opts.display_port} answered nothing for "
            f"{seconds} s while {what}" + (f" '{escape_name(path)}'" if path else "")
            + "; the connection was closed.",
            "It is tried again on a new connection. If it keeps happening, the server's "
            "SFTP process may be stuck (on that file, or its disk): tell its administrator.",
        )
        stalled.todo_given_up = given_up_todo(
            ". The server's SFTP process may be stuck (on that file, or its disk): tell its "
            "administrator; the next sync tries again.")
        raise stalled from None

    @property
    def host(self) -> str:
        return self.opts.host

    @property
    def port(self) -> int:
        return self.opts.display_port

    @property
    def closed(self) -> bool:
        return self._closed or self.ssh.is_closed()

    def _err(self, exc: BaseException, path: str | None = None) -> SftpError:
        return translate(exc, host=self.opts.host, port=self.opts.display_port, path=path)

    @staticmethod
    def join(remote_dir: str, name: str) -> str:
        if remote_dir in ("", "."):
            return name
        return remote_dir.rstrip("/") + "/" + name if remote_dir != "/" else "/" + name

    async def listdir(self, remote_dir: str) -> Listing:
        """Regular files of ``remote_dir`` with size and aware mtime; unsafe names refused.

        A folder that does not exist (or cannot be read) is a :class:`ConnectFailed` that
        names it: it is the profile's ``remote_dir`` that is wrong, not the files in it.
        """
        path = (remote_dir or ".").encode("utf-8", "surrogateescape")
        try:
            # A bytes path makes the server's names arrive as the bytes they are.
            entries = await self.answer(self._scan(path), "listing", remote_dir or ".", detached=True)
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath, asyncssh.SFTPNotADirectory,
                asyncssh.SFTPPermissionDenied) as exc:
            denied = isinstance(exc, asyncssh.SFTPPermissionDenied)
            err = FolderNotFound(
                f"The folder '{escape_name(remote_dir or '.')}' does not exist on the server "
                f"{self.opts.host} port {self.opts.display_port} (or is not readable"
                + (": permission denied" if denied else "") + ").",
                "Check remote_dir in the profile (a path relative to the login folder unless it "
                "starts with '/'); no file was marked as gone.",
            )
            err.transient = False
            raise err from None
        except (asyncssh.Error, OSError) as exc:
            raise self._err(exc, path=remote_dir) from None
        files: list[RemoteFile] = []
        refused: list[tuple[str, str]] = []
        others: list[tuple[str, str]] = []
        probes: list[RemoteFile] = []
        for entry in entries:
            raw = entry.filename
            if isinstance(raw, str):  # a server library that decoded it already
                raw = raw.encode("utf-8", "surrogateescape")
            if raw in (b".", b".."):
                continue  # every server lists these; they are not deliveries
            name, reason = decode_server_name(raw)
            attrs = entry.attrs
            kind = _kind(attrs)
            if reason is not None and kind == "file" and is_probe_name(name):
                probes.append(RemoteFile(name=name, size=int(attrs.size or 0), mtime=_mtime(attrs),
                                         mtime_known=attrs.mtime is not None))
                continue
            if reason is not None:
                refused.append((name, reason))
                continue
            if kind != "file":
                others.append((name, kind))
                continue
            files.append(RemoteFile(name=name, size=int(attrs.size or 0), mtime=_mtime(attrs),
                                    mtime_known=attrs.mtime is not None))
        files.sort(key=lambda f: f.name)
        log.info("listed %s: %d files, %d refused names, %d other entries, %d probes",
                 escape_name(remote_dir), len(files), len(refused), len(others), len(probes))
        return Listing(remote_dir=remote_dir, files=files, refused=refused, others=others,
                       probes=probes)

    async def _scan(self, path: bytes) -> list[asyncssh.SFTPName]:
        """Every entry of a folder; each batch the server sends counts as an answer, so a
        long listing that keeps coming is never taken for a stall."""
        entries: list[asyncssh.SFTPName] = []
        async for entry in self.sftp.scandir(path):
            entries.append(entry)
            self._answered = time.monotonic()
        return entries

    async def stat(self, path: str) -> asyncssh.SFTPAttrs:
        try:
            return await self.answer(self.sftp.stat(path), "asking about", path)
        except (asyncssh.Error, OSError) as exc:
            raise self._err(exc, path=path) from None

    async def kind(self, path: str) -> str:
        """What ``path`` is now, following links: "file", "folder" or "special" (a named
        pipe, a device, a socket). Asking never opens it."""
        return _kind(await self.stat(path))

    async def upload_bytes(self, path: str, data: bytes) -> None:
        """Write a small file on the server (the connection test's probe)."""
        try:
            async with self.sftp.open(path, "wb") as f:
                await f.write(data)
        except (asyncssh.Error, OSError) as exc:
            raise self._err(exc, path=path) from None

    async def download_bytes(self, path: str, limit: int = 16 * 1024 * 1024) -> bytes:
        """Read a small remote file into memory (at most ``limit`` bytes)."""
        try:
            async with self.sftp.open(path, "rb") as f:
                return await f.read(limit, 0)
        except (asyncssh.Error, OSError) as exc:
            raise self._err(exc, path=path) from None

    async def remove(self, path: str) -> None:
        try:
            await self.sftp.remove(path)
        except (asyncssh.Error, OSError) as exc:
            raise self._err(exc, path=path) from None

    def _shut(self) -> bool:
        """Start closing (False: closed already)."""
        if self._closed:
            return False
        self._closed = True
        if self._watch is not None and not self._waiting:
            self._watch.cancel()
            self._watch = None
        try:
            self.sftp.exit()
        except Exception:  # noqa: BLE001 - closing a broken session must not raise
            pass
        self.ssh.close()
        return True

    async def _wait_closed(self) -> None:
        try:
            await asyncio.wait_for(self.ssh.wait_closed(), 5)
        except (TimeoutError, OSError, asyncssh.Error):
            pass

    async def close(self) -> None:
        if self._shut():
            await self._wait_closed()

    async def __aenter__(self) -> SftpConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _mtime(attrs: asyncssh.SFTPAttrs) -> datetime:
    """The entry's modification time; the listing's time when the server sent none (the
    sync keeps the time recorded for a copy it knows: ``RemoteFile.mtime_known``)."""
    if attrs.mtime is not None:
        return clock.file_time(attrs.mtime)
    return clock.now()


def _kind(attrs: asyncssh.SFTPAttrs) -> str:
    if attrs.type == asyncssh.FILEXFER_TYPE_REGULAR:
        return "file"
    if attrs.permissions is not None and attrs.type in (None, asyncssh.FILEXFER_TYPE_UNKNOWN):
        if statmod.S_ISREG(attrs.permissions):
            return "file"
    return {
        asyncssh.FILEXFER_TYPE_DIRECTORY: "folder",
        asyncssh.FILEXFER_TYPE_SYMLINK: "link",
    }.get(attrs.type, "special")


async def _decide(policy: HostKeyPolicy, info: HostKeyInfo) -> str:
    decision = policy if isinstance(policy, str) else await policy(info)
    if decision not in ("once", "remember", "reject"):
        raise ValueError(f"host key policy returned {decision!r}")
    return decision


async def _open(opts: ConnectOptions, catcher: _KeyCatcher, client_keys: list[asyncssh.SSHKey] | None,
                *, host_key_algs: list[str] | None = None) -> asyncssh.SSHClientConnection:
    known = opts.known_hosts_path
    kwargs: dict[str, object] = dict(
        port=opts.port if opts.port is not None else (),
        # An empty trust list (not None) keeps verification on when known_hosts is missing.
        known_hosts=str(known) if known.is_file() else ([], [], []),
        client_factory=lambda: catcher,
        connect_timeout=opts.connect_timeout,
        # Never below connect_timeout: the set-up's one limit is connect_timeout, whose
        # expiry says which step did not finish.
        login_timeout=max(opts.login_timeout, opts.connect_timeout),
        keepalive_interval=opts.keepalive_interval,
        keepalive_count_max=opts.keepalive_count_max,
        encryption_algs=cipher_list(),
        window=WINDOW,
        max_pktsize=MAX_PKTSIZE,
    )
    if opts.username:
        kwargs["username"] = opts.username
    if opts.ssh_config is not None:
        kwargs["config"] = [str(opts.ssh_config)]
    if client_keys is not None:
        kwargs["client_keys"] = client_keys
    if not opts.use_agent:
        kwargs["agent_path"] = None
    if host_key_algs is not None:
        kwargs["server_host_key_algs"] = host_key_algs
    return await asyncssh.connect(opts.host, **kwargs)


def _timeout_error(opts: ConnectOptions, stage: str) -> ConnectTimeout:
    where = f"{opts.host} port {opts.display_port}"
    seconds = f"{opts.connect_timeout:g} s"
    what = {
        "tcp": f"{where} did not accept a connection within {seconds} (no answer: the host may be "
               "down, or a firewall drops the traffic).",
        "greeting": f"{where} accepted the connection but its SSH server did not answer within "
                    f"{seconds}.",
        "kex": f"{where} did not complete the login within {seconds}.",
        "login": f"{where} did not complete the login within {seconds}.",
    }[stage]
    return ConnectTimeout(what, "Check the host name, the port and the network (VPN?); the wait "
                          "can be raised with connect_timeout in the profile.")


async def _host_key_mismatch(opts: ConnectOptions) -> HostKeyMismatch | None:
    """After a failed key exchange: the server's host key, if it is of a type known_hosts
    holds no key of for this host (a second handshake offering every type; it stops at the
    host key check, so nothing is ever sent to an unverified server)."""
    # Every type, those known_hosts holds for the host first (as OpenSSH orders them): a server
    # that still has a recorded type presents it, so a key exchange that broke for another
    # reason is not mistaken for a new key.
    known = _known_keys_for(opts.known_hosts_path, opts.host, "", opts.display_port)
    algs: list[str] = []
    for alg in [a for k in known for a in k.sig_algorithms] + list(get_default_certificate_algs()) \
            + list(get_default_public_key_algs()):
        name = alg.decode("ascii")
        if name not in algs:
            algs.append(name)
    catcher = _KeyCatcher([])
    try:  # no keys, no agent: even a server that turns out trusted gets no login from this
        conn = await _open(replace(opts, use_agent=False), catcher, [], host_key_algs=algs)
    except asyncssh.HostKeyNotVerifiable:
        pass
    except (asyncssh.Error, OSError, ValueError, TimeoutError):
        return None
    else:  # known_hosts trusts what it offered after all: not a host key problem
        conn.close()
        return None
    if catcher.seen is None:
        return None
    host, addr, port, key = catcher.seen
    recorded = _known_keys_for(opts.known_hosts_path, host, addr, port)
    if not recorded or any(key == k for k in recorded):
        return None
    log.warning("host key of %s port %d: only %s offered, known_hosts holds %s", host, port,
                key.get_algorithm(), ", ".join(k.get_algorithm() for k in recorded))
    return HostKeyMismatch(
        host, port, key.get_algorithm(), key.get_fingerprint("sha256"), str(opts.known_hosts_path),
        tuple((k.get_algorithm(), k.get_fingerprint("sha256")) for k in recorded),
    )


async def connect(opts: ConnectOptions, *, host_key_policy: HostKeyPolicy = "reject",
                  passphrase_cb: PassphraseCallback | None = None) -> SftpConnection:
    """Open an SSH connection and an SFTP session, verifying the host key.

    Raises :class:`HostKeyUnknown`, :class:`HostKeyChanged`, :class:`AuthFailed`,
    :class:`ConnectTimeout` or :class:`ConnectFailed` (all :class:`SftpError`).
    """
    if opts.ssh_config is not None and not opts.ssh_config.expanduser().is_file():
        err = ConnectFailed(f"The ssh config file '{opts.ssh_config}' does not exist.",
                            "Fix or remove the ssh_config setting of the profile.")
        err.transient = False
        raise err
    client_keys = await _load_key(opts, passphrase_cb)
    approved: list[asyncssh.SSHKey] = []
    decided: HostKeyInfo | None = None
    for _round in range(2):
        catcher = _KeyCatcher(approved)
        try:
            conn = await _open(opts, catcher, client_keys)
        except asyncssh.HostKeyNotVerifiable:
            if catcher.seen is None or decided is not None:
                raise ConnectFailed(
                    f"The host key of {opts.host} port {opts.display_port} could not be verified"
                    + (" (the server presented another key after it was confirmed)." if decided else "."),
                    "Connect again; if it repeats, ask the server's administrator.",
                ) from None
            host, addr, port, key = catcher.seen
            info = _key_info(host, port, key, opts.known_hosts_path)
            recorded = _known_keys_for(opts.known_hosts_path, host, addr, port)
            if recorded:
                log.warning("host key of %s port %d changed: now %s", host, port, info.fingerprint)
                raise HostKeyChanged(host, port, info.key_type, info.fingerprint,
                                     str(opts.known_hosts_path),
                                     tuple(k.get_fingerprint("sha256") for k in recorded)) from None
            decision = await _decide(host_key_policy, info)
            log.info("unknown host key of %s port %d (%s): %s", host, port, info.fingerprint, decision)
            if decision == "reject":
                raise HostKeyUnknown(host, port, info.key_type, info.fingerprint,
                                     str(opts.known_hosts_path)) from None
            if decision == "remember":
                try:
                    remember_host_key(opts.known_hosts_path, host, port, key)
                except OSError as exc:
                    raise ConnectFailed(
                        f"Could not record the host key in {opts.known_hosts_path}: {exc.strerror or exc}.",
                        "Check that the file is writable, or accept the key for this session only.",
                    ) from None
            approved.append(key)
            decided = info
            continue
        except TimeoutError:
            raise _timeout_error(opts, catcher.stage()) from None
        except (asyncssh.KeyExchangeFailed, asyncssh.ConnectionLost, ConnectionError) as exc:
            # The key exchange failed, or the server hung up during it (OpenSSH does when no
            # host key type matches): is it a host key of a type known_hosts lacks?
            if catcher.stage() == "kex":
                mismatch = await _host_key_mismatch(opts)
                if mismatch is not None:
                    raise mismatch from None
            raise translate(exc, host=opts.host, port=opts.display_port) from None
        except (asyncssh.Error, OSError, ValueError) as exc:
            raise translate(exc, host=opts.host, port=opts.display_port) from None
        try:
            sftp = await conn.start_sftp_client(path_errors="surrogateescape")
        except (asyncssh.Error, OSError) as exc:
            conn.close()
            raise ConnectFailed(
                f"{opts.host} accepted the login but refused the SFTP service ({exc}).",
                "Ask the server's administrator whether this account may use SFTP.",
            ) from None
        host_key = decided
        if host_key is None:
            server_key = conn.get_server_host_key()
            if server_key is not None:
                host_key = _key_info(opts.host, opts.display_port, server_key, opts.known_hosts_path)
        log.info("connected to %s port %d", opts.host, opts.display_port)
        return SftpConnection(conn, sftp, opts, host_key)
    raise ConnectFailed(f"Could not connect to {opts.host}.", "Connect again.")  # not reached
