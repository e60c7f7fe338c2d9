"""``report-keeper init``: set up a profile, one question at a time, or unattended with flags.

Asks (each question has a flag; ``--yes`` takes the defaults and asks nothing): host, port,
user name, key (an existing key of ~/.ssh, ssh-agent, or a new ed25519 key pair), then
connects (an unknown host key is shown with its SHA256 fingerprint and confirmed once),
offers a folder picker over the server's real listing, the local folder and the time zone,
proposes the reports the folder holds with their inferred schedules (keep, edit or skip
each), runs the connection test and writes the config (0600, atomically; an existing file
only with ``--force``, which keeps a backup and replaces only this profile in it; its other
profiles that cannot run, each with its error, are named once before the first question; an
error of the file as a whole stops init before the first question, and a file that is no TOML,
replaced as a whole, is said to be then).

When the server cannot be reached or does not accept the key yet (the usual case right after
``--new-key``), the answers are not lost: the config is written anyway, with what is pending
noted in it and printed, and the exit code is 1. ``report-keeper check`` later completes the
picture. Exit codes: 0 done; 1 written, something pending; 3 usage error (nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TextIO, TypeVar
from zoneinfo import ZoneInfo

from tui.commands.common import fail_usage, one_line, terminal_passphrase_cb
from tui.core import setup as su
from tui.core.config import (
    DEFAULT_PROFILE,
    MAX_CONFIG_BYTES,
    ConfigError,
    default_config_path,
    load_config,
    profile_names,
)
from tui.core.names import escape_name, profile_name_refusal
from tui.core.schedule import parse_at
from tui.core.status import Exit
from tui.sftp import setup as ss
from tui.sftp.client import HostKeyInfo, HostKeyPolicy, SftpConnection
from tui.sftp.conntest import probe_connection
from tui.sftp.errors import HostKeyChanged, SftpError
from tui.sftp.setup import FolderView, LocalKey, NewKey, folder_view

EPILOG = """\
Unattended example (writes the config even if the server does not accept the new key yet):
  report-keeper init --host files.example.org --username abcftp --new-key \\
      --remote-dir upload/ALMA/Daily_Report --timezone America/Chicago --yes
An unknown host key is accepted unattended only with --accept-new-host-key (check its
fingerprint with the server's administrator first).

Exit codes: 0 the config is written and the connection test passed; 1 written, something is
pending (key not accepted yet, server unreachable, host key not confirmed, test failed);
3 usage error, or the config exists and --force was not given (nothing written).
"""


T = TypeVar("T")
P = ParamSpec("P")


class Abort(Exception):
    """The user ended the questions (end of input, Ctrl-C): nothing is written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="where to write the config (default: the user config dir)")
    parser.add_argument("--profile", metavar="NAME", default=argparse.SUPPRESS,
                        help="profile name (default: 'default')")
    parser.add_argument("--host", help="SFTP server host name, or a Host alias of ~/.ssh/config")
    parser.add_argument("--port", help="SSH port (default 22)")
    parser.add_argument("--username", help="user name on the server")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key", metavar="F", help="private key file to log in with")
    keys.add_argument("--new-key", action="store_true", help="create a new ed25519 key pair")
    keys.add_argument("--agent", action="store_true", help="log in with the keys of ssh-agent")
    parser.add_argument("--remote-dir", metavar="D", help="the server folder Alma delivers to")
    parser.add_argument("--local-dir", metavar="D", help="where downloaded reports are kept")
    parser.add_argument("--timezone", metavar="TZ", help="the library's time zone (IANA name)")
    parser.add_argument("--yes", action="store_true", help="take every default, ask nothing")
    parser.add_argument("--force", action="store_true",
                        help="replace this profile in an existing config (a backup is kept)")
    parser.add_argument("--accept-new-host-key", action="store_true",
                        help="with --yes: trust and record an unknown server host key")


