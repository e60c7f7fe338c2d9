"""``report-keeper check``: schedule, verification, deadlines and the connection, for cron.

Online (default): list the server folder (no downloads) and record the listing in the ledger,
run the connection test (upload, download, compare, delete a probe file), then evaluate the
ledger's whole history. ``--offline``: the ledger alone (the connection test is "skipped").

The human output is one screenful: an overall status line, the connection, each report's last
delivery, then the problems ordered by urgency, each with its next step in plain words.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING

from tui.commands import all_profiles
from tui.commands.common import (
    INTERRUPTED,
    add_profile_arguments,
    earlier_paths_json,
    earlier_paths_lines,
    error_document,
    fail_usage,
    interrupted_document,
    load_profile,
    print_json,
    terminal_passphrase_cb,
)
from tui.core import clock
from tui.core import status as st
from tui.core.clock import ClockError
from tui.core.config import ConfigError, Profile
from tui.core.health import ConnectionStatus, HealthReport, evaluate, fmt_day, held_state
from tui.core.ledger import Ledger, LedgerError
from tui.core.model import Audience, JSONObject, ProblemKind, WriteTest
from tui.core.names import escape_name, normalize_folder
from tui.core.problem_list import Member, ProblemGroup, member_label, tell
from tui.notify.dispatch import NotifyDocument, after_check, summary_line

if TYPE_CHECKING:  # asyncssh loads only when the check goes online
    from tui.sftp.client import PassphraseCallback

log = logging.getLogger("report_keeper.check")

SCREEN_LINES = 24

EPILOG = """\
Exit codes: 0 all well; 1 warnings (empty report, late delivery, a file near deletion, a
read-only account, a stale report, too few rows); 2 critical (missing delivery, unreadable or
wrong-schema report, rows of the wrong day, connection or login failure, a file lost from the
server); 3 usage or configuration error.

With --json exactly one JSON document is printed on stdout:
{"status", "now", "connection": {"ok", "message", "write_test", "steps"},
 "reports": [{"name", "status", "last_delivery", "schedule", "inferred", "on_time_streak",
   "runs": [{"day", "status", "files", "verification", "content", ...}],
   "problems": [{"severity", "kind", "day", "file", "rescue_by", "delete_on", "message",
                 "next_step"}]}],
 "notify": {"configured", "sent": [...], "failed": [...]}}
