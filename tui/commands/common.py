"""Helpers shared by the headless commands."""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import getpass
import json
import json.encoder
import logging
import os
import re
import shlex
import sys
import termios
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TextIO

from tui.core.config import ConfigError, Profile, load_config
from tui.core.model import VerifyResult
from tui.core.names import escape_text, profile_args
from tui.core.status import Exit

log = logging.getLogger("report_keeper.commands")

#: Set once a command has printed its JSON document (the last-resort handler must not add one).
_json_printed = False


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``/``--profile`` on a subcommand without clobbering the top-level ones."""
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="config file")
    parser.add_argument("--profile", metavar="NAME", default=argparse.SUPPRESS, help="profile name")


def load_profile(args: argparse.Namespace, *, need_local_dir: bool = False):
    """The selected profile; raises ``ConfigError`` (callers exit 3).

    ``need_local_dir``: the command downloads, so ``local_dir`` must exist (it is created,
    0700, when missing) and be writable; a folder that cannot be is a configuration error
    reported once, not one failure per file.
    """
    config = load_config(getattr(args, "config", None))
    profile = config.profile(getattr(args, "profile", None))
    if need_local_dir:
        require_local_dir(profile)
    log_earlier_paths(profile)
    return profile


def log_earlier_paths(profile: Profile) -> None:
    """A warning in the log for each ledger or folder an earlier release kept under the
    profile's raw name that the profile uses where it is (``Profile.earlier_paths``)."""
    for kept in profile.earlier_paths:
        log.warning("%s", kept.message)


def earlier_paths_lines(profile: Profile) -> list[str]:
    """The same for a person (the commands' human output), one line each."""
    return [f"report-keeper: warning: {escape_text(kept.message)}" for kept in profile.earlier_paths]


def earlier_paths_json(profile: Profile) -> list[dict[str, str]]:
    """The same for the JSON documents of ``sync`` and ``check`` (``earlier_paths``)."""
    return [kept.to_json() for kept in profile.earlier_paths]


def for_shell(results: Iterable[VerifyResult], args: argparse.Namespace,
              profile: str | None) -> list[VerifyResult]:
    """Verdicts as a headless command shows them (its output, JSON and alerts): a message
    about the reader's limits names the command line that verifies the file again (with the
    run's ``--config`` and ``profile``), where the app names its key."""
    from tui.core.validate import said_for_shell  # noqa: PLC0415 - loaded by the commands that verify

    words = ["report-keeper", "verify"]
    if getattr(args, "config", None):
        words += ["--config", str(args.config)]
    if profile:
        words += profile_args(profile)
    out = []
    for r in results:
        message = said_for_shell(r.message, " ".join(map(shell_word, [*words, r.path])))
        out.append(r if message == r.message else dataclasses.replace(r, message=message))
    return out


def shell_word(word: str) -> str:
    """``word`` quoted for a shell command line shown to the user, on one printable line: as
    ``shlex.quote`` does, or, for a word holding a line break or another control or format
    character (a path from the config or a server's file name), in ``$'...'`` with that
    character escaped (bash, zsh and ksh read it back as the same bytes)."""
    if word.isprintable():
        return shlex.quote(word)
    out = []
    for ch in word:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte of a name that is not UTF-8 (os.fsdecode)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "$'" + "".join(out) + "'"


def require_local_dir(profile: Profile) -> None:
    """Create ``profile.local_dir`` when missing and check that it can be written."""
    problem = local_dir_problem(Path(profile.local_dir))
    if problem is not None:
        raise ConfigError(profile.source, f"profile.{profile.name}.local_dir",
                          f"{problem}; choose a folder you can write to in local_dir, or fix the "
                          "folder's permissions")


