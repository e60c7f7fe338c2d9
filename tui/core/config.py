"""Configuration (README "Configuration"): TOML profiles, report entries and defaults.

Every problem is reported as one ``ConfigError`` naming the file, the key and the reason, so
the commands can print it and exit 3.

Layout::

    [defaults]                      # optional: report settings for every profile
    grace = "2h"

    [profile.default]
    host = "files.example.org"
    ...
    [profile.default.defaults]      # optional: report settings for this profile
    [[profile.default.report]]
    name = "Loans Per Patron From 3 Days Ago"
    ...

With no ``[[report]]`` entries, every distinct base name in ``remote_dir`` is a report with the
defaults (auto-discovery); with entries, files of other base names are still tracked with the
defaults.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import stat
import tomllib
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from email.utils import getaddresses
from functools import cached_property
from pathlib import Path
from typing import TypeAlias, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

from tui.core import clock, isolation
from tui.core.model import Delivery
from tui.core.names import (
    SPOOFING_FORMAT_CHARS,
    ParsedName,
    collision_key,
    escape_name,
    folder_refusal,
    local_folder_parts,
    normalize_folder,
    parse_name,
    profile_file_part,
    profile_name_refusal,
)
from tui.core.schedule import (
    Timing,
    infer_schedule,
    nearest_run_day,
    parse_at,
    parse_duration,
    parse_schedule,
    trusted,
)

APP_NAME = "report-keeper"
#: Beside the config file: the secrets (``KEY='value'`` lines, mode 0600) a scheduled run reads.
SECRETS_FILE = "secrets.env"
CONFIG_ENV = "REPORT_KEEPER_CONFIG"
DEFAULT_PROFILE = "default"
#: A config file is a few kilobytes; anything past this is not one (and /dev/zero never ends).
MAX_CONFIG_BYTES = 1024 * 1024
#: connect_timeout: more than 0, at most an hour (seconds).
MAX_CONNECT_TIMEOUT = 3600.0
#: request_timeout: how long a connection may answer nothing while requests wait before it is
#: closed as stalled (seconds; at least 10, at most an hour).
REQUEST_TIMEOUT_RANGE = (10.0, 3600.0)
DEFAULT_REQUEST_TIMEOUT = 120.0
#: grace: a delivery later than this after its run time is missing, not late.
MAX_GRACE = timedelta(days=31)


class ConfigError(Exception):
    """A configuration problem: file, key and reason in one sentence."""

    def __init__(self, file: str | os.PathLike[str] | None, key: str | None, reason: str) -> None:
        self.file = str(file) if file is not None else None
        self.key = key
        self.reason = reason
        where = self.file or "configuration"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {reason}")


def _shown(value: object, limit: int = 60) -> str:
    """A value for a one-line message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def default_config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def config_file(config_path: str | os.PathLike[str] | None) -> Path:
    """The config file's absolute path (``None``: the default one)."""
    config = Path(config_path).expanduser() if config_path else default_config_path()
    return config.absolute()


def secrets_file(config_path: str | os.PathLike[str] | None) -> Path:
    """The secrets file beside the config (``None``: the default config)."""
    return config_file(config_path).parent / SECRETS_FILE


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def default_ledger_path(profile: str, data_dir: Path | None = None) -> Path:
    """The ledger of a profile without ``ledger``: ``<data dir>/ledger-<name>.sqlite3``, the
    name as file names hold it (:func:`tui.core.names.profile_file_part`: one file per name,
    always in the data folder; a name of letters, digits, ``-``, ``_`` and ``.`` as it is).
    ``data_dir``: :func:`default_data_dir` as the caller found it already."""
    return (data_dir or default_data_dir()) / f"ledger-{profile_file_part(profile)}.sqlite3"


def default_local_dir(profile: str, data_dir: Path | None = None) -> Path:
    """The folder of a profile without ``local_dir``: ``<data dir>/reports/<name>``, the name
    as :func:`default_ledger_path` writes it (one folder per name, never another's)."""
    return (data_dir or default_data_dir()) / "reports" / profile_file_part(profile)


#: What ``ZoneInfo(name)`` raises for a name that names no zone: besides the two it documents,
#: the file it opens may be a folder (``Europe``) or a name too long for a file (OSError).
ZONE_ERRORS = (ZoneInfoNotFoundError, ValueError, OSError)


def system_timezone(*, honour_tz: bool = True) -> tzinfo:
    """The machine's IANA zone (TZ, /etc/timezone, /etc/localtime), else UTC. Without
    ``honour_tz``, the process's TZ is left out: the clock daemons such as cron keep."""
    candidates = [os.environ.get("TZ", "").lstrip(":") if honour_tz else ""]
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for name in candidates:
        if name:
            try:
                return ZoneInfo(name)
            except ZONE_ERRORS:
                continue
    return ZoneInfo("UTC")



# --------------------------------------------------------------------------------------------
# Report settings


@dataclass(frozen=True)
class DayRange:
    first: date
    last: date

    def __contains__(self, day: date) -> bool:
        return self.first <= day <= self.last

    def __str__(self) -> str:
        return self.first.isoformat() if self.first == self.last else f"{self.first}..{self.last}"


