"""Unattended runs: the systemd user timer (or crontab line) that runs ``sync`` then ``check``.

``plan_schedule(profile, config_path)`` works out when and what to run; ``systemd_units()`` and
``crontab_line()`` give the text; ``install()`` and ``uninstall()`` put it in place with the
system's own tools (``systemctl --user``, else ``crontab``), idempotently. The tools are run
through ``runner`` (``subprocess.run`` by default) so a caller can say where they are.

When: every day, after the latest report of the profile is due: the largest ``at + grace`` of
its reports (configured, else inferred from the ledger's history, else 07:00 + grace), plus
``MARGIN``, rounded up to five minutes, in the profile's time zone. systemd's ``OnCalendar``
takes the zone itself; cron has no zone, so the time is converted to the machine's zone with
the largest difference the two zones have over the coming year (where only one changes to
summer time, the line runs an hour late part of the year rather than an hour early).
``Persistent=true`` makes a timer missed while the machine was off run at the next boot.

Secrets: an SMTP password is never written into a unit or a crontab. Both read
``secrets.env`` beside the config file when it exists (``KEY='value'`` lines, mode 0600);
the crontab line runs it as sh, so nothing is scheduled while another user could read it,
write it or its folder, or replace a folder above (:func:`_refuse_writable_by_others`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shlex
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import platformdirs

from tui.core import clock
from tui.core.config import (
    APP_NAME,
    SECRETS_FILE,
    Profile,
    config_file,
    default_config_path,
    secrets_file,
    system_timezone,
)
from tui.core.health import evaluate
from tui.core.ledger import Ledger, LedgerError
from tui.core.names import MAX_PROFILE_FILE_PART, escape_name, profile_args

MARGIN = timedelta(minutes=10)
# The folders the default ledger, local folder, log and caches are under, and the zone of a
# profile without ``timezone``. Set in the shell that ran ``schedule``, they are given to the
# nightly run too: cron's environment has none of them and a user manager's need not, and
# without them the run took another ledger and downloaded everything again into another
# folder, or judged the day in another zone.
PATH_ENV = ("XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "TZ")
DEFAULT_AT = time(7, 0)
MARKER = "# report-keeper-schedule"
ALL_NAME = "report-keeper.all-profiles"
# Vixie cron (Debian's cron, BSD's) keeps this many characters of a line's command (its
# MAX_COMMAND less the final NUL) and drops the rest without a word.
CRON_MAX_COMMAND = 999
HEADER = "# Written by 'report-keeper schedule --install'; 'report-keeper schedule --uninstall' removes it."
#: The characters of a profile's name a unit's name holds as they are (each other one is
#: written ``_``, and a hash tells the names apart): ASCII only, as systemd's unit names are.
_UNIT_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
#: The most characters of a profile's name a unit's name holds: the name, ``.service`` and
#: the temporary file written before it stay within the 255 bytes of a unit's or file's name.
MAX_UNIT_PART = MAX_PROFILE_FILE_PART

class Runner(Protocol):
    """How commands are run (``subprocess.run``; the tests pass a recorder)."""

    def __call__(self, args: list[str], *, capture_output: bool, timeout: float,
                 input: bytes | None) -> subprocess.CompletedProcess[bytes]: ...


class ScheduleError(Exception):
    """Something the user has to fix; ``str()`` says what."""


@dataclass(frozen=True)
class SchedulePlan:
    profile: str
    config: Path  # absolute
    name: str  # unit base name: report-keeper-<profile>[-<hash>]
    at: time  # local time of day in ``tz``
    tz: tzinfo
    command: tuple[str, ...]  # the program: (report-keeper,) or (python, -m, tui)
    env_file: Path
    reason: str  # which report decided the time
    environment: tuple[tuple[str, str], ...] = ()  # PATH_ENV values (and PYTHONPATH) to pass on
    all_profiles: bool = False  # runs every profile of the config (``profile`` is empty)
    #: The names earlier releases gave this profile's units and crontab line
    #: (:func:`earlier_unit_names`): installing removes what they left, uninstalling too.
    earlier: tuple[str, ...] = ()

    def argv(self, sub: str) -> list[str]:
        which = ["--all-profiles"] if self.all_profiles else profile_args(self.profile)
        return [*self.command, sub, "--config", str(self.config), *which]

    @property
    def what(self) -> str:
        """What it runs, in words."""
        return "every profile of the config" if self.all_profiles else f"profile '{self.profile}'"

    @property
    def tag(self) -> str:
        """The marker ending this plan's crontab line (``%`` escaped as cron wants)."""
        return _tag(self.name, self.config)


def _tag(name: str, config: Path) -> str:
    return f"{MARKER} {name} " + _cron_escape(str(config))


def program() -> tuple[str, ...]:
    """How to start this installation of report-keeper from a timer (absolute paths): the
    ``report-keeper`` script beside the interpreter when that interpreter imports this same
    copy where a timer starts it, else ``python -m tui`` (with the PYTHONPATH of
    :func:`_launch_environment`)."""
    script = Path(sys.executable).parent / "report-keeper"
    if script.is_file() and os.access(script, os.X_OK) and _starts_this_copy(sys.executable, None)[0]:
        return (str(script),)
    return (sys.executable, "-m", "tui")


# Imports what the nightly commands import first, and says from where.
_PROBE = "import sys, tui, tui.cli; sys.stdout.write(tui.__file__)"


def _source_root() -> Path:
    """The folder holding this copy's ``tui`` package."""
    return Path(__file__).resolve().parents[2]


def _starts_this_copy(python: str, pythonpath: str | None) -> tuple[bool, str]:
    """Whether ``python`` imports this copy of report-keeper as cron and a user timer start it:
    in the home folder, without this shell's PYTHONPATH (only ``pythonpath``); and, when not,
    what it did instead. A checkout run from its own folder, or found through PYTHONPATH, is
    not what the interpreter imports there: another installed copy, or none."""
    return _probe(python, pythonpath, os.environ.get("HOME") or "/")


