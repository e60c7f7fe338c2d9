"""``report-keeper verify PATH... [--json]``: verify local reports, no server needed.

Works on any folder of reports, also ones downloaded earlier by hand. Imports only what it
needs (no Textual, no Excel reader; rich only for the human table): the workbooks are read by
worker processes with memory and time limits (``tui.core.isolation``), so whatever a file does
to its reader, every file gets a result and exactly one JSON document is printed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import sys
from datetime import datetime, tzinfo
from pathlib import Path

from tui.commands.common import add_profile_arguments, fail_usage, for_shell, print_json, raw_stream
from tui.core import clock, isolation
from tui.core import status as st
from tui.core.config import ConfigError, Profile, ReportConfig, default_config_path, load_config, system_timezone
from tui.core.model import VerifyResult
from tui.core.names import escape_name, parse_name
from tui.core.validate import VerifyOptions, validate_many

log = logging.getLogger("report_keeper.verify")

FOLDER_SUFFIXES = (".xlsx", ".xlsm")

EPILOG = """\
PATH may be a report file or a folder. In a folder, every *.xlsx and *.xlsm file directly
inside it is verified (not sub-folders; hidden files, Excel lock files "~$..." and partial
downloads "*.part" are skipped). A file named explicitly is verified whatever its extension,
so a renamed .xls or .csv is reported as unreadable. Something with a report's name that is
not a regular file (a named pipe, a device) is listed as unreadable and never opened.

Each workbook is read in a separate worker process limited to --max-memory MiB of address
space and --max-seconds of wall time (default: the profile's reader_memory_mib and
reader_seconds when a config exists, else 1024 MiB and 120 s); a workbook that needs more, or
that crashes the reader, is reported as unreadable and the other files are verified.

A PATH that does not exist is reported as an unreadable entry (exit 2) and the others are
still verified. A folder holding no reports is a usage error (exit 3).

Report settings (expected_columns, min_rows, closed_days, lag_days, pattern) come from the
config file when one exists: --config FILE, else the default location. Without a config the
defaults apply (min_rows 1, any header, no closed days). A missing default config is fine; a
config that exists but is invalid, or an explicit --config that cannot be loaded, exits 3.

A report whose date column (date_column, or the first column named "...date..." holding
dates) mostly falls on another day than the one its run covers is "wrong-day"; a file named
without a timestamp is not judged (its modification time says nothing about its run).

Exit codes: 0 all reports ok, 1 warnings (an empty report on an open day), 2 critical
(unreadable, wrong-schema or wrong-day report, missing file), 3 usage or configuration error.
With --json exactly one JSON document is printed on stdout:
{"status": "ok|warning|critical", "files": [{"path", "name", "report", "delivered_at",
"status", "rows", "header_row", "columns", "message", "fingerprint", "date_column", "dates",
"covered_day", ...}]}, sorted by delivery time.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("paths", nargs="+", metavar="PATH", help="report files or folders of reports")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument(
        "--jobs", type=_positive_int, default=None, metavar="N",
        help="read N files at a time, each in its own worker process (default: 2, or 1 on a "
        "one-CPU machine)",
    )
    parser.add_argument(
        "--max-memory", type=_memory_mib, default=None, metavar="MIB",
        help="address space one workbook may use while it is read, in MiB (default: the "
        "profile's reader_memory_mib, else 1024)",
    )
    parser.add_argument(
        "--max-seconds", type=_seconds, default=None, metavar="S",
        help="wall time one workbook may take to read (default: the profile's reader_seconds, "
        "else 120)",
    )
    add_profile_arguments(parser)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, not {value}")
    return value


def _memory_mib(text: str) -> int:
    value = _positive_number(text)
    if not 64 <= value <= 1 << 20:
        raise argparse.ArgumentTypeError(f"must be between 64 and 1048576 MiB, not {text}")
    return int(value)


def _seconds(text: str) -> float:
    value = _positive_number(text)
    if not 0.1 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"must be between 0.1 and 86400 seconds, not {text}")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        profile = _profile(args)
    except ConfigError as exc:
        return fail_usage(exc, args)
    # The flags win; else the profile's reader limits; else the defaults.
    memory = args.max_memory << 20 if args.max_memory else None
    seconds = args.max_seconds
    if profile is not None:
        memory = memory or profile.reader_memory_mib << 20
        seconds = seconds or profile.reader_seconds
    isolation.configure(memory_limit=memory, time_limit=seconds, size=args.jobs)
    # The workbook readers start now, while the folders are listed.
    isolation.shared_pool().prestart()
    try:
        return _run(args, profile)
    finally:
        isolation.configure()  # the defaults back for whatever runs next (readers under other limits stopped)


def _run(args: argparse.Namespace, profile: Profile | None) -> int:
    try:
        files = collect(args.paths)
    except _UsageError as exc:
        return fail_usage(exc, args)

    items = [_item(path, profile) for path in files]
    results = for_shell(validate_many(items, pool=isolation.shared_pool()), args, getattr(args, "profile", None))
    results.sort(key=_sort_key)
    code = st.worst(st.severity(r.status) for r in results)
    log.info("verified %d files: %s", len(results), st.overall_name(code))
    if args.json:
        print_json({"status": st.overall_name(code), "files": [r.to_json() for r in results]})
    else:
        _print_table(results, code)
    return int(code)