class Prompter:
    """Questions on a terminal (or any text stream); with ``--yes`` the defaults, silently."""

    def __init__(self, ask: bool, out: TextIO, read: Callable[[str], str] | None = None) -> None:
        self.interactive = ask
        self.out = out
        #: The key pair this run made, if any: kept when the run stops before the end.
        self.made_key: Path | None = None
        self._read = read or _read_line

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def read(self, prompt: str) -> str:
        try:
            return self._read(prompt)
        except (EOFError, KeyboardInterrupt):
            raise Abort() from None

    def ask(self, label: str, default: str | None, check: Callable[[str], T],
            flag: str | None = None, flag_name: str = "") -> T:
        """The flag's value if given, else the answer (Enter: ``default``), re-asked until valid."""
        if flag is not None:
            try:
                return check(flag)
            except ValueError as exc:
                raise UsageError(f"{flag_name}: {exc}") from None
        if not self.interactive:
            if default is None:
                raise UsageError(f"{flag_name} is needed with --yes (no default for: {label})")
            return check(default)
        while True:
            shown = f" [{default}]" if default not in (None, "") else ""
            answer = self.read(f"{label}{shown}: ").strip()
            if not answer and default is not None:
                answer = default
            try:
                return check(answer)
            except ValueError as exc:
                self.say(f"  {exc}")

    def confirm(self, label: str, default: bool) -> bool:
        if not self.interactive:
            return default
        hint = "Y/n" if default else "y/N"
        while True:
            answer = self.read(f"{label} [{hint}]: ").strip().lower()
            if not answer:
                return default
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            self.say("  please answer y or n")


class UsageError(Exception):
    pass


def _read_line(prompt: str) -> str:
    """``input(prompt)``, in a form a Ctrl-C can leave behind (``_ask``): on a terminal
    ``input`` waits in the C library's line reader; on a pipe it would wait holding the lock
    of ``sys.stdin``'s buffer, and the interpreter's exit, needing that lock, would abort. So
    a line that is not typed on a terminal is read from the file descriptor itself, a byte
    at a time (nothing read ahead is lost to a buffer)."""
    stdin, stdout = sys.stdin, sys.stdout
    if stdin is None:
        raise EOFError
    try:
        fd = stdin.fileno()
        on_terminal = os.isatty(fd) and stdout is not None and stdout.isatty()
    except (OSError, ValueError):  # no file descriptor (a test's stream): its own reader
        return input(prompt)
    if on_terminal:
        return input(prompt)
    if stdout is not None:
        _show_question(stdout, prompt)
    line = bytearray()
    while (byte := os.read(fd, 1)) and byte != b"\n":
        line += byte
    if not byte and not line:
        raise EOFError
    return line.decode("utf-8", "replace").removesuffix("\r")


def _show_question(stdout: TextIO, prompt: str) -> None:
    """Write a question that a pipe answers. What was said before it is flushed first, and
    the question itself goes to the file descriptor, not through ``stdout``'s buffer: once
    the question can be seen (and answered with a Ctrl-C) this thread holds none of the
    buffer's locks. A daemon thread still holding one when the interpreter exits (it is
    stopped where it waits for the interpreter's lock) makes the exit's flush of ``stdout``
    abort the process ("could not acquire lock ... possibly due to daemon threads")."""
    stdout.flush()
    try:
        fd = stdout.fileno()
    except (OSError, ValueError):  # no file descriptor (a test's stream): its own writer
        stdout.write(prompt)
        stdout.flush()
        return
    data = prompt.encode(stdout.encoding or "utf-8", "replace")
    while data:
        data = data[os.write(fd, data):]