@dataclass(frozen=True)
class ReportConfig:
    name: str
    schedule: str | None = None  # None: inferred from history
    at: time | None = None  # None: inferred from history
    grace: timedelta = timedelta(hours=2)
    lag_days: int = 3
    anonymize_days: int = 7
    retention_days: int = 60
    min_rows: int = 1
    expected_columns: tuple[str, ...] = ()
    closed_days: tuple[DayRange, ...] = ()
    pattern: re.Pattern[str] | None = None
    configured: bool = False  # an explicit [[report]] entry, not auto-discovered
    # Content checks (docs/CONTENT_CHECKS.md): the column whose dates should fall on the
    # covered day (None: the first "...date..." column holding dates; "": no date check), and
    # the share of the weekday's usual row count below which a delivery has too few rows.
    date_column: str | None = None
    min_share: float = 0.2
    #: Columns ``export --pseudonymize`` replaces with keyed hashes; empty: the default rule
    #: (headers naming an identifier, user id, patron id or e-mail; tui.core.pseudonym).
    identifier_columns: tuple[str, ...] = ()
    #: Local retention (docs/RETENTION.md): a held copy delivered more than this many days ago
    #: is purged (None: every copy is kept). ``keep_until_exported`` None means yes: only
    #: content an export has included is purged.
    local_retention_days: int | None = None
    keep_until_exported: bool | None = None
    #: One fixed file name that every delivery replaces on the server (docs/DOMAIN.md, "Rolling
    #: reports"): True or False when configured; None: inferred from the name's history.
    rolling: bool | None = None

    # The report's dates (docs/DOMAIN.md): every other module asks for them here.

    def is_closed(self, day: date) -> bool:
        """Whether ``day`` is a configured closed day (a loan day with no activity).

        One binary search in the ranges merged once (:attr:`_closed_spans`): a health
        evaluation asks for every run of years of history, and a list of holidays or a range
        over centuries costs each day the same."""
        firsts, lasts = self._closed_spans
        i = bisect_right(firsts, day.toordinal()) - 1
        return i >= 0 and day.toordinal() <= lasts[i]

    @cached_property
    def _closed_spans(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``closed_days`` as sorted, disjoint spans of day ordinals: (first days, last days);
        overlapping and touching ranges are merged into one."""
        spans: list[list[int]] = []
        for r in sorted(self.closed_days, key=lambda r: r.first):
            first, last = r.first.toordinal(), r.last.toordinal()
            if last < first:
                continue  # holds no day
            if spans and first <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], last)
            else:
                spans.append([first, last])
        return tuple(s[0] for s in spans), tuple(s[1] for s in spans)

    def covered_day(self, run_day: date) -> date:
        """The loan day a run on ``run_day`` reports on (``lag_days`` before it)."""
        return run_day - timedelta(days=self.lag_days)

    def rescue_by(self, run_day: date) -> date:
        """The day the covered day's loans are anonymized: a manual re-run in Alma works only
        before it."""
        return self.covered_day(run_day) + timedelta(days=self.anonymize_days)

    def delete_at(self, delivered_at: datetime, tz: tzinfo) -> datetime:
        """When the server deletes a delivery: ``retention_days`` after it arrived, on the
        library's wall clock (``tz``)."""
        return delivered_at.astimezone(tz) + timedelta(days=self.retention_days)

    def delete_on(self, delivered_at: datetime, tz: tzinfo) -> date:
        """The day the server deletes a delivery (the date of :meth:`delete_at`)."""
        return self.delete_at(delivered_at, tz).date()

    def timing(self, tz: tzinfo, history: Iterable[datetime] = (), now: datetime | None = None) -> Timing:
        """The report's schedule placed in the library's zone ``tz``.

        The configured ``schedule`` and ``at``; whatever is not configured is inferred from
        ``history`` (the report's delivery times; those no delivery can have, before
        ``clock.EARLIEST_DELIVERY`` or ``clock.dated_ahead`` of ``now``, are left out). An
        inferred schedule that is not ``schedule.trusted`` gives a timing that is not ``known``:
        no run of it is expected. An "every N days" schedule without a start is anchored on the
        first delivery's run: the day whose ``at`` is nearest to it (a delivery just after
        midnight, late for a run at 23:00, is the day before's; one just before a run at 00:30,
        the day after's).
        """
        now = now or clock.now()
        moments = sorted(m for m in history if clock.possible_delivery(m, now))
        inferred = self.schedule is None or self.at is None
        guess = infer_schedule(moments, tz) if inferred else None
        known = self.schedule is not None or (guess is not None and trusted(guess, moments, tz))
        if self.schedule is not None:
            schedule = parse_schedule(self.schedule)
        else:
            assert guess is not None
            schedule = guess.schedule
        if self.at is not None:
            at = self.at
        else:
            assert guess is not None
            at = guess.at
        if moments and schedule.kind == "every" and schedule.anchor is None:
            schedule = schedule.anchored(nearest_run_day(moments[0], at, tz))
        return Timing(schedule, at, self.grace, tz, inferred=inferred,
                      confidence=guess.confidence if guess is not None else None, known=known)

    def run_day_of(self, delivered_at: datetime, timing: Timing | None = None) -> date:
        """The run a delivery belongs to (its latest run whose on-time window had opened).

        ``timing``: the report's schedule as :meth:`timing` placed it from the report's whole
        history (what the health evaluation uses). Without it, the configured schedule in the
        delivery's own time zone, with this delivery alone as the history for whatever is not
        configured (so an unscheduled report's run day is the delivery's own day).
        """
        if timing is None:
            timing = self.timing(delivered_at.tzinfo or UTC, (delivered_at,))
        return timing.run_day_of(delivered_at)

    def placed_run_day(self, delivered_at: datetime, timing: Timing | None = None,
                       now: datetime | None = None) -> date | None:
        """:meth:`run_day_of` a delivery that is in a run; None for one in no run: of unknown
        date or dated ahead of ``now`` (default: the clock's), the rule the health evaluation
        and the schedule inference keep (``clock.possible_delivery``). What judges a file
        against its run's covered day (the validator, so ``verify``, ``sync`` and the Verify
        screen, and the verification cache's key) asks this: a file in no run has no covered
        day, so nothing that needs one is judged."""
        if not clock.possible_delivery(delivered_at, now or clock.now()):
            return None
        return self.run_day_of(delivered_at, timing)

    @property
    def keeps_until_exported(self) -> bool:
        """Only content an export has included may be purged (the default with a retention)."""
        return self.keep_until_exported is not False

    def purge_after(self, delivered_at: datetime, tz: tzinfo) -> datetime | None:
        """When a local copy of a delivery becomes old enough to be purged (it is once *more*
        than ``local_retention_days`` have passed; docs/RETENTION.md); None: every copy is kept.
        Counted on the library's wall clock (``tz``), like :meth:`delete_at`."""
        if self.local_retention_days is None:
            return None
        return delivered_at.astimezone(tz) + timedelta(days=self.local_retention_days)


REPORT_KEYS = {
    "name", "schedule", "at", "grace", "lag_days", "anonymize_days", "retention_days",
    "min_rows", "expected_columns", "closed_days", "pattern", "date_column", "min_share",
    "identifier_columns", "local_retention_days", "keep_until_exported", "rolling",
}
#: Local retention settings: report keys that may also be set on a profile (its reports'
#: default; see docs/RETENTION.md).
RETENTION_KEYS = ("local_retention_days", "keep_until_exported")
#: local_retention_days: at most a hundred years (date arithmetic stays within Python's range).
MAX_LOCAL_RETENTION_DAYS = 36600
#: The workbook reader's limits: its own defaults, and its own least memory (below it a worker
#: cannot start). 1048576 MiB is a TiB of address space, 86400 s a day for one file.
DEFAULT_READER_MEMORY_MIB = isolation.DEFAULT_MEMORY_BYTES >> 20
READER_MEMORY_MIB_RANGE = (isolation.MIN_MEMORY_BYTES >> 20, 1 << 20)
DEFAULT_READER_SECONDS = isolation.DEFAULT_TIME_LIMIT
READER_SECONDS_RANGE = (1.0, 86400.0)


@dataclass(frozen=True)
class Profile:
    name: str
    host: str
    port: int | None = None  # None: from ~/.ssh/config, else 22
    username: str | None = None  # None: from ~/.ssh/config, else the local user
    key: Path | None = None
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    remote_dir: str = "."
    local_dir: Path = field(default_factory=lambda: default_data_dir() / "reports")
    timezone: tzinfo = field(default_factory=system_timezone)
    concurrency: int = 4
    connect_timeout: float = 15.0
    #: Seconds a connection may answer nothing while requests wait (closed as stalled then).
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    ssh_config: Path | None = None  # None: ~/.ssh/config when it exists
    ledger: Path | None = None  # None: the user data dir
    reports: tuple[ReportConfig, ...] = ()
    defaults: ReportConfig = field(default_factory=lambda: ReportConfig(name=""))
    source: str | None = None  # the config file it came from
    notify: NotifyConfig = field(default_factory=lambda: NotifyConfig())
    #: Every server folder watched (``remote_dirs``); empty: ``remote_dir`` alone.
    remote_dirs: tuple[str, ...] = ()
    #: The workbook reader's limits for one file: address space (MiB) and wall time (s)
    #: (docs/WORKBOOK_ISOLATION.md).
    reader_memory_mib: int = DEFAULT_READER_MEMORY_MIB
    reader_seconds: float = DEFAULT_READER_SECONDS
    #: A path setting that names an existing entry of the wrong kind (a state of the disk):
    #: raised when this profile is picked (``Config.profile``), so it stops only this profile.
    problem: ConfigError | None = field(default=None, compare=False, repr=False)
    #: Every profile name of the config it came from, its own and broken ones included, in the
    #: config's order (empty: not read from a config). The pseudonym key needs them: a key an
    #: earlier release kept under a file name several profiles had is never guessed.
    config_profiles: tuple[str, ...] = field(default=(), compare=False, repr=False)
    #: The default ledger and folder an earlier release kept under the profile's raw name that
    #: it uses where they are (:class:`EarlierPath`): told by the commands (log, check, JSON).
    earlier_paths: tuple[EarlierPath, ...] = field(default=(), compare=False, repr=False)

    @cached_property
    def folders(self) -> tuple[str, ...]:
        """The watched server folders, normalized (``remote_dirs``, else ``remote_dir``)."""
        return tuple(normalize_folder(f) for f in (self.remote_dirs or (self.remote_dir,)))

    @property
    def several_folders(self) -> bool:
        """More than one folder is watched: files are told apart by folder and name, and each
        folder's copies go to its own folder under ``local_dir``."""
        return len(self.folders) > 1

    def folder_key(self, folder: str) -> str:
        """The folder part of a file's identity: ``""`` when one folder is watched (so editing
        ``remote_dir`` never makes a file another), else the normalized folder."""
        return normalize_folder(folder) if self.several_folders else ""

    def local_dir_of(self, folder: str) -> Path:
        """Where copies of ``folder``'s files go: ``local_dir`` itself when one folder is
        watched, else ``local_dir/<folder>`` (:func:`tui.core.names.local_folder_parts`).
        Made once per folder for this profile (a sync asks several times for every file)."""
        made = self._local_dirs.get(folder)
        if made is None:
            root = Path(self.local_dir).expanduser()
            made = root.joinpath(*local_folder_parts(folder)) if self.several_folders else root
            self._local_dirs[folder] = made
        return made

    @cached_property
    def _local_dirs(self) -> dict[str, Path]:
        """The folders :meth:`local_dir_of` made, by server folder."""
        return {}

    @property
    def ledger_path(self) -> Path:
        return self.ledger or default_ledger_path(self.name)

    def report_for(self, base_name: str) -> ReportConfig:
        """The configured report of this base name, else the defaults under that name (made
        once per name: a sync asks for each file's report several times)."""
        for report in self.reports:
            if report.name == base_name:
                return report
        folded = base_name.casefold().strip()
        for report in self.reports:
            if report.name.casefold().strip() == folded:
                return report
        made = self._unconfigured.get(base_name)
        if made is None:
            made = self._unconfigured[base_name] = replace(self.defaults, name=base_name, configured=False)
        return made

    @cached_property
    def _unconfigured(self) -> dict[str, ReportConfig]:
        """:meth:`report_for`'s defaults by name (both frozen: the same object every time)."""
        return {}

    def classify(self, filename: str, mtime: datetime | None = None) -> tuple[ReportConfig, ParsedName]:
        """Which report a file belongs to, and what its name says about the delivery."""
        for report in self.reports:
            if report.pattern is not None and report.pattern.search(filename):
                return report, parse_name(filename, mtime=mtime, tz=self.timezone, pattern=report.pattern)
        parsed = parse_name(filename, mtime=mtime, tz=self.timezone)
        return self.report_for(parsed.base), parsed

    def timings(self, deliveries: Iterable[Delivery]) -> dict[str, Timing]:
        """Each report's :meth:`ReportConfig.timing` from its delivery history (by report
        name): the run day of a delivery is ``timings[report].run_day_of(delivered_at)``, the
        same the health evaluation finds."""
        moments: dict[str, list[datetime]] = {}
        for d in deliveries:
            moments.setdefault(d.report, []).append(d.delivered_at)
        return {name: self.report_for(name).timing(self.timezone, times) for name, times in moments.items()}


@dataclass(frozen=True)
class Config:
    path: Path | None
    #: The profiles whose settings load, in the config's order.
    profiles: dict[str, Profile]
    #: The profiles whose own settings are wrong (a bad value, an unknown key, a bad report
    #: entry, a name no profile may have, a ``profile.NAME`` that is no table), in the config's
    #: order, each with its error: it is raised when that profile is picked, so one profile's
    #: typo stops only that profile (``--all-profiles`` lists it with its error).
    broken: dict[str, ConfigError] = field(default_factory=dict)
    #: Every profile's name in the config's order (set by the loader; empty: ``profiles``,
    #: then ``broken``).
    order: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every profile's name, broken ones included, in the config's order."""
        return self.order or (*self.profiles, *self.broken)

    def picked(self, name: str | None = None) -> str:
        """The name of the profile ``name`` picks (default: ``default``, or the only one),
        whether or not it is in the config."""
        wanted = name or DEFAULT_PROFILE
        if name is None and wanted not in self.names and len(self.names) == 1:
            wanted = self.names[0]
        return wanted

    def profile(self, name: str | None = None) -> Profile:
        """The profile ``name`` (default: ``default``, or the only one); raises ``ConfigError``
        for none, for a broken one (:attr:`broken`), or for its own :attr:`Profile.problem`."""
        wanted = self.picked(name)
        if wanted in self.broken:
            raise self.broken[wanted]
        found = self.profiles.get(wanted)
        if found is not None:
            if found.problem is not None:
                raise found.problem
            return found
        known = ", ".join(sorted(self.names)) or "none"
        raise ConfigError(self.path, f"profile.{wanted}",
                          f"no such profile (profiles: {known}); pick one with --profile")


# --------------------------------------------------------------------------------------------
# Parsing


def parse_day_range(text: object) -> DayRange:
    wrong = f"{text!r} is not a day or a range; write \"2026-12-24\" or \"2026-12-24..2027-01-01\""
    parts = [p.strip() for p in str(text).split("..")]
    if len(parts) not in (1, 2):
        raise ValueError(wrong)
    try:
        first = date.fromisoformat(parts[0])
        last = date.fromisoformat(parts[-1])
    except ValueError:
        raise ValueError(wrong) from None
    if last < first:
        raise ValueError(f"{text!r} ends before it starts")
    return DayRange(first, last)


T = TypeVar("T")
D = TypeVar("D")
#: A TOML table as ``tomllib`` reads it: values are whatever the file holds.
Table: TypeAlias = Mapping[str, object]


class _Reader:
    """Typed access to one TOML table with errors naming file and key."""

    def __init__(self, file: Path | None, prefix: str, table: Table) -> None:
        self.file, self.prefix, self.table = file, prefix, table

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), reason)

    def unknown(self, allowed: set[str]) -> None:
        for name in self.table:
            if name not in allowed:
                hint = ", ".join(sorted(allowed))
                raise self.error(name, f"unknown key (known keys here: {hint})")

    def _checked(self, name: str, kinds: tuple[type, ...]) -> object:
        value = self.table[name]
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"expected {_kind_name(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise self.error(name, f"expected {_kind_name(kinds)}, got {type(value).__name__} {_shown(value)}")
        return value

    def get(self, name: str, kind: type[T], default: D) -> T | D:
        """The value of ``name`` when it is a ``kind``; ``default`` when it is not set."""
        if name not in self.table:
            return default
        value = self._checked(name, (kind,))
        assert isinstance(value, kind)
        return value

    def table_at(self, name: str) -> Table:
        """A sub-table (empty when not set)."""
        value = self.get(name, dict, {})
        return {str(k): v for k, v in value.items()}

    def convert(self, name: str, fn: Callable[[object], T], default: D) -> T | D:
        """``fn(value)`` of ``name`` (``default`` when it is not set); ``fn`` raises
        ``ValueError`` or ``TypeError`` with the reason."""
        if name not in self.table:
            return default
        try:
            return fn(self.table[name])
        except (ValueError, TypeError) as exc:
            raise self.error(name, str(exc)) from None

    def int_in(self, name: str, low: int, high: int, default: int) -> int:
        value = self.get(name, int, default)
        if not low <= value <= high:
            raise self.error(name, f"{_shown(value)} is out of range ({low}..{high})")
        return value

    def seconds(self, name: str, low: float, high: float, default: float, *, low_included: bool = False) -> float:
        """A number of seconds, more than ``low`` (or at least, ``low_included``) and at most
        ``high`` (no nan, no infinity)."""
        value = self._checked(name, (int, float)) if name in self.table else default
        assert isinstance(value, (int, float))
        if isinstance(value, float) and math.isnan(value):
            raise self.error(name, f"nan is not a number; give seconds between {low:g} and {high:g}")
        if not (low <= value if low_included else low < value) or not value <= high:
            excluded = "" if low_included else " (excluded)"
            raise self.error(name, f"{_shown(value)} is not between {low:g}{excluded} and {high:g} seconds")
        return float(value)

    def text(self, name: str, what: str, default: str | None = None) -> str | None:
        """A string without control characters (they would corrupt logs and terminals)."""
        value = self.get(name, str, default)
        if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise self.error(name, f"{_shown(value)} contains a control character; {what}")
        return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_grace(value: object) -> timedelta:
    """A report's ``grace`` (``2h``, ``90m``, ``3d``): at most ``MAX_GRACE``; else ``ValueError``."""
    try:
        grace = parse_duration(value)
    except OverflowError:
        grace = MAX_GRACE + timedelta(days=1)
    if grace > MAX_GRACE:
        raise ValueError(f"{_shown(value)} is too long: grace is at most 31 days (\"31d\")")
    return grace


def _schedule_check(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError("expected a string like \"daily\", \"weekly:MON,THU\" or \"monthly:1\"")
    parse_schedule(text)
    return text


def _pattern(text: object) -> re.Pattern[str]:
    if not isinstance(text, str):
        raise TypeError("expected a regular expression string")
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    if "name" not in compiled.groupindex or "ts" not in compiled.groupindex:
        raise ValueError("the pattern needs the named groups (?P<name>...) and (?P<ts>...)")
    return compiled


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return tuple(str(v) for v in value)


def _day_ranges(value: object) -> tuple[DayRange, ...]:
    if not isinstance(value, list):
        raise TypeError("expected a list like [\"2026-12-24..2027-01-01\", \"2027-04-03\"]")
    out: list[DayRange] = []
    for item in value:
        if isinstance(item, date) and not isinstance(item, datetime):
            out.append(DayRange(item, item))
        else:
            out.append(parse_day_range(item))
    return tuple(out)


def _report(reader: _Reader, base: ReportConfig, *, need_name: bool) -> ReportConfig:
    reader.unknown(REPORT_KEYS if need_name else REPORT_KEYS - {"name"})
    days, keep = _retention(reader, base)
    name = base.name
    if need_name:
        name = reader.get("name", str, "")
        if not name.strip():
            raise reader.error("name", "every [[report]] needs a name: the report's base name in file names")
    return replace(
        base,
        name=name,
        schedule=reader.convert("schedule", _schedule_check, base.schedule),
        at=reader.convert("at", parse_at, base.at),
        grace=reader.convert("grace", parse_grace, base.grace),
        lag_days=reader.int_in("lag_days", 0, 366, base.lag_days),
        anonymize_days=reader.int_in("anonymize_days", 1, 3660, base.anonymize_days),
        retention_days=reader.int_in("retention_days", 1, 36600, base.retention_days),
        min_rows=reader.int_in("min_rows", 0, 10**9, base.min_rows),
        expected_columns=reader.convert("expected_columns", _str_list, base.expected_columns),
        closed_days=reader.convert("closed_days", _day_ranges, base.closed_days),
        pattern=reader.convert("pattern", _pattern, base.pattern),
        identifier_columns=reader.convert("identifier_columns", _str_list, base.identifier_columns),
        configured=need_name,
        date_column=reader.convert("date_column", _date_column, base.date_column),
        min_share=reader.convert("min_share", _share, base.min_share),
        local_retention_days=days,
        keep_until_exported=keep,
        rolling=reader.convert("rolling", _flag, base.rolling),
    )


def _retention(reader: _Reader, base: ReportConfig) -> tuple[int | None, bool | None]:
    """``local_retention_days`` (whole days, 1 or more) and ``keep_until_exported`` (a boolean),
    each the base's when not in the table."""
    days = base.local_retention_days
    if "local_retention_days" in reader.table:
        value = reader.table["local_retention_days"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise reader.error("local_retention_days", f"expected a whole number of days like 90, got "
                               f"{type(value).__name__} {_shown(value)} (leave it out to keep every local copy)")
        if not 1 <= value <= MAX_LOCAL_RETENTION_DAYS:
            raise reader.error("local_retention_days", f"{_shown(value)} is out of range "
                               f"(1..{MAX_LOCAL_RETENTION_DAYS} days; leave it out to keep every local copy)")
        days = value
    keep = base.keep_until_exported
    if "keep_until_exported" in reader.table:
        value = reader.table["keep_until_exported"]
        if not isinstance(value, bool):
            raise reader.error("keep_until_exported", f"expected true or false, got {type(value).__name__} "
                               f"{_shown(value)}")
        keep = value
    return days, keep


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, not {_shown(value)}")
    return value


def _date_column(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError('expected a column name like "Loan Date" ("" switches the date check off)')
    if len(value) > 100 or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{_shown(value)} is not a column name (at most 100 characters, no control characters)")
    return value.strip()


def _share(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected a number between 0 and 1, like 0.2 (0 switches the check off)")
    if math.isnan(value) or not 0 <= value <= 1:
        raise ValueError(f"{_shown(value)} is not between 0 and 1; 0.2 means fewer than a fifth of "
                         "the usual rows is reported (0 switches the check off)")
    return float(value)


PROFILE_KEYS = {
    "host", "port", "username", "key", "known_hosts", "remote_dir", "local_dir", "timezone",
    "concurrency", "connect_timeout", "request_timeout", "ssh_config", "ledger", "report", "defaults", "notify",
    *RETENTION_KEYS,
    "remote_dirs",
    "reader_memory_mib", "reader_seconds",
}


def _path(value: object, relative_to: Path | None) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("expected a path string")
    if "\0" in value:
        raise ValueError(f"{_shown(value)} contains a NUL character, which no path can hold")
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # ~name of no such user: no home folder to expand it to
        raise ValueError(f"{_shown(value)} names the home folder of a user this machine does "
                         "not know; write the full path") from None
    if not p.is_absolute() and relative_to is not None:
        p = relative_to / p
    return p


def _zone(value: object) -> tzinfo:
    if not isinstance(value, str):
        raise TypeError("expected an IANA time zone name like \"America/Chicago\"")
    try:
        return ZoneInfo(value)
    except ZONE_ERRORS:
        raise ValueError(f"unknown time zone {_shown(value)}; use an IANA name like \"America/Chicago\"") from None


#: What a host name cannot hold: white space (``str.isspace``'s) and control characters.
_NOT_IN_HOST = re.compile(r"[\s\x00-\x1f\x7f]")


def _profile(file: Path | None, name: str, table: object, top_defaults: ReportConfig,
             places: _Places | None = None) -> Profile:
    prefix = f"profile.{name}"
    if not isinstance(table, dict):
        raise ConfigError(file, prefix, "expected a table: [profile.NAME]")
    refused = profile_name_refusal(name)
    if refused is not None:
        raise ConfigError(file, f"profile.{_key_part(name)}", refused)
    r = _Reader(file, prefix, table)
    r.unknown(PROFILE_KEYS)
    host = r.get("host", str, "")
    if not host.strip():
        raise r.error("host", "missing: the SFTP server's host name or a Host alias from ~/.ssh/config")
    if len(host) > 255 or _NOT_IN_HOST.search(host):
        raise r.error("host", f"{_shown(host)} is not a host name (no spaces or control characters, "
                      "at most 255 characters)")
    base_dir = file.parent if file else None

    def in_base(value: object) -> Path:
        return _path(value, base_dir)

    defaults = top_defaults
    # Retention set on the profile itself is its reports' default, like [profile.NAME.defaults].
    own = {k: table[k] for k in RETENTION_KEYS if k in table}
    if own:
        days, keep = _retention(_Reader(file, prefix, own), defaults)
        defaults = replace(defaults, local_retention_days=days, keep_until_exported=keep)
    if "defaults" in table:
        d = r.table_at("defaults")
        for k in own:
            if k in d:
                raise r.error(k, f"is set both here and in [{prefix}.defaults]; keep one of them")
        defaults = _report(_Reader(file, f"{prefix}.defaults", d), defaults, need_name=False)
    reports = []
    seen: set[str] = set()
    for i, entry in enumerate(r.get("report", list, [])):
        key = f"{prefix}.report[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(file, key, "expected a table: [[profile.NAME.report]]")
        report = _report(_Reader(file, key, entry), defaults, need_name=True)
        if report.name.casefold() in seen:
            raise ConfigError(file, f"{key}.name", f"the report {report.name!r} is configured twice")
        seen.add(report.name.casefold())
        reports.append(report)
    port = r.int_in("port", 1, 65535, 22) if "port" in table else None
    username = r.text("username", "write the account name the server expects")
    key_file = r.convert("key", in_base, None)
    remote_dir = r.text("remote_dir", "write the folder as the server names it", ".") or "."
    remote_dirs = _remote_dirs(r, remote_dir, "remote_dir" in table)
    if len(remote_dirs) > 1:
        _refuse_rolling(file, prefix, table, top_defaults, defaults, len(remote_dirs))
    places = places or _Places((), {}, _Paths())
    names, paths = places.names, places.paths
    timezone = r.convert("timezone", _zone, None) or paths.system_zone
    concurrency = r.int_in("concurrency", 1, 32, 4)
    connect_timeout = r.seconds("connect_timeout", 0.0, MAX_CONNECT_TIMEOUT, 15.0)
    request_timeout = r.seconds("request_timeout", *REQUEST_TIMEOUT_RANGE, DEFAULT_REQUEST_TIMEOUT,
                                low_included=True)
    reader_memory_mib = r.int_in("reader_memory_mib", *READER_MEMORY_MIB_RANGE, DEFAULT_READER_MEMORY_MIB)
    reader_seconds = r.seconds("reader_seconds", *READER_SECONDS_RANGE, DEFAULT_READER_SECONDS,
                               low_included=True)
    ssh_config = r.convert("ssh_config", in_base, None)
    ledger = r.convert("ledger", in_base, None)
    notify = _notify(_Reader(file, f"{prefix}.notify", r.table_at("notify"))) if "notify" in table else NotifyConfig()
    known_hosts = r.convert("known_hosts", in_base, None)
    own_local_dir = r.convert("local_dir", in_base, None)
    local_dir = own_local_dir or default_local_dir(name, paths.data_dir)
    earlier: tuple[EarlierPath, ...] = ()
    try:  # the disk's state, not the text's: it stops this profile only (Config.profile)
        _check_kinds(r, {"key": key_file, "known_hosts": known_hosts, "ssh_config": ssh_config,
                         "ledger": ledger, "local_dir": local_dir})
        earlier = _check_earlier_defaults(r, name, places, ledger=ledger is None,
                                          local_dir=own_local_dir is None)
        problem = None
    except ConfigError as exc:
        problem = exc
    for kept in earlier:  # used where they are: nothing is moved (another process may use them)
        if kept.setting == "ledger":
            ledger = kept.path
        else:
            local_dir = kept.path
    profile = Profile(
        name=name,
        host=host,
        port=port,
        username=username,
        key=key_file,
        remote_dir=remote_dirs[0] if remote_dirs else remote_dir,
        remote_dirs=remote_dirs,
        timezone=timezone,
        concurrency=concurrency,
        connect_timeout=connect_timeout,
        request_timeout=request_timeout,
        reader_memory_mib=reader_memory_mib,
        reader_seconds=reader_seconds,
        ssh_config=ssh_config,
        ledger=ledger,
        reports=tuple(reports),
        defaults=defaults,
        source=str(file) if file else None,
        notify=notify,
        local_dir=local_dir,
        known_hosts=known_hosts if known_hosts is not None else paths.known_hosts,
        problem=problem,
        config_profiles=names,
        earlier_paths=earlier,
    )
    _check_own_files(r, profile, paths, explicit_ledger="ledger" in table)
    return profile


def _check_earlier_defaults(r: _Reader, name: str, places: _Places, *,
                            ledger: bool, local_dir: bool) -> tuple[EarlierPath, ...]:
    """Releases before :func:`default_ledger_path` named a profile's default ledger and folder
    after its raw name (``a/b`` a sub-folder, ``../x`` outside the data folder). A profile
    whose name they wrote otherwise (``ledger``, ``local_dir``: the setting is left out) never
    starts an empty ledger or folder beside what they kept.

    What they kept is used where it is (returned, one :class:`EarlierPath` each) when it is this
    profile's beyond doubt (:func:`_unambiguous`); otherwise raises ``ConfigError`` naming the
    paths and what to do. ``places``: every profile of the config; a file an earlier release
    kept for one may be another's by name now (``a%20b``'s old ledger is ``a b``'s new one),
    and is then neither taken for this one nor offered to be moved; and the paths each
    profile's own ``ledger`` and ``local_dir`` settings name."""
    if profile_file_part(name) == name:
        return ()  # the very paths earlier releases gave it
    found: list[tuple[str, str]] = []
    kept: list[EarlierPath] = []
    data = places.paths.data_dir
    checks = ((ledger, "ledger", _earlier_ledger_path, default_ledger_path, os.path.lexists),
              (local_dir, "local_dir", _earlier_local_dir, default_local_dir, _holds_something))
    for wanted, key, earlier, current, holds in checks:
        old, new = earlier(name, data), current(name, data)
        if not wanted or not holds(old):
            continue
        others = [p for p in places.by_default(key).get(old, ()) if p != name]
        theirs = [p for p in places.by_earlier(key).get(new, ()) if p != name]
        if not holds(new) and _unambiguous(key, name, old, places):
            kept.append(EarlierPath(name, key, old, new))
        elif not holds(new) or theirs:
            setting = places.claiming(old, besides=(name, *others))
            found.append((key, _left_behind(key, old, new, others, theirs if holds(new) else [],
                                            first=not found, setting=setting)))
    if found:
        raise r.error(found[0][0], "; ".join(text for _key, text in found))
    return tuple(kept)


def _unambiguous(key: str, name: str, old: Path, places: _Places) -> bool:
    """The ledger (``key`` ``ledger``) or folder an earlier release kept at ``old`` for profile
    ``name`` is its own beyond doubt: the raw name made a path right inside the folder such
    paths live in (no '/' or '..' reached another folder or another profile's place), it is
    the kind expected (a regular file; a folder), not a link (which could lead anywhere), and
    no other profile of the config is given it or anything in or around it, now (its default
    or its own setting) or by an earlier release."""
    data = places.paths.data_dir
    parent = data if key == "ledger" else data / "reports"
    raw = f"ledger-{name}.sqlite3" if key == "ledger" else name
    if os.sep in raw or (os.altsep and os.altsep in raw) or raw in (".", "..") or old != parent / raw:
        return False
    try:
        mode = os.lstat(old).st_mode
    except OSError:
        return False
    if not (stat.S_ISREG(mode) if key == "ledger" else stat.S_ISDIR(mode)):
        return False
    return not any(places.names[owner] != name for owner in places.every_place.overlapping(old))


class _Places:
    """Every profile of one read of the config and the places each is given, indexed once for
    the checks of earlier releases' ledgers and folders (:func:`_check_earlier_defaults`): each
    profile's check looks its paths up instead of comparing them with every other profile's
    (which took 8 s of CPU for 250 profiles, 31 s for 500). Each index is made when a check
    first needs it: a config with nothing left by an earlier release makes none."""

    def __init__(self, names: tuple[str, ...], claimed: Mapping[str, tuple[Path, ...]], paths: _Paths) -> None:
        #: Every profile's name, broken ones included, in the config's order.
        self.names = names
        #: The paths each profile's own ``ledger`` and ``local_dir`` settings name.
        self.claimed = claimed
        self.paths = paths
        self._defaults: dict[str, dict[Path, list[str]]] = {}
        self._earlier: dict[str, dict[Path, list[str]]] = {}

    def by_default(self, key: str) -> dict[Path, list[str]]:
        """The profiles (in the config's order) by their default ledger (``key`` ``ledger``)
        or folder (``local_dir``), as this release names them."""
        found = self._defaults.get(key)
        if found is None:
            current = default_ledger_path if key == "ledger" else default_local_dir
            found = self._defaults[key] = {}
            for p in self.names:
                found.setdefault(current(p, self.paths.data_dir), []).append(p)
        return found

    def by_earlier(self, key: str) -> dict[Path, list[str]]:
        """The profiles whose name earlier releases wrote otherwise, by the default ledger or
        folder those releases gave them."""
        found = self._earlier.get(key)
        if found is None:
            earlier = _earlier_ledger_path if key == "ledger" else _earlier_local_dir
            found = self._earlier[key] = {}
            for p in self.names:
                if profile_file_part(p) != p:
                    found.setdefault(earlier(p, self.paths.data_dir), []).append(p)
        return found

    def claiming(self, path: Path, *, besides: tuple[str, ...]) -> list[str]:
        """The profiles (in the config's order, those ``besides`` left out) whose own
        ``ledger`` or ``local_dir`` setting names ``path``, a path inside it, or a folder
        around it."""
        owners = set(self.claimed_places.overlapping(path))
        return [self.names[i] for i in sorted(owners) if self.names[i] not in besides]

    @cached_property
    def claimed_places(self) -> _Overlaps:
        """The paths of every profile's own ``ledger`` and ``local_dir`` settings."""
        return _Overlaps(self.paths, ((i, path) for i, p in enumerate(self.names)
                                      for path in self.claimed.get(p, ())))

    @cached_property
    def every_place(self) -> _Overlaps:
        """Every path a profile is given: its own settings, this release's default ledger and
        folder, and those earlier releases gave it."""
        data = self.paths.data_dir

        def given(p: str) -> tuple[Path, ...]:
            return (*self.claimed.get(p, ()), default_ledger_path(p, data), default_local_dir(p, data),
                    _earlier_ledger_path(p, data), _earlier_local_dir(p, data))

        return _Overlaps(self.paths, ((i, path) for i, p in enumerate(self.names) for path in given(p)))


class _Overlaps:
    """Paths, each resolved once (links followed: :meth:`_Paths.resolved`), with their owners
    (an index into the config's profiles), so that those that name one entry with a path, lie
    inside it or around it are found without comparing it with each. Two resolved paths
    overlap as :func:`_inside` compares them, as text: one is the other, or starts with it and
    a '/' (a folder ending in '/', the root, with it alone)."""

    def __init__(self, paths: _Paths, owned: Iterable[tuple[int, Path]]) -> None:
        self._paths = paths
        self._owners: dict[str, list[int]] = {}
        for owner, path in owned:
            self._owners.setdefault(os.fspath(paths.resolved(path)), []).append(owner)
        self._sorted = sorted(self._owners)

    def overlapping(self, path: Path) -> Iterator[int]:
        """The owners of every path that overlaps ``path`` (an owner once or more)."""
        text = os.fspath(self._paths.resolved(path))
        owners = self._owners
        # The path itself, and the folders around it: each prefix that ends where a '/'
        # starts (it and the '/' begin the path), or with that '/'.
        yield from owners.get(text, ())
        at = text.find("/")
        while at != -1:
            yield from owners.get(text[:at], ())
            yield from owners.get(text[:at + 1], ())
            at = text.find("/", at + 1)
        # What lies inside it: the paths that start with it and a '/', together in sorted order.
        prefix = text if text.endswith("/") else text + "/"
        for i in range(bisect_left(self._sorted, prefix), len(self._sorted)):
            inside = self._sorted[i]
            if not inside.startswith(prefix):
                break
            yield from owners[inside]


def _inside(path: Path, folder: Path) -> bool:
    """``path.is_relative_to(folder)`` for two resolved paths, compared as text (pathlib's
    comparison of parts cost more than the rest of a profile's path checks)."""
    a, b = os.fspath(path), os.fspath(folder)
    return a == b or a.startswith(b if b.endswith("/") else b + "/")


@dataclass(frozen=True)
class EarlierPath:
    """A default ledger (``setting`` ``ledger``) or downloads folder (``local_dir``) an earlier
    release kept under the profile's raw name (``path``), used where it is because it is the
    profile's beyond doubt and nothing is at this release's name for it (``new_path``). Nothing
    is moved or renamed: another process (a running sync, the app) may be using it."""

    profile: str
    setting: str
    path: Path
    new_path: Path

    @property
    def config_line(self) -> str:
        """The line that makes it explicit, to paste into the profile's table."""
        return f"{self.setting} = {_toml_text(self.path)}"

    @property
    def message(self) -> str:
        """One line for a person: what was found, what is used, and the line to paste."""
        noun = _LEFT[self.setting][0]
        return (f"profile '{escape_name(self.profile)}': earlier releases kept its {noun} at {self.path}; "
                f"this release names it {self.new_path}, where there is nothing, so it is used where "
                f"it is (nothing was moved); to make that explicit, add "
                f"{self.config_line} to [profile.{_key_part(self.profile)}]")

    def to_json(self) -> dict[str, str]:
        return {"setting": self.setting, "path": str(self.path), "new_path": str(self.new_path),
                "config_line": self.config_line, "message": self.message}


_WHY_NEW_NAMES = ("a character of a profile's name other than a letter, digit, '-', '_' or '.' is "
                  "written %XX in file names, so that no two profiles share a file and no name "
                  "reaches another folder")
#: Per setting: what it is, what earlier releases did with it, why it is not started anew, and
#: how it is moved.
_LEFT = {
    "ledger": ("ledger", "kept this profile's ledger at", "a new ledger is never started beside a history",
               "move it to the new name (with any -wal and -shm file beside it, while no report-keeper runs)"),
    "local_dir": ("folder", "put this profile's downloads in", "downloads are never left behind for an "
                  "empty folder", "move the folder to the new name (each copy is found there under its name)"),
}


def _earlier_ledger_path(name: str, data_dir: Path | None = None) -> Path:
    """Where releases before :func:`default_ledger_path` kept the profile's default ledger."""
    return Path(os.path.normpath((data_dir or default_data_dir()) / f"ledger-{name}.sqlite3"))


def _earlier_local_dir(name: str, data_dir: Path | None = None) -> Path:
    """Where releases before :func:`default_local_dir` put the profile's downloads."""
    return Path(os.path.normpath((data_dir or default_data_dir()) / "reports" / name))


def _left_behind(key: str, old: Path, new: Path, others: list[str], theirs: list[str], *, first: bool,
                 setting: list[str] | None = None) -> str:
    """What a person decides for a ledger or folder an earlier release kept under the
    profile's raw name (``first``: the sentence that says why the names changed)."""
    noun, did, never, move = _LEFT[key]
    text = f"earlier releases {did} {old}; this release names its {noun} {new}"
    text += f" ({_WHY_NEW_NAMES}), and {never}" if first else f", and {never}"
    if theirs:
        text += f"; {new} is where earlier releases kept the {noun} of profile {_names_text(theirs)}"
    text += f": keep it where it is with {key} = {_toml_text(old)} in this profile"
    if others:  # moved, it would leave that profile without it; one folder is no two profiles'
        text += f" (it is also the {noun} of profile {_names_text(others)} now, by name"
        text += ")" if key == "ledger" else ": give that profile a local_dir of its own)"
    elif setting:  # another profile's own ledger or local_dir names it, or a folder around it
        text += f" (profile {_names_text(setting)} names it, or a folder around it, in its own settings)"
    elif not theirs:
        text += f", or {move}"
    return text


def _names_text(names: list[str]) -> str:
    return " and ".join(f"'{escape_name(n)}'" for n in names)


def _toml_text(path: Path) -> str:
    """``path`` as a TOML string to paste into the config."""
    return json.dumps(str(path), ensure_ascii=False)


def _holds_something(folder: Path) -> bool:
    """The folder exists and holds an entry (one that cannot be read may: it counts)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True


def _refuse_rolling(file: Path | None, prefix: str, table: dict[str, object], top_defaults: ReportConfig,
                    defaults: ReportConfig, folders: int) -> None:
    """Rolling reports are recognised in a profile that watches one folder only: asking for
    them with several is a config error (ignoring it would turn every replacement of the file
    into a 'changed' warning)."""
    why = (f"rolling reports are recognised only in a profile that watches one folder (this one "
           f"watches {folders}); give the rolling report's folder a profile of its own, or set "
           "rolling = false")
    entries = table.get("report")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict) and entry.get("rolling") is True:
            raise ConfigError(file, f"{prefix}.report[{i}].rolling", why)
    own = table.get("defaults")
    if isinstance(own, dict) and own.get("rolling") is True:
        raise ConfigError(file, f"{prefix}.defaults.rolling", why)
    if defaults.rolling is True and top_defaults.rolling is True:
        raise ConfigError(file, "defaults.rolling", why)


def _remote_dirs(r: _Reader, remote_dir: str, has_remote_dir: bool) -> tuple[str, ...]:
    """``remote_dirs``: several server folders (``remote_dir``, when also set, is one more;
    alone, it is checked the same way). Each is checked as
    :func:`tui.core.names.folder_refusal` says; two spellings of one folder, or two folders
    whose local folders would be one on a case-insensitive disk, are refused."""
    if "remote_dirs" not in r.table:
        # One folder: its copies go to local_dir itself; its name is refused for the same
        # reasons (it is shown and logged, and becomes a local folder once a second is added).
        reason = folder_refusal(remote_dir)
        if reason is not None:
            raise r.error("remote_dir", reason)
        return ()
    raw = r.get("remote_dirs", list, [])
    if not raw:
        raise r.error("remote_dirs", "the list is empty; write at least one folder, like "
                      "[\"upload/ALMA\"], or use remote_dir")
    folders: list[str] = [remote_dir] if has_remote_dir else []
    for i, value in enumerate(raw):
        if not isinstance(value, str):
            raise r.error(f"remote_dirs[{i}]", f"expected a string, not {_shown(value)}")
        folders.append(value)
    seen: dict[str, str] = {}
    local_seen: dict[str, str] = {}
    out: list[str] = []
    for i, value in enumerate(folders):
        key = "remote_dir" if has_remote_dir and i == 0 else f"remote_dirs[{i - has_remote_dir}]"
        reason = folder_refusal(value)
        if reason is not None:
            raise r.error(key, reason)
        folder = normalize_folder(value)
        if folder in seen:
            raise r.error(key, f"{_shown(value)} is the folder {_shown(seen[folder])} again")
        local = collision_key("/".join(local_folder_parts(folder)))
        if local in local_seen:
            raise r.error(key, f"{_shown(value)} and {_shown(local_seen[local])} would share one "
                          "local folder (they differ only in letter case, '/' or characters a "
                          "Windows disk refuses); watch only one of them")
        seen[folder] = value
        local_seen[local] = value
        out.append(folder)
    return tuple(out)


def _resolved(path: str | Path) -> Path:
    try:
        return Path(path).expanduser().resolve(strict=False)
    except (OSError, RuntimeError):
        return Path(os.path.abspath(Path(path).expanduser()))


class _Paths:
    """What one read of the config finds once for all its profiles: the paths it resolves
    (report-keeper's own folders are the same for every profile, and profiles often share a
    known_hosts or a key folder), the data folder, the machine's time zone and the default
    known_hosts. Each was looked up again for every profile: a config of ~17,500 small
    profiles took ~30 s of CPU to load, most of it in these."""

    def __init__(self) -> None:
        self._resolved: dict[str, Path] = {}
        self._texts: dict[str, str] = {}
        self._own: dict[Path, str] | None = None

    @cached_property
    def data_dir(self) -> Path:
        return default_data_dir()

    @cached_property
    def system_zone(self) -> tzinfo:
        """The zone of a profile without ``timezone``."""
        return system_timezone()

    @cached_property
    def known_hosts(self) -> Path:
        """The known_hosts of a profile without ``known_hosts``."""
        return Path("~/.ssh/known_hosts").expanduser()

    def resolved(self, path: str | Path) -> Path:
        """``path`` with links resolved (:func:`_resolved`), found as the folder it is in
        resolved once (for every path in it) and its last part: a profile's folder and ledger
        in the data folder cost one look at the disk each, not one per part of the path."""
        key = os.fspath(path)
        found = self._resolved.get(key)
        if found is None:
            try:  # normalized as a Path is: no '.', '//' or trailing '/'
                whole = key if isinstance(path, Path) and key[:1] != "~" else os.fspath(Path(key).expanduser())
            except RuntimeError:  # ~name of no such user: as _resolved says it
                found = _resolved(key)
            else:
                found = Path(self._text_resolved(whole))
            self._resolved[key] = found
        return found

    def _text_resolved(self, path: str) -> str:
        """What ``os.path.realpath`` makes of the normalized ``path``: its folder resolved,
        then its last part, which is taken as it is unless it is a link (then the whole path is
        resolved, loops as :func:`_resolved` treats them); a part that cannot be looked at is
        taken as it is, as realpath does. ``..``, the root and a relative path's first part go
        to :func:`_resolved` whole."""
        found = self._texts.get(path)
        if found is not None:
            return found
        folder, _, name = path.rpartition("/")
        if not name or name == ".." or not _:
            found = os.fspath(_resolved(path))
        else:
            found = os.path.join(self._text_resolved(folder or "/"), name)
            try:
                link = stat.S_ISLNK(os.lstat(found).st_mode)
            except (OSError, ValueError):
                link = False
            if link:
                found = os.fspath(_resolved(path))
        self._texts[path] = found
        return found

    def own_folders(self) -> dict[Path, str]:
        """report-keeper's own folders and the SSH folder, with what each one is."""
        if self._own is None:
            self._own = {
                self.resolved(self.data_dir): "report-keeper's data folder",
                self.resolved(platformdirs.user_config_dir(APP_NAME)): "report-keeper's config folder",
                self.resolved(platformdirs.user_state_dir(APP_NAME)): "report-keeper's state and log folder",
                self.resolved(platformdirs.user_cache_dir(APP_NAME)): "report-keeper's cache folder",
                self.resolved(platformdirs.user_log_dir(APP_NAME)): "report-keeper's log folder",
                self.resolved(Path("~/.ssh")): "the SSH folder",
            }
        return self._own


def _check_own_files(r: _Reader, profile: Profile, paths: _Paths, *, explicit_ledger: bool) -> None:
    """Downloads land in ``local_dir`` under names the server chooses: no file of our own
    may sit there. The ledger (with SQLite's ``-journal``/``-wal``/``-shm`` files beside it)
    may not lie anywhere inside it, and it may not be a folder of report-keeper's own files
    or of the SSH files it trusts (a server file named ``known_hosts`` or ``config`` would
    land next to them)."""
    local = paths.resolved(profile.local_dir)
    ledger_path = profile.ledger or default_ledger_path(profile.name, paths.data_dir)
    ledger = paths.resolved(ledger_path)
    if _inside(ledger, local):
        key = "ledger" if explicit_ledger else "local_dir"
        raise r.error(key, f"the ledger {ledger_path} lies inside local_dir "
                      f"{profile.local_dir}: a server file named like it or its journal could "
                      "replace its history; keep the ledger outside local_dir (the default is "
                      f"{paths.data_dir})")
    own = dict(paths.own_folders())
    own[paths.resolved(profile.known_hosts).parent] = "the folder of known_hosts"
    if profile.key is not None:
        own.setdefault(paths.resolved(profile.key).parent, "the folder of the key file")
    if profile.ssh_config is not None:
        own.setdefault(paths.resolved(profile.ssh_config).parent, "the folder of the ssh config file")
    what = own.get(local)
    if what is not None:
        raise r.error("local_dir", f"{profile.local_dir} is {what}: downloads get the names the "
                      "server gives them, so no file of report-keeper's own may sit there; "
                      "choose a folder of its own")


#: Path settings and the kind of file system entry each must be when it already exists.
_PATH_KINDS = {"key": "file", "known_hosts": "file", "ssh_config": "file", "ledger": "file",
               "local_dir": "folder"}


def _check_kinds(r: _Reader, values: dict[str, Path | None]) -> None:
    """A path setting that names an existing entry of the wrong kind is a config error now,
    not a puzzling failure later (a known_hosts folder read as "no key known", ...)."""
    for key, kind in _PATH_KINDS.items():
        path = values.get(key)
        if path is None:
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue  # missing (created later) or unreachable: the user of the path reports it
        if kind == "folder" and not stat.S_ISDIR(mode):
            raise r.error(key, f"{path} exists but is not a folder; point {key} at a folder")
        if kind == "file" and stat.S_ISDIR(mode):
            raise r.error(key, f"{path} is a folder; point {key} at a file")


# --------------------------------------------------------------------------------------------
# Alerts: [profile.NAME.notify]


@dataclass(frozen=True)
class NotifyConfig:
    """Where alerts go. The SMTP password is never here: only the name of the environment
    variable that holds it (``smtp_password_env``)."""

    email_to: tuple[str, ...] = ()
    email_from: str | None = None  # None: report-keeper@<this machine's name>
    smtp_host: str | None = None
    smtp_port: int | None = None  # None: 587 (starttls), 465 (tls), 25 (none)
    smtp_security: str = "starttls"  # starttls | tls | none
    smtp_username: str | None = None
    smtp_password_env: str | None = None
    webhook_url: str | None = None
    ping_url: str | None = None

    @property
    def email(self) -> bool:
        return bool(self.email_to)

    @property
    def configured(self) -> bool:
        return bool(self.email_to or self.webhook_url or self.ping_url)

    @property
    def port(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return {"starttls": 587, "tls": 465}.get(self.smtp_security, 25)


NOTIFY_KEYS = {
    "email_to", "email_from", "smtp_host", "smtp_port", "smtp_security", "smtp_username",
    "smtp_password_env", "webhook_url", "ping_url",
}
SMTP_SECURITY = ("starttls", "tls", "none")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}|\[[0-9A-Fa-f:.]+\]")


def _printable(value: str) -> bool:
    return value.isprintable() and value == value.strip()


def _address(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("expected an e-mail address like \"circ-team@example.edu\"")
    if not _printable(value) or len(value) > 320:
        raise ValueError("an e-mail address cannot hold control characters or surrounding spaces")
    found = getaddresses([value])
    if len(found) != 1:
        raise ValueError(f"{value!r} holds several addresses; write one address per list item")
    addr = found[0][1]
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or " " in addr or "." not in domain.strip("."):
        raise ValueError(f"{value!r} is not an e-mail address like \"circ-team@example.edu\"")
    return value


def _addresses(value: object) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise TypeError("expected a list of e-mail addresses like [\"circ-team@example.edu\"]")
    return tuple(_address(v) for v in items)


def _smtp_host(value: object) -> str:
    if not isinstance(value, str) or not _HOST.fullmatch(value):
        raise ValueError("expected a host name or address like \"smtp.example.edu\" (no scheme, no port)")
    if value.startswith("["):
        try:
            ipaddress.ip_address(value[1:-1])
        except ValueError:
            raise ValueError(f"{value!r} is no IP address in brackets (like \"[192.0.2.25]\" "
                             "or \"[2001:db8::25]\")") from None
    return value


def _env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError("expected the NAME of an environment variable, like \"RK_SMTP_PASSWORD\" "
                         "(letters, digits and _); the password itself goes in that variable")
    return value


def http_url(value: object) -> str:
    """An http(s) URL from the config; ``ValueError`` says why not. Also used for redirects."""
    if not isinstance(value, str) or not value:
        raise TypeError("expected an https:// URL")
    if len(value) > 2048 or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("a URL cannot hold spaces or control characters (and at most 2048 characters)")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise ValueError("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL holds a user name or password; a password never goes in the "
                         "config file (use a token in the path, as the service issued it)")
    return value


def _notify(r: _Reader) -> NotifyConfig:
    if "smtp_password" in r.table or "password" in r.table:
        key = "smtp_password" if "smtp_password" in r.table else "password"
        raise r.error(key, "a password never goes in the config file; put it in an environment "
                      "variable and name that variable in smtp_password_env")
    r.unknown(NOTIFY_KEYS)
    n = NotifyConfig(
        email_to=r.convert("email_to", _addresses, ()),
        email_from=r.convert("email_from", _address, None),
        smtp_host=r.convert("smtp_host", _smtp_host, None),
        smtp_port=r.int_in("smtp_port", 1, 65535, 25) if "smtp_port" in r.table else None,
        smtp_security=r.get("smtp_security", str, "starttls"),
        smtp_username=r.get("smtp_username", str, None),
        smtp_password_env=r.convert("smtp_password_env", _env_name, None),
        webhook_url=r.convert("webhook_url", http_url, None),
        ping_url=r.convert("ping_url", http_url, None),
    )
    if n.smtp_security not in SMTP_SECURITY:
        raise r.error("smtp_security", f"{n.smtp_security!r} is not one of starttls, tls, none")
    if n.smtp_username is not None and (not n.smtp_username or not _printable(n.smtp_username)):
        raise r.error("smtp_username", "expected a user name without control characters or surrounding spaces")
    if n.email_to and not n.smtp_host:
        raise r.error("smtp_host", "missing: e-mail alerts (email_to) need the SMTP server's host name")
    if not n.email_to:
        for key in ("smtp_host", "email_from", "smtp_username", "smtp_password_env", "smtp_port"):
            if key in r.table:
                raise r.error("email_to", f"missing: {key} is set, but nobody to send e-mail to")
    if n.smtp_username and not n.smtp_password_env:
        raise r.error("smtp_password_env", "missing: smtp_username needs the name of the environment "
                      "variable that holds its password")
    if n.smtp_password_env and not n.smtp_username:
        raise r.error("smtp_username", "missing: smtp_password_env is set, but no user name to log in with")
    if n.smtp_username and n.smtp_security == "none":
        raise r.error("smtp_security", "\"none\" would send the SMTP password unencrypted; use "
                      "\"starttls\" or \"tls\" (or no smtp_username for a local relay)")
    return n


#: Characters refused in config text besides the controls (category Cc: C0, DEL, C1): the
#: direction marks and overrides that make text display as other text and the byte order mark
#: (``SPOOFING_FORMAT_CHARS``, which server names may not hold either), and the Unicode line
#: and paragraph separators (a line break to many readers). Other format characters (the
#: zero-width joiners of emoji and of Persian or Indic words) are kept.
_REFUSED_FORMAT = SPOOFING_FORMAT_CHARS | {"\u2028", "\u2029"}
_NAMES = {0x09: "a tab", 0x0A: "a line break", 0x0D: "a carriage return", 0x1B: "ESC", 0x7F: "DEL"}


#: The characters of ASCII text that :func:`_refused_char` refuses (its only ones there).
_ASCII_REFUSED = re.compile(r"[\x00-\x1f\x7f]")


def _refused_char(text: str) -> str | None:
    """The first character of ``text`` no config string may hold, as its code point and what it
    is (``U+0007 (a control character)``), or None. ASCII
    text (nearly every string of a config) is searched in one call rather than a character at
    a time: every string of every profile is looked at, in each process of a run."""
    if text.isascii() and _ASCII_REFUSED.search(text) is None:
        return None
    for ch in text:
        if unicodedata.category(ch) == "Cc" or ch in _REFUSED_FORMAT:
            what = _NAMES.get(ord(ch), "a control character" if unicodedata.category(ch) == "Cc"
                              else "an invisible direction or line control")
            return f"U+{ord(ch):04X} ({what})"
    return None


def _key_part(name: str) -> str:
    """A table key as a dotted path shows it: bare, or quoted with TOML's escapes."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return name
    return '"' + escape_name(name).replace('"', '\\"') + '"'


_REFUSED_WHY = ("config text cannot hold control characters, line breaks or direction overrides "
                "(they would reach terminals, logs, timer units and e-mails)")


def _refuse_controls(file: Path | None, value: object, key: str, *, values: bool) -> None:
    """Every string of the config (table names, and with ``values`` values and list items)
    is free of control and direction characters: each reaches terminals, logs, systemd units
    or crontab lines and e-mails. No setting needs one: column names are compared with their
    spacing ignored, so a header's line break is written as a space."""
    if isinstance(value, str):
        found = _refused_char(value) if values else None
        if found is not None:
            raise ConfigError(file, key, f"{_shown(value)} holds {found}; {_REFUSED_WHY}: remove it")
    elif isinstance(value, Mapping):
        for name, item in value.items():
            name = str(name)
            path = f"{key}.{_key_part(name)}" if key else _key_part(name)
            found = _refused_char(name)
            if found is not None:
                what = "the profile name" if key == "profile" else "the key"
                raise ConfigError(file, path, f"{what} holds {found}; {_REFUSED_WHY}: rename it")
            _refuse_controls(file, item, path, values=values)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_controls(file, item, f"{key}[{i}]", values=values)


def _whole_file(data: Table, file: Path | None) -> tuple[ReportConfig, Table]:
    """What :func:`parse_config` checks of the file as a whole (``ConfigError``): the shared
    ``[defaults]`` and the ``[profile]`` table, each of whose values is a profile's table."""
    shared = {k: v for k, v in data.items() if k != "profile"}
    # Names first: they are part of every message about what they hold.
    _refuse_controls(file, shared, "", values=False)
    top = _Reader(file, "", data)
    top.unknown({"profile", "defaults"})
    top_defaults = ReportConfig(name="")
    if "defaults" in data:
        top_defaults = _report(_Reader(file, "defaults", top.table_at("defaults")), top_defaults,
                               need_name=False)
    # Values after the checks of each setting (whose own messages say more: a host that is no
    # host name, an unknown time zone): whatever they let through still may not hold one.
    _refuse_controls(file, shared, "", values=True)
    profiles_table = top.table_at("profile")
    if not profiles_table:
        raise ConfigError(file, "profile", "no profile configured; add a [profile.default] table "
                          "with host, username and remote_dir")
    # A value right under [profile] is no profile at all (often a first config's settings
    # written under [profile] instead of [profile.NAME]): the file as a whole is wrong.
    for name, table in profiles_table.items():
        if not isinstance(table, dict):
            raise ConfigError(file, f"profile.{name}", "expected a table: [profile.NAME]")
    return top_defaults, profiles_table


def profile_names(data: Table, file: Path | None = None) -> tuple[str, ...]:
    """The profile names of a TOML document in its order, once what :func:`parse_config`
    checks of the file as a whole holds (else ``ConfigError``), without reading any profile's
    own settings (the names of :attr:`Config.names`, for a fraction of the time)."""
    return tuple(_whole_file(data, file)[1])


def parse_config(data: Table, file: Path | None = None) -> Config:
    """The config of a TOML document. What the file as a whole gets wrong (a top-level key,
    the shared ``[defaults]``, a ``profile`` that is no table or holds no profile) raises
    ``ConfigError``; what one profile's table gets wrong makes that profile broken
    (:attr:`Config.broken`), and the others load."""
    top_defaults, profiles_table = _whole_file(data, file)
    profiles: dict[str, Profile] = {}
    broken: dict[str, ConfigError] = {}
    places = _Places(tuple(profiles_table), _claimed_paths(file, profiles_table), _Paths())
    for name, table in profiles_table.items():
        try:
            profile = _checked_profile(file, name, table, top_defaults, places)
        except ConfigError as exc:
            broken[name] = exc
        else:
            profiles[name] = profile
    return Config(path=file, profiles=profiles, broken=broken, order=tuple(profiles_table))


def parse_profile(data: Table, name: str, file: Path | None = None) -> Profile:
    """``parse_config(data, file).profile(name)``, reading only that profile's settings (and
    every profile's ``ledger`` and ``local_dir``, which its checks compare with its own): the
    same profile, or the same ``ConfigError``, for a fraction of the time in a file of many
    profiles (what ``init`` checks of the text it writes)."""
    top_defaults, profiles_table = _whole_file(data, file)
    table = profiles_table.get(name)
    if table is None:
        return parse_config(data, file).profile(name)  # says which profiles there are
    places = _Places(tuple(profiles_table), _claimed_paths(file, profiles_table), _Paths())
    profile = _checked_profile(file, name, table, top_defaults, places)
    if profile.problem is not None:
        raise profile.problem
    return profile


def _checked_profile(file: Path | None, name: str, table: object, top_defaults: ReportConfig,
                     places: _Places) -> Profile:
    """One profile of the file, its control and direction characters refused too."""
    own = {name: table}  # its name is checked as part of the profile table's keys
    _refuse_controls(file, own, "profile", values=False)
    profile = _profile(file, name, table, top_defaults, places)
    _refuse_controls(file, own, "profile", values=True)
    return profile


def _claimed_paths(file: Path | None, profiles_table: Mapping[str, object]) -> dict[str, tuple[Path, ...]]:
    """Each profile's own ``ledger`` and ``local_dir`` settings (those that name a path; a
    broken profile's too, since what it names may be meant for it)."""
    base_dir = file.parent if file else None
    claimed: dict[str, tuple[Path, ...]] = {}
    for name, table in profiles_table.items():
        paths = []
        for key in ("ledger", "local_dir"):
            value = table.get(key) if isinstance(table, dict) else None
            try:
                paths.append(_path(value, base_dir))
            except (TypeError, ValueError):
                continue
        claimed[name] = tuple(paths)
    return claimed


def read_config_bytes(file: Path, explicit: bool) -> bytes:
    """The file's bytes: a regular file of at most ``MAX_CONFIG_BYTES`` (never a device or a
    pipe, which could block or never end)."""
    try:
        info = os.stat(file)
    except FileNotFoundError:
        if explicit:
            reason = ("the file does not exist; check the path, or set up a config there with "
                      "`report-keeper init --config` and that path")
        else:
            reason = ("no config file here; run `report-keeper init` (or start `report-keeper` in a "
                      "terminal) to set one up, or try `report-keeper --demo`")
        raise ConfigError(file, None, reason) from None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(file, None, f"cannot be read: {why}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(file, None, "this is a folder, not a config file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(file, None, "is not a regular file (a device, pipe or socket); "
                          "point it at a config file")
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(file, None, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(file, None, f"is larger than {MAX_CONFIG_BYTES // 1024} KiB, too large for a "
                          "config file; is it the right file?")
    return raw


def not_utf8(file: Path, raw: bytes, exc: UnicodeDecodeError) -> ConfigError:
    """The error of a config file whose bytes ``raw`` are not UTF-8: where the first bad byte
    is (its line, and its offset in the file counted from 0) and what to do."""
    line = raw.count(b"\n", 0, exc.start) + 1
    return ConfigError(file, None, f"is not UTF-8 text: its first bad byte is on line {line} (byte offset "
                       f"{exc.start}); save the file as UTF-8 (an editor's 'save with encoding')")


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and check a config file (``None``: the default location)."""
    if path is not None and not str(path).strip():
        raise ConfigError(None, None, "the config file name is empty; name a config file (--config FILE)")
    file = Path(path).expanduser() if path is not None else default_config_path()
    raw = read_config_bytes(file, explicit=path is not None or bool(os.environ.get(CONFIG_ENV)))
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise not_utf8(file, raw, exc) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, None, f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(file, None, "is not a usable config: its tables or lists are nested too deeply") from None
    except ValueError:  # e.g. a number of thousands of digits (Python's int conversion limit)
        raise ConfigError(file, None, "is not a usable config: it holds a number too long to read") from None
    return parse_config(data, file)
