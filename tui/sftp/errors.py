"""Errors of the SFTP side, each with a message a person can act on.

Every class carries ``what`` (what happened) and ``todo`` (what to do about it);
``str(err)`` joins both. ``transient`` says whether retrying later can help: a lost
connection or a timeout is transient, a refused login or a host key is not (retrying an
authentication failure can lock the account, and a host key needs a person's decision).

Messages name hosts, ports and file names (shown escaped by the UI) but never file
contents. :func:`translate` turns asyncssh and OS exceptions into these classes.
"""

from __future__ import annotations

import errno
import logging
from typing import TypeVar

import asyncssh

from tui.core.names import escape_name

log = logging.getLogger("report_keeper.sftp.errors")

E = TypeVar("E", bound="SftpError")


class SftpError(Exception):
    """Base of every error of the SFTP side."""

    transient: bool = False
    kind: str = "sftp"
    #: Bytes of the file received before the error (a download sets it; the queue counts them).
    received: int = 0
    #: What to do once no attempt is left, for a transient error whose ``todo`` says it is
    #: tried again (``{attempts}``: how many were made); empty: ``todo`` stays true then.
    todo_given_up: str = ""

    def __init__(self, what: str, todo: str = "") -> None:
        self.what = what
        self.todo = todo
        super().__init__(what)

    def given_up(self, attempts: int) -> None:
        """No attempt is left: ``todo`` says what is true now, and what to do."""
        if self.todo_given_up:
            self.todo = self.todo_given_up.format(attempts=attempts)

    def __str__(self) -> str:
        return f"{self.what} {self.todo}".strip()


def given_up_todo(after: str, *, it: str = "the file") -> str:
    """A ``todo_given_up`` (its ``{attempts}`` filled in by :meth:`SftpError.given_up`): no
    attempt is left, so ``it`` was not downloaded, then ``after`` from its own separator on
    (``"; the next sync ..."``, ``". The next sync ..."``)."""
    return ("No attempt is left ({attempts} made), so " + _literal(it) + " was not downloaded"
            + _literal(after))


def given_up_next_sync(who: str, *, it: str = "the file", why: str = "") -> str:
    """:func:`given_up_todo` saying the next sync tries again and, if it fails the same way,
    what to do (``who``: "check the server", ...); ``why`` (from its separator on) comes first."""
    return given_up_todo(f"{why}. The next sync tries again; if it fails the same way, {who}.", it=it)


def _literal(text: str) -> str:
    """``text`` as it reads once ``str.format`` has filled in the attempts."""
    return text.replace("{", "{{").replace("}", "}}")


def _given_up(err: E, todo: str) -> E:
    """``err`` with ``todo_given_up`` set: its ``todo`` promises another attempt."""
    err.todo_given_up = todo
    return err


class HostKeyUnknown(SftpError):
    """The server's host key is not in known_hosts and nobody confirmed it."""

    kind = "host-key-unknown"

    def __init__(self, host: str, port: int, key_type: str, fingerprint: str,
                 known_hosts: str | None = None) -> None:
        self.host = host
        self.port = port
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts
        super().__init__(
            f"The host key of {host} port {port} is not known yet ({key_type} {fingerprint}).",
            "Check the fingerprint with the server's administrator, then confirm it in the app "
            "or run again with --accept-new-host-key to record it in "
            f"{known_hosts or 'known_hosts'}.",
        )


class HostKeyChanged(SftpError):
    """The server presented a key different from the one recorded in known_hosts."""

    kind = "host-key-changed"

    def __init__(self, host: str, port: int, key_type: str, fingerprint: str,
                 known_hosts: str | None = None, expected: tuple[str, ...] = ()) -> None:
        self.host = host
        self.port = port
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.known_hosts = known_hosts
        self.expected = expected
        super().__init__(
            f"WARNING: the host key of {host} port {port} has CHANGED: the server now presents "
            f"{key_type} {fingerprint}, which differs from the key recorded in "
            f"{known_hosts or 'known_hosts'}. Someone may be intercepting the connection; "
            "nothing was sent or downloaded.",
            "Ask the server's administrator whether the key was replaced on purpose; only then "
            f"remove the old entry for {host} from {known_hosts or 'known_hosts'} and connect again.",
        )