def run(args: argparse.Namespace) -> int:
    path = Path(getattr(args, "config", None) or default_config_path()).expanduser()
    profile = getattr(args, "profile", None) or DEFAULT_PROFILE
    if path.exists() and not path.is_file():
        return fail_usage(f"{path} is not a file; name the config file with --config")
    if path.exists() and not args.force:
        return fail_usage(f"{path} exists; run again with --force to replace profile '{profile}' in it "
                          "(a backup is kept), or choose another file with --config")
    prompter = Prompter(not args.yes, sys.stdout)
    try:
        to_write = _check_given(args, path, profile)
        with su.parsed_once():  # the checks before the questions and the save read the file once
            return asyncio.run(_init(args, path, profile, prompter, to_write))
    except UsageError as exc:
        return fail_usage(f"init: {exc}")
    except (Abort, KeyboardInterrupt):  # end of input, or Ctrl-C while a question waits
        sys.stdout.write("\n")
        if prompter.made_key is not None:  # its public line may be with the administrator already
            return fail_usage(f"init: stopped before the end; no config was written; the new key pair "
                              f"{prompter.made_key} is kept: run init again and choose it")
        return fail_usage("init: stopped before the end; nothing was written")


def _check_given(args: argparse.Namespace, path: Path, profile: str) -> su.Answers:
    """Every answer given as a flag (and with ``--yes`` every default), checked before anything
    is made: a usage error found after the new key pair was written left a key behind for a
    config never written (and the next try made a second one). Raises ``UsageError``.

    Returns the profile as far as it is known now (the flags, the defaults for the rest, the
    key a flag names or ``--new-key`` will make): what the size check measures."""
    refused = profile_name_refusal(profile, "choose another name with --profile")
    if refused is not None:
        raise UsageError(f"--profile: {refused}")
    given = {"host": args.host, "port": args.port, "username": args.username, "remote_dir": args.remote_dir,
             "local_dir": args.local_dir, "timezone": args.timezone}
    answers, errors = su.answers_from_form(
        profile, host=args.host or "report-keeper.invalid", port=args.port or "",
        username=args.username or "", remote_dir=args.remote_dir or "",
        local_dir=args.local_dir or str(su.default_local_dir(profile)),
        timezone=args.timezone or su.default_zone())
    for name, reason in errors.items():
        if given.get(name) is not None or args.yes:
            raise UsageError(f"--{name.replace('_', '-')}: {reason}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise UsageError(f"{path} cannot be written ({folder} is not a folder you can write to); "
                         "choose another file with --config")
    if args.key is not None:
        answers.key = Path(args.key).expanduser().absolute()
    elif args.new_key:
        answers.key = ss.free_key_path(Path("~/.ssh"))
    return answers


def _say_existing(p: Prompter, path: Path, profile: str, to_write: su.Answers) -> None:
    """What ``--force`` will do to the existing config, said (or refused) before the first
    question, so nothing is typed for nothing:

    - a TOML file wrong as a whole (an unknown top-level key, a bad ``[defaults]``, a
      ``profile`` that is no table) would not load with this profile merged in either:
      ``UsageError`` now, the file left as it is; so is one over the size limit, or one that is
      not UTF-8 (its other bytes would be lost in the merge) while still TOML;
    - a file that is no TOML at all cannot be merged into: it is replaced as a whole (every
      profile in it lost, a backup kept), which is said now;
    - else each other profile whose own settings are wrong is named with its error: init leaves
      them as they are, and their runs fail until they are fixed (the profile set up now
      replaces its own entry, so it is not named)."""
    _refuse_too_full(path, profile, to_write)
    try:
        config = load_config(path)
    except ConfigError as error:
        _check_merge(p, path, profile, error)
        return
    _check_size(path, to_write, present=profile in config.names)
    others = [(name, exc) for name, exc in config.broken.items() if name != profile]
    if not others:
        return
    p.say(f"Other profiles in {one_line(str(path))} cannot run as they are (init leaves them "
          "unchanged; fix them in the file, or set one up again with init --force --profile NAME):")
    for name, exc in others:
        where = f"{exc.key}: " if exc.key else ""
        p.say(f"  - '{escape_name(name)}': {one_line(where + exc.reason)}")


#: What follows a refusal for the config's size.
_TOO_LARGE_WAY_OUT = ("; nothing was written: remove what the file no longer needs, or set this profile "
                      "up in another file with --config")


