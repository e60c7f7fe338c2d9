"""The SSH side of setting up a profile (``report-keeper init``; later the app's first run).

Public API::

    keys = local_keys(Path("~/.ssh"))          # [LocalKey]: key pairs found, with fingerprints
    agent = await agent_keys()                  # [AgentKey] of ssh-agent (empty without one)
    key = generate_key(path, comment)           # a new ed25519 pair, private 0600; NewKey
    key = create_key()                          # the same at a free ~/.ssh path, usual comment
    later_note(key)                             # what is pending when it was never tried
    opened = await open_connection(answers, new_key=key, host_key_policy=..., passphrase_cb=...)
    opened.conn                                 # an SftpConnection, or None and opened.note says
                                                # what is pending (for the config's notes)
    view = await folder_view(conn, path)        # FolderView: absolute path, folders, files

No prompts here: the caller asks the questions and passes the answers (``report-keeper init``
on a terminal, the app's first-run screen in the TUI).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from asyncssh.public_key import decode_ssh_public_key

from tui.core.config import Profile
from tui.core.model import RemoteFile
from tui.core.names import escape_name
from tui.core.setup import REPORT_SUFFIXES, Answers
from tui.sftp.client import (
    ConnectOptions,
    HostKeyPolicy,
    PassphraseCallback,
    SftpConnection,
    connect,
    needs_passphrase,
)
from tui.sftp.errors import (
    AuthFailed,
    ConnectFailed,
    FolderNotFound,
    HostKeyChanged,
    HostKeyUnknown,
    SftpError,
    translate,
)

log = logging.getLogger("report_keeper.sftp.setup")
#: Where new key pairs go and existing ones are looked for.
SSH_DIR = Path("~/.ssh")


@dataclass(frozen=True)
class LocalKey:
    path: Path  # the private key
    algorithm: str
    fingerprint: str
    comment: str


@dataclass(frozen=True)
class AgentKey:
    algorithm: str
    fingerprint: str
    comment: str


@dataclass(frozen=True)
class NewKey:
    path: Path
    public_line: str  # "ssh-ed25519 AAAA... comment": what the server's administrator needs
    fingerprint: str


def local_keys(ssh_dir: Path) -> list[LocalKey]:
    """Key pairs in ``ssh_dir``: a ``NAME.pub`` beside a private ``NAME``; ed25519 first."""
    ssh_dir = ssh_dir.expanduser()
    out: list[LocalKey] = []
    try:
        pubs = sorted(ssh_dir.glob("*.pub"))
    except OSError:
        return out
    for pub in pubs:
        private = pub.with_suffix("")
        if not private.is_file():
            continue
        try:
            key = asyncssh.read_public_key(str(pub))
        except (OSError, asyncssh.KeyImportError, ValueError):
            continue
        comment = key.get_comment() or ""
        out.append(LocalKey(private, key.get_algorithm(), key.get_fingerprint("sha256"), comment))
    out.sort(key=lambda k: (k.algorithm != "ssh-ed25519", k.path.name))
    return out


async def agent_keys() -> list[AgentKey]:
    """The keys ssh-agent holds (none when SSH_AUTH_SOCK is unset or the agent is gone)."""
    if not os.environ.get("SSH_AUTH_SOCK"):
        return []
    try:
        async with asyncssh.connect_agent() as agent:
            keys = await agent.get_keys()
    except (OSError, asyncssh.Error, ValueError):
        return []
    # The agent hands out key pairs; the fingerprint is that of their public key.
    return [AgentKey(k.get_algorithm(), decode_ssh_public_key(k.public_data).get_fingerprint("sha256"),
                     (k.get_comment() or "")) for k in keys]


def free_key_path(ssh_dir: Path, stem: str = "id_ed25519_report_keeper") -> Path:
    """``~/.ssh/<stem>``, or ``<stem>_2``... when taken: a key is never overwritten."""
    ssh_dir = ssh_dir.expanduser()
    n = 1
    while True:
        path = ssh_dir / (stem if n == 1 else f"{stem}_{n}")
        if not path.exists() and not path.with_suffix(".pub").exists():
            return path
        n += 1


def generate_key(path: Path, comment: str) -> NewKey:
    """A new ed25519 key pair without passphrase (cron must use it unattended): the private
    half 0600 in a 0700 folder, never over an existing file."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.export_private_key("openssh"))
        os.fsync(fd)
    finally:
        os.close(fd)
    public = key.export_public_key("openssh")
    fd = os.open(path.with_suffix(".pub"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, public)
    finally:
        os.close(fd)
    return NewKey(path, public.decode().strip(), key.get_fingerprint("sha256"))


def create_key(ssh_dir: Path = SSH_DIR) -> NewKey:
    """A new ed25519 key pair for report-keeper at a free path of ``ssh_dir``."""
    comment = f"report-keeper@{socket.gethostname() or 'localhost'}"
    return generate_key(free_key_path(ssh_dir), comment)


def home_relative(path: Path) -> str:
    """``~/.ssh/x`` for a path under the home folder (as people write it), else the path."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home):] if text.startswith(home + os.sep) else text


def later_note(key: NewKey) -> str:
    """What is pending when the set-up ends before the server was tried with a new key."""
    return ("the new key is probably not accepted by the server yet: "
            f"send {home_relative(key.path)}.pub to its administrator")


def connect_options(answers: Answers, *, connect_timeout: float = 15) -> ConnectOptions:
    """How to connect with what was answered (known_hosts and ssh config: the usual ones)."""
    return ConnectOptions(host=answers.host, port=answers.port, username=answers.username,
                          key=answers.key, connect_timeout=connect_timeout)


@dataclass
class Opened:
    """A connection, or why there is none: ``note`` for the config's pending notes, ``error``
    as the SFTP client said it (None when a connection was opened)."""

    conn: SftpConnection | None
    note: str | None = None
    error: SftpError | None = None


async def open_connection(answers: Answers, *, new_key: NewKey | None, host_key_policy: HostKeyPolicy,
                          passphrase_cb: PassphraseCallback | None,
                          options: ConnectOptions | None = None) -> Opened:
    """Connect with ``answers``; never raises for what a server or a network does: a failure
    comes back as the note of what is pending (what to do about it, in words)."""
    opts = options or connect_options(answers)
    try:
        conn = await connect(opts, host_key_policy=host_key_policy, passphrase_cb=passphrase_cb)
    except HostKeyUnknown as exc:
        note = (f"the server's host key was not confirmed ({exc.key_type} {exc.fingerprint}); "
                "check it with the administrator, then run 'report-keeper check --accept-new-host-key'")
        return Opened(None, note, exc)
    except HostKeyChanged as exc:
        note = ("the server's host key CHANGED: nothing was sent; ask the administrator before "
                "removing the old entry from known_hosts")
        return Opened(None, note, exc)
    except AuthFailed as exc:
        if new_key is not None:
            note = ("the server does not accept the new key yet: send the public key line "
                    f"({home_relative(new_key.path)}.pub) to its administrator")
        else:
            note = f"the server refused the login: {exc}"
        return Opened(None, note, exc)
    except SftpError as exc:
        return Opened(None, f"the server could not be reached: {exc}", exc)
    log.info("set-up connected to %s port %d", conn.host, conn.port)
    return Opened(conn)


@dataclass(frozen=True)
class FolderView:
    path: str  # absolute, as the server names it
    folders: list[str]  # sub-folder names, sorted
    files: list[RemoteFile]  # regular files with safe names
    refused: int  # names refused as unsafe

    @property
    def reports(self) -> list[RemoteFile]:
        """The Excel files among ``files`` (what ``propose_reports`` looks at)."""
        return [f for f in self.files if f.name.lower().endswith(REPORT_SUFFIXES)]


async def folder_view(conn: SftpConnection, path: str) -> FolderView:
    """One folder of the server for the folder picker. Raises ``SftpError``."""
    def not_a_folder() -> ConnectFailed:
        # A folder typed or picked, not a file that went away: said in the picker's terms.
        err = ConnectFailed(f"The folder '{escape_name(path)}' does not exist on the server {conn.host} "
                            f"port {conn.port} (or is not readable).",
                            "Check the path: it is relative to the login folder unless it starts with '/'.")
        err.transient = False
        return err

    try:
        absolute = await conn.sftp.realpath(path or ".")
    except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath, asyncssh.SFTPNotADirectory,
            asyncssh.SFTPPermissionDenied):
        raise not_a_folder() from None
    except (asyncssh.Error, OSError) as exc:
        raise translate(exc, host=conn.host, port=conn.port, path=path) from None
    if isinstance(absolute, bytes):
        absolute = absolute.decode("utf-8", "surrogateescape")
    try:
        listing = await conn.listdir(absolute)
    except FolderNotFound:
        # realpath resolves a last part that does not exist (as realpath(3) does), and a file
        # is resolved too: the listing is where such a path fails.
        raise not_a_folder() from None
    folders = sorted(name for name, kind in listing.others if kind == "folder")
    return FolderView(absolute, folders, listing.files, len(listing.refused))


__all__ = ["AgentKey", "FolderView", "LocalKey", "NewKey", "Opened", "SftpError", "agent_keys",
           "connect_options", "create_key", "folder_view", "free_key_path", "generate_key",
           "home_relative", "later_note", "local_keys", "open_connection"]


# --------------------------------------------------------------------------------------------
# Keys a run without a terminal can use (cron, a user timer)

def _needs_passphrase(path: Path) -> bool | None:
    """True when the private key file needs a passphrase, False when it opens without one,
    None when it cannot be read as a key at all. The passphrase is never asked for: the file
    is only read without one (its cipher header says whether it is encrypted)."""
    try:
        asyncssh.read_private_key(str(path))
    except (asyncssh.KeyEncryptionError, asyncssh.KeyImportError) as exc:
        return True if needs_passphrase(exc) else None
    except (OSError, ValueError):
        return None
    return False


async def unattended_login_problem(profile: Profile, *, agent: bool = False) -> str | None:
    """Why a run without a terminal and without ssh-agent (cron and a user timer start
    without ``SSH_AUTH_SOCK``) cannot log in with ``profile``'s keys, or None when it can.
    ``agent``: the run has an ssh-agent after all (a user manager started with
    ``SSH_AUTH_SOCK``), so a profile without a key file may log in with the agent's keys.

    The profile's ``key`` file must open without a passphrase (its passphrase is asked only at
    a terminal). Without ``key`` the client offers ssh-agent's keys and the key files of
    ``~/.ssh/config`` (``IdentityFile``, else the default ``~/.ssh/id_*``), skipping those with
    a passphrase: one of those must open without one, unless ``~/.ssh/config`` names an agent
    socket of its own (``IdentityAgent``), which may be running at night."""
    opts = ConnectOptions.from_profile(profile)
    if opts.key is not None:
        path = opts.key
        if not path.is_file():
            return f"its key file {path} does not exist"
        state = _needs_passphrase(path)
        if state is None:
            return f"its key file {path} cannot be read as a private key"
        if state:
            return f"its key file {path} is protected by a passphrase, which nobody is there to type at night"
        return None
    if opts.ssh_config is not None and not opts.ssh_config.is_file():
        return f"its ssh config file {opts.ssh_config} does not exist"
    kwargs: dict[str, object] = {"host": opts.host, "agent_path": None}
    if opts.port is not None:
        kwargs["port"] = opts.port
    if opts.username:
        kwargs["username"] = opts.username
    if opts.ssh_config is not None:
        kwargs["config"] = [str(opts.ssh_config)]
    try:
        options = await asyncssh.SSHClientConnectionOptions.construct(None, **kwargs)
    except (OSError, ValueError, asyncssh.Error) as exc:
        return f"its SSH settings cannot be read ({escape_name(str(exc))})"
    if options.client_keys:
        return None  # a key file that opens without a passphrase
    identity_agent = str(options.config.get("IdentityAgent", None) or "").lower()
    if identity_agent and identity_agent not in ("none", "ssh_auth_sock", "$ssh_auth_sock"):
        return None
    named = [Path(str(p)).expanduser() for p in options.config.get("IdentityFile", ()) or ()]
    candidates = named or [Path("~/.ssh", name).expanduser() for name in _DEFAULT_KEY_NAMES]
    if agent and identity_agent != "none":
        return None  # the client offers the agent's keys
    locked = [p for p in candidates if p.is_file() and _needs_passphrase(p)]
    if locked:
        keys = ", ".join(str(p) for p in locked)
        return (f"it names no key file and the key{'s' if len(locked) > 1 else ''} it would use "
                f"({keys}) {'are' if len(locked) > 1 else 'is'} protected by a passphrase, held only "
                "by ssh-agent, which a nightly run does not have")
    return ("it names no key file and ~/.ssh holds none it could use: it logs in with ssh-agent, "
            "which a nightly run does not have")


#: The key files the client tries without a ``key`` and without ``IdentityFile`` (OpenSSH's
#: and asyncssh's defaults, in their order).
_DEFAULT_KEY_NAMES = ("id_ed25519_sk", "id_ecdsa_sk", "id_ed448", "id_ed25519", "id_ecdsa", "id_rsa", "id_dsa")
