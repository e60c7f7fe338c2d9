"""Setting up a profile (``report-keeper init``; later the app's first run): no prompts, no SSH.

- answer checks that raise ``ValueError`` with a reason a person can act on
  (``check_host``, ``check_port``, ``check_username``, ``check_zone``, ``check_local_dir``,
  ``check_remote_dir``, ``check_schedule``);
- ``ssh_config_hosts(path)``: the ``Host`` aliases of an ssh config, offered as hosts;
- ``default_username()``, ``default_local_dir(profile)``, ``default_zone()``: what a question
  offers first;
- ``remote_dir_answer(home, chosen)``: a folder picked on the server as the profile names it
  (relative to the login folder when it lies under it); ``parent_folder``, ``child_folder``,
  ``typed_folder``;
- ``propose_reports(files, tz)``: the reports a folder holds, each with its inferred schedule;
- ``render_config(answers, existing=None)``: the TOML text (tomlkit), merged into an existing
  file's text when given (its other profiles and comments are kept); checked by loading it
  with ``parse_profile`` (and the size limit) before anything is written; within
  ``parsed_once()`` (all of ``init``) a text merged into is parsed once, however often it is
  rendered with one profile (the checks before the questions, then the save);
- ``text_to_merge_into(path)``: an existing config's text as ``load_config`` reads it, or
  ``ConfigError`` for one over the size limit or not UTF-8 (its bytes are never replaced);
- ``write_config(path, text, force=False)``: written 0600 through a temporary file; without
  ``force`` it is linked into place, so a file that appeared meanwhile is never replaced; with
  ``force`` renamed over the old file after a backup copy;
- ``save_config(path, answers, force=False, replacing=None)``: render, write and create the
  local folder: the one way both ``init`` and the app's first run write a profile;
- ``connection_test_note(result)``, ``command_options(path, profile)``,
  ``next_steps(path, profile)``: what is pending and what to run next, in words.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import getpass
import os
import posixpath
import re
import shlex
import shutil
import threading
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import tomlkit

from tui.core import clock
from tui.core.config import (
    DEFAULT_PROFILE,
    MAX_CONFIG_BYTES,
    ZONE_ERRORS,
    ConfigError,
    default_config_path,
    not_utf8,
    parse_grace,
    parse_profile,
    read_config_bytes,
    system_timezone,
)
from tui.core.config import (
    default_local_dir as default_local_dir,  # what the local folder question offers
)
from tui.core.durable import fsync_dir
from tui.core.model import ConnTestResult, RemoteFile
from tui.core.names import folder_refusal, parse_name, profile_args
from tui.core.schedule import TRUSTED_CONFIDENCE, infer_schedule, parse_schedule, trusted

REPORT_SUFFIXES = (".xlsx", ".xlsm")
#: Below this share of the history explained (or with deliveries on fewer than
#: ``TRUSTED_DAYS`` days), a schedule is left to be inferred over time (``schedule.trusted``).
CONFIDENT = TRUSTED_CONFIDENCE
T = TypeVar("T")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:%-]{0,252}|\[[0-9A-Fa-f:.]+\]")


class ConfigExists(Exception):
    """The config file exists and ``force`` was not given (or it changed since it was read)."""


#: What the merge puts between a config's text and the profile table it adds, at most (a line
#: break where the text does not end with an empty line; none where it does).
MERGE_SEPARATOR_BYTES = 2


class ConfigTooLarge(ConfigError):
    """The config with this profile would be larger than ``MAX_CONFIG_BYTES``: written, it
    would not load. Nothing is written."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(None, None, f"with this profile it would be {size:,} bytes, over the limit of "
                         f"{MAX_CONFIG_BYTES:,} bytes ({MAX_CONFIG_BYTES // 1024} KiB) a config file may have; "
                         "remove what it no longer needs")


def check_host(text: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError("a host name is needed (or a Host alias from ~/.ssh/config)")
    if not _HOST.fullmatch(text):
        raise ValueError(f"{text!r} is not a host name: no spaces, no scheme (sftp://) and no path")
    return text


def check_port(text: str | int) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a port number (1 to 65535)") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (1 to 65535)")
    return port


def check_username(text: str) -> str:
    text = text.strip()
    if not text or not text.isprintable() or any(c.isspace() for c in text) or text.startswith("-"):
        raise ValueError("a user name has no spaces or control characters and does not start with '-'")
    return text