class HostKeyMismatch(HostKeyChanged):
    """The server offers only host key types that known_hosts holds no key of for it.

    A host key problem like :class:`HostKeyChanged` (and handled as one): the server's key was
    replaced by one of another type, or someone else answers. ``key_type``/``fingerprint``
    are what the server offers ("" when it could not be learnt), ``recorded`` the
    ``(type, fingerprint)`` pairs known_hosts holds."""

    def __init__(self, host: str, port: int, key_type: str, fingerprint: str,
                 known_hosts: str | None = None,
                 recorded: tuple[tuple[str, str], ...] = ()) -> None:
        HostKeyChanged.__init__(self, host, port, key_type, fingerprint, known_hosts,
                                tuple(fp for _t, fp in recorded))
        self.recorded = recorded
        where = known_hosts or "known_hosts"
        held = ", ".join(f"{t} {fp}" for t, fp in recorded) or "other key types"
        offered = f"a host key of type {key_type} ({fingerprint})" if key_type else "other host key types"
        pattern = host if port == 22 else f"[{host}]:{port}"
        self.what = (
            f"WARNING: {host} port {port} now offers only {offered}, but {where} holds only "
            f"{held} for it. The server's key may have been replaced, or someone may be "
            "intercepting the connection; nothing was sent or downloaded."
        )
        self.todo = (
            "Ask the server's administrator which host key the server has now. Only if they "
            f"confirm {fingerprint or 'the new key'}: remove the old line "
            f"(ssh-keygen -R '{pattern}' -f {where}) and connect again to accept the new key "
            "explicitly. Until then every connection is refused."
        )
        Exception.__init__(self, self.what)


class AuthFailed(SftpError):
    """The server refused the login (never retried)."""

    kind = "auth"


class ConnectFailed(SftpError):
    """The server could not be reached, or the connection broke."""

    transient = True
    kind = "connection"


class FolderNotFound(ConnectFailed):
    """A folder to list does not exist on the server, is not a folder, or cannot be read.

    A connection failure to ``sync`` and ``check`` (it is the profile's folder that is wrong);
    the folder picker says it in its own words (``tui.sftp.setup.folder_view``).
    """


class ConnectTimeout(ConnectFailed):
    """Connecting or logging in took longer than the configured timeout."""


class ConnectionLost(ConnectFailed):
    """An established connection broke (a transfer resumes after reconnecting)."""


class ServerStalled(ConnectionLost):
    """The server answered nothing for ``ConnectOptions.request_timeout`` seconds while
    requests were waiting (its SFTP process stuck, e.g. opening a named pipe or on a hung
    disk; SSH keepalives are answered by another process, so they never notice). The
    connection is dropped; a transfer resumes on a new one."""


class RemoteFileGone(SftpError):
    """The file disappeared from the server between the listing and the download."""

    kind = "gone"


class PermissionDenied(SftpError):
    """The server refused access to one file or folder."""

    kind = "permission"


class LocalDiskFull(SftpError):
    """The local disk (or the process's file size limit) has no room for the download."""

    kind = "disk-full"


class LocalWriteFailed(SftpError):
    """The local folder cannot be written (permissions, read-only file system, ...)."""

    kind = "local"


class TransferFailed(SftpError):
    """A transfer failed for another reason; ``transient`` says whether a retry can help."""

    kind = "transfer"

    def __init__(self, what: str, todo: str = "", *, transient: bool = False) -> None:
        super().__init__(what, todo)
        self.transient = transient


class FileBusy(TransferFailed):
    """Another process (the app, a scheduled sync) is downloading this file right now."""

    kind = "busy"


class Cancelled(SftpError):
    """The transfer was cancelled by the user."""

    kind = "cancelled"


#: What a download whose part could not be made durable says of it (``translate(part_lost=True)``).
PART_LOST = ("what arrived may not have reached the disk, so it was discarded and the "
             "download starts again from the beginning.")

#: At most this many characters of a reason a server chose are shown.
REASON_CHARS = 200


def _short(exc: BaseException) -> str:
    """The reason text of an exception, safe to print: asyncssh reasons carry no file
    contents, but a server chooses the text of its error replies, so control characters
    (terminal escape sequences) are escaped and a long text is cut to ``REASON_CHARS``."""
    reason = (exc.reason if isinstance(exc, asyncssh.Error) else "") or str(exc) or type(exc).__name__
    text = escape_name(str(reason).strip())
    if len(text) > REASON_CHARS:
        text = text[:REASON_CHARS - 1] + "…"
    return text.rstrip(".")