def _refuse_too_full(path: Path, profile: str, to_write: su.Answers) -> None:
    """A file without room for a profile it does not hold yet is refused by the sizes before
    its profiles are read (every check of every profile: seconds of CPU for a file near the
    limit): its TOML is read, for the profile's name and what the file as a whole must hold
    (that error, if any, is the one said, by the full read that follows). Anything else is
    left to that full read and :func:`_check_size`."""
    try:
        existing = su.text_to_merge_into(path)
        size = len(existing.encode("utf-8")) + len(su.render_config(to_write, "").encode("utf-8"))
    except ConfigError:
        return
    if size <= MAX_CONFIG_BYTES:
        return
    try:
        names = profile_names(tomllib.loads(existing), path)
    except (ConfigError, ValueError, RecursionError):  # no TOML, or wrong as a whole: said next
        return
    if profile not in names:
        raise UsageError(f"{one_line(str(path))}: {su.ConfigTooLarge(size).reason}{_TOO_LARGE_WAY_OUT}")


def _check_size(path: Path, to_write: su.Answers, *, present: bool) -> None:
    """A file that loads may still be too close to the size limit to take this profile: init
    stops before the first question (no key made, nothing typed for nothing), saying the size
    and the limit. Measured with the profile as far as the flags and defaults tell it
    (``to_write``: its local folder, time zone and key go in too; the reports found, the notes
    of what is pending and the answers typed later may change its size, and the save checks
    the real profile again).

    The merge adds the profile's table to the file's text as it is (a line break at most
    between them), so the sizes alone decide: a file with room for it passes, and one without
    room for a profile it does not hold yet is refused, without the merge's dry run (a file
    near the limit takes seconds to parse for it). Only a file that holds this profile already
    (whose old table the new one replaces), or one within a line break of the limit, needs
    the dry run to tell."""
    stop = _TOO_LARGE_WAY_OUT
    try:
        existing = su.text_to_merge_into(path)
        added = len(su.render_config(to_write, "").encode("utf-8"))
    except ConfigError:
        return  # the rest of the file is said (or refused) as before; the save checks it again
    size = len(existing.encode("utf-8")) + added
    if size + su.MERGE_SEPARATOR_BYTES <= MAX_CONFIG_BYTES:
        return
    if not present and size > MAX_CONFIG_BYTES:
        raise UsageError(f"{one_line(str(path))}: {su.ConfigTooLarge(size).reason}{stop}")
    try:
        su.render_config(to_write, existing)
    except su.ConfigTooLarge as exc:
        raise UsageError(f"{one_line(str(path))}: {exc.reason}{stop}") from None
    except ConfigError:
        return


def _check_merge(p: Prompter, path: Path, profile: str, error: ConfigError) -> None:
    """``error``, the existing file's own, either stops init or is said as what --force does."""
    stop = f"{error}; nothing was written: fix that in the file, or set this profile up in another file with --config"
    try:
        # Read as the write reads it: a file over the size limit, or not UTF-8 yet TOML with its
        # bad bytes replaced (merged, they would be lost), or unreadable, stops init here.
        existing = su.text_to_merge_into(path)
    except ConfigError:
        raise UsageError(stop) from None
    if su.replaced_whole(existing):
        p.say(f"{one_line(str(error))}. The file cannot be read, so it will be replaced as a whole: "
              f"every profile in it is lost (the old file is kept as {one_line(str(path))}.bak-<date "
              "and time>" + ("; Ctrl-C now to fix it first" if p.interactive else "") + ").")
        return
    # A dry run of the write's own merge (render, then load what would be written), with a
    # stand-in for this profile: its real answers are not asked yet, and only the rest of the
    # file decides whether the merge can succeed.
    stand_in = su.Answers(profile=profile, host="report-keeper.invalid", username="report-keeper")
    try:
        su.render_config(stand_in, existing)
    except ConfigError:
        raise UsageError(stop) from None