def check_zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text.strip())
    except ZONE_ERRORS:
        raise ValueError(f"{text!r} is not a time zone; use an IANA name like America/Chicago") from None


def check_local_dir(text: str) -> Path:
    text = text.strip()
    if not text or not text.isprintable():
        raise ValueError("a folder path is needed")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a folder")
    return path.absolute()


def check_local_dir_for(answers: Answers, text: str) -> Path:
    """``check_local_dir``, then whether the profile would load with it beside the answers so
    far: no download folder may be SSH's own, report-keeper's own, ... (the config's rules)."""
    path = check_local_dir(text)
    try:
        render_config(dataclasses.replace(answers, local_dir=path, reports=[], pending=[]))
    except ConfigError as exc:
        if (exc.key or "").rsplit(".", 1)[-1] == "local_dir":
            raise ValueError(exc.reason) from None
    return path


def check_remote_dir(text: str) -> str:
    """A folder on the server as typed (empty: the login folder, ``.``)."""
    text = text.strip() or "."
    if not text.isprintable():
        raise ValueError("a folder path has no control characters")
    reason = folder_refusal(text)  # as the config would refuse it
    if reason is not None:
        raise ValueError(reason)
    return text


def check_schedule(text: str) -> str:
    """A schedule as the config writes it (``daily``, ``weekly:MON,THU``, ...)."""
    parse_schedule(text)
    return text.strip()


def check_grace(text: str) -> timedelta:
    """A report's grace as the config accepts it (``2h``, ``90m``; at most 31 days)."""
    return parse_grace(text.strip())


def default_username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return ""


def default_zone() -> str:
    """The machine's IANA time zone name (UTC when it cannot be told)."""
    zone = system_timezone()
    return zone.key if isinstance(zone, ZoneInfo) else "UTC"


def parent_folder(path: str) -> str:
    """The folder above an absolute server path (``/`` stays ``/``)."""
    return posixpath.dirname(path.rstrip("/")) or "/"


def child_folder(path: str, name: str) -> str:
    return path.rstrip("/") + "/" + name if path != "/" else "/" + name


def typed_folder(current: str, typed: str) -> str:
    """A folder typed in the picker: absolute as typed, else under the folder shown."""
    typed = check_remote_dir(typed)
    return typed if typed.startswith("/") else child_folder(current, typed)


def remote_dir_answer(home: str, chosen: str) -> str:
    """The profile's ``remote_dir`` for a folder chosen on the server: relative to the login
    folder ``home`` when it lies under it (``.`` for the login folder itself), else absolute."""
    prefix = home.rstrip("/") + "/"
    if chosen == home:
        return "."
    return chosen[len(prefix):] if chosen.startswith(prefix) else chosen


def ssh_config_hosts(path: Path) -> list[str]:
    """``Host`` aliases (no wildcards) of an OpenSSH client config."""
    try:
        lines = path.expanduser().read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    hosts: list[str] = []
    for line in lines:
        words = line.strip().split()
        if len(words) >= 2 and words[0].lower() == "host":
            hosts += [w for w in words[1:] if not any(c in w for c in "*?!") and w not in hosts]
    return hosts


@dataclass
class ReportProposal:
    """A report found in the folder and the schedule its history suggests."""

    name: str
    files: int
    schedule: str
    at: time
    grace: timedelta = timedelta(hours=2)
    confidence: float = 0.0
    keep: bool = True

    def describe(self) -> str:
        return f"{parse_schedule(self.schedule).describe()} at {self.at:%H:%M}"


def propose_reports(files: Iterable[RemoteFile], tz: tzinfo) -> list[ReportProposal]:
    """One proposal per report base name among the folder's Excel files, most files first."""
    by_report: dict[str, list[datetime]] = defaultdict(list)
    for f in files:
        if not f.name.lower().endswith(REPORT_SUFFIXES):
            continue
        parsed = parse_name(f.name, mtime=f.mtime, tz=tz)
        by_report[parsed.base].append(parsed.delivered_at or f.mtime)
    out = []
    for name, moments in by_report.items():
        guess = infer_schedule(moments, tz)
        sched = guess.schedule
        if sched.kind == "every" and sched.anchor is not None:
            text = f"every {sched.interval} days from {sched.anchor.isoformat()}"
        else:
            text = str(sched)
        out.append(ReportProposal(name=name, files=len(moments), schedule=text, at=guess.at,
                                  confidence=guess.confidence, keep=trusted(guess, moments, tz)))
    return sorted(out, key=lambda p: (-p.files, p.name))


