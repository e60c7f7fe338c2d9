"""``report-keeper purge``: delete the local copies the retention policy allows, keep the record.

No network: the ledger and the local folder only. ``sync`` runs the same purge at its end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TextIO

from tui.commands.common import add_profile_arguments, fail_usage, load_profile, print_json
from tui.core import retention
from tui.core import status as st
from tui.core.config import ConfigError
from tui.core.ledger import LEDGER_ERRORS, Ledger, LedgerError
from tui.core.names import escape_name
from tui.sftp.parts import remove_stale_parts

log = logging.getLogger("report_keeper.commands.purge")

EPILOG = """\
A report (or a profile) with local_retention_days = N keeps each local copy for N days after
its delivery; a copy delivered more than N days ago is deleted here, with its changed copies,
its part files and the export cache's tables of its content. The ledger keeps its record
(name, size, sha256, rows, verification; no cell value): check and the app show the day as
delivered and verified, and the file is never downloaded again.

With keep_until_exported (the default) only content an export has included is deleted; an
older copy no export has included is kept and listed under waiting_for_export, with why.

--dry-run lists the same and deletes nothing (and writes nothing to the ledger).

A copy whose file has other names (hard links: a 'cp -l', a backup tool's snapshot) leaves the
folder, but its data stays on disk under them: it is listed apart (STILL ON DISK, other_links)
with the command that finds them, and the purge is a warning.

A clock past the moment even the newest delivery the ledger knows would be purged deletes
nothing (every copy would look old: a clock set ahead, REPORT_KEEPER_NOW left set); the output
says so ("refused") and exits 1. --trust-clock purges anyway, when nothing was delivered for
that long.

Exit codes: 0 the policy is applied (or none is set); 1 some copy is past its age but kept
(waiting for an export), is still on disk under other names, or could not be deleted
(reported, tried again next time); 2 the
ledger could not be written; 3 usage or configuration error.
With --json one document: {"status", "dry_run", "policy": {report: {"local_retention_days",
"keep_until_exported"}}, "purged": [{"name", "file", "path", "report", "delivered_at",
"purge_after", "sha256", "size", "verification", "changed_copy", "interrupted", "already_gone",
"other_links", "inode", "mount_point"}],
"waiting_for_export": [{..., "reason": "not-exported|superseded|excluded|unverified",
"days_waiting"}], "errors": [{..., "error"}], "withdrawn": [...], "parts_removed",
"cache_entries_removed", "refused": null or why nothing was deleted}.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_profile_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    parser.add_argument("--trust-clock", action="store_true",
                        help="purge even when the clock is past the newest delivery's retention")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args)
    except ConfigError as exc:
        return fail_usage(exc, args)
    try:
        ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    except LedgerError as exc:
        return fail_usage(exc, args, kind="ledger")
    out: TextIO = sys.stderr if args.json else sys.stdout
    try:
        result = retention.purge(profile, ledger, dry_run=args.dry_run, remove_parts=remove_stale_parts,
                                 trust_clock=args.trust_clock)
    except LEDGER_ERRORS as exc:  # a LedgerError, or sqlite3's own (a full disk, a damaged file)
        log.error("purge: ledger error %s", type(exc).__name__)
        what = str(exc).strip().rstrip(".") or type(exc).__name__
        if not isinstance(exc, LedgerError):
            what = f"the ledger {profile.ledger_path} failed ({type(exc).__name__}: {what})"
        message = (f"{what[0].upper()}{what[1:]}; nothing was deleted that the ledger does not "
                   "know of. Check the ledger file and its disk, then run purge again")
        if isinstance(exc, retention.PurgeBusy):  # says itself what holds it and what to do
            message = f"{what[0].upper()}{what[1:]}"
        if args.json:
            print_json({"status": "critical", "dry_run": args.dry_run, "purged": [], "waiting_for_export": [],
                        "errors": [], "error": message})
        sys.stderr.write(f"report-keeper: {message}\n")
        return int(st.Exit.CRITICAL)
    finally:
        ledger.close()
    if args.json:
        print_json(result.to_json())
    if result.refused:
        out.write(escape_name(result.refused) + "\n")
    for line in result.summary_lines():
        out.write(line + "\n")
    out.write(f"Status: {result.status.upper()}{' (dry run: nothing was deleted)' if args.dry_run else ''}\n")
    out.flush()
    log.info("purge finished: %s, %d purged, %d waiting, %d errors%s", result.status,
             len(result.purged) + len(result.finished), len(result.waiting), len(result.errors),
             " (dry run)" if args.dry_run else "")
    return int(result.exit_code)
