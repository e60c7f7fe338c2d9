"""Local reports: find every report in the local folder and verify it, with the ledger's cache.

Used by the Verify screen (in a thread worker, through the app) and by ``sync``
(:func:`verify_cached`). A result is cached in the ledger by the file's sha256 plus what it
depends on besides the bytes (``tui.core.ledger.verification_context``: the report's expected
columns, min_rows, the covered day and whether it is closed), so re-running over unchanged
files is near-instant. Workbooks are read by the shared pool of worker processes
(``tui.core.isolation``): a file that crashes its reader is marked unreadable and cannot take
the caller down. Something with a report's name that is not a regular file (a named pipe, a
device) is listed, never opened for reading.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import partial
from pathlib import Path

from tui.core import clock, isolation
from tui.core import status as st
from tui.core.config import Profile, ReportConfig
from tui.core.ledger import LEDGER_ERRORS, Download, Ledger, verification_context
from tui.core.model import Delivery, VerifyResult
from tui.core.names import escape_name, is_report_name, parse_name
from tui.core.retention import still_on_disk
from tui.core.validate import validate_file, validate_file_async

log = logging.getLogger("report_keeper.local_reports")


@dataclass(frozen=True)
class LocalReport:
    """One local file to verify."""

    path: Path
    name: str
    report: ReportConfig | None
    report_name: str | None
    delivered_at: datetime | None
    run_day: date | None = None  # the delivery's run, from the report's history when known
    #: delivered_at is the delivery's time (ledger, file name), not just the copy's mtime: only
    #: then is the day its rows describe judged (wrong-day)
    day_known: bool = True


@dataclass(frozen=True)
class VerifyOutcome:
    result: VerifyResult
    sha256: str | None
    cached: bool  # came from the ledger's cache (not read again)
    #: The local copy was deleted by the retention policy: ``result`` is its last verification.
    purged_at: datetime | None = None
    #: Other names (hard links) its file still had when purged: its data is still on disk;
    #: ``purge_note`` says so and how to find them (``retention.still_on_disk``).
    purge_links: int = 0
    purge_note: str = ""


def purged_reports(ledger: Ledger | None, profile: Profile | None = None) -> list[VerifyOutcome]:
    """The copies the local retention policy purged, each with its last recorded verification
    (the ledger keeps it; the file is gone, so nothing is read). Newest delivery first."""
    if ledger is None:
        return []
    try:
        deliveries = {d.name: d for d in ledger.deliveries()}
        copies: dict[tuple[str, str], Download] = {}
        for dl in ledger.downloads():
            copies[(dl.name, dl.local_path)] = dl  # a path downloaded again: its latest record
        gone = [dl for dl in copies.values() if dl.purged_at is not None]
        verified = ledger.verifications_of({dl.sha256 for dl in gone}) if gone else {}
    except LEDGER_ERRORS as exc:  # the list of files on disk still works
        log.warning("purged copies unavailable for the verify list: %s", type(exc).__name__)
        return []
    if not gone:
        return []
    timings = profile.timings(deliveries.values()) if profile is not None else {}
    out = []
    for dl in gone:
        delivery = deliveries.get(dl.name)
        delivered_at = delivery.delivered_at if delivery is not None else None
        report_name = delivery.report if delivery is not None else None
        covered = None
        if delivered_at is not None and profile is not None and report_name is not None:
            delivered_at = delivered_at.astimezone(profile.timezone)
            report = profile.report_for(report_name)
            run = report.placed_run_day(delivered_at, timings.get(report_name))
            covered = report.covered_day(run) if run is not None else None
        name = Path(dl.local_path).name
        v = verified.get(dl.sha256)
        if v is None:  # the purge never deletes an unverified copy; a damaged ledger could
            log.warning("purged copy %s has no recorded verification", escape_name(name))
            continue
        result = replace(v, path=dl.local_path, name=name, delivered_at=delivered_at,
                         report=report_name or v.report, covered_day=covered)
        note = still_on_disk(dl.local_path, dl.purge_links, dl.purge_inode) if dl.purge_links else ""
        out.append(VerifyOutcome(result, dl.sha256, True, purged_at=dl.purged_at, purge_links=dl.purge_links,
                                 purge_note=note))
    out.sort(key=lambda o: (-(o.result.delivered_at.timestamp() if o.result.delivered_at else 0), o.result.name))
    return out


def find_local_reports(folder: str | Path, profile: Profile | None = None,
                       ledger: Ledger | None = None) -> list[LocalReport]:
    """Every report (``names.is_report_name``) under ``folder`` (hidden and part files and Excel's
    ``~$`` owner files skipped), with its report, its
    delivery time and its run: from the ledger when it knows the file, else from the name (or
    mtime)."""
    root = Path(folder).expanduser()
    known: dict[str, Delivery] = {}
    held: dict[str, Delivery] = {}  # rolling versions by their copy's path (docs/DOMAIN.md)
    by_path: dict[str, Delivery] = {}
    if ledger is not None:
        try:
            known = {d.name: d for d in ledger.deliveries()}
            held = {d.local_path: d for d in known.values() if d.local_path and d.extra.get("rolling_of")}
            # A local copy's name may differ from the server's (a portable or distinct local
            # name, a sub-folder per server folder): the ledger's path says which file it is.
            # (Only the copy under its own local name: a changed copy beside it keeps being
            # read from its name.)
            by_path = {d.local_path: d for d in known.values()
                       if d.local_path and Path(d.local_path).name == (d.local_name or d.name)}
        except LEDGER_ERRORS as exc:  # the list still works from names alone
            log.warning("ledger deliveries unavailable for the verify list: %s", type(exc).__name__)
    timings = profile.timings(known.values()) if profile is not None else {}
    items: list[LocalReport] = []
    try:
        paths = sorted(root.rglob("*"))
    except OSError as exc:
        log.warning("cannot list %s: %s", root, exc.strerror or exc)
        return []
    for path in paths:
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.name.startswith("~$"):
            continue  # hidden, ours, or Excel's owner file of an open workbook (no workbook)
        if not is_report_name(path.name) or path.is_dir():  # what sync downloads, .xlsm too
            continue
        try:
            mtime = clock.file_time(path.stat().st_mtime)
        except OSError:
            continue
        delivery = held.get(str(path)) or by_path.get(str(path)) or known.get(path.name)
        if profile is None:
            parsed = parse_name(path.name, mtime=mtime)
            delivered_at = delivery.delivered_at if delivery is not None else (parsed.delivered_at or mtime)
            report_name = delivery.report if delivery is not None else (parsed.base or None)
            day_known = delivery is not None or parsed.source in ("name", "pattern")
            items.append(LocalReport(path, path.name, None, report_name, delivered_at, day_known=day_known))
            continue
        if delivery is not None:
            report = profile.report_for(delivery.report)
            delivered_at = delivery.delivered_at
            day_known = True
        else:
            report, parsed = profile.classify(path.name, mtime)
            delivered_at = parsed.delivered_at or mtime
            day_known = parsed.source in ("name", "pattern")
        delivered_at = delivered_at.astimezone(profile.timezone)
        run_day = report.placed_run_day(delivered_at, timings.get(report.name))
        items.append(LocalReport(path, path.name, report, report.name, delivered_at, run_day, day_known))
    return items


def file_sha256(path: Path, cancelled: Callable[[], bool] | None = None) -> str | None:
    """The file's sha256 (None when it cannot be read, is not a regular file, or the run was
    cancelled). A named pipe is never read: opening one to read would wait for a writer."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        log.warning("cannot read %s for hashing: %s", path.name, exc.strerror or type(exc).__name__)
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
    except OSError:
        os.close(fd)
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            while chunk := fh.read(1 << 20):
                if cancelled is not None and cancelled():
                    return None
                digest.update(chunk)
    except OSError as exc:
        log.warning("cannot read %s for hashing: %s", path.name, exc.strerror or type(exc).__name__)
        return None
    return digest.hexdigest()