async def _ask(prompter: Prompter, fn: Callable[P, T], *a: P.args, **kw: P.kwargs) -> T:
    """A question without blocking the event loop (the SSH connection keeps alive meanwhile).

    It is read in a daemon thread of its own, not in asyncio's executor: Ctrl-C reaches the
    main thread (the loop), and ``asyncio.run`` waits for its executor's threads before it
    returns, so a question still waiting for a line held init until Enter was pressed."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if answer.done():  # stopped meanwhile (Ctrl-C): nobody waits for it any more
            return
        if isinstance(error, StopIteration):  # a Future refuses to hold this one
            error = RuntimeError(f"a question's reader ended: {error!r}")
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(value)  # type: ignore[arg-type]

    def read() -> None:
        try:
            value = fn(*a, **kw)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting task as it is
            error: BaseException | None = exc
            value = None
        else:
            error = None
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop is closed: init has ended
            pass

    threading.Thread(target=read, name="init question", daemon=True).start()
    return await answer


async def _init(args: argparse.Namespace, path: Path, profile: str, p: Prompter,
                to_write: su.Answers) -> int:
    answers = su.Answers(profile=profile, host="")
    if p.interactive:
        p.say(f"Setting up profile '{profile}' in {path}. Enter keeps the [default]; Ctrl-C stops "
              "without writing anything.")
    if path.exists():
        _say_existing(p, path, profile, to_write)
    aliases = su.ssh_config_hosts(Path("~/.ssh/config"))
    if aliases and p.interactive and args.host is None:
        p.say("Hosts of ~/.ssh/config: " + ", ".join(aliases))
    answers.host = await _ask(p, p.ask, "SFTP server (host name or ~/.ssh/config alias)", None,
                              su.check_host, args.host, "--host")
    from_alias = answers.host in aliases
    port = await _ask(p, p.ask, "Port", "" if from_alias else "22",
                      lambda t: su.check_port(t) if t.strip() else None, args.port, "--port")
    answers.port = port if port not in (None, 22) or args.port else None
    default_user = "" if from_alias else su.default_username()
    answers.username = await _ask(p, p.ask, "User name on the server", default_user,
                                  lambda t: su.check_username(t) if t.strip() else None,
                                  args.username, "--username")
    new_key = await _choose_key(args, p, answers)

    zone_default = su.default_zone()
    tz_answer = args.timezone
    # Connect, pick the folder, look at the reports.
    conn = await _connect(args, p, answers, new_key)
    try:
        view = None
        if conn is not None:
            view = await _pick_folder(args, p, answers, conn)
        else:
            answers.remote_dir = await _ask(p, p.ask, "Folder on the server that Alma delivers to",
                                            ".", su.check_remote_dir, args.remote_dir, "--remote-dir")
        local_default = str(su.default_local_dir(profile))
        local = await _ask(p, p.ask, "Local folder for the downloaded reports", local_default,
                           functools.partial(su.check_local_dir_for, answers), args.local_dir, "--local-dir")
        answers.local_dir = local
        zone = await _ask(p, p.ask, "Time zone of the library", zone_default, su.check_zone,
                          tz_answer, "--timezone")
        answers.timezone = zone.key
        if conn is not None and view is not None:
            await _reports(p, answers, view, zone)
            await _conntest(p, answers, conn)
    finally:
        if conn is not None:
            await conn.close()

    # Write.
    try:
        saved = su.save_config(path, answers, force=args.force)
    except su.ConfigExists:
        return fail_usage(f"{path} appeared meanwhile; nothing was written")
    except OSError as exc:
        return fail_usage(f"could not write {path}: {exc.strerror or exc}")
    except ConfigError as exc:  # what would be written does not load: nothing was written
        return fail_usage(f"init: nothing was written: {exc}")
    p.say("")
    p.say(f"Wrote {path} (readable only by you)"
          + (f"; the old file is kept as {saved.backup}" if saved.backup else "") + ".")
    if answers.pending:
        p.say("Pending:")
        for note in answers.pending:
            p.say(f"  - {note}")
    steps = su.next_steps(path, profile, bool(answers.pending))
    for line in steps[:-1]:
        p.say(line)
    p.say("Next: " + steps[-1])
    return int(Exit.WARNING if answers.pending else Exit.OK)


async def _choose_key(args: argparse.Namespace, p: Prompter, answers: su.Answers) -> NewKey | None:
    """Sets ``answers.key``; returns the NewKey when one was created."""
    ssh_dir = Path("~/.ssh").expanduser()
    if args.key is not None:
        key = Path(args.key).expanduser().absolute()
        if not key.is_file():
            raise UsageError(f"--key: {key} does not exist")
        answers.key = key
        return None
    if args.agent:
        return None
    locals_ = ss.local_keys(ssh_dir)
    agent = await ss.agent_keys()
    if not args.new_key and not p.interactive:
        if locals_:
            answers.key = locals_[0].path
            return None
        if agent:
            return None
    if not args.new_key and p.interactive:
        p.say("Key to log in with:")
        choices: dict[str, LocalKey | str] = {}
        for i, k in enumerate(locals_, 1):
            choices[str(i)] = k
            p.say(f"  {i}) {ss.home_relative(k.path)}  {k.algorithm} {k.fingerprint}")
        if agent:
            choices["a"] = "agent"
            p.say(f"  a) ssh-agent ({len(agent)} key{'s' if len(agent) != 1 else ''}: "
                  + ", ".join(k.comment or k.fingerprint for k in agent[:3]) + ")")
        choices["n"] = "new"
        p.say("  n) create a new ed25519 key pair for report-keeper")
        p.say("  or type the path of a private key file (one the administrator gave you)")
        default = "1" if locals_ else ("a" if agent else "n")

        def pick(t: str) -> LocalKey | Path | str:
            t = t.strip()
            if t.lower() in choices:
                return choices[t.lower()]
            if "/" in t or t.startswith("~"):  # a path, as --key takes it
                key = Path(t).expanduser().absolute()
                if not key.is_file():
                    raise ValueError(f"{escape_name(str(key))} does not exist (or is no file); "
                                     f"type its path again, or one of {', '.join(choices)}")
                return key
            raise ValueError(f"type one of {', '.join(choices)}, or the path of a key file")

        choice = await _ask(p, p.ask, "Choice", default, pick)
        if choice == "agent":
            return None
        if isinstance(choice, LocalKey):
            answers.key = choice.path
            return None
        if isinstance(choice, Path):
            answers.key = choice
            return None
    new = ss.create_key(ssh_dir)
    p.made_key = answers.key = new.path
    p.say("")
    shown = ss.home_relative(new.path)
    p.say(f"New key pair: {shown} (private, readable only by you) and {shown}.pub")
    p.say("Send this line to your SFTP server's administrator (it is the public half, safe to send);")
    p.say("they add it to the account's authorized keys:")
    p.say("")
    p.say(new.public_line)
    p.say("")
    return new


async def _connect(args: argparse.Namespace, p: Prompter, answers: su.Answers,
                   new_key: NewKey | None) -> SftpConnection | None:
    """An open SftpConnection, or None with the reason in ``answers.pending``."""
    if new_key is not None and p.interactive:
        go = await _ask(p, p.ask, "Press Enter once the administrator has added it (or type "
                        "'later' to finish without connecting)", "", lambda t: t.strip().lower())
        if go == "later":
            answers.pending.append(ss.later_note(new_key))
            return None
    async def confirm(info: HostKeyInfo) -> str:
        p.say(f"The server {info.host} port {info.port} presents the host key")
        p.say(f"  {info.key_type} {info.fingerprint}")
        p.say("It is not in your known_hosts yet. Compare the fingerprint with the one the server's "
              "administrator gives you.")
        ok = await _ask(p, p.confirm, "Is it the same? (yes records it)", False)
        return "remember" if ok else "reject"

    if p.interactive:
        policy: HostKeyPolicy = confirm
    else:
        policy = "remember" if args.accept_new_host_key else "reject"
    if p.interactive:
        p.say(f"Connecting to {answers.host}...")
    opened = await ss.open_connection(answers, new_key=new_key, host_key_policy=policy,
                                      passphrase_cb=terminal_passphrase_cb())
    if opened.conn is None:
        if isinstance(opened.error, HostKeyChanged):
            p.say(str(opened.error))
        if opened.note:
            answers.pending.append(opened.note)
        return None
    conn = opened.conn
    if p.interactive:
        p.say("Connected.")
    return conn


async def _pick_folder(args: argparse.Namespace, p: Prompter, answers: su.Answers,
                       conn: SftpConnection) -> FolderView:
    """Sets ``answers.remote_dir``; returns the chosen folder's FolderView."""
    home = (await folder_view(conn, ".")).path
    if args.remote_dir is not None or not p.interactive:
        wanted = su.check_remote_dir(args.remote_dir or ".")
        try:
            view = await folder_view(conn, wanted)
        except SftpError as exc:
            raise UsageError(f"--remote-dir: {exc}") from None
        answers.remote_dir = wanted
        return view
    current = home
    while True:
        try:
            view = await folder_view(conn, current)
        except SftpError as exc:
            p.say(f"  {exc}")
            current = home
            continue
        reports = view.reports
        p.say("")
        p.say(f"{escape_name(view.path)}: {len(view.folders)} folder(s), {len(view.files)} file(s), "
              f"{len(reports)} Excel report(s)")
        for i, name in enumerate(view.folders, 1):
            p.say(f"  {i:3}) {escape_name(name)}/")
        answer = (await _ask(p, p.read, "Number to open, '..' up, a path, or Enter to choose this folder: ")).strip()
        if not answer:
            break
        if answer.isdigit() and 1 <= int(answer) <= len(view.folders):
            current = su.child_folder(view.path, view.folders[int(answer) - 1])
        elif answer == "..":
            current = su.parent_folder(view.path)
        elif answer.isdigit():
            p.say(f"  there is no folder {answer} here")
        else:
            try:
                current = su.typed_folder(view.path, answer)
            except ValueError as exc:
                p.say(f"  {exc}")
    answers.remote_dir = su.remote_dir_answer(home, view.path)
    return view


