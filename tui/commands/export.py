"""``report-keeper export --out FILE.parquet|FILE.csv``: the kept reports as one table.

Reads the reports held locally and recorded in the ledger (run ``sync`` first); never touches
the network. The work is ``tui.core.export``; this module parses the options and prints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tui.commands.common import add_profile_arguments, fail_usage, load_profile, one_line, print_json
from tui.core import clock, isolation
from tui.core.clock import ClockError
from tui.core.config import ConfigError
from tui.core.export_request import ExportError, ExportRequest, NotRecorded, output_format, parse_day
from tui.core.ledger import Ledger, LedgerError

log = logging.getLogger("report_keeper.export")

EPILOG = """\
The table has one row per data row of every included report file, with these columns first:
report, run_day, covered_day, delivered_at (UTC), source_file, source_sha256; then the
reports' own columns under their header names (the union over all days: a day without a
column has nulls there, and each change is listed as column drift). Identifiers stay text
with their leading zeros, date cells become dates, whole-number columns integers.

One delivery per run day: when a run day has several (a manual re-run, a changed server
copy), the newest one that verified ok is exported and the others are listed as superseded.
--since/--until select covered (loan) days, inclusive, as YYYY-MM-DD.

--pseudonymize replaces the values of identifier columns (the report's identifier_columns,
else headers containing identifier, user id, patron id or email) with HMAC-SHA256 pseudonyms
(16 hex digits) under a 32-byte key: <user data dir>/report-keeper/pseudonym-<profile>.key,
created on first use (back it up), or --key-file F (an existing key file, mode 0600).

The file is written in a private folder beside FILE, then put in place with mode 0600; an
existing FILE is replaced only with --force. Workbooks are read in limited worker processes;
each file's table is cached beside the ledger (safe to delete), so exporting again reads only
new files.

Exit codes: 0 every covered day in the range is included, empty on a closed day or closed;
1 some days are missing or empty on an open day (gaps to note), or their local copies were
purged by the retention policy (excluded with status "purged"; "exported_in" names the export
that holds their rows); 2 files had to be excluded (unreadable, wrong schema, modified
locally); 3 usage or configuration error (nothing written).
With --json exactly one JSON document is printed on stdout:
{"status", "out", "rows", "files", "pseudonymized_columns": [...],
 "days": {"included": [...], "empty": [...], "closed": [...], "missing": [...],
          "excluded": [{"day", "file", "status"}]},
 "superseded": [{"file", "by"}], "column_drift": [{"day", "added", "missing"}], ...}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="the table to write: FILE.parquet or FILE.csv")
    add_profile_arguments(parser)
    parser.add_argument("--report", action="append", default=[], metavar="NAME",
                        help="export this report only (repeat for several; default: every report)")
    parser.add_argument("--since", metavar="YYYY-MM-DD", help="first covered (loan) day, inclusive")
    parser.add_argument("--until", metavar="YYYY-MM-DD", help="last covered (loan) day, inclusive")
    parser.add_argument("--pseudonymize", action="store_true",
                        help="replace identifier columns with keyed pseudonyms")
    parser.add_argument("--key-file", metavar="F", help="the pseudonym key to use (with --pseudonymize)")
    parser.add_argument("--force", action="store_true", help="replace FILE if it exists")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run(args: argparse.Namespace) -> int:

    try:
        output_format(args.out)
        since = parse_day(args.since, "--since") if args.since is not None else None
        until = parse_day(args.until, "--until") if args.until is not None else None
        if args.key_file is not None and not args.pseudonymize:
            return fail_usage("--key-file is only used with --pseudonymize; add --pseudonymize or drop --key-file",
                              args)
    except ExportError as exc:
        return fail_usage(exc, args)
    try:
        clock.now()
        profile = load_profile(args)
    except (ConfigError, ClockError) as exc:
        return fail_usage(exc, args)
    isolation.use_reader_limits([profile])
    isolation.shared_pool().prestart()  # the workbook readers start while the ledger is read
    try:
        ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    except LedgerError as exc:
        isolation.configure()
        return fail_usage(exc, args, kind="ledger")
    request = ExportRequest(
        out=Path(args.out), reports=tuple(args.report), since=since, until=until,
        pseudonymize=args.pseudonymize, key_file=Path(args.key_file) if args.key_file else None,
        force=args.force,
    )
    try:
        from tui.core.export import ExportResult, run_export  # noqa: PLC0415 - polars (a quarter of a second) loads only once the options are valid

        result = run_export(profile, ledger, request)
    except NotRecorded as exc:  # the file is there, the ledger does not know it: not a usage error
        message = one_line(str(exc))
        if args.json and isinstance(exc.result, ExportResult):
            print_json({**exc.result.to_json(), "status": "critical", "error": message,
                        "error_kind": "ledger"})
        sys.stderr.write(f"report-keeper: {message}\n")
        return 2
    except ExportError as exc:
        return fail_usage(exc, args)
    except LedgerError as exc:
        return fail_usage(exc, args, kind="ledger")
    finally:
        ledger.close()
        isolation.configure()  # the defaults back for whatever runs next (readers under other limits stopped)
    if args.json:
        print_json(result.to_json())
    else:
        sys.stdout.write("\n".join(result.summary_lines()) + "\n")
        sys.stdout.flush()
    return int(result.exit_code)