Alerts (the profile's [notify] table) are sent after the evaluation; a failed send never
changes the exit code: it is reported under notify.failed and tried again on the next run.
REPORT_KEEPER_NOW (ISO 8601) replaces the clock.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_profile_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument("--offline", action="store_true",
                        help="use the ledger alone: no listing, no connection test")
    parser.add_argument("--accept-new-host-key", action="store_true",
                        help="trust and record an unknown server host key (never a changed one)")
    all_profiles.add_arguments(parser, "check")


def run(args: argparse.Namespace) -> int:
    try:
        clock.now()
        if all_profiles.selected(args):
            return _run_all(args)
        profile = load_profile(args)
    except (ConfigError, ClockError) as exc:
        return fail_usage(exc, args)
    try:
        ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    except LedgerError as exc:
        return fail_usage(exc, args, kind="ledger")
    connection = ConnectionStatus.skipped()
    try:
        try:
            if not args.offline:
                policy = "remember" if args.accept_new_host_key else "reject"
                connection = asyncio.run(_online(profile, ledger, policy))
        except (sqlite3.Error, LedgerError) as exc:  # recording the listing failed
            checked = _ledger_failed(profile, connection, exc)
        else:
            checked = _check(profile, ledger, connection)
    finally:
        ledger.close()
    if checked.report is None:
        if args.json:  # the same document a profile of check --all-profiles gets
            print_json(checked.document)
        sys.stderr.write(f"report-keeper: {escape_name(str(checked.document['error']))}\n")
        return checked.code
    log.info("check: %s (%d problems)", checked.report.status, len(checked.report.problems))
    # Alerts (e-mail, webhook, ping) once the result is known; they never change it.
    _alert(checked, profile, offline=args.offline)
    if args.json:
        print_json(checked.document)
    else:
        _write_human(checked, profile, shutil.get_terminal_size((100, 24)).columns)
        sys.stdout.flush()
    return checked.code


@dataclass
class _Checked:
    """One profile's outcome: its exit code and its document (``check --json``'s, or one
    profile's entry under ``--all-profiles``); ``report`` is None when there is no evaluation
    (the ledger failed, or the run was interrupted first: the document says so)."""

    code: int
    document: dict[str, object]
    report: HealthReport | None = None
    notify: NotifyDocument | None = None


def _check(profile: Profile, ledger: Ledger, connection: ConnectionStatus) -> _Checked:
    """Reconcile the ledger with the disk (a held copy gone from local_dir is missing or
    lost, online or not), evaluate it, and build the document (alerts not sent yet)."""
    try:
        ledger.reconcile_local(profile.local_dir)
        deliveries = ledger.deliveries()
        report = evaluate(profile, deliveries, connection=connection)
        # refused: server names refused as unsafe in the latest listing
        refused = [{"name": escape_name(r.name), "reason": r.reason} for r in ledger.refused(current=True)]
        folder_of = {d.name: d.folder or profile.folders[0] for d in deliveries}
        ignored = [{"name": escape_name(o.name), "folder": escape_name(o.folder), "kind": str(o.kind),
                    "new": False} for o in ledger.others() if o.ignored_in(profile.folders)]
    except (sqlite3.Error, LedgerError) as exc:  # locked by another run too long, disk full, damaged
        return _ledger_failed(profile, connection, exc)
    document: dict[str, object] = {**_with_folders(report.to_json(), folder_of), "refused": refused,
                                   "ignored": ignored, "folders": [escape_name(f) for f in profile.folders],
                                   "earlier_paths": earlier_paths_json(profile)}
    return _Checked(int(report.exit_code), document, report)


def _ledger_failed(profile: Profile, connection: ConnectionStatus, exc: BaseException) -> _Checked:
    log.error("check: ledger error %s (profile %s)", type(exc).__name__, profile.name)
    message = (f"the ledger {profile.ledger_path} could not be read or written ({exc}); "
               "wait for a running sync to finish and try again, or check the disk")
    return _Checked(int(st.Exit.CRITICAL), {
        "status": "critical", "connection": connection.to_json(), "reports": [], "refused": [],
        "earlier_paths": earlier_paths_json(profile), "error": message, "error_kind": "ledger"})


def _interrupted() -> _Checked:
    """A profile whose check had not ended when Ctrl-C (or SIGTERM) came."""
    return _Checked(int(st.Exit.CRITICAL), interrupted_document("check"))


def _alert(checked: _Checked, profile: Profile, *, offline: bool) -> None:
    """Send the profile's alerts and add their outcome (``notify``) to its document."""
    if checked.report is not None:
        checked.notify = after_check(profile, checked.report, offline=offline)
        checked.document["notify"] = checked.notify


def _write_human(checked: _Checked, profile: Profile, width: int) -> None:
    if checked.report is None:
        sys.stdout.write(f"{escape_name(str(checked.document['error']))}\n")
        return
    sys.stdout.write(render(checked.report, profile, width=width))
    line = summary_line(checked.notify) if checked.notify is not None else None
    if line:
        sys.stdout.write(line + "\n")
    # A ledger or folder of an earlier release used where it is: the run goes on, a person
    # reads it here (and in the log, and in the document's earlier_paths).
    for line in earlier_paths_lines(profile):
        sys.stdout.write(line + "\n")


async def _online(profile: Profile, ledger: Ledger, policy: str,
                  passphrase_cb: PassphraseCallback | None = None) -> ConnectionStatus:
    """List and record, then run the connection test; failures become the connection status."""
    from tui.sftp.conntest import probe_connection  # noqa: PLC0415 - asyncssh only when online
    from tui.sftp.errors import SftpError  # noqa: PLC0415 - see above
    from tui.sftp.sync import SyncService  # noqa: PLC0415 - see above

    service = SyncService(profile, ledger, host_key_policy=policy,
                          passphrase_cb=passphrase_cb or terminal_passphrase_cb())
    try:
        try:
            listing = await service.list_remote()
        except SftpError as exc:
            log.warning("check: listing failed: %s", type(exc).__name__)
            return ConnectionStatus(ok=False, message=str(exc), write_test=WriteTest.SKIPPED)
        log.info("check: listed %d files", len(listing.entries))
        try:
            conn = await service.connection()
            # The listing just taken serves the test's look for leftover probes: a second
            # listing of a large folder would cost as much as the first.
            probes = service.listed_probes.get(normalize_folder(profile.remote_dir))
            result = await probe_connection(conn, profile.remote_dir, listed_probes=probes)
        except SftpError as exc:  # the connection broke between listing and test
            return ConnectionStatus(ok=False, message=str(exc), write_test=WriteTest.FAILED)
        return ConnectionStatus.from_result(result)
    finally:
        await service.close()


def _run_all(args: argparse.Namespace) -> int:
    """``check --all-profiles``: every profile's listing and connection test at once (bounded),
    then each one's evaluation; one document, the worst exit code. Interrupted (Ctrl-C,
    SIGTERM), the profiles that had ended keep their documents and the others are listed as
    interrupted."""
    try:
        every = all_profiles.load_every(args)
    except ConfigError as exc:
        return fail_usage(exc, args)
    profiles = every.profiles
    # A profile that cannot run (its own settings are wrong, a path of the wrong kind, a
    # ledger file that cannot be opened) gets what `check --profile NAME` says of it (exit 3);
    # the others are checked.
    ledgers, failed = all_profiles.open_runnable(profiles, need_local_dir=False, selection=every)
    checked: dict[str, _Checked] = {
        name: _Checked(int(st.Exit.USAGE), error_document("check", message, kind))
        for name, (message, kind) in failed.items()}
    online: dict[str, ConnectionStatus | BaseException] = {}
    runnable = [p for p in profiles if p.name not in checked]
    interrupted = False
    try:
        try:
            if args.offline:
                online.update((p.name, ConnectionStatus.skipped()) for p in runnable)
            else:
                policy = "remember" if args.accept_new_host_key else "reject"
                asyncio.run(_online_all(runnable, ledgers, policy, args.parallel, online))
        except KeyboardInterrupt:  # the profiles that ended are still evaluated
            interrupted = True
        try:
            for profile in profiles:
                found = online.get(profile.name)
                if found is None:
                    continue
                ledger = ledgers.by_profile[profile.name]
                if isinstance(found, BaseException):  # recording its listing failed
                    one = _ledger_failed(profile, ConnectionStatus.skipped(), found)
                else:
                    one = _check(profile, ledger, found)
                _alert(one, profile, offline=args.offline)
                checked[profile.name] = one
        except KeyboardInterrupt:
            interrupted = True
    finally:
        ledgers.close()
    width = shutil.get_terminal_size((100, 24)).columns
    by_name = {p.name: p for p in profiles}
    for name in every.names:
        one = checked.setdefault(name, _interrupted())
        if one.report is None and one.document.get("error_kind") in ("ledger", "config"):
            sys.stderr.write(f"== {escape_name(name)}\n"
                             f"report-keeper: {escape_name(str(one.document['error']))}\n")
        elif not args.json:
            sys.stdout.write(f"== {escape_name(name)}\n")
            _write_human(one, by_name[name], width)
    code, document = all_profiles.combined({n: c.code for n, c in checked.items()},
                                           {n: checked[n].document for n in every.names})
    if interrupted:
        document.update({"error": INTERRUPTED, "error_kind": "interrupted"})
    if args.json:
        print_json(document)
    else:
        sys.stdout.write(f"All {len(every.names)} profiles: {st.overall_name(code).upper()}\n")
        sys.stdout.flush()
    if interrupted:
        sys.stderr.write(f"report-keeper: {INTERRUPTED}\n")
        sys.stderr.flush()
    log.info("check --all-profiles: %s over %d profiles%s", st.overall_name(code), len(every.names),
             " (interrupted)" if interrupted else "")
    return code


async def _online_all(profiles: list[Profile], ledgers: all_profiles.Ledgers, policy: str,
                      parallel: int, found: dict[str, ConnectionStatus | BaseException]) -> None:
    """Each profile's connection status into ``found`` as soon as it is known (or the ledger
    error that stopped it): what ended before a Ctrl-C is kept."""
    ask = all_profiles.shared_passphrase_cb()

    async def one(profile: Profile) -> None:
        try:
            found[profile.name] = await _online(profile, ledgers.by_profile[profile.name], policy, ask)
        except (sqlite3.Error, LedgerError) as exc:
            found[profile.name] = exc

    await all_profiles.run_bounded(profiles, parallel, one)


def _with_folders(doc: JSONObject, folder_of: dict[str, str]) -> JSONObject:
    """The document with each report's ``last_folder`` and each problem's ``folder``: the
    server folder of the file named (null when none is)."""
    reports = doc.get("reports")
    for r in reports if isinstance(reports, list) else ():
        if not isinstance(r, dict):
            continue
        last = r.get("last_file")
        r["last_folder"] = folder_of.get(last) if isinstance(last, str) else None
        for p in r.get("problems") or ():
            if isinstance(p, dict):
                file = p.get("file")
                p["folder"] = folder_of.get(file) if isinstance(file, str) else None
    return doc


# ------------------------------------------------------------------------------ human output

_MARK = {"critical": "CRIT", "warning": "WARN"}


def _when(moment: datetime | None, tz: tzinfo) -> str:
    if moment is None:
        return "never"
    local = moment.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b} {local:%H:%M}"


