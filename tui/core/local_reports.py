"""Local reports: find every report in the local folder and verify it, with the ledger's cache.

Used by the Verify screen (in a thread worker) and usable from headless code. A result is
cached in the ledger by the file's sha256 plus what it depends on besides the bytes (the
report's expected columns, min_rows, whether the covered day is closed), so re-running over
unchanged files is near-instant. Workbooks are read by the shared pool of worker processes
(``tui.core.isolation``): a file that crashes its reader is marked unreadable and cannot take
the caller down. Something with a report's name that is not a regular file (a named pipe, a
device) is listed, never opened for reading.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tui.core import status as st
from tui.core.model import VerifyResult
from tui.core.names import parse_name

log = logging.getLogger("report_keeper.local_reports")


@dataclass(frozen=True)
class LocalReport:
    """One local file to verify."""

    path: Path
    name: str
    report: Any  # tui.core.config.ReportConfig | None
    report_name: str | None
    delivered_at: datetime | None
    #: delivered_at is the delivery's time (ledger, file name), not just the copy's mtime
    day_known: bool = True


@dataclass(frozen=True)
class VerifyOutcome:
    result: VerifyResult
    sha256: str | None
    cached: bool  # came from the ledger's cache (not read again)


def find_local_reports(folder: str | Path, profile: Any = None, ledger: Any = None) -> list[LocalReport]:
    """Every ``.xlsx`` under ``folder`` (hidden and part files skipped), with its report and
    delivery time: from the ledger when it knows the file, else from the name (or mtime)."""
    root = Path(folder).expanduser()
    known: dict[str, Any] = {}
    if ledger is not None:
        try:
            known = {d.name: d for d in ledger.deliveries()}
        except Exception as exc:  # noqa: BLE001 - the list still works from names alone
            log.warning("ledger deliveries unavailable for the verify list: %s", type(exc).__name__)
    items: list[LocalReport] = []
    try:
        paths = sorted(root.rglob("*"))
    except OSError as exc:
        log.warning("cannot list %s: %s", root, exc.strerror or exc)
        return []
    for path in paths:
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() != ".xlsx" or path.is_dir():
            continue
        try:
            mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        except OSError:
            continue
        delivery = known.get(path.name)
        report_cfg = None
        day_known = True
        if profile is not None:
            if delivery is not None:
                report_cfg = profile.report_for(delivery.report)
                delivered_at = delivery.delivered_at
            else:
                report_cfg, parsed = profile.classify(path.name, mtime)
                delivered_at = parsed.delivered_at or mtime
                day_known = parsed.source in ("name", "pattern")
        else:
            parsed = parse_name(path.name, mtime=mtime)
            delivered_at = delivery.delivered_at if delivery is not None else (parsed.delivered_at or mtime)
            day_known = delivery is not None or parsed.source in ("name", "pattern")
        report_name = getattr(report_cfg, "name", None) or (delivery.report if delivery else None)
        if report_name is None and profile is None:
            report_name = parse_name(path.name).base or None
        if profile is not None and delivered_at is not None:
            delivered_at = delivered_at.astimezone(profile.timezone)
        items.append(LocalReport(path, path.name, report_cfg, report_name, delivered_at, day_known))
    return items


def cache_context(report: Any, delivered_at: datetime | None, *, judge_day: bool = True) -> str:
    """What a verification result depends on besides the file's bytes: the ledger's cache key
    (the same one ``sync`` uses, so files it verified come back from the cache here)."""
    from tui.core.ledger import verification_context

    return verification_context(report, delivered_at, judge_day=judge_day)


def file_sha256(path: Path, cancelled: Callable[[], bool] | None = None) -> str | None:
    """The file's sha256 (None when it cannot be read, is not a regular file, or the run was
    cancelled). A named pipe is never read: opening one to read would wait for a writer."""
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
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


def verify_local(
    items: Sequence[LocalReport],
    ledger: Any = None,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    pool: Any = None,
) -> list[VerifyOutcome]:
    """Verify ``items``, from the ledger's cache when the same bytes were verified in the same
    context, else with the validator (and record the result). Stops early when ``cancelled()``
    or when the worker pool is closed (the program is exiting); the outcomes so far come back
    in the order of ``items``.

    Files not in the cache are read by ``pool`` (default: the shared pool), as many at a time
    as it has workers. The ledger is only touched from the calling thread."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from tui.core import isolation
    from tui.core.validate import covered_day_of, validate_file

    pool = pool or isolation.shared_pool()
    total = len(items)
    done = 0
    outcomes: dict[int, VerifyOutcome] = {}

    def tick(name: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, name)

    todo: list[tuple[int, LocalReport, str | None, str]] = []
    for i, item in enumerate(items):
        if cancelled is not None and cancelled():
            return _in_order(outcomes)
        sha = file_sha256(item.path, cancelled)
        context = cache_context(item.report, item.delivered_at, judge_day=item.day_known)
        result = None
        if sha is not None and ledger is not None:
            try:
                result = ledger.cached_verification(sha, context, path=str(item.path), name=item.name)
            except Exception as exc:  # noqa: BLE001 - a cache miss, not a failure
                log.warning("verification cache unavailable: %s", type(exc).__name__)
        if result is not None:
            result = replace(result, delivered_at=item.delivered_at,
                             covered_day=covered_day_of(item.report, item.delivered_at))
            outcomes[i] = VerifyOutcome(result, sha, True)
            tick(item.name)
        else:
            todo.append((i, item, sha, context))
    if not todo:
        return _in_order(outcomes)

    def read(item: LocalReport) -> VerifyResult | None:
        if cancelled is not None and cancelled():
            return None
        return validate_file(
            item.path, item.report, item.delivered_at, report_name=item.report_name, pool=pool,
            cancel=cancelled,  # a cancelled run stops the worker reading this file at once
            judge_day=item.day_known,
        )

    threads = max(1, min(pool.size, len(todo)))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify-local") as ex:
        running = {ex.submit(read, item): (i, item, sha, context) for i, item, sha, context in todo}
        stop = False
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i, item, sha, context = running.pop(future)
                if future.cancelled():
                    continue
                try:
                    result = future.result()
                except isolation.PoolClosed:
                    stop = True
                    continue
                if result is None:
                    continue
                if sha is not None and ledger is not None:
                    try:
                        ledger.record_verification(result, sha256=sha, context=context)
                    except Exception as exc:  # noqa: BLE001 - shown, not cached
                        log.warning("could not record the verification of %s: %s", item.name, type(exc).__name__)
                outcomes[i] = VerifyOutcome(result, sha, False)
                tick(item.name)
            if stop or (cancelled is not None and cancelled()):
                for future in running:
                    future.cancel()
    return _in_order(outcomes)


def _in_order(outcomes: dict[int, VerifyOutcome]) -> list[VerifyOutcome]:
    return [outcomes[i] for i in sorted(outcomes)]


def empty_on_open_day(outcomes: Iterable[VerifyOutcome]) -> list[VerifyResult]:
    """Newly verified (not cached) reports with no data rows on an open day."""
    return [o.result for o in outcomes if not o.cached and o.result.status == st.EMPTY]