class _UsageError(Exception):
    pass


def collect(paths: list[str]) -> list[Path]:
    """The files to verify, in argument order, folders expanded (non-recursive), no duplicates.

    Raises ``_UsageError`` for a folder with no reports. A path that does not exist is kept:
    the validator reports it as unreadable.
    """
    out: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(
                (c for c in _entries(p) if _is_report_file(c)),
                key=lambda c: c.name,
            )
            if not found:
                raise _UsageError(
                    f"no reports in the folder {raw}: it holds no {' or '.join('*' + s for s in FOLDER_SUFFIXES)} "
                    "files (sub-folders are not searched). Point verify at the folder holding the "
                    "downloaded reports, or name the files."
                )
            for c in found:
                add(c)
        else:
            add(p)
    return out


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise _UsageError(f"cannot list the folder {folder}: {exc.strerror or exc}") from None


def _is_report_file(p: Path) -> bool:
    """A report's name and not a folder. Named pipes, devices and the like are kept: the
    validator lists them as unreadable without ever opening them for reading."""
    name = p.name
    if name.startswith((".", "~$")) or not name.lower().endswith(FOLDER_SUFFIXES):
        return False
    try:
        return not p.is_dir()
    except OSError:
        return False


def _profile(args: argparse.Namespace) -> Profile | None:
    """The profile whose report settings apply, or None when no config exists.

    An explicit ``--config`` must load; the default location may simply be absent.
    """
    explicit = getattr(args, "config", None)
    wanted = getattr(args, "profile", None)
    if explicit is None and not default_config_path().exists():
        if wanted:
            raise ConfigError(default_config_path(), None,
                              f"--profile {wanted} given but there is no config file; pass --config FILE")
        return None
    return load_config(explicit).profile(wanted)


def _item(path: Path, profile: Profile | None) -> tuple[Path, ReportConfig, datetime | None, VerifyOptions]:
    """One file for ``validate_many``: which report it is, and when it was delivered."""
    tz = profile.timezone if profile is not None else _local_zone()
    try:
        mtime = clock.file_time(path.stat().st_mtime).astimezone(tz)
    except OSError:
        mtime = None
    if profile is not None:
        report, parsed = profile.classify(path.name, mtime)
    else:
        parsed = parse_name(path.name, mtime=mtime, tz=tz)
        report = ReportConfig(name=parsed.base)  # the defaults: min_rows 1, any header
    # A name without a timestamp gives only the copy's mtime: no run, so no wrong-day verdict.
    return path, report, parsed.delivered_at, VerifyOptions(name=path.name, report_name=report.name,
                                                            judge_day=parsed.source != "mtime")


@functools.cache
def _local_zone() -> tzinfo:
    return system_timezone()


def _sort_key(result: VerifyResult) -> tuple[float, str]:
    when = result.delivered_at
    stamp = when.timestamp() if when is not None else float("inf")
    return (stamp, result.name)


STATUS_STYLES = {
    st.OK: "green",
    st.EMPTY_CLOSED: "green",
    st.EMPTY: "yellow",
    st.CHANGED: "yellow",
    st.SCHEMA: "bold red",
    st.UNREADABLE: "bold red",
    st.WRONG_DAY: "bold red",
}


def _print_table(results: list[VerifyResult], code: st.Exit) -> None:
    from rich.console import Console  # noqa: PLC0415 - rich only for the human table (--json prints without it)
    from rich.table import Table  # noqa: PLC0415 - see above
    from rich.text import Text  # noqa: PLC0415 - see above

    # rich's colours reach the terminal; what it prints are Texts (never markup), escaped
    console = Console(highlight=False, file=raw_stream(sys.stdout))
    table = Table(show_lines=False, expand=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("Delivered", no_wrap=True)
    table.add_column("File", overflow="fold")
    table.add_column("Status", no_wrap=True)
    table.add_column("Rows", justify="right", no_wrap=True)
    table.add_column("Header", justify="right", no_wrap=True)
    for r in results:
        when = r.delivered_at.strftime("%Y-%m-%d %H:%M") if r.delivered_at else "-"
        table.add_row(
            Text(when),
            Text(escape_name(r.name)),  # Text: never interpreted as markup
            Text(r.status, style=STATUS_STYLES.get(r.status, "")),
            Text("-" if r.rows is None else str(r.rows)),
            Text("-" if r.header_row is None else f"row {r.header_row}"),
        )
    console.print(table)
    problems = [r for r in results if r.status != st.OK]
    if problems:
        console.print()
    for r in problems:
        line = Text()
        line.append(escape_name(r.name), style="bold")
        line.append(f" ({r.status}): ", style=STATUS_STYLES.get(r.status, ""))
        line.append(escape_name(r.message))  # may quote a sheet or column name from the file
        console.print(line)
    counts: dict[st.VerifyStatus, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(),
                                                       key=lambda kv: st.VALIDATOR_STATUSES.index(kv[0])))
    overall = st.overall_name(code)
    console.print(
        Text(f"{len(results)} file{'s' if len(results) != 1 else ''}: {summary}. Overall: {overall}.",
             style={"ok": "green", "warning": "yellow", "critical": "bold red"}[overall])
    )