def verify_cached(
    path: Path,
    report: ReportConfig | None,
    delivered_at: datetime | None,
    *,
    ledger: Ledger | None,
    sha256: str | None,
    run_day: date | None = None,
    judge_day: bool = True,
    name: str | None = None,
    report_name: str | None = None,
    pool: isolation.WorkerPool | None = None,
    cancel: Callable[[], bool] | None = None,
) -> VerifyOutcome:
    """Verify one local file: from the ledger's cache when these bytes (``sha256``) were
    verified before under the same report settings, covered day and reader limits (``pool``'s,
    default: the shared pool's), else with the validator,
    recording the result for next time. Blocking (the workbook is read in a worker process of
    ``pool``); ``sync`` and the Verify screen both verify through here. ``run_day`` and
    ``judge_day`` as for ``validate_file``.

    Without ``ledger`` or ``sha256`` nothing is cached. A cache that cannot be read or written
    is a miss, never a failure. Raises ``isolation.PoolClosed`` like ``validate_file``.
    """
    pool = pool or isolation.shared_pool()
    context, hit = _from_cache(path, report, delivered_at, ledger=ledger, sha256=sha256,
                               run_day=run_day, judge_day=judge_day, name=name, pool=pool)
    if hit is not None:
        return hit
    result = validate_file(path, report, delivered_at, run_day=run_day, judge_day=judge_day, name=name,
                           report_name=report_name, pool=pool, cancel=cancel)
    return _remembered(result, context, ledger=ledger, sha256=sha256, path=path, name=name)