@functools.lru_cache(maxsize=16)
def _probe(python: str, pythonpath: str | None, home: str) -> tuple[bool, str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": home}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    try:
        res = subprocess.run([python, "-c", _PROBE], env=env, cwd=home if os.path.isdir(home) else "/",
                             capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    if res.returncode != 0:
        said = _text(res.stderr).strip().splitlines()
        return False, said[-1] if said else f"exit {res.returncode}"
    found = Path(_text(res.stdout).strip())
    try:
        same = found.resolve() == (_source_root() / "tui" / "__init__.py").resolve()
    except OSError:
        same = False
    return same, f"it imports {found.parent}"


def _launch_environment(command: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The PYTHONPATH ``python -m tui`` needs at night to start this copy (none when the
    interpreter imports it by itself); raises ``ScheduleError`` when none can."""
    if command[1:] != ("-m", "tui") or _starts_this_copy(command[0], None)[0]:
        return ()
    root = str(_source_root())
    todo = ("install it (pip install, in a virtual environment of its own) so that a 'report-keeper' "
            "command stands beside the Python that runs it, and run schedule with that command")
    if os.pathsep in root:
        raise ScheduleError(f"this copy of report-keeper ({root}) is found only from this shell, and its "
                            f"folder's name holds '{os.pathsep}', which PYTHONPATH cannot name: {todo}")
    shell = [str(Path(e).absolute()) for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    value = os.pathsep.join(dict.fromkeys([root, *shell]))
    ok, said = _starts_this_copy(command[0], value)
    if not ok:
        raise ScheduleError(f"this copy of report-keeper ({root}) does not start without this shell's "
                            f"settings, even with PYTHONPATH={value} ({escape_name(said)}): {todo}")
    return (("PYTHONPATH", value),)


def _environment(command: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """What the nightly run is given: PATH_ENV as set here, and the PYTHONPATH it may need."""
    own = tuple((k, os.environ[k]) for k in PATH_ENV if os.environ.get(k))
    return own + _launch_environment(command)


def unit_name(profile: str, config: Path) -> str:
    """The timer's and service's base name of one profile of ``config`` (absolute):
    ``report-keeper-<name>``, the name's ASCII letters, digits, ``-`` and ``_`` as they are and
    each other character written ``_`` (systemd loads no unit whose name holds a letter of
    another script; its escapes, ``\\xNN``, would need quoting in every command shown), at most
    ``MAX_UNIT_PART`` of them; followed by ``-<hash>`` of the config's path and the whole name
    whenever that is not the name itself or the config is not the default one, so no two
    profiles share a unit."""
    return _unit_name(profile, config, "".join(c if c in _UNIT_KEPT else "_" for c in profile)[:MAX_UNIT_PART])


def earlier_unit_names(profile: str, config: Path) -> tuple[str, ...]:
    """The names earlier releases gave the profile's units and crontab line where
    :func:`unit_name` gives another: they kept a letter or digit of any script, and every
    character of a long name (a unit holding a letter of another script never loaded, so its
    timer never ran; its crontab line did)."""
    earlier = _unit_name(profile, config, "".join(c if c.isalnum() or c in "-_" else "_" for c in profile))
    return () if earlier == unit_name(profile, config) else (earlier,)


def _unit_name(profile: str, config: Path, safe: str) -> str:
    """``report-keeper-<safe>``, and the hash when ``safe`` is not the name or the config not the default."""
    name = f"report-keeper-{safe}"
    if safe != profile or config != default_config_path().expanduser().absolute():
        name += "-" + hashlib.sha256(f"{config}\0{profile}".encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return name


def _loadable(name: str) -> bool:
    """systemd loads a unit of this base name (its characters and length): one it cannot
    load was never enabled, so it is removed without asking systemctl."""
    return all(c in _UNIT_KEPT or c in ":.\\" for c in name) and len(f"{name}.service") <= 255


def all_unit_name(config: Path) -> str:
    """The base name of the one timer of ``--all-profiles`` for ``config`` (absolute). The dot
    keeps it apart from every profile's unit name, which holds only ASCII letters, digits, - and _."""
    name = ALL_NAME
    if config != default_config_path().expanduser().absolute():
        name += "-" + hashlib.sha256(f"{config}\0".encode()).hexdigest()[:8]
    return name



@dataclass(frozen=True)
class Installed:
    """What removing a timer or crontab line needs: its unit name and its config's path. No
    profile's settings: a profile deleted from the config since (a library that left), or
    whose table holds an error, still has its timer removed."""

    name: str
    config: Path  # absolute
    what: str
    earlier: tuple[str, ...] = ()  # the names earlier releases gave them (earlier_unit_names)

    @property
    def tag(self) -> str:
        return _tag(self.name, self.config)


def installed(config_path: str | os.PathLike[str] | None, profile: str | None) -> Installed:
    """The timer and line ``schedule --install`` put in place for ``profile`` of the config at
    ``config_path`` (``None``: for ``--all-profiles``), found by name whether or not the config
    still holds that profile, or exists."""
    if config_path is not None and not str(config_path).strip():
        raise ScheduleError("the config file name is empty; name a config file (--config FILE)")
    config = config_file(config_path)
    if profile is None:
        return Installed(all_unit_name(config), config, "every profile of the config")
    return Installed(unit_name(profile, config), config, f"profile '{escape_name(profile)}'",
                     earlier_unit_names(profile, config))


def left_behind(config_path: str | os.PathLike[str] | None, names: Collection[str],
                runner: Runner = subprocess.run) -> list[Installed]:
    """The own timers and crontab lines ``schedule --install`` put in place for profiles of
    the config at ``config_path`` that are not among ``names`` (the config's profiles now):
    a profile deleted since, whose runs fail every night. Found in what they run (the service's
    ``ExecStart=``, the line's command), and kept only when the profile named there gives the
    very unit name and the config's path (never another config's, never a unit the user
    wrote). Each is removed by :func:`uninstall`, by name, as ``--uninstall --profile`` does."""
    config = config_file(config_path)
    found: set[str] = set()
    systemd = _systemd(runner)
    folder = unit_dir(systemd.stdout if systemd.returncode == 0 else None)
    with contextlib.suppress(OSError):
        for service in folder.glob("report-keeper-*.service"):
            profile = _unit_profile(service, config)
            if profile is not None and service.name.removesuffix(".service") in _names_of(profile, config):
                found.add(profile)
    try:
        lines = _crontab(runner) or []
    except ScheduleError:  # cron.deny: no line of ours can be there
        lines = []
    for line in lines:
        profile = _line_profile(line, config)
        if profile is not None and any(line.endswith(_tag(n, config)) for n in _names_of(profile, config)):
            found.add(profile)
    return [installed(config, p) for p in sorted(found - set(names))]


def _names_of(profile: str, config: Path) -> tuple[str, ...]:
    """Every name the profile's units and crontab line have had: this release's, then earlier ones."""
    return (unit_name(profile, config), *earlier_unit_names(profile, config))


def _profile_of(words: Sequence[str], config: Path) -> str | None:
    """The profile of ``words`` ending a command that runs ``--config CONFIG --profile P`` (or
    ``--profile=P``, as a name beginning with ``-`` is written)."""
    if len(words) >= 4 and words[-4] == "--config" and words[-3] == str(config) and words[-2] == "--profile":
        return words[-1]
    if len(words) >= 3 and words[-3] == "--config" and words[-2] == str(config) and words[-1].startswith("--profile="):
        return words[-1].removeprefix("--profile=")
    return None


def _unit_profile(service: Path, config: Path) -> str | None:
    """The profile a service ``schedule`` wrote runs with ``config`` (as :func:`_exec_start`
    wrote its first ``ExecStart=``), else None."""
    if not _written_by_us(service):
        return None
    try:
        text = service.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            try:
                words = shlex.split(line.removeprefix("ExecStart=").removeprefix("-"))
            except ValueError:
                return None
            return _profile_of([w.replace("%%", "%").replace("$$", "$") for w in words], config)
    return None


def _line_profile(line: str, config: Path) -> str | None:
    """The profile a crontab line ``schedule`` wrote runs with ``config`` (as
    :func:`crontab_line` wrote it: the words after ``"$s"``), else None."""
    mark = line.rfind(f" {MARKER} report-keeper-")
    fields = line[:mark].split(" ", 5) if mark > 0 else []
    if len(fields) < 6:
        return None
    try:
        words = shlex.split(fields[5].replace("\\%", "%"))
    except ValueError:
        return None
    if "$s" not in words:
        return None
    start = len(words) - words[::-1].index("$s")
    return _profile_of(words[start:start + 3], config) or _profile_of(words[start:start + 4], config)


def _latest_due(profile: Profile) -> tuple[timedelta, str]:
    """The largest at + grace (from midnight) over the profile's reports, and whose it is.
    The names are escaped: a report's name may come from a server's file name, and the words
    end up in a timer unit's comment line."""
    dues: list[tuple[timedelta, str]] = []
    seen: set[str] = set()
    ledger_path = Path(profile.ledger_path)
    if ledger_path.is_file():
        try:
            with Ledger.open(ledger_path, profile=profile.name) as ledger:
                health = evaluate(profile, ledger.deliveries())
            for r in health.reports:
                if not r.schedule_known:  # expected at no time (a one-off, a stray file)
                    continue
                dues.append((timedelta(hours=r.at.hour, minutes=r.at.minute) + r.grace,
                             f"'{escape_name(r.name)}' at {r.at:%H:%M}" + (" (inferred)" if r.inferred else "")
                             + f" + grace {_hm(r.grace)}"))
                seen.add(r.name)
        except LedgerError:
            pass
    for report in profile.reports:
        if report.name in seen:
            continue
        at = report.at or DEFAULT_AT
        dues.append((timedelta(hours=at.hour, minutes=at.minute) + report.grace,
                     f"'{escape_name(report.name)}' at {at:%H:%M}" + ("" if report.at else " (default)")
                     + f" + grace {_hm(report.grace)}"))
    if not dues:
        d = profile.defaults
        dues.append((timedelta(hours=DEFAULT_AT.hour) + d.grace,
                     f"no report known yet: {DEFAULT_AT:%H:%M} + grace {_hm(d.grace)}"))
    return max(dues, key=lambda x: x[0])


def _hm(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}" if minutes % 60 else f"{minutes // 60}h"


def _refuse_unrunnable(arg: str) -> None:
    """Every path and word of the command must be UTF-8 text without control characters: unit
    files and crontabs are such text, and a line break would end the line."""
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        raise ScheduleError(f"the path {escape_name(os.fsencode(arg).decode('utf-8', 'backslashreplace'))} "
                            "is not UTF-8 text, which timer units and crontab lines are: rename it") from None
    if not arg.isprintable():
        raise ScheduleError(f"the path {arg!r} holds control characters; a timer cannot run it")


def plan_schedule(profile: Profile, config_path: str | os.PathLike[str] | None) -> SchedulePlan:
    config = config_file(config_path)
    _refuse_unrunnable(str(config))
    due, reason = _latest_due(profile)
    return _plan(profile=profile.name, config=config, name=unit_name(profile.name, config),
                 when=due + MARGIN, tz=profile.timezone, reason=reason,
                 earlier=earlier_unit_names(profile.name, config))


def plan_all(profiles: Sequence[Profile], config_path: str | os.PathLike[str] | None) -> SchedulePlan:
    """One plan running every profile of the config (``sync --all-profiles``, then ``check
    --all-profiles``), after the latest of them is due.

    Its clock is the zone most profiles share (the first profile's among equals). A profile in
    another zone counts with the largest difference the two zones have over the coming year,
    as the crontab line does with the machine's clock: the run is never before any profile's
    reports are due, on some days up to an hour later. The times are compared without
    wrapping at midnight, so a profile due after midnight still counts as the latest."""
    if not profiles:
        raise ScheduleError("the config has no profile")
    config = config_file(config_path)
    _refuse_unrunnable(str(config))
    zones = Counter(_tz_name(p.timezone) for p in profiles)
    top = max(zones.values())
    tz = next(p.timezone for p in profiles if zones[_tz_name(p.timezone)] == top)
    latest: tuple[timedelta, str] | None = None
    for profile in profiles:
        due, reason = _latest_due(profile)
        when = due + MARGIN + _largest_shift(profile.timezone, tz, due + MARGIN)
        words = f"profile '{escape_name(profile.name)}': {reason}"
        if _tz_name(profile.timezone) != _tz_name(tz):
            words += f" ({_tz_name(profile.timezone)})"
        if latest is None or when > latest[0]:
            latest = (when, words)
    assert latest is not None
    return _plan(profile="", config=config, name=all_unit_name(config), when=latest[0], tz=tz,
                 reason=f"the latest of {len(profiles)} profiles, {latest[1]}", all_profiles=True)


def _plan(*, profile: str, config: Path, name: str, when: timedelta, tz: tzinfo, reason: str,
          all_profiles: bool = False, earlier: tuple[str, ...] = ()) -> SchedulePlan:
    """The plan running at ``when`` after midnight (``MARGIN`` included) rounded up to five
    minutes, with this copy's program and environment; raises ``ScheduleError`` when a path
    of it cannot be written into a unit or a crontab line."""
    minutes = -(-int(when.total_seconds()) // 300) * 5  # up to five minutes
    minutes %= 24 * 60
    plan = SchedulePlan(
        profile=profile, config=config, name=name, at=time(minutes // 60, minutes % 60), tz=tz,
        command=(command := program()), env_file=config.parent / SECRETS_FILE,
        reason=f"{reason} + {int(MARGIN.total_seconds() // 60)} min",
        environment=_environment(command), all_profiles=all_profiles, earlier=earlier,
    )
    for arg in (*plan.argv("sync"), str(plan.env_file), *(v for _k, v in plan.environment)):
        _refuse_unrunnable(arg)
    _refuse_writable_by_others(plan.env_file)
    return plan


def _refuse_writable_by_others(env_file: Path) -> None:
    """Raises ``ScheduleError`` when :func:`_secrets_exposure` finds the secrets file exposed."""
    why = _secrets_exposure(env_file, then="then schedule again")
    if why is not None:
        raise ScheduleError(why)


def secrets_exposure(config_path: str | os.PathLike[str] | None) -> str | None:
    """Why the secrets file beside the config (or its folder, or one above) is open to other
    users, in one line for a run's warnings, or None: what ``schedule`` refuses, for a run of
    a schedule written before (or a file opened to others since). Never an error: the night's
    run goes on as it did."""
    try:
        return _secrets_exposure(secrets_file(config_path),
                                 then="before the next night's run")
    except (OSError, ValueError):  # a path the system refuses: nothing to say of its secrets
        return None


def _secrets_exposure(env_file: Path, *, then: str) -> str | None:
    """Whoever can create or change the secrets file runs commands as this user every night:
    the crontab line reads it with sh's ``.``, and a unit's ``EnvironmentFile=`` may set any
    variable (``LD_PRELOAD``, ``PYTHONPATH``). So its folder, and the file when it is there,
    must belong to this user (or root) and be writable by nobody else, as ssh demands of a
    user's ``~/.ssh``; writable by the user's own group is fine when that group is the user
    alone (a umask of 002 with a group per user). The file holds the SMTP password, so others
    may not read it either (as ssh refuses a private key others can read). The folders above
    are judged too (:func:`_replaceable_folder`). Returns why, with what to do and ``then``."""
    if not hasattr(os, "geteuid"):
        return None
    me = os.geteuid()
    for path, what in ((env_file.parent, "folder"), (env_file, "file")):
        try:
            info = os.stat(path)
        except FileNotFoundError:
            continue  # no secrets file (yet): its folder decides who may add one
        except OSError as exc:
            return (f"cannot look at {escape_name(str(path))} ({exc.strerror or exc}), from which "
                    "the nightly run reads its secrets; fix its permissions")
        holds = f"which holds {SECRETS_FILE}" if what == "folder" else "which"
        if info.st_uid not in (me, 0):
            return (
                f"the {what} {escape_name(str(path))}, {holds} the nightly run reads as a shell script, "
                "belongs to another user, who could run commands as you; keep the config in a folder "
                f"of your own (chmod go-w), {then}")
        own = _own_group(info.st_gid, me)
        others = stat.S_IWOTH | (0 if own else stat.S_IWGRP)
        if info.st_mode & others:
            return (
                f"the {what} {escape_name(str(path))}, {holds} the nightly run reads as a shell script, "
                f"can be written by other users (mode {stat.S_IMODE(info.st_mode):04o}): whoever "
                f"{'adds' if what == 'folder' else 'changes'} it runs commands as you. Run "
                f"'chmod go-w {shlex.quote(str(path))}' (or keep the config in a folder of your own), "
                f"{then}")
        if what == "file" and info.st_mode & (stat.S_IROTH | (0 if own else stat.S_IRGRP)):
            return (
                f"the file {escape_name(str(path))}, which holds the password the nightly run sends "
                f"mail with, can be read by other users (mode {stat.S_IMODE(info.st_mode):04o}). Run "
                f"'chmod 600 {shlex.quote(str(path))}', {then} (and change the password "
                "if others may have read it)")
    return _replaceable_folder(env_file.parent, then=then)


def _replaceable_folder(folder: Path, *, home: Path | None = None, then: str = "then schedule again") -> str | None:
    """Why another user could put a folder of their own in the place of ``folder`` (and so
    their own secrets file), or None. As ssh's StrictModes: each folder above it (its real
    path), up to the user's home folder (``home``: the one the user database gives, not
    ``$HOME``) or up to ``/`` outside it, must belong to this user or root and be writable by
    nobody else (the user's own group aside): whoever can write a folder may rename what is in
    it. Unless that folder has the sticky bit (``/tmp``): there only the owner of an entry may
    rename it, and every entry on the way belongs to this user or root."""
    me = os.geteuid()
    if home is None:
        import pwd  # noqa: PLC0415 - POSIX only, as geteuid

        try:
            home = Path(pwd.getpwuid(me).pw_dir)
        except KeyError:
            home = None
    real = Path(os.path.realpath(folder))
    top = Path(os.path.realpath(home)) if home is not None else None
    if top is not None and real == top:
        return None  # the home folder itself: what is above it is the system's
    if top is None or top == Path("/") or top not in real.parents:
        top = None  # outside home: up to /
    below = real
    for above in real.parents:
        try:
            info = os.stat(above)
        except OSError as exc:
            return (f"cannot look at the folder {escape_name(str(above))} ({exc.strerror or exc}), above "
                    f"the one the nightly run reads {SECRETS_FILE} from; fix its permissions")
        if info.st_uid not in (me, 0):
            return (f"the folder {escape_name(str(above))}, above the config's folder, belongs to another "
                    f"user, who could rename {escape_name(below.name)} away and put a folder of their own "
                    f"there, with a {SECRETS_FILE} the nightly run reads as a shell script; keep the "
                    f"config in a folder of your own under your home folder, {then}")
        writable = info.st_mode & (stat.S_IWOTH | (0 if _own_group(info.st_gid, me) else stat.S_IWGRP))
        if writable and not info.st_mode & stat.S_ISVTX:
            return (f"the folder {escape_name(str(above))}, above the config's folder, can be written by "
                    f"other users (mode {stat.S_IMODE(info.st_mode):04o}, no sticky bit): whoever writes "
                    f"it may rename {escape_name(below.name)} away and put a folder of their own there, "
                    f"with a {SECRETS_FILE} the nightly run reads as a shell script. Run 'chmod go-w "
                    f"{shlex.quote(str(above))}' (or 'chmod +t', or keep the config in a folder of your "
                    f"own under your home folder), {then}")
        if above == top:
            break
        below = above
    return None


def _own_group(gid: int, uid: int) -> bool:
    """Whether group ``gid`` is the user's own: named as the user, no other member."""
    import grp  # noqa: PLC0415 - POSIX only, as geteuid
    import pwd  # noqa: PLC0415

    try:
        user = pwd.getpwuid(uid).pw_name
        group = grp.getgrgid(gid)
    except KeyError:
        return False
    return group.gr_name == user and set(group.gr_mem) <= {user}


def _largest_shift(src: tzinfo, dst: tzinfo, after_midnight: timedelta) -> timedelta:
    """How much later the clock of ``dst`` shows a time of day of ``src`` (``after_midnight``
    there), at most over the coming year."""
    if _tz_name(src) == _tz_name(dst):
        return timedelta()
    today = clock.now(src).date()
    gaps = []
    for n in range(366):
        run = datetime.combine(today + timedelta(days=n), time(), tzinfo=src) + after_midnight
        mine, theirs = run.astimezone(dst).utcoffset(), run.utcoffset()
        if mine is not None and theirs is not None:
            gaps.append(mine - theirs)
    return max(gaps, default=timedelta())


# --------------------------------------------------------------------------------------------
# Text


def _systemd_quote(arg: str) -> str:
    """One ExecStart argument after the executable: ``%`` and ``$`` doubled (systemd expands
    them), quoted if needed."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and all(c.isalnum() or c in "-_./:=@+,%$" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


# systemd refuses an executable name holding a quote or a backslash (the whole unit) and
# does not expand ``$$`` in it (the path is taken with two dollars): such a program is started
# by ``sh``, which gets its path as an argument, where every character can be written.
_UNSAFE_EXECUTABLE = set("'\"\\$")
_SH_EXEC = ("/bin/sh", "-c", 'exec "$0" "$@"')


def _exec_start(argv: list[str]) -> str:
    if _UNSAFE_EXECUTABLE & set(argv[0]):
        argv = [*_SH_EXEC, *argv]
    program = argv[0].replace("%", "%%")
    if not all(c.isalnum() or c in "-_./:=@+,%" for c in program):
        program = f'"{program}"'
    return " ".join([program, *(_systemd_quote(a) for a in argv[1:])])


def _systemd_env(name: str, value: str) -> str:
    """One ``Environment=`` assignment: quoted, ``%`` doubled (no ``$`` expansion there)."""
    text = f"{name}={value}".replace("%", "%%")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tz_name(tz: tzinfo) -> str:
    return tz.key if isinstance(tz, ZoneInfo) else str(tz)


def systemd_units(plan: SchedulePlan) -> dict[str, str]:
    """``{"<name>.service": text, "<name>.timer": text}``."""
    # For every profile, sync's exit 3 (one member's broken profile among ninety) must not keep
    # the night's check from all the others: "-" makes systemd go on to it (whose own exit 3
    # then marks the run failed; the crontab line runs both whatever sync's code).
    ignore = "-" if plan.all_profiles else ""
    exec_lines = "\n".join(f"ExecStart={ignore if sub == 'sync' else ''}" + _exec_start(plan.argv(sub))
                           for sub in ("sync", "check"))
    env_file = str(plan.env_file).replace("%", "%%")  # a path: no quotes, specifiers escaped
    environment = "".join(f"Environment={_systemd_env(k, v)}\n" for k, v in plan.environment)
    what = plan.what.replace("%", "%%")  # Description= expands specifiers too
    whose = "their" if plan.all_profiles else "its"
    service = f"""\
{HEADER}
[Unit]
Description=Report Keeper: sync and check of {what}

[Service]
Type=oneshot
{exec_lines}
# 1 (warning) and 2 (critical) are results, not failures of the run: check runs after sync.
SuccessExitStatus=1 2
# The SMTP password (see smtp_password_env) comes from this file when it exists.
EnvironmentFile=-{env_file}
{environment}Nice=10
"""
    timer = f"""\
{HEADER}
[Unit]
Description=Report Keeper: daily run for {what} after {whose} reports are due

[Timer]
# {plan.reason}
OnCalendar=*-*-* {plan.at:%H:%M}:00 {_tz_name(plan.tz)}
Persistent=true
AccuracySec=1min
Unit={plan.name}.service

[Install]
WantedBy=timers.target
"""
    return {f"{plan.name}.service": service, f"{plan.name}.timer": timer}


def cron_time(plan: SchedulePlan, system_tz: tzinfo | None = None) -> time:
    """The plan's time of day on the machine's clock (cron has no time zone).

    The two clocks' difference moves over a year when one changes to summer time and the other
    does not (or on other days). Converted for one day only, a line written in summer ran an
    hour early all winter: before the reports were due, so a missing one was told a day late.
    The line takes the largest difference of the coming year: never before the planned time,
    on some days that much later."""
    machine = system_tz or system_timezone(honour_tz=False)  # cron's clock, not this shell's TZ
    at = timedelta(hours=plan.at.hour, minutes=plan.at.minute, seconds=plan.at.second)
    # A time of day plus the shift, on any day far from the calendar's ends.
    return (datetime.combine(date(2000, 1, 15), plan.at) + _largest_shift(plan.tz, machine, at)).time()


def _cron_escape(text: str) -> str:
    """``text`` with every ``%`` escaped as cron wants (``\\%``): for the marker comment, which
    is only matched as text. (A path's own backslash right before a ``%`` makes cron end the
    command inside the comment; the rest of the comment becomes the stdin nothing reads.)"""
    return text.replace("%", "\\%")


def _cron_word(arg: str) -> str:
    """One shell word of a crontab line. cron reads ``\\%`` as ``%`` and any other ``%`` as
    the end of the command (the rest becomes its stdin); an escaped backslash before it
    (``\\\\%``, a path's own backslash) is such an other ``%``. So each ``%`` is written
    between shell-quoted pieces, as ``\\%``, never after a backslash of the path; the shell
    reads the unquoted ``%`` as itself."""
    if not arg:
        return "''"
    return "\\%".join(shlex.quote(piece) if piece else "" for piece in arg.split("%"))


def crontab_line(plan: SchedulePlan, system_tz: tzinfo | None = None) -> str:
    """One crontab line (``%`` escaped, as cron wants), ending with its marker comment.

    Each path is written once (cron keeps only ``CRON_MAX_COMMAND`` characters of a command):
    the secrets file through ``$e``, sync and check by one loop over ``$s``. Neither is
    exported (both are set outside ``set -a``), and the secrets file cannot change what runs:
    ``$e`` is expanded before it is read, ``s`` set by the loop after it."""
    t = cron_time(plan, system_tz)
    env = _cron_word(str(plan.env_file))
    assign = "".join(f"{k}={_cron_word(v)}; " for k, v in plan.environment)  # exported: set -a
    args = plan.argv("")[len(plan.command) + 1:]  # --config ... --profile ...
    run = " ".join([*map(_cron_word, plan.command), '"$s"', *map(_cron_word, args)])
    # 'command .': a file sh cannot read (a quote left open) is an error sh reports (cron
    # mails it), not the end of the shell, so sync and check still run.
    body = (f"e={env}; set -a; [ ! -r \"$e\" ] || command . \"$e\"; {assign}set +a; "
            f"for s in sync check; do {run} >/dev/null; done")
    return f"{t.minute} {t.hour} * * * {body} {plan.tag}"


# Shells that read the line's sh words (``set -a``, ``[ ... ] ||``, ``command .``, ``for``).
_SH_LIKE = {"sh", "bash", "dash", "ksh", "ksh93", "mksh", "zsh", "ash", "yash", "posh", "busybox"}


def _crontab_shell(lines: list[str]) -> str | None:
    """The SHELL= a line appended to ``lines`` runs under when it is not an sh (cron's
    environment lines apply to the lines below them), else None."""
    shell = None
    for line in lines:
        name, eq, value = line.strip().partition("=")
        if eq and name.strip() == "SHELL" and not name.startswith("#"):
            value = value.strip()
            if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            shell = value
    if shell is None or Path(shell).name in _SH_LIKE:
        return None
    return shell


def cron_too_long(line: str) -> str | None:
    """Why cron would cut ``line``'s command short, or None. Only the marker comment at its
    end may be cut: it is matched in the crontab's text, which keeps it whole."""
    command = line.split(" ", 5)[5]
    body = command[: command.rindex(" " + MARKER)] if (" " + MARKER) in command else command
    size = len(body.encode("utf-8", "surrogateescape"))
    if size <= CRON_MAX_COMMAND:
        return None
    return (f"the crontab line's command is {size} characters long, and cron keeps only the first "
            f"{CRON_MAX_COMMAND} (the rest is dropped: the nightly run would fail); move the config "
            "file to a shorter path, or use the systemd timer")


# --------------------------------------------------------------------------------------------
# Installing


def unit_dir(manager_env: str | None = None) -> Path:
    """Where the user manager looks for units: under its own XDG_CONFIG_HOME (else its
    HOME's ``.config``), from ``systemctl --user show-environment`` when it answered. The
    shell's XDG_CONFIG_HOME (set in a profile the manager never read) is used only where
    the manager cannot be asked."""
    if manager_env is not None:
        env = dict(line.partition("=")[::2] for line in manager_env.splitlines() if "=" in line)
        if env.get("XDG_CONFIG_HOME", "").startswith("/"):
            return Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user"
        if env.get("HOME", "").startswith("/"):
            return Path(env["HOME"]) / ".config" / "systemd" / "user"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "surrogateescape")


def _run(runner: Runner, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # Bytes, decoded here: the user's crontab may hold any bytes (a comment in another
    # encoding) and carriage returns, which text mode would drop; they go back as they were.
    try:
        res = runner(argv, capture_output=True, timeout=60,
                     input=None if stdin is None else stdin.encode("utf-8", "surrogateescape"))
        return subprocess.CompletedProcess(argv, res.returncode, _text(res.stdout), _text(res.stderr))
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]}: no answer within 60 s")


def _systemd(runner: Runner) -> subprocess.CompletedProcess[str]:
    return _run(runner, ["systemctl", "--user", "show-environment"])


def manager_agent(runner: Runner = subprocess.run) -> Path | None:
    """The ssh-agent socket the user manager hands its services, a timer's runs included: its
    ``SSH_AUTH_SOCK`` (some desktops start it with one), when that names an existing socket by
    an absolute path; else None (cron, and most managers, give a nightly run no agent)."""
    res = _systemd(runner)
    if res.returncode != 0:
        return None
    env = dict(line.partition("=")[::2] for line in res.stdout.splitlines() if "=" in line)
    value = env.get("SSH_AUTH_SOCK", "")
    if not value.startswith("/"):
        return None
    try:
        found = os.stat(value)
    except (OSError, ValueError):
        return None
    return Path(value) if stat.S_ISSOCK(found.st_mode) else None


def _said(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stderr or result.stdout or "").split())[:200] or f"exit {result.returncode}"


def _unit_files(name: str, folder: Path) -> list[Path]:
    """The unit files named ``name`` (a plan's, as :func:`systemd_units` names them); raises
    ``ScheduleError`` when one of them exists but was not written by ``schedule`` (a unit of
    the same name the user wrote by hand): it is never replaced or removed."""
    files = [folder / f"{name}{suffix}" for suffix in (".service", ".timer")]
    for f in files:
        if os.path.lexists(f) and not _written_by_us(f):
            raise ScheduleError(f"{f} exists and was not written by report-keeper: it is left as it is; "
                                "rename or remove it, then run this again")
    return files


def _written_by_us(path: Path) -> bool:
    """The file starts with the header ``schedule`` writes. Only a regular file is read (a
    named pipe would wait for a writer), and only as far as that header goes."""
    header = HEADER.encode() + b"\n"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.read(fd, len(header)) == header
    except OSError:
        return False
    finally:
        os.close(fd)


def _ours(folder: Path, name: str) -> list[Path]:
    """The unit files named ``name`` in ``folder`` that ``schedule`` wrote (a hand-written
    unit of that name is never touched)."""
    files = [folder / f"{name}{suffix}" for suffix in (".service", ".timer")]
    return [f for f in files if os.path.lexists(f) and _written_by_us(f)]


def _profiles_words(names: Sequence[str]) -> str:
    return ", ".join(f"'{escape_name(n)}'" for n in names)


def _refuse_beside(plan: SchedulePlan, all_name: str, folder: Path, current: list[str] | None) -> None:
    """A profile's own timer or line is refused while the ``--all-profiles`` one of its
    config is installed: that one runs the profile already, and both would run it twice a
    night (two syncs of one folder at the same time). ``current``: the crontab's lines (None:
    it cannot be read)."""
    todo = ("keep that one, or run 'report-keeper schedule --uninstall --all-profiles' with this config "
            "first")
    if _ours(folder, all_name):
        raise ScheduleError(f"the --all-profiles timer {all_name}.timer of this config already runs "
                            f"profile '{escape_name(plan.profile)}' every night; a timer of its own "
                            f"would run it twice: {todo}")
    if any(line.endswith(_tag(all_name, plan.config)) for line in current or []):
        raise ScheduleError(f"the --all-profiles crontab line of this config already runs profile "
                            f"'{escape_name(plan.profile)}' every night; a line or timer of its own "
                            f"would run it twice: {todo}")


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        detail = " ".join((result.stderr or result.stdout or "").split())[:300]
        raise ScheduleError(f"{what} failed (exit {result.returncode}): {detail or 'no message'}")


def _crontab(runner: Runner) -> list[str] | None:
    """The user's crontab as lines (split at line feeds only, as cron does: a form feed,
    carriage return or U+2028 in a user's line stays in it); None where there is no
    ``crontab`` command."""
    res = _run(runner, ["crontab", "-l"])
    if res.returncode == 127:
        return None
    if res.returncode != 0:
        if "no crontab" in (res.stderr or "").lower():
            return []
        _check(res, "crontab -l")
    text = str(res.stdout)
    return text.removesuffix("\n").split("\n") if text else []


@contextlib.contextmanager
def _crontab_lock() -> Iterator[None]:
    """Held from reading the crontab to writing it back: two ``schedule`` runs at once (a
    script installing several profiles in the background) each read the crontab before the
    other wrote it, and the second write dropped the first one's line. (``crontab`` itself
    has no lock; a user's ``crontab -e`` at that moment can still undo either.)"""
    path = Path(platformdirs.user_state_dir(APP_NAME)) / "crontab.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ScheduleError(f"cannot create {path} ({exc.strerror}), which keeps two changes of the "
                            "crontab apart: make its folder writable") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _set_crontab(runner: Runner, lines: list[str]) -> None:
    text = "\n".join(lines) + ("\n" if lines else "")
    _check(_run(runner, ["crontab", "-"], stdin=text), "crontab -")


def install(plan: SchedulePlan, runner: Runner = subprocess.run, *,
            replaces: Mapping[str, str] | None = None, blocked_by: str | None = None) -> list[str]:
    """Install (or refresh) the timer, else the crontab line; returns what was done.

    ``replaces`` (unit name -> profile; for ``--all-profiles``): the profiles' own timers and
    crontab lines of the same config, removed once this one is in place (it runs them).
    ``blocked_by`` (a profile's plan): the ``--all-profiles`` unit name of its config; while
    that is installed, this plan is refused (:func:`_refuse_beside`).

    The crontab is read once, under the lock that keeps two changes of it apart, held until
    it is written back."""
    done: list[str] = []
    members = dict(replaces or {})
    # What an earlier release named this profile's timer and line: this one runs it now.
    members.update({name: plan.profile for name in plan.earlier})
    systemd = _systemd(runner)
    folder = unit_dir(systemd.stdout if systemd.returncode == 0 else None)
    files = _unit_files(plan.name, folder)
    with _crontab_lock():
        unreadable: ScheduleError | None = None
        try:
            current = _crontab(runner)
        except ScheduleError as exc:  # cron.deny: the timer needs no crontab
            current, unreadable = None, exc
        if blocked_by is not None:
            _refuse_beside(plan, blocked_by, folder, current)
        timers = {name: found for name in members if (found := _ours(folder, name))}
        member_tags = {_tag(name, plan.config): profile for name, profile in members.items()}
        if systemd.returncode == 0:
            done += _install_timer(plan, runner, folder, members, timers)
            # A line an earlier install added where systemd was not reachable would run the
            # same sync at the same time every night: the timer replaces it.
            # (Where the crontab cannot be read, cron.deny, there is no line to remove.)
            kept, removed = _without(current or [], plan.tag, member_tags)
            if current is not None and kept != current:
                _set_crontab(runner, kept)
                done.extend(f"removed the crontab line {_of(r)}(the systemd timer replaces it)" for r in removed)
            return done
        if any(os.path.lexists(f) for f in files):
            raise ScheduleError(
                f"the systemd timer {plan.name}.timer is installed in {folder}, but systemctl --user "
                f"cannot reach your user service manager here ({_said(systemd)}); a crontab line would run "
                "every night beside it: run this in a login session instead, or 'report-keeper "
                "schedule --uninstall' there first")
        loaded = [n for n in timers if _loadable(n)]  # a unit systemd cannot load never ran
        if loaded:
            raise ScheduleError(
                f"profile {_profiles_words([members[n] for n in loaded])} of this config has its own systemd "
                f"timer in {folder}, but systemctl --user cannot reach your user service manager here "
                f"({_said(systemd)}) to remove it; a crontab line would run it a second time every night: "
                "run this in a login session instead")
        line = crontab_line(plan)
        too_long = cron_too_long(line)
        if too_long:
            raise ScheduleError(too_long)
        if unreadable is not None:
            raise unreadable
        if current is None:
            raise ScheduleError("neither systemd user units (systemctl --user) nor crontab are available "
                                "here; run the printed commands from your own scheduler")
        kept, removed = _without(current, plan.tag, member_tags)
        shell = _crontab_shell(kept)
        if shell is not None:
            raise ScheduleError(
                f"your crontab sets SHELL={shell}, which runs every line below it, and the report-keeper "
                "line is written for /bin/sh: end your crontab with a line 'SHELL=/bin/sh' (crontab -e) "
                "and run this again, or use the systemd timer")
        if kept + [line] != current:
            _set_crontab(runner, kept + [line])
            done.extend(f"removed the crontab line {_of(r)}(this line runs it now)" for r in removed if r)
            done.append("installed the crontab line")
        else:
            done.append("the crontab line was already installed")
    return done


def _install_timer(plan: SchedulePlan, runner: Runner, folder: Path, members: Mapping[str, str],
                   timers: Mapping[str, list[Path]]) -> list[str]:
    """Write and enable the plan's units; then disable and remove the ``timers`` of the
    profiles it runs (``members``: unit name -> profile)."""
    done: list[str] = []
    changed = False
    for name, text in systemd_units(plan).items():
        if _write_if_changed(folder / name, text):
            changed = True
            done.append(f"wrote {folder / name}")
    if changed:
        _check(_run(runner, ["systemctl", "--user", "daemon-reload"]), "systemctl --user daemon-reload")
    _check(_run(runner, ["systemctl", "--user", "enable", "--now", f"{plan.name}.timer"]),
           f"systemctl --user enable --now {plan.name}.timer")
    done.append(f"enabled {plan.name}.timer (systemd user timer)")
    # The profiles' own timers would run them a second time: this one runs them now.
    for name, found in timers.items():
        # A unit systemd cannot load (an earlier release's name) was never enabled: its files go.
        disabled = _run(runner, ["systemctl", "--user", "disable", "--now", f"{name}.timer"]) \
            if _loadable(name) else None
        if disabled is not None and disabled.returncode != 0:  # kept: its files say it is still there
            raise ScheduleError(
                f"{plan.name}.timer is enabled, but the own timer of profile "
                f"'{escape_name(members[name])}' could not be disabled ({_said(disabled)}), so that "
                f"profile would run twice a night: run 'systemctl --user disable --now {name}.timer', "
                "then this command again")
        for f in found:
            f.unlink(missing_ok=True)
        done.append(f"removed {name}.timer, the own timer of profile '{escape_name(members[name])}' "
                    f"({plan.name}.timer runs it now)")
    if timers:
        _check(_run(runner, ["systemctl", "--user", "daemon-reload"]), "systemctl --user daemon-reload")
    return done


def _without(lines: list[str], tag: str, member_tags: Mapping[str, str]) -> tuple[list[str], list[str | None]]:
    """``lines`` without the plan's own line (``tag``) and the lines of ``member_tags``; and
    whose lines went (a profile's name, None for the plan's own line)."""
    kept: list[str] = []
    removed: list[str | None] = []
    for line in lines:
        if line.endswith(tag):
            removed.append(None)
            continue
        member = next((p for t, p in member_tags.items() if line.endswith(t)), None)
        if member is not None:
            removed.append(member)
            continue
        kept.append(line)
    return kept, removed


def _of(profile: str | None) -> str:
    return "" if profile is None else f"of profile '{escape_name(profile)}' "


def uninstall(plan: SchedulePlan | Installed, runner: Runner = subprocess.run) -> list[str]:
    """Remove the timer and the crontab line of this profile (or of ``--all-profiles``)
    wherever they are, and those an earlier release named otherwise (``plan.earlier``); only
    their names are needed (:func:`installed`)."""
    done: list[str] = []
    systemd = _systemd(runner)
    folder = unit_dir(systemd.stdout if systemd.returncode == 0 else None)
    units = [(plan.name, [f for f in _unit_files(plan.name, folder) if f.exists()])]
    units += [(name, _ours(folder, name)) for name in plan.earlier]
    reload = False
    for name, files in units:
        if not files:
            continue
        if _loadable(name):  # else systemd never loaded it: there is nothing to stop
            if systemd.returncode != 0:
                # Deleting the files would not stop a timer a running (lingering) manager has
                # loaded, and would leave its timers.target.wants link behind.
                raise ScheduleError(
                    f"the systemd timer {name}.timer is installed in {folder}, but systemctl "
                    f"--user cannot reach your user service manager here ({_said(systemd)}): run this "
                    "in a login session; if no service manager ever runs for you, remove "
                    f"{name}.timer and {name}.service from that folder by hand")
            _run(runner, ["systemctl", "--user", "disable", "--now", f"{name}.timer"])
            reload = True
        for f in files:
            f.unlink(missing_ok=True)
            done.append(f"removed {f}")
    if reload:
        _check(_run(runner, ["systemctl", "--user", "daemon-reload"]), "systemctl --user daemon-reload")
    tags = [plan.tag, *(_tag(name, plan.config) for name in plan.earlier)]
    with _crontab_lock():
        current = _crontab(runner)
        kept = [line for line in current or [] if not any(line.endswith(t) for t in tags)]
        if current is not None and kept != current:
            _set_crontab(runner, kept)
            done.append("removed the crontab line")
    return done
