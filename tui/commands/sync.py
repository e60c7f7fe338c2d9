"""``report-keeper sync``: list the server, download every new report, verify it, record it.

Headless and cron-friendly: monitoring-plugin exit codes and, with ``--json``, exactly one
JSON document on stdout (human output then goes to stderr). On a terminal the progress is a
rich display; otherwise plain lines, one per finished file.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO, TypeVar

from tui.commands import all_profiles, processes
from tui.commands.common import (
    add_profile_arguments,
    earlier_paths_json,
    earlier_paths_lines,
    error_document,
    fail_usage,
    for_shell,
    interrupted_document,
    load_profile,
    print_json,
    raw_stream,
    terminal_passphrase_cb,
)
from tui.core import isolation
from tui.core import status as st
from tui.core.config import ConfigError, Profile, secrets_file
from tui.core.ledger import Ledger, LedgerError
from tui.core.model import EntryKind
from tui.core.names import escape_name, size_text

if TYPE_CHECKING:
    from rich.progress import TaskID

    from tui.notify.dispatch import NotifyDocument
    from tui.sftp.queue import Done
    from tui.sftp.sync import SyncEvent, SyncResult, SyncService

# The SFTP side (asyncssh: a fifth of a process's start) is imported where a run goes online:
# the parent of a run in several processes never does, and starts its processes that much
# sooner.

log = logging.getLogger("report_keeper.commands.sync")

EPILOG = """\
Lists the profile's remote_dir, downloads every file not yet held locally (into local_dir,
files 0600 in a 0700 folder; a part file left by an interrupted run is resumed), verifies each
new file and records everything in the ledger. A file already downloaded is skipped; a server
file that changed after its download is fetched beside the old copy and flagged "changed".
A rolling report (one fixed name each delivery replaces) is kept version by version as
"NAME (YYYY-MM-DD HHMM).xlsx"; a version replaced before it was downloaded is "lost".