async def verify_cached_async(
    path: Path,
    report: ReportConfig | None,
    delivered_at: datetime | None,
    *,
    ledger: Ledger | None,
    sha256: str | None,
    run_day: date | None = None,
    name: str | None = None,
    writer: Callable[[Callable[[], VerifyOutcome]], Awaitable[VerifyOutcome]] | None = None,
    sniffed: str | None = None,
) -> VerifyOutcome:
    """:func:`verify_cached` for asyncio code (``sync``): the worker's reply is read by the
    event loop and the ledger asked on it when no other thread holds it (else in a thread; its
    record is written in a thread, where a wait for another process's lock on the ledger holds
    up nothing else), so no thread waits per file. Cancelling
    the awaiting task stops the worker reading the file. ``writer(call)``: runs the record's
    write in a thread and awaits it (the sync's writer thread, with its other records; default:
    a thread of the loop's pool). ``sniffed``: what the file's bytes were found to be as they
    arrived, no zip package (``validate.sniffed_bytes``, hashed to ``sha256``): judged from
    that, the file is not read again."""
    pool = isolation.shared_pool()
    context, hit = await _from_cache_async(path, report, delivered_at, ledger=ledger, sha256=sha256,
                                           run_day=run_day, name=name, pool=pool)
    if hit is not None:
        return hit
    result = await validate_file_async(
        path, report, delivered_at, run_day=run_day, name=name, pool=pool,
        sniffed=(sniffed, sha256) if sniffed is not None and sha256 is not None else None)
    # Recording may wait for another process's lock on the ledger: in a thread, not on the loop.
    remember = partial(_remembered, result, context, ledger=ledger, sha256=sha256, path=path, name=name)
    if writer is not None:
        return await writer(remember)
    return await asyncio.to_thread(remember)


def _from_cache(path: Path, report: ReportConfig | None, delivered_at: datetime | None, *,
                ledger: Ledger | None, sha256: str | None, run_day: date | None, judge_day: bool,
                name: str | None, pool: isolation.WorkerPool) -> tuple[str, VerifyOutcome | None]:
    """The cache key of this verification, and the cached outcome when there is one."""
    context = _context(report, delivered_at, run_day, judge_day, pool)
    if sha256 is None or ledger is None:
        return context, None
    try:
        cached = ledger.cached_verification(sha256, context, path=str(path), name=name)
    except LEDGER_ERRORS as exc:
        log.warning("verification cache unavailable: %s", type(exc).__name__)
        return context, None
    return context, _cached_outcome(cached, report, delivered_at, run_day, sha256)


async def _from_cache_async(path: Path, report: ReportConfig | None, delivered_at: datetime | None, *,
                            ledger: Ledger | None, sha256: str | None, run_day: date | None,
                            name: str | None, pool: isolation.WorkerPool) -> tuple[str, VerifyOutcome | None]:
    """:func:`_from_cache` on an event loop: the ledger asked there when no other thread holds
    it, else in a thread (a commit holds it through its fsync: the loop does not wait for that)."""
    context = _context(report, delivered_at, run_day, True, pool)
    if sha256 is None or ledger is None:
        return context, None
    lookup = partial(ledger.cached_verification, sha256, context, path=str(path), name=name)
    try:
        asked, cached = ledger.read_at_once(lookup)
        if not asked:
            cached = await asyncio.to_thread(lookup)
    except LEDGER_ERRORS as exc:
        log.warning("verification cache unavailable: %s", type(exc).__name__)
        return context, None
    return context, _cached_outcome(cached, report, delivered_at, run_day, sha256)