def local_dir_problem(path: Path) -> str | None:
    """Create the download folder ``path`` when missing (0700); None when it is a folder that
    can be written, else what is wrong with it (without what to do: that depends on where
    the path was given)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        if path.exists() and not path.is_dir():  # mkdir's "File exists" for a file there
            return f"{path} exists but is not a folder"
        return f"{path} cannot be created ({exc.strerror or exc})"
    if not path.is_dir():
        return f"{path} exists but is not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} cannot be written (Permission denied)"
    return None


def terminal_passphrase_cb():
    """A key passphrase callback for the headless commands: on a terminal it asks (getpass,
    never echoed, never stored); without one (cron) there is nobody to ask, so None, and an
    encrypted key must come from ssh-agent."""
    if not sys.stdin.isatty():
        return None

    async def ask(path) -> str | None:
        # the key's path comes from the config: escaped, it cannot write to the terminal
        prompt = f"Passphrase for {one_line(str(path))}: "
        try:
            tty = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        except OSError:  # no controlling terminal after all: the standard question
            try:
                return await asyncio.to_thread(getpass.getpass, prompt)
            except (EOFError, KeyboardInterrupt):
                return None
        try:
            return await _ask_unechoed(tty, prompt)
        finally:
            os.close(tty)

    return ask


#: Bytes of an answer kept (a terminal's own line is at most 4096; OpenSSH keeps 1023).
_LONGEST_ANSWER = 4096


async def _ask_unechoed(tty: int, prompt: str) -> str | None:
    """One line read from the terminal ``tty`` without echo, as ``getpass`` asks, but awaited
    on the event loop rather than in a thread: Ctrl-C (a cancel of the command's task) ends
    the question at once and gives the terminal its echo back. ``getpass`` in a thread cannot
    be stopped: the run waited for Enter after a Ctrl-C. None at end of input (Ctrl-D)."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[bytes | None] = loop.create_future()
    got = bytearray()

    def readable() -> None:
        try:
            chunk = os.read(tty, 1024)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:  # end of input
            if not line.done():
                line.set_result(None)
            return
        got.extend(chunk[:max(0, _LONGEST_ANSWER - len(got))])  # the rest of a long line is dropped
        if b"\n" in chunk and not line.done():
            line.set_result(bytes(got.partition(b"\n")[0]).rstrip(b"\r"))

    saved = termios.tcgetattr(tty)
    quiet = list(saved)
    # A line at a time (the terminal bounds it and Enter ends it), Ctrl-C as usual, no echo:
    # also on a terminal another program left raw.
    quiet[0] |= termios.ICRNL  # iflag
    quiet[3] = (quiet[3] | termios.ICANON | termios.ISIG) & ~termios.ECHO  # lflag
    was_blocking = os.get_blocking(tty)
    termios.tcsetattr(tty, termios.TCSAFLUSH, quiet)
    try:
        os.write(tty, prompt.encode(errors="replace"))
        os.set_blocking(tty, False)
        loop.add_reader(tty, readable)
        try:
            answer = await line
        finally:
            loop.remove_reader(tty)
    finally:
        os.set_blocking(tty, was_blocking)
        termios.tcsetattr(tty, termios.TCSAFLUSH, saved)
        try:
            os.write(tty, b"\n")  # the Enter that was not echoed
        except OSError:
            pass
    return None if answer is None else answer.decode(sys.stdin.encoding or "utf-8", errors="replace")


def print_json(document: Mapping[str, object], *, for_parent: bool = False) -> None:
    """Exactly one JSON document on stdout (:func:`json_text`). ``for_parent``: for the
    process that started this one, which reads it and prints the run's document itself
    (``sync --all-profiles`` in several processes): compact and ASCII, written by the JSON
    library's fast encoder (the indented one is pure Python: a tenth of a second for a
    consortium's run, once in each process and again in the parent)."""
    global _json_printed
    _json_printed = True
    if for_parent:
        sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(json_text(document) + "\n")
    sys.stdout.flush()


# Outside ASCII (and DEL): json.dumps(ensure_ascii=False) writes these as they are.
_JSON_MAYBE_CONTROL = re.compile(r"[^\x00-\x7e]")


def _json_escaped(m: re.Match[str]) -> str:
    ch = m.group()
    if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"):
        return ch
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON writes a character beyond U+FFFF as its UTF-16 pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(document: Mapping[str, object]) -> str:
    """``document`` as readable JSON (accents and CJK as they are) in which the characters
    that json.dumps leaves raw and a terminal would obey or hide (DEL, the 8-bit controls such
    as CSI ``\\x9b``, direction overrides, other format characters) are ``\\uXXXX``
    escapes: the same values for every JSON reader, inert on a screen. Outside strings JSON
    holds only ASCII, so only characters inside strings are escaped.

    The text is ``json.dumps(document, ensure_ascii=False, indent=2)``'s, character for
    character (:func:`_indented`), escaped piece by piece."""
    return _indented(document, 0, set())


def _inert(text: str) -> str:
    """``text`` with :data:`_JSON_MAYBE_CONTROL`'s characters escaped (ASCII text without DEL,
    nearly every piece, is returned as it is without a search)."""
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_MAYBE_CONTROL.sub(_json_escaped, text)


#: How json.dumps(ensure_ascii=False) writes a string (its C function where there is one).
_encode_string = json.encoder.encode_basestring

#: json.dumps' own C encoder (ensure_ascii=False) per depth: it writes a container of
#: scalars whole, its items separated by a line break and that depth's indent.
_LEVEL_ENCODERS: dict[int, json.JSONEncoder] = {}


def _level_encoder(level: int) -> json.JSONEncoder:
    encoder = _LEVEL_ENCODERS.get(level)
    if encoder is None:
        encoder = json.JSONEncoder(ensure_ascii=False, separators=(",\n" + "  " * level, ": "))
        _LEVEL_ENCODERS[level] = encoder
    return encoder


#: What json.dumps writes as an object or an array. With an indent, a non-empty one spreads
#: over lines of its own; an empty one is ``{}`` or ``[]``, like a scalar.
_CONTAINERS = (dict, list, tuple)


def _indented(value: object, level: int, path: set[int]) -> str:
    """``value`` at depth ``level`` as ``json.dumps(..., ensure_ascii=False, indent=2)``
    writes it, pieces passed through :func:`_inert`. The standard library's indenting encoder
    is pure Python, a generator per level for every value: a report checked over decades
    (tens of thousands of runs and problems, tens of MB) took seconds in it. Here an object or
    array of scalars (nearly all of them: each run, each problem) is written by the C encoder
    in one call with the indent as its item separator, and only the containers above them are
    walked in Python; scalars, keys and errors (an object json cannot write, a circular
    reference) are the C encoder's or the same as its own, so the text is the same."""
    encoder = _level_encoder(level + 1)
    if not isinstance(value, _CONTAINERS) or not value:
        return _inert(encoder.encode(value))
    if id(value) in path:
        raise ValueError("Circular reference detected")
    items: Iterable[object] = value.values() if isinstance(value, dict) else value
    indent = "  " * (level + 1)
    if not any([v for v in items if isinstance(v, _CONTAINERS)]):  # scalars or empty: whole
        text = _inert(encoder.encode(value))
        return f"{text[0]}\n{indent}{text[1:-1]}\n{'  ' * level}{text[-1]}"
    path.add(id(value))
    if isinstance(value, dict):
        parts = [f"{_key(k, encoder)}: {_indented(v, level + 1, path)}" for k, v in value.items()]
    else:
        parts = [_indented(v, level + 1, path) for v in value]
    path.discard(id(value))
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    body = (",\n" + indent).join(parts)
    return f"{opening}\n{indent}{body}\n{'  ' * level}{closing}"


def _key(key: object, encoder: json.JSONEncoder) -> str:
    """An object's key as json.dumps writes it (a number, true, false and null as text)."""
    if isinstance(key, str):
        return _inert(_encode_string(key))
    text = _inert(encoder.encode({key: None}))  # '{"1.5": null}'
    return text[1:-len(": null}")]


class TerminalText:
    """The human output of a headless command: every write reaches ``raw`` with its control
    and format characters escaped (:func:`tui.core.names.escape_text`), line breaks kept.
    Whatever a line quotes (a server's name or words, a workbook's sheet name or header, a
    value of the config, the environment or an operating-system error) cannot move the
    cursor, clear the screen, set the window title or reverse the text. A value that may hold
    a line break is escaped where it is written (``escape_name``, ``one_line``): only there is
    it known to be one value."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        self.raw.write(escape_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()

    def __getattr__(self, name: str) -> object:  # encoding, errors, buffer...: the stream's own
        return getattr(self.raw, name)


def terminal_text(stream: TextIO) -> TextIO:
    """``stream`` behind a :class:`TerminalText` (once)."""
    if isinstance(stream, TerminalText):
        return stream
    return TerminalText(stream)  # type: ignore[return-value]  # writes text as a TextIO does


def raw_stream(stream: TextIO) -> TextIO:
    """The stream under a :class:`TerminalText`: for rich, whose own colours and cursor moves
    must reach the terminal; what it is given to print is escaped first (rich's ``Text``, never
    markup)."""
    return stream.raw if isinstance(stream, TerminalText) else stream


@contextmanager
def guarded_output() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` behind :class:`TerminalText` while a headless command
    runs (the TUI draws its own screen and is never behind it)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = terminal_text(sys.stdout), terminal_text(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def one_line(text: str, limit: int = 600) -> str:
    """``text`` as one printable line: line breaks become spaces, other control and format
    characters are escaped (a value from a file or a server cannot move the cursor or
    recolour the terminal), and very long text is cut."""
    out = []
    for ch in str(text):
        if ch in "\r\n\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) <= 0xFF else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    line = " ".join("".join(out).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


#: ``error_kind`` of a command that could not start (exit 3): ``usage``, an option, an argument
#: or ``REPORT_KEEPER_NOW`` it cannot use; ``config``, the config file or the profile; ``ledger``,
#: the ledger cannot be opened.
StartKind = Literal["usage", "config", "ledger"]


class OptionError(ConfigError):
    """Options that cannot go together, or an option's value out of range: a usage error
    (exit 3, ``"error_kind": "usage"``) that callers handle with the configuration's."""


def new_run() -> None:
    """A new command starts: no document printed yet (``main`` may run more than once in a
    process: the tests, a program that embeds it)."""
    global _json_printed
    _json_printed = False


def fail_usage(message: str | Exception, args: argparse.Namespace | None = None, *,
               kind: StartKind | None = None) -> int:
    """A command could not start: the error as one line on stderr and, when ``args`` asked for
    ``--json``, one document of the command's usual shape saying so (:func:`print_error_document`);
    returns exit code 3. ``kind`` is the document's ``error_kind``; by default ``config`` for a
    :class:`ConfigError` (an :class:`OptionError` is ``usage``), else ``usage``."""
    line = one_line(str(message))
    if kind is None:
        config = isinstance(message, ConfigError) and not isinstance(message, OptionError)
        kind = "config" if config else "usage"
    if args is not None and getattr(args, "json", False):
        print_error_document(getattr(args, "command", None), line, kind,
                             all_profiles=getattr(args, "all_profiles", False))
    sys.stderr.write(f"report-keeper: {line}\n")
    sys.stderr.flush()
    return int(Exit.USAGE)


#: The fields of each command's JSON document, empty: an error document keeps the shape.
_EMPTY_FIELDS: dict[str | None, dict[str, object]] = {
    "sync": {"downloaded": [], "skipped": [], "failed": [], "refused": [], "files": [], "lost": [],
             "lost_versions": [], "refetched": [], "missing_locally": [], "ignored": [], "folders": [],
             "purged": [], "waiting_for_export": [], "purge_errors": [], "earlier_paths": []},
    "purge": {"dry_run": False, "policy": {}, "purged": [], "waiting_for_export": [], "errors": [],
              "withdrawn": [], "parts_removed": 0, "cache_entries_removed": 0,
              "refused": None},
    "check": {"now": None, "connection": {"ok": None, "message": "", "write_test": "skipped", "steps": {}},
              "reports": [], "refused": [], "ignored": [], "folders": [], "earlier_paths": []},
    "verify": {"files": []},
    "export": {"out": None, "format": None, "rows": 0, "files": 0, "reports": [], "since": None, "until": None,
               "columns": [], "pseudonymized_columns": [], "pseudonymized": False, "identifier_columns": [],
               "identifier_columns_not_found": [], "identifier_columns_absent": [], "key_file": None,
               "key_id": None, "key_created": False, "key_moved_from": None, "pseudonym_rule": None,
               "imprecise_identifiers": [],
               "days": {"included": [], "empty": [], "closed": [], "missing": [], "excluded": []},
               "days_by_report": {}, "superseded": [], "column_drift": [], "merged_columns": [],
               "columns_not_merged": [], "renamed_columns": [], "not_held": [], "few_rows": [], "in_no_run": [],
               "files_read": 0, "files_from_cache": 0,
               "seconds": 0.0, "export_id": None},
    "notify": {"profile": None, "channels": []},
}


INTERRUPTED = "Interrupted (Ctrl-C) before it finished; nothing it did is lost. Run it again."


def error_document(command: str | None, error: str, error_kind: str, *,
                   all_profiles: bool = False) -> dict[str, object]:
    """The JSON document of a command that has no result: its usual shape, every field present
    and empty (``{"status", "profiles": {}}`` for ``--all-profiles``), critical, with ``error``
    (one line) and ``error_kind``."""
    document: dict[str, object] = {"status": "critical"}
    if all_profiles:
        document["profiles"] = {}
    else:
        document.update(copy.deepcopy(_EMPTY_FIELDS.get(command, {})))
    document.update({"error": error, "error_kind": error_kind})
    return document


def interrupted_document(command: str | None, *, all_profiles: bool = False) -> dict[str, object]:
    """The JSON document of a command stopped by Ctrl-C before it had a result."""
    return error_document(command, INTERRUPTED, "interrupted", all_profiles=all_profiles)


def print_error_document(command: str | None, error: str, error_kind: str, *, all_profiles: bool = False) -> None:
    """:func:`error_document` on stdout, unless a document was printed already (never two) or
    stdout is gone (the exit code still tells)."""
    if _json_printed or sys.stdout is None:
        return
    try:
        print_json(error_document(command, error, error_kind, all_profiles=all_profiles))
    except OSError:
        pass


def fail_interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C (SIGINT) reached the top of a command that does not handle it itself: one line
    on stderr and, with ``--json``, one JSON document if none was printed yet (cron and
    monitoring read it); exit 2, because nothing says the reports are safe."""
    log.info("interrupted (SIGINT)")
    if getattr(args, "json", False):
        print_error_document(getattr(args, "command", None), INTERRUPTED, "interrupted",
                             all_profiles=getattr(args, "all_profiles", False))
    try:
        sys.stderr.write(f"report-keeper: {INTERRUPTED}\n")
        sys.stderr.flush()
    except OSError:
        pass
    return int(Exit.CRITICAL)


def fail_unexpected(exc: BaseException, args: argparse.Namespace, log_file: Path | None) -> int:
    """A bug reached the top: one line on stderr naming the log that holds the details (and,
    with ``--json``, one JSON document if none was printed yet); exit 2, because nothing
    says the reports are safe."""
    log.error("unexpected error", exc_info=exc)
    where = f"the details are in {log_file}" if log_file else "run again with a writable log folder for details"
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = one_line(f"unexpected error ({what}); this is a bug: {where}. Please report it.")
    if getattr(args, "json", False):
        print_error_document(getattr(args, "command", None), message, "internal",
                             all_profiles=bool(getattr(args, "all_profiles", False)))
    sys.stderr.write(f"report-keeper: {message}\n")
    sys.stderr.flush()
    return int(Exit.CRITICAL)