@dataclass
class Answers:
    """Everything ``init`` learned; ``None`` leaves a setting to its default."""

    profile: str
    host: str
    port: int | None = None
    username: str | None = None
    key: Path | None = None
    remote_dir: str = "."
    local_dir: Path | None = None
    timezone: str | None = None
    reports: list[ReportProposal] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    written_by: str = "'report-keeper init'"  # named in the file's first comment


def answers_from_form(profile: str, *, host: str, port: str, username: str, local_dir: str,
                      timezone: str, remote_dir: str = "") -> tuple[Answers, dict[str, str]]:
    """The answers of a form filled at once (the app's first run), and why each field that
    is not usable is not (field name -> reason; empty when all are). A blank port or user name
    is left to ~/.ssh/config (else 22 and the local user), as ``init`` does; a blank server
    folder is the login folder (``.``)."""
    errors: dict[str, str] = {}

    def checked(name: str, check: Callable[[str], T], text: str) -> T | None:
        try:
            return check(text)
        except ValueError as exc:
            errors[name] = str(exc)
            return None

    port_number = checked("port", check_port, port) if port.strip() else None
    zone = checked("timezone", check_zone, timezone)
    answers = Answers(
        profile=profile,
        host=checked("host", check_host, host) or host.strip(),
        port=port_number if port_number != 22 else None,
        username=checked("username", check_username, username) if username.strip() else None,
        remote_dir=checked("remote_dir", check_remote_dir, remote_dir) or ".",
        local_dir=checked("local_dir", check_local_dir, local_dir),
        timezone=zone.key if zone is not None else None,
    )
    if not errors:  # each answer is fine alone: would the profile load? (say, no local_dir in ~/.ssh)
        try:
            render_config(answers)
        except ConfigError as exc:
            name = (exc.key or "").rsplit(".", 1)[-1]
            errors[name if name in _FORM_FIELDS else "host"] = exc.reason
    return answers, errors


#: The fields of the first-run form (as ``answers_from_form`` names them in its errors).
_FORM_FIELDS = ("host", "port", "username", "remote_dir", "local_dir", "timezone")