def _context(report: ReportConfig | None, delivered_at: datetime | None, run_day: date | None,
             judge_day: bool, pool: isolation.WorkerPool) -> str:
    # The limits the file would be read under belong to the key: after they are raised, a
    # file found too large before is read again (docs/WORKBOOK_ISOLATION.md).
    return verification_context(report, delivered_at, run_day, judge_day=judge_day,
                                memory_limit=pool.memory_limit, time_limit=pool.time_limit)


def _cached_outcome(cached: VerifyResult | None, report: ReportConfig | None, delivered_at: datetime | None,
                    run_day: date | None, sha256: str) -> VerifyOutcome | None:
    if cached is None:
        return None
    covered = None
    if report is not None and delivered_at is not None:
        run = run_day or report.placed_run_day(delivered_at)
        covered = report.covered_day(run) if run is not None else None
    return VerifyOutcome(replace(cached, delivered_at=delivered_at, covered_day=covered), sha256, True)


def _remembered(result: VerifyResult, context: str, *, ledger: Ledger | None, sha256: str | None,
                path: Path, name: str | None) -> VerifyOutcome:
    """Record a fresh verification for next time; its outcome.

    A file that was gone when its reader came to open it (deleted meanwhile by another process:
    a purge run by hand while a sync reads the held copies again) is unreadable, but that says
    nothing of the bytes ``sha256`` names: the verdict is not recorded for them (it would be
    the content's latest verification, which ``check`` and the cache read)."""
    if result.status == st.UNREADABLE and not path.exists():
        log.info("%s was gone before it could be read: no verification recorded",
                 escape_name(name or path.name))
        return VerifyOutcome(result, sha256, False)
    if sha256 is not None and result.read_sha256 is not None and result.read_sha256 != sha256:
        # Saved over between its hash and its reading: the verdict is of the bytes the worker
        # read, and is theirs (never recorded as the bytes hashed before).
        log.info("%s changed while it was verified: the verdict is of its new content",
                 escape_name(name or path.name))
        sha256 = result.read_sha256
    if sha256 is not None and ledger is not None:
        try:
            ledger.record_verification(result, sha256=sha256, context=context)
        except LEDGER_ERRORS as exc:  # the verdict stands; only the cache misses it
            log.error("could not record the verification of %s: %s",
                      escape_name(name or path.name), type(exc).__name__)
    return VerifyOutcome(result, sha256, False)


def verify_local(
    items: Sequence[LocalReport],
    ledger: Ledger | None = None,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    pool: isolation.WorkerPool | None = None,
) -> list[VerifyOutcome]:
    """Verify ``items`` with :func:`verify_cached`, as many at a time as ``pool`` (default:
    the shared pool) has workers. Stops early when ``cancelled()`` or when the worker pool is
    closed (the program is exiting); the outcomes so far come back in the order of ``items``."""
    if not items:
        return []
    pool = pool or isolation.shared_pool()
    stop_asked = cancelled or _never
    total = len(items)
    outcomes: dict[int, VerifyOutcome] = {}

    def one(item: LocalReport) -> VerifyOutcome | None:
        if stop_asked():
            return None
        sha = file_sha256(item.path, stop_asked)
        if stop_asked():
            return None
        return verify_cached(
            item.path, item.report, item.delivered_at, ledger=ledger, sha256=sha,
            run_day=item.run_day, judge_day=item.day_known, name=item.name,
            report_name=item.report_name, pool=pool,
            cancel=cancelled,  # a cancelled run stops the worker reading this file at once
        )

    threads = max(1, min(pool.size, total))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify-local") as ex:
        running = {ex.submit(one, item): i for i, item in enumerate(items)}
        stop = False
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i = running.pop(future)
                if future.cancelled():
                    continue
                try:
                    outcome = future.result()
                except isolation.PoolClosed:
                    stop = True
                    continue
                if outcome is None:
                    continue
                outcomes[i] = outcome
                if progress is not None:
                    progress(len(outcomes), total, items[i].name)
            if stop or stop_asked():
                for future in running:
                    future.cancel()
    return [outcomes[i] for i in sorted(outcomes)]


def _never() -> bool:
    return False


def empty_on_open_day(outcomes: Iterable[VerifyOutcome]) -> list[VerifyResult]:
    """Newly verified (not cached) reports with no data rows on an open day."""
    return [o.result for o in outcomes if not o.cached and o.result.status == st.EMPTY]