def translate(exc: BaseException, *, host: str = "", port: int | None = None,
              path: str | None = None, local_path: str | None = None,
              part_lost: bool = False) -> SftpError:
    """An :class:`SftpError` for any exception raised while talking to a server.

    ``path`` is the remote file concerned (for messages), ``local_path`` the local one.
    ``part_lost``: the local error is a failed fsync of the download's part, which is then
    not kept (its bytes may never have reached the disk): the message says it starts again.
    """
    if isinstance(exc, SftpError):
        return exc
    where = f"{host} port {port}" if host and port else (host or "the server")
    what_file = f"'{path}'" if path else "the file"
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        return RemoteFileGone(
            f"{what_file} is no longer on {where} (it was deleted or renamed after the listing).",
            "Refresh the listing; if the file was not downloaded before, it is lost on the server.",
        )
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return PermissionDenied(
            f"{where} refused access to {what_file} (permission denied).",
            "Ask the server's administrator to grant this account read access to it.",
        )
    if isinstance(exc, asyncssh.SFTPConnectionLost) or isinstance(exc, asyncssh.ConnectionLost):
        return _given_up(ConnectionLost(
            f"The connection to {where} was lost ({_short(exc)}).",
            "The transfer resumes from where it stopped once the server is reachable again.",
        ), given_up_todo("; the next sync resumes it from where it stopped once the server is "
                         "reachable again."))
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthFailed(
            f"{where} refused the login ({_short(exc)}).",
            "Check the user name and the key (or load it into ssh-agent); this is not retried "
            "automatically, so the account is not locked out.",
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):  # client.connect() reports these in detail
        return ConnectFailed(f"The host key of {where} could not be verified ({_short(exc)}).",
                             "Check known_hosts and connect again.")
    if isinstance(exc, asyncssh.KeyImportError) or isinstance(exc, asyncssh.KeyEncryptionError):
        return AuthFailed(
            f"The private key could not be used ({_short(exc)}).",
            "Check the key path and its passphrase in the profile.",
        )
    if isinstance(exc, asyncssh.SFTPError):
        return _given_up(TransferFailed(
            f"{where} reported an error for {what_file}: {_short(exc)}.",
            "It is retried automatically; if it persists, ask the server's administrator.",
            transient=True,
        ), given_up_next_sync("ask the server's administrator"))
    if isinstance(exc, asyncssh.DisconnectError):
        return _given_up(ConnectionLost(
            f"{where} closed the connection ({_short(exc)}).",
            "It is retried automatically; if it persists, check the server.",
        ), given_up_next_sync("check the server"))
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError since 3.11
        return ConnectTimeout(
            f"{where} did not answer in time.",
            "Check the host name, the port and the network (VPN?); the connection timeout "
            "can be raised in the profile.",
        )
    if isinstance(exc, OSError):
        if local_path is not None:
            if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                kept = (PART_LOST if part_lost else
                        "what arrived is kept in a hidden .part file and the download resumes "
                        "from there.")
                return LocalDiskFull(
                    f"The local disk has no room left for '{local_path}' "
                    f"({'disk full' if exc.errno == errno.ENOSPC else 'file size or quota limit reached'}). "
                    f"Nothing partial was written under the final name; {kept}",
                    "Free some space in the local folder (or choose another local_dir) and run again.",
                )
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return LocalWriteFailed(
                    f"Could not open '{local_path}': too many files are open "
                    f"({'this process' if exc.errno == errno.EMFILE else 'the whole system'} "
                    "reached its limit on open files). Nothing was written under the final name.",
                    "Raise the limit (ulimit -n in the shell or cron line, LimitNOFILE= in a "
                    "systemd unit) or lower the profile's concurrency, and run again.",
                )
            partial = (f" Nothing partial was written under the final name; {PART_LOST}" if part_lost
                       else " Nothing partial was written under the final name.")
            if exc.errno == errno.EIO:
                return LocalWriteFailed(
                    f"The local disk failed to write '{local_path}' ({exc.strerror or 'input/output error'}): "
                    f"the disk (or the share or drive it is on) may be failing.{partial}",
                    "Check the disk before anything else (the system log: dmesg or journalctl -k); "
                    "the copies already kept are not touched by this, but may be on the same disk: "
                    "copy them elsewhere if it is failing. Then run again.",
                )
            if exc.errno == errno.EROFS:
                return LocalWriteFailed(
                    f"Could not write '{local_path}': the file system of the local folder is "
                    f"mounted read-only.{partial}",
                    "Linux remounts a disk read-only after errors on it: check the system log "
                    "(dmesg or journalctl -k) and the mount (findmnt on the folder), or choose "
                    "another local_dir. The copies already kept are not touched. Then run again.",
                )
            return LocalWriteFailed(
                f"Could not write '{local_path}': {exc.strerror or exc}."
                + (f" Nothing partial was written under the final name; {PART_LOST}" if part_lost else ""),
                "Check that the local folder exists and is writable by you.",
            )
        if exc.errno in (errno.ECONNREFUSED,):
            return ConnectFailed(
                f"{where} refused the connection (nothing listens on that port).",
                "Check the host name and port in the profile.",
            )
        if isinstance(exc, (ConnectionError, BrokenPipeError)):
            return _given_up(ConnectionLost(
                f"The connection to {where} was lost ({exc.strerror or exc}).",
                "It is retried automatically.",
            ), given_up_next_sync("check the server and the network"))
        return ConnectFailed(
            f"Could not reach {where}: {exc.strerror or exc}.",
            "Check the host name, the port and the network.",
        )
    log.debug("untranslated exception %s", type(exc).__name__)
    return TransferFailed(
        f"Unexpected error talking to {where}: {type(exc).__name__}: {_short(exc)}.",
        "Try again; if it persists, report it with the log file.",
    )