An unknown server host key is refused unless --accept-new-host-key is given (which records it
in the profile's known_hosts); a changed host key is always refused.

Every run also checks that each downloaded copy is still in local_dir with its size: a copy
deleted, moved or damaged by hand is fetched again while the server has the file, and is
"lost" once the server has deleted it too.

With a local retention (local_retention_days in the profile or a report), the sync ends with
the purge of 'report-keeper purge': local copies past their age are deleted (under
keep_until_exported only content an export has included), their ledger records kept; a purged
file is never downloaded again.

Exit codes: 0 all well, 1 warnings (empty report, changed file, refused file names, a local
copy the retention policy could not delete), 2 critical (connection or login failure, failed
download, unreadable or wrong-schema report, a file lost from the server, a ledger that could
not record a download, Ctrl-C), 3 usage or configuration error. A file is listed as downloaded
only once its record is on the disk; one the ledger could not record is "failed", kept on disk,
and the next sync records it. Ctrl-C (or SIGTERM) keeps what is complete and the partial
downloads.
With --json one document: {"status", "downloaded": [{"name", "size", "sha256", "path",
"resumed_from", "changed", "refetched", "version"}], "skipped": [name],
"failed": [{"name", "error"}], "refused": [{"name", "reason"}], "files": [verified file],
"lost": [name], "lost_versions": [{"name", "server_name", "mtime", "size"}],
"refetched": [name], "missing_locally": [{"name", "path", "on_server"}], "error", "error_kind",
"purged": [{"name", "file", "path", "report", "delivered_at", ...}], "waiting_for_export":
[{..., "reason"}], "purge_errors": [{..., "error"}], "notify": {"configured", "sent", "failed"}}.
Refused names are shown escaped (control characters as \\uXXXX, bytes that are not UTF-8
as \\xNN). Alerts (the profile's [notify] table) are sent after the sync; a failed send never
changes the exit code: it is reported under notify.failed and tried again on the next run.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_profile_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument(
        "--accept-new-host-key", action="store_true",
        help="accept and record an unknown server host key (never a changed one)",
    )
    all_profiles.add_arguments(parser, "sync")
    processes.add_arguments(parser)


#: The cyclic garbage collector's thresholds during a sync (Python's: 700, 10, 10).
GC_THRESHOLDS = (7000, 10, 10)


def run(args: argparse.Namespace) -> int:
    # Every file makes many short-lived containers (tasks, futures, packets, records): the
    # collector's youngest generation, collected every 700 net allocations, ran ~160 times
    # and its middle one ~13 times per 900 files of a run, and found the same garbage at
    # under half the CPU when collected every 7,000 (docs/ARCHITECTURE.md, "Where the time
    # of a many-profile run goes").
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        # Ctrl-C from here on stops the run the same way wherever it lands (_CtrlC).
        with _CtrlC() as ctrl_c:
            try:
                return _run(args, ctrl_c)
            finally:
                isolation.configure()  # the profile's reader limits were for this run
    finally:
        gc.set_threshold(*thresholds)


def _run(args: argparse.Namespace, ctrl_c: _CtrlC) -> int:
    try:
        if all_profiles.selected(args):
            return _run_all(args, ctrl_c)
        profile = load_profile(args, need_local_dir=True)
    except ConfigError as exc:
        return fail_usage(exc, args)
    # The ledger is opened (a new one: its schema written and fsync'ed) while the SFTP side
    # loads (a fifth of the start-up, all of it the interpreter's work): the disk's waits
    # are then not on the way to the first download.
    opening = _Opening(profile)
    try:
        from tui.sftp.sync import SyncResult, ledger_problem  # noqa: PLC0415 - start-up time (see the imports)

        isolation.use_reader_limits([profile])
    finally:
        opened = opening.result()
    if isinstance(opened, LedgerError):
        return fail_usage(opened, args, kind="ledger")
    ledger = opened
    out: TextIO = sys.stderr if args.json else sys.stdout
    policy = "remember" if args.accept_new_host_key else "reject"
    holder: dict[str, SyncService] = {}
    try:
        result = asyncio.run(ctrl_c.run(lambda: _sync(profile, ledger, policy, out, holder)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        service = holder.get("service")
        result = (service.current if service is not None else None) or SyncResult()
        result.error = INTERRUPTED
        result.error_kind = "interrupted"
        _settle(service, result)
        result.finish()
    except LedgerError as exc:
        service = holder.get("service")
        result = (service.current if service is not None else None) or SyncResult()
        result.error = ledger_problem(exc)
        result.error_kind = "ledger"
        _settle(service, result)
        result.finish()
    finally:
        ledger.close()
    result.files = for_shell(result.files, args, profile.name)
    # Alerts (e-mail, webhook, ping) once the result is recorded; they never change it.
    notify = _alerts(profile, result)
    if args.json:
        print_json(_document(result, profile, notify))
    _summary(result, profile, out)
    line = _alerts_line(notify)
    if line:
        out.write(line + "\n")
    _earlier_paths(profile, out)
    _secrets_warning(args, out)
    log.info("sync finished: %s, %d downloaded, %d failed", st.overall_name(result.status),
             len(result.downloaded), len(result.failed))
    return int(result.status)


def _document(result: SyncResult, profile: Profile, notify: NotifyDocument | None) -> dict[str, object]:
    """A profile's ``sync --json`` document: the result's, the ledger and folder an earlier
    release kept that it uses where they are, and the alerts' outcome."""
    return {**result.to_json(), "earlier_paths": earlier_paths_json(profile),
            **({"notify": notify} if notify is not None else {})}


def _secrets_warning(args: argparse.Namespace, out: TextIO) -> None:
    """A secrets file beside the config (a scheduled run's SMTP password) that other users can
    read or replace: one warning line of the run and the log, never a failure (a nightly run
    that worked goes on working; ``schedule`` refuses it). Looked at only where there is one."""
    try:
        if not secrets_file(args.config).exists():
            return
    except (OSError, ValueError):
        return
    from tui.core import unattended  # noqa: PLC0415 - only where a secrets file is there

    why = unattended.secrets_exposure(args.config)
    if why:
        log.warning("secrets file: %s", why)
        out.write(f"Warning: {why}\n")


def _earlier_paths(profile: Profile, out: TextIO) -> None:
    """Each ledger or folder of an earlier release used where it is, said after the summary
    (a cron job mails it; the run goes on)."""
    for line in earlier_paths_lines(profile):
        out.write(line + "\n")


T = TypeVar("T")


class _Opening:
    """``Ledger.open`` of a profile's ledger in a thread of its own, started at once;
    :meth:`result` waits for it: the ledger, or the ``LedgerError`` it raised (anything else
    is raised there)."""

    def __init__(self, profile: Profile) -> None:
        self._outcome: Ledger | BaseException | None = None
        self._thread = threading.Thread(target=self._open, args=(profile,), name="ledger-open",
                                        daemon=True)
        self._thread.start()

    def _open(self, profile: Profile) -> None:
        try:
            self._outcome = Ledger.open(profile.ledger_path, profile=profile.name)
        except BaseException as exc:  # noqa: BLE001 - handed to result(), in the main thread
            self._outcome = exc

    def result(self) -> Ledger | LedgerError:
        self._thread.join()  # (a Ctrl-C meanwhile only asks the sync to stop: see _CtrlC)
        outcome = self._outcome
        if isinstance(outcome, LedgerError | Ledger):
            return outcome
        assert outcome is not None
        raise outcome


class _CtrlC:
    """Ctrl-C (SIGINT) during ``sync``: the first one cancels the running sync, which then
    records what is complete, keeps its part files and says so in the one JSON document; later
    ones only say that it is stopping. A KeyboardInterrupt raised wherever the signal lands
    (asyncio's own handling of a second Ctrl-C) would cut short the recording or the output:
    exit 130 with no JSON document. Installed for the whole command (a Ctrl-C before the sync
    started cancels it as soon as it starts); the previous handler comes back at the end
    unless the run was interrupted (then Ctrl-C stays ignored until the process ends)."""

    STOPPING = (b"stopping. Files completed so far are being recorded; partial downloads "
                b"are kept and resume on the next sync.\n")
    #: The signals handled: Ctrl-C, and SIGTERM (systemd stopping the unit, ``timeout``).
    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    STILL = b"Still stopping: recording what is done; this takes a moment.\n"

    def __init__(self) -> None:
        self.count = 0
        #: Says nothing on Ctrl-C (a process running a share of a run: the parent says it).
        self.quiet = False
        #: A process running a share: its parent's id. The sync stops as on the parent's
        #: Ctrl-C if the parent is gone (``processes.watch_parent``).
        self.parent: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._previous: dict[signal.Signals, object] = {}
        self._installed = False

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():  # signals reach that one only
            self._previous = {sig: signal.signal(sig, self._on_sigint) for sig in self.SIGNALS}
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            # Once interrupted, the process is ending: a Ctrl-C more (a user hammering it) must
            # not print a traceback from the interpreter's exit (closing the workbook workers).
            for sig, previous in self._previous.items():
                signal.signal(sig, signal.SIG_IGN if self.count else previous)  # type: ignore[arg-type]
            self._installed = False

    def _on_sigint(self, signum: int, _frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes of whatever it was doing: it only
        # schedules the cancel and writes straight to the descriptor (never through a buffer
        # the interrupted code may be in the middle of writing).
        self.stop()
        if self.count <= 2 and not self.quiet:
            try:
                what = b"Ctrl-C: " if signum == signal.SIGINT else b"SIGTERM: "
                os.write(2, what + self.STOPPING if self.count == 1 else self.STILL)
            except OSError:
                pass

    def stop(self) -> None:
        """What a Ctrl-C does, without a word: the first one cancels the running sync."""
        self.count += 1
        loop, task = self._loop, self._task
        if self.count == 1 and loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile: the sync is over anyway
                pass

    async def run(self, start: Callable[[], Awaitable[T]]) -> T:
        """``await start()``, cancelled by the first Ctrl-C (raises ``CancelledError``), or
        when the ``parent`` is gone."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self.count:  # Ctrl-C came before the sync started
            raise asyncio.CancelledError
        if self.parent is None:
            return await start()
        watching = asyncio.ensure_future(processes.watch_parent(self.parent, self.stop))
        try:
            return await start()
        finally:
            watching.cancel()


def _alerts(profile: Profile, result: SyncResult) -> NotifyDocument | None:
    """The profile's alerts after a run (None: the run was interrupted). The alert machinery
    (mail, HTTP, the health evaluation) is loaded only for a profile that configures alerts."""
    if result.error_kind == "interrupted":
        return None
    if not profile.notify.configured:
        return {"configured": False, "sent": [], "failed": []}
    from tui.notify.dispatch import after_sync  # noqa: PLC0415 - see above

    return after_sync(profile, result)


def _alerts_line(notify: NotifyDocument | None) -> str | None:
    if notify is None or not notify["configured"]:
        return None
    from tui.notify.dispatch import summary_line  # noqa: PLC0415 - loaded with the alerts

    return summary_line(notify)


async def _sync(profile: Profile, ledger: Ledger, policy: str, out: TextIO,
                holder: dict[str, SyncService]) -> SyncResult:
    from tui.sftp.sync import SyncService  # noqa: PLC0415 - start-up time (see the imports)

    async with SyncService(profile, ledger, host_key_policy=policy,
                           passphrase_cb=terminal_passphrase_cb()) as service:
        holder["service"] = service
        display: _RichProgress | _PlainProgress = _RichProgress(out) if out.isatty() else _PlainProgress(out)
        with display:
            return await service.sync(on_event=display.on_event)


def _settle(service: SyncService | None, result: SyncResult) -> None:
    """Nothing reported downloaded unless its record is on the disk (``SyncService.settle``)."""
    if service is not None:
        service.settle(result)


INTERRUPTED = ("Interrupted. Files completed so far are recorded; partial downloads are kept and "
               "resume on the next sync.")


NOT_STARTED = "Not started: the run was stopped before this profile's turn; nothing of it was downloaded."


def _run_all(args: argparse.Namespace, ctrl_c: _CtrlC) -> int:
    """``sync --all-profiles``: every profile at once (bounded), one document, the worst code."""
    share = processes.is_share(args)
    handed: processes.Handed | None = None
    try:
        every = all_profiles.load_every(args)
        profiles = every.profiles
        problem = processes.check_arguments(args)
        if problem is not None:
            return fail_usage(problem, args)
        if share:  # this process runs a part of a run over several processes
            ctrl_c.quiet, ctrl_c.parent = True, args.share_parent
            every = processes.share_limits(args, every)
            profiles = every.profiles
            handed = processes.handed(args, every)  # its profiles come as it has room (or a fixed share)
        else:
            run = processes.plan(profiles, args.processes or processes.default_processes(),
                                 args.parallel)
            if len(run.parallel) > 1:
                return _run_shares(args, ctrl_c, every, run)
            if profiles:  # one pool reads for them all: the largest limits (none: all broken)
                isolation.use_reader_limits(profiles)
    except ConfigError as exc:
        return fail_usage(exc, args)
    from tui.sftp.sync import SyncResult  # noqa: PLC0415 - start-up time (see the imports)

    # A profile whose own settings are wrong, whose local_dir cannot be used, or whose ledger
    # file cannot be opened, gets what `sync --profile NAME` says of it (exit 3); the others
    # are synced. Each profile opens its ledger as it starts (a new one is made meanwhile
    # others download). Profiles handed out are checked as they come (processes.Handed).
    source: list[Profile] | AsyncIterator[Profile]
    if handed is None:
        ledgers, failed = all_profiles.open_runnable(profiles, need_local_dir=True, selection=every, lazy=True)
        source = [p for p in profiles if p.name not in failed]
    else:
        ledgers, failed = all_profiles.Ledgers((), lazy=True), {}
        source = handed.profiles(failed)
    out: TextIO = sys.stderr if args.json else sys.stdout
    if share:  # a pipe to the run's parent, which may be gone
        out = processes.share_output(out)
    policy = "remember" if args.accept_new_host_key else "reject"
    services: dict[str, SyncService] = {}
    results: dict[str, SyncResult] = {}
    try:
        interrupted = False
        try:
            asyncio.run(ctrl_c.run(
                lambda: _sync_all(source, ledgers, policy, args.parallel, out, services, results,
                                  ended=handed.free if handed is not None else None)))
        except (KeyboardInterrupt, asyncio.CancelledError):
            interrupted = True
        if handed is not None:  # the profiles it was handed, each listed in its document
            every = handed.selection()
            profiles = every.profiles
        if interrupted:
            for profile in profiles:
                if (profile.name not in results and profile.name not in failed
                        and profile.name not in ledgers.failed):
                    service = services.get(profile.name)
                    result = (service.current if service is not None else None) or SyncResult()
                    result.error, result.error_kind = INTERRUPTED, "interrupted"
                    results[profile.name] = result.finish()
        # Profiles sharing a ledger file share its batches: their records are on the disk (or
        # lost) only now that every batch has ended. A file that refused one profile's records
        # is not made to refuse each other's after a whole wait again.
        refused: dict[Path, BaseException] = {}
        for profile in profiles:
            service, key = services.get(profile.name), all_profiles.ledger_key(profile.ledger_path)
            if service is not None and profile.name in results:
                failure = service.settle(results[profile.name], refused=refused.get(key))
                if failure is not None:
                    refused[key] = failure
    finally:
        ledgers.close()
        if handed is not None:
            handed.close()
    failed.update(ledgers.failures())
    documents: dict[str, dict[str, object]] = {}
    codes: dict[str, int] = {}
    by_name = {p.name: p for p in profiles}
    for name in every.names:
        if name in failed:
            message, kind = failed[name]
            documents[name] = error_document("sync", message, kind)
            codes[name] = int(st.Exit.USAGE)
            out.write(f"== {escape_name(name)}\nreport-keeper: {escape_name(message)}\n")
            continue
        profile = by_name[name]
        result = results[profile.name]
        result.files = for_shell(result.files, args, profile.name)
        if share:  # the parent may have gone since the watch ended (or while an alert is sent)
            processes.check_parent(args.share_parent)
        notify = _alerts(profile, result)
        documents[profile.name] = _document(result, profile, notify)
        codes[profile.name] = int(result.status)
        out.write(f"== {escape_name(profile.name)}\n")
        _summary(result, profile, out)
        line = _alerts_line(notify)
        if line:
            out.write(line + "\n")
        _earlier_paths(profile, out)
    code, document = all_profiles.combined(codes, documents)
    if share:
        processes.check_parent(args.share_parent)
    if args.json:
        print_json(document, for_parent=share)
    if not share:  # the run's own line is the parent's
        out.write(f"All {len(every.names)} profiles: {st.overall_name(code).upper()}\n")
        _secrets_warning(args, out)
    out.flush()
    log.info("sync --all-profiles finished: %s over %d profiles", st.overall_name(code), len(every.names))
    return code


def _run_shares(args: argparse.Namespace, ctrl_c: _CtrlC, every: all_profiles.Selection,
                run: processes.Plan) -> int:
    """``sync --all-profiles`` with the profiles handed out among processes
    (:mod:`tui.commands.processes`): their documents joined into one, the worst code. A
    profile whose own settings are wrong goes to no process: its document is its config error
    (exit 3), said here; so is each profile never handed out (the run was stopped first)."""
    profiles = every.profiles
    out: TextIO = sys.stderr if args.json else sys.stdout
    failed = every.failed()
    for name, (message, _kind) in failed.items():
        out.write(f"== {escape_name(name)}\nreport-keeper: {escape_name(message)}\n")
    out.flush()
    stopped = [False]
    children: list[processes.Child] = []
    left: list[Profile] = []
    try:
        children, left = asyncio.run(ctrl_c.run(lambda: processes.run_shares(args, run, out, stopped)))
    except (KeyboardInterrupt, asyncio.CancelledError):  # stopped before any process started
        stopped[0] = True
    if children:
        codes, documents = processes.documents(children, profiles, stopped=stopped[0], left=left)
        for profile in left:  # said here: no process had them
            what = (NOT_STARTED if stopped[0]
                    else f"report-keeper: {escape_name(str(documents[profile.name]['error']))}")
            out.write(f"== {escape_name(profile.name)}\n{what}\n")
    else:
        documents = {p.name: interrupted_document("sync") for p in profiles}
        codes = {p.name: int(st.Exit.CRITICAL) for p in profiles}
    for name, (message, kind) in failed.items():
        documents[name], codes[name] = error_document("sync", message, kind), int(st.Exit.USAGE)
    code, document = all_profiles.combined(codes, {n: documents[n] for n in every.names})
    if args.json:
        print_json(document)
    out.write(f"All {len(every.names)} profiles: {st.overall_name(code).upper()}\n")
    _secrets_warning(args, out)
    out.flush()
    log.info("sync --all-profiles finished: %s over %d profiles in %d processes",
             st.overall_name(code), len(every.names), len(run.parallel))
    return code


async def _sync_all(profiles: list[Profile] | AsyncIterator[Profile], ledgers: all_profiles.Ledgers,
                    policy: str, parallel: int, out: TextIO, services: dict[str, SyncService],
                    results: dict[str, SyncResult], *, ended: Callable[[], None] | None = None) -> None:
    """Each profile synced, at most ``parallel`` at a time: ``profiles`` as listed or as they
    are handed out; ``ended()`` each time one has ended (its slot free)."""
    from tui.sftp.sync import SyncResult, SyncService, ledger_problem  # noqa: PLC0415 - start-up time (see the imports)

    passphrase_cb = all_profiles.shared_passphrase_cb()

    async def one(profile: Profile) -> None:
        try:
            await each(profile)
        finally:
            if ended is not None:
                ended()

    async def each(profile: Profile) -> None:
        ledger = await ledgers.opened(profile)
        if ledger is None:  # its ledger file cannot be opened: said with the documents
            return
        service = services[profile.name] = SyncService(
            profile, ledger, host_key_policy=policy, passphrase_cb=passphrase_cb)
        try:
            async with service:
                result = await service.sync()
        except LedgerError as exc:
            result = service.current or SyncResult()
            result.error, result.error_kind = ledger_problem(exc), "ledger"
            result.finish()
        except Exception as exc:  # one profile's failure must not hide the others'
            log.exception("sync of profile %s failed unexpectedly", profile.name)
            result = service.current or SyncResult()
            result.error = (f"unexpected error ({type(exc).__name__}); this is a bug: the details "
                            "are in the log. Please report it.")
            result.error_kind = "internal"
            result.finish()
        results[profile.name] = result
        out.write(f"{escape_name(profile.name)}: {st.overall_name(result.status)}, "
                  f"{len(result.downloaded)} downloaded, {len(result.failed)} failed\n")
        out.flush()

    # Each service batches its ledger writes; profiles sharing a ledger file share one batch.
    await all_profiles.run_bounded(profiles, parallel, one)


class _PlainProgress:
    """One line per finished file; nothing per block (logs and cron mails stay small). The
    lines of finished files are written together at most every ``FLUSH_SECONDS`` (and at the
    end): one write for many files instead of one per file. The listing, retries and failures
    are rare and are written at once, so whoever watches sees them when they happen."""

    FLUSH_SECONDS = 0.5

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.done: dict[str, Done] = {}
        self.pending: list[str] = []
        self.flushed = time.monotonic()

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out.write("".join(self.pending))
            self.pending.clear()
        self.out.flush()
        self.flushed = time.monotonic()

    def line(self, text: str, *, now: bool = False) -> None:
        self.pending.append(text + "\n")
        if now or time.monotonic() - self.flushed >= self.FLUSH_SECONDS:
            self.flush()

    def on_event(self, event: SyncEvent) -> None:
        from tui.sftp.queue import Done, Failed, Retrying  # noqa: PLC0415 - start-up time (see the imports)
        from tui.sftp.sync import Listed, Verified  # noqa: PLC0415 - start-up time (see the imports)

        match event:
            case Listed(files=files, wanted=wanted, refused=refused):
                self.line(f"Listed {files} files: {wanted} to download"
                          + (f", {refused} names refused" if refused else "") + ".", now=True)
            case Done():
                self.done[event.name] = event
            case Retrying(name=name, reason=reason):
                self.line(f"retrying    {escape_name(name)}: {escape_name(reason)}", now=True)
            case Failed(name=name, reason=reason):
                self.line(f"FAILED      {escape_name(name)}: {escape_name(reason)}", now=True)
            case Verified(name=name, result=result):
                done = self.done.pop(name, None)
                size = f"  {size_text(done.size)}" if done is not None else ""
                resumed = f" (resumed at {size_text(done.resumed_from)})" if done and done.resumed_from else ""
                rows = f", {result.rows} rows" if result.rows is not None else ""
                self.line(f"{result.status:12}{escape_name(name)}{size}{resumed}{rows}")


class _RichProgress:
    """A rich progress display: an overall bar and one bar per running file."""

    def __init__(self, out: TextIO) -> None:
        # rich only on a terminal (start-up time: cron and --json runs never draw bars)
        from rich.console import Console  # noqa: PLC0415 - see above
        from rich.progress import (  # noqa: PLC0415 - see above
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.text import Text  # noqa: PLC0415 - see above

        self.text = Text
        # rich's own colours and bar reach the terminal; every text it shows is a Text (never
        # markup) whose untrusted parts are escaped here
        self.console = Console(file=raw_stream(out))
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.overall: TaskID | None = None
        self.tasks: dict[int, TaskID] = {}
        self.sizes: dict[int, int] = {}
        self.done_bytes: dict[int, int] = {}
        self.started = False

    def __enter__(self) -> _RichProgress:
        # The bars are drawn from the listing on: before it, the connection may ask for the
        # key's passphrase on this terminal, and the display's redraws (ten a second) would
        # erase the question and hide the cursor.
        return self

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self.progress.start()

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def _label(self, name: str) -> str:
        name = escape_name(name)
        return name if len(name) <= 48 else name[:22] + "…" + name[-25:]

    def on_event(self, event: SyncEvent) -> None:
        from tui.sftp.queue import Cancelled, Done, Failed, Queued, Retrying, Running  # noqa: PLC0415 - start-up time (see the imports)
        from tui.sftp.sync import Listed, Verified  # noqa: PLC0415 - start-up time (see the imports)

        p = self.progress
        match event:
            case Listed(files=files, wanted=wanted):
                self._start()
                p.console.print(self.text(f"Listed {files} files: {wanted} to download."))
                self.overall = p.add_task("all files", total=0)
            case Queued(job_id=job_id, size=size):
                self.sizes[job_id] = size
                if self.overall is not None:
                    p.update(self.overall, total=sum(self.sizes.values()))
            case Running(job_id=job_id, name=name, bytes=done, total=total):
                task = self.tasks.get(job_id)
                if task is None:
                    task = self.tasks[job_id] = p.add_task(self._label(name), total=total)
                p.update(task, completed=done, total=total)
                self.done_bytes[job_id] = done
                if self.overall is not None:
                    p.update(self.overall, completed=sum(self.done_bytes.values()))
            case Done() | Failed() | Cancelled():
                ended = self.tasks.pop(event.job_id, None)
                if ended is not None:
                    p.remove_task(ended)
                if isinstance(event, Done):
                    self.done_bytes[event.job_id] = event.size
                if isinstance(event, Failed):
                    p.console.print(self.text(f"FAILED {escape_name(event.name)}: {escape_name(event.reason)}",
                                              style="red"))
                if self.overall is not None:
                    p.update(self.overall, completed=sum(self.done_bytes.values()))
            case Retrying(name=name, reason=reason):
                p.console.print(self.text(f"retrying {escape_name(name)}: {escape_name(reason)}", style="yellow"))
            case Verified(name=name, result=result):
                if result.status != st.OK:
                    p.console.print(self.text(f"{result.status}: {escape_name(name)}", style="yellow"))


#: Files named on the human summary's line of those an interruption kept from beginning.
NOT_BEGUN_NAMED = 3


def _summary(result: SyncResult, profile: Profile, out: TextIO) -> None:
    """The run's human summary. Every value in it that a server, a workbook, the config or an
    operating-system error chose is escaped (``escape_name``): one value stays on its line."""
    w = out.write
    e = escape_name
    if result.error_kind == "interrupted":
        w(f"{e(result.error or '')} {len(result.downloaded)} files were downloaded before that.\n")
    elif result.error and not (result.error_kind == "ledger" and result.listed):
        w(f"Sync failed: {e(result.error)}\n")
    else:
        total = sum(d["size"] for d in result.downloaded)
        w(f"{e(profile.host)}:{', '.join(e(f) for f in profile.folders)}: {result.listed} files on the "
          f"server, {len(result.downloaded)} downloaded ({size_text(total)}) to {e(str(profile.local_dir))}, "
          f"{len(result.skipped)} already held.\n")
        if result.error:  # the ledger failed during the downloads
            w(f"LEDGER: {e(result.error)}\n")
    if result.files:
        counts = Counter(f.status for f in result.files)
        w("Verified: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".\n")
        for f in result.files:
            if f.status != st.OK:
                w(f"  {f.status.upper():12} {e(f.name)}: {e(f.message)}\n")
    from tui.sftp.sync import INTERRUPTED_BEFORE  # noqa: PLC0415 - start-up time (see the imports)

    # The files an interruption kept from beginning are one line: one each (every file of a
    # large first sync) pushed the line saying what was kept out of sight.
    not_begun = [item["name"] for item in result.failed if item["error"] == INTERRUPTED_BEFORE]
    for item in result.failed:
        if item["error"] != INTERRUPTED_BEFORE:
            w(f"  FAILED       {e(item['name'])}: {e(item['error'])}\n")
    if not_begun:
        shown = ", ".join(e(name) for name in not_begun[:NOT_BEGUN_NAMED])
        more = f" and {len(not_begun) - NOT_BEGUN_NAMED:,} more (--json lists them)" \
            if len(not_begun) > NOT_BEGUN_NAMED else ""
        w(f"  NOT BEGUN    {len(not_begun):,} file{'s' if len(not_begun) != 1 else ''}, interrupted before "
          f"{'their downloads' if len(not_begun) != 1 else 'its download'} began: {shown}{more}; "
          f"the next sync downloads {'them' if len(not_begun) != 1 else 'it'}\n")
    for item in result.refused:
        w(f"  REFUSED      {e(item['name'])}: {e(item['reason'])} (not downloaded)\n")
    new = [o for o in result.ignored if o.new]
    if new:  # said once: on the run that first sees them
        shown = ", ".join(escape_name(o.name) + ("/" if o.kind == EntryKind.FOLDER else "")
                          for o in new[:8]) + (f" and {len(new) - 8} more" if len(new) > 8 else "")
        w(f"  Ignored {len(new)} entr{'y' if len(new) == 1 else 'ies'} that are not reports "
          f"(sub-folders, files that are no workbook): {shown}. Nothing to do; the Remote screen "
          "lists them.\n")
    missing = {m["name"]: m for m in result.missing_locally}
    replaced = {v["name"]: v for v in result.lost_versions}
    for name in result.refetched:
        w(f"  FETCHED AGAIN {escape_name(name)}: the local copy was missing or damaged\n")
    for name in result.lost:
        if name in replaced:
            v = replaced[name]
            w(f"  LOST         {e(name)}: the server replaced this version of {e(v['server_name'])} "
              f"(modified {v['mtime']}, {v['size']:,} bytes) before it was downloaded\n")
        elif name in missing:
            w(f"  LOST         {e(name)}: the local copy is gone from {e(str(missing[name]['path']))} and the "
              "server has deleted the file; put the copy back from a backup\n")
        else:
            w(f"  LOST         {e(name)}: it vanished from the server before it was downloaded\n")
    r = result.retention
    if r is not None and (r.purged or r.finished or r.waiting or r.errors):
        for line in r.summary_lines(limit=5):
            w(line + "\n")
    if result.purge_error:
        w(f"  PURGE        {e(result.purge_error)}\n")
    w(f"Status: {st.overall_name(result.status).upper()}\n")
    out.flush()