def _comment(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


class _Parsed:
    """The last text a command's merge parsed with tomlkit, and its document (or the error
    its parse raised), for one profile's name. A render sets that profile's table in the
    document and leaves it there: setting it again gives the text a fresh parse of the file
    would (the file's other tables are never touched). A render that raises forgets it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple[str, str | None] | None = None
        self.doc: tomlkit.TOMLDocument | None = None
        self.error: Exception | None = None

    def parse(self, text: str, profile: str | None) -> tomlkit.TOMLDocument:
        """``text`` parsed, for a render of ``profile`` (None: only whether it parses)."""
        if self.key is not None and self.key[0] == text and (profile is None or self.key[1] in (None, profile)):
            if self.error is not None:
                raise self.error
            assert self.doc is not None
            self.key = (text, profile if profile is not None else self.key[1])
            return self.doc
        self.key, self.doc, self.error = None, None, None
        try:
            doc = tomlkit.parse(text)
        except Exception as exc:  # kept: raised again to each caller, as the parse's
            self.key, self.error = (text, None), exc
            raise
        self.key, self.doc = (text, profile), doc
        return doc

    def forget(self) -> None:
        self.key, self.doc, self.error = None, None, None


_parsed: _Parsed | None = None


@contextlib.contextmanager
def parsed_once() -> Iterator[None]:
    """Within this, a config text merged into is parsed once, however often it is rendered
    with one profile or asked whether it is TOML (``init``'s checks before its questions, then
    its save: a file of 1 MiB takes ~4 s of CPU to parse with tomlkit)."""
    global _parsed
    before, _parsed = _parsed, _Parsed()
    try:
        yield
    finally:
        _parsed = before


def render_config(answers: Answers, existing: str | None = None) -> str:
    """The config text with this profile (replacing one of the same name in ``existing``)."""
    if existing is None:
        doc = tomlkit.document()
        doc.add(tomlkit.comment("Report Keeper configuration (see the README: Configuration)."))
        text = _render_into(doc, answers)
    elif (kept := _parsed) is None or not existing:  # an empty text: nothing to keep
        text = _render_into(tomlkit.parse(existing), answers)
    else:
        with kept.lock:
            doc = kept.parse(existing, answers.profile)  # the parse's own error is kept
            try:
                text = _render_into(doc, answers)
            except BaseException:
                kept.forget()
                raise
    # What we write must load, its new profile included (raises ConfigError if not): the whole
    # text is read as TOML (the merge may have made it something the reader refuses) and its
    # file-wide settings checked, but of its profiles only the new one is read (the others'
    # paths, which its checks compare with, excepted): what the file's read says of it.
    size = len(text.encode("utf-8"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigTooLarge(size)
    parse_profile(tomllib.loads(text), answers.profile)
    return text


def _render_into(doc: tomlkit.TOMLDocument, answers: Answers) -> str:
    """``doc`` with this profile's table set in it (replacing its old one), as text."""
    profiles = doc.get("profile")
    if profiles is None:
        profiles = tomlkit.table(is_super_table=True)
        doc.add("profile", profiles)
    elif not isinstance(profiles, MutableMapping):  # ``profile = 3``: nothing to merge into
        raise ConfigError(None, "profile", "expected a table: [profile.NAME]")
    profiles[answers.profile] = _profile_table(answers)
    return tomlkit.dumps(doc)


def _profile_table(answers: Answers) -> tomlkit.items.Table:
    t = tomlkit.table()
    now = clock.now()
    t.add(tomlkit.comment(_comment(f"Written by {answers.written_by} on {now:%Y-%m-%d %H:%M} UTC.")))
    for note in answers.pending:
        t.add(tomlkit.comment(_comment(f"PENDING: {note}")))
    t.add("host", answers.host)
    if answers.port is not None:
        t.add("port", answers.port)
    if answers.username is not None:
        t.add("username", answers.username)
    if answers.key is not None:
        t.add("key", str(answers.key))
    t.add("remote_dir", answers.remote_dir)
    if answers.local_dir is not None:
        t.add("local_dir", str(answers.local_dir))
    if answers.timezone is not None:
        t.add("timezone", answers.timezone)
    kept = [r for r in answers.reports if r.keep]
    if kept:
        reports = tomlkit.aot()
        for r in kept:
            rt = tomlkit.table()
            rt.add("name", r.name)
            rt.add("schedule", r.schedule)
            rt.add("at", f"{r.at:%H:%M}")
            minutes = int(r.grace.total_seconds() // 60)
            rt.add("grace", f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m")
            reports.append(rt)
        t.add("report", reports)
    skipped = [r.name for r in answers.reports if not r.keep]
    if skipped:
        t.add(tomlkit.comment(_comment(
            "Found but not configured (tracked with an inferred schedule): " + ", ".join(skipped))))
    return t


def write_config(path: Path, text: str, *, force: bool = False) -> Path | None:
    """Write ``text`` to ``path`` (0600, atomically); returns the backup of an old file.

    Without ``force`` the file is linked into place, which fails when anything (a file, a
    link, a folder) holds the name by then: ``ConfigExists``, nothing replaced."""
    path = path.expanduser()
    if os.path.lexists(path) and not force:
        raise ConfigExists(str(path))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    backup = None
    if force and path.exists():
        stamp = clock.now().strftime("%Y%m%dT%H%M%S")
        backup = path.with_name(f"{path.name}.bak-{stamp}")
        n = 1
        while backup.exists():
            n += 1
            backup = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        shutil.copy2(path, backup)
        os.chmod(backup, 0o600)
    tmp = _write_temporary(path, text)
    try:
        if force:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return backup


def _write_temporary(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)  # a leftover of this process id: ours
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _link_new(tmp: Path, path: Path) -> None:
    """Put ``tmp`` in place as ``path`` only if nothing holds that name."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ConfigExists(str(path)) from None
    except OSError as exc:
        # A file system without hard links: the check just made, then a rename.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise ConfigExists(str(path)) from None
        os.replace(tmp, path)


@dataclass(frozen=True)
class Saved:
    """A written config: where, the backup of the file it replaced, the text written."""

    path: Path
    backup: Path | None
    text: str


def replaced_whole(existing: str) -> bool:
    """Whether ``save_config(force=True)`` replaces a file holding ``existing`` as a whole:
    it is no TOML document, so this profile cannot be merged into it."""
    kept = _parsed
    try:
        if kept is None:
            tomlkit.parse(existing)
        else:
            with kept.lock:
                kept.parse(existing, None)
    except Exception:  # noqa: BLE001 - as save_config: whatever the parser raises
        return True
    return False


def text_to_merge_into(path: Path) -> str:
    """The text of the config at ``path`` that a profile is saved into, exactly as its bytes
    are, read as ``load_config`` reads it. Raises ``ConfigError`` for a file ``load_config``
    refuses that a merge would still take: one over the size limit, or one that is not UTF-8
    yet TOML once its bad bytes are replaced (merged, those bytes would be lost, replaced by
    U+FFFD), or one that cannot be read. A file that is not UTF-8 and no TOML either is given
    as read with replacement: it is replaced whole, and its backup keeps its bytes."""
    raw = read_config_bytes(path, explicit=True)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lossy = raw.decode("utf-8", errors="replace")
        if not replaced_whole(lossy):
            raise not_utf8(path, raw, exc) from None
        return lossy


def save_config(path: Path, answers: Answers, *, force: bool = False, replacing: str | None = None) -> Saved:
    """Write ``answers`` as the profile of the config at ``path``, then create the local folder.

    - neither flag: a new file; ``ConfigExists`` when one is there (nothing replaced);
    - ``force``: this profile replaces the one of the same name in the file (its other profiles
      and comments are kept, a file that is no TOML is replaced whole), after a backup copy;
      a file ``load_config`` refuses for its bytes or size is left as it is (``ConfigError``);
    - ``replacing``: the file this caller wrote before (say, with notes of what was pending) is
      replaced, only while it still holds exactly that text (else ``ConfigExists``), no backup.

    A local folder that cannot be created is noted in ``answers.pending`` (sync tries again).
    Raises ``ConfigExists``, ``ConfigError`` or ``OSError`` (nothing written then)."""
    path = path.expanduser()
    existing = None
    if force and path.is_file():
        existing = text_to_merge_into(path)
    try:
        text = render_config(answers, existing)
    except ConfigError as exc:
        if exc.file is None:  # a whole-file error of the merged text: name the file
            raise ConfigError(path, exc.key, exc.reason) from None
        raise
    except Exception:
        # Only a file that is no TOML at all is replaced whole (a backup is kept); one that
        # parses but is wrong as a whole is left as it is (the error is raised): replacing it
        # would drop every other profile in it.
        if existing is None or not replaced_whole(existing):
            raise
        text = render_config(answers, None)
    backup = None
    if replacing is not None:
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise ConfigExists(str(path)) from None
        if path.is_symlink() or current != replacing:
            raise ConfigExists(str(path))
        tmp = _write_temporary(path, text)
        try:
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
    else:
        backup = write_config(path, text, force=force)
    if answers.local_dir is not None:
        try:
            answers.local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            answers.pending.append(f"the local folder {answers.local_dir} could not be created "
                                   f"({exc.strerror or exc}); sync will try again")
    return Saved(path, backup, text)


#: Pending when the set-up was saved before the server's folders could be shown.
FOLDER_NOT_CHOSEN = ("the server folder was not chosen: remote_dir is the login folder ('.'); set it "
                     "to the folder Alma delivers to (or pick it with 'report-keeper init --force' once "
                     "the server can be reached)")


def connection_test_note(result: ConnTestResult) -> str | None:
    """What is pending after a connection test (None: it passed)."""
    return None if result.ok else f"the connection test failed: {result.message}"


def command_options(path: Path, profile: str) -> str:
    """`` --config F --profile P`` as far as they differ from the defaults, quoted for a
    shell: the commands shown are pasted into one, and a path may hold spaces or ``;``."""
    opt = "" if str(path) == str(default_config_path()) else f" --config {shlex.quote(str(path))}"
    return opt + ("" if profile == DEFAULT_PROFILE else "".join(f" {shlex.quote(w)}" for w in profile_args(profile)))


def next_steps(path: Path, profile: str, pending: bool) -> list[str]:
    """What to run next, one sentence each; every command ends its line, so it can be copied
    as it stands."""
    opt = command_options(path, profile)
    out = [f"Then run: report-keeper check{opt}"] if pending else []
    out.append(f"To download the reports, run: report-keeper sync{opt}")
    out.append(f"To run that every day, run: report-keeper schedule --install{opt}")
    table = f"profile.{tomlkit.key(profile).as_string()}.notify"  # quoted where TOML needs it
    out.append(f"For alerts, add a [{table}] table to the config (README: Alerts).")
    return out