def _cells(text: str) -> int:
    """Terminal columns ``text`` takes: a CJK character takes two (rich's table, loaded only
    for text that is not plain ASCII)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len  # noqa: PLC0415 - start-up time: most text is ASCII

    return cell_len(text)


def _rows(line: str, width: int) -> int:
    """Terminal rows a line takes once wrapped at ``width`` columns."""
    return max(1, -(-_cells(line) // max(width, 20)))


def _member_texts(members: Sequence[Member], today: date, width: int) -> list[str]:
    """A group's problems one line each, in columns: run day, file (or report), the date that
    matters. Names are padded to the longest as far as ``width`` allows, so the padding never
    makes a line wrap; a longer name is never cut (it is what one looks for in the folder)."""
    rows = []
    for member in members:
        p = member.problem
        labelled = member_label(p, today)
        label = labelled[0] if labelled is not None else ""
        rows.append((fmt_day(p.day, today) if p.day else "", escape_name(p.file or member.report), label))
    indent, sep = "        ", " · "
    day_w = max(_cells(day) for day, _name, _label in rows)
    label_w = max(_cells(label) for _day, _name, label in rows)
    room = width - len(indent) - (day_w + len(sep) if day_w else 0) - (len(sep) + label_w if label_w else 0)
    name_w = min(max(_cells(name) for _day, name, _label in rows), max(0, room))
    lines = []
    for day, name, label in rows:
        line = indent
        if day_w:  # a run without a day keeps the column blank
            line += day + " " * (day_w - _cells(day)) + (sep if day else " " * len(sep))
        line += name
        if label:
            line += " " * (name_w - _cells(name)) + sep + label
        lines.append(line)
    return lines


def render(report: HealthReport, profile: Profile, *, width: int = 100, max_lines: int = SCREEN_LINES) -> str:
    """The human output of ``check``: one screenful (``max_lines``), most urgent first."""
    tz = profile.timezone
    today = report.now.astimezone(tz).date()
    problems = report.problems
    crit = sum(1 for p in problems if p.severity == "critical")
    warn = len(problems) - crit
    counts = []
    if crit:
        counts.append(f"{crit} critical")
    if warn:
        counts.append(f"{warn} warning{'s' if warn != 1 else ''}")
    lines = [
        f"{report.status.upper()}: {', '.join(counts) or 'all well'} · {len(report.reports)} "
        f"report{'s' if len(report.reports) != 1 else ''} · {_when(report.now, tz)} ({tz})"
    ]
    c = report.connection
    if c.ok is None:
        lines.append(f"Connection: {c.message}")
    elif c.ok:
        lines.append(f"Connection: ok, write test {c.write_test}: {c.message}")
    else:
        lines.append(f"Connection: FAILED: {c.message}")
    for r in report.reports:
        sched = (f"{r.schedule.describe()} at {r.at:%H:%M}" + (" (inferred)" if r.inferred else "")
                 if r.schedule_known else r.schedule_text)
        last = r.last_delivery
        if last is None:
            tail = "last delivery: never"
        else:
            tail = f"last: {_when(last.delivered_at, tz)} ({held_state(last)})"
        lines.append(f"  {r.status.upper():8} {escape_name(r.name)} · {sched} · {tail}"
                     f" · on time {r.on_time_streak} in a row")
    # Files dated ahead are in no run and no report's last delivery, but they are held (each
    # named below): the ledger is not empty, their dates are wrong.
    if not any(r.last_delivery or any(p.kind == ProblemKind.BAD_DATE for p in r.problems)
               for r in report.reports):
        lines.append("The ledger holds no delivery yet: run 'report-keeper sync' (or 'check' without "
                     "--offline) so the server's folder is listed.")
    if not problems:
        lines.append("No problems: every expected report arrived on time and verified.")
        return "\n".join(lines) + "\n"
    lines.append("Problems, most urgent first:")
    used = sum(_rows(line, width) for line in lines)
    entries = tell(report)
    shown = 0
    for i, entry in enumerate(entries):
        members: list[str] = []
        if isinstance(entry, ProblemGroup):
            block = [f" {_MARK[entry.severity]} {entry.kind} x{len(entry.members)}: {escape_name(entry.message)}",
                     f"      -> {escape_name(entry.step(Audience.SHELL))}"]
            members = _member_texts(entry.members, today, width)
        else:
            day = f" {fmt_day(entry.day, today)}" if entry.day else ""
            block = [f" {_MARK[entry.severity]} {entry.kind}{day}: {escape_name(entry.message)}",
                     f"      -> {escape_name(entry.step(Audience.SHELL))}"]
        need = sum(_rows(line, width) for line in block)
        reserve = 0 if i == len(entries) - 1 else _rows(" ... and N more", width) + 1
        if shown and used + need + reserve > max_lines:
            break
        lines.extend(block)
        used += need
        shown += 1
        for j, member in enumerate(members):  # one line each, while the screen has room
            more = len(members) - j - 1
            after = _rows("        ... and N more", width) if more else 0
            if used + _rows(member, width) + after + reserve > max_lines:
                lines.append(f"        ... and {len(members) - j} more")
                used += _rows(lines[-1], width)
                break
            lines.append(member)
            used += _rows(member, width)
    rest = [p for e in entries[shown:] for p in ([m.problem for m in e.members]
                                                  if isinstance(e, ProblemGroup) else [e])]
    if rest:
        kinds: dict[str, int] = {}
        for p in rest:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
        lines.append(f" ... and {len(rest)} more ({summary}): see 'report-keeper check --json' "
                     "or the Health screen")
    return "\n".join(lines) + "\n"