async def _reports(p: Prompter, answers: su.Answers, view: FolderView, zone: ZoneInfo) -> None:
    proposals = su.propose_reports(view.files, zone)
    if not proposals:
        p.say("No Excel reports in this folder yet: every report that arrives will be tracked, "
              "its schedule inferred from its history.")
        return
    p.say("")
    p.say(f"Reports found in {escape_name(answers.remote_dir)}:")
    for r in proposals:
        sure = f"fits {r.confidence:.0%} of its {r.files} files" if r.files > 1 else "only 1 file"
        p.say(f"  '{escape_name(r.name)}': {r.describe()} ({sure})")
        if not p.interactive:
            continue
        default = "y" if r.keep else "s"
        if not r.keep:
            p.say("    too few deliveries to be sure: 's' leaves the schedule to be inferred as history grows")

        def choice(t: str) -> str:
            t = t.strip().lower()[:1]
            if t not in ("y", "e", "s"):
                raise ValueError("type y (keep), e (edit) or s (skip)")
            return t

        c = await _ask(p, p.ask, "    Keep this schedule? y / e(dit) / s(kip)", default, choice)
        if c == "s":
            r.keep = False
            continue
        r.keep = True
        if c == "e":
            r.schedule = await _ask(p, p.ask, "    Schedule (daily, weekly:MON,THU, monthly:1, every 2 days)",
                                    r.schedule, su.check_schedule)
            r.at = await _ask(p, p.ask, "    Time it runs (HH:MM)", f"{r.at:%H:%M}", parse_at)
            minutes = int(r.grace.total_seconds() // 60)
            r.grace = await _ask(p, p.ask, "    Late after (grace)", f"{minutes // 60}h", su.check_grace)
    answers.reports = proposals


async def _conntest(p: Prompter, answers: su.Answers, conn: SftpConnection) -> None:
    result = await probe_connection(conn, answers.remote_dir)
    p.say("")
    p.say(f"Connection test (upload, download, delete a probe file): {result.message}")
    note = su.connection_test_note(result)
    if note is not None:
        answers.pending.append(note)
